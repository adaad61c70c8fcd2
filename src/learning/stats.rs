//! `flightdeck agents stats`: the reference learning statistics (outcomes, agents tracked,
//! top keywords, per-agent success) over every learned outcome in the store, with the
//! decayed rate and boost that selection uses today.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{History, LearningSettings};
use crate::ids::AgentId;
use crate::store::Outcome;

/// How many words [`AgentStats::top_words`] and [`PoolTotals::top_words`] list.
pub const TOP_WORDS: usize = 5;

/// A task word and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WordCount {
    pub word: String,
    pub count: u32,
}

/// One agent's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStats {
    pub agent: AgentId,
    /// Every learned attempt, however old.
    pub attempts: u32,
    pub succeeded: u32,
    /// `succeeded / attempts`.
    pub success_rate: f64,
    pub mean_duration_ms: u64,
    /// The words of the tasks it succeeded on most.
    pub top_words: Vec<WordCount>,
    /// The time-decayed rate of its recent outcomes, when it has enough of them to be used,
    /// and the boost selection adds.
    pub learned_rate: Option<f64>,
    pub boost: Option<f64>,
    /// Milliseconds since the Unix epoch.
    pub last_ms: u64,
}

/// The pool's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolTotals {
    pub outcomes: u32,
    pub succeeded: u32,
    pub success_rate: f64,
    pub agents_tracked: usize,
    pub mean_duration_ms: u64,
    /// The words of all tasks attempted, most frequent first.
    pub top_words: Vec<WordCount>,
    /// Outcomes on simulation backends left out (`limits.learn_from_sim` is off).
    pub simulated_ignored: u32,
}

/// Everything `agents stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub settings: LearningSettings,
    /// Most attempts first, then by name.
    pub agents: Vec<AgentStats>,
    pub totals: PoolTotals,
}

#[derive(Default)]
struct Tally {
    attempts: u32,
    succeeded: u32,
    duration_ms: u64,
    words: HashMap<String, u32>,
    last_ms: u64,
}

impl Stats {
    /// Figures over `outcomes`, with the learned rates of `history`.
    pub fn of(outcomes: &[Outcome], history: &History) -> Self {
        let settings = history.settings();
        let mut simulated_ignored = 0;
        let mut per_agent: BTreeMap<&AgentId, Tally> = BTreeMap::new();
        let mut pool = Tally::default();
        for outcome in outcomes {
            if !settings.learns(outcome) {
                simulated_ignored += 1;
                continue;
            }
            let tally = per_agent.entry(&outcome.agent).or_default();
            for t in [&mut *tally, &mut pool] {
                t.attempts += 1;
                t.duration_ms += outcome.duration_ms;
                t.last_ms = t.last_ms.max(outcome.finished_ms);
            }
            for word in &outcome.words {
                *pool.words.entry(word.clone()).or_default() += 1;
            }
            if outcome.success {
                tally.succeeded += 1;
                pool.succeeded += 1;
                for word in &outcome.words {
                    *tally.words.entry(word.clone()).or_default() += 1;
                }
            }
        }
        let agents_tracked = per_agent.len();
        let mut agents: Vec<AgentStats> = per_agent
            .into_iter()
            .map(|(agent, tally)| {
                let learned = history.learned(agent);
                AgentStats {
                    agent: agent.clone(),
                    attempts: tally.attempts,
                    succeeded: tally.succeeded,
                    success_rate: ratio(tally.succeeded, tally.attempts),
                    mean_duration_ms: mean(tally.duration_ms, tally.attempts),
                    top_words: top_words(tally.words),
                    learned_rate: learned.map(|r| r.rate),
                    boost: learned.map(super::AgentRecord::boost),
                    last_ms: tally.last_ms,
                }
            })
            .collect();
        agents.sort_by(|a, b| b.attempts.cmp(&a.attempts).then_with(|| a.agent.cmp(&b.agent)));
        let totals = PoolTotals {
            outcomes: pool.attempts,
            succeeded: pool.succeeded,
            success_rate: ratio(pool.succeeded, pool.attempts),
            agents_tracked,
            mean_duration_ms: mean(pool.duration_ms, pool.attempts),
            top_words: top_words(pool.words),
            simulated_ignored,
        };
        Self { settings, agents, totals }
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 { 0.0 } else { f64::from(part) / f64::from(whole) }
}

fn mean(total: u64, count: u32) -> u64 {
    if count == 0 { 0 } else { total / u64::from(count) }
}

/// Most frequent first, ties in alphabetical order.
fn top_words(words: HashMap<String, u32>) -> Vec<WordCount> {
    let mut counted: Vec<WordCount> =
        words.into_iter().map(|(word, count)| WordCount { word, count }).collect();
    counted.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    counted.truncate(TOP_WORDS);
    counted
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use crate::ids::{RunId, TaskId};

    fn outcome(agent: &str, success: bool, words: &str, simulated: bool) -> Outcome {
        Outcome {
            agent: AgentId::new(agent),
            words: words.split(' ').map(str::to_owned).collect(),
            success,
            duration_ms: 1000,
            finished_ms: 5,
            simulated,
            backend: "cli".into(),
            run_id: RunId::new("r"),
            task: TaskId::new("t"),
            attempt: 1,
        }
    }

    #[test]
    fn per_agent_and_pool_figures() {
        let outcomes = [
            outcome("api", true, "rest api", false),
            outcome("api", true, "api auth", false),
            outcome("api", false, "deploy", false),
            outcome("ops", true, "deploy", false),
            outcome("ops", true, "deploy", true),
        ];
        let history = History::empty(LearningSettings::default());
        let stats = Stats::of(&outcomes, &history);
        assert_eq!(stats.agents.len(), 2);
        let api = &stats.agents[0];
        assert_eq!((api.attempts, api.succeeded), (3, 2));
        assert!((api.success_rate - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(api.top_words[0], WordCount { word: "api".into(), count: 2 });
        assert!(api.top_words.iter().all(|w| w.word != "deploy"), "only successes count");
        assert_eq!(api.learned_rate, None);
        assert_eq!(stats.totals.outcomes, 4);
        assert_eq!(stats.totals.simulated_ignored, 1);
        assert_eq!(stats.totals.agents_tracked, 2);
        assert_eq!(stats.totals.top_words[0], WordCount { word: "api".into(), count: 2 });
        assert_eq!(stats.totals.top_words[1], WordCount { word: "deploy".into(), count: 2 });
    }
}
