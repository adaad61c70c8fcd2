//! Reducer tests: given a state and an input, the next state and the commands. No tokio, no
//! terminal.

use std::path::PathBuf;
use std::sync::Arc;

use rstest::rstest;

use super::{APPROVAL_ARM_MS, Effect, Input, commands, reduce};
use crate::command::Command;
use crate::console::keys::Action;
use crate::console::state::{
    AgentMetrics, ApprovalChoice, BreakerState, CommandLine, Confirmed, Editing, Health,
    InstanceState, LineEdit, Overlay, PaneId, Prompt, State, TaskStatus,
};
use crate::event::{
    AgentSummary, Envelope, Event, FileChange, Level, OutputStream, PlannedTask, Risk, RunStatus,
    WorkspaceKind,
};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};

const T0: u64 = 1_700_000_000_000;

struct Feed {
    state: State,
    seq: u64,
}

impl Feed {
    fn new(role: &str) -> Self {
        let mut state = State::new("alice", role, PathBuf::from("/project"), "dark");
        reduce(&mut state, Input::Resize { width: 120, height: 40 });
        reduce(&mut state, Input::Tick(T0));
        Self { state, seq: 0 }
    }

    fn envelope(&mut self, run: bool, event: Event) -> Arc<Envelope> {
        self.seq += 1;
        let run_id = run.then(|| RunId::new("r1"));
        Arc::new(Envelope { seq: self.seq, ts_ms: T0 + self.seq * 1000, run_id, event })
    }

    fn event(&mut self, event: Event) -> Vec<Effect> {
        let envelope = self.envelope(false, event);
        reduce(&mut self.state, Input::Event(envelope))
    }

    fn run_event(&mut self, event: Event) -> Vec<Effect> {
        let envelope = self.envelope(true, event);
        reduce(&mut self.state, Input::Event(envelope))
    }

    /// The commands an action sends.
    fn act(&mut self, action: Action) -> Vec<Command> {
        commands(&self.effects(action))
    }

    fn effects(&mut self, action: Action) -> Vec<Effect> {
        reduce(&mut self.state, Input::Action(action))
    }

    /// Let `ms` pass on the console's clock.
    fn wait(&mut self, ms: u64) {
        let now = self.state.now_ms + ms;
        reduce(&mut self.state, Input::Tick(now));
    }

    /// The commands a typed command line sends.
    fn typed(&mut self, text: &str) -> Vec<Command> {
        commands(&self.typed_effects(text))
    }

    fn typed_effects(&mut self, text: &str) -> Vec<Effect> {
        self.act(Action::OpenCommandLine);
        for c in text.chars() {
            self.act(Action::CommandLineEdit(LineEdit::Insert(c)));
        }
        self.effects(Action::SubmitCommandLine)
    }

    fn with_run(mut self) -> Self {
        self.event(summary("backend-architect"));
        self.run_event(Event::RunStarted {
            workflow: "demo".into(),
            file: "workflows/demo.yaml".into(),
            goal: None,
            max_parallel: 2,
            fail_fast: false,
            simulated: true,
            tasks: vec![
                planned("design", 0, &[]),
                planned("build", 1, &["design"]),
                planned("deploy", 2, &["build"]),
            ],
        });
        self
    }

    /// An event of another run than `r1`.
    fn event_in(&mut self, run: &str, event: Event) -> Vec<Effect> {
        self.seq += 1;
        let envelope = Envelope {
            seq: self.seq,
            ts_ms: T0 + self.seq * 1000,
            run_id: Some(RunId::new(run)),
            event,
        };
        reduce(&mut self.state, Input::Event(Arc::new(envelope)))
    }

    /// A second run, `r2` of workflow `other`, with the same task ids as `r1`.
    fn with_second_run(mut self) -> Self {
        self.event_in(
            "r2",
            Event::RunStarted {
                workflow: "other".into(),
                file: "workflows/other.yaml".into(),
                goal: None,
                max_parallel: 2,
                fail_fast: false,
                simulated: true,
                tasks: vec![planned("design", 0, &[]), planned("deploy", 1, &["design"])],
            },
        );
        self
    }

    fn message(&self) -> Option<(Level, &str)> {
        self.state.message.as_ref().map(|m| (m.level, m.text.as_str()))
    }

    fn status(&self, task: &str) -> Option<TaskStatus> {
        self.state.run()?.task(&TaskId::new(task)).map(|t| t.status)
    }
}

fn summary(name: &str) -> Event {
    Event::AgentAdded(AgentSummary {
        agent: AgentId::new(name),
        file: PathBuf::from(format!("agentpool/tier1-core/{name}.md")),
        tier: 1,
        category: None,
        triggers: 1,
        max_instances: 3,
        backend: None,
        warnings: vec![],
    })
}

fn planned(id: &str, layer: usize, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        task: TaskId::new(id),
        description: id.into(),
        agent: AgentId::new("backend-architect"),
        score: None,
        depends_on: deps.iter().map(|d| TaskId::new(*d)).collect(),
        layer,
        timeout_ms: 10_000,
        retries: 1,
    }
}

fn approval(task: &str) -> Event {
    Event::ApprovalRequested {
        task: TaskId::new(task),
        agent: AgentId::new("backend-architect"),
        risk: Risk::High,
        reasons: vec!["mentions credentials".into()],
    }
}

fn run() -> RunId {
    RunId::new("r1")
}

// ---------------------------------------------------------------- events -> state

#[test]
fn agent_load_errors_are_kept_with_the_last_good_version() {
    let mut feed = Feed::new("admin");
    feed.event(summary("backend-architect"));
    feed.event(Event::AgentInvalid {
        file: "agentpool/tier1-core/backend-architect.md".into(),
        agent: Some(AgentId::new("backend-architect")),
        error: "bad tier".into(),
    });
    let entry = &feed.state.agents.entries["backend-architect"];
    assert!(entry.summary.is_some());
    assert_eq!(entry.error.as_deref(), Some("bad tier"));

    feed.event(Event::AgentInvalid {
        file: "agentpool/new.md".into(),
        agent: None,
        error: "no name".into(),
    });
    assert!(feed.state.agents.entries["agentpool/new.md"].summary.is_none());
    // The file is fixed: the invalid row gives way to the agent.
    feed.event(Event::AgentAdded(AgentSummary {
        agent: AgentId::new("newcomer"),
        file: "agentpool/new.md".into(),
        tier: 2,
        category: None,
        triggers: 0,
        max_instances: 1,
        backend: None,
        warnings: vec![],
    }));
    assert!(!feed.state.agents.entries.contains_key("agentpool/new.md"));
    assert!(feed.state.agents.entries.contains_key("newcomer"));

    feed.event(Event::AgentRemoved {
        agent: AgentId::new("newcomer"),
        file: "agentpool/new.md".into(),
    });
    assert!(!feed.state.agents.entries.contains_key("newcomer"));
}

