//! Limits on what agents may use: per-backend rate limits (`rate_limits` in flightdeck.yaml)
//! and token and cost budgets of tasks and runs.
//!
//! Requests per minute go through `governor` (GCRA, one atomic per check, no lock). Tokens per
//! minute cannot: how many tokens an attempt uses is only known once it ends, and governor
//! asks for the count up front (and refuses a count above its burst). So tokens go through
//! [`TokenWindow`], a token bucket that may run into debt: an attempt may start while the
//! bucket is above zero, and what it reports afterwards is taken out, possibly below zero;
//! the next attempt waits until the refill (the limit per minute, spread evenly) has paid the
//! debt back. A backend without limits costs one map lookup per attempt; no limit configured
//! at all costs one `is_empty`.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock as _};

use crate::config::{Budget, RateLimitSettings};
use crate::event::{BudgetMeasure, TokenUsage};

/// Which limit holds an attempt back.
pub const REQUESTS_PER_MINUTE: &str = "requests_per_minute";
pub const TOKENS_PER_MINUTE: &str = "tokens_per_minute";

/// Budgets warn once spend reaches this share of them.
pub const WARNING_SHARE: f64 = 0.8;

/// Requests let through at once: one second's worth (at least one). Providers enforce a
/// per-minute limit over shorter windows too (`OpenAI`: 60,000 RPM may be enforced as
/// 1,000 per second), so a minute's whole quota at once would be refused anyway.
fn burst_of(per_minute: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new(per_minute.get() / 60).unwrap_or(NonZeroU32::MIN)
}

/// The rate limits of every backend, shared by every run of the engine.
#[derive(Default)]
pub struct RateLimits {
    backends: HashMap<String, BackendLimits>,
}

struct BackendLimits {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<TokenWindow>,
}

/// An attempt may not start yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MustWait {
    /// [`REQUESTS_PER_MINUTE`] or [`TOKENS_PER_MINUTE`].
    pub limit: &'static str,
    pub wait: Duration,
}

impl RateLimits {
    pub fn new(settings: &BTreeMap<String, RateLimitSettings>) -> Self {
        let backends = settings
            .iter()
            .filter(|(_, limit)| {
                limit.requests_per_minute.is_some() || limit.tokens_per_minute.is_some()
            })
            .map(|(backend, limit)| {
                let requests = limit.requests_per_minute.and_then(NonZeroU32::new).map(|rpm| {
                    RateLimiter::direct(Quota::per_minute(rpm).allow_burst(burst_of(rpm)))
                });
                let tokens = limit.tokens_per_minute.filter(|&tpm| tpm > 0).map(TokenWindow::new);
                (backend.clone(), BackendLimits { requests, tokens })
            })
            .collect();
        Self { backends }
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Start one attempt on `backend` now, or say how long to wait. The token window is only
    /// looked at; a request is taken from the request limit only when the attempt may start.
    pub fn try_start(&self, backend: &str) -> Result<(), MustWait> {
        if self.backends.is_empty() {
            return Ok(());
        }
        let Some(limits) = self.backends.get(backend) else { return Ok(()) };
        if let Some(tokens) = &limits.tokens
            && let Some(wait) = tokens.wait_at(Instant::now())
        {
            return Err(MustWait { limit: TOKENS_PER_MINUTE, wait });
        }
        if let Some(requests) = &limits.requests
            && let Err(not_until) = requests.check()
        {
            let now = governor::clock::DefaultClock::default().now();
            return Err(MustWait {
                limit: REQUESTS_PER_MINUTE,
                wait: not_until.wait_time_from(now),
            });
        }
        Ok(())
    }

    /// Count the tokens an attempt on `backend` reported.
    pub fn spent(&self, backend: &str, tokens: u64) {
        if let Some(window) = self.backends.get(backend).and_then(|l| l.tokens.as_ref()) {
            window.take_at(tokens, Instant::now());
        }
    }
}

/// A token bucket of `per_minute` tokens, refilled continuously, that may run into debt.
pub struct TokenWindow {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenWindow {
    /// A full bucket.
    pub fn new(per_minute: u64) -> Self {
        let per_minute = per_minute as f64;
        Self { per_minute, state: Mutex::new((per_minute, Instant::now())) }
    }

