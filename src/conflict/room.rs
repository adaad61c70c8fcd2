//! Conflicts waiting for a person, keyed by run and task (two runs may both have a task
//! `choose-store` in conflict at once).
//!
//! Like approvals: the engine registers a conflict and awaits its [`Resolution`]; the
//! gate-checked `resolve_conflict` command calls [`Conflicts::resolve`], which publishes
//! `conflict_resolved` and wakes the panel task. Dropping the wait withdraws the conflict.
//! While it waits, a person may ask for the third opinion now (`ask_third_opinion`, the
//! prompt's `t`): the waiting panel task hears it through its [`Waiter`] and asks the agent.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{ConflictError, LadderStep, MemberVerdict, OWN_DECISION, Recommendation};
use crate::bus::EventBus;
use crate::event::Event;
use crate::ids::{AgentId, RunId, TaskId, UserId};

/// What a person chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictChoice {
    /// The member verdict with this 1-based number (the prompt's column).
    Verdict(usize),
    /// A decision of one's own.
    Own(String),
    /// The ladder's recommendation (what `--decide recommend` takes in a headless run).
    Recommended,
    /// Nobody decides: the panel task fails with this reason.
    Refused(String),
}

/// A conflict as the console lists it and a person sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenConflict {
    pub run: RunId,
    pub task: TaskId,
    pub question: String,
    pub options: Vec<String>,
    /// Only members that gave a verdict, in panel order; the choice numbers count these.
    pub verdicts: Vec<MemberVerdict>,
    pub recommendation: Option<Recommendation>,
    /// The agent that gives this task's third opinion (the task's `third_opinion`, else
    /// `conflicts.third_opinion`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub third_opinion: Option<AgentId>,
    /// Its opinion was asked already (by the ladder, or by a person): never twice.
    #[serde(default)]
    pub third_opinion_asked: bool,
}

/// How a waiting conflict ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// A person (or `--decide recommend`) settled it.
    Decided {
        decision: String,
        /// The agent whose verdict was taken, or [`OWN_DECISION`].
        winner: String,
        by: UserId,
        note: Option<String>,
    },
    /// Nobody can decide (a headless run without `--decide`); the task fails with this.
    Refused { reason: String },
}

/// What the panel task waiting on a conflict hears next.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// The wait is over.
    Resolved(Resolution),
    /// A person asked for the third opinion now; the conflict still waits.
    ThirdOpinion { by: UserId },
}

/// The panel task's end of a waiting conflict. Dropping it withdraws the conflict. Awaiting
/// it directly waits for the resolution alone (a request for the third opinion is then
/// ignored).
pub struct Waiter {
    answer: oneshot::Receiver<Resolution>,
    asks: mpsc::UnboundedReceiver<UserId>,
    _withdraw: Withdraw,
}

impl Waiter {
    /// The next call: `None` once the conflict was withdrawn without an answer.
    pub async fn next(&mut self) -> Option<Call> {
        tokio::select! {
            biased;
            answer = &mut self.answer => answer.ok().map(Call::Resolved),
            Some(by) = self.asks.recv() => Some(Call::ThirdOpinion { by }),
        }
    }
}

impl IntoFuture for Waiter {
    type Output = Option<Resolution>;
    type IntoFuture = Pin<Box<dyn Future<Output = Option<Resolution>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Self { answer, asks, _withdraw } = self;
            drop(asks);
            answer.await.ok()
        })
    }
}

/// The waiting room. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Conflicts {
    waiting: Arc<Mutex<Waiting>>,
    bus: EventBus,
}

#[derive(Default)]
struct Waiting {
    next_ticket: u64,
    entries: BTreeMap<(RunId, TaskId), Entry>,
}

struct Entry {
    ticket: u64,
    open: OpenConflict,
    reply: oneshot::Sender<Resolution>,
    asks: mpsc::UnboundedSender<UserId>,
}

impl Conflicts {
    pub fn new(bus: EventBus) -> Self {
        Self { waiting: Arc::default(), bus }
    }

