//! The engine with real parts (registry from a temp folder, pool, breakers, approvals, bus,
//! run store) and either the real sim executor or a scripted one that records what it saw.

#![allow(clippy::unwrap_used)]

#[path = "support/permit.rs"]
mod permits;
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck::agents::Registry;
use flightdeck::bus::EventBus;
use flightdeck::command::Command;
use flightdeck::config::{BackendConfig, HttpBackend, Settings, SimBackend};
use flightdeck::engine::{Engine, EngineError, EngineParts, RunHandle, RunPhase};
use flightdeck::event::{Envelope, Event, RunStatus};
use flightdeck::exec::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink};
use flightdeck::governance::{Approvals, Gate, Permit};
use flightdeck::ids::{AgentId, RunId, TaskId, UserId};
use flightdeck::pool::{Pool, PoolConfig};
use flightdeck::resilience::BreakerBoard;
use flightdeck::workflow::{Plan, PlanOverrides, Workflow, plan};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- scripted executor

/// What the scripted executor does for one attempt.
#[derive(Clone)]
enum Step {
    Succeed(String),
    /// A transient failure.
    Fail(String),
    /// Exactly this error.
    Error(ExecError),
    /// Wait until cancelled or timed out.
    Hang,
    /// Ignore cancellation and timeout entirely (a broken executor).
    Stuck,
}

type Script = Box<dyn Fn(&ExecRequest) -> Step + Send + Sync>;

struct Scripted {
    latency: Duration,
    script: Script,
    running: AtomicUsize,
    max_running: AtomicUsize,
    per_agent: Mutex<HashMap<String, (usize, usize)>>,
    seen: Mutex<Vec<(ExecRequest, Instant)>>,
}

impl Scripted {
    fn new(
        latency: Duration,
        script: impl Fn(&ExecRequest) -> Step + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            latency,
            script: Box::new(script),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            per_agent: Mutex::default(),
            seen: Mutex::default(),
        })
    }

    fn ok(latency: Duration) -> Arc<Self> {
        Self::new(latency, |req| Step::Succeed(format!("out-{}", req.task)))
    }

    fn max_for(&self, agent: &str) -> usize {
        self.per_agent.lock().unwrap().get(agent).map_or(0, |&(_, max)| max)
    }

    fn requests_for(&self, task: &str) -> Vec<(ExecRequest, Instant)> {
        self.seen.lock().unwrap().iter().filter(|(r, _)| r.task.as_str() == task).cloned().collect()
    }
}

/// Counts an attempt as running while alive.
struct Running<'a> {
    executor: &'a Scripted,
    agent: String,
}

impl<'a> Running<'a> {
    fn enter(executor: &'a Scripted, agent: &AgentId) -> Self {
        let now = executor.running.fetch_add(1, Ordering::SeqCst) + 1;
        executor.max_running.fetch_max(now, Ordering::SeqCst);
        let mut per_agent = executor.per_agent.lock().unwrap();
        let entry = per_agent.entry(agent.to_string()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        Self { executor, agent: agent.to_string() }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.executor.running.fetch_sub(1, Ordering::SeqCst);
        self.executor.per_agent.lock().unwrap().get_mut(&self.agent).unwrap().0 -= 1;
    }
}

impl Executor for Scripted {
    fn kind(&self) -> &'static str {
        "test"
    }

    fn execute(
        &self,
        req: ExecRequest,
        output: OutputSink,
        cancel: CancellationToken,
    ) -> ExecFuture<'_> {
        Box::pin(async move {
            let _running = Running::enter(self, &req.agent);
            self.seen.lock().unwrap().push((req.clone(), Instant::now()));
            output(flightdeck::event::OutputStream::Stdout, format!("working on {}", req.task));
            let step = (self.script)(&req);
            match step {
                Step::Stuck => std::future::pending::<()>().await,
                Step::Hang => tokio::select! {
                    () = cancel.cancelled() => return Err(ExecError::Cancelled),
                    () = tokio::time::sleep(req.timeout) => return Err(ExecError::Timeout(req.timeout)),
                },
                _ => tokio::select! {
                    () = cancel.cancelled() => return Err(ExecError::Cancelled),
                    () = tokio::time::sleep(self.latency) => {}
                },
            }
            match step {
                Step::Succeed(output) => Ok(ExecOutcome {
                    output,
                    usage: None,
                    dropped_bytes: 0,
                    ..ExecOutcome::default()
                }),
                Step::Fail(message) => Err(ExecError::Other(message)),
                Step::Error(error) => Err(error),
                Step::Hang | Step::Stuck => unreachable!(),
            }
        })
    }
}

// ---------------------------------------------------------------- set-up

fn settings() -> Settings {
    let mut settings = Settings::default();
    let instant = SimBackend {
        latency_min: Duration::ZERO,
        latency_max: Duration::ZERO,
        failure_rate: 0.0,
        seed: 1,
        ..SimBackend::default()
    };
    settings.backends.insert("test".into(), BackendConfig::Sim(instant));
    settings.default_backend = "test".into();
    settings.limits.retry_base_delay = Duration::from_millis(100);
    settings.limits.retry_max_delay = Duration::from_secs(1);
    settings
}

struct Setup {
    _dir: TempDir,
    events: UnboundedReceiver<Arc<Envelope>>,
    engine: Engine,
    registry: Registry,
    breakers: BreakerBoard,
    approvals: Approvals,
    settings: Settings,
    gate: Gate,
}

