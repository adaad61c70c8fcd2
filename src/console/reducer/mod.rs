//! The one function that changes the console's state: [`reduce`] folds one [`Input`] into
//! [`State`] and returns the [`Effect`]s for the app to carry out (send a command, load a
//! theme, quit). No IO, no clocks, no awaiting: the time arrives as an input, so the reducer
//! tests like arithmetic.
//!
//! Split by input: [`events`] (the runtime's events), [`actions`] (key intents), [`line`]
//! (the `:` command line), [`prompts`] (approvals and confirmations, and the one place that
//! decides whether a command asks first) and [`scrolling`] (selection, filters, scrolling).

mod actions;
mod conflicts;
mod events;
mod line;
mod prompts;
mod runs;
mod scrolling;

use std::sync::Arc;

use ratatui::layout::Rect;

use crate::command::Command;
use crate::event::{Envelope, Level};
use crate::ids::RunId;

use super::keys::Action;
use super::layout::ScreenLayout;
use super::state::{PaneId, RunRow, State, StatusMessage};

pub use prompts::APPROVAL_ARM_MS;

/// How long status messages stay, by level.
const INFO_MESSAGE_MS: u64 = 4_000;
const WARN_MESSAGE_MS: u64 = 8_000;
const ERROR_MESSAGE_MS: u64 = 12_000;

/// One thing that happened to the console.
#[derive(Debug, Clone)]
pub enum Input {
    /// A live event from the runtime.
    Event(Arc<Envelope>),
    /// An attached console's digest of a flood of events from its host.
    Digest(Arc<crate::host::protocol::Digest>),
    /// The startup backlog: the current picture, applied before live events.
    Backlog(Vec<Arc<Envelope>>),
    /// The broadcast lagged: rebuild the picture from a fresh backlog.
    Resync { backlog: Vec<Arc<Envelope>>, missed: u64 },
    /// A key intent.
    Action(Action),
    /// The wall clock, in milliseconds since the Unix epoch.
    Tick(u64),
    /// The terminal's new size.
    Resize { width: u16, height: u16 },
    /// The app loaded a theme (or fell back to the default because of `problem`).
    ThemeApplied { name: String, problem: Option<String> },
    /// The runtime's event stream or command channel closed.
    RuntimeGone,
    /// The store's runs, read for the Runs list.
    RunsLoaded(Vec<RunRow>),
    /// The project's workflow files, for the command line's completion.
    WorkflowsListed(Vec<String>),
    /// A stored run's events, read to show it.
    RunLoaded { run: RunId, events: Vec<Arc<Envelope>> },
}

/// What the app must do after an input, in order. The reducer only decides; the app does
/// the IO.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a command to the runtime, which passes it through the gate as the user.
    Send(Command),
    /// Load a theme (files), then report it with [`Input::ThemeApplied`].
    LoadTheme(String),
    /// List the project's workflow files, then report them with [`Input::WorkflowsListed`].
    ListWorkflows,
    /// Read the store's runs, then report them with [`Input::RunsLoaded`].
    LoadRuns,
    /// Read a stored run's events, then report them with [`Input::RunLoaded`].
    LoadRun(RunId),
    /// Replay: move the time cursor.
    Seek(super::replay::Seek),
    /// Read this stored run's events and open them in replay over the live console.
    OpenReplay(RunId),
    /// Leave the replay: back to the live console (or out, for `flightdeck replay`).
    LeaveReplay,
    /// Leave the console. Live runs the operator agreed to cancel were sent their
    /// `CancelRun` just before, in the same list.
    Quit,
}

/// Fold one input into the state; returns what the app must do.
pub fn reduce(state: &mut State, input: Input) -> Vec<Effect> {
    match input {
        Input::Event(envelope) => {
            if envelope.seq == 0 || envelope.seq > state.applied_seq {
                events::apply_event(state, &envelope, true);
            }
        }
        Input::Digest(digest) => events::apply_digest(state, &digest),
        Input::Backlog(backlog) => {
            for envelope in &backlog {
                events::apply_event(state, envelope, true);
            }
        }
        Input::Resync { backlog, missed } => events::resync(state, &backlog, missed),
        Input::Action(action) => {
            let effects = actions::apply_action(state, action);
            // An overlay that just closed lets a waiting approval prompt open.
            if state.overlay.is_none() {
                prompts::open_next_approval(state);
            }
            return if state.replay.is_some() { read_only(state, effects) } else { effects };
        }
        Input::Tick(now_ms) => {
            state.now_ms = state.now_ms.max(now_ms);
            if state.message.as_ref().is_some_and(|m| m.expires_ms <= state.now_ms) {
                state.message = None;
            }
        }
        Input::Resize { width, height } => {
            state.screen = Rect::new(0, 0, width, height);
            state.layout = ScreenLayout::compute(state.screen);
            for pane in PaneId::ORDER {
                scrolling::scroll_into_view(state, pane);
            }
        }
        Input::ThemeApplied { name, problem } => {
            state.theme_name.clone_from(&name);
            match problem {
                Some(problem) => say(state, Level::Error, problem),
                None => say(state, Level::Info, format!("theme: {name}")),
            }
        }
        Input::RunsLoaded(rows) => runs::loaded(state, rows),
        Input::WorkflowsListed(files) => state.workflow_files = files,
        Input::RunLoaded { run, events } => runs::run_loaded(state, run, &events),
        Input::RuntimeGone => {
            if state.runtime_connected {
                state.runtime_connected = false;
                let said = if state.attached {
                    "the host exited: showing the last picture · q quits"
                } else {
                    "runtime stopped: showing the last picture"
                };
                say(state, Level::Error, said.to_owned());
            }
        }
    }
    Vec::new()
}

/// In replay nothing can change: a command that got this far is dropped and said so (the
/// keys that send one are hidden, since replay runs as a viewer).
fn read_only(state: &mut State, effects: Vec<Effect>) -> Vec<Effect> {
    let (sends, kept): (Vec<Effect>, Vec<Effect>) =
        effects.into_iter().partition(|e| matches!(e, Effect::Send(_)));
    if !sends.is_empty() {
        say(state, Level::Warn, "replay: nothing can change a stored run".to_owned());
    }
    kept
}

/// The commands among effects, in order (for tests and for callers that only send).
pub fn commands(effects: &[Effect]) -> Vec<Command> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send(command) => Some(command.clone()),
            _ => None,
        })
        .collect()
}

fn say(state: &mut State, level: Level, text: String) {
    let ttl = match level {
        Level::Info => INFO_MESSAGE_MS,
        Level::Warn => WARN_MESSAGE_MS,
        Level::Error => ERROR_MESSAGE_MS,
    };
    state.message = Some(StatusMessage { level, text, expires_ms: state.now_ms + ttl });
}

#[cfg(test)]
mod tests;
