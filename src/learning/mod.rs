//! Learning from outcomes: what the finished attempts in the run store say about each agent.
//!
//! - **Success rate**: each outcome counts with weight `0.5^(age / half_life)`, so last
//!   week's attempts count half as much as today's (`limits.learning_half_life`, default 7
//!   days). Outcomes older than [`HORIZON_HALF_LIVES`] half-lives (weight below 1/256) are
//!   not read. An agent needs `limits.learning_min_outcomes` recent outcomes (default 5)
//!   before its rate is used: two lucky attempts are not a track record.
//! - **Selection** adds `rate × 2.0` ([`crate::agents::selector::LEARNING_BOOST_FACTOR`]) to
//!   agents whose text matched the task.
//! - **`timeout: auto`**: twice the mean duration of the agent's last [`TIMEOUT_SAMPLES`]
//!   successful attempts (the reference adaptive orchestrator), clamped to
//!   `limits.auto_timeout_min..=auto_timeout_max`; without enough history,
//!   `limits.task_timeout`.
//! - **Simulated attempts** are neither recorded nor learned from unless
//!   `limits.learn_from_sim` is true: a simulated success says nothing about a real agent.
//!   Those recorded while it was on are set aside again when it is turned off.

mod stats;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use stats::{AgentStats, PoolTotals, Stats, WordCount};

use crate::agents::selector::{LEARNING_BOOST_FACTOR, LearnedRate};
use crate::config::Limits;
use crate::ids::AgentId;
use crate::store::{Outcome, OutcomeSample, RUNS_FILE, RunStore, StoreError};

/// Outcomes older than this many half-lives are not read.
pub const HORIZON_HALF_LIVES: u32 = 8;

/// How many of an agent's latest successful attempts `timeout: auto` averages.
pub const TIMEOUT_SAMPLES: usize = 20;

/// `timeout: auto` is this many times the mean duration.
pub const AUTO_TIMEOUT_FACTOR: u32 = 2;

/// The learning settings of `limits` in `flightdeck.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LearningSettings {
    #[serde(rename = "half_life_ms", serialize_with = "as_ms")]
    pub half_life: Duration,
    pub min_outcomes: u32,
    pub from_sim: bool,
}

impl From<&Limits> for LearningSettings {
    fn from(limits: &Limits) -> Self {
        Self {
            half_life: limits.learning_half_life,
            min_outcomes: limits.learning_min_outcomes,
            from_sim: limits.learn_from_sim,
        }
    }
}

impl Default for LearningSettings {
    fn default() -> Self {
        Self::from(&Limits::default())
    }
}

impl LearningSettings {
    /// The oldest finish time read at `now_ms`.
    pub fn horizon_ms(&self, now_ms: u64) -> u64 {
        let span = self.half_life.saturating_mul(HORIZON_HALF_LIVES).as_millis();
        now_ms.saturating_sub(u64::try_from(span).unwrap_or(u64::MAX))
    }

    /// Whether an outcome is learned from.
    pub fn learns(&self, outcome: &Outcome) -> bool {
        !outcome.simulated || self.from_sim
    }

    fn learns_sample(&self, sample: &OutcomeSample) -> bool {
        !sample.simulated || self.from_sim
    }

    /// The weight of an outcome that finished at `finished_ms`, seen at `now_ms`.
    pub fn weight(&self, finished_ms: u64, now_ms: u64) -> f64 {
        let age = now_ms.saturating_sub(finished_ms) as f64;
        let half_life = self.half_life.as_millis().max(1) as f64;
        0.5_f64.powf(age / half_life)
    }
}

/// What the recent outcomes say about one agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    /// Recent outcomes (within the horizon) and how many succeeded.
    pub attempts: u32,
    pub succeeded: u32,
    /// The time-decayed success rate, 0..1.
    pub rate: f64,
    /// Durations of the latest successful attempts, newest last (at most
    /// [`TIMEOUT_SAMPLES`]).
    #[serde(skip)]
    recent_successes_ms: Vec<u64>,
}

impl AgentRecord {
    /// Mean duration of the latest successful attempts, if any.
    pub fn mean_success_ms(&self) -> Option<u64> {
        let count = self.recent_successes_ms.len() as u64;
        (count > 0).then(|| self.recent_successes_ms.iter().sum::<u64>() / count)
    }

    /// The boost this record adds to a matching agent's score.
    pub fn boost(&self) -> f64 {
        self.rate * LEARNING_BOOST_FACTOR
    }
}

/// How `timeout: auto` was decided for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoTimeout {
    /// Mean duration of the agent's latest successful attempts; `None` without enough history.
    pub mean_ms: Option<u64>,
    /// How many successful attempts the mean is of.
    pub samples: usize,
    /// The doubled mean was outside `auto_timeout_min..=auto_timeout_max`.
    pub clamped: bool,
}