/// Agents as `(name, extra frontmatter lines)`.
fn setup_with(agents: &[(&str, &str)], settings: Settings) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("agentpool/tier1-core");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, extra) in agents {
        let text = format!(
            "---\nname: {name}\ndescription: Test agent {name}\n{extra}---\nYou are {name}.\n"
        );
        std::fs::write(folder.join(format!("{name}.md")), text).unwrap();
    }
    let bus = EventBus::new();
    let events = bus.sink();
    let gate = permits::gate(dir.path(), &bus);
    let registry = Registry::load(&dir.path().join("agentpool"));
    assert_eq!(registry.definitions().len(), agents.len(), "{:?}", registry.problems());
    let pool =
        Pool::new(PoolConfig { max_total: 64, idle_timeout: Duration::from_secs(60) }, bus.clone());
    let breakers = BreakerBoard::new(settings.breakers.clone(), bus.clone());
    let approvals = Approvals::new(bus.clone());
    let engine = Engine::new(EngineParts {
        bus,
        registry: registry.clone(),
        pool,
        breakers: breakers.clone(),
        approvals: approvals.clone(),
        settings: Arc::new(settings.clone()),
        project_dir: dir.path().to_owned(),
        data_dir: dir.path().join(".flightdeck"),
    });
    Setup { _dir: dir, events, engine, registry, breakers, approvals, settings, gate }
}

fn setup(agents: &[(&str, &str)]) -> Setup {
    setup_with(agents, settings())
}

impl Setup {
    fn plan(&self, yaml: &str) -> Plan {
        let workflow = Workflow::parse(yaml, Path::new("test.yaml")).unwrap();
        plan(&workflow, &self.registry, &self.settings).unwrap()
    }

    fn start(&self, executor: Arc<Scripted>, yaml: &str) -> RunHandle {
        self.engine.use_executor("test", executor);
        self.start_plan(self.plan(yaml))
    }

    /// Start `plan` with the gate's permit, as the runtime does.
    fn start_plan(&self, plan: Plan) -> RunHandle {
        let command =
            Command::StartRun { workflow: plan.file.clone(), backend: None, max_parallel: None };
        self.engine.start(plan, &permits::permit(&self.gate, command)).unwrap()
    }

    /// The gate's permit for `command`.
    fn permit(&self, command: Command) -> Permit {
        permits::permit(&self.gate, command)
    }

    /// Events of `run` up to and including its next `RunFinished`.
    async fn until_finished(&mut self, run: &RunId) -> Vec<Arc<Envelope>> {
        let mut seen = Vec::new();
        loop {
            let envelope = self.events.recv().await.unwrap();
            let finished = matches!(envelope.event, Event::RunFinished { .. })
                && envelope.run_id.as_ref() == Some(run);
            if envelope.run_id.as_ref() == Some(run) {
                seen.push(envelope);
            }
            if finished {
                return seen;
            }
        }
    }

    /// Wait for the next event of `run` matching `wanted`.
    async fn until(&mut self, run: &RunId, wanted: impl Fn(&Event) -> bool) -> Arc<Envelope> {
        loop {
            let envelope = self.events.recv().await.unwrap();
            if envelope.run_id.as_ref() == Some(run) && wanted(&envelope.event) {
                return envelope;
            }
        }
    }
}

/// `kind:task` (or `kind`) of each event, in order.
fn trace(events: &[Arc<Envelope>]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e.event.task() {
            Some(task) => format!("{}:{task}", e.event.kind()),
            None => e.event.kind().to_owned(),
        })
        .collect()
}

fn index_of(trace: &[String], wanted: &str) -> usize {
    trace.iter().position(|t| t == wanted).unwrap_or_else(|| panic!("no {wanted} in {trace:#?}"))
}

fn finished_status(events: &[Arc<Envelope>]) -> RunStatus {
    match &events.last().unwrap().event {
        Event::RunFinished { status, .. } => *status,
        other => panic!("last event is {other:?}"),
    }
}

const DIAMOND: &str = "max_parallel: 4
tasks:
  - {id: a, description: first, agent: alpha}
  - {id: b, description: left, agent: alpha, depends_on: [a]}
  - {id: c, description: right, agent: alpha, depends_on: [a]}
  - {id: d, description: join, agent: alpha, depends_on: [b, c]}
";

// ---------------------------------------------------------------- tests

