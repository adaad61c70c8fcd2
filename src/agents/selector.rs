//! Explainable agent selection: every definition gets a score with a breakdown of what
//! matched, using the weights of `DESIGN.md`.
//!
//! | component | points | rule |
//! |---|---|---|
//! | exact trigger | 3.0 each | the trigger phrase occurs as whole words in the task |
//! | partial trigger | 1.0 each | otherwise, one of its words equals a task word or is a prefix of one (4+ letters) |
//! | description words | 0.5 each | distinct task words that also occur in the description |
//! | category | 1.0 | a word of the category occurs in the task |
//! | focus area | 2.0 each | the focus area phrase occurs in the task |
//! | context bonus | 1.0 | the context text contains one of the agent's triggers or focus areas |
//! | learning boost | success × 2.0 | historical success rate (0..1), only for agents that matched the text |
//!
//! Agents without triggers (Claude Code files) are matched through their name: the words of
//! the name, without role words such as `expert` or `pro`, stand in for triggers
//! (`kubernetes-specialist` has the trigger `kubernetes`), and their description words
//! count as for any agent. Ties go to the lower tier, then to the name in alphabetical order.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::definition::AgentDefinition;
use super::words::{self, Word};
use crate::ids::AgentId;

pub const EXACT_TRIGGER_POINTS: f64 = 3.0;
pub const PARTIAL_TRIGGER_POINTS: f64 = 1.0;
pub const DESCRIPTION_WORD_POINTS: f64 = 0.5;
pub const CATEGORY_POINTS: f64 = 1.0;
pub const FOCUS_AREA_POINTS: f64 = 2.0;
pub const CONTEXT_BONUS_POINTS: f64 = 1.0;
pub const LEARNING_BOOST_FACTOR: f64 = 2.0;
/// The least score that selects an agent: one partial trigger, a category, or two
/// description words. A single shared description word is too weak a signal.
pub const MIN_SCORE: f64 = 1.0;

/// An agent's learned success rate and the outcomes behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedRate {
    /// Time-decayed success rate, 0..1.
    pub rate: f64,
    /// Recent attempts and how many of them succeeded.
    pub succeeded: u32,
    pub attempts: u32,
}

/// Historical success rate of an agent, or `None` without (enough) history.
pub type SuccessRate<'a> = &'a dyn Fn(&AgentId) -> Option<LearnedRate>;

/// A task to select an agent for.
#[derive(Clone, Copy)]
pub struct SelectionQuery<'a> {
    pub task: &'a str,
    /// Extra text (e.g. the workflow task's `context`) matched against focus areas and triggers.
    pub context: Option<&'a str>,
    /// Historical success rate of an agent, 0..1, from the learning store.
    pub success_rate: Option<SuccessRate<'a>>,
}

impl<'a> SelectionQuery<'a> {
    pub fn new(task: &'a str) -> Self {
        Self { task, context: None, success_rate: None }
    }

    #[must_use]
    pub fn with_context(mut self, context: &'a str) -> Self {
        self.context = Some(context);
        self
    }

    #[must_use]
    pub fn with_success_rate(mut self, success_rate: SuccessRate<'a>) -> Self {
        self.success_rate = Some(success_rate);
        self
    }
}

/// One component of a score: its points and what matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Component {
    pub points: f64,
    pub matched: Vec<String>,
}

impl Component {
    fn each(matched: Vec<String>, points_each: f64) -> Self {
        Self { points: matched.len() as f64 * points_each, matched }
    }

    fn once(matched: Vec<String>, points: f64) -> Self {
        let points = if matched.is_empty() { 0.0 } else { points };
        Self { points, matched }
    }
}

/// Why an agent got its score.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub exact_triggers: Component,
    pub partial_triggers: Component,
    pub description_words: Component,
    pub category: Component,
    pub focus_areas: Component,
    pub context_bonus: Component,
    pub learning_boost: Component,
    /// The agent has no triggers, so the words of its name stood in for them.
    pub triggers_from_name: bool,
}

