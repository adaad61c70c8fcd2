//! The scheduler of one run. It owns every task's state in one tokio task, so no locks are
//! needed: workers and operators send it messages, it answers with state changes and events.
//!
//! Cost per task stays constant: each task keeps a counter of dependencies not yet succeeded,
//! a finished task decrements its dependents' counters and pushes those reaching zero onto a
//! ready queue. Pending tasks cost no tokio task: a run has at most `max_parallel` workers,
//! spawned when first needed, and starting a task hands it to an idle one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempt::{self, Job};
use super::error::EngineError;
use super::handle::{Control, RunPhase};
use super::{EngineInner, approval};
use crate::event::{Event, RunStatus};
use crate::ids::{AgentId, RunId, TaskId};
use crate::model::ConflictModel;
use crate::resume::ResumePoint;
use crate::workflow::Plan;

pub use crate::model::TaskStatus;

/// How a worker's task ended.
pub(crate) enum Outcome {
    Succeeded(Arc<str>),
    Failed,
    Cancelled,
    /// A panel's conflict waits for a person: the worker is free, the task is not done.
    /// The future publishes the task's end and says how it went.
    Waiting(WaitForPerson),
}

/// The rest of a panel task once a person decides.
pub(crate) type WaitForPerson =
    std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>;

pub(crate) enum Msg {
    Finished {
        task: usize,
        worker: usize,
        attempts: u32,
        outcome: Outcome,
    },
    Approval {
        task: usize,
        generation: u32,
        verdict: approval::Verdict,
    },
    /// A person settled a panel task's conflict (or its wait ended otherwise).
    Decided {
        task: usize,
        generation: u32,
        outcome: Outcome,
    },
    Control(Control),
}

/// What every worker of the run shares.
pub(crate) struct RunShared {
    pub(crate) run: RunId,
    pub(crate) plan: Arc<Plan>,
    pub(crate) engine: Arc<EngineInner>,
    /// The run's budget: the workflow's, else `policies.budget`.
    pub(crate) budget: crate::config::Budget,
    /// What the run's attempts spent, against `budget`; locked once per attempt that
    /// reported spend.
    pub(crate) spend: crate::resilience::limits::SharedMeter,
    /// What each panel task's calls spent, against its own budget (an ordinary task keeps
    /// its meter in its attempt loop; a panel's members are asked at once).
    panel_spend:
        std::sync::Mutex<std::collections::HashMap<usize, crate::resilience::limits::Meter>>,
}

impl RunShared {
    pub(crate) fn new(run: RunId, plan: Arc<Plan>, engine: Arc<EngineInner>) -> Self {
        let budget = plan.budget.unwrap_or(engine.settings.policies.budget);
        let spend = std::sync::Mutex::new(crate::resilience::limits::Meter::new(budget));
        Self { run, plan, engine, budget, spend, panel_spend: std::sync::Mutex::default() }
    }

    /// `f` on panel task `task`'s meter (made against its budget on first use). Its lock is
    /// taken before the run's meter, never after.
    pub(crate) fn with_panel_meter<R>(
        &self,
        task: usize,
        f: impl FnOnce(&mut crate::resilience::limits::Meter) -> R,
    ) -> R {
        let mut meters = self.panel_spend.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let budget = self.plan.steps[task].budget();
        f(meters.entry(task).or_insert_with(|| crate::resilience::limits::Meter::new(budget)))
    }

    pub(crate) fn meter(&self) -> std::sync::MutexGuard<'_, crate::resilience::limits::Meter> {
        self.spend.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn publish(&self, event: Event) {
        self.engine.bus.publish(Some(&self.run), event);
    }
}

/// Tasks of one agent in this run. A task whose agent already runs `max_instances` tasks of
/// this run waits here instead of taking a `max_parallel` slot to queue in the pool, so one
/// busy agent cannot hold up the tasks of the others. (The pool still enforces the limit
/// across runs.)
struct AgentLane {
    limit: u32,
    running: u32,
    blocked: VecDeque<usize>,
}

