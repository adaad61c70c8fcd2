//! The crash test: `flightdeck run` killed with SIGKILL at 200 seeded points over a 24-task
//! workflow of real process agents, then `flightdeck resume`. Each agent appends its task
//! and attempt to a log file outside the store before it does anything, so the log counts
//! every execution, including those the store never heard of.
//!
//! Kill points, a quarter of the seeds each: after the N-th event `run --json` printed
//! (between events), once the K-th attempt has begun (inside an attempt), the instant the
//! store's write-ahead log grows for the N-th time (during a batch commit), and at a random
//! time offset. Headless runs cannot wait for a reviewer (they refuse approvals at once), so
//! a kill while a task waits for approval is covered by the fold and the scheduler instead
//! (`resume_waits_again_for_a_reviewer_with_the_original_request_time` in tests/resume.rs).
//!
//! For every seed: `PRAGMA integrity_check` is ok; a task that had succeeded before the kill
//! was executed exactly once in total; any other task at most twice (once more than before);
//! the final outputs equal those of an uninterrupted run; the audit log's chain verifies; no
//! agent process of the run is left alive.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flightdeck::event::{Envelope, Event};
use flightdeck::ids::{RunId, TaskId};
use flightdeck::model::{OutputKeep, RunModel, TaskStatus};
use flightdeck::store::{RUNS_FILE, RunState, RunStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

const SEEDS: usize = 200;
fn seeds() -> usize {
    std::env::var("CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS)
}
/// Seeds run side by side; the machine has few cores and each seed is mostly waiting.
const WORKERS: usize = 3;
const LAYERS: usize = 6;
const WIDTH: usize = 4;
const TASKS: usize = LAYERS * WIDTH;

/// Appends `task attempt` to the run's log, then answers with a checksum of its whole
/// prompt, which holds its dependencies' outputs: a wrong or missing input changes every
/// output downstream. A helper it starts in the background outlives it when it is killed
/// (the parent-death signal reaches only the agent itself): `resume` must kill it.
const AGENT: &str = r#"echo "$FLIGHTDECK_TASK $FLIGHTDECK_ATTEMPT" >> "$LOGDIR/$FLIGHTDECK_RUN.log"
sleep 30 </dev/null >/dev/null 2>&1 &
helper=$!
sum=$(cksum)
sleep 0.02
kill $helper
echo "$FLIGHTDECK_TASK:$sum"
"#;

struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(root.join("agent.sh"), AGENT).unwrap();
        let settings = format!(
            "default_role: viewer\nusers:\n  ann: admin\ndefault_backend: local\nbackends:\n  \
             local:\n    kind: process\n    command: [sh, {}]\n    env:\n      LOGDIR: {}\n",
            root.join("agent.sh").display(),
            root.join("logs").display()
        );
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/core");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("worker.md"),
            "---\nname: worker\ndescription: Test worker\nbackend: local\n---\nYou work.\n",
        )
        .unwrap();
        // Six layers of four; each task needs two of the layer before.
        let mut workflow = format!("name: crash\nmax_parallel: {WIDTH}\ntasks:\n");
        for layer in 0..LAYERS {
            for i in 0..WIDTH {
                let deps = if layer == 0 {
                    String::new()
                } else {
                    format!(
                        ", depends_on: [t{}-{i}, t{}-{}]",
                        layer - 1,
                        layer - 1,
                        (i + 1) % WIDTH
                    )
                };
                writeln!(
                    workflow,
                    "  - {{id: t{layer}-{i}, description: Step {layer} {i}, agent: worker{deps}}}"
                )
                .unwrap();
            }
        }
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(root.join("workflows/crash.yaml"), workflow).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, data_dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap()])
            .args(["--data-dir", data_dir.to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER");
        command
    }

    fn output(&self, data_dir: &Path, args: &[&str]) -> Output {
        self.command(data_dir, args).output().unwrap()
    }

    /// How many times each task of `run` was executed, from the agents' own log.
    fn executions(&self, run: &RunId) -> HashMap<String, usize> {
        let path = self.root().join("logs").join(format!("{run}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut counts = HashMap::new();
        for line in text.lines() {
            let task = line.split_whitespace().next().unwrap_or_default().to_owned();
            *counts.entry(task).or_insert(0) += 1;
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillAt {
    /// After the N-th event printed by `run --json`.
    Event(usize),
    /// Once the K-th attempt has written its log line.
    Attempt(usize),
    /// The instant the store's write-ahead log grows for the N-th time.
    Commit(usize),
    /// After this many milliseconds.
    Time(u64),
}

impl KillAt {
    fn kind(self) -> &'static str {
        match self {
            Self::Event(_) => "between events",
            Self::Attempt(_) => "inside an attempt",
            Self::Commit(_) => "during a store commit",
            Self::Time(_) => "at a time offset",
        }
    }

    fn pick(seed: usize, baseline: &Baseline) -> Self {
        let mut rng = StdRng::seed_from_u64(seed as u64);
        match seed % 4 {
            0 => Self::Event(rng.random_range(1..baseline.events)),
            1 => Self::Attempt(rng.random_range(1..=TASKS)),
            2 => Self::Commit(rng.random_range(1..baseline.commits.max(2))),
            _ => Self::Time(rng.random_range(0..baseline.took_ms.max(1))),
        }
    }
}

/// What an uninterrupted run gives.
struct Baseline {
    outputs: BTreeMap<TaskId, String>,
    events: usize,
    /// Times the write-ahead log grew while it ran (at least).
    commits: usize,
    took_ms: u64,
}

fn store(data_dir: &Path) -> RunStore {
    RunStore::open(data_dir.join(RUNS_FILE)).unwrap()
}

fn folded(events: &[Envelope]) -> RunModel {
    RunModel::from_events(events, OutputKeep::None)
}

fn outputs(model: &RunModel) -> BTreeMap<TaskId, String> {
    model.tasks.iter().map(|t| (t.id().clone(), t.result.clone().unwrap_or_default())).collect()
}

fn wal_size(data_dir: &Path) -> u64 {
    std::fs::metadata(data_dir.join(format!("{RUNS_FILE}-wal"))).map_or(0, |m| m.len())
}

fn baseline(project: &Project) -> Baseline {
    let data = project.root().join("baseline");
    let began = Instant::now();
    let mut child = project
        .command(&data, &["run", "workflows/crash.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().count());
    let (mut commits, mut last) = (0, 0);
    while child.try_wait().unwrap().is_none() {
        let size = wal_size(&data);
        if size != last {
            commits += 1;
            last = size;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took_ms = began.elapsed().as_millis() as u64;
    let events = reader.join().unwrap();
    let runs = store(&data).runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Succeeded, "the baseline run must succeed");
    let model = folded(&store(&data).events(&runs[0].run_id).unwrap());
    let outputs = outputs(&model);
    assert_eq!(outputs.len(), TASKS);
    assert!(outputs.values().all(|o| !o.is_empty()));
    Baseline { outputs, events, commits, took_ms }
}

/// Start `run` and SIGKILL it at `at`.
fn run_and_kill(project: &Project, data: &Path, at: KillAt) {
    let stdout_file = std::fs::File::create(data.with_extension("stdout")).unwrap();
    let mut command = project.command(data, &["run", "workflows/crash.yaml", "--json"]);
    command.stderr(Stdio::null());
    if matches!(at, KillAt::Event(_)) {
        command.stdout(Stdio::piped());
    } else {
        command.stdout(stdout_file);
    }
    let mut child = command.spawn().unwrap();
    let began = Instant::now();
    let give_up = Duration::from_secs(60);
    match at {
        KillAt::Event(n) => {
            let stdout = child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..n {
                if lines.next().is_none() {
                    break;
                }
            }
            kill(&mut child);
            return;
        }
        KillAt::Attempt(k) => {
            let log = project.root().join("logs");
            while began.elapsed() < give_up && child.try_wait().unwrap().is_none() {
                let lines = run_log_lines(&log, data);
                if lines >= k {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        KillAt::Commit(n) => {
            let (mut seen, mut last) = (0, wal_size(data));
            while began.elapsed() < give_up && child.try_wait().unwrap().is_none() {
                let size = wal_size(data);
                if size != last {
                    seen += 1;
                    last = size;
                    if seen >= n {
                        break;
                    }
                }
                std::hint::spin_loop();
            }
        }
        KillAt::Time(ms) => std::thread::sleep(Duration::from_millis(ms)),
    }
    kill(&mut child);
}

/// Lines in the agent log of the (only) run whose lock is in `data`.
fn run_log_lines(logs: &Path, data: &Path) -> usize {
    let Some(run) = lock_run(data) else { return 0 };
    std::fs::read_to_string(logs.join(format!("{run}.log"))).map_or(0, |t| t.lines().count())
}

/// The run id claimed in `data` (its lock file), stored or not.
fn lock_run(data: &Path) -> Option<String> {
    let entries = std::fs::read_dir(data.join("runs")).ok()?;
    entries.flatten().find_map(|e| {
        e.file_name().to_str().and_then(|n| n.strip_suffix(".lock")).map(str::to_owned)
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[derive(Debug, Default)]
struct Counts {
    seeds: usize,
    by_kind: BTreeMap<&'static str, usize>,
    resumed: usize,
    /// Killed before its `run_started` was stored: nothing to resume, the run starts again.
    lost_before_stored: usize,
    /// Killed after its `run_finished` was stored: nothing to resume.
    finished_before_kill: usize,
    done_before_kill: usize,
    interrupted_attempts: usize,
    ran_twice: usize,
    killed_leftovers: usize,
}

/// One seed: kill, resume, check.
fn one_seed(project: &Project, baseline: &Baseline, seed: usize, counts: &Mutex<Counts>) {
    let at = KillAt::pick(seed, baseline);
    let data = project.root().join(format!("seed-{seed}"));
    run_and_kill(project, &data, at);
    let context = format!("seed {seed}, killed {} ({at:?})", at.kind());

    let rows = settled_runs(&data);
    let (run, resumed) = match rows.first() {
        None => {
            // Killed before `run_started` was committed: nothing to resume, start afresh. The
            // next start kills what the lost run's agents left behind.
            let lost = lock_run(&data);
            let fresh = project.output(&data, &["run", "workflows/crash.yaml"]);
            assert_eq!(fresh.status.code(), Some(0), "{context}: fresh run failed");
            if let Some(lost) = lost {
                wait_no_leftovers(&RunId::new(lost), &context);
            }
            counts.lock().unwrap().lost_before_stored += 1;
            (store(&data).runs().unwrap()[0].run_id.clone(), false)
        }
        Some(row) if row.state == RunState::Succeeded => {
            counts.lock().unwrap().finished_before_kill += 1;
            (row.run_id.clone(), false)
        }
        Some(row) => {
            assert_eq!(row.state, RunState::Interrupted, "{context}: {row:?}");
            (row.run_id.clone(), true)
        }
    };
    let before = folded(&store(&data).events(&run).unwrap());
    if resumed {
        let listed = project.output(&data, &["runs", "list", "--json"]);
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(listed[0]["resumable"], true, "{context}: {listed}");
        let out = project.output(&data, &["resume", run.as_str(), "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{context}: resume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The store is whole.
    let conn = rusqlite::Connection::open(data.join(RUNS_FILE)).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok", "{context}");
    // The final outputs are those of an uninterrupted run.
    let events = store(&data).events(&run).unwrap();
    let after = folded(&events);
    assert_eq!(after.outcome.map(|o| o.status), Some(flightdeck::event::RunStatus::Succeeded));
    assert_eq!(outputs(&after), baseline.outputs, "{context}: outputs differ");
    // Succeeded before the kill: executed exactly once. Anything else: at most once more.
    let executions = project.executions(&run);
    let mut done_before = 0;
    let mut twice = 0;
    for task in &after.tasks {
        let id = task.id().as_str();
        let ran = executions.get(id).copied().unwrap_or(0);
        let done = before.task(task.id()).is_some_and(|t| t.status == TaskStatus::Succeeded);
        if done {
            done_before += 1;
            assert_eq!(ran, 1, "{context}: {id} had succeeded before the kill, ran {ran} times");
        } else {
            assert!((1..=2).contains(&ran), "{context}: {id} ran {ran} times");
        }
        twice += usize::from(ran == 2);
    }
    let interrupted =
        events.iter().filter(|e| matches!(e.event, Event::AttemptInterrupted { .. })).count();
    let killed: usize = events
        .iter()
        .map(|e| match e.event {
            Event::RunResumed { killed_processes, .. } => killed_processes,
            _ => 0,
        })
        .sum();
    // The audit log's chain holds.
    let audit = flightdeck::audit::verify(data.join(flightdeck::runtime::AUDIT_FILE)).unwrap();
    assert!(audit.is_intact(), "{context}: audit log: {audit:?}");
    // No agent of the run is left.
    wait_no_leftovers(&run, &context);

    let mut counts = counts.lock().unwrap();
    counts.seeds += 1;
    *counts.by_kind.entry(at.kind()).or_default() += 1;
    counts.resumed += usize::from(resumed);
    counts.done_before_kill += done_before;
    counts.interrupted_attempts += interrupted;
    counts.ran_twice += twice;
    counts.killed_leftovers += killed;
    drop(counts);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(data.with_extension("stdout"));
}

/// The stored runs once the killed process's lock is free: a child it forked an instant
/// before the kill holds a copy of the lock until it exits (moments later, of the
/// parent-death signal or failing its own check).
fn settled_runs(data: &Path) -> Vec<flightdeck::store::RunRow> {
    let began = Instant::now();
    loop {
        let rows = store(data).runs().unwrap();
        let running = rows.iter().any(|r| r.state == RunState::Running);
        if !running || began.elapsed() > Duration::from_secs(5) {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Agents of a run whose host is gone die of the parent-death signal; what they started
/// (here `sleep`) ends on its own within moments, or `resume` killed it.
fn wait_no_leftovers(run: &RunId, context: &str) {
    let began = Instant::now();
    loop {
        let left = flightdeck::resume::leftovers(run);
        if left.is_empty() {
            return;
        }
        assert!(began.elapsed() < Duration::from_secs(5), "{context}: agents left alive: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn killed_at_200_seeded_points_every_run_resumes_to_the_same_outputs() {
    let project = Project::new();
    let baseline = baseline(&project);
    let counts = Mutex::new(Counts::default());
    let next = AtomicUsize::new(0);
    let began = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds() {
                        break;
                    }
                    one_seed(&project, &baseline, seed, &counts);
                }
            });
        }
    });
    let counts = counts.into_inner().unwrap();
    eprintln!(
        "crash test: {} seeds in {:.1}s ({TASKS} tasks, baseline {} events, {} ms); kills: {:?}; \
         resumed {}, killed before the run was stored {}, after it finished {}; tasks done \
         before the kill {} (each ran once); attempts interrupted {}; tasks that ran twice {}; \
         leftover processes killed by resume {}",
        counts.seeds,
        began.elapsed().as_secs_f64(),
        baseline.events,
        baseline.took_ms,
        counts.by_kind,
        counts.resumed,
        counts.lost_before_stored,
        counts.finished_before_kill,
        counts.done_before_kill,
        counts.interrupted_attempts,
        counts.ran_twice,
        counts.killed_leftovers,
    );
    assert_eq!(counts.seeds, seeds());
    assert!(counts.resumed > seeds() / 2, "most kills must leave a run to resume: {counts:?}");
    assert!(counts.interrupted_attempts > 0, "some kills must land inside an attempt");
    assert!(counts.killed_leftovers > 0, "some kills must leave helpers for resume to kill");
}
