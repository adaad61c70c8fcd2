//! Safety policies on outputs: named sets of pattern rules, each with an action, checked on
//! an agent's output (and on a coding agent's tool calls) before it flows on to dependents.
//!
//! `block` fails the task with the rule's name; `confirm` holds the output until a reviewer
//! approves it, showing the matched text in context. A policy's enforcement says whether its
//! rules act (`strict`), are only recorded and shown as warnings (`advisory`), or are off
//! (`disabled`); the `safety.enforcement` setting caps every policy. Defaults follow the
//! reference safety orchestrator (`database-protection`, `security-protection`).
//!
//! All patterns of all policies are compiled into one [`RegexSet`], so an output that matches
//! nothing (almost every output) costs one pass over its text.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// Characters of context shown on each side of a match.
pub const CONTEXT_CHARS: usize = 40;
/// Longest match shown in full; a longer one is cut in the middle.
const MATCH_SHOWN_CHARS: usize = 160;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafetyAction {
    /// The task fails, naming the rule.
    Block,
    /// The output waits for a reviewer's approval.
    Confirm,
}

impl SafetyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Confirm => "confirm",
        }
    }
}

/// Whether a policy's rules act. Ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Not checked.
    Disabled,
    /// Matches are recorded and shown as warnings; nothing is held or failed.
    Advisory,
    /// `block` and `confirm` act.
    Strict,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Advisory => "advisory",
            Self::Strict => "strict",
        }
    }
}

/// One pattern and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyRule {
    /// A regular expression (Rust `regex` syntax), matched case-insensitively; `(?-i)` makes
    /// it case-sensitive.
    pub pattern: String,
    pub action: SafetyAction,
    /// How events and messages name the rule; the pattern when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl SafetyRule {
    fn new(pattern: &str, action: SafetyAction) -> Self {
        Self { pattern: pattern.to_owned(), action, name: None }
    }

    /// The rule's name, else its pattern.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.pattern)
    }
}

/// A named set of rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyPolicy {
    pub name: String,
    #[serde(default = "strict")]
    pub enforcement: Enforcement,
    pub rules: Vec<SafetyRule>,
}

fn strict() -> Enforcement {
    Enforcement::Strict
}

/// `safety:` in flightdeck.yaml. Giving `policies` replaces the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetySettings {
    /// The strongest enforcement any policy gets: `advisory` turns every policy into
    /// warnings, `disabled` turns checking off.
    pub enforcement: Enforcement,
    pub policies: Vec<SafetyPolicy>,
}

impl Default for SafetySettings {
    fn default() -> Self {
        use SafetyAction::{Block, Confirm};
        Self {
            enforcement: Enforcement::Strict,
            policies: vec![
                SafetyPolicy {
                    name: "database-protection".into(),
                    enforcement: Enforcement::Strict,
                    rules: vec![
                        SafetyRule::new("DROP TABLE", Block),
                        SafetyRule::new("DELETE FROM .* WHERE", Confirm),
                        SafetyRule::new("ALTER TABLE .* DROP", Confirm),
                    ],
                },
                SafetyPolicy {
                    name: "security-protection".into(),
                    enforcement: Enforcement::Strict,
                    rules: vec![
                        SafetyRule::new("auth.*disable", Block),
                        SafetyRule::new("mfa.*false", Confirm),
                    ],
                },
            ],
        }
    }
}

impl SafetySettings {
    /// A policy's enforcement once the global cap is applied.
    pub fn effective(&self, policy: &SafetyPolicy) -> Enforcement {
        policy.enforcement.min(self.enforcement)
    }

    /// The first pattern that does not compile: `(policy index, rule index, message)`.
    pub fn invalid_pattern(&self) -> Option<(usize, usize, String)> {
        for (p, policy) in self.policies.iter().enumerate() {
            for (r, rule) in policy.rules.iter().enumerate() {
                if let Err(error) = compile(&rule.pattern) {
                    return Some((p, r, error.to_string()));
                }
            }
        }
        None
    }
}

