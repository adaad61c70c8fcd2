//! The Runs list: opening it (the app reads the store), showing a run, cancelling a live one,
//! and a stored run loaded to be shown as it ended.

use std::sync::Arc;

use crate::command::Command;
use crate::event::{Envelope, Level};
use crate::ids::RunId;

use super::super::state::{
    OUTPUT_TAIL_LINES, OutputKeep, Overlay, PaneId, RunModel, RunRow, RunView, State,
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
    state.runs.entry(run.clone()).or_insert_with(|| RunView::from_model(model));
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

/// The command that cancels the selected run, when it is live.
pub(super) fn cancel_selected(state: &mut State) -> Option<Command> {
    let entries = state.run_entries();
    let selected = state.runs_list.cursor.selected.as_ref()?;
    let entry = entries.iter().find(|e| e.id == *selected)?;
    match entry.status {
        "running" => Some(Command::CancelRun { run: entry.id.clone() }),
        "interrupted" => {
            let text = format!("{} was interrupted: resume it with `flightdeck resume`", entry.id);
            say(state, Level::Warn, text);
            None
        }
        status => {
            say(state, Level::Warn, format!("{} already {status}", entry.id));
            None
        }
    }
}
