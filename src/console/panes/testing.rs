//! Fixtures for pane tests: states built by feeding real events through the reducer, with a
//! fixed clock and fixed ids, and helpers that render into ratatui's `TestBackend`.

use std::path::PathBuf;
use std::sync::Arc;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};

use crate::console::keys::Action;
use crate::console::layout::ScreenLayout;
use crate::console::reducer::{Input, reduce};
use crate::console::state::{PaneId, State};
use crate::console::theme::Theme;
use crate::event::{
    AgentSummary, Envelope, Event, Level, OutputStream, PlannedTask, Risk, RunStatus,
};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};

/// 2023-11-14T22:13:20Z: every fixture event happens at or after this instant.
pub const T0: u64 = 1_700_000_000_000;

/// Which picture a fixture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// Nothing loaded, no run.
    Empty,
    /// Agents, a pool at work, a run in progress, breakers with history.
    Busy,
    /// A broken definition, a failed run, an open breaker, a denied command.
    Failed,
    /// Busy, plus an approval waiting for the reviewer.
    Prompt,
}

pub fn theme() -> Theme {
    crate::console::theme::bundled("dark").expect("dark theme")
}

/// Build a fixture by feeding events through the reducer, sized for a 120x40 screen.
pub fn state(fixture: Fixture, focus: PaneId) -> State {
    state_sized(fixture, focus, 120, 40)
}

/// The fixture's events, numbered and timed as the runtime would publish them.
pub fn envelopes(fixture: Fixture) -> Vec<Arc<Envelope>> {
    let events = match fixture {
        Fixture::Empty => Vec::new(),
        Fixture::Busy => busy_events(),
        Fixture::Failed => failed_events(),
        Fixture::Prompt => {
            let mut events = busy_events();
            let reasons = vec![
                "mentions deploy: production-like change".to_owned(),
                "touches credentials in config/secrets.yaml".to_owned(),
            ];
            let task = TaskId::new("deploy-staging");
            let agent = AgentId::new("devops-engineer");
            events.push((
                Some(run_id()),
                Event::TaskAwaitingApproval {
                    task: task.clone(),
                    agent: agent.clone(),
                    risk: Risk::Critical,
                    reasons: reasons.clone(),
                },
            ));
            events.push((
                Some(run_id()),
                Event::ApprovalRequested {
                    task: task.clone(),
                    agent,
                    risk: Risk::Critical,
                    reasons,
                },
            ));
            // Numbered from 1, 1.5 s apart: the request's own time, and an hour's deadline.
            let requested_ms = T0 + events.len() as u64 * 1_500;
            events.push((
                Some(run_id()),
                Event::ApprovalTerms {
                    task: task.clone(),
                    requested_by: Some(UserId::new("bob")),
                    deadline_ms: Some(requested_ms + 3_600_000),
                    needed: 2,
                },
            ));
            events.push((
                Some(run_id()),
                Event::ApprovalGiven { task, by: UserId::new("rita"), count: 1, needed: 2 },
            ));
            events
        }
    };
    (1..)
        .zip(events)
        .map(|(seq, (run, event))| {
            Arc::new(Envelope { seq, ts_ms: T0 + seq * 1_500, run_id: run, event })
        })
        .collect()
}

pub fn state_sized(fixture: Fixture, focus: PaneId, width: u16, height: u16) -> State {
    let mut state = State::new("alice", "admin", PathBuf::from("/project"), "dark");
    reduce(&mut state, Input::Resize { width, height });
    let envelopes = envelopes(fixture);
    let seq = envelopes.last().map_or(0, |e| e.seq);
    for envelope in envelopes {
        reduce(&mut state, Input::Event(envelope));
    }
    // One second after the last event: messages are still up, clocks have moved on.
    reduce(&mut state, Input::Tick(T0 + seq * 1_500 + 1_000));
    while state.focus != focus {
        reduce(&mut state, Input::Action(Action::FocusNext));
    }
    state
}