    /// Register a conflict and wait for its resolution. Registered before this returns, so
    /// a decision may come before the waiter is polled; dropping the waiter withdraws it.
    pub fn request(&self, open: OpenConflict) -> Waiter {
        let (reply, answer) = oneshot::channel();
        let (asks_sender, asks) = mpsc::unbounded_channel();
        let key = (open.run.clone(), open.task.clone());
        let ticket = {
            let mut waiting = self.lock();
            let ticket = waiting.next_ticket;
            waiting.next_ticket += 1;
            let entry = Entry { ticket, open, reply, asks: asks_sender };
            if let Some(old) = waiting.entries.insert(key.clone(), entry) {
                let reason = "replaced by a new conflict of the same task".to_owned();
                let _ = old.reply.send(Resolution::Refused { reason });
            }
            ticket
        };
        Waiter { answer, asks, _withdraw: Withdraw { conflicts: self.clone(), key, ticket } }
    }

    /// A person asks for the third opinion of a waiting conflict now (after the gate).
    /// Returns the agent that will be asked. Refused when no conflict waits, when the task
    /// has no third-opinion agent, or when its opinion was asked already.
    pub fn ask_third_opinion(
        &self,
        run: &RunId,
        task: &TaskId,
        by: &UserId,
    ) -> Result<AgentId, ConflictError> {
        let mut waiting = self.lock();
        let entry = waiting
            .entries
            .get_mut(&(run.clone(), task.clone()))
            .ok_or_else(|| ConflictError::NotWaiting { run: run.clone(), task: task.clone() })?;
        let agent = entry
            .open
            .third_opinion
            .clone()
            .ok_or_else(|| ConflictError::NoThirdOpinion { task: task.clone() })?;
        if entry.open.third_opinion_asked {
            return Err(ConflictError::ThirdOpinionAsked { task: task.clone(), agent });
        }
        entry
            .asks
            .send(by.clone())
            .map_err(|_| ConflictError::NotWaiting { run: run.clone(), task: task.clone() })?;
        entry.open.third_opinion_asked = true;
        Ok(agent)
    }

    /// A new recommendation for a waiting conflict (a third opinion asked by a person
    /// decided); what `Recommended` takes from now on.
    pub fn recommend(&self, run: &RunId, task: &TaskId, recommendation: Recommendation) {
        if let Some(entry) = self.lock().entries.get_mut(&(run.clone(), task.clone())) {
            entry.open.recommendation = Some(recommendation);
        }
    }

    /// A decision after the gate: a verdict by number, one's own text, the recommendation,
    /// or a refusal that fails the panel task.
    pub fn resolve(
        &self,
        run: &RunId,
        task: &TaskId,
        choice: &ConflictChoice,
        by: &UserId,
        note: Option<String>,
    ) -> Result<(), ConflictError> {
        let mut waiting = self.lock();
        let key = (run.clone(), task.clone());
        let entry = waiting
            .entries
            .get(&key)
            .ok_or_else(|| ConflictError::NotWaiting { run: run.clone(), task: task.clone() })?;
        let (decision, winner, note) = match choice {
            ConflictChoice::Verdict(number) => {
                let count = entry.open.verdicts.len();
                let member = number.checked_sub(1).and_then(|i| entry.open.verdicts.get(i)).ok_or(
                    ConflictError::NoSuchVerdict { task: task.clone(), number: *number, count },
                )?;
                (member.verdict.decision.clone(), member.agent.to_string(), note)
            }
            ConflictChoice::Own(text) if text.trim().is_empty() => {
                return Err(ConflictError::EmptyDecision { task: task.clone() });
            }
            ConflictChoice::Own(text) => (text.trim().to_owned(), OWN_DECISION.to_owned(), note),
            ConflictChoice::Recommended => {
                let Some(recommendation) = entry.open.recommendation.clone() else {
                    let Some(entry) = waiting.entries.remove(&key) else {
                        return Err(ConflictError::NotWaiting {
                            run: run.clone(),
                            task: task.clone(),
                        });
                    };
                    drop(waiting);
                    let reason = "the ladder made no recommendation to take".to_owned();
                    let _ = entry.reply.send(Resolution::Refused { reason });
                    return Ok(());
                };
                let from = recommendation.from.map_or(
                    "no step decided; the side with most members, then highest confidence"
                        .to_owned(),
                    |step| format!("recommended by {step}"),
                );
                let note = Some(match note {
                    Some(note) => format!("{note} ({from})"),
                    None => from,
                });
                (recommendation.decision, recommendation.winner.to_string(), note)
            }
            ConflictChoice::Refused(reason) => {
                let reason = reason.clone();
                let Some(entry) = waiting.entries.remove(&key) else {
                    return Err(ConflictError::NotWaiting { run: run.clone(), task: task.clone() });
                };
                drop(waiting);
                let _ = entry.reply.send(Resolution::Refused { reason });
                return Ok(());
            }
        };
        let Some(entry) = waiting.entries.remove(&key) else {
            return Err(ConflictError::NotWaiting { run: run.clone(), task: task.clone() });
        };
        drop(waiting);
        self.settle(entry, decision, winner, by.clone(), note);
        Ok(())
    }