#[test]
fn instances_move_through_their_states() {
    let mut feed = Feed::new("admin");
    let agent = || AgentId::new("worker");
    feed.event(Event::InstanceReserved { instance: InstanceId(1), agent: agent() });
    feed.event(Event::InstanceReserved { instance: InstanceId(2), agent: agent() });
    feed.event(Event::InstanceWorking {
        instance: InstanceId(1),
        agent: agent(),
        task: Some(TaskId::new("t")),
    });
    let counts = feed.state.pool.counts();
    assert_eq!((counts.reserved, counts.working, counts.idle, counts.terminated), (1, 1, 0, 0));
    feed.event(Event::InstanceIdle { instance: InstanceId(1), agent: agent() });
    assert_eq!(feed.state.pool.instances[&InstanceId(1)].state, InstanceState::Idle);
    assert_eq!(feed.state.pool.instances[&InstanceId(1)].task, None);
    feed.event(Event::InstanceTerminated {
        instance: InstanceId(2),
        agent: agent(),
        reason: "released".into(),
    });
    let counts = feed.state.pool.counts();
    assert_eq!((counts.reserved, counts.idle, counts.terminated), (0, 1, 1));
    // Selection follows the item, not the row.
    assert_eq!(feed.state.pool.cursor.selected, Some(InstanceId(1)));
}

#[test]
fn task_events_drive_statuses_and_metrics() {
    let mut feed = Feed::new("admin").with_run();
    let agent = || AgentId::new("backend-architect");
    assert_eq!(feed.status("design"), Some(TaskStatus::Pending));
    feed.run_event(Event::TaskReady { task: TaskId::new("design") });
    assert_eq!(feed.status("design"), Some(TaskStatus::Ready));
    feed.run_event(Event::TaskStarted {
        task: TaskId::new("design"),
        agent: agent(),
        attempt: 1,
        instance: InstanceId(4),
        backend: "sim".into(),
        simulated: true,
    });
    assert_eq!(feed.status("design"), Some(TaskStatus::Running));
    feed.run_event(Event::TaskRetrying {
        task: TaskId::new("design"),
        agent: agent(),
        attempt: 1,
        delay_ms: 500,
        duration_ms: 1000,
        error: "boom".into(),
    });
    assert_eq!(feed.status("design"), Some(TaskStatus::Retrying));
    feed.run_event(Event::TaskSucceeded {
        task: TaskId::new("design"),
        agent: agent(),
        attempt: 2,
        duration_ms: 3000,
        output: "ok".into(),
        usage: None,
        simulated: true,
        details: crate::event::AnswerDetails::default(),
    });
    assert_eq!(feed.status("design"), Some(TaskStatus::Succeeded));
    feed.run_event(Event::TaskFailed {
        task: TaskId::new("build"),
        agent: None,
        attempt: 1,
        duration_ms: 2000,
        error: "bad".into(),
    });
    feed.run_event(Event::TaskSkipped {
        task: TaskId::new("deploy"),
        reason: "build failed".into(),
    });
    assert_eq!(feed.status("build"), Some(TaskStatus::Failed));
    assert_eq!(feed.status("deploy"), Some(TaskStatus::Skipped));
    let metrics = feed.state.breakers.metrics[&agent()];
    assert_eq!(
        (metrics.calls.calls, metrics.calls.errors, metrics.consecutive_failures),
        (3, 2, 1)
    );
    assert_eq!(metrics.mean_duration_ms(), Some(2000));
    assert_eq!(metrics.health(None), Health::Unhealthy);

    feed.run_event(Event::RunFinished {
        status: RunStatus::Failed,
        succeeded: 1,
        failed: 1,
        skipped: 1,
        cancelled: 0,
        duration_ms: 9_000,
    });
    let run = feed.state.run().expect("run");
    assert_eq!(run.outcome.map(|o| o.status), Some(RunStatus::Failed));
    assert_eq!(run.progress(), (3, 3));
    assert_eq!(run.elapsed_ms(T0 + 999_999), 9_000);
}

/// Calls as the console folds them: `failed_first` failures, then `ok` successes, then
/// `failed_last` failures.
fn calls(failed_first: usize, ok: usize, failed_last: usize) -> AgentMetrics {
    let mut metrics = AgentMetrics::default();
    let outcomes = std::iter::repeat_n(false, failed_first)
        .chain(std::iter::repeat_n(true, ok))
        .chain(std::iter::repeat_n(false, failed_last));
    for ok in outcomes {
        metrics.record(ok, 1_000);
    }
    metrics
}

#[rstest]
#[case::quiet(calls(0, 0, 0), None, Health::Healthy)]
#[case::one_in_four(calls(0, 3, 1), None, Health::Healthy)]
#[case::over_a_quarter(calls(1, 5, 1), None, Health::Unhealthy)]
#[case::three_in_a_row(calls(0, 17, 3), None, Health::Degraded)]
#[case::both(calls(0, 1, 3), None, Health::Unhealthy)]
// The runtime's rule: the error rate of the last 64 calls, so an agent that recovered is
// healthy again although most of its lifetime calls failed.
#[case::recovered(calls(100, 64, 0), None, Health::Healthy)]
#[case::open_breaker(calls(0, 10, 0), Some(BreakerState::Open), Health::Unhealthy)]
#[case::half_open_breaker(calls(0, 10, 0), Some(BreakerState::HalfOpen), Health::Degraded)]
fn health_is_the_runtimes_verdict(
    #[case] metrics: AgentMetrics,
    #[case] breaker: Option<BreakerState>,
    #[case] expected: Health,
) {
    assert_eq!(metrics.health(breaker), expected);
    let (runtime, _) = crate::resilience::assess(
        &metrics.calls,
        metrics.consecutive_failures,
        breaker == Some(BreakerState::Open),
        breaker == Some(BreakerState::HalfOpen),
    );
    assert_eq!(runtime, expected);
}

#[test]
fn breakers_fold_open_half_open_closed() {
    let mut feed = Feed::new("admin");
    let agent = || AgentId::new("flaky");
    feed.event(Event::BreakerOpened {
        agent: agent(),
        failures: 3,
        threshold: 3,
        recovery_ms: 60_000,
        last_error: "503".into(),
    });
    let breaker = &feed.state.breakers.breakers[&agent()];
    assert_eq!(breaker.state, BreakerState::Open);
    let opened = breaker.opened_ms.expect("opened");
    assert_eq!(breaker.until_half_open_ms(opened + 15_000), Some(45_000));
    feed.event(Event::BreakerHalfOpened { agent: agent(), probes: 3 });
    assert_eq!(feed.state.breakers.breakers[&agent()].state, BreakerState::HalfOpen);
    feed.event(Event::BreakerClosed { agent: agent(), reason: "probes succeeded".into() });
    let breaker = &feed.state.breakers.breakers[&agent()];
    assert_eq!((breaker.state, breaker.failures), (BreakerState::Closed, 0));
}

#[rstest]
#[case::mine("alice", Some((Level::Error, "denied: reset_breaker — role viewer lacks operate")))]
#[case::someone_else("bob", None)]
fn denials_for_this_user_reach_the_status_bar(
    #[case] user: &str,
    #[case] expected: Option<(Level, &str)>,
) {
    let mut feed = Feed::new("viewer");
    feed.event(Event::CommandDenied {
        user: UserId::new(user),
        role: "viewer".into(),
        command: "reset_breaker".into(),
        reason: "role viewer lacks operate".into(),
    });
    assert_eq!(feed.message(), expected);
}

#[test]
fn duplicate_events_are_dropped() {
    let mut feed = Feed::new("admin");
    let envelope = feed.envelope(false, summary("a"));
    reduce(&mut feed.state, Input::Event(Arc::clone(&envelope)));
    reduce(&mut feed.state, Input::Event(envelope));
    assert_eq!(feed.state.audit.entries.len(), 1);
}

