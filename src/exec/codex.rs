//! The Codex CLI: `codex exec --json -`, the prompt on stdin, run in the attempt's folder.
//!
//! Stream format: openai/codex `codex-rs/exec/src/exec_events.rs` (`thread.started`,
//! `turn.started`, `item.started` / `item.updated` / `item.completed` with item types
//! `agent_message`, `reasoning`, `command_execution`, `file_change`, `mcp_tool_call`,
//! `web_search`, `todo_list`, `error`; `turn.completed` with usage, `turn.failed`, `error`).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::agent_cli::{self, Ending, EventReader, Invocation, Runner, Transcript, count, text};
use super::env::EnvSource;
use super::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, prompt};
use crate::config::{CodingAgentBackend, CodingCli};

/// Runs each attempt as one `codex exec` session.
#[derive(Debug, Clone)]
pub struct CodexExecutor {
    runner: Runner,
}

impl CodexExecutor {
    pub fn new(config: CodingAgentBackend) -> Self {
        Self { runner: Runner::new(CodingCli::Codex, config) }
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

    /// The argv after the program, before the backend's own `args`. Codex refuses to work
    /// outside a git repository unless told otherwise; Flightdeck chose the folder (a
    /// worktree, a temp folder or the project), so the check is skipped.
    fn args(&self, req: &ExecRequest) -> Vec<String> {
        let mut args: Vec<String> =
            ["exec", "--json", "--skip-git-repo-check", "--cd"].map(str::to_owned).to_vec();
        args.push(req.work_dir().display().to_string());
        if let Some(model) = self.runner.model(req) {
            args.extend(["--model".to_owned(), model.to_owned()]);
        }
        if let Some(mode) = &self.runner.config.permission_mode {
            args.extend(["--sandbox".to_owned(), mode.clone()]);
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
            program: self.runner.config.program(CodingCli::Codex).to_owned(),
            args: self.args(&req),
            // `-` reads the prompt from stdin; it goes after every option.
            trailing_args: vec!["-".to_owned()],
            stdin: prompt::stdin_text(&req),
        };
        let mut reader = CodexStream::default();
        let (transcript, ending) =
            self.runner.run(invocation, &req, sink, cancel, &mut reader).await?;
        reader.finish(transcript, &ending)
    }
}

impl Executor for CodexExecutor {
    fn kind(&self) -> &'static str {
        "codex"
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

/// What the stream said so far.
/// Reads `data` as this CLI's whole stdout (its JSON event lines), then ends the attempt:
/// what the fuzz target runs. Must return, whatever the bytes.
pub fn parse_stdout(data: &[u8]) {
    super::agent_cli::replay_stdout(CodexStream::default(), data, |reader, out, ending| {
        let _ = reader.finish(out, ending);
    });
}

#[derive(Debug, Default)]
struct CodexStream {
    /// The last `agent_message`: Codex's answer.
    last_message: Option<String>,
    turn_completed: bool,
    /// `turn.failed` or a top-level `error`.
    failure: Option<String>,
}

impl EventReader for CodexStream {
    fn event(&mut self, event: &Value, out: &mut Transcript) {
        match text(event, "type") {
            Some("thread.started") => {
                if let Some(thread) = text(event, "thread_id") {
                    out.session_id = Some(thread.to_owned());
                    out.status(format!("codex thread {thread}"));
                }
            }
            Some("item.started") => started(event.get("item").unwrap_or(&Value::Null), out),
            Some("item.updated") => {
                let item = event.get("item").unwrap_or(&Value::Null);
                if text(item, "type") == Some("todo_list") {
                    todo_list(item, out);
                }
            }
            Some("item.completed") => {
                self.completed(event.get("item").unwrap_or(&Value::Null), out);
            }
            Some("turn.completed") => {
                self.turn_completed = true;
                if let Some(usage) = event.get("usage") {
                    // `input_tokens` already includes `cached_input_tokens`.
                    let mut counts = agent_cli::usage(
                        count(usage, "input_tokens"),
                        count(usage, "output_tokens"),
                    );
                    counts.cache_read_input_tokens = count(usage, "cached_input_tokens");
                    out.add_usage(counts);
                }
            }
            Some("turn.failed") => {
                let message = event.pointer("/error/message").and_then(Value::as_str);
                self.failure = Some(message.unwrap_or("turn failed").to_owned());
            }
            Some("error") => {
                self.failure = Some(text(event, "message").unwrap_or("error").to_owned());
            }
            _ => {}
        }
    }
}

/// Tool-like items are reported when they start, so a long command shows while it runs.
fn started(item: &Value, out: &mut Transcript) {
    let id = text(item, "id");
    match text(item, "type") {
        Some("command_execution") => {
            out.tool_call(
                id,
                "command",
                &Value::String(text(item, "command").unwrap_or_default().into()),
            );
        }
        Some("mcp_tool_call") => {
            out.tool_call(id, &mcp_name(item), item.get("arguments").unwrap_or(&Value::Null));
        }
        Some("web_search") => {
            out.tool_call(
                id,
                "web_search",
                &Value::String(text(item, "query").unwrap_or_default().into()),
            );
        }
        Some("todo_list") => todo_list(item, out),
        _ => {}
    }
}

impl CodexStream {
    fn completed(&mut self, item: &Value, out: &mut Transcript) {
        let id = text(item, "id");
        let fresh = id.is_none_or(|id| !out.has_tool_call(id));
        let failed = matches!(text(item, "status"), Some("failed" | "declined"));
        match text(item, "type") {
            Some("agent_message") => {
                let body = text(item, "text").unwrap_or_default();
                out.text(body);
                out.text("\n");
                self.last_message = Some(body.to_owned());
            }
            Some("reasoning") => out.reasoning(text(item, "text").unwrap_or_default()),
            Some("command_execution") => {
                let command = text(item, "command").unwrap_or_default();
                if fresh {
                    out.tool_call(id, "command", &Value::String(command.into()));
                }
                let exit = item.get("exit_code").and_then(Value::as_i64);
                if text(item, "status") == Some("declined") {
                    out.denials.push(format!("command `{command}`"));
                }
                let output = text(item, "aggregated_output").unwrap_or_default();
                out.tool_result(id, output, failed || exit.is_some_and(|code| code != 0));
            }
            Some("file_change") => {
                let changes: Vec<String> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} {}",
                            text(c, "kind").unwrap_or("update"),
                            text(c, "path").unwrap_or("?")
                        )
                    })
                    .collect();
                if fresh {
                    out.tool_call(id, "file_change", item.get("changes").unwrap_or(&Value::Null));
                }
                out.tool_result(id, &changes.join("\n"), failed);
            }
            Some("mcp_tool_call") => {
                if fresh {
                    out.tool_call(
                        id,
                        &mcp_name(item),
                        item.get("arguments").unwrap_or(&Value::Null),
                    );
                }
                let output = match item.pointer("/error/message").and_then(Value::as_str) {
                    Some(message) => message.to_owned(),
                    None => agent_cli::content_text(
                        item.pointer("/result/content").unwrap_or(&Value::Null),
                    ),
                };
                out.tool_result(
                    id,
                    &output,
                    failed || item.get("error").is_some_and(|e| !e.is_null()),
                );
            }
            Some("web_search") => {
                if fresh {
                    out.tool_call(
                        id,
                        "web_search",
                        &Value::String(text(item, "query").unwrap_or_default().into()),
                    );
                }
                out.tool_result(id, "done", false);
            }
            Some("todo_list") => todo_list(item, out),
            Some("error") => {
                out.notice(&format!("codex: {}", text(item, "message").unwrap_or("error")));
            }
            _ => {}
        }
    }

    fn finish(self, mut out: Transcript, ending: &Ending) -> Result<ExecOutcome, ExecError> {
        let cli = CodingCli::Codex;
        if let Some(failure) = self.failure {
            return Err(agent_cli::reported_failure(cli, ending, &failure));
        }
        if !self.turn_completed {
            return Err(agent_cli::missing_final_event(cli, ending, "turn.completed"));
        }
        out.check_denials(cli)?;
        let output = out.bound_output(self.last_message.as_deref().unwrap_or_default());
        let dropped_bytes = out.dropped_bytes;
        let usage = out.usage;
        Ok(ExecOutcome { output, usage, dropped_bytes, details: out.into_details() })
    }
}

/// `server.tool`, as Codex names MCP tools.
fn mcp_name(item: &Value) -> String {
    format!("{}.{}", text(item, "server").unwrap_or("mcp"), text(item, "tool").unwrap_or("tool"))
}

/// The agent's to-do list as one status line: `[x] done; [ ] next`.
fn todo_list(item: &Value, out: &Transcript) {
    let steps: Vec<String> = item
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|step| {
            let done = step.get("completed").and_then(Value::as_bool).unwrap_or(false);
            format!("[{}] {}", if done { "x" } else { " " }, text(step, "text").unwrap_or_default())
        })
        .collect();
    if !steps.is_empty() {
        out.status(format!("plan: {}", steps.join("; ")));
    }
}