impl SafetySettings {
    /// The policies in force, for `plan`: one line per rule under its policy, or a line
    /// saying checking is off.
    pub fn in_force_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from("safety policies");
        let active: Vec<&SafetyPolicy> =
            self.policies.iter().filter(|p| self.effective(p) != Enforcement::Disabled).collect();
        if active.is_empty() {
            out.push_str(": none in force (safety.enforcement or every policy is disabled)\n");
            return out;
        }
        let _ = writeln!(out, " (enforcement {})", self.enforcement.as_str());
        for policy in active {
            let _ = writeln!(out, "  {} ({})", policy.name, self.effective(policy).as_str());
            for rule in &policy.rules {
                let named = rule.name.as_ref().map(|_| format!("  `{}`", rule.pattern));
                let _ = writeln!(
                    out,
                    "    {:<8} {}{}",
                    rule.action.as_str(),
                    rule.label(),
                    named.unwrap_or_default()
                );
            }
        }
        out
    }

    /// The policies in force, for `plan --json`.
    pub fn in_force_json(&self) -> serde_json::Value {
        let policies: Vec<serde_json::Value> = self
            .policies
            .iter()
            .filter(|p| self.effective(p) != Enforcement::Disabled)
            .map(|policy| {
                serde_json::json!({
                    "name": policy.name,
                    "enforcement": self.effective(policy),
                    "rules": policy.rules,
                })
            })
            .collect();
        serde_json::json!({ "enforcement": self.enforcement, "policies": policies })
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).case_insensitive(true).build()
}

/// One rule in force, as compiled.
#[derive(Debug, Clone)]
struct Compiled {
    policy: String,
    rule: String,
    action: SafetyAction,
    enforcement: Enforcement,
    regex: Regex,
}

/// A rule that matched some text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyMatch {
    pub policy: String,
    pub rule: String,
    pub action: SafetyAction,
    pub enforcement: Enforcement,
    /// The matched text with up to [`CONTEXT_CHARS`] on each side, on one line, `…` where
    /// cut, the match itself between `«` and `»`.
    pub excerpt: String,
}

impl SafetyMatch {
    /// Whether the match stops or holds the task (not advisory).
    pub fn is_enforced(&self) -> bool {
        self.enforcement == Enforcement::Strict
    }

    /// `database-protection/DROP TABLE`.
    pub fn rule_path(&self) -> String {
        format!("{}/{}", self.policy, self.rule)
    }
}

/// Every rule in force, ready to check text. Cheap to check with; built once per engine.
#[derive(Debug, Clone)]
pub struct SafetyChecker {
    set: RegexSet,
    rules: Vec<Compiled>,
}

impl SafetyChecker {
    /// The rules of every policy not disabled. A pattern that does not compile is left out
    /// (settings validation reports it before an engine is built).
    pub fn new(settings: &SafetySettings) -> Self {
        let mut rules = Vec::new();
        for policy in &settings.policies {
            let enforcement = settings.effective(policy);
            if enforcement == Enforcement::Disabled {
                continue;
            }
            for rule in &policy.rules {
                let Ok(regex) = compile(&rule.pattern) else { continue };
                rules.push(Compiled {
                    policy: policy.name.clone(),
                    rule: rule.label().to_owned(),
                    action: rule.action,
                    enforcement,
                    regex,
                });
            }
        }
        let set = RegexSetBuilder::new(rules.iter().map(|rule| rule.regex.as_str()))
            .case_insensitive(true)
            .build()
            .unwrap_or_else(|_| RegexSet::empty());
        Self { set, rules }
    }

    /// Whether any rule is in force.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule that matches `text`, each with its first match in context.
    pub fn check(&self, text: &str) -> Vec<SafetyMatch> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        self.set
            .matches(text)
            .iter()
            .filter_map(|index| {
                let rule = &self.rules[index];
                let found = rule.regex.find(text)?;
                Some(SafetyMatch {
                    policy: rule.policy.clone(),
                    rule: rule.rule.clone(),
                    action: rule.action,
                    enforcement: rule.enforcement,
                    excerpt: excerpt(text, found.start(), found.end()),
                })
            })
            .collect()
    }
}