struct Slot {
    status: TaskStatus,
    /// Dependencies not yet succeeded.
    waiting_on: u32,
    /// Attempts made so far; numbering goes on across operator retries.
    attempts: u32,
    output: Option<Arc<str>>,
    cancel: Option<CancellationToken>,
    cancel_reason: Option<String>,
    approved: bool,
    /// Bumped whenever an approval wait is abandoned, so its late answer is ignored.
    generation: u32,
    /// Failed attempts of the current round before this process (a resumed run): the retry
    /// budget carries over. Used by the next start, then zero.
    failures_before: u32,
    /// When a reviewer was first asked, for a task that waited before a resume.
    asked_ms: Option<u64>,
    /// A panel task's stored conflict, for a resumed run: its next start goes on from it.
    conflict: Option<Arc<ConflictModel>>,
}

pub(crate) struct Scheduler {
    shared: Arc<RunShared>,
    slots: Vec<Slot>,
    ready: VecDeque<usize>,
    /// Index into `agents` of each task's planned agent.
    agent_of: Vec<usize>,
    agents: Vec<AgentLane>,
    running: usize,
    awaiting: usize,
    unfinished: usize,
    /// Set by `fail_fast` or a run cancel: nothing new starts.
    stopping: bool,
    cancelled_by_operator: bool,
    settled: bool,
    started: Instant,
    /// Run time before this process, for a resumed run (its duration counts from its first
    /// start).
    earlier_ms: u64,
    run_token: CancellationToken,
    /// Job queues of the workers spawned so far (at most `max_parallel`).
    workers: Vec<mpsc::UnboundedSender<Job>>,
    idle_workers: Vec<usize>,
    sender: mpsc::WeakUnboundedSender<Msg>,
    phase: watch::Sender<RunPhase>,
}

impl Scheduler {
    pub(crate) fn new(
        shared: Arc<RunShared>,
        sender: mpsc::WeakUnboundedSender<Msg>,
        phase: watch::Sender<RunPhase>,
    ) -> Self {
        let slots = shared
            .plan
            .steps
            .iter()
            .map(|step| Slot {
                status: TaskStatus::Pending,
                waiting_on: u32::try_from(step.deps.len()).unwrap_or(u32::MAX),
                attempts: 0,
                output: None,
                cancel: None,
                cancel_reason: None,
                approved: false,
                generation: 0,
                failures_before: 0,
                asked_ms: None,
                conflict: None,
            })
            .collect::<Vec<_>>();
        let mut lanes: HashMap<&AgentId, usize> = HashMap::new();
        let mut agents = Vec::new();
        let agent_of = shared
            .plan
            .steps
            .iter()
            .map(|step| {
                *lanes.entry(&step.agent).or_insert_with(|| {
                    let limit =
                        shared.engine.definition(&step.agent).map_or(u32::MAX, |d| d.max_instances);
                    agents.push(AgentLane {
                        limit: limit.max(1),
                        running: 0,
                        blocked: VecDeque::new(),
                    });
                    agents.len() - 1
                })
            })
            .collect();
        drop(lanes);
        Self {
            agent_of,
            agents,
            unfinished: slots.len(),
            slots,
            shared,
            ready: VecDeque::new(),
            running: 0,
            awaiting: 0,
            stopping: false,
            cancelled_by_operator: false,
            settled: false,
            started: Instant::now(),
            earlier_ms: 0,
            run_token: CancellationToken::new(),
            workers: Vec::new(),
            idle_workers: Vec::new(),
            sender,
            phase,
        }
    }

    /// Start from where an interrupted run stood: succeeded tasks keep their output and are
    /// never run again, other final tasks stay final (their dependents are skipped, in case
    /// the crash came between the two), attempt numbers, retry budgets and approvals carry
    /// over. `now_ms` is the wall clock, for the run's whole duration.
    pub(crate) fn resume_from(&mut self, point: &ResumePoint, now_ms: u64) {
        self.earlier_ms = now_ms.saturating_sub(point.started_ms);
        for (i, step) in self.shared.plan.steps.iter().enumerate() {
            let Some(task) = point.task(&step.id) else { continue };
            let slot = &mut self.slots[i];
            slot.attempts = task.attempts;
            slot.approved = task.approved;
            slot.failures_before = task.failures;
            slot.asked_ms = task.asked_ms;
            slot.conflict.clone_from(&task.conflict);
            if task.status.is_final() {
                slot.status = task.status;
                self.unfinished -= 1;
                if task.status == TaskStatus::Succeeded {
                    slot.output = Some(Arc::from(task.output.as_deref().unwrap_or_default()));
                }
            }
        }
        let shared = Arc::clone(&self.shared);
        for (i, step) in shared.plan.steps.iter().enumerate() {
            let waiting_on =
                step.deps.iter().filter(|&&d| self.slots[d].status != TaskStatus::Succeeded);
            self.slots[i].waiting_on = u32::try_from(waiting_on.count()).unwrap_or(u32::MAX);
        }
        let mut failed = None;
        for i in 0..self.slots.len() {
            if is_dead(self.slots[i].status) {
                self.skip_dependents(i);
                if self.slots[i].status == TaskStatus::Failed && failed.is_none() {
                    failed = Some(i);
                }
            }
        }
        if shared.plan.fail_fast
            && let Some(task) = failed
        {
            let reason = format!("fail_fast: task `{}` failed", self.id(task));
            self.stop_all(&reason);
        }
    }

