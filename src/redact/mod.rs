//! Secrets stay secret: one [`Redactor`] applied before anything is stored, shown, logged or
//! handed on to a dependent task.
//!
//! It finds two things and replaces each by `[redacted:KIND]`:
//! - the values of the environment variables a backend names (its `api_key_env`, header
//!   `{env: …}` values, secret-looking names in `env_allow` and `env`), and the well-known
//!   provider variables, as they are and in their base64 forms (any alignment, standard and
//!   URL-safe alphabets); KIND is the variable's name;
//! - well-known secret shapes ([`patterns`]): provider API keys, AWS key ids and secrets,
//!   GitHub and Slack tokens, JWTs, bearer tokens, private key blocks, credentials inside URLs,
//!   `password=`-style pairs; and the project's own patterns from `redact.patterns`.
//!
//! Text without any of them costs one multi-pattern scan (an Aho-Corasick automaton for the
//! values, a `RegexSet` for the shapes) and no allocation. Streamed output is redacted by a
//! [`StreamRedactor`], which holds back a tail long enough that a secret split across chunks
//! is still seen whole.

mod event;
mod patterns;
mod stream;

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use regex::{Regex, RegexSet};

pub use stream::StreamRedactor;

use crate::config::Settings;

/// Values shorter than this are not redacted: a two-letter "key" would cut up every text.
const MIN_VALUE_LEN: usize = 8;
/// Text a stream holds back at least, so a shape's shortest match is never cut in two.
const MIN_HOLD_BYTES: usize = 160;

/// Environment variables whose values are always redacted when set, whatever the settings.
pub const WELL_KNOWN_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
];

/// A project pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("redact.patterns `{name}`: not a regular expression: {message}")]
pub struct PatternError {
    pub name: String,
    pub message: String,
}

/// Finds and replaces secrets. Cheap to clone.
#[derive(Clone)]
pub struct Redactor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Exact secret values and their base64 forms; `value_kinds[pattern id]` names each.
    values: Option<AhoCorasick>,
    value_kinds: Vec<String>,
    /// Any shape at all, to skip text with none in one pass.
    shapes: RegexSet,
    rules: Vec<patterns::Rule>,
    /// What a stream holds back: the longest value, at least [`MIN_HOLD_BYTES`].
    hold_bytes: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Redactor({} values, {} shapes)",
            self.inner.value_kinds.len(),
            self.inner.rules.len()
        )
    }
}

/// One secret found: where, and what kind.
struct Found {
    start: usize,
    end: usize,
    kind: String,
}

impl Redactor {
    /// A redactor for the settings' backends and project patterns, reading variable values
    /// with `env` (the process environment in real use).
    pub fn from_settings(
        settings: &Settings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PatternError> {
        let mut values: Vec<(String, String)> = Vec::new();
        for name in secret_var_names(settings) {
            if let Some(value) = env(&name) {
                values.push((name, value));
            }
        }
        for (name, value) in settings_secret_values(settings) {
            values.push((name, value));
        }
        let project: Vec<(String, String)> =
            settings.redact.patterns.iter().map(|p| (p.name.clone(), p.pattern.clone())).collect();
        Self::new(&values, &project)
    }

    /// A redactor for these `(kind, value)` secrets and `(kind, regex)` project patterns.
    pub fn new(
        values: &[(String, String)],
        project: &[(String, String)],
    ) -> Result<Self, PatternError> {
        let mut needles = Vec::new();
        let mut value_kinds = Vec::new();
        let mut hold_bytes = MIN_HOLD_BYTES;
        for (kind, value) in values {
            let value = value.trim();
            if value.len() < MIN_VALUE_LEN {
                continue;
            }
            for form in value_forms(value) {
                hold_bytes = hold_bytes.max(form.len() + 1);
                needles.push(form);
                value_kinds.push(kind.clone());
            }
        }
        let values = if needles.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&needles)
                    .map_err(|e| PatternError { name: "values".into(), message: e.to_string() })?,
            )
        };
        let mut rules = patterns::builtin();
        for (name, pattern) in project {
            let regex = Regex::new(pattern)
                .map_err(|e| PatternError { name: name.clone(), message: e.to_string() })?;
            rules.push(patterns::Rule { kind: name.clone(), regex, group: 0 });
        }
        let shapes = RegexSet::new(rules.iter().map(|r| r.regex.as_str()))
            .map_err(|e| PatternError { name: "shapes".into(), message: e.to_string() })?;
        Ok(Self { inner: Arc::new(Inner { values, value_kinds, shapes, rules, hold_bytes }) })
    }

    /// The built-in shapes and no values (tests, and tools that read no settings).
    pub fn shapes_only() -> Self {
        // The built-in patterns are tested to compile.
        Self::new(&[], &[]).unwrap_or_else(|_| unreachable!("built-in patterns compile"))
    }

    /// `text` with every secret replaced by `[redacted:KIND]`; borrowed when it has none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let found = self.find(text);
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for secret in found {
            out.push_str(&text[at..secret.start]);
            out.push_str("[redacted:");
            out.push_str(&secret.kind);
            out.push(']');
            at = secret.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// [`Redactor::redact`] into an owned string, reusing it when nothing was found.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(redacted) => redacted,
        }
    }

    /// Whether `text` holds a secret.
    pub fn has_secret(&self, text: &str) -> bool {
        self.inner.values.as_ref().is_some_and(|v| v.is_match(text))
            || self.inner.shapes.is_match(text)
    }

    /// A redactor for one stream of chunks (a task's output).
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor::new(self.clone())
    }

    fn hold_bytes(&self) -> usize {
        self.inner.hold_bytes
    }

    /// Every secret in `text`, in order, not overlapping (the earlier, then the longer wins).
    fn find(&self, text: &str) -> Vec<Found> {
        let mut found = Vec::new();
        if let Some(values) = &self.inner.values {
            for m in values.find_iter(text) {
                let kind = self.inner.value_kinds[m.pattern().as_usize()].clone();
                found.push(Found { start: m.start(), end: m.end(), kind });
            }
        }
        // Most text holds no secret: a plain match says so without the overlapping search
        // (and its allocation) that tells which shapes matched.
        if self.inner.shapes.is_match(text) {
            for index in &self.inner.shapes.matches(text) {
                let rule = &self.inner.rules[index];
                for captures in rule.regex.captures_iter(text) {
                    if let Some(m) = captures.get(rule.group).filter(|m| !m.is_empty()) {
                        found.push(Found {
                            start: m.start(),
                            end: m.end(),
                            kind: rule.kind.clone(),
                        });
                    }
                }
            }
        }
        if found.len() > 1 {
            found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
            let mut kept: Vec<Found> = Vec::with_capacity(found.len());
            for secret in found {
                match kept.last_mut() {
                    Some(last) if secret.start < last.end => last.end = last.end.max(secret.end),
                    _ => kept.push(secret),
                }
            }
            found = kept;
        }
        found
    }
}

