//! Where an interrupted run stands, read off its [`RunModel`]: what the scheduler of the
//! resumed run starts from.

use std::collections::HashMap;

use crate::ids::{AgentId, TaskId};
use crate::model::{AttemptResult, RunModel, TaskModel, TaskStatus};

/// One task of a run that resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResume {
    /// A final status stays; anything else starts again as pending.
    pub status: TaskStatus,
    /// The output a succeeded task produced; its dependents get it.
    pub output: Option<String>,
    /// Attempts made so far (numbering goes on).
    pub attempts: u32,
    /// Failed attempts of the task's current round: the retry budget already used.
    pub failures: u32,
    /// A reviewer approved it and it has not finished: it is not asked again.
    pub approved: bool,
    /// It was waiting for a reviewer since then (ms since the Unix epoch): it waits again,
    /// asked at that time.
    pub asked_ms: Option<u64>,
    /// The attempt that was in flight when the run's process died, with its agent.
    pub interrupted: Option<(AgentId, u32)>,
}

impl TaskResume {
    fn of(task: &TaskModel) -> Self {
        let final_status = task.status.is_final();
        let interrupted = (task.status == TaskStatus::Running)
            .then(|| task.history.last().filter(|a| a.result == AttemptResult::Running))
            .flatten()
            .map(|a| (a.agent.clone(), a.attempt));
        Self {
            status: if final_status { task.status } else { TaskStatus::Pending },
            output: (task.status == TaskStatus::Succeeded).then(|| task.result.clone()).flatten(),
            attempts: task.attempts,
            failures: failures_this_round(task),
            approved: !final_status && task.approved().is_some(),
            asked_ms: task.pending_approval().map(|a| a.requested_ms),
            interrupted,
        }
    }
}

/// Attempts that failed and were retried since the round began (the last final attempt).
fn failures_this_round(task: &TaskModel) -> u32 {
    let round = task.history.iter().rev().take_while(|a| {
        !matches!(
            a.result,
            AttemptResult::Succeeded | AttemptResult::Failed | AttemptResult::Cancelled
        )
    });
    round.filter(|a| a.result == AttemptResult::Retrying).count() as u32
}

/// Every task of an interrupted run, by id.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    pub tasks: HashMap<TaskId, TaskResume>,
    /// When the run first started (ms since the Unix epoch): its duration counts from there.
    pub started_ms: u64,
}

impl ResumePoint {
    pub fn from_model(model: &RunModel) -> Self {
        let tasks = model.tasks.iter().map(|t| (t.id().clone(), TaskResume::of(t))).collect();
        Self { tasks, started_ms: model.started_ms }
    }

    pub fn task(&self, id: &TaskId) -> Option<&TaskResume> {
        self.tasks.get(id)
    }

    /// Tasks that succeeded before the crash.
    pub fn done(&self) -> usize {
        self.tasks.values().filter(|t| t.status == TaskStatus::Succeeded).count()
    }

    /// Tasks not in a final state.
    pub fn remaining(&self) -> usize {
        self.tasks.values().filter(|t| !t.status.is_final()).count()
    }

    /// Attempts that were in flight, in no particular order.
    pub fn interrupted(&self) -> impl Iterator<Item = (&TaskId, &AgentId, u32)> {
        self.tasks
            .iter()
            .filter_map(|(id, t)| t.interrupted.as_ref().map(|(agent, n)| (id, agent, *n)))
    }
}
