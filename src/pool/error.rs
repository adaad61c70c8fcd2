//! Errors of the instance pool.

use crate::ids::{AgentId, InstanceId};
use crate::pool::InstanceState;

/// Why the pool refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The id was never handed out by this pool.
    #[error("instance {instance} is unknown to the pool")]
    UnknownInstance { instance: InstanceId },
    /// The lifecycle does not allow this move (see [`InstanceState`]).
    #[error("instance {instance} cannot go from {from} to {to}")]
    IllegalTransition { instance: InstanceId, from: InstanceState, to: InstanceState },
    /// An agent whose `max_instances` is 0 can never run; waiting would hang forever.
    #[error("agent {agent} has max_instances 0, so no instance can ever be created for it")]
    NoCapacity { agent: AgentId },
    /// The queue entry vanished without an instance; only possible if the pool's state was
    /// torn down while the caller waited.
    #[error("the pool dropped the queued request for agent {agent}")]
    QueueDropped { agent: AgentId },
}