/// The value and its base64 forms. A value inside longer base64 text (a header, a config
/// file) is encoded at one of three alignments; the characters that depend only on the value
/// are the same whatever surrounds it, so each alignment gives one needle.
fn value_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(value.as_bytes());
            let encoded = engine.encode(&bytes);
            // Skip the characters that also carry the prefix, and the last ones that would
            // also carry whatever follows the value.
            let skip = (offset * 4).div_ceil(3);
            let whole = (bytes.len() / 3) * 4;
            if whole > skip + MIN_VALUE_LEN {
                let form = encoded[skip..whole].to_owned();
                if !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
    }
    forms
}

/// Names of the variables whose values are secrets: each backend's key and header variables,
/// secret-looking names it passes through, and the well-known provider variables.
fn secret_var_names(settings: &Settings) -> Vec<String> {
    use crate::config::{BackendConfig, HeaderSource};
    let mut names: Vec<String> = WELL_KNOWN_VARS.iter().map(|n| (*n).to_owned()).collect();
    for backend in settings.backends.values() {
        match backend {
            BackendConfig::Openai(http) | BackendConfig::Anthropic(http) => {
                names.extend(http.api_key_env.iter().cloned());
                names.extend(http.headers.values().filter_map(|h| match h {
                    HeaderSource::Env { env } => Some(env.clone()),
                    HeaderSource::Text(_) => None,
                }));
            }
            BackendConfig::Process(p) => {
                names.extend(p.env_allow.iter().filter(|n| looks_secret(n)).cloned());
            }
            BackendConfig::ClaudeCode(c) | BackendConfig::Codex(c) | BackendConfig::Gemini(c) => {
                names.extend(c.env_allow.iter().flatten().filter(|n| looks_secret(n)).cloned());
            }
            BackendConfig::Sim(_) => {}
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Fixed values set in the settings' `env` maps under a secret-looking name.
fn settings_secret_values(settings: &Settings) -> Vec<(String, String)> {
    use crate::config::BackendConfig;
    let mut values = Vec::new();
    for backend in settings.backends.values() {
        let env = match backend {
            BackendConfig::Process(p) => &p.env,
            BackendConfig::ClaudeCode(c) | BackendConfig::Codex(c) | BackendConfig::Gemini(c) => {
                &c.env
            }
            _ => continue,
        };
        values.extend(
            env.iter().filter(|(n, _)| looks_secret(n)).map(|(n, v)| (n.clone(), v.clone())),
        );
    }
    values
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH"]
        .iter()
        .any(|w| upper.contains(w))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "sk-test-0123456789abcdefXYZ";

    fn redactor() -> Redactor {
        Redactor::new(
            &[
                ("MY_API_KEY".into(), "s3cr3t-value-42".into()),
                ("OPENAI_API_KEY".into(), KEY.into()),
            ],
            &[("ticket".into(), r"TICKET-[0-9]{6}".into())],
        )
        .unwrap()
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[rstest::rstest]
    #[case::env_value("the key is s3cr3t-value-42.", "[redacted:MY_API_KEY]")]
    #[case::openai_key("use sk-proj-abcdefghijklmnopqrstuvwx now", "[redacted:openai_key]")]
    #[case::anthropic_key("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "[redacted:anthropic_key]")]
    #[case::aws_id("id AKIAIOSFODNN7EXAMPLE here", "[redacted:aws_access_key_id]")]
    #[case::aws_secret(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "[redacted:aws_secret_access_key]"
    )]
    #[case::github("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[redacted:github_token]")]
    #[case::private_key(
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "[redacted:private_key]"
    )]
    #[case::url_credentials("postgres://app:hunter2pw@db:5432/x", "[redacted:url_credentials]")]
    #[case::password_pair("login with password=hunter22 ok", "[redacted:password]")]
    #[case::bearer("Authorization: Bearer abcdefghijklmnop1234", "[redacted:bearer_token]")]
    #[case::project_pattern("see TICKET-123456", "[redacted:ticket]")]
    fn each_shape_is_redacted(#[case] text: &str, #[case] shown: &str) {
        let out = redactor().redact(text).into_owned();
        assert!(out.contains(shown), "{text:?} -> {out:?}");
    }

    #[test]
    fn what_the_secret_was_is_gone() {
        let r = redactor();
        let out = r.redact("postgres://app:hunter2pw@db/x password: hunter22");
        assert!(!out.contains("hunter2pw") && !out.contains("hunter22"), "{out}");
        assert!(out.contains("postgres://app:") && out.contains("@db/x"), "{out}");
    }

    #[test]
    fn base64_forms_at_every_alignment() {
        let r = redactor();
        for prefix in ["", "a", "ab", "abc", "Authorization: Basic "] {
            let encoded = b64(&format!("{prefix}{KEY}:rest"));
            let out = r.redact(&encoded);
            assert!(out.contains("[redacted:OPENAI_API_KEY]"), "{prefix:?}: {encoded} -> {out}");
        }
    }

    #[test]
    fn plain_text_is_untouched_and_borrowed() {
        let text = "Plan the work; build it; the password policy says rotate keys.";
        assert!(matches!(redactor().redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn a_key_split_across_tokens_is_caught() {
        let r = redactor();
        let text = format!(
            "Here: {KEY} and ghp_abcdefghijklmnopqrstuvwxyz0123456789 end. {}",
            "x".repeat(400)
        );
        for size in [1, 2, 3, 5, 7, 64] {
            let mut stream = r.stream();
            let mut out = String::new();
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(size) {
                out.push_str(&stream.push(&chunk.iter().collect::<String>()));
            }
            out.push_str(&stream.finish());
            assert!(!out.contains(KEY) && !out.contains("ghp_abc"), "size {size}: {out}");
            assert!(out.contains("[redacted:OPENAI_API_KEY]"), "size {size}: {out}");
            assert!(out.ends_with(&"x".repeat(400)), "size {size}");
        }
    }

    #[test]
    fn an_unterminated_private_key_in_a_stream_is_held_then_redacted() {
        let r = redactor();
        let mut stream = r.stream();
        let mut out = stream.push("ok\n-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for _ in 0..50 {
            out.push_str(
                &stream.push(
                    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n",
                ),
            );
        }
        out.push_str(&stream.finish());
        assert!(!out.contains("b3BlbnNz"), "{out}");
        assert!(out.starts_with("ok\n[redacted:private_key]"), "{out}");
    }

    #[test]
    fn settings_name_the_variables() {
        let settings = crate::config::Settings::parse(
            "backends:\n  sim: {kind: sim}\n  api:\n    kind: openai\n    base_url: http://127.0.0.1:1/v1\n    api_key_env: ACME_KEY\nredact:\n  patterns:\n    - {name: acct, pattern: 'ACCT-[0-9]+'}\n",
            std::path::Path::new("flightdeck.yaml"),
        )
        .unwrap();
        let r = Redactor::from_settings(&settings, |name| {
            (name == "ACME_KEY").then(|| "acme-0000-secret".to_owned())
        })
        .unwrap();
        assert_eq!(
            r.redact("k=acme-0000-secret ACCT-991"),
            "k=[redacted:ACME_KEY] [redacted:acct]"
        );
    }

    #[test]
    fn a_bad_project_pattern_names_the_field() {
        let err = crate::config::Settings::parse(
            "redact:\n  patterns:\n    - {name: bad, pattern: '(unclosed'}\n",
            std::path::Path::new("flightdeck.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("redact.patterns[0].pattern") && err.contains("(unclosed"), "{err}");
    }

    #[test]
    fn a_private_key_in_a_line_stream_is_dropped_line_by_line() {
        let r = redactor();
        let mut stream = r.stream();
        let lines = [
            "before",
            "-----BEGIN PRIVATE KEY-----",
            "MIIEvQIBADAN",
            "-----END PRIVATE KEY-----",
            "after",
        ];
        let out: Vec<String> = lines.iter().filter_map(|l| stream.push_line(l)).collect();
        assert_eq!(out, vec!["before", "[redacted:private_key]", "after"]);
    }
}
