//! The built-in secret shapes. No crate offers a kept-up set of these on its own (the ones
//! found are parts of larger tools), so this is a short, curated list in the spirit of
//! gitleaks and ripsecrets: shapes with a fixed, telling prefix or a telling name beside the
//! value, so that ordinary text is not cut up.

use regex::Regex;

/// One shape: the regex, and which capture group is the secret (0: the whole match).
pub(super) struct Rule {
    pub(super) kind: String,
    pub(super) regex: Regex,
    pub(super) group: usize,
}

/// `(kind, regex, group)`.
const BUILTIN: &[(&str, &str, usize)] = &[
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}", 0),
    ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}", 0),
    ("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}", 0),
    ("github_token", r"\bgithub_pat_[A-Za-z0-9_]{40,}", 0),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_\-]{20,}", 0),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", 0),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}", 0),
    ("stripe_key", r"\b(?:sk|rk)_live_[A-Za-z0-9]{20,}", 0),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", 0),
    (
        "aws_secret_access_key",
        r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#,
        1,
    ),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}", 0),
    ("bearer_token", r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{16,}=*)", 1),
    (
        "private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|[\s\S]*$)",
        0,
    ),
    ("url_credentials", r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:([^\s/@]+)@", 1),
    (
        "password",
        r#"(?i)\b(?:password|passwd|pwd|secret|client_secret|api_?key|access_?token|auth_?token)\b["']?\s*[:=]\s*["']?([^\s"'&,;]{4,})"#,
        1,
    ),
];

pub(super) fn builtin() -> Vec<Rule> {
    BUILTIN
        .iter()
        .filter_map(|(kind, pattern, group)| {
            // Tested to compile (see the tests below); a bad one would only be left out.
            Regex::new(pattern).ok().map(|regex| Rule {
                kind: (*kind).to_owned(),
                regex,
                group: *group,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_compiles() {
        assert_eq!(builtin().len(), BUILTIN.len());
    }
}
