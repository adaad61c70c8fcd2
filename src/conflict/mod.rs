//! Conflicts between agents: panel verdicts, the resolution ladder and the room where a
//! conflict waits for a person.
//!
//! A panel task asks several agents the same question ([`verdict::member_prompt`]); each
//! answer ends with a [`Verdict`]. Equal decisions are an agreement. Different ones are a
//! conflict, settled by the reference guide's ladder: domain priority
//! (security > design > performance > implementation), then the more specific evidence,
//! then a third agent's opinion asked in both orders, then a person. The steps are pure
//! functions in [`ladder`]; the engine's `panel` module asks the agents and publishes each
//! step; [`Conflicts`] holds the conflicts a person must settle, keyed by run and task.

mod domain;
mod error;
pub mod ladder;
mod room;
pub mod verdict;

use serde::{Deserialize, Serialize};

pub use domain::Domain;
pub use error::ConflictError;
pub use room::{Call, ConflictChoice, Conflicts, OpenConflict, Resolution, Waiter};
pub use verdict::{Verdict, VerdictError, member_prompt, normalise, parse_verdict};

use crate::ids::AgentId;

/// A step of the resolution ladder, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LadderStep {
    /// The owner of the question's domain, or the stronger domain, wins.
    DomainPriority,
    /// The clearly more specific rationale wins.
    Evidence,
    /// A third agent picks, asked in both orders.
    ThirdOpinion,
    /// A person decides.
    Operator,
}

impl LadderStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DomainPriority => "domain_priority",
            Self::Evidence => "evidence",
            Self::ThirdOpinion => "third_opinion",
            Self::Operator => "operator",
        }
    }
}

impl std::fmt::Display for LadderStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the ladder settles a conflict itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecideMode {
    /// The first step that decides settles the conflict.
    Auto,
    /// The ladder's result is a recommendation a person confirms or overrides.
    Recommend,
}

impl DecideMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Recommend => "recommend",
        }
    }
}

/// One member's verdict with the member's domain, as events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberVerdict {
    pub agent: AgentId,
    pub domain: Domain,
    /// How the domain was known: `category`, `name`, `triggers` or `default`.
    pub domain_from: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What the ladder offers a person, and which step found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub decision: String,
    pub winner: AgentId,
    /// The step that decided; `None` when no step did and this is only the side with the
    /// most members, then the highest confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<LadderStep>,
}

/// `winner` of a decision written by a person instead of picking a member's verdict.
pub const OWN_DECISION: &str = "operator";
