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

/// Which rule a pattern belongs to; also the order of the reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Security,
    Policy,
    Database,
    Production,
}

impl Rule {
    const ALL: [Self; 4] = [Self::Security, Self::Policy, Self::Database, Self::Production];
}

/// The rules of [`assess`], compiled: the planner assesses every task.
#[derive(Debug, Clone)]
pub struct RiskRules {
    /// The built-in patterns and the policy's, in one index so a text is read once.
    patterns: Patterns,
}

impl RiskRules {
    /// The built-in rules plus `extra_high_words` (`policies.high_risk_words`).
    pub fn new(extra_high_words: &[String]) -> Self {
        let mut patterns = Patterns::default();
        patterns.add(Rule::Security, SECURITY);
        patterns.add(Rule::Policy, extra_high_words);
        patterns.add(Rule::Database, DATABASE);
        patterns.add(Rule::Production, PRODUCTION);
        Self { patterns }
    }

    /// See [`assess`].
    pub fn assess(&self, text: &str) -> Assessment {
        self.assess_parts(&[text])
    }

    /// Assess the texts `parts` as if joined by spaces, without joining them (the planner
    /// assesses a description with the agent's name at 100,000 tasks a run).
    pub fn assess_parts(&self, parts: &[&str]) -> Assessment {
        let words = Words::of(parts);
        let [security, policy, database, production] = self.patterns.matches(&words);

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

/// One pattern: its lower-case words (the last one a prefix when `prefix` is set) and rule.
#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    prefix: bool,
    rule: Rule,
}

/// Patterns indexed by their first word.
#[derive(Debug, Clone, Default)]
struct Patterns {
    list: Vec<Pattern>,
    /// Patterns by their first word, when it must match exactly. Looked up once per word of
    /// every task, its keys fixed patterns: a fast hash without `SipHash`'s flooding
    /// protection is enough.
    by_first_word: HashMap<String, Vec<usize>, foldhash::fast::FixedState>,
    /// One-word prefix patterns (`deploy*`): the prefix and the pattern.
    prefixes: Vec<(String, usize)>,
}

impl Patterns {
    fn add<S: AsRef<str>>(&mut self, rule: Rule, patterns: &[S]) {
        for pattern in patterns {
            let (parts, prefix) = words_of_pattern(pattern.as_ref());
            let Some(first) = parts.first() else { continue };
            let index = self.list.len();
            if prefix && parts.len() == 1 {
                self.prefixes.push((first.clone(), index));
            } else {
                self.by_first_word.entry(first.clone()).or_default().push(index);
            }
            self.list.push(Pattern { parts, prefix, rule });
        }
    }

    /// For each rule (in [`Rule::ALL`] order), the matched words of every pattern that occurs
    /// in `words`, each once, in text order.
    fn matches(&self, words: &Words) -> [Vec<String>; 4] {
        let mut found: [Vec<String>; 4] = Default::default();
        let mut candidates = Vec::new();
        for start in 0..words.len() {
            let word = words.get(start);
            candidates.clear();
            candidates.extend(self.by_first_word.get(word).into_iter().flatten().copied());
            candidates
                .extend(self.prefixes.iter().filter(|(p, _)| word.starts_with(p)).map(|&(_, i)| i));
            candidates.sort_unstable();
            for &index in &candidates {
                let pattern = &self.list[index];
                let end = start + pattern.parts.len();
                if end > words.len() {
                    continue;
                }
                let last = pattern.parts.len() - 1;
                let all = pattern.parts.iter().enumerate().all(|(i, part)| {
                    let word = words.get(start + i);
                    if pattern.prefix && i == last { word.starts_with(part) } else { word == part }
                });
                if all {
                    let text = words.join(start..end);
                    let at = Rule::ALL.iter().position(|&r| r == pattern.rule).unwrap_or(0);
                    if !found[at].contains(&text) {
                        found[at].push(text);
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

/// Lower-case words of a text, split at anything not alphanumeric and at camelCase humps
/// (`resetPassword` → `reset password`, `JWTToken` → `jwt token`), kept in one buffer.
#[derive(Debug, Default)]
struct Words {
    /// Every word, lower case, one after another.
    text: String,
    /// Where each word starts and ends in `text`.
    spans: Vec<(usize, usize)>,
}

impl Words {
    /// The words of `parts`, as if they were joined by spaces.
    fn of(parts: &[&str]) -> Self {
        let mut words = Self::default();
        for part in parts {
            words.split(part);
        }
        words
    }

    fn split(&mut self, text: &str) {
        let mut start = self.text.len();
        let mut prev: Option<char> = None;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if !c.is_alphanumeric() {
                self.end_word(start);
                start = self.text.len();
                prev = Some(c);
                continue;
            }
            if let Some(prev) = prev.filter(|_| self.text.len() > start) {
                let next_is_lower = chars.peek().is_some_and(|n| n.is_lowercase());
                let hump = (prev.is_lowercase() && c.is_uppercase())
                    || (prev.is_uppercase() && c.is_uppercase() && next_is_lower);
                if hump {
                    self.end_word(start);
                    start = self.text.len();
                }
            }
            if c.is_ascii() {
                self.text.push(c.to_ascii_lowercase());
            } else {
                self.text.extend(c.to_lowercase());
            }
            prev = Some(c);
        }
        self.end_word(start);
    }

    /// Close the word begun at `start`, if it has any letters.
    fn end_word(&mut self, start: usize) {
        if self.text.len() > start {
            self.spans.push((start, self.text.len()));
        }
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, index: usize) -> &str {
        let (start, end) = self.spans[index];
        &self.text[start..end]
    }

    /// The words in `range`, joined by spaces.
    fn join(&self, range: std::ops::Range<usize>) -> String {
        range.map(|i| self.get(i)).collect::<Vec<_>>().join(" ")
    }
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
    fn parts_read_as_if_joined_by_spaces() {
        let rules = RiskRules::new(&["card data*".to_owned()]);
        for (first, second) in [
            ("Rotate the", "deployment-engineer"),
            ("store card", "datasets"),
            ("alter", "table users"),
            ("resetPass", "Word"),
            ("", "drop table"),
        ] {
            assert_eq!(
                rules.assess_parts(&[first, second]),
                rules.assess(&format!("{first} {second}")),
                "{first:?} + {second:?}"
            );
        }
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
        let words = |text: &str| {
            let words = Words::of(&[text]);
            (0..words.len()).map(|i| words.get(i).to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(
            words("JWTToken user_id api-key x2"),
            ["jwt", "token", "user", "id", "api", "key", "x2"]
        );
        assert_eq!(words("OAuth"), ["o", "auth"]);
        assert_eq!(words("ÉCOLE straße ΣΑΣ"), ["école", "straße", "σασ"]);
    }
}
