//! The one deadline of an attempt, shared by every await inside it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ExecError;

/// When an attempt must be over; built once at the start so retries and streaming all draw
/// on the same budget instead of each getting a fresh timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
}

/// Far enough to mean "never" without overflowing `Instant` arithmetic.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Deadline {
    pub(crate) fn start(timeout: Duration) -> Self {
        let now = Instant::now();
        let at = now.checked_add(timeout).unwrap_or_else(|| now + FAR_FUTURE);
        Self { at, timeout }
    }

    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    pub(crate) fn timed_out(&self) -> ExecError {
        ExecError::Timeout(self.timeout)
    }

    /// Runs `work` unless the token fires or the deadline passes first. Work that is ready at
    /// the very instant of the deadline still counts.
    pub(crate) async fn bound<F: Future>(
        &self,
        cancel: &CancellationToken,
        work: F,
    ) -> Result<F::Output, ExecError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ExecError::Cancelled),
            out = work => Ok(out),
            () = tokio::time::sleep_until(self.at) => Err(self.timed_out()),
        }
    }
}
