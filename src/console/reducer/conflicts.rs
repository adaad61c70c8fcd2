//! Conflicts between agents in the console: the index of waiting conflicts kept from events,
//! the conflict prompt (choose a verdict or write one's own, add a note, confirm) and the
//! Conflicts list. A decision is the same `resolve_conflict` request as `:resolve TASK N`,
//! so it asks the same confirmation ([`prompts::request`]).

use crate::command::{Command, ConflictChoice};
use crate::event::{Envelope, Event, Level};
use crate::ids::RunId;

use super::super::conflicts::DecisionEditor;
use super::super::panes;
use super::super::state::{
    CommandLine, ConflictInput, ConflictKey, LineEdit, Overlay, PaneId, Prompt, State,
};
use super::prompts::{self, APPROVAL_ARM_MS};
use super::{Effect, say};

// ---------------------------------------------------------------- events

/// Keep the index after `envelope` was folded into run `run`'s model.
pub(super) fn on_event(state: &mut State, run: &RunId, envelope: &Envelope) {
    match &envelope.event {
        Event::ConflictDetected { task, .. } => {
            state.conflicts.known.insert((run.clone(), task.clone()));
        }
        Event::ConflictStep { task, step: crate::conflict::LadderStep::Operator, .. } => {
            let key = (run.clone(), task.clone());
            state.conflicts.known.insert(key.clone());
            state.conflicts.waiting.entry(key).or_insert(envelope.ts_ms);
            if !state.can_resolve() && state.replay.is_none() {
                say(state, Level::Info, format!("{task}: a conflict waits for a person"));
            }
            prompts::open_next_approval(state);
        }
        Event::ConflictResolved { task, decision, by, .. } => {
            let key = (run.clone(), task.clone());
            let was_waiting = settled(state, &key);
            if let Some(by) = by.as_ref().filter(|b| was_waiting && b.as_str() != state.user) {
                say(state, Level::Info, format!("{by} settled {task}: \"{decision}\""));
            }
        }
        Event::TaskSucceeded { task, .. }
        | Event::TaskFailed { task, .. }
        | Event::TaskCancelled { task, .. }
            if !state.conflicts.waiting.is_empty() =>
        {
            settled(state, &(run.clone(), task.clone()));
        }
        Event::RunFinished { .. } if !state.conflicts.waiting.is_empty() => {
            let keys: Vec<ConflictKey> =
                state.conflicts.waiting.keys().filter(|(r, _)| r == run).cloned().collect();
            for key in keys {
                settled(state, &key);
            }
        }
        _ => {}
    }
}

/// A conflict no longer waits: forget it, close its prompt, show the next. Returns whether
/// it was waiting.
fn settled(state: &mut State, key: &ConflictKey) -> bool {
    if state.conflicts.waiting.remove(key).is_none() {
        return false;
    }
    state.conflicts.deferred.remove(key);
    if matches!(&state.prompt, Some(Prompt::Conflict { key: k, .. }) if k == key) {
        state.prompt = None;
    }
    prompts::open_next_approval(state);
    true
}

/// Every conflict of a run read from the store (the Runs list) is listed.
pub(super) fn run_loaded(state: &mut State, run: &RunId) {
    let Some(view) = state.runs.get(run) else { return };
    let keys: Vec<ConflictKey> = view
        .tasks
        .iter()
        .filter(|t| t.conflict.is_some())
        .map(|t| (run.clone(), t.id().clone()))
        .collect();
    state.conflicts.known.extend(keys);
}

/// After the runs were rebuilt from a fresh backlog: waiting conflicts are those the runs
/// still show open.
pub(super) fn resynced(state: &mut State) {
    state.conflicts.waiting.retain(|key, _| {
        state
            .runs
            .get(&key.0)
            .and_then(|r| r.task(&key.1))
            .and_then(|t| t.conflict.as_deref())
            .is_some_and(crate::model::ConflictModel::is_open)
    });
    if let Some(Prompt::Conflict { key, .. }) = &state.prompt
        && state.conflict(key).is_none()
    {
        state.prompt = None;
    }
}

// ---------------------------------------------------------------- the prompt

/// The next waiting conflict nobody put off, oldest first, when nothing else has the keys
/// (called by [`prompts::open_next_approval`] once no approval wants the prompt).
pub(super) fn open_next(state: &mut State) {
    if !state.can_resolve() {
        return;
    }
    let next = state
        .conflicts
        .waiting
        .iter()
        .filter(|(key, _)| !state.conflicts.deferred.contains(*key))
        .min_by_key(|(key, asked)| (**asked, *key))
        .map(|(key, _)| key.clone());
    if let Some(key) = next {
        let armed_ms = state.now_ms + APPROVAL_ARM_MS;
        state.prompt =
            Some(Prompt::Conflict { key, choice: None, armed_ms, input: ConflictInput::Choosing });
    }
}