// ---------------------------------------------------------------- actions -> commands

#[rstest]
#[case::approve_key(vec![Action::Approve], vec![Command::Approve { run: run(), task: TaskId::new("deploy"), note: None }])]
#[case::reject_key(vec![Action::Reject], vec![Command::Reject { run: run(), task: TaskId::new("deploy"), note: None }])]
#[case::enter_on_the_safe_default(vec![Action::PromptConfirm], vec![])]
#[case::move_left_twice_then_enter(vec![Action::PromptPrev, Action::PromptPrev, Action::PromptConfirm], vec![Command::Approve { run: run(), task: TaskId::new("deploy"), note: None }])]
#[case::esc_later(vec![Action::Later, Action::Approve], vec![])]
fn approval_prompt(#[case] actions: Vec<Action>, #[case] expected: Vec<Command>) {
    let mut feed = Feed::new("reviewer").with_run();
    feed.run_event(approval("deploy"));
    let armed_ms = feed.state.now_ms + APPROVAL_ARM_MS;
    assert_eq!(
        feed.state.prompt,
        Some(Prompt::Approval {
            run: Some(run()),
            task: TaskId::new("deploy"),
            choice: ApprovalChoice::Later,
            armed_ms
        })
    );
    feed.wait(APPROVAL_ARM_MS);
    let commands: Vec<Command> = actions.into_iter().flat_map(|a| feed.act(a)).collect();
    assert_eq!(commands, expected);
    assert_eq!(feed.state.prompt, None);
    // Whatever was chosen, the approval stays pending until the runtime decides.
    assert!(feed.state.approvals.contains_key(&(Some(run()), TaskId::new("deploy"))));
}

#[test]
fn a_prompt_that_just_popped_up_ignores_approve_and_reject() {
    let mut feed = Feed::new("reviewer").with_run();
    feed.run_event(approval("deploy"));
    // `a` meant for the DAG behind it arrives as the prompt opens: nothing is decided.
    assert_eq!(feed.act(Action::Approve), vec![]);
    assert_eq!(feed.act(Action::Reject), vec![]);
    assert!(matches!(feed.state.prompt, Some(Prompt::Approval { .. })));
    assert_eq!(
        feed.message(),
        Some((Level::Warn, "the request just opened: read it, then decide"))
    );
    feed.wait(APPROVAL_ARM_MS);
    assert_eq!(
        feed.act(Action::Approve),
        vec![Command::Approve { run: run(), task: TaskId::new("deploy"), note: None }]
    );
}

#[test]
fn later_keeps_it_pending_and_the_next_approval_opens() {
    let mut feed = Feed::new("admin").with_run();
    feed.run_event(approval("build"));
    feed.run_event(approval("deploy"));
    feed.act(Action::Later);
    assert!(
        matches!(&feed.state.prompt, Some(Prompt::Approval { task, .. }) if task.as_str() == "deploy")
    );
    feed.run_event(Event::ApprovalDecided {
        task: TaskId::new("deploy"),
        approved: true,
        by: UserId::new("bob"),
        note: None,
    });
    assert_eq!(feed.state.prompt, None);
    assert_eq!(feed.message(), Some((Level::Info, "bob approved deploy")));
    // The deferred one comes back on request from the DAG.
    feed.state.focus = PaneId::Dag;
    feed.act(Action::SelectRight);
    feed.act(Action::ReviewSelected);
    assert!(
        matches!(&feed.state.prompt, Some(Prompt::Approval { task, choice: ApprovalChoice::Later, armed_ms: 0, .. }) if task.as_str() == "build")
    );
}

#[test]
fn viewers_and_operators_get_no_prompt() {
    for role in ["viewer", "operator", "developer"] {
        let mut feed = Feed::new(role).with_run();
        feed.run_event(approval("deploy"));
        assert_eq!(feed.state.prompt, None, "{role}");
        assert_eq!(feed.message(), Some((Level::Info, "deploy awaits approval by a reviewer")));
    }
}

#[test]
fn prompts_wait_while_the_operator_types() {
    let mut feed = Feed::new("admin").with_run();
    feed.act(Action::OpenCommandLine);
    feed.run_event(approval("deploy"));
    assert_eq!(feed.state.prompt, None);
    feed.act(Action::CloseCommandLine);
    assert!(feed.state.prompt.is_some());
}

#[rstest]
#[case::cancel_task(Action::CancelSelectedTask, Command::CancelTask { run: run(), task: TaskId::new("design") })]
#[case::cancel_run(Action::CancelRun, Command::CancelRun { run: run() })]
fn dangerous_keys_ask_first_with_no_focused(#[case] action: Action, #[case] expected: Command) {
    let mut feed = Feed::new("admin").with_run();
    assert_eq!(feed.act(action), vec![]);
    assert!(matches!(feed.state.prompt, Some(Prompt::Confirm { confirm: false, .. })));
    assert_eq!(feed.act(Action::PromptConfirm), vec![], "Enter on the default does nothing");
    feed.act(action);
    feed.act(Action::PromptNext);
    assert_eq!(feed.act(Action::PromptConfirm), vec![expected.clone()]);
    feed.act(Action::CancelSelectedTask);
    feed.act(Action::ConfirmNo);
    assert_eq!(feed.state.prompt, None);
}

#[test]
fn retry_only_for_tasks_that_ended_badly() {
    let mut feed = Feed::new("admin").with_run();
    feed.act(Action::RetrySelectedTask);
    assert_eq!(feed.state.prompt, None);
    assert_eq!(feed.message().map(|m| m.0), Some(Level::Warn));
    feed.run_event(Event::TaskFailed {
        task: TaskId::new("design"),
        agent: None,
        attempt: 1,
        duration_ms: 1,
        error: "x".into(),
    });
    feed.act(Action::RetrySelectedTask);
    assert_eq!(
        feed.act(Action::ConfirmYes),
        vec![Command::RetryTask { run: run(), task: TaskId::new("design") }]
    );
}

#[test]
fn pane_keys_build_commands_from_the_selection() {
    let mut feed = Feed::new("admin");
    feed.event(summary("backend-architect"));
    feed.event(Event::InstanceReserved {
        instance: InstanceId(7),
        agent: AgentId::new("backend-architect"),
    });
    feed.event(Event::BreakerOpened {
        agent: AgentId::new("backend-architect"),
        failures: 3,
        threshold: 3,
        recovery_ms: 1,
        last_error: "x".into(),
    });
    assert_eq!(
        feed.act(Action::SpawnSelectedAgent),
        vec![Command::SpawnInstance { agent: AgentId::new("backend-architect") }]
    );
    assert_eq!(feed.act(Action::ReloadAgents), vec![Command::ReloadAgents]);
    feed.act(Action::ReleaseSelectedInstance);
    assert_eq!(
        feed.act(Action::ConfirmYes),
        vec![Command::ReleaseInstance { instance: InstanceId(7) }]
    );
    feed.act(Action::ResetSelectedBreaker);
    assert_eq!(
        feed.act(Action::ConfirmYes),
        vec![Command::ResetBreaker { agent: AgentId::new("backend-architect") }]
    );
    feed.act(Action::OpenSelectedBreaker);
    assert_eq!(
        feed.act(Action::ConfirmYes),
        vec![Command::OpenBreaker { agent: AgentId::new("backend-architect") }]
    );
}