pub fn run_id() -> RunId {
    RunId::new("r20231114-7f3a")
}

fn agent(name: &str, tier: u8, category: &str, triggers: usize, warnings: &[&str]) -> Event {
    Event::AgentAdded(AgentSummary {
        agent: AgentId::new(name),
        file: PathBuf::from(format!("agentpool/tier{tier}/{name}.md")),
        tier,
        category: Some(category.to_owned()),
        triggers,
        max_instances: 3,
        backend: (tier == 3).then(|| "sim".to_owned()),
        warnings: warnings.iter().map(|w| (*w).to_owned()).collect(),
    })
}

fn task(id: &str, agent: &str, layer: usize, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        task: TaskId::new(id),
        description: format!("{id} for the demo").into(),
        agent: AgentId::new(agent),
        score: Some(4.5),
        depends_on: deps.iter().map(|d| TaskId::new(*d)).collect(),
        layer,
        timeout_ms: 30_000,
        retries: 2,
    }
}

fn agents() -> Vec<(Option<RunId>, Event)> {
    vec![
        (None, agent("backend-architect", 1, "architecture", 6, &[])),
        (None, agent("code-reviewer", 1, "quality", 4, &[])),
        (None, agent("security-auditor", 2, "security", 8, &[])),
        (
            None,
            agent(
                "devops-engineer",
                2,
                "operations",
                5,
                &["frontmatter is not strict YAML; read line by line"],
            ),
        ),
        (None, agent("prompt-alchemist", 3, "experimental", 2, &[])),
    ]
}

fn plan() -> Event {
    Event::RunStarted {
        workflow: "demo".to_owned(),
        file: PathBuf::from("workflows/demo.yaml"),
        goal: Some("Ship the payments API".to_owned()),
        max_parallel: 3,
        fail_fast: false,
        simulated: true,
        tasks: vec![
            task("design-api", "backend-architect", 0, &[]),
            task("threat-model", "security-auditor", 0, &[]),
            task("implement", "backend-architect", 1, &["design-api"]),
            task("write-tests", "code-reviewer", 1, &["design-api"]),
            task("security-review", "security-auditor", 2, &["implement", "threat-model"]),
            task("code-review", "code-reviewer", 2, &["implement", "write-tests"]),
            task("deploy-staging", "devops-engineer", 3, &["security-review", "code-review"]),
        ],
    }
}

fn started(task: &str, agent: &str, instance: u64, attempt: u32) -> Event {
    Event::TaskStarted {
        task: TaskId::new(task),
        agent: AgentId::new(agent),
        attempt,
        instance: InstanceId(instance),
        backend: "sim".to_owned(),
        simulated: true,
    }
}

fn succeeded(task: &str, agent: &str, ms: u64) -> Event {
    Event::TaskSucceeded {
        task: TaskId::new(task),
        agent: AgentId::new(agent),
        attempt: 1,
        duration_ms: ms,
        output: format!("{task}: done"),
        usage: None,
        simulated: true,
        details: crate::event::AnswerDetails::default(),
    }
}

