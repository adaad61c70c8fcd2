//! The worker's side of a panel task: ask every member for a verdict (once more when the
//! first cannot be read), detect agreement or conflict, run the ladder's automatic steps,
//! and when a person must decide, hand the scheduler a wait that does not hold a
//! `max_parallel` slot. Every step is published; the pure rules live in [`crate::conflict`].
//!
//! Kept apart from [`super::attempt`] so ordinary tasks pay one `Option` check for it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::attempt::{Job, charge, output_sink, spent_budget, wait_for_rate_limit};
use super::safety::{Checked, StreamGuard};
use super::scheduler::{Outcome, RunShared};
use crate::conflict::ladder::{self, Position, StepResult};
use crate::conflict::{
    Call, DecideMode, Domain, LadderStep, MemberVerdict, OWN_DECISION, OpenConflict,
    Recommendation, Resolution, Verdict, member_prompt, parse_verdict, verdict::reask_prompt,
};
use crate::event::Event;
use crate::exec::ExecRequest;
use crate::ids::{AgentId, TaskId, UserId};
use crate::model::{ConflictModel, ConflictStepModel};
use crate::workflow::PlannedPanel;

/// Executors enforce their own timeout; this much later the engine stops waiting.
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// What a member's question is about, in the request's context under `panel`, so every
/// executor sees it (the sim backend draws its verdict from it).
fn panel_context(
    job: &Job,
    role: &str,
    member: &AgentId,
    options: &[String],
    members: &[String],
) -> Value {
    let mut context = job.context.clone();
    if let Value::Object(map) = &mut context {
        map.insert(
            "panel".to_owned(),
            json!({ "role": role, "member": member, "members": members, "options": options }),
        );
    }
    context
}

/// Run a panel task. Returns the attempt number and how it ended, or a wait for a person.
/// A task of a resumed run whose conflict was stored goes on from it: the members are not
/// asked again, a step that ran (a third opinion fetched) is not run again, a decision
/// taken is kept.
pub(super) async fn run(shared: &Arc<RunShared>, job: &Job) -> (u32, Outcome) {
    let step = &shared.plan.steps[job.task];
    let attempt = job.first_attempt;
    let Some(panel) = &step.panel else { return (attempt, Outcome::Failed) };
    if let Some(stored) = job.conflict.as_deref() {
        return (attempt, resume(shared, job, attempt, panel, stored).await);
    }
    let began = Instant::now();
    let names: Vec<String> = panel.members.iter().map(ToString::to_string).collect();
    let asks =
        panel.members.iter().map(|member| ask_member(shared, job, attempt, panel, member, &names));
    let answers = futures::future::join_all(asks).await;
    if job.cancel.is_cancelled() {
        return (attempt, Outcome::Cancelled);
    }
    let simulated = answers.iter().any(|a| a.simulated);
    let budget = answers.iter().find_map(|a| a.budget.clone());
    let mut verdicts = Vec::new();
    let mut failed = Vec::new();
    for (member, answer) in panel.members.iter().zip(answers) {
        match answer.verdict {
            Ok(verdict) => {
                let (domain, from) = shared
                    .engine
                    .definition(member)
                    .map_or((Domain::Implementation, "default"), |d| Domain::of_agent(&d));
                verdicts.push(MemberVerdict {
                    agent: member.clone(),
                    domain,
                    domain_from: from.to_owned(),
                    verdict,
                });
            }
            Err(error) => failed.push((member.clone(), error)),
        }
    }
    let task = step.id.clone();
    let finish =
        Finish { shared: Arc::clone(shared), task: task.clone(), attempt, began, simulated };
    if let Some(reason) = budget {
        return (attempt, finish.fail(format!("panel: {reason}")));
    }
    if verdicts.len() < 2 {
        let why: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        return (
            attempt,
            finish.fail(format!(
                "panel: {} of {} members gave a usable verdict, a panel needs two ({})",
                verdicts.len(),
                panel.members.len(),
                why.join("; ")
            )),
        );
    }
    let failed: Vec<AgentId> = failed.into_iter().map(|(a, _)| a).collect();
    let positions = ladder::positions(&verdicts);
    if positions.len() == 1 {
        let speaker = ladder::speaker(&verdicts, &positions[0]);
        shared.publish(Event::PanelAgreed {
            task: task.clone(),
            decision: positions[0].decision.clone(),
            agents: verdicts.iter().map(|v| v.agent.clone()).collect(),
        });
        let decided = Decided {
            decision: positions[0].decision.clone(),
            winner: speaker.to_string(),
            resolved_by: "agreement",
            by: None,
            note: None,
        };
        return (attempt, finish.succeed(&decided, &verdicts, &failed));
    }

    shared.publish(Event::ConflictDetected {
        task: task.clone(),
        question: step.description.clone(),
        options: panel.options.clone(),
        domain: panel.domain,
        decide: panel.decide,
        verdicts: verdicts.clone(),
        failed: failed.clone(),
    });
    let conflict = Settle { verdicts, failed, earlier: &[], resumed: false };
    (attempt, conflict.run(shared, job, attempt, panel, finish).await)
}

