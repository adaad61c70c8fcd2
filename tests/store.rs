//! The run store against real database files, and its writer fed by a real bus.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use flightdeck::bus::EventBus;
use flightdeck::event::{Envelope, Event, OutputStream, PlannedTask, RunStatus};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId};
use flightdeck::store::{
    PruneRule, RUNS_FILE, RunLock, RunState, RunStore, SCHEMA_VERSION, StoreError, spawn_writer,
};

fn run_started(tasks: usize) -> Event {
    Event::RunStarted {
        workflow: "demo".into(),
        file: PathBuf::from("workflows/demo.yaml"),
        goal: Some("show".into()),
        max_parallel: 4,
        fail_fast: false,
        simulated: true,
        tasks: (0..tasks)
            .map(|i| PlannedTask {
                task: TaskId::new(format!("t{i}")),
                description: "do it".into(),
                agent: AgentId::new("coder"),
                score: Some(3.0),
                depends_on: vec![].into(),
                layer: 0,
                timeout_ms: 1000,
                retries: 0,
            })
            .collect(),
    }
}

/// The ~6 events one simulated task produces.
fn task_events(i: usize) -> Vec<Event> {
    let task = TaskId::new(format!("t{i}"));
    let agent = AgentId::new("coder");
    let instance = InstanceId(i as u64);
    vec![
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
            text: "working".into(),
        },
        Event::TaskSucceeded {
            task,
            agent: agent.clone(),
            attempt: 1,
            duration_ms: 12,
            output: "done: the parser now handles nested lists".into(),
            usage: None,
            simulated: true,
            details: flightdeck::event::AnswerDetails::default(),
        },
        Event::InstanceIdle { instance, agent },
    ]
}

fn run_finished(succeeded: usize) -> Event {
    Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 1234,
    }
}

/// Envelopes numbered from `first_seq`, all in `run`.
fn envelopes(run: &RunId, first_seq: u64, events: Vec<Event>) -> Vec<Arc<Envelope>> {
    events
        .into_iter()
        .zip(first_seq..)
        .map(|(event, seq)| {
            Arc::new(Envelope {
                seq,
                ts_ms: 1_700_000_000_000 + seq,
                run_id: Some(run.clone()),
                event,
            })
        })
        .collect()
}

fn whole_run(run: &RunId, tasks: usize) -> Vec<Arc<Envelope>> {
    let mut events = vec![run_started(tasks)];
    events.extend((0..tasks).flat_map(task_events));
    events.push(run_finished(tasks));
    envelopes(run, 1, events)
}

fn store_in(dir: &Path) -> (RunStore, PathBuf) {
    let path = dir.join("data").join(RUNS_FILE);
    (RunStore::open(&path).unwrap(), path)
}

#[test]
fn events_round_trip_and_the_run_row_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_in(dir.path());
    let run = RunId::new("r1");
    let mut batch = whole_run(&run, 3);
    // Not part of any run: skipped.
    batch.push(Arc::new(Envelope {
        seq: 99,
        ts_ms: 1,
        run_id: None,
        event: Event::Notice { level: flightdeck::event::Level::Info, message: "hi".into() },
    }));
    assert_eq!(store.append_batch(&batch).unwrap(), batch.len() - 1);

    let stored = store.events(&run).unwrap();
    let expected: Vec<Envelope> = batch[..batch.len() - 1].iter().map(|e| (**e).clone()).collect();
    assert_eq!(stored, expected);

    let row = store.run(&run).unwrap().unwrap();
    assert_eq!(row.state, RunState::Succeeded);
    assert_eq!((row.workflow.as_str(), row.tasks, row.succeeded), ("demo", 3, 3));
    assert_eq!(row.file, PathBuf::from("workflows/demo.yaml"));
    assert_eq!(row.started_ms, 1_700_000_000_001);
    assert_eq!(row.finished_ms, Some(1_700_000_000_000 + batch.len() as u64 - 1));
    assert_eq!(row.duration_ms, Some(1234));
    assert!(row.simulated);
    assert_eq!(store.runs().unwrap(), vec![row]);
    assert_eq!(store.run(&RunId::new("nope")).unwrap(), None);
    assert_eq!(store.last_seq().unwrap(), batch.len() as u64 - 1);
}

