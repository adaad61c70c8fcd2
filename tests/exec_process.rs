//! The process executor with real subprocesses (`sh`, `sleep`, `yes`, `head`, `cat`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flightdeck::config::{ProcessBackend, ProcessInput};
use flightdeck::event::OutputStream;
use flightdeck::exec::env::EnvSource;
use flightdeck::exec::process::ProcessExecutor;
use flightdeck::exec::{ExecError, ExecOutcome, ExecRequest, Executor, OutputSink};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn backend(command: &[&str]) -> ProcessBackend {
    ProcessBackend {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        input: ProcessInput::Stdin,
        workdir: None,
        env_allow: vec!["PATH".into()],
        env: BTreeMap::new(),
        output_limit_bytes: 1024 * 1024,
        workspace: None,
    }
}

fn sh(script: &str) -> ProcessBackend {
    backend(&["sh", "-c", script])
}

fn request(project_dir: &Path, timeout: Duration) -> ExecRequest {
    ExecRequest {
        run: "r-42".into(),
        task: "build-api".into(),
        agent: "backend-architect".into(),
        attempt: 2,
        system_prompt: "You are a backend architect.\n".into(),
        task_description: "Design the orders API".into(),
        context: json!({"dependencies": {"research": "use postgres"}}),
        timeout,
        project_dir: project_dir.to_owned(),
        model: None,
        tools: Vec::new(),
        workdir: None,
    }
}

/// The real PATH, so `sh` and friends are found.
fn env() -> EnvSource {
    EnvSource::fixed([("PATH", std::env::var("PATH").unwrap())])
}

type Seen = Arc<Mutex<Vec<(OutputStream, String)>>>;

/// A sink that records lines and also forwards them, so a test can react while the program
/// still runs.
fn sink() -> (OutputSink, Seen, mpsc::UnboundedReceiver<String>) {
    // Every attempt runs under the reaper shim, as it does in the `flightdeck` binary.
    flightdeck::exec::reaper::install(env!("CARGO_BIN_EXE_flightdeck"));
    let seen: Seen = Arc::default();
    let store = Arc::clone(&seen);
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: OutputSink = Arc::new(move |stream, line: String| {
        let _ = tx.send(line.clone());
        store.lock().unwrap().push((stream, line));
    });
    (sink, seen, rx)
}

async fn run(
    config: ProcessBackend,
    dir: &Path,
    timeout: Duration,
) -> (Result<ExecOutcome, ExecError>, Seen) {
    let executor = ProcessExecutor::new(config).with_env(env());
    let (sink, seen, _rx) = sink();
    let result = executor.execute(request(dir, timeout), sink, CancellationToken::new()).await;
    (result, seen)
}

const LONG: Duration = Duration::from_secs(20);

/// True once `pid` is gone or a zombie waiting for its new parent to reap it.
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

async fn wait_dead(pid: i32) -> bool {
    for _ in 0..100 {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn lines_reach_the_sink_while_the_program_runs() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    // The program waits for a file the test creates only after seeing the first line, so
    // output held back until exit would deadlock (and end in a timeout).
    let config = backend(&[
        "sh",
        "-c",
        "echo ready; echo warming up >&2; while [ ! -e \"$1\" ]; do sleep 0.01; done; echo done",
        "sh",
        flag.to_str().unwrap(),
    ]);
    let executor = ProcessExecutor::new(config).with_env(env());
    let (sink, seen, mut rx) = sink();
    let watcher = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if line == "ready" {
                std::fs::write(&flag, "").unwrap();
            }
        }
    });
    let result = executor.execute(request(dir.path(), LONG), sink, CancellationToken::new()).await;
    assert_eq!(result.unwrap().output, "ready\ndone");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&(OutputStream::Stdout, "ready".into())), "{seen:?}");
    assert!(seen.contains(&(OutputStream::Stderr, "warming up".into())), "{seen:?}");
    let stdout: Vec<&str> =
        seen.iter().filter(|(s, _)| *s == OutputStream::Stdout).map(|(_, l)| l.as_str()).collect();
    assert_eq!(stdout, ["ready", "done"]);
    watcher.abort();
}