/// Go on with a conflict stored before a crash.
async fn resume(
    shared: &Arc<RunShared>,
    job: &Job,
    attempt: u32,
    panel: &PlannedPanel,
    stored: &ConflictModel,
) -> Outcome {
    let step = &shared.plan.steps[job.task];
    let simulated = shared.engine.executors.get(&step.backend).is_ok_and(|e| e.is_simulated());
    let finish = Finish {
        shared: Arc::clone(shared),
        task: step.id.clone(),
        attempt,
        began: Instant::now(),
        simulated,
    };
    // Settled before the crash, its end not yet recorded: the decision stands.
    if let Some(resolution) = &stored.resolution {
        let decided = Decided {
            decision: resolution.decision.clone(),
            winner: resolution.winner.clone(),
            resolved_by: resolution.resolved_by.as_str(),
            by: resolution.by.as_ref().map(ToString::to_string),
            note: resolution.note.clone(),
        };
        return finish.succeed(&decided, &stored.verdicts, &stored.failed);
    }
    let conflict = Settle {
        verdicts: stored.verdicts.clone(),
        failed: stored.failed.clone(),
        earlier: &stored.steps,
        resumed: true,
    };
    conflict.run(shared, job, attempt, panel, finish).await
}

/// A detected conflict on its way up the ladder.
struct Settle<'a> {
    verdicts: Vec<MemberVerdict>,
    failed: Vec<AgentId>,
    /// Steps that ran before a crash: their findings stand and they do not run again.
    earlier: &'a [ConflictStepModel],
    /// Going on after a crash: a person who was asked is asked again, saying so.
    resumed: bool,
}

