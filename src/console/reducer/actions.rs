//! Key intents into state changes and effects. Actions that ask for a command build it from
//! the selection and hand it to [`prompts::request`], like the `:` command that means the
//! same.

use crate::command::Command;
use crate::event::Level;

use super::super::keys::Action;
use super::super::panes;
use super::super::state::{Editing, Overlay, Prompt, State};
use super::scrolling::{
    WHEEL_ROWS, after_filter_change, filter_mut, move_dag_layer, move_selection, page,
};
use super::{Effect, conflicts, line, prompts, runs, say};

pub(super) fn apply_action(state: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Quit => return prompts::quit(state),
        Action::FocusNext | Action::FocusPrev => {
            state.editing = Editing::None;
            state.focus =
                if action == Action::FocusNext { state.focus.next() } else { state.focus.prev() };
            prompts::open_next_approval(state);
        }
        Action::SelectPrev => move_selection(state, -1),
        Action::SelectNext => move_selection(state, 1),
        Action::PageUp => move_selection(state, -page(state)),
        Action::PageDown => move_selection(state, page(state)),
        Action::SelectFirst => move_selection(state, isize::MIN / 2),
        Action::SelectLast => move_selection(state, isize::MAX / 2),
        Action::SelectLeft => move_dag_layer(state, -1),
        Action::SelectRight => move_dag_layer(state, 1),
        Action::OpenDetails => {
            if panes::has_details(state, state.focus) {
                state.overlay = Some(Overlay::Details { pane: state.focus, scroll: 0 });
            }
        }
        Action::CloseOverlay => state.overlay = None,
        Action::ToggleHelp => {
            state.overlay = match state.overlay {
                Some(Overlay::Help { .. }) => None,
                _ => Some(Overlay::Help { scroll: 0 }),
            };
        }
        Action::StartFilter
        | Action::FilterPush(_)
        | Action::FilterPop
        | Action::FilterAccept
        | Action::FilterClear => filter(state, action),
        Action::OpenCommandLine => return line::open(state),
        Action::CloseCommandLine => {
            state.editing = Editing::None;
            prompts::open_next_approval(state);
        }
        Action::CommandLineEdit(edit) => line::edit(state, edit),
        Action::CompleteCommandLine => return line::complete(state),
        Action::HistoryPrev | Action::HistoryNext => line::browse_history(state, action),
        Action::SubmitCommandLine => return line::submit(state),
        Action::PromptNext | Action::PromptPrev => {
            prompts::cycle_prompt(state, action == Action::PromptNext);
        }
        Action::PromptConfirm => return prompts::press_prompt(state),
        Action::Approve => return prompts::decide_approval(state, true),
        Action::Reject => return prompts::decide_approval(state, false),
        Action::Later if matches!(state.prompt, Some(Prompt::Conflict { .. })) => {
            conflicts::defer(state);
        }
        Action::Later => prompts::defer_approval(state),
        Action::PickVerdict(number) => conflicts::pick(state, number),
        Action::OwnDecision => conflicts::start_own(state),
        Action::AskThirdOpinion => return conflicts::ask_third_opinion(state),
        Action::ConflictEdit(edit) => conflicts::edit(state, edit),
        Action::DecisionKey(key) => conflicts::decision_key(state, key),
        Action::ConflictAccept => return conflicts::accept(state),
        Action::ConflictBack => conflicts::back(state),
        Action::OpenConflict => conflicts::open_selected_task(state),
        Action::OpenConflicts => conflicts::open_list(state),
        Action::OpenSelectedConflict => conflicts::open_selected(state),
        Action::ConfirmYes => return prompts::answer(state, true),
        Action::ConfirmNo => return prompts::answer(state, false),
        Action::ReviewSelected => prompts::review_selected(state),
        Action::CancelSelectedTask
        | Action::RetrySelectedTask
        | Action::CancelRun
        | Action::ResetSelectedBreaker
        | Action::OpenSelectedBreaker
        | Action::SpawnSelectedAgent
        | Action::ReleaseSelectedInstance
        | Action::ReloadAgents => {
            if let Some(command) = selected_command(state, action) {
                return prompts::request(state, command);
            }
        }
        Action::OpenRuns if state.replay.is_some() => {
            say(state, Level::Info, "leave the replay first (q)".to_owned());
        }
        Action::OpenRuns => return runs::open(state),
        Action::ShowSelectedRun => return runs::show_selected(state),
        Action::CancelSelectedRun => {
            if let Some(command) = runs::cancel_selected(state) {
                return prompts::request(state, command);
            }
        }
        Action::ResumeSelectedRun => {
            if let Some(command) = runs::resume_selected(state) {
                return prompts::request(state, command);
            }
        }
        Action::ReplaySelectedRun => return runs::replay_selected(state),
        Action::LeaveReplay => return vec![Effect::LeaveReplay],
        Action::ReplaySeek(seek) if state.replay.is_some() => return vec![Effect::Seek(seek)],
        Action::ReplayPlay => {
            if let Some(cursor) = state.replay.as_mut() {
                cursor.playing = match cursor.playing {
                    None => Some(1),
                    Some(1) => Some(10),
                    Some(_) => None,
                };
            }
        }
        Action::ReplaySeek(_) => {}
        Action::Click { column, row } => click(state, column, row),
        Action::Scroll { column, row, down } => {
            if state.overlay.is_some() || state.prompt.is_some() {
                move_selection(state, if down { WHEEL_ROWS } else { -WHEEL_ROWS });
            } else if let Some(pane) = state.layout.pane_at(column, row) {
                state.focus = pane;
                move_selection(state, if down { WHEEL_ROWS } else { -WHEEL_ROWS });
            }
        }
    }
    Vec::new()
}

