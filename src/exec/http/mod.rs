//! Pieces shared by the HTTP executors: the backend's connection settings (proxy, trusted
//! roots, extra headers), the API key, sending one request (resent once on a fresh
//! connection when the server closed it without answering), error answers turned into
//! classified errors that name the backend, reading bodies within the attempt's deadline and
//! the stall timeout, and SSE parsing.
//!
//! Executors make one request per attempt: every retry, and every wait for `Retry-After`,
//! belongs to the engine, so a task has one retry budget.

mod connect;
pub(crate) mod sse;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::deadline::Deadline;
use super::env::EnvSource;
use super::{AnswerDetails, ExecError, ExecOutcome, OutputSink, ToolCall};
use crate::config::{HeaderSource, HttpBackend};
use crate::event::{OutputStream, TokenUsage};

pub use sse::{SseEvent, read_events};

/// An API key read from the environment. It is only ever put into a request header: Debug
/// prints `***` and there is no Display.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Reads the key from the variable named by the backend's `api_key_env`. No variable
    /// configured means no key (local servers such as Ollama); a configured but unset or empty
    /// variable is [`ExecError::MissingKey`].
    pub fn from_env(api_key_env: Option<&str>, env: &EnvSource) -> Result<Option<Self>, ExecError> {
        let Some(name) = api_key_env else { return Ok(None) };
        match env.get(name) {
            Some(value) if !value.trim().is_empty() => {
                let key = Self(value.trim().to_owned());
                // A key that cannot travel in a header would otherwise fail inside reqwest.
                key.header_value("")?;
                Ok(Some(key))
            }
            _ => Err(ExecError::MissingKey(name.to_owned())),
        }
    }

    /// The header value `prefix` + key, marked sensitive so it is never logged by the stack.
    pub fn header_value(&self, prefix: &str) -> Result<HeaderValue, ExecError> {
        sensitive_value(&format!("{prefix}{}", self.0)).ok_or_else(|| {
            ExecError::Config("the API key holds characters not allowed in an HTTP header".into())
        })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn sensitive_value(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `error` with `redact` applied to every message it carries.
fn redact_error(error: ExecError, redact: &dyn Fn(&str) -> String) -> ExecError {
    match error {
        ExecError::Http { status, message, retry_after } => {
            ExecError::Http { status, message: redact(&message), retry_after }
        }
        ExecError::Connection(m) => ExecError::Connection(redact(&m)),
        ExecError::Protocol(m) => ExecError::Protocol(redact(&m)),
        ExecError::Config(m) => ExecError::Config(redact(&m)),
        ExecError::Other(m) => ExecError::Other(redact(&m)),
        ExecError::Backend { backend, url, source } => {
            ExecError::Backend { backend, url, source: Box::new(redact_error(*source, redact)) }
        }
        other => other,
    }
}

/// The secrets of one attempt: the API key and the header values read from the environment.
/// They travel only in headers marked sensitive and are replaced by `***` in every error.
#[derive(Default)]
pub struct Credentials {
    pub headers: HeaderMap,
    secrets: Vec<String>,
}

impl Credentials {
    /// Replaces every secret wherever a server echoed it back.
    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }

    pub fn redact_error(&self, error: ExecError) -> ExecError {
        redact_error(error, &|text| self.redact(text))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} headers, ***)", self.headers.len())
    }
}

/// Which API a backend speaks, for the hints of its error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// One HTTP backend's way to its server: the endpoint URL, two clients (pooled, and one
/// that always opens a fresh connection), the extra headers, timeouts and where to read
/// secrets.
#[derive(Debug, Clone)]
pub struct Transport {
    backend: String,
    url: String,
    api: Api,
    api_key_env: Option<String>,
    headers: BTreeMap<String, HeaderSource>,
    request_timeout: Option<Duration>,
    stall_timeout: Duration,
    pooled: Client,
    fresh: Client,
    env: EnvSource,
}

