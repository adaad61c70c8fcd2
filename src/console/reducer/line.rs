//! The `:` command line: plain text and a cursor, history, and submitting. A submitted line
//! becomes the same request as its key (see [`prompts::request`]), so it asks the same
//! question.

use crate::event::Level;

use super::super::command_line::{self, LineCommand};
use super::super::keys::Action;
use super::super::state::{CommandLine, Editing, LineEdit, Overlay, State};
use super::{Effect, prompts, say};

/// Opens the line empty, and asks for the project's workflow files (what Tab offers after
/// `run`), read again each time so a new file is there.
pub(super) fn open(state: &mut State) -> Vec<Effect> {
    state.editing = Editing::CommandLine;
    state.command_line = CommandLine::default();
    state.history_pos = None;
    vec![Effect::ListWorkflows]
}

pub(super) fn edit(state: &mut State, edit: LineEdit) {
    state.command_line.edit(edit);
}

/// Tab. Completing `resume`'s run first reads the store's runs (the interrupted ones are
/// offered); the completion then happens when they arrive ([`completes_after_load`]).
pub(super) fn complete(state: &mut State) -> Vec<Effect> {
    if command_line::completes_a_stored_run(&state.command_line) && !state.completing_runs {
        state.completing_runs = true;
        return vec![Effect::LoadRuns];
    }
    state.completing_runs = false;
    state.command_line = command_line::complete(&state.command_line, state);
    Vec::new()
}

/// The store's runs arrived: a Tab that waited for them completes now.
pub(super) fn completes_after_load(state: &mut State) {
    if state.completing_runs && state.editing == Editing::CommandLine {
        complete(state);
    }
    state.completing_runs = false;
}

pub(super) fn submit(state: &mut State) -> Vec<Effect> {
    let text = state.command_line.text.trim().to_owned();
    state.editing = Editing::None;
    state.history_pos = None;
    if text.is_empty() {
        prompts::open_next_approval(state);
        return Vec::new();
    }
    if state.command_history.last() != Some(&text) {
        state.command_history.push(text.clone());
    }
    let effects = match command_line::parse(&text, state) {
        Ok(LineCommand::Send(command)) => prompts::request(state, command),
        Ok(LineCommand::Theme(name)) => vec![Effect::LoadTheme(name)],
        Ok(LineCommand::Help) => {
            state.overlay = Some(Overlay::Help { scroll: 0 });
            Vec::new()
        }
        Ok(LineCommand::Quit) => prompts::quit(state),
        Err(message) => {
            say(state, Level::Error, message);
            Vec::new()
        }
    };
    prompts::open_next_approval(state);
    effects
}

pub(super) fn browse_history(state: &mut State, action: Action) {
    let len = state.command_history.len();
    if len == 0 {
        return;
    }
    let pos = match (action, state.history_pos) {
        (Action::HistoryPrev, None) => Some(len - 1),
        (Action::HistoryPrev, Some(p)) => Some(p.saturating_sub(1)),
        (_, Some(p)) if p + 1 < len => Some(p + 1),
        _ => None,
    };
    state.history_pos = pos;
    let text = pos.and_then(|p| state.command_history.get(p)).cloned().unwrap_or_default();
    state.command_line = CommandLine::with_text(&text);
}
