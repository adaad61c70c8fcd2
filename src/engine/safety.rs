//! Safety policies applied to an attempt (see [`crate::safety`]): tool calls as they stream,
//! and the output with every tool call once the attempt succeeded, before the output is
//! published or flows on to dependents. Every match is a `SafetyRuleMatched` event and an
//! audit record.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::scheduler::RunShared;
use crate::audit::{AuditEntry, Outcome};
use crate::event::{Event, OutputStream, Risk};
use crate::exec::ExecOutcome;
use crate::governance::{Decision, SYSTEM_USER};
use crate::ids::{AgentId, UserId};
use crate::safety::{SafetyAction, SafetyMatch};

/// What the policies make of a succeeded attempt.
#[derive(Debug, PartialEq)]
pub(crate) enum Review {
    /// Nothing enforced matched.
    Pass,
    /// The task fails with this reason, not retried: a `block` rule matched.
    Fail(String),
    /// An enforced `confirm` matched: the output waits for a reviewer, for these reasons.
    Hold(Vec<String>),
}

/// The attempt being checked.
pub(crate) struct Checked<'a> {
    pub(crate) shared: &'a Arc<RunShared>,
    pub(crate) task: usize,
    pub(crate) agent: &'a AgentId,
    pub(crate) attempt: u32,
}

impl Checked<'_> {
    /// Publishes and audits one match found in `source`.
    fn record(&self, source: &str, found: &SafetyMatch) {
        let step = &self.shared.plan.steps[self.task];
        self.shared.publish(Event::SafetyRuleMatched {
            task: step.id.clone(),
            agent: self.agent.clone(),
            attempt: self.attempt,
            policy: found.policy.clone(),
            rule: found.rule.clone(),
            action: found.action,
            enforcement: found.enforcement,
            source: source.to_owned(),
            excerpt: found.excerpt.clone(),
        });
        let Some(audit) = self.shared.engine.audit.get() else { return };
        let entry = AuditEntry {
            user: UserId::new(SYSTEM_USER),
            role: "system".to_owned(),
            action: "safety_rule_matched".to_owned(),
            outcome: if found.is_enforced() && found.action == SafetyAction::Block {
                Outcome::Denied
            } else {
                Outcome::Succeeded
            },
            detail: json!({
                "run": self.shared.run.as_str(),
                "task": step.id.as_str(),
                "agent": self.agent.as_str(),
                "attempt": self.attempt,
                "policy": found.policy,
                "rule": found.rule,
                "action": found.action.as_str(),
                "enforcement": found.enforcement.as_str(),
                "source": source,
                "excerpt": found.excerpt,
            }),
        };
        if let Err(error) = audit.append(&entry) {
            tracing::error!(run = %self.shared.run, %error, "safety: audit write failed");
        }
    }
}

/// The streamed-output check of one attempt: a tool call that matches an enforced `block`
/// rule is recorded, and the attempt is stopped through its own token at once, before the
/// agent acts on its result; other matches wait for the review of the whole attempt, which
/// sees every tool call. Clones share the outcome.
#[derive(Clone)]
pub(crate) struct StreamGuard {
    agent: AgentId,
    attempt: u32,
    stop: CancellationToken,
    blocked: Arc<Mutex<Option<String>>>,
}

impl StreamGuard {
    pub(crate) fn new(agent: &AgentId, attempt: u32, stop: CancellationToken) -> Self {
        Self { agent: agent.clone(), attempt, stop, blocked: Arc::default() }
    }

    /// The attempt's token: cancelled by the task's, or by a blocked tool call.
    pub(crate) fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Why a streamed tool call stopped the attempt, once one did.
    pub(crate) fn blocked(&self) -> Option<String> {
        self.blocked.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Checks one streamed chunk of task `task`.
    pub(crate) fn check(
        &self,
        shared: &Arc<RunShared>,
        task: usize,
        stream: OutputStream,
        text: &str,
    ) {
        if stream != OutputStream::ToolCall || self.stop.is_cancelled() {
            return;
        }
        let found = shared.engine.safety.check(text);
        let Some(blocking) =
            found.iter().find(|m| m.is_enforced() && m.action == SafetyAction::Block)
        else {
            return;
        };
        let checked = Checked { shared, task, agent: &self.agent, attempt: self.attempt };
        let source = "streamed tool call";
        checked.record(source, blocking);
        *self.blocked.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(block_reason(source, blocking));
        self.stop.cancel();
    }
}

fn block_reason(source: &str, found: &SafetyMatch) -> String {
    format!("blocked by safety rule `{}` in the {source}: {}", found.rule_path(), found.excerpt)
}

/// Checks a succeeded attempt's output and tool calls: records every match; fails the task
/// on an enforced `block`; asks for a hold on an enforced `confirm`.
pub(crate) fn review(checked: &Checked<'_>, outcome: &ExecOutcome) -> Review {
    let checker = &checked.shared.engine.safety;
    if checker.is_empty() {
        return Review::Pass;
    }
    let mut found: Vec<(String, SafetyMatch)> =
        checker.check(&outcome.output).into_iter().map(|m| ("output".to_owned(), m)).collect();
    for call in &outcome.details.tool_calls {
        let source = format!("tool call {}", call.name);
        found.extend(checker.check(&call.input).into_iter().map(|m| (source.clone(), m)));
    }
    for (source, matched) in &found {
        checked.record(source, matched);
    }
    let enforced =
        |action| found.iter().filter(move |(_, m)| m.is_enforced() && m.action == action);
    if let Some((source, blocking)) = enforced(SafetyAction::Block).next() {
        return Review::Fail(block_reason(source, blocking));
    }
    let reasons: Vec<String> = enforced(SafetyAction::Confirm)
        .map(|(source, m)| {
            format!("safety rule `{}` matched the {source}: {}", m.rule_path(), m.excerpt)
        })
        .collect();
    if reasons.is_empty() { Review::Pass } else { Review::Hold(reasons) }
}

/// Holds a succeeded attempt's output for a reviewer (a safety `confirm`, a budget under
/// `on_budget: approve`): registers the request, then announces it, so an unattended run's
/// refusal always finds it. The wait itself runs outside the worker (the scheduler parks the
/// task), so it holds no `max_parallel` slot; dropping the future withdraws the request.
pub(crate) fn hold(
    checked: &Checked<'_>,
    reasons: Vec<String>,
) -> impl std::future::Future<Output = Decision> + Send + 'static {
    let shared = checked.shared;
    let step = &shared.plan.steps[checked.task];
    let request = shared.engine.approvals.request(
        &shared.run,
        &step.id,
        checked.agent,
        Risk::High,
        reasons.clone(),
    );
    shared.publish(Event::TaskAwaitingApproval {
        task: step.id.clone(),
        agent: checked.agent.clone(),
        risk: Risk::High,
        reasons,
    });
    request
}