    fn level_at(&self, state: &mut (f64, Instant), now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.per_minute / 60.0).min(self.per_minute);
        state.1 = now.max(state.1);
        state.0
    }

    /// How long until an attempt may start at `now`: `None` while the bucket is above zero.
    pub fn wait_at(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let level = self.level_at(&mut state, now);
        if level > 0.0 {
            return None;
        }
        // Until the debt is paid and one token more is in.
        let seconds = (1.0 - level) * 60.0 / self.per_minute;
        Some(Duration::from_secs_f64(seconds.min(crate::config::MAX_DURATION.as_secs_f64())))
    }

    /// Take `tokens` out at `now`.
    pub fn take_at(&self, tokens: u64, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.level_at(&mut state, now);
        // At most a day of debt, so one absurd report cannot stop the backend for ever.
        state.0 = (state.0 - tokens as f64).max(-self.per_minute * 60.0 * 24.0);
    }
}

/// What a task or a run has spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub tokens: u64,
    pub cost_usd: f64,
}

impl Spend {
    /// What one attempt spent: its tokens (input plus output) and its cost, the backend's own
    /// or else from `price`.
    pub fn of_attempt(
        usage: Option<&TokenUsage>,
        cost_usd: Option<f64>,
        price: Option<&crate::config::Price>,
    ) -> (u64, Option<f64>) {
        let tokens = usage.map_or(0, |u| u.input_tokens.saturating_add(u.output_tokens));
        let cost = cost_usd.or_else(|| Some(price?.cost(usage?)));
        (tokens, cost.filter(|c| c.is_finite() && *c >= 0.0))
    }
}

/// One crossing of a mark: the measure, what is spent and the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    pub measure: BudgetMeasure,
    pub spent: f64,
    pub limit: f64,
}

/// A budget and what was spent against it.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    budget: Budget,
    spent: Spend,
    /// Warned at 80% already, per measure (tokens, cost).
    warned: [bool; 2],
}

impl Meter {
    pub fn new(budget: Budget) -> Self {
        Self { budget, spent: Spend::default(), warned: [false; 2] }
    }

    pub fn is_unlimited(&self) -> bool {
        self.budget.is_unlimited()
    }

    pub fn spent(&self) -> Spend {
        self.spent
    }

    fn measures(&self) -> [(BudgetMeasure, f64, Option<f64>); 2] {
        [
            (BudgetMeasure::Tokens, self.spent.tokens as f64, self.budget.tokens.map(|t| t as f64)),
            (BudgetMeasure::CostUsd, self.spent.cost_usd, self.budget.cost_usd),
        ]
    }

    /// Add one attempt's spend; returns the 80% marks crossed now for the first time.
    pub fn add(&mut self, tokens: u64, cost_usd: Option<f64>) -> Vec<Crossing> {
        self.spent.tokens = self.spent.tokens.saturating_add(tokens);
        self.spent.cost_usd += cost_usd.unwrap_or(0.0);
        let mut crossed = Vec::new();
        for (i, (measure, spent, limit)) in self.measures().into_iter().enumerate() {
            if let Some(limit) = limit
                && !self.warned[i]
                && spent >= limit * WARNING_SHARE
            {
                self.warned[i] = true;
                crossed.push(Crossing { measure, spent, limit });
            }
        }
        crossed
    }

    /// The first budget reached, if any.
    pub fn exceeded(&self) -> Option<Crossing> {
        self.measures().into_iter().find_map(|(measure, spent, limit)| {
            limit.filter(|&limit| spent >= limit).map(|limit| Crossing { measure, spent, limit })
        })
    }

    /// A reviewer raised the budget: every reached limit grows by its first size again (as
    /// often as needed to be above the spend), and warns again at 80% of the new limit.
    pub fn raise(&mut self, original: Budget) {
        if let (Some(tokens), Some(step)) = (self.budget.tokens, original.tokens) {
            let mut limit = tokens;
            while limit <= self.spent.tokens {
                limit = limit.saturating_add(step.max(1));
            }
            if limit != tokens {
                self.budget.tokens = Some(limit);
                self.warned[0] = false;
            }
        }
        if let (Some(cost), Some(step)) = (self.budget.cost_usd, original.cost_usd) {
            let step = step.max(f64::EPSILON);
            let mut limit = cost;
            while limit <= self.spent.cost_usd {
                limit += step;
            }
            if (limit - cost).abs() > f64::EPSILON {
                self.budget.cost_usd = Some(limit);
                self.warned[1] = false;
            }
        }
    }
}

