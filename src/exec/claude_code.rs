//! Claude Code in print mode: `claude -p --output-format stream-json --verbose`, the task on
//! stdin, the agent's prompt through `--append-system-prompt`.
//!
//! Stream format: anthropics/claude-agent-sdk-python `src/claude_agent_sdk/_internal/message_parser.py`
//! (lines typed `system` with subtype `init`, `assistant`, `user`, `result`; `stream_event`
//! and `rate_limit_event` lines are skipped).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::agent_cli::{
    self, Ending, EventReader, Invocation, Runner, Transcript, content_text, count, text,
};
use super::env::EnvSource;
use super::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, prompt};
use crate::config::{CodingAgentBackend, CodingCli};
use crate::event::OutputStream;

/// Longest system prompt passed as an argument; Linux refuses single arguments over 128 KiB,
/// so longer ones lead the prompt on stdin instead.
const MAX_SYSTEM_PROMPT_ARG_BYTES: usize = 64 * 1024;

/// Runs each attempt as one `claude -p` session.
#[derive(Debug, Clone)]
pub struct ClaudeCodeExecutor {
    runner: Runner,
}

impl ClaudeCodeExecutor {
    pub fn new(config: CodingAgentBackend) -> Self {
        Self { runner: Runner::new(CodingCli::ClaudeCode, config) }
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

    /// The argv after the program, before the backend's own `args`.
    fn args(&self, req: &ExecRequest) -> Vec<String> {
        let mut args: Vec<String> =
            ["-p", "--output-format", "stream-json", "--verbose"].map(str::to_owned).to_vec();
        let system_prompt = req.system_prompt.trim();
        if !system_prompt.is_empty() && system_prompt.len() <= MAX_SYSTEM_PROMPT_ARG_BYTES {
            args.extend(["--append-system-prompt".to_owned(), system_prompt.to_owned()]);
        }
        if let Some(model) = self.runner.model(req) {
            args.extend(["--model".to_owned(), model.to_owned()]);
        }
        if !req.tools.is_empty() {
            args.extend(["--allowedTools".to_owned(), req.tools.join(",")]);
        }
        if let Some(mode) = &self.runner.config.permission_mode {
            args.extend(["--permission-mode".to_owned(), mode.clone()]);
        }
        if let Some(turns) = self.runner.config.max_turns {
            args.extend(["--max-turns".to_owned(), turns.to_string()]);
        }
        if self.runner.config.partial_messages {
            args.push("--include-partial-messages".to_owned());
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
            program: self.runner.config.program(CodingCli::ClaudeCode).to_owned(),
            args: self.args(&req),
            trailing_args: Vec::new(),
            stdin: if req.system_prompt.trim().len() <= MAX_SYSTEM_PROMPT_ARG_BYTES {
                prompt::user_message(&req)
            } else {
                prompt::stdin_text(&req)
            },
        };
        let mut reader = ClaudeStream::default();
        let (transcript, ending) =
            self.runner.run(invocation, &req, sink, cancel, &mut reader).await?;
        reader.finish(transcript, &ending)
    }
}

impl Executor for ClaudeCodeExecutor {
    fn kind(&self) -> &'static str {
        "claude_code"
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

/// The `result` line: how the session ended.
#[derive(Debug, Default)]
struct FinalResult {
    subtype: String,
    is_error: bool,
    text: Option<String>,
    num_turns: u64,
    errors: Vec<String>,
    api_error_status: Option<u64>,
}

/// What the stream said so far.
/// Reads `data` as this CLI's whole stdout (its JSON event lines), then ends the attempt:
/// what the fuzz target runs. Must return, whatever the bytes.
pub fn parse_stdout(data: &[u8]) {
    super::agent_cli::replay_stdout(ClaudeStream::default(), data, |reader, out, ending| {
        let _ = reader.finish(out, ending);
    });
}

#[derive(Debug, Default)]
struct ClaudeStream {
    result: Option<FinalResult>,
    /// Index of the content block being streamed as text, to end it with a line break.
    text_block: Option<u64>,
    /// `assistant` lines carry an `error` kind when an API call failed
    /// (`authentication_failed`, `billing_error`, `rate_limit`, ...).
    assistant_error: Option<String>,
}

impl EventReader for ClaudeStream {
    fn event(&mut self, event: &Value, out: &mut Transcript) {
        if let Some(session) = text(event, "session_id") {
            out.session_id = Some(session.to_owned());
        }
        match text(event, "type") {
            Some("system") if text(event, "subtype") == Some("init") => {
                let tools = event.get("tools").and_then(Value::as_array).map_or(0, Vec::len);
                out.status(format!(
                    "claude session {} · model {} · {tools} tools · permission mode {}",
                    text(event, "session_id").unwrap_or("?"),
                    text(event, "model").unwrap_or("?"),
                    text(event, "permissionMode").unwrap_or("?"),
                ));
            }
            Some("assistant") => self.assistant(event, out),
            Some("user") => user(event, out),
            Some("result") => self.result(event, out),
            Some("stream_event") => self.partial(event.get("event").unwrap_or(&Value::Null), out),
            _ => {}
        }
    }
}

impl ClaudeStream {
    fn assistant(&mut self, event: &Value, out: &mut Transcript) {
        if let Some(kind) = text(event, "error") {
            self.assistant_error = Some(kind.to_owned());
        }
        let message = event.get("message").unwrap_or(&Value::Null);
        if text(message, "stop_reason") == Some("max_tokens") {
            out.truncated = true;
        }
        let Some(blocks) = message.get("content").and_then(Value::as_array) else { return };
        for block in blocks {
            match text(block, "type") {
                Some("text") => {
                    let body = text(block, "text").unwrap_or_default();
                    out.text(body);
                    if !body.ends_with('\n') {
                        out.text("\n");
                    }
                }
                Some("thinking") => out.reasoning(text(block, "thinking").unwrap_or_default()),
                Some("tool_use" | "server_tool_use") => out.tool_call(
                    text(block, "id"),
                    text(block, "name").unwrap_or("tool"),
                    block.get("input").unwrap_or(&Value::Null),
                ),
                _ => {}
            }
        }
    }

