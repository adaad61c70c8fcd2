//! The console's view of conflicts between agents: which conflicts wait for a person, which
//! the operator put off, and the rows of the Conflicts list. The conflicts themselves are
//! the runs' own fold ([`ConflictModel`] on each [`TaskModel`]); this only indexes them, so
//! the header and the prompt never walk every task of a large run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crossterm::event::KeyEvent;
use ratatui_textarea::TextArea;

use crate::command::ConflictChoice;
use crate::ids::{RunId, TaskId};
use crate::model::ConflictModel;

use super::state::{CommandLine, ListCursor, State, TaskModel, matches_filter};

/// Which conflict: two runs may both have a task `pick` in conflict at once.
pub type ConflictKey = (RunId, TaskId);

/// Conflicts this console has seen, by run and task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictsView {
    /// Every conflict detected in a run this console folds (live or read from the store).
    pub known: BTreeSet<ConflictKey>,
    /// Conflicts waiting for a person in a live run, with when the person was first asked.
    pub waiting: BTreeMap<ConflictKey, u64>,
    /// Waiting conflicts the operator put off (Esc) or answered: they do not pop up again
    /// by themselves; the Conflicts list and `d` in the DAG reopen them.
    pub deferred: BTreeSet<ConflictKey>,
    pub cursor: ListCursor<ConflictKey>,
}

/// What the conflict prompt's text line is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictInput {
    /// Choosing a verdict: keys are choices.
    Choosing,
    /// Writing one's own decision (`e`), over as many lines as it needs.
    Own(DecisionEditor),
    /// An optional note for this choice; Enter asks to confirm.
    Note { choice: ConflictChoice, line: CommandLine },
}

/// One's own decision in the conflict prompt: a multi-line editor (ratatui-textarea: its
/// keys, undo and word moves), so a decision can state what it decides and its conditions
/// on lines of their own. Enter starts a new line; Ctrl-S (or Alt-Enter) goes on to the note.
#[derive(Clone, Default)]
pub struct DecisionEditor(Box<TextArea<'static>>);

impl DecisionEditor {
    /// One key press, with the editor's own key map.
    pub fn key(&mut self, key: KeyEvent) {
        self.0.input(key);
    }

    pub fn lines(&self) -> &[String] {
        self.0.lines()
    }

    /// `(row, column)`, the column in characters.
    pub fn cursor(&self) -> (usize, usize) {
        let cursor = self.0.cursor();
        (cursor.0, cursor.1)
    }

    /// The decision: its lines, blank lines at either end dropped.
    pub fn text(&self) -> String {
        self.0.lines().join("\n").trim().to_owned()
    }
}

impl fmt::Debug for DecisionEditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionEditor")
            .field("lines", &self.lines())
            .field("cursor", &self.cursor())
            .finish()
    }
}

impl PartialEq for DecisionEditor {
    fn eq(&self, other: &Self) -> bool {
        self.lines() == other.lines() && self.cursor() == other.cursor()
    }
}

impl Eq for DecisionEditor {}

/// One row of the Conflicts list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictEntry<'a> {
    pub run: &'a RunId,
    pub workflow: &'a str,
    pub task: &'a TaskModel,
    pub conflict: &'a ConflictModel,
    /// Waiting for a person in a live run (a stored, interrupted run's open conflict waits
    /// for `flightdeck resume`).
    pub waiting: bool,
}

impl ConflictEntry<'_> {
    pub fn key(&self) -> ConflictKey {
        (self.run.clone(), self.task.id().clone())
    }

    /// `open`, `open · run not live` or `resolved`.
    pub fn status(&self) -> &'static str {
        match (self.conflict.resolution.is_some(), self.waiting, self.conflict.is_open()) {
            (true, _, _) => "resolved",
            (false, true, _) => "open",
            (false, false, true) => "open · not live",
            (false, false, false) => "in ladder",
        }
    }

    fn matches(&self, filter: &str) -> bool {
        matches_filter(filter, self.task.id().as_str())
            || matches_filter(filter, self.workflow)
            || matches_filter(filter, self.run.as_str())
            || self.conflict.verdicts.iter().any(|v| matches_filter(filter, v.agent.as_str()))
    }
}

impl State {
    /// Whether the operator may settle conflicts (those who may control runs; the gate
    /// decides, this only hides keys and keeps the prompt from popping up for others).
    pub fn can_resolve(&self) -> bool {
        self.replay.is_none() && self.role.allows(crate::command::Permission::ControlRuns)
    }

    /// A task's conflict in one of the runs this console folds.
    pub fn conflict(&self, key: &ConflictKey) -> Option<&ConflictModel> {
        self.runs.get(&key.0)?.task(&key.1)?.conflict.as_deref()
    }

    /// Rows of the Conflicts list: waiting ones first (oldest asked first), then the rest,
    /// newest first; filtered.
    pub fn conflict_entries(&self) -> Vec<ConflictEntry<'_>> {
        let mut entries: Vec<ConflictEntry<'_>> = self
            .conflicts
            .known
            .iter()
            .filter_map(|(run_id, task)| {
                let run = self.runs.get(run_id)?;
                let task = run.task(task)?;
                let conflict = task.conflict.as_deref()?;
                let waiting =
                    self.conflicts.waiting.contains_key(&(run_id.clone(), task.id().clone()));
                Some(ConflictEntry {
                    run: run_id,
                    workflow: &run.workflow,
                    task,
                    conflict,
                    waiting,
                })
            })
            .filter(|e| e.matches(&self.conflicts.cursor.filter))
            .collect();
        entries.sort_by(|a, b| {
            b.waiting
                .cmp(&a.waiting)
                .then_with(|| match (a.waiting, b.waiting) {
                    (true, true) => a.conflict.asked_ms.cmp(&b.conflict.asked_ms),
                    _ => b.conflict.detected_ms.cmp(&a.conflict.detected_ms),
                })
                .then_with(|| a.run.cmp(b.run))
                .then_with(|| a.task.id().cmp(b.task.id()))
        });
        entries
    }

    /// Decisions waiting for a person: approvals and conflicts.
    pub fn decisions_waiting(&self) -> (usize, usize) {
        (self.approvals.len(), self.conflicts.waiting.len())
    }
}
