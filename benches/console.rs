//! Cost of one console frame. `cargo bench --bench console`.
//!
//! Targets: each pane with 1,000 pool instances and 10,000 audit lines ≤ 2 ms; a DAG of
//! 1,000 tasks ≤ 5 ms and of 5,000 tasks ≤ 16 ms. Frames are drawn through ratatui's
//! `TestBackend`, so the buffer diff is included.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use divan::Bencher;
use flightdeck::console::layout::ScreenLayout;
use flightdeck::console::panes;
use flightdeck::console::reducer::{Input, reduce};
use flightdeck::console::replay::{Replay, SNAPSHOT_EVERY, Seek};
use flightdeck::console::state::{PaneId, State};
use flightdeck::console::theme::{self, Theme};
use flightdeck::event::{AgentSummary, Envelope, Event, PlannedTask};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

const T0: u64 = 1_700_000_000_000;
const WIDTH: u16 = 160;
const HEIGHT: u16 = 45;

fn main() {
    divan::main();
}

struct Feed {
    state: State,
    seq: u64,
}

impl Feed {
    fn new() -> Self {
        let mut state = State::new("bench", "admin", PathBuf::from("."), "dark");
        reduce(&mut state, Input::Resize { width: WIDTH, height: HEIGHT });
        Self { state, seq: 0 }
    }

    fn push(&mut self, run: bool, event: Event) {
        self.seq += 1;
        let run_id = run.then(|| RunId::new("r1"));
        let envelope = Envelope { seq: self.seq, ts_ms: T0 + self.seq, run_id, event };
        reduce(&mut self.state, Input::Event(Arc::new(envelope)));
    }
}

/// `layers` layers of `width` tasks; each depends on two tasks of the layer before and, for
/// every fifth task, one from two layers back.
fn plan(layers: usize, width: usize) -> Vec<PlannedTask> {
    let mut tasks = Vec::with_capacity(layers * width);
    for layer in 0..layers {
        for i in 0..width {
            let mut deps = Vec::new();
            if layer > 0 {
                deps.push(TaskId::new(format!("task-{}-{}", layer - 1, i)));
                deps.push(TaskId::new(format!("task-{}-{}", layer - 1, (i + 7) % width)));
            }
            if layer > 1 && i % 5 == 0 {
                deps.push(TaskId::new(format!("task-{}-{}", layer - 2, (i + 3) % width)));
            }
            tasks.push(PlannedTask {
                task: TaskId::new(format!("task-{layer}-{i}")),
                description: format!("step {i} of layer {layer}").into(),
                agent: AgentId::new(format!("agent-{}", i % 40)),
                score: None,
                depends_on: deps.into(),
                layer,
                timeout_ms: 30_000,
                retries: 1,
            });
        }
    }
    tasks
}

/// 200 agents, 1,000 live instances, 300 breakers with history, a 1,000-task run, and
/// 10,000 audit lines (the ring buffer's size).
fn busy(tasks: Vec<PlannedTask>) -> State {
    let mut feed = Feed::new();
    for i in 0..200 {
        feed.push(
            false,
            Event::AgentAdded(AgentSummary {
                agent: AgentId::new(format!("agent-{i}")),
                file: PathBuf::from(format!("agentpool/tier1-core/agent-{i}.md")),
                tier: (i % 3 + 1) as u8,
                category: Some("engineering".into()),
                triggers: i % 9,
                max_instances: 8,
                backend: None,
                warnings: vec![],
            }),
        );
    }
    for i in 0..1000 {
        let agent = AgentId::new(format!("agent-{}", i % 200));
        feed.push(false, Event::InstanceReserved { instance: InstanceId(i), agent: agent.clone() });
        if i % 3 == 0 {
            let task = Some(TaskId::new(format!("task-0-{}", i % 50)));
            feed.push(false, Event::InstanceWorking { instance: InstanceId(i), agent, task });
        }
    }
    feed.push(
        true,
        Event::RunStarted {
            workflow: "bench".into(),
            file: "bench.yaml".into(),
            goal: None,
            max_parallel: 8,
            fail_fast: false,
            simulated: true,
            tasks,
        },
    );
    for i in 0..300 {
        let agent = AgentId::new(format!("agent-{i}"));
        feed.push(
            true,
            Event::TaskRetrying {
                task: TaskId::new("task-0-0"),
                agent: agent.clone(),
                attempt: 1,
                delay_ms: 500,
                duration_ms: 1_000,
                error: "simulated failure".into(),
            },
        );
        if i % 4 == 0 {
            feed.push(
                false,
                Event::BreakerOpened {
                    agent,
                    failures: 3,
                    threshold: 3,
                    recovery_ms: 60_000,
                    last_error: "503 from upstream".into(),
                },
            );
        }
    }
    while feed.state.audit.entries.len() < feed.state.audit.capacity {
        let task = TaskId::new(format!("task-0-{}", feed.seq % 50));
        feed.push(true, Event::TaskReady { task });
    }
    reduce(&mut feed.state, Input::Tick(T0 + feed.seq + 30_000));
    feed.state
}

