//! One owner per run: `<data-dir>/runs/<run-id>.lock`, held with an exclusive `flock` for as
//! long as a process runs the run. The operating system releases the lock when its holder
//! dies, however it dies, so "is this run still running?" never depends on process ids
//! (in a container every start may be pid 1). The owner writes its pid into the file, for
//! messages only ("owned by pid N").

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::ids::RunId;

/// The folder of the lock files, next to the run store's database.
pub const LOCKS_DIR: &str = "runs";

/// Why a run could not be owned.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// A fresh run id that exists already (its lock file or its stored row).
    #[error("run {run} exists already ({path}); a run id is never reused")]
    Exists { run: RunId, path: PathBuf },
    /// The run's owner is alive.
    #[error("run {run} is owned by a live process{}; wait for it or cancel it there", pid_text(*.pid))]
    Owned { run: RunId, pid: Option<u32> },
    #[error("{path}: cannot use the run's lock file: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(String::new, |pid| format!(" (pid {pid})"))
}

/// Who owns a run, as its lock file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The lock is held: the run is running, in the process with this pid (if it wrote it).
    Alive { pid: Option<u32> },
    /// The lock file exists and nobody holds it: the owner is gone.
    Gone,
    /// No lock file (a run stored before locks existed, or one whose file was removed).
    Unknown,
}

/// The lock file of `run` in the data folder `data_dir`.
pub fn lock_path(data_dir: &Path, run: &RunId) -> PathBuf {
    data_dir.join(LOCKS_DIR).join(format!("{run}.lock"))
}

/// A held run lock; dropping it (or dying) releases the run.
#[derive(Debug)]
pub struct RunLock {
    run: RunId,
    path: PathBuf,
    /// Holds the `flock`; the lock lives as long as this open file.
    _file: File,
}

impl RunLock {
    /// Own a fresh run: create its lock file (an id whose file exists is refused, so ids are
    /// never reused) and lock it.
    pub fn claim_new(data_dir: &Path, run: &RunId) -> Result<Self, OwnerError> {
        let path = lock_path(data_dir, run);
        let io = |source| OwnerError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = match OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                return Err(OwnerError::Exists { run: run.clone(), path });
            }
            Err(error) => return Err(io(error)),
        };
        // Blocking: only an `owner` probe can hold the fresh file, for a moment.
        file.lock().map_err(io)?;
        write_pid(&file).map_err(io)?;
        Ok(Self { run: run.clone(), path, _file: file })
    }

    /// Take over an existing run (to resume it): refused while its owner is alive.
    pub fn take_over(data_dir: &Path, run: &RunId) -> Result<Self, OwnerError> {
        let path = lock_path(data_dir, run);
        let io = |source| OwnerError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let file = file.map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OwnerError::Owned { run: run.clone(), pid: read_pid(&path) });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        write_pid(&file).map_err(io)?;
        Ok(Self { run: run.clone(), path, _file: file })
    }

    pub fn run(&self) -> &RunId {
        &self.run
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Release the lock and remove its file: for a run that never started.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who owns `run` right now. Probing takes the lock for an instant when it is free.
pub fn owner(data_dir: &Path, run: &RunId) -> Owner {
    let path = lock_path(data_dir, run);
    let Ok(file) = File::open(&path) else { return Owner::Unknown };
    match file.try_lock() {
        // Free: released again when `file` closes.
        Ok(()) => Owner::Gone,
        Err(TryLockError::WouldBlock) => Owner::Alive { pid: read_pid(&path) },
        // A file system without locks: nothing can be known, so do not claim it is running.
        Err(TryLockError::Error(error)) => {
            tracing::warn!(path = %path.display(), %error, "run lock cannot be probed");
            Owner::Gone
        }
    }
}

/// Remove the lock file of a run that is gone (pruned); a missing file is fine.
pub fn remove_lock(data_dir: &Path, run: &RunId) {
    let path = lock_path(data_dir, run);
    if let Err(error) = std::fs::remove_file(&path)
        && error.kind() != ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "run lock not removed");
    }
}

fn write_pid(mut file: &File) -> std::io::Result<()> {
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_with_its_pid_and_gone_once_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = RunId::new("r1");
        assert_eq!(owner(dir.path(), &run), Owner::Unknown);
        let lock = RunLock::claim_new(dir.path(), &run).expect("claim");
        assert_eq!(owner(dir.path(), &run), Owner::Alive { pid: Some(std::process::id()) });
        let again = RunLock::claim_new(dir.path(), &run).expect_err("an id is never reused");
        assert!(matches!(again, OwnerError::Exists { .. }), "{again}");
        let taken = RunLock::take_over(dir.path(), &run).expect_err("owned");
        assert!(taken.to_string().contains(&format!("pid {}", std::process::id())), "{taken}");
        drop(lock);
        assert_eq!(owner(dir.path(), &run), Owner::Gone);
        let resumed = RunLock::take_over(dir.path(), &run).expect("free again");
        assert_eq!(
            owner(dir.path(), resumed.run()),
            Owner::Alive { pid: Some(std::process::id()) }
        );
    }
}