impl AutoTimeout {
    /// For `plan`: `auto: 2 × mean 42s of 12 attempts` or why the default was used.
    pub fn describe(&self) -> String {
        match self.mean_ms {
            Some(mean) => {
                let mean = crate::words::duration(Duration::from_millis(mean));
                let clamped = if self.clamped { ", clamped to the limits" } else { "" };
                format!(
                    "auto: {AUTO_TIMEOUT_FACTOR} × mean {mean} of {} attempts{clamped}",
                    self.samples
                )
            }
            None => "auto: no history yet, limits.task_timeout".to_owned(),
        }
    }
}

/// The learned state of every agent with recent outcomes.
#[derive(Debug, Clone, Default)]
pub struct History {
    settings: LearningSettings,
    agents: HashMap<AgentId, AgentRecord>,
}

impl History {
    /// No history: nothing is boosted, `timeout: auto` is the default timeout.
    pub fn empty(settings: LearningSettings) -> Self {
        Self { settings, agents: HashMap::new() }
    }

    /// Fold outcomes (any order) as seen at `now_ms`; outcomes past the horizon and
    /// simulated ones (unless `from_sim`) are left out.
    pub fn from_outcomes(outcomes: &[Outcome], settings: LearningSettings, now_ms: u64) -> Self {
        let samples: Vec<OutcomeSample> = outcomes.iter().map(OutcomeSample::from).collect();
        Self::from_samples(&samples, settings, now_ms)
    }

    /// [`History::from_outcomes`] from the store's samples, which leave out the words.
    pub fn from_samples(
        outcomes: &[OutcomeSample],
        settings: LearningSettings,
        now_ms: u64,
    ) -> Self {
        let horizon = settings.horizon_ms(now_ms);
        let mut sorted: Vec<&OutcomeSample> = outcomes
            .iter()
            .filter(|o| settings.learns_sample(o) && o.finished_ms >= horizon)
            .collect();
        sorted.sort_by_key(|o| o.finished_ms);
        // Summed weights of all and of the successful outcomes, per agent.
        let mut sums: HashMap<&AgentId, (f64, f64, AgentRecord)> = HashMap::new();
        for outcome in sorted {
            let weight = settings.weight(outcome.finished_ms, now_ms);
            let (total, good, record) = sums.entry(&outcome.agent).or_insert_with(|| {
                let record = AgentRecord {
                    attempts: 0,
                    succeeded: 0,
                    rate: 0.0,
                    recent_successes_ms: Vec::new(),
                };
                (0.0, 0.0, record)
            });
            *total += weight;
            record.attempts += 1;
            if outcome.success {
                *good += weight;
                record.succeeded += 1;
                record.recent_successes_ms.push(outcome.duration_ms);
                if record.recent_successes_ms.len() > TIMEOUT_SAMPLES {
                    record.recent_successes_ms.remove(0);
                }
            }
        }
        let agents = sums
            .into_iter()
            .map(|(agent, (total, good, mut record))| {
                record.rate = if total > 0.0 { good / total } else { 0.0 };
                (agent.clone(), record)
            })
            .collect();
        Self { settings, agents }
    }

    /// Read the recent outcomes from an open store.
    pub fn load(
        store: &RunStore,
        settings: LearningSettings,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let samples = store.outcome_samples_since(settings.horizon_ms(now_ms))?;
        Ok(Self::from_samples(&samples, settings, now_ms))
    }

    /// Read the recent outcomes from `<data_dir>/runs.db`; no history when there is no store
    /// yet (planning never creates one).
    pub fn load_from_dir(
        data_dir: &Path,
        settings: LearningSettings,
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let path = data_dir.join(RUNS_FILE);
        if !path.exists() {
            return Ok(Self::empty(settings));
        }
        Self::load(&RunStore::open_read_only(path)?, settings, now_ms)
    }

    pub fn settings(&self) -> LearningSettings {
        self.settings
    }

    /// The agent's record, whether or not it has enough outcomes to be used.
    pub fn record(&self, agent: &AgentId) -> Option<&AgentRecord> {
        self.agents.get(agent)
    }

    /// The agent's record when it has at least `min_outcomes` recent outcomes.
    pub fn learned(&self, agent: &AgentId) -> Option<&AgentRecord> {
        self.agents.get(agent).filter(|r| r.attempts >= self.settings.min_outcomes.max(1))
    }

    /// The success rate selection uses, with the counts behind it.
    pub fn success_rate(&self, agent: &AgentId) -> Option<LearnedRate> {
        self.learned(agent).map(|r| LearnedRate {
            rate: r.rate,
            succeeded: r.succeeded,
            attempts: r.attempts,
        })
    }