impl Breakdown {
    /// The components with their labels, in display order.
    pub fn components(&self) -> [(&'static str, &Component); 7] {
        [
            ("exact triggers", &self.exact_triggers),
            ("partial triggers", &self.partial_triggers),
            ("description words", &self.description_words),
            ("category", &self.category),
            ("focus areas", &self.focus_areas),
            ("context bonus", &self.context_bonus),
            ("learning boost", &self.learning_boost),
        ]
    }

    pub fn total(&self) -> f64 {
        self.components().iter().map(|(_, c)| c.points).sum()
    }
}

/// A definition's score for one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub agent: AgentId,
    pub tier: u8,
    pub score: f64,
    pub breakdown: Breakdown,
}

/// Score every definition, best first: higher score, then lower tier, then name.
pub fn rank(defs: &[Arc<AgentDefinition>], query: &SelectionQuery<'_>) -> Vec<Scored> {
    let terms = QueryTerms::of(query);
    let mut quick = quick_scores(defs, &terms, query);
    quick.sort_by(|a, b| order(a, b));
    quick.into_iter().map(|q| explain(q.def, &terms, query)).collect()
}

/// The best agent, when one reaches [`MIN_SCORE`].
pub fn best(defs: &[Arc<AgentDefinition>], query: &SelectionQuery<'_>) -> Option<Scored> {
    let terms = QueryTerms::of(query);
    let quick = quick_scores(defs, &terms, query);
    let winner = quick.iter().filter(|q| q.score >= MIN_SCORE).min_by(|a, b| order(a, b))?;
    Some(explain(winner.def, &terms, query))
}

/// Up to `n` agents scoring at least `min_score`, best first.
pub fn top(
    defs: &[Arc<AgentDefinition>],
    query: &SelectionQuery<'_>,
    n: usize,
    min_score: f64,
) -> Vec<Scored> {
    let terms = QueryTerms::of(query);
    let mut quick = quick_scores(defs, &terms, query);
    quick.retain(|q| q.score >= min_score);
    quick.sort_by(|a, b| order(a, b));
    quick.into_iter().take(n).map(|q| explain(q.def, &terms, query)).collect()
}

/// A score without its breakdown; selection computes these for every definition and
/// explains only the ones it returns.
struct QuickScore<'d> {
    def: &'d AgentDefinition,
    score: f64,
}

fn quick_scores<'d>(
    defs: &'d [Arc<AgentDefinition>],
    terms: &QueryTerms,
    query: &SelectionQuery<'_>,
) -> Vec<QuickScore<'d>> {
    defs.iter()
        .map(|def| {
            let mut counts = [0_u32; PARTS];
            visit_matches(def, terms, |part, _| counts[part as usize] += 1);
            let text = text_points(&counts);
            QuickScore { def, score: text + learning_points(def, text, query).unwrap_or(0.0) }
        })
        .collect()
}

fn order(a: &QuickScore<'_>, b: &QuickScore<'_>) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.def.tier.cmp(&b.def.tier))
        .then_with(|| a.def.name.cmp(&b.def.name))
}

/// What a match counts towards.
#[derive(Clone, Copy)]
enum Part {
    Exact,
    Partial,
    Description,
    Category,
    Focus,
    Context,
}
const PARTS: usize = 6;

/// Points of each part, per match; category and context count once however many match.
fn text_points(counts: &[u32; PARTS]) -> f64 {
    let once = |count: u32, points: f64| if count > 0 { points } else { 0.0 };
    f64::from(counts[Part::Exact as usize]) * EXACT_TRIGGER_POINTS
        + f64::from(counts[Part::Partial as usize]) * PARTIAL_TRIGGER_POINTS
        + f64::from(counts[Part::Description as usize]) * DESCRIPTION_WORD_POINTS
        + once(counts[Part::Category as usize], CATEGORY_POINTS)
        + f64::from(counts[Part::Focus as usize]) * FOCUS_AREA_POINTS
        + once(counts[Part::Context as usize], CONTEXT_BONUS_POINTS)
}

