//! The resolution ladder's steps as pure functions of the verdicts, so each tests like
//! arithmetic: detection, domain priority, evidence and the reading of a third opinion.
//! The engine (`engine::panel`) runs them in order and asks the agents.

use std::fmt::Write as _;

use super::{Domain, LadderStep, MemberVerdict, normalise};
use crate::ids::AgentId;

/// Members that gave the same decision (by [`normalise`]); the ladder compares positions,
/// so a 2-1 split is two positions, and the majority alone never decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// As the first member of the position wrote it.
    pub decision: String,
    /// Indices into the verdicts, in panel order.
    pub members: Vec<usize>,
}

/// What one step found; `winner` is an index into the positions when the step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    pub step: LadderStep,
    pub finding: String,
    pub winner: Option<usize>,
}

/// The verdicts grouped by decision, in order of first appearance.
pub fn positions(verdicts: &[MemberVerdict]) -> Vec<Position> {
    let mut positions: Vec<Position> = Vec::new();
    for (i, member) in verdicts.iter().enumerate() {
        let key = normalise(&member.verdict.decision);
        match positions.iter_mut().find(|p| normalise(&p.decision) == key) {
            Some(position) => position.members.push(i),
            None => positions
                .push(Position { decision: member.verdict.decision.clone(), members: vec![i] }),
        }
    }
    positions
}

/// The agent speaking for a position: its member of the strongest domain, then the most
/// confident, then the first.
pub fn speaker(verdicts: &[MemberVerdict], position: &Position) -> AgentId {
    position
        .members
        .iter()
        .copied()
        .min_by(|&a, &b| {
            let (a, b) = (&verdicts[a], &verdicts[b]);
            a.domain.rank().cmp(&b.domain.rank()).then(
                b.verdict
                    .confidence
                    .partial_cmp(&a.verdict.confidence)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        })
        .map_or_else(|| AgentId::new("?"), |i| verdicts[i].agent.clone())
}

/// Step 1: the owner of the question's domain wins when exactly one position has one; else
/// the position whose strongest domain outranks every other one's.
pub fn domain_priority(
    question: Option<Domain>,
    verdicts: &[MemberVerdict],
    positions: &[Position],
) -> StepResult {
    let best = |p: &Position| p.members.iter().map(|&m| verdicts[m].domain).min();
    let domains: Vec<String> = verdicts
        .iter()
        .map(|v| format!("{} is {} ({})", v.agent, v.domain, v.domain_from))
        .collect();
    let mut finding = domains.join(", ");
    if let Some(question) = question {
        let owners: Vec<usize> = (0..positions.len())
            .filter(|&p| positions[p].members.iter().any(|&m| verdicts[m].domain == question))
            .collect();
        if let [owner] = owners[..] {
            let _ = write!(
                finding,
                "; the question is {question}: {} owns it",
                names(verdicts, &positions[owner])
            );
            return StepResult { step: LadderStep::DomainPriority, finding, winner: Some(owner) };
        }
        let _ = write!(finding, "; the question is {question}");
        if owners.len() > 1 {
            finding.push_str(", owned by more than one side");
        }
    }
    let ranks: Vec<Option<Domain>> = positions.iter().map(best).collect();
    let top = ranks.iter().flatten().min().copied();
    let leaders: Vec<usize> = (0..positions.len()).filter(|&p| ranks[p] == top).collect();
    if let (Some(top), [leader]) = (top, &leaders[..]) {
        let _ = write!(
            finding,
            "; {top} outranks the other side{}: {} wins",
            if positions.len() > 2 { "s" } else { "" },
            names(verdicts, &positions[*leader])
        );
        return StepResult { step: LadderStep::DomainPriority, finding, winner: Some(*leader) };
    }
    finding.push_str("; no side outranks the others: not decided");
    StepResult { step: LadderStep::DomainPriority, finding, winner: None }
}

/// How specific a verdict is, and why: concrete references, figures, alternatives weighed.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceScore {
    pub score: f64,
    pub concrete: usize,
    pub vague: usize,
    pub figures: usize,
    pub alternatives: usize,
    pub tradeoffs: usize,
}

impl EvidenceScore {
    /// Each concrete reference 1.0, a vague one 0.25, a figure in the rationale 0.5 (at most
    /// four), an alternative weighed or a trade-off named 0.5 each (at most three of each).
    pub fn of(verdict: &super::Verdict) -> Self {
        let concrete = verdict.evidence.iter().filter(|e| is_concrete(e)).count();
        let vague = verdict.evidence.len() - concrete;
        let figures = verdict
            .rationale
            .split_whitespace()
            .filter(|w| w.chars().any(|c| c.is_ascii_digit()))
            .count()
            .min(4);
        let alternatives = verdict.alternatives.len().min(3);
        let tradeoffs = verdict.tradeoffs.len().min(3);
        let score = concrete as f64
            + vague as f64 * 0.25
            + figures as f64 * 0.5
            + alternatives as f64 * 0.5
            + tradeoffs as f64 * 0.5;
        Self { score, concrete, vague, figures, alternatives, tradeoffs }
    }

