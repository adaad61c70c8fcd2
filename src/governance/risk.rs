//! Risk of a task, from the words of its description.
//!
//! Rules from the reference safety orchestrator: security-sensitive words make a task high;
//! a database schema change makes it medium, or critical when it is already high;
//! production, deploy or release make it critical. High and critical wait for a reviewer
//! (`policies.approval_at`).
//!
//! Matching is on whole words, case-insensitive; `snake_case`, `kebab-case` and `camelCase`
//! are split into words, so `resetPassword` matches `password` but `author` does not match
//! `auth`. A pattern ending in `*` matches any word starting with it (`deploy*` matches
//! `deployment`); a pattern with spaces matches consecutive words (`drop table`). Negations
//! ("no production access") are not understood: the assessment errs towards asking.

use std::sync::LazyLock;

use serde::Serialize;

use crate::event::Risk;

/// The result of [`assess`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub risk: Risk,
    /// One line per rule that matched, naming the matched words.
    pub reasons: Vec<String>,
}

impl Assessment {
    /// Whether a reviewer must approve before the task runs.
    pub fn needs_approval(&self, approval_at: Risk) -> bool {
        self.risk >= approval_at
    }
}

const SECURITY: &[&str] = &[
    "auth",
    "authn",
    "authz",
    "authenticat*",
    "authoriz*",
    "oauth*",
    "oidc",
    "saml",
    "sso",
    "jwt",
    "login*",
    "logout",
    "password*",
    "passwd",
    "passphrase*",
    "secret",
    "secrets",
    "credential*",
    "token",
    "tokens",
    "session",
    "sessions",
    "encrypt*",
    "decrypt*",
    "crypto*",
    "certificate*",
    "tls",
    "ssl",
    "permission*",
    "privilege*",
    "rbac",
    "role based",
    "access control*",
    "vulnerab*",
    "vuln",
    "cve",
    "exploit*",
    "injection*",
    "xss",
    "csrf",
    "mfa",
    "2fa",
    "security",
    "api key*",
    "private key*",
];

const DATABASE: &[&str] = &[
    "database*",
    "db",
    "schema*",
    "migrat*",
    "ddl",
    "alter table",
    "create table",
    "drop table",
    "truncate table",
    "drop column",
    "add column",
    "create index",
    "drop index",
];

const PRODUCTION: &[&str] = &["production", "prod", "deploy*", "release*", "go live"];

/// Assess `text` (a task description, with its context if any). `extra_high_words` are the
/// `policies.high_risk_words` of the settings, matched like the built-in words and counted
/// as security-sensitive.
pub fn assess(text: &str, extra_high_words: &[String]) -> Assessment {
    // The built-in patterns are split once: the engine assesses every task it starts.
    static BUILT_IN: LazyLock<[Vec<Vec<String>>; 3]> =
        LazyLock::new(|| [SECURITY, DATABASE, PRODUCTION].map(split_patterns));
    let [security_patterns, database_patterns, production_patterns] = &*BUILT_IN;
    let words = words(text);
    let security = matches(&words, security_patterns);
    let policy = matches(&words, &split_patterns(extra_high_words));
    let database = matches(&words, database_patterns);
    let production = matches(&words, production_patterns);

    let mut risk = Risk::Low;
    let mut reasons = Vec::new();
    if !security.is_empty() {
        risk = Risk::High;
        reasons.push(format!("security-sensitive: {}", security.join(", ")));
    }
    if !policy.is_empty() {
        risk = Risk::High;
        reasons.push(format!("listed in policies.high_risk_words: {}", policy.join(", ")));
    }
    if !database.is_empty() {
        risk = if risk >= Risk::High { Risk::Critical } else { Risk::Medium };
        reasons.push(format!("database change: {}", database.join(", ")));
    }
    if !production.is_empty() {
        risk = Risk::Critical;
        reasons.push(format!("production: {}", production.join(", ")));
    }
    Assessment { risk, reasons }
}

