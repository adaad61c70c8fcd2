//! `OpenAI`-compatible Chat Completions (`POST {base_url}/chat/completions`): `OpenAI` itself,
//! Ollama, vLLM, llama.cpp, LM Studio and the many servers that speak the same wire format.

use std::collections::BTreeMap;

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::deadline::Deadline;
use super::env::EnvSource;
use super::http::{self, Api, Transport};
use super::{
    ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, ToolCall, prompt,
};
use crate::config::HttpBackend;
use crate::event::{OutputStream, TokenUsage};

/// Runs an attempt as one chat completion.
#[derive(Debug, Clone)]
pub struct OpenAiExecutor {
    name: String,
    config: HttpBackend,
    transport: Transport,
}

impl OpenAiExecutor {
    /// `name` is the backend's name in `flightdeck.yaml`, used in errors. Keys, header values
    /// and proxy settings come from the process environment.
    pub fn new(name: &str, config: HttpBackend) -> Result<Self, ExecError> {
        Self::with_env(name, config, EnvSource::process())
    }

    /// Reads keys, header values, proxies and `SSL_CERT_*` from `env` instead.
    pub fn with_env(name: &str, config: HttpBackend, env: EnvSource) -> Result<Self, ExecError> {
        let transport = Transport::new(name, &config, Api::OpenAi, env)?;
        Ok(Self { name: name.to_owned(), config, transport })
    }

    fn body(&self, req: &ExecRequest, model: &str) -> Value {
        let config = &self.config;
        let mut messages = Vec::new();
        if !req.system_prompt.trim().is_empty() {
            messages.push(json!({"role": "system", "content": req.system_prompt}));
        }
        messages.push(json!({"role": "user", "content": prompt::user_message(req)}));
        let mut body = json!({"model": model, "messages": messages, "stream": config.stream});
        match config.max_completion_tokens {
            Some(limit) => body["max_completion_tokens"] = json!(limit),
            None => body["max_tokens"] = json!(config.max_tokens),
        }
        if let Some(temperature) = config.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(top_p) = config.top_p {
            body["top_p"] = json!(top_p);
        }
        if !config.stop.is_empty() {
            body["stop"] = json!(config.stop);
        }
        if let Some(seed) = config.seed {
            body["seed"] = json!(seed);
        }
        if let Some(format) = &config.response_format {
            body["response_format"] = format.clone();
        }
        if config.stream {
            // Without this, streamed answers carry no token counts.
            body["stream_options"] = json!({"include_usage": true});
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
        let credentials = transport.credentials(&AUTHORIZATION, "Bearer ")?;
        let model = http::effective_model(
            &self.name,
            req.model.as_deref(),
            self.config.model.as_deref(),
            Api::OpenAi,
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

impl Executor for OpenAiExecutor {
    fn kind(&self) -> &'static str {
        "openai"
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

/// A tool call assembled from the pieces streamed at one `index`.
#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// What a stream has delivered so far.
#[derive(Default)]
struct StreamState {
    text: String,
    reasoning: String,
    calls: BTreeMap<u64, PartialCall>,
    truncated: bool,
    usage: Option<TokenUsage>,
}

impl StreamState {
    /// Applies one chunk's first choice and usage.
    fn apply(&mut self, chunk: &Value, sink: &OutputSink) {
        if let Some(choice) = chunk.pointer("/choices/0") {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = reasoning_of(delta).filter(|t| !t.is_empty()) {
                sink(OutputStream::Reasoning, text.to_owned());
                self.reasoning.push_str(text);
            }
            if let Some(text) =
                delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty())
            {
                sink(OutputStream::Tokens, text.to_owned());
                self.text.push_str(text);
            }
            for piece in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.add_call_piece(piece);
            }
            if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
                self.truncated = true;
            }
        }
        if let Some(counts) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(token_usage(counts));
        }
    }

    /// Tool calls arrive in pieces: the first names the call's `index`, `id` and function
    /// name, later ones append to its `arguments` text.
    fn add_call_piece(&mut self, piece: &Value) {
        let index = piece.get("index").and_then(Value::as_u64).unwrap_or(0);
        let call = self.calls.entry(index).or_default();
        if let Some(id) = piece.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
            call.id = Some(id.to_owned());
        }
        if let Some(name) = piece.pointer("/function/name").and_then(Value::as_str) {
            call.name.push_str(name);
        }
        if let Some(arguments) = piece.pointer("/function/arguments").and_then(Value::as_str) {
            call.arguments.push_str(arguments);
        }
    }

    fn finish(self, sink: &OutputSink) -> ExecOutcome {
        let tool_calls = self
            .calls
            .into_values()
            .map(|call| ToolCall { id: call.id, name: call.name, input: call.arguments })
            .collect();
        http::answer(self.text, self.reasoning, tool_calls, self.truncated, self.usage, sink)
    }
}

/// The reasoning text of a delta or message: `reasoning_content` (llama.cpp, `DeepSeek`,
/// vLLM) or `reasoning` (`OpenRouter`, newer vLLM).
fn reasoning_of(part: &Value) -> Option<&str> {
    part.get("reasoning_content")
        .and_then(Value::as_str)
        .or_else(|| part.get("reasoning").and_then(Value::as_str))
}

async fn read_stream(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
    stall: std::time::Duration,
) -> Result<ExecOutcome, ExecError> {
    let mut state = StreamState::default();
    http::read_events(response, deadline, cancel, stall, "data: [DONE]", |event| {
        if event.data.trim() == "[DONE]" {
            return Ok(true);
        }
        let chunk = http::parse_json(event.data.as_bytes(), "a stream chunk")?;
        if let Some(error) = chunk.get("error") {
            return Err(ExecError::Protocol(format!(
                "the API reported an error mid-stream: {}",
                error.get("message").and_then(Value::as_str).unwrap_or(&error.to_string())
            )));
        }
        state.apply(&chunk, sink);
        Ok(false)
    })
    .await?;
    Ok(state.finish(sink))
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
    let message = json
        .pointer("/choices/0/message")
        .ok_or_else(|| ExecError::Protocol("the response has no choices[0].message".into()))?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or_default();
    let tool_calls: Vec<ToolCall> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|call| ToolCall {
            id: call.get("id").and_then(Value::as_str).map(str::to_owned),
            name: call.pointer("/function/name").and_then(Value::as_str).unwrap_or("").to_owned(),
            input: call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        })
        .collect();
    if text.is_empty() && tool_calls.is_empty() && message.get("content").is_none() {
        return Err(ExecError::Protocol(
            "the response has neither choices[0].message.content nor tool_calls".into(),
        ));
    }
    let reasoning = reasoning_of(message).unwrap_or_default().to_owned();
    if !reasoning.is_empty() {
        sink(OutputStream::Reasoning, reasoning.clone());
    }
    if !text.is_empty() {
        sink(OutputStream::Tokens, text.to_owned());
    }
    let truncated =
        json.pointer("/choices/0/finish_reason").and_then(Value::as_str) == Some("length");
    let usage = json.get("usage").filter(|u| u.is_object()).map(token_usage);
    Ok(http::answer(text.to_owned(), reasoning, tool_calls, truncated, usage, sink))
}

/// `prompt_tokens` already counts the cached part, reported apart in
/// `prompt_tokens_details.cached_tokens`.
fn token_usage(counts: &Value) -> TokenUsage {
    let count = |pointer: &str| counts.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage {
        input_tokens: count("/prompt_tokens"),
        output_tokens: count("/completion_tokens"),
        cache_read_input_tokens: count("/prompt_tokens_details/cached_tokens"),
        cache_creation_input_tokens: 0,
    }
}
