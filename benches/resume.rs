//! Resume figures (issue 9): `cargo bench --bench resume`.
//!
//! 1. The fold's throughput: `RunModel` with `OutputKeep::None` over 1,000,000 stored events
//!    (decoded envelopes, as `RunStore::events` returns them), best of 5. Target ≥ 1,000,000
//!    events/s. Then the same events from a run store: written, read back and folded by
//!    `RunStore::fold_run` (decoding included; the 166,666 `task_output` lines, which a fold
//!    without output ignores, are skipped unread), best of 3.
//! 2. Resume of a 10,000-task run with 5,000 tasks done: a real run store, lock file and
//!    stored workflow in a temp folder, written as a crashed `flightdeck run` leaves them;
//!    then `Runtime::resume_run`, timed until the first new attempt starts (its
//!    `task_started` on the bus), and with the runtime's start before it. Target ≤ 200 ms.
//!    Apart, the part of it that reads the run: `RunStore::fold_run` (what resume reads) and
//!    `RunStore::events` (every event decoded, what `runs events` and replay read).
//!
//! Plain timings rather than divan: each figure is one long operation measured a few times.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck::config::Settings;
use flightdeck::event::{AnswerDetails, Envelope, Event, OutputStream, PlannedTask};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId};
use flightdeck::model::{OutputKeep, RunModel};
use flightdeck::resume::StoredWorkflow;
use flightdeck::runtime::{Runtime, RuntimeOptions};
use flightdeck::store::{RUNS_FILE, RunLock, RunStore};

const FOLD_EVENTS: usize = 1_000_000;
const RESUME_TASKS: usize = 10_000;
const RESUME_DONE: usize = 5_000;

fn main() {
    fold_throughput();
    stored_fold_throughput();
    resume_latency();
}

fn planned(i: usize) -> PlannedTask {
    PlannedTask {
        task: TaskId::new(format!("t{i}")),
        description: format!("Step {i}").into(),
        agent: AgentId::new("worker"),
        score: None,
        depends_on: Vec::new().into(),
        layer: 0,
        timeout_ms: 60_000,
        retries: 2,
    }
}

fn run_started(tasks: usize, file: &Path) -> Event {
    Event::RunStarted {
        workflow: "bench".into(),
        file: file.to_owned(),
        goal: None,
        max_parallel: 8,
        fail_fast: false,
        simulated: true,
        tasks: (0..tasks).map(planned).collect(),
    }
}

/// The events of one task that ran once and succeeded, as a run stores them.
fn task_events(i: usize) -> [Event; 6] {
    let task = TaskId::new(format!("t{i}"));
    let agent = AgentId::new("worker");
    let instance = InstanceId(i as u64);
    [
        Event::TaskReady { task: task.clone() },
        Event::TaskStarted {
            task: task.clone(),
            agent: agent.clone(),
            attempt: 1,
            instance,
            backend: "sim".into(),
            simulated: true,
        },
        Event::InstanceWorking { instance, agent: agent.clone(), task: Some(task.clone()) },
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
            details: AnswerDetails::default(),
        },
        Event::InstanceIdle { instance, agent },
    ]
}

fn envelopes(run: &RunId, tasks: usize, done: usize, file: &Path) -> Vec<Envelope> {
    let mut seq = 0;
    let mut envelope = |event| {
        seq += 1;
        Envelope { seq, ts_ms: 1_700_000_000_000 + seq, run_id: Some(run.clone()), event }
    };
    let mut all = vec![envelope(run_started(tasks, file))];
    for i in 0..done {
        all.extend(task_events(i).into_iter().map(&mut envelope));
    }
    all
}

