//! The Gemini CLI in headless mode: `gemini --output-format stream-json`, the agent's prompt
//! and the task on stdin (Gemini has no system-prompt flag), followed by a one-line `--prompt`
//! that forces headless mode.
//!
//! Stream format: google-gemini/gemini-cli `packages/core/src/output/types.ts` (`init`,
//! `message`, `tool_use`, `tool_result`, `error`, `result` with `stats`).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::agent_cli::{self, Ending, EventReader, Invocation, Runner, Transcript, count, text};
use super::env::EnvSource;
use super::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, prompt};
use crate::config::{CodingAgentBackend, CodingCli};

/// Appended to the stdin text by the CLI; `--prompt` is what makes the run headless.
const HEADLESS_PROMPT: &str = "Carry out the task above.";

/// Runs each attempt as one headless `gemini` session.
#[derive(Debug, Clone)]
pub struct GeminiExecutor {
    runner: Runner,
}

impl GeminiExecutor {
    pub fn new(config: CodingAgentBackend) -> Self {
        Self { runner: Runner::new(CodingCli::Gemini, config) }
    }

    /// Takes the `env_allow` variables from `env` instead of Flightdeck's own environment.
    #[must_use]
    pub fn with_env(mut self, env: EnvSource) -> Self {
        self.runner.env = env;
        self
    }

    /// Changes the time between SIGTERM and SIGKILL.
    #[must_use]
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.runner.kill_grace = grace;
        self
    }

    fn args(&self, req: &ExecRequest) -> Vec<String> {
        let mut args: Vec<String> = ["--output-format", "stream-json", "--prompt", HEADLESS_PROMPT]
            .map(str::to_owned)
            .to_vec();
        if let Some(model) = self.runner.model(req) {
            args.extend(["--model".to_owned(), model.to_owned()]);
        }
        if let Some(mode) = &self.runner.config.permission_mode {
            args.extend(["--approval-mode".to_owned(), mode.clone()]);
        }
        args
    }

    async fn run(
        &self,
        req: ExecRequest,
        sink: OutputSink,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        let invocation = Invocation {
            program: self.runner.config.program(CodingCli::Gemini).to_owned(),
            args: self.args(&req),
            trailing_args: Vec::new(),
            stdin: prompt::stdin_text(&req),
        };
        let mut reader = GeminiStream::default();
        let (transcript, ending) =
            self.runner.run(invocation, &req, sink, cancel, &mut reader).await?;
        reader.finish(transcript, &ending)
    }
}

impl Executor for GeminiExecutor {
    fn kind(&self) -> &'static str {
        "gemini"
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

/// How the `result` event said the session went.
#[derive(Debug)]
enum Outcome {
    Success,
    Failure(String),
}

/// What the stream said so far.
/// Reads `data` as this CLI's whole stdout (its JSON event lines), then ends the attempt:
/// what the fuzz target runs. Must return, whatever the bytes.
pub fn parse_stdout(data: &[u8]) {
    super::agent_cli::replay_stdout(GeminiStream::default(), data, |reader, out, ending| {
        let _ = reader.finish(out, ending);
    });
}

#[derive(Debug, Default)]
struct GeminiStream {
    /// The `result` event, once it came.
    result: Option<Outcome>,
    /// `error` events of severity `error` (turn limit, invalid stream).
    errors: Vec<String>,
}

impl EventReader for GeminiStream {
    fn event(&mut self, event: &Value, out: &mut Transcript) {
        match text(event, "type") {
            Some("init") => {
                if let Some(session) = text(event, "session_id") {
                    out.session_id = Some(session.to_owned());
                }
                out.status(format!(
                    "gemini session {} · model {}",
                    text(event, "session_id").unwrap_or("?"),
                    text(event, "model").unwrap_or("?"),
                ));
            }
            Some("message") if text(event, "role") == Some("assistant") => {
                out.text(text(event, "content").unwrap_or_default());
            }
            Some("tool_use") => out.tool_call(
                text(event, "tool_id"),
                text(event, "tool_name").unwrap_or("tool"),
                event.get("parameters").unwrap_or(&Value::Null),
            ),
            Some("tool_result") => tool_result(event, out),
            Some("error") => {
                let message = text(event, "message").unwrap_or("error");
                if text(event, "severity") == Some("error") {
                    self.errors.push(message.to_owned());
                }
                out.notice(&format!("gemini: {message}"));
            }
            Some("result") => self.result(event, out),
            _ => {}
        }
    }
}

impl GeminiStream {
    fn result(&mut self, event: &Value, out: &mut Transcript) {
        if let Some(stats) = event.get("stats").filter(|s| s.is_object()) {
            // `input_tokens` is the whole prompt; `cached` and `input` are its breakdown.
            let mut counts =
                agent_cli::usage(count(stats, "input_tokens"), count(stats, "output_tokens"));
            counts.cache_read_input_tokens = count(stats, "cached");
            out.usage = Some(counts);
        }
        self.result = Some(if text(event, "status") == Some("error") {
            let kind = event.pointer("/error/type").and_then(Value::as_str).unwrap_or("error");
            let message = event.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
            Outcome::Failure(format!("{kind}: {message}"))
        } else {
            Outcome::Success
        });
    }

    fn finish(self, mut out: Transcript, ending: &Ending) -> Result<ExecOutcome, ExecError> {
        let cli = CodingCli::Gemini;
        let Some(result) = self.result else {
            return Err(agent_cli::missing_final_event(cli, ending, "result"));
        };
        if let Outcome::Failure(mut failure) = result {
            for error in &self.errors {
                failure.push_str("; ");
                failure.push_str(error);
            }
            if !out.denials.is_empty() {
                failure.push_str("; refused: ");
                failure.push_str(&out.denials.join("; "));
            }
            return Err(agent_cli::reported_failure(cli, ending, &failure));
        }
        out.check_denials(cli)?;
        let answer = out.assembled_text().trim().to_owned();
        let output = out.bound_output(&answer);
        let dropped_bytes = out.dropped_bytes;
        let usage = out.usage;
        Ok(ExecOutcome { output, usage, dropped_bytes, details: out.into_details() })
    }
}

/// `tool_result`: the output, or the error; a `policy_violation` is a refused call.
fn tool_result(event: &Value, out: &mut Transcript) {
    let id = text(event, "tool_id");
    let is_error = text(event, "status") == Some("error");
    let error_type = event.pointer("/error/type").and_then(Value::as_str);
    let error_message = event.pointer("/error/message").and_then(Value::as_str);
    if error_type == Some("policy_violation") {
        let name = id.and_then(|id| out.tool_name(id)).unwrap_or("tool").to_owned();
        out.denials.push(format!("{name}: {}", error_message.unwrap_or("denied by policy")));
    }
    let body = match (text(event, "output"), error_message) {
        (Some(output), _) if !is_error || error_message.is_none() => output.to_owned(),
        (_, Some(message)) => format!("{}: {message}", error_type.unwrap_or("error")),
        (output, None) => output.unwrap_or_default().to_owned(),
    };
    out.tool_result(id, &body, is_error);
}
