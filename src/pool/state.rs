//! The pool's plain state and its rules, kept apart from locking and awaiting so every
//! function here runs to completion under the pool's mutex.
//!
//! Invariant kept by every public operation: after it returns, no queued waiter could be
//! granted an instance. Anything that frees capacity (release, terminate, reap, a cancelled
//! grant) ends with [`PoolState::dispatch`]. Because of the invariant, a new caller only
//! needs to queue when callers for the same agent are already queued: when some waiter is
//! blocked by the global cap, the cap is full and no idle instance is left to evict, so the
//! new caller is blocked as well.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bus::EventBus;
use crate::event::Event;
use crate::ids::{AgentId, InstanceId, RunId, TaskId};
use crate::pool::{InstanceState, PoolError};

/// Reason recorded when a granted instance is given back by a cancelled `acquire`.
pub(super) const REASON_ACQUIRE_CANCELLED: &str = "acquire cancelled before the instance was used";
/// Reason recorded by the reaper.
pub(super) const REASON_IDLE_TIMEOUT: &str = "idle timeout";

pub(super) struct Instance {
    pub agent: AgentId,
    pub state: InstanceState,
    /// When it entered its current state.
    pub since: Instant,
    pub task: Option<TaskId>,
    /// The run it was reserved for, until it goes idle: its events carry this run's id.
    pub run: Option<RunId>,
    /// An idle instance promised to an `acquire` caller; it is not in the idle list, so
    /// nobody else reuses, evicts or reaps it.
    pub claimed: bool,
}

#[derive(Default)]
pub(super) struct AgentSlots {
    /// Reserved, working and idle instances of the agent.
    pub live: usize,
    /// Unclaimed idle instances, oldest first (they are pushed as they become idle).
    pub idle: Vec<InstanceId>,
    /// Callers queued for the agent.
    pub waiting: usize,
}

/// One queued `acquire` call.
pub(super) struct Waiter {
    pub ticket: u64,
    pub agent: AgentId,
    pub max_instances: u32,
    pub reuse_idle: bool,
    /// The run asking, whose id the queue and grant events carry.
    pub run: Option<RunId>,
    pub reply: oneshot::Sender<InstanceId>,
}

/// Why a caller cannot get an instance right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocked {
    /// The agent has `max_instances` live instances and none can be reused or evicted.
    AgentCap,
    /// The pool has `max_total` live instances and none is idle.
    GlobalCap,
}

/// Instances and counters; everything but the queue.
pub(super) struct Ledger {
    pub max_total: usize,
    pub next_instance: u64,
    pub live_total: usize,
    pub created_total: u64,
    pub terminated_total: u64,
    pub instances: HashMap<InstanceId, Instance>,
    pub agents: HashMap<AgentId, AgentSlots>,
}

pub(super) struct PoolState {
    pub ledger: Ledger,
    /// Queued callers in arrival order.
    pub waiters: VecDeque<Waiter>,
    pub next_ticket: u64,
}