fn fold_throughput() {
    let run = RunId::new("r-fold");
    let tasks = FOLD_EVENTS / 6;
    let events = envelopes(&run, tasks, tasks, Path::new("bench.yaml"));
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut finished = 0;
    for _ in 0..5 {
        let began = Instant::now();
        let cpu = thread_cpu();
        let model = RunModel::from_events(&events, OutputKeep::None);
        best_cpu = best_cpu.min(thread_cpu().saturating_sub(cpu));
        best = best.min(began.elapsed());
        finished = model.progress().0;
    }
    assert_eq!(finished, tasks);
    let rate = events.len() as f64 / best.as_secs_f64();
    println!(
        "fold: {} events ({tasks} tasks) in {:.1} ms: {:.2} M events/s (best of 5, \
         OutputKeep::None); CPU {:.1} ms: {:.2} M events/s of CPU",
        events.len(),
        best.as_secs_f64() * 1000.0,
        rate / 1e6,
        best_cpu.as_secs_f64() * 1000.0,
        events.len() as f64 / best_cpu.as_secs_f64() / 1e6
    );
}

/// CPU time this thread has used (user and system): a figure the machine's load does not
/// stretch, beside the wall time.
fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    time(usage.user_time()) + time(usage.system_time())
}

/// The same 1,000,000 events written to a run store, then read back and folded by
/// `RunStore::fold_run` (decoding included), best of 3.
fn stored_fold_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunId::new("r-stored-fold");
    let tasks = FOLD_EVENTS / 6;
    let mut store = RunStore::open(dir.path().join(RUNS_FILE)).unwrap();
    let events: Vec<Arc<Envelope>> =
        envelopes(&run, tasks, tasks, Path::new("bench.yaml")).into_iter().map(Arc::new).collect();
    for batch in events.chunks(4096) {
        store.append_batch(batch).unwrap();
    }
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    for _ in 0..3 {
        let began = Instant::now();
        let cpu = thread_cpu();
        let model = store.fold_run(&run, OutputKeep::None).unwrap();
        best_cpu = best_cpu.min(thread_cpu().saturating_sub(cpu));
        best = best.min(began.elapsed());
        assert_eq!(model.progress(), (tasks, tasks));
    }
    println!(
        "fold from the store: {} events ({tasks} tasks) in {:.1} ms: {:.2} M events/s (best of \
         3, RunStore::fold_run, reading and decoding included); CPU {:.1} ms: {:.2} M events/s \
         of CPU",
        events.len(),
        best.as_secs_f64() * 1000.0,
        events.len() as f64 / best.as_secs_f64() / 1e6,
        best_cpu.as_secs_f64() * 1000.0,
        events.len() as f64 / best_cpu.as_secs_f64() / 1e6
    );
    // Where that time goes: SQLite's read of the blocks alone, every line decoded by serde
    // (the reader before the store's own decoder; all but the plan's), and by
    // `RunStore::events`.
    let conn = rusqlite::Connection::open(dir.path().join(RUNS_FILE)).unwrap();
    let read = |decode: bool| {
        let began = Instant::now();
        let mut select = conn.prepare("SELECT body FROM event_blocks ORDER BY id").unwrap();
        let mut rows = select.query([]).unwrap();
        let mut lines = 0;
        while let Some(row) = rows.next().unwrap() {
            let body = row.get_ref(0).unwrap().as_str().unwrap();
            for line in body.lines() {
                // serde cannot read a plan the store keeps in columns: that line alone is
                // left out of its pass.
                if decode && !line.contains(r#""type":"run_started""#) {
                    let envelope: Envelope = serde_json::from_str(line).unwrap();
                    std::hint::black_box(envelope);
                }
                lines += 1;
            }
        }
        assert_eq!(lines, events.len());
        began.elapsed()
    };
    let raw = read(false);
    let serde = read(true);
    let began = Instant::now();
    assert_eq!(store.events(&run).unwrap().len(), events.len());
    let decoded = began.elapsed();
    println!(
        "reading the 1,000,000 stored events: SQLite alone {:.0} ms, decoded by serde {:.0} ms, \
         by RunStore::events {:.0} ms",
        raw.as_secs_f64() * 1000.0,
        serde.as_secs_f64() * 1000.0,
        decoded.as_secs_f64() * 1000.0,
    );
}

