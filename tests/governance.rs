//! The gate with a real audit file and a real bus; approvals end to end.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use flightdeck::audit::{AUDIT_FILE, AuditLog, verify};
use flightdeck::bus::EventBus;
use flightdeck::command::{Command, Permission, Request};
use flightdeck::config::Settings;
use flightdeck::event::{Envelope, Event, Risk};
use flightdeck::governance::{
    Approvals, Decision, DenyReason, Gate, GovernanceError, Identity, Role, SYSTEM_USER,
};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
use rstest::rstest;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use Role::{Admin, Developer, Operator, Reviewer, Viewer};

/// One user per role, named after it.
fn settings() -> Settings {
    let mut settings = Settings::default();
    for role in Role::ALL {
        settings.users.insert(format!("{role}-user"), role.to_string());
    }
    settings
}

struct Fixture {
    _dir: tempfile::TempDir,
    audit_path: PathBuf,
    gate: Gate,
    events: UnboundedReceiver<std::sync::Arc<Envelope>>,
}

fn fixture(settings: &Settings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join(AUDIT_FILE);
    let bus = EventBus::new();
    let events = bus.sink();
    let gate = Gate::new(settings, AuditLog::open(&audit_path).unwrap(), bus);
    Fixture { _dir: dir, audit_path, gate, events }
}

fn audit_lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn run() -> RunId {
    RunId::new("r1")
}

fn task() -> TaskId {
    TaskId::new("migrate")
}

/// Who may send each command: one row per command. `the_table_has_one_row_per_command`
/// fails when a command has no row (or two).
fn table() -> Vec<(Command, &'static [Role])> {
    vec![
        (
            Command::StartRun {
                workflow: "workflows/demo.yaml".into(),
                backend: None,
                max_parallel: None,
            },
            &[Admin, Operator, Developer],
        ),
        (Command::CancelRun { run: run() }, &[Admin, Operator, Developer]),
        (Command::CancelTask { run: run(), task: task() }, &[Admin, Operator, Developer]),
        (Command::RetryTask { run: run(), task: task() }, &[Admin, Operator, Developer]),
        (Command::Approve { run: run(), task: task(), note: None }, &[Admin, Reviewer]),
        (Command::Reject { run: run(), task: task(), note: Some("no".into()) }, &[Admin, Reviewer]),
        (
            Command::ResolveConflict {
                run: run(),
                task: task(),
                choice: flightdeck::command::ConflictChoice::Verdict(1),
                note: None,
            },
            &[Admin, Operator, Developer],
        ),
        (Command::AskThirdOpinion { run: run(), task: task() }, &[Admin, Operator, Developer]),
        (Command::ResetBreaker { agent: AgentId::new("coder") }, &[Admin, Operator]),
        (Command::OpenBreaker { agent: AgentId::new("coder") }, &[Admin, Operator]),
        (Command::SpawnInstance { agent: AgentId::new("coder") }, &[Admin, Operator]),
        (Command::ReleaseInstance { instance: InstanceId(3) }, &[Admin, Operator]),
        (Command::ReloadAgents, &[Admin, Operator]),
        (Command::ReloadSettings, &[Admin, Operator]),
        (Command::PruneRuns { keep: Some(20), before_ms: None }, &[Admin, Operator]),
        (Command::ResumeRun { run: run(), backend: None }, &[Admin, Operator, Developer]),
    ]
}

/// The name of every variant of [`Command`], read from the enum itself: serde lists them
/// when asked for one that does not exist.
fn every_command_name() -> Vec<String> {
    let error = serde_json::from_value::<Command>(serde_json::json!({ "command": "no_such" }))
        .unwrap_err()
        .to_string();
    let listed = error
        .split_once("expected one of ")
        .unwrap_or_else(|| {
            panic!("serde's message changed; read the variants another way: {error}")
        })
        .1;
    listed.split(", ").map(|name| name.split('`').nth(1).unwrap_or(name).to_owned()).collect()
}

