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
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::GovernanceError;
use crate::bus::{EventBus, now_ms};
use crate::config::{OnTimeout, Policies};
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

/// A request as the console and `flightdeck approvals` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub run: RunId,
    pub task: TaskId,
    pub agent: AgentId,
    pub risk: Risk,
    pub reasons: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub requested_ms: u64,
    /// Who started the run (the requester), when known.
    #[serde(default)]
    pub requested_by: Option<UserId>,
    /// When the deadline passes (ms since the Unix epoch), if there is one.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// How many different approvers the task needs (1, or 2 at `two_person_at`).
    #[serde(default = "one")]
    pub needed: u32,
    /// Who approved so far.
    #[serde(default)]
    pub approved_by: Vec<UserId>,
    /// The deadline passed under `on_timeout: escalate`.
    #[serde(default)]
    pub overdue: bool,
}

fn one() -> u32 {
    1
}

/// The rules of approving, from `policies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// How long a request waits; `None` for ever.
    pub timeout: Option<Duration>,
    pub on_timeout: OnTimeout,
    /// Risk at and above which two different approvers are needed; `None`: never.
    pub two_person_at: Option<Risk>,
    /// Whether a run's starter may approve its tasks.
    pub self_approval: bool,
}

impl ApprovalPolicy {
    /// One approver, no deadline, anyone: the engine's rules before policies existed, for
    /// callers without project settings.
    pub fn lenient() -> Self {
        Self {
            timeout: None,
            on_timeout: OnTimeout::Reject,
            two_person_at: None,
            self_approval: true,
        }
    }
}

impl From<&Policies> for ApprovalPolicy {
    fn from(policies: &Policies) -> Self {
        Self {
            timeout: Some(policies.approval_timeout),
            on_timeout: policies.on_timeout,
            two_person_at: policies.two_person_at,
            self_approval: policies.self_approval,
        }
    }
}

/// The waiting room. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Approvals {
    waiting: Arc<Mutex<Waiting>>,
    bus: EventBus,
    /// Replaced whole when the settings are reloaded; requests already waiting keep the
    /// deadline and the count of approvers they were given.
    policy: Arc<std::sync::RwLock<ApprovalPolicy>>,
}

#[derive(Default)]
struct Waiting {
    next_ticket: u64,
    entries: BTreeMap<(RunId, TaskId), Entry>,
    /// Who started each run, for separation of duties.
    starters: BTreeMap<RunId, UserId>,
}

struct Entry {
    /// Tells this request apart from a later one for the same task.
    ticket: u64,
    /// The OS accounts behind the approvals so far: two approvals must come from two
    /// people, not from one account under two `--as` names.
    accounts: Vec<String>,
    info: PendingApproval,
    reply: oneshot::Sender<Decision>,
}

impl Approvals {
    /// A waiting room with [`ApprovalPolicy::lenient`] rules.
    pub fn new(bus: EventBus) -> Self {
        Self::with_policy(bus, ApprovalPolicy::lenient())
    }

    pub fn with_policy(bus: EventBus, policy: ApprovalPolicy) -> Self {
        Self { waiting: Arc::default(), bus, policy: Arc::new(std::sync::RwLock::new(policy)) }
    }

