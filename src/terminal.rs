//! Text on its way to a terminal: the one place that neutralises what an agent (or anything
//! it controls: a child's stderr, a stored output, an HTTP error body) could use to take
//! over the terminal it is shown on.
//!
//! Every control character except line feed and tab is made visible instead of being sent:
//! C0 controls as their Unicode control pictures (ESC as `␛`, CR as `␍`), DEL and the C1
//! controls (U+0080–U+009F, which some terminals obey as CSI/OSC introducers) and the
//! bidirectional overrides (which reorder what is shown, "Trojan source") as `\u00XX` text.
//! That text is also a valid JSON escape, so the same function makes JSON output safe: raw C0
//! never appears in `serde_json` output, and the rest is rewritten inside its strings.
//! An escape sequence so shown cannot clear the screen, set the title, query the terminal or
//! write the clipboard (OSC 52); a reader still sees that it was there.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What to do with one character.
enum Treatment {
    Keep,
    /// A C0 control: its Unicode control picture.
    Picture(char),
    /// DEL, C1, bidi controls: `\uXXXX`.
    Escape,
}

fn treatment(c: char, keep_newline: bool) -> Treatment {
    match c {
        '\n' if keep_newline => Treatment::Keep,
        '\t' => Treatment::Keep,
        '\u{0}'..='\u{1f}' => {
            Treatment::Picture(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'))
        }
        '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Treatment::Escape
        }
        _ => Treatment::Keep,
    }
}

fn needs_work(text: &str, keep_newline: bool) -> bool {
    // Fast path: ASCII text without controls is by far the common case.
    text.bytes().any(|b| !(0x20..0x7f).contains(&b))
        && text.chars().any(|c| !matches!(treatment(c, keep_newline), Treatment::Keep))
}

fn rewrite(text: &str, keep_newline: bool, newline: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match treatment(c, keep_newline) {
            Treatment::Keep => out.push(c),
            Treatment::Picture(_) if c == '\n' => out.push_str(newline),
            Treatment::Picture(picture) => out.push(picture),
            Treatment::Escape => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    out
}

/// Text of several lines (a stored output, a report): line feeds and tabs stay, every other
/// control is made visible. Borrows when nothing needs changing.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if needs_work(text, true) { Cow::Owned(rewrite(text, true, "\n")) } else { Cow::Borrowed(text) }
}

/// Text that must stay on one line (a progress line, a FAILED reason quoting a child's
/// stderr): a line feed becomes ` ⏎ `, so a child cannot forge lines of its own; every other
/// control is made visible as by [`sanitize`].
pub fn sanitize_line(text: &str) -> Cow<'_, str> {
    if needs_work(text, false) {
        Cow::Owned(rewrite(text, false, " ⏎ "))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(sanitize("ok: ünïcode ✓\n\tnext"), Cow::Borrowed(_)));
        assert!(matches!(sanitize_line("one line"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_are_shown_not_sent() {
        let clipboard = "\u{1b}]52;c;ZXZpbA==\u{7}";
        assert_eq!(sanitize(clipboard), "␛]52;c;ZXZpbA==␇");
        assert_eq!(sanitize("\u{1b}[2J\r\n"), "␛[2J␍\n");
        assert_eq!(sanitize("csi\u{9b}31m del\u{7f}"), "csi\\u009b31m del\\u007f");
        assert_eq!(sanitize("a\u{202e}b"), "a\\u202eb");
    }

    #[test]
    fn one_line_cannot_be_forged() {
        assert_eq!(
            sanitize_line("boom\n[   0.10s] done      fake"),
            "boom ⏎ [   0.10s] done      fake"
        );
    }

    #[test]
    fn json_stays_json() {
        let json =
            serde_json::to_string(&serde_json::json!({"t": "x\u{85}\u{1b}y"})).unwrap_or_default();
        let safe = sanitize(&json);
        assert!(!safe.contains('\u{85}'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap_or_default();
        assert_eq!(back["t"], "x\u{85}\u{1b}y");
    }
}