#[test]
fn events_after_returns_the_missed_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_in(dir.path());
    let run = RunId::new("r1");
    store.append_batch(&whole_run(&run, 2)).unwrap();
    let tail = store.events_after(&run, 10).unwrap();
    let seqs: Vec<u64> = tail.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [11, 12, 13, 14]);
    assert!(store.events(&RunId::new("other")).unwrap().is_empty());
}

#[test]
fn interleaved_runs_across_batches_read_back_separately() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_in(dir.path());
    let (a, b) = (RunId::new("a"), RunId::new("b"));
    let mut all = Vec::new();
    for (seq, i) in (1..).zip(0..40) {
        let run = if i % 3 == 0 { &b } else { &a };
        let ready = Event::TaskReady { task: TaskId::new(format!("t{i}")) };
        all.extend(envelopes(run, seq, vec![ready]));
    }
    for batch in all.chunks(7) {
        store.append_batch(batch).unwrap();
    }
    let of = |run: &RunId| -> Vec<u64> {
        all.iter().filter(|e| e.run_id.as_ref() == Some(run)).map(|e| e.seq).collect()
    };
    let seqs =
        |run: &RunId| -> Vec<u64> { store.events(run).unwrap().iter().map(|e| e.seq).collect() };
    assert_eq!(seqs(&a), of(&a));
    assert_eq!(seqs(&b), of(&b));
    let after: Vec<u64> = store.events_after(&b, 20).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(after, of(&b).into_iter().filter(|s| *s > 20).collect::<Vec<_>>());
}

#[test]
fn fifty_thousand_events_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_in(dir.path());
    let run = RunId::new("big");
    let tasks = 50_000 / 6;
    let all = whole_run(&run, tasks);
    let started = Instant::now();
    for batch in all.chunks(flightdeck::store::MAX_BATCH) {
        store.append_batch(batch).unwrap();
    }
    let elapsed = started.elapsed();
    let rows_per_s = all.len() as f64 / elapsed.as_secs_f64();
    println!(
        "stored {} events in {elapsed:?}: {rows_per_s:.0} rows/s, {:.2} µs per task of 6 events \
         (debug build; see `cargo bench --bench store` for release figures)",
        all.len(),
        elapsed.as_secs_f64() * 1e6 / tasks as f64,
    );
    assert_eq!(store.events(&run).unwrap().len(), all.len());
    assert_eq!(store.run(&run).unwrap().unwrap().succeeded, tasks);
}

#[test]
fn reopening_keeps_everything_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = store_in(dir.path());
    let run = RunId::new("r1");
    store.append_batch(&whole_run(&run, 2)).unwrap();
    assert_eq!(store.journal_mode().unwrap(), "wal");
    drop(store);

    let store = RunStore::open(&path).unwrap();
    assert_eq!(store.events(&run).unwrap().len(), 14);
    assert_eq!(store.runs().unwrap().len(), 1);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn unfinished_run_is_running_while_its_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_in(dir.path());
    let run = RunId::new("live");
    let lock = RunLock::claim_new(&dir.path().join("data"), &run).unwrap();
    let mut events = vec![run_started(3)];
    events.extend(task_events(0));
    store.append_batch(&envelopes(&run, 1, events)).unwrap();
    let row = store.run(&run).unwrap().unwrap();
    assert_eq!(row.state, RunState::Running);
    assert_eq!((row.succeeded, row.finished_ms), (1, None));
    drop(lock);
    assert_eq!(store.run(&run).unwrap().unwrap().state, RunState::Interrupted);
}