#[test]
fn the_table_has_one_row_per_command() {
    let every = every_command_name();
    assert!(every.len() >= 12, "{every:?}");
    let mut rows: Vec<&str> = table().iter().map(|(command, _)| command.name()).collect();
    rows.sort_unstable();
    let before = rows.len();
    rows.dedup();
    assert_eq!(rows.len(), before, "a command has two rows: {rows:?}");
    let missing: Vec<&String> =
        every.iter().filter(|name| !rows.contains(&name.as_str())).collect();
    assert!(missing.is_empty(), "commands without a row in the role table: {missing:?}");
    assert_eq!(rows.len(), every.len(), "rows for commands that do not exist: {rows:?}");
}

#[rstest]
fn every_command_for_every_role(
    #[values(Admin, Developer, Operator, Reviewer, Viewer)] role: Role,
) {
    for (command, allowed) in table() {
        one_command_for_one_role(&command, allowed, role);
    }
}

fn one_command_for_one_role(command: &Command, allowed: &[Role], role: Role) {
    let mut f = fixture(&settings());
    let user = UserId::new(format!("{role}-user"));
    let request = Request { user: user.clone(), command: command.clone() };
    let expected = allowed.contains(&role);

    let decision = f.gate.check(&request);
    assert_eq!(decision.is_ok(), expected, "{role} {}: {decision:?}", command.name());

    // One audit record with the decision, whoever asked.
    let records = audit_lines(&f.audit_path);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["user"], user.as_str());
    assert_eq!(record["role"], role.as_str());
    assert_eq!(record["action"], command.name());
    assert_eq!(record["outcome"], if expected { "accepted" } else { "denied" });
    assert_eq!(record["detail"]["command"], serde_json::to_value(command).unwrap());
    assert_eq!(record["detail"].get("reason").is_some(), !expected);

    // One event with the decision.
    let envelope = f.events.try_recv().unwrap();
    match (&envelope.event, expected) {
        (Event::CommandAccepted { user: u, role: r, command: c }, true) => {
            assert_eq!((u, r.as_str(), c.as_str()), (&user, role.as_str(), command.name()));
        }
        (Event::CommandDenied { user: u, command: c, reason, .. }, false) => {
            assert_eq!((u, c.as_str()), (&user, command.name()));
            assert!(reason.contains("lacks the"), "{reason}");
        }
        (other, _) => panic!("unexpected event {other:?}"),
    }
    assert!(f.events.try_recv().is_err(), "exactly one event");
    let targets_run = matches!(
        command,
        Command::CancelRun { .. }
            | Command::CancelTask { .. }
            | Command::RetryTask { .. }
            | Command::Approve { .. }
            | Command::Reject { .. }
            | Command::ResolveConflict { .. }
            | Command::AskThirdOpinion { .. }
    );
    assert_eq!(envelope.run_id.is_some(), targets_run);
}

#[test]
fn unknown_users_are_viewers_by_default() {
    let mut f = fixture(&settings());
    let request =
        Request { user: UserId::new("stranger"), command: Command::CancelRun { run: run() } };
    let denied = f.gate.check(&request).unwrap_err();
    assert_eq!(denied.identity, Identity { user: UserId::new("stranger"), role: Viewer });
    assert_eq!(denied.reason, DenyReason::MissingPermission(Permission::ControlRuns));
    assert_eq!(
        denied.to_string(),
        "stranger (viewer) may not cancel_run: the role lacks the `control_runs` permission"
    );
    let record = &audit_lines(&f.audit_path)[0];
    assert_eq!(record["role"], "viewer");
    assert_eq!(record["outcome"], "denied");
    assert_eq!(record["detail"]["permission"], "control_runs");
    assert!(matches!(f.events.try_recv().unwrap().event, Event::CommandDenied { .. }));
}