/// Typing a filter for the focused pane.
fn filter(state: &mut State, action: Action) {
    match action {
        Action::StartFilter => {
            if filter_mut(state, state.focus).is_some() {
                state.editing = Editing::Filter;
            } else {
                say(state, Level::Info, "nothing to filter yet".to_owned());
            }
        }
        Action::FilterPush(c) => {
            if let Some(filter) = filter_mut(state, state.focus) {
                filter.push(c);
            }
            after_filter_change(state);
        }
        Action::FilterPop => {
            if let Some(filter) = filter_mut(state, state.focus) {
                filter.pop();
            }
            after_filter_change(state);
        }
        Action::FilterClear => {
            // Esc without a filter changes nothing (a scrolled audit view stays put).
            if !state.filter(state.focus).is_empty() {
                if let Some(filter) = filter_mut(state, state.focus) {
                    filter.clear();
                }
                after_filter_change(state);
            }
            state.editing = Editing::None;
            prompts::open_next_approval(state);
        }
        _ => {
            state.editing = Editing::None;
            prompts::open_next_approval(state);
        }
    }
}

/// The command a key means for the selected item, or why there is none (said on screen).
fn selected_command(state: &mut State, action: Action) -> Option<Command> {
    match action {
        Action::CancelSelectedTask | Action::RetrySelectedTask | Action::CancelRun => {
            run_command(state, action)
        }
        Action::ResetSelectedBreaker => {
            state.breakers.cursor.selected.clone().map(|agent| Command::ResetBreaker { agent })
        }
        Action::OpenSelectedBreaker => {
            state.breakers.cursor.selected.clone().map(|agent| Command::OpenBreaker { agent })
        }
        Action::SpawnSelectedAgent => {
            let agents = &state.agents;
            let key = agents.cursor.selected.as_ref()?;
            let agent = agents.entries.get(key)?.summary.as_ref()?.agent.clone();
            Some(Command::SpawnInstance { agent })
        }
        Action::ReleaseSelectedInstance => {
            state.pool.cursor.selected.map(|instance| Command::ReleaseInstance { instance })
        }
        Action::ReloadAgents => Some(Command::ReloadAgents),
        _ => None,
    }
}

/// Cancel the run, or cancel or retry its selected task.
fn run_command(state: &mut State, action: Action) -> Option<Command> {
    let Some(run) = state.run() else {
        say(state, Level::Warn, "no run yet; start one with :run PATH".to_owned());
        return None;
    };
    let Some(run_id) = run.run_id.clone() else {
        say(state, Level::Error, "the current run has no id".to_owned());
        return None;
    };
    let task = run.selected_task().map(|t| t.id().clone());
    match (action, task) {
        (Action::CancelRun, _) => Some(Command::CancelRun { run: run_id }),
        (Action::CancelSelectedTask, Some(task)) => Some(Command::CancelTask { run: run_id, task }),
        (Action::RetrySelectedTask, Some(task)) => Some(Command::RetryTask { run: run_id, task }),
        _ => None,
    }
}

fn click(state: &mut State, column: u16, row: u16) {
    if state.prompt.is_some() {
        return;
    }
    if state.overlay.is_some() {
        state.overlay = None;
        return;
    }
    if let Some(pane) = state.layout.pane_at(column, row) {
        if state.focus != pane {
            state.editing = Editing::None;
        }
        state.focus = pane;
    }
}