#[tokio::test]
async fn stdin_carries_prompt_task_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(backend(&["cat"]), dir.path(), LONG).await;
    let expected = "You are a backend architect.\n\nDesign the orders API\n\nContext:\n{\n  \"dependencies\": {\n    \"research\": \"use postgres\"\n  }\n}";
    assert_eq!(result.unwrap().output, expected);
}

#[tokio::test]
async fn placeholders_identity_variables_and_workdir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let mut config = backend(&[
        "sh",
        "-c",
        "echo \"$1 $2\"; echo \"$FLIGHTDECK_RUN $FLIGHTDECK_TASK $FLIGHTDECK_AGENT $FLIGHTDECK_ATTEMPT\"; pwd",
        "sh",
        "agent={agent}",
        "task={task}",
    ]);
    config.workdir = Some(PathBuf::from("work"));
    let (result, _) = run(config, dir.path(), LONG).await;
    let output = result.unwrap().output;
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "agent=backend-architect task=build-api");
    assert_eq!(lines[1], "r-42 build-api backend-architect 2");
    let workdir = dir.path().join("work").canonicalize().unwrap();
    assert_eq!(Path::new(lines[2]).canonicalize().unwrap(), workdir);
}

#[tokio::test]
async fn only_allowed_and_fixed_variables_reach_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("env");
    config.env_allow = vec!["PATH".into(), "ALLOWED_ONE".into(), "NOT_SET_ANYWHERE".into()];
    config.env.insert("FIXED_ONE".into(), "fixed".into());
    let env = EnvSource::fixed([
        ("PATH", std::env::var("PATH").unwrap()),
        ("ALLOWED_ONE", "yes".into()),
        ("SECRET_TOKEN", "do-not-pass".into()),
        ("HOME", "/home/nobody".into()),
    ]);
    let executor = ProcessExecutor::new(config).with_env(env);
    let (sink, _, _rx) = sink();
    let result = executor.execute(request(dir.path(), LONG), sink, CancellationToken::new()).await;
    let output = result.unwrap().output;
    let vars: BTreeMap<&str, &str> = output.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("ALLOWED_ONE"), Some(&"yes"));
    assert_eq!(vars.get("FIXED_ONE"), Some(&"fixed"));
    assert_eq!(vars.get("FLIGHTDECK_TASK"), Some(&"build-api"));
    assert!(!vars.contains_key("SECRET_TOKEN"), "{output}");
    assert!(!vars.contains_key("HOME"), "{output}");
    assert!(!vars.contains_key("NOT_SET_ANYWHERE"), "{output}");
}

#[tokio::test]
async fn real_environment_is_cleared_too() {
    // With the real process environment as the source, nothing but PATH may pass (the shell
    // sets PWD, SHLVL and `_` itself).
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("env");
    config.env_allow = vec!["PATH".into()];
    let executor = ProcessExecutor::new(config);
    let (sink, _, _rx) = sink();
    let result = executor.execute(request(dir.path(), LONG), sink, CancellationToken::new()).await;
    let output = result.unwrap().output;
    let names: Vec<&str> =
        output.lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)).collect();
    for (name, _) in std::env::vars() {
        let allowed = name == "PATH" || name == "PWD" || name == "SHLVL" || name == "_";
        assert!(allowed || !names.contains(&name.as_str()), "{name} leaked into the child");
    }
}