    fn describe(&self) -> String {
        format!(
            "{:.2} ({} concrete, {} vague, {} figures, {} alternatives, {} trade-offs)",
            self.score, self.concrete, self.vague, self.figures, self.alternatives, self.tradeoffs
        )
    }
}

/// A reference that names something one can check: a path, a line, a URL, a figure, code.
fn is_concrete(evidence: &str) -> bool {
    evidence.chars().any(|c| c.is_ascii_digit())
        || evidence.contains('/')
        || evidence.contains('`')
        || evidence.contains("://")
        || evidence.split_whitespace().any(|w| {
            let w = w.trim_end_matches([',', ';', ')']);
            w.rsplit_once('.').is_some_and(|(stem, ext)| {
                !stem.is_empty()
                    && (1..=4).contains(&ext.len())
                    && ext.chars().all(|c| c.is_ascii_alphanumeric())
            })
        })
}

/// Step 2: the position whose best verdict is more specific by at least `margin` wins.
pub fn evidence(verdicts: &[MemberVerdict], positions: &[Position], margin: f64) -> StepResult {
    let scores: Vec<EvidenceScore> =
        verdicts.iter().map(|v| EvidenceScore::of(&v.verdict)).collect();
    let mut finding = verdicts
        .iter()
        .zip(&scores)
        .map(|(v, s)| format!("{} {}", v.agent, s.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    let best: Vec<f64> = positions
        .iter()
        .map(|p| p.members.iter().map(|&m| scores[m].score).fold(0.0, f64::max))
        .collect();
    let mut order: Vec<usize> = (0..positions.len()).collect();
    order.sort_by(|&a, &b| best[b].partial_cmp(&best[a]).unwrap_or(std::cmp::Ordering::Equal));
    let (first, second) = (order[0], order.get(1).copied());
    let lead = second.map_or(f64::INFINITY, |s| best[first] - best[s]);
    if lead >= margin {
        let _ = write!(
            finding,
            "; {} leads by {lead:.2} (margin {margin:.2}): more specific",
            names(verdicts, &positions[first])
        );
        StepResult { step: LadderStep::Evidence, finding, winner: Some(first) }
    } else {
        let _ = write!(finding, "; lead {lead:.2} is below the margin {margin:.2}: not decided");
        StepResult { step: LadderStep::Evidence, finding, winner: None }
    }
}

/// Step 3: the third agent's two answers (positions shown in panel order, then reversed),
/// each the decision it picked or why it gave none. It decided only when both name the
/// same position.
pub fn third_opinion(
    agent: &AgentId,
    positions: &[Position],
    in_order: &Result<String, String>,
    reversed: &Result<String, String>,
) -> StepResult {
    let find = |decision: &str| {
        positions.iter().position(|p| normalise(&p.decision) == normalise(decision))
    };
    let show = |answer: &Result<String, String>| match answer {
        Ok(decision) => format!("\"{decision}\""),
        Err(error) => format!("no verdict ({error})"),
    };
    let mut finding =
        format!("{agent} in panel order: {}; in reverse order: {}", show(in_order), show(reversed));
    let winner = match (in_order, reversed) {
        (Ok(a), Ok(b)) => find(a).filter(|&p| Some(p) == find(b)),
        _ => None,
    };
    if winner.is_some() {
        finding.push_str(": the same both ways, decided");
    } else {
        finding.push_str(": its answers differ, not decided");
    }
    StepResult { step: LadderStep::ThirdOpinion, finding, winner }
}

/// The text the third agent gets, with the positions in the given order.
pub fn third_opinion_prompt(
    question: &str,
    verdicts: &[MemberVerdict],
    positions: &[Position],
    order: &[usize],
) -> String {
    let mut text = format!(
        "{}\n\nA panel disagreed on this question. Read each side's verdict and pick the one \
         decision you find best supported. Your `decision` must be one of the sides' decisions, \
         written as shown.\n",
        question.trim()
    );
    for (shown, &p) in order.iter().enumerate() {
        let position = &positions[p];
        let _ = writeln!(text, "\nSide {}: \"{}\"", shown + 1, position.decision);
        for &m in &position.members {
            let v = &verdicts[m].verdict;
            let _ = writeln!(text, "  {} says: {}", verdicts[m].agent, v.rationale);
            for e in &v.evidence {
                let _ = writeln!(text, "    evidence: {e}");
            }
            for a in &v.alternatives {
                let _ = writeln!(text, "    alternative: {a}");
            }
        }
    }
    text.push_str(
        "\nEnd your answer with your verdict as one JSON object, alone on the last line:\n",
    );
    text.push_str(super::verdict::SCHEMA);
    text.push('\n');
    text
}

/// When no step decided, what a person is offered first: the position with the most
/// members, then the most confident member.
pub fn fallback_recommendation(verdicts: &[MemberVerdict], positions: &[Position]) -> usize {
    let confidence = |p: &Position| {
        p.members.iter().map(|&m| verdicts[m].verdict.confidence).fold(0.0, f64::max)
    };
    (0..positions.len())
        .max_by(|&a, &b| {
            positions[a]
                .members
                .len()
                .cmp(&positions[b].members.len())
                .then(
                    confidence(&positions[a])
                        .partial_cmp(&confidence(&positions[b]))
                        .unwrap_or(std::cmp::Ordering::Equal),
                )
                .then(b.cmp(&a))
        })
        .unwrap_or(0)
}

fn names(verdicts: &[MemberVerdict], position: &Position) -> String {
    position.members.iter().map(|&m| verdicts[m].agent.as_str()).collect::<Vec<_>>().join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflict::Verdict;

    fn member(agent: &str, domain: Domain, decision: &str) -> MemberVerdict {
        MemberVerdict {
            agent: AgentId::new(agent),
            domain,
            domain_from: "category".into(),
            verdict: Verdict {
                decision: decision.into(),
                rationale: "it is better".into(),
                alternatives: Vec::new(),
                tradeoffs: Vec::new(),
                evidence: Vec::new(),
                confidence: 0.5,
            },
        }
    }

    #[test]
    fn same_decision_is_one_position() {
        let v =
            [member("a", Domain::Security, "Sessions."), member("b", Domain::Design, "sessions")];
        assert_eq!(positions(&v).len(), 1);
    }

    #[test]
    fn security_outranks_performance() {
        let v = [
            member("perf", Domain::Performance, "jwt"),
            member("sec", Domain::Security, "sessions"),
        ];
        let p = positions(&v);
        let result = domain_priority(None, &v, &p);
        assert_eq!(result.winner, Some(1), "{}", result.finding);
        // The owner of the question's domain wins even against a stronger domain.
        let result = domain_priority(Some(Domain::Performance), &v, &p);
        assert_eq!(result.winner, Some(0), "{}", result.finding);
        assert!(result.finding.contains("perf owns it"), "{}", result.finding);
    }

    #[test]
    fn equal_domains_do_not_decide() {
        let v =
            [member("a", Domain::Implementation, "x"), member("b", Domain::Implementation, "y")];
        let result = domain_priority(Some(Domain::Security), &v, &positions(&v));
        assert_eq!(result.winner, None, "{}", result.finding);
    }

    #[test]
    fn a_two_one_split_is_decided_by_domain_not_majority() {
        let v = [
            member("a", Domain::Implementation, "x"),
            member("b", Domain::Implementation, "x"),
            member("sec", Domain::Security, "y"),
        ];
        let p = positions(&v);
        assert_eq!(p.len(), 2);
        assert_eq!(domain_priority(None, &v, &p).winner, Some(1));
        // With no step deciding, the majority is only what a person is offered first.
        assert_eq!(fallback_recommendation(&v, &p), 0);
    }

    #[test]
    fn concrete_evidence_wins_by_a_margin() {
        let mut v =
            [member("a", Domain::Implementation, "x"), member("b", Domain::Implementation, "y")];
        v[1].verdict.evidence = vec!["src/store/mod.rs:120".into(), "bench: 38 ms p99".into()];
        v[1].verdict.alternatives = vec!["x: no index".into()];
        v[1].verdict.rationale = "measured 3 times on 10000 rows".into();
        let result = evidence(&v, &positions(&v), 1.5);
        assert_eq!(result.winner, Some(1), "{}", result.finding);
        assert!(result.finding.contains("b 3.50"), "{}", result.finding);
        v[0].verdict.evidence = vec!["docs/design.md".into(), "RFC 6265".into()];
        v[0].verdict.rationale = "3 of 4 cases".into();
        let result = evidence(&v, &positions(&v), 1.5);
        assert_eq!(result.winner, None, "{}", result.finding);
    }

    #[test]
    fn a_third_opinion_that_flips_has_not_decided() {
        let v = [member("a", Domain::Design, "x"), member("b", Domain::Design, "y")];
        let p = positions(&v);
        let judge = AgentId::new("judge");
        let same = third_opinion(&judge, &p, &Ok("Y".into()), &Ok("y".into()));
        assert_eq!(same.winner, Some(1));
        let flipped = third_opinion(&judge, &p, &Ok("x".into()), &Ok("y".into()));
        assert_eq!(flipped.winner, None);
        assert!(flipped.finding.contains("differ"));
        let failed = third_opinion(&judge, &p, &Ok("x".into()), &Err("no JSON".into()));
        assert_eq!(failed.winner, None);
    }

    #[test]
    fn the_third_prompt_shows_sides_in_the_given_order() {
        let v = [member("a", Domain::Design, "first"), member("b", Domain::Design, "second")];
        let p = positions(&v);
        let forward = third_opinion_prompt("Q?", &v, &p, &[0, 1]);
        let back = third_opinion_prompt("Q?", &v, &p, &[1, 0]);
        assert!(forward.find("\"first\"") < forward.find("\"second\""));
        assert!(back.find("\"second\"") < back.find("\"first\""));
    }
}
