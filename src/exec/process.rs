//! A local program run from an argv, never through a shell, in its own process group so a
//! timeout or cancel stops it together with everything it started.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::capture::{LineCapture, OutputBudget};
use super::deadline::Deadline;
use super::env::EnvSource;
use super::reaper::Launch;
use super::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, prompt};
use crate::config::{ProcessBackend, ProcessInput};
use crate::event::TokenUsage;

/// Time between SIGTERM and SIGKILL when stopping a process group.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(500);
/// How long pipes may stay open after the program exited (a descendant that left the
/// process group can hold them forever).
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// How long to wait for the kernel to reap a leader killed with SIGKILL.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Largest `output.json` read in `files` mode.
const MAX_OUTPUT_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// Runs one attempt as one process.
#[derive(Debug, Clone)]
pub struct ProcessExecutor {
    config: ProcessBackend,
    env: EnvSource,
    kill_grace: Duration,
}

impl ProcessExecutor {
    pub fn new(config: ProcessBackend) -> Self {
        Self { config, env: EnvSource::process(), kill_grace: DEFAULT_KILL_GRACE }
    }

    /// Takes the `env_allow` variables from `env` instead of Flightdeck's own environment.
    #[must_use]
    pub fn with_env(mut self, env: EnvSource) -> Self {
        self.env = env;
        self
    }

    /// Changes the time between SIGTERM and SIGKILL.
    #[must_use]
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    fn command(
        &self,
        req: &ExecRequest,
        workdir: &Path,
        io_dir: Option<&Path>,
    ) -> Result<(Command, Launch), ExecError> {
        let Some(program) = self.config.command.first() else {
            return Err(ExecError::Spawn {
                program: String::new(),
                message: "the backend's command is empty".into(),
            });
        };
        let (mut cmd, launch) = Launch::command(program, self.kill_grace);
        cmd.args(self.config.command[1..].iter().map(|arg| {
            arg.replace("{agent}", req.agent.as_str()).replace("{task}", req.task.as_str())
        }));
        cmd.current_dir(workdir).env_clear();
        for name in &self.config.env_allow {
            if let Some(value) = self.env.get(name) {
                cmd.env(name, value);
            }
        }
        cmd.envs(&self.config.env)
            .env("FLIGHTDECK_RUN", req.run.as_str())
            .env("FLIGHTDECK_TASK", req.task.as_str())
            .env("FLIGHTDECK_AGENT", req.agent.as_str())
            .env("FLIGHTDECK_ATTEMPT", req.attempt.to_string());
        if let Some(dir) = io_dir {
            cmd.env("FLIGHTDECK_IO_DIR", dir);
        }
        let stdin = if io_dir.is_some() { Stdio::null() } else { Stdio::piped() };
        cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        launch.isolate(&mut cmd);
        Ok((cmd, launch))
    }

    async fn run(
        &self,
        req: ExecRequest,
        sink: OutputSink,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        let deadline = Deadline::start(req.timeout);
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let program = self.config.command.first().cloned().unwrap_or_default();
        // Inside the attempt's own workspace when it has one.
        let workdir = match &self.config.workdir {
            Some(dir) => req.work_dir().join(dir),
            None => req.work_dir().to_owned(),
        };
        if !workdir.is_dir() {
            return Err(ExecError::Spawn {
                program,
                message: format!("working directory {} does not exist", workdir.display()),
            });
        }
        let io_dir = match self.config.input {
            ProcessInput::Files => Some(write_io_dir(&req).await?),
            ProcessInput::Stdin => None,
        };
        let (mut cmd, launch) = self.command(&req, &workdir, io_dir.as_ref().map(TempDir::path))?;
        let mut child = cmd.spawn().map_err(|e| spawn_error(&program, &workdir, &e))?;
        let group = GroupGuard::of(&child, &launch);

        let stdin_writer = write_stdin(&mut child, prompt::stdin_text(&req));

        let budget = OutputBudget::new(self.config.output_limit_bytes);
        let mut out = LineCapture::stdout(sink.clone(), &budget);
        let mut err = LineCapture::stderr(sink, &budget);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let ending = {
            let pumps = async {
                tokio::join!(
                    async {
                        if let Some(pipe) = stdout {
                            out.pump(pipe).await;
                        }
                    },
                    async {
                        if let Some(pipe) = stderr {
                            err.pump(pipe).await;
                        }
                    },
                );
            };
            supervise(&mut child, &group, pumps, &cancel, &deadline, self.kill_grace, &program)
                .await
        };
        group.disarm();
        if let Some(writer) = stdin_writer {
            writer.abort();
        }

        let status =
            ending?.map_err(|e| ExecError::Other(format!("waiting for `{program}`: {e}")))?;
        if let Some(error) = launch.spawn_failure(status) {
            return Err(spawn_error(&program, &workdir, &error));
        }
        if !status.success() {
            return Err(ExecError::Exit {
                status: describe_status(status),
                stderr_tail: err.tail_text(),
            });
        }
        let dropped_bytes = budget.dropped_bytes();
        match io_dir {
            Some(dir) => {
                let (output, usage) = read_output_json(dir.path()).await?;
                Ok(ExecOutcome { output, usage, dropped_bytes, ..ExecOutcome::default() })
            }
            None => Ok(ExecOutcome {
                output: out.into_kept_text(),
                usage: None,
                dropped_bytes,
                ..ExecOutcome::default()
            }),
        }
    }
}

