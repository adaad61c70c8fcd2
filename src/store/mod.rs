//! The run store: every event of every run, in `SQLite` (`<data_dir>/runs.db`).
//!
//! Runs are event-sourced: the console after a lag, `--json` replay and resume all read
//! the stored stream back. Only events with a `run_id` are kept. `RunStarted` creates the
//! run's row (a second `RunStarted` never merges into it) and `RunFinished` completes it; a
//! row still `running` whose owner's lock (`runs/<run-id>.lock`, see [`owner`]) is not held
//! is reported as [`RunState::Interrupted`].
//!
//! Events are kept in blocks: each committed batch stores one row per run holding that run's
//! events as JSON lines, since a row per event made `SQLite` most of the engine's overhead.
//!
//! WAL mode with `synchronous=NORMAL`: a commit survives a crash of Flightdeck; a power
//! loss may lose the last commits but never corrupts the database. Readers (the console)
//! open their own `RunStore` and never block the writer.

mod anchor;
mod checkpoint;
pub(crate) mod decode;
mod encode;
mod error;
mod outcomes;
pub mod owner;
mod schema;
mod seq;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde::Serialize;

use decode::Decoder;
pub(crate) use encode::Encoder;
pub use error::StoreError;
pub use outcomes::{Outcome, OutcomeSample, task_words};
pub use owner::{Owner, OwnerError, RunLock, owner};
pub use schema::SCHEMA_VERSION;
pub use seq::{SEQ_BLOCK, SEQ_BLOCK_MAX, SeqBlocks};
pub use writer::{LINGER, MAX_BATCH, StoreWriter, spawn_paced_writer, spawn_writer};

use crate::event::{Envelope, Event, RunStatus};
use crate::ids::RunId;
use crate::model::{OutputKeep, RunModel};

/// The database file name inside the data folder.
pub const RUNS_FILE: &str = "runs.db";

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const INSERT_BLOCK: &str = "INSERT INTO event_blocks (run_id, first_seq, last_seq, count, body) \
                            VALUES (?1, ?2, ?3, ?4, ?5)";
/// A run's row is created once: ids are claimed unique before a run starts (its lock file),
/// and a stored run is never merged with another's start.
const INSERT_RUN: &str = "INSERT INTO runs (run_id, workflow, file, started_at, status, tasks, \
                          simulated, pid) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7) \
                          ON CONFLICT (run_id) DO NOTHING";
const FINISH_RUN: &str = "UPDATE runs SET finished_at = ?2, status = ?3, succeeded = ?4, \
                          failed = ?5, skipped = ?6, cancelled = ?7, duration_ms = ?8 \
                          WHERE run_id = ?1";
const SELECT_RUNS: &str = "SELECT run_id, workflow, file, started_at, finished_at, status, tasks, \
                           succeeded, failed, skipped, cancelled, duration_ms, simulated, pid \
                           FROM runs";

/// Where a run stands, as the store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started, not finished, and its owner holds its lock.
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Started, never finished, and nobody holds its lock (crash, kill, power loss).
    Interrupted,
    /// "Waiting for a person": running (its owner holds its lock) with a task awaiting an
    /// approval or a conflict decision. Only [`RunStore::runs`] and [`RunStore::run`], which
    /// fold an unfinished run's events, tell it from `Running`.
    Waiting,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::Waiting => "waiting",
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Running | Self::Waiting)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RunStatus> for RunState {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => Self::Succeeded,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// Which finished runs `prune` removes. A run is kept when it is among the `keep` newest
/// finished runs or started after `before_ms`; with neither given nothing is pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneRule {
    pub keep: Option<usize>,
    /// Milliseconds since the Unix epoch.
    pub before_ms: Option<u64>,
}

impl PruneRule {
    fn prunes(&self, newest_first: usize, started_ms: u64) -> bool {
        if self.keep.is_none() && self.before_ms.is_none() {
            return false;
        }
        let kept_by_count = self.keep.is_some_and(|keep| newest_first < keep);
        let kept_by_age = self.before_ms.is_some_and(|before| started_ms >= before);
        !kept_by_count && !kept_by_age
    }
}

/// One run as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub run_id: RunId,
    pub workflow: String,
    pub file: PathBuf,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub state: RunState,
    pub tasks: usize,
    /// Final counts; for unfinished runs, counted from the stored task events.
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
    pub duration_ms: Option<u64>,
    pub simulated: bool,
}

