//! The Runs list: opening it (the app reads the store), showing a run, cancelling a live one,
//! resuming an interrupted one, opening a run that is not live in replay, and a stored run
//! loaded to be shown as it ended.

use std::sync::Arc;

use crate::command::Command;
use crate::event::{Envelope, Level};
use crate::ids::RunId;

use super::super::state::{
    OUTPUT_TAIL_LINES, OutputKeep, Overlay, PaneId, RunEntry, RunModel, RunRow, RunView, State,
};
use super::scrolling::{fix_runs_selection, scroll_into_view};
use super::{Effect, say};

/// Open the list; the app reads the store's runs and reports them with `RunsLoaded`.
pub(super) fn open(state: &mut State) -> Vec<Effect> {
    state.overlay = Some(Overlay::Runs);
    state.runs_list.cursor.selected.clone_from(&state.shown_run);
    state.runs_list.cursor.pinned = false;
    fix_runs_selection(state);
    vec![Effect::LoadRuns]
}

pub(super) fn loaded(state: &mut State, rows: Vec<RunRow>) {
    state.runs_list.stored = rows;
    fix_runs_selection(state);
    super::line::completes_after_load(state);
}

/// Show the selected run: one this console folds at once, a stored one once the app has
/// read its events (`RunLoaded`).
pub(super) fn show_selected(state: &mut State) -> Vec<Effect> {
    let Some(id) = state.runs_list.cursor.selected.clone() else { return Vec::new() };
    if state.runs.contains_key(&id) {
        show(state, id);
        return Vec::new();
    }
    say(state, Level::Info, format!("reading run {id} from the store"));
    vec![Effect::LoadRun(id)]
}

/// A stored run's events arrived: fold them and show the run as it ended (or as far as it
/// got, for an interrupted one).
pub(super) fn run_loaded(state: &mut State, run: RunId, events: &[Arc<Envelope>]) {
    let model = RunModel::from_events(
        events.iter().map(AsRef::as_ref),
        OutputKeep::Tail(OUTPUT_TAIL_LINES),
    );
    if !model.is_started() {
        say(state, Level::Error, format!("run {run}: no events in the store"));
        return;
    }
    state.runs.entry(run.clone()).or_insert_with(|| {
        let mut view = RunView::from_model(model);
        view.from_store = true;
        view
    });
    super::conflicts::run_loaded(state, &run);
    show(state, run);
}

fn show(state: &mut State, id: RunId) {
    state.shown_run = Some(id);
    state.shown_pinned = true;
    state.overlay = None;
    state.focus = PaneId::Dag;
    scroll_into_view(state, PaneId::Dag);
}

/// The selected row of the Runs list.
fn selected_entry(state: &State) -> Option<RunEntry> {
    let selected = state.runs_list.cursor.selected.as_ref()?;
    state.run_entries().into_iter().find(|e| e.id == *selected)
}

/// The command that cancels the selected run, when it is live.
pub(super) fn cancel_selected(state: &mut State) -> Option<Command> {
    let entry = selected_entry(state)?;
    match entry.status {
        "running" => Some(Command::CancelRun { run: entry.id }),
        "interrupted" => {
            let text = format!("{} was interrupted: press r to resume it", entry.id);
            say(state, Level::Warn, text);
            None
        }
        status => {
            say(state, Level::Warn, format!("{} already {status}", entry.id));
            None
        }
    }
}

/// The command that resumes the selected run, when it was interrupted (the gate decides
/// who may; [`super::prompts::request`] asks first).
pub(super) fn resume_selected(state: &mut State) -> Option<Command> {
    let entry = selected_entry(state)?;
    if entry.status == "interrupted" {
        return Some(Command::ResumeRun { run: entry.id, backend: None });
    }
    let text = format!("{} is {}: only an interrupted run resumes", entry.id, entry.status);
    say(state, Level::Warn, text);
    None
}

/// Open the selected run in replay, when it is not live (a live run is followed, not
/// replayed): the app reads its events and opens the time cursor on them.
pub(super) fn replay_selected(state: &mut State) -> Vec<Effect> {
    let Some(entry) = selected_entry(state) else { return Vec::new() };
    if entry.status == "running" {
        let text =
            format!("{} is running: Enter follows it live; replay it once it ended", entry.id);
        say(state, Level::Warn, text);
        return Vec::new();
    }
    say(state, Level::Info, format!("replaying run {}", entry.id));
    vec![Effect::OpenReplay(entry.id)]
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