/// The learning boost, when there is history and the text matched at all: history only
/// sharpens a choice the text supports; on its own it would pick the most successful
/// agent for every task.
fn learning_points(def: &AgentDefinition, text: f64, query: &SelectionQuery<'_>) -> Option<f64> {
    learned(def, text, query).map(|learned| learned.rate * LEARNING_BOOST_FACTOR)
}

/// The agent's learned rate (clamped to 0..1) when it counts for this query.
fn learned(def: &AgentDefinition, text: f64, query: &SelectionQuery<'_>) -> Option<LearnedRate> {
    if text <= 0.0 {
        return None;
    }
    let mut learned = query.success_rate.and_then(|rate| rate(&def.name))?;
    learned.rate = if learned.rate.is_finite() { learned.rate.clamp(0.0, 1.0) } else { 0.0 };
    Some(learned)
}

/// Call `hit` for every match of `def` against the query, with the text that matched.
fn visit_matches<'t>(
    def: &'t AgentDefinition,
    query: &'t QueryTerms,
    mut hit: impl FnMut(Part, &'t str),
) {
    let terms = def.terms();
    for trigger in &terms.triggers {
        if query.task_has_phrase(&trigger.stems) {
            hit(Part::Exact, &trigger.text);
        } else if trigger.keys.iter().any(|key| query.has_partial(key)) {
            hit(Part::Partial, &trigger.text);
        }
    }
    for (stem, written) in &query.sorted_keys {
        if terms.description.contains(stem.as_str()) {
            hit(Part::Description, written);
        }
    }
    if let Some(category) = &def.category
        && terms.category.iter().any(|word| query.keys.contains(word.as_str()))
    {
        hit(Part::Category, category);
    }
    for area in &terms.focus_areas {
        if query.task_has_phrase(&area.stems) {
            hit(Part::Focus, &area.text);
        }
    }
    if !query.context.is_empty() {
        for phrase in terms.focus_areas.iter().chain(&terms.triggers) {
            if words::contains_phrase(&query.context, &phrase.stems) {
                hit(Part::Context, &phrase.text);
            }
        }
    }
}

fn explain(def: &AgentDefinition, terms: &QueryTerms, query: &SelectionQuery<'_>) -> Scored {
    let mut matched: [Vec<String>; PARTS] = Default::default();
    visit_matches(def, terms, |part, text| matched[part as usize].push(text.to_owned()));
    let counts = matched.each_ref().map(|m| m.len() as u32);
    let text = text_points(&counts);
    let [exact, partial, description, category, focus, context] = matched;
    let learning_boost = match learned(def, text, query) {
        Some(learned) => Component {
            points: learned.rate * LEARNING_BOOST_FACTOR,
            matched: vec![format!(
                "{} of {} recent attempts succeeded (decayed rate {:.2})",
                learned.succeeded, learned.attempts, learned.rate
            )],
        },
        None => Component::default(),
    };
    let breakdown = Breakdown {
        exact_triggers: Component::each(exact, EXACT_TRIGGER_POINTS),
        partial_triggers: Component::each(partial, PARTIAL_TRIGGER_POINTS),
        description_words: Component::each(description, DESCRIPTION_WORD_POINTS),
        category: Component::once(category, CATEGORY_POINTS),
        focus_areas: Component::each(focus, FOCUS_AREA_POINTS),
        context_bonus: Component::once(context, CONTEXT_BONUS_POINTS),
        learning_boost,
        triggers_from_name: def.terms().triggers_from_name,
    };
    Scored { agent: def.name.clone(), tier: def.tier, score: breakdown.total(), breakdown }
}

/// The task and context as words, computed once per query.
struct QueryTerms {
    task: Vec<Word>,
    /// Every stem of the task, stop words included, for one-word phrases.
    stems: WordSet,
    /// Stems that carry meaning.
    keys: WordSet,
    /// `keys` with the word as written in the task, sorted by stem.
    sorted_keys: Vec<(String, String)>,
    context: Vec<Word>,
}