#[tokio::test]
async fn non_zero_exit_reports_status_and_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for i in 1 2 3 4 5 6 7; do echo \"noise $i\" >&2; done; echo 'fatal: no schema' >&2; exit 3";
    let (result, _) = run(sh(script), dir.path(), LONG).await;
    match result.unwrap_err() {
        ExecError::Exit { status, stderr_tail } => {
            assert_eq!(status, "exit code 3");
            assert!(stderr_tail.ends_with("fatal: no schema"), "{stderr_tail}");
            assert!(!stderr_tail.contains("noise 1"), "only the last lines: {stderr_tail}");
        }
        other => panic!("expected Exit, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_program_is_a_spawn_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(backend(&["flightdeck-no-such-program", "x"]), dir.path(), LONG).await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, ExecError::Spawn { program, .. } if program == "flightdeck-no-such-program"),
        "{error:?}"
    );
    assert!(error.to_string().contains("flightdeck-no-such-program"), "{error}");
}

#[tokio::test]
async fn missing_workdir_is_a_spawn_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("true");
    config.workdir = Some(PathBuf::from("nowhere"));
    let (result, _) = run(config, dir.path(), LONG).await;
    let error = result.unwrap_err();
    assert!(matches!(error, ExecError::Spawn { .. }), "{error:?}");
    assert!(error.to_string().contains("nowhere"), "{error}");
}

/// Runs `script` (which prints the pid of a background grandchild first), waits for that
/// line, and returns the grandchild pid with the result and the time taken.
async fn run_group(
    script: &str,
    timeout: Duration,
    cancel_after_start: bool,
) -> (i32, Result<ExecOutcome, ExecError>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let executor = ProcessExecutor::new(sh(script)).with_env(env());
    let (sink, _, mut rx) = sink();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let pid = Arc::new(Mutex::new(None));
    let pid_seen = Arc::clone(&pid);
    tokio::spawn(async move {
        if let Some(line) = rx.recv().await {
            *pid_seen.lock().unwrap() = line.trim().parse::<i32>().ok();
            if cancel_after_start {
                trigger.cancel();
            }
        }
    });
    let started = Instant::now();
    let result = executor.execute(request(dir.path(), timeout), sink, cancel).await;
    let elapsed = started.elapsed();
    let pid = pid.lock().unwrap().expect("the script printed the grandchild pid");
    (pid, result, elapsed)
}

