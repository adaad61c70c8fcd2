//! `OpenAI`-compatible Chat Completions (`POST {base_url}/chat/completions`): `OpenAI` itself,
//! Ollama, vLLM, LM Studio and the many servers that speak the same wire format.

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::deadline::Deadline;
use super::env::EnvSource;
use super::http::{self, ApiKey, RetryPolicy};
use super::{ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink, prompt};
use crate::config::HttpBackend;
use crate::event::{OutputStream, TokenUsage};

/// Runs an attempt as one chat completion.
#[derive(Debug, Clone)]
pub struct OpenAiExecutor {
    config: HttpBackend,
    url: String,
    client: reqwest::Client,
    env: EnvSource,
    policy: RetryPolicy,
}

impl OpenAiExecutor {
    /// `name` is the backend's name in `flightdeck.yaml`, used in configuration errors.
    pub fn new(name: &str, config: HttpBackend) -> Result<Self, ExecError> {
        let url = format!("{}/chat/completions", http::base_url(name, &config.base_url)?);
        let policy = RetryPolicy::new(config.max_retries);
        Ok(Self { config, url, client: http::client()?, env: EnvSource::process(), policy })
    }

    /// Reads the API key from `env` instead of the process environment.
    #[must_use]
    pub fn with_env(mut self, env: EnvSource) -> Self {
        self.env = env;
        self
    }

    /// Changes the backoff used when a 429/5xx answer carries no `Retry-After`.
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
        let mut messages = Vec::new();
        if !req.system_prompt.trim().is_empty() {
            messages.push(json!({"role": "system", "content": req.system_prompt}));
        }
        messages.push(json!({"role": "user", "content": prompt::user_message(req)}));
        let mut body = json!({
            "model": super::http::effective_model(req.model.as_deref(), &self.config.model, false),
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "stream": self.config.stream,
        });
        if let Some(temperature) = self.config.temperature {
            body["temperature"] = json!(temperature);
        }
        if self.config.stream {
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
        let deadline = Deadline::start(req.timeout);
        let key = ApiKey::from_env(self.config.api_key_env.as_deref(), &self.env)?;
        let auth = key.as_ref().map(|k| k.header_value("Bearer ")).transpose()?;
        let body = self.body(&req);
        let result = async {
            let request = || {
                let builder = self.client.post(&self.url).json(&body);
                match &auth {
                    Some(value) => builder.header(AUTHORIZATION, value.clone()),
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
        Box::pin(self.run(req, output, cancel))
    }
}

async fn read_stream(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let mut text = String::new();
    let mut usage = None;
    http::read_events(response, deadline, cancel, "data: [DONE]", |event| {
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
        if let Some(delta) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str)
            && !delta.is_empty()
        {
            sink(OutputStream::Tokens, delta.to_owned());
            text.push_str(delta);
        }
        if let Some(counts) = chunk.get("usage").filter(|u| u.is_object()) {
            usage = Some(token_usage(counts));
        }
        Ok(false)
    })
    .await?;
    Ok(ExecOutcome { output: text, usage, dropped_bytes: 0, ..ExecOutcome::default() })
}

async fn read_whole(
    response: reqwest::Response,
    sink: &OutputSink,
    deadline: &Deadline,
    cancel: &CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let body = http::read_body(response, deadline, cancel).await?;
    let json = http::parse_json(&body, "the response")?;
    let text =
        json.pointer("/choices/0/message/content").and_then(Value::as_str).ok_or_else(|| {
            ExecError::Protocol("the response has no choices[0].message.content".into())
        })?;
    if !text.is_empty() {
        sink(OutputStream::Tokens, text.to_owned());
    }
    let usage = json.get("usage").filter(|u| u.is_object()).map(token_usage);
    Ok(ExecOutcome { output: text.to_owned(), usage, dropped_bytes: 0, ..ExecOutcome::default() })
}

fn token_usage(counts: &Value) -> TokenUsage {
    let count = |field: &str| counts.get(field).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage { input_tokens: count("prompt_tokens"), output_tokens: count("completion_tokens") }
}