fn theme() -> Theme {
    theme::bundled("dark").unwrap()
}

fn terminal(area: Rect) -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(area.width, area.height)).unwrap()
}

/// One pane at its size on a 160x45 screen.
#[divan::bench(args = ["agents", "pool", "dag", "breakers", "audit"])]
fn pane_frame(bencher: Bencher, name: &str) {
    let pane = PaneId::ORDER.into_iter().find(|p| p.title().eq_ignore_ascii_case(name)).unwrap();
    let state = busy(plan(20, 50));
    let theme = theme();
    let area = ScreenLayout::compute(Rect::new(0, 0, WIDTH, HEIGHT)).pane(pane);
    let mut terminal = terminal(Rect::new(0, 0, area.width, area.height));
    bencher.bench_local(|| {
        terminal
            .draw(|frame| {
                let area = frame.area();
                panes::pane(pane).render(&state, &theme, area, frame.buffer_mut());
            })
            .unwrap();
    });
}

/// The whole 160x45 screen with every pane busy.
#[divan::bench]
fn screen_frame(bencher: Bencher) {
    let state = busy(plan(20, 50));
    let theme = theme();
    let mut terminal = terminal(Rect::new(0, 0, WIDTH, HEIGHT));
    bencher.bench_local(|| {
        terminal.draw(|frame| panes::draw(frame, &state, &theme)).unwrap();
    });
}

/// The DAG pane with 1,000 and 5,000 tasks (20 and 50 layers of 50 and 100).
#[divan::bench(args = [1_000, 5_000])]
fn dag_frame(bencher: Bencher, tasks: usize) {
    let (layers, width) = if tasks == 1_000 { (20, 50) } else { (50, 100) };
    let mut feed = Feed::new();
    feed.push(
        true,
        Event::RunStarted {
            workflow: "big".into(),
            file: "big.yaml".into(),
            goal: None,
            max_parallel: 8,
            fail_fast: false,
            simulated: false,
            tasks: plan(layers, width),
        },
    );
    // Look at the middle of the graph, where every gap has edges.
    for _ in 0..layers / 2 {
        reduce(&mut feed.state, Input::Action(flightdeck::console::keys::Action::SelectRight));
    }
    for _ in 0..width / 2 {
        reduce(&mut feed.state, Input::Action(flightdeck::console::keys::Action::SelectNext));
    }
    let theme = theme();
    let area = ScreenLayout::compute(Rect::new(0, 0, WIDTH, HEIGHT)).pane(PaneId::Dag);
    let mut terminal = terminal(Rect::new(0, 0, area.width, area.height));
    let state = feed.state;
    bencher.bench_local(|| {
        terminal
            .draw(|frame| {
                let area = frame.area();
                panes::pane(PaneId::Dag).render(&state, &theme, area, frame.buffer_mut());
            })
            .unwrap();
    });
}

/// Folding one event into a busy state (the audit ring buffer is full).
#[divan::bench]
fn reduce_event(bencher: Bencher) {
    let mut state = busy(plan(20, 50));
    let mut seq = 10_000_000;
    bencher.bench_local(|| {
        seq += 1;
        let event = Event::TaskReady { task: TaskId::new("task-3-3") };
        let envelope = Envelope { seq, ts_ms: T0 + seq, run_id: Some(RunId::new("r1")), event };
        reduce(&mut state, Input::Event(Arc::new(envelope)));
    });
}

