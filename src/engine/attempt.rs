//! The worker of one started task: breaker (walking the fallback chain), pool instance,
//! executor, and retries with backoff. It publishes the task's own events and reports the
//! outcome to the scheduler.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::safety::{self, Checked, Review, StreamGuard};
use super::scheduler::{Msg, Outcome, RunShared};
use super::workspace::{self, TaskWorkspace};
use crate::config::{BackendConfig, Limits, OnBudget, Price};
use crate::event::{BudgetScope, Event, OutputStream};
use crate::exec::{ExecError, ExecOutcome, ExecRequest, OutputSink};
use crate::governance::Decision;
use crate::ids::AgentId;
use crate::redact::StreamRedactor;
use crate::resilience::limits::{Crossing, Meter, MustWait, Spend, budget_reason};
use crate::resilience::retry_delay;

/// Executors enforce their own timeout; this much later the engine stops waiting for one
/// that does not.
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct Job {
    pub(crate) task: usize,
    /// The worker that runs it; reported back so the scheduler knows it is free again.
    pub(crate) worker: usize,
    /// Kept only while the job runs, so a finished run's scheduler can end.
    pub(crate) reply: mpsc::UnboundedSender<Msg>,
    /// Number of the first attempt of this round (attempt numbers go on across retries).
    pub(crate) first_attempt: u32,
    /// Failed attempts of this round made before (by the process a resumed run crashed in).
    pub(crate) failures: u32,
    pub(crate) context: Value,
    pub(crate) cancel: CancellationToken,
    /// A panel task's conflict stored before a crash: go on from it (see `panel::run`).
    pub(crate) conflict: Option<Arc<crate::model::ConflictModel>>,
}

/// One of at most `max_parallel` long-lived workers of a run: it runs the jobs the
/// scheduler hands it, one at a time, so starting a task costs a channel send rather than a
/// task spawn. It ends when the scheduler drops its sender.
pub(crate) async fn serve(shared: Arc<RunShared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        // A consumer of the events far behind (the run store, the printer) holds up new
        // attempts, so a long run's events never pile up in memory.
        shared.engine.bus.room().await;
        // A panic inside an attempt (a bug) fails its task, and so its run, instead of
        // leaving the scheduler waiting for ever on a worker that is gone.
        let run = std::panic::AssertUnwindSafe(async {
            if shared.plan.steps[job.task].panel.is_some() {
                super::panel::run(&shared, &job).await
            } else {
                attempts(&shared, &job).await
            }
        });
        let (attempts, outcome) = match futures::FutureExt::catch_unwind(run).await {
            Ok(done) => done,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                let step = &shared.plan.steps[job.task];
                tracing::error!(task = %step.id, panic = %what, "attempt panicked");
                shared.publish(Event::TaskFailed {
                    task: step.id.clone(),
                    agent: Some(step.agent.clone()),
                    attempt: job.first_attempt,
                    duration_ms: 0,
                    error: format!("internal error: the attempt panicked ({what})"),
                });
                (job.first_attempt, Outcome::Failed)
            }
        };
        let _ =
            job.reply.send(Msg::Finished { task: job.task, worker: job.worker, attempts, outcome });
    }
}