impl Executor for ProcessExecutor {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn execute(
        &self,
        req: ExecRequest,
        output: OutputSink,
        cancel: CancellationToken,
    ) -> ExecFuture<'_> {
        Box::pin(self.run(req, output, cancel))
    }
}

/// The child's process group. Dropping it (the attempt's future was dropped mid-way) kills
/// the whole group, which `kill_on_drop` alone would not: it only reaches the direct child.
/// When the child is the reaper shim, stopping and dropping send it SIGTERM and let it stop
/// every descendant, including those that left the group.
pub(super) struct GroupGuard {
    leader: Option<Pid>,
    reaped: bool,
}

impl GroupGuard {
    /// The process group led by `child`, which was spawned with `process_group(0)`.
    pub(super) fn of(child: &Child, launch: &Launch) -> Self {
        Self {
            leader: child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw),
            reaped: launch.is_reaped(),
        }
    }

    pub(super) fn signal(&self, signal: Signal) {
        let Some(pgid) = self.leader else { return };
        match killpg(pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pgid = pgid.as_raw(), error = %e, "signalling process group failed");
            }
        }
    }

    fn is_alive(&self) -> bool {
        self.leader.is_some_and(|pgid| killpg(pgid, None::<Signal>).is_ok())
    }

    /// Asks the reaper shim to stop its tree (it sends SIGTERM, waits the grace, SIGKILLs).
    fn signal_shim(&self) {
        let Some(shim) = self.leader else { return };
        if let Err(e) = kill(shim, Signal::SIGTERM)
            && e != Errno::ESRCH
        {
            tracing::warn!(pid = shim.as_raw(), error = %e, "signalling the reaper failed");
        }
    }

    /// SIGTERM to the group, up to `grace` for it to go, then SIGKILL, then reap the leader.
    /// Under the shim, SIGTERM to the shim alone, which does the same for every descendant;
    /// the group gets SIGKILL only if the shim itself does not finish in time.
    pub(super) async fn stop(&self, child: &mut Child, grace: Duration) {
        if self.reaped {
            self.signal_shim();
            if tokio::time::timeout(Launch::stop_wait(grace), child.wait()).await.is_ok() {
                return;
            }
            tracing::warn!("the reaper did not stop its processes in time");
        }
        self.signal(Signal::SIGTERM);
        let until = tokio::time::Instant::now() + grace;
        let _ = tokio::time::timeout_at(until, child.wait()).await;
        while self.is_alive() && tokio::time::Instant::now() < until {
            tokio::time::sleep(GROUP_POLL_INTERVAL).await;
        }
        self.signal(Signal::SIGKILL);
        if tokio::time::timeout(REAP_TIMEOUT, child.wait()).await.is_err() {
            tracing::warn!("process did not exit after SIGKILL");
        }
    }

    pub(super) fn disarm(mut self) {
        self.leader = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.reaped {
            self.signal_shim();
        } else {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// Writes `text` to the child's stdin in the background. A program may exit without reading
/// its input (a bad flag, a prompt it does not need); that is its business.
pub(super) fn write_stdin(child: &mut Child, text: String) -> Option<tokio::task::JoinHandle<()>> {
    child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            if let Err(e) = stdin.write_all(text.as_bytes()).await
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                tracing::debug!(error = %e, "writing the prompt to stdin failed");
            }
        })
    })
}