    /// One Messages API streaming event (`--include-partial-messages`): text and thinking
    /// deltas are shown at once; the whole message that follows is kept, not shown again.
    fn partial(&mut self, event: &Value, out: &mut Transcript) {
        let index = event.get("index").and_then(Value::as_u64);
        match text(event, "type") {
            Some("content_block_start") => {
                let is_text =
                    event.pointer("/content_block/type").and_then(Value::as_str) == Some("text");
                self.text_block = if is_text { index } else { None };
            }
            Some("content_block_delta") => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match text(delta, "type") {
                    Some("text_delta") => {
                        out.delta(OutputStream::Tokens, text(delta, "text").unwrap_or_default());
                    }
                    Some("thinking_delta") => out.delta(
                        OutputStream::Reasoning,
                        text(delta, "thinking").unwrap_or_default(),
                    ),
                    _ => {}
                }
            }
            Some("content_block_stop") if index.is_some() && index == self.text_block => {
                self.text_block = None;
                out.delta(OutputStream::Tokens, "\n");
            }
            _ => {}
        }
    }

    fn result(&mut self, event: &Value, out: &mut Transcript) {
        if let Some(cost) = event.get("total_cost_usd").and_then(Value::as_f64) {
            out.cost_usd = Some(cost);
        }
        if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
            // Cache reads and writes are input too: without them a warm session looks free.
            let mut counts = agent_cli::usage(
                count(usage, "input_tokens")
                    + count(usage, "cache_creation_input_tokens")
                    + count(usage, "cache_read_input_tokens"),
                count(usage, "output_tokens"),
            );
            counts.cache_read_input_tokens = count(usage, "cache_read_input_tokens");
            counts.cache_creation_input_tokens = count(usage, "cache_creation_input_tokens");
            out.usage = Some(counts);
        }
        for denial in
            event.get("permission_denials").and_then(Value::as_array).into_iter().flatten()
        {
            let tool = text(denial, "tool_name").unwrap_or("tool");
            let input = denial.get("tool_input").map(Value::to_string).unwrap_or_default();
            let (input, _) = agent_cli::shorten(&input, 200);
            out.denials.push(format!("{tool} {input}"));
        }
        self.result = Some(FinalResult {
            subtype: text(event, "subtype").unwrap_or("success").to_owned(),
            is_error: event.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            text: text(event, "result").map(str::to_owned),
            num_turns: count(event, "num_turns"),
            errors: event
                .get("errors")
                .and_then(Value::as_array)
                .map(|all| all.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            api_error_status: event.get("api_error_status").and_then(Value::as_u64),
        });
    }

