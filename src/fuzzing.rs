//! Entry points for fuzzing: each reads untrusted bytes the way Flightdeck does and must
//! return, whatever the bytes, without a panic. The `cargo fuzz` targets in `fuzz/` call
//! these, and `tests/fuzz_corpus.rs` feeds them the committed corpus (and mutations of it)
//! on stable Rust in every `cargo test`.

use std::path::Path;

use crate::agents::definition;
use crate::config::Settings;
use crate::exec::http::sse::SseParser;
use crate::workflow::Workflow;

/// An agent definition file: decoding, frontmatter split and every field.
pub fn agent_file(data: &[u8]) {
    let file = Path::new("agentpool/tier1-core/fuzz.md");
    if let Ok(text) = definition::decode(file, data) {
        let _ = definition::parse_definition(&text, file, Some(1));
    }
}

/// A workflow file.
pub fn workflow_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Workflow::parse(text, Path::new("workflows/fuzz.yaml"));
    }
}

/// `flightdeck.yaml`.
pub fn settings_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Settings::parse(text, Path::new("flightdeck.yaml"));
    }
}

/// A server-sent event stream, fed in chunks cut where the first byte says.
pub fn sse_stream(data: &[u8]) {
    let Some((&cut, body)) = data.split_first() else { return };
    let size = usize::from(cut).max(1);
    let mut parser = SseParser::new();
    for chunk in body.chunks(size) {
        if parser.feed(chunk).is_err() {
            return;
        }
    }
}

/// Text through the redactor, whole and as a stream of chunks, and through the terminal
/// sanitiser.
pub fn redact_and_sanitize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let redactor = crate::redact::Redactor::shapes_only();
    let _ = redactor.redact(&text);
    let mut stream = redactor.stream();
    let chars: Vec<char> = text.chars().collect();
    for chunk in chars.chunks(7) {
        let _ = stream.push(&chunk.iter().collect::<String>());
    }
    let _ = stream.finish();
    let _ = crate::terminal::sanitize(&text);
    let _ = crate::terminal::sanitize_line(&text);
}

/// Claude Code's `stream-json` stdout, line by line, then the attempt's end.
pub fn claude_code_stream(data: &[u8]) {
    crate::exec::claude_code::parse_stdout(data);
}

/// Codex's `exec --json` stdout.
pub fn codex_stream(data: &[u8]) {
    crate::exec::codex::parse_stdout(data);
}

/// Gemini's `stream-json` stdout.
pub fn gemini_stream(data: &[u8]) {
    crate::exec::gemini::parse_stdout(data);
}

/// A panel member's answer through the verdict parser; the first line lists the options
/// (separated by `|`), the rest is the answer.
pub fn verdict(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, answer) = text.split_once('\n').unwrap_or(("", &text));
    let options: Vec<String> =
        first.split('|').filter(|o| !o.is_empty()).map(str::to_owned).collect();
    let _ = crate::conflict::parse_verdict(answer, &options);
    let _ = crate::conflict::parse_verdict(answer, &[]);
}

/// Control-socket lines, as the host reads a client's and a client reads the host's.
pub fn control_protocol(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.split('\n') {
        let _ = crate::host::protocol::decode_client_line(line);
        let _ = crate::host::protocol::decode_host_line(line);
    }
}

/// One fuzz target: reads bytes, must not panic.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus test.
pub const TARGETS: &[(&str, Target)] = &[
    ("agent_file", agent_file),
    ("workflow_file", workflow_file),
    ("settings_file", settings_file),
    ("sse_stream", sse_stream),
    ("redact_and_sanitize", redact_and_sanitize),
    ("claude_code_stream", claude_code_stream),
    ("codex_stream", codex_stream),
    ("gemini_stream", gemini_stream),
    ("verdict", verdict),
    ("control_protocol", control_protocol),
];