/// Runs only as the child of `run_of_a_dead_process_is_interrupted`.
#[test]
fn child_starts_a_run_and_dies() {
    let Some(path) = std::env::var_os("FLIGHTDECK_STORE_CHILD") else { return };
    let mut store = RunStore::open(PathBuf::from(path)).unwrap();
    let run = RunId::new("crashed");
    let mut events = vec![run_started(4)];
    events.extend(task_events(0));
    events.extend(task_events(1));
    events.push(Event::TaskFailed {
        task: TaskId::new("t2"),
        agent: None,
        attempt: 1,
        duration_ms: 5,
        error: "boom".into(),
    });
    store.append_batch(&envelopes(&run, 1, events)).unwrap();
    // Die without RunFinished and without closing anything.
    std::process::abort();
}

#[test]
fn run_of_a_dead_process_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["child_starts_a_run_and_dies", "--exact", "--nocapture", "--test-threads=1"])
        .env("FLIGHTDECK_STORE_CHILD", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die");

    let store = RunStore::open(&path).unwrap();
    let row = store.run(&RunId::new("crashed")).unwrap().unwrap();
    assert_eq!(row.state, RunState::Interrupted);
    assert_eq!((row.tasks, row.succeeded, row.failed), (4, 2, 1));
    assert_eq!(row.finished_ms, None);
    assert_eq!(store.events(&RunId::new("crashed")).unwrap().len(), 14);
}

#[test]
fn a_file_that_is_not_sqlite_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = RunStore::open(&path).err().expect("not a database");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&path.display().to_string()), "{text}");
    assert!(text.contains("not an SQLite database"), "{text}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = RunStore::open(&path).err().expect("too new");
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err:?}");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn a_folder_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let err = RunStore::open(blocker.join("sub").join(RUNS_FILE)).err().expect("blocked");
    assert!(err.to_string().contains("blocker"), "{err}");
}

#[tokio::test]
async fn writer_drains_the_bus_and_flush_waits_for_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    let bus = EventBus::new();
    let writer = spawn_writer(store, bus.sink()).unwrap();
    let reader = RunStore::open(&path).unwrap();
    let run = RunId::new("r1");
    let _owner = RunLock::claim_new(&dir.path().join("data"), &run).unwrap();

    bus.publish(Some(&run), run_started(2000));
    for i in 0..2000 {
        for event in task_events(i) {
            bus.publish(Some(&run), event);
        }
    }
    bus.publish(None, Event::Notice { level: flightdeck::event::Level::Info, message: "x".into() });
    writer.flush().await.unwrap();
    assert_eq!(reader.events(&run).unwrap().len(), 1 + 2000 * 6);
    assert_eq!(writer.stored_events(), 1 + 2000 * 6);
    assert_eq!(reader.run(&run).unwrap().unwrap().state, RunState::Running);

    bus.publish(Some(&run), run_finished(2000));
    writer.close().await.unwrap();
    let row = reader.run(&run).unwrap().unwrap();
    assert_eq!((row.state, row.succeeded), (RunState::Succeeded, 2000));
    let seqs: Vec<u64> = reader.events(&run).unwrap().iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // After close nothing more is written.
    bus.publish(Some(&run), Event::TaskReady { task: TaskId::new("late") });
    assert_eq!(reader.events(&run).unwrap().len(), 2 + 2000 * 6);
}

