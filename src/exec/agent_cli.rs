//! What the coding-agent executors share: spawning the CLI like a `process` backend (argv,
//! allowed environment, own process group, timeout and cancel stop the whole group), reading
//! its stdout as JSON lines, and a [`Transcript`] that turns the events into Flightdeck's
//! output streams within fixed bounds, so a 1 MiB tool result costs a few KiB of events.

use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::capture::{LineCapture, OutputBudget};
use super::deadline::Deadline;
use super::env::EnvSource;
use super::process::{self, DEFAULT_KILL_GRACE, GroupGuard, describe_status, spawn_error};
use super::reaper::Launch;
use super::{AnswerDetails, ExecError, ExecRequest, OutputSink, ToolCall};
use crate::config::{CodingAgentBackend, CodingCli, DenialPolicy};
use crate::event::{OutputStream, TokenUsage};

/// A JSON line longer than this is skipped (and counted): even a huge tool result is cut by
/// the CLIs well below it, and holding more per line would let one line exhaust memory.
pub const MAX_EVENT_LINE_BYTES: usize = 8 * 1024 * 1024;
/// Characters of a tool's output shown in its `tool_result` line.
pub const TOOL_RESULT_SHOWN_CHARS: usize = 2000;
/// Lines of a tool's output shown in its `tool_result` line.
const TOOL_RESULT_SHOWN_LINES: usize = 20;
/// Characters of a tool call's input shown in its `tool_call` line.
const TOOL_INPUT_SHOWN_CHARS: usize = 500;
/// Characters of a tool call's input kept in `details.tool_calls`.
const TOOL_INPUT_KEPT_CHARS: usize = 4000;
/// Tool calls kept in `details.tool_calls`; later ones are still streamed and counted.
const MAX_TOOL_CALLS_KEPT: usize = 1000;
/// Bytes of reasoning kept in `details.reasoning`.
const REASONING_KEPT_BYTES: usize = 256 * 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How one CLI is started for one attempt.
pub(super) struct Invocation {
    pub program: String,
    /// Flightdeck's arguments, placed before the backend's own `args`.
    pub args: Vec<String>,
    /// Arguments after the backend's `args` (a positional prompt marker).
    pub trailing_args: Vec<String>,
    /// Written to the CLI's stdin, which is then closed.
    pub stdin: String,
}

/// How the CLI's process ended, once its output was read to the end.
pub(super) struct Ending {
    pub status: ExitStatus,
    pub stderr_tail: String,
}

impl Ending {
    /// `exit code 1`, `signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        describe_status(self.status)
    }
}

/// Reads one CLI's events.
pub(super) trait EventReader: Send {
    /// One JSON line of stdout.
    fn event(&mut self, event: &Value, out: &mut Transcript);
}

/// Settings shared by the three coding-agent executors.
#[derive(Debug, Clone)]
pub(super) struct Runner {
    pub cli: CodingCli,
    pub config: CodingAgentBackend,
    pub env: EnvSource,
    pub kill_grace: Duration,
}

impl Runner {
    /// Runs `cli` per `config`, with Flightdeck's own environment and the default grace
    /// between SIGTERM and SIGKILL.
    pub fn new(cli: CodingCli, config: CodingAgentBackend) -> Self {
        Self { cli, config, env: EnvSource::process(), kill_grace: DEFAULT_KILL_GRACE }
    }

