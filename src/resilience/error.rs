//! Errors of the resilience part.

use std::time::Duration;

use crate::ids::AgentId;

/// Why a breaker refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerRefusal {
    /// Failures reached the threshold; no calls until the recovery timeout passes.
    #[error(
        "breaker for {agent} is open after {failures} consecutive failures{}; half-open in {}",
        last_error_suffix(.last_error.as_deref()),
        crate::words::duration(whole_millis(*.half_open_in))
    )]
    Open { agent: AgentId, failures: u32, half_open_in: Duration, last_error: Option<String> },
    /// The breaker is half-open and every probe call it allows is taken or has succeeded.
    #[error("breaker for {agent} is half-open and its {probes} probe calls are taken")]
    ProbesBusy { agent: AgentId, probes: u32 },
}

impl BreakerRefusal {
    pub fn agent(&self) -> &AgentId {
        match self {
            Self::Open { agent, .. } | Self::ProbesBusy { agent, .. } => agent,
        }
    }

    /// Time until the breaker admits probe calls; `None` when it already does.
    pub fn half_open_in(&self) -> Option<Duration> {
        match self {
            Self::Open { half_open_in, .. } => Some(*half_open_in),
            Self::ProbesBusy { .. } => None,
        }
    }
}

fn last_error_suffix(last_error: Option<&str>) -> String {
    last_error.map(|e| format!(" (last: {e})")).unwrap_or_default()
}

/// Rounded up to whole milliseconds so messages read `59s 999ms`, not nanoseconds.
fn whole_millis(duration: Duration) -> Duration {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}
