//! Circuit breakers, one per agent type.
//!
//! `closed → open` when consecutive failures reach the threshold; `open → half_open` once the
//! recovery timeout has passed (applied lazily by the next call, [`BreakerBoard::tick`] or
//! [`BreakerBoard::snapshot`]); in half-open exactly `probes` trial calls are admitted — a
//! further call is refused while earlier probes are in flight or have succeeded — and the
//! breaker closes when all of them succeed or reopens on the first failure.
//!
//! Every state change bumps a generation number that each [`CallPermit`] remembers. An
//! outcome recorded with a permit from an earlier generation (a call admitted before the
//! breaker opened, or before an operator reset it) still counts in the metrics but no longer
//! moves the state machine, so a burst of late failures cannot reopen or extend anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bus::EventBus;
use crate::config::BreakerSettings;
use crate::event::Event;
use crate::ids::AgentId;
use crate::resilience::BreakerRefusal;
use crate::resilience::health::{self, Alert, CallMetrics, Health};

/// Longest sleep of the ticker task between checks that its board still exists.
const TICKER_IDLE_CHECK: Duration = Duration::from_secs(1);

/// State of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused until the recovery timeout passes.
    Open,
    /// A limited number of probe calls test whether the agent recovered.
    HalfOpen,
}

/// The thresholds in force for one agent (global settings with its override applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerLimits {
    pub failure_threshold: u32,
    pub recovery_timeout: Duration,
    pub half_open_probes: u32,
}

impl BreakerLimits {
    /// The limits for `agent`. A threshold or probe count of 0 would make the breaker open
    /// on nothing or never close, so both are read as at least 1.
    pub fn for_agent(settings: &BreakerSettings, agent: &AgentId) -> Self {
        let own = settings.overrides.get(agent.as_str());
        Self {
            failure_threshold: own
                .and_then(|o| o.failure_threshold)
                .unwrap_or(settings.failure_threshold)
                .max(1),
            recovery_timeout: own
                .and_then(|o| o.recovery_timeout)
                .unwrap_or(settings.recovery_timeout),
            half_open_probes: own
                .and_then(|o| o.half_open_probes)
                .unwrap_or(settings.half_open_probes)
                .max(1),
        }
    }
}

