//! Learning from outcomes, end to end: the real binary runs workflows with real `sh` agents
//! on a project in a temp dir, the run store (a real `SQLite` file) records each finished
//! attempt, and later plans, `agents explain` and `agents stats` follow what it learned.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use flightdeck::event::{Envelope, Event, PlannedTask, RunStatus};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId};
use flightdeck::store::{RUNS_FILE, RunStore, SCHEMA_VERSION};
use serde_json::Value;
use tempfile::TempDir;

const SETTINGS: &str = "default_role: viewer
users:
  ann: admin
backends:
  sim:
    kind: sim
    latency_min: 1ms
    latency_max: 2ms
  works:
    kind: process
    command: [sh, -c, 'cat > /dev/null; echo done']
  breaks:
    kind: process
    command: [sh, -c, 'cat > /dev/null; echo broken >&2; exit 3']
breakers:
  failure_threshold: 100
limits:
  learning_min_outcomes: 5
";

/// Five packaging tasks for each of two agents that match packaging tasks equally well.
const TRAIN: &str = "name: train
tasks:
  - {id: a1, description: Package the api service, agent: alpha}
  - {id: a2, description: Package the api service, agent: alpha}
  - {id: a3, description: Package the api service, agent: alpha}
  - {id: a4, description: Package the api service, agent: alpha}
  - {id: a5, description: Package the api service, agent: alpha}
  - {id: b1, description: Package the api service, agent: beta}
  - {id: b2, description: Package the api service, agent: beta}
  - {id: b3, description: Package the api service, agent: beta}
  - {id: b4, description: Package the api service, agent: beta}
  - {id: b5, description: Package the web service, agent: beta}
";

/// The agent is chosen by the selector; the timeout by history.
const CHOOSE: &str = "name: choose
tasks:
  - id: ship
    description: Package the billing service
    timeout: auto
";

const SIMULATED: &str = "name: simulated
tasks:
  - {id: s1, description: Index the docs, agent: gamma}
  - {id: s2, description: Index the docs, agent: gamma}
  - {id: s3, description: Index the docs, agent: gamma}
  - {id: s4, description: Index the docs, agent: gamma}
  - {id: s5, description: Index the docs, agent: gamma}
";

struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("flightdeck.yaml"), SETTINGS).unwrap();
        let agents = root.join("agentpool/tier2-specialized");
        std::fs::create_dir_all(&agents).unwrap();
        for (name, backend, trigger) in [
            ("alpha", "breaks", "package"),
            ("beta", "works", "package"),
            ("gamma", "sim", "index"),
        ] {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\ntriggers: [{trigger}]\n\
                 backend: {backend}\n---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        }
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        for (name, text) in [("train", TRAIN), ("choose", CHOOSE), ("simulated", SIMULATED)] {
            std::fs::write(root.join(format!("workflows/{name}.yaml")), text).unwrap();
        }
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn text(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    fn store(&self) -> RunStore {
        RunStore::open(self.root().join(".flightdeck").join(RUNS_FILE)).unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn selection_and_auto_timeouts_follow_the_outcomes_of_real_attempts() {
    let project = Project::new();

    // No history: the tie between alpha and beta goes to the name, the timeout is the default.
    let before = project.json(&["plan", "workflows/choose.yaml", "--json"]);
    let step = &before["steps"][0];
    assert_eq!(step["agent"], "alpha");
    assert_eq!(step["timeout_ms"], 300_000);
    assert_eq!(step["timeout_auto"]["mean_ms"], Value::Null);
    assert_eq!(step["estimate_ms"], 75_000, "a quarter of the timeout without history");
    assert!(
        !project.root().join(".flightdeck").join(RUNS_FILE).exists(),
        "planning creates no store"
    );

    // Alpha's five attempts fail, beta's five succeed, on real sh children.
    let output = project.run(&["run", "workflows/train.yaml", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let outcomes = project.store().outcomes_since(0).unwrap();
    assert_eq!(outcomes.len(), 10);
    for outcome in &outcomes {
        let beta = outcome.agent.as_str() == "beta";
        assert_eq!(outcome.success, beta, "{outcome:?}");
        assert_eq!(outcome.backend, if beta { "works" } else { "breaks" });
        assert!(!outcome.simulated);
        assert_eq!(outcome.attempt, 1);
        assert!(outcome.words.contains(&"package".to_owned()), "{outcome:?}");
        assert!(outcome.finished_ms > 0);
    }

    // Now beta wins the tie by +2.0 and the timeout is twice its (tiny) mean, raised to
    // limits.auto_timeout_min.
    let after = project.json(&["plan", "workflows/choose.yaml", "--json"]);
    let step = &after["steps"][0];
    assert_eq!(step["agent"], "beta", "{step}");
    let breakdown = step["selection"]["breakdown"].to_string();
    assert!(
        breakdown.contains("learning boost +2.0 (5 of 5 recent attempts succeeded"),
        "{breakdown}"
    );
    assert_eq!(step["timeout_ms"], 10_000);
    assert_eq!(step["timeout_auto"]["samples"], 5);
    assert_eq!(step["timeout_auto"]["clamped"], true);
    let mean = step["timeout_auto"]["mean_ms"].as_u64().unwrap();
    assert!(mean < 5_000);
    assert_eq!(step["estimate_ms"], mean, "the estimate is the learned mean");

    let plan = project.text(&["plan", "workflows/choose.yaml"]);
    assert!(plan.contains("timeout auto: 2 × mean"), "{plan}");
    assert!(plan.contains("of 5 attempts, clamped to the limits"), "{plan}");

    let explain = project.text(&["agents", "explain", "Package the billing service"]);
    assert!(explain.contains("Selected: beta (score 5.00)"), "{explain}");
    assert!(
        explain.contains("learning boost     +2.00  5 of 5 recent attempts succeeded"),
        "{explain}"
    );
    assert!(
        explain.contains("learning boost     +0.00  0 of 5 recent attempts succeeded"),
        "alpha's term says why it is zero: {explain}"
    );

    let stats = project.json(&["agents", "stats", "--json"]);
    let agents = stats["agents"].as_array().unwrap();
    let of = |name: &str| agents.iter().find(|a| a["agent"] == name).unwrap().clone();
    assert_eq!(of("beta")["attempts"], 5);
    assert_eq!(of("beta")["success_rate"], 1.0);
    assert_eq!(of("beta")["boost"], 2.0);
    assert_eq!(of("beta")["top_words"][0]["word"], "package");
    assert_eq!(of("beta")["top_words"][0]["count"], 5);
    assert_eq!(of("alpha")["success_rate"], 0.0);
    assert_eq!(of("alpha")["top_words"], serde_json::json!([]), "it never succeeded");
    assert_eq!(stats["totals"]["outcomes"], 10);
    assert_eq!(stats["totals"]["agents_tracked"], 2);
    assert_eq!(stats["totals"]["success_rate"], 0.5);
    let text = project.text(&["agents", "stats"]);
    assert!(text.contains("Learned from 10 attempts of 2 agents"), "{text}");
    assert!(text.contains("package (5), service (5), api (4), web (1)"), "{text}");
}

#[test]
fn simulated_attempts_are_learned_only_when_the_project_says_so() {
    let project = Project::new();
    let output = project.run(&["run", "workflows/simulated.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(project.store().outcomes_since(0).unwrap().is_empty());
    let text = project.text(&["agents", "stats"]);
    assert!(text.contains("No outcomes learned yet"), "{text}");
    assert!(text.contains("simulated attempts are ignored: limits.learn_from_sim"), "{text}");

    let learning = SETTINGS.replace("limits:\n", "limits:\n  learn_from_sim: true\n");
    std::fs::write(project.root().join("flightdeck.yaml"), &learning).unwrap();
    let output = project.run(&["run", "workflows/simulated.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let outcomes = project.store().outcomes_since(0).unwrap();
    assert_eq!(outcomes.len(), 5);
    assert!(outcomes.iter().all(|o| o.simulated && o.success && o.backend == "sim"));
    let stats = project.json(&["agents", "stats", "--json"]);
    assert_eq!(stats["agents"][0]["agent"], "gamma");
    assert_eq!(stats["agents"][0]["boost"], 2.0);
    let explain = project.text(&["agents", "explain", "Index the docs"]);
    assert!(explain.contains("learning boost     +2.00  5 of 5 recent attempts"), "{explain}");

    // Turned off again, what the simulation taught is set aside.
    std::fs::write(project.root().join("flightdeck.yaml"), SETTINGS).unwrap();
    let stats = project.json(&["agents", "stats", "--json"]);
    assert_eq!(stats["agents"], serde_json::json!([]));
    assert_eq!(stats["totals"]["simulated_ignored"], 5);
    let explain = project.text(&["agents", "explain", "Index the docs"]);
    assert!(!explain.contains("learning boost"), "{explain}");
}

#[test]
fn bad_learning_limits_name_the_field() {
    let project = Project::new();
    let settings = SETTINGS.replace("limits:\n", "limits:\n  learning_half_life: 0s\n");
    std::fs::write(project.root().join("flightdeck.yaml"), settings).unwrap();
    let output = project.run(&["agents", "stats"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("limits.learning_half_life"), "{text}");
    assert!(text.contains("must be longer than zero"), "{text}");
}

// ---- the store on its own ----

fn envelopes(run: &RunId, first_seq: u64, events: Vec<Event>) -> Vec<Arc<Envelope>> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = first_seq + i as u64;
            Arc::new(Envelope { seq, ts_ms: 1_000 * seq, run_id: Some(run.clone()), event })
        })
        .collect()
}

fn run_started(tasks: &[(&str, &str)]) -> Event {
    Event::RunStarted {
        workflow: "demo".into(),
        file: PathBuf::from("workflows/demo.yaml"),
        goal: None,
        max_parallel: 4,
        fail_fast: false,
        simulated: false,
        tasks: tasks
            .iter()
            .map(|(task, description)| PlannedTask {
                task: TaskId::new(*task),
                description: (*description).into(),
                agent: AgentId::new("coder"),
                score: None,
                depends_on: vec![].into(),
                layer: 0,
                timeout_ms: 1000,
                retries: 1,
            })
            .collect(),
    }
}

fn started(task: &str, attempt: u32, simulated: bool) -> Event {
    Event::TaskStarted {
        task: TaskId::new(task),
        agent: AgentId::new("coder"),
        attempt,
        instance: InstanceId(u64::from(attempt)),
        backend: if simulated { "sim" } else { "cli" }.into(),
        simulated,
    }
}

fn succeeded(task: &str, attempt: u32, duration_ms: u64) -> Event {
    Event::TaskSucceeded {
        task: TaskId::new(task),
        agent: AgentId::new("coder"),
        attempt,
        duration_ms,
        output: "ok".into(),
        usage: None,
        simulated: false,
        details: flightdeck::event::AnswerDetails::default(),
    }
}

fn failed(task: &str, attempt: u32) -> Event {
    Event::TaskFailed {
        task: TaskId::new(task),
        agent: Some(AgentId::new("coder")),
        attempt,
        duration_ms: 7,
        error: "exit 3".into(),
    }
}

#[test]
fn attempts_end_as_outcomes_across_batches_and_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    let run = RunId::new("r1");
    let tasks = [
        ("a", "Write the parser"),
        ("b", "Simulate the parser"),
        ("c", "Review the parser"),
        ("d", "Cancel the parser"),
        ("e", "Port the parser to Rust"),
    ];
    let mut store = RunStore::open(&path).unwrap();
    store
        .append_batch(&envelopes(&run, 1, vec![run_started(&tasks), started("a", 1, false)]))
        .unwrap();
    let retrying = Event::TaskRetrying {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        attempt: 1,
        delay_ms: 5,
        duration_ms: 40,
        error: "timed out".into(),
    };
    store.append_batch(&envelopes(&run, 3, vec![retrying, started("a", 2, false)])).unwrap();
    assert_eq!(store.outcomes_since(0).unwrap().len(), 1, "attempt 1 ended in batch 2");
    store
        .append_batch(&envelopes(
            &run,
            5,
            vec![
                succeeded("a", 2, 30),
                started("b", 1, true),
                succeeded("b", 1, 1),
                // Rejected before it started: says nothing about the agent.
                failed("c", 0),
                started("d", 1, false),
                Event::TaskCancelled { task: TaskId::new("d"), reason: "operator".into() },
                // A late end of the cancelled attempt is not an outcome either.
                failed("d", 1),
            ],
        ))
        .unwrap();
    let outcomes = store.outcomes_since(0).unwrap();
    let seen: Vec<(&str, u32, bool, bool, u64)> = outcomes
        .iter()
        .map(|o| (o.task.as_str(), o.attempt, o.success, o.simulated, o.duration_ms))
        .collect();
    assert_eq!(seen, [("a", 1, false, false, 40), ("a", 2, true, false, 30)], "b was simulated");
    assert_eq!(outcomes[0].words, ["write", "parser"]);
    assert_eq!(outcomes[0].finished_ms, 3_000, "the time of the ending event");
    assert_eq!(outcomes[0].backend, "cli");
    assert!(store.outcomes_since(4_000).unwrap().iter().all(|o| o.finished_ms >= 4_000));
    drop(store);

    // Another process (a resumed run) knows the task words from the stored RunStarted.
    let mut store = RunStore::open(&path).unwrap();
    store.append_batch(&envelopes(&run, 20, vec![started("e", 1, false), failed("e", 1)])).unwrap();
    let last = store.outcomes_since(0).unwrap().pop().unwrap();
    assert_eq!((last.task.as_str(), last.success), ("e", false));
    assert_eq!(last.words, ["port", "parser", "rust"]);

    // Simulated attempts are recorded when the project learns from them.
    store.record_simulated_outcomes(true);
    store
        .append_batch(&envelopes(&run, 25, vec![started("b", 2, true), succeeded("b", 2, 1)]))
        .unwrap();
    let last = store.outcomes_since(0).unwrap().pop().unwrap();
    assert_eq!((last.task.as_str(), last.simulated, last.backend.as_str()), ("b", true, "sim"));
    assert_eq!(last.words, ["simulate", "parser"]);
    let finished = Event::RunFinished {
        status: RunStatus::Failed,
        succeeded: 2,
        failed: 1,
        skipped: 0,
        cancelled: 1,
        duration_ms: 30,
    };
    store.append_batch(&envelopes(&run, 30, vec![finished])).unwrap();
    store.prune(&flightdeck::store::PruneRule { keep: Some(0), before_ms: None }).unwrap();
    assert!(store.runs().unwrap().is_empty());
    assert_eq!(store.outcomes_since(0).unwrap().len(), 4, "pruning runs keeps what they taught");
}

/// The writer does not keep a run's plan alive for its words: once everyone else dropped the
/// `RunStarted`, the words of a later real attempt come from the stored line.
#[test]
fn task_words_outlive_the_dropped_run_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RunStore::open(dir.path().join(RUNS_FILE)).unwrap();
    let run = RunId::new("r1");
    let first = envelopes(&run, 1, vec![run_started(&[("a", "Write the parser")])]);
    let plan = Arc::downgrade(&first[0]);
    store.append_batch(&first).unwrap();
    drop(first);
    assert!(plan.upgrade().is_none(), "the store holds the plan only weakly");
    store
        .append_batch(&envelopes(&run, 2, vec![started("a", 1, false), succeeded("a", 1, 9)]))
        .unwrap();
    let outcome = store.outcomes_since(0).unwrap().pop().unwrap();
    assert_eq!((outcome.task.as_str(), outcome.success), ("a", true));
    assert_eq!(outcome.words, ["write", "parser"]);
}

#[test]
fn task_words_are_read_from_the_stored_run_started_line_whatever_comes_before_it() {
    // The gate's decision carries the run's id and is stored before the `RunStarted`.
    let dir = tempfile::tempdir().unwrap();
    let mut store = RunStore::open(dir.path().join(RUNS_FILE)).unwrap();
    let run = RunId::new("r1");
    let notice = Event::Notice {
        level: flightdeck::event::Level::Info,
        message: "decided: \"type\":\"run_started\" quoted in text".into(),
    };
    store.append_batch(&envelopes(&run, 1, vec![notice])).unwrap();
    let first = envelopes(&run, 2, vec![run_started(&[("a", "Write the parser")])]);
    store.append_batch(&first).unwrap();
    drop(first);
    store
        .append_batch(&envelopes(&run, 3, vec![started("a", 1, false), succeeded("a", 1, 9)]))
        .unwrap();
    let outcome = store.outcomes_since(0).unwrap().pop().unwrap();
    assert_eq!(outcome.words, ["write", "parser"]);
}

/// Schema 3: runs, meta and event blocks, before outcomes were recorded.
const SCHEMA_V3: &str = "
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY NOT NULL, workflow TEXT NOT NULL, file TEXT NOT NULL,
        started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT NOT NULL,
        tasks INTEGER NOT NULL, succeeded INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
        cancelled INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER, simulated INTEGER NOT NULL,
        pid INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) STRICT;
    CREATE TABLE event_blocks (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL, count INTEGER NOT NULL, body TEXT NOT NULL
    ) STRICT;
    CREATE INDEX event_blocks_by_run ON event_blocks (run_id, id);
    PRAGMA user_version = 3;";

#[test]
fn a_version_3_store_migrates_and_learns_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    let run = RunId::new("old");
    let first = envelopes(&run, 1, vec![run_started(&[("a", "Build the index")])]);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V3).unwrap();
        conn.execute(
            "INSERT INTO runs (run_id, workflow, file, started_at, status, tasks, simulated, pid) \
             VALUES ('old', 'demo', 'w.yaml', 1, 'running', 1, 0, 0)",
            [],
        )
        .unwrap();
        let body = format!("{}\n", serde_json::to_string(&*first[0]).unwrap());
        conn.execute(
            "INSERT INTO event_blocks (run_id, first_seq, last_seq, count, body) \
             VALUES ('old', 1, 1, 1, ?1)",
            [body],
        )
        .unwrap();
    }
    let mut store = RunStore::open(&path).unwrap();
    assert_eq!(store.events(&run).unwrap().len(), 1);
    assert!(store.outcomes_since(0).unwrap().is_empty());
    store
        .append_batch(&envelopes(&run, 2, vec![started("a", 1, false), succeeded("a", 1, 12)]))
        .unwrap();
    let outcomes = store.outcomes_since(0).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].words, ["build", "index"]);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_batch_offered_again_after_a_failed_commit_records_its_outcomes_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    let run = RunId::new("r1");
    let mut store = RunStore::open(&path).unwrap();
    store
        .append_batch(&envelopes(
            &run,
            1,
            vec![run_started(&[("a", "Write it")]), started("a", 1, false)],
        ))
        .unwrap();
    // Another connection makes the next commit fail, as a full disk would.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON outcomes BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let batch = envelopes(&run, 3, vec![succeeded("a", 1, 30)]);
    let error = store.append_batch(&batch).unwrap_err();
    assert!(error.to_string().contains("disk full"), "{error}");
    assert!(store.outcomes_since(0).unwrap().is_empty());

    // The writer keeps the batch and offers it again: the attempt is still known as open.
    raw.execute_batch("DROP TRIGGER refuse;").unwrap();
    store.append_batch(&batch).unwrap();
    let outcomes = store.outcomes_since(0).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].success);
    assert_eq!(outcomes[0].words, ["write"]);
}