fn busy_events() -> Vec<(Option<RunId>, Event)> {
    let run = || Some(run_id());
    let mut events = agents();
    events.extend([
        (
            None,
            Event::InstanceReserved {
                instance: InstanceId(1),
                agent: AgentId::new("backend-architect"),
            },
        ),
        (
            None,
            Event::InstanceReserved {
                instance: InstanceId(2),
                agent: AgentId::new("security-auditor"),
            },
        ),
        (run(), plan()),
        (run(), Event::TaskReady { task: TaskId::new("design-api") }),
        (run(), Event::TaskReady { task: TaskId::new("threat-model") }),
        (
            None,
            Event::InstanceWorking {
                instance: InstanceId(1),
                agent: AgentId::new("backend-architect"),
                task: Some(TaskId::new("design-api")),
            },
        ),
        (run(), started("design-api", "backend-architect", 1, 1)),
        (
            None,
            Event::InstanceWorking {
                instance: InstanceId(2),
                agent: AgentId::new("security-auditor"),
                task: Some(TaskId::new("threat-model")),
            },
        ),
        (run(), started("threat-model", "security-auditor", 2, 1)),
        (run(), succeeded("design-api", "backend-architect", 2_400)),
        (
            None,
            Event::InstanceIdle {
                instance: InstanceId(1),
                agent: AgentId::new("backend-architect"),
            },
        ),
        (run(), succeeded("threat-model", "security-auditor", 3_100)),
        (
            None,
            Event::InstanceIdle {
                instance: InstanceId(2),
                agent: AgentId::new("security-auditor"),
            },
        ),
        (run(), Event::TaskReady { task: TaskId::new("implement") }),
        (run(), Event::TaskReady { task: TaskId::new("write-tests") }),
        (
            None,
            Event::InstanceWorking {
                instance: InstanceId(1),
                agent: AgentId::new("backend-architect"),
                task: Some(TaskId::new("implement")),
            },
        ),
        (run(), started("implement", "backend-architect", 1, 1)),
        (
            run(),
            Event::TaskOutput {
                task: TaskId::new("implement"),
                stream: OutputStream::Stdout,
                text: "compiling payments-api v0.3.0\nrunning 42 tests\n".to_owned(),
            },
        ),
        (
            run(),
            Event::TaskOutput {
                task: TaskId::new("implement"),
                stream: OutputStream::Stderr,
                text: "warning: unused import `Money`\n".to_owned(),
            },
        ),
        (
            None,
            Event::InstanceReserved {
                instance: InstanceId(3),
                agent: AgentId::new("code-reviewer"),
            },
        ),
        (
            None,
            Event::InstanceWorking {
                instance: InstanceId(3),
                agent: AgentId::new("code-reviewer"),
                task: Some(TaskId::new("write-tests")),
            },
        ),
        (run(), started("write-tests", "code-reviewer", 3, 1)),
        (
            run(),
            Event::TaskRetrying {
                task: TaskId::new("write-tests"),
                agent: AgentId::new("code-reviewer"),
                attempt: 1,
                delay_ms: 2_000,
                duration_ms: 1_200,
                error: "simulated failure".to_owned(),
            },
        ),
        (None, Event::BreakerHalfOpened { agent: AgentId::new("prompt-alchemist"), probes: 3 }),
        (
            None,
            Event::CommandAccepted {
                user: UserId::new("alice"),
                role: "admin".to_owned(),
                command: "start_run".to_owned(),
            },
        ),
    ]);
    events
}