/// A stored run of 10,000 tasks (100 layers of 100): start, then each task ready, started and
/// succeeded: 30,001 events.
fn stored_run() -> Vec<Arc<Envelope>> {
    let tasks = plan(100, 100);
    let run = Some(RunId::new("r-replay"));
    let mut events = Vec::with_capacity(tasks.len() * 3 + 1);
    let mut push = |event: Event| {
        let seq = events.len() as u64 + 1;
        events.push(Arc::new(Envelope { seq, ts_ms: T0 + seq * 10, run_id: run.clone(), event }));
    };
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.task.clone()).collect();
    push(Event::RunStarted {
        workflow: "big".into(),
        file: "big.yaml".into(),
        goal: None,
        max_parallel: 8,
        fail_fast: false,
        simulated: false,
        tasks,
    });
    for (i, task) in ids.into_iter().enumerate() {
        push(Event::TaskReady { task: task.clone() });
        push(Event::TaskStarted {
            task: task.clone(),
            agent: AgentId::new("agent-1"),
            attempt: 1,
            instance: InstanceId(i as u64 % 8),
            backend: "process".into(),
            simulated: false,
        });
        push(Event::TaskSucceeded {
            task,
            agent: AgentId::new("agent-1"),
            attempt: 1,
            duration_ms: 10,
            output: "ok".into(),
            usage: None,
            simulated: false,
            details: flightdeck::event::AnswerDetails::default(),
        });
    }
    events
}

fn replay_base() -> State {
    let mut state = State::new("bench", "viewer", PathBuf::from("."), "dark");
    reduce(&mut state, Input::Resize { width: WIDTH, height: HEIGHT });
    state
}

/// Opening the replay of a 10,000-task run (target ≤ 300 ms) and drawing its first frame.
/// The events are already read: the store's read is `runs events`' cost, measured apart.
#[divan::bench(sample_count = 10)]
fn replay_open_10k(bencher: Bencher) {
    let events = stored_run();
    let theme = theme();
    let mut terminal = terminal(Rect::new(0, 0, WIDTH, HEIGHT));
    bencher.with_inputs(|| events.clone()).bench_local_values(|events| {
        let mut replay = Replay::open(events, replay_base());
        // The first useful picture: the plan is there.
        replay.seek(Seek::Step(1));
        terminal.draw(|frame| panes::draw(frame, &replay.state, &theme)).unwrap();
    });
}

/// The worst step and an ordinary one in the middle of a 10,000-task run, each with its
/// frame (target: each within a 16 ms frame, under load). Back from a snapshot is the worst
/// case: it restores the snapshot before (a copy that shares the tasks) and folds
/// `SNAPSHOT_EVERY - 1` events; forward again folds one. The time is the pair's, so the
/// worst step alone is below it.
#[divan::bench(sample_count = 20)]
fn replay_step_10k(bencher: Bencher) {
    let events = stored_run();
    let on_snapshot = events.len() / 2 / SNAPSHOT_EVERY * SNAPSHOT_EVERY;
    let mut replay = Replay::open(events, replay_base());
    replay.seek_to(on_snapshot);
    let theme = theme();
    let mut terminal = terminal(Rect::new(0, 0, WIDTH, HEIGHT));
    bencher.bench_local(|| {
        replay.seek(Seek::Step(-1));
        terminal.draw(|frame| panes::draw(frame, &replay.state, &theme)).unwrap();
        replay.seek(Seek::Step(1));
        terminal.draw(|frame| panes::draw(frame, &replay.state, &theme)).unwrap();
    });
}

/// One step forward in the middle of a 10,000-task run, with its frame.
#[divan::bench(sample_count = 20)]
fn replay_step_forward_10k(bencher: Bencher) {
    let events = stored_run();
    let middle = events.len() / 2;
    let mut replay = Replay::open(events, replay_base());
    replay.seek_to(middle);
    let theme = theme();
    let mut terminal = terminal(Rect::new(0, 0, WIDTH, HEIGHT));
    bencher.bench_local(|| {
        replay.seek(Seek::Step(1));
        terminal.draw(|frame| panes::draw(frame, &replay.state, &theme)).unwrap();
    });
}
