//! The operator console: a ratatui view over the runtime's event stream.
//!
//! Three layers (see `STYLE.md`): [`state`] is plain data, [`reducer`] folds one input into it
//! and returns the [`Command`]s to send, [`app`] is the only file doing IO (terminal, channels,
//! timers). Panes in [`panes`] draw from borrowed state; keys are data in [`keys`]; colours are
//! semantic roles in [`theme`]. The console never touches runtime state: it reads events and
//! sends commands, and the runtime's gate decides.

pub mod app;
pub mod command_line;
pub mod conflicts;
pub mod error;
pub mod keys;
pub mod layout;
pub mod panes;
pub mod reducer;
pub mod replay;
pub mod ring;
pub mod state;
pub mod theme;

use std::path::PathBuf;
use std::sync::Arc;

use crate::command::Command;
use crate::event::Envelope;

pub use app::{replay, run};
pub use error::ConsoleError;

/// Everything the console needs from the runtime. The console holds no other handle to it.
pub struct ConsoleLink {
    /// Events that rebuild the current picture (registry, pool, breakers, active run) — applied
    /// before live events. Envelopes keep their real `seq`; live events with a `seq` at or
    /// below the highest one seen here are treated as duplicates and dropped.
    pub backlog: Vec<Arc<Envelope>>,
    pub events: LiveFeed,
    /// Commands go to the runtime, which passes them through the gate as `user`.
    pub commands: tokio::sync::mpsc::UnboundedSender<Command>,
    pub user: String,
    /// "admin" | "developer" | "operator" | "reviewer" | "viewer" — used only to hide keys the
    /// role can't use; the gate still decides.
    pub role: String,
    /// Called when the broadcast lagged: returns a fresh backlog to rebuild from (the console
    /// says it lagged).
    pub resync: Box<dyn Fn() -> Vec<Arc<Envelope>> + Send + Sync>,
    /// The store's runs (live, finished, interrupted), for the Runs list. Read when the list
    /// opens; a store that cannot be read lists nothing (and logs why).
    pub stored_runs: Box<dyn Fn() -> Vec<crate::store::RunRow> + Send + Sync>,
    /// A stored run's events, to show a run this console did not follow.
    pub run_events: RunEventsReader,
    /// Attached to another process's host (`flightdeck attach`): quitting detaches and
    /// leaves its runs going, so it asks nothing and cancels nothing.
    pub attached: bool,
}

/// Where a console's live events come from.
pub enum LiveFeed {
    /// The runtime's own bus: the host's console.
    Bus(tokio::sync::broadcast::Receiver<Arc<Envelope>>),
    /// What an attached console reads from its host, in order.
    Host(tokio::sync::mpsc::Receiver<HostFeed>),
}

impl From<tokio::sync::broadcast::Receiver<Arc<Envelope>>> for LiveFeed {
    fn from(events: tokio::sync::broadcast::Receiver<Arc<Envelope>>) -> Self {
        Self::Bus(events)
    }
}

/// One thing an attached console's host sent.
#[derive(Debug, Clone)]
pub enum HostFeed {
    Event(Arc<Envelope>),
    /// A flood condensed (see [`crate::host::feed`]).
    Digest(Arc<crate::host::protocol::Digest>),
    /// The host found this console behind: its picture again, and how much was missed.
    Resync {
        backlog: Vec<Arc<Envelope>>,
        missed: u64,
    },
}

/// Reads one stored run's events.
pub type RunEventsReader = Box<dyn Fn(&crate::ids::RunId) -> Vec<Arc<Envelope>> + Send + Sync>;

/// How the console is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// Project folder: themes are read from `<project_dir>/themes/`, `:run PATH` resolves
    /// relative paths against it.
    pub project_dir: PathBuf,
    /// Theme name (`--theme` or `theme:` in `flightdeck.yaml`); `None` means `dark`.
    pub theme: Option<String>,
    /// Where tracing writes; the panic hook prints it after restoring the terminal.
    pub log_file: PathBuf,
    /// Send `StartRun` for this workflow at startup.
    pub start_workflow: Option<PathBuf>,
    /// Ring the bell and send a desktop notification when a task starts waiting for a person.
    pub attention: Attention,
}

/// How the console calls a person when a task starts waiting for one (`notify.bell`,
/// `notify.desktop` in flightdeck.yaml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attention {
    /// The terminal bell (BEL).
    pub bell: bool,
    /// A desktop notification: OSC 9 (iTerm2, Windows Terminal, kitty) and OSC 777 (VTE,
    /// urxvt); terminals ignore the one they do not know.
    pub desktop: bool,
}
