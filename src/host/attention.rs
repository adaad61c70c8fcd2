//! Attention: when a task starts waiting for a person, `notify.command` runs (an argv, never
//! a shell string) with a JSON description on stdin.
//!
//! Requests that arrive together are coalesced: the first one opens a short window
//! ([`COALESCE`]), and everything that starts waiting within it goes out in one run of the
//! command, so a layer of twenty approvals is one notification, not twenty; each request is
//! in exactly one. The window keeps the promise of "within 100 ms" with room for the
//! program's own start. An overdue approval (`on_timeout: escalate`) is announced again.
//! A panel task whose conflict reaches the ladder's `operator` step waits for a person too.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::conflict::LadderStep;
use crate::event::{Envelope, Event};

/// How long the first request waits for others to join its notification.
pub const COALESCE: Duration = Duration::from_millis(25);

/// Run `command` for every batch of requests published on `bus` until `closing`.
pub fn spawn_notifier(
    bus: &EventBus,
    command: Vec<String>,
    closing: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut events = bus.subscribe();
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                () = closing.cancelled() => return,
                received = events.recv() => match received {
                    Ok(envelope) => match waiting_for_a_person(&envelope) {
                        Some(request) => request,
                        None => continue,
                    },
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
            };
            let mut batch = vec![first];
            let window = tokio::time::sleep(COALESCE);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    () = &mut window => break,
                    received = events.recv() => match received {
                        Ok(envelope) => batch.extend(waiting_for_a_person(&envelope)),
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            notify(&command, &batch).await;
        }
    })
}

/// The description of a request for a person, if `envelope` is one.
fn waiting_for_a_person(envelope: &Envelope) -> Option<Value> {
    let run = envelope.run_id.as_ref().map(ToString::to_string);
    match &envelope.event {
        Event::TaskAwaitingApproval { task, agent, risk, reasons } => Some(json!({
            "kind": "approval",
            "run": run,
            "task": task,
            "agent": agent,
            "risk": risk,
            "reasons": reasons,
            "since": envelope.ts_ms,
        })),
        // A budget at 80%: someone may want to raise it before the run stops.
        Event::BudgetWarning { task, scope, measure, spent, limit } => Some(json!({
            "kind": "budget_warning",
            "run": run,
            "task": task,
            "scope": scope,
            "measure": measure,
            "spent": spent,
            "limit": limit,
            "since": envelope.ts_ms,
        })),
        Event::ApprovalOverdue { task, waited_ms } => Some(json!({
            "kind": "approval_overdue",
            "run": run,
            "task": task,
            "waited_ms": waited_ms,
            "since": envelope.ts_ms,
        })),
        // The ladder's last step: a person must settle the panel task's conflict.
        Event::ConflictStep {
            task, step: LadderStep::Operator, finding, recommendation, ..
        } => Some(json!({
            "kind": "conflict",
            "run": run,
            "task": task,
            "finding": finding,
            "recommendation": recommendation,
            "since": envelope.ts_ms,
        })),
        _ => None,
    }
}

/// Run the command once for `batch`; a failure is logged, never fatal.
async fn notify(command: &[String], batch: &[Value]) {
    let Some((program, args)) = command.split_first() else { return };
    let text = json!({ "waiting_for_a_person": batch }).to_string();
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(program, %error, "notify.command could not start");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    // Reaped in the background, so a slow program never delays the next notification.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RunId, TaskId};

    fn step(step: LadderStep) -> Envelope {
        Envelope {
            seq: 1,
            ts_ms: 42,
            run_id: Some(RunId::new("r-1")),
            event: Event::ConflictStep {
                task: TaskId::new("q"),
                step,
                finding: "no step decided".into(),
                winner: None,
                decision: None,
                recommendation: None,
            },
        }
    }

    #[test]
    fn a_conflict_asking_a_person_is_a_request_and_other_ladder_steps_are_not() {
        let request = waiting_for_a_person(&step(LadderStep::Operator)).expect("a request");
        assert_eq!(
            (request["kind"].as_str(), request["task"].as_str(), request["run"].as_str()),
            (Some("conflict"), Some("q"), Some("r-1"))
        );
        assert_eq!(request["since"], 42);
        for other in [LadderStep::DomainPriority, LadderStep::Evidence, LadderStep::ThirdOpinion] {
            assert!(waiting_for_a_person(&step(other)).is_none(), "{other}");
        }
    }
}
