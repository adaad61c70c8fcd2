//! Bad input gets a clear error or is handled, never a crash: durations near the maximum,
//! file names that are not UTF-8, a link to a folder above the pool, a copied agent file, an
//! agent file that fails to load, and a task whose attempt panics.

#![allow(clippy::unwrap_used)]

#[path = "support/permit.rs"]
mod permits;

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use flightdeck::bus::EventBus;
use flightdeck::config::Settings;
use flightdeck::engine::{Engine, EngineParts};
use flightdeck::event::{Event, RunStatus};
use flightdeck::exec::{ExecFuture, ExecRequest, Executor, OutputSink};
use flightdeck::governance::Approvals;
use flightdeck::pool::{Pool, PoolConfig};
use flightdeck::resilience::BreakerBoard;
use flightdeck::workflow::{Workflow, plan};
use tokio_util::sync::CancellationToken;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agentpool/tier1-core");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("worker.md"),
        "---\nname: worker\ndescription: Does the work\n---\nYou are worker.\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    dir
}

fn flightdeck(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .current_dir(dir)
        .args(["--project-dir", dir.to_str().unwrap(), "--as", "ann"])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_timeout_near_the_maximum_is_an_error_naming_file_line_and_field() {
    let dir = project();
    std::fs::write(
        dir.path().join("workflows/huge.yaml"),
        "name: huge\ntasks:\n  - id: a\n    description: Do it\n    agent: worker\n    timeout: 18446744073709551615s\n",
    )
    .unwrap();
    for command in ["plan", "run"] {
        let output = flightdeck(dir.path(), &[command, "workflows/huge.yaml"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("huge.yaml:6"), "{command}: {err}");
        assert!(err.contains("timeout"), "{command}: {err}");
    }
}

#[test]
fn a_key_given_twice_is_an_error_at_the_second_one() {
    let dir = project();
    let cases = [
        // A task's field twice: its second line, not the task's first.
        (
            "twice.yaml",
            "name: twice\ntasks:\n  - id: a\n    description: Do it\n    agent: worker\n    \
             agent: other\n",
            "twice.yaml:6:1: tasks[0]: duplicate field `agent`",
        ),
        // A top-level key twice, with the same key inside a stage between them.
        (
            "again.yaml",
            "name: again\nstages:\n  - name: build\n    tasks:\n      - id: a\n        \
             description: Do it\n        agent: worker\nname: other\n",
            "again.yaml:8:1: duplicate field `name`",
        ),
    ];
    for (file, text, said) in cases {
        std::fs::write(dir.path().join("workflows").join(file), text).unwrap();
        let output = flightdeck(dir.path(), &["plan", &format!("workflows/{file}")]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains(said), "{said}: {err}");
        assert!(!err.contains(" at line "), "the place is said once: {err}");
    }
}

/// The console's `--workflow` is refused as `run` refuses it, before the terminal is taken
/// over (no terminal here: it is never reached).
#[test]
fn the_console_refuses_a_workflow_that_does_not_plan_before_it_opens() {
    let dir = project();
    std::fs::write(
        dir.path().join("workflows/bad.yaml"),
        "name: bad\ntasks:\n  - {id: a, description: A, agent: nobody, depends_on: [ghost]}\n",
    )
    .unwrap();
    for (file, said) in [
        ("workflows/bad.yaml", "bad.yaml:3: task `a`: agent `nobody` is not in the agent pool"),
        ("workflows/missing.yaml", "missing.yaml: cannot read"),
    ] {
        let output = flightdeck(dir.path(), &["--workflow", file]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains(said), "{said}: {err}");
        assert!(!err.contains("terminal"), "refused before the terminal: {err}");
    }
}

#[test]
fn a_sim_latency_near_the_maximum_is_an_error_naming_the_field() {
    let dir = project();
    std::fs::write(
        dir.path().join("flightdeck.yaml"),
        "backends:\n  sim:\n    kind: sim\n    latency_min: 1s\n    latency_max: 18446744073709551615s\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("workflows/w.yaml"),
        "name: w\ntasks:\n  - {id: a, description: Do it, agent: worker}\n",
    )
    .unwrap();
    let output = flightdeck(dir.path(), &["plan", "workflows/w.yaml"]);
    let err = stderr(&output);
    assert_ne!(output.status.code(), Some(101), "{err}");
    assert!(
        err.contains("flightdeck.yaml") && err.contains("longer than the longest allowed"),
        "{err}"
    );
}

#[test]
fn the_longest_allowed_durations_plan_without_overflow() {
    let dir = project();
    std::fs::write(
        dir.path().join("flightdeck.yaml"),
        "backends:\n  sim:\n    kind: sim\n    latency_min: 364days\n    latency_max: 365days\n",
    )
    .unwrap();
    let mut tasks = String::new();
    for i in 0..50 {
        let dep = if i > 0 { format!(", depends_on: [t{}]", i - 1) } else { String::new() };
        let _ = writeln!(
            tasks,
            "  - {{id: t{i}, description: Do it, agent: worker, timeout: 365days{dep}}}"
        );
    }
    std::fs::write(dir.path().join("workflows/long.yaml"), format!("name: long\ntasks:\n{tasks}"))
        .unwrap();
    let output = flightdeck(dir.path(), &["plan", "workflows/long.yaml", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn agents_list_json_survives_a_file_name_that_is_not_utf8() {
    let dir = project();
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name.md");
    std::fs::write(dir.path().join("agentpool/tier1-core").join(name), "---\nname: x\n---\n")
        .unwrap();
    let output = flightdeck(dir.path(), &["agents", "list", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed["agents"][0]["id"], "worker");
    assert!(listed["problems"][0]["file"].as_str().unwrap().contains("bad-\u{fffd}-name.md"));
}

#[test]
fn a_link_to_a_folder_above_the_pool_reads_each_file_once() {
    let dir = project();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("agentpool/up")).unwrap();
    let output = flightdeck(dir.path(), &["agents", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed["agents"].as_array().unwrap().len(), 1, "{listed:#}");
    let problems = listed["problems"].to_string();
    assert!(!problems.contains("already defined") && !problems.contains("duplicate"), "{problems}");
}

#[test]
fn a_copied_agent_file_leaves_the_original_active_and_is_reported() {
    let dir = project();
    let folder = dir.path().join("agentpool/tier1-core");
    std::thread::sleep(Duration::from_millis(20));
    // `worker-copy.md` sorts before `worker.md`: path order alone would let it win.
    std::fs::copy(folder.join("worker.md"), folder.join("worker-copy.md")).unwrap();
    std::fs::write(
        folder.join("worker-copy.md"),
        "---\nname: worker\ndescription: The copy, to become a new agent\n---\nYou are new.\n",
    )
    .unwrap();
    let output = flightdeck(dir.path(), &["agents", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let agents = listed["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert!(agents[0]["file"].as_str().unwrap().ends_with("/worker.md"), "{listed:#}");
    assert!(listed["problems"][0]["file"].as_str().unwrap().ends_with("worker-copy.md"));
}

#[test]
fn plan_and_run_name_the_agent_file_that_failed_to_load() {
    let dir = project();
    std::fs::write(
        dir.path().join("agentpool/tier1-core/reviewer.md"),
        "---\nname: reviewer\ndescription: Reviews\nmax_instances: lots\n---\nYou review.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("workflows/w.yaml"),
        "name: w\ntasks:\n  - {id: review, description: Review it, agent: reviewer}\n",
    )
    .unwrap();
    for command in ["plan", "run"] {
        let output = flightdeck(dir.path(), &[command, "workflows/w.yaml"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("its file failed to load"), "{command}: {err}");
        assert!(err.contains("reviewer.md:4"), "{command}: {err}");
        assert!(err.contains("max_instances"), "{command}: {err}");
    }
}

/// An executor with a bug: it panics.
struct Panicking;

impl Executor for Panicking {
    fn kind(&self) -> &'static str {
        "test"
    }

    fn execute(&self, req: ExecRequest, _: OutputSink, _: CancellationToken) -> ExecFuture<'_> {
        Box::pin(async move { panic!("bug in the executor for {}", req.task) })
    }
}

#[tokio::test]
async fn a_panicking_attempt_fails_its_run_instead_of_hanging_it() {
    let dir = project();
    let bus = EventBus::new();
    let mut events = bus.sink();
    let settings = Settings::default();
    let registry = flightdeck::agents::Registry::load(&dir.path().join("agentpool"));
    let engine = Engine::new(EngineParts {
        bus: bus.clone(),
        registry: registry.clone(),
        pool: Pool::new(
            PoolConfig { max_total: 4, idle_timeout: Duration::from_secs(60) },
            bus.clone(),
        ),
        breakers: BreakerBoard::new(settings.breakers.clone(), bus.clone()),
        approvals: Approvals::new(bus.clone()),
        settings: Arc::new(settings.clone()),
        project_dir: dir.path().to_owned(),
        data_dir: dir.path().join(".flightdeck"),
    });
    engine.use_executor("sim", Arc::new(Panicking));
    let workflow = Workflow::parse(
        "name: w\ntasks:\n  - {id: a, description: Do it, agent: worker}\n  - {id: b, description: Then, agent: worker, depends_on: [a]}\n",
        Path::new("w.yaml"),
    )
    .unwrap();
    let gate = permits::gate(dir.path(), &bus);
    let start = flightdeck::command::Command::StartRun {
        workflow: "w.yaml".into(),
        backend: None,
        max_parallel: None,
    };
    let permit = permits::permit(&gate, start);
    let run = engine.start(plan(&workflow, &registry, &settings).unwrap(), &permit).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), async {
        let mut failed = None;
        while let Some(envelope) = events.recv().await {
            match &envelope.event {
                Event::TaskFailed { error, .. } => failed = Some(error.clone()),
                Event::RunFinished { status, .. } if envelope.run_id.as_ref() == Some(run.id()) => {
                    return (*status, failed);
                }
                _ => {}
            }
        }
        panic!("the bus closed");
    })
    .await
    .expect("the run hung after a panic");
    assert_eq!(finished.0, RunStatus::Failed);
    let error = finished.1.unwrap();
    assert!(error.contains("panicked") && error.contains("bug in the executor for a"), "{error}");
}

/// A backend added to flightdeck.yaml while a host runs applies from its next start: a run
/// that needs it is refused before anything runs, and the refusal says the file has it now
/// (not only that it "is not defined"), so the operator knows to restart the host.
#[tokio::test]
async fn a_backend_added_after_the_host_started_is_refused_with_why() {
    use flightdeck::runtime::{Runtime, RuntimeOptions};
    let dir = project();
    let root = dir.path();
    std::fs::write(
        root.join("agentpool/tier1-core/writer.md"),
        "---\nname: writer\ndescription: Writes\nbackend: writer\n---\nYou write.\n",
    )
    .unwrap();
    let before = "default_role: admin\nbackends:\n  sim:\n    kind: sim\n";
    std::fs::write(root.join("flightdeck.yaml"), before).unwrap();
    let workflow = root.join("workflows/write.yaml");
    std::fs::write(
        &workflow,
        "name: write\ntasks:\n  - id: draft\n    description: Draft it\n    agent: writer\n",
    )
    .unwrap();
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: root.to_owned(),
        data_dir: root.join(".flightdeck"),
        settings: Settings::load(root).unwrap(),
        watch_agents: false,
    })
    .unwrap();
    let refused = |runtime: &Runtime| {
        runtime.plan(&workflow, &flightdeck::workflow::PlanOverrides::default()).unwrap_err()
    };
    let message = refused(&runtime).to_string();
    assert!(message.contains("write.yaml:5: task `draft`: agent `writer` runs on backend `writer`, which is not defined in flightdeck.yaml (defined: sim)"), "{message}");
    assert!(!message.contains("after this host started"), "{message}");

    std::fs::write(root.join("flightdeck.yaml"), format!("{before}  writer:\n    kind: sim\n"))
        .unwrap();
    let message = refused(&runtime).to_string();
    assert!(
        message.ends_with(
            "(defined: sim); flightdeck.yaml has it now, but it was added after this host \
             started: backends apply from the host's next start"
        ),
        "{message}"
    );
    runtime.shutdown().await;
}
