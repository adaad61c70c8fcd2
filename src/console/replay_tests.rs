//! Replay tests: the state at the cursor is the fold of the events before it, whichever way
//! the cursor got there; nothing can be sent.

use std::path::PathBuf;
use std::sync::Arc;

use insta::assert_snapshot;

use super::{Replay, Seek};
use crate::console::keys::{self, Action, KEYMAP};
use crate::console::panes::testing::{self, Fixture};
use crate::console::reducer::{Effect, Input, reduce};
use crate::console::state::{LineEdit, State, UserRole};
use crate::event::{Envelope, Event};

fn base(width: u16, height: u16) -> State {
    let mut state = State::new("alice", "viewer", PathBuf::from("/project"), "dark");
    reduce(&mut state, Input::Resize { width, height });
    state
}

/// The state a live console has after exactly these events.
fn folded(events: &[Arc<Envelope>], width: u16, height: u16) -> State {
    let mut state = base(width, height);
    for envelope in events {
        reduce(&mut state, Input::Event(Arc::clone(envelope)));
    }
    state
}

fn assert_same_picture(replayed: &State, live: &State, at: usize) {
    assert_eq!(replayed.run().map(|r| &r.model), live.run().map(|r| &r.model), "run at {at}");
    assert_eq!(replayed.pool, live.pool, "pool at {at}");
    assert_eq!(replayed.breakers, live.breakers, "breakers at {at}");
    assert_eq!(replayed.audit.entries, live.audit.entries, "audit at {at}");
    assert_eq!(replayed.approvals, live.approvals, "approvals at {at}");
}

#[test]
fn the_picture_at_the_cursor_is_the_fold_of_the_events_before_it() {
    let events = testing::envelopes(Fixture::Failed);
    assert!(events.len() > 20);
    // A snapshot every 4 events: stepping back crosses many.
    let mut replay = Replay::open_every(events.clone(), base(120, 40), 4);
    replay.seek(Seek::End);
    assert_eq!(replay.position(), events.len());
    assert_same_picture(&replay.state, &folded(&events, 120, 40), events.len());
    for at in (0..events.len()).rev() {
        replay.seek(Seek::Step(-1));
        assert_eq!(replay.position(), at);
        assert_same_picture(&replay.state, &folded(&events[..at], 120, 40), at);
    }
    replay.seek_to(7);
    replay.seek(Seek::Step(5));
    assert_same_picture(&replay.state, &folded(&events[..12], 120, 40), 12);
    let cursor = replay.state.replay.expect("in replay");
    assert_eq!((cursor.position, cursor.total), (12, events.len()));
    assert_eq!(cursor.at_ms, events[11].ts_ms);
}

#[test]
fn a_task_jump_lands_just_after_a_task_ended() {
    let events = testing::envelopes(Fixture::Busy);
    let mut replay = Replay::open(events.clone(), base(120, 40));
    replay.seek(Seek::Task { forward: true });
    let last = &events[replay.position() - 1].event;
    assert!(matches!(last, Event::TaskSucceeded { .. } | Event::TaskFailed { .. }), "{last:?}");
    let first_end = replay.position();
    replay.seek(Seek::Task { forward: true });
    assert!(replay.position() > first_end);
    replay.seek(Seek::Task { forward: false });
    assert_eq!(replay.position(), first_end);
    replay.seek(Seek::Start);
    assert_eq!(replay.position(), 0);
    assert!(replay.state.run().is_none());
}

/// Every key and every command line: nothing reaches the gate, and no key that changes
/// anything is offered.
#[test]
fn nothing_can_be_sent_from_a_replay() {
    let events = testing::envelopes(Fixture::Prompt);
    let mut replay = Replay::open(events, base(120, 40));
    replay.seek(Seek::End);
    let state = &mut replay.state;
    assert_eq!(state.role, UserRole::Viewer);
    assert!(state.prompt.is_none(), "no approval prompt opens in a replay");
    for scope in keys::active_scopes(state) {
        assert!(keys::bindings(scope, state.role).all(|b| !b.danger), "{scope:?}");
    }
    let mut sent = Vec::new();
    for binding in KEYMAP {
        sent.extend(reduce(state, Input::Action(binding.action)));
        sent.extend(reduce(state, Input::Action(Action::ConfirmYes)));
    }
    for line in ["cancel", "retry design-api", "approve deploy-staging", "spawn x", "reload"] {
        reduce(state, Input::Action(Action::OpenCommandLine));
        for c in line.chars() {
            reduce(state, Input::Action(Action::CommandLineEdit(LineEdit::Insert(c))));
        }
        sent.extend(reduce(state, Input::Action(Action::SubmitCommandLine)));
        sent.extend(reduce(state, Input::Action(Action::ConfirmYes)));
    }
    let sends: Vec<&Effect> = sent.iter().filter(|e| matches!(e, Effect::Send(_))).collect();
    assert!(sends.is_empty(), "{sends:?}");
}