    fn finish(self, mut out: Transcript, ending: &Ending) -> Result<ExecOutcome, ExecError> {
        let cli = CodingCli::ClaudeCode;
        let Some(result) = self.result else {
            return Err(agent_cli::missing_final_event(cli, ending, "result"));
        };
        if result.is_error || result.subtype != "success" {
            let details: Vec<&str> = result
                .text
                .iter()
                .chain(&result.errors)
                .map(|detail| detail.trim())
                .filter(|detail| !detail.is_empty())
                .collect();
            let auth = matches!(
                self.assistant_error.as_deref(),
                Some("authentication_failed" | "billing_error")
            ) || matches!(result.api_error_status, Some(401 | 403));
            if auth {
                // The CLI's own words say what is wrong; how many turns it took does not.
                return Err(ExecError::Refused(format!(
                    "claude_code is not authenticated: {} ({})",
                    details.join(": "),
                    cli.login_hint()
                )));
            }
            // An error result may still be of subtype `success` (the CLI ran; the model
            // call failed).
            let kind = if result.subtype == "success" { "an error" } else { &result.subtype };
            let turns = if result.num_turns == 1 { "turn" } else { "turns" };
            let mut message = format!("{kind} after {} {turns}", result.num_turns);
            for detail in details {
                message.push_str(": ");
                message.push_str(detail);
            }
            if !out.denials.is_empty() {
                message.push_str("; refused: ");
                message.push_str(&out.denials.join("; "));
            }
            return Err(agent_cli::reported_failure(cli, ending, &message));
        }
        out.check_denials(cli)?;
        let answer = match result.text {
            Some(answer) => answer,
            None => out.assembled_text().trim_end().to_owned(),
        };
        let output = out.bound_output(&answer);
        let dropped_bytes = out.dropped_bytes;
        let usage = out.usage;
        Ok(ExecOutcome { output, usage, dropped_bytes, details: out.into_details() })
    }
}

fn user(event: &Value, out: &mut Transcript) {
    let Some(blocks) = event.pointer("/message/content").and_then(Value::as_array) else {
        return;
    };
    for block in blocks.iter().filter(|b| text(b, "type") == Some("tool_result")) {
        let is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
        let body = content_text(block.get("content").unwrap_or(&Value::Null));
        out.tool_result(text(block, "tool_use_id"), &body, is_error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(system_prompt: String) -> ExecRequest {
        ExecRequest {
            run: "r".into(),
            task: "t".into(),
            agent: "a".into(),
            attempt: 1,
            system_prompt,
            task_description: "Do it".into(),
            context: Value::Null,
            timeout: Duration::from_secs(1),
            project_dir: std::env::temp_dir(),
            model: Some("inherit".into()),
            tools: Vec::new(),
            workdir: None,
        }
    }

    #[test]
    fn a_huge_system_prompt_moves_to_stdin_and_inherit_means_no_model() {
        let executor = ClaudeCodeExecutor::new(crate::config::CodingAgentBackend {
            program: None,
            args: Vec::new(),
            env_allow: None,
            env: std::collections::BTreeMap::new(),
            workspace: None,
            permission_mode: None,
            max_turns: None,
            on_denial: crate::config::DenialPolicy::Fail,
            partial_messages: false,
            model: None,
            output_limit_bytes: 1024,
        });
        let small = executor.args(&request("Be brief.".into()));
        assert_eq!(small[4..], ["--append-system-prompt", "Be brief."]);
        let huge = executor.args(&request("x".repeat(MAX_SYSTEM_PROMPT_ARG_BYTES + 1)));
        assert_eq!(huge, ["-p", "--output-format", "stream-json", "--verbose"]);
    }
}
