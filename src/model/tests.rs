//! What the fold does with each event type: one table row per event, plus the rules that
//! span events (rounds, duplicates, other runs, resumed plans).

use super::*;
use crate::event::{Level, ToolCall};

const RUN: &str = "r-1";
const T0: u64 = 1_000_000;

fn planned(id: &str, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        task: TaskId::new(id),
        description: format!("do {id}").into(),
        agent: AgentId::new("coder"),
        score: None,
        depends_on: deps.iter().map(|d| TaskId::new(*d)).collect(),
        layer: deps.len(),
        timeout_ms: 60_000,
        retries: 2,
    }
}

fn started() -> Event {
    Event::RunStarted {
        workflow: "demo".into(),
        file: "workflows/demo.yaml".into(),
        goal: Some("ship".into()),
        max_parallel: 4,
        fail_fast: false,
        simulated: true,
        tasks: vec![planned("a", &[]), planned("b", &["a"])],
    }
}

/// Envelopes numbered from 1, a second apart, all of run `r-1`.
struct Feed {
    model: RunModel,
    seq: u64,
}

impl Feed {
    fn new(keep: OutputKeep) -> Self {
        let mut feed = Self { model: RunModel::new(keep), seq: 0 };
        assert!(feed.push(started()));
        feed
    }

    fn envelope(&mut self, event: Event) -> Envelope {
        self.seq += 1;
        Envelope {
            seq: self.seq,
            ts_ms: T0 + self.seq * 1000,
            run_id: Some(RunId::new(RUN)),
            event,
        }
    }

    fn push(&mut self, event: Event) -> bool {
        let envelope = self.envelope(event);
        self.model.apply(&envelope)
    }

    fn a(&self) -> &TaskModel {
        self.model.task(&TaskId::new("a")).expect("task a")
    }
}

fn start(attempt: u32, simulated: bool) -> Event {
    Event::TaskStarted {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        attempt,
        instance: InstanceId(7),
        backend: "sim".into(),
        simulated,
    }
}

fn output(stream: OutputStream, text: &str) -> Event {
    Event::TaskOutput { task: TaskId::new("a"), stream, text: text.into() }
}

fn succeeded(attempt: u32, details: AnswerDetails) -> Event {
    Event::TaskSucceeded {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        attempt,
        duration_ms: 500,
        output: "the answer".into(),
        usage: Some(TokenUsage { input_tokens: 10, output_tokens: 5, ..TokenUsage::default() }),
        simulated: true,
        details,
    }
}

#[test]
fn run_started_plans_every_task_pending() {
    let feed = Feed::new(OutputKeep::None);
    let model = &feed.model;
    assert_eq!(model.run_id, Some(RunId::new(RUN)));
    assert_eq!((model.workflow.as_str(), model.max_parallel, model.simulated), ("demo", 4, true));
    assert_eq!(model.started_ms, T0 + 1000);
    assert_eq!(model.tasks.len(), 2);
    assert!(model.tasks.iter().all(|t| t.status == TaskStatus::Pending && t.attempts == 0));
    assert_eq!(model.progress(), (0, 2));
    assert!(model.is_active());
}

