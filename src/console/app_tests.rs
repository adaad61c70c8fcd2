//! The loop driven end to end in-process: scripted terminal input, a real broadcast channel, a
//! `TestBackend`, and waiting for idle reports instead of sleeping. Time is paused, so frame
//! and tick timers run in virtual time.

#![allow(clippy::unwrap_used)]

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use futures::channel::mpsc as keys_channel;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::{Idle, LoopSettings, run_loop};
use crate::command::Command;
use crate::console::ConsoleLink;
use crate::console::state::{PaneId, State};
use crate::event::{AgentSummary, Envelope, Event, PlannedTask, RunStatus};
use crate::ids::{AgentId, InstanceId, RunId, TaskId};

const T0: u64 = 1_700_000_000_000;

fn fixed_clock() -> u64 {
    T0
}

fn agent_added(seq: u64, name: &str) -> Arc<Envelope> {
    Arc::new(Envelope {
        seq,
        ts_ms: T0,
        run_id: None,
        event: Event::AgentAdded(AgentSummary {
            agent: AgentId::new(name),
            file: PathBuf::from(format!("agentpool/tier1-core/{name}.md")),
            tier: 1,
            category: Some("architecture".into()),
            triggers: 3,
            max_instances: 3,
            backend: None,
            warnings: vec![],
        }),
    })
}

struct Console {
    keys: keys_channel::UnboundedSender<io::Result<TermEvent>>,
    bus: broadcast::Sender<Arc<Envelope>>,
    commands: mpsc::UnboundedReceiver<Command>,
    idle: mpsc::UnboundedReceiver<Idle>,
    task: JoinHandle<color_eyre::Result<State>>,
    sent: u64,
    last: Option<Idle>,
}

impl Console {
    fn start(role: &str, capacity: usize, before: &[Arc<Envelope>]) -> Self {
        Self::start_with(role, capacity, before, false)
    }

    fn start_with(role: &str, capacity: usize, before: &[Arc<Envelope>], no_color: bool) -> Self {
        Self::start_with_store(role, capacity, before, no_color, Vec::new(), Vec::new(), false)
    }

    /// A console whose store lists `rows` and reads `stored` as any stored run's events.
    fn start_with_store(
        role: &str,
        capacity: usize,
        before: &[Arc<Envelope>],
        no_color: bool,
        rows: Vec<crate::store::RunRow>,
        stored: Vec<Arc<Envelope>>,
        attached: bool,
    ) -> Self {
        let (bus, events) = broadcast::channel(capacity);
        for envelope in before {
            bus.send(Arc::clone(envelope)).unwrap();
        }
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (keys, keys_rx) = keys_channel::unbounded();
        let (idle_tx, idle) = mpsc::unbounded_channel();
        let link = ConsoleLink {
            backlog: vec![agent_added(1, "backend-architect")],
            events: events.into(),
            commands: commands_tx,
            user: "alice".into(),
            role: role.into(),
            resync: Box::new(|| {
                vec![agent_added(1, "backend-architect"), agent_added(2, "resynced-agent")]
            }),
            stored_runs: Box::new(move || rows.clone()),
            attached,
            run_events: Box::new(move |_| stored.clone()),
        };
        let settings = LoopSettings {
            project_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            theme: None,
            no_color,
            start_workflow: Some(PathBuf::from("/work/workflows/demo.yaml")),
            attention: crate::console::Attention::default(),
        };
        let task = tokio::spawn(async move {
            let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
            run_loop(
                &mut terminal,
                keys_rx,
                link,
                settings,
                fixed_clock,
                std::future::pending(),
                Some(idle_tx),
            )
            .await
        });
        Self { keys, bus, commands, idle, task, sent: 0, last: None }
    }

    fn send(&mut self, event: TermEvent) {
        self.keys.unbounded_send(Ok(event)).unwrap();
        self.sent += 1;
    }

