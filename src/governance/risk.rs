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

use std::collections::HashMap;
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
/// as security-sensitive. To assess many texts, build [`RiskRules`] once.
pub fn assess(text: &str, extra_high_words: &[String]) -> Assessment {
    RiskRules::new(extra_high_words).assess(text)
}

/// The rules of [`assess`], compiled: the engine assesses every task it starts.
#[derive(Debug, Clone)]
pub struct RiskRules {
    policy: Patterns,
}

impl RiskRules {
    /// The built-in rules plus `extra_high_words` (`policies.high_risk_words`).
    pub fn new(extra_high_words: &[String]) -> Self {
        Self { policy: Patterns::new(extra_high_words) }
    }

    /// See [`assess`].
    pub fn assess(&self, text: &str) -> Assessment {
        static BUILT_IN: LazyLock<[Patterns; 3]> =
            LazyLock::new(|| [SECURITY, DATABASE, PRODUCTION].map(Patterns::new));
        let [security_patterns, database_patterns, production_patterns] = &*BUILT_IN;
        let words = words(text);
        let security = security_patterns.matches(&words);
        let policy = self.policy.matches(&words);
        let database = database_patterns.matches(&words);
        let production = production_patterns.matches(&words);

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
}

/// One list of patterns, indexed by their first word so a text is read once.
#[derive(Debug, Clone)]
struct Patterns {
    /// Each pattern's lower-case words; the last one is a prefix when `prefix` is set.
    list: Vec<(Vec<String>, bool)>,
    /// Patterns by their first word, when it must match exactly.
    by_first_word: HashMap<String, Vec<usize>>,
    /// One-word prefix patterns (`deploy*`): the prefix and the pattern.
    prefixes: Vec<(String, usize)>,
}

impl Patterns {
    fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut compiled =
            Self { list: Vec::new(), by_first_word: HashMap::new(), prefixes: Vec::new() };
        for pattern in patterns {
            let (parts, prefix) = words_of_pattern(pattern.as_ref());
            let Some(first) = parts.first() else { continue };
            let index = compiled.list.len();
            if prefix && parts.len() == 1 {
                compiled.prefixes.push((first.clone(), index));
            } else {
                compiled.by_first_word.entry(first.clone()).or_default().push(index);
            }
            compiled.list.push((parts, prefix));
        }
        compiled
    }

    /// The matched words of every pattern that occurs in `words`, each once, in text order.
    fn matches(&self, words: &[String]) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let mut candidates = Vec::new();
        for (start, word) in words.iter().enumerate() {
            candidates.clear();
            candidates.extend(self.by_first_word.get(word).into_iter().flatten().copied());
            candidates.extend(
                self.prefixes.iter().filter(|(p, _)| word.starts_with(p.as_str())).map(|&(_, i)| i),
            );
            candidates.sort_unstable();
            for &index in &candidates {
                let (parts, prefix) = &self.list[index];
                let Some(window) = words.get(start..start + parts.len()) else { continue };
                let last = parts.len() - 1;
                let all = window.iter().zip(parts).enumerate().all(|(i, (word, part))| {
                    if *prefix && i == last {
                        word.starts_with(part.as_str())
                    } else {
                        word == part
                    }
                });
                if all {
                    let text = window.join(" ");
                    if !found.contains(&text) {
                        found.push(text);
                    }
                }
            }
        }
        found
    }
}

/// A pattern's words, lower case, and whether the last one is a prefix (a trailing `*`).
fn words_of_pattern(pattern: &str) -> (Vec<String>, bool) {
    let (body, prefix) = match pattern.trim().strip_suffix('*') {
        Some(body) => (body, true),
        None => (pattern.trim(), false),
    };
    let parts = body
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    (parts, prefix)
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