/// One row per task event: the event after `TaskStarted` (attempt 1), and the status, attempts
/// and note it leaves.
#[test]
fn each_task_event_leaves_its_status() {
    let rows: Vec<(&str, Event, TaskStatus, Option<&str>)> = vec![
        ("ready", Event::TaskReady { task: TaskId::new("a") }, TaskStatus::Ready, None),
        (
            "awaiting approval",
            Event::TaskAwaitingApproval {
                task: TaskId::new("a"),
                agent: AgentId::new("coder"),
                risk: Risk::High,
                reasons: vec!["deploy".into()],
            },
            TaskStatus::AwaitingApproval,
            None,
        ),
        ("output", output(OutputStream::Stdout, "hi"), TaskStatus::Running, None),
        (
            "retrying",
            Event::TaskRetrying {
                task: TaskId::new("a"),
                agent: AgentId::new("coder"),
                attempt: 1,
                delay_ms: 250,
                duration_ms: 100,
                error: "reset".into(),
            },
            TaskStatus::Retrying,
            None,
        ),
        (
            "fallback",
            Event::TaskFallback {
                task: TaskId::new("a"),
                from: AgentId::new("coder"),
                to: AgentId::new("backup"),
                reason: "breaker open".into(),
            },
            TaskStatus::Running,
            Some("fell back from coder: breaker open"),
        ),
        ("succeeded", succeeded(1, AnswerDetails::default()), TaskStatus::Succeeded, None),
        (
            "failed",
            Event::TaskFailed {
                task: TaskId::new("a"),
                agent: None,
                attempt: 1,
                duration_ms: 100,
                error: "boom".into(),
            },
            TaskStatus::Failed,
            None,
        ),
        (
            "skipped",
            Event::TaskSkipped { task: TaskId::new("a"), reason: "x failed".into() },
            TaskStatus::Skipped,
            Some("x failed"),
        ),
        (
            "cancelled",
            Event::TaskCancelled { task: TaskId::new("a"), reason: "by alice".into() },
            TaskStatus::Cancelled,
            Some("by alice"),
        ),
    ];
    for (name, event, status, note) in rows {
        let mut feed = Feed::new(OutputKeep::None);
        feed.push(start(1, true));
        feed.push(event);
        let a = feed.a();
        assert_eq!(a.status, status, "{name}");
        assert_eq!(a.attempts, 1, "{name}");
        assert_eq!(a.note.as_deref(), note, "{name}");
    }
}

#[test]
fn task_started_opens_an_attempt_and_a_round() {
    let mut feed = Feed::new(OutputKeep::Tail(10));
    feed.push(start(1, true));
    let a = feed.a();
    assert_eq!(a.status, TaskStatus::Running);
    assert_eq!(
        (a.instance, a.backend.as_deref(), a.simulated),
        (Some(InstanceId(7)), Some("sim"), true)
    );
    assert_eq!(a.first_started_ms, Some(T0 + 2000));
    assert_eq!(a.history.len(), 1);
    assert_eq!(a.history[0].result, AttemptResult::Running);
    assert_eq!((feed.model.simulated_attempts, feed.model.real_attempts), (1, 0));
}

#[test]
fn retries_keep_the_round_clock_and_record_each_attempt() {
    let mut feed = Feed::new(OutputKeep::Tail(10));
    feed.push(start(1, false));
    feed.push(Event::TaskRetrying {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        attempt: 1,
        delay_ms: 250,
        duration_ms: 100,
        error: "reset".into(),
    });
    assert_eq!(feed.a().retry_at_ms, Some(T0 + 3000 + 250));
    feed.push(start(2, false));
    feed.push(succeeded(2, AnswerDetails::default()));
    let a = feed.a();
    // First start at +2 s, success at +5 s: the whole task took 3 s, the attempt 0.5 s.
    assert_eq!((a.duration_ms, a.attempt_ms), (Some(3000), Some(500)));
    assert_eq!(a.first_started_ms, Some(T0 + 2000));
    let results: Vec<AttemptResult> = a.history.iter().map(|h| h.result).collect();
    assert_eq!(results, [AttemptResult::Retrying, AttemptResult::Succeeded]);
    assert_eq!(a.history[0].retry_delay_ms, Some(250));
    assert_eq!(a.result.as_deref(), Some("the answer"));
    assert_eq!(a.usage.map(|u| u.input_tokens), Some(10));
    assert_eq!(feed.model.real_attempts, 2);
}

