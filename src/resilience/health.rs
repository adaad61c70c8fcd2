//! Call metrics of one agent and the health the alert rules derive from them.
//!
//! Rules from the reference documents: an error rate above 25 % is critical, 3 consecutive
//! failures are a warning, a mean execution above 30 s is informational. The error rate is
//! taken over the most recent calls (up to 64), so an agent that recovers also looks healthy
//! again; lifetime counts stay available for the totals.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Error rate above which an agent is unhealthy.
pub const ERROR_RATE_CRITICAL: f64 = 0.25;
/// Consecutive failures at which an agent is degraded.
pub const CONSECUTIVE_FAILURES_WARNING: u32 = 3;
/// Mean execution time above which an informational alert is raised.
pub const SLOW_MEAN_EXECUTION: Duration = Duration::from_secs(30);
/// How many recent calls the error rate looks at.
pub const RECENT_WINDOW: u32 = 64;

/// Overall health of an agent, worst rule wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// How much an alert matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Info,
    Warning,
    Critical,
}

/// One alert rule that currently fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: AlertSeverity,
    pub message: String,
}

/// Outcomes of recorded calls (a permit dropped without a record is not a call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMetrics {
    pub calls: u64,
    pub errors: u64,
    pub total_duration: Duration,
    /// Calls in the recent window (at most [`RECENT_WINDOW`]).
    pub recent_calls: u32,
    /// Failures among the recent calls.
    pub recent_errors: u32,
    /// Bit i is set when the i-th most recent call failed.
    #[serde(skip)]
    recent_failures: u64,
}

impl CallMetrics {
    /// Add one call's outcome (the console folds task events through this too).
    pub fn record(&mut self, failed: bool, duration: Duration) {
        self.calls += 1;
        self.errors += u64::from(failed);
        self.total_duration = self.total_duration.saturating_add(duration);
        self.recent_failures = (self.recent_failures << 1) | u64::from(failed);
        self.recent_calls = (self.recent_calls + 1).min(RECENT_WINDOW);
        self.recent_errors = self.recent_failures.count_ones();
    }

    /// Mean duration of recorded calls.
    pub fn mean_duration(&self) -> Option<Duration> {
        let calls = u32::try_from(self.calls).ok().filter(|&calls| calls > 0)?;
        Some(self.total_duration / calls)
    }

    /// Share of all recorded calls that succeeded, in 0..=1.
    pub fn success_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| (self.calls - self.errors) as f64 / self.calls as f64)
    }

    /// Share of recent calls that failed, in 0..=1.
    pub fn recent_error_rate(&self) -> Option<f64> {
        (self.recent_calls > 0)
            .then(|| f64::from(self.recent_errors) / f64::from(self.recent_calls))
    }
}

/// Apply the alert rules. `open` and `half_open` add to them: an open breaker makes the agent
/// unhealthy and a half-open one at least degraded, since neither takes normal traffic.
pub fn assess(
    metrics: &CallMetrics,
    consecutive_failures: u32,
    open: bool,
    half_open: bool,
) -> (Health, Vec<Alert>) {
    let mut health = Health::Healthy;
    let mut alerts = Vec::new();
    if let Some(rate) = metrics.recent_error_rate()
        && rate > ERROR_RATE_CRITICAL
    {
        health = Health::Unhealthy;
        alerts.push(Alert {
            severity: AlertSeverity::Critical,
            message: format!(
                "error rate {:.0}% over the last {} calls",
                rate * 100.0,
                metrics.recent_calls
            ),
        });
    }
    if consecutive_failures >= CONSECUTIVE_FAILURES_WARNING {
        health = health.max(Health::Degraded);
        alerts.push(Alert {
            severity: AlertSeverity::Warning,
            message: format!("{consecutive_failures} consecutive failures"),
        });
    }
    if let Some(mean) = metrics.mean_duration()
        && mean > SLOW_MEAN_EXECUTION
    {
        alerts.push(Alert {
            severity: AlertSeverity::Info,
            message: format!("mean execution {}s", mean.as_secs()),
        });
    }
    if open {
        health = Health::Unhealthy;
    } else if half_open {
        health = health.max(Health::Degraded);
    }
    (health, alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(outcomes: &[(bool, u64)]) -> CallMetrics {
        let mut metrics = CallMetrics::default();
        for &(failed, secs) in outcomes {
            metrics.record(failed, Duration::from_secs(secs));
        }
        metrics
    }

    #[test]
    fn no_calls_is_healthy() {
        let (health, alerts) = assess(&CallMetrics::default(), 0, false, false);
        assert_eq!((health, alerts.len()), (Health::Healthy, 0));
    }

    #[test]
    fn error_rate_above_a_quarter_is_critical() {
        let quarter = metrics(&[(true, 1), (false, 1), (false, 1), (false, 1)]);
        assert_eq!(assess(&quarter, 0, false, false).0, Health::Healthy);
        let above = metrics(&[(true, 1), (true, 1), (false, 1), (false, 1)]);
        let (health, alerts) = assess(&above, 0, false, false);
        assert_eq!(health, Health::Unhealthy);
        assert_eq!(alerts[0].severity, AlertSeverity::Critical);
        assert_eq!(alerts[0].message, "error rate 50% over the last 4 calls");
    }

    #[test]
    fn three_consecutive_failures_degrade() {
        let (health, alerts) = assess(&CallMetrics::default(), 3, false, false);
        assert_eq!(health, Health::Degraded);
        assert_eq!(alerts[0].severity, AlertSeverity::Warning);
    }

    #[test]
    fn slow_mean_is_informational() {
        let slow = metrics(&[(false, 20), (false, 50)]);
        let (health, alerts) = assess(&slow, 0, false, false);
        assert_eq!(health, Health::Healthy);
        assert_eq!(alerts[0].severity, AlertSeverity::Info);
        assert_eq!(slow.mean_duration(), Some(Duration::from_secs(35)));
        assert_eq!(slow.success_rate(), Some(1.0));
    }

    #[test]
    fn error_rate_forgets_old_calls() {
        let mut m = metrics(&[(true, 1); 10]);
        for _ in 0..RECENT_WINDOW {
            m.record(false, Duration::ZERO);
        }
        assert_eq!((m.recent_calls, m.recent_errors, m.errors), (RECENT_WINDOW, 0, 10));
        assert_eq!(assess(&m, 0, false, false).0, Health::Healthy);
    }

    #[test]
    fn open_breaker_is_unhealthy_and_half_open_degraded() {
        assert_eq!(assess(&CallMetrics::default(), 0, true, false).0, Health::Unhealthy);
        assert_eq!(assess(&CallMetrics::default(), 0, false, true).0, Health::Degraded);
    }
}