impl QueryTerms {
    fn of(query: &SelectionQuery<'_>) -> Self {
        let task = words::words(query.task);
        let mut sorted_keys: Vec<(String, String)> = task
            .iter()
            .filter(|w| !w.is_stop && w.stem.chars().count() >= 2)
            .map(|w| (w.stem.clone(), w.lower.clone()))
            .collect();
        sorted_keys.sort();
        sorted_keys.dedup_by(|a, b| a.0 == b.0);
        let keys = sorted_keys.iter().map(|(stem, _)| stem.clone()).collect();
        let stems = task.iter().map(|w| w.stem.clone()).collect();
        let context = query.context.map(words::words).unwrap_or_default();
        Self { task, stems, keys, sorted_keys, context }
    }

    fn task_has_phrase(&self, phrase: &[String]) -> bool {
        match phrase {
            [] => false,
            [word] => self.stems.contains(word.as_str()),
            _ => words::contains_phrase(&self.task, phrase),
        }
    }

    fn has_partial(&self, key: &str) -> bool {
        if self.keys.contains(key) {
            return true;
        }
        let first = key.as_bytes().first();
        key.len() >= 4
            && self.sorted_keys.iter().any(|(word, _)| {
                word.as_bytes().first() == first && words::is_partial_match(key, word)
            })
    }
}

/// A trigger or focus area as words.
#[derive(Debug, Clone)]
struct Phrase {
    text: String,
    stems: Vec<String>,
    keys: Vec<String>,
}

impl Phrase {
    fn of(text: &str) -> Self {
        let stems = words::words(text).into_iter().map(|w| w.stem).collect();
        Self { text: text.to_owned(), stems, keys: words::key_stems(text) }
    }
}

/// A definition's fields as words, cached on the definition.
#[derive(Debug, Clone)]
pub(crate) struct MatchTerms {
    triggers: Vec<Phrase>,
    triggers_from_name: bool,
    focus_areas: Vec<Phrase>,
    category: Vec<String>,
    description: WordSet,
}

impl MatchTerms {
    pub(crate) fn of(def: &AgentDefinition) -> Self {
        let triggers_from_name = def.triggers.is_empty();
        let triggers = if triggers_from_name {
            words::name_words(def.name.as_str()).iter().map(|w| Phrase::of(w)).collect()
        } else {
            def.triggers.iter().map(|t| Phrase::of(t)).collect()
        };
        Self {
            triggers,
            triggers_from_name,
            focus_areas: def.focus_areas.iter().map(|f| Phrase::of(f)).collect(),
            category: def.category.as_deref().map(words::key_stems).unwrap_or_default(),
            description: words::key_stems(&def.description).into_iter().collect(),
        }
    }
}

/// A set of short words with a cheap hash: the sets are small, built by us, and probed
/// thousands of times per selection, where `SipHash` dominated the profile.
type WordSet = HashSet<String, foldhash::fast::FixedState>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)] // worked examples: scores are exact sums
mod tests {
    use super::*;

    fn def(name: &str, description: &str, tier: u8) -> AgentDefinition {
        let mut def = AgentDefinition::new(name, description);
        def.tier = tier;
        def
    }

    fn pool(defs: Vec<AgentDefinition>) -> Vec<Arc<AgentDefinition>> {
        defs.into_iter().map(Arc::new).collect()
    }

    fn backend_architect() -> AgentDefinition {
        let mut d = def(
            "backend-architect",
            "Design reliable backend systems with focus on data integrity",
            1,
        );
        d.category = Some("architecture".into());
        d.triggers = ["backend", "API", "database", "REST", "GraphQL"].map(String::from).to_vec();
        d.focus_areas = ["security", "performance", "scalability"].map(String::from).to_vec();
        d
    }

