//! The agent instance pool.
//!
//! Instances follow `reserved → working → idle → terminated` (see [`InstanceState`]). Callers
//! [`Pool::acquire`] an instance for an agent; when the agent's `max_instances` or the pool's
//! `max_total` is reached they queue in arrival order instead of failing, and each release
//! wakes the next caller that can use the room. Every transition is published on the bus;
//! `InstanceQueued` carries an agent's current queue length and is published whenever it
//! changes, also when a caller leaves the queue (served or gave up), so views can fold it.
//!
//! One `std` mutex guards plain state; nothing awaits while holding it. Queued callers wait on
//! a oneshot each, so a release hands the instance straight to the waiter it picked.

mod error;
mod state;
mod view;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use error::PoolError;
pub use view::{AgentPoolStats, InstanceState, InstanceView, PoolStats};

use crate::bus::EventBus;
use crate::config::Limits;
use crate::event::Event;
use crate::ids::{AgentId, InstanceId, RunId, TaskId};
use state::{PoolState, REASON_IDLE_TIMEOUT, Waiter};

/// Limits of the pool, usually from [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Live instances across all agents; 0 is treated as 1.
    pub max_total: usize,
    /// Idle instances older than this are terminated by [`Pool::reap_idle`].
    pub idle_timeout: Duration,
}

impl From<&Limits> for PoolConfig {
    fn from(limits: &Limits) -> Self {
        Self { max_total: limits.max_instances_total, idle_timeout: limits.idle_timeout }
    }
}

struct PoolInner {
    idle_timeout: Duration,
    bus: EventBus,
    state: Mutex<PoolState>,
}

