//! The rehearsal backend: runs nothing, takes a plausible time and sometimes fails, always
//! the same way for the same seed, task and attempt, whatever order tasks are scheduled in.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::deadline::Deadline;
use super::{AnswerDetails, ExecError, ExecFuture, ExecOutcome, ExecRequest, Executor, OutputSink};
use crate::config::SimBackend;
use crate::event::OutputStream;
use crate::ids::TaskId;

/// What the simulation decided for one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimPlan {
    pub latency: Duration,
    pub fails: bool,
}

/// Pretends to run agents; every output and error it produces says so.
#[derive(Debug, Clone)]
pub struct SimExecutor {
    config: SimBackend,
}

impl SimExecutor {
    pub fn new(config: SimBackend) -> Self {
        Self { config }
    }

    /// The latency and outcome of one attempt. Derived from a hash of (seed, task, attempt)
    /// rather than a shared RNG stream, so concurrency cannot change what a task experiences,
    /// and from SHA-256 bytes rather than a library RNG, so upgrades cannot either.
    pub fn plan(&self, task: &TaskId, attempt: u32) -> SimPlan {
        let digest = Sha256::new()
            .chain_update(b"flightdeck-sim\0")
            .chain_update(self.config.seed.to_le_bytes())
            .chain_update(task.as_str().as_bytes())
            .chain_update([0])
            .chain_update(attempt.to_le_bytes())
            .finalize();
        let latency_draw = unit_interval(&digest[0..8]);
        let failure_draw = unit_interval(&digest[8..16]);
        let (min, max) = (self.config.latency_min, self.config.latency_max);
        let span = max.saturating_sub(min).mul_f64(latency_draw);
        // Whole milliseconds: tokio timers tick in milliseconds, so a plan stated in them is
        // exactly what a paused-clock test observes.
        let latency =
            Duration::from_millis(u64::try_from((min + span).as_millis()).unwrap_or(u64::MAX));
        SimPlan { latency, fails: failure_draw < self.config.failure_rate }
    }

    async fn run(
        &self,
        req: ExecRequest,
        sink: OutputSink,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let plan = self.plan(&req.task, req.attempt);
        let agent = &req.agent;
        // Progress lines simulate work over time; a zero-latency attempt has none to report
        // and creates no timer (the engine benchmark pushes 10,000 of them through here).
        if !plan.latency.is_zero() {
            sink(
                OutputStream::Stdout,
                format!("[sim] {agent} picked up task {} (attempt {})", req.task, req.attempt),
            );
            let deadline = Deadline::start(req.timeout);
            let half =
                Duration::from_millis(u64::try_from(plan.latency.as_millis() / 2).unwrap_or(0));
            deadline.bound(&cancel, tokio::time::sleep(half)).await?;
            sink(OutputStream::Stdout, format!("[sim] {agent} working: {}", first_line(&req)));
            deadline.bound(&cancel, tokio::time::sleep(plan.latency.saturating_sub(half))).await?;
        }
        if plan.fails {
            sink(OutputStream::Stderr, format!("[sim] {agent} failed (simulated)"));
            return Err(ExecError::Simulated(format!(
                "{agent} failed task {} on attempt {} (failure_rate {}, seed {})",
                req.task, req.attempt, self.config.failure_rate, self.config.seed
            )));
        }
        Ok(ExecOutcome {
            output: format!("[simulated] {agent} completed: {}", req.task_description),
            usage: None,
            dropped_bytes: 0,
            details: AnswerDetails::default(),
        })
    }
}

impl Executor for SimExecutor {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn is_simulated(&self) -> bool {
        true
    }

    fn execute(
        &self,
        req: ExecRequest,
        output: OutputSink,
        cancel: CancellationToken,
    ) -> ExecFuture<'_> {
        Box::pin(self.run(req, output, cancel))
    }
}

/// Eight bytes as a number in `[0, 1)` with 53 bits of precision.
fn unit_interval(bytes: &[u8]) -> f64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// The task's first line, shortened, for the "working" line.
fn first_line(req: &ExecRequest) -> String {
    const MAX_CHARS: usize = 80;
    let line = req.task_description.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}
