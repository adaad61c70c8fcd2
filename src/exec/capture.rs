//! Bounded capture of a process's stdout and stderr: lines go to the sink as they arrive, a
//! per-attempt byte budget caps what is kept, and the rest is counted and dropped without
//! being scanned, so even 100 MB of output costs little memory and time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::OutputSink;
use crate::event::OutputStream;

/// A line longer than this is passed on in pieces of this size.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Bytes of stderr remembered for the error message of a failed exit.
const STDERR_TAIL_BYTES: usize = 4096;
/// Lines of stderr quoted in the error message of a failed exit.
const STDERR_TAIL_LINES: usize = 5;
const READ_CHUNK_BYTES: usize = 32 * 1024;

/// Bytes of output one attempt may keep, shared by stdout and stderr.
#[derive(Debug)]
pub struct OutputBudget {
    limit: u64,
    remaining: AtomicU64,
    dropped: AtomicU64,
    notice_sent: AtomicBool,
}

impl OutputBudget {
    pub fn new(limit_bytes: usize) -> Self {
        let limit = limit_bytes as u64;
        Self {
            limit,
            remaining: AtomicU64::new(limit),
            dropped: AtomicU64::new(0),
            notice_sent: AtomicBool::new(false),
        }
    }

    /// Claims up to `wanted` bytes; returns how many may be kept and counts the rest dropped.
    fn claim(&self, wanted: usize) -> usize {
        let wanted = wanted as u64;
        let previous = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(wanted))
            })
            .unwrap_or(0);
        let granted = previous.min(wanted);
        if granted < wanted {
            self.dropped.fetch_add(wanted - granted, Ordering::Relaxed);
        }
        granted as usize
    }

    /// True only for the first caller after the budget ran out.
    fn take_notice(&self) -> bool {
        !self.notice_sent.swap(true, Ordering::Relaxed)
    }

    pub fn dropped_bytes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Splits one stream into lines for the sink, within the budget.
pub struct LineCapture<'a> {
    stream: OutputStream,
    sink: OutputSink,
    budget: &'a OutputBudget,
    line: Vec<u8>,
    /// Kept raw bytes; only stdout keeps them, as the attempt's result.
    kept: Option<Vec<u8>>,
    /// The end of the stream regardless of the budget; only stderr keeps it, for errors.
    tail: Option<VecDeque<u8>>,
}

impl<'a> LineCapture<'a> {
    /// Stdout: lines to the sink, kept bytes become the result.
    pub fn stdout(sink: OutputSink, budget: &'a OutputBudget) -> Self {
        Self::new(OutputStream::Stdout, sink, budget, Some(Vec::new()), None)
    }

    /// Stderr: lines to the sink, the last few lines remembered for error messages.
    pub fn stderr(sink: OutputSink, budget: &'a OutputBudget) -> Self {
        Self::new(OutputStream::Stderr, sink, budget, None, Some(VecDeque::new()))
    }

    fn new(
        stream: OutputStream,
        sink: OutputSink,
        budget: &'a OutputBudget,
        kept: Option<Vec<u8>>,
        tail: Option<VecDeque<u8>>,
    ) -> Self {
        Self { stream, sink, budget, line: Vec::new(), kept, tail }
    }

