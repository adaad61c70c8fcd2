//! Pieces shared by the HTTP executors: the API key, sending with retries on 429/5xx that
//! honour `Retry-After`, reading bodies within the attempt's deadline, and SSE parsing.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::ExecError;
use super::deadline::Deadline;
use super::env::EnvSource;

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
        let mut value = HeaderValue::from_str(&format!("{prefix}{}", self.0)).map_err(|_| {
            ExecError::Other("the API key holds characters not allowed in an HTTP header".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Replaces the key wherever a server echoed it back.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() { text.to_owned() } else { text.replace(&self.0, "***") }
    }

    /// The error with the key removed from every message it carries.
    pub fn redact_error(&self, error: ExecError) -> ExecError {
        match error {
            ExecError::Http { status, message } => {
                ExecError::Http { status, message: self.redact(&message) }
            }
            ExecError::Connection(m) => ExecError::Connection(self.redact(&m)),
            ExecError::Protocol(m) => ExecError::Protocol(self.redact(&m)),
            ExecError::Other(m) => ExecError::Other(self.redact(&m)),
            other => other,
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How 429 and 5xx answers are retried within one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// First wait when the server gives no `Retry-After`; doubled each retry, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(8);

    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }

    /// Exponential backoff with "equal jitter": half fixed, half random, so retries of many
    /// tasks hitting the same rate limit spread out.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16)).min(self.max_delay);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }
}

/// True for answers worth retrying: rate limits and server errors (Anthropic's 529
/// "overloaded" is a 5xx too).
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Largest body read in full (non-streaming answers and error bodies).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest raw body quoted in an error message.
const MAX_QUOTED_BODY_CHARS: usize = 300;

/// Sends the request built by `request`, retrying 429 and 5xx per `policy`. Returns the first
/// successful response; any other answer becomes [`ExecError::Http`] carrying the API's
/// `error.message`.
pub async fn send_with_retry(
    request: impl Fn() -> RequestBuilder,
    policy: &RetryPolicy,
    deadline: &Deadline,
    cancel: &CancellationToken,
) -> Result<Response, ExecError> {
    let mut retry = 0;
    loop {
        let response = deadline
            .bound(cancel, request().send())
            .await?
            .map_err(|e| ExecError::Connection(describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if is_retryable(status) && retry < policy.max_retries {
            let wait = retry_after(response.headers(), SystemTime::now())
                .unwrap_or_else(|| policy.backoff(retry))
                .min(deadline.remaining());
            tracing::warn!(
                status = status.as_u16(),
                retry = retry + 1,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying HTTP request"
            );
            drop(response);
            deadline.bound(cancel, tokio::time::sleep(wait)).await?;
            retry += 1;
            continue;
        }
        let body = read_body(response, deadline, cancel).await.unwrap_or_default();
        let mut message = error_message(status, &body);
        if is_retryable(status) && retry > 0 {
            message = format!("{message} (gave up after {retry} retries)");
        }
        return Err(ExecError::Http { status: status.as_u16(), message });
    }
}

/// Reads a whole body within the deadline, refusing bodies beyond [`MAX_BODY_BYTES`].
pub async fn read_body(
    mut response: Response,
    deadline: &Deadline,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, ExecError> {
    let mut body = Vec::new();
    while let Some(chunk) = deadline
        .bound(cancel, response.chunk())
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

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server names the event (Anthropic does).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser for `text/event-stream` bodies, fed with chunks cut anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

/// A line longer than this is not a plausible event; refusing it keeps memory bounded.
const MAX_SSE_LINE_BYTES: usize = 4 * 1024 * 1024;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, ExecError> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..newline]);
            rest = &rest[newline + 1..];
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.field(&line)? {
                events.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_SSE_LINE_BYTES {
            return Err(ExecError::Protocol(format!(
                "event stream line longer than {MAX_SSE_LINE_BYTES} bytes"
            )));
        }
        Ok(events)
    }

    fn field(&mut self, line: &[u8]) -> Result<Option<SseEvent>, ExecError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let event = self.event.take();
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            return Ok(Some(SseEvent { event, data: std::mem::take(&mut self.data) }));
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| ExecError::Protocol("event stream is not valid UTF-8".into()))?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}

/// Reads an SSE body chunk by chunk within the deadline, handing each event to `on_event`
/// until it returns `true` (the stream's own end marker). A body that ends before the marker
/// is [`ExecError::Connection`]: the server or the network dropped the stream.
pub async fn read_events(
    mut response: Response,
    deadline: &Deadline,
    cancel: &CancellationToken,
    end_marker: &str,
    mut on_event: impl FnMut(SseEvent) -> Result<bool, ExecError>,
) -> Result<(), ExecError> {
    let mut parser = SseParser::new();
    let mut received = 0usize;
    loop {
        let chunk = deadline.bound(cancel, response.chunk()).await?.map_err(|e| {
            ExecError::Connection(format!(
                "stream broke after {received} bytes, before {end_marker}: {}",
                describe(&e)
            ))
        })?;
        let Some(chunk) = chunk else {
            return Err(ExecError::Connection(format!(
                "stream ended after {received} bytes, before {end_marker}"
            )));
        };
        received += chunk.len();
        for event in parser.feed(&chunk)? {
            if on_event(event)? {
                return Ok(());
            }
        }
    }
}

/// Builds the shared HTTP client of one backend.
pub fn client() -> Result<reqwest::Client, ExecError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ExecError::Other(format!("cannot set up the HTTP client: {}", describe(&e))))
}