/// The matched words of every pattern that occurs in `words`, each once, in text order.
fn matches(words: &[String], patterns: &[Vec<String>]) -> Vec<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for parts in patterns {
        if parts.is_empty() || parts.len() > words.len() {
            continue;
        }
        for start in 0..=words.len() - parts.len() {
            let window = &words[start..start + parts.len()];
            if window.iter().zip(parts).all(|(word, part)| word_matches(word, part)) {
                let text = window.join(" ");
                if !found.iter().any(|(_, t)| *t == text) {
                    found.push((start, text));
                }
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, text)| text).collect()
}

fn split_patterns<S: AsRef<str>>(patterns: &[S]) -> Vec<Vec<String>> {
    patterns.iter().map(|pattern| words_of_pattern(pattern.as_ref())).collect()
}

/// A pattern's words, lower case; a trailing `*` stays on the last one.
fn words_of_pattern(pattern: &str) -> Vec<String> {
    let (body, prefix) = match pattern.trim().strip_suffix('*') {
        Some(body) => (body, true),
        None => (pattern.trim(), false),
    };
    let mut parts: Vec<String> = body
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if prefix && let Some(last) = parts.last_mut() {
        last.push('*');
    }
    parts
}

fn word_matches(word: &str, part: &str) -> bool {
    match part.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => word == part,
    }
}

/// Lower-case words of `text`, split at anything not alphanumeric and at camelCase humps
/// (`resetPassword` → `reset password`, `JWTToken` → `jwt token`).
fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let hump = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase() && c.is_uppercase() && next_is_lower);
            if hump {
                words.push(std::mem::take(&mut current));
            }
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::plain("Write unit tests for the parser", Risk::Low, &[])]
    #[case::security(
        "Add password reset via email token",
        Risk::High,
        &["security-sensitive: password, token"]
    )]
    #[case::whole_words_only("Update the author list and tokenizer docs", Risk::Low, &[])]
    #[case::camel_case("Fix resetPassword handler", Risk::High, &["security-sensitive: password"])]
    #[case::prefix(
        "Review authentication flow",
        Risk::High,
        &["security-sensitive: authentication"]
    )]
    #[case::schema(
        "Add a migration for the orders schema",
        Risk::Medium,
        &["database change: migration, schema"]
    )]
    #[case::security_and_schema(
        "Encrypt the users table: write the migration",
        Risk::Critical,
        &["security-sensitive: encrypt", "database change: migration"]
    )]
    #[case::production(
        "Deploy the API to production",
        Risk::Critical,
        &["production: deploy, production"]
    )]
    #[case::release_only("Draft release notes", Risk::Critical, &["production: release"])]
    #[case::phrase(
        "ALTER TABLE users ADD COLUMN age",
        Risk::Medium,
        &["database change: alter table, add column"]
    )]
    #[case::case_insensitive("ROTATE THE SECRETS", Risk::High, &["security-sensitive: secrets"])]
    #[case::injection(
        "Check the search endpoint for SQL injection",
        Risk::High,
        &["security-sensitive: injection"]
    )]
    fn worked_examples(#[case] text: &str, #[case] risk: Risk, #[case] reasons: &[&str]) {
        let assessment = assess(text, &[]);
        assert_eq!(assessment.risk, risk, "{text}: {assessment:?}");
        assert_eq!(assessment.reasons, reasons, "{text}");
    }

    #[test]
    fn policy_words_count_as_high_and_escalate_with_schema() {
        let extra = vec!["PCI".to_owned(), "card data*".to_owned()];
        let a = assess("Store card datasets for pci audit", &extra);
        assert_eq!(a.risk, Risk::High);
        assert_eq!(a.reasons, ["listed in policies.high_risk_words: card datasets, pci"]);
        let b = assess("Change the pci schema", &extra);
        assert_eq!(b.risk, Risk::Critical);
    }

    #[test]
    fn approval_threshold_is_inclusive() {
        let high = assess("rotate credentials", &[]);
        assert!(high.needs_approval(Risk::High));
        assert!(!assess("add a migration", &[]).needs_approval(Risk::High));
        assert!(assess("add a migration", &[]).needs_approval(Risk::Medium));
        assert!(!high.needs_approval(Risk::Critical));
    }

    #[test]
    fn words_split_every_case_style() {
        assert_eq!(
            words("JWTToken user_id api-key x2"),
            ["jwt", "token", "user", "id", "api", "key", "x2"]
        );
        assert_eq!(words("OAuth"), ["o", "auth"]);
    }
}