#[test]
fn command_line_sends_commands_and_explains_mistakes() {
    let mut feed = Feed::new("admin").with_run();
    assert_eq!(feed.typed("cancel build"), vec![], "asks first, like its key");
    assert_eq!(
        feed.act(Action::ConfirmYes),
        vec![Command::CancelTask { run: run(), task: TaskId::new("build") }]
    );
    assert_eq!(feed.state.editing, Editing::None);
    assert_eq!(feed.typed("bogus"), vec![]);
    assert_eq!(feed.message().map(|m| m.0), Some(Level::Error));
    assert!(feed.message().is_some_and(|m| m.1.starts_with("unknown command `bogus`")));
    assert_eq!(feed.typed_effects("theme light"), vec![Effect::LoadTheme("light".into())]);
    feed.typed("help");
    assert_eq!(feed.state.overlay, Some(Overlay::Help { scroll: 0 }));
    // History: Up recalls the last command.
    feed.act(Action::OpenCommandLine);
    feed.act(Action::HistoryPrev);
    assert_eq!(feed.state.command_line, CommandLine::with_text("help"));
    feed.act(Action::HistoryPrev);
    assert_eq!(feed.state.command_line.text, "theme light");
    feed.act(Action::HistoryNext);
    feed.act(Action::HistoryNext);
    assert_eq!(feed.state.command_line.text, "");
    feed.act(Action::CloseCommandLine);
    feed.state.overlay = None;
    // A finished run is not live: quitting needs no question.
    feed.run_event(Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded: 3,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 1,
    });
    assert_eq!(feed.typed_effects("quit"), vec![Effect::Quit]);
}

#[test]
fn filter_narrows_and_esc_clears() {
    let mut feed = Feed::new("admin");
    for name in ["alpha", "beta", "gamma"] {
        feed.event(summary(name));
    }
    feed.state.focus = PaneId::Agents;
    feed.act(Action::StartFilter);
    for c in "be".chars() {
        feed.act(Action::FilterPush(c));
    }
    let rows: Vec<String> = feed.state.agents.rows().iter().map(|e| e.key()).collect();
    assert_eq!(rows, ["beta"]);
    assert_eq!(feed.state.agents.cursor.selected.as_deref(), Some("beta"));
    feed.act(Action::FilterClear);
    assert_eq!(feed.state.agents.rows().len(), 3);
    assert_eq!(feed.state.editing, Editing::None);
}

/// Typing a task's id into the DAG's filter stops on that task, though a longer id matched
/// on the way and the selection stayed there; a filter naming no task exactly keeps a
/// matching selection.
#[test]
fn the_dag_filter_selects_the_task_it_names_exactly() {
    let mut feed = Feed::new("admin");
    feed.run_event(Event::RunStarted {
        workflow: "docs".into(),
        file: "workflows/docs.yaml".into(),
        goal: None,
        max_parallel: 2,
        fail_fast: false,
        simulated: true,
        tasks: vec![
            planned("build-docs", 0, &[]),
            planned("build", 0, &[]),
            planned("ship", 1, &["build", "build-docs"]),
        ],
    });
    let selected = |feed: &Feed| {
        let run = feed.state.run().expect("the run");
        run.tasks[run.cursor.selected].planned.task.to_string()
    };
    feed.state.focus = PaneId::Dag;
    feed.act(Action::StartFilter);
    feed.act(Action::FilterPush('b'));
    let on_the_way = selected(&feed);
    assert!(on_the_way.starts_with("build"), "{on_the_way}");
    for c in "uil".chars() {
        feed.act(Action::FilterPush(c));
    }
    assert_eq!(selected(&feed), on_the_way, "no exact name yet: the selection stays");
    feed.act(Action::FilterPush('D'));
    assert_eq!(selected(&feed), "build", "exact, whatever the case");
    feed.act(Action::FilterPush('-'));
    assert_eq!(selected(&feed), "build-docs", "the only match left");
}

#[test]
fn focus_cycles_and_clicks_focus_the_pane_under_the_pointer() {
    let mut feed = Feed::new("viewer");
    assert_eq!(feed.state.focus, PaneId::Dag);
    feed.act(Action::FocusNext);
    assert_eq!(feed.state.focus, PaneId::Breakers);
    feed.act(Action::FocusPrev);
    feed.act(Action::FocusPrev);
    assert_eq!(feed.state.focus, PaneId::Pool);
    let agents = feed.state.layout.agents;
    feed.act(Action::Click { column: agents.x + 2, row: agents.y + 1 });
    assert_eq!(feed.state.focus, PaneId::Agents);
    let audit = feed.state.layout.audit;
    feed.act(Action::Scroll { column: audit.x + 5, row: audit.y + 2, down: false });
    assert_eq!(feed.state.focus, PaneId::Audit);
}

// ---------------------------------------------------------------- lag, time, size

#[test]
fn lag_rebuilds_the_picture_and_says_so() {
    let mut feed = Feed::new("admin").with_run();
    feed.event(Event::InstanceReserved { instance: InstanceId(1), agent: AgentId::new("old") });
    let audited = feed.state.audit.entries.len();
    // The fresh backlog knows a different pool and a later task state.
    let backlog = vec![
        feed.envelope(false, summary("backend-architect")),
        feed.envelope(
            false,
            Event::InstanceReserved { instance: InstanceId(9), agent: AgentId::new("new") },
        ),
    ];
    reduce(&mut feed.state, Input::Resync { backlog, missed: 42 });
    assert_eq!(feed.message(), Some((Level::Warn, "lagged: missed 42 events; resynced")));
    assert!(feed.state.run().is_none(), "the picture comes from the backlog only");
    assert_eq!(feed.state.pool.instances.keys().copied().collect::<Vec<_>>(), [InstanceId(9)]);
    assert_eq!(feed.state.audit.entries.len(), audited + 2);
    // Live events already in the backlog are not applied twice.
    let stale =
        Arc::new(Envelope { seq: feed.seq, ts_ms: T0, run_id: None, event: summary("dup") });
    reduce(&mut feed.state, Input::Event(stale));
    assert!(!feed.state.agents.entries.contains_key("dup"));
}

#[test]
fn idle_console_has_no_deadline_and_a_run_ticks_each_second() {
    let mut feed = Feed::new("admin");
    assert_eq!(feed.state.next_deadline_ms(), None);
    feed = feed.with_run();
    feed.state.message = None;
    let started = feed.state.run().expect("run").started_ms;
    reduce(&mut feed.state, Input::Tick(started + 2_300));
    assert_eq!(feed.state.next_deadline_ms(), Some(started + 3_000));
    feed.run_event(Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded: 3,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 2_000,
    });
    feed.state.message = None;
    assert_eq!(feed.state.next_deadline_ms(), None);
}

#[test]
fn messages_expire_on_tick() {
    let mut feed = Feed::new("admin");
    feed.event(Event::Notice { level: Level::Info, message: "hello".into() });
    let expires = feed.state.message.as_ref().expect("message").expires_ms;
    assert_eq!(feed.state.next_deadline_ms(), Some(expires));
    reduce(&mut feed.state, Input::Tick(expires - 1));
    assert!(feed.state.message.is_some());
    reduce(&mut feed.state, Input::Tick(expires));
    assert!(feed.state.message.is_none());
}

