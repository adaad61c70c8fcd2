//! Where an interrupted run stands, read off its [`RunModel`]: what the scheduler of the
//! resumed run starts from.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ids::{AgentId, TaskId};
use crate::model::{ConflictModel, RunModel, TaskModel, TaskStatus};

/// One task of a run that resumes.
#[derive(Debug, Clone, PartialEq)]
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
    /// A panel task's conflict as stored (verdicts, the ladder's steps, a person's decision):
    /// the resumed task goes on from it instead of asking the members again.
    pub conflict: Option<Arc<ConflictModel>>,
}

impl TaskResume {
    fn of(task: &TaskModel) -> Self {
        let final_status = task.status.is_final();
        Self {
            status: if final_status { task.status } else { TaskStatus::Pending },
            output: (task.status == TaskStatus::Succeeded).then(|| task.result.clone()).flatten(),
            attempts: task.attempts,
            failures: task.retries_used,
            approved: !final_status && task.approved().is_some(),
            asked_ms: task.pending_approval().map(|a| a.requested_ms),
            // Running: an attempt had started and not ended (retrying means it had ended).
            interrupted: (task.status == TaskStatus::Running)
                .then(|| (task.agent.clone(), task.attempts)),
            conflict: (!final_status)
                .then(|| task.conflict.as_deref().cloned().map(Arc::new))
                .flatten(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Envelope, Event, PlannedTask, Risk};
    use crate::ids::{InstanceId, RunId, UserId};
    use crate::model::OutputKeep;

    fn planned(id: &str) -> PlannedTask {
        PlannedTask {
            task: TaskId::new(id),
            description: format!("deploy {id}").into(),
            agent: AgentId::new("ops"),
            score: None,
            depends_on: Vec::new().into(),
            layer: 0,
            timeout_ms: 1000,
            retries: 1,
        }
    }

    /// A run killed while `waits` waited for a reviewer, after `given` was approved (not
    /// yet run), `done` succeeded and `busy` was in its second attempt.
    fn crashed() -> RunModel {
        let ids = ["waits", "given", "done", "busy"];
        let mut events = vec![Event::RunStarted {
            workflow: "w".into(),
            file: "w.yaml".into(),
            goal: None,
            max_parallel: 4,
            fail_fast: false,
            simulated: false,
            tasks: ids.iter().map(|id| planned(id)).collect(),
        }];
        let asked = |task: &str| Event::ApprovalRequested {
            task: TaskId::new(task),
            agent: AgentId::new("ops"),
            risk: Risk::Critical,
            reasons: vec!["production: deploy".into()],
        };
        let started = |task: &str, attempt| Event::TaskStarted {
            task: TaskId::new(task),
            agent: AgentId::new("ops"),
            attempt,
            instance: InstanceId(1),
            backend: "local".into(),
            simulated: false,
        };
        events.push(asked("waits"));
        events.push(asked("given"));
        events.push(Event::ApprovalDecided {
            task: TaskId::new("given"),
            approved: true,
            by: UserId::new("ann"),
            note: None,
        });
        events.push(started("done", 1));
        events.push(Event::TaskSucceeded {
            task: TaskId::new("done"),
            agent: AgentId::new("ops"),
            attempt: 1,
            duration_ms: 5,
            output: "shipped".into(),
            usage: None,
            simulated: false,
            details: crate::event::AnswerDetails::default(),
        });
        events.push(started("busy", 1));
        events.push(Event::TaskRetrying {
            task: TaskId::new("busy"),
            agent: AgentId::new("ops"),
            attempt: 1,
            delay_ms: 1,
            duration_ms: 1,
            error: "flaky".into(),
        });
        events.push(started("busy", 2));
        let envelopes: Vec<Envelope> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Envelope {
                seq: i as u64 + 1,
                ts_ms: 1_000 + i as u64 * 100,
                run_id: Some(RunId::new("r1")),
                event,
            })
            .collect();
        RunModel::from_events(&envelopes, OutputKeep::None)
    }

    #[test]
    fn the_resume_point_carries_outputs_budgets_and_approvals() {
        let point = ResumePoint::from_model(&crashed());
        let task = |id: &str| point.task(&TaskId::new(id)).expect(id).clone();
        let waits = task("waits");
        assert_eq!(waits.status, TaskStatus::Pending);
        assert_eq!(waits.asked_ms, Some(1_100), "waits again, asked at its first request");
        assert!(!waits.approved);
        let given = task("given");
        assert!(given.approved, "an approval given is used, not asked again");
        assert_eq!(given.asked_ms, None);
        let done = task("done");
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert_eq!(done.output.as_deref(), Some("shipped"));
        let busy = task("busy");
        assert_eq!(busy.status, TaskStatus::Pending);
        assert_eq!(busy.interrupted, Some((AgentId::new("ops"), 2)));
        assert_eq!((busy.attempts, busy.failures), (2, 1), "the retry budget carries over");
        assert_eq!((point.done(), point.remaining()), (1, 3));
        assert_eq!(point.interrupted().count(), 1);
    }
}