/// A budget reached, as the task's failure reason says it.
pub fn budget_reason(scope: &str, crossing: &Crossing) -> String {
    format!(
        "budget reached: the {scope} spent {} of its {} budget (raise `budget` or set `on_budget: approve`)",
        crossing.measure.amount(crossing.spent),
        crossing.measure.amount(crossing.limit)
    )
}

/// The `MeterLock` of a run: locked once per attempt that reported spend.
pub type SharedMeter = Mutex<Meter>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_window_lets_an_attempt_start_while_above_zero_and_waits_out_the_debt() {
        let window = TokenWindow::new(600); // 10 tokens a second
        let start = Instant::now();
        assert_eq!(window.wait_at(start), None);
        window.take_at(1_000, start); // 400 in debt
        let wait = window.wait_at(start).expect("in debt");
        assert!((40.0..40.2).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(window.wait_at(start + Duration::from_secs(30)).is_some());
        assert_eq!(window.wait_at(start + Duration::from_secs(41)), None);
        // Never more than full.
        assert_eq!(window.wait_at(start + Duration::from_secs(3600)), None);
        window.take_at(600, start + Duration::from_secs(3600));
        assert!(window.wait_at(start + Duration::from_secs(3600)).is_some());
    }

    #[test]
    fn requests_per_minute_spreads_requests_and_names_the_wait() {
        let mut settings = BTreeMap::new();
        settings.insert(
            "api".to_owned(),
            RateLimitSettings { requests_per_minute: Some(2), tokens_per_minute: None },
        );
        let limits = RateLimits::new(&settings);
        assert_eq!(limits.try_start("other"), Ok(()));
        assert_eq!(limits.try_start("api"), Ok(()));
        let refused = limits.try_start("api").expect_err("spread evenly: one each 30 s");
        assert_eq!(refused.limit, REQUESTS_PER_MINUTE);
        assert!(refused.wait > Duration::from_secs(25) && refused.wait <= Duration::from_secs(30));
        let per_second = NonZeroU32::new(600).expect("600");
        assert_eq!(burst_of(per_second).get(), 10);
        assert!(RateLimits::new(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn meter_warns_once_at_eighty_percent_and_reaches_at_the_limit() {
        let mut meter = Meter::new(Budget { tokens: Some(1_000), cost_usd: Some(1.0) });
        assert!(meter.add(700, Some(0.1)).is_empty());
        let crossed = meter.add(100, Some(0.1));
        assert_eq!(crossed.len(), 1);
        assert_eq!(crossed[0].measure, BudgetMeasure::Tokens);
        assert!(meter.add(100, Some(0.1)).is_empty(), "warned once");
        assert_eq!(meter.exceeded(), None);
        meter.add(100, None);
        let reached = meter.exceeded().expect("1000 of 1000");
        assert_eq!(
            (reached.measure, reached.spent, reached.limit),
            (BudgetMeasure::Tokens, 1000.0, 1000.0)
        );
        meter.raise(Budget { tokens: Some(1_000), cost_usd: Some(1.0) });
        assert_eq!(meter.exceeded(), None);
        assert!(!meter.add(700, None).is_empty(), "warns again at 80% of 2000");
    }

    #[test]
    fn attempt_cost_is_the_backends_own_else_priced() {
        let usage =
            TokenUsage { input_tokens: 1_000_000, output_tokens: 500_000, ..TokenUsage::default() };
        let price = crate::config::Price { input_per_mtok: 3.0, output_per_mtok: 15.0 };
        assert_eq!(Spend::of_attempt(Some(&usage), None, Some(&price)), (1_500_000, Some(10.5)));
        assert_eq!(
            Spend::of_attempt(Some(&usage), Some(0.25), Some(&price)),
            (1_500_000, Some(0.25))
        );
        assert_eq!(Spend::of_attempt(Some(&usage), None, None), (1_500_000, None));
        assert_eq!(Spend::of_attempt(None, Some(0.02), None), (0, Some(0.02)));
    }
}
