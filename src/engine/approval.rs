//! Risk assessment before a task runs, and the wait for a reviewer's decision. The wait does
//! not hold a `max_parallel` slot: other tasks go on while a reviewer thinks.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::scheduler::{Msg, RunShared};
use crate::governance::{Assessment, Decision};

pub(crate) enum Verdict {
    Approved,
    Rejected { reason: String },
}

/// The plan's assessment of a task, when it reaches `policies.approval_at`.
pub(crate) fn needs_approval(shared: &RunShared, task: usize) -> Option<Assessment> {
    let step = &shared.plan.steps[task];
    step.needs_approval.then(|| step.risk.clone())
}

/// Ask the reviewers and report the answer to the scheduler, unless the task is cancelled
/// first (dropping the request withdraws it and closes the prompt).
pub(crate) fn spawn_wait(
    shared: &RunShared,
    task: usize,
    generation: u32,
    (assessment, asked_ms): (Assessment, Option<u64>),
    cancel: CancellationToken,
    scheduler: mpsc::UnboundedSender<Msg>,
) {
    let step = &shared.plan.steps[task];
    let request = shared.engine.approvals.request_asked_at(
        &shared.run,
        &step.id,
        &step.agent,
        assessment.risk,
        assessment.reasons,
        asked_ms,
    );
    tokio::spawn(async move {
        let decision = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            decision = request => decision,
        };
        let verdict = match decision {
            Decision::Approved { .. } => Verdict::Approved,
            Decision::Rejected { by, note } => Verdict::Rejected {
                reason: match note {
                    Some(note) => format!("rejected by {by}: {note}"),
                    None => format!("rejected by {by}"),
                },
            },
            Decision::Cancelled { reason } => {
                Verdict::Rejected { reason: format!("approval {reason}") }
            }
        };
        let _ = scheduler.send(Msg::Approval { task, generation, verdict });
    });
}