impl Transport {
    /// `backend` is the backend's name in `flightdeck.yaml`; `path` is appended to its
    /// `base_url` (`/chat/completions`, `/v1/messages`).
    pub fn new(
        backend: &str,
        config: &HttpBackend,
        api: Api,
        env: EnvSource,
    ) -> Result<Self, ExecError> {
        let base = base_url(backend, &config.base_url)?;
        let url = match api {
            Api::OpenAi => format!("{base}/chat/completions"),
            // Accept both `https://api.anthropic.com` and `https://api.anthropic.com/v1`.
            Api::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
            Api::Anthropic => format!("{base}/v1/messages"),
        };
        let parsed = Url::parse(&url).map_err(|e| {
            ExecError::Config(format!("backends.{backend}.base_url: `{url}` is not a URL: {e}"))
        })?;
        let build = |pooled: bool| connect::client(backend, config, &parsed, &env, pooled);
        Ok(Self {
            backend: backend.to_owned(),
            api,
            api_key_env: config.api_key_env.clone(),
            headers: config.headers.clone(),
            request_timeout: config.request_timeout,
            stall_timeout: config.stall_timeout,
            pooled: build(true)?,
            fresh: build(false)?,
            env,
            url,
        })
    }

    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The attempt's deadline: its own timeout, or the backend's `request_timeout` when
    /// that is shorter.
    pub fn deadline(&self, attempt_timeout: Duration) -> Deadline {
        Deadline::start(self.request_timeout.map_or(attempt_timeout, |t| t.min(attempt_timeout)))
    }

    /// `error` naming this backend and its URL. Cancellation is no backend's doing and stays
    /// as it is.
    pub fn context(&self, error: ExecError) -> ExecError {
        match error {
            ExecError::Cancelled | ExecError::Backend { .. } => error,
            source => ExecError::Backend {
                backend: self.backend.clone(),
                url: self.url.clone(),
                source: Box::new(source),
            },
        }
    }

    /// Reads the API key and the `{env: …}` header values for one attempt. The key goes in
    /// the header `key_header` with `prefix` (`authorization: Bearer …`, `x-api-key: …`).
    pub fn credentials(
        &self,
        key_header: &HeaderName,
        prefix: &str,
    ) -> Result<Credentials, ExecError> {
        let mut credentials = Credentials::default();
        if let Some(key) = ApiKey::from_env(self.api_key_env.as_deref(), &self.env)? {
            credentials.headers.insert(key_header.clone(), key.header_value(prefix)?);
            credentials.secrets.push(key.0);
        }
        for (name, source) in &self.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ExecError::Config(format!("headers: `{name}` is not a valid header name"))
            })?;
            let value = match source {
                HeaderSource::Text(text) => HeaderValue::from_str(text).ok(),
                HeaderSource::Env { env } => {
                    let value =
                        self.env.get(env).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                            ExecError::Config(format!(
                                "environment variable `{env}` for header `{name}` is not set"
                            ))
                        })?;
                    let value = value.trim().to_owned();
                    let header_value = sensitive_value(&value);
                    credentials.secrets.push(value);
                    header_value
                }
            };
            let value = value.ok_or_else(|| {
                ExecError::Config(format!(
                    "headers: the value of `{name}` holds characters not allowed in a header"
                ))
            })?;
            credentials.headers.insert(header, value);
        }
        Ok(credentials)
    }

    /// Sends `body` as one POST. A request the server never answered (it closed or reset the
    /// connection before the first response byte, as llama.cpp does with a keep-alive
    /// connection it has dropped) is sent once more at once on a fresh connection: that is
    /// not a retry. Any answer but 2xx becomes [`ExecError::Http`] with the API's message,
    /// a hint for permanent errors and the `Retry-After`.
    pub async fn post(
        &self,
        body: &Value,
        headers: &HeaderMap,
        model: &str,
        deadline: &Deadline,
        cancel: &CancellationToken,
    ) -> Result<Response, ExecError> {
        let send =
            |client: &Client| client.post(&self.url).headers(headers.clone()).json(body).send();
        let response = match deadline.bound(cancel, send(&self.pooled)).await? {
            Ok(response) => response,
            Err(error) if never_answered(&error) => {
                tracing::info!(
                    backend = %self.backend,
                    error = %describe(&error),
                    "request not answered; sending it again on a fresh connection"
                );
                deadline
                    .bound(cancel, send(&self.fresh))
                    .await?
                    .map_err(|e| ExecError::Connection(describe(&e)))?
            }
            Err(error) => return Err(ExecError::Connection(describe(&error))),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let body =
            read_body(response, deadline, cancel, self.stall_timeout).await.unwrap_or_default();
        let mut message = error_message(status, &body);
        if let Some(hint) = self.hint(status, model) {
            message = format!("{message} — {hint}");
        }
        Err(ExecError::Http { status: status.as_u16(), message, retry_after })
    }

    /// What to fix after an answer that will not change by trying again.
    fn hint(&self, status: StatusCode, model: &str) -> Option<String> {
        let hint = match status.as_u16() {
            401 | 403 => match &self.api_key_env {
                Some(variable) => {
                    format!("check that {variable} holds a valid key for this server")
                }
                None => {
                    "the server wants a key: set api_key_env to the variable that holds it".into()
                }
            },
            404 if self.api == Api::OpenAi && !self.url.ends_with("/v1/chat/completions") => {
                let base = self.url.trim_end_matches("/chat/completions");
                format!("base_url has no `/v1`; OpenAI-compatible servers answer under `{base}/v1`")
            }
            404 => format!("check base_url and that the server has the model `{model}`"),
            400 | 422 => format!(
                "the server refused the request; check the backend's settings (model `{model}`, \
                 max_tokens, …)"
            ),
            _ => return None,
        };
        Some(hint)
    }
}

