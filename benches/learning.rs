//! What learning costs: recording outcomes as the store appends events, and reading them
//! back for planning and `agents stats`.
//!
//! `cargo bench --bench learning`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use flightdeck::event::{Envelope, Event, OutputStream, PlannedTask};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId};
use flightdeck::learning::{History, LearningSettings, Stats};
use flightdeck::store::{MAX_BATCH, RunStore};

fn main() {
    divan::main();
}

const TASKS: usize = MAX_BATCH / 6 + 1;

fn agent(i: usize) -> AgentId {
    AgentId::new(format!("agent-{}", i % 20))
}

/// The ~6 events one task produces, on a real or a simulated backend.
fn task_events(i: usize, simulated: bool) -> [Event; 6] {
    let task = TaskId::new(format!("t{i}"));
    let agent = agent(i);
    let instance = InstanceId(i as u64);
    [
        Event::TaskReady { task: task.clone() },
        Event::InstanceReserved { instance, agent: agent.clone() },
        Event::TaskStarted {
            task: task.clone(),
            agent: agent.clone(),
            attempt: 1,
            instance,
            backend: if simulated { "sim" } else { "cli" }.into(),
            simulated,
        },
        Event::TaskOutput {
            task: task.clone(),
            stream: OutputStream::Stdout,
            text: "reviewing the module layout".into(),
        },
        Event::TaskSucceeded {
            task,
            agent: agent.clone(),
            attempt: 1,
            duration_ms: 412,
            output: "done: split the parser into lexer and grammar".into(),
            usage: None,
            simulated,
            details: flightdeck::event::AnswerDetails::default(),
        },
        Event::InstanceIdle { instance, agent },
    ]
}

fn run_started() -> Event {
    Event::RunStarted {
        workflow: "bench".into(),
        file: PathBuf::from("workflows/bench.yaml"),
        goal: None,
        max_parallel: 8,
        fail_fast: false,
        simulated: false,
        tasks: (0..TASKS)
            .map(|i| PlannedTask {
                task: TaskId::new(format!("t{i}")),
                description: format!("Review the parser module {i} and split the grammar").into(),
                agent: agent(i),
                score: None,
                depends_on: vec![].into(),
                layer: 0,
                timeout_ms: 1000,
                retries: 0,
            })
            .collect(),
    }
}

/// One transaction of [`MAX_BATCH`] events (about 680 attempts); the counter reports
/// events per second. `simulated = false` records an outcome per attempt.
#[divan::bench(args = [true, false], sample_count = 30, sample_size = 1)]
fn append_batch_of_4096(bencher: Bencher, simulated: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RunStore::open(dir.path().join("runs.db")).unwrap();
    let mut seq = 0u64;
    let mut runs = 0u64;
    bencher
        .counter(ItemsCount::new(MAX_BATCH))
        .with_inputs(|| {
            runs += 1;
            let run = RunId::new(format!("bench-{runs}"));
            std::iter::once(run_started())
                .chain((0..TASKS).flat_map(|i| task_events(i, simulated)))
                .take(MAX_BATCH)
                .map(|event| {
                    seq += 1;
                    Arc::new(Envelope { seq, ts_ms: seq, run_id: Some(run.clone()), event })
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|batch| store.append_batch(&batch).unwrap());
}

/// A store holding `outcomes` real outcomes of 20 agents.
fn store_with(outcomes: usize) -> (tempfile::TempDir, RunStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RunStore::open(dir.path().join("runs.db")).unwrap();
    let mut seq = 0u64;
    let now = flightdeck::bus::now_ms();
    for chunk in 0..outcomes.div_ceil(TASKS) {
        let run = RunId::new(format!("r{chunk}"));
        let events: Vec<Arc<Envelope>> = std::iter::once(run_started())
            .chain((0..TASKS).flat_map(|i| task_events(i, false)))
            .map(|event| {
                seq += 1;
                let ts_ms = now - 3_600_000 * (chunk as u64);
                Arc::new(Envelope { seq, ts_ms, run_id: Some(run.clone()), event })
            })
            .collect();
        store.append_batch(&events).unwrap();
    }
    (dir, store)
}

/// What planning reads: the recent outcomes folded into per-agent rates.
#[divan::bench(args = [10_000, 100_000], sample_count = 10, sample_size = 1)]
fn load_history(bencher: Bencher, outcomes: usize) {
    let (_dir, store) = store_with(outcomes);
    let now = flightdeck::bus::now_ms();
    bencher
        .counter(ItemsCount::new(outcomes))
        .bench_local(|| History::load(&store, LearningSettings::default(), now).unwrap());
}

/// `agents stats`: every outcome read and counted.
#[divan::bench(args = [100_000], sample_count = 10, sample_size = 1)]
fn stats(bencher: Bencher, outcomes: usize) {
    let (_dir, store) = store_with(outcomes);
    let now = flightdeck::bus::now_ms();
    bencher.counter(ItemsCount::new(outcomes)).bench_local(|| {
        let all = store.outcomes_since(0).unwrap();
        let history = History::from_outcomes(&all, LearningSettings::default(), now);
        Stats::of(&all, &history)
    });
}