#[test]
fn an_operator_retry_starts_a_new_round_and_reopens_the_run() {
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(start(1, true));
    feed.push(Event::TaskFailed {
        task: TaskId::new("a"),
        agent: None,
        attempt: 1,
        duration_ms: 100,
        error: "boom".into(),
    });
    feed.push(Event::RunFinished {
        status: RunStatus::Failed,
        succeeded: 0,
        failed: 1,
        skipped: 1,
        cancelled: 0,
        duration_ms: 4000,
    });
    assert_eq!(feed.model.outcome.map(|o| o.status), Some(RunStatus::Failed));
    feed.push(start(2, true));
    assert!(feed.model.is_active(), "a retried task makes a finished run active again");
    assert_eq!(feed.a().first_started_ms, Some(T0 + 5000));
    assert_eq!(feed.a().error.as_deref(), Some("boom"), "the last error stays until it succeeds");
}

#[test]
fn success_details_become_the_note() {
    let mut feed = Feed::new(OutputKeep::Tail(10));
    feed.push(start(1, true));
    let details = AnswerDetails {
        truncated: true,
        tool_calls: vec![ToolCall {
            id: Some("1".into()),
            name: "grep".into(),
            input: "{}".into(),
        }],
        ..AnswerDetails::default()
    };
    feed.push(succeeded(1, details.clone()));
    assert_eq!(feed.a().note, details.summary());
    assert_eq!(feed.a().history[0].details, details);
}

#[test]
fn approvals_are_asked_decided_and_keep_their_first_request_time() {
    let mut feed = Feed::new(OutputKeep::None);
    let ask = || Event::ApprovalRequested {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        risk: Risk::Critical,
        reasons: vec!["prod".into()],
    };
    feed.push(ask());
    feed.push(ask());
    let approval = feed.a().pending_approval().expect("waiting");
    assert_eq!((approval.requested_ms, approval.risk), (T0 + 2000, Risk::Critical));
    feed.push(Event::ApprovalDecided {
        task: TaskId::new("a"),
        approved: true,
        by: UserId::new("rita"),
        note: Some("ok".into()),
    });
    let a = feed.a();
    assert!(a.pending_approval().is_none());
    let decision = a.approved().expect("approved");
    assert_eq!((decision.by.as_str(), decision.note.as_deref()), ("rita", Some("ok")));
    assert_eq!(decision.decided_ms, T0 + 4000);
}

#[test]
fn a_two_person_approval_counts_its_approvers_and_an_overdue_one_says_so() {
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(Event::ApprovalRequested {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        risk: Risk::Critical,
        reasons: vec!["prod".into()],
    });
    feed.push(Event::ApprovalGiven {
        task: TaskId::new("a"),
        by: UserId::new("rex"),
        count: 1,
        needed: 2,
    });
    let approval = feed.a().pending_approval().expect("still waiting");
    assert_eq!((approval.approved_by.clone(), approval.needed), (vec![UserId::new("rex")], 2));
    assert!(!approval.overdue);
    feed.push(Event::ApprovalOverdue { task: TaskId::new("a"), waited_ms: 3_600_000 });
    assert!(feed.a().pending_approval().expect("still waiting").overdue);
}

#[test]
fn workspaces_are_created_then_described() {
    let mut feed = Feed::new(OutputKeep::None);
    // Changes before a workspace change nothing.
    assert!(!feed.push(Event::WorkspaceChanges {
        task: TaskId::new("a"),
        attempt: 1,
        branch: "fd/a".into(),
        commit: None,
        files: Vec::new(),
        summary: String::new(),
    }));
    feed.push(Event::WorkspaceCreated {
        task: TaskId::new("a"),
        kind: WorkspaceKind::Worktree,
        path: "/tmp/wt".into(),
        repo: Some("/repo".into()),
        branch: Some("fd/a".into()),
        base: Some("abc".into()),
        base_from: Some("HEAD".into()),
    });
    feed.push(Event::WorkspaceChanges {
        task: TaskId::new("a"),
        attempt: 1,
        branch: "fd/a".into(),
        commit: Some("def".into()),
        files: vec![FileChange { path: "x.rs".into(), added: Some(3), removed: Some(1) }],
        summary: "1 file changed".into(),
    });
    let workspace = feed.a().workspace.clone().expect("workspace");
    assert_eq!(workspace.branch.as_deref(), Some("fd/a"));
    assert_eq!((workspace.summary.as_str(), workspace.changes.len()), ("1 file changed", 1));
}