impl Settle<'_> {
    /// The ladder's automatic steps, then (when none settles it) a wait for a person.
    async fn run(
        self,
        shared: &Arc<RunShared>,
        job: &Job,
        attempt: u32,
        panel: &PlannedPanel,
        finish: Finish,
    ) -> Outcome {
        let step = &shared.plan.steps[job.task];
        let task = step.id.clone();
        let Self { verdicts, failed, earlier, resumed } = self;
        let positions = ladder::positions(&verdicts);
        let mut recommendation = None;
        // Fetched before a crash, or by the ladder below: never fetched twice.
        let mut third_asked = earlier.iter().any(|s| s.step == LadderStep::ThirdOpinion);
        for &rung in &shared.engine.settings.conflicts.steps {
            let winner = if let Some(ran) = earlier.iter().find(|s| s.step == rung) {
                // Run before the crash (a third opinion fetched): its finding stands.
                ran.winner.clone().zip(ran.decision.clone())
            } else {
                let result = match rung {
                    LadderStep::DomainPriority => {
                        ladder::domain_priority(panel.domain, &verdicts, &positions)
                    }
                    LadderStep::Evidence => ladder::evidence(
                        &verdicts,
                        &positions,
                        shared.engine.settings.conflicts.evidence_margin,
                    ),
                    LadderStep::ThirdOpinion => {
                        let Some(third) = &panel.third_opinion else { continue };
                        third_asked = true;
                        let result =
                            third_opinion(shared, job, attempt, &verdicts, &positions, third).await;
                        if job.cancel.is_cancelled() {
                            return Outcome::Cancelled;
                        }
                        result
                    }
                    LadderStep::Operator => continue,
                };
                let winner = result.winner.map(|p| {
                    (ladder::speaker(&verdicts, &positions[p]), positions[p].decision.clone())
                });
                publish_step(shared, &task, &result, winner.as_ref(), None);
                winner
            };
            if let Some((agent, decision)) = winner {
                if panel.decide == DecideMode::Auto {
                    shared.publish(Event::ConflictResolved {
                        task: task.clone(),
                        decision: decision.clone(),
                        winner: agent.to_string(),
                        resolved_by: rung,
                        by: None,
                        note: None,
                    });
                    let decided = Decided {
                        decision,
                        winner: agent.to_string(),
                        resolved_by: rung.as_str(),
                        by: None,
                        note: None,
                    };
                    return finish.succeed(&decided, &verdicts, &failed);
                }
                recommendation = Some(Recommendation { decision, winner: agent, from: Some(rung) });
                break;
            }
        }

        let recommendation = recommendation.unwrap_or_else(|| {
            let p = ladder::fallback_recommendation(&verdicts, &positions);
            Recommendation {
                decision: positions[p].decision.clone(),
                winner: ladder::speaker(&verdicts, &positions[p]),
                from: None,
            }
        });
        // Registered before it is announced, so whoever reacts to the announcement finds it.
        let waiter = shared.engine.conflicts.request(OpenConflict {
            run: shared.run.clone(),
            task: task.clone(),
            question: step.description.clone(),
            options: panel.options.clone(),
            verdicts: verdicts.clone(),
            recommendation: Some(recommendation.clone()),
            third_opinion: panel.third_opinion.clone(),
            third_opinion_asked: third_asked,
        });
        let asked_before = resumed && earlier.iter().any(|s| s.step == LadderStep::Operator);
        let again = if asked_before { "asked again after the run resumed; " } else { "" };
        let finding = match recommendation.from {
            Some(step) => format!(
                "{again}a person decides; recommended: \"{}\" ({}, found by {step}{})",
                recommendation.decision,
                recommendation.winner,
                if panel.decide == DecideMode::Recommend { ", to confirm" } else { "" }
            ),
            None => format!(
                "{again}no step decided; a person decides; offered first: \"{}\" ({}, most \
                 members, then highest confidence)",
                recommendation.decision, recommendation.winner
            ),
        };
        shared.publish(Event::ConflictStep {
            task: task.clone(),
            step: LadderStep::Operator,
            finding,
            winner: None,
            decision: None,
            recommendation: Some(recommendation),
        });
        let (shared, job, panel) = (Arc::clone(shared), job.clone(), panel.clone());
        let waiting = async move {
            let mut waiter = waiter;
            let resolution = loop {
                match waiter.next().await {
                    Some(Call::Resolved(resolution)) => break Some(resolution),
                    Some(Call::ThirdOpinion { by }) => {
                        let asked =
                            AskedThirdOpinion { by, verdicts: &verdicts, positions: &positions };
                        asked.fetch(&shared, &job, attempt, &panel).await;
                    }
                    None => break None,
                }
            };
            match resolution {
                Some(Resolution::Decided { decision, winner, by, note }) => {
                    let decided = Decided {
                        decision,
                        winner,
                        resolved_by: LadderStep::Operator.as_str(),
                        by: Some(by.to_string()),
                        note,
                    };
                    finish.succeed(&decided, &verdicts, &failed)
                }
                Some(Resolution::Refused { reason }) => finish.fail(reason),
                None => Outcome::Cancelled,
            }
        };
        Outcome::Waiting(Box::pin(waiting))
    }
}

/// A person asked for the third opinion while the conflict waited (the prompt's `t`).
struct AskedThirdOpinion<'a> {
    by: UserId,
    verdicts: &'a [MemberVerdict],
    positions: &'a [Position],
}

