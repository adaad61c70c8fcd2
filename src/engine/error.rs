//! Why the engine refused an operator's request or could not start a run.

use crate::ids::{RunId, TaskId};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The operation was handed the gate's permit for another command.
    #[error(transparent)]
    WrongPermit(#[from] crate::governance::WrongPermit),
    #[error("backend `{backend}`: {message}")]
    Backend { backend: String, message: String },
    #[error("backend `{backend}` is not defined in flightdeck.yaml")]
    UnknownBackend { backend: String },
    #[error("run `{run}` is not known (finished runs are kept only for a while)")]
    UnknownRun { run: RunId },
    #[error("run `{run}` has no task `{task}`")]
    UnknownTask { run: RunId, task: TaskId },
    #[error("task `{task}` is {status}; only {allowed} tasks can be {action}")]
    WrongState { task: TaskId, status: &'static str, allowed: &'static str, action: &'static str },
    #[error(
        "task `{task}` cannot run again: its dependency `{dependency}` is {status}; retry that one first"
    )]
    DependencyNotDone { task: TaskId, dependency: TaskId, status: &'static str },
    #[error("run `{run}` has stopped; its controller is gone")]
    RunGone { run: RunId },
    #[error(transparent)]
    Workspace(#[from] super::workspace::WorkspaceError),
}
