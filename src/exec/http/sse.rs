//! Server-sent events (`text/event-stream`): an incremental parser fed with chunks cut
//! anywhere, and the loop that reads a streamed answer within the attempt's deadline and
//! the backend's stall timeout.

use std::time::Duration;

use reqwest::Response;
use tokio_util::sync::CancellationToken;

use super::{describe, next_chunk};
use crate::exec::ExecError;
use crate::exec::deadline::Deadline;

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
/// is [`ExecError::Connection`]: the server or the network dropped the stream. Nothing for
/// longer than `stall` is [`ExecError::Stalled`].
pub async fn read_events(
    mut response: Response,
    deadline: &Deadline,
    cancel: &CancellationToken,
    stall: Duration,
    end_marker: &str,
    mut on_event: impl FnMut(SseEvent) -> Result<bool, ExecError>,
) -> Result<(), ExecError> {
    let mut parser = SseParser::new();
    let mut received = 0usize;
    loop {
        let chunk = next_chunk(&mut response, deadline, cancel, stall).await?.map_err(|e| {
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
                tokio::spawn(drain(response));
                return Ok(());
            }
        }
    }
}

/// Longest a finished stream's leftovers are read in the background.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Reads what follows a stream's end marker (the final empty chunk), so the connection goes
/// back to the pool instead of being closed; done in the background so the attempt does not
/// wait for it.
async fn drain(mut response: Response) {
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
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
}