/// A project with a sim backend slow enough that nothing finishes while measuring.
fn project(root: &Path) -> std::path::PathBuf {
    std::fs::write(
        root.join("flightdeck.yaml"),
        "default_backend: sim\nusers:\n  bench: admin\nbackends:\n  sim:\n    kind: sim\n    latency_min: 1s\n    \
         latency_max: 1s\n",
    )
    .unwrap();
    let agents = root.join("agentpool/core");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("worker.md"), "---\nname: worker\ndescription: W\n---\nHi.\n")
        .unwrap();
    let mut workflow = String::from("name: bench\nmax_parallel: 8\ntasks:\n");
    // Block style, as workflow files are written (and read by the planner's quick reader);
    // flow-style entries (`- {id: t0, …}`) go through serde_norway, about 60 ms more here.
    for i in 0..RESUME_TASKS {
        writeln!(workflow, "  - id: t{i}\n    description: Step {i}\n    agent: worker").unwrap();
    }
    let file = root.join("bench.yaml");
    std::fs::write(&file, workflow).unwrap();
    file
}

fn resume_latency() {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut firsts = Vec::new();
    let mut with_start = Vec::new();
    let mut folds = Vec::new();
    let mut reads = Vec::new();
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let file = project(root);
        let data = root.join(".flightdeck");
        // What a `flightdeck run` killed halfway leaves: its events, its stored workflow and
        // its lock file, free.
        let run = RunId::new(format!("r-bench-{round}"));
        {
            let lock = RunLock::claim_new(&data, &run).unwrap();
            StoredWorkflow::capture(&file, None, Some(8)).unwrap().save(&data, &run).unwrap();
            let mut store = RunStore::open(data.join(RUNS_FILE)).unwrap();
            let events: Vec<Arc<Envelope>> = envelopes(&run, RESUME_TASKS, RESUME_DONE, &file)
                .into_iter()
                .map(Arc::new)
                .collect();
            for batch in events.chunks(4096) {
                store.append_batch(batch).unwrap();
            }
            drop(lock);
            let began = Instant::now();
            let model = store.fold_run(&run, OutputKeep::None).unwrap();
            folds.push(began.elapsed());
            assert_eq!(model.progress(), (RESUME_DONE, RESUME_TASKS));
            let began = Instant::now();
            let events = store.events(&run).unwrap();
            reads.push(began.elapsed());
            assert_eq!(events.len(), 1 + RESUME_DONE * 6);
        }
        let settings = Settings::load(root).unwrap();
        let (first, whole) = tokio.block_on(async {
            let began = Instant::now();
            let runtime = Runtime::start(RuntimeOptions {
                project_dir: root.to_owned(),
                data_dir: data.clone(),
                settings,
                watch_agents: false,
            })
            .unwrap();
            let mut events = runtime.bus().sink();
            let resume_began = Instant::now();
            // Shutting down cancels it (through the gate, as the system user).
            let _resumed = runtime.resume_run("bench", run.as_str(), None).unwrap();
            loop {
                let envelope = events.recv().await.unwrap();
                if matches!(envelope.event, Event::TaskStarted { .. }) {
                    break;
                }
            }
            let times = (resume_began.elapsed(), began.elapsed());
            runtime.shutdown().await;
            times
        });
        firsts.push(first);
        with_start.push(whole);
    }
    firsts.sort();
    with_start.sort();
    folds.sort();
    reads.sort();
    println!(
        "resume: {RESUME_TASKS}-task run, {RESUME_DONE} done: first new attempt {:.1} ms after \
         resume_run (median of 5; min {:.1}, max {:.1}); {:.1} ms including the runtime's start",
        firsts[2].as_secs_f64() * 1000.0,
        firsts[0].as_secs_f64() * 1000.0,
        firsts[4].as_secs_f64() * 1000.0,
        with_start[2].as_secs_f64() * 1000.0,
    );
    println!(
        "resume: reading the run back (median of 5): fold_run {:.1} ms, events {:.1} ms",
        folds[2].as_secs_f64() * 1000.0,
        reads[2].as_secs_f64() * 1000.0,
    );
}
