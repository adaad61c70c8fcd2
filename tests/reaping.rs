//! Processes that detach are still found: a descendant that leaves the attempt's process group
//! or session and ignores SIGTERM is stopped on timeout, cancel, the program's own exit, a
//! dropped attempt, Flightdeck's shutdown and Flightdeck's death. Real subprocesses; "left
//! alive" is judged by a marker in the argv of every process the shape starts, read from
//! `/proc/*/cmdline`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flightdeck::config::{CodingAgentBackend, DenialPolicy, ProcessBackend, ProcessInput};
use flightdeck::exec::claude_code::ClaudeCodeExecutor;
use flightdeck::exec::env::EnvSource;
use flightdeck::exec::process::ProcessExecutor;
use flightdeck::exec::{ExecError, ExecOutcome, ExecRequest, Executor, OutputSink};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rstest::rstest;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const GRACE: Duration = Duration::from_millis(200);
const LONG: Duration = Duration::from_secs(30);

/// A marker no other test (or other run of this one) uses.
fn marker(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("fd-reap-{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Pids of live processes whose argv contains `marker` (a zombie's argv reads empty).
fn alive_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `limit` for every process with `marker` to go; the ones left otherwise.
fn left_after(marker: &str, limit: Duration) -> Vec<i32> {
    let until = Instant::now() + limit;
    loop {
        let alive = alive_with(marker);
        if alive.is_empty() || Instant::now() >= until {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills what a failed test left behind, so one failure does not leave sleepers around.
fn clean_up(pids: &[i32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

/// A way for a descendant to leave its attempt.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `setsid`: a new session and process group.
    Setsid,
    /// `setpgid(0, 0)`: a new process group in the same session.
    Setpgid,
    /// A double fork: the middle process exits, the grandchild is orphaned.
    DoubleFork,
    /// `nohup`, with SIGTERM ignored as well.
    Nohup,
    /// A daemon: fork, `setsid`, fork again, close stdin, stdout and stderr.
    Daemon,
}

impl Shape {
    /// Shell text that starts a process ignoring SIGTERM (and HUP, INT) with `marker` in its
    /// argv, which creates `ready` once it runs. `sleep` inherits the ignored signals.
    fn start(self, marker: &str, ready: &Path) -> String {
        let ready = ready.display();
        let hold = format!(
            "sh -c 'trap \"\" TERM HUP INT; touch {ready}; while :; do sleep 0.1; done' {marker}"
        );
        match self {
            Self::Setsid => format!("setsid {hold} &"),
            Self::Setpgid => format!("perl -e 'setpgrp(0, 0); exec @ARGV' {hold} &"),
            Self::DoubleFork => format!("( {hold} & ) "),
            Self::Nohup => format!("nohup {hold} >/dev/null 2>&1 &"),
            Self::Daemon => format!(
                "( setsid sh -c '( exec </dev/null >/dev/null 2>&1; \
                 trap \"\" TERM HUP INT; touch {ready}; while :; do sleep 0.1; done ) & exit 0' \
                 {marker} & ) "
            ),
        }
    }
}

/// How the attempt ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Timeout,
    Cancel,
    /// The program exits by itself, leaving the shape's process behind.
    Exit,
    /// The attempt's future is dropped (the runtime going away mid-attempt).
    Dropped,
}

/// The script: start the shape, wait until its process runs, say so, then either exit or
/// wait for ever.
fn script(shape: Shape, marker: &str, ready: &Path, ending: Ending) -> String {
    let wait = format!("while [ ! -e {} ]; do sleep 0.01; done", ready.display());
    let tail = if matches!(ending, Ending::Exit) { "exit 0" } else { "exec sleep 1000" };
    format!("{}\n{wait}\necho ready\n{tail}\n", shape.start(marker, ready))
}

fn process_backend(script: &str) -> ProcessBackend {
    ProcessBackend {
        command: vec!["sh".into(), "-c".into(), script.into()],
        input: ProcessInput::Stdin,
        workdir: None,
        env_allow: vec!["PATH".into()],
        env: BTreeMap::new(),
        output_limit_bytes: 1024 * 1024,
        workspace: None,
    }
}

fn request(project_dir: &Path, timeout: Duration) -> ExecRequest {
    ExecRequest {
        run: "r-1".into(),
        task: "detach".into(),
        agent: "daemoniser".into(),
        attempt: 1,
        system_prompt: "You start daemons.\n".into(),
        task_description: "Leave something running".into(),
        context: json!({}),
        timeout,
        project_dir: project_dir.to_owned(),
        model: None,
        tools: Vec::new(),
        workdir: None,
    }
}

fn env() -> EnvSource {
    EnvSource::fixed([("PATH", std::env::var("PATH").unwrap())])
}

/// A sink that fires `ready` on the line `ready`.
fn sink(ready: CancellationToken) -> OutputSink {
    flightdeck::exec::reaper::install(env!("CARGO_BIN_EXE_flightdeck"));
    Arc::new(move |_, line: String| {
        if line.trim() == "ready" {
            ready.cancel();
        }
    })
}

/// Runs `executor` until it returns, cancelling it or dropping it once the script said
/// `ready` when `ending` asks for it. `None` for a dropped attempt.
async fn attempt(
    executor: Arc<dyn Executor>,
    req: ExecRequest,
    ending: Ending,
) -> Option<Result<ExecOutcome, ExecError>> {
    let ready = CancellationToken::new();
    let cancel = CancellationToken::new();
    let output = sink(ready.clone());
    let task = {
        let cancel = cancel.clone();
        tokio::spawn(async move { executor.execute(req, output, cancel).await })
    };
    match ending {
        Ending::Timeout | Ending::Exit => Some(task.await.unwrap()),
        Ending::Cancel => {
            ready.cancelled().await;
            cancel.cancel();
            Some(task.await.unwrap())
        }
        Ending::Dropped => {
            ready.cancelled().await;
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            None
        }
    }
}

#[rstest]
#[tokio::test]
async fn no_detached_process_outlives_its_attempt(
    #[values(Shape::Setsid, Shape::Setpgid, Shape::DoubleFork, Shape::Nohup, Shape::Daemon)]
    shape: Shape,
    #[values(Ending::Timeout, Ending::Cancel, Ending::Exit, Ending::Dropped)] ending: Ending,
) {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker(&format!("{shape:?}-{ending:?}").to_lowercase());
    let ready = dir.path().join("ready");
    let timeout = if matches!(ending, Ending::Timeout) { Duration::from_secs(2) } else { LONG };
    let executor: Arc<dyn Executor> = Arc::new(
        ProcessExecutor::new(process_backend(&script(shape, &mark, &ready, ending)))
            .with_env(env())
            .with_kill_grace(GRACE),
    );
    let result = attempt(executor, request(dir.path(), timeout), ending).await;
    assert!(ready.exists(), "the {shape:?} process never started");
    match (ending, result) {
        (Ending::Timeout, Some(result)) => assert_eq!(result, Err(ExecError::Timeout(timeout))),
        (Ending::Cancel, Some(result)) => assert_eq!(result, Err(ExecError::Cancelled)),
        (Ending::Exit, Some(result)) => assert_eq!(result.unwrap().output.trim(), "ready"),
        (Ending::Dropped, None) => {}
        (ending, result) => panic!("{ending:?} gave {result:?}"),
    }
    // A returned attempt has already stopped everything; a dropped one stops in the
    // background, within the grace and the SIGKILL wait.
    let limit =
        if matches!(ending, Ending::Dropped) { Duration::from_secs(5) } else { Duration::ZERO };
    let left = left_after(&mark, limit);
    clean_up(&left);
    assert!(left.is_empty(), "{shape:?} on {ending:?} left {left:?} alive");
}

#[tokio::test]
async fn the_program_starts_with_no_signal_blocked_or_ignored_by_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let executor: Arc<dyn Executor> = Arc::new(
        ProcessExecutor::new(process_backend("grep -E '^Sig(Blk|Ign)' /proc/self/status"))
            .with_env(env()),
    );
    let output = attempt(executor, request(dir.path(), LONG), Ending::Exit).await.unwrap();
    let output = output.unwrap().output;
    // The shim blocks TERM, INT, HUP and CHLD to take them with sigwait.
    assert!(output.contains("SigBlk:\t0000000000000000"), "{output}");
    // Rust ignores SIGPIPE in the shim; std restores it in the program. (Whatever the test
    // harness itself ignores is inherited and not the shim's business.)
    let ignored = output.lines().find_map(|l| l.strip_prefix("SigIgn:\t")).unwrap();
    let ignored = u64::from_str_radix(ignored.trim(), 16).unwrap();
    for signal in
        [Signal::SIGPIPE, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD]
    {
        assert_eq!(ignored & (1 << (signal as u32 - 1)), 0, "{signal} ignored: {output}");
    }
}

#[tokio::test]
async fn a_signal_that_kills_the_program_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    for (signal, expected) in [("SEGV", "signal 11 (SIGSEGV)"), ("PIPE", "signal 13 (SIGPIPE)")] {
        let executor: Arc<dyn Executor> = Arc::new(
            ProcessExecutor::new(process_backend(&format!("kill -{signal} $$"))).with_env(env()),
        );
        let result = attempt(executor, request(dir.path(), LONG), Ending::Exit).await.unwrap();
        match result {
            Err(ExecError::Exit { status, .. }) => assert_eq!(status, expected),
            other => panic!("{signal}: {other:?}"),
        }
    }
}

/// A fake `claude` that starts a detached process and then waits, printing nothing.
fn detaching_cli(dir: &Path, marker: &str, ready: &Path) -> String {
    let path = dir.join("claude");
    let text = format!(
        "#!/bin/sh\n{}\nwhile [ ! -e {} ]; do sleep 0.01; done\necho ready >&2\nexec sleep 1000\n",
        Shape::Setsid.start(marker, ready),
        ready.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[rstest]
#[tokio::test]
async fn coding_agents_take_the_same_path(
    #[values(Ending::Timeout, Ending::Cancel)] ending: Ending,
) {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker(&format!("claude-{ending:?}").to_lowercase());
    let ready = dir.path().join("ready");
    let backend = CodingAgentBackend {
        program: Some(detaching_cli(dir.path(), &mark, &ready)),
        args: Vec::new(),
        env_allow: Some(vec!["PATH".into()]),
        env: BTreeMap::new(),
        workspace: None,
        permission_mode: None,
        max_turns: None,
        on_denial: DenialPolicy::Fail,
        partial_messages: false,
        model: None,
        output_limit_bytes: 1024 * 1024,
    };
    let executor: Arc<dyn Executor> =
        Arc::new(ClaudeCodeExecutor::new(backend).with_env(env()).with_kill_grace(GRACE));
    let timeout = if matches!(ending, Ending::Timeout) { Duration::from_secs(2) } else { LONG };
    let result = attempt(executor, request(dir.path(), timeout), ending).await.unwrap();
    assert!(ready.exists(), "the fake CLI never started its process");
    let expected = if matches!(ending, Ending::Timeout) {
        ExecError::Timeout(timeout)
    } else {
        ExecError::Cancelled
    };
    assert_eq!(result.unwrap_err(), expected);
    let left = alive_with(&mark);
    clean_up(&left);
    assert!(left.is_empty(), "claude on {ending:?} left {left:?} alive");
}

// ---- Flightdeck's shutdown and death ----

/// A project whose one task runs a script that starts a `setsid` process ignoring SIGTERM,
/// says `ready` in a file and waits.
struct Project {
    dir: tempfile::TempDir,
    marker: String,
}

impl Project {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let marker = marker(name);
        let ready = root.join("ready");
        std::fs::write(
            root.join("flightdeck.yaml"),
            "users:\n  ann: admin\ndefault_backend: local\nbackends:\n  local:\n    kind: process\n    \
             command: [sh, agent.sh]\n    env_allow: [PATH]\n",
        )
        .unwrap();
        std::fs::write(
            root.join("agent.sh"),
            format!(
                "{}\nwhile [ ! -e {} ]; do sleep 0.01; done\nexec sleep 1000\n",
                Shape::Setsid.start(&marker, &ready),
                ready.display()
            ),
        )
        .unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("daemoniser.md"),
            "---\nname: daemoniser\ndescription: Starts daemons\nbackend: local\n---\nYou start daemons.\n",
        )
        .unwrap();
        std::fs::write(
            root.join("slow.yaml"),
            "name: slow\ntasks:\n  - {id: detach, description: Wait a long time, agent: daemoniser, timeout: 10m}\n",
        )
        .unwrap();
        Self { dir, marker }
    }

    /// `flightdeck run slow.yaml`, once the task's detached process runs.
    fn start(&self) -> std::process::Child {
        let root = self.dir.path();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .current_dir(root)
            .args(["--project-dir", root.to_str().unwrap(), "--as", "ann", "run", "slow.yaml"])
            .env_remove("FLIGHTDECK_USER")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("stderr.txt")).unwrap())
            .spawn()
            .unwrap();
        let until = Instant::now() + LONG;
        while !root.join("ready").exists() {
            let stderr = std::fs::read_to_string(root.join("stderr.txt")).unwrap();
            assert!(Instant::now() < until, "the task's process never started: {stderr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive_with(&self.marker).is_empty());
        child
    }
}

#[rstest]
#[case::shutdown_on_sigterm(&[Signal::SIGTERM])]
#[case::exit_at_once_on_a_second_signal(&[Signal::SIGTERM, Signal::SIGTERM])]
#[case::killed(&[Signal::SIGKILL])]
fn no_detached_process_outlives_flightdeck(#[case] signals: &[Signal]) {
    let project = Project::new("flightdeck");
    let mut flightdeck = project.start();
    for signal in signals {
        kill(Pid::from_raw(flightdeck.id() as i32), *signal).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    flightdeck.wait().unwrap();
    // On shutdown the run is cancelled and waited for; on exit or death the kernel tells the
    // shim (its parent-death signal), which stops the tree within the grace and the wait.
    let left = left_after(&project.marker, Duration::from_secs(5));
    clean_up(&left);
    assert!(left.is_empty(), "after {signals:?} to flightdeck, {left:?} are alive");
}