#[test]
fn output_is_kept_as_the_view_asks() {
    let events = [
        output(OutputStream::Tokens, "hel"),
        output(OutputStream::Tokens, "lo\nwor"),
        output(OutputStream::Stderr, "warn\n"),
        output(OutputStream::ToolCall, "grep {}"),
        output(OutputStream::Reasoning, "hmm"),
    ];
    let mut none = Feed::new(OutputKeep::None);
    let mut tail = Feed::new(OutputKeep::Tail(3));
    let mut full = Feed::new(OutputKeep::Full);
    for feed in [&mut none, &mut tail, &mut full] {
        feed.push(start(1, true));
        for event in events.clone() {
            feed.push(event);
        }
    }
    assert!(none.a().output.is_empty() && none.a().history.is_empty(), "no output, no history");
    let lines: Vec<&str> = tail.a().output.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(lines, ["warn", "grep {}", "hmm"], "the tail keeps the last 3 lines");
    let attempt = &full.a().history[0];
    assert_eq!(attempt.output, "hello\nwor");
    assert_eq!(attempt.stderr, "warn\n");
    assert_eq!(attempt.tools, ["→ grep {}"]);
    assert_eq!(attempt.reasoning, "hmm");
}

#[test]
fn run_finished_records_the_outcome() {
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded: 2,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 1234,
    });
    let outcome = feed.model.outcome.expect("finished");
    assert_eq!((outcome.status, outcome.duration_ms), (RunStatus::Succeeded, 1234));
    assert_eq!(feed.model.elapsed_ms(u64::MAX), 1234);
}

#[test]
fn duplicates_other_runs_and_events_without_a_task_change_nothing() {
    let mut feed = Feed::new(OutputKeep::None);
    let envelope = feed.envelope(start(1, true));
    assert!(feed.model.apply(&envelope));
    assert!(!feed.model.apply(&envelope), "the same seq twice");
    let mut other = feed.envelope(Event::TaskReady { task: TaskId::new("b") });
    other.run_id = Some(RunId::new("r-2"));
    assert!(!feed.model.apply(&other), "another run's event");
    let unknown = feed.envelope(Event::TaskReady { task: TaskId::new("zz") });
    assert!(!feed.model.apply(&unknown), "a task the plan does not have");
    let notice = feed.envelope(Event::Notice { level: Level::Info, message: "hello".into() });
    assert!(!feed.model.apply(&notice));
    assert_eq!(feed.model.task(&TaskId::new("b")).map(|t| t.status), Some(TaskStatus::Pending));
    assert_eq!(feed.model.applied, 2);
}

#[test]
fn a_second_plan_keeps_the_earlier_tasks() {
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(start(1, true));
    feed.push(succeeded(1, AnswerDetails::default()));
    let mut second = started();
    if let Event::RunStarted { tasks, .. } = &mut second {
        tasks.push(planned("c", &["b"]));
    }
    feed.push(second);
    assert_eq!(feed.model.tasks.len(), 3);
    assert_eq!(feed.a().status, TaskStatus::Succeeded);
    assert_eq!(feed.model.started_ms, T0 + 1000, "the run began with its first plan");
}

#[test]
fn counts_follow_the_current_status_not_the_history() {
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(start(1, true));
    feed.push(Event::TaskFailed {
        task: TaskId::new("a"),
        agent: None,
        attempt: 1,
        duration_ms: 1,
        error: "x".into(),
    });
    feed.push(start(2, true));
    feed.push(succeeded(2, AnswerDetails::default()));
    let counts = feed.model.counts();
    assert_eq!((counts.succeeded, counts.failed, counts.pending), (1, 0, 1));
    assert_eq!(counts.finished(), 1);
}