    /// Every conflict waiting for a person, oldest first.
    pub fn open(&self) -> Vec<OpenConflict> {
        let waiting = self.lock();
        let mut entries: Vec<&Entry> = waiting.entries.values().collect();
        entries.sort_by_key(|e| e.ticket);
        entries.into_iter().map(|e| e.open.clone()).collect()
    }

    /// The waiting conflict of one task.
    pub fn get(&self, run: &RunId, task: &TaskId) -> Option<OpenConflict> {
        self.lock().entries.get(&(run.clone(), task.clone())).map(|e| e.open.clone())
    }

    fn settle(
        &self,
        entry: Entry,
        decision: String,
        winner: String,
        by: UserId,
        note: Option<String>,
    ) {
        self.bus.publish(
            Some(&entry.open.run),
            Event::ConflictResolved {
                task: entry.open.task.clone(),
                decision: decision.clone(),
                winner: winner.clone(),
                resolved_by: LadderStep::Operator,
                by: Some(by.clone()),
                note: note.clone(),
            },
        );
        // The waiter may be gone (run cancelled meanwhile); the decision is still announced.
        let _ = entry.reply.send(Resolution::Decided { decision, winner, by, note });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a conflict whose waiter went away (its task was cancelled).
struct Withdraw {
    conflicts: Conflicts,
    key: (RunId, TaskId),
    ticket: u64,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let mut waiting = self.conflicts.lock();
        if waiting.entries.get(&self.key).is_some_and(|e| e.ticket == self.ticket) {
            waiting.entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflict::{Domain, Verdict};
    use crate::ids::AgentId;

    fn open(run: &str, task: &str) -> OpenConflict {
        let member = |agent: &str, decision: &str| MemberVerdict {
            agent: AgentId::new(agent),
            domain: Domain::Design,
            domain_from: "category".into(),
            verdict: Verdict {
                decision: decision.into(),
                rationale: "r".into(),
                alternatives: Vec::new(),
                tradeoffs: Vec::new(),
                evidence: Vec::new(),
                confidence: 0.5,
            },
        };
        OpenConflict {
            run: RunId::new(run),
            task: TaskId::new(task),
            question: "q".into(),
            options: Vec::new(),
            verdicts: vec![member("a", "x"), member("b", "y")],
            recommendation: None,
            third_opinion: Some(AgentId::new("judge")),
            third_opinion_asked: false,
        }
    }

    #[tokio::test]
    async fn two_runs_with_the_same_task_are_resolved_apart() {
        let conflicts = Conflicts::new(EventBus::new());
        let first = conflicts.request(open("r1", "pick"));
        let second = conflicts.request(open("r2", "pick"));
        let task = TaskId::new("pick");
        let alice = UserId::new("alice");
        conflicts
            .resolve(&RunId::new("r2"), &task, &ConflictChoice::Verdict(2), &alice, None)
            .expect("r2");
        conflicts
            .resolve(
                &RunId::new("r1"),
                &task,
                &ConflictChoice::Own("z".into()),
                &alice,
                Some("n".into()),
            )
            .expect("r1");
        match second.await {
            Some(Resolution::Decided { decision, winner, .. }) => {
                assert_eq!((decision.as_str(), winner.as_str()), ("y", "b"));
            }
            other => panic!("{other:?}"),
        }
        match first.await {
            Some(Resolution::Decided { decision, winner, note, .. }) => {
                assert_eq!((decision.as_str(), winner.as_str()), ("z", OWN_DECISION));
                assert_eq!(note.as_deref(), Some("n"));
            }
            other => panic!("{other:?}"),
        }
        // Resolved once: never again.
        let again =
            conflicts.resolve(&RunId::new("r1"), &task, &ConflictChoice::Verdict(1), &alice, None);
        assert!(matches!(again, Err(ConflictError::NotWaiting { .. })), "{again:?}");
    }

    #[tokio::test]
    async fn unknown_conflicts_and_bad_choices_are_errors() {
        let conflicts = Conflicts::new(EventBus::new());
        let _wait = conflicts.request(open("r1", "pick"));
        let alice = UserId::new("alice");
        let unknown = conflicts.resolve(
            &RunId::new("r9"),
            &TaskId::new("pick"),
            &ConflictChoice::Verdict(1),
            &alice,
            None,
        );
        assert!(unknown.expect_err("unknown").to_string().contains("no conflict waiting"));
        let bad = conflicts.resolve(
            &RunId::new("r1"),
            &TaskId::new("pick"),
            &ConflictChoice::Verdict(3),
            &alice,
            None,
        );
        assert!(bad.expect_err("3").to_string().contains("choose 1 to 2"));
        let empty = conflicts.resolve(
            &RunId::new("r1"),
            &TaskId::new("pick"),
            &ConflictChoice::Own(" ".into()),
            &alice,
            None,
        );
        assert!(matches!(empty, Err(ConflictError::EmptyDecision { .. })));
        // A refused choice leaves the conflict open.
        assert_eq!(conflicts.open().len(), 1);
    }

    #[tokio::test]
    async fn the_third_opinion_is_asked_once_and_only_where_there_is_one() {
        let conflicts = Conflicts::new(EventBus::new());
        let mut waiter = conflicts.request(open("r1", "pick"));
        let (run, task, alice) = (RunId::new("r1"), TaskId::new("pick"), UserId::new("alice"));
        let agent = conflicts.ask_third_opinion(&run, &task, &alice).expect("asked");
        assert_eq!(agent.as_str(), "judge");
        assert_eq!(waiter.next().await, Some(Call::ThirdOpinion { by: alice.clone() }));
        let twice = conflicts.ask_third_opinion(&run, &task, &alice).expect_err("twice");
        assert!(twice.to_string().contains("already asked"), "{twice}");
        // Still waiting: a decision ends it.
        conflicts.resolve(&run, &task, &ConflictChoice::Verdict(1), &alice, None).expect("1");
        assert!(matches!(waiter.next().await, Some(Call::Resolved(Resolution::Decided { .. }))));

        let mut none = open("r2", "pick");
        none.third_opinion = None;
        let _wait = conflicts.request(none);
        let missing = conflicts.ask_third_opinion(&RunId::new("r2"), &task, &alice);
        assert!(missing.expect_err("none").to_string().contains("third_opinion:"));
        let unknown = conflicts.ask_third_opinion(&RunId::new("r9"), &task, &alice);
        assert!(matches!(unknown, Err(ConflictError::NotWaiting { .. })));
    }

    #[tokio::test]
    async fn a_dropped_wait_withdraws_the_conflict() {
        let conflicts = Conflicts::new(EventBus::new());
        drop(conflicts.request(open("r1", "pick")));
        assert!(conflicts.open().is_empty());
    }
}
