//! Outcomes of finished attempts, derived from the events the store appends: a
//! `TaskStarted` opens an attempt (agent, backend, simulated) and the next `TaskSucceeded`,
//! `TaskRetrying` or `TaskFailed` of that task ends it as one row of the `outcomes` table,
//! written in the same transaction as the events.
//!
//! An attempt that never ends (cancelled, or its process died) teaches nothing, and neither
//! does a `TaskFailed` without an attempt (a rejected approval, an open breaker): those say
//! nothing about how well the agent works. Attempts on simulation backends are recorded only
//! when asked ([`super::RunStore::record_simulated_outcomes`], from `limits.learn_from_sim`):
//! then a simulated run costs the writer nothing beyond a glance at each event.
//!
//! Task words come from the run's `RunStarted`; they are worked out when the run's first
//! recorded attempt starts, not when the run starts, so runs with nothing to record never
//! pay for them. Between batches the writer keeps only a weak reference to a `RunStarted`:
//! once the run's other readers are done with it, its plan (40 MB at 100,000 tasks) is
//! freed, and the words, if ever needed, are read back from the stored line.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::agents::words;
use crate::event::{Envelope, Event};
use crate::ids::{AgentId, RunId, TaskId};

/// Most words kept per task: enough to say what the work was about.
const MAX_WORDS: usize = 24;

const INSERT_OUTCOME: &str = "INSERT INTO outcomes (agent, words, success, duration_ms, \
                              finished_at, simulated, backend, run_id, task, attempt) \
                              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const SELECT_OUTCOMES: &str = "SELECT agent, words, success, duration_ms, finished_at, \
                               simulated, backend, run_id, task, attempt FROM outcomes \
                               WHERE finished_at >= ?1 ORDER BY finished_at, id";

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub agent: AgentId,
    /// The task's distinct key words, lowercase, in order of appearance.
    pub words: Vec<String>,
    pub success: bool,
    pub duration_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub finished_ms: u64,
    pub simulated: bool,
    pub backend: String,
    pub run_id: RunId,
    pub task: TaskId,
    pub attempt: u32,
}

/// The distinct key words of a task description, as [`Outcome::words`] keeps them.
pub fn task_words(description: &str) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for word in words::words(description) {
        if word.is_stop || word.lower.chars().count() < 2 || kept.contains(&word.lower) {
            continue;
        }
        kept.push(word.lower);
        if kept.len() == MAX_WORDS {
            break;
        }
    }
    kept
}

/// A task has at most one attempt in flight, so run and task name it.
type Key = (RunId, TaskId);

/// An attempt that has started and not ended.
#[derive(Debug, Clone)]
struct OpenAttempt {
    agent: AgentId,
    backend: String,
    simulated: bool,
    attempt: u32,
    words: Arc<str>,
}

/// Task words per task of one run.
type RunWords = HashMap<TaskId, Arc<str>>;

/// What the writer knows between batches: the attempts in flight and the task words of the
/// runs it writes. Only one process writes a run, so this needs no table.
#[derive(Debug, Default)]
pub(super) struct OutcomeRecorder {
    /// Record attempts on simulation backends too.
    pub(super) record_simulated: bool,
    open: HashMap<Key, OpenAttempt>,
    words: HashMap<RunId, RunWords>,
    /// The `RunStarted` of runs whose words are not worked out yet, while anyone else
    /// still holds it.
    plans: HashMap<RunId, Weak<Envelope>>,
}

impl OutcomeRecorder {
    /// Start reading one batch. Nothing changes here until [`OutcomeRecorder::apply`], so a
    /// batch whose transaction fails can be offered again.
    pub(super) fn batch(&self) -> OutcomeBatch<'_> {
        OutcomeBatch {
            recorder: self,
            overlay: HashMap::new(),
            words: HashMap::new(),
            plans: HashMap::new(),
            finished: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Keep what a committed batch learned.
    pub(super) fn apply(&mut self, changes: BatchChanges) {
        for (key, attempt) in changes.overlay {
            match attempt {
                Some(attempt) => self.open.insert(key, attempt),
                None => self.open.remove(&key),
            };
        }
        self.plans
            .extend(changes.plans.iter().map(|(run, plan)| (run.clone(), Arc::downgrade(plan))));
        for run in changes.words.keys() {
            self.plans.remove(run);
        }
        self.words.extend(changes.words);
        for run in &changes.finished {
            self.open.retain(|(open_run, _), _| open_run != run);
            self.words.remove(run);
            self.plans.remove(run);
        }
    }
}

/// The outcomes of one batch of events, not yet committed.
pub(super) struct OutcomeBatch<'r> {
    recorder: &'r OutcomeRecorder,
    /// Attempts opened (`Some`) or closed (`None`) in this batch.
    overlay: HashMap<Key, Option<OpenAttempt>>,
    words: HashMap<RunId, RunWords>,
    plans: HashMap<RunId, Arc<Envelope>>,
    finished: Vec<RunId>,
    rows: Vec<NewRow>,
}

