//! Run store and audit log throughput.
//!
//! `cargo bench --bench store`. Files live in a temp folder on the same disk as `/tmp`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use flightdeck::audit::{AuditEntry, AuditLog, Outcome};
use flightdeck::bus::EventBus;
use flightdeck::event::{Envelope, Event, OutputStream, PlannedTask, RunStatus};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
use flightdeck::store::{MAX_BATCH, RunStore, spawn_writer};

fn main() {
    divan::main();
}

/// The ~6 events one simulated task produces.
fn task_events(i: usize) -> [Event; 6] {
    let task = TaskId::new(format!("t{i}"));
    let agent = AgentId::new("backend-architect");
    let instance = InstanceId(i as u64);
    [
        Event::TaskReady { task: task.clone() },
        Event::InstanceReserved { instance, agent: agent.clone() },
        Event::TaskStarted {
            task: task.clone(),
            agent: agent.clone(),
            attempt: 1,
            instance,
            backend: "sim".into(),
            simulated: true,
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
            simulated: true,
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
        simulated: true,
        tasks: vec![PlannedTask {
            task: TaskId::new("t0"),
            description: "x".into(),
            agent: AgentId::new("backend-architect"),
            score: None,
            depends_on: vec![].into(),
            layer: 0,
            timeout_ms: 1000,
            retries: 0,
        }],
    }
}

/// One full transaction of [`MAX_BATCH`] events; the counter reports rows per second.
#[divan::bench(sample_count = 30, sample_size = 1)]
fn append_batch_of_4096(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RunStore::open(dir.path().join("runs.db")).unwrap();
    let run = RunId::new("bench");
    let mut seq = 0u64;
    bencher
        .counter(ItemsCount::new(MAX_BATCH))
        .with_inputs(|| {
            (0..=MAX_BATCH / 6)
                .flat_map(task_events)
                .take(MAX_BATCH)
                .map(|event| {
                    seq += 1;
                    Arc::new(Envelope { seq, ts_ms: seq, run_id: Some(run.clone()), event })
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|batch| store.append_batch(&batch).unwrap());
}

/// Tasks' events published on the bus and committed by the writer: the end-to-end cost the
/// engine pays per task (publish) plus the time until it is on disk (flush).
#[divan::bench(args = [1000, 10_000], sample_count = 10, sample_size = 1)]
fn publish_and_flush_tasks(bencher: Bencher, tasks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let bus = EventBus::new();
    let writer =
        spawn_writer(RunStore::open(dir.path().join("runs.db")).unwrap(), bus.sink()).unwrap();
    let run = RunId::new("bench");
    bus.publish(Some(&run), run_started());
    bencher.counter(ItemsCount::new(tasks)).bench_local(|| {
        for i in 0..tasks {
            for event in task_events(i) {
                bus.publish(Some(&run), event);
            }
        }
        runtime.block_on(writer.flush()).unwrap();
    });
    bus.publish(
        Some(&run),
        Event::RunFinished {
            status: RunStatus::Succeeded,
            succeeded: 1,
            failed: 0,
            skipped: 0,
            cancelled: 0,
            duration_ms: 1,
        },
    );
    runtime.block_on(writer.close()).unwrap();
}

/// One gate decision's audit record: one write and one `sync_data`.
#[divan::bench(sample_count = 50, sample_size = 1)]
fn audit_append_with_fsync(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path().join("audit.jsonl")).unwrap();
    let entry = AuditEntry {
        user: UserId::new("ann"),
        role: "operator".into(),
        action: "cancel_run".into(),
        outcome: Outcome::Accepted,
        detail: serde_json::json!({"command": {"command": "cancel_run", "run": "r1"}}),
    };
    bencher.bench_local(|| log.append(&entry).unwrap());
}
