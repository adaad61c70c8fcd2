//! `flightdeck resume` on real `flightdeck` processes, real process agents and real files:
//! one owner at a time, the stored plan when the workflow file changed, an interrupted
//! attempt run again, leftover agents killed, the retry budget carried over, and a run that
//! cannot be resumed refused.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flightdeck::event::{Envelope, Event};
use flightdeck::store::{RUNS_FILE, RunState, RunStore};
use tempfile::TempDir;

/// Logs `task attempt`; `slow` hangs in its first attempt and `flaky` in its second, so a
/// test can kill the run inside them; `flaky` always fails.
const AGENT: &str = r#"echo "$FLIGHTDECK_TASK $FLIGHTDECK_ATTEMPT" >> "$LOG"
case "$FLIGHTDECK_TASK:$FLIGHTDECK_ATTEMPT" in
  slow:1|flaky:2) sleep 30 ;;
esac
if [ "$FLIGHTDECK_TASK" = flaky ]; then echo "flaky fails" >&2; exit 1; fi
echo "did $FLIGHTDECK_TASK"
"#;

const CHAIN: &str = "name: chain
tasks:
  - {id: first, description: Do the first step, agent: worker}
  - {id: slow, description: Do the slow step, agent: worker, depends_on: [first]}
  - {id: last, description: Do the last step, agent: worker, depends_on: [slow]}
";

const FLAKY: &str = "name: flaky
tasks:
  - {id: flaky, description: Try the flaky step, agent: worker, retries: 2}
";

struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("agent.sh"), AGENT).unwrap();
        let settings = format!(
            "default_role: viewer\nusers:\n  ann: admin\ndefault_backend: local\nlimits:\n  \
             retry_base_delay: 10ms\n  retry_max_delay: 20ms\nbackends:\n  local:\n    kind: \
             process\n    command: [sh, {}]\n    env:\n      LOG: {}\n",
            root.join("agent.sh").display(),
            root.join("agent.log").display()
        );
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/core");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("worker.md"),
            "---\nname: worker\ndescription: Test worker\nbackend: local\n---\nYou work.\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(root.join("workflows/chain.yaml"), CHAIN).unwrap();
        std::fs::write(root.join("workflows/flaky.yaml"), FLAKY).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join(".flightdeck")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER");
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("agent.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Start `run WORKFLOW` and wait until the agent log holds `line`.
    fn run_until(&self, workflow: &str, line: &str) -> Child {
        let child = self
            .command(&["run", workflow])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let began = Instant::now();
        while !self.log().iter().any(|l| l == line) {
            assert!(began.elapsed() < Duration::from_secs(30), "no `{line}` in {:?}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    fn events(&self) -> Vec<Envelope> {
        let store = RunStore::open(self.data_dir().join(RUNS_FILE)).unwrap();
        let run = store.runs().unwrap()[0].run_id.clone();
        store.events(&run).unwrap()
    }

    fn state(&self) -> RunState {
        RunStore::open(self.data_dir().join(RUNS_FILE)).unwrap().runs().unwrap()[0].state
    }
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn count(log: &[String], line: &str) -> usize {
    log.iter().filter(|l| *l == line).count()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_killed_run_resumes_once_its_owner_is_gone_with_its_stored_plan() {
    let project = Project::new();
    let mut child = project.run_until("workflows/chain.yaml", "slow 1");

    // Owned by a live process: refused, naming it.
    let refused = project.output(&["resume", "last"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains(&format!("pid {}", child.id())), "{}", stderr(&refused));

    kill(&mut child);
    let began = Instant::now();
    while project.state() != RunState::Interrupted {
        assert!(began.elapsed() < Duration::from_secs(5), "still {:?}", project.state());
        std::thread::sleep(Duration::from_millis(10));
    }
    let listed = project.output(&["runs", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("can be resumed"));
    // The workflow changes after the run started: the stored one is what resumes.
    let edited = format!("{CHAIN}  - {{id: extra, description: Do more, agent: worker}}\n");
    std::fs::write(project.root().join("workflows/chain.yaml"), edited).unwrap();

    let resumed = project.output(&["resume", "last", "--json"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("the workflow file changed"), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("may have run twice"), "{}", stderr(&resumed));
    let printed: Vec<Envelope> = String::from_utf8_lossy(&resumed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The killed run's agent process is usually gone already: its reaper shim (exec::reaper)
    // stops the whole tree when Flightdeck dies; resume kills whatever is left, if anything.
    assert!(printed.iter().any(|e| matches!(
        &e.event,
        Event::RunResumed { done: 1, remaining: 2, workflow_changed: true, .. }
    )));

    let log = project.log();
    assert_eq!(count(&log, "first 1"), 1, "a succeeded task never runs again: {log:?}");
    assert_eq!((count(&log, "slow 1"), count(&log, "slow 2")), (1, 1), "{log:?}");
    assert_eq!(count(&log, "last 1"), 1, "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("extra")), "the stored plan has no `extra`");

    // One stream: the start, the kill, the resume and one finish at the end.
    let events = project.events();
    let kinds: Vec<&str> =
        events.iter().map(|e| e.event.kind()).filter(|k| !k.starts_with("command_")).collect();
    assert_eq!(
        events.iter().filter(|e| e.event.kind() == "command_accepted").count(),
        3,
        "the start, the refused resume and the resume each passed the gate (the refusal came \
         after it, from the lock)"
    );
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "run_finished").count(), 1);
    let interrupted: Vec<&Event> =
        events.iter().map(|e| &e.event).filter(|e| e.kind() == "attempt_interrupted").collect();
    assert!(
        matches!(interrupted.as_slice(), [Event::AttemptInterrupted { task, attempt: 1, .. }] if task.as_str() == "slow"),
        "{interrupted:?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "event numbers go on: {seqs:?}");
    assert_eq!(project.state(), RunState::Succeeded);
    assert!(flightdeck::resume::leftovers(events[0].run_id.as_ref().unwrap()).is_empty());

    // Finished: nothing to resume.
    let again = project.output(&["resume", "last"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("cannot be resumed: it finished"), "{}", stderr(&again));
}

#[test]
fn the_retry_budget_carries_over_a_crash() {
    let project = Project::new();
    let mut child = project.run_until("workflows/flaky.yaml", "flaky 2");
    kill(&mut child);
    let resumed = project.output(&["resume", "last"]);
    assert_eq!(resumed.status.code(), Some(1), "the task fails for good: {}", stderr(&resumed));
    // Attempt 1 failed, 2 was interrupted (no failure of the agent's), 3 and 4 failed: three
    // failures for `retries: 2`. A budget reset by the resume would have allowed a 5th.
    assert_eq!(project.log(), ["flaky 1", "flaky 2", "flaky 3", "flaky 4"]);
    let failed = project.events().into_iter().find_map(|e| match e.event {
        Event::TaskFailed { attempt, .. } => Some(attempt),
        _ => None,
    });
    assert_eq!(failed, Some(4));
}

#[test]
fn an_unknown_run_is_refused_with_what_to_do() {
    let project = Project::new();
    let output = project.output(&["resume", "r-nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no run `r-nope`"), "{}", stderr(&output));
    assert!(stderr(&output).contains("runs list"), "{}", stderr(&output));
}

// ---------------------------------------------------------------- approvals, in the engine

#[path = "support/permit.rs"]
mod permits;

mod approvals {
    use super::permits;
    use std::sync::Arc;
    use std::time::Duration;

    use flightdeck::agents::Registry;
    use flightdeck::bus::EventBus;
    use flightdeck::command::Command;
    use flightdeck::config::{BackendConfig, Settings, SimBackend};
    use flightdeck::engine::{Engine, EngineParts, Resumed};
    use flightdeck::event::{AnswerDetails, Envelope, Event, RunStatus};
    use flightdeck::governance::Approvals;
    use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
    use flightdeck::model::{OutputKeep, RunModel};
    use flightdeck::pool::{Pool, PoolConfig};
    use flightdeck::resilience::BreakerBoard;
    use flightdeck::resume::ResumePoint;
    use flightdeck::workflow::{Workflow, plan};

    const RISKY: &str = "tasks:
  - {id: ship, description: Deploy the API to production, agent: alpha}
  - {id: notes, description: Draft release notes, agent: alpha}
  - {id: docs, description: Write the guide, agent: alpha}
  - {id: index, description: Index the guide, agent: alpha, depends_on: [docs]}
";

    /// Asked at this time (ms since the Unix epoch) before the crash.
    const ASKED_MS: u64 = 1_700_000_000_000;

    #[tokio::test]
    async fn resume_waits_again_for_a_reviewer_with_the_original_request_time() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("agentpool/core");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("alpha.md"), "---\nname: alpha\ndescription: A\n---\nHi.\n")
            .unwrap();
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
        let bus = EventBus::new();
        let mut events = bus.sink();
        let registry = Registry::load(&dir.path().join("agentpool"));
        let approvals = Approvals::new(bus.clone());
        let engine = Engine::new(EngineParts {
            bus: bus.clone(),
            registry: registry.clone(),
            pool: Pool::new(
                PoolConfig { max_total: 8, idle_timeout: Duration::from_secs(60) },
                bus.clone(),
            ),
            breakers: BreakerBoard::new(settings.breakers.clone(), bus.clone()),
            approvals: approvals.clone(),
            settings: Arc::new(settings.clone()),
            project_dir: dir.path().to_owned(),
            data_dir: dir.path().join(".flightdeck"),
        });
        let workflow = Workflow::parse(RISKY, &dir.path().join("risky.yaml")).unwrap();
        let plan = plan(&workflow, &registry, &settings).unwrap();
        assert!(plan.steps[0].needs_approval && plan.steps[1].needs_approval);

        // The crashed process had asked for `ship` and `notes`, `notes` was approved, `docs`
        // succeeded; then it died.
        let run = RunId::new("r-crashed");
        let alpha = AgentId::new("alpha");
        let asked = |task: &str| Event::ApprovalRequested {
            task: TaskId::new(task),
            agent: alpha.clone(),
            risk: flightdeck::event::Risk::Critical,
            reasons: vec!["production".into()],
        };
        let stored = [
            Event::RunStarted {
                workflow: plan.workflow.clone(),
                file: plan.file.clone(),
                goal: None,
                max_parallel: plan.max_parallel,
                fail_fast: false,
                simulated: true,
                tasks: plan.planned_tasks(),
            },
            asked("ship"),
            asked("notes"),
            Event::ApprovalDecided {
                task: TaskId::new("notes"),
                approved: true,
                by: UserId::new("rex"),
                note: None,
            },
            Event::TaskStarted {
                task: TaskId::new("docs"),
                agent: alpha.clone(),
                attempt: 1,
                instance: InstanceId(1),
                backend: "test".into(),
                simulated: true,
            },
            Event::TaskSucceeded {
                task: TaskId::new("docs"),
                agent: alpha.clone(),
                attempt: 1,
                duration_ms: 1,
                output: "the stored guide".into(),
                usage: None,
                simulated: true,
                details: AnswerDetails::default(),
            },
        ];
        let envelopes: Vec<Envelope> = stored
            .into_iter()
            .enumerate()
            .map(|(i, event)| Envelope {
                seq: i as u64 + 1,
                ts_ms: ASKED_MS + i as u64,
                run_id: Some(run.clone()),
                event,
            })
            .collect();
        let model = RunModel::from_events(&envelopes, OutputKeep::None);
        let point = ResumePoint::from_model(&model);

        let gate = permits::gate(dir.path(), &bus);
        let command = Command::ResumeRun { run: run.clone(), backend: None };
        let permit = permits::permit(&gate, command);
        let handle =
            engine.resume_as(run.clone(), plan, &point, Resumed::default(), &permit).unwrap();
        // `ship` waits again, as first asked; `notes` runs on its earlier approval.
        let mut seen = Vec::new();
        while approvals.pending().is_empty()
            || !seen.iter().any(|e: &Envelope| is_success(e, "notes"))
        {
            let envelope = events.recv().await.unwrap();
            seen.push((*envelope).clone());
        }
        let pending = approvals.pending();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].task.as_str(), "ship");
        assert_eq!(pending[0].requested_ms, ASKED_MS + 1, "the original request time");
        approvals.decide(&run, &TaskId::new("ship"), true, &UserId::new("rex"), None).unwrap();
        assert_eq!(handle.wait().await, RunStatus::Succeeded);
        while let Ok(envelope) = events.try_recv() {
            seen.push((*envelope).clone());
        }
        let asked_again: Vec<&str> = seen
            .iter()
            .filter_map(|e| match &e.event {
                Event::ApprovalRequested { task, .. } => Some(task.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(asked_again, ["ship"], "an approval given is never asked again");
        let started: Vec<&str> = seen
            .iter()
            .filter_map(|e| match &e.event {
                Event::TaskStarted { task, .. } => Some(task.as_str()),
                _ => None,
            })
            .collect();
        assert!(!started.contains(&"docs"), "a succeeded task never runs again: {started:?}");
        let finished = seen.iter().find_map(|e| match e.event {
            Event::RunFinished { succeeded, .. } => Some(succeeded),
            _ => None,
        });
        assert_eq!(finished, Some(4));
    }

    fn is_success(envelope: &Envelope, id: &str) -> bool {
        matches!(&envelope.event, Event::TaskSucceeded { task, .. } if task.as_str() == id)
    }
}