/// The writer's connection leaves checkpoints to a thread of its own: while it commits, the
/// log is copied into the database file (without checkpoints every page would stay in the
/// log until the last connection closes), and once the writer is closed the log is gone.
#[tokio::test]
async fn the_log_is_copied_into_the_database_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    let bus = EventBus::new();
    let writer = spawn_writer(store, bus.sink()).unwrap();
    let run = RunId::new("r1");
    let _owner = RunLock::claim_new(&dir.path().join("data"), &run).unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let size = |file: &Path| std::fs::metadata(file).map_or(0, |m| m.len());
    let before = size(&path);

    bus.publish(Some(&run), run_started(10));
    for round in 0..8 {
        for i in 0..4_000 {
            for event in task_events(round * 4_000 + i) {
                bus.publish(Some(&run), event);
            }
        }
        writer.flush().await.unwrap();
    }
    // 192,000 events written: the database file holds most of them while the writer is
    // still open (the last checkpoint may still be under way: wait for it).
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while size(&path) < before + 8 * 1024 * 1024 {
        assert!(
            Instant::now() < deadline,
            "nothing checkpointed: database {} bytes, log {} bytes",
            size(&path),
            size(&wal)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    writer.close().await.unwrap();
    // The writer's connection, closing last, copied the rest and removed the log.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while wal.exists() {
        assert!(Instant::now() < deadline, "the log outlived the writer");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let reader = RunStore::open(&path).unwrap();
    assert_eq!(reader.events(&run).unwrap().len(), 1 + 32_000 * 6);
}

/// A writer that never pauses still reuses its log: the log file (which never shrinks, so its
/// size is the most it ever held) stays a fraction of what was written, because the writer
/// now and then finishes a checkpoint itself and `SQLite` then starts the log over. (Only an
/// optimised build writes faster than the checkpoint thread copies: there, without that, the
/// log held all 33 MB; a debug build's thread catches up between commits anyway.)
#[tokio::test]
async fn the_log_of_a_writer_that_never_pauses_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    let bus = EventBus::new();
    // Everything is queued before the writer starts: it commits batch after batch without
    // ever waiting for more.
    let sink = bus.sink();
    let run = RunId::new("r1");
    let _owner = RunLock::claim_new(&dir.path().join("data"), &run).unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let size = |file: &Path| std::fs::metadata(file).map_or(0, |m| m.len());

    bus.publish(Some(&run), run_started(10));
    for i in 0..40_000 {
        for event in task_events(i) {
            bus.publish(Some(&run), event);
        }
    }
    let writer = spawn_writer(store, sink).unwrap();
    writer.flush().await.unwrap();
    let (database, log) = (size(&path), size(&wal));
    eprintln!("database {database} bytes, log {log} bytes");
    assert!(log * 2 < database, "the log grew with the run: {log} bytes beside {database}");
    writer.close().await.unwrap();
}

#[tokio::test]
async fn flush_on_an_idle_writer_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_in(dir.path());
    let bus = EventBus::new();
    let writer = spawn_writer(store, bus.sink()).unwrap();
    writer.flush().await.unwrap();
    writer.flush().await.unwrap();
    assert_eq!(writer.stored_events(), 0);
    writer.close().await.unwrap();
}

#[tokio::test]
async fn writer_keeps_going_after_its_handle_is_dropped_until_the_bus_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    let bus = EventBus::new();
    let writer = spawn_writer(store, bus.sink()).unwrap();
    drop(writer);
    let run = RunId::new("r1");
    bus.publish(Some(&run), run_started(1));
    drop(bus);
    // The thread commits what it got when the sink closes; poll the file for it.
    let reader = RunStore::open(&path).unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while reader.events(&run).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "event never stored");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Five finished runs `f0`..`f4` (oldest first) and one still running, `live`, whose lock
/// is held while the returned lock lives.
fn store_with_history(dir: &Path) -> (RunStore, RunLock) {
    let (mut store, _) = store_in(dir);
    let live = RunLock::claim_new(&dir.join("data"), &RunId::new("live")).unwrap();
    for i in 0..5_u64 {
        let run = RunId::new(format!("f{i}"));
        let mut events = vec![run_started(2)];
        events.extend((0..2).flat_map(task_events));
        events.push(run_finished(2));
        store.append_batch(&envelopes(&run, 1 + i * 100, events)).unwrap();
    }
    let mut events = vec![run_started(1)];
    events.extend(task_events(0));
    store.append_batch(&envelopes(&RunId::new("live"), 1000, events)).unwrap();
    (store, live)
}

fn run_ids(store: &RunStore) -> Vec<String> {
    store.runs().unwrap().into_iter().map(|r| r.run_id.to_string()).collect()
}

