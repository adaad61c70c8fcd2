//! Anthropic Messages API (`POST {base_url}/v1/messages`).

use reqwest::header::HeaderName;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::deadline::Deadline;
use super::env::EnvSource;
use super::http::{self, Api, SseEvent, Transport};
use super::{
    ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, ToolCall, prompt,
};
use crate::config::HttpBackend;
use crate::event::{OutputStream, TokenUsage};

/// The API version this executor speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");
const VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");

/// Runs an attempt as one Messages API call.
#[derive(Debug, Clone)]
pub struct AnthropicExecutor {
    name: String,
    config: HttpBackend,
    transport: Transport,
}

impl AnthropicExecutor {
    /// `name` is the backend's name in `flightdeck.yaml`, used in errors. Keys, header values
    /// and proxy settings come from the process environment.
    pub fn new(name: &str, config: HttpBackend) -> Result<Self, ExecError> {
        Self::with_env(name, config, EnvSource::process())
    }

    /// Reads keys, header values, proxies and `SSL_CERT_*` from `env` instead.
    pub fn with_env(name: &str, config: HttpBackend, env: EnvSource) -> Result<Self, ExecError> {
        let transport = Transport::new(name, &config, Api::Anthropic, env)?;
        Ok(Self { name: name.to_owned(), config, transport })
    }

    fn body(&self, req: &ExecRequest, model: &str) -> Value {
        let config = &self.config;
        let max_tokens = config.max_completion_tokens.unwrap_or(config.max_tokens);
        let mut body = json!({
            "model": model,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt::user_message(req)}],
            "stream": config.stream,
        });
        if !req.system_prompt.trim().is_empty() {
            body["system"] = json!(req.system_prompt);
        }
        if let Some(temperature) = config.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(top_p) = config.top_p {
            body["top_p"] = json!(top_p);
        }
        if !config.stop.is_empty() {
            body["stop_sequences"] = json!(config.stop);
        }
        // The Messages API has no `seed`; `response_format` is passed through for the
        // compatible servers that take it.
        if let Some(format) = &config.response_format {
            body["response_format"] = format.clone();
        }
        body
    }

    async fn run(
        &self,
        req: ExecRequest,
        sink: OutputSink,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        let transport = &self.transport;
        let deadline = transport.deadline(req.timeout);
        let mut credentials = transport.credentials(&API_KEY_HEADER, "")?;
        credentials.headers.insert(
            VERSION_HEADER,
            ANTHROPIC_VERSION
                .parse()
                .map_err(|_| ExecError::Config("anthropic-version is not a header value".into()))?,
        );
        let model = http::effective_model(
            &self.name,
            req.model.as_deref(),
            self.config.model.as_deref(),
            Api::Anthropic,
        )?;
        let body = self.body(&req, &model);
        let result = async {
            let response =
                transport.post(&body, &credentials.headers, &model, &deadline, &cancel).await?;
            let stall = transport.stall_timeout();
            // A server that ignores `stream: true` answers with one JSON body.
            if self.config.stream && http::is_event_stream(&response) {
                read_stream(response, &sink, &deadline, &cancel, stall).await
            } else {
                read_whole(response, &sink, &deadline, &cancel, stall).await
            }
        }
        .await;
        result.map_err(|e| credentials.redact_error(e))
    }
}

impl Executor for AnthropicExecutor {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn execute(
        &self,
        req: ExecRequest,
        output: OutputSink,
        cancel: CancellationToken,
    ) -> ExecFuture<'_> {
        Box::pin(async move {
            let result = self.run(req, output, cancel).await;
            result.map_err(|e| self.transport.context(e))
        })
    }
}

/// Anthropic's own counts: `input_tokens` leaves out the cached part.
#[derive(Default, Clone, Copy)]
struct RawUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl RawUsage {
    /// Takes every count present in `counts`; later events repeat them cumulatively.
    fn update(&mut self, counts: &Value) {
        let take = |field: &str, into: &mut u64| {
            if let Some(count) = counts.get(field).and_then(Value::as_u64) {
                *into = count;
            }
        };
        take("input_tokens", &mut self.input);
        take("output_tokens", &mut self.output);
        take("cache_read_input_tokens", &mut self.cache_read);
        take("cache_creation_input_tokens", &mut self.cache_creation);
    }

    /// Input counted in full, so a warm run reports the same prompt size as a cold one.
    fn usage(self) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input + self.cache_read + self.cache_creation,
            output_tokens: self.output,
            cache_read_input_tokens: self.cache_read,
            cache_creation_input_tokens: self.cache_creation,
        }
    }
}

/// A content block being streamed.
enum Block {
    Text,
    Thinking,
    ToolUse { id: Option<String>, name: String, input: String },
    Other,
}

/// Text, thinking, tool calls and token counts gathered from the event stream.
#[derive(Default)]
struct StreamState {
    text: String,
    reasoning: String,
    open: Vec<(u64, Block)>,
    tool_calls: Vec<ToolCall>,
    truncated: bool,
    usage: Option<RawUsage>,
}