impl AskedThirdOpinion<'_> {
    /// Ask the third agent now and publish its finding; when it decides, its pick becomes
    /// the recommendation the person confirms or overrides. The conflict keeps waiting.
    async fn fetch(self, shared: &Arc<RunShared>, job: &Job, attempt: u32, panel: &PlannedPanel) {
        let Some(third) = &panel.third_opinion else { return };
        let task = shared.plan.steps[job.task].id.clone();
        let mut result =
            third_opinion(shared, job, attempt, self.verdicts, self.positions, third).await;
        result.finding = format!("asked by {}: {}", self.by, result.finding);
        let winner = result.winner.map(|p| {
            let position = &self.positions[p];
            (ladder::speaker(self.verdicts, position), position.decision.clone())
        });
        publish_step(shared, &task, &result, winner.as_ref(), None);
        let Some((agent, decision)) = winner else { return };
        let recommendation =
            Recommendation { decision, winner: agent, from: Some(LadderStep::ThirdOpinion) };
        shared.engine.conflicts.recommend(&shared.run, &task, recommendation.clone());
        shared.publish(Event::ConflictStep {
            task,
            step: LadderStep::Operator,
            finding: format!(
                "a person decides; recommended now: \"{}\" ({}, found by the third opinion {} \
                 asked for, to confirm)",
                recommendation.decision, recommendation.winner, self.by
            ),
            winner: None,
            decision: None,
            recommendation: Some(recommendation),
        });
    }
}

fn publish_step(
    shared: &RunShared,
    task: &TaskId,
    result: &StepResult,
    winner: Option<&(AgentId, String)>,
    recommendation: Option<Recommendation>,
) {
    shared.publish(Event::ConflictStep {
        task: task.clone(),
        step: result.step,
        finding: result.finding.clone(),
        winner: winner.map(|(a, _)| a.clone()),
        decision: winner.map(|(_, d)| d.clone()),
        recommendation,
    });
}

/// How a conflict (or agreement) was settled, for the task's output.
struct Decided {
    decision: String,
    winner: String,
    resolved_by: &'static str,
    by: Option<String>,
    note: Option<String>,
}

/// Publishes the panel task's end.
struct Finish {
    shared: Arc<RunShared>,
    task: TaskId,
    attempt: u32,
    began: Instant,
    simulated: bool,
}

impl Finish {
    /// The output: the decision with its rationale and every member's verdict, the
    /// overruled ones marked, so dependents see what was decided and what was not.
    fn succeed(
        &self,
        decided: &Decided,
        verdicts: &[MemberVerdict],
        failed: &[AgentId],
    ) -> Outcome {
        let key = crate::conflict::normalise(&decided.decision);
        let winner_verdict = verdicts.iter().find(|v| v.agent.as_str() == decided.winner);
        let rationale = match (winner_verdict, &decided.note) {
            (Some(v), _) => v.verdict.rationale.clone(),
            (None, Some(note)) => note.clone(),
            (None, None) => String::new(),
        };
        let members: Vec<Value> = verdicts
            .iter()
            .map(|v| {
                let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
                value["overruled"] = json!(crate::conflict::normalise(&v.verdict.decision) != key);
                value
            })
            .collect();
        let output = json!({
            "decision": decided.decision,
            "rationale": rationale,
            "winner": decided.winner,
            "resolved_by": decided.resolved_by,
            "by": decided.by,
            "note": decided.note,
            "verdicts": members,
            "failed": failed,
        })
        .to_string();
        // The agent credited with the task: the winner, or the first member for a person's
        // own text. Overruled members are neither credited nor blamed.
        let agent = if decided.winner == OWN_DECISION {
            verdicts.first().map_or_else(|| AgentId::new("?"), |v| v.agent.clone())
        } else {
            AgentId::new(decided.winner.clone())
        };
        self.shared.publish(Event::TaskSucceeded {
            task: self.task.clone(),
            agent,
            attempt: self.attempt,
            duration_ms: self.began.elapsed().as_millis() as u64,
            output: output.clone(),
            usage: None,
            simulated: self.simulated,
            details: crate::event::AnswerDetails::default(),
        });
        Outcome::Succeeded(Arc::from(output))
    }

