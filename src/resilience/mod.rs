//! Resilience: a circuit breaker per agent type, the delay between task attempts, and the
//! limits on what agents may use (rate limits, budgets).

mod backoff;
mod breaker;
mod error;
mod health;
pub mod limits;

pub use backoff::retry_delay;
pub use breaker::{BreakerBoard, BreakerLimits, BreakerState, BreakerView, CallPermit};
pub use error::BreakerRefusal;
pub use health::{
    Alert, AlertSeverity, CONSECUTIVE_FAILURES_WARNING, CallMetrics, ERROR_RATE_CRITICAL, Health,
    RECENT_WINDOW, SLOW_MEAN_EXECUTION, assess,
};
