//! The gate is the only way in (issue 12, point 1): every change a [`Runtime`] makes, a
//! person's or its own, is a command that passed the gate, and the audit log says both that
//! it was let through and what it then did. Read-only commands never write the run store.
//!
//! That nothing outside the gate *can* change runtime state is checked by the compiler:
//! see the `compile_fail` examples on [`flightdeck::governance::Permit`] and
//! [`flightdeck::runtime::Runtime`] (they run as doc tests).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use flightdeck::command::{Command, Request};
use flightdeck::config::Settings;
use flightdeck::event::{Envelope, Event};
use flightdeck::governance::SYSTEM_USER;
use flightdeck::ids::{AgentId, RunId, TaskId, UserId};
use flightdeck::runtime::{AUDIT_FILE, Runtime, RuntimeOptions};
use flightdeck::workflow::PlanOverrides;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

const SETTINGS: &str = "users:
  ann: admin
  vic: viewer
policies:
  two_person_at: off
  self_approval: true
backends:
  sim:
    kind: sim
    latency_min: 1ms
    latency_max: 5ms
  slow:
    kind: sim
    latency_min: 1h
    latency_max: 1h
";

fn project() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agentpool/core");
    std::fs::create_dir_all(&agents).unwrap();
    let agent = "---\nname: alpha\ndescription: Agent alpha\n---\nHi.\n";
    std::fs::write(agents.join("alpha.md"), agent).unwrap();
    let sleepy = "---\nname: sleepy\ndescription: Agent sleepy\nbackend: slow\n---\nHi.\n";
    std::fs::write(agents.join("sleepy.md"), sleepy).unwrap();
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    let files = [
        (
            "two.yaml",
            "tasks:\n  - {id: a, description: x, agent: alpha}\n  - {id: b, description: y, agent: alpha, depends_on: [a]}\n",
        ),
        ("long.yaml", "tasks:\n  - {id: wait, description: Wait a long time, agent: sleepy}\n"),
        (
            "risky.yaml",
            "tasks:\n  - {id: ship, description: Release to production, agent: alpha}\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(workflows.join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("flightdeck.yaml"), SETTINGS).unwrap();
    dir
}

fn runtime(dir: &Path, watch_agents: bool) -> Runtime {
    let settings = Settings::parse(SETTINGS, Path::new("flightdeck.yaml")).unwrap();
    Runtime::start(RuntimeOptions {
        project_dir: dir.to_owned(),
        data_dir: dir.join(".flightdeck"),
        settings,
        watch_agents,
    })
    .unwrap()
}

fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(".flightdeck").join(AUDIT_FILE))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The audit records of `action`, as `(user, outcome, detail)`.
fn records(dir: &Path, action: &str) -> Vec<(String, String, Value)> {
    audit(dir)
        .into_iter()
        .filter(|record| record["action"] == action)
        .map(|record| {
            let text = |key: &str| record[key].as_str().unwrap_or_default().to_owned();
            (text("user"), text("outcome"), record["detail"].clone())
        })
        .collect()
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
    .expect("the event did not come")
}

async fn started(runtime: &Runtime, user: &str, workflow: &str) -> RunId {
    let mut events = runtime.bus().sink();
    let request = Request { user: UserId::new(user), command: start(workflow) };
    runtime.submit(request).await.unwrap();
    let envelope = next(&mut events, |e| matches!(e, Event::RunStarted { .. })).await;
    envelope.run_id.clone().unwrap()
}

