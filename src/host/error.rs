//! Errors of the host and its clients.

use std::path::PathBuf;

/// What can go wrong hosting a data dir or talking to its host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Another process hosts this data dir.
    #[error(
        "{} is already hosted by {} (one host per data dir): attach to it with `flightdeck attach`, \
         or use another --data-dir",
        data_dir.display(),
        pid.map_or_else(|| "another flightdeck".to_owned(), |pid| format!("flightdeck pid {pid}"))
    )]
    AlreadyHosted { data_dir: PathBuf, pid: Option<u32> },
    /// No process hosts this data dir.
    #[error(
        "no flightdeck is running on {} (start the console or `flightdeck run` there first)",
        data_dir.display()
    )]
    NoHost { data_dir: PathBuf },
    /// `host.socket_group` names no group of this system.
    #[error("host.socket_group: no group named `{0}` on this system")]
    UnknownGroup(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The host turned the connection down.
    #[error("the host refused: {0}")]
    Refused(String),
    /// The host said something this client does not understand, or went away mid-answer.
    #[error("the host at {}: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
}
