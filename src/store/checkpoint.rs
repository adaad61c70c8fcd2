//! Checkpoints on a thread of their own. In WAL mode each commit appends pages to the log,
//! and by default the committing connection copies the log into the database once it holds
//! 1,000 pages (a checkpoint: every page written a second time, and an fsync). For the store
//! writer that was a third of its work, done while the runs it stores wait for it: a
//! 100,000-task run commits 100 MB of events. The writer's connection does no checkpoints;
//! it wakes this thread, whose own connection checkpoints `PASSIVE` (copying what no reader
//! still needs, never blocking the writer) while the writer goes on committing.

use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::StoreError;

/// Events committed between two wakes: about the 1,000 pages at which `SQLite` checkpoints
/// by default.
pub(super) const EVENTS_PER_CHECKPOINT: u64 = 16_384;

/// Every this many, the writer checkpoints itself (see `Writer::commit`).
pub(super) const WAKES_PER_OWN_CHECKPOINT: u64 = 4;

pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start checkpointing the database at `path` when woken.
    pub(super) fn spawn(path: &Path) -> Result<Self, StoreError> {
        let sql = |source| super::sql_error(path, source);
        let conn = Connection::open(path).map_err(sql)?;
        // A checkpoint copies pages from the log to the file: it needs no page cache.
        conn.pragma_update(None, "cache_size", -64).map_err(sql)?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("flightdeck-ckpt".to_owned())
            .spawn(move || {
                for () in woken {
                    if let Err(error) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(%error, "run store: a checkpoint failed; the next one retries");
                    }
                }
            })
            .map_err(StoreError::Spawn)?;
        Ok(Self { wake: Some(wake), thread: Some(thread) })
    }

    /// Ask for a checkpoint; one already asked for and not begun covers this one too.
    /// `false` when the thread is gone (then checkpoints are the writer's again).
    pub(super) fn wake(&self) -> bool {
        match self.wake.as_ref().map(|wake| wake.try_send(())) {
            Some(Ok(()) | Err(TrySendError::Full(()))) => true,
            Some(Err(TrySendError::Disconnected(()))) | None => false,
        }
    }
}

impl Drop for Checkpointer {
    /// Let the thread finish its checkpoint and close its connection, so the writer's is the
    /// last one and its close copies what is left of the log.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_wake_copies_the_log_of_a_connection_that_never_checkpoints() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("runs.db");
        let writer = Connection::open(&path).expect("opens");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (body TEXT NOT NULL);",
            )
            .expect("set up");
        let checkpointer = Checkpointer::spawn(&path).expect("starts");
        let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
        let before = size();
        for _ in 0..64 {
            writer
                .execute("INSERT INTO t (body) VALUES (?1)", ["x".repeat(64 * 1024)])
                .expect("inserts");
        }
        // Four megabytes in the log, none of it in the database yet.
        assert_eq!(size(), before);
        checkpointer.wake();
        let deadline = Instant::now() + Duration::from_secs(10);
        while size() < before + 4 * 1024 * 1024 {
            assert!(Instant::now() < deadline, "not checkpointed: {} bytes", size());
            std::thread::sleep(Duration::from_millis(5));
        }
        // Dropped, it finishes and lets go of its connection.
        drop(checkpointer);
    }
}