/// Whether the answer is an event stream (`text/event-stream`), not one JSON body.
pub fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// True when `error` says the server closed or reset the connection before answering: the
/// request was never answered, so sending it again cannot duplicate an answer the client
/// saw. Refused connections and timeouts are real failures.
fn never_answered(error: &reqwest::Error) -> bool {
    if error.is_connect() || error.is_timeout() {
        return false;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Largest body read in full (non-streaming answers and error bodies).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest raw body quoted in an error message.
const MAX_QUOTED_BODY_CHARS: usize = 300;

/// The next chunk of `response`, within the deadline and the stall timeout.
async fn next_chunk(
    response: &mut Response,
    deadline: &Deadline,
    cancel: &CancellationToken,
    stall: Duration,
) -> Result<Result<Option<bytes::Bytes>, reqwest::Error>, ExecError> {
    match deadline.bound(cancel, tokio::time::timeout(stall, response.chunk())).await? {
        Ok(chunk) => Ok(chunk),
        Err(_) => Err(ExecError::Stalled(stall)),
    }
}

/// Reads a whole body within the deadline, refusing bodies beyond [`MAX_BODY_BYTES`].
pub async fn read_body(
    mut response: Response,
    deadline: &Deadline,
    cancel: &CancellationToken,
    stall: Duration,
) -> Result<Vec<u8>, ExecError> {
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(&mut response, deadline, cancel, stall)
        .await?
        .map_err(|e| ExecError::Connection(format!("reading the response: {}", describe(&e))))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ExecError::Protocol(format!(
                "response body is larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON body, naming what was expected when it is not JSON.
pub fn parse_json(body: &[u8], what: &str) -> Result<serde_json::Value, ExecError> {
    serde_json::from_slice(body).map_err(|e| {
        ExecError::Protocol(format!("{what} is not valid JSON ({e}): {}", quote(body)))
    })
}

/// The API's own explanation: `error.message` (`OpenAI`, Anthropic), a string `error`
/// (Ollama), a top-level `message`, else the start of the body, else the status reason.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = json
            .pointer("/error/message")
            .or_else(|| json.get("error").filter(|e| e.is_string()))
            .or_else(|| json.get("message"))
            .and_then(serde_json::Value::as_str);
        if let Some(message) = found {
            return message.to_owned();
        }
    }
    let quoted = quote(body);
    if quoted.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        quoted
    }
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A reqwest error with its causes, which carry the useful part ("connection refused").
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`, the form servers send.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let rest = text.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(str::parse::<u64>);
    let (hour, minute, second) = (clock.next()?.ok()?, clock.next()?.ok()?, clock.next()?.ok()?);
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The attempt's outcome; tool calls are streamed as one line each once complete.
pub fn answer(
    text: String,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
    truncated: bool,
    usage: Option<TokenUsage>,
    sink: &OutputSink,
) -> ExecOutcome {
    for call in &tool_calls {
        sink(OutputStream::ToolCall, format!("{} {}", call.name, call.input));
    }
    let details = AnswerDetails {
        truncated,
        tool_calls,
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        ..AnswerDetails::default()
    };
    ExecOutcome { output: text, usage, dropped_bytes: 0, details }
}

/// Checks that `base_url` is an http(s) URL and returns it without a trailing slash.
pub fn base_url(name: &str, base_url: &str) -> Result<String, ExecError> {
    let parsed = Url::parse(base_url).map_err(|e| {
        ExecError::Config(format!("backends.{name}.base_url: `{base_url}` is not a URL: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ExecError::Config(format!(
            "backends.{name}.base_url: `{base_url}` must start with http:// or https://"
        )));
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

/// The backend `model` that defers to the agent definition.
pub const MODEL_FROM_AGENT: &str = "from-agent";

/// Claude Code subagent files write `model: sonnet | opus | haiku | inherit`: hints, not API
/// model ids. A backend's configured `model` is the model, whatever alias an agent names;
/// an agent's own real model id still takes precedence. The aliases map to Anthropic model
/// ids only on an Anthropic backend that names no model (or says `from-agent`).
pub(crate) fn effective_model(
    backend: &str,
    requested: Option<&str>,
    configured: Option<&str>,
    api: Api,
) -> Result<String, ExecError> {
    let requested = requested.map(str::trim).filter(|m| !m.is_empty() && *m != "inherit");
    let configured = configured.map(str::trim).filter(|m| *m != MODEL_FROM_AGENT);
    let alias = |model: &str| matches!(model, "sonnet" | "opus" | "haiku");
    match (requested, configured) {
        (Some(model), _) if !alias(model) => Ok(model.to_owned()),
        (_, Some(model)) => Ok(model.to_owned()),
        (Some(alias), None) if api == Api::Anthropic => Ok(match alias {
            "opus" => "claude-opus-4-1",
            "haiku" => "claude-haiku-4-5",
            _ => "claude-sonnet-4-5",
        }
        .to_owned()),
        (Some(alias), None) => Err(ExecError::Config(format!(
            "backends.{backend}.model: not set, and the agent's `model: {alias}` is a Claude \
             Code alias only an Anthropic backend can map; set the backend's model"
        ))),
        (None, None) => Err(ExecError::Config(format!(
            "backends.{backend}.model: not set and the agent names no model; set one of them"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod model_tests {
    use super::{Api, effective_model};

    fn model(requested: Option<&str>, configured: Option<&str>, api: Api) -> String {
        effective_model("b", requested, configured, api).unwrap()
    }

    #[test]
    fn claude_code_aliases_never_replace_a_configured_model() {
        assert_eq!(model(Some("sonnet"), Some("gpt-4o-mini"), Api::OpenAi), "gpt-4o-mini");
        assert_eq!(model(Some("sonnet"), Some("qwen-coder"), Api::Anthropic), "qwen-coder");
        assert_eq!(model(Some("inherit"), Some("llama3.1"), Api::OpenAi), "llama3.1");
        assert_eq!(model(None, Some("llama3.1"), Api::OpenAi), "llama3.1");
        assert_eq!(model(Some("qwen2.5"), Some("llama3.1"), Api::OpenAi), "qwen2.5");
    }

    #[test]
    fn aliases_map_only_when_the_backend_defers() {
        assert_eq!(model(Some("sonnet"), None, Api::Anthropic), "claude-sonnet-4-5");
        assert_eq!(model(Some("haiku"), Some("from-agent"), Api::Anthropic), "claude-haiku-4-5");
        assert_eq!(model(Some("opus"), Some("from-agent"), Api::Anthropic), "claude-opus-4-1");
        let error = effective_model("local", Some("sonnet"), None, Api::OpenAi).unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains("backends.local.model"), "{error}");
        let error = effective_model("local", None, Some("from-agent"), Api::OpenAi).unwrap_err();
        assert!(error.to_string().contains("not set"), "{error}");
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:00 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn http_date_matches_known_instants() {
        let parsed = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        assert_eq!(parsed, UNIX_EPOCH);
        let parsed = parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT").unwrap();
        assert_eq!(parsed.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_835_438_400);
        assert!(parse_http_date("Tue, 29 Foo 2028 12:00:00 GMT").is_none());
        assert!(parse_http_date("Tue, 29 Feb 2028 12:00:00 UTC").is_none());
    }

    #[test]
    fn key_never_prints() {
        let env = EnvSource::fixed([("K", "sk-secret-value")]);
        let key = ApiKey::from_env(Some("K"), &env).unwrap().unwrap();
        assert_eq!(format!("{key:?}"), "***");
        let credentials = Credentials { headers: HeaderMap::new(), secrets: vec![key.0.clone()] };
        let redacted = credentials.redact_error(ExecError::Backend {
            backend: "b".into(),
            url: "http://x".into(),
            source: Box::new(ExecError::Http {
                status: 401,
                message: "bad sk-secret-value".into(),
                retry_after: None,
            }),
        });
        assert!(!redacted.to_string().contains("sk-secret-value"));
        assert!(
            matches!(ApiKey::from_env(Some("NOPE"), &env), Err(ExecError::MissingKey(n)) if n == "NOPE")
        );
        assert!(ApiKey::from_env(None, &env).unwrap().is_none());
    }

    #[test]
    fn error_message_prefers_the_api_text() {
        let body = br#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#;
        assert_eq!(error_message(StatusCode::NOT_FOUND, body), "model not found");
        assert_eq!(error_message(StatusCode::BAD_REQUEST, br#"{"error":"no model"}"#), "no model");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"<html>oops</html>"),
            "<html>oops</html>"
        );
    }
}