#[test]
fn replay_snapshots() {
    let theme = testing::theme();
    for (w, h) in [(160, 45), (80, 24), (60, 16)] {
        let mut replay = Replay::open(testing::envelopes(Fixture::Failed), base(w, h));
        replay.seek_to(18);
        assert_snapshot!(
            format!("replay_{w}x{h}"),
            testing::render_screen(&replay.state, &theme, w, h)
        );
    }
}

/// A stored run whose tasks ran on a process, a coding agent, an HTTP backend and the
/// simulator; each succeeded.
fn mixed_backends() -> Vec<Arc<Envelope>> {
    use crate::event::{AnswerDetails, PlannedTask};
    use crate::ids::{AgentId, InstanceId, RunId, TaskId};
    let tasks = [
        ("build", "process"),
        ("refactor", "claude-code"),
        ("notify", "http"),
        ("estimate", "sim"),
    ];
    let plan = tasks
        .iter()
        .enumerate()
        .map(|(i, (task, _))| PlannedTask {
            task: TaskId::new(*task),
            description: format!("{task} step").into(),
            agent: AgentId::new("backend-architect"),
            score: None,
            depends_on: (if i == 0 { vec![] } else { vec![TaskId::new("build")] }).into(),
            layer: usize::from(i > 0),
            timeout_ms: 60_000,
            retries: 0,
        })
        .collect();
    let mut events = vec![Event::RunStarted {
        workflow: "mixed".into(),
        file: "workflows/mixed.yaml".into(),
        goal: None,
        max_parallel: 4,
        fail_fast: false,
        simulated: false,
        tasks: plan,
    }];
    for (i, (task, backend)) in tasks.iter().enumerate() {
        let simulated = *backend == "sim";
        events.push(Event::TaskStarted {
            task: TaskId::new(*task),
            agent: AgentId::new("backend-architect"),
            attempt: 1,
            instance: InstanceId(i as u64 + 1),
            backend: (*backend).to_owned(),
            simulated,
        });
        events.push(Event::TaskSucceeded {
            task: TaskId::new(*task),
            agent: AgentId::new("backend-architect"),
            attempt: 1,
            duration_ms: 1_000,
            output: "done".into(),
            usage: None,
            simulated,
            details: AnswerDetails::default(),
        });
    }
    events.push(Event::RunFinished {
        status: crate::event::RunStatus::Succeeded,
        succeeded: 4,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 8_000,
    });
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = i as u64 + 1;
            let ts_ms = testing::T0 + seq * 1_000;
            Arc::new(Envelope { seq, ts_ms, run_id: Some(RunId::new("r-mixed")), event })
        })
        .collect()
}

/// In replay, a task that ran on a process, a coding agent or HTTP carries the mark on its
/// node, the simulated one does not, and the DAG's border explains the mark; live, no node
/// is marked.
#[test]
fn replayed_tasks_that_could_have_had_side_effects_are_marked_on_the_node() {
    let theme = testing::theme();
    for (w, h) in [(160, 45), (80, 24), (60, 16)] {
        let mut replay = Replay::open(mixed_backends(), base(w, h));
        replay.seek(Seek::End);
        let screen = testing::render_screen(&replay.state, &theme, w, h);
        assert_snapshot!(format!("replay_side_effects_{w}x{h}"), screen);
    }
    let mut replay = Replay::open(mixed_backends(), base(160, 45));
    replay.seek(Seek::End);
    let shown = testing::render_screen(&replay.state, &theme, 160, 45).to_string();
    for task in ["build ⚠", "refactor ⚠", "notify ⚠"] {
        assert!(shown.contains(task), "{task} marked:\n{shown}");
    }
    assert!(shown.contains("estimate") && !shown.contains("estimate ⚠"), "{shown}");
    assert!(shown.contains("⚠ side effects possible"), "the legend:\n{shown}");
    // Before the tasks ran, nothing is marked.
    replay.seek_to(1);
    let before = testing::render_screen(&replay.state, &theme, 160, 45).to_string();
    assert!(!before.contains('⚠'), "{before}");
    // Live, the same run carries no mark.
    let live = folded(&mixed_backends(), 160, 45);
    let live = testing::render_screen(&live, &theme, 160, 45).to_string();
    assert!(!live.contains('⚠'), "{live}");
    // The help explains it (in replay only).
    let help = crate::console::panes::help::lines(&replay.state);
    let text: Vec<String> =
        help.iter().map(|l| l.iter().map(|(_, t)| t.as_str()).collect()).collect();
    assert!(text.iter().any(|l| l.contains("⚠") && l.contains("real backend")), "{text:#?}");
    assert!(text.iter().any(|l| l.contains("leave the replay")), "{text:#?}");
}