fn failed_events() -> Vec<(Option<RunId>, Event)> {
    let run = || Some(run_id());
    let mut events = agents();
    events.extend([
        (
            None,
            Event::AgentInvalid {
                file: PathBuf::from("agentpool/tier2/broken.md"),
                agent: None,
                error: "line 3: missing field `description`".to_owned(),
            },
        ),
        (
            None,
            Event::AgentInvalid {
                file: PathBuf::from("agentpool/tier1/code-reviewer.md"),
                agent: Some(AgentId::new("code-reviewer")),
                error: "tier: 7 is not 1, 2 or 3".to_owned(),
            },
        ),
        (run(), plan()),
        (run(), Event::TaskReady { task: TaskId::new("design-api") }),
        (run(), started("design-api", "backend-architect", 1, 1)),
        (
            run(),
            Event::TaskFailed {
                task: TaskId::new("design-api"),
                agent: Some(AgentId::new("backend-architect")),
                attempt: 3,
                duration_ms: 30_000,
                error: "timed out after 30s".to_owned(),
            },
        ),
        (
            None,
            Event::BreakerOpened {
                agent: AgentId::new("backend-architect"),
                failures: 3,
                threshold: 3,
                recovery_ms: 60_000,
                last_error: "timed out after 30s".to_owned(),
            },
        ),
        (
            run(),
            Event::TaskRetrying {
                task: TaskId::new("threat-model"),
                agent: AgentId::new("security-auditor"),
                attempt: 1,
                delay_ms: 500,
                duration_ms: 900,
                error: "HTTP 503".to_owned(),
            },
        ),
        (run(), started("threat-model", "security-auditor", 2, 2)),
        (run(), succeeded("threat-model", "security-auditor", 1_500)),
        (
            run(),
            Event::TaskSkipped {
                task: TaskId::new("implement"),
                reason: "design-api failed".to_owned(),
            },
        ),
        (
            run(),
            Event::TaskSkipped {
                task: TaskId::new("write-tests"),
                reason: "design-api failed".to_owned(),
            },
        ),
        (
            run(),
            Event::TaskSkipped {
                task: TaskId::new("security-review"),
                reason: "implement skipped".to_owned(),
            },
        ),
        (
            run(),
            Event::TaskSkipped {
                task: TaskId::new("code-review"),
                reason: "implement skipped".to_owned(),
            },
        ),
        (
            run(),
            Event::TaskCancelled {
                task: TaskId::new("deploy-staging"),
                reason: "cancelled by alice".to_owned(),
            },
        ),
        (
            run(),
            Event::RunFinished {
                status: RunStatus::Failed,
                succeeded: 1,
                failed: 1,
                skipped: 4,
                cancelled: 1,
                duration_ms: 41_000,
            },
        ),
        (
            None,
            Event::Notice {
                level: Level::Warn,
                message: "backend `openai` has no API key".to_owned(),
            },
        ),
        (
            None,
            Event::CommandDenied {
                user: UserId::new("alice"),
                role: "viewer".to_owned(),
                command: "reset_breaker".to_owned(),
                reason: "role viewer lacks operate".to_owned(),
            },
        ),
    ]);
    events
}

/// Render the whole screen into a `TestBackend`.
pub fn render_screen(state: &State, theme: &Theme, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| crate::console::panes::draw(frame, state, theme)).expect("draw");
    terminal.backend().clone()
}

/// Render one pane at the size it has on a `width` x `height` screen (or filling the whole
/// area when the screen is below the layout's minimum), with the dark theme.
pub fn render_pane(state: &State, pane: PaneId, width: u16, height: u16) -> TestBackend {
    let area = pane_area(pane, width, height);
    let mut terminal =
        Terminal::new(TestBackend::new(area.width, area.height)).expect("test terminal");
    let theme = theme();
    terminal
        .draw(|frame| {
            let area = frame.area();
            crate::console::panes::pane(pane).render(state, &theme, area, frame.buffer_mut());
        })
        .expect("draw");
    terminal.backend().clone()
}

/// The buffer of one pane rendered with `theme`, for style assertions.
pub fn pane_buffer(state: &State, theme: &Theme, pane: PaneId, width: u16, height: u16) -> Buffer {
    let mut buffer = Buffer::empty(Rect::new(0, 0, width, height));
    crate::console::panes::pane(pane).render(state, theme, buffer.area, &mut buffer);
    buffer
}

fn pane_area(pane: PaneId, width: u16, height: u16) -> Rect {
    let layout = ScreenLayout::compute(Rect::new(0, 0, width, height));
    if layout.too_small {
        Rect::new(0, 0, width, height)
    } else {
        let area = layout.pane(pane);
        Rect::new(0, 0, area.width, area.height)
    }
}

/// The position of the first cell where `text` starts, row by row.
pub fn find(buffer: &Buffer, text: &str) -> Option<Position> {
    let area = buffer.area;
    for y in area.top()..area.bottom() {
        let mut row = String::new();
        let mut starts = Vec::new();
        for x in area.left()..area.right() {
            starts.push((row.len(), x));
            row.push_str(buffer[(x, y)].symbol());
        }
        if let Some(byte) = row.find(text) {
            let x = starts.iter().rev().find(|(b, _)| *b <= byte).map_or(0, |(_, x)| *x);
            return Some(Position::new(x, y));
        }
    }
    None
}