#[tokio::test]
async fn an_accepted_command_is_audited_twice_when_it_was_let_through_and_what_it_did() {
    let dir = project();
    let runtime = runtime(dir.path(), false);
    let run = started(&runtime, "ann", "two.yaml").await;
    runtime.wait_run(&run).await.unwrap();

    let starts = records(dir.path(), "start_run");
    let outcomes: Vec<&str> = starts.iter().map(|(_, outcome, _)| outcome.as_str()).collect();
    assert_eq!(outcomes, ["accepted", "succeeded"], "{starts:#?}");
    let did = &starts[1].2["did"];
    assert_eq!(did["run"], run.as_str(), "{did}");
    assert_eq!(did["tasks"], 2, "{did}");

    // A command the gate lets through but that cannot be done is recorded as failed, with why.
    let unknown = Command::CancelRun { run: RunId::new("r-nobody") };
    let error = runtime.submit(Request { user: UserId::new("ann"), command: unknown }).await;
    assert!(error.is_err());
    let cancels = records(dir.path(), "cancel_run");
    let (user, outcome, detail) = cancels.last().unwrap();
    assert_eq!((user.as_str(), outcome.as_str()), ("ann", "failed"), "{cancels:#?}");
    assert!(detail["error"].as_str().unwrap().contains("r-nobody"), "{detail}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn shutting_down_cancels_live_runs_as_the_system_through_the_gate() {
    let dir = project();
    let runtime = runtime(dir.path(), false);
    let mut events = runtime.bus().sink();
    let run = started(&runtime, "ann", "long.yaml").await;
    next(&mut events, |e| matches!(e, Event::TaskStarted { .. })).await;
    runtime.shutdown().await;

    let cancels = records(dir.path(), "cancel_run");
    let mine: Vec<_> = cancels.iter().filter(|(_, _, d)| d["run"] == run.as_str()).collect();
    assert_eq!(mine.len(), 2, "accepted, then what it did: {cancels:#?}");
    for (user, _, detail) in &mine {
        assert_eq!(user, SYSTEM_USER);
        assert_eq!(detail["identity"]["from"], "system", "{detail}");
    }
    assert_eq!(mine[0].1, "accepted");
    assert!(mine[0].2["why"].as_str().unwrap().contains("shutting down"), "{:?}", mine[0]);
    assert_eq!(mine[1].1, "succeeded");
}

#[tokio::test]
async fn a_headless_refusal_is_a_reject_by_the_system_that_passes_the_gate() {
    let dir = project();
    let runtime = runtime(dir.path(), false);
    let mut events = runtime.bus().sink();
    let run = started(&runtime, "ann", "risky.yaml").await;
    next(&mut events, |e| matches!(e, Event::TaskAwaitingApproval { .. })).await;
    runtime.refuse_unattended(&run, &TaskId::new("ship"), "nobody can approve here").unwrap();
    runtime.wait_run(&run).await.unwrap();

    let rejects = records(dir.path(), "reject");
    let outcomes: Vec<(&str, &str)> =
        rejects.iter().map(|(user, outcome, _)| (user.as_str(), outcome.as_str())).collect();
    assert_eq!(outcomes, [(SYSTEM_USER, "accepted"), (SYSTEM_USER, "succeeded")], "{rejects:#?}");
    assert_eq!(rejects[0].2["command"]["note"], "nobody can approve here");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_hot_reload_is_a_reload_by_the_system_and_says_what_changed() {
    let dir = project();
    let runtime = runtime(dir.path(), true);
    let mut events = runtime.bus().sink();
    let text = "---\nname: gamma\ndescription: Agent gamma\n---\nHi.\n";
    std::fs::write(dir.path().join("agentpool/core/gamma.md"), text).unwrap();
    next(&mut events, |e| matches!(e, Event::AgentAdded(a) if a.agent.as_str() == "gamma")).await;
    assert!(runtime.agents().iter().any(|a| a.name == AgentId::new("gamma")));

    let reloads = records(dir.path(), "reload_agents");
    let (user, outcome, detail) = reloads.last().unwrap();
    assert_eq!((user.as_str(), outcome.as_str()), (SYSTEM_USER, "succeeded"), "{reloads:#?}");
    assert_eq!(detail["did"]["added"], serde_json::json!(["gamma"]), "{detail}");
    let accepted = &reloads[reloads.len() - 2];
    assert_eq!(accepted.1, "accepted");
    assert!(accepted.2["why"].as_str().unwrap().contains("hot reload"), "{accepted:?}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_viewer_changes_nothing_and_each_refusal_is_audited() {
    let dir = project();
    let runtime = runtime(dir.path(), false);
    let run = started(&runtime, "ann", "two.yaml").await;
    runtime.wait_run(&run).await.unwrap();
    let commands = [
        start("two.yaml"),
        Command::CancelRun { run: run.clone() },
        Command::RetryTask { run: run.clone(), task: TaskId::new("a") },
        Command::ReloadAgents,
        Command::ReloadSettings,
        Command::PruneRuns { keep: Some(0), before_ms: None },
        Command::ResumeRun { run: run.clone(), backend: None },
    ];
    for command in commands {
        let name = command.name();
        let refused = runtime.submit(Request { user: UserId::new("vic"), command }).await;
        assert!(refused.is_err(), "{name} was let through for a viewer");
        let (user, outcome, _) = records(dir.path(), name).last().cloned().unwrap();
        assert_eq!((user.as_str(), outcome.as_str()), ("vic", "denied"), "{name}");
    }
    assert!(
        runtime
            .start_planned(
                "vic",
                runtime.plan(Path::new("workflows/two.yaml"), &PlanOverrides::default()).unwrap()
            )
            .is_err()
    );
    assert!(
        runtime
            .prune_runs("vic", flightdeck::store::PruneRule { keep: Some(0), before_ms: None })
            .await
            .is_err()
    );
    assert!(runtime.resume_run("vic", run.as_str(), None).is_err());
    assert_eq!(runtime.run_ids(), [run], "nothing was started for the viewer");
    runtime.shutdown().await;
}

#[tokio::test]
async fn an_admin_reloads_the_settings_through_the_gate_and_roles_change_at_once() {
    let dir = project();
    let runtime = runtime(dir.path(), false);
    let viewer_prunes = || Request {
        user: UserId::new("vic"),
        command: Command::PruneRuns { keep: Some(5), before_ms: None },
    };
    assert!(runtime.submit(viewer_prunes()).await.is_err(), "vic is a viewer");

    // A file that does not load: refused by what it did, nothing changes.
    let file = dir.path().join("flightdeck.yaml");
    std::fs::write(&file, SETTINGS.replace("  vic: viewer\n", "  vic: viewer\n  vic: admin\n"))
        .unwrap();
    let reload = |user: &str| Request { user: UserId::new(user), command: Command::ReloadSettings };
    let error = runtime.submit(reload("ann")).await.unwrap_err().to_string();
    assert!(error.contains("duplicate") && error.contains("flightdeck.yaml"), "{error}");
    let (_, outcome, detail) = records(dir.path(), "reload_settings").last().cloned().unwrap();
    assert_eq!(outcome, "failed", "{detail}");
    assert!(runtime.submit(viewer_prunes()).await.is_err(), "still a viewer");

    std::fs::write(&file, SETTINGS.replace("  vic: viewer\n", "  vic: operator\n")).unwrap();
    runtime.submit(reload("ann")).await.unwrap();
    let (user, outcome, detail) = records(dir.path(), "reload_settings").last().cloned().unwrap();
    assert_eq!((user.as_str(), outcome.as_str()), ("ann", "succeeded"), "{detail}");
    assert_eq!(detail["did"]["changes"], serde_json::json!(["users.vic: viewer → operator"]));
    runtime.submit(viewer_prunes()).await.expect("vic operates now");
    runtime.shutdown().await;
}

fn flightdeck(dir: &Path, args: &[&str]) -> std::process::Output {
    Process::new(env!("CARGO_BIN_EXE_flightdeck"))
        .current_dir(dir)
        .args(["--project-dir", dir.to_str().unwrap()])
        .args(args)
        .env("FLIGHTDECK_USER", "ann")
        .output()
        .unwrap()
}

fn digest(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn reading_commands_never_write_the_run_store() {
    let dir = project();
    let ran = flightdeck(dir.path(), &["run", "workflows/two.yaml"]);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let store = dir.path().join(".flightdeck/runs.db");
    // Fold the write-ahead log into the file first, so only the file needs comparing.
    let conn = rusqlite::Connection::open(&store).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(conn);
    let before = digest(&store);
    let readers: [&[&str]; 7] = [
        &["runs", "list"],
        &["runs", "list", "--json"],
        &["runs", "show", "last"],
        &["runs", "events", "last"],
        &["audit", "verify"],
        &["agents", "stats"],
        &["plan", "workflows/two.yaml"],
    ];
    for args in readers {
        let output = flightdeck(dir.path(), args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(digest(&store), before, "{args:?} changed the run store");
    }

    // A store an older version wrote is read as it is or refused, never migrated in place.
    let conn = rusqlite::Connection::open(&store).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    conn.pragma_update(None, "user_version", version - 1).unwrap();
    drop(conn);
    let older = digest(&store);
    let output = flightdeck(dir.path(), &["runs", "list"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("older than this Flightdeck") && stderr.contains("runs.db"),
        "{stderr}"
    );
    assert_eq!(digest(&store), older, "a refused read changed the store");
}