/// Returns the number of the last attempt made and how the task ended.
async fn attempts(shared: &Arc<RunShared>, job: &Job) -> (u32, Outcome) {
    let engine = &shared.engine;
    let step = &shared.plan.steps[job.task];
    let mut attempt = job.first_attempt.saturating_sub(1);
    let mut failures = job.failures;
    let mut agent = step.agent.clone();
    // Agents tried so far along the fallback chain; never visited twice.
    let mut chain = vec![agent.clone()];
    // The task's worktree, made by its first attempt and reused by the next.
    let mut held = TaskWorkspace::default();
    // What this task's attempts spent, against its own budget.
    let mut meter = Meter::new(step.budget());
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
            step.backend.to_string()
        } else {
            engine.backend_for(&shared.plan, definition.backend.as_deref())
        };
        let executor = match engine.executors.get(&backend) {
            Ok(executor) => executor,
            Err(e) => return fail(attempt, &agent, Duration::ZERO, e.to_string()),
        };

        // A budget already spent stops the task before it asks the backend again.
        if let Some(reason) = spent_budget(shared, &meter) {
            return fail(attempt, &agent, Duration::ZERO, reason);
        }
        // Before the pool: a task waiting on a rate limit holds no instance.
        if !engine.rate_limits.is_empty()
            && !wait_for_rate_limit(shared, job, &agent, &backend).await
        {
            return (attempt, Outcome::Cancelled);
        }

        let acquired = tokio::select! {
            biased;
            () = job.cancel.cancelled() => return (attempt, Outcome::Cancelled),
            acquired = engine.pool.acquire_for(
                Some(&shared.run),
                &agent,
                definition.max_instances,
                true,
            ) => acquired,
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
            // The prompt a model is sent holds no secret either.
            task_description: engine.bus.redactor().map_or_else(
                || step.description.clone(),
                |r| r.redact(&step.description).into_owned(),
            ),
            context: job.context.clone(),
            timeout: step.timeout,
            project_dir: engine.project_dir.clone(),
            model: definition.model.clone(),
            tools: definition.tools.clone(),
            workdir,
        };
        let began = Instant::now();
        // Its own token, so that a tool call a safety rule blocks can stop this attempt alone.
        let guard = StreamGuard::new(&agent, attempt, job.cancel.child_token());
        let (sink, tail) = output_sink(shared, job.task, &guard);
        let result = tokio::time::timeout(
            step.timeout.saturating_add(TIMEOUT_GRACE),
            executor.execute(request, sink, guard.stop().clone()),
        )
        .await
        .unwrap_or(Err(ExecError::Timeout(step.timeout)));
        tail.flush();
        // The answer is redacted before anything sees it: the event, the store and the
        // tasks that depend on it.
        let result = match (result, engine.bus.redactor()) {
            (Ok(mut outcome), Some(redactor)) => {
                outcome.output = redactor.redact_string(outcome.output);
                redactor.details(&mut outcome.details);
                Ok(outcome)
            }
            (result, _) => result,
        };
        let elapsed = began.elapsed();
        let _ = engine.pool.release(instance);
        let ended = match &result {
            Ok(_) => "succeeded",
            Err(_) if job.cancel.is_cancelled() => "cancelled",
            Err(_) => "failed",
        };
        workspace::leave(shared, job.task, attempt, ended, &mut held).await;
        if let Some(reason) = guard.blocked() {
            // What the agent did is the problem, not its health: the permit goes unsettled.
            drop(permit);
            return fail(attempt, &agent, elapsed, reason);
        }

        let error = match result {
            Ok(mut outcome) => {
                engine.breakers.record_success(permit, elapsed);
                let mut holds = Vec::new();
                let mut held_by = HeldBy::default();
                let checked = Checked { shared, task: job.task, agent: &agent, attempt };
                if let Some(over) = charge(
                    &checked,
                    &backend,
                    definition.model.as_deref(),
                    &mut meter,
                    &mut outcome,
                ) {
                    match engine.settings.policies.on_budget {
                        OnBudget::Stop => return fail(attempt, &agent, elapsed, over),
                        OnBudget::Approve => {
                            holds.push(over);
                            held_by.budget = true;
                        }
                    }
                }
                // On the redacted output, so no excerpt shows a secret.
                match safety::review(&checked, &outcome) {
                    Review::Pass => {}
                    Review::Fail(reason) => return fail(attempt, &agent, elapsed, reason),
                    Review::Hold(reasons) => {
                        holds.extend(reasons);
                        held_by.safety = true;
                    }
                }
                // The wait leaves the worker: the scheduler parks the task, and its slot goes
                // to the next ready task.
                let decision = (!holds.is_empty()).then(|| safety::hold(&checked, holds));
                let done = Done {
                    shared: Arc::clone(shared),
                    task: job.task,
                    agent,
                    attempt,
                    elapsed,
                    simulated,
                };
                let Some(decision) = decision else {
                    return (attempt, done.succeed(outcome));
                };
                return (
                    attempt,
                    Outcome::Waiting(Box::pin(done.after(decision, held_by, outcome))),
                );
            }
            // Cancellation says nothing about the agent's health: the permit is dropped
            // unsettled.
            Err(_) if job.cancel.is_cancelled() => return (attempt, Outcome::Cancelled),
            Err(error) => error,
        };
        // A permanent error says nothing about the agent's health: its permit is released
        // without an outcome, so a bad key or URL cannot open the breaker.
        if error.is_permanent() {
            drop(permit);
        } else {
            engine.breakers.record_failure(permit, &error.to_string(), elapsed);
        }
        failures += 1;
        let delay = match next_step(
            &error,
            failures,
            step.retries,
            step.timeout,
            &engine.settings.limits,
        ) {
            NextStep::Retry(delay) => delay,
            NextStep::Fail(error) => return fail(attempt, &agent, elapsed, error),
        };
        let error = error.to_string();
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