/// Memory of a replay's snapshots (a figure, not a check): `cargo test --lib
/// replay_memory_10k -- --ignored --nocapture`. The run of the console bench: 10,000 tasks
/// on a process backend, 30,001 events, the cursor at the end.
#[test]
#[ignore = "prints a figure"]
fn replay_memory_10k() {
    use crate::event::{AnswerDetails, PlannedTask};
    use crate::ids::{AgentId, InstanceId, RunId, TaskId};
    fn rss_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
    let (layers, width) = (100, 100);
    let mut tasks = Vec::new();
    for layer in 0..layers {
        for i in 0..width {
            let mut deps = Vec::new();
            if layer > 0 {
                deps.push(TaskId::new(format!("task-{}-{}", layer - 1, i)));
                deps.push(TaskId::new(format!("task-{}-{}", layer - 1, (i + 7) % width)));
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
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.task.clone()).collect();
    let mut events = vec![Event::RunStarted {
        workflow: "big".into(),
        file: "big.yaml".into(),
        goal: None,
        max_parallel: 8,
        fail_fast: false,
        simulated: false,
        tasks,
    }];
    for (i, task) in ids.into_iter().enumerate() {
        events.push(Event::TaskReady { task: task.clone() });
        events.push(Event::TaskStarted {
            task: task.clone(),
            agent: AgentId::new("agent-1"),
            attempt: 1,
            instance: InstanceId(i as u64 % 8),
            backend: "process".into(),
            simulated: false,
        });
        events.push(Event::TaskSucceeded {
            task,
            agent: AgentId::new("agent-1"),
            attempt: 1,
            duration_ms: 10,
            output: "ok".into(),
            usage: None,
            simulated: false,
            details: AnswerDetails::default(),
        });
    }
    let run = Some(RunId::new("r-big"));
    let events: Vec<Arc<Envelope>> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = i as u64 + 1;
            Arc::new(Envelope { seq, ts_ms: testing::T0 + seq * 10, run_id: run.clone(), event })
        })
        .collect();
    let before = rss_kb();
    let mut replay = Replay::open(events, base(160, 45));
    let opened = rss_kb();
    replay.seek(Seek::End);
    let at_end = rss_kb();
    let snapshots = replay.len() / super::SNAPSHOT_EVERY;
    println!(
        "replay of {} events: opened +{} MB, at the end with {snapshots} snapshots +{} MB \
         (about {} MB a snapshot)",
        replay.len(),
        opened.saturating_sub(before) / 1024,
        at_end.saturating_sub(before) / 1024,
        at_end.saturating_sub(opened) / 1024 / (snapshots as u64 + 1),
    );
}

/// Snapshots every 64 events while they fit the budget; a bigger run spaces them out.
#[test]
fn snapshots_are_spaced_to_fit_the_memory_budget() {
    use super::{SNAPSHOT_EVERY, SNAPSHOT_TASK_BUDGET, snapshot_spacing};
    assert_eq!(snapshot_spacing(40, 7), SNAPSHOT_EVERY);
    // The console bench's run: 10,000 tasks, 30,001 events, 468 snapshots.
    assert_eq!(snapshot_spacing(30_001, 10_000), SNAPSHOT_EVERY);
    // 100,000 tasks: 80 snapshots over 300,001 events.
    let every = snapshot_spacing(300_001, 100_000);
    assert_eq!(every, 3_751);
    assert!(300_001 / every * 100_000 <= SNAPSHOT_TASK_BUDGET);
    // More tasks than the budget: one snapshot (the start) and the fold from it.
    assert_eq!(snapshot_spacing(20_000_000, 10_000_000), 20_000_000);
}