/// `…before «match» after…` on one line.
fn excerpt(text: &str, start: usize, end: usize) -> String {
    let before: String = {
        let head = &text[..start];
        let chars: Vec<char> = head.chars().rev().take(CONTEXT_CHARS + 1).collect();
        let cut = chars.len() > CONTEXT_CHARS;
        let mut kept: String =
            chars.into_iter().take(CONTEXT_CHARS).collect::<Vec<_>>().into_iter().rev().collect();
        if cut {
            kept.insert(0, '…');
        }
        kept
    };
    let matched = &text[start..end];
    let matched = if matched.chars().count() > MATCH_SHOWN_CHARS {
        let half = MATCH_SHOWN_CHARS / 2;
        let head: String = matched.chars().take(half).collect();
        let tail: Vec<char> = matched.chars().rev().take(half).collect();
        format!("{head}…{}", tail.into_iter().rev().collect::<String>())
    } else {
        matched.to_owned()
    };
    let after: String = {
        let mut chars = text[end..].chars();
        let mut kept: String = chars.by_ref().take(CONTEXT_CHARS).collect();
        if chars.next().is_some() {
            kept.push('…');
        }
        kept
    };
    one_line(&format!("{before}«{matched}»{after}"))
}

/// Line breaks and other control characters as spaces, so an excerpt stays one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn names(found: &[SafetyMatch]) -> Vec<(String, SafetyAction)> {
        found.iter().map(|m| (m.rule_path(), m.action)).collect()
    }

    #[test]
    fn the_default_rules() {
        let checker = SafetyChecker::new(&SafetySettings::default());
        let table = [
            (
                "Run `DROP TABLE users;` to reset",
                Some(("database-protection/DROP TABLE", SafetyAction::Block)),
            ),
            ("drop table orders", Some(("database-protection/DROP TABLE", SafetyAction::Block))),
            (
                "DELETE FROM users WHERE id = 4",
                Some(("database-protection/DELETE FROM .* WHERE", SafetyAction::Confirm)),
            ),
            (
                "ALTER TABLE users DROP COLUMN email",
                Some(("database-protection/ALTER TABLE .* DROP", SafetyAction::Confirm)),
            ),
            (
                "set auth_required: disable",
                Some(("security-protection/auth.*disable", SafetyAction::Block)),
            ),
            (
                "mfa_enabled = false",
                Some(("security-protection/mfa.*false", SafetyAction::Confirm)),
            ),
            ("SELECT * FROM users WHERE id = 4", None),
            ("DELETE FROM users", None),
            ("The table was dropped yesterday", None),
        ];
        for (text, expected) in table {
            let found = checker.check(text);
            let expected: Vec<(String, SafetyAction)> =
                expected.into_iter().map(|(rule, action)| (rule.to_owned(), action)).collect();
            assert_eq!(names(&found), expected, "{text}");
        }
    }

    #[test]
    fn the_excerpt_shows_the_match_in_context_on_one_line() {
        let checker = SafetyChecker::new(&SafetySettings::default());
        let text = format!("{}\nthen DROP TABLE users;\n{}", "x".repeat(100), "y".repeat(100));
        let found = checker.check(&text);
        assert_eq!(found.len(), 1);
        let excerpt = &found[0].excerpt;
        assert!(excerpt.contains("then «DROP TABLE» users; "), "{excerpt}");
        assert!(excerpt.starts_with('…') && excerpt.ends_with('…'), "{excerpt}");
        assert!(!excerpt.contains('\n'));
        assert_eq!(excerpt.chars().filter(|c| *c == 'x').count(), CONTEXT_CHARS - 6);
    }

    #[test]
    fn enforcement_is_capped_and_disabled_policies_are_not_checked() {
        let mut settings = SafetySettings::default();
        settings.policies[1].enforcement = Enforcement::Disabled;
        let checker = SafetyChecker::new(&settings);
        assert!(checker.check("auth: disable").is_empty());
        assert!(checker.check("DROP TABLE x")[0].is_enforced());

        settings.enforcement = Enforcement::Advisory;
        let checker = SafetyChecker::new(&settings);
        let found = checker.check("DROP TABLE x");
        assert_eq!(found[0].enforcement, Enforcement::Advisory);
        assert!(!found[0].is_enforced());

        settings.enforcement = Enforcement::Disabled;
        assert!(SafetyChecker::new(&settings).is_empty());
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let mut settings = SafetySettings::default();
        settings.policies[1].rules[1].pattern = "mfa(".into();
        let (policy, rule, message) = settings.invalid_pattern().unwrap();
        assert_eq!((policy, rule), (1, 1));
        assert!(message.contains("unclosed group"), "{message}");
    }
}