#[test]
fn from_events_folds_a_stored_run() {
    let mut feed = Feed::new(OutputKeep::None);
    let envelopes: Vec<Envelope> = [start(1, true), succeeded(1, AnswerDetails::default())]
        .into_iter()
        .map(|e| feed.envelope(e))
        .collect();
    let mut all =
        vec![Envelope { seq: 0, ts_ms: T0, run_id: Some(RunId::new(RUN)), event: started() }];
    all.extend(envelopes);
    let model = RunModel::from_events(&all, OutputKeep::None);
    assert_eq!(model.task(&TaskId::new("a")).map(|t| t.status), Some(TaskStatus::Succeeded));
    assert_eq!(model.last_seq, 3);
}

/// A panel task's conflict: asked, waiting for a person (with everything needed to ask
/// again after a restart), then settled once.
#[test]
fn a_conflict_waits_for_a_person_and_is_settled_once() {
    use crate::conflict::{DecideMode, Domain, LadderStep, MemberVerdict, Recommendation, Verdict};
    let member = |agent: &str, decision: &str| MemberVerdict {
        agent: AgentId::new(agent),
        domain: Domain::Implementation,
        domain_from: "category".into(),
        verdict: Verdict {
            decision: decision.into(),
            rationale: "because".into(),
            alternatives: Vec::new(),
            tradeoffs: Vec::new(),
            evidence: Vec::new(),
            confidence: 0.5,
        },
    };
    let mut feed = Feed::new(OutputKeep::None);
    let a = TaskId::new("a");
    assert!(feed.push(Event::ConflictDetected {
        task: a.clone(),
        question: "x or y?".into(),
        options: vec!["x".into(), "y".into()],
        domain: None,
        decide: DecideMode::Auto,
        verdicts: vec![member("m1", "x"), member("m2", "y")],
        failed: vec![AgentId::new("m3")],
    }));
    assert!(feed.push(Event::ConflictStep {
        task: a.clone(),
        step: LadderStep::DomainPriority,
        finding: "equal".into(),
        winner: None,
        decision: None,
        recommendation: None,
    }));
    assert_eq!(feed.model.open_conflicts().count(), 0, "not asked yet");
    let recommendation =
        Recommendation { decision: "x".into(), winner: AgentId::new("m1"), from: None };
    assert!(feed.push(Event::ConflictStep {
        task: a.clone(),
        step: LadderStep::Operator,
        finding: "a person decides".into(),
        winner: None,
        decision: None,
        recommendation: Some(recommendation.clone()),
    }));
    let task = feed.model.task(&a).expect("task a");
    assert_eq!(task.status, TaskStatus::AwaitingDecision);
    assert!(task.status.waits_for_person());
    assert_eq!(feed.model.counts().waiting, 1);
    let (_, open) = feed.model.open_conflicts().next().expect("open");
    assert_eq!(open.question, "x or y?");
    assert_eq!(open.verdicts.len(), 2);
    assert_eq!(open.recommendation, Some(recommendation));
    assert_eq!(open.steps.len(), 2);

    assert!(feed.push(Event::ConflictResolved {
        task: a.clone(),
        decision: "y".into(),
        winner: "m2".into(),
        resolved_by: LadderStep::Operator,
        by: Some(UserId::new("ann")),
        note: Some("y reads better".into()),
    }));
    assert_eq!(feed.model.open_conflicts().count(), 0, "never asked again");
    let resolution = feed
        .model
        .task(&a)
        .expect("task a")
        .conflict
        .as_ref()
        .expect("conflict")
        .resolution
        .clone();
    assert_eq!(resolution.expect("resolved").by, Some(UserId::new("ann")));
}

