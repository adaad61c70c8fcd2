//! High-risk tasks waiting for a reviewer.
//!
//! The engine calls [`Approvals::request`] and awaits the decision; the gate-checked
//! `Approve`/`Reject` commands call [`Approvals::decide`]. Both sides announce themselves on
//! the bus (`ApprovalRequested`, `ApprovalDecided`), so the console's prompt opens and closes
//! from events alone. Whoever stops waiting (a dropped request, a cancelled run) also closes
//! the prompt with an `ApprovalDecided` by [`SYSTEM_USER`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::oneshot;

use super::GovernanceError;
use crate::bus::{EventBus, now_ms};
use crate::event::{Event, Risk};
use crate::ids::{AgentId, RunId, TaskId, UserId};

/// `by` of decisions Flightdeck makes itself (run cancelled, request withdrawn).
pub const SYSTEM_USER: &str = "flightdeck";

/// The answer a waiting task gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A reviewer let the task run.
    Approved { by: UserId, note: Option<String> },
    /// A reviewer refused; the task fails with the note as its reason.
    Rejected { by: UserId, note: Option<String> },
    /// Nobody decided: the run was cancelled or the request replaced.
    Cancelled { reason: String },
}

impl Decision {
    pub fn is_approved(&self) -> bool {
        matches!(self, Self::Approved { .. })
    }
}

/// A request as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingApproval {
    pub run: RunId,
    pub task: TaskId,
    pub agent: AgentId,
    pub risk: Risk,
    pub reasons: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub requested_ms: u64,
}

/// The waiting room. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Approvals {
    waiting: Arc<Mutex<Waiting>>,
    bus: EventBus,
}

#[derive(Default)]
struct Waiting {
    next_ticket: u64,
    entries: BTreeMap<(RunId, TaskId), Entry>,
}

struct Entry {
    /// Tells this request apart from a later one for the same task.
    ticket: u64,
    info: PendingApproval,
    reply: oneshot::Sender<Decision>,
}

impl Approvals {
    pub fn new(bus: EventBus) -> Self {
        Self { waiting: Arc::default(), bus }
    }

    /// Ask for a decision on one task. The request is registered and `ApprovalRequested`
    /// published before this returns, so a decision can arrive before the future is first
    /// polled. Dropping the future withdraws the request.
    pub fn request(
        &self,
        run: &RunId,
        task: &TaskId,
        agent: &AgentId,
        risk: Risk,
        reasons: Vec<String>,
    ) -> impl Future<Output = Decision> + Send + 'static {
        self.request_asked_at(run, task, agent, risk, reasons, None)
    }

    /// [`Approvals::request`] for a task first asked at `asked_ms` (ms since the Unix epoch):
    /// a task of a resumed run waits again with its original request time.
    pub fn request_asked_at(
        &self,
        run: &RunId,
        task: &TaskId,
        agent: &AgentId,
        risk: Risk,
        reasons: Vec<String>,
        asked_ms: Option<u64>,
    ) -> impl Future<Output = Decision> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let key = (run.clone(), task.clone());
        let info = PendingApproval {
            run: run.clone(),
            task: task.clone(),
            agent: agent.clone(),
            risk,
            reasons: reasons.clone(),
            requested_ms: asked_ms.unwrap_or_else(now_ms),
        };
        let ticket = {
            let mut waiting = self.lock();
            let ticket = waiting.next_ticket;
            waiting.next_ticket += 1;
            let replaced = waiting.entries.insert(key.clone(), Entry { ticket, info, reply });
            if let Some(old) = replaced {
                let reason = "replaced by a new request for the same task".to_owned();
                let _ = old.reply.send(Decision::Cancelled { reason });
            }
            ticket
        };
        self.bus.publish(
            Some(run),
            Event::ApprovalRequested { task: task.clone(), agent: agent.clone(), risk, reasons },
        );
        let withdraw = Withdraw { approvals: self.clone(), key, ticket };
        async move {
            let decision = answer.await.unwrap_or_else(|_| Decision::Cancelled {
                reason: "the approval request was dropped".to_owned(),
            });
            drop(withdraw);
            decision
        }
    }

    /// Record a reviewer's decision and wake the waiting task. The caller has already passed
    /// the gate, so `by` is allowed to review.
    pub fn decide(
        &self,
        run: &RunId,
        task: &TaskId,
        approved: bool,
        by: &UserId,
        note: Option<String>,
    ) -> Result<(), GovernanceError> {
        let entry = self.lock().entries.remove(&(run.clone(), task.clone())).ok_or_else(|| {
            GovernanceError::NoPendingApproval { run: run.clone(), task: task.clone() }
        })?;
        self.bus.publish(
            Some(run),
            Event::ApprovalDecided {
                task: task.clone(),
                approved,
                by: by.clone(),
                note: note.clone(),
            },
        );
        let decision = if approved {
            Decision::Approved { by: by.clone(), note }
        } else {
            Decision::Rejected { by: by.clone(), note }
        };
        // The waiter may be gone (run cancelled meanwhile); the decision is still announced.
        let _ = entry.reply.send(decision);
        Ok(())
    }

    /// Everything waiting, oldest request first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        let waiting = self.lock();
        let mut entries: Vec<&Entry> = waiting.entries.values().collect();
        entries.sort_by_key(|entry| entry.ticket);
        entries.into_iter().map(|entry| entry.info.clone()).collect()
    }

    /// Resolve every request of `run` as cancelled; returns how many there were.
    pub fn cancel_run(&self, run: &RunId) -> usize {
        let cancelled: Vec<Entry> = {
            let mut waiting = self.lock();
            let keys: Vec<(RunId, TaskId)> =
                waiting.entries.keys().filter(|(r, _)| r == run).cloned().collect();
            keys.iter().filter_map(|key| waiting.entries.remove(key)).collect()
        };
        for entry in &cancelled {
            self.announce_closed(&entry.info, "run cancelled");
        }
        let count = cancelled.len();
        for entry in cancelled {
            let _ = entry.reply.send(Decision::Cancelled { reason: "run cancelled".to_owned() });
        }
        count
    }

    fn announce_closed(&self, info: &PendingApproval, why: &str) {
        self.bus.publish(
            Some(&info.run),
            Event::ApprovalDecided {
                task: info.task.clone(),
                approved: false,
                by: UserId::new(SYSTEM_USER),
                note: Some(why.to_owned()),
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a request whose waiter went away, and closes its prompt.
struct Withdraw {
    approvals: Approvals,
    key: (RunId, TaskId),
    ticket: u64,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let removed = {
            let mut waiting = self.approvals.lock();
            match waiting.entries.get(&self.key) {
                Some(entry) if entry.ticket == self.ticket => waiting.entries.remove(&self.key),
                _ => None,
            }
        };
        if let Some(entry) = removed {
            self.approvals.announce_closed(&entry.info, "request withdrawn");
        }
    }
}