    /// Reads `reader` to its end. Read errors end the stream like an EOF would: the exit
    /// status, not a broken pipe, decides how the attempt went.
    pub async fn pump(&mut self, mut reader: impl AsyncRead + Unpin) {
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => self.accept(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading process output failed");
                    break;
                }
            }
        }
        self.flush_line();
    }

    fn accept(&mut self, chunk: &[u8]) {
        if let Some(tail) = &mut self.tail {
            let start = chunk.len().saturating_sub(STDERR_TAIL_BYTES);
            tail.extend(&chunk[start..]);
            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
            tail.drain(..excess);
        }
        let granted = self.budget.claim(chunk.len());
        let kept = &chunk[..granted];
        if let Some(bytes) = &mut self.kept {
            bytes.extend_from_slice(kept);
        }
        self.split_lines(kept);
        if granted < chunk.len() {
            self.flush_line();
            if self.budget.take_notice() {
                (self.sink)(
                    OutputStream::Stderr,
                    format!(
                        "[flightdeck] output limit of {} bytes reached; the rest is counted and dropped",
                        self.budget.limit
                    ),
                );
            }
        }
    }

    fn split_lines(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES - self.line.len();
            let window = &bytes[..bytes.len().min(room)];
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                self.line.extend_from_slice(&window[..newline]);
                self.emit(self.line.len());
                bytes = &bytes[newline + 1..];
            } else {
                self.line.extend_from_slice(window);
                bytes = &bytes[window.len()..];
                if self.line.len() >= MAX_LINE_BYTES {
                    self.emit(utf8_prefix_len(&self.line));
                }
            }
        }
    }

    /// Sends the first `len` bytes of the current line and keeps the rest for later.
    fn emit(&mut self, len: usize) {
        let piece = &self.line[..len];
        let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
        (self.sink)(self.stream, String::from_utf8_lossy(piece).into_owned());
        self.line.drain(..len);
    }

    fn flush_line(&mut self) {
        if !self.line.is_empty() {
            self.emit(self.line.len());
        }
    }

    /// The kept stdout, without its final line break.
    pub fn into_kept_text(self) -> String {
        let bytes = self.kept.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        text.trim_end_matches(['\n', '\r']).to_owned()
    }

    /// The last few non-empty stderr lines, each shortened.
    pub fn tail_text(&self) -> String {
        const MAX_LINE_CHARS: usize = 300;
        let Some(tail) = &self.tail else { return String::new() };
        let bytes: Vec<u8> = tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> =
            text.lines().map(str::trim_end).filter(|line| !line.is_empty()).collect();
        let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
        lines[start..]
            .iter()
            .map(|line| match line.char_indices().nth(MAX_LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => (*line).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How much of `bytes` can be cut off without splitting a UTF-8 character.
fn utf8_prefix_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        _ => bytes.len(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Seen = Arc<Mutex<Vec<(OutputStream, String)>>>;

    fn collecting_sink() -> (OutputSink, Seen) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&lines);
        let sink: OutputSink =
            Arc::new(move |stream, line| store.lock().unwrap().push((stream, line)));
        (sink, lines)
    }

    #[test]
    fn lines_split_across_chunks_and_budget_counts_the_rest() {
        let (sink, lines) = collecting_sink();
        let budget = OutputBudget::new(10);
        let mut capture = LineCapture::stdout(sink, &budget);
        capture.accept(b"ab");
        capture.accept(b"c\r\nde\nfghij");
        capture.flush_line();
        let seen: Vec<String> = lines.lock().unwrap().iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(seen[..3], ["abc", "de", "fg"]);
        assert!(seen[3].contains("output limit of 10 bytes"));
        assert_eq!(budget.dropped_bytes(), 3);
        assert_eq!(capture.into_kept_text(), "abc\r\nde\nfg");
    }

    #[test]
    fn long_lines_are_cut_on_character_boundaries() {
        let (sink, lines) = collecting_sink();
        let budget = OutputBudget::new(1 << 20);
        let mut capture = LineCapture::stdout(sink, &budget);
        let mut text = "x".repeat(MAX_LINE_BYTES - 1);
        text.push('é');
        text.push('\n');
        capture.accept(text.as_bytes());
        let seen = lines.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1.len(), MAX_LINE_BYTES - 1);
        assert_eq!(seen[1].1, "é");
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines_past_the_budget() {
        let (sink, _) = collecting_sink();
        let budget = OutputBudget::new(4);
        let mut capture = LineCapture::stderr(sink, &budget);
        for i in 0..100 {
            capture.accept(format!("line {i}\n").as_bytes());
        }
        assert_eq!(capture.tail_text(), "line 95\nline 96\nline 97\nline 98\nline 99");
    }
}
