//! The worker of one started task: breaker (walking the fallback chain), pool instance,
//! executor, and retries with backoff. It publishes the task's own events and reports the
//! outcome to the scheduler.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::scheduler::{Msg, Outcome, RunShared};
use super::workspace::{self, TaskWorkspace};
use crate::event::Event;
use crate::exec::{ExecError, ExecRequest, OutputSink};
use crate::ids::AgentId;
use crate::resilience::retry_delay;

/// Executors enforce their own timeout; this much later the engine stops waiting for one
/// that does not.
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct Job {
    pub(crate) task: usize,
    /// The worker that runs it; reported back so the scheduler knows it is free again.
    pub(crate) worker: usize,
    /// Kept only while the job runs, so a finished run's scheduler can end.
    pub(crate) reply: mpsc::UnboundedSender<Msg>,
    /// Number of the first attempt of this round (attempt numbers go on across retries).
    pub(crate) first_attempt: u32,
    pub(crate) context: Value,
    pub(crate) cancel: CancellationToken,
}

/// One of at most `max_parallel` long-lived workers of a run: it runs the jobs the
/// scheduler hands it, one at a time, so starting a task costs a channel send rather than a
/// task spawn. It ends when the scheduler drops its sender.
pub(crate) async fn serve(shared: Arc<RunShared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let (attempts, outcome) = attempts(&shared, &job).await;
        let _ =
            job.reply.send(Msg::Finished { task: job.task, worker: job.worker, attempts, outcome });
    }
}

/// Returns the number of the last attempt made and how the task ended.
async fn attempts(shared: &Arc<RunShared>, job: &Job) -> (u32, Outcome) {
    let engine = &shared.engine;
    let step = &shared.plan.steps[job.task];
    let mut attempt = job.first_attempt.saturating_sub(1);
    let mut failures = 0;
    let mut agent = step.agent.clone();
    // Agents tried so far along the fallback chain; never visited twice.
    let mut chain = vec![agent.clone()];
    // The task's worktree, made by its first attempt and reused by the next.
    let mut held = TaskWorkspace::default();
    let fail = |attempt: u32, agent: &AgentId, duration: Duration, error: String| {
        shared.publish(Event::TaskFailed {
            task: step.id.clone(),
            agent: Some(agent.clone()),
            attempt,
            duration_ms: duration.as_millis() as u64,
            error,
        });
        (attempt, Outcome::Failed)
    };
    loop {
        if job.cancel.is_cancelled() {
            return (attempt, Outcome::Cancelled);
        }
        let permit = match engine.breakers.try_acquire(&agent) {
            Ok(permit) => permit,
            Err(refusal) => {
                let next = engine.definition(&agent).and_then(|d| d.fallback.clone());
                match next {
                    Some(next) if !chain.contains(&next) && engine.definition(&next).is_some() => {
                        shared.publish(Event::TaskFallback {
                            task: step.id.clone(),
                            from: agent.clone(),
                            to: next.clone(),
                            reason: refusal.to_string(),
                        });
                        chain.push(next.clone());
                        agent = next;
                        continue;
                    }
                    next => {
                        let why = match next {
                            None => "no fallback".to_owned(),
                            Some(n) if chain.contains(&n) => {
                                format!("fallback `{n}` already tried")
                            }
                            Some(n) => format!("fallback `{n}` is not in the agent pool"),
                        };
                        let error = format!(
                            "{refusal}; fallback chain exhausted ({}: {why})",
                            chain.iter().map(AgentId::as_str).collect::<Vec<_>>().join(" → ")
                        );
                        return fail(attempt, &agent, Duration::ZERO, error);
                    }
                }
            }
        };
        let Some(definition) = engine.definition(&agent) else {
            let error = format!("agent `{agent}` is no longer in the agent pool");
            return fail(attempt, &agent, Duration::ZERO, error);
        };
        let backend = if agent == step.agent {
            step.backend.clone()
        } else {
            engine.backend_for(&shared.plan, definition.backend.as_deref())
        };
        let executor = match engine.executors.get(&backend) {
            Ok(executor) => executor,
            Err(e) => return fail(attempt, &agent, Duration::ZERO, e.to_string()),
        };

        let acquired = tokio::select! {
            biased;
            () = job.cancel.cancelled() => return (attempt, Outcome::Cancelled),
            acquired = engine.pool.acquire(&agent, definition.max_instances, true) => acquired,
        };
        let instance = match acquired {
            Ok(instance) => instance,
            Err(e) => return fail(attempt, &agent, Duration::ZERO, e.to_string()),
        };
        attempt += 1;
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
        let workdir = match workspace::enter(shared, job.task, attempt, &mut held).await {
            Ok(workdir) => workdir,
            Err(error) => {
                let _ = engine.pool.release(instance);
                return fail(attempt, &agent, Duration::ZERO, error.to_string());
            }
        };
        let request = ExecRequest {
            run: shared.run.clone(),
            task: step.id.clone(),
            agent: agent.clone(),
            attempt,
            system_prompt: definition.system_prompt.clone(),
            task_description: step.description.clone(),
            context: job.context.clone(),
            timeout: step.timeout,
            project_dir: engine.project_dir.clone(),
            model: definition.model.clone(),
            workdir,
        };
        let began = Instant::now();
        let result = tokio::time::timeout(
            step.timeout + TIMEOUT_GRACE,
            executor.execute(request, output_sink(shared, job.task), job.cancel.clone()),
        )
        .await
        .unwrap_or(Err(ExecError::Timeout(step.timeout)));
        let elapsed = began.elapsed();
        let _ = engine.pool.release(instance);
        let ended = match &result {
            Ok(_) => "succeeded",
            Err(_) if job.cancel.is_cancelled() => "cancelled",
            Err(_) => "failed",
        };
        workspace::leave(shared, job.task, attempt, ended, &mut held).await;

        let error = match result {
            Ok(outcome) => {
                engine.breakers.record_success(permit, elapsed);
                let output: Arc<str> = Arc::from(outcome.output.as_str());
                shared.publish(Event::TaskSucceeded {
                    task: step.id.clone(),
                    agent,
                    attempt,
                    duration_ms: elapsed.as_millis() as u64,
                    output: outcome.output,
                    usage: outcome.usage,
                    simulated,
                    details: outcome.details,
                });
                return (attempt, Outcome::Succeeded(output));
            }
            // Cancellation says nothing about the agent's health: the permit is dropped
            // unsettled.
            Err(_) if job.cancel.is_cancelled() => return (attempt, Outcome::Cancelled),
            Err(error) => error,
        };
        let error = error.to_string();
        engine.breakers.record_failure(permit, &error, elapsed);
        failures += 1;
        if failures > step.retries {
            return fail(attempt, &agent, elapsed, error);
        }
        let limits = &engine.settings.limits;
        let delay = retry_delay(
            failures,
            limits.retry_base_delay,
            limits.retry_max_delay,
            &mut rand::rng(),
        );
        shared.publish(Event::TaskRetrying {
            task: step.id.clone(),
            agent: agent.clone(),
            attempt,
            delay_ms: delay.as_millis() as u64,
            duration_ms: elapsed.as_millis() as u64,
            error,
        });
        tokio::select! {
            biased;
            () = job.cancel.cancelled() => return (attempt, Outcome::Cancelled),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Each line or token chunk becomes a `TaskOutput` event of this run.
fn output_sink(shared: &Arc<RunShared>, task: usize) -> OutputSink {
    let shared = Arc::clone(shared);
    Arc::new(move |stream, text| {
        let task = shared.plan.steps[task].id.clone();
        shared.publish(Event::TaskOutput { task, stream, text });
    })
}
