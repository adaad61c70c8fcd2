//! Runs that own themselves: event numbers that no two processes share and that never go
//! back after a kill, run ids that never merge, and one owner per run (a lock the OS
//! releases when its holder dies), on real `SQLite` files and real `flightdeck` processes.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use flightdeck::config::Settings;
use flightdeck::event::{Envelope, Event, PlannedTask, RunStatus};
use flightdeck::ids::{AgentId, RunId, TaskId};
use flightdeck::runtime::{Runtime, RuntimeOptions};
use flightdeck::store::{
    Owner, OwnerError, PruneRule, RUNS_FILE, RunLock, RunState, RunStore, SEQ_BLOCK, owner,
};
use flightdeck::workflow::PlanOverrides;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rusqlite::TransactionBehavior;
use serde_json::Value;
use tempfile::TempDir;

const SETTINGS: &str = "default_role: viewer
users:
  ann: admin
backends:
  sim:
    kind: sim
    latency_min: 20ms
    latency_max: 40ms
  local:
    kind: process
    command: [sh, agent.sh]
    env:
      PID_FILE: PID_FILE_PATH
";

const SLOW: &str = "name: slow
tasks:
  - {id: wait, description: Wait a long time, agent: scripted}
";

/// A project with a sim agent, a process agent running `agent.sh`, and the workflows
/// `wide` (30 parallel sim tasks), `tiny` (one sim task) and `slow` (one process task).
struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pid_file = root.join("child.pid");
        let settings = SETTINGS.replace("PID_FILE_PATH", pid_file.to_str().unwrap());
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        for (name, extra) in [("worker", ""), ("scripted", "backend: local\n")] {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\n{extra}---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        }
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        let mut wide = String::from("name: wide\nmax_parallel: 10\ntasks:\n");
        for i in 0..30 {
            writeln!(wide, "  - {{id: t{i}, description: Step {i}, agent: worker}}").unwrap();
        }
        std::fs::write(root.join("workflows/wide.yaml"), wide).unwrap();
        std::fs::write(
            root.join("workflows/tiny.yaml"),
            "name: tiny\ntasks:\n  - {id: one, description: Do one thing, agent: worker}\n",
        )
        .unwrap();
        std::fs::write(root.join("workflows/slow.yaml"), SLOW).unwrap();
        // A line of output every 20 ms until killed, each also counted in `child.pid.ticks`.
        let script = "echo $$ > \"$PID_FILE\"\n\
                      while :; do echo tick; echo tick >> \"$PID_FILE.ticks\"; sleep 0.02; done\n";
        std::fs::write(root.join("agent.sh"), script).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join(".flightdeck")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn store(&self) -> RunStore {
        RunStore::open(self.data_dir().join(RUNS_FILE)).unwrap()
    }

    /// `runs list --json`: each run's id and state as the CLI reports them.
    fn listed_states(&self) -> Vec<(String, String)> {
        let output = self.run(&["runs", "list", "--json"]);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let runs: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        runs.iter()
            .map(|r| (r["run_id"].as_str().unwrap().into(), r["state"].as_str().unwrap().into()))
            .collect()
    }
}

/// Every `seq` printed by `run --json`.
fn printed_seqs(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| value["seq"].as_u64())
        .collect()
}

