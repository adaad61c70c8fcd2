//! Everything an operator can ask of the runtime. Commands are imperative; every one passes
//! through [`crate::governance`]'s gate, which checks the caller's role and audits the decision.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::conflict::ConflictChoice;
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};

/// A request to change runtime state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Plan and start a workflow file.
    StartRun { workflow: PathBuf, backend: Option<String>, max_parallel: Option<usize> },
    /// Cancel every unfinished task of a run.
    CancelRun { run: RunId },
    /// Cancel one task (and skip its dependents).
    CancelTask { run: RunId, task: TaskId },
    /// Run a failed, skipped or cancelled task again, with its dependents.
    RetryTask { run: RunId, task: TaskId },
    /// Let a high-risk task run.
    Approve { run: RunId, task: TaskId, note: Option<String> },
    /// Refuse a high-risk task; it fails with the note as its reason.
    Reject { run: RunId, task: TaskId, note: Option<String> },
    /// Settle a panel task's conflict that waits for a person: a member's verdict by its
    /// 1-based number, or one's own decision.
    ResolveConflict { run: RunId, task: TaskId, choice: ConflictChoice, note: Option<String> },
    /// Ask a waiting conflict's third-opinion agent now (the ladder skipped it, or it is not
    /// among `conflicts.steps`); the conflict keeps waiting for the person.
    AskThirdOpinion { run: RunId, task: TaskId },
    /// Close an agent's breaker and clear its failure count.
    ResetBreaker { agent: AgentId },
    /// Open an agent's breaker by hand, e.g. while a backend is known to be down.
    OpenBreaker { agent: AgentId },
    /// Acquire an instance of an agent from the pool (rehearsal and debugging).
    SpawnInstance { agent: AgentId },
    /// Release an instance back to the pool.
    ReleaseInstance { instance: InstanceId },
    /// Re-read every definition in the agent pool folder.
    ReloadAgents,
    /// Re-read the governing project's flightdeck.yaml: `users`, `default_role` and
    /// `policies` take effect at once (the host does it when the file changes).
    ReloadSettings,
    /// Delete finished runs and their events from the run store: all but the `keep` newest,
    /// or those started before `before_ms` (ms since the Unix epoch); with both, a run goes
    /// when neither keeps it.
    PruneRuns { keep: Option<usize>, before_ms: Option<u64> },
    /// Go on with an interrupted run (its owner died) under its own id: `run` is an id, a
    /// unique start of one, or `last`; `backend` runs every remaining task on it.
    ResumeRun { run: RunId, backend: Option<String> },
}

/// What a command needs from the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Start runs.
    RunWorkflows,
    /// Cancel and retry tasks and runs.
    ControlRuns,
    /// Approve or reject high-risk tasks.
    Review,
    /// Reset or open breakers, spawn and release instances, reload agents and settings,
    /// prune old runs.
    Operate,
}

impl Command {
    /// The `snake_case` name used in the audit log and the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StartRun { .. } => "start_run",
            Self::CancelRun { .. } => "cancel_run",
            Self::CancelTask { .. } => "cancel_task",
            Self::RetryTask { .. } => "retry_task",
            Self::Approve { .. } => "approve",
            Self::Reject { .. } => "reject",
            Self::ResolveConflict { .. } => "resolve_conflict",
            Self::AskThirdOpinion { .. } => "ask_third_opinion",
            Self::ResetBreaker { .. } => "reset_breaker",
            Self::OpenBreaker { .. } => "open_breaker",
            Self::SpawnInstance { .. } => "spawn_instance",
            Self::ReleaseInstance { .. } => "release_instance",
            Self::ReloadAgents => "reload_agents",
            Self::ReloadSettings => "reload_settings",
            Self::PruneRuns { .. } => "prune_runs",
            Self::ResumeRun { .. } => "resume_run",
        }
    }

    /// The permission the gate checks.
    pub fn permission(&self) -> Permission {
        match self {
            Self::StartRun { .. } | Self::ResumeRun { .. } => Permission::RunWorkflows,
            Self::CancelRun { .. }
            | Self::CancelTask { .. }
            | Self::RetryTask { .. }
            | Self::ResolveConflict { .. }
            | Self::AskThirdOpinion { .. } => Permission::ControlRuns,
            Self::Approve { .. } | Self::Reject { .. } => Permission::Review,
            Self::ResetBreaker { .. }
            | Self::OpenBreaker { .. }
            | Self::SpawnInstance { .. }
            | Self::ReleaseInstance { .. }
            | Self::ReloadAgents
            | Self::ReloadSettings
            | Self::PruneRuns { .. } => Permission::Operate,
        }
    }
}

/// A command together with who asks for it. This is what the gate receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub user: UserId,
    pub command: Command,
}