    #[test]
    fn exact_triggers_score_three_each() {
        let defs = pool(vec![backend_architect()]);
        let scored = best(&defs, &SelectionQuery::new("Build REST API with auth")).unwrap();
        assert_eq!(scored.score, 6.0);
        assert_eq!(scored.breakdown.exact_triggers.matched, ["API", "REST"]);
        assert_eq!(scored.breakdown.description_words.points, 0.0);
    }

    #[test]
    fn each_component_equals_its_weight() {
        let defs = pool(vec![backend_architect()]);
        let cases = [
            // partial: "databases" folds to "database" (exact); "graphqlish" shares the prefix.
            ("graphqlish layer", 1.0),
            ("reliable", 0.5),
            ("architecture review", 1.0),
            ("performance budget", 2.0),
            ("graphql", 3.0),
        ];
        for (task, expected) in cases {
            let scored = rank(&defs, &SelectionQuery::new(task)).remove(0);
            assert_eq!(scored.score, expected, "{task}: {:?}", scored.breakdown);
        }
    }

    #[test]
    fn context_bonus_and_learning_boost() {
        let defs = pool(vec![backend_architect()]);
        let rate = |_: &AgentId| Some(LearnedRate { rate: 0.75, succeeded: 3, attempts: 4 });
        let query = SelectionQuery::new("reliable")
            .with_context("we care about scalability")
            .with_success_rate(&rate);
        let scored = rank(&defs, &query).remove(0);
        assert_eq!(scored.breakdown.description_words.points, 0.5);
        assert_eq!(scored.breakdown.context_bonus.points, 1.0);
        assert_eq!(scored.breakdown.context_bonus.matched, ["scalability"]);
        assert_eq!(scored.breakdown.learning_boost.points, 1.5);
        assert_eq!(
            scored.breakdown.learning_boost.matched,
            ["3 of 4 recent attempts succeeded (decayed rate 0.75)"]
        );
        assert_eq!(scored.score, 3.0);
    }

    #[test]
    fn learning_alone_selects_nothing() {
        let defs = pool(vec![backend_architect()]);
        let rate = |_: &AgentId| Some(LearnedRate { rate: 1.0, succeeded: 9, attempts: 9 });
        let query = SelectionQuery::new("bake a cake").with_success_rate(&rate);
        assert_eq!(rank(&defs, &query)[0].score, 0.0);
        assert!(best(&defs, &query).is_none());
    }

    #[test]
    fn agents_without_triggers_match_by_name_words() {
        let defs = pool(vec![def("kubernetes-specialist", "Manages clusters", 2)]);
        let scored = best(&defs, &SelectionQuery::new("upgrade the kubernetes cluster")).unwrap();
        assert!(scored.breakdown.triggers_from_name);
        assert_eq!(scored.breakdown.exact_triggers.matched, ["kubernetes"]);
        // "clusters" in the description folds to "cluster", as the task's "cluster".
        assert_eq!(scored.breakdown.description_words.matched, ["cluster"]);
        assert_eq!(scored.score, 3.5);
    }

    #[test]
    fn ties_go_to_lower_tier_then_name() {
        let mut a = def("zeta", "x", 2);
        a.triggers = vec!["deploy".into()];
        let mut b = def("alpha", "x", 2);
        b.triggers = vec!["deploy".into()];
        let mut c = def("omega", "x", 1);
        c.triggers = vec!["deploy".into()];
        let defs = pool(vec![a, b, c]);
        let order: Vec<String> = rank(&defs, &SelectionQuery::new("deploy it"))
            .into_iter()
            .map(|s| s.agent.to_string())
            .collect();
        assert_eq!(order, ["omega", "alpha", "zeta"]);
        assert_eq!(best(&defs, &SelectionQuery::new("deploy it")).unwrap().agent.as_str(), "omega");
    }

    #[test]
    fn nothing_below_min_score() {
        let defs = pool(vec![backend_architect()]);
        let query = SelectionQuery::new("reliable cake");
        assert_eq!(rank(&defs, &query)[0].score, 0.5);
        assert!(best(&defs, &query).is_none());
        assert!(top(&defs, &query, 3, MIN_SCORE).is_empty());
    }
}
