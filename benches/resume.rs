//! Resume figures (issue 9): `cargo bench --bench resume`.
//!
//! 1. The fold's throughput: `RunModel` with `OutputKeep::None` over 1,000,000 stored events
//!    (decoded envelopes, as `RunStore::events` returns them), best of 5. Target ≥ 1,000,000
//!    events/s.
//! 2. Resume of a 10,000-task run with 5,000 tasks done: a real run store, lock file and
//!    stored workflow in a temp folder, written as a crashed `flightdeck run` leaves them;
//!    then `Runtime::resume_run`, timed until the first new attempt starts (its
//!    `task_started` on the bus), and with the runtime's start before it. Target ≤ 200 ms.
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
    resume_latency();
}

fn planned(i: usize) -> PlannedTask {
    PlannedTask {
        task: TaskId::new(format!("t{i}")),
        description: format!("Step {i}"),
        agent: AgentId::new("worker"),
        score: None,
        depends_on: Vec::new(),
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
    let mut finished = 0;
    for _ in 0..5 {
        let began = Instant::now();
        let model = RunModel::from_events(&events, OutputKeep::None);
        best = best.min(began.elapsed());
        finished = model.progress().0;
    }
    assert_eq!(finished, tasks);
    let rate = events.len() as f64 / best.as_secs_f64();
    println!(
        "fold: {} events ({tasks} tasks) in {:.1} ms: {:.2} M events/s (best of 5, OutputKeep::None)",
        events.len(),
        best.as_secs_f64() * 1000.0,
        rate / 1e6
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
    for i in 0..RESUME_TASKS {
        writeln!(workflow, "  - {{id: t{i}, description: Step {i}, agent: worker}}").unwrap();
    }
    let file = root.join("bench.yaml");
    std::fs::write(&file, workflow).unwrap();
    file
}

fn resume_latency() {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut firsts = Vec::new();
    let mut with_start = Vec::new();
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
    println!(
        "resume: {RESUME_TASKS}-task run, {RESUME_DONE} done: first new attempt {:.1} ms after \
         resume_run (median of 5; min {:.1}, max {:.1}); {:.1} ms including the runtime's start",
        firsts[2].as_secs_f64() * 1000.0,
        firsts[0].as_secs_f64() * 1000.0,
        firsts[4].as_secs_f64() * 1000.0,
        with_start[2].as_secs_f64() * 1000.0,
    );
}