    /// Runs the CLI to its end, feeding each stdout event to `reader`. Timeout and cancel
    /// stop the process group and return the error; any other ending is for the caller to
    /// judge from the events and the exit status.
    pub async fn run(
        &self,
        invocation: Invocation,
        req: &ExecRequest,
        sink: OutputSink,
        cancel: CancellationToken,
        reader: &mut dyn EventReader,
    ) -> Result<(Transcript, Ending), ExecError> {
        let deadline = Deadline::start(req.timeout);
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let workdir = req.work_dir();
        if !workdir.is_dir() {
            return Err(ExecError::Spawn {
                program: invocation.program,
                message: format!("working directory {} does not exist", workdir.display()),
            });
        }
        let (mut cmd, launch) = self.command(&invocation, req, workdir);
        let mut child =
            cmd.spawn().map_err(|e| self.spawn_error(&invocation.program, workdir, &e))?;
        let group = GroupGuard::of(&child, &launch);

        // A CLI may exit before reading its prompt (a bad flag); its stderr says why.
        let stdin_writer = process::write_stdin(&mut child, invocation.stdin);

        let budget = OutputBudget::new(self.config.output_limit_bytes);
        let mut transcript = Transcript::new(sink.clone(), self.config.output_limit_bytes);
        transcript.on_denial = self.config.on_denial;
        let mut err = LineCapture::stderr(sink, &budget);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let ending = {
            let pumps = async {
                tokio::join!(
                    async {
                        if let Some(pipe) = stdout {
                            read_events(pipe, reader, &mut transcript).await;
                        }
                    },
                    async {
                        if let Some(pipe) = stderr {
                            err.pump(pipe).await;
                        }
                    },
                );
            };
            process::supervise(
                &mut child,
                &group,
                pumps,
                &cancel,
                &deadline,
                self.kill_grace,
                &invocation.program,
            )
            .await
        };
        group.disarm();
        if let Some(writer) = stdin_writer {
            writer.abort();
        }
        let status = ending?
            .map_err(|e| ExecError::Other(format!("waiting for `{}`: {e}", invocation.program)))?;
        if let Some(error) = launch.spawn_failure(status) {
            return Err(self.spawn_error(&invocation.program, workdir, &error));
        }
        transcript.dropped_bytes += budget.dropped_bytes();
        Ok((transcript, Ending { status, stderr_tail: err.tail_text() }))
    }

    fn command(
        &self,
        invocation: &Invocation,
        req: &ExecRequest,
        workdir: &Path,
    ) -> (Command, Launch) {
        let (mut cmd, launch) = Launch::command(&invocation.program, self.kill_grace);
        cmd.args(&invocation.args).args(&self.config.args).args(&invocation.trailing_args);
        cmd.current_dir(workdir).env_clear();
        for name in self.config.env_allow(self.cli) {
            if let Some(value) = self.env.get(&name) {
                cmd.env(name, value);
            }
        }
        cmd.envs(&self.config.env)
            .env("FLIGHTDECK_RUN", req.run.as_str())
            .env("FLIGHTDECK_TASK", req.task.as_str())
            .env("FLIGHTDECK_AGENT", req.agent.as_str())
            .env("FLIGHTDECK_ATTEMPT", req.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        launch.isolate(&mut cmd);
        (cmd, launch)
    }

    fn spawn_error(&self, program: &str, workdir: &Path, e: &std::io::Error) -> ExecError {
        match spawn_error(program, workdir, e) {
            ExecError::Spawn { program, .. } if e.kind() == std::io::ErrorKind::NotFound => {
                ExecError::Spawn {
                    program,
                    message: format!(
                        "not found on the PATH passed to it; {} (or set the backend's `program`)",
                        self.cli.install_hint()
                    ),
                }
            }
            other => other,
        }
    }

    /// `model` for the CLI: the backend's own wins; the agent definition's otherwise, unless
    /// it is a Claude Code alias and the CLI is not Claude Code.
    pub fn model<'a>(&'a self, req: &'a ExecRequest) -> Option<&'a str> {
        if let Some(model) = self.config.model.as_deref() {
            return Some(model);
        }
        let from_agent = req.model.as_deref()?;
        let claude_alias = matches!(from_agent, "sonnet" | "opus" | "haiku");
        match (self.cli, from_agent) {
            (_, "inherit") => None,
            (CodingCli::ClaudeCode, model) => Some(model),
            (_, _) if claude_alias => None,
            (_, model) => Some(model),
        }
    }
}

/// Reads JSON lines until EOF; a line that is not JSON goes to the sink as plain stdout.
async fn read_events(
    mut pipe: impl AsyncRead + Unpin,
    reader: &mut dyn EventReader,
    out: &mut Transcript,
) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "reading the agent's stdout failed");
                break;
            }
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (piece, rest) = match newline {
                Some(at) => (&chunk[..at], &chunk[at + 1..]),
                None => (chunk, &[][..]),
            };
            chunk = rest;
            if skipping {
                out.dropped_bytes += piece.len() as u64;
            } else if line.len() + piece.len() > MAX_EVENT_LINE_BYTES {
                out.dropped_bytes += (line.len() + piece.len()) as u64;
                out.notice(&format!("an event line over {MAX_EVENT_LINE_BYTES} bytes was skipped"));
                line.clear();
                skipping = true;
            } else {
                line.extend_from_slice(piece);
            }
            if newline.is_some() {
                if !skipping {
                    handle_line(&line, reader, out);
                }
                line.clear();
                skipping = false;
            }
        }
    }
    if !skipping && !line.is_empty() {
        handle_line(&line, reader, out);
    }
}