/// Why a succeeded attempt's output waits for a reviewer.
#[derive(Debug, Clone, Copy, Default)]
struct HeldBy {
    safety: bool,
    budget: bool,
}

impl HeldBy {
    fn words(self) -> &'static str {
        match (self.safety, self.budget) {
            (true, true) => "held by a safety rule and at its budget",
            (false, true) => "held at its budget",
            _ => "held by a safety rule",
        }
    }
}

/// A succeeded attempt on its way to the task's end, perhaps after a reviewer's decision.
struct Done {
    shared: Arc<RunShared>,
    task: usize,
    agent: AgentId,
    attempt: u32,
    elapsed: Duration,
    simulated: bool,
}

impl Done {
    fn succeed(self, outcome: ExecOutcome) -> Outcome {
        let output: Arc<str> = Arc::from(outcome.output.as_str());
        self.shared.publish(Event::TaskSucceeded {
            task: self.shared.plan.steps[self.task].id.clone(),
            agent: self.agent,
            attempt: self.attempt,
            duration_ms: self.elapsed.as_millis() as u64,
            output: outcome.output,
            usage: outcome.usage,
            simulated: self.simulated,
            details: outcome.details,
        });
        Outcome::Succeeded(output)
    }

    fn fail(self, error: String) -> Outcome {
        self.shared.publish(Event::TaskFailed {
            task: self.shared.plan.steps[self.task].id.clone(),
            agent: Some(self.agent),
            attempt: self.attempt,
            duration_ms: self.elapsed.as_millis() as u64,
            error,
        });
        Outcome::Failed
    }

    /// The held output's end: approved, it goes through (and a reached run budget grows by
    /// its size again); rejected, the task fails.
    async fn after(
        self,
        decision: impl std::future::Future<Output = Decision>,
        held_by: HeldBy,
        outcome: ExecOutcome,
    ) -> Outcome {
        let held = held_by.words();
        match decision.await {
            Decision::Approved { .. } => {
                let budget = self.shared.budget;
                self.shared.meter().raise(budget);
                self.succeed(outcome)
            }
            Decision::Rejected { by, note } => self.fail(match note {
                Some(note) => format!("output {held}, rejected by {by}: {note}"),
                None => format!("output {held}, rejected by {by}"),
            }),
            Decision::Cancelled { reason } => self.fail(format!("output approval {reason}")),
        }
    }
}

/// Waits while `backend`'s rate limit holds the attempt back, saying so each time. False
/// when the task was cancelled meanwhile.
pub(super) async fn wait_for_rate_limit(
    shared: &Arc<RunShared>,
    job: &Job,
    agent: &AgentId,
    backend: &str,
) -> bool {
    while let Err(MustWait { limit, wait }) = shared.engine.rate_limits.try_start(backend) {
        shared.publish(Event::RateLimited {
            task: shared.plan.steps[job.task].id.clone(),
            agent: agent.clone(),
            backend: backend.to_owned(),
            limit: limit.to_owned(),
            wait_ms: wait.as_millis() as u64,
        });
        tokio::select! {
            biased;
            () = job.cancel.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
    true
}

/// Why the task may not start another attempt: its own budget, or the run's, is spent.
pub(super) fn spent_budget(shared: &RunShared, meter: &Meter) -> Option<String> {
    if let Some(crossing) = meter.exceeded() {
        return Some(budget_reason("task", &crossing));
    }
    if shared.budget.is_unlimited() {
        return None;
    }
    shared.meter().exceeded().map(|crossing| budget_reason("run", &crossing))
}

/// Counts what a succeeded attempt spent (when its backend reported tokens or a cost)
/// against the backend's token rate, the task's budget and the run's: `TaskSpent`, a
/// `BudgetWarning` at 80%, a `BudgetExceeded` at 100%. The cost is the backend's own, else
/// priced from `prices` by the agent's model, else the backend's; it is written into the
/// answer's details when the backend gave none. Returns the reason when a budget is reached.
pub(super) fn charge(
    checked: &Checked<'_>,
    backend: &str,
    agent_model: Option<&str>,
    meter: &mut Meter,
    outcome: &mut ExecOutcome,
) -> Option<String> {
    if outcome.usage.is_none() && outcome.details.cost_usd.is_none() {
        return None;
    }
    let shared = checked.shared;
    let engine = &shared.engine;
    let price = price_of(&engine.settings, backend, agent_model);
    let (tokens, cost) = Spend::of_attempt(outcome.usage.as_ref(), outcome.details.cost_usd, price);
    if outcome.details.cost_usd.is_none() {
        outcome.details.cost_usd = cost;
    }
    let task = &shared.plan.steps[checked.task].id;
    shared.publish(Event::TaskSpent {
        task: task.clone(),
        attempt: checked.attempt,
        tokens,
        cost_usd: cost,
    });
    engine.rate_limits.spent(backend, tokens);
    let mut reached: Option<(BudgetScope, Crossing)> = None;
    let mut note = |scope: BudgetScope, warned: Vec<Crossing>, over: Option<Crossing>| {
        for crossing in warned {
            shared.publish(Event::BudgetWarning {
                task: task.clone(),
                scope,
                measure: crossing.measure,
                spent: crossing.spent,
                limit: crossing.limit,
            });
        }
        if let Some(crossing) = over {
            shared.publish(Event::BudgetExceeded {
                task: task.clone(),
                scope,
                measure: crossing.measure,
                spent: crossing.spent,
                limit: crossing.limit,
            });
            reached.get_or_insert((scope, crossing));
        }
    };
    // An unlimited meter only counts: it never warns nor is exceeded.
    let warned = meter.add(tokens, cost);
    note(BudgetScope::Task, warned, meter.exceeded());
    {
        let mut run = shared.meter();
        let warned = run.add(tokens, cost);
        let over = run.exceeded();
        drop(run);
        note(BudgetScope::Run, warned, over);
    }
    reached.map(|(scope, crossing)| budget_reason(scope.word(), &crossing))
}

/// The price of the agent's model, else of the model `backend` names.
fn price_of<'a>(
    settings: &'a crate::config::Settings,
    backend: &str,
    agent_model: Option<&str>,
) -> Option<&'a Price> {
    if settings.prices.is_empty() {
        return None;
    }
    let configured = match settings.backends.get(backend) {
        Some(BackendConfig::Openai(http) | BackendConfig::Anthropic(http)) => http.model.as_deref(),
        Some(config) => config.coding_cli().and_then(|(_, cli)| cli.model.as_deref()),
        None => None,
    };
    agent_model
        .and_then(|m| settings.prices.get(m))
        .or_else(|| configured.and_then(|m| settings.prices.get(m)))
}