/// Open the prompt of `key` on request (armed at once: the operator asked for it).
fn open(state: &mut State, key: ConflictKey) {
    state.overlay = None;
    state.editing = super::super::state::Editing::None;
    state.prompt =
        Some(Prompt::Conflict { key, choice: None, armed_ms: 0, input: ConflictInput::Choosing });
}

/// `d` on a DAG task: its conflict's prompt.
pub(super) fn open_selected_task(state: &mut State) {
    let Some(run) = state.shown_run.clone() else { return };
    let Some(task) = state.run().and_then(|r| r.selected_task()).map(|t| t.id().clone()) else {
        return;
    };
    let key = (run, task);
    if state.conflict(&key).is_some() {
        open(state, key);
    } else {
        say(state, Level::Warn, format!("{} had no conflict", key.1));
    }
}

/// Whether choosing is allowed yet; says why not.
fn armed(state: &mut State) -> bool {
    let Some(Prompt::Conflict { armed_ms, .. }) = &state.prompt else { return false };
    if state.now_ms < *armed_ms {
        say(state, Level::Warn, "the conflict just opened: read it, then choose".to_owned());
        return false;
    }
    true
}

fn verdict_count(state: &State, key: &ConflictKey) -> usize {
    state.conflict(key).map_or(0, |c| c.verdicts.len())
}

/// 1-9: focus that verdict (Enter then asks for a note and to confirm).
pub(super) fn pick(state: &mut State, number: usize) {
    if !armed(state) {
        return;
    }
    let Some(Prompt::Conflict { key, .. }) = &state.prompt else { return };
    let count = verdict_count(state, key);
    if number == 0 || number > count {
        say(state, Level::Warn, format!("no verdict {number}; choose 1 to {count}"));
        return;
    }
    if let Some(Prompt::Conflict { choice, .. }) = &mut state.prompt {
        *choice = Some(number - 1);
    }
}

/// ← →: the verdicts, then Later, wrapping both ways.
pub(super) fn cycle(state: &mut State, forward: bool) {
    let Some(Prompt::Conflict { key, .. }) = &state.prompt else { return };
    let count = verdict_count(state, key);
    if let Some(Prompt::Conflict { choice, .. }) = &mut state.prompt {
        let at = choice.unwrap_or(count);
        let next = if forward { (at + 1) % (count + 1) } else { (at + count) % (count + 1) };
        *choice = (next < count).then_some(next);
    }
}

/// Enter: on Later, put it off; on a verdict, ask for an optional note.
pub(super) fn press(state: &mut State) -> Vec<Effect> {
    let Some(Prompt::Conflict { choice, .. }) = &state.prompt else { return Vec::new() };
    let Some(column) = *choice else {
        defer(state);
        return Vec::new();
    };
    if !state.can_resolve() {
        say(state, Level::Warn, "you may read this conflict, not settle it".to_owned());
        return Vec::new();
    }
    if !armed(state) {
        return Vec::new();
    }
    set_input(
        state,
        ConflictInput::Note {
            choice: ConflictChoice::Verdict(column + 1),
            line: CommandLine::default(),
        },
    );
    Vec::new()
}

/// `t`: ask the third-opinion agent now. The prompt stays open; its finding arrives as a
/// ladder step (and, when it decides, a new recommendation).
pub(super) fn ask_third_opinion(state: &mut State) -> Vec<Effect> {
    if !armed(state) {
        return Vec::new();
    }
    let Some(Prompt::Conflict { key, .. }) = &state.prompt else { return Vec::new() };
    let (run, task) = key.clone();
    prompts::request(state, Command::AskThirdOpinion { run, task })
}

/// `e`: write one's own decision.
pub(super) fn start_own(state: &mut State) {
    if armed(state) {
        set_input(state, ConflictInput::Own(DecisionEditor::default()));
    }
}

/// A key for the own-decision editor.
pub(super) fn decision_key(state: &mut State, key: crossterm::event::KeyEvent) {
    if let Some(Prompt::Conflict { input: ConflictInput::Own(editor), .. }) = &mut state.prompt {
        editor.key(key);
    }
}

fn set_input(state: &mut State, new: ConflictInput) {
    if let Some(Prompt::Conflict { input, .. }) = &mut state.prompt {
        *input = new;
    }
}

