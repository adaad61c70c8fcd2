//! Every descendant of an attempt is found and stopped, even one that left the attempt's
//! process group or session (`setsid`, `setpgid`, a double fork, a daemon that closed its
//! file descriptors and ignores SIGTERM).
//!
//! A process group is not enough: any process may leave it. So each attempt's program runs
//! under a per-attempt *child subreaper*, `flightdeck __reap` (see [`shim`]): Flightdeck's own
//! binary, re-executed. Orphans anywhere below it are re-parented to it, so it can always
//! walk its tree, and it stops the whole tree on timeout, cancel, shutdown, Flightdeck's death
//! and the program's own exit. Why a shim and not Flightdeck itself as the subreaper: a
//! subreaper must reap what it adopts with `waitpid(-1)`, which would steal the exit
//! statuses the async runtime waits for, and adopted orphans could not be told apart by
//! attempt. Why not a cgroup: writable cgroups need delegation (systemd, root), which most
//! terminals and containers do not give.
//!
//! The shim needs the `flightdeck` binary: `main` calls [`install_current_exe`]; tests and
//! other embedders call [`install`] with its path. Without it, attempts run directly in
//! their own process group as before, and a process that leaves the group is not found.

mod shim;
mod tree;

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;

pub use shim::{KILL_WAIT, SUBCOMMAND, main as shim_main};

/// The binary that understands `__reap`, once installed.
static SHIM_BINARY: OnceLock<PathBuf> = OnceLock::new();
/// Numbers the error files of one Flightdeck process.
static NEXT_ERROR_FILE: AtomicU64 = AtomicU64::new(0);

/// Runs every later attempt's program under `binary __reap`. The first call wins; returns
/// whether this one did.
pub fn install(binary: impl Into<PathBuf>) -> bool {
    SHIM_BINARY.set(binary.into()).is_ok()
}

/// [`install`] with the running binary, through `/proc/self/exe`, which keeps working when
/// the file was replaced or deleted (an upgrade during a long run).
pub fn install_current_exe() -> bool {
    install("/proc/self/exe")
}

/// Whether attempts run under the shim.
pub fn is_installed() -> bool {
    SHIM_BINARY.get().is_some()
}

/// How one attempt's program was started.
#[derive(Debug)]
pub(crate) struct Launch {
    /// Where the shim writes why the program could not start; `None` without a shim.
    error_file: Option<PathBuf>,
}

impl Launch {
    /// A command that runs `program` (the caller adds its arguments), under the shim when one
    /// is installed. `kill_grace` is the time between SIGTERM and SIGKILL when stopping.
    pub(crate) fn command(program: impl AsRef<OsStr>, kill_grace: Duration) -> (Command, Self) {
        let Some(binary) = SHIM_BINARY.get() else {
            return (Command::new(program), Self { error_file: None });
        };
        let error_file = std::env::temp_dir().join(format!(
            "flightdeck-reap-{}-{}.err",
            std::process::id(),
            NEXT_ERROR_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(binary);
        cmd.arg0("flightdeck")
            .arg(SUBCOMMAND)
            .arg(std::process::id().to_string())
            .arg(kill_grace.as_millis().to_string())
            .arg(&error_file)
            .arg("--")
            .arg(program);
        (cmd, Self { error_file: Some(error_file) })
    }

    /// Puts the program (or its shim) in a process group of its own, and has the kernel kill
    /// it if Flightdeck dies. A shim is not killed when its attempt's future is dropped:
    /// the process guard sends it SIGTERM instead, so that it can stop the whole tree.
    pub(crate) fn isolate(&self, cmd: &mut Command) {
        cmd.process_group(0).kill_on_drop(!self.is_reaped());
        super::process::die_with_host(cmd.as_std_mut());
    }

    /// Whether a shim leads the attempt (and stops its tree itself).
    pub(crate) fn is_reaped(&self) -> bool {
        self.error_file.is_some()
    }

    /// How long stopping may take once the shim got SIGTERM: the grace, the SIGKILL wait,
    /// and a margin for the shim itself.
    pub(crate) fn stop_wait(kill_grace: Duration) -> Duration {
        kill_grace + KILL_WAIT + Duration::from_millis(500)
    }

    /// Why the program could not be started, when the shim says so.
    pub(crate) fn spawn_failure(&self, status: ExitStatus) -> Option<std::io::Error> {
        let path = self.error_file.as_deref()?;
        if status.code() != Some(shim::SPAWN_FAILED) {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let _ = std::fs::remove_file(path);
        let (kind, message) = text.trim_end().split_once('\n').unwrap_or(("other", &text));
        Some(std::io::Error::new(SpawnErrorKind::parse(kind).into(), message.to_owned()))
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if let Some(path) = &self.error_file {
            // Usually there is none.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The kinds of spawn error Flightdeck words differently (see `process::spawn_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpawnErrorKind {
    NotFound,
    PermissionDenied,
    Other,
}

impl SpawnErrorKind {
    fn of(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::PermissionDenied => Self::PermissionDenied,
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::PermissionDenied => "permission-denied",
            Self::Other => "other",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "not-found" => Self::NotFound,
            "permission-denied" => Self::PermissionDenied,
            _ => Self::Other,
        }
    }
}

impl From<SpawnErrorKind> for ErrorKind {
    fn from(kind: SpawnErrorKind) -> Self {
        match kind {
            SpawnErrorKind::NotFound => Self::NotFound,
            SpawnErrorKind::PermissionDenied => Self::PermissionDenied,
            SpawnErrorKind::Other => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_error_kinds_round_trip() {
        for kind in
            [SpawnErrorKind::NotFound, SpawnErrorKind::PermissionDenied, SpawnErrorKind::Other]
        {
            assert_eq!(SpawnErrorKind::parse(kind.as_str()), kind);
            assert_eq!(SpawnErrorKind::of(kind.into()), kind);
        }
    }

    #[test]
    fn without_a_shim_there_is_no_error_file() {
        let launch = Launch { error_file: None };
        assert!(!launch.is_reaped());
        assert!(
            launch
                .spawn_failure(std::os::unix::process::ExitStatusExt::from_raw(127 << 8))
                .is_none()
        );
    }
}