/// An outcome on its way into the table.
struct NewRow {
    attempt: OpenAttempt,
    run: RunId,
    task: TaskId,
    success: bool,
    duration_ms: u64,
    finished_ms: u64,
}

/// What [`OutcomeBatch::finish`] leaves for [`OutcomeRecorder::apply`].
pub(super) struct BatchChanges {
    overlay: HashMap<Key, Option<OpenAttempt>>,
    words: HashMap<RunId, RunWords>,
    plans: HashMap<RunId, Arc<Envelope>>,
    finished: Vec<RunId>,
}

impl OutcomeBatch<'_> {
    /// Take note of one event of `run`. `conn` reads the run's task words when this process
    /// did not see it start (a resumed run).
    pub(super) fn observe(
        &mut self,
        conn: &Connection,
        run: &RunId,
        envelope: &Arc<Envelope>,
    ) -> rusqlite::Result<()> {
        match &envelope.event {
            Event::RunStarted { .. } => {
                self.plans.insert(run.clone(), Arc::clone(envelope));
            }
            Event::TaskStarted { simulated: true, .. } if !self.recorder.record_simulated => {}
            Event::TaskStarted { task, agent, attempt, backend, simulated, .. } => {
                let words = self.words_of(conn, run, task)?;
                let open = OpenAttempt {
                    agent: agent.clone(),
                    backend: backend.clone(),
                    simulated: *simulated,
                    attempt: *attempt,
                    words,
                };
                self.overlay.insert((run.clone(), task.clone()), Some(open));
            }
            Event::TaskSucceeded { task, duration_ms, .. } => {
                self.close(run, task, Some((true, *duration_ms, envelope.ts_ms)));
            }
            Event::TaskRetrying { task, duration_ms, .. }
            | Event::TaskFailed { task, duration_ms, .. } => {
                self.close(run, task, Some((false, *duration_ms, envelope.ts_ms)));
            }
            Event::TaskCancelled { task, .. } | Event::TaskSkipped { task, .. } => {
                self.close(run, task, None);
            }
            Event::RunFinished { .. } => self.finished.push(run.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Write this batch's outcomes; returns what to keep once the transaction commits.
    pub(super) fn finish(self, conn: &Connection) -> rusqlite::Result<BatchChanges> {
        if !self.rows.is_empty() {
            let mut insert = conn.prepare_cached(INSERT_OUTCOME)?;
            for row in &self.rows {
                insert.execute(params![
                    row.attempt.agent.as_str(),
                    &*row.attempt.words,
                    row.success,
                    row.duration_ms as i64,
                    row.finished_ms as i64,
                    row.attempt.simulated,
                    row.attempt.backend,
                    row.run.as_str(),
                    row.task.as_str(),
                    i64::from(row.attempt.attempt),
                ])?;
            }
        }
        Ok(BatchChanges {
            overlay: self.overlay,
            words: self.words,
            plans: self.plans,
            finished: self.finished,
        })
    }

    /// End the open attempt of `task`, as an outcome `(success, duration, finished)` or, with
    /// `None`, as nothing learned.
    fn close(&mut self, run: &RunId, task: &TaskId, ended: Option<(bool, u64, u64)>) {
        if self.overlay.is_empty() && self.recorder.open.is_empty() {
            return;
        }
        let key = (run.clone(), task.clone());
        let open = match self.overlay.get(&key) {
            Some(attempt) => attempt.clone(),
            None => self.recorder.open.get(&key).cloned(),
        };
        let Some(open) = open else { return };
        self.overlay.insert(key, None);
        let Some((success, duration_ms, finished_ms)) = ended else { return };
        self.rows.push(NewRow {
            attempt: open,
            run: run.clone(),
            task: task.clone(),
            success,
            duration_ms,
            finished_ms,
        });
    }

    fn words_of(
        &mut self,
        conn: &Connection,
        run: &RunId,
        task: &TaskId,
    ) -> rusqlite::Result<Arc<str>> {
        if !self.words.contains_key(run) && !self.recorder.words.contains_key(run) {
            let plan =
                self.plans.get(run).cloned().or_else(|| self.recorder.plans.get(run)?.upgrade());
            let words = match plan {
                Some(plan) => plan_words(&plan.event),
                None => stored_run_words(conn, run)?,
            };
            self.words.insert(run.clone(), words);
        }
        let words = self.words.get(run).or_else(|| self.recorder.words.get(run));
        Ok(words.and_then(|w| w.get(task)).cloned().unwrap_or_else(|| Arc::from("")))
    }
}

/// How many of a run's first blocks are searched for its `RunStarted`: it is among the run's
/// first events (after the gate's decision to start it, published with the run's id).
const RUN_STARTED_BLOCKS: usize = 4;

/// The task words of a run from its stored `RunStarted`; none when it is not stored.
fn stored_run_words(conn: &Connection, run: &RunId) -> rusqlite::Result<RunWords> {
    let mut select = conn
        .prepare_cached("SELECT body FROM event_blocks WHERE run_id = ?1 ORDER BY id LIMIT ?2")?;
    let mut blocks = select.query(params![run.as_str(), RUN_STARTED_BLOCKS as i64])?;
    while let Some(block) = blocks.next()? {
        let body: String = block.get(0)?;
        // The tag cannot appear unescaped inside a JSON string: only the event itself has it.
        if let Some(line) = body.lines().find(|line| line.contains(r#""type":"run_started""#)) {
            return Ok(super::decode::Decoder::default()
                .decode(line)
                .map_or_else(|_| RunWords::new(), |e| plan_words(&e.event)));
        }
    }
    Ok(RunWords::new())
}

/// The task words of each task of a `RunStarted` (none for any other event).
fn plan_words(event: &Event) -> RunWords {
    let Event::RunStarted { tasks, .. } = event else { return RunWords::new() };
    tasks
        .iter()
        .map(|t| (t.task.clone(), Arc::from(task_words(&t.description).join(" "))))
        .collect()
}

/// What selection and `timeout: auto` need of one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeSample {
    pub agent: AgentId,
    pub success: bool,
    pub duration_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub finished_ms: u64,
    pub simulated: bool,
}

impl From<&Outcome> for OutcomeSample {
    fn from(outcome: &Outcome) -> Self {
        Self {
            agent: outcome.agent.clone(),
            success: outcome.success,
            duration_ms: outcome.duration_ms,
            finished_ms: outcome.finished_ms,
            simulated: outcome.simulated,
        }
    }
}

/// [`outcomes_since`] without words, run and task: what planning reads, at a third of the
/// cost per row.
pub(super) fn samples_since(
    conn: &Connection,
    since_ms: u64,
) -> rusqlite::Result<Vec<OutcomeSample>> {
    let mut select = conn.prepare_cached(
        "SELECT agent, success, duration_ms, finished_at, simulated FROM outcomes \
         WHERE finished_at >= ?1 ORDER BY finished_at, id",
    )?;
    let rows = select.query_map([since_ms as i64], |row| {
        Ok(OutcomeSample {
            agent: AgentId::new(row.get::<_, String>(0)?),
            success: row.get(1)?,
            duration_ms: row.get::<_, i64>(2)?.max(0) as u64,
            finished_ms: row.get::<_, i64>(3)?.max(0) as u64,
            simulated: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// Every outcome that finished at or after `since_ms`, oldest first.
pub(super) fn outcomes_since(conn: &Connection, since_ms: u64) -> rusqlite::Result<Vec<Outcome>> {
    let mut select = conn.prepare_cached(SELECT_OUTCOMES)?;
    let rows = select.query_map([since_ms as i64], |row| {
        let words: String = row.get(1)?;
        Ok(Outcome {
            agent: AgentId::new(row.get::<_, String>(0)?),
            words: words.split_whitespace().map(str::to_owned).collect(),
            success: row.get(2)?,
            duration_ms: row.get::<_, i64>(3)?.max(0) as u64,
            finished_ms: row.get::<_, i64>(4)?.max(0) as u64,
            simulated: row.get(5)?,
            backend: row.get(6)?,
            run_id: RunId::new(row.get::<_, String>(7)?),
            task: TaskId::new(row.get::<_, String>(8)?),
            attempt: u32::try_from(row.get::<_, i64>(9)?).unwrap_or(0),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_words_are_distinct_key_words_as_written() {
        assert_eq!(
            task_words("Add the OAuth login to the API, then test the API login"),
            ["add", "oauth", "login", "api", "test"]
        );
    }
}
