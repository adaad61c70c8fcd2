//! Errors of governance: roles and approvals. A refused command is not an error of the
//! program but a decision, see [`super::Denied`].

use crate::ids::{RunId, TaskId};

/// What can go wrong in governance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovernanceError {
    /// A role name that is not one of the five roles.
    #[error("unknown role `{0}` (expected one of admin, developer, operator, reviewer, viewer)")]
    UnknownRole(String),
    /// An approve or reject for a task that is not waiting for one.
    #[error("task `{task}` of run `{run}` is not waiting for approval")]
    NoPendingApproval { run: RunId, task: TaskId },
}
