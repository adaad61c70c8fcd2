//! Command-line front ends. Each subcommand lives in its own file and returns the process
//! exit code; `main.rs` only parses arguments and sets up logging.

/// `print!` for command output: see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}

/// `println!` for command output: see [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

pub mod agents;
pub mod audit;
pub mod console;
pub mod doctor;
pub mod host;
mod on_host;
mod progress;
pub mod runs;
mod table;
pub mod workflow;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::audit::{AUDIT_FILE, AuditLog};
use crate::bus::EventBus;
use crate::governance::{Channel, Gate, Provenance};
use crate::host::governed_settings;

/// Options every subcommand shares.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The project folder (`--project-dir`, default `.`).
    pub project_dir: PathBuf,
    /// Where runs, audit and logs live (`--data-dir`, default `<project>/.flightdeck`).
    pub data_dir: PathBuf,
    /// Who is acting: the OS account, or the lower identity `--as` / `FLIGHTDECK_USER` asked
    /// for (see [`acting_user`]).
    pub user: String,
    /// Theme name (`--theme`).
    pub theme: Option<String>,
    /// `--as` / `FLIGHTDECK_USER` as given: clients of a host pass it on, and the host checks
    /// it against the role of the account the kernel names.
    pub claimed: Option<String>,
}

impl Globals {
    /// The agent pool folder of the project.
    pub fn agentpool_dir(&self) -> PathBuf {
        self.project_dir.join("agentpool")
    }

    /// Resolve a path given on the command line against the current directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
        }
    }
}

/// Who a command-line process acts as: its own OS account, or `claimed` (`--as`, else
/// `FLIGHTDECK_USER`) when that identity's role is no higher under the settings that govern
/// the data dir. `$USER` is never trusted. A refused claim is audited; the error says why
/// (the caller exits 2).
pub fn acting_user(
    project_dir: &Path,
    data_dir: &Path,
    claimed: Option<&str>,
) -> Result<String, String> {
    let caller = Provenance::local(Channel::CommandLine);
    let Some(claimed) = claimed.filter(|name| *name != caller.account) else {
        return Ok(caller.account);
    };
    if caller.is_superuser() && crate::config::is_plain_user_name(claimed) {
        return Ok(claimed.to_owned());
    }
    let settings = governed_settings(project_dir, data_dir).map_err(|error| error.to_string())?;
    let audit = AuditLog::open(data_dir.join(AUDIT_FILE)).map_err(|error| error.to_string())?;
    let gate = Gate::new(&settings, audit, EventBus::new());
    gate.assume(&caller, Some(claimed))
        .map(|identity| identity.user.as_str().to_owned())
        .map_err(|denied| format!("refused: {}", denied.reason))
}

/// Writes command output to stdout. A reader that went away (`flightdeck plan … | head -1`)
/// ends the command quietly, as it ends `cat`: exit 141 (128 + SIGPIPE), no panic, no
/// message. Any other failure (a full disk behind a redirect) is said on stderr, exit 1.
///
/// Everything passes [`crate::terminal::sanitize`] on its way: stored agent text, text
/// output and JSON alike reach the terminal without a live control character.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let text = args.as_str().map_or_else(|| Cow::Owned(args.to_string()), Cow::Borrowed);
    let text = crate::terminal::sanitize(&text);
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(exit::BROKEN_PIPE);
        }
        let _ = writeln!(std::io::stderr(), "flightdeck: cannot write the output: {error}");
        std::process::exit(exit::FAILED);
    }
}

/// `flightdeck completions SHELL`: the completion script of `command` for `shell`, written
/// as every output is (a reader that went away ends it quietly, 141).
pub fn print_completions(shell: clap_complete::Shell, command: &mut clap::Command) {
    let mut script = Vec::new();
    clap_complete::generate(shell, command, "flightdeck", &mut script);
    write_stdout(format_args!("{}", String::from_utf8_lossy(&script)));
}

/// Say on stderr what opening the audit log found (a torn last record moved aside, records
/// missing against the anchor), so it is not only in the log file.
pub(crate) fn say_audit_warnings(runtime: &crate::runtime::Runtime) {
    for warning in runtime.audit_warnings() {
        eprintln!("flightdeck: warning: {warning}");
    }
}

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Everything succeeded.
    pub const OK: i32 = 0;
    /// The work ran and something failed (or validation found errors).
    pub const FAILED: i32 = 1;
    /// The input was invalid; nothing ran.
    pub const INVALID: i32 = 2;
    /// Whoever read the output stopped reading (128 + SIGPIPE, as shells report it).
    pub const BROKEN_PIPE: i32 = 141;
}
