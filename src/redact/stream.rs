//! Redacting a stream of chunks (tokens, lines) whose secrets may be split between them.

use super::Redactor;

/// Redacts one stream: each [`StreamRedactor::push`] returns the text that is safe to pass
/// on now, holding back a tail as long as the longest secret (and any secret still growing at
/// the end), so a key split across tokens is redacted whole. [`StreamRedactor::finish`]
/// returns the rest.
///
/// Line streams (a child's stdout and stderr, one event per line) use
/// [`StreamRedactor::push_line`] instead: each line is whole, so it is redacted at once and
/// nothing is held back, except the lines of a private key block, which are replaced from
/// its `BEGIN` line to its `END` line.
pub struct StreamRedactor {
    redactor: Redactor,
    pending: String,
    /// Inside a private key block of a line stream.
    in_key_block: bool,
}

impl StreamRedactor {
    pub(super) fn new(redactor: Redactor) -> Self {
        Self { redactor, pending: String::new(), in_key_block: false }
    }

    /// One whole line; `None` when the line is dropped (the inside of a private key block,
    /// shown once as `[redacted:private_key]` on its first line).
    pub fn push_line(&mut self, line: &str) -> Option<String> {
        if self.in_key_block {
            if line.contains("-----END ") && line.contains("PRIVATE KEY") {
                self.in_key_block = false;
            }
            return None;
        }
        if line.contains("-----BEGIN ")
            && line.contains("PRIVATE KEY-----")
            && !(line.contains("-----END ") && line.rfind("-----END") > line.find("-----BEGIN"))
        {
            self.in_key_block = true;
        }
        Some(self.redactor.redact(line).into_owned())
    }

    /// Add a chunk; returns the redacted text that can go out now (often empty while a
    /// tail is held back).
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let hold = self.redactor.hold_bytes();
        if self.pending.len() <= hold {
            return String::new();
        }
        let mut cut = floor_char_boundary(&self.pending, self.pending.len() - hold);
        let found = self.redactor.find(&self.pending);
        // A secret that reaches past the cut may still grow: keep all of it back.
        if let Some(straddling) = found.iter().find(|f| f.end > cut && f.start < cut) {
            cut = straddling.start;
        }
        let ready: String = self.pending.drain(..cut).collect();
        self.redactor.redact_string(ready)
    }

    /// The rest, redacted; the stream is then empty.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.redact_string(rest)
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