/// Waits for `child` while `pumps` read its pipes, until it exits, `cancel` fires or the
/// deadline passes. On exit, leftovers in its group are killed (they would hold the pipes
/// open) and the pipes get a moment to drain; on cancel or timeout the whole group is
/// stopped (SIGTERM, then SIGKILL after `kill_grace`) and the reason returned.
pub(super) async fn supervise(
    child: &mut Child,
    group: &GroupGuard,
    pumps: impl Future<Output = ()>,
    cancel: &CancellationToken,
    deadline: &Deadline,
    kill_grace: Duration,
    program: &str,
) -> Result<std::io::Result<ExitStatus>, ExecError> {
    tokio::pin!(pumps);
    let mut pumped = false;
    let ending = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break Err(ExecError::Cancelled),
            status = child.wait() => break Ok(status),
            () = &mut pumps, if !pumped => pumped = true,
            () = tokio::time::sleep_until(deadline.at()) => break Err(deadline.timed_out()),
        }
    };
    match &ending {
        Ok(_) => {
            group.signal(Signal::SIGKILL);
            if !pumped && tokio::time::timeout(DRAIN_AFTER_EXIT, &mut pumps).await.is_err() {
                tracing::warn!(
                    program = %program,
                    "output pipes still open after exit; output may be incomplete"
                );
            }
        }
        Err(_) => group.stop(child, kill_grace).await,
    }
    ending
}

/// Asks the kernel to SIGKILL the child when its host goes away, whatever the way (a crash,
/// SIGKILL, OOM): no agent outlives the process that supervises it. The signal survives
/// `exec`; it is tied to the thread that spawned the child, which for Flightdeck is a runtime
/// worker that lives as long as the runtime. Grandchildren are not covered by the kernel; the
/// reaper shim (`exec::reaper`) stops them, and without it they share the child's process
/// group, which cancel and timeout kill as a whole. The shim uses this for its own child too.
#[allow(unsafe_code)]
pub(crate) fn die_with_host(cmd: &mut std::process::Command) {
    let host = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before `exec`. It only makes the
    // async-signal-safe prctl(2) and getppid(2) system calls and allocates nothing, which is
    // what `pre_exec` requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The host may have died between fork and prctl; then nobody would kill us.
            if nix::unistd::getppid() != host {
                return Err(std::io::Error::other("the host exited while starting the agent"));
            }
            Ok(())
        });
    }
}

pub(super) fn spawn_error(program: &str, workdir: &Path, error: &std::io::Error) -> ExecError {
    let message = match error.kind() {
        std::io::ErrorKind::NotFound => {
            "no such program (check the backend's command and the PATH it passes)".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied (is it executable? working directory {})", workdir.display())
        }
        _ => error.to_string(),
    };
    ExecError::Spawn { program: program.to_owned(), message }
}

pub(super) fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(number) => match Signal::try_from(number) {
            Ok(signal) => format!("signal {number} ({signal})"),
            Err(_) => format!("signal {number}"),
        },
        None => status.to_string(),
    }
}

/// A fresh private folder holding `prompt.md` and `context.json`.
async fn write_io_dir(req: &ExecRequest) -> Result<TempDir, ExecError> {
    let failed = |what: &str, e: std::io::Error| {
        ExecError::Other(format!("cannot prepare the input/output folder ({what}): {e}"))
    };
    let dir = tempfile::Builder::new()
        .prefix("flightdeck-io-")
        .tempdir()
        .map_err(|e| failed("create", e))?;
    tokio::fs::write(dir.path().join("prompt.md"), prompt::prompt_file_text(req))
        .await
        .map_err(|e| failed("prompt.md", e))?;
    let context = serde_json::to_string_pretty(&req.context)
        .map_err(|e| ExecError::Other(format!("cannot encode the task context: {e}")))?;
    tokio::fs::write(dir.path().join("context.json"), context + "\n")
        .await
        .map_err(|e| failed("context.json", e))?;
    Ok(dir)
}

/// The result a `files` program left in `output.json`: `{"output": "...", "usage": {...}}`.
async fn read_output_json(dir: &Path) -> Result<(String, Option<TokenUsage>), ExecError> {
    const EXPECTED: &str = r#"expected {"output": "<result>"}"#;
    let path: PathBuf = dir.join("output.json");
    let size = match tokio::fs::metadata(&path).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ExecError::Protocol(format!(
                "the program exited successfully but wrote no output.json in FLIGHTDECK_IO_DIR ({EXPECTED})"
            )));
        }
        Err(e) => return Err(ExecError::Protocol(format!("cannot read output.json: {e}"))),
    };
    if size > MAX_OUTPUT_JSON_BYTES {
        return Err(ExecError::Protocol(format!(
            "output.json is {size} bytes, more than the {MAX_OUTPUT_JSON_BYTES} allowed"
        )));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ExecError::Protocol(format!("cannot read output.json: {e}")))?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ExecError::Protocol(format!("output.json is not valid JSON ({e}); {EXPECTED}"))
    })?;
    let output = match json.get("output") {
        Some(Value::String(text)) => text.clone(),
        Some(value) if !value.is_null() => value.to_string(),
        _ => {
            return Err(ExecError::Protocol(format!(
                "output.json has no `output` field; {EXPECTED}"
            )));
        }
    };
    let usage = json.get("usage").and_then(|u| serde_json::from_value(u.clone()).ok());
    Ok((output, usage))
}