#[cfg(test)]
impl RunRow {
    /// For unit tests: a stored run `id` of workflow `w` in `state` that started at 1 s, one
    /// task that succeeded; a test changes what it is about with `..RunRow::sample(…)`.
    pub(crate) fn sample(id: &str, state: RunState) -> Self {
        Self {
            run_id: RunId::new(id),
            workflow: "w".into(),
            file: PathBuf::from("w.yaml"),
            started_ms: 1_000,
            finished_ms: None,
            state,
            tasks: 1,
            succeeded: 1,
            failed: 0,
            skipped: 0,
            cancelled: 0,
            duration_ms: None,
            simulated: false,
        }
    }
}

/// An open run store. One connection: use one `RunStore` per thread (the writer owns one,
/// a reader opens its own).
pub struct RunStore {
    path: PathBuf,
    conn: Connection,
    /// Attempts in flight, turned into outcome rows as they end.
    outcomes: outcomes::OutcomeRecorder,
    encoder: encode::Encoder,
}

impl RunStore {
    /// Open or create the store at `path` (creating its folder) and bring its schema up to
    /// date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        let sql = |source| sql_error(&path, source);
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // The first statement reads the header, so a foreign file fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "run store: WAL mode not available");
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        match schema::migrate(&mut conn).map_err(sql)? {
            schema::Migration::UpToDate => Ok(Self {
                path,
                conn,
                outcomes: outcomes::OutcomeRecorder::default(),
                encoder: encode::Encoder::storing(),
            }),
            schema::Migration::TooNew(found) => {
                Err(StoreError::TooNew { path, found, known: SCHEMA_VERSION })
            }
        }
    }

    /// Open an existing store for reading only: nothing is created, migrated or written
    /// (`runs list`, `runs show`, `audit verify`, `agents stats`, `plan`), so a viewer's read
    /// never changes a shared store. A store whose schema is older than this build's is
    /// refused with what to do; the first command that writes upgrades it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let path = path.as_ref().to_owned();
        let sql = |source| sql_error(&path, source);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // A second guard: any statement that would write fails instead.
        conn.pragma_update(None, "query_only", true).map_err(sql)?;
        let found: i64 =
            conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path, found, known: SCHEMA_VERSION });
        }
        if found < SCHEMA_VERSION {
            return Err(StoreError::Outdated { path, found, known: SCHEMA_VERSION });
        }
        Ok(Self {
            path,
            conn,
            outcomes: outcomes::OutcomeRecorder::default(),
            encoder: encode::Encoder::storing(),
        })
    }

    /// Record attempts on simulation backends as outcomes too (`limits.learn_from_sim`);
    /// off by default, so simulated runs teach nothing and cost nothing.
    pub fn record_simulated_outcomes(&mut self, record: bool) {
        self.outcomes.record_simulated = record;
    }

    /// Leave checkpoints to another connection (the writer's [`checkpoint::Checkpointer`]).
    fn leave_checkpoints(&self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| self.sql(e))
    }

    /// Copy what it can of the log into the database now, waiting for nobody.
    fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| self.sql(e))
    }

    /// Checkpoint on commit again, every 1,000 pages as `SQLite` does by default.
    fn keep_checkpoints(&self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 1000).map_err(|e| self.sql(e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data folder holding the database and the runs' lock files.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    /// Whether a run of this id is stored.
    pub fn has_run(&self, run: &RunId) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run.as_str()], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.sql(e))
    }

    /// The database's journal mode (`wal` normally).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        self.conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).map_err(|e| self.sql(e))
    }

    /// Store the events that belong to a run, in one transaction: one block per run, its
    /// events one JSON line each. Returns how many events were stored; events without a
    /// `run_id` are skipped. Attempts that end in the batch are recorded as outcomes in the
    /// same transaction.
    pub fn append_batch(&mut self, events: &[Arc<Envelope>]) -> Result<usize, StoreError> {
        let path = &self.path;
        let sql = |source| sql_error(path, source);
        let pid = i64::from(std::process::id());
        let tx = self.conn.transaction().map_err(sql)?;
        let mut outcomes = self.outcomes.batch();
        let mut stored = 0;
        // The block of each run in this batch; few runs per batch, so a list.
        let mut blocks: Vec<Block<'_>> = Vec::new();
        let encoder = &mut self.encoder;
        for envelope in events {
            let Some(run) = &envelope.run_id else { continue };
            let at = blocks.iter().position(|b| b.run == run).unwrap_or_else(|| {
                blocks.push(Block::new(run, envelope.seq));
                blocks.len() - 1
            });
            let block = &mut blocks[at];
            encoder
                .encode(&mut block.body, envelope)
                .map_err(|e| StoreError::Encode { seq: envelope.seq, message: e.to_string() })?;
            block.body.push(b'\n');
            block.last_seq = envelope.seq;
            block.count += 1;
            stored += 1;
            outcomes.observe(&tx, run, envelope).map_err(sql)?;
            match &envelope.event {
                Event::RunStarted { workflow, file, simulated, tasks, .. } => {
                    tx.prepare_cached(INSERT_RUN)
                        .and_then(|mut upsert| {
                            upsert.execute(params![
                                run.as_str(),
                                workflow,
                                file.to_string_lossy(),
                                envelope.ts_ms as i64,
                                tasks.len() as i64,
                                simulated,
                                pid,
                            ])
                        })
                        .map_err(sql)?;
                }
                Event::RunFinished {
                    status,
                    succeeded,
                    failed,
                    skipped,
                    cancelled,
                    duration_ms,
                } => {
                    tx.prepare_cached(FINISH_RUN)
                        .and_then(|mut finish| {
                            finish.execute(params![
                                run.as_str(),
                                envelope.ts_ms as i64,
                                RunState::from(*status).as_str(),
                                *succeeded as i64,
                                *failed as i64,
                                *skipped as i64,
                                *cancelled as i64,
                                *duration_ms as i64,
                            ])
                        })
                        .map_err(sql)?;
                }
                _ => {}
            }
        }
        {
            let mut insert = tx.prepare_cached(INSERT_BLOCK).map_err(sql)?;
            for block in blocks {
                // serde_json writes UTF-8.
                let body = String::from_utf8(block.body).map_err(|e| StoreError::Encode {
                    seq: block.first_seq,
                    message: e.to_string(),
                })?;
                insert.raw_bind_parameter(1, block.run.as_str()).map_err(sql)?;
                insert.raw_bind_parameter(2, block.first_seq as i64).map_err(sql)?;
                insert.raw_bind_parameter(3, block.last_seq as i64).map_err(sql)?;
                insert.raw_bind_parameter(4, block.count as i64).map_err(sql)?;
                insert.raw_bind_parameter(5, body.as_str()).map_err(sql)?;
                // SQLite binds its own copy: ours goes before it builds the row (a third
                // copy), which at 100,000 tasks is a 17 MB `run_started` line.
                drop(body);
                insert.raw_execute().map_err(sql)?;
            }
            // SQLite keeps its copy of the last body bound until the next batch; a run's
            // `run_started` line is 17 MB at 100,000 tasks.
            insert.clear_bindings();
        }
        let learned = outcomes.finish(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.outcomes.apply(learned);
        Ok(stored)
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.all_runs(true)
    }

    /// [`RunStore::runs`] without counting the tasks of unfinished runs (their counts read
    /// 0), which decodes their events: for finding a run rather than showing them all.
    pub fn runs_uncounted(&self) -> Result<Vec<RunRow>, StoreError> {
        self.all_runs(false)
    }

    /// One run, if stored.
    pub fn run(&self, run: &RunId) -> Result<Option<RunRow>, StoreError> {
        let query = format!("{SELECT_RUNS} WHERE run_id = ?1");
        Ok(self.select_runs(&query, [run.as_str()], true)?.pop())
    }

    fn all_runs(&self, count_unfinished: bool) -> Result<Vec<RunRow>, StoreError> {
        let query = format!("{SELECT_RUNS} ORDER BY started_at DESC, run_id DESC");
        self.select_runs(&query, [], count_unfinished)
    }

    /// Every stored event of a run, in order.
    pub fn events(&self, run: &RunId) -> Result<Vec<Envelope>, StoreError> {
        self.events_after(run, 0)
    }

    /// The events of a run with `seq` greater than `after`, in order (for a console that
    /// lagged behind the broadcast and re-reads what it missed); see [`RunStore::each_event`]
    /// for the order.
    pub fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Envelope>, StoreError> {
        let mut events = Vec::new();
        self.each_event(run, after, |_| false, |envelope| events.push(envelope))?;
        Ok(events)
    }

    /// A run's stored events folded by the run model, keeping `keep` of their output. Reads
    /// as it folds, without holding the events, and skips the lines the fold would ignore
    /// (pool events, and streamed output when it keeps none): what resume and the task
    /// counts need.
    pub fn fold_run(&self, run: &RunId, keep: OutputKeep) -> Result<RunModel, StoreError> {
        let mut model = RunModel::new(keep);
        self.each_event(
            run,
            0,
            |kind| keep.ignores(kind),
            |envelope| {
                model.apply(&envelope);
            },
        )?;
        Ok(model)
    }

    /// Hand each stored event of `run` with `seq` above `after` to `each`, in order, except
    /// those whose kind `skip` names (not decoded at all). The order is the order of
    /// storage, which is `seq` order within one process and stays chronological when a
    /// resumed run continues in a new process.
    fn each_event(
        &self,
        run: &RunId,
        after: u64,
        skip: impl Fn(&str) -> bool,
        mut each: impl FnMut(Envelope),
    ) -> Result<(), StoreError> {
        let mut select = self
            .conn
            .prepare_cached(
                "SELECT body FROM event_blocks WHERE run_id = ?1 AND last_seq > ?2 ORDER BY id",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows =
            select.query(params![run.as_str(), after as i64]).map_err(|e| self.sql(e))?;
        let mut decoder = Decoder::default();
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            // Borrowed from SQLite's row: a block is not copied before it is read.
            let body = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(|e| self.sql(e))?;
            for line in body.lines() {
                let envelope =
                    decoder.decode_unless(line, &skip).map_err(|e| StoreError::BadEvent {
                        path: self.path.clone(),
                        run: run.clone(),
                        seq: seq_of(line),
                        message: e.to_string(),
                    })?;
                if let Some(mut envelope) = envelope.filter(|e| e.seq > after) {
                    // Stored without it (older stores wrote it into every line): the row's.
                    envelope.run_id.get_or_insert_with(|| run.clone());
                    each(envelope);
                }
            }
        }
        Ok(())
    }

    /// Every outcome of an attempt that finished at or after `since_ms` (milliseconds since
    /// the Unix epoch), oldest first.
    pub fn outcomes_since(&self, since_ms: u64) -> Result<Vec<Outcome>, StoreError> {
        outcomes::outcomes_since(&self.conn, since_ms).map_err(|e| self.sql(e))
    }

    /// [`RunStore::outcomes_since`] with only what selection needs of each outcome.
    pub fn outcome_samples_since(&self, since_ms: u64) -> Result<Vec<OutcomeSample>, StoreError> {
        outcomes::samples_since(&self.conn, since_ms).map_err(|e| self.sql(e))
    }

    /// `seq` of the highest stored (or pruned) event, 0 when none ever was. New numbers come
    /// from [`RunStore::reserve_seqs`], which also stays above it.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        seq::highest_seq(&self.conn).map_err(|e| self.sql(e))
    }

    /// The finished runs `rule` would prune, newest first. Runs still running are never
    /// pruned (interrupted ones are: nobody holds their lock).
    pub fn prunable(&self, rule: &PruneRule) -> Result<Vec<RunRow>, StoreError> {
        let finished = self.runs_uncounted()?.into_iter().filter(|run| run.state.is_finished());
        let mut prunable: Vec<RunRow> = finished
            .enumerate()
            .filter(|(newest_first, run)| rule.prunes(*newest_first, run.started_ms))
            .map(|(_, run)| run)
            .collect();
        // Only the selected interrupted runs need their tasks counted.
        for run in prunable.iter_mut().filter(|run| run.state == RunState::Interrupted) {
            self.count_tasks(run)?;
        }
        Ok(prunable)
    }

    /// Delete the runs `rule` selects, with their events, in one transaction; returns them
    /// and how many events went with them.
    pub fn prune(&mut self, rule: &PruneRule) -> Result<(Vec<RunRow>, u64), StoreError> {
        let runs = self.prunable(rule)?;
        let path = &self.path;
        let sql = |source| sql_error(path, source);
        let tx = self.conn.transaction().map_err(sql)?;
        let mut events = 0;
        {
            let mut delete_blocks = tx
                .prepare("DELETE FROM event_blocks WHERE run_id = ?1 RETURNING last_seq, count")
                .map_err(sql)?;
            let mut delete_run = tx.prepare("DELETE FROM runs WHERE run_id = ?1").map_err(sql)?;
            let mut highest = 0_i64;
            for run in &runs {
                let id = run.run_id.as_str();
                let blocks = delete_blocks
                    .query_map([id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
                    .map_err(sql)?
                    .collect::<Result<Vec<(i64, i64)>, _>>()
                    .map_err(sql)?;
                for (last_seq, count) in blocks {
                    highest = highest.max(last_seq);
                    events += count.max(0) as u64;
                }
                delete_run.execute([id]).map_err(sql)?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('pruned_seq', ?1) ON CONFLICT (key) \
                 DO UPDATE SET value = max(value, excluded.value)",
                [highest],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        for run in &runs {
            owner::remove_lock(self.data_dir(), &run.run_id);
            crate::resume::remove_stored(self.data_dir(), &run.run_id);
        }
        Ok((runs, events))
    }

    fn select_runs<P: rusqlite::Params>(
        &self,
        query: &str,
        params: P,
        count_unfinished: bool,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut select = self.conn.prepare_cached(query).map_err(|e| self.sql(e))?;
        let data_dir = self.data_dir();
        let rows = select
            .query_map(params, |row| {
                let run_id = RunId::new(row.get::<_, String>(0)?);
                let status: String = row.get(5)?;
                let state = match status.as_str() {
                    "succeeded" => RunState::Succeeded,
                    "failed" => RunState::Failed,
                    "cancelled" => RunState::Cancelled,
                    _ if matches!(owner::owner(data_dir, &run_id), Owner::Alive { .. }) => {
                        RunState::Running
                    }
                    _ => RunState::Interrupted,
                };
                Ok(RunRow {
                    run_id,
                    workflow: row.get(1)?,
                    file: PathBuf::from(row.get::<_, String>(2)?),
                    started_ms: row.get::<_, i64>(3)? as u64,
                    finished_ms: row.get::<_, Option<i64>>(4)?.map(|ms| ms as u64),
                    state,
                    tasks: row.get::<_, i64>(6)? as usize,
                    succeeded: row.get::<_, i64>(7)? as usize,
                    failed: row.get::<_, i64>(8)? as usize,
                    skipped: row.get::<_, i64>(9)? as usize,
                    cancelled: row.get::<_, i64>(10)? as usize,
                    duration_ms: row.get::<_, Option<i64>>(11)?.map(|ms| ms as u64),
                    simulated: row.get(12)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        let mut runs = Vec::new();
        for row in rows {
            let mut run = row.map_err(|e| self.sql(e))?;
            if count_unfinished && (!run.state.is_finished() || run.state == RunState::Interrupted)
            {
                self.count_tasks(&mut run)?;
            }
            runs.push(run);
        }
        Ok(runs)
    }

    /// Fill the counts of an unfinished run from its events, folded by the run model: each
    /// task counts once, by where it is now. A running run with a task waiting for a person
    /// is [`RunState::Waiting`].
    fn count_tasks(&self, run: &mut RunRow) -> Result<(), StoreError> {
        let model = self.fold_run(&run.run_id, OutputKeep::None)?;
        let counts = model.counts();
        (run.succeeded, run.failed, run.skipped, run.cancelled) =
            (counts.succeeded, counts.failed, counts.skipped, counts.cancelled);
        if run.state == RunState::Running && model.waits_for_a_person() {
            run.state = RunState::Waiting;
        }
        Ok(())
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        sql_error(&self.path, source)
    }
}

fn sql_error(path: &Path, source: rusqlite::Error) -> StoreError {
    match &source {
        rusqlite::Error::SqliteFailure(failure, _) if failure.code == ErrorCode::NotADatabase => {
            StoreError::NotADatabase { path: path.to_owned() }
        }
        _ => StoreError::Sqlite { path: path.to_owned(), source },
    }
}

/// The events of one run in one batch, as JSON lines.
struct Block<'a> {
    run: &'a RunId,
    first_seq: u64,
    last_seq: u64,
    count: usize,
    body: Vec<u8>,
}

impl<'a> Block<'a> {
    fn new(run: &'a RunId, first_seq: u64) -> Self {
        Self { run, first_seq, last_seq: first_seq, count: 0, body: Vec::with_capacity(4096) }
    }
}

/// The `seq` of a stored line that does not decode, for the error message (0 if unreadable).
fn seq_of(line: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(line).map_or(0, |s| s.seq)
}