#[test]
fn an_interrupted_attempt_stays_in_the_history_and_the_task_starts_again() {
    let mut feed = Feed::new(OutputKeep::Tail(5));
    feed.push(start(1, false));
    feed.push(Event::TaskRetrying {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        attempt: 1,
        delay_ms: 10,
        duration_ms: 5,
        error: "boom".into(),
    });
    feed.push(start(2, false));
    assert!(feed.push(Event::AttemptInterrupted {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        attempt: 2,
    }));
    let a = feed.a();
    assert_eq!(a.status, TaskStatus::Pending);
    assert_eq!(a.attempts, 2, "numbering goes on");
    assert_eq!(a.retries_used, 1, "the interrupted attempt used no retry");
    let results: Vec<AttemptResult> = a.history.iter().map(|h| h.result).collect();
    assert_eq!(results, [AttemptResult::Retrying, AttemptResult::Interrupted]);
    assert!(a.note.as_deref().is_some_and(|n| n.contains("may have run twice")), "{:?}", a.note);
    // The resumed attempt opens a new round clock, and is attempt 3.
    feed.push(start(3, false));
    assert_eq!(feed.a().status, TaskStatus::Running);
    assert_eq!(feed.a().history.len(), 3);
}

#[test]
fn run_resumed_reopens_the_run_and_is_counted() {
    let mut feed = Feed::new(OutputKeep::None);
    assert!(feed.push(Event::RunResumed {
        done: 1,
        remaining: 1,
        workflow_changed: false,
        killed_processes: 0,
    }));
    assert_eq!(feed.model.resumes, 1);
    assert!(feed.model.is_active());
    assert_eq!(feed.model.started_ms, T0 + 1000, "the first start stands");
}

#[test]
fn retries_used_count_the_round_and_end_with_it() {
    let mut feed = Feed::new(OutputKeep::None);
    for attempt in 1..=2 {
        feed.push(start(attempt, false));
        feed.push(Event::TaskRetrying {
            task: TaskId::new("a"),
            agent: AgentId::new("coder"),
            attempt,
            delay_ms: 10,
            duration_ms: 5,
            error: "boom".into(),
        });
    }
    assert_eq!(feed.a().retries_used, 2);
    feed.push(start(3, false));
    feed.push(succeeded(3, AnswerDetails::default()));
    assert_eq!(feed.a().retries_used, 0, "a final state ends the round");
}

#[test]
fn a_fold_that_keeps_no_output_ignores_output_events() {
    // `RunStore::fold_run` leaves them unread when `reads_output` says so.
    for keep in [OutputKeep::None, OutputKeep::Tail(5), OutputKeep::Full] {
        let mut feed = Feed::new(keep);
        assert!(feed.push(start(1, true)));
        let before = feed.model.clone();
        let changed = feed.push(output(OutputStream::Stdout, "a line"));
        assert_eq!(changed, keep.reads_output(), "{keep:?}");
        if !keep.reads_output() {
            assert_eq!(feed.model, before);
        }
        assert_eq!(keep.ignores("task_output"), !keep.reads_output());
    }
}

#[test]
fn unfolded_kinds_change_nothing() {
    let agent = || AgentId::new("coder");
    let events = [
        Event::InstanceIdle { instance: InstanceId(7), agent: agent() },
        Event::InstanceReserved { instance: InstanceId(7), agent: agent() },
    ];
    assert_eq!(events.len(), UNFOLDED_KINDS.len());
    for keep in [OutputKeep::None, OutputKeep::Tail(5), OutputKeep::Full] {
        let mut feed = Feed::new(keep);
        assert!(feed.push(start(1, true)));
        for event in &events {
            assert!(keep.ignores(event.kind()), "{}", event.kind());
            let before = feed.model.clone();
            assert!(!feed.push(event.clone()), "{}", event.kind());
            assert_eq!(feed.model, before);
        }
        assert!(!keep.ignores("task_started") && !keep.ignores("command_accepted"));
    }
}