#[test]
fn any_size_is_fine() {
    let mut feed = Feed::new("admin").with_run();
    for (w, h) in [(0, 0), (1, 1), (59, 15), (60, 16), (400, 120), (1, 400)] {
        reduce(&mut feed.state, Input::Resize { width: w, height: h });
        for action in [
            Action::SelectNext,
            Action::PageDown,
            Action::SelectRight,
            Action::Click { column: 0, row: 0 },
        ] {
            feed.act(action);
        }
    }
}

// ---------------------------------------------------------------- output and workspaces

fn started(task: &str, attempt: u32) -> Event {
    Event::TaskStarted {
        task: TaskId::new(task),
        agent: AgentId::new("backend-architect"),
        attempt,
        instance: InstanceId(1),
        backend: "local".into(),
        simulated: false,
    }
}

fn output(task: &str, stream: OutputStream, text: &str) -> Event {
    Event::TaskOutput { task: TaskId::new(task), stream, text: text.into() }
}

fn audit_texts(feed: &Feed) -> Vec<String> {
    feed.state.audit.entries.iter().map(|e| e.text.clone()).collect()
}

#[rstest]
#[case::tokens(vec![(OutputStream::Tokens, "Hel"), (OutputStream::Tokens, "lo")], "▸ design streaming… (2 tokens)")]
#[case::reasoning_apart(vec![(OutputStream::Reasoning, "hmm"), (OutputStream::Tokens, "ok")], "▸ design streaming… (1 token, 1 reasoning chunk)")]
#[case::process_lines(vec![(OutputStream::Stdout, "a\nb\n"), (OutputStream::Stderr, "warn")], "▸ design streaming… (2 lines, 1 stderr line)")]
#[case::tool_results(vec![(OutputStream::ToolResult, "big output")], "▸ design streaming… (1 tool result)")]
fn streamed_output_is_one_audit_line_per_attempt(
    #[case] pieces: Vec<(OutputStream, &str)>,
    #[case] expected: &str,
) {
    let mut feed = Feed::new("admin").with_run();
    feed.run_event(started("design", 1));
    let before = feed.state.audit.entries.len();
    for (stream, text) in pieces {
        feed.run_event(output("design", stream, text));
    }
    assert_eq!(feed.state.audit.entries.len(), before + 1);
    assert_eq!(audit_texts(&feed).last().map(String::as_str), Some(expected));
}

#[test]
fn a_token_flood_leaves_task_and_breaker_events_in_view() {
    let mut feed = Feed::new("admin").with_run();
    feed.run_event(started("design", 1));
    for i in 0..326 {
        feed.run_event(output("design", OutputStream::Tokens, &format!("t{i} ")));
        if i == 100 {
            feed.event(Event::BreakerOpened {
                agent: AgentId::new("critic"),
                failures: 3,
                threshold: 3,
                recovery_ms: 60_000,
                last_error: "HTTP 503".into(),
            });
        }
    }
    // The stream line stays where it began and counts on; later events come after it.
    let texts = audit_texts(&feed);
    let stream = texts.iter().position(|t| t.starts_with("▸ design streaming… (326 tokens)"));
    let breaker = texts.iter().position(|t| t.contains("breaker critic OPEN"));
    assert!(stream.is_some() && stream < breaker, "{texts:#?}");
    assert_eq!(texts.len(), 5, "agent, run, start, stream, breaker: {texts:#?}");
    feed.run_event(Event::TaskSucceeded {
        task: TaskId::new("design"),
        agent: AgentId::new("backend-architect"),
        attempt: 1,
        duration_ms: 900,
        output: "done".into(),
        usage: None,
        simulated: false,
        details: crate::event::AnswerDetails::default(),
    });
    let texts = audit_texts(&feed);
    assert!(texts.contains(&"▸ design streamed 326 tokens".to_owned()), "{texts:#?}");
    // The next attempt's output opens a line of its own.
    feed.run_event(started("design", 2));
    feed.run_event(output("design", OutputStream::Tokens, "again"));
    assert_eq!(
        audit_texts(&feed).last().map(String::as_str),
        Some("▸ design streaming… (1 token)")
    );
    // The text itself is in the task's details.
    let task = feed.state.run().and_then(|r| r.task(&TaskId::new("design"))).expect("task");
    assert!(task.output.iter().any(|l| l.text.starts_with("t0 t1 t2")), "{:?}", task.output);
}

#[test]
fn tool_calls_keep_a_line_each() {
    let mut feed = Feed::new("admin").with_run();
    feed.run_event(started("design", 1));
    feed.run_event(output("design", OutputStream::ToolCall, "Bash {\"command\":\"ls\"}"));
    feed.run_event(output("design", OutputStream::ToolResult, "src\n"));
    feed.run_event(output("design", OutputStream::ToolCall, "Read {\"path\":\"a\"}"));
    let texts = audit_texts(&feed);
    let tail: Vec<&str> = texts.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "⚒ design calls Bash {\"command\":\"ls\"}",
            "▸ design streaming… (1 tool result)",
            "⚒ design calls Read {\"path\":\"a\"}"
        ]
    );
}

#[test]
fn took_covers_the_whole_task_and_a_retry_shows_its_wait() {
    let mut feed = Feed::new("admin").with_run();
    feed.run_event(started("design", 1)); // at T0 + 3 s
    feed.run_event(Event::TaskRetrying {
        task: TaskId::new("design"),
        agent: AgentId::new("backend-architect"),
        attempt: 1,
        delay_ms: 4_000,
        duration_ms: 700,
        error: "exit 1".into(),
    });
    let task = feed.state.run().and_then(|r| r.task(&TaskId::new("design"))).expect("task");
    assert_eq!((task.attempt_ms, task.retry_at_ms), (Some(700), Some(T0 + 4_000 + 4_000)));
    assert!(audit_texts(&feed).last().expect("a line").ends_with("; retrying in 4.0s"));
    feed.run_event(started("design", 2)); // T0 + 5 s
    feed.run_event(Event::TaskSucceeded {
        task: TaskId::new("design"),
        agent: AgentId::new("backend-architect"),
        attempt: 2,
        duration_ms: 500,
        output: "done".into(),
        usage: None,
        simulated: false,
        details: crate::event::AnswerDetails::default(),
    }); // T0 + 6 s
    let task = feed.state.run().and_then(|r| r.task(&TaskId::new("design"))).expect("task");
    assert_eq!((task.duration_ms, task.attempt_ms), (Some(3_000), Some(500)));
    assert_eq!(
        audit_texts(&feed).last().map(String::as_str),
        Some("✓ design succeeded on backend-architect in 3.0s (attempt 2 took 500ms)")
    );
}

#[test]
fn workspace_events_reach_the_task_view() {
    let mut feed = Feed::new("admin").with_run();
    feed.run_event(started("design", 1));
    feed.run_event(Event::WorkspaceCreated {
        task: TaskId::new("design"),
        kind: WorkspaceKind::Worktree,
        path: "/data/worktrees/r1/design".into(),
        repo: Some("/project".into()),
        branch: Some("flightdeck/r1/design".into()),
        base: Some("abc123".into()),
        base_from: Some("HEAD".into()),
    });
    feed.run_event(Event::WorkspaceChanges {
        task: TaskId::new("design"),
        attempt: 1,
        branch: "flightdeck/r1/design".into(),
        commit: Some("def456".into()),
        files: vec![FileChange { path: "api.md".into(), added: Some(12), removed: Some(0) }],
        summary: "1 file changed, 12 insertions(+)".into(),
    });
    let task = feed.state.run().and_then(|r| r.task(&TaskId::new("design"))).expect("task");
    let workspace = task.workspace.as_ref().expect("workspace");
    assert_eq!(workspace.branch.as_deref(), Some("flightdeck/r1/design"));
    assert_eq!(workspace.changes.len(), 1);
    let texts = audit_texts(&feed);
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("⎇ design works on branch flightdeck/r1/design from HEAD")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t == "± design attempt 1: 1 file changed, 12 insertions(+)"),
        "{texts:#?}"
    );
}

