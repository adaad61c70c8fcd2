//! The caller's side of a run: watch its phase, wait for it, and pass operator requests to its
//! scheduler. Each request takes the gate's [`Permit`] for exactly that command.

use tokio::sync::{mpsc, oneshot, watch};

use super::error::EngineError;
use crate::command::Command;
use crate::event::RunStatus;
use crate::governance::Permit;
use crate::ids::{RunId, TaskId};

/// Where a run stands. A finished run goes back to `Running` when an operator retries a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    Running,
    Finished(RunStatus),
}

/// An operator request for the scheduler, with a reply slot.
pub(crate) enum Control {
    /// `reason`: what the run's unfinished tasks say (`run cancelled by alice`).
    CancelRun {
        reason: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// `reason`: what the task says (`cancelled by alice`).
    CancelTask {
        task: TaskId,
        reason: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    RetryTask {
        task: TaskId,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
}

/// Cheap to clone; every clone controls the same run.
#[derive(Clone)]
pub struct RunHandle {
    pub(crate) id: RunId,
    pub(crate) workflow: String,
    pub(crate) control: mpsc::UnboundedSender<super::scheduler::Msg>,
    pub(crate) phase: watch::Receiver<RunPhase>,
}

impl RunHandle {
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    pub fn phase(&self) -> RunPhase {
        *self.phase.borrow()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase(), RunPhase::Finished(_))
    }

    /// Wait until every task reached a final state (children stopped, events published).
    pub async fn wait(&self) -> RunStatus {
        let mut phase = self.phase.clone();
        let result = phase.wait_for(|p| matches!(p, RunPhase::Finished(_))).await.map(|p| *p);
        match result {
            Ok(RunPhase::Finished(status)) => status,
            // The scheduler is gone without finishing, which only happens when the tokio
            // runtime shuts down under it.
            _ => RunStatus::Cancelled,
        }
    }

    /// Cancel every unfinished task, with the gate's permit to cancel this run.
    pub async fn cancel(&self, permit: &Permit) -> Result<(), EngineError> {
        permit.require(
            format!("cancel_run of {}", self.id),
            |command| matches!(command, Command::CancelRun { run } if run == &self.id),
        )?;
        // Its tasks say who cancelled it, or why the system did (a shutdown, a stop signal).
        let reason = match permit.why() {
            Some(why) => format!("run cancelled: {why}"),
            None => format!("run cancelled by {}", permit.user()),
        };
        self.ask(|reply| Control::CancelRun { reason, reply }).await
    }

    /// Cancel one task (its dependents are skipped), with the gate's permit to cancel it.
    pub async fn cancel_task(&self, task: &TaskId, permit: &Permit) -> Result<(), EngineError> {
        permit.require(format!("cancel_task {task} of {}", self.id), |command| {
            matches!(command, Command::CancelTask { run, task: t } if run == &self.id && t == task)
        })?;
        let reason = format!("cancelled by {}", permit.user());
        self.ask(|reply| Control::CancelTask { task: task.clone(), reason, reply }).await
    }

    /// Run a failed, skipped or cancelled task again, and after it its dependents, with the
    /// gate's permit to retry it.
    pub async fn retry_task(&self, task: &TaskId, permit: &Permit) -> Result<(), EngineError> {
        permit.require(format!("retry_task {task} of {}", self.id), |command| {
            matches!(command, Command::RetryTask { run, task: t } if run == &self.id && t == task)
        })?;
        self.ask(|reply| Control::RetryTask { task: task.clone(), reply }).await
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), EngineError>>) -> Control,
    ) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        let gone = || EngineError::RunGone { run: self.id.clone() };
        self.control.send(super::scheduler::Msg::Control(make(reply))).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