#[test]
fn default_role_from_settings_applies_to_unknown_users() {
    let mut settings = settings();
    settings.default_role = "developer".into();
    let f = fixture(&settings);
    let request =
        Request { user: UserId::new("stranger"), command: Command::CancelRun { run: run() } };
    assert_eq!(f.gate.check(&request).unwrap().identity().role, Developer);
}

#[test]
fn both_outcomes_leave_a_verifiable_chain() {
    let f = fixture(&settings());
    let approve = Command::Approve { run: run(), task: task(), note: Some("ok".into()) };
    for user in ["viewer-user", "reviewer-user", "operator-user", "reviewer-user"] {
        let _ = f.gate.check(&Request { user: UserId::new(user), command: approve.clone() });
    }
    let outcomes: Vec<Value> =
        audit_lines(&f.audit_path).iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(outcomes, ["denied", "accepted", "denied", "accepted"]);
    let report = verify(&f.audit_path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 4);
}

#[test]
fn a_decision_that_cannot_be_audited_is_a_refusal() {
    // Every write to /dev/full fails with "no space left on device".
    let bus = EventBus::new();
    let mut events = bus.sink();
    let gate = Gate::new(&settings(), AuditLog::open("/dev/full").unwrap(), bus);
    let request = Request { user: UserId::new("admin-user"), command: Command::ReloadAgents };
    let denied = gate.check(&request).unwrap_err();
    assert_eq!(denied.identity.role, Admin);
    assert!(matches!(denied.reason, DenyReason::AuditUnavailable(_)), "{denied}");
    assert!(denied.to_string().contains("cannot be recorded in the audit log"), "{denied}");
    match &events.try_recv().unwrap().event {
        Event::CommandDenied { reason, .. } => assert!(reason.contains("audit log"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}

// ---- approvals ----

fn collect(events: &mut UnboundedReceiver<std::sync::Arc<Envelope>>) -> Vec<Envelope> {
    std::iter::from_fn(|| events.try_recv().ok()).map(|e| (*e).clone()).collect()
}

#[tokio::test]
async fn approved_task_wakes_with_the_reviewer_and_note() {
    let bus = EventBus::new();
    let mut events = bus.sink();
    let approvals = Approvals::new(bus);
    let reasons = vec!["database change: migration".to_owned()];
    let waiting =
        approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::High, reasons.clone());

    let pending = approvals.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!((&pending[0].run, &pending[0].task, pending[0].risk), (&run(), &task(), Risk::High));

    let reviewer = UserId::new("rita");
    approvals.decide(&run(), &task(), true, &reviewer, Some("looks fine".into())).unwrap();
    let decision = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap();
    assert_eq!(
        decision,
        Decision::Approved { by: reviewer.clone(), note: Some("looks fine".into()) }
    );
    assert!(decision.is_approved());
    assert!(approvals.pending().is_empty());

    let seen = collect(&mut events);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].run_id, Some(run()));
    assert_eq!(
        seen[0].event,
        Event::ApprovalRequested {
            task: task(),
            agent: AgentId::new("dba"),
            risk: Risk::High,
            reasons
        }
    );
    // The terms follow the request: no starter recorded, no deadline (lenient policy).
    assert_eq!(
        seen[1].event,
        Event::ApprovalTerms { task: task(), requested_by: None, deadline_ms: None, needed: 1 }
    );
    assert_eq!(
        seen[2].event,
        Event::ApprovalDecided {
            task: task(),
            approved: true,
            by: reviewer,
            note: Some("looks fine".into())
        }
    );
}

#[tokio::test]
async fn rejected_task_gets_the_rejection() {
    let approvals = Approvals::new(EventBus::new());
    let waiting = approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::Critical, vec![]);
    approvals.decide(&run(), &task(), false, &UserId::new("rita"), None).unwrap();
    assert_eq!(waiting.await, Decision::Rejected { by: UserId::new("rita"), note: None });
}

