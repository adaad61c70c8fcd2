//! Errors of the run store.

use std::path::PathBuf;

use crate::ids::RunId;

/// Everything that can go wrong opening, writing or reading the run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder for the database cannot be created.
    #[error("{path}: cannot create the folder for the run store: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// The file exists but is not an `SQLite` database.
    #[error(
        "{path}: not a Flightdeck run store (the file is not an SQLite database); \
         move it aside or choose another --data-dir"
    )]
    NotADatabase { path: PathBuf },
    /// The database was written by a newer Flightdeck whose schema this one does not know.
    #[error(
        "{path}: the run store has schema version {found}, newer than this Flightdeck \
         understands ({known}); use a newer flightdeck or another --data-dir"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    /// A reading command found a store an older Flightdeck wrote; reading never migrates.
    #[error(
        "{path}: the run store has schema version {found}, older than this Flightdeck's \
         ({known}); commands that only read never change it: run a command that writes (for \
         example `flightdeck run`) once, as a user allowed to, to upgrade it"
    )]
    Outdated { path: PathBuf, found: i64, known: i64 },
    /// Any other `SQLite` failure (disk full, locked for too long, I/O error, ...).
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    /// A stored event no longer reads as an event of this version.
    #[error("{path}: event {seq} of run `{run}` cannot be read: {message}")]
    BadEvent { path: PathBuf, run: RunId, seq: u64, message: String },
    /// An event could not be encoded as JSON.
    #[error("cannot encode event {seq}: {message}")]
    Encode { seq: u64, message: String },
    /// The writer thread could not be started.
    #[error("cannot start the run store writer thread: {0}")]
    Spawn(std::io::Error),
    /// The writer thread is gone, so nothing more is written.
    #[error("the run store writer has stopped")]
    WriterStopped,
}
