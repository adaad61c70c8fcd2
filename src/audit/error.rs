//! Errors of the audit log.

use std::path::PathBuf;

/// Everything that can go wrong opening, appending to or checking the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file or its folder cannot be created or opened.
    #[error("{path}: cannot open the audit log: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    /// Reading existing records failed.
    #[error("{path}: cannot read the audit log: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Writing or syncing a record failed; the record is not in the log.
    #[error("{path}: cannot write to the audit log: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// A torn tail could not be moved aside.
    #[error("{path}: cannot move the torn last record aside to {aside}: {source}")]
    MoveAside { path: PathBuf, aside: PathBuf, source: std::io::Error },
    /// The last complete record does not check out, so the chain cannot be continued.
    /// This is damage or tampering, not a crash: the file is left untouched as evidence.
    #[error(
        "{path}:{line}: the last record is damaged ({reason}); the hash chain cannot be \
         continued. Keep the file as evidence, move it aside and start a new log"
    )]
    CorruptTail { path: PathBuf, line: u64, reason: String },
    /// An earlier write failed half-way and could not be undone; appending more would break
    /// the chain, so the log refuses every record until it is reopened.
    #[error(
        "{path}: the audit log refuses records after a failed write that could not be \
         undone: {reason}"
    )]
    Poisoned { path: PathBuf, reason: String },
    /// The key file cannot be read or made.
    #[error("{path}: audit key: {reason}")]
    Key { path: PathBuf, reason: String },
    /// The log holds keyed records but its key file is gone: nothing can be appended that
    /// would verify, and nothing already there can be proven.
    #[error(
        "{path}:{line}: the audit log is keyed but its key {key} is missing; restore the key \
         file from a backup (or move the log aside as evidence to start a new one)"
    )]
    KeyMissing { path: PathBuf, key: PathBuf, line: u64 },
    /// A record could not be encoded as JSON.
    #[error("cannot encode an audit record: {0}")]
    Encode(#[from] serde_json::Error),
}