/// The console's run is the one fold: what it shows equals `RunModel::from_events` over the
/// same events, whatever else (pool, agents, approvals) the stream carried.
#[rstest]
#[case::busy(crate::console::panes::testing::Fixture::Busy)]
#[case::failed(crate::console::panes::testing::Fixture::Failed)]
#[case::prompt(crate::console::panes::testing::Fixture::Prompt)]
fn the_consoles_run_is_the_run_model(#[case] fixture: crate::console::panes::testing::Fixture) {
    use crate::console::panes::testing;
    use crate::model::{OutputKeep, RunModel};
    let envelopes = testing::envelopes(fixture);
    let state = testing::state(fixture, PaneId::Dag);
    let expected = RunModel::from_events(
        envelopes.iter().map(AsRef::as_ref),
        OutputKeep::Tail(crate::console::state::OUTPUT_TAIL_LINES),
    );
    let shown = &state.run().expect("a run").model;
    assert!(shown.tasks.len() >= 3);
    assert_eq!(*shown, expected);
}

// ---------------------------------------------------------------- one vocabulary, quitting

/// The question a prompt asks and what yes does.
fn confirmation(state: &State) -> Option<(String, Confirmed)> {
    match &state.prompt {
        Some(Prompt::Confirm { question, answer, .. }) => Some((question.clone(), answer.clone())),
        _ => None,
    }
}

/// A `:` command is the same request as its key: the same question, the same command on yes.
#[rstest]
#[case::cancel_run(Action::CancelRun, "cancel")]
#[case::cancel_task(Action::CancelSelectedTask, "cancel design")]
#[case::retry_task(Action::RetrySelectedTask, "retry design")]
#[case::reset_breaker(Action::ResetSelectedBreaker, "reset backend-architect")]
#[case::open_breaker(Action::OpenSelectedBreaker, "open backend-architect")]
#[case::release(Action::ReleaseSelectedInstance, "release i7")]
fn a_typed_command_asks_what_its_key_asks(#[case] key: Action, #[case] typed: &str) {
    let feed = || {
        let mut feed = Feed::new("admin").with_run();
        feed.event(Event::InstanceReserved {
            instance: InstanceId(7),
            agent: AgentId::new("backend-architect"),
        });
        feed.event(Event::BreakerOpened {
            agent: AgentId::new("backend-architect"),
            failures: 3,
            threshold: 3,
            recovery_ms: 1,
            last_error: "x".into(),
        });
        if typed.starts_with("retry") {
            feed.run_event(Event::TaskFailed {
                task: TaskId::new("design"),
                agent: None,
                attempt: 1,
                duration_ms: 1,
                error: "x".into(),
            });
        }
        feed
    };
    let mut by_key = feed();
    assert_eq!(by_key.act(key), vec![]);
    let mut by_line = feed();
    assert_eq!(by_line.typed(typed), vec![]);
    let asked = confirmation(&by_key.state).expect("the key asks");
    assert_eq!(confirmation(&by_line.state), Some(asked.clone()), "{typed}");
    let Confirmed::Send(command) = asked.1 else { panic!("sends a command") };
    assert_eq!(by_line.act(Action::ConfirmYes), vec![command.clone()]);
    assert_eq!(by_key.act(Action::ConfirmYes), vec![command]);
}

#[test]
fn a_typed_command_is_refused_like_its_key() {
    let mut feed = Feed::new("admin").with_run();
    assert_eq!(feed.typed("retry design"), vec![]);
    assert_eq!(feed.state.prompt, None);
    let refused = feed.message().map(|(level, text)| (level, text.to_owned()));
    feed.act(Action::RetrySelectedTask);
    assert_eq!(feed.message().map(|(level, text)| (level, text.to_owned())), refused);
    assert_eq!(refused.map(|r| r.0), Some(Level::Warn));
}

#[test]
fn quitting_with_a_live_run_asks_and_cancels_it_through_the_gate() {
    let mut feed = Feed::new("admin").with_run();
    assert_eq!(feed.effects(Action::Quit), vec![]);
    let (question, answer) = confirmation(&feed.state).expect("asks first");
    assert_eq!(
        question,
        "Quit? 1 live run (demo) is cancelled, recorded in the audit log as cancelled by alice."
    );
    assert_eq!(answer, Confirmed::Quit { cancel: vec![run()] });
    // No keeps the console and the run.
    assert_eq!(feed.effects(Action::ConfirmNo), vec![]);
    assert_eq!(feed.state.prompt, None);
    // Yes cancels the run as the operator's command, then quits.
    feed.effects(Action::Quit);
    assert_eq!(
        feed.effects(Action::ConfirmYes),
        vec![Effect::Send(Command::CancelRun { run: run() }), Effect::Quit]
    );
    // Ctrl-C twice is the same yes; `:quit` asks the same question.
    feed.effects(Action::Quit);
    assert_eq!(
        feed.effects(Action::Quit),
        vec![Effect::Send(Command::CancelRun { run: run() }), Effect::Quit]
    );
    assert_eq!(feed.typed_effects("quit"), vec![]);
    assert_eq!(confirmation(&feed.state).map(|c| c.0), Some(question));
}

#[test]
fn quitting_without_live_runs_is_immediate() {
    let mut feed = Feed::new("viewer");
    assert_eq!(feed.effects(Action::Quit), vec![Effect::Quit]);
}

#[rstest]
#[case::insert_middle("ab", 1, &[LineEdit::Insert('x')], "axb", 2)]
#[case::backspace("abc", 3, &[LineEdit::Backspace], "ab", 2)]
#[case::backspace_at_start("abc", 0, &[LineEdit::Backspace], "abc", 0)]
#[case::delete("abc", 1, &[LineEdit::Delete], "ac", 1)]
#[case::delete_at_end("abc", 3, &[LineEdit::Delete], "abc", 3)]
#[case::moves("abc", 1, &[LineEdit::Left, LineEdit::Left, LineEdit::End, LineEdit::Right], "abc", 3)]
#[case::home("abc", 2, &[LineEdit::Home, LineEdit::Insert('>')], ">abc", 1)]
#[case::delete_word("cancel build  ", 14, &[LineEdit::DeleteWord], "cancel ", 7)]
#[case::delete_word_one("retry", 5, &[LineEdit::DeleteWord], "", 0)]
#[case::delete_to_start("spawn agent", 6, &[LineEdit::DeleteToStart], "agent", 0)]
#[case::wide_chars("é→", 2, &[LineEdit::Backspace, LineEdit::Insert('ü')], "éü", 2)]
fn command_line_edits(
    #[case] text: &str,
    #[case] cursor: usize,
    #[case] edits: &[LineEdit],
    #[case] expected: &str,
    #[case] expected_cursor: usize,
) {
    let mut line = CommandLine { text: text.to_owned(), cursor, choices: Vec::new() };
    for edit in edits {
        line.edit(*edit);
    }
    assert_eq!((line.text.as_str(), line.cursor), (expected, expected_cursor));
}