    /// `timeout: auto` for a task of `agent`: the timeout and how it was found.
    pub fn auto_timeout(&self, agent: &AgentId, limits: &Limits) -> (Duration, AutoTimeout) {
        let samples = self.agents.get(agent).map_or(0, |r| r.recent_successes_ms.len());
        let enough = samples >= self.settings.min_outcomes.max(1) as usize;
        let mean = self.agents.get(agent).and_then(AgentRecord::mean_success_ms).filter(|_| enough);
        let Some(mean_ms) = mean else {
            return (limits.task_timeout, AutoTimeout { mean_ms: None, samples, clamped: false });
        };
        let doubled = Duration::from_millis(mean_ms).saturating_mul(AUTO_TIMEOUT_FACTOR);
        let timeout = doubled.clamp(limits.auto_timeout_min, limits.auto_timeout_max);
        (timeout, AutoTimeout { mean_ms: Some(mean_ms), samples, clamped: timeout != doubled })
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use crate::ids::{RunId, TaskId};

    const DAY_MS: u64 = 24 * 3600 * 1000;
    const NOW: u64 = 100 * DAY_MS;

    fn outcome(agent: &str, success: bool, days_ago: u64, duration_ms: u64) -> Outcome {
        Outcome {
            agent: AgentId::new(agent),
            words: vec!["api".into()],
            success,
            duration_ms,
            finished_ms: NOW - days_ago * DAY_MS,
            simulated: false,
            backend: "cli".into(),
            run_id: RunId::new("r"),
            task: TaskId::new("t"),
            attempt: 1,
        }
    }

    #[test]
    fn a_week_old_outcome_counts_half() {
        let settings = LearningSettings::default();
        assert_eq!(settings.weight(NOW, NOW), 1.0);
        assert!((settings.weight(NOW - 7 * DAY_MS, NOW) - 0.5).abs() < 1e-12);
        // One failure today, one success a week ago: 0.5 / 1.5.
        let mut settings = settings;
        settings.min_outcomes = 1;
        let history = History::from_outcomes(
            &[outcome("a", true, 7, 10), outcome("a", false, 0, 10)],
            settings,
            NOW,
        );
        let rate = history.success_rate(&AgentId::new("a")).unwrap();
        assert!((rate.rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((rate.succeeded, rate.attempts), (1, 2));
    }

    #[test]
    fn too_few_outcomes_are_not_used() {
        let outcomes: Vec<Outcome> = (0..4).map(|d| outcome("a", true, d, 10)).collect();
        let history = History::from_outcomes(&outcomes, LearningSettings::default(), NOW);
        assert!(history.success_rate(&AgentId::new("a")).is_none());
        assert_eq!(history.record(&AgentId::new("a")).unwrap().attempts, 4);
    }

    #[test]
    fn outcomes_past_the_horizon_are_forgotten() {
        let outcomes: Vec<Outcome> = (0..6).map(|_| outcome("a", true, 57, 10)).collect();
        let history = History::from_outcomes(&outcomes, LearningSettings::default(), NOW);
        assert!(history.record(&AgentId::new("a")).is_none());
    }

    #[test]
    fn simulated_outcomes_are_learned_only_when_asked() {
        let outcomes: Vec<Outcome> =
            (0..6).map(|d| Outcome { simulated: true, ..outcome("a", true, d, 10) }).collect();
        let settings = LearningSettings::default();
        assert!(
            History::from_outcomes(&outcomes, settings, NOW).record(&AgentId::new("a")).is_none()
        );
        let from_sim = LearningSettings { from_sim: true, ..settings };
        let history = History::from_outcomes(&outcomes, from_sim, NOW);
        assert_eq!(history.success_rate(&AgentId::new("a")).unwrap().rate, 1.0);
    }

    #[test]
    fn auto_timeout_is_twice_the_recent_mean_within_the_limits() {
        let limits = Limits::default();
        let agent = AgentId::new("a");
        // 25 successes: the oldest 5 (60 s) fall out of the last 20 (30 s each).
        let mut outcomes: Vec<Outcome> = (0..5).map(|_| outcome("a", true, 3, 60_000)).collect();
        outcomes.extend((0..20).map(|_| outcome("a", true, 1, 30_000)));
        outcomes.push(outcome("a", false, 0, 900_000));
        let history = History::from_outcomes(&outcomes, LearningSettings::default(), NOW);
        let (timeout, why) = history.auto_timeout(&agent, &limits);
        assert_eq!(timeout, Duration::from_secs(60));
        assert_eq!(why, AutoTimeout { mean_ms: Some(30_000), samples: 20, clamped: false });

        let quick: Vec<Outcome> = (0..5).map(|_| outcome("a", true, 1, 100)).collect();
        let history = History::from_outcomes(&quick, LearningSettings::default(), NOW);
        let (timeout, why) = history.auto_timeout(&agent, &limits);
        assert_eq!(timeout, limits.auto_timeout_min);
        assert!(why.clamped);

        let (timeout, why) =
            History::empty(LearningSettings::default()).auto_timeout(&agent, &limits);
        assert_eq!(timeout, limits.task_timeout);
        assert_eq!(why.mean_ms, None);
    }
}