    /// Run until every handle and worker is gone.
    pub(crate) async fn drive(mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) {
        for i in 0..self.slots.len() {
            if self.slots[i].waiting_on == 0 && self.slots[i].status == TaskStatus::Pending {
                self.make_ready(i);
            }
        }
        self.pump();
        self.check_settled();
        while let Some(msg) = inbox.recv().await {
            self.handle(msg);
            // Drain what is already queued before scheduling, so a burst of finishes
            // costs one pass.
            while let Ok(msg) = inbox.try_recv() {
                self.handle(msg);
            }
            self.pump();
            self.check_settled();
        }
        self.run_token.cancel();
    }

    fn id(&self, task: usize) -> &TaskId {
        &self.shared.plan.steps[task].id
    }

    fn publish(&self, event: Event) {
        self.shared.publish(event);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Finished { task, worker, attempts, outcome } => {
                self.idle_workers.push(worker);
                self.finished(task, attempts, outcome);
            }
            Msg::Approval { task, generation, verdict } => {
                self.approval_answered(task, generation, verdict);
            }
            Msg::Decided { task, generation, outcome } => {
                let slot = &mut self.slots[task];
                if slot.generation != generation || slot.status != TaskStatus::AwaitingDecision {
                    return;
                }
                self.awaiting -= 1;
                slot.cancel = None;
                self.conclude(task, outcome);
            }
            Msg::Control(control) => self.control(control),
        }
    }

    fn control(&mut self, control: Control) {
        match control {
            Control::CancelRun { reason, reply } => {
                self.cancelled_by_operator = true;
                self.stop_all(&reason);
                let _ = reply.send(Ok(()));
            }
            Control::CancelTask { task, reason, reply } => {
                let result = self.find(&task).and_then(|i| self.cancel_task(i, reason));
                let _ = reply.send(result);
            }
            Control::RetryTask { task, reply } => {
                let result = self.find(&task).and_then(|i| self.retry_task(i));
                // Schedule before answering, so a caller that waits next sees the run running.
                self.pump();
                self.check_settled();
                let _ = reply.send(result);
            }
        }
    }

    fn find(&self, task: &TaskId) -> Result<usize, EngineError> {
        self.shared.plan.index_of(task).ok_or_else(|| EngineError::UnknownTask {
            run: self.shared.run.clone(),
            task: task.clone(),
        })
    }

    /// All dependencies succeeded: assess risk, then queue or wait for a reviewer.
    fn make_ready(&mut self, task: usize) {
        self.slots[task].status = TaskStatus::Ready;
        self.publish(Event::TaskReady { task: self.id(task).clone() });
        if !self.slots[task].approved
            && let Some(assessment) = approval::needs_approval(&self.shared, task)
        {
            let step = &self.shared.plan.steps[task];
            self.slots[task].status = TaskStatus::AwaitingApproval;
            self.awaiting += 1;
            self.publish(Event::TaskAwaitingApproval {
                task: step.id.clone(),
                agent: step.agent.clone(),
                risk: assessment.risk,
                reasons: assessment.reasons.clone(),
            });
            let token = self.run_token.child_token();
            self.slots[task].cancel = Some(token.clone());
            if let Some(sender) = self.sender.upgrade() {
                let generation = self.slots[task].generation;
                let asked_ms = self.slots[task].asked_ms.take();
                approval::spawn_wait(
                    &self.shared,
                    task,
                    generation,
                    (assessment, asked_ms),
                    token,
                    sender,
                );
            }
            return;
        }
        self.ready.push_back(task);
    }

    /// Start ready tasks while there is room.
    fn pump(&mut self) {
        while !self.stopping && self.running < self.shared.plan.max_parallel {
            let Some(task) = self.ready.pop_front() else { break };
            // Tasks cancelled while queued stay in the queue; skip them here.
            if self.slots[task].status != TaskStatus::Ready {
                continue;
            }
            let lane = &mut self.agents[self.agent_of[task]];
            if lane.running >= lane.limit {
                lane.blocked.push_back(task);
                continue;
            }
            lane.running += 1;
            self.start(task);
        }
    }

    fn start(&mut self, task: usize) {
        let Some(reply) = self.sender.upgrade() else { return };
        let token = self.run_token.child_token();
        let slot = &mut self.slots[task];
        slot.status = TaskStatus::Running;
        slot.cancel = Some(token.clone());
        slot.cancel_reason = None;
        let first_attempt = slot.attempts + 1;
        let failures = std::mem::take(&mut slot.failures_before);
        let conflict = slot.conflict.take();
        self.running += 1;
        let worker = self.idle_workers.pop().unwrap_or_else(|| {
            let (jobs, queue) = mpsc::unbounded_channel();
            tokio::spawn(attempt::serve(Arc::clone(&self.shared), queue));
            self.workers.push(jobs);
            self.workers.len() - 1
        });
        let context = self.context_for(task);
        let job =
            Job { task, worker, reply, first_attempt, failures, context, cancel: token, conflict };
        // A worker only stops when its queue is dropped, which happens with the scheduler.
        let _ = self.workers[worker].send(job);
    }

    /// `{"task": <own context>, "dependencies": {"<id>": "<output>"}}`.
    fn context_for(&self, task: usize) -> Value {
        let steps = &self.shared.plan.steps;
        let mut dependencies = Map::new();
        for &dep in &steps[task].deps {
            let output = self.slots[dep].output.as_deref().unwrap_or_default();
            dependencies.insert(steps[dep].id.to_string(), Value::String(output.to_owned()));
        }
        let mut context = Map::new();
        context.insert("task".to_owned(), steps[task].context().clone());
        context.insert("dependencies".to_owned(), Value::Object(dependencies));
        Value::Object(context)
    }

    fn finished(&mut self, task: usize, attempts: u32, outcome: Outcome) {
        self.running -= 1;
        let lane = &mut self.agents[self.agent_of[task]];
        lane.running -= 1;
        while let Some(next) = lane.blocked.pop_front() {
            if self.slots[next].status == TaskStatus::Ready {
                self.ready.push_front(next);
                break;
            }
        }
        let slot = &mut self.slots[task];
        slot.attempts = attempts;
        slot.cancel = None;
        self.conclude(task, outcome);
    }

    /// A task's end, from its worker or from a person's decision.
    fn conclude(&mut self, task: usize, outcome: Outcome) {
        let slot = &mut self.slots[task];
        match outcome {
            Outcome::Succeeded(output) => {
                slot.output = Some(output);
                self.settle_task(task, TaskStatus::Succeeded);
                for i in 0..self.shared.plan.steps[task].dependents.len() {
                    let dependent = self.shared.plan.steps[task].dependents[i];
                    let slot = &mut self.slots[dependent];
                    slot.waiting_on = slot.waiting_on.saturating_sub(1);
                    if slot.waiting_on == 0 && slot.status == TaskStatus::Pending {
                        if self.stopping {
                            self.cancel_pending(dependent);
                        } else {
                            self.make_ready(dependent);
                        }
                    }
                }
            }
            Outcome::Failed => {
                self.settle_task(task, TaskStatus::Failed);
                self.after_failure(task);
            }
            Outcome::Cancelled => {
                let reason = slot.cancel_reason.take().unwrap_or_else(|| "cancelled".to_owned());
                self.publish(Event::TaskCancelled { task: self.id(task).clone(), reason });
                self.settle_task(task, TaskStatus::Cancelled);
                self.skip_dependents(task);
            }
            Outcome::Waiting(wait) => self.wait_for_person(task, wait),
        }
    }

    /// Park a panel task until a person decides; its dependents stay pending, everything
    /// else goes on. Cancelling the task (or the run) drops the wait.
    fn wait_for_person(&mut self, task: usize, wait: WaitForPerson) {
        let token = self.run_token.child_token();
        let slot = &mut self.slots[task];
        slot.status = TaskStatus::AwaitingDecision;
        slot.cancel = Some(token.clone());
        self.awaiting += 1;
        let generation = slot.generation;
        let Some(sender) = self.sender.upgrade() else { return };
        tokio::spawn(async move {
            let outcome = tokio::select! {
                biased;
                () = token.cancelled() => return,
                outcome = wait => outcome,
            };
            let _ = sender.send(Msg::Decided { task, generation, outcome });
        });
    }

    fn after_failure(&mut self, task: usize) {
        if self.shared.plan.fail_fast && !self.stopping {
            let reason = format!("fail_fast: task `{}` failed", self.id(task));
            self.stop_all(&reason);
        } else {
            self.skip_dependents(task);
        }
    }

    fn settle_task(&mut self, task: usize, status: TaskStatus) {
        if !self.slots[task].status.is_final() {
            self.unfinished -= 1;
        }
        self.slots[task].status = status;
    }

    fn approval_answered(&mut self, task: usize, generation: u32, verdict: approval::Verdict) {
        let slot = &mut self.slots[task];
        if slot.generation != generation || slot.status != TaskStatus::AwaitingApproval {
            return;
        }
        self.awaiting -= 1;
        slot.cancel = None;
        match verdict {
            approval::Verdict::Approved => {
                slot.approved = true;
                slot.status = TaskStatus::Ready;
                if self.stopping {
                    self.cancel_pending(task);
                } else {
                    self.ready.push_back(task);
                }
            }
            approval::Verdict::Rejected { reason } => {
                let attempt = slot.attempts;
                let step = &self.shared.plan.steps[task];
                self.publish(Event::TaskFailed {
                    task: step.id.clone(),
                    agent: Some(step.agent.clone()),
                    attempt,
                    duration_ms: 0,
                    error: reason,
                });
                self.settle_task(task, TaskStatus::Failed);
                self.after_failure(task);
            }
        }
    }

    /// A task that has not started (pending, ready or awaiting approval) becomes cancelled.
    fn cancel_pending(&mut self, task: usize) {
        let reason =
            self.slots[task].cancel_reason.take().unwrap_or_else(|| "cancelled".to_owned());
        self.cancel_pending_with(task, reason);
    }

    fn cancel_pending_with(&mut self, task: usize, reason: String) {
        let slot = &mut self.slots[task];
        if matches!(slot.status, TaskStatus::AwaitingApproval | TaskStatus::AwaitingDecision) {
            self.awaiting -= 1;
            slot.generation += 1;
            if let Some(token) = slot.cancel.take() {
                token.cancel();
            }
        }
        self.publish(Event::TaskCancelled { task: self.id(task).clone(), reason });
        self.settle_task(task, TaskStatus::Cancelled);
    }

    /// `fail_fast` or a run cancel: stop everything that has not finished.
    fn stop_all(&mut self, reason: &str) {
        self.stopping = true;
        self.ready.clear();
        for lane in &mut self.agents {
            lane.blocked.clear();
        }
        for task in 0..self.slots.len() {
            match self.slots[task].status {
                TaskStatus::Pending
                | TaskStatus::Ready
                | TaskStatus::AwaitingApproval
                | TaskStatus::AwaitingDecision => {
                    self.cancel_pending_with(task, reason.to_owned());
                }
                TaskStatus::Running => {
                    let slot = &mut self.slots[task];
                    if slot.cancel_reason.is_none() {
                        slot.cancel_reason = Some(reason.to_owned());
                    }
                    if let Some(token) = &slot.cancel {
                        token.cancel();
                    }
                }
                _ => {}
            }
        }
    }

    fn cancel_task(&mut self, task: usize, reason: String) -> Result<(), EngineError> {
        match self.slots[task].status {
            TaskStatus::Pending
            | TaskStatus::Ready
            | TaskStatus::AwaitingApproval
            | TaskStatus::AwaitingDecision => {
                self.cancel_pending_with(task, reason);
                self.skip_dependents(task);
                Ok(())
            }
            TaskStatus::Running => {
                let slot = &mut self.slots[task];
                slot.cancel_reason = Some(reason);
                if let Some(token) = &slot.cancel {
                    token.cancel();
                }
                Ok(())
            }
            status => Err(EngineError::WrongState {
                task: self.id(task).clone(),
                status: status.word(),
                allowed: "pending, ready, awaiting approval, awaiting a decision or running",
                action: "cancelled",
            }),
        }
    }

    /// Every pending task downstream of `from` is skipped, once.
    fn skip_dependents(&mut self, from: usize) {
        let steps = &self.shared.plan.steps;
        let mut stack: Vec<(usize, usize)> =
            steps[from].dependents.iter().map(|&d| (d, from)).collect();
        while let Some((task, because)) = stack.pop() {
            if self.slots[task].status != TaskStatus::Pending {
                continue;
            }
            let verb = match self.slots[because].status {
                TaskStatus::Failed => "failed",
                TaskStatus::Cancelled => "was cancelled",
                _ => "was skipped",
            };
            let reason = format!("dependency `{}` {verb}", steps[because].id);
            self.shared.publish(Event::TaskSkipped { task: steps[task].id.clone(), reason });
            self.unfinished -= 1;
            self.slots[task].status = TaskStatus::Skipped;
            stack.extend(steps[task].dependents.iter().map(|&d| (d, task)));
        }
    }

    fn retry_task(&mut self, task: usize) -> Result<(), EngineError> {
        let status = self.slots[task].status;
        if !matches!(status, TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled) {
            return Err(EngineError::WrongState {
                task: self.id(task).clone(),
                status: status.word(),
                allowed: "failed, skipped or cancelled",
                action: "retried",
            });
        }
        let shared = Arc::clone(&self.shared);
        let steps = &shared.plan.steps;
        if let Some(&dep) = steps[task].deps.iter().find(|&&d| is_dead(self.slots[d].status)) {
            return Err(EngineError::DependencyNotDone {
                task: self.id(task).clone(),
                dependency: steps[dep].id.clone(),
                status: self.slots[dep].status.word(),
            });
        }
        // The downstream tasks that did not run, in layer order so each is considered after
        // all of its dependencies.
        let mut downstream = Vec::new();
        let mut seen = vec![false; steps.len()];
        let mut stack = steps[task].dependents.clone();
        while let Some(d) = stack.pop() {
            if !seen[d]
                && matches!(self.slots[d].status, TaskStatus::Skipped | TaskStatus::Cancelled)
            {
                seen[d] = true;
                downstream.push(d);
                stack.extend(steps[d].dependents.iter().copied());
            }
        }
        downstream.sort_by_key(|&d| steps[d].layer);

        self.stopping = false;
        self.cancelled_by_operator = false;
        self.reset(task);
        for d in downstream {
            if !steps[d].deps.iter().any(|&dep| is_dead(self.slots[dep].status)) {
                self.reset(d);
            }
        }
        if self.slots[task].waiting_on == 0 {
            self.make_ready(task);
        }
        Ok(())
    }

    fn reset(&mut self, task: usize) {
        let waiting_on = self.shared.plan.steps[task]
            .deps
            .iter()
            .filter(|&&d| self.slots[d].status != TaskStatus::Succeeded)
            .count();
        let slot = &mut self.slots[task];
        slot.status = TaskStatus::Pending;
        slot.waiting_on = u32::try_from(waiting_on).unwrap_or(u32::MAX);
        slot.cancel_reason = None;
        self.unfinished += 1;
        if self.settled {
            self.settled = false;
            self.phase.send_replace(RunPhase::Running);
        }
    }

    fn check_settled(&mut self) {
        if self.settled || self.unfinished > 0 || self.running > 0 || self.awaiting > 0 {
            return;
        }
        self.settled = true;
        let (mut succeeded, mut failed, mut skipped, mut cancelled) = (0, 0, 0, 0);
        for slot in &self.slots {
            match slot.status {
                TaskStatus::Succeeded => succeeded += 1,
                TaskStatus::Failed => failed += 1,
                TaskStatus::Skipped => skipped += 1,
                _ => cancelled += 1,
            }
        }
        let status = if self.cancelled_by_operator {
            RunStatus::Cancelled
        } else if failed > 0 {
            RunStatus::Failed
        } else if cancelled > 0 || skipped > 0 {
            RunStatus::Cancelled
        } else {
            RunStatus::Succeeded
        };
        self.publish(Event::RunFinished {
            status,
            succeeded,
            failed,
            skipped,
            cancelled,
            duration_ms: self.earlier_ms + self.started.elapsed().as_millis() as u64,
        });
        self.phase.send_replace(RunPhase::Finished(status));
    }
}

/// A final state other than success: dependents of such a task can never run.
fn is_dead(status: TaskStatus) -> bool {
    matches!(status, TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled)
}
