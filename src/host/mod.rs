//! The host of a data dir: the process that runs its workflows (the console or a headless
//! `run`). It listens on `<data-dir>/control.sock`; other terminals attach to it and
//! command-line clients (`approvals`, `approve`, `reject`) talk to it. Identity on the socket
//! comes from the kernel (peer credentials), and every command passes the host's gate.

mod attention;
mod client;
mod error;
pub mod feed;
mod project;
pub mod protocol;
mod reload;
mod server;
mod tap;

pub use attention::COALESCE;
pub use client::{Hello, HostClient, HostCommands, HostEvents};
pub use error::HostError;
pub use project::{PROJECT_FILE, governed_settings, record_project, recorded_project};
pub use reload::changes as settings_changes;
pub use server::{Host, HostLock, HostOptions, LOCK_FILE, host_pid};
