//! Anthropic Messages API (`POST {base_url}/v1/messages`).

use reqwest::header::HeaderName;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::deadline::Deadline;
use super::env::EnvSource;
use super::http::{self, ApiKey, RetryPolicy, SseEvent};
use super::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, prompt};
use crate::config::HttpBackend;
use crate::event::{OutputStream, TokenUsage};

/// The API version this executor speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");
const VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");

/// Runs an attempt as one Messages API call.
#[derive(Debug, Clone)]
pub struct AnthropicExecutor {
    config: HttpBackend,
    url: String,
    client: reqwest::Client,
    env: EnvSource,
    policy: RetryPolicy,
}

impl AnthropicExecutor {
    /// `name` is the backend's name in `flightdeck.yaml`, used in configuration errors.
    pub fn new(name: &str, config: HttpBackend) -> Result<Self, ExecError> {
        let base = http::base_url(name, &config.base_url)?;
        // Accept both `https://api.anthropic.com` and `https://api.anthropic.com/v1`.
        let url = if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        let policy = RetryPolicy::new(config.max_retries);
        Ok(Self { config, url, client: http::client()?, env: EnvSource::process(), policy })
    }

    /// Reads the API key from `env` instead of the process environment.
    #[must_use]
    pub fn with_env(mut self, env: EnvSource) -> Self {
        self.env = env;
        self
    }

    /// Changes the backoff used when a 429/5xx/529 answer carries no `Retry-After`.
    #[must_use]
    pub fn with_backoff(
        mut self,
        base_delay: std::time::Duration,
        max_delay: std::time::Duration,
    ) -> Self {
        self.policy.base_delay = base_delay;
        self.policy.max_delay = max_delay;
        self
    }

    fn body(&self, req: &ExecRequest) -> Value {
        let mut body = json!({
            "model": super::http::effective_model(req.model.as_deref(), &self.config.model, true),
            "max_tokens": self.config.max_tokens,
            "messages": [{"role": "user", "content": prompt::user_message(req)}],
            "stream": self.config.stream,
        });
        if !req.system_prompt.trim().is_empty() {
            body["system"] = json!(req.system_prompt);
        }
        if let Some(temperature) = self.config.temperature {
            body["temperature"] = json!(temperature);
        }
        body
    }

    async fn run(
        &self,
        req: ExecRequest,
        sink: OutputSink,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        let deadline = Deadline::start(req.timeout);
        let key = ApiKey::from_env(self.config.api_key_env.as_deref(), &self.env)?;
        let key_header = key.as_ref().map(|k| k.header_value("")).transpose()?;
        let body = self.body(&req);
        let result = async {
            let request = || {
                let builder = self
                    .client
                    .post(&self.url)
                    .header(VERSION_HEADER, ANTHROPIC_VERSION)
                    .json(&body);
                match &key_header {
                    Some(value) => builder.header(API_KEY_HEADER, value.clone()),
                    None => builder,
                }
            };
            let response = http::send_with_retry(request, &self.policy, &deadline, &cancel).await?;
            if self.config.stream {
                read_stream(response, &sink, &deadline, &cancel).await
            } else {
                read_whole(response, &sink, &deadline, &cancel).await
            }
        }
        .await;
        match key {
            Some(key) => result.map_err(|e| key.redact_error(e)),
            None => result,
        }
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
        Box::pin(self.run(req, output, cancel))
    }
}

/// Text and token counts gathered from the event stream.
#[derive(Default)]
struct StreamState {
    text: String,
    usage: Option<TokenUsage>,
}

impl StreamState {
    /// Applies one event; `true` once `message_stop` arrives.
    fn apply(&mut self, event: &SseEvent, sink: &OutputSink) -> Result<bool, ExecError> {
        let data = http::parse_json(event.data.as_bytes(), "a stream event")?;
        let kind =
            data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                let usage = self.usage.get_or_insert_with(TokenUsage::default);
                if let Some(input) =
                    data.pointer("/message/usage/input_tokens").and_then(Value::as_u64)
                {
                    usage.input_tokens = input;
                }
                if let Some(output) =
                    data.pointer("/message/usage/output_tokens").and_then(Value::as_u64)
                {
                    usage.output_tokens = output;
                }
            }
            "content_block_start" => {
                if let Some(text) = data.pointer("/content_block/text").and_then(Value::as_str) {
                    self.push(text, sink);
                }
            }
            "content_block_delta" => {
                if data.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta")
                    && let Some(text) = data.pointer("/delta/text").and_then(Value::as_str)
                {
                    self.push(text, sink);
                }
            }
            "message_delta" => {
                // Anthropic reports cumulative output tokens here.
                if let Some(output) = data.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.get_or_insert_with(TokenUsage::default).output_tokens = output;
                }
                if let Some(input) = data.pointer("/usage/input_tokens").and_then(Value::as_u64) {
                    self.usage.get_or_insert_with(TokenUsage::default).input_tokens = input;
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
            // ping, content_block_stop and event types added later carry nothing we need.
            _ => {}
        }
        Ok(false)
    }

    fn push(&mut self, text: &str, sink: &OutputSink) {
        if !text.is_empty() {
            sink(OutputStream::Tokens, text.to_owned());
            self.text.push_str(text);
        }
    }
}

async fn read_stream(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let mut state = StreamState::default();
    http::read_events(response, deadline, cancel, "message_stop", |event| {
        state.apply(&event, sink)
    })
    .await?;
    Ok(ExecOutcome {
        output: state.text,
        usage: state.usage,
        dropped_bytes: 0,
        ..ExecOutcome::default()
    })
}

async fn read_whole(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let body = http::read_body(response, deadline, cancel).await?;
    let json = http::parse_json(&body, "the response")?;
    let blocks = json
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ExecError::Protocol("the response has no `content` list".into()))?;
    let text: String = blocks
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    if !text.is_empty() {
        sink(OutputStream::Tokens, text.clone());
    }
    let usage = json.get("usage").filter(|u| u.is_object()).map(|counts| {
        let count = |field: &str| counts.get(field).and_then(Value::as_u64).unwrap_or(0);
        TokenUsage { input_tokens: count("input_tokens"), output_tokens: count("output_tokens") }
    });
    Ok(ExecOutcome { output: text, usage, dropped_bytes: 0, ..ExecOutcome::default() })
}