/// One breaker as the breakers pane shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerView {
    pub agent: AgentId,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub limits: BreakerLimits,
    /// Probe calls admitted and not yet recorded (half-open only).
    pub probes_in_flight: u32,
    /// Probe calls that succeeded so far (half-open only).
    pub probe_successes: u32,
    /// Time until the breaker goes half-open (open only).
    pub half_open_in: Option<Duration>,
    pub last_error: Option<String>,
    /// Why it opened (the failing error, `probe failed: ...` or `opened by ...`); open only.
    pub open_reason: Option<String>,
    pub metrics: CallMetrics,
    pub health: Health,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { half_open_at: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

struct Breaker {
    limits: BreakerLimits,
    phase: Phase,
    generation: u64,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// The `last_error` text of the latest `BreakerOpened` event.
    open_reason: String,
    metrics: CallMetrics,
}

impl Breaker {
    fn new(limits: BreakerLimits) -> Self {
        Self {
            limits,
            phase: Phase::Closed,
            generation: 0,
            consecutive_failures: 0,
            last_error: None,
            open_reason: String::new(),
            metrics: CallMetrics::default(),
        }
    }

    fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }

    /// Open → half-open when the recovery timeout has passed. Returns true on a change.
    fn advance(&mut self, agent: &AgentId, now: Instant, bus: &EventBus) -> bool {
        let Phase::Open { half_open_at } = self.phase else { return false };
        if now < half_open_at {
            return false;
        }
        self.enter(Phase::HalfOpen { in_flight: 0, successes: 0 });
        let probes = self.limits.half_open_probes;
        bus.publish(None, Event::BreakerHalfOpened { agent: agent.clone(), probes });
        true
    }

    fn open(&mut self, agent: &AgentId, now: Instant, bus: &EventBus, reason: String) {
        let recovery = self.limits.recovery_timeout;
        self.enter(Phase::Open { half_open_at: now + recovery });
        bus.publish(
            None,
            Event::BreakerOpened {
                agent: agent.clone(),
                failures: self.consecutive_failures,
                threshold: self.limits.failure_threshold,
                recovery_ms: millis(recovery),
                last_error: reason.clone(),
            },
        );
        self.open_reason = reason;
    }

    fn close(&mut self, agent: &AgentId, bus: &EventBus, reason: String) {
        self.enter(Phase::Closed);
        self.consecutive_failures = 0;
        bus.publish(None, Event::BreakerClosed { agent: agent.clone(), reason });
    }

    fn view(&self, agent: &AgentId, now: Instant) -> BreakerView {
        let (probes_in_flight, probe_successes) = match self.phase {
            Phase::HalfOpen { in_flight, successes } => (in_flight, successes),
            _ => (0, 0),
        };
        let half_open_in = match self.phase {
            Phase::Open { half_open_at } => Some(half_open_at.saturating_duration_since(now)),
            _ => None,
        };
        let state = self.state();
        let (health, alerts) = health::assess(
            &self.metrics,
            self.consecutive_failures,
            state == BreakerState::Open,
            state == BreakerState::HalfOpen,
        );
        BreakerView {
            agent: agent.clone(),
            state,
            consecutive_failures: self.consecutive_failures,
            limits: self.limits,
            probes_in_flight,
            probe_successes,
            half_open_in,
            last_error: self.last_error.clone(),
            open_reason: (state == BreakerState::Open).then(|| self.open_reason.clone()),
            metrics: self.metrics,
            health,
            alerts,
        }
    }
}

struct BoardInner {
    settings: BreakerSettings,
    bus: EventBus,
    breakers: Mutex<HashMap<AgentId, Breaker>>,
    /// Wakes the ticker when a breaker opens, so it can sleep until the earliest half-open.
    opened: Arc<Notify>,
}

impl BoardInner {
    fn lock(&self) -> MutexGuard<'_, HashMap<AgentId, Breaker>> {
        // Every update leaves a breaker consistent, so a panic elsewhere is no reason to stop.
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn breaker<'a>(
        &self,
        breakers: &'a mut HashMap<AgentId, Breaker>,
        agent: &AgentId,
    ) -> &'a mut Breaker {
        if !breakers.contains_key(agent) {
            let limits = BreakerLimits::for_agent(&self.settings, agent);
            breakers.insert(agent.clone(), Breaker::new(limits));
        }
        breakers.get_mut(agent).expect("inserted just above")
    }
}

/// All breakers of the runtime. Cheap to clone; clones share the breakers.
#[derive(Clone)]
pub struct BreakerBoard {
    inner: Arc<BoardInner>,
}

/// Leave to make one call through a breaker. Settle it with
/// [`BreakerBoard::record_success`] or [`BreakerBoard::record_failure`]; dropping it unsettled
/// (the call was cancelled) frees its probe slot without counting an outcome.
#[must_use = "a permit must be settled with record_success or record_failure"]
pub struct CallPermit {
    board: Arc<BoardInner>,
    agent: AgentId,
    generation: u64,
    probe: bool,
    settled: bool,
}