    /// The rules in force now.
    pub fn policy(&self) -> ApprovalPolicy {
        self.policy.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// New rules (settings reload), for requests asked from now on and for decisions.
    pub fn set_policy(&self, policy: ApprovalPolicy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
    }

    /// Remember who started `run`: they may not approve its tasks unless the policy allows.
    /// Called before the run starts, so no request comes first.
    pub fn record_starter(&self, run: &RunId, user: &UserId) {
        self.lock().starters.insert(run.clone(), user.clone());
    }

    /// Why `user` may not approve `task` of `run` under the policy (their own run, or their
    /// second approval of a two-person task); `None` when they may, or nothing waits.
    pub fn separation(
        &self,
        run: &RunId,
        task: &TaskId,
        user: &UserId,
        account: &str,
    ) -> Option<String> {
        let waiting = self.lock();
        let entry = waiting.entries.get(&(run.clone(), task.clone()))?;
        if !self.policy().self_approval && entry.info.requested_by.as_ref() == Some(user) {
            return Some(format!(
                "{user} started run {run} and may not approve its tasks (separation of duties; \
                 policies.self_approval is off)"
            ));
        }
        if entry.info.approved_by.contains(user) || entry.accounts.iter().any(|a| a == account) {
            return Some(format!(
                "{user} already approved {task}; it needs {} different approvers",
                entry.info.needed
            ));
        }
        None
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
        // A request asked again after a restart keeps its first time, and so its deadline.
        let requested_ms = asked_ms.unwrap_or_else(now_ms);
        let policy = self.policy();
        let timeout = policy.timeout;
        let needs_two = policy.two_person_at.is_some_and(|at| risk >= at);
        let mut info = PendingApproval {
            run: run.clone(),
            task: task.clone(),
            agent: agent.clone(),
            risk,
            reasons: reasons.clone(),
            requested_ms,
            requested_by: None,
            deadline_ms: timeout.map(|t| requested_ms.saturating_add(t.as_millis() as u64)),
            needed: if needs_two { 2 } else { 1 },
            approved_by: Vec::new(),
            overdue: false,
        };
        let terms;
        let ticket = {
            let mut waiting = self.lock();
            info.requested_by = waiting.starters.get(run).cloned();
            terms = Event::ApprovalTerms {
                task: task.clone(),
                requested_by: info.requested_by.clone(),
                deadline_ms: info.deadline_ms,
                needed: info.needed,
            };
            let ticket = waiting.next_ticket;
            waiting.next_ticket += 1;
            let replaced = waiting
                .entries
                .insert(key.clone(), Entry { ticket, accounts: Vec::new(), info, reply });
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
        self.bus.publish(Some(run), terms);
        let withdraw = Withdraw { approvals: self.clone(), key, ticket };
        let approvals = self.clone();
        // The clock runs from the request, not from when the future is first polled.
        let already = Duration::from_millis(now_ms().saturating_sub(requested_ms));
        let deadline = timeout
            .map(|limit| (tokio::time::Instant::now() + limit.saturating_sub(already), limit));
        async move {
            let dropped =
                |_| Decision::Cancelled { reason: "the approval request was dropped".to_owned() };
            let mut answer = answer;
            let decision = match deadline {
                None => answer.await.unwrap_or_else(dropped),
                Some((at, limit)) => {
                    tokio::select! {
                        decided = &mut answer => decided.unwrap_or_else(dropped),
                        () = tokio::time::sleep_until(at) => {
                            match approvals.deadline_passed(&withdraw.key, ticket, limit) {
                                Some(decision) => decision,
                                // Escalated: it waits on, overdue, for a person.
                                None => answer.await.unwrap_or_else(dropped),
                            }
                        }
                    }
                }
            };
            drop(withdraw);
            decision
        }
    }

    /// The deadline of a request passed: reject it, or mark it overdue and announce that
    /// (`on_timeout: escalate`, returning `None`). A request already decided is left alone.
    fn deadline_passed(
        &self,
        key: &(RunId, TaskId),
        ticket: u64,
        limit: Duration,
    ) -> Option<Decision> {
        let waited = crate::words::duration(limit);
        match self.policy().on_timeout {
            OnTimeout::Reject => {
                let entry = {
                    let mut waiting = self.lock();
                    match waiting.entries.get(key) {
                        Some(entry) if entry.ticket == ticket => waiting.entries.remove(key),
                        _ => None,
                    }
                }?;
                let note = format!("no decision within policies.approval_timeout ({waited})");
                let by = UserId::new(SYSTEM_USER);
                self.bus.publish(
                    Some(&key.0),
                    Event::ApprovalDecided {
                        task: key.1.clone(),
                        approved: false,
                        by: by.clone(),
                        note: Some(note.clone()),
                    },
                );
                drop(entry);
                Some(Decision::Rejected { by, note: Some(note) })
            }
            OnTimeout::Escalate => {
                {
                    let mut waiting = self.lock();
                    if let Some(entry) = waiting.entries.get_mut(key).filter(|e| e.ticket == ticket)
                    {
                        entry.info.overdue = true;
                    }
                }
                self.bus.publish(
                    Some(&key.0),
                    Event::ApprovalOverdue {
                        task: key.1.clone(),
                        waited_ms: limit.as_millis() as u64,
                    },
                );
                None
            }
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
        self.decide_as(run, task, approved, by, by.as_str(), note)
    }

    /// [`Approvals::decide`] by `by` acting from the OS account `account`.
    pub fn decide_as(
        &self,
        run: &RunId,
        task: &TaskId,
        approved: bool,
        by: &UserId,
        account: &str,
        note: Option<String>,
    ) -> Result<(), GovernanceError> {
        let key = (run.clone(), task.clone());
        let entry = {
            let mut waiting = self.lock();
            let entry = waiting.entries.get_mut(&key).ok_or_else(|| {
                GovernanceError::NoPendingApproval { run: run.clone(), task: task.clone() }
            })?;
            let count = entry.info.approved_by.len() as u32 + 1;
            if approved && count < entry.info.needed {
                // The first of two: the task waits on for a different approver.
                entry.info.approved_by.push(by.clone());
                entry.accounts.push(account.to_owned());
                let needed = entry.info.needed;
                drop(waiting);
                self.bus.publish(
                    Some(run),
                    Event::ApprovalGiven { task: task.clone(), by: by.clone(), count, needed },
                );
                return Ok(());
            }
            waiting.entries.remove(&key)
        };
        let Some(entry) = entry else {
            return Err(GovernanceError::NoPendingApproval {
                run: run.clone(),
                task: task.clone(),
            });
        };
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strict(on_timeout: OnTimeout) -> ApprovalPolicy {
        ApprovalPolicy {
            timeout: Some(Duration::from_secs(3600)),
            on_timeout,
            two_person_at: Some(Risk::Critical),
            self_approval: false,
        }
    }

    fn ids() -> (RunId, TaskId, AgentId) {
        (RunId::new("r1"), TaskId::new("ship"), AgentId::new("dba"))
    }

    #[tokio::test]
    async fn a_critical_task_needs_two_different_people() {
        let approvals = Approvals::with_policy(EventBus::new(), strict(OnTimeout::Reject));
        let (run, task, agent) = ids();
        let mut waiting = Box::pin(approvals.request(&run, &task, &agent, Risk::Critical, vec![]));
        let rex = UserId::new("rex");
        assert_eq!(approvals.separation(&run, &task, &rex, "rex"), None);
        approvals.decide_as(&run, &task, true, &rex, "rex", None).unwrap();
        let pending = approvals.pending();
        assert_eq!((pending[0].needed, pending[0].approved_by.clone()), (2, vec![rex.clone()]));
        assert!(futures::poll!(&mut waiting).is_pending(), "one approval of two is not enough");
        // The same person again, under their own name or another one, is refused.
        assert!(approvals.separation(&run, &task, &rex, "rex").is_some());
        assert!(approvals.separation(&run, &task, &UserId::new("vic"), "rex").is_some());
        let rita = UserId::new("rita");
        assert_eq!(approvals.separation(&run, &task, &rita, "rita"), None);
        approvals.decide_as(&run, &task, true, &rita, "rita", None).unwrap();
        assert!(waiting.await.is_approved());
    }

    #[tokio::test]
    async fn the_runs_starter_may_not_approve_unless_allowed() {
        let (run, task, agent) = ids();
        let ann = UserId::new("ann");
        let approvals = Approvals::with_policy(EventBus::new(), strict(OnTimeout::Reject));
        approvals.record_starter(&run, &ann);
        let _waiting = approvals.request(&run, &task, &agent, Risk::High, vec![]);
        assert_eq!(approvals.pending()[0].requested_by, Some(ann.clone()));
        let why = approvals.separation(&run, &task, &ann, "ann").expect("refused");
        assert!(why.contains("separation of duties"), "{why}");

        let lenient = ApprovalPolicy { self_approval: true, ..strict(OnTimeout::Reject) };
        let approvals = Approvals::with_policy(EventBus::new(), lenient);
        approvals.record_starter(&run, &ann);
        let _waiting = approvals.request(&run, &task, &agent, Risk::High, vec![]);
        assert_eq!(approvals.separation(&run, &task, &ann, "ann"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_a_request_is_rejected() {
        let bus = EventBus::new();
        let mut events = bus.sink();
        let approvals = Approvals::with_policy(bus, strict(OnTimeout::Reject));
        let (run, task, agent) = ids();
        let waiting = approvals.request(&run, &task, &agent, Risk::High, vec![]);
        let deadline = approvals.pending()[0].deadline_ms.expect("a deadline");
        assert_eq!(deadline - approvals.pending()[0].requested_ms, 3_600_000);
        let Decision::Rejected { by, note } = waiting.await else { panic!("not rejected") };
        assert_eq!(by.as_str(), SYSTEM_USER);
        assert!(note.unwrap_or_default().contains("approval_timeout (1h)"));
        assert!(approvals.pending().is_empty());
        let kinds: Vec<&str> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|envelope| envelope.event.kind())
            .collect();
        assert_eq!(kinds, ["approval_requested", "approval_terms", "approval_decided"]);
    }

    #[tokio::test(start_paused = true)]
    async fn escalation_marks_it_overdue_and_keeps_waiting() {
        let bus = EventBus::new();
        let mut events = bus.sink();
        let approvals = Approvals::with_policy(bus, strict(OnTimeout::Escalate));
        let (run, task, agent) = ids();
        let mut waiting = Box::pin(approvals.request(&run, &task, &agent, Risk::High, vec![]));
        tokio::time::sleep(Duration::from_secs(3601)).await;
        assert!(futures::poll!(&mut waiting).is_pending());
        assert!(approvals.pending()[0].overdue);
        let overdue = std::iter::from_fn(|| events.try_recv().ok())
            .any(|envelope| matches!(envelope.event, Event::ApprovalOverdue { .. }));
        assert!(overdue, "an overdue event");
        approvals.decide_as(&run, &task, true, &UserId::new("rex"), "rex", None).unwrap();
        assert!(waiting.await.is_approved());
    }
}