#[test]
fn three_runs_at_once_on_one_data_dir_share_no_event_number() {
    let project = Project::new();
    // Create the store first, so the three do not race to create the schema.
    drop(project.store());
    let children: Vec<Child> = (0..3)
        .map(|_| {
            project
                .command(&["run", "workflows/wide.yaml", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Read all three at once: one of them hosts the data dir and the others hand their runs
    // to it, so a child whose pipe nobody drains would hold up the others' runs.
    let readers: Vec<_> = children
        .into_iter()
        .map(|c| std::thread::spawn(move || c.wait_with_output().unwrap()))
        .collect();
    let outputs: Vec<Output> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut total = 0;
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let seqs = printed_seqs(&output.stdout);
        assert!(seqs.len() > 60, "a wide run prints its events: {}", seqs.len());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing in one process");
        total += seqs.len();
        seen.extend(seqs);
    }
    assert_eq!(seen.len(), total, "an event number was printed by two processes");
    // The store holds each of those numbers once too.
    let store = project.store();
    let mut stored = HashSet::new();
    for run in store.runs().unwrap() {
        assert_eq!(run.state, RunState::Succeeded);
        for envelope in store.events(&run.run_id).unwrap() {
            assert!(stored.insert(envelope.seq), "seq {} stored twice", envelope.seq);
        }
    }
}

/// A child's stdout lines, as they come, from a thread.
fn read_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    received
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_run_is_interrupted_whatever_its_pid_and_later_numbers_are_above_its_own() {
    let project = Project::new();
    let mut child = project
        .command(&["run", "workflows/slow.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = read_lines(&mut child);
    let sleeper: i32 = wait_for("the agent's pid", || {
        std::fs::read_to_string(project.root().join("child.pid")).ok()?.trim().parse().ok()
    });

    // Alive: listed running, owned by the child's pid, and never pruned.
    let run = wait_for("the stored run", || project.store().runs().unwrap().pop()).run_id;
    assert_eq!(project.listed_states(), [(run.to_string(), "running".to_owned())]);
    assert_eq!(owner(&project.data_dir(), &run), Owner::Alive { pid: Some(child.id()) });
    let shown = project.run(&["runs", "show", run.as_str()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&format!("owner     pid {} ", child.id())), "{shown}");
    let refused = RunLock::take_over(&project.data_dir(), &run).unwrap_err();
    assert!(refused.to_string().contains(&format!("pid {}", child.id())), "{refused}");
    let everything = PruneRule { keep: Some(0), before_ms: None };
    assert!(project.store().prune(&everything).unwrap().0.is_empty(), "a live run was pruned");

    // Hold the database's write lock, so nothing more is committed, while the agent goes on
    // writing lines: the run prints none of them, since it prints only what is stored.
    let ticks = || {
        let file = project.root().join("child.pid.ticks");
        std::fs::read_to_string(file).unwrap_or_default().lines().count()
    };
    let mut blocker = rusqlite::Connection::open(project.data_dir().join(RUNS_FILE)).unwrap();
    let held = blocker.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
    let ticks_locked = ticks();
    wait_for("more output from the agent", || (ticks() >= ticks_locked + 10).then_some(()));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // The agent gets a parent-death signal; kill it anyway should that change.
    let _ = kill(Pid::from_raw(sleeper), Signal::SIGKILL);
    held.rollback().unwrap();
    let printed: Vec<String> = lines.iter().collect();
    let printed_ticks = printed.iter().filter(|l| l.contains("\"tick")).count();
    assert!(printed_ticks < ticks_locked + 10, "{printed_ticks} lines printed while not stored");

    // Every event of the run that was printed is in the store.
    let stored: HashSet<u64> =
        project.store().events(&run).unwrap().into_iter().map(|e| e.seq).collect();
    for line in &printed {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["run_id"].is_string() {
            let seq = event["seq"].as_u64().unwrap();
            assert!(stored.contains(&seq), "printed but not stored: {line}");
        }
    }
    let killed_max = printed_seqs(printed.join("\n").as_bytes()).into_iter().max().unwrap();

    // The row says the dead process's pid; make it ours, as in a container where every start
    // is pid 1: the run is still interrupted, because nobody holds its lock.
    let conn = rusqlite::Connection::open(project.data_dir().join(RUNS_FILE)).unwrap();
    conn.execute("UPDATE runs SET pid = ?1", [i64::from(std::process::id())]).unwrap();
    assert_eq!(project.listed_states(), [(run.to_string(), "interrupted".to_owned())]);
    assert_eq!(project.store().run(&run).unwrap().unwrap().state, RunState::Interrupted);
    let shown = project.run(&["runs", "show", run.as_str(), "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        (&shown["run"]["state"], &shown["owner_pid"]),
        (&"interrupted".into(), &Value::Null)
    );

    // The next process numbers above everything the killed one printed.
    let next = project.run(&["run", "workflows/tiny.yaml", "--json"]);
    assert_eq!(next.status.code(), Some(0), "{}", String::from_utf8_lossy(&next.stderr));
    let next_min = printed_seqs(&next.stdout).into_iter().min().unwrap();
    assert!(
        next_min > killed_max,
        "the next run starts at {next_min}, the killed one printed {killed_max}"
    );

    // Interrupted runs can be pruned, and their lock file goes with them.
    let (pruned, _) = project.store().prune(&everything).unwrap();
    assert_eq!(pruned.len(), 2);
    assert_eq!(owner(&project.data_dir(), &run), Owner::Unknown);
}

fn run_started(tasks: usize) -> Event {
    Event::RunStarted {
        workflow: "demo".into(),
        file: PathBuf::from("workflows/demo.yaml"),
        goal: None,
        max_parallel: 4,
        fail_fast: false,
        simulated: true,
        tasks: (0..tasks)
            .map(|i| PlannedTask {
                task: TaskId::new(format!("t{i}")),
                description: "do it".into(),
                agent: AgentId::new("coder"),
                score: None,
                depends_on: vec![].into(),
                layer: 0,
                timeout_ms: 1000,
                retries: 0,
            })
            .collect(),
    }
}

fn envelope(run: &RunId, seq: u64, event: Event) -> Arc<Envelope> {
    Arc::new(Envelope { seq, ts_ms: 1_000 + seq, run_id: Some(run.clone()), event })
}

#[test]
fn reservations_are_disjoint_across_connections_and_above_the_highest_stored_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    let mut store = RunStore::open(&path).unwrap();
    // Two runs stored out of order: the last block inserted is not the highest.
    store.append_batch(&[envelope(&RunId::new("late"), 900, run_started(1))]).unwrap();
    store.append_batch(&[envelope(&RunId::new("early"), 40, run_started(1))]).unwrap();
    assert_eq!(store.last_seq().unwrap(), 900);

    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = RunStore::open(&path).unwrap();
                (0..25).map(|_| store.reserve_seqs(SEQ_BLOCK).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut blocks: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    blocks.sort_by_key(|b| b.start);
    assert_eq!(blocks.len(), 100);
    assert_eq!(blocks[0].start, 901, "numbering goes on above the highest stored event");
    for pair in blocks.windows(2) {
        assert!(pair[0].end <= pair[1].start, "{:?} overlaps {:?}", pair[0], pair[1]);
    }
}

#[test]
fn a_second_start_under_a_stored_id_does_not_merge_into_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RunStore::open(dir.path().join(RUNS_FILE)).unwrap();
    let run = RunId::new("r1");
    let finished = Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded: 2,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 5,
    };
    store.append_batch(&[envelope(&run, 1, run_started(2)), envelope(&run, 2, finished)]).unwrap();
    store.append_batch(&[envelope(&run, 3, run_started(7))]).unwrap();
    let row = store.run(&run).unwrap().unwrap();
    assert_eq!((row.state, row.tasks, row.succeeded), (RunState::Succeeded, 2, 2));
    assert!(store.has_run(&run).unwrap());

    // The runtime refuses such an id before anything starts: its lock file exists.
    let lock = RunLock::claim_new(dir.path(), &run).unwrap();
    drop(lock);
    let again = RunLock::claim_new(dir.path(), &run).unwrap_err();
    assert!(matches!(again, OwnerError::Exists { .. }), "{again}");
    assert!(again.to_string().contains("r1 exists already"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_started_in_the_same_second_get_distinct_rows() {
    let project = Project::new();
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: project.root().to_owned(),
        data_dir: project.data_dir(),
        settings: Settings::load(project.root()).unwrap(),
        watch_agents: false,
    })
    .unwrap();
    let plan = runtime.plan(Path::new("workflows/tiny.yaml"), &PlanOverrides::default()).unwrap();
    let handles: Vec<_> =
        (0..64).map(|_| runtime.start_planned("ann", plan.clone()).unwrap()).collect();
    let ids: HashSet<RunId> = handles.iter().map(|h| h.id().clone()).collect();
    assert_eq!(ids.len(), 64);
    for handle in &handles {
        assert_eq!(handle.wait().await, RunStatus::Succeeded);
    }
    runtime.shutdown().await;

    let rows = project.store().runs().unwrap();
    assert_eq!(rows.len(), 64, "runs were merged");
    assert!(rows.iter().all(|r| r.state == RunState::Succeeded && r.succeeded == 1));
    let seconds: HashSet<&str> = rows.iter().map(|r| &r.run_id.as_str()[..15]).collect();
    assert!(seconds.len() <= 3, "64 runs started within a few seconds: {seconds:?}");
    for row in &rows {
        let (stamp, random) = row.run_id.as_str().split_once('-').unwrap();
        assert!(stamp.starts_with('r') && stamp.len() == 15, "{}", row.run_id);
        assert_eq!(random.len(), 16, "64 random bits: {}", row.run_id);
        // Finished runs released their locks at shutdown.
        assert_eq!(owner(&project.data_dir(), &row.run_id), Owner::Gone);
    }
}