/// What the engine does after a failed attempt.
#[derive(Debug, PartialEq)]
enum NextStep {
    /// Try again after this wait.
    Retry(Duration),
    /// The task fails with this message.
    Fail(String),
}

/// The one retry rule of a task. Executors never retry on their own, so the task's
/// `retries` (workflow, else `limits.task_retries`, else an HTTP backend's `max_retries`)
/// is the whole budget. A permanent error (bad key, bad request, not found, bad settings) is
/// not retried. A transient one is retried after the backoff, or after the server's
/// `Retry-After` when that is longer; a `Retry-After` longer than the task's timeout fails
/// the task at once rather than wait for a server that asked not to be called that soon.
fn next_step(
    error: &ExecError,
    failures: u32,
    retries: u32,
    timeout: Duration,
    limits: &Limits,
) -> NextStep {
    if error.is_permanent() {
        return NextStep::Fail(format!("{error} (not retried: trying again cannot help)"));
    }
    if failures > retries {
        return NextStep::Fail(error.to_string());
    }
    let retry_after = error.retry_after();
    if let Some(wait) = retry_after.filter(|wait| *wait > timeout) {
        return NextStep::Fail(format!(
            "{error} (not retried: the server asks to wait {}, longer than the task's timeout of {})",
            crate::words::duration(wait),
            crate::words::duration(timeout)
        ));
    }
    let backoff =
        retry_delay(failures, limits.retry_base_delay, limits.retry_max_delay, &mut rand::rng());
    NextStep::Retry(retry_after.map_or(backoff, |wait| wait.max(backoff)))
}