#[tokio::test]
async fn deciding_nothing_pending_is_an_error() {
    let approvals = Approvals::new(EventBus::new());
    let err = approvals.decide(&run(), &task(), true, &UserId::new("rita"), None).unwrap_err();
    assert_eq!(err, GovernanceError::NoPendingApproval { run: run(), task: task() });
    assert_eq!(err.to_string(), "task `migrate` of run `r1` is not waiting for approval");

    // A second decision on the same task finds nothing either.
    let waiting = approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::High, vec![]);
    approvals.decide(&run(), &task(), true, &UserId::new("rita"), None).unwrap();
    assert!(approvals.decide(&run(), &task(), false, &UserId::new("rex"), None).is_err());
    assert!(waiting.await.is_approved());
}

#[tokio::test]
async fn cancelling_a_run_resolves_only_its_approvals() {
    let bus = EventBus::new();
    let mut events = bus.sink();
    let approvals = Approvals::new(bus);
    let other = RunId::new("r2");
    let a = approvals.request(&run(), &TaskId::new("a"), &AgentId::new("x"), Risk::High, vec![]);
    let b = approvals.request(&run(), &TaskId::new("b"), &AgentId::new("x"), Risk::High, vec![]);
    let c = approvals.request(&other, &TaskId::new("a"), &AgentId::new("x"), Risk::High, vec![]);
    collect(&mut events);

    assert_eq!(approvals.cancel_run(&run()), 2);
    assert!(matches!(a.await, Decision::Cancelled { .. }));
    assert!(matches!(b.await, Decision::Cancelled { .. }));
    let left = approvals.pending();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].run, other);

    let closed = collect(&mut events);
    assert_eq!(closed.len(), 2);
    for envelope in &closed {
        match &envelope.event {
            Event::ApprovalDecided { approved: false, by, note, .. } => {
                assert_eq!(by.as_str(), SYSTEM_USER);
                assert_eq!(note.as_deref(), Some("run cancelled"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    approvals.decide(&other, &TaskId::new("a"), true, &UserId::new("rita"), None).unwrap();
    assert!(c.await.is_approved());
}

#[tokio::test]
async fn dropping_the_wait_withdraws_the_request() {
    let bus = EventBus::new();
    let mut events = bus.sink();
    let approvals = Approvals::new(bus);
    let waiting = approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::High, vec![]);
    drop(waiting);
    assert!(approvals.pending().is_empty());
    let seen = collect(&mut events);
    assert!(matches!(
        &seen[2].event,
        Event::ApprovalDecided { approved: false, note: Some(note), .. }
            if note == "request withdrawn"
    ));
    assert!(approvals.decide(&run(), &task(), true, &UserId::new("rita"), None).is_err());
}

#[tokio::test]
async fn a_new_request_for_the_same_task_replaces_the_old_one() {
    let approvals = Approvals::new(EventBus::new());
    let first = approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::High, vec![]);
    let second = approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::High, vec![]);
    assert!(matches!(first.await, Decision::Cancelled { .. }));
    // The old waiter going away must not withdraw the new request.
    assert_eq!(approvals.pending().len(), 1);
    approvals.decide(&run(), &task(), true, &UserId::new("rita"), None).unwrap();
    assert!(second.await.is_approved());
}

#[tokio::test]
async fn reviewer_approves_through_the_gate() {
    let f = fixture(&settings());
    let approvals = Approvals::new(EventBus::new());
    let waiting = approvals.request(&run(), &task(), &AgentId::new("dba"), Risk::High, vec![]);
    let approve = Command::Approve { run: run(), task: task(), note: None };

    let developer = Request { user: UserId::new("developer-user"), command: approve.clone() };
    assert!(f.gate.check(&developer).is_err());
    assert_eq!(approvals.pending().len(), 1);

    let reviewer = Request { user: UserId::new("reviewer-user"), command: approve };
    let identity = f.gate.check(&reviewer).unwrap();
    approvals.decide(&run(), &task(), true, identity.user(), None).unwrap();
    assert_eq!(waiting.await, Decision::Approved { by: UserId::new("reviewer-user"), note: None });
}
