//! Domains of questions and of agents, ranked as the reference guide ranks them:
//! security > design (architecture) > performance > implementation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::agents::AgentDefinition;

/// Who owns a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    Security,
    /// Design and architecture.
    Design,
    Performance,
    Implementation,
}

impl Domain {
    pub const ALL: [Self; 4] =
        [Self::Security, Self::Design, Self::Performance, Self::Implementation];

    /// Lower is stronger: security 0 … implementation 3.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Design => "design",
            Self::Performance => "performance",
            Self::Implementation => "implementation",
        }
    }

    /// Stems that put a text in a domain, checked in rank order.
    fn stems(self) -> &'static [&'static str] {
        match self {
            Self::Security => &[
                "secur",
                "auth",
                "vulnerab",
                "threat",
                "crypt",
                "secret",
                "password",
                "privacy",
                "injection",
                "xss",
                "csrf",
                "owasp",
                "compliance",
                "session",
            ],
            Self::Design => &[
                "design",
                "architect",
                "structure",
                "boundar",
                "interface",
                "api contract",
                "ux",
                "schema",
                "adr",
            ],
            Self::Performance => &[
                "perform",
                "latency",
                "throughput",
                "speed",
                "fast",
                "slow",
                "optimi",
                "cache",
                "benchmark",
                "scalab",
                "memory",
                "p99",
            ],
            Self::Implementation => &[
                "implement",
                "develop",
                "code",
                "refactor",
                "build",
                "fix",
                "backend",
                "frontend",
                "library",
                "framework",
                "language",
            ],
        }
    }

    /// The strongest domain whose words appear in `text` (lowercase word starts), if any.
    pub fn from_words(text: &str) -> Option<Self> {
        let lower = text.to_lowercase();
        Self::ALL
            .into_iter()
            .find(|domain| domain.stems().iter().any(|stem| contains_word_start(&lower, stem)))
    }

    /// An agent's domain and how it was known: its `category`, else its name, else its
    /// triggers; an agent matching none is an implementer.
    pub fn of_agent(definition: &AgentDefinition) -> (Self, &'static str) {
        if let Some(category) = &definition.category
            && let Some(domain) = Self::from_words(category)
        {
            return (domain, "category");
        }
        if let Some(domain) = Self::from_words(&definition.name.as_str().replace('-', " ")) {
            return (domain, "name");
        }
        if let Some(domain) = Self::from_words(&definition.triggers.join(", ")) {
            return (domain, "triggers");
        }
        (Self::Implementation, "default")
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Domain {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "security" => Ok(Self::Security),
            "design" | "architecture" => Ok(Self::Design),
            "performance" => Ok(Self::Performance),
            "implementation" => Ok(Self::Implementation),
            other => Err(format!(
                "`{other}` is not a domain (use security, design, performance or implementation)"
            )),
        }
    }
}

/// `stem` occurs in `text` at the start of a word.
fn contains_word_start(text: &str, stem: &str) -> bool {
    text.match_indices(stem)
        .any(|(at, _)| text[..at].chars().next_back().is_none_or(|c| !c.is_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_pick_the_strongest_domain() {
        assert_eq!(
            Domain::from_words("Choose how login sessions are stored"),
            Some(Domain::Security)
        );
        assert_eq!(Domain::from_words("Cut p99 latency of search"), Some(Domain::Performance));
        assert_eq!(Domain::from_words("Design the plugin architecture"), Some(Domain::Design));
        assert_eq!(Domain::from_words("Pick a colour"), None);
        // A word start, not any substring: "nonsecure" is not "secure"'s word.
        assert_eq!(Domain::from_words("prefixed"), None);
    }

    #[test]
    fn agents_are_known_by_category_then_name_then_triggers() {
        let mut agent = AgentDefinition::new("security-engineer", "x");
        agent.category = Some("performance".into());
        assert_eq!(Domain::of_agent(&agent), (Domain::Performance, "category"));
        agent.category = Some("quality".into());
        assert_eq!(Domain::of_agent(&agent), (Domain::Security, "name"));
        let mut agent = AgentDefinition::new("helper", "x");
        agent.triggers = vec!["load test".into(), "profiling".into(), "latency".into()];
        assert_eq!(Domain::of_agent(&agent), (Domain::Performance, "triggers"));
        agent.triggers.clear();
        assert_eq!(Domain::of_agent(&agent), (Domain::Implementation, "default"));
    }
}