// ---------------------------------------------------------------- many runs

#[test]
fn every_live_run_is_folded_into_its_own_model() {
    let mut feed = Feed::new("admin").with_run().with_second_run();
    // The newest run is shown; the older one keeps folding.
    assert_eq!(feed.state.shown_run, Some(RunId::new("r2")));
    feed.run_event(started("design", 1));
    feed.event_in("r2", Event::TaskReady { task: TaskId::new("design") });
    let r1 = &feed.state.runs[&run()];
    let r2 = &feed.state.runs[&RunId::new("r2")];
    assert_eq!(r1.task(&TaskId::new("design")).map(|t| t.status), Some(TaskStatus::Running));
    assert_eq!(r2.task(&TaskId::new("design")).map(|t| t.status), Some(TaskStatus::Ready));
    assert_eq!((r1.tasks.len(), r2.tasks.len()), (3, 2));
    assert_eq!(feed.status("design"), Some(TaskStatus::Ready), "the DAG shows r2");
    // Both are live: quitting names both.
    feed.effects(Action::Quit);
    let (question, answer) = confirmation(&feed.state).expect("asks");
    assert!(question.starts_with("Quit? 2 live runs (demo, other) are cancelled"), "{question}");
    assert_eq!(answer, Confirmed::Quit { cancel: vec![run(), RunId::new("r2")] });
}

#[test]
fn two_runs_waiting_on_the_same_task_id_do_not_collide() {
    let mut feed = Feed::new("reviewer").with_run().with_second_run();
    feed.run_event(approval("deploy"));
    feed.event_in("r2", approval("deploy"));
    assert_eq!(feed.state.approvals.len(), 2);
    // The first asked is decided first, for its own run.
    feed.wait(APPROVAL_ARM_MS);
    assert_eq!(
        feed.act(Action::Approve),
        vec![Command::Approve { run: run(), task: TaskId::new("deploy"), note: None }]
    );
    feed.wait(APPROVAL_ARM_MS);
    assert_eq!(
        feed.act(Action::Reject),
        vec![Command::Reject { run: RunId::new("r2"), task: TaskId::new("deploy"), note: None }]
    );
    // A decision of one run leaves the other's approval alone.
    feed.event_in(
        "r2",
        Event::ApprovalDecided {
            task: TaskId::new("deploy"),
            approved: false,
            by: UserId::new("alice"),
            note: None,
        },
    );
    let waiting: Vec<_> = feed.state.approvals.keys().cloned().collect();
    assert_eq!(waiting, [(Some(run()), TaskId::new("deploy"))]);
    // `:approve deploy` picks the run still waiting.
    assert_eq!(
        feed.typed("approve deploy ok"),
        vec![Command::Approve { run: run(), task: TaskId::new("deploy"), note: Some("ok".into()) }]
    );
}

#[test]
fn approving_a_task_id_waiting_in_two_other_runs_asks_which() {
    let mut feed = Feed::new("reviewer").with_run().with_second_run();
    feed.run_event(approval("deploy"));
    feed.event_in("r2", approval("deploy"));
    feed.event_in(
        "r3",
        Event::RunStarted {
            workflow: "third".into(),
            file: "workflows/third.yaml".into(),
            goal: None,
            max_parallel: 1,
            fail_fast: false,
            simulated: true,
            tasks: vec![planned("x", 0, &[])],
        },
    );
    feed.act(Action::Later);
    feed.act(Action::Later);
    assert_eq!(feed.typed("approve deploy"), vec![]);
    let (level, text) = feed.message().expect("says why");
    assert_eq!(level, Level::Error);
    assert!(text.starts_with("deploy waits in 2 runs (r1, r2)"), "{text}");
}

// ---------------------------------------------------------------- the Runs list

fn stored_row(id: &str, state: crate::store::RunState, started_ms: u64) -> crate::store::RunRow {
    crate::store::RunRow {
        run_id: RunId::new(id),
        workflow: format!("wf-{id}"),
        file: "workflows/x.yaml".into(),
        started_ms,
        finished_ms: None,
        state,
        tasks: 4,
        succeeded: 2,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: None,
        simulated: false,
    }
}

#[test]
fn runs_list_merges_the_store_with_live_runs_newest_first() {
    let mut feed = Feed::new("admin").with_run().with_second_run();
    assert_eq!(feed.effects(Action::OpenRuns), vec![Effect::LoadRuns]);
    assert_eq!(feed.state.overlay, Some(Overlay::Runs));
    let stored = vec![
        stored_row("r0-old", crate::store::RunState::Interrupted, T0 - 10_000),
        // The store's row of a run the console folds: the live model wins.
        stored_row("r1", crate::store::RunState::Running, T0 + 2_000),
    ];
    reduce(&mut feed.state, Input::RunsLoaded(stored));
    let entries = feed.state.run_entries();
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["r2", "r1", "r0-old"]);
    let r1 = &entries[1];
    assert_eq!((r1.status, r1.succeeded, r1.total, r1.live), ("running", 0, 3, true));
    assert_eq!(entries[2].status, "interrupted");
    // The shown run is selected first; the filter narrows.
    assert_eq!(feed.state.runs_list.cursor.selected, Some(RunId::new("r2")));
    feed.act(Action::StartFilter);
    for c in "interr".chars() {
        feed.act(Action::FilterPush(c));
    }
    assert_eq!(feed.state.run_entries().len(), 1);
    assert_eq!(feed.state.runs_list.cursor.selected, Some(RunId::new("r0-old")));
    feed.act(Action::FilterAccept);
    // An interrupted run is not cancelled: it says how to go on.
    assert_eq!(feed.act(Action::CancelSelectedRun), vec![]);
    assert_eq!(feed.state.prompt, None);
    assert!(feed.message().is_some_and(|m| m.1.contains("press r to resume")));
}

#[test]
fn showing_a_run_from_the_list_pins_it() {
    let mut feed = Feed::new("admin").with_run().with_second_run();
    feed.effects(Action::OpenRuns);
    reduce(&mut feed.state, Input::RunsLoaded(Vec::new()));
    feed.act(Action::SelectNext);
    assert_eq!(feed.effects(Action::ShowSelectedRun), vec![]);
    assert_eq!(feed.state.shown_run, Some(run()));
    assert_eq!(feed.state.overlay, None);
    assert_eq!(feed.status("deploy"), Some(TaskStatus::Pending));
    // A run that starts later does not take the DAG from the operator's choice.
    feed.event_in(
        "r3",
        Event::RunStarted {
            workflow: "third".into(),
            file: "workflows/third.yaml".into(),
            goal: None,
            max_parallel: 1,
            fail_fast: false,
            simulated: true,
            tasks: vec![planned("x", 0, &[])],
        },
    );
    assert_eq!(feed.state.shown_run, Some(run()));
    assert_eq!(feed.state.runs.len(), 3);
}

#[test]
fn cancelling_from_the_list_asks_what_c_in_the_dag_asks() {
    let mut by_list = Feed::new("admin").with_run();
    by_list.effects(Action::OpenRuns);
    reduce(&mut by_list.state, Input::RunsLoaded(Vec::new()));
    assert_eq!(by_list.act(Action::CancelSelectedRun), vec![]);
    let mut by_key = Feed::new("admin").with_run();
    by_key.act(Action::CancelRun);
    assert_eq!(confirmation(&by_list.state), confirmation(&by_key.state));
    assert_eq!(by_list.act(Action::ConfirmYes), vec![Command::CancelRun { run: run() }]);
}