/// Reads `data` as one CLI's whole stdout with `reader`, line by line, and ends the attempt
/// as if the CLI exited with code 0: what the fuzz targets run (see `crate::fuzzing`).
pub(super) fn replay_stdout<R: EventReader>(
    mut reader: R,
    data: &[u8],
    finish: impl FnOnce(R, Transcript, &Ending),
) {
    let sink: OutputSink = std::sync::Arc::new(|_, _| {});
    let mut out = Transcript::new(sink, super::capture::MAX_LINE_BYTES);
    for line in data.split(|&b| b == b'\n') {
        if line.len() <= MAX_EVENT_LINE_BYTES {
            handle_line(line, &mut reader, &mut out);
        }
    }
    let ending = Ending {
        status: std::os::unix::process::ExitStatusExt::from_raw(0),
        stderr_tail: String::new(),
    };
    finish(reader, out, &ending);
}

fn handle_line(line: &[u8], reader: &mut dyn EventReader, out: &mut Transcript) {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return;
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(event) if event.is_object() => {
            out.events += 1;
            reader.event(&event, out);
        }
        _ => {
            let text = String::from_utf8_lossy(trimmed);
            out.emit(OutputStream::Stdout, shorten(&text, super::capture::MAX_LINE_BYTES).0);
        }
    }
}

/// What the events of one attempt added up to, and the bounded emitters that stream them.
pub(super) struct Transcript {
    sink: OutputSink,
    /// Answer text streamed so far (for CLIs whose answer is the assembled text).
    text: String,
    text_limit: usize,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
    /// Tool names by call id, to label results.
    tool_names: HashMap<String, String>,
    pub usage: Option<TokenUsage>,
    pub session_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub truncated: bool,
    /// Bytes of events, tool output and text not kept.
    pub dropped_bytes: u64,
    /// JSON events read.
    pub events: usize,
    /// Tool calls the CLI refused to run (permission or policy), one line each.
    pub denials: Vec<String>,
    /// Kinds of text whose limit was reached and said so.
    limits_noticed: Vec<&'static str>,
    /// What [`Self::denials`] do to the attempt.
    on_denial: DenialPolicy,
    /// Partial messages were shown as they came; whole ones are not shown again.
    deltas_seen: bool,
    /// Bytes shown from partial messages.
    delta_bytes: usize,
}

impl Transcript {
    fn new(sink: OutputSink, text_limit: usize) -> Self {
        Self {
            sink,
            text: String::new(),
            text_limit,
            reasoning: String::new(),
            tool_calls: Vec::new(),
            tool_names: HashMap::new(),
            usage: None,
            session_id: None,
            cost_usd: None,
            truncated: false,
            dropped_bytes: 0,
            events: 0,
            denials: Vec::new(),
            limits_noticed: Vec::new(),
            on_denial: DenialPolicy::Fail,
            deltas_seen: false,
            delta_bytes: 0,
        }
    }

    fn emit(&self, stream: OutputStream, text: String) {
        (self.sink)(stream, text);
    }

    /// A line for the operator about the stream itself.
    pub fn notice(&self, text: &str) {
        self.emit(OutputStream::Stderr, format!("[flightdeck] {text}"));
    }