impl StreamState {
    /// Applies one event; `true` once `message_stop` arrives.
    fn apply(&mut self, event: &SseEvent, sink: &OutputSink) -> Result<bool, ExecError> {
        let data = http::parse_json(event.data.as_bytes(), "a stream event")?;
        let kind =
            data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or("");
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                if let Some(counts) = data.pointer("/message/usage") {
                    self.usage.get_or_insert_with(RawUsage::default).update(counts);
                }
            }
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                self.start_block(index, block, sink);
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                self.add_delta(index, delta, sink);
            }
            "content_block_stop" => self.stop_block(index, sink),
            "message_delta" => {
                if data.pointer("/delta/stop_reason").and_then(Value::as_str) == Some("max_tokens")
                {
                    self.truncated = true;
                }
                // Anthropic reports cumulative counts here.
                if let Some(counts) = data.get("usage") {
                    self.usage.get_or_insert_with(RawUsage::default).update(counts);
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                let kind = data.pointer("/error/type").and_then(Value::as_str).unwrap_or("error");
                let message =
                    data.pointer("/error/message").and_then(Value::as_str).unwrap_or("no message");
                return Err(ExecError::Protocol(format!(
                    "the API reported an error mid-stream: {kind}: {message}"
                )));
            }
            // ping and event types added later carry nothing we need.
            _ => {}
        }
        Ok(false)
    }

    fn start_block(&mut self, index: u64, block: &Value, sink: &OutputSink) {
        let text = |field: &str| block.get(field).and_then(Value::as_str).unwrap_or("");
        let started = match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                self.push_text(text("text"), sink);
                Block::Text
            }
            Some("thinking") => {
                self.push_thinking(text("thinking"), sink);
                Block::Thinking
            }
            Some("tool_use") => {
                // The input arrives as `input_json_delta` pieces; the start holds `{}`.
                let input = block
                    .get("input")
                    .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                    .map(Value::to_string)
                    .unwrap_or_default();
                Block::ToolUse {
                    id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                    name: text("name").to_owned(),
                    input,
                }
            }
            _ => Block::Other,
        };
        self.open.push((index, started));
    }

    fn add_delta(&mut self, index: u64, delta: &Value, sink: &OutputSink) {
        let text = |field: &str| delta.get(field).and_then(Value::as_str).unwrap_or("");
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => self.push_text(text("text"), sink),
            Some("thinking_delta") => self.push_thinking(text("thinking"), sink),
            Some("input_json_delta") => {
                if let Some((_, Block::ToolUse { input, .. })) =
                    self.open.iter_mut().find(|(i, _)| *i == index)
                {
                    input.push_str(text("partial_json"));
                }
            }
            // signature_delta and later kinds.
            _ => {}
        }
    }

    fn stop_block(&mut self, index: u64, sink: &OutputSink) {
        let Some(at) = self.open.iter().position(|(i, _)| *i == index) else { return };
        if let (_, Block::ToolUse { id, name, input }) = self.open.remove(at) {
            let input = if input.trim().is_empty() { "{}".to_owned() } else { input };
            sink(OutputStream::ToolCall, format!("{name} {input}"));
            self.tool_calls.push(ToolCall { id, name, input });
        }
    }

    fn push_text(&mut self, text: &str, sink: &OutputSink) {
        if !text.is_empty() {
            sink(OutputStream::Tokens, text.to_owned());
            self.text.push_str(text);
        }
    }

    fn push_thinking(&mut self, text: &str, sink: &OutputSink) {
        if !text.is_empty() {
            sink(OutputStream::Reasoning, text.to_owned());
            self.reasoning.push_str(text);
        }
    }
}

async fn read_stream(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
    stall: std::time::Duration,
) -> Result<ExecOutcome, ExecError> {
    let mut state = StreamState::default();
    http::read_events(response, deadline, cancel, stall, "message_stop", |event| {
        state.apply(&event, sink)
    })
    .await?;
    // Tool calls were streamed as their blocks closed.
    let silent: super::OutputSink = std::sync::Arc::new(|_, _| {});
    Ok(http::answer(
        state.text,
        state.reasoning,
        state.tool_calls,
        state.truncated,
        state.usage.map(RawUsage::usage),
        &silent,
    ))
}

async fn read_whole(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
    stall: std::time::Duration,
) -> Result<ExecOutcome, ExecError> {
    let body = http::read_body(response, deadline, cancel, stall).await?;
    let json = http::parse_json(&body, "the response")?;
    let blocks = json
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ExecError::Protocol("the response has no `content` list".into()))?;
    let (mut text, mut reasoning, mut tool_calls) = (String::new(), String::new(), Vec::new());
    for block in blocks {
        let field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or("");
        match field("type") {
            "text" => text.push_str(field("text")),
            "thinking" => reasoning.push_str(field("thinking")),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                name: field("name").to_owned(),
                input: block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
            }),
            _ => {}
        }
    }
    if !reasoning.is_empty() {
        sink(OutputStream::Reasoning, reasoning.clone());
    }
    if !text.is_empty() {
        sink(OutputStream::Tokens, text.clone());
    }
    let truncated = json.get("stop_reason").and_then(Value::as_str) == Some("max_tokens");
    let usage = json.get("usage").filter(|u| u.is_object()).map(|counts| {
        let mut raw = RawUsage::default();
        raw.update(counts);
        raw.usage()
    });
    Ok(http::answer(text, reasoning, tool_calls, truncated, usage, sink))
}