    /// No member is blamed: a panel that cannot decide says nothing of one agent's health.
    fn fail(&self, error: String) -> Outcome {
        self.shared.publish(Event::TaskFailed {
            task: self.task.clone(),
            agent: None,
            attempt: self.attempt,
            duration_ms: self.began.elapsed().as_millis() as u64,
            error,
        });
        Outcome::Failed
    }
}

/// A member's verdict (or why it has none), and whether it ran on a simulated backend.
struct MemberAnswer {
    verdict: Result<Verdict, String>,
    simulated: bool,
    /// The budget reason when asking this member found a budget spent or reached it.
    budget: Option<String>,
}

async fn ask_member(
    shared: &Arc<RunShared>,
    job: &Job,
    attempt: u32,
    panel: &PlannedPanel,
    member: &AgentId,
    names: &[String],
) -> MemberAnswer {
    let step = &shared.plan.steps[job.task];
    let first = member_prompt(&step.description, &panel.options, names, member.as_str());
    let context = panel_context(job, "member", member, &panel.options, names);
    let mut prompt = first.clone();
    let mut simulated = false;
    for asked in 1..=2 {
        let answer = ask_agent(shared, job, attempt, member, prompt.clone(), context.clone()).await;
        simulated |= answer.simulated;
        let problem = match answer.text {
            Ok(text) => match parse_verdict(&text, &panel.options) {
                Ok(verdict) => {
                    shared.publish(Event::PanelVerdict {
                        task: step.id.clone(),
                        agent: member.clone(),
                        asked,
                        verdict: Some(verdict.clone()),
                        error: None,
                    });
                    return MemberAnswer { verdict: Ok(verdict), simulated, budget: None };
                }
                Err(problem) if asked == 1 => {
                    prompt = reask_prompt(&first, &problem);
                    continue;
                }
                Err(problem) => format!("no usable verdict after asking twice: {problem}"),
            },
            // An agent that could not answer is not asked again: its error is the reason.
            Err(error) => error,
        };
        let budget = answer.budget;
        shared.publish(Event::PanelVerdict {
            task: step.id.clone(),
            agent: member.clone(),
            asked,
            verdict: None,
            error: Some(problem.clone()),
        });
        return MemberAnswer { verdict: Err(problem), simulated, budget };
    }
    MemberAnswer { verdict: Err("not asked".to_owned()), simulated, budget: None }
}