    fn key(&mut self, code: KeyCode) {
        self.send(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    fn text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// Wait until the loop has handled every input sent so far and drawn the result.
    async fn settle(&mut self) -> &Idle {
        let sent = self.sent;
        self.until(|idle| idle.inputs >= sent).await
    }

    /// Wait for an idle report that satisfies `check`. Virtual time: the timeout only fires
    /// when the loop stops reporting.
    async fn until(&mut self, check: impl Fn(&Idle) -> bool) -> &Idle {
        if self.last.as_ref().is_some_and(&check) {
            return self.last.as_ref().expect("checked");
        }
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let idle = self.idle.recv().await.expect("loop alive");
                if check(&idle) {
                    return idle;
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the console did not reach the expected state; last: {:?}",
                self.last.as_ref().map(|i| (
                    i.inputs,
                    i.state.run().is_some(),
                    i.state.message.clone()
                ))
            )
        });
        self.last.insert(found)
    }

    fn screen(&self) -> String {
        let idle = self.last.as_ref().expect("an idle report");
        let area = idle.screen.area;
        (area.top()..area.bottom())
            .map(|y| {
                (area.left()..area.right())
                    .map(|x| idle.screen[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn screen_text(idle: &Idle) -> String {
    idle.screen.content().iter().map(ratatui::buffer::Cell::symbol).collect()
}

#[tokio::test(start_paused = true)]
async fn key_sequence_drives_panes_overlays_and_commands() {
    let mut console = Console::start("admin", 64, &[]);
    let idle = console.settle().await;
    assert_eq!(idle.state.focus, PaneId::Dag);
    for title in ["Agents", "Pool", "DAG", "Breakers", "Audit", "alice@admin"] {
        assert!(console.screen().contains(title), "{title}:\n{}", console.screen());
    }
    assert_eq!(
        console.commands.recv().await,
        Some(Command::StartRun {
            workflow: "/work/workflows/demo.yaml".into(),
            backend: None,
            max_parallel: None
        })
    );

    console.key(KeyCode::Tab);
    assert_eq!(console.settle().await.state.focus, PaneId::Breakers);
    console.key(KeyCode::BackTab);
    console.key(KeyCode::BackTab);
    assert_eq!(console.settle().await.state.focus, PaneId::Pool);

    console.key(KeyCode::Char('?'));
    console.settle().await;
    assert!(console.screen().contains("║  Tab             next pane"), "{}", console.screen());
    console.key(KeyCode::Esc);
    console.settle().await;
    assert!(!console.screen().contains("next pane   "), "{}", console.screen());

    console.key(KeyCode::Char(':'));
    console.text("spawn backend-architect");
    console.settle().await;
    assert!(console.screen().contains(" :spawn backend-architect"), "{}", console.screen());
    console.key(KeyCode::Enter);
    console.settle().await;
    assert_eq!(
        console.commands.recv().await,
        Some(Command::SpawnInstance { agent: AgentId::new("backend-architect") })
    );

    // The runtime answers; the Pool shows the instance.
    let reserved = Envelope {
        seq: 10,
        ts_ms: T0,
        run_id: None,
        event: Event::InstanceReserved {
            instance: InstanceId(1),
            agent: AgentId::new("backend-architect"),
        },
    };
    console.bus.send(Arc::new(reserved)).unwrap();
    console.until(|idle| screen_text(idle).contains("i1 backend-")).await;

    // A click focuses the pane under the pointer.
    let agents = console.last.as_ref().unwrap().state.layout.agents;
    console.send(TermEvent::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: agents.x + 3,
        row: agents.y + 2,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(console.settle().await.state.focus, PaneId::Agents);

    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok(), "no live run: q quits at once");
}

#[tokio::test(start_paused = true)]
async fn lagging_resyncs_and_says_so() {
    let flood: Vec<Arc<Envelope>> =
        (0..10).map(|i| agent_added(100 + i, &format!("a{i}"))).collect();
    let mut console = Console::start("viewer", 4, &flood);
    let idle = console
        .until(|idle| idle.state.message.as_ref().is_some_and(|m| m.text.contains("lagged")))
        .await;
    assert!(idle.state.agents.entries.contains_key("resynced-agent"));
    assert!(console.screen().contains("lagged: missed 6 events; resynced"), "{}", console.screen());
    console.send(TermEvent::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(console.task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn idle_console_sleeps_and_an_active_run_ticks() {
    let mut console = Console::start("viewer", 64, &[]);
    console.settle().await;
    // Nothing time-dependent on screen (the startup message expires first): no more frames.
    console.until(|idle| idle.state.message.is_none()).await;
    let quiet = tokio::time::timeout(Duration::from_secs(600), console.idle.recv()).await;
    assert!(quiet.is_err(), "an idle console must not redraw");

    let run =
        |seq, event| Arc::new(Envelope { seq, ts_ms: T0, run_id: Some(RunId::new("r1")), event });
    let task = PlannedTask {
        task: TaskId::new("only"),
        description: String::new().into(),
        agent: AgentId::new("backend-architect"),
        score: None,
        depends_on: vec![].into(),
        layer: 0,
        timeout_ms: 1000,
        retries: 0,
    };
    let started = Event::RunStarted {
        workflow: "demo".into(),
        file: "demo.yaml".into(),
        goal: None,
        max_parallel: 1,
        fail_fast: false,
        simulated: true,
        tasks: vec![task],
    };
    console.bus.send(run(20, started)).unwrap();
    console.until(|idle| idle.state.run().is_some()).await;
    let mut frames = 0;
    while tokio::time::timeout(Duration::from_secs(2), console.idle.recv()).await.is_ok() {
        frames += 1;
        if frames == 5 {
            break;
        }
    }
    assert_eq!(frames, 5, "a running clock redraws about once a second");
    let finished = Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded: 1,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 10,
    };
    console.bus.send(run(21, finished)).unwrap();
    console.until(|idle| idle.state.run().is_some_and(|r| r.outcome.is_some())).await;
    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn runtime_going_away_is_shown_not_fatal() {
    let mut console = Console::start("admin", 64, &[]);
    console.settle().await;
    drop(std::mem::replace(&mut console.bus, broadcast::channel(1).0));
    let idle = console.until(|idle| !idle.state.runtime_connected).await;
    assert!(screen_text(idle).contains("runtime stopped"));
    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_attached_console_says_its_host_exited_and_offers_to_quit() {
    let mut console =
        Console::start_with_store("operator", 64, &[], false, Vec::new(), Vec::new(), true);
    console.settle().await;
    drop(std::mem::replace(&mut console.bus, broadcast::channel(1).0));
    let idle = console.until(|idle| !idle.state.runtime_connected).await;
    let screen = screen_text(idle);
    assert!(screen.contains("host gone"), "{screen}");
    assert!(screen.contains("the host exited"), "{screen}");
    assert!(screen.contains("q quits"), "{screen}");
    assert!(!screen.contains("runtime stopped"), "{screen}");
    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn theme_switches_from_the_command_line_and_bad_names_are_explained() {
    let mut console = Console::start("viewer", 64, &[]);
    console.settle().await;
    let dark_border = console.last.as_ref().unwrap().screen[(0, 1)].fg;
    console.key(KeyCode::Char(':'));
    console.text("theme light");
    console.key(KeyCode::Enter);
    let idle = console.settle().await;
    assert_eq!(idle.state.theme_name, "light");
    assert_ne!(idle.screen[(0, 1)].fg, dark_border, "borders change colour");
    assert!(console.screen().contains("│ light │"), "{}", console.screen());

    console.key(KeyCode::Char(':'));
    console.text("theme neon");
    console.key(KeyCode::Enter);
    let idle = console.settle().await;
    assert_eq!(idle.state.theme_name, "dark", "falls back to the default");
    let message = idle.state.message.as_ref().map(|m| m.text.clone()).unwrap_or_default();
    assert!(message.starts_with("unknown theme `neon`"), "{message}");
    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn no_color_draws_without_colours() {
    let mut console = Console::start_with("admin", 64, &[], true);
    let idle = console.settle().await;
    let coloured = idle.screen.content().iter().filter(|cell| {
        cell.fg != ratatui::style::Color::Reset || cell.bg != ratatui::style::Color::Reset
    });
    assert_eq!(coloured.count(), 0);
    assert!(console.screen().contains("DAG"));
    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok());
}

/// `q` with a live run asks, says what happens to it, and on yes sends `CancelRun` through
/// the command channel (the gate audits it as the user's command), then waits for the run
/// to end before leaving.
#[tokio::test(start_paused = true)]
async fn quitting_with_a_live_run_asks_then_cancels_it_and_waits_for_its_end() {
    let mut console = Console::start("admin", 64, &[]);
    console.settle().await;
    let _start = console.commands.recv().await;
    let run = |seq, event| {
        Arc::new(Envelope { seq, ts_ms: T0, run_id: Some(RunId::new("r-live")), event })
    };
    let task = PlannedTask {
        task: TaskId::new("only"),
        description: String::new().into(),
        agent: AgentId::new("backend-architect"),
        score: None,
        depends_on: vec![].into(),
        layer: 0,
        timeout_ms: 1000,
        retries: 0,
    };
    let started = Event::RunStarted {
        workflow: "demo".into(),
        file: "demo.yaml".into(),
        goal: None,
        max_parallel: 1,
        fail_fast: false,
        simulated: true,
        tasks: vec![task],
    };
    console.bus.send(run(20, started)).unwrap();
    console.until(|idle| idle.state.run().is_some()).await;

    console.key(KeyCode::Char('q'));
    console.settle().await;
    assert!(
        console.screen().contains("Quit? 1 live run (demo) is cancelled"),
        "{}",
        console.screen()
    );
    console.key(KeyCode::Char('n'));
    console.settle().await;
    assert!(!console.task.is_finished(), "no keeps the console");

    console.key(KeyCode::Char('q'));
    console.key(KeyCode::Char('y'));
    console.settle().await;
    assert_eq!(
        console.commands.recv().await,
        Some(Command::CancelRun { run: RunId::new("r-live") })
    );
    assert!(!console.task.is_finished(), "waits for the cancelled run to end");
    let finished = Event::RunFinished {
        status: RunStatus::Cancelled,
        succeeded: 0,
        failed: 0,
        skipped: 0,
        cancelled: 1,
        duration_ms: 10,
    };
    console.bus.send(run(21, finished)).unwrap();
    let state = console.task.await.unwrap().unwrap();
    assert!(state.live_runs().is_empty());
}

/// From the Runs list, `p` opens a finished run in replay over the live console: REPLAY in
/// the header, the cursor moves, no key or typed command sends anything, and `q` goes back
/// to the live console, which kept folding its events meanwhile.
#[tokio::test(start_paused = true)]
async fn a_run_opened_in_replay_from_the_list_changes_nothing_and_q_goes_back() {
    use crate::console::panes::testing::{self, Fixture};
    let stored = testing::envelopes(Fixture::Failed);
    let row = crate::store::RunRow {
        run_id: testing::run_id(),
        workflow: "demo".into(),
        file: "workflows/demo.yaml".into(),
        started_ms: T0 - 60_000,
        finished_ms: Some(T0 - 30_000),
        state: crate::store::RunState::Failed,
        tasks: 7,
        succeeded: 2,
        failed: 1,
        skipped: 4,
        cancelled: 0,
        duration_ms: Some(30_000),
        simulated: true,
    };
    let total = stored.len();
    let mut console = Console::start_with_store("admin", 64, &[], false, vec![row], stored, false);
    console.settle().await;
    let _start = console.commands.recv().await;
    console.key(KeyCode::Char('W'));
    console.settle().await;
    assert!(console.screen().contains("p replay"), "{}", console.screen());
    console.key(KeyCode::Char('p'));
    let idle = console.settle().await;
    let cursor = idle.state.replay.expect("in replay");
    assert_eq!((cursor.position, cursor.total), (0, total));
    assert!(console.screen().lines().next().unwrap().contains("REPLAY"), "{}", console.screen());
    console.key(KeyCode::Right);
    assert_eq!(console.settle().await.state.replay.map(|c| c.position), Some(1));
    console.key(KeyCode::End);
    let idle = console.settle().await;
    assert_eq!(idle.state.replay.map(|c| c.position), Some(total));
    assert!(crate::console::keys::hints(&idle.state).iter().all(|(_, _, danger)| !danger));
    // Every key that changes something live, and typed commands answered yes: nothing sent.
    for c in ['c', 'C', 'R', 'r', 'x', 's', 'o', 'a', 'y'] {
        console.key(KeyCode::Char(c));
    }
    for line in ["cancel", "resume r1", "retry design-api", "spawn backend-architect"] {
        console.key(KeyCode::Char(':'));
        console.text(line);
        console.key(KeyCode::Enter);
        console.key(KeyCode::Char('y'));
    }
    console.settle().await;
    // The live console goes on underneath.
    console.bus.send(agent_added(50, "arrived-meanwhile")).unwrap();
    console.key(KeyCode::Char('q'));
    let idle = console.settle().await;
    assert!(idle.state.replay.is_none(), "q leaves the replay, not the console");
    assert!(!console.task.is_finished());
    let idle =
        console.until(|idle| idle.state.agents.entries.contains_key("arrived-meanwhile")).await;
    assert!(!screen_text(idle).contains("REPLAY"));
    assert!(!screen_text(idle).contains("replaying run"), "{}", screen_text(idle));
    // Back where the replay was opened from: the Runs list, over the live console.
    assert_eq!(idle.state.overlay, Some(crate::console::state::Overlay::Runs));
    assert!(console.commands.try_recv().is_err(), "nothing was sent from the replay");
    console.key(KeyCode::Esc);
    console.key(KeyCode::Char('q'));
    assert!(console.task.await.unwrap().is_ok());
}

#[test]
fn a_conflict_that_asks_a_person_calls_one_like_an_approval() {
    use crate::conflict::LadderStep;
    use crate::event::{Envelope, Event};
    use crate::ids::{RunId, TaskId};
    let step = |step| Envelope {
        seq: 1,
        ts_ms: 1,
        run_id: Some(RunId::new("r-1")),
        event: Event::ConflictStep {
            task: TaskId::new("q"),
            step,
            finding: String::new(),
            winner: None,
            decision: None,
            recommendation: None,
        },
    };
    assert_eq!(
        super::attention_call(&step(LadderStep::Operator)).as_deref(),
        Some("q: a conflict waits for a person")
    );
    assert_eq!(super::attention_call(&step(LadderStep::ThirdOpinion)), None);
}

#[test]
fn a_task_that_waits_inside_a_hosts_digest_still_calls_a_person() {
    use crate::event::{Envelope, Event, Risk};
    use crate::host::protocol::{Digest, DigestPart};
    use crate::ids::{AgentId, RunId, TaskId};
    let waiting = Envelope {
        seq: 40,
        ts_ms: 1,
        run_id: Some(RunId::new("r-1")),
        event: Event::TaskAwaitingApproval {
            task: TaskId::new("deploy"),
            agent: AgentId::new("ops"),
            risk: Risk::High,
            reasons: Vec::new(),
        },
    };
    let digest = Digest {
        events: 500,
        since_ms: 1,
        last_seq: 500,
        parts: vec![DigestPart { events: vec![waiting], run: None, tasks: Vec::new() }],
    };
    let calls = super::attention_calls(&super::Input::Digest(Arc::new(digest)));
    assert_eq!(calls, ["deploy waits for approval"]);
}
