//! Why a person's decision on a conflict was refused.

use crate::ids::{RunId, TaskId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConflictError {
    /// No conflict of that run and task waits for a person (never had one, or resolved).
    #[error(
        "task `{task}` of run `{run}` has no conflict waiting for a decision (see the Conflicts \
         pane or `runs show {run}`)"
    )]
    NotWaiting { run: RunId, task: TaskId },
    /// The chosen verdict number is not one of the panel's columns.
    #[error("task `{task}`: there is no verdict {number}; choose 1 to {count}")]
    NoSuchVerdict { task: TaskId, number: usize, count: usize },
    #[error("task `{task}`: an own decision needs some text")]
    EmptyDecision { task: TaskId },
    #[error(
        "task `{task}` has no agent for a third opinion: name one with `third_opinion:` on the \
         task or `conflicts.third_opinion` in flightdeck.yaml"
    )]
    NoThirdOpinion { task: TaskId },
    #[error(
        "task `{task}`: the third opinion of `{agent}` was already asked (its finding is in the \
         ladder); it is never fetched twice"
    )]
    ThirdOpinionAsked { task: TaskId, agent: crate::ids::AgentId },
}