#[tokio::test(start_paused = true)]
async fn tasks_start_only_after_their_dependencies_succeed() {
    let mut s = setup(&[("alpha", "")]);
    let handle = s.start(Scripted::ok(Duration::from_millis(10)), DIAMOND);
    let events = s.until_finished(handle.id()).await;
    let t = trace(&events);
    assert!(index_of(&t, "task_succeeded:a") < index_of(&t, "task_started:b"));
    assert!(index_of(&t, "task_succeeded:a") < index_of(&t, "task_started:c"));
    assert!(index_of(&t, "task_succeeded:b") < index_of(&t, "task_started:d"));
    assert!(index_of(&t, "task_succeeded:c") < index_of(&t, "task_started:d"));
    assert_eq!(finished_status(&events), RunStatus::Succeeded);
    assert_eq!(handle.wait().await, RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn event_sequence_of_a_chain() {
    let mut s = setup(&[("alpha", "")]);
    let yaml = "tasks:\n  - {id: a, description: x, agent: alpha}\n  - {id: b, description: y, agent: alpha, depends_on: [a]}\n";
    let handle = s.start(Scripted::ok(Duration::from_millis(5)), yaml);
    let events = s.until_finished(handle.id()).await;
    assert_eq!(
        trace(&events),
        [
            "run_started",
            "task_ready:a",
            // The pool's events are the run's doing too, and carry its id.
            "instance_reserved",
            "instance_working:a",
            "task_started:a",
            "task_output:a",
            "instance_idle",
            "task_succeeded:a",
            "task_ready:b",
            "instance_working:b",
            "task_started:b",
            "task_output:b",
            "instance_idle",
            "task_succeeded:b",
            "run_finished",
        ]
    );
    // The bus numbers events strictly increasing, and every one carries the run id.
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let Event::TaskStarted { attempt, backend, simulated, .. } = &events[4].event else { panic!() };
    assert_eq!((*attempt, backend.as_str(), *simulated), (1, "test", false));
    let Event::RunFinished { succeeded, failed, .. } = &events[14].event else { panic!() };
    assert_eq!((*succeeded, *failed), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn max_parallel_is_never_exceeded() {
    let mut s = setup(&[("alpha", "max_instances: 10\n")]);
    let mut yaml = String::from("max_parallel: 3\ntasks:\n");
    for i in 0..12 {
        let _ = writeln!(yaml, "  - {{id: t{i}, description: x, agent: alpha}}");
    }
    let executor = Scripted::ok(Duration::from_millis(50));
    let handle = s.start(Arc::clone(&executor), &yaml);
    let events = s.until_finished(handle.id()).await;
    assert_eq!(finished_status(&events), RunStatus::Succeeded);
    assert_eq!(executor.max_running.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn max_instances_is_never_exceeded_and_other_agents_keep_going() {
    let mut s = setup(&[("narrow", "max_instances: 2\n"), ("wide", "max_instances: 4\n")]);
    let mut yaml = String::from("max_parallel: 8\ntasks:\n");
    for i in 0..10 {
        let _ = writeln!(yaml, "  - {{id: n{i}, description: x, agent: narrow}}");
    }
    for i in 0..10 {
        let _ = writeln!(yaml, "  - {{id: w{i}, description: x, agent: wide}}");
    }
    let executor = Scripted::ok(Duration::from_millis(50));
    let handle = s.start(Arc::clone(&executor), &yaml);
    let events = s.until_finished(handle.id()).await;
    assert_eq!(finished_status(&events), RunStatus::Succeeded);
    assert_eq!(executor.max_for("narrow"), 2);
    assert_eq!(executor.max_for("wide"), 4);
    // The narrow agent's backlog did not hold the run's slots: both ran side by side.
    assert_eq!(executor.max_running.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_growing_backoff() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(10), |req| {
        if req.attempt < 3 {
            Step::Fail(format!("boom {}", req.attempt))
        } else {
            Step::Succeed("ok".into())
        }
    });
    let yaml = "tasks:\n  - {id: a, description: x, agent: alpha, retries: 2}\n";
    let handle = s.start(Arc::clone(&executor), yaml);
    let events = s.until_finished(handle.id()).await;
    let delays: Vec<(u32, u64)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskRetrying { attempt, delay_ms, error, .. } => {
                assert!(error.contains("boom"), "{error}");
                Some((*attempt, *delay_ms))
            }
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2, "{:#?}", trace(&events));
    // Equal jitter: attempt 1 waits 50..=100 ms, attempt 2 waits 100..=200 ms.
    assert_eq!(delays[0].0, 1);
    assert!((50..=100).contains(&delays[0].1), "{delays:?}");
    assert_eq!(delays[1].0, 2);
    assert!((100..=200).contains(&delays[1].1), "{delays:?}");
    let starts: Vec<Instant> = executor.requests_for("a").iter().map(|(_, at)| *at).collect();
    assert_eq!(starts.len(), 3);
    // Each retry starts after the latency of the failed attempt plus its delay.
    assert!(starts[1] - starts[0] >= Duration::from_millis(10 + delays[0].1));
    assert!(starts[2] - starts[1] >= Duration::from_millis(10 + delays[1].1));
    let Event::TaskSucceeded { attempt, .. } = &events[events.len() - 2].event else { panic!() };
    assert_eq!(*attempt, 3);
}

#[tokio::test(start_paused = true)]
async fn final_failure_after_retries_fails_the_run() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(1), |_| Step::Fail("always".into()));
    let yaml = "tasks:\n  - {id: a, description: x, agent: alpha, retries: 1}\n";
    let handle = s.start(executor, yaml);
    let events = s.until_finished(handle.id()).await;
    let failed = events.iter().find_map(|e| match &e.event {
        Event::TaskFailed { attempt, error, .. } => Some((*attempt, error.clone())),
        _ => None,
    });
    assert_eq!(failed, Some((2, "always".to_owned())));
    assert_eq!(finished_status(&events), RunStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn attempts_time_out() {
    let mut s = setup(&[("alpha", "")]);
    let yaml = "tasks:\n  - {id: slow, description: x, agent: alpha, timeout: 2s}\n";
    let began = Instant::now();
    let handle = s.start(Scripted::new(Duration::ZERO, |_| Step::Hang), yaml);
    let events = s.until_finished(handle.id()).await;
    let error = events.iter().find_map(|e| match &e.event {
        Event::TaskFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error.as_deref(), Some("timed out after 2s"));
    assert_eq!(began.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn an_executor_that_ignores_its_timeout_is_abandoned() {
    let mut s = setup(&[("alpha", "")]);
    let yaml = "tasks:\n  - {id: stuck, description: x, agent: alpha, timeout: 1s}\n";
    let began = Instant::now();
    let handle = s.start(Scripted::new(Duration::ZERO, |_| Step::Stuck), yaml);
    let events = s.until_finished(handle.id()).await;
    assert_eq!(finished_status(&events), RunStatus::Failed);
    // The engine waits a grace period beyond the timeout, then gives up on the attempt.
    assert_eq!(began.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn real_sim_executor_times_out_too() {
    let mut settings = settings();
    let slow = SimBackend {
        latency_min: Duration::from_secs(10),
        latency_max: Duration::from_secs(10),
        failure_rate: 0.0,
        seed: 3,
        ..SimBackend::default()
    };
    settings.backends.insert("slow-sim".into(), BackendConfig::Sim(slow));
    let mut s = setup_with(&[("alpha", "backend: slow-sim\n")], settings);
    let plan = s.plan("tasks:\n  - {id: a, description: x, agent: alpha, timeout: 1s}\n");
    let handle = s.start_plan(plan);
    let events = s.until_finished(handle.id()).await;
    let t = trace(&events);
    assert!(t.contains(&"task_failed:a".to_owned()), "{t:#?}");
    let Event::RunStarted { simulated, .. } = &events[0].event else { panic!() };
    assert!(*simulated);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_moves_the_task_along_the_fallback_chain() {
    let mut s =
        setup(&[("primary", "fallback: second\n"), ("second", "fallback: third\n"), ("third", "")]);
    s.breakers.force_open(&AgentId::new("primary"), "test");
    s.breakers.force_open(&AgentId::new("second"), "test");
    let executor = Scripted::ok(Duration::from_millis(1));
    let yaml = "tasks:\n  - {id: a, description: x, agent: primary}\n";
    let handle = s.start(Arc::clone(&executor), yaml);
    let events = s.until_finished(handle.id()).await;
    let hops: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskFallback { from, to, reason, .. } => {
                assert!(reason.contains("open"), "{reason}");
                Some((from.to_string(), to.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(hops, [("primary".into(), "second".into()), ("second".into(), "third".into())]);
    assert_eq!(executor.requests_for("a")[0].0.agent, AgentId::new("third"));
    assert_eq!(finished_status(&events), RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_loop_ends_with_a_clear_failure() {
    let mut s = setup(&[("ping", "fallback: pong\n"), ("pong", "fallback: ping\n")]);
    s.breakers.force_open(&AgentId::new("ping"), "test");
    s.breakers.force_open(&AgentId::new("pong"), "test");
    let executor = Scripted::ok(Duration::from_millis(1));
    let handle =
        s.start(Arc::clone(&executor), "tasks:\n  - {id: a, description: x, agent: ping}\n");
    let events = s.until_finished(handle.id()).await;
    let error = events
        .iter()
        .find_map(|e| match &e.event {
            Event::TaskFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        error.contains("fallback chain exhausted (ping → pong: fallback `ping` already tried)"),
        "{error}"
    );
    assert!(executor.seen.lock().unwrap().is_empty());
}

const FAILING_BRANCH: &str = "tasks:
  - {id: bad, description: x, agent: alpha}
  - {id: slow, description: x, agent: alpha}
  - {id: after-bad, description: x, agent: alpha, depends_on: [bad]}
  - {id: after-after, description: x, agent: alpha, depends_on: [after-bad]}
";

fn failing_branch_executor() -> Arc<Scripted> {
    Scripted::new(Duration::from_millis(10), |req| match req.task.as_str() {
        "bad" => Step::Fail("bad task".into()),
        "slow" => Step::Succeed("slow done".into()),
        other => Step::Succeed(other.to_owned()),
    })
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_independent_branches_go_on_and_dependents_are_skipped() {
    let mut s = setup(&[("alpha", "")]);
    let yaml = FAILING_BRANCH.replace("tasks:", "fail_fast: false\ntasks:");
    let handle = s.start(failing_branch_executor(), &yaml);
    let events = s.until_finished(handle.id()).await;
    let t = trace(&events);
    assert!(t.contains(&"task_succeeded:slow".to_owned()), "{t:#?}");
    assert!(t.contains(&"task_skipped:after-bad".to_owned()));
    assert!(t.contains(&"task_skipped:after-after".to_owned()));
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskSkipped { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["dependency `bad` failed", "dependency `after-bad` was skipped"]);
    let Event::RunFinished { status, succeeded, failed, skipped, cancelled, .. } =
        &events.last().unwrap().event
    else {
        panic!()
    };
    assert_eq!(
        (*status, *succeeded, *failed, *skipped, *cancelled),
        (RunStatus::Failed, 1, 1, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_the_rest_at_the_first_final_failure() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(10), |req| match req.task.as_str() {
        "bad" => Step::Fail("bad task".into()),
        _ => Step::Hang,
    });
    let yaml = FAILING_BRANCH.replace("tasks:", "fail_fast: true\ntasks:");
    let handle = s.start(executor, &yaml);
    let events = s.until_finished(handle.id()).await;
    let cancelled: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskCancelled { task, reason } => Some((task.to_string(), reason.clone())),
            _ => None,
        })
        .collect();
    let reason = "fail_fast: task `bad` failed".to_owned();
    assert_eq!(cancelled.len(), 3, "{cancelled:?}");
    assert!(cancelled.iter().all(|(_, r)| *r == reason), "{cancelled:?}");
    assert!(cancelled.iter().any(|(task, _)| task == "slow"));
    assert_eq!(finished_status(&events), RunStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_running_task_skips_its_dependents() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(10), |req| match req.task.as_str() {
        "long" => Step::Hang,
        _ => Step::Succeed("ok".into()),
    });
    let yaml = "tasks:
  - {id: long, description: x, agent: alpha, timeout: 1h}
  - {id: next, description: x, agent: alpha, depends_on: [long]}
  - {id: other, description: x, agent: alpha}
";
    let handle = s.start(executor, yaml);
    let run = handle.id().clone();
    s.until(&run, |e| matches!(e, Event::TaskStarted { task, .. } if task.as_str() == "long"))
        .await;
    handle
        .cancel_task(
            &TaskId::new("long"),
            &s.permit(Command::CancelTask { run: handle.id().clone(), task: TaskId::new("long") }),
        )
        .await
        .unwrap();
    let events = s.until_finished(&run).await;
    let t = trace(&events);
    assert!(t.contains(&"task_cancelled:long".to_owned()), "{t:#?}");
    assert!(t.contains(&"task_skipped:next".to_owned()));
    assert!(t.contains(&"task_succeeded:other".to_owned()));
    assert_eq!(finished_status(&events), RunStatus::Cancelled);
    // A finished task cannot be cancelled.
    let error = handle
        .cancel_task(
            &TaskId::new("other"),
            &s.permit(Command::CancelTask { run: handle.id().clone(), task: TaskId::new("other") }),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::WrongState { status: "succeeded", .. }), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_permit_for_another_command_changes_nothing() {
    let mut s = setup(&[("alpha", "")]);
    let yaml = "tasks:\n  - {id: a, description: x, agent: alpha}\n";
    let handle = s.start(Scripted::new(Duration::ZERO, |_| Step::Hang), yaml);
    let run = handle.id().clone();
    s.until(&run, |e| matches!(e, Event::TaskStarted { .. })).await;
    let other_run = s.permit(Command::CancelRun { run: RunId::new("r-other") });
    let error = handle.cancel(&other_run).await.unwrap_err();
    assert!(matches!(error, EngineError::WrongPermit(_)), "{error}");
    assert!(error.to_string().contains("r-other"), "{error}");
    let other_task = s.permit(Command::CancelTask { run: run.clone(), task: TaskId::new("b") });
    let error = handle.cancel_task(&TaskId::new("a"), &other_task).await.unwrap_err();
    assert!(matches!(error, EngineError::WrongPermit(_)), "{error}");
    let cancel_run = s.permit(Command::CancelRun { run: run.clone() });
    let error = handle.retry_task(&TaskId::new("a"), &cancel_run).await.unwrap_err();
    assert!(matches!(error, EngineError::WrongPermit(_)), "{error}");
    assert_eq!(handle.phase(), RunPhase::Running, "nothing was cancelled");
    handle.cancel(&cancel_run).await.unwrap();
    assert_eq!(finished_status(&s.until_finished(&run).await), RunStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_run_stops_everything() {
    let mut s = setup(&[("alpha", "")]);
    let yaml = "max_parallel: 2
tasks:
  - {id: a, description: x, agent: alpha}
  - {id: b, description: x, agent: alpha}
  - {id: c, description: x, agent: alpha}
  - {id: d, description: x, agent: alpha, depends_on: [a]}
";
    let handle = s.start(Scripted::new(Duration::ZERO, |_| Step::Hang), yaml);
    let run = handle.id().clone();
    s.until(&run, |e| matches!(e, Event::TaskStarted { task, .. } if task.as_str() == "b")).await;
    handle.cancel(&s.permit(Command::CancelRun { run: handle.id().clone() })).await.unwrap();
    let events = s.until_finished(&run).await;
    let Event::RunFinished { status, cancelled, .. } = &events.last().unwrap().event else {
        panic!()
    };
    assert_eq!((*status, *cancelled), (RunStatus::Cancelled, 4));
    assert_eq!(handle.phase(), RunPhase::Finished(RunStatus::Cancelled));
    // Each task says who cancelled the run.
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskCancelled { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 4);
    assert!(reasons.iter().all(|r| *r == "run cancelled by tester"), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_task_can_be_retried_with_its_dependents() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(5), |req| {
        if req.task.as_str() == "flaky" && req.attempt == 1 {
            Step::Fail("first time".into())
        } else {
            Step::Succeed(format!("out-{}", req.task))
        }
    });
    let yaml = "tasks:
  - {id: flaky, description: x, agent: alpha}
  - {id: then, description: x, agent: alpha, depends_on: [flaky]}
";
    let handle = s.start(executor, yaml);
    let run = handle.id().clone();
    let first = s.until_finished(&run).await;
    assert_eq!(finished_status(&first), RunStatus::Failed);
    // Retrying a dependent of a failed task is refused with the reason.
    let error = handle
        .retry_task(
            &TaskId::new("then"),
            &s.permit(Command::RetryTask { run: handle.id().clone(), task: TaskId::new("then") }),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("dependency `flaky` is failed"), "{error}");

    handle
        .retry_task(
            &TaskId::new("flaky"),
            &s.permit(Command::RetryTask { run: handle.id().clone(), task: TaskId::new("flaky") }),
        )
        .await
        .unwrap();
    assert_eq!(handle.phase(), RunPhase::Running);
    let second = s.until_finished(&run).await;
    let t = trace(&second);
    // After the gate's decisions (both retries were let through), the retried task.
    let first = t.iter().find(|e| !e.starts_with("command_")).unwrap();
    assert_eq!(first, "task_ready:flaky");
    assert!(t.contains(&"task_succeeded:then".to_owned()), "{t:#?}");
    let started = second.iter().find(|e| matches!(e.event, Event::TaskStarted { .. })).unwrap();
    let Event::TaskStarted { attempt, .. } = &started.event else { panic!("{t:?}") };
    assert_eq!(*attempt, 2, "attempt numbers go on across retries");
    assert_eq!(finished_status(&second), RunStatus::Succeeded);
    assert_eq!(handle.wait().await, RunStatus::Succeeded);
}

const RISKY: &str = "tasks:
  - {id: ship, description: Deploy the API to production, agent: alpha}
  - {id: docs, description: Write the guide, agent: alpha}
";

#[tokio::test(start_paused = true)]
async fn high_risk_tasks_wait_for_approval_then_run() {
    let mut s = setup(&[("alpha", "")]);
    let handle = s.start(Scripted::ok(Duration::from_millis(5)), RISKY);
    let run = handle.id().clone();
    let waiting = s.until(&run, |e| matches!(e, Event::ApprovalRequested { .. })).await;
    let Event::ApprovalRequested { task, risk, reasons, .. } = &waiting.event else { panic!() };
    assert_eq!(task.as_str(), "ship");
    assert_eq!(*risk, flightdeck::event::Risk::Critical);
    assert!(reasons.iter().any(|r| r.contains("production")), "{reasons:?}");
    // The low-risk task does not wait for the reviewer.
    s.until(&run, |e| matches!(e, Event::TaskSucceeded { task, .. } if task.as_str() == "docs"))
        .await;
    s.approvals.decide(&run, &TaskId::new("ship"), true, &UserId::new("rex"), None).unwrap();
    let events = s.until_finished(&run).await;
    assert!(trace(&events).contains(&"task_succeeded:ship".to_owned()));
    assert_eq!(finished_status(&events), RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_task_fails_with_the_note() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::ok(Duration::from_millis(5));
    let handle = s.start(Arc::clone(&executor), RISKY);
    let run = handle.id().clone();
    let awaiting = s.until(&run, |e| matches!(e, Event::TaskAwaitingApproval { .. })).await;
    assert_eq!(awaiting.event.task(), Some("ship"));
    let note = Some("not on a Friday".to_owned());
    s.approvals.decide(&run, &TaskId::new("ship"), false, &UserId::new("rex"), note).unwrap();
    let events = s.until_finished(&run).await;
    let error = events.iter().find_map(|e| match &e.event {
        Event::TaskFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error.as_deref(), Some("rejected by rex: not on a Friday"));
    assert!(executor.requests_for("ship").is_empty());
    assert_eq!(finished_status(&events), RunStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn dependency_outputs_reach_the_context() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::ok(Duration::from_millis(1));
    let yaml = "tasks:
  - {id: a, description: x, agent: alpha}
  - {id: b, description: y, agent: alpha}
  - id: c
    description: z
    agent: alpha
    depends_on: [a, b]
    context: {goal: ship it, n: 3}
";
    let handle = s.start(Arc::clone(&executor), yaml);
    s.until_finished(handle.id()).await;
    let (request, _) = executor.requests_for("c").remove(0);
    assert_eq!(
        request.context,
        json!({"task": {"goal": "ship it", "n": 3}, "dependencies": {"a": "out-a", "b": "out-b"}})
    );
    assert_eq!(request.system_prompt.trim(), "You are alpha.");
    assert_eq!(request.task_description, "z");
}

#[tokio::test]
async fn the_store_holds_every_event_of_the_run() {
    use flightdeck::runtime::{Runtime, RuntimeOptions};
    use flightdeck::store::RunStore;

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("agentpool/tier1-core");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("alpha.md"),
        "---\nname: alpha\ndescription: Test agent\n---\nHi.\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/w.yaml"), DIAMOND).unwrap();
    let mut settings = settings();
    settings.default_role = "admin".into();
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: dir.path().to_owned(),
        data_dir: dir.path().join(".flightdeck"),
        settings,
        watch_agents: false,
    })
    .unwrap();
    let mut sink = runtime.bus().sink();
    let plan = runtime.plan(Path::new("workflows/w.yaml"), &PlanOverrides::default()).unwrap();
    let handle = runtime.start_planned("ann", plan).unwrap();
    assert_eq!(handle.wait().await, RunStatus::Succeeded);
    runtime.flush().await.unwrap();
    let mut published = Vec::new();
    while let Ok(envelope) = sink.try_recv() {
        if envelope.run_id.as_ref() == Some(handle.id()) {
            published.push((*envelope).clone());
        }
    }
    let stored = RunStore::open(dir.path().join(".flightdeck/runs.db"))
        .unwrap()
        .events(handle.id())
        .unwrap();
    assert_eq!(stored.len(), published.len());
    assert_eq!(stored, published);
    assert!(matches!(stored.last().unwrap().event, Event::RunFinished { .. }));
    runtime.shutdown().await;
}

// ---------------------------------------------------------------- the runtime around it

mod runtime {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use flightdeck::command::{Command, Request};
    use flightdeck::config::Settings;
    use flightdeck::event::{Envelope, Event, RunStatus};
    use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
    use flightdeck::runtime::{Runtime, RuntimeError, RuntimeOptions};
    use tempfile::TempDir;
    use tokio::sync::mpsc::UnboundedReceiver;

    const SETTINGS: &str = "default_role: viewer
users:
  ann: admin
  vic: viewer
  rex: reviewer
policies:
  two_person_at: off
backends:
  sim:
    kind: sim
    latency_min: 1ms
    latency_max: 5ms
";

    fn project() -> (TempDir, Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let agents = dir.path().join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        for name in ["alpha", "beta"] {
            let text = format!("---\nname: {name}\ndescription: Agent {name}\n---\nHi.\n");
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        }
        let workflows = dir.path().join("workflows");
        std::fs::create_dir_all(&workflows).unwrap();
        std::fs::write(
            workflows.join("two.yaml"),
            "tasks:\n  - {id: a, description: x, agent: alpha}\n  - {id: b, description: y, agent: beta, depends_on: [a]}\n",
        )
        .unwrap();
        std::fs::write(
            workflows.join("risky.yaml"),
            "tasks:\n  - {id: ship, description: Release to production, agent: alpha}\n",
        )
        .unwrap();
        let settings = Settings::parse(SETTINGS, Path::new("flightdeck.yaml")).unwrap();
        let runtime = Runtime::start(RuntimeOptions {
            project_dir: dir.path().to_owned(),
            data_dir: dir.path().join(".flightdeck"),
            settings,
            watch_agents: false,
        })
        .unwrap();
        (dir, runtime)
    }

    fn request(user: &str, command: Command) -> Request {
        Request { user: UserId::new(user), command }
    }

    fn start(workflow: &str) -> Command {
        Command::StartRun {
            workflow: format!("workflows/{workflow}").into(),
            backend: None,
            max_parallel: None,
        }
    }

    async fn next(
        events: &mut UnboundedReceiver<Arc<Envelope>>,
        wanted: impl Fn(&Event) -> bool,
    ) -> Arc<Envelope> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let envelope = events.recv().await.unwrap();
                if wanted(&envelope.event) {
                    return envelope;
                }
            }
        })
        .await
        .expect("the event came")
    }

    #[tokio::test]
    async fn commands_pass_the_gate_first() {
        let (_dir, runtime) = project();
        let mut events = runtime.bus().sink();
        let error = runtime.submit(request("vic", start("two.yaml"))).await.unwrap_err();
        assert!(matches!(error, RuntimeError::Denied(_)), "{error}");
        assert!(error.to_string().contains("vic (viewer) may not start_run"), "{error}");
        let denied = next(&mut events, |e| matches!(e, Event::CommandDenied { .. })).await;
        let Event::CommandDenied { user, role, .. } = &denied.event else { panic!() };
        assert_eq!((user.as_str(), role.as_str()), ("vic", "viewer"));
        assert!(runtime.run_ids().is_empty());
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn a_run_started_by_command_finishes_and_can_be_waited_for() {
        let (_dir, runtime) = project();
        let mut events = runtime.bus().sink();
        runtime.submit(request("ann", start("two.yaml"))).await.unwrap();
        let started = next(&mut events, |e| matches!(e, Event::RunStarted { .. })).await;
        let run = started.run_id.clone().unwrap();
        assert_eq!(runtime.wait_run(&run).await, Some(RunStatus::Succeeded));
        assert_eq!(runtime.wait_run(&RunId::new("nope")).await, None);
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn command_errors_become_notices() {
        let (_dir, runtime) = project();
        let mut events = runtime.bus().sink();
        let commands = runtime.command_sender("ann".into());
        commands.send(start("missing.yaml")).unwrap();
        let notice = next(&mut events, |e| matches!(e, Event::Notice { .. })).await;
        let Event::Notice { message, .. } = &notice.event else { panic!() };
        assert!(message.contains("missing.yaml: cannot read"), "{message}");
        commands.send(Command::ReleaseInstance { instance: InstanceId(999) }).unwrap();
        let notice = next(&mut events, |e| matches!(e, Event::Notice { .. })).await;
        let Event::Notice { message, .. } = &notice.event else { panic!() };
        assert!(message.contains("i999 was not spawned by an operator"), "{message}");
        commands.send(Command::CancelRun { run: RunId::new("ghost") }).unwrap();
        let notice = next(&mut events, |e| matches!(e, Event::Notice { .. })).await;
        assert!(
            matches!(&notice.event, Event::Notice { message, .. } if message.contains("ghost"))
        );
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn operators_spawn_and_release_instances_and_drive_breakers() {
        let (_dir, runtime) = project();
        let mut events = runtime.bus().sink();
        let commands = runtime.command_sender("ann".into());
        commands.send(Command::SpawnInstance { agent: AgentId::new("alpha") }).unwrap();
        let working = next(&mut events, |e| matches!(e, Event::InstanceWorking { .. })).await;
        let Event::InstanceWorking { instance, task, .. } = &working.event else { panic!() };
        assert_eq!(*task, None);
        commands.send(Command::ReleaseInstance { instance: *instance }).unwrap();
        next(&mut events, |e| matches!(e, Event::InstanceIdle { .. })).await;

        commands.send(Command::OpenBreaker { agent: AgentId::new("beta") }).unwrap();
        next(
            &mut events,
            |e| matches!(e, Event::BreakerOpened { agent, .. } if agent.as_str() == "beta"),
        )
        .await;
        commands.send(Command::ResetBreaker { agent: AgentId::new("beta") }).unwrap();
        next(
            &mut events,
            |e| matches!(e, Event::BreakerClosed { agent, .. } if agent.as_str() == "beta"),
        )
        .await;

        commands.send(Command::SpawnInstance { agent: AgentId::new("nobody") }).unwrap();
        let notice = next(&mut events, |e| matches!(e, Event::Notice { .. })).await;
        assert!(
            matches!(&notice.event, Event::Notice { message, .. } if message.contains("`nobody`"))
        );
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn reviewers_approve_through_the_gate() {
        let (_dir, runtime) = project();
        let mut events = runtime.bus().sink();
        runtime.submit(request("ann", start("risky.yaml"))).await.unwrap();
        let asked = next(&mut events, |e| matches!(e, Event::ApprovalRequested { .. })).await;
        let run = asked.run_id.clone().unwrap();
        let approve = |user: &str| {
            request(
                user,
                Command::Approve { run: run.clone(), task: TaskId::new("ship"), note: None },
            )
        };
        assert!(matches!(runtime.submit(approve("vic")).await, Err(RuntimeError::Denied(_))));
        runtime.submit(approve("rex")).await.unwrap();
        let decided = next(&mut events, |e| matches!(e, Event::ApprovalDecided { .. })).await;
        assert!(
            matches!(&decided.event, Event::ApprovalDecided { approved: true, by, .. } if by.as_str() == "rex")
        );
        assert_eq!(runtime.wait_run(&run).await, Some(RunStatus::Succeeded));
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn backlog_has_the_pool_state_and_the_events_of_runs_in_progress() {
        let (_dir, runtime) = project();
        let backlog = runtime.backlog();
        let agents: Vec<&str> = backlog
            .iter()
            .filter_map(|e| match &e.event {
                Event::AgentAdded(summary) => Some(summary.agent.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(agents, ["alpha", "beta"]);
        assert!(backlog.iter().all(|e| e.seq == 0 && e.run_id.is_none()));

        let mut events = runtime.bus().sink();
        runtime.submit(request("ann", start("risky.yaml"))).await.unwrap();
        let asked = next(&mut events, |e| matches!(e, Event::ApprovalRequested { .. })).await;
        runtime.flush().await.unwrap();
        let backlog = runtime.backlog();
        let run_events: Vec<&str> =
            backlog.iter().filter(|e| e.run_id == asked.run_id).map(|e| e.event.kind()).collect();
        // The gate's acceptance of the start belongs to the run it started.
        assert_eq!(run_events[..2], ["command_accepted", "run_started"]);
        assert!(run_events.contains(&"approval_requested"), "{run_events:?}");
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_cancels_runs_and_records_them() {
        let (dir, runtime) = project();
        let mut events = runtime.bus().sink();
        runtime.submit(request("ann", start("risky.yaml"))).await.unwrap();
        let asked = next(&mut events, |e| matches!(e, Event::ApprovalRequested { .. })).await;
        let run = asked.run_id.clone().unwrap();
        runtime.shutdown().await;
        let store =
            flightdeck::store::RunStore::open(dir.path().join(".flightdeck/runs.db")).unwrap();
        let row = store.run(&run).unwrap().unwrap();
        assert_eq!(row.state, flightdeck::store::RunState::Cancelled);
    }
}

// ---------------------------------------------------------------- error classes and the retry budget

/// An HTTP error as the executors report it, naming the backend and URL.
fn http_error(status: u16, retry_after: Option<Duration>) -> ExecError {
    ExecError::Backend {
        backend: "test".into(),
        url: "http://127.0.0.1:9/v1/chat/completions".into(),
        source: Box::new(ExecError::Http { status, message: "refused".into(), retry_after }),
    }
}

fn failed_error(events: &[Arc<Envelope>], task: &str) -> (u32, String) {
    events
        .iter()
        .find_map(|e| match &e.event {
            Event::TaskFailed { task: t, attempt, error, .. } if t.as_str() == task => {
                Some((*attempt, error.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{task} did not fail: {:#?}", trace(events)))
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_fail_at_once_and_never_count_on_the_breaker() {
    let mut settings = settings();
    settings.breakers.failure_threshold = 1;
    let mut s = setup_with(&[("alpha", "")], settings);
    let executor = Scripted::new(Duration::from_millis(1), |req| match req.task.as_str() {
        "a" => Step::Error(http_error(401, None)),
        "b" => Step::Error(ExecError::MissingKey("OPENAI_API_KEY".into())),
        _ => Step::Succeed("fine".into()),
    });
    let yaml = "max_parallel: 1\ntasks:\n  - {id: a, description: x, agent: alpha, retries: 3}\n  \
                - {id: b, description: y, agent: alpha, retries: 3}\n  \
                - {id: c, description: z, agent: alpha}\n";
    let handle = s.start(Arc::clone(&executor), yaml);
    let events = s.until_finished(handle.id()).await;
    let (attempt, error) = failed_error(&events, "a");
    assert_eq!(attempt, 1, "a permanent error is not retried");
    assert!(
        error.contains("backend `test` (http://127.0.0.1:9/v1/chat/completions): HTTP 401"),
        "{error}"
    );
    assert!(error.contains("not retried"), "{error}");
    assert_eq!(failed_error(&events, "b").0, 1);
    assert_eq!(executor.requests_for("a").len(), 1);
    assert_eq!(executor.requests_for("b").len(), 1);
    assert!(
        !trace(&events).iter().any(|t| t.starts_with("task_retrying")),
        "{:#?}",
        trace(&events)
    );
    // Threshold 1, two failures: still closed, and the third task ran.
    let view = s.breakers.view(&AgentId::new("alpha"));
    assert_eq!(view.state, flightdeck::resilience::BreakerState::Closed);
    assert_eq!(view.consecutive_failures, 0);
    assert!(trace(&events).contains(&"task_succeeded:c".to_owned()), "{:#?}", trace(&events));
}

#[tokio::test(start_paused = true)]
async fn transient_errors_count_on_the_breaker() {
    let mut settings = settings();
    settings.breakers.failure_threshold = 1;
    let mut s = setup_with(&[("alpha", "")], settings);
    let executor = Scripted::new(Duration::from_millis(1), |_| Step::Error(http_error(503, None)));
    let handle = s.start(executor, "tasks:\n  - {id: a, description: x, agent: alpha}\n");
    let events = s.until_finished(handle.id()).await;
    assert!(trace(&events).contains(&"task_failed:a".to_owned()));
    let view = s.breakers.view(&AgentId::new("alpha"));
    assert_eq!(view.state, flightdeck::resilience::BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_engine_waits_out_retry_after() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(1), |req| {
        if req.attempt == 1 {
            Step::Error(http_error(429, Some(Duration::from_secs(3))))
        } else {
            Step::Succeed("ok".into())
        }
    });
    let yaml = "tasks:\n  - {id: a, description: x, agent: alpha, retries: 1}\n";
    let handle = s.start(Arc::clone(&executor), yaml);
    let events = s.until_finished(handle.id()).await;
    let delay = events.iter().find_map(|e| match &e.event {
        Event::TaskRetrying { delay_ms, .. } => Some(*delay_ms),
        _ => None,
    });
    assert_eq!(delay, Some(3000), "the wait is the server's Retry-After");
    let starts: Vec<Instant> = executor.requests_for("a").iter().map(|(_, at)| *at).collect();
    assert!(starts[1] - starts[0] >= Duration::from_secs(3));
    assert_eq!(finished_status(&events), RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn retry_after_longer_than_the_timeout_fails_at_once_with_the_429() {
    let mut s = setup(&[("alpha", "")]);
    let executor = Scripted::new(Duration::from_millis(1), |_| {
        Step::Error(http_error(429, Some(Duration::from_secs(600))))
    });
    let yaml = "tasks:\n  - {id: a, description: x, agent: alpha, retries: 3, timeout: 1m}\n";
    let began = Instant::now();
    let handle = s.start(Arc::clone(&executor), yaml);
    let events = s.until_finished(handle.id()).await;
    let (attempt, error) = failed_error(&events, "a");
    assert_eq!(attempt, 1);
    assert!(error.contains("HTTP 429: refused (Retry-After: 10m)"), "{error}");
    assert!(error.contains("longer than the task's timeout of 1m"), "{error}");
    assert!(began.elapsed() < Duration::from_secs(1), "{:?}", began.elapsed());
}

/// A real `OpenAI`-compatible server that answers 503 to everything: the task makes one
/// request per attempt, and the backend's `max_retries` is the task's whole budget.
#[tokio::test]
async fn an_http_backend_has_one_retry_budget_per_task() {
    let busy = support::Reply::json(503, &json!({"error": {"message": "busy"}}));
    let server =
        support::FakeServer::start_with(support::ConnectionMode::Close, vec![], Some(busy)).await;
    let mut settings = settings();
    let http = HttpBackend {
        max_retries: 2,
        stream: false,
        ..HttpBackend::new(format!("{}/v1", server.url), Some("local-model"))
    };
    settings.backends.insert("local".into(), BackendConfig::Openai(http));
    settings.limits.retry_base_delay = Duration::from_millis(10);
    settings.limits.retry_max_delay = Duration::from_millis(20);
    let mut s = setup_with(&[("alpha", "backend: local\n")], settings);
    let plan = s.plan("tasks:\n  - {id: a, description: x, agent: alpha}\n");
    assert_eq!(plan.steps[0].retries, 2, "the backend's max_retries sets the budget");
    let handle = s.start_plan(plan);
    let events = s.until_finished(handle.id()).await;
    let (attempt, error) = failed_error(&events, "a");
    assert_eq!(attempt, 3);
    assert!(error.contains("HTTP 503: busy"), "{error}");
    assert!(error.contains(&format!("({}/v1/chat/completions)", server.url)), "{error}");
    assert_eq!(server.requests().len(), 3, "1 attempt + 2 retries, nothing multiplied");
}