/// Cheap to clone; all clones share one pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    pub fn new(config: PoolConfig, bus: EventBus) -> Self {
        let state = PoolState::new(config.max_total.max(1));
        Self {
            inner: Arc::new(PoolInner {
                idle_timeout: config.idle_timeout,
                bus,
                state: Mutex::new(state),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state stays consistent at every unlock point, so a panic elsewhere is no reason
        // to stop the pool.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An instance of `agent` for the caller: an idle one when `reuse_idle` allows, else a new
    /// reserved one if the agent has fewer than `max_instances` and the pool fewer than
    /// `max_total`. An idle instance of another agent is terminated when it is all that stands
    /// in the way of the global cap. Otherwise the caller queues (FIFO) until a release or
    /// termination makes room.
    ///
    /// A reused instance stays `idle` (but promised to the caller) until [`Pool::start_work`];
    /// hand it back unused with [`Pool::release`].
    ///
    /// Cancel-safe: dropping the future leaves the queue, and an instance granted to it in
    /// the meantime goes to the next waiter.
    pub async fn acquire(
        &self,
        agent: &AgentId,
        max_instances: u32,
        reuse_idle: bool,
    ) -> Result<InstanceId, PoolError> {
        self.acquire_for(None, agent, max_instances, reuse_idle).await
    }

    /// [`Pool::acquire`] on behalf of `run`: the instance's events (reserved, queued, working,
    /// idle, and an eviction it causes) carry the run's id until the instance goes idle.
    pub async fn acquire_for(
        &self,
        run: Option<&RunId>,
        agent: &AgentId,
        max_instances: u32,
        reuse_idle: bool,
    ) -> Result<InstanceId, PoolError> {
        if max_instances == 0 {
            return Err(PoolError::NoCapacity { agent: agent.clone() });
        }
        let bus = &self.inner.bus;
        let (ticket, reply) = {
            let mut guard = self.lock();
            let state = &mut *guard;
            // Callers already queued for this agent come first (see the invariant in state.rs).
            if state.ledger.waiting_for(agent) == 0
                && let Ok(instance) =
                    state.ledger.try_grant(bus, agent, max_instances, reuse_idle, run)
            {
                return Ok(instance);
            }
            let (sender, reply) = oneshot::channel();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiters.push_back(Waiter {
                ticket,
                agent: agent.clone(),
                max_instances,
                reuse_idle,
                run: run.cloned(),
                reply: sender,
            });
            let slots = state.ledger.slots_mut(agent);
            slots.waiting += 1;
            let waiting = slots.waiting;
            bus.publish(run, Event::InstanceQueued { agent: agent.clone(), waiting });
            (ticket, reply)
        };
        let mut queued = QueuedAcquire { pool: self, ticket, reply, finished: false };
        let outcome = (&mut queued.reply).await;
        queued.finished = true;
        outcome.map_err(|_| PoolError::QueueDropped { agent: agent.clone() })
    }

    /// Reserved|idle → working.
    pub fn start_work(&self, id: InstanceId, task: Option<TaskId>) -> Result<(), PoolError> {
        self.lock().ledger.start_work(&self.inner.bus, id, task)
    }

    /// Working|reserved → idle, then wake the next queued caller that can use it.
    pub fn release(&self, id: InstanceId) -> Result<(), PoolError> {
        let bus = &self.inner.bus;
        let mut state = self.lock();
        state.ledger.release(bus, id)?;
        state.dispatch(bus);
        Ok(())
    }

    /// Any live state → terminated, then wake the next queued caller.
    pub fn terminate(&self, id: InstanceId, reason: &str) -> Result<(), PoolError> {
        self.lock().terminate(&self.inner.bus, id, reason)
    }

    /// Terminate unclaimed idle instances idle for at least the idle timeout. Returns how many.
    pub fn reap_idle(&self) -> usize {
        let bus = &self.inner.bus;
        let mut state = self.lock();
        let expired = state.ledger.expired_idle(Instant::now(), self.inner.idle_timeout);
        for id in &expired {
            // Ids come from the idle lists under this same lock, so they are live.
            let _ = state.ledger.terminate(bus, *id, REASON_IDLE_TIMEOUT);
        }
        if !expired.is_empty() {
            state.dispatch(bus);
        }
        expired.len()
    }

    /// Reap idle instances periodically (a quarter of the idle timeout, between 100 ms and
    /// 30 s). The task ends by itself once every clone of the pool is dropped.
    pub fn spawn_reaper(&self) -> JoinHandle<()> {
        let period = (self.inner.idle_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        let pool: Weak<PoolInner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = pool.upgrade() else { return };
                Pool { inner }.reap_idle();
            }
        })
    }

    /// Counts by state, overall and per agent.
    pub fn stats(&self) -> PoolStats {
        let state = self.lock();
        let ledger = &state.ledger;
        let mut stats = PoolStats {
            waiting: state.waiters.len(),
            max_total: ledger.max_total,
            created_total: ledger.created_total,
            terminated_total: ledger.terminated_total,
            ..PoolStats::default()
        };
        for entry in ledger.instances.values() {
            let per_agent = stats.by_agent.entry(entry.agent.clone()).or_default();
            let (total, agent) = match entry.state {
                InstanceState::Reserved => (&mut stats.reserved, &mut per_agent.reserved),
                InstanceState::Working => (&mut stats.working, &mut per_agent.working),
                InstanceState::Idle => (&mut stats.idle, &mut per_agent.idle),
                InstanceState::Terminated => continue,
            };
            *total += 1;
            *agent += 1;
        }
        for (agent, slots) in &ledger.agents {
            if slots.waiting > 0 {
                stats.by_agent.entry(agent.clone()).or_default().waiting = slots.waiting;
            }
        }
        stats
    }

    /// Live instances, oldest id first.
    pub fn instances(&self) -> Vec<InstanceView> {
        instance_views(&self.lock(), Instant::now())
    }

    /// Events that rebuild the current picture for a subscriber that joins late: each live
    /// instance's reservation and current state, then each agent's queue length.
    pub fn backlog_events(&self) -> Vec<Event> {
        let (views, mut queued) = {
            let state = self.lock();
            let queued: Vec<(AgentId, usize)> = state
                .ledger
                .agents
                .iter()
                .filter(|(_, slots)| slots.waiting > 0)
                .map(|(agent, slots)| (agent.clone(), slots.waiting))
                .collect();
            (instance_views(&state, Instant::now()), queued)
        };
        let mut events = Vec::with_capacity(views.len() * 2 + queued.len());
        for view in views {
            let (instance, agent) = (view.instance, view.agent);
            events.push(Event::InstanceReserved { instance, agent: agent.clone() });
            match view.state {
                InstanceState::Working => {
                    events.push(Event::InstanceWorking { instance, agent, task: view.task });
                }
                InstanceState::Idle => events.push(Event::InstanceIdle { instance, agent }),
                InstanceState::Reserved | InstanceState::Terminated => {}
            }
        }
        queued.sort_unstable();
        events.extend(
            queued.into_iter().map(|(agent, waiting)| Event::InstanceQueued { agent, waiting }),
        );
        events
    }
}

fn instance_views(state: &PoolState, now: Instant) -> Vec<InstanceView> {
    let mut views: Vec<InstanceView> = state
        .ledger
        .instances
        .iter()
        .map(|(id, entry)| InstanceView {
            instance: *id,
            agent: entry.agent.clone(),
            state: entry.state,
            task: entry.task.clone(),
            in_state_for: now.saturating_duration_since(entry.since),
            claimed: entry.claimed,
        })
        .collect();
    views.sort_unstable_by_key(|view| view.instance);
    views
}

/// A queued `acquire` in flight; its drop cleans up when the caller gives up.
struct QueuedAcquire<'a> {
    pool: &'a Pool,
    ticket: u64,
    reply: oneshot::Receiver<InstanceId>,
    finished: bool,
}

impl Drop for QueuedAcquire<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let bus = &self.pool.inner.bus;
        let mut state = self.pool.lock();
        if state.leave_queue(bus, self.ticket) {
            return;
        }
        // Granted between the last poll and the drop: pass it on instead of leaking it.
        if let Ok(instance) = self.reply.try_recv() {
            state.ledger.undo_grant(bus, instance);
            state.dispatch(bus);
        }
    }
}