#[test]
fn the_starter_comes_from_the_accepted_start_and_a_waiting_task_makes_the_run_wait() {
    let accepted = |user: &str, command: &str| Envelope {
        seq: 0,
        ts_ms: T0,
        run_id: Some(RunId::new(RUN)),
        event: Event::CommandAccepted {
            user: UserId::new(user),
            role: "admin".into(),
            command: command.into(),
        },
    };
    // The gate's decision is published (and stored) before the run's first event.
    let mut model = RunModel::new(OutputKeep::None);
    assert!(model.apply(&accepted("ann", "start_run")));
    let mut feed = Feed { model, seq: 0 };
    assert!(feed.push(started()));
    // A resume (or a second start) by someone else is not the starter.
    feed.push(accepted("rex", "resume_run").event);
    feed.push(accepted("rex", "start_run").event);
    assert_eq!(feed.model.started_by, Some(UserId::new("ann")));

    assert!(!feed.model.waits_for_a_person());
    feed.push(Event::TaskAwaitingApproval {
        task: TaskId::new("a"),
        agent: AgentId::new("coder"),
        risk: Risk::High,
        reasons: vec!["deploy".into()],
    });
    assert!(feed.model.waits_for_a_person(), "a task awaiting approval makes the run wait");
    feed.push(start(1, true));
    assert!(!feed.model.waits_for_a_person(), "running again");
}

/// Every event the clocks look at, for task `a`; the choice is a number so a seeded walk can
/// pick among them.
fn clock_event(choice: u64, attempt: u32) -> Event {
    let a = || TaskId::new("a");
    let agent = || AgentId::new("coder");
    match choice % 13 {
        0 => Event::TaskReady { task: a() },
        1 | 2 => start(attempt, choice.is_multiple_of(2)),
        3 => Event::TaskRetrying {
            task: a(),
            agent: agent(),
            attempt,
            delay_ms: 250,
            duration_ms: 100,
            error: "reset".into(),
        },
        4 | 5 => succeeded(attempt, AnswerDetails::default()),
        6 => Event::TaskFailed {
            task: a(),
            agent: None,
            attempt,
            duration_ms: 3500,
            error: "boom".into(),
        },
        7 => Event::TaskCancelled { task: a(), reason: "by alice".into() },
        8 => Event::AttemptInterrupted { task: a(), agent: agent(), attempt },
        9 => Event::ConflictDetected {
            task: a(),
            question: "x or y?".into(),
            options: vec!["x".into(), "y".into()],
            domain: None,
            decide: DecideMode::Auto,
            verdicts: Vec::new(),
            failed: Vec::new(),
        },
        10 => Event::ConflictStep {
            task: a(),
            step: LadderStep::Operator,
            finding: "a person decides".into(),
            winner: None,
            decision: None,
            recommendation: None,
        },
        11 => Event::ConflictResolved {
            task: a(),
            decision: "y".into(),
            winner: "m2".into(),
            resolved_by: LadderStep::Operator,
            by: None,
            note: None,
        },
        _ => Event::TaskAwaitingApproval {
            task: a(),
            agent: agent(),
            risk: Risk::High,
            reasons: Vec::new(),
        },
    }
}