    /// A line of the CLI's own status (session started, plan updated).
    pub fn status(&self, text: String) {
        self.emit(OutputStream::Stdout, text);
    }

    /// Answer text: streamed as tokens and assembled, both up to the output limit.
    pub fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let room = self.text_limit.saturating_sub(self.text.len());
        let (kept, dropped) = shorten_bytes(text, room);
        if !kept.is_empty() && !self.deltas_seen {
            self.emit(OutputStream::Tokens, kept.to_owned());
        }
        self.text.push_str(kept);
        self.count_dropped(dropped, "answer text");
    }

    /// A piece of a message shown before the whole message arrives (Claude Code's partial
    /// messages). From the first one on, whole messages are kept without being shown again.
    pub fn delta(&mut self, stream: OutputStream, text: &str) {
        self.deltas_seen = true;
        let room = self.text_limit.saturating_sub(self.delta_bytes);
        let (shown, _) = shorten_bytes(text, room);
        if !shown.is_empty() {
            self.delta_bytes += shown.len();
            self.emit(stream, shown.to_owned());
        }
    }

    /// Counts bytes not kept, saying so once per kind of text.
    fn count_dropped(&mut self, dropped: usize, what: &'static str) {
        if dropped == 0 {
            return;
        }
        if !self.limits_noticed.contains(&what) {
            self.limits_noticed.push(what);
            self.notice(&format!("{what} over its limit; the rest is counted and dropped"));
        }
        self.dropped_bytes += dropped as u64;
    }

    /// The answer text assembled from [`Self::text`].
    pub fn assembled_text(&self) -> &str {
        &self.text
    }

    /// Bounds the final answer to the output limit, counting what is cut.
    pub fn bound_output(&mut self, output: &str) -> String {
        let (kept, dropped) = shorten_bytes(output, self.text_limit);
        let kept = kept.to_owned();
        self.count_dropped(dropped, "the answer");
        kept
    }

    /// Reasoning text: streamed apart from the answer and kept in `details.reasoning`.
    pub fn reasoning(&mut self, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        let room = REASONING_KEPT_BYTES.saturating_sub(self.reasoning.len() + 1);
        let (kept, dropped) = shorten_bytes(text, room);
        if !kept.is_empty() {
            if !self.deltas_seen {
                self.emit(OutputStream::Reasoning, kept.to_owned());
            }
            if !self.reasoning.is_empty() {
                self.reasoning.push('\n');
            }
            self.reasoning.push_str(kept);
        }
        self.count_dropped(dropped, "reasoning");
    }

    /// A tool call: one `tool_call` line and an entry in `details.tool_calls`.
    pub fn tool_call(&mut self, id: Option<&str>, name: &str, input: &Value) {
        let input_text = match input {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let (shown, _) = shorten(&input_text, TOOL_INPUT_SHOWN_CHARS);
        let line = if shown.is_empty() { name.to_owned() } else { format!("{name} {shown}") };
        self.emit(OutputStream::ToolCall, line);
        if let Some(id) = id {
            self.tool_names.insert(id.to_owned(), name.to_owned());
        }
        if self.tool_calls.len() < MAX_TOOL_CALLS_KEPT {
            let (kept, _) = shorten(&input_text, TOOL_INPUT_KEPT_CHARS);
            self.tool_calls.push(ToolCall {
                id: id.map(str::to_owned),
                name: name.to_owned(),
                input: kept,
            });
        }
    }

    /// Whether a call with this id was already reported.
    pub fn has_tool_call(&self, id: &str) -> bool {
        self.tool_names.contains_key(id)
    }

    /// What a tool returned: the first lines, up to a few KiB, with the size of the rest.
    pub fn tool_result(&mut self, id: Option<&str>, output: &str, is_error: bool) {
        let name = id.and_then(|id| self.tool_names.get(id)).map_or("tool", String::as_str);
        let label = if is_error { format!("{name} failed") } else { name.to_owned() };
        let (shown, hidden) =
            shorten_lines(output, TOOL_RESULT_SHOWN_CHARS, TOOL_RESULT_SHOWN_LINES);
        self.dropped_bytes += hidden as u64;
        let line = if hidden > 0 {
            format!("{label}: {shown}… ({} bytes, {hidden} not shown)", output.len())
        } else {
            format!("{label}: {shown}")
        };
        self.emit(OutputStream::ToolResult, line);
    }

    /// The tool name of a call id, when it was seen.
    pub fn tool_name(&self, id: &str) -> Option<&str> {
        self.tool_names.get(id).map(String::as_str)
    }

    /// Refused tool calls fail the attempt, or with `on_denial: warn` become notice lines.
    pub fn check_denials(&self, cli: CodingCli) -> Result<(), ExecError> {
        if self.denials.is_empty() {
            return Ok(());
        }
        let error = denied(cli, &self.denials);
        match self.on_denial {
            DenialPolicy::Fail => Err(error),
            DenialPolicy::Warn => {
                self.notice(&error.to_string());
                Ok(())
            }
        }
    }

    /// Adds one turn's usage to the attempt's.
    pub fn add_usage(&mut self, usage: TokenUsage) {
        let total = self.usage.get_or_insert_with(TokenUsage::default);
        total.input_tokens += usage.input_tokens;
        total.output_tokens += usage.output_tokens;
        total.cache_read_input_tokens += usage.cache_read_input_tokens;
        total.cache_creation_input_tokens += usage.cache_creation_input_tokens;
    }

    pub fn into_details(self) -> AnswerDetails {
        AnswerDetails {
            truncated: self.truncated,
            tool_calls: self.tool_calls,
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning),
            session_id: self.session_id,
            cost_usd: self.cost_usd,
        }
    }
}