impl CallPermit {
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// True when the call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if self.settled || !self.probe {
            return;
        }
        let mut breakers = self.board.lock();
        if let Some(breaker) = breakers.get_mut(&self.agent)
            && breaker.generation == self.generation
            && let Phase::HalfOpen { in_flight, .. } = &mut breaker.phase
        {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

impl BreakerBoard {
    pub fn new(settings: BreakerSettings, bus: EventBus) -> Self {
        Self {
            inner: Arc::new(BoardInner {
                settings,
                bus,
                breakers: Mutex::new(HashMap::new()),
                opened: Arc::new(Notify::new()),
            }),
        }
    }

    /// Admit a call to `agent`, or say why not and how long until probes are allowed.
    pub fn try_acquire(&self, agent: &AgentId) -> Result<CallPermit, BreakerRefusal> {
        let inner = &self.inner;
        let mut breakers = inner.lock();
        let breaker = inner.breaker(&mut breakers, agent);
        let now = Instant::now();
        breaker.advance(agent, now, &inner.bus);
        let probe = match &mut breaker.phase {
            Phase::Closed => false,
            Phase::Open { half_open_at } => {
                return Err(BreakerRefusal::Open {
                    agent: agent.clone(),
                    failures: breaker.consecutive_failures,
                    half_open_in: half_open_at.saturating_duration_since(now),
                    last_error: breaker.last_error.clone(),
                });
            }
            Phase::HalfOpen { in_flight, successes } => {
                let probes = breaker.limits.half_open_probes;
                if *in_flight + *successes >= probes {
                    return Err(BreakerRefusal::ProbesBusy { agent: agent.clone(), probes });
                }
                *in_flight += 1;
                true
            }
        };
        Ok(CallPermit {
            board: Arc::clone(inner),
            agent: agent.clone(),
            generation: breaker.generation,
            probe,
            settled: false,
        })
    }

    /// The call succeeded. In half-open, the last of the allowed probes closes the breaker.
    pub fn record_success(&self, permit: CallPermit, duration: Duration) {
        Self::settle(permit, duration, None);
    }

    /// The call failed. Reaching the threshold, or any failed probe, opens the breaker.
    pub fn record_failure(&self, permit: CallPermit, error: &str, duration: Duration) {
        Self::settle(permit, duration, Some(error));
    }

    fn settle(mut permit: CallPermit, duration: Duration, error: Option<&str>) {
        permit.settled = true;
        // The permit's own board, so a permit can never touch a breaker it did not come from.
        let inner = Arc::clone(&permit.board);
        let mut breakers = inner.lock();
        let agent = &permit.agent;
        let breaker = inner.breaker(&mut breakers, agent);
        breaker.metrics.record(error.is_some(), duration);
        if let Some(error) = error {
            breaker.last_error = Some(error.to_owned());
        }
        if breaker.generation != permit.generation {
            return;
        }
        let now = Instant::now();
        let bus = &inner.bus;
        match (&mut breaker.phase, error) {
            (Phase::Closed, None) => breaker.consecutive_failures = 0,
            (Phase::Closed, Some(error)) => {
                breaker.consecutive_failures += 1;
                if breaker.consecutive_failures >= breaker.limits.failure_threshold {
                    breaker.open(agent, now, bus, error.to_owned());
                    inner.opened.notify_one();
                }
            }
            (Phase::HalfOpen { in_flight, successes }, None) => {
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= breaker.limits.half_open_probes {
                    let reason = format!("{successes} probe calls succeeded");
                    breaker.close(agent, bus, reason);
                }
            }
            (Phase::HalfOpen { .. }, Some(error)) => {
                breaker.consecutive_failures += 1;
                breaker.open(agent, now, bus, format!("probe failed: {error}"));
                inner.opened.notify_one();
            }
            // Opening bumps the generation, so no permit of this generation exists.
            (Phase::Open { .. }, _) => {}
        }
    }

    /// Close the breaker and clear its failure count (an operator's decision).
    pub fn reset(&self, agent: &AgentId, by: &str) {
        let inner = &self.inner;
        let mut breakers = inner.lock();
        let breaker = inner.breaker(&mut breakers, agent);
        if matches!(breaker.phase, Phase::Closed) {
            breaker.consecutive_failures = 0;
        } else {
            breaker.close(agent, &inner.bus, format!("reset by {by}"));
        }
    }

    /// Open the breaker now, e.g. while a backend is known to be down. It goes half-open
    /// after the recovery timeout like any open breaker.
    pub fn force_open(&self, agent: &AgentId, by: &str) {
        let inner = &self.inner;
        let mut breakers = inner.lock();
        let breaker = inner.breaker(&mut breakers, agent);
        breaker.open(agent, Instant::now(), &inner.bus, format!("opened by {by}"));
        inner.opened.notify_one();
    }

    /// Move every open breaker whose recovery timeout has passed to half-open, publishing the
    /// events. Returns how many changed.
    pub fn tick(&self) -> usize {
        let inner = &self.inner;
        let now = Instant::now();
        let mut breakers = inner.lock();
        let mut changed = 0;
        for (agent, breaker) in breakers.iter_mut() {
            changed += usize::from(breaker.advance(agent, now, &inner.bus));
        }
        changed
    }

    /// Time until the next open breaker goes half-open; `None` when none is open.
    pub fn next_half_open_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.inner
            .lock()
            .values()
            .filter_map(|breaker| match breaker.phase {
                Phase::Open { half_open_at } => Some(half_open_at.saturating_duration_since(now)),
                _ => None,
            })
            .min()
    }

    /// Keep half-open transitions (and their events) on time even when no call comes: sleep
    /// until the earliest recovery, woken early when another breaker opens. The task ends by
    /// itself once every clone of the board is dropped.
    pub fn spawn_ticker(&self) -> JoinHandle<()> {
        let board: Weak<BoardInner> = Arc::downgrade(&self.inner);
        let opened = Arc::clone(&self.inner.opened);
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(inner) = board.upgrade() else { return };
                    let board = BreakerBoard { inner };
                    board.tick();
                    board
                        .next_half_open_in()
                        .map_or(TICKER_IDLE_CHECK, |d| d.min(TICKER_IDLE_CHECK))
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = opened.notified() => {}
                }
            }
        })
    }

    /// Every breaker known so far, by agent name, with due half-open transitions applied.
    pub fn snapshot(&self) -> Vec<BreakerView> {
        let inner = &self.inner;
        let now = Instant::now();
        let mut breakers = inner.lock();
        let mut views: Vec<BreakerView> = breakers
            .iter_mut()
            .map(|(agent, breaker)| {
                breaker.advance(agent, now, &inner.bus);
                breaker.view(agent, now)
            })
            .collect();
        views.sort_unstable_by(|a, b| a.agent.cmp(&b.agent));
        views
    }

    /// The view of one agent's breaker (a closed, untouched one if it never made a call).
    pub fn view(&self, agent: &AgentId) -> BreakerView {
        let inner = &self.inner;
        let now = Instant::now();
        let mut breakers = inner.lock();
        let breaker = inner.breaker(&mut breakers, agent);
        breaker.advance(agent, now, &inner.bus);
        breaker.view(agent, now)
    }

    /// Events that rebuild the breakers' picture for a late subscriber: `BreakerOpened` for
    /// each open breaker (with `recovery_ms` set to the time still left, so the event time
    /// plus `recovery_ms` is when it goes half-open) and `BreakerHalfOpened` for each
    /// half-open one. Closed breakers need no event.
    pub fn backlog_events(&self) -> Vec<Event> {
        self.snapshot()
            .into_iter()
            .filter_map(|view| match view.state {
                BreakerState::Closed => None,
                BreakerState::Open => Some(Event::BreakerOpened {
                    failures: view.consecutive_failures,
                    threshold: view.limits.failure_threshold,
                    recovery_ms: view.half_open_in.map_or(0, millis),
                    last_error: view.open_reason.unwrap_or_default(),
                    agent: view.agent,
                }),
                BreakerState::HalfOpen => Some(Event::BreakerHalfOpened {
                    agent: view.agent,
                    probes: view.limits.half_open_probes,
                }),
            })
            .collect()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