/// Each line or token chunk becomes a `TaskOutput` event of this run; a tool call is checked
/// against the safety rules as it streams, once redacted (see `guard`). With a redactor, each
/// stream goes through its own [`StreamRedactor`] so a secret split across chunks is caught;
/// what it holds back is published by the returned [`OutputTail`] when the attempt ends.
pub(super) fn output_sink(
    shared: &Arc<RunShared>,
    task: usize,
    guard: &StreamGuard,
) -> (OutputSink, OutputTail) {
    let guard = guard.clone();
    let Some(redactor) = shared.engine.bus.redactor().cloned() else {
        let shared = Arc::clone(shared);
        let sink: OutputSink = Arc::new(move |stream, text| {
            guard.check(&shared, task, stream, &text);
            let task = shared.plan.steps[task].id.clone();
            shared.publish(Event::TaskOutput { task, stream, text });
        });
        return (sink, OutputTail { streams: None });
    };
    let streams: Streams = Arc::default();
    let tail = OutputTail { streams: Some((Arc::clone(&streams), Arc::clone(shared), task)) };
    let shared = Arc::clone(shared);
    let sink: OutputSink = Arc::new(move |stream, text| {
        let ready = {
            let mut streams = streams.lock().unwrap_or_else(PoisonError::into_inner);
            let index = streams.iter().position(|(s, _)| *s == stream).unwrap_or_else(|| {
                streams.push((stream, redactor.stream()));
                streams.len() - 1
            });
            let redactor = &mut streams[index].1;
            match stream {
                // One event per line (or per call): whole units, redacted at once.
                OutputStream::Stdout
                | OutputStream::Stderr
                | OutputStream::ToolCall
                | OutputStream::ToolResult => redactor.push_line(&text).unwrap_or_default(),
                OutputStream::Tokens | OutputStream::Reasoning => redactor.push(&text),
            }
        };
        if !ready.is_empty() {
            guard.check(&shared, task, stream, &ready);
            let task = shared.plan.steps[task].id.clone();
            shared.publish(Event::TaskOutput { task, stream, text: ready });
        }
    });
    (sink, tail)
}

/// One redactor per output stream of an attempt.
type Streams = Arc<Mutex<Vec<(OutputStream, StreamRedactor)>>>;

/// The output an attempt's stream redactors still hold back.
pub(super) struct OutputTail {
    streams: Option<(Streams, Arc<RunShared>, usize)>,
}

impl OutputTail {
    /// Publish what is held back (the attempt ended, so nothing more can join it).
    pub(super) fn flush(self) {
        let Some((streams, shared, task)) = self.streams else { return };
        let mut streams = streams.lock().unwrap_or_else(PoisonError::into_inner);
        for (stream, redactor) in streams.iter_mut() {
            let text = redactor.finish();
            if !text.is_empty() {
                let task = shared.plan.steps[task].id.clone();
                shared.publish(Event::TaskOutput { task, stream: *stream, text });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn http(status: u16, retry_after: Option<Duration>) -> ExecError {
        ExecError::Backend {
            backend: "openai".into(),
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            source: Box::new(ExecError::Http { status, message: "no".into(), retry_after }),
        }
    }

    fn limits() -> Limits {
        Limits {
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_millis(400),
            ..Limits::default()
        }
    }

    #[test]
    fn permanent_errors_are_never_retried() {
        for status in [400, 401, 403, 404, 422] {
            let next = next_step(&http(status, None), 1, 5, TIMEOUT, &limits());
            assert!(
                matches!(&next, NextStep::Fail(m) if m.contains("not retried")),
                "{status}: {next:?}"
            );
        }
        let missing = ExecError::MissingKey("OPENAI_API_KEY".into());
        assert!(matches!(next_step(&missing, 1, 5, TIMEOUT, &limits()), NextStep::Fail(_)));
    }

    #[test]
    fn transient_errors_use_the_budget_once() {
        for status in [408, 429, 500, 503, 529] {
            assert!(matches!(
                next_step(&http(status, None), 1, 1, TIMEOUT, &limits()),
                NextStep::Retry(_)
            ));
            assert!(matches!(
                next_step(&http(status, None), 2, 1, TIMEOUT, &limits()),
                NextStep::Fail(_)
            ));
        }
        let stalled = ExecError::Stalled(Duration::from_secs(30));
        assert!(matches!(next_step(&stalled, 1, 1, TIMEOUT, &limits()), NextStep::Retry(_)));
    }

    #[test]
    fn retry_after_sets_the_wait_unless_it_outlasts_the_timeout() {
        let wait = Duration::from_secs(7);
        assert_eq!(
            next_step(&http(429, Some(wait)), 1, 3, TIMEOUT, &limits()),
            NextStep::Retry(wait)
        );
        let short = next_step(&http(429, Some(Duration::from_millis(1))), 1, 3, TIMEOUT, &limits());
        assert!(matches!(short, NextStep::Retry(d) if d >= Duration::from_millis(50)), "{short:?}");
        let long = next_step(&http(429, Some(Duration::from_secs(120))), 1, 3, TIMEOUT, &limits());
        match long {
            NextStep::Fail(message) => {
                assert!(message.contains("HTTP 429"), "{message}");
                assert!(message.contains("2m"), "{message}");
            }
            other @ NextStep::Retry(_) => panic!("expected Fail, got {other:?}"),
        }
    }
}