/// Typing into the own decision or the note.
pub(super) fn edit(state: &mut State, edit: LineEdit) {
    if let Some(Prompt::Conflict { input, .. }) = &mut state.prompt {
        match input {
            ConflictInput::Note { line, .. } => line.edit(edit),
            ConflictInput::Own(_) | ConflictInput::Choosing => {}
        }
    }
}

/// Enter while typing: an own decision goes on to its note; a note asks to confirm.
pub(super) fn accept(state: &mut State) -> Vec<Effect> {
    let Some(Prompt::Conflict { key, input, .. }) = &state.prompt else { return Vec::new() };
    match input {
        ConflictInput::Choosing => Vec::new(),
        ConflictInput::Own(editor) => {
            let text = editor.text();
            if text.is_empty() {
                say(state, Level::Warn, "write a decision first, or Esc to go back".to_owned());
            } else {
                let line = CommandLine::default();
                set_input(state, ConflictInput::Note { choice: ConflictChoice::Own(text), line });
            }
            Vec::new()
        }
        ConflictInput::Note { choice, line } => {
            let note = Some(line.text.trim().to_owned()).filter(|n| !n.is_empty());
            let (run, task) = key.clone();
            let command = Command::ResolveConflict { run, task, choice: choice.clone(), note };
            // Answered (or asked to confirm): it does not pop up again by itself; `n` on
            // the confirmation comes back here.
            state.conflicts.deferred.insert(key.clone());
            state.prompt = None;
            prompts::request(state, command)
        }
    }
}

/// Esc while typing: back to choosing.
pub(super) fn back(state: &mut State) {
    set_input(state, ConflictInput::Choosing);
}

/// Esc (or Enter on Later): close; it stays open, only the panel task's dependents wait.
pub(super) fn defer(state: &mut State) {
    if let Some(Prompt::Conflict { key, .. }) = state.prompt.take() {
        let waiting = state.conflicts.waiting.contains_key(&key);
        state.conflicts.deferred.insert(key.clone());
        if waiting {
            say(
                state,
                Level::Info,
                format!("{} waits for a decision; D lists conflicts, d on it in the DAG", key.1),
            );
        }
    }
    prompts::open_next_approval(state);
}

/// `n` on the confirmation of a conflict's decision: back to its prompt.
pub(super) fn reopen_after_no(state: &mut State, command: &Command) {
    if let Command::ResolveConflict { run, task, .. } = command {
        let key = (run.clone(), task.clone());
        if state.conflicts.waiting.contains_key(&key) {
            open(state, key);
        }
    }
}

// ---------------------------------------------------------------- the list

/// `D`: open the Conflicts list.
pub(super) fn open_list(state: &mut State) {
    state.overlay = Some(Overlay::Conflicts);
    state.conflicts.cursor.pinned = false;
    fix_list_selection(state);
}

/// Keep the selection on a listed conflict: the chosen one, else the first.
pub(super) fn fix_list_selection(state: &mut State) {
    let entries = state.conflict_entries();
    let selected = state.conflicts.cursor.selected.as_ref();
    if selected.is_some_and(|s| entries.iter().any(|e| e.key() == *s)) {
        return;
    }
    let first = entries.first().map(super::super::state::ConflictEntry::key);
    state.conflicts.cursor.selected = first;
}

pub(super) fn move_list_selection(state: &mut State, delta: isize) {
    let entries = state.conflict_entries();
    if entries.is_empty() {
        return;
    }
    let selected = state.conflicts.cursor.selected.as_ref();
    let at = entries.iter().position(|e| Some(&e.key()) == selected).unwrap_or(0);
    let next = at.saturating_add_signed(delta).min(entries.len() - 1);
    let key = entries[next].key();
    let cursor = &mut state.conflicts.cursor;
    cursor.selected = Some(key);
    cursor.pinned = true;
    let rows = panes::conflicts::visible_rows(state.screen);
    cursor.offset = panes::scrolled_offset(cursor.offset, next, rows);
}

/// Enter in the list: the selected conflict in the prompt (an open one to decide, a
/// resolved one to read), and the DAG shows its run.
pub(super) fn open_selected(state: &mut State) {
    let Some(key) = state.conflicts.cursor.selected.clone() else { return };
    if state.conflict(&key).is_none() {
        return;
    }
    if state.shown_run.as_ref() != Some(&key.0) {
        state.shown_run = Some(key.0.clone());
        state.shown_pinned = true;
    }
    state.focus = PaneId::Dag;
    if let Some(run) = state.runs.get_mut(&key.0)
        && let Some(index) = run.index.get(&key.1).copied()
    {
        run.cursor.selected = index;
    }
    open(state, key);
}