#[test]
fn a_stored_run_is_read_and_shown_as_it_ended() {
    let mut feed = Feed::new("admin").with_run();
    feed.effects(Action::OpenRuns);
    reduce(
        &mut feed.state,
        Input::RunsLoaded(vec![stored_row("r0", crate::store::RunState::Failed, T0 - 10_000)]),
    );
    feed.act(Action::SelectNext);
    assert_eq!(feed.effects(Action::ShowSelectedRun), vec![Effect::LoadRun(RunId::new("r0"))]);
    let stored = |seq, event| {
        Arc::new(Envelope { seq, ts_ms: T0 - 10_000 + seq, run_id: Some(RunId::new("r0")), event })
    };
    let events = vec![
        stored(
            1,
            Event::RunStarted {
                workflow: "old".into(),
                file: "workflows/old.yaml".into(),
                goal: None,
                max_parallel: 1,
                fail_fast: false,
                simulated: false,
                tasks: vec![planned("only", 0, &[])],
            },
        ),
        stored(
            2,
            Event::TaskFailed {
                task: TaskId::new("only"),
                agent: None,
                attempt: 1,
                duration_ms: 5,
                error: "boom".into(),
            },
        ),
    ];
    reduce(&mut feed.state, Input::RunLoaded { run: RunId::new("r0"), events });
    assert_eq!(feed.state.shown_run, Some(RunId::new("r0")));
    assert_eq!(feed.status("only"), Some(TaskStatus::Failed));
    assert_eq!(feed.state.overlay, None);
}

/// An approval asked while an overlay (help, details, the Runs list) is open waits for it to
/// close, so a key meant for the overlay (Esc) cannot answer the prompt.
#[test]
fn an_approval_waits_for_an_open_overlay_to_close() {
    let mut feed = Feed::new("admin").with_run();
    feed.act(Action::ToggleHelp);
    feed.run_event(approval("deploy"));
    assert_eq!(feed.state.prompt, None, "not over the help");
    feed.act(Action::CloseOverlay);
    assert_eq!(feed.state.overlay, None);
    assert!(matches!(feed.state.prompt, Some(Prompt::Approval { .. })), "asked once it closed");
}

/// `:resolve TASK N [note]` asks the same confirmation as the conflict keys, names the verdict
/// it takes, and is refused for a task without a conflict waiting or a verdict it lacks.
#[test]
fn resolve_settles_a_waiting_conflict_after_asking() {
    use crate::command::ConflictChoice;
    use crate::conflict::{DecideMode, Domain, LadderStep, MemberVerdict, Verdict};
    let verdict = |agent: &str, decision: &str| MemberVerdict {
        agent: AgentId::new(agent),
        domain: Domain::Implementation,
        domain_from: "default".into(),
        verdict: Verdict {
            decision: decision.into(),
            rationale: "because".into(),
            alternatives: vec![],
            tradeoffs: vec![],
            evidence: vec![],
            confidence: 0.8,
        },
    };
    let mut feed = Feed::new("admin").with_run();
    feed.typed("resolve build 1");
    assert!(feed.message().is_some_and(|m| m.1 == "build has no conflict waiting for a decision"));
    assert_eq!(feed.state.prompt, None);
    feed.run_event(Event::ConflictDetected {
        task: TaskId::new("build"),
        question: "cursor or offset?".into(),
        options: vec!["cursor".into(), "offset".into()],
        domain: Some(Domain::Implementation),
        decide: DecideMode::Auto,
        verdicts: vec![verdict("alpha", "cursor"), verdict("beta", "offset")],
        failed: vec![],
    });
    feed.run_event(Event::ConflictStep {
        task: TaskId::new("build"),
        step: LadderStep::Operator,
        finding: "no step decided".into(),
        winner: None,
        decision: None,
        recommendation: None,
    });
    feed.typed("resolve build 3");
    assert!(feed.message().is_some_and(|m| m.1 == "build: no verdict 3; choose 1 to 2"));
    feed.typed("resolve build 2 offset is simpler");
    match &feed.state.prompt {
        Some(Prompt::Confirm { question, .. }) => assert_eq!(
            question,
            "Settle build with beta's \"offset\"? The other verdicts are overruled."
        ),
        other => panic!("expected a confirmation, got {other:?}"),
    }
    assert_eq!(
        feed.act(Action::ConfirmYes),
        vec![Command::ResolveConflict {
            run: RunId::new("r1"),
            task: TaskId::new("build"),
            choice: ConflictChoice::Verdict(2),
            note: Some("offset is simpler".into()),
        }]
    );
}

/// An attached console's runs belong to its host: quitting detaches at once, asking nothing
/// and cancelling nothing, while a console that hosts the same live run asks first.
#[test]
fn an_attached_console_detaches_without_asking() {
    let mut hosting = Feed::new("admin").with_run();
    assert_eq!(hosting.effects(Action::Quit), vec![]);
    assert!(matches!(hosting.state.prompt, Some(Prompt::Confirm { .. })));
    let mut attached = Feed::new("admin").with_run();
    attached.state.attached = true;
    assert_eq!(attached.effects(Action::Quit), vec![Effect::Quit]);
    assert_eq!(attached.state.prompt, None);
}

#[test]
fn a_hosts_digest_moves_tasks_counts_their_calls_and_says_what_it_condensed() {
    use crate::host::protocol::{Digest, DigestPart, TaskChange};
    let mut feed = Feed::new("operator").with_run();
    let change = |first, count, status, attempt, duration_ms| TaskChange {
        first,
        count,
        status,
        attempt,
        at_ms: T0 + 60_000,
        duration_ms,
    };
    let before = feed.state.audit.entries.len();
    let digest = Digest {
        events: 900,
        since_ms: T0 + 59_990,
        last_seq: feed.seq + 900,
        parts: vec![DigestPart {
            events: Vec::new(),
            run: Some(RunId::new("r1")),
            tasks: vec![
                change(0, 2, TaskStatus::Succeeded, 1, Some(40)),
                change(2, 1, TaskStatus::Running, 1, None),
            ],
        }],
    };
    reduce(&mut feed.state, Input::Digest(Arc::new(digest)));
    let run = feed.state.run().expect("the run");
    let status = |id: &str| run.task(&TaskId::new(id)).map(|t| (t.status, t.attempts));
    assert_eq!(status("design"), Some((TaskStatus::Succeeded, 1)));
    assert_eq!(status("build"), Some((TaskStatus::Succeeded, 1)));
    assert_eq!(status("deploy"), Some((TaskStatus::Running, 1)));
    assert_eq!(run.task(&TaskId::new("build")).and_then(|t| t.duration_ms), Some(40));
    let calls = feed.state.breakers.metrics[&AgentId::new("backend-architect")].calls.calls;
    assert_eq!(calls, 2);
    assert_eq!(feed.state.audit.entries.len(), before + 1);
    let said = audit_texts(&feed).pop().expect("a line");
    assert!(
        said.contains("900 events condensed") && said.contains("2 succeeded, 1 running"),
        "{said}"
    );
    // Events the digest stood for are not applied again.
    assert_eq!(feed.state.applied_seq, feed.seq + 900);
}