#[test]
fn pruning_keeps_the_newest_finished_runs_and_never_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _live) = store_with_history(dir.path());
    let rule = PruneRule { keep: Some(2), before_ms: None };
    let would: Vec<String> =
        store.prunable(&rule).unwrap().into_iter().map(|r| r.run_id.to_string()).collect();
    assert_eq!(would, ["f2", "f1", "f0"]);
    assert_eq!(run_ids(&store).len(), 6, "asking changes nothing");

    let (pruned, events) = store.prune(&rule).unwrap();
    assert_eq!(pruned.len(), 3);
    assert_eq!(events, 3 * 14);
    assert_eq!(run_ids(&store), ["live", "f4", "f3"]);
    assert!(store.events(&RunId::new("f0")).unwrap().is_empty());
    assert_eq!(store.events(&RunId::new("f4")).unwrap().len(), 14);
    assert_eq!(store.events(&RunId::new("live")).unwrap().len(), 7);
}

#[test]
fn pruning_by_age_keeps_what_either_rule_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _live) = store_with_history(dir.path());
    // f0 and f1 started before this moment; f2..f4 after.
    let before_ms = 1_700_000_000_000 + 150;
    let by_age = PruneRule { keep: None, before_ms: Some(before_ms) };
    assert_eq!(store.prunable(&by_age).unwrap().len(), 2);
    let both = PruneRule { keep: Some(4), before_ms: Some(before_ms) };
    store.prune(&both).unwrap();
    assert_eq!(run_ids(&store), ["live", "f4", "f3", "f2", "f1"]);
    assert!(store.prunable(&PruneRule::default()).unwrap().is_empty(), "no rule, no pruning");
}

#[test]
fn sequence_numbers_never_go_back_after_pruning_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = store_in(dir.path());
    store.append_batch(&whole_run(&RunId::new("only"), 3)).unwrap();
    let last = store.last_seq().unwrap();
    assert!(last > 1);
    store.prune(&PruneRule { keep: Some(0), before_ms: None }).unwrap();
    assert!(store.runs().unwrap().is_empty());
    drop(store);
    assert_eq!(RunStore::open(&path).unwrap().last_seq().unwrap(), last);
}

/// The schema of the first release: one row per event, and each run's id range.
const SCHEMA_V1: &str = "
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY NOT NULL, workflow TEXT NOT NULL, file TEXT NOT NULL,
        started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT NOT NULL,
        tasks INTEGER NOT NULL, succeeded INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
        cancelled INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER, simulated INTEGER NOT NULL,
        pid INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
        ts INTEGER NOT NULL, type TEXT NOT NULL, task TEXT, agent TEXT, json TEXT NOT NULL
    ) STRICT;
    CREATE TABLE run_spans (
        run_id TEXT PRIMARY KEY NOT NULL, first_event INTEGER NOT NULL,
        last_event INTEGER NOT NULL
    ) STRICT;
    PRAGMA user_version = 1;";

#[test]
fn a_version_1_store_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RUNS_FILE);
    let run = RunId::new("old");
    let written = whole_run(&run, 2);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute(
            "INSERT INTO runs (run_id, workflow, file, started_at, finished_at, status, tasks, \
             succeeded, duration_ms, simulated, pid) \
             VALUES ('old', 'demo', 'w.yaml', 1, 2, 'succeeded', 2, 2, 1, 1, 1)",
            [],
        )
        .unwrap();
        for envelope in &written {
            conn.execute(
                "INSERT INTO events (run_id, seq, ts, type, task, agent, json) \
                 VALUES ('old', ?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    envelope.seq as i64,
                    envelope.ts_ms as i64,
                    envelope.event.kind(),
                    envelope.event.task(),
                    envelope.event.agent(),
                    serde_json::to_string(&**envelope).unwrap(),
                ],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO run_spans VALUES ('old', 1, 14)", []).unwrap();
    }
    let mut store = RunStore::open(&path).unwrap();
    let read: Vec<Envelope> = store.events(&run).unwrap();
    let expected: Vec<Envelope> = written.iter().map(|e| (**e).clone()).collect();
    assert_eq!(read, expected);
    assert_eq!(store.last_seq().unwrap(), 14);
    assert_eq!(store.events_after(&run, 10).unwrap().len(), 4);
    store.prune(&PruneRule { keep: Some(0), before_ms: None }).unwrap();
    assert!(store.runs().unwrap().is_empty());
    assert_eq!(store.last_seq().unwrap(), 14);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}
