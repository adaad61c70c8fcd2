//! Executors: how one attempt of one task actually runs.
//!
//! Every backend implements [`Executor`]. The engine owns retries, breakers and the pool; an
//! executor owns exactly one attempt, including its timeout and cancellation: when either
//! fires, the executor stops all the work it started (for a process, the whole process group)
//! before it returns.

mod agent_cli;
pub mod anthropic;
mod capture;
pub mod claude_code;
pub mod codex;
mod deadline;
pub mod env;
pub mod gemini;
pub(crate) mod http;
pub mod openai;
pub mod process;
pub mod prompt;
pub mod reaper;
pub mod sim;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::BackendConfig;
pub use crate::event::{AnswerDetails, ToolCall};
use crate::event::{OutputStream, TokenUsage};
use crate::ids::{AgentId, RunId, TaskId};

/// Everything an executor needs for one attempt.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub run: RunId,
    pub task: TaskId,
    pub agent: AgentId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The agent definition's markdown body.
    pub system_prompt: String,
    /// The task's description from the workflow.
    pub task_description: String,
    /// The task's own `context` plus `dependencies: {task_id: output}`.
    pub context: serde_json::Value,
    /// The whole attempt, start to finish.
    pub timeout: Duration,
    /// The project folder; relative working directories resolve against it.
    pub project_dir: PathBuf,
    /// Model named by the agent definition, overriding the backend's default.
    pub model: Option<String>,
    /// Tools the agent definition allows (`tools:`); empty means the backend's default set.
    /// Claude Code receives them as `--allowedTools`.
    pub tools: Vec<String>,
    /// Where the attempt works when the engine gave it a workspace of its own (a git
    /// worktree or a fresh folder); `None` means the project folder.
    pub workdir: Option<PathBuf>,
}

impl ExecRequest {
    /// The folder the attempt works in: its own workspace, else the project folder.
    pub fn work_dir(&self) -> &std::path::Path {
        self.workdir.as_deref().unwrap_or(&self.project_dir)
    }
}

/// What a successful attempt produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutcome {
    /// The result text handed to dependent tasks.
    pub output: String,
    pub usage: Option<TokenUsage>,
    /// Output bytes beyond the configured bound, counted and dropped.
    pub dropped_bytes: u64,
    /// Truncation, tool calls, reasoning, session and cost, when the backend reports them.
    pub details: AnswerDetails,
}

/// Receives output as it is produced: whole lines for processes, token chunks for models.
pub type OutputSink = Arc<dyn Fn(OutputStream, String) + Send + Sync>;

/// A boxed future, so executors can live behind `dyn Executor`.
pub type ExecFuture<'a> = Pin<Box<dyn Future<Output = Result<ExecOutcome, ExecError>> + Send + 'a>>;

/// One backend kind.
pub trait Executor: Send + Sync {
    /// `process`, `openai`, `anthropic`, `sim`, `claude_code`, `codex` or `gemini`.
    fn kind(&self) -> &'static str;

    /// True for the rehearsal backend, whose results must be labelled as simulated.
    fn is_simulated(&self) -> bool {
        false
    }

