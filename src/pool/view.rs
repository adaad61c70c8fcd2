//! What the pool shows the outside world: instance states, per-instance views and counts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, InstanceId, TaskId};

/// Lifecycle of one agent instance: `reserved → working → idle → terminated`, with
/// `reserved → idle|terminated`, `working → terminated` and `idle → working` (reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Created for a caller that has not started work on it yet.
    Reserved,
    /// Running a task.
    Working,
    /// Finished its work; kept warm for reuse until the idle timeout.
    Idle,
    /// Gone for good.
    Terminated,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Working => "working",
            Self::Idle => "idle",
            Self::Terminated => "terminated",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One live instance as the pool pane lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub instance: InstanceId,
    pub agent: AgentId,
    pub state: InstanceState,
    /// The task it works on (or last worked on, while idle).
    pub task: Option<TaskId>,
    /// Time since it entered its current state.
    pub in_state_for: Duration,
    /// True while an idle instance is promised to a caller that has not started work yet.
    pub claimed: bool,
}

/// Instance counts of one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPoolStats {
    pub reserved: usize,
    pub working: usize,
    pub idle: usize,
    /// Callers queued for this agent.
    pub waiting: usize,
}

impl AgentPoolStats {
    /// Instances alive (reserved, working or idle).
    pub fn live(&self) -> usize {
        self.reserved + self.working + self.idle
    }
}

/// Counts over the whole pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    pub reserved: usize,
    pub working: usize,
    pub idle: usize,
    /// Callers queued across all agents.
    pub waiting: usize,
    /// The global cap on live instances.
    pub max_total: usize,
    /// Instances created since the pool started.
    pub created_total: u64,
    /// Instances terminated since the pool started.
    pub terminated_total: u64,
    /// Agents with live instances or queued callers.
    pub by_agent: BTreeMap<AgentId, AgentPoolStats>,
}

impl PoolStats {
    /// Instances alive (reserved, working or idle).
    pub fn live(&self) -> usize {
        self.reserved + self.working + self.idle
    }
}