#[tokio::test]
async fn timeout_kills_child_and_grandchild() {
    let timeout = Duration::from_millis(500);
    let (grandchild, result, elapsed) =
        run_group("sleep 1000 & echo $!; sleep 1000", timeout, false).await;
    assert_eq!(result.unwrap_err(), ExecError::Timeout(timeout));
    assert!(elapsed < timeout + Duration::from_secs(1), "took {elapsed:?}");
    assert!(wait_dead(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn group_ignoring_sigterm_is_killed_after_the_grace() {
    let timeout = Duration::from_millis(300);
    // Ignored signals stay ignored across fork and exec, so the grandchild ignores TERM too.
    let (grandchild, result, elapsed) =
        run_group("trap '' TERM; sleep 1000 & echo $!; sleep 1000", timeout, false).await;
    assert_eq!(result.unwrap_err(), ExecError::Timeout(timeout));
    assert!(
        elapsed >= timeout + Duration::from_millis(400),
        "SIGKILL came before the grace: {elapsed:?}"
    );
    assert!(elapsed < timeout + Duration::from_millis(1500), "took {elapsed:?}");
    assert!(wait_dead(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn cancel_kills_the_group_promptly() {
    let (grandchild, result, elapsed) =
        run_group("sleep 1000 & echo $!; sleep 1000", LONG, true).await;
    assert_eq!(result.unwrap_err(), ExecError::Cancelled);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(wait_dead(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn leftovers_are_stopped_when_the_program_exits() {
    // The background sleep keeps stdout open; without stopping the group the attempt would
    // hang until its timeout.
    let (grandchild, result, elapsed) = run_group("sleep 1000 & echo $!", LONG, false).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(wait_dead(grandchild).await, "grandchild {grandchild} survived");
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn hundred_megabytes_of_output_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("yes | head -c 100000000");
    config.output_limit_bytes = 64 * 1024;
    let lines = Arc::new(Mutex::new(0usize));
    let counter = Arc::clone(&lines);
    let sink: OutputSink = Arc::new(move |_, _| *counter.lock().unwrap() += 1);
    let before = peak_rss_kib();
    let executor = ProcessExecutor::new(config).with_env(env());
    let outcome =
        executor.execute(request(dir.path(), LONG), sink, CancellationToken::new()).await.unwrap();
    assert_eq!(outcome.dropped_bytes, 100_000_000 - 64 * 1024);
    assert_eq!(outcome.output.len(), 64 * 1024 - 1, "kept bytes minus the final newline");
    assert_eq!(*lines.lock().unwrap(), 32 * 1024 + 1, "kept lines plus one limit notice");
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 40, "peak memory grew by {grown_mib} MiB");
}

#[tokio::test]
async fn endless_line_is_cut_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("head -c 20000000 /dev/zero | tr '\\0' x");
    config.output_limit_bytes = 100_000;
    let (result, seen) = run(config, dir.path(), LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.dropped_bytes, 20_000_000 - 100_000);
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(_, line)| line.len() <= 16 * 1024), "lines are capped");
    let kept: usize =
        seen.iter().filter(|(s, _)| *s == OutputStream::Stdout).map(|(_, l)| l.len()).sum();
    assert_eq!(kept, 100_000);
}

#[tokio::test]
async fn program_that_ignores_a_large_stdin_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let executor = ProcessExecutor::new(sh("echo skipped")).with_env(env());
    let mut req = request(dir.path(), LONG);
    req.system_prompt = "x".repeat(4 * 1024 * 1024);
    let (sink, _, _rx) = sink();
    let outcome = executor.execute(req, sink, CancellationToken::new()).await.unwrap();
    assert_eq!(outcome.output, "skipped");
}

fn files_backend(script: &str) -> ProcessBackend {
    ProcessBackend { input: ProcessInput::Files, ..sh(script) }
}

#[tokio::test]
async fn files_mode_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"cp "$FLIGHTDECK_IO_DIR/prompt.md" "$FLIGHTDECK_IO_DIR/context.json" .
echo "$FLIGHTDECK_IO_DIR" > io_dir.txt
echo "working on it"
printf '{"output": "schema written", "usage": {"input_tokens": 3, "output_tokens": 4}, "notes": []}' > "$FLIGHTDECK_IO_DIR/output.json""#;
    let (result, seen) = run(files_backend(script), dir.path(), LONG).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "schema written");
    assert_eq!(outcome.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((3, 4)));
    assert!(seen.lock().unwrap().contains(&(OutputStream::Stdout, "working on it".into())));

    let prompt = std::fs::read_to_string(dir.path().join("prompt.md")).unwrap();
    assert!(
        prompt.starts_with("You are a backend architect.\n\n## Task\n\nDesign the orders API\n"),
        "{prompt}"
    );
    assert!(prompt.contains("output.json"), "{prompt}");
    let context: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("context.json")).unwrap())
            .unwrap();
    assert_eq!(context, json!({"dependencies": {"research": "use postgres"}}));
    let io_dir = std::fs::read_to_string(dir.path().join("io_dir.txt")).unwrap();
    assert!(!Path::new(io_dir.trim()).exists(), "the io folder is removed afterwards");
}

#[tokio::test]
async fn files_mode_without_output_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(files_backend("echo forgot"), dir.path(), LONG).await;
    match result.unwrap_err() {
        ExecError::Protocol(message) => assert!(message.contains("no output.json"), "{message}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[tokio::test]
async fn files_mode_with_invalid_output_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (script, expected) in [
        ("echo '{\"output\": ' > \"$FLIGHTDECK_IO_DIR/output.json\"", "not valid JSON"),
        ("echo '{\"result\": 1}' > \"$FLIGHTDECK_IO_DIR/output.json\"", "no `output` field"),
    ] {
        let (result, _) = run(files_backend(script), dir.path(), LONG).await;
        match result.unwrap_err() {
            ExecError::Protocol(message) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected Protocol, got {other:?}"),
        }
    }
}