impl PoolState {
    pub fn new(max_total: usize) -> Self {
        Self {
            ledger: Ledger {
                max_total,
                next_instance: 1,
                live_total: 0,
                created_total: 0,
                terminated_total: 0,
                instances: HashMap::new(),
                agents: HashMap::new(),
            },
            waiters: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// Serve queued callers in arrival order. A waiter blocked by its agent's cap does not
    /// hold up waiters of other agents; a waiter blocked by the global cap holds up everyone
    /// behind it, so the head of the queue cannot starve.
    pub fn dispatch(&mut self, bus: &EventBus) {
        let mut index = 0;
        while index < self.waiters.len() {
            let waiter = &self.waiters[index];
            match self.ledger.try_grant(
                bus,
                &waiter.agent,
                waiter.max_instances,
                waiter.reuse_idle,
                waiter.run.as_ref(),
            ) {
                Ok(instance) => {
                    let Some(waiter) = self.waiters.remove(index) else { break };
                    self.ledger.dequeued(bus, &waiter.agent, waiter.run.as_ref());
                    if waiter.reply.send(instance).is_err() {
                        // The receiver is only dropped after its waiter left the queue, so
                        // this is unreachable; give the instance back rather than leak it.
                        self.ledger.undo_grant(bus, instance);
                    }
                }
                Err(Blocked::AgentCap) => index += 1,
                Err(Blocked::GlobalCap) => break,
            }
        }
    }

    /// Remove a queued caller that gave up. Returns false when it is no longer queued
    /// (it was granted an instance meanwhile).
    pub fn leave_queue(&mut self, bus: &EventBus, ticket: u64) -> bool {
        let Some(position) = self.waiters.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        if let Some(waiter) = self.waiters.remove(position) {
            self.ledger.dequeued(bus, &waiter.agent, waiter.run.as_ref());
        }
        true
    }

    /// Terminate one instance and let queued callers use the room it leaves.
    pub fn terminate(
        &mut self,
        bus: &EventBus,
        instance: InstanceId,
        reason: &str,
    ) -> Result<(), PoolError> {
        self.ledger.terminate(bus, instance, reason)?;
        self.dispatch(bus);
        Ok(())
    }
}

impl Ledger {
    pub fn waiting_for(&self, agent: &AgentId) -> usize {
        self.agents.get(agent).map_or(0, |slots| slots.waiting)
    }

    pub fn slots_mut(&mut self, agent: &AgentId) -> &mut AgentSlots {
        slots_of(&mut self.agents, agent)
    }

    /// The error for an id that has no live instance.
    pub fn missing(&self, instance: InstanceId, to: InstanceState) -> PoolError {
        if instance.0 > 0 && instance.0 < self.next_instance {
            PoolError::IllegalTransition { instance, from: InstanceState::Terminated, to }
        } else {
            PoolError::UnknownInstance { instance }
        }
    }

    /// Give the caller an instance without waiting, if the rules allow it.
    pub fn try_grant(
        &mut self,
        bus: &EventBus,
        agent: &AgentId,
        max_instances: u32,
        reuse_idle: bool,
        run: Option<&RunId>,
    ) -> Result<InstanceId, Blocked> {
        let slots = slots_of(&mut self.agents, agent);
        if reuse_idle && let Some(instance) = slots.idle.pop() {
            // Newest idle first: the oldest ones age out and get reaped.
            if let Some(entry) = self.instances.get_mut(&instance) {
                entry.claimed = true;
                entry.run = run.cloned();
            }
            return Ok(instance);
        }
        if slots.live >= max_instances as usize {
            // Only a fresh-instance caller can make room inside its own agent's cap.
            let Some(&oldest) = slots.idle.first() else { return Err(Blocked::AgentCap) };
            self.evict(bus, oldest, agent, run);
        } else if self.live_total >= self.max_total {
            let oldest = self.oldest_idle().ok_or(Blocked::GlobalCap)?;
            self.evict(bus, oldest, agent, run);
        }
        Ok(self.create(bus, agent, run))
    }

    fn oldest_idle(&self) -> Option<InstanceId> {
        self.agents
            .values()
            .filter_map(|slots| slots.idle.first())
            .filter_map(|id| self.instances.get(id).map(|entry| (entry.since, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Idle instances belong to no run; an eviction is the doing of the run that needs the
    /// room, so its event carries that run's id.
    fn evict(
        &mut self,
        bus: &EventBus,
        instance: InstanceId,
        for_agent: &AgentId,
        run: Option<&RunId>,
    ) {
        let reason = format!("evicted to make room for {for_agent}");
        if let Some(entry) = self.instances.get_mut(&instance) {
            entry.run = run.cloned();
        }
        // The id comes from an idle list, so it is live.
        let _ = self.terminate(bus, instance, &reason);
    }

    fn create(&mut self, bus: &EventBus, agent: &AgentId, run: Option<&RunId>) -> InstanceId {
        let instance = InstanceId(self.next_instance);
        self.next_instance += 1;
        self.live_total += 1;
        self.created_total += 1;
        self.slots_mut(agent).live += 1;
        self.instances.insert(
            instance,
            Instance {
                agent: agent.clone(),
                state: InstanceState::Reserved,
                since: Instant::now(),
                task: None,
                run: run.cloned(),
                claimed: false,
            },
        );
        bus.publish(run, Event::InstanceReserved { instance, agent: agent.clone() });
        instance
    }

    /// Reserved|idle → working.
    pub fn start_work(
        &mut self,
        bus: &EventBus,
        instance: InstanceId,
        task: Option<TaskId>,
    ) -> Result<(), PoolError> {
        let to = InstanceState::Working;
        let Some(entry) = self.instances.get_mut(&instance) else {
            return Err(self.missing(instance, to));
        };
        let was_unclaimed_idle = match entry.state {
            InstanceState::Reserved => false,
            InstanceState::Idle => !entry.claimed,
            from => return Err(PoolError::IllegalTransition { instance, from, to }),
        };
        entry.state = to;
        entry.claimed = false;
        entry.since = Instant::now();
        entry.task.clone_from(&task);
        let agent = entry.agent.clone();
        if was_unclaimed_idle {
            self.slots_mut(&agent).idle.retain(|id| *id != instance);
        }
        bus.publish(
            entry_run(&self.instances, instance),
            Event::InstanceWorking { instance, agent, task },
        );
        Ok(())
    }

    /// Working|reserved → idle. A claimed idle instance handed back unused just becomes
    /// available again (no transition, no event).
    pub fn release(&mut self, bus: &EventBus, instance: InstanceId) -> Result<(), PoolError> {
        let to = InstanceState::Idle;
        let Some(entry) = self.instances.get_mut(&instance) else {
            return Err(self.missing(instance, to));
        };
        match entry.state {
            InstanceState::Working | InstanceState::Reserved => {
                entry.state = to;
                entry.since = Instant::now();
                let agent = entry.agent.clone();
                // Idle, it belongs to no run any more; this event is still the run's doing.
                let run = entry.run.take();
                self.slots_mut(&agent).idle.push(instance);
                bus.publish(run.as_ref(), Event::InstanceIdle { instance, agent });
                Ok(())
            }
            InstanceState::Idle if entry.claimed => {
                self.unclaim(instance);
                Ok(())
            }
            from => Err(PoolError::IllegalTransition { instance, from, to }),
        }
    }

    /// Any live state → terminated.
    pub fn terminate(
        &mut self,
        bus: &EventBus,
        instance: InstanceId,
        reason: &str,
    ) -> Result<(), PoolError> {
        let Some(entry) = self.instances.remove(&instance) else {
            return Err(self.missing(instance, InstanceState::Terminated));
        };
        self.live_total -= 1;
        self.terminated_total += 1;
        let slots = self.slots_mut(&entry.agent);
        slots.live -= 1;
        if entry.state == InstanceState::Idle && !entry.claimed {
            slots.idle.retain(|id| *id != instance);
        }
        bus.publish(
            entry.run.as_ref(),
            Event::InstanceTerminated { instance, agent: entry.agent, reason: reason.to_owned() },
        );
        Ok(())
    }

    /// Put a claimed idle instance back into its agent's idle list, keeping it sorted by age.
    fn unclaim(&mut self, instance: InstanceId) {
        let Some(entry) = self.instances.get_mut(&instance) else { return };
        entry.claimed = false;
        let since = entry.since;
        let agent = entry.agent.clone();
        let Some(slots) = self.agents.get_mut(&agent) else { return };
        let instances = &self.instances;
        let position = slots
            .idle
            .partition_point(|id| instances.get(id).is_some_and(|other| other.since <= since));
        slots.idle.insert(position, instance);
    }

    /// Take back an instance granted to a caller that went away before using it.
    pub fn undo_grant(&mut self, bus: &EventBus, instance: InstanceId) {
        match self.instances.get(&instance).map(|entry| entry.state) {
            Some(InstanceState::Reserved) => {
                let _ = self.terminate(bus, instance, REASON_ACQUIRE_CANCELLED);
            }
            Some(InstanceState::Idle) => self.unclaim(instance),
            // Already started or gone: whoever did that owns it now.
            _ => {}
        }
    }

    /// A caller left the queue; publish the agent's new queue length.
    pub fn dequeued(&mut self, bus: &EventBus, agent: &AgentId, run: Option<&RunId>) {
        let slots = self.slots_mut(agent);
        slots.waiting = slots.waiting.saturating_sub(1);
        let waiting = slots.waiting;
        bus.publish(run, Event::InstanceQueued { agent: agent.clone(), waiting });
    }

    /// Unclaimed idle instances that have been idle for at least `idle_for`.
    pub fn expired_idle(&self, now: Instant, idle_for: std::time::Duration) -> Vec<InstanceId> {
        let mut expired = Vec::new();
        for slots in self.agents.values() {
            for id in &slots.idle {
                match self.instances.get(id) {
                    Some(entry) if now.saturating_duration_since(entry.since) >= idle_for => {
                        expired.push(*id);
                    }
                    // Oldest first: the rest are younger.
                    _ => break,
                }
            }
        }
        expired.sort_unstable();
        expired
    }
}

/// The slots of an agent, created on first use. A free function so callers can keep
/// borrowing the other fields of [`Ledger`].
fn slots_of<'a>(
    agents: &'a mut HashMap<AgentId, AgentSlots>,
    agent: &AgentId,
) -> &'a mut AgentSlots {
    if !agents.contains_key(agent) {
        agents.insert(agent.clone(), AgentSlots::default());
    }
    agents.get_mut(agent).expect("inserted just above")
}

/// The run an instance works for, if any.
fn entry_run(instances: &HashMap<InstanceId, Instance>, instance: InstanceId) -> Option<&RunId> {
    instances.get(&instance).and_then(|entry| entry.run.as_ref())
}