/// The progress printer's clocks time every end as the model does, through retries, new
/// rounds, interruptions, approvals and conflicts, and count attempts alike.
#[test]
fn task_clocks_time_each_end_as_the_model_does() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut ends = 0;
    for walk in 0..300 {
        let mut feed = Feed::new(OutputKeep::None);
        let mut clocks = TaskClocks::for_run(RunId::new(RUN));
        let first = feed.model.last_seq;
        // The run's start, as the feed numbered it.
        clocks.apply(&Envelope {
            seq: first,
            ts_ms: T0 + first * 1000,
            run_id: Some(RunId::new(RUN)),
            event: started(),
        });
        let mut attempt = 1;
        for _ in 0..40 {
            // xorshift: the same walks every time.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let event = clock_event(state >> 11, attempt);
            if matches!(event, Event::TaskStarted { .. }) {
                attempt += 1;
            }
            let envelope = feed.envelope(event);
            feed.model.apply(&envelope);
            clocks.apply(&envelope);
            let attempt_ms = match &envelope.event {
                Event::TaskSucceeded { duration_ms, .. }
                | Event::TaskFailed { duration_ms, .. } => *duration_ms,
                _ => continue,
            };
            ends += 1;
            let whole = clocks.whole_task_ms(&TaskId::new("a"), envelope.ts_ms, attempt_ms);
            assert_eq!(Some(whole), feed.a().duration_ms, "walk {walk}, {}", envelope.event.kind());
        }
        assert_eq!(
            (clocks.simulated_attempts, clocks.real_attempts),
            (feed.model.simulated_attempts, feed.model.real_attempts),
            "walk {walk}"
        );
    }
    assert!(ends > 1000, "the walks ended tasks {ends} times");
}

#[test]
fn task_clocks_ignore_other_runs_repeats_and_unplanned_tasks() {
    let mut feed = Feed::new(OutputKeep::None);
    let mut clocks = TaskClocks::for_run(RunId::new(RUN));
    let start_of_run = feed.model.last_seq;
    clocks.apply(&Envelope {
        seq: start_of_run,
        ts_ms: T0,
        run_id: Some(RunId::new(RUN)),
        event: started(),
    });
    let begun = feed.envelope(start(1, true));
    clocks.apply(&begun);
    // A repeat of the start later, another run's start and an unplanned task change nothing.
    clocks.apply(&begun);
    let mut other = feed.envelope(start(1, false));
    other.run_id = Some(RunId::new("r-2"));
    clocks.apply(&other);
    let mut stranger = feed.envelope(start(1, false));
    if let Event::TaskStarted { task, .. } = &mut stranger.event {
        *task = TaskId::new("zz");
    }
    clocks.apply(&stranger);
    let end = feed.envelope(succeeded(1, AnswerDetails::default()));
    clocks.apply(&end);
    assert_eq!(clocks.whole_task_ms(&TaskId::new("a"), end.ts_ms, 500), end.ts_ms - begun.ts_ms);
    assert_eq!((clocks.simulated_attempts, clocks.real_attempts), (1, 0));
    // A task that never started takes its attempt's own time.
    assert_eq!(clocks.whole_task_ms(&TaskId::new("b"), end.ts_ms, 500), 500);
}

#[test]
fn a_task_without_details_boxes_none_and_reads_as_empty() {
    let mut quiet = succeeded(1, AnswerDetails::default());
    if let Event::TaskSucceeded { usage, .. } = &mut quiet {
        *usage = None;
    }
    // A plain success (a simulated run's every task) sets no detail: nothing is boxed…
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(start(1, true));
    feed.push(quiet.clone());
    assert_eq!(feed.a().status, TaskStatus::Succeeded);
    assert!(feed.a().details.0.is_none());
    assert!(feed.a().error.is_none() && feed.a().history.is_empty());
    // …one with usage, an error or attempt records is, and reads back what was set.
    let mut feed = Feed::new(OutputKeep::None);
    feed.push(start(1, true));
    feed.push(succeeded(1, AnswerDetails::default()));
    assert_eq!(feed.a().usage.map(|u| u.input_tokens), Some(10));
    let mut tail = Feed::new(OutputKeep::Tail(5));
    tail.push(start(1, true));
    assert_eq!(tail.a().history.len(), 1);
    // Boxed but empty details equal none (a cleared rate-limit wait leaves them empty).
    let mut boxed = TaskModel::new(planned("a", &[]));
    boxed.rate_limited = None;
    assert!(boxed.details.0.is_some());
    assert_eq!(boxed, TaskModel::new(planned("a", &[])));
}