/// At most `max` characters of `text`, and how many bytes were left out.
pub(super) fn shorten(text: &str, max: usize) -> (String, usize) {
    match text.char_indices().nth(max) {
        Some((cut, _)) => (text[..cut].to_owned(), text.len() - cut),
        None => (text.to_owned(), 0),
    }
}

/// At most `max` bytes of `text`, cut on a character boundary, and the bytes left out.
fn shorten_bytes(text: &str, max: usize) -> (&str, usize) {
    if text.len() <= max {
        return (text, 0);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (&text[..cut], text.len() - cut)
}

/// At most `max_chars` characters and `max_lines` lines of `text`, and the bytes left out.
fn shorten_lines(text: &str, max_chars: usize, max_lines: usize) -> (String, usize) {
    let text = text.trim_end();
    let line_cut = text.match_indices('\n').nth(max_lines.saturating_sub(1)).map(|(at, _)| at);
    let head = line_cut.map_or(text, |at| &text[..at]);
    let (shown, _) = shorten(head, max_chars);
    let hidden = text.len() - shown.len();
    (shown, hidden)
}

/// The text of a tool result's `content`: a string, or the `text` of its blocks.
pub(super) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| match block {
                Value::String(text) => Some(text.clone()),
                Value::Object(_) => match block.get("text").and_then(Value::as_str) {
                    Some(text) => Some(text.to_owned()),
                    None => block.get("type").and_then(Value::as_str).map(|t| format!("[{t}]")),
                },
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Usage from input and output counts; other fields (cache counts) keep their defaults.
/// Assigning fields, not a struct literal, keeps this compiling as `TokenUsage` grows.
#[allow(clippy::field_reassign_with_default)]
pub(super) fn usage(input_tokens: u64, output_tokens: u64) -> TokenUsage {
    let mut usage = TokenUsage::default();
    usage.input_tokens = input_tokens;
    usage.output_tokens = output_tokens;
    usage
}

/// A JSON number as `u64`, 0 when absent.
pub(super) fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A string field.
pub(super) fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// Whether an error message speaks of authentication, which no retry will fix: a 401 or
/// 403 status, or the words the CLIs use for a missing or rejected login or key.
pub(super) fn is_auth_problem(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let status = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "401" || word == "403");
    status
        || [
            "unauthorized",
            "forbidden",
            "api key",
            "api_key",
            "apikey",
            "authentication",
            "not logged in",
            "please log in",
            "/login",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// The error for a CLI that reported a failure: permanent for authentication (with how to
/// log in), transient otherwise, with the exit status and the CLI's own words.
pub(super) fn reported_failure(cli: CodingCli, ending: &Ending, message: &str) -> ExecError {
    if is_auth_problem(message) {
        return ExecError::Refused(format!(
            "{} is not authenticated: {message} ({})",
            cli.kind(),
            cli.login_hint()
        ));
    }
    ExecError::Exit { status: ending.describe(), stderr_tail: format!("{}: {message}", cli.kind()) }
}

/// The error for a CLI that ended without its final event: it crashed or was killed.
pub(super) fn missing_final_event(cli: CodingCli, ending: &Ending, final_event: &str) -> ExecError {
    let mut tail =
        format!("{} ended without a `{final_event}` event (crashed mid-stream?)", cli.kind());
    if !ending.stderr_tail.is_empty() {
        tail.push_str("; stderr:\n");
        tail.push_str(&ending.stderr_tail);
    }
    if is_auth_problem(&ending.stderr_tail) {
        return ExecError::Refused(format!(
            "{} is not authenticated ({}): {tail}",
            cli.kind(),
            cli.login_hint()
        ));
    }
    ExecError::Exit { status: ending.describe(), stderr_tail: tail }
}

/// The error for tool calls the CLI refused to run: the same settings refuse them again, so
/// it is permanent, and it says which setting lets them through.
fn denied(cli: CodingCli, denials: &[String]) -> ExecError {
    let fix = match cli {
        CodingCli::ClaudeCode => {
            "allow the tools with the agent's `tools` (passed as --allowedTools) or the \
             backend's `permission_mode` (e.g. acceptEdits)"
        }
        CodingCli::Codex => {
            "choose a wider sandbox with the backend's `permission_mode` (e.g. workspace-write)"
        }
        CodingCli::Gemini => "allow them with the backend's `permission_mode` (e.g. auto_edit)",
    };
    ExecError::Refused(format!(
        "{} was refused {} tool call{}: {}; {fix}",
        cli.kind(),
        denials.len(),
        if denials.len() == 1 { "" } else { "s" },
        denials.join("; ")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_tool_output_is_cut_by_lines_and_characters() {
        let text = (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let (shown, hidden) = shorten_lines(&text, 1000, 3);
        assert_eq!(shown, "line 0\nline 1\nline 2");
        assert_eq!(hidden, text.len() - shown.len());
        let (shown, hidden) = shorten_lines(&"é".repeat(10), 4, 20);
        assert_eq!(shown, "éééé");
        assert_eq!(hidden, 12);
    }

    #[test]
    fn answer_text_is_streamed_and_kept_up_to_the_limit() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = std::sync::Arc::clone(&seen);
        let sink: OutputSink = std::sync::Arc::new(move |stream, text| {
            store.lock().unwrap().push((stream, text));
        });
        let mut out = Transcript::new(sink, 10);
        out.text("hello ");
        out.text("world, and more");
        out.text("!");
        assert_eq!(out.assembled_text(), "hello worl");
        assert_eq!(out.dropped_bytes, 12);
        let seen = seen.lock().unwrap();
        let tokens: Vec<&str> = seen
            .iter()
            .filter(|(s, _)| *s == OutputStream::Tokens)
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(tokens, ["hello ", "worl"]);
        assert_eq!(seen.iter().filter(|(s, _)| *s == OutputStream::Stderr).count(), 1);
    }

    #[test]
    fn byte_bounds_respect_character_boundaries() {
        assert_eq!(shorten_bytes("aé", 2), ("a", 2));
        assert_eq!(shorten_bytes("abc", 5), ("abc", 0));
    }

    #[test]
    fn auth_words_are_recognised() {
        assert!(is_auth_problem("Invalid API key · Please run /login"));
        assert!(is_auth_problem("unexpected status 401 Unauthorized"));
        assert!(!is_auth_problem("stream disconnected before completion"));
        assert!(!is_auth_problem("failed at src/orders.rs:4013"));
    }
}