/// Ask the third agent with the sides in panel order and then reversed.
async fn third_opinion(
    shared: &Arc<RunShared>,
    job: &Job,
    attempt: u32,
    verdicts: &[MemberVerdict],
    positions: &[Position],
    third: &AgentId,
) -> StepResult {
    let step = &shared.plan.steps[job.task];
    let forward: Vec<usize> = (0..positions.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    let mut answers = Vec::with_capacity(2);
    for order in [&forward, &backward] {
        let options: Vec<String> = order.iter().map(|&p| positions[p].decision.clone()).collect();
        let members: Vec<String> = verdicts.iter().map(|v| v.agent.to_string()).collect();
        let prompt = ladder::third_opinion_prompt(&step.description, verdicts, positions, order);
        let context = panel_context(job, "third_opinion", third, &options, &members);
        let answer = ask_agent(shared, job, attempt, third, prompt, context).await;
        answers.push(
            answer
                .text
                .and_then(|text| parse_verdict(&text, &options).map_err(|e| e.to_string()))
                .map(|v| v.decision),
        );
    }
    let reversed = answers.pop().unwrap_or_else(|| Err("not asked".into()));
    let in_order = answers.pop().unwrap_or_else(|| Err("not asked".into()));
    ladder::third_opinion(third, positions, &in_order, &reversed)
}

/// One agent's answer text, or why it gave none.
struct Answer {
    text: Result<String, String>,
    simulated: bool,
    /// Set when this call found the task's or the run's budget spent, or reached it.
    budget: Option<String>,
}

/// One call of one agent for this panel task: breaker, pool instance, executor. Its
/// attempt events carry the task's id and the agent's name.
async fn ask_agent(
    shared: &Arc<RunShared>,
    job: &Job,
    attempt: u32,
    agent: &AgentId,
    prompt: String,
    context: Value,
) -> Answer {
    let engine = &shared.engine;
    let step = &shared.plan.steps[job.task];
    let failed = |error: String| Answer { text: Err(error), simulated: false, budget: None };
    // A panel's calls count against the task's budget and the run's, like attempts: a
    // budget already spent is not asked again.
    let spent = shared.with_panel_meter(job.task, |meter| spent_budget(shared, meter));
    if let Some(reason) = spent {
        return Answer { text: Err(reason.clone()), simulated: false, budget: Some(reason) };
    }
    let permit = match engine.breakers.try_acquire(agent) {
        Ok(permit) => permit,
        Err(refusal) => return failed(refusal.to_string()),
    };
    let Some(definition) = engine.definition(agent) else {
        return failed(format!("agent `{agent}` is no longer in the agent pool"));
    };
    let backend = if *agent == step.agent {
        step.backend.to_string()
    } else {
        engine.backend_for(&shared.plan, definition.backend.as_deref())
    };
    let executor = match engine.executors.get(&backend) {
        Ok(executor) => executor,
        Err(e) => return failed(e.to_string()),
    };
    // Before the pool: a call waiting on a rate limit holds no instance.
    if !engine.rate_limits.is_empty() && !wait_for_rate_limit(shared, job, agent, &backend).await {
        return failed("cancelled".into());
    }
    let acquired = tokio::select! {
        biased;
        () = job.cancel.cancelled() => return failed("cancelled".into()),
        acquired = engine.pool.acquire_for(Some(&shared.run), agent, definition.max_instances, true) => acquired,
    };
    let instance = match acquired {
        Ok(instance) => instance,
        Err(e) => return failed(e.to_string()),
    };
    let _ = engine.pool.start_work(instance, Some(step.id.clone()));
    let simulated = executor.is_simulated();
    shared.publish(Event::TaskStarted {
        task: step.id.clone(),
        agent: agent.clone(),
        attempt,
        instance,
        backend: backend.clone(),
        simulated,
    });
    let request = ExecRequest {
        run: shared.run.clone(),
        task: step.id.clone(),
        agent: agent.clone(),
        attempt,
        system_prompt: definition.system_prompt.clone(),
        task_description: prompt,
        context,
        timeout: step.timeout,
        project_dir: engine.project_dir.clone(),
        model: definition.model.clone(),
        tools: definition.tools.clone(),
        workdir: None,
    };
    let began = Instant::now();
    // Member answers pass the same safety rules as any output, as they stream.
    let guard = StreamGuard::new(agent, attempt, job.cancel.child_token());
    let (sink, tail) = output_sink(shared, job.task, &guard);
    let result = tokio::time::timeout(
        step.timeout.saturating_add(TIMEOUT_GRACE),
        executor.execute(request, sink, guard.stop().clone()),
    )
    .await
    .unwrap_or(Err(crate::exec::ExecError::Timeout(step.timeout)));
    tail.flush();
    let elapsed = began.elapsed();
    let _ = engine.pool.release(instance);
    let mut budget = None;
    let text = match result {
        Ok(mut outcome) => {
            engine.breakers.record_success(permit, elapsed);
            let checked = Checked { shared, task: job.task, agent, attempt };
            budget = shared.with_panel_meter(job.task, |meter| {
                charge(&checked, &backend, definition.model.as_deref(), meter, &mut outcome)
            });
            match &budget {
                // What reached a budget is not counted: the panel stops there.
                Some(reason) => Err(reason.clone()),
                None => Ok(outcome.output),
            }
        }
        Err(_) if job.cancel.is_cancelled() => Err("cancelled".to_owned()),
        Err(error) => {
            if error.is_permanent() {
                drop(permit);
            } else {
                engine.breakers.record_failure(permit, &error.to_string(), elapsed);
            }
            Err(error.to_string())
        }
    };
    Answer { text, simulated, budget }
}
