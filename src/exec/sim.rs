//! The rehearsal backend: runs nothing, takes a plausible time and sometimes fails, always
//! the same way for the same seed, task and attempt, whatever order tasks are scheduled in.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
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
        // Progress lines simulate work; a zero-latency attempt has none to report and
        // creates no timer (the engine benchmark pushes 10,000 of them through here).
        if !plan.latency.is_zero() {
            let began = Instant::now();
            let deadline = Deadline::start(req.timeout);
            sink(
                OutputStream::Stdout,
                format!("[sim] {agent} picked up task {} (attempt {})", req.task, req.attempt),
            );
            sink(OutputStream::Stdout, format!("[sim] {agent} working: {}", first_line(&req)));
            // One sleep to a deadline fixed at the start: the attempt takes its latency (or
            // its timeout), however long the lines above took, and rounds to the timer's
            // tick once rather than once per sleep.
            let finish = began + plan.latency;
            let too_slow = finish > deadline.at();
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ExecError::Cancelled),
                () = sleep_until_precisely(finish.min(deadline.at())) => {}
            }
            if too_slow {
                return Err(deadline.timed_out());
            }
        }
        if plan.fails {
            sink(OutputStream::Stderr, format!("[sim] {agent} failed (simulated)"));
            return Err(ExecError::Simulated(format!(
                "{agent} failed task {} on attempt {} (failure_rate {}, seed {})",
                req.task, req.attempt, self.config.failure_rate, self.config.seed
            )));
        }
        if let Some(panel) = req.context.get("panel") {
            return Ok(ExecOutcome {
                output: self.verdict(&req, panel),
                usage: None,
                dropped_bytes: 0,
                details: AnswerDetails::default(),
            });
        }
        Ok(ExecOutcome {
            output: format!("[simulated] {agent} completed: {}", req.task_description),
            usage: None,
            dropped_bytes: 0,
            details: AnswerDetails::default(),
        })
    }
}

impl SimExecutor {
    /// A draw in `[0, 1)` from the seed and `parts`, independent of scheduling order.
    fn draw(&self, parts: &[&str]) -> f64 {
        let mut hash = Sha256::new()
            .chain_update(b"flightdeck-sim-panel\0")
            .chain_update(self.config.seed.to_le_bytes());
        for part in parts {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        unit_interval(&hash.finalize()[0..8])
    }

    /// A panel answer ending with a JSON verdict, drawn from the options.
    ///
    /// A member takes the panel's common answer (drawn from run and task) with probability
    /// `agreement` (drawn from run, task and agent), else its own: the option as far from the
    /// common one as the member is from the panel's first member, so at `agreement: 0` a
    /// panel always disagrees. A third opinion picks one of the sides shown, drawn from the
    /// order they were shown in, so it may change its answer when the sides are swapped.
    /// Every simulated verdict has the same kind of evidence, so the evidence step never
    /// decides between simulated members.
    fn verdict(&self, req: &ExecRequest, panel: &serde_json::Value) -> String {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let list = |key: &str| -> Vec<String> {
            panel
                .get(key)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(text).collect())
                .unwrap_or_default()
        };
        let mut options = list("options");
        if options.len() < 2 {
            options =
                vec!["approach A".to_owned(), "approach B".to_owned(), "approach C".to_owned()];
        }
        let members = list("members");
        let agent = req.agent.as_str();
        let (run, task) = (req.run.as_str(), req.task.as_str());
        let n = options.len();
        let pick = |u: f64| ((u * n as f64) as usize).min(n - 1);
        let choice = if panel.get("role").and_then(|r| r.as_str()) == Some("third_opinion") {
            pick(self.draw(&[run, task, agent, &options.join("\u{1f}")]))
        } else {
            let common = pick(self.draw(&[run, task]));
            let index = members.iter().position(|m| m == agent).unwrap_or(0);
            if self.draw(&[run, task, agent]) < self.config.agreement {
                common
            } else {
                (common + index) % n
            }
        };
        let decision = &options[choice];
        let confidence =
            (50.0 + 50.0 * self.draw(&[run, task, agent, "confidence"])).round() / 100.0;
        let alternatives: Vec<String> = options
            .iter()
            .filter(|o| *o != decision)
            .map(|o| format!("{o}: not chosen in this rehearsal"))
            .collect();
        let verdict = serde_json::json!({
            "decision": decision,
            "rationale": format!("[simulated] {agent} weighed the options and prefers \"{decision}\""),
            "alternatives": alternatives,
            "tradeoffs": ["simulated: none measured"],
            "evidence": ["simulated: no real evidence"],
            "confidence": confidence,
        });
        format!("[simulated] {agent} answers the panel question.\n{verdict}")
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

/// tokio's timer tick.
const TICK: Duration = Duration::from_millis(1);
/// Taken off a deadline, it moves the deadline back to the tick at or before it.
const TICK_LESS_A_NANO: Duration = Duration::from_nanos(999_999);

/// Sleep until `at`, waking as soon after it as tokio's millisecond timer allows.
///
/// The timer fires on whole-millisecond ticks and rounds a deadline up to the next one, and
/// its driver parks for whole milliseconds counted from the tick it parks in, so a plain
/// `sleep_until(at)` wakes up to two ticks' fractions late: 10 ms attempts back to back took
/// 11 ms each. Asking for the tick at or before `at` instead makes the driver, parking in the
/// same tick as the attempt started, wake a whole number of milliseconds after that start,
/// i.e. at `at`. Should it wake early (it parked a tick later), the rest is slept plainly.
/// On a paused test clock instants sit on ticks and this is exact.
async fn sleep_until_precisely(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        if at.saturating_duration_since(now) > TICK {
            tokio::time::sleep_until(at - TICK_LESS_A_NANO).await;
        } else {
            tokio::time::sleep_until(at).await;
        }
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