    /// Run one attempt. Must return promptly after `cancel` fires or `req.timeout` passes,
    /// having stopped everything it started.
    fn execute(
        &self,
        req: ExecRequest,
        output: OutputSink,
        cancel: CancellationToken,
    ) -> ExecFuture<'_>;
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    #[error("timed out after {}", crate::words::duration(*.0))]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("cannot start `{program}`: {message}")]
    Spawn { program: String, message: String },
    #[error("exited with {status}{}", if .stderr_tail.is_empty() { String::new() } else { format!(": {}", .stderr_tail) })]
    Exit { status: String, stderr_tail: String },
    /// The server answered with an error status. `retry_after` is the server's
    /// `Retry-After`, which the engine waits out before the next attempt.
    #[error("HTTP {status}: {message}{}", retry_after_note(*.retry_after))]
    Http { status: u16, message: String, retry_after: Option<Duration> },
    #[error("connection failed: {0}")]
    Connection(String),
    /// A stream sent nothing for longer than the backend's `stall_timeout`.
    #[error("stream stalled: nothing received for {}", crate::words::duration(*.0))]
    Stalled(Duration),
    #[error("bad response: {0}")]
    Protocol(String),
    #[error(
        "environment variable `{0}` holding the API key is not set: export it, or fix api_key_env"
    )]
    MissingKey(String),
    /// A setting that cannot work; the same attempt fails again until it is fixed.
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("simulated failure: {0}")]
    Simulated(String),
    /// The agent reported a failure that the same request meets again (not logged in, a
    /// tool call its settings refuse): not retried, not counted on the breaker.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
    /// An HTTP backend's error, naming the backend and the URL it called.
    #[error("backend `{backend}` ({url}): {source}")]
    Backend { backend: String, url: String, source: Box<ExecError> },
}

fn retry_after_note(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|wait| format!(" (Retry-After: {})", crate::words::duration(whole_seconds(wait))))
        .unwrap_or_default()
}

fn whole_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}

/// Whether trying again could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connection reset, 408, 429, 5xx, timeout, broken or stalled stream: worth another
    /// attempt, and counted by the breaker.
    Transient,
    /// Authentication, bad request, not found, bad configuration, missing key or program:
    /// the same request fails again, so it is not retried and does not count against the
    /// breaker.
    Permanent,
}

impl ExecError {
    /// Whether another attempt could succeed.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Http { status, .. } => {
                if *status == 408 || *status == 429 || *status >= 500 {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            Self::Backend { source, .. } => source.class(),
            Self::MissingKey(_) | Self::Spawn { .. } | Self::Config(_) | Self::Refused(_) => {
                ErrorClass::Permanent
            }
            Self::Timeout(_)
            | Self::Cancelled
            | Self::Exit { .. }
            | Self::Connection(_)
            | Self::Stalled(_)
            | Self::Protocol(_)
            | Self::Simulated(_)
            | Self::Other(_) => ErrorClass::Transient,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.class() == ErrorClass::Permanent
    }

    /// The error itself, without the backend and URL around it.
    pub fn cause(&self) -> &ExecError {
        match self {
            Self::Backend { source, .. } => source.cause(),
            other => other,
        }
    }

    /// How long the server asked to wait before the next try (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.cause() {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the server answered with, if it answered with an error.
    pub fn http_status(&self) -> Option<u16> {
        match self.cause() {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Builds the executor for the backend named `name` in `flightdeck.yaml`. API keys are read
/// per attempt, not here, so settings that mention an unused cloud backend still load.
pub fn build(name: &str, config: &BackendConfig) -> Result<Arc<dyn Executor>, ExecError> {
    Ok(match config {
        BackendConfig::Process(backend) => {
            if backend.command.is_empty() {
                return Err(ExecError::Config(format!(
                    "backends.{name}.command: must name a program"
                )));
            }
            Arc::new(process::ProcessExecutor::new(backend.clone()))
        }
        BackendConfig::Openai(backend) => {
            Arc::new(openai::OpenAiExecutor::new(name, backend.clone())?)
        }
        BackendConfig::Anthropic(backend) => {
            Arc::new(anthropic::AnthropicExecutor::new(name, backend.clone())?)
        }
        BackendConfig::Sim(backend) => Arc::new(sim::SimExecutor::new(backend.clone())),
        BackendConfig::ClaudeCode(backend) => {
            Arc::new(claude_code::ClaudeCodeExecutor::new(backend.clone()))
        }
        BackendConfig::Codex(backend) => Arc::new(codex::CodexExecutor::new(backend.clone())),
        BackendConfig::Gemini(backend) => Arc::new(gemini::GeminiExecutor::new(backend.clone())),
    })
}