/// Checks that `base_url` is an http(s) URL and returns it without a trailing slash.
pub fn base_url(name: &str, base_url: &str) -> Result<String, ExecError> {
    let parsed = reqwest::Url::parse(base_url).map_err(|e| {
        ExecError::Other(format!("backends.{name}.base_url: `{base_url}` is not a URL: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ExecError::Other(format!(
            "backends.{name}.base_url: `{base_url}` must start with http:// or https://"
        )));
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn events(parser: &mut SseParser, text: &str) -> Vec<SseEvent> {
        parser.feed(text.as_bytes()).unwrap()
    }

    #[test]
    fn sse_events_survive_any_chunking() {
        let text = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        for size in 1..text.len() {
            let mut parser = SseParser::new();
            let mut all = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                all.extend(parser.feed(chunk).unwrap());
            }
            assert_eq!(
                all,
                vec![
                    SseEvent { event: Some("message_start".into()), data: "{\"a\":1}".into() },
                    SseEvent { event: None, data: "x\ny".into() },
                    SseEvent { event: None, data: "[DONE]".into() },
                ],
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn sse_unterminated_event_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(events(&mut parser, "data: {\"partial\":").is_empty());
        assert!(events(&mut parser, "true}\n").is_empty());
    }

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
        let redacted = key
            .redact_error(ExecError::Http { status: 401, message: "bad sk-secret-value".into() });
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

    #[test]
    fn backoff_grows_and_stays_capped() {
        let policy = RetryPolicy::new(5);
        for retry in 0..10 {
            let wait = policy.backoff(retry);
            let full = policy.base_delay.saturating_mul(1 << retry).min(policy.max_delay);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
    }
}

/// Claude Code subagent files write `model: sonnet | opus | haiku | inherit`: hints, not API
/// model ids. The model an attempt asks for is the agent's own when it names a real id,
/// otherwise the backend's; for Anthropic the three aliases map to current model ids.
pub(crate) fn effective_model<'a>(
    requested: Option<&'a str>,
    backend_model: &'a str,
    anthropic: bool,
) -> &'a str {
    match requested {
        Some("sonnet") if anthropic => "claude-sonnet-4-5",
        Some("opus") if anthropic => "claude-opus-4-1",
        Some("haiku") if anthropic => "claude-haiku-4-5",
        None | Some("inherit" | "" | "sonnet" | "opus" | "haiku") => backend_model,
        Some(model) => model,
    }
}

#[cfg(test)]
mod model_tests {
    use super::effective_model;

    #[test]
    fn claude_code_aliases_are_hints() {
        assert_eq!(effective_model(Some("sonnet"), "gpt-4o-mini", false), "gpt-4o-mini");
        assert_eq!(effective_model(Some("sonnet"), "claude-x", true), "claude-sonnet-4-5");
        assert_eq!(effective_model(Some("inherit"), "llama3.1", false), "llama3.1");
        assert_eq!(effective_model(None, "llama3.1", false), "llama3.1");
        assert_eq!(effective_model(Some("qwen2.5"), "llama3.1", false), "qwen2.5");
    }
}
