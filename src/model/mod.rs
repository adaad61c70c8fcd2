//! One run model: [`RunModel::apply`] is the only place that turns a run's events into its
//! state. The console, `runs show`, the headless progress printer, the store's task counts,
//! resume and replay are all views of this one fold, so a run reads the same everywhere,
//! live or stored.
//!
//! The fold is pure: no clocks, no IO. Time comes from the envelopes, so folding a stored
//! run gives exactly the state it had when its last event was published.

mod clocks;
mod status;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use foldhash::HashMap;

use crate::conflict::{DecideMode, Domain, LadderStep, MemberVerdict, Recommendation};
use crate::event::{
    AnswerDetails, Envelope, Event, FileChange, OutputStream, PlannedTask, Risk, RunStatus,
    TokenUsage, WorkspaceKind,
};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};

pub use clocks::TaskClocks;
pub use status::TaskStatus;

/// Longest output line kept in a tail; the rest is cut (the store has everything).
pub const OUTPUT_LINE_MAX_CHARS: usize = 500;

/// How much streamed output the model keeps. Views choose: the console a tail of lines,
/// `runs show` every attempt's whole text, resume and counters nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputKeep {
    /// No streamed output and no attempt history: what counters, progress lines and resume
    /// need, lean enough for runs of 100,000 tasks. The final answer of a succeeded task is
    /// always kept.
    #[default]
    None,
    /// The last `n` lines per task, each cut at [`OUTPUT_LINE_MAX_CHARS`], and each attempt's
    /// record without its text.
    Tail(usize),
    /// Each attempt's whole output, split by stream.
    Full,
}

impl OutputKeep {
    /// Whether each attempt gets its record in [`TaskModel::history`].
    fn keeps_attempts(self) -> bool {
        matches!(self, Self::Tail(_) | Self::Full)
    }
}

/// Kinds of events (`Event::kind`) a run model never folds: pool events that name no task.
/// The store does not decode them when it folds a run. (`command_accepted` is folded: the
/// accepted `start_run` names who started the run.)
pub const UNFOLDED_KINDS: [&str; 2] = ["instance_idle", "instance_reserved"];

impl OutputKeep {
    /// Whether a fold keeping this much reads streamed output (`task_output`) at all: one
    /// that does not may be handed a run's events without them.
    pub fn reads_output(self) -> bool {
        matches!(self, Self::Tail(_) | Self::Full)
    }

    /// Whether a fold keeping this much may be handed a run's events without those of
    /// `kind`: they change nothing in it.
    pub fn ignores(self, kind: &str) -> bool {
        (kind == "task_output" && !self.reads_output()) || UNFOLDED_KINDS.contains(&kind)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub finished_ms: u64,
    pub duration_ms: u64,
}

/// Tasks by final status (and those not final yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
    /// Running or retrying.
    pub running: usize,
    /// Waiting for a person.
    pub waiting: usize,
    /// Pending or ready.
    pub pending: usize,
}

impl TaskCounts {
    /// Tasks in a final state.
    pub fn finished(&self) -> usize {
        self.succeeded + self.failed + self.skipped + self.cancelled
    }
}

/// A high-risk task's approval: asked, and perhaps decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalModel {
    pub agent: AgentId,
    pub risk: Risk,
    pub reasons: Vec<String>,
    /// When it was first asked; a task that waits again after a restart keeps this time.
    pub requested_ms: u64,
    pub decision: Option<ApprovalDecision>,
    /// Approvals given so far of a task that needs two different people ("1 of 2").
    pub approved_by: Vec<UserId>,
    /// How many approvals it needs, once one was given (1 until then).
    pub needed: u32,
    /// Its deadline passed under `on_timeout: escalate`: still waiting, overdue.
    pub overdue: bool,
    /// When the deadline passes (ms since the Unix epoch), from `approval_terms`.
    pub deadline_ms: Option<u64>,
    /// Who started the run, from `approval_terms`.
    pub requested_by: Option<UserId>,
}

/// What a person decided about an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    pub approved: bool,
    pub by: UserId,
    pub note: Option<String>,
    pub decided_ms: u64,
}

/// A panel task's conflict: the question, every verdict, the ladder's steps and, once
/// settled, the decision. Everything a person needs to decide again after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictModel {
    pub question: String,
    pub options: Vec<String>,
    pub domain: Option<Domain>,
    pub decide: DecideMode,
    /// Members that gave a verdict, in panel order (the prompt's columns).
    pub verdicts: Vec<MemberVerdict>,
    /// Members without a usable verdict; they never vote.
    pub failed: Vec<AgentId>,
    pub steps: Vec<ConflictStepModel>,
    /// Set when the ladder asked a person.
    pub recommendation: Option<Recommendation>,
    pub detected_ms: u64,
    /// When a person was first asked.
    pub asked_ms: Option<u64>,
    pub resolution: Option<ConflictResolution>,
}

impl ConflictModel {
    /// Waiting for a person: asked and not settled.
    pub fn is_open(&self) -> bool {
        self.asked_ms.is_some() && self.resolution.is_none()
    }
}

/// One ladder step as it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictStepModel {
    pub step: LadderStep,
    pub finding: String,
    pub winner: Option<AgentId>,
    pub decision: Option<String>,
    pub at_ms: u64,
}

/// How a conflict was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictResolution {
    pub decision: String,
    /// An agent, or `operator` for a person's own text.
    pub winner: String,
    pub resolved_by: LadderStep,
    pub by: Option<UserId>,
    pub note: Option<String>,
    pub resolved_ms: u64,
}

/// A task's own workspace and what its branch changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceModel {
    pub kind: WorkspaceKind,
    pub path: PathBuf,
    pub repo: Option<PathBuf>,
    pub branch: Option<String>,
    pub base: Option<String>,
    pub base_from: Option<String>,
    /// `git diff --shortstat` of the branch against its base; empty until an attempt ended.
    pub summary: String,
    pub changes: Vec<FileChange>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Running,
    Succeeded,
    Failed,
    /// Failed, and another attempt followed.
    Retrying,
    Cancelled,
    /// In flight when the run's process died; the task ran again after a resume.
    Interrupted,
}

impl AttemptResult {
    pub fn key(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptModel {
    pub attempt: u32,
    pub agent: AgentId,
    pub backend: String,
    pub simulated: bool,
    pub started_ms: u64,
    pub result: AttemptResult,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// The wait before the next attempt, when it was retried.
    pub retry_delay_ms: Option<u64>,
    pub usage: Option<TokenUsage>,
    pub details: AnswerDetails,
    /// With [`OutputKeep::Full`]: the answer as it streamed (stdout lines, model tokens).
    pub output: String,
    pub stderr: String,
    pub reasoning: String,
    /// Tool calls (`→ …`) and their results (`← …`), in order.
    pub tools: Vec<String>,
}

/// One line of a task's output tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub text: String,
    /// A later line of a piece of output that came whole (a tool's result of several
    /// lines), not a piece of its own.
    pub continues: bool,
}

/// Everything known about one task of a run.
///
/// What most tasks of a big run never set (errors, notes, attempt history, output tail, usage,
/// rate-limit waits, spend, approvals, workspaces, conflicts) lives in [`TaskDetails`], boxed
/// and allocated only when first set: a task of a 100,000-task run's progress printer is 328
/// bytes instead of 616. Read those fields as if they were the task's own (`task.error`):
/// the model dereferences to its details.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskModel {
    pub planned: PlannedTask,
    pub status: TaskStatus,
    /// The agent of the latest attempt (changes on fallback).
    pub agent: AgentId,
    /// The latest attempt's number (0: never started).
    pub attempts: u32,
    /// Failed attempts that were retried since the task last reached a final state: the
    /// retry budget its current round has used (a resumed run goes on from it).
    pub retries_used: u32,
    pub instance: Option<InstanceId>,
    pub backend: Option<String>,
    pub simulated: bool,
    /// When the latest attempt started.
    pub started_ms: Option<u64>,
    /// When the first attempt of this round started: "took" counts from here.
    pub first_started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// The whole task, first start to end, waits between attempts included.
    pub duration_ms: Option<u64>,
    /// The latest finished attempt alone.
    pub attempt_ms: Option<u64>,
    pub risk: Option<Risk>,
    /// The output it succeeded with; dependents receive it.
    pub result: Option<String>,
    /// The rarely set rest; read through `Deref`.
    details: Details,
}

/// The fields of a [`TaskModel`] that most tasks never set.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDetails {
    pub retry_at_ms: Option<u64>,
    pub error: Option<String>,
    /// Why it was skipped or cancelled, the fallback that happened, or what the answer
    /// reported (truncation, tool calls).
    pub note: Option<String>,
    pub approval: Option<Box<ApprovalModel>>,
    pub usage: Option<TokenUsage>,
    pub workspace: Option<Box<WorkspaceModel>>,
    /// A panel task's latest conflict.
    pub conflict: Option<Box<ConflictModel>>,
    /// Every attempt in order (kept unless the model keeps no output: counters and resume
    /// need only the latest attempt's number).
    pub history: Vec<AttemptModel>,
    /// The output tail, with [`OutputKeep::Tail`].
    pub output: VecDeque<OutputLine>,
    /// Set while the next attempt waits on its backend's rate limit.
    pub rate_limited: Option<RateLimitWait>,
    /// What its attempts spent (tokens, and cost when known).
    pub spend: Spend,
    /// The latest budget mark it reached ("task budget at 80%: …", "run budget reached: …").
    pub budget_note: Option<String>,
}

impl TaskDetails {
    /// Nothing set: what a task without details reads.
    const NONE: Self = Self {
        retry_at_ms: None,
        error: None,
        note: None,
        approval: None,
        usage: None,
        workspace: None,
        conflict: None,
        history: Vec::new(),
        output: VecDeque::new(),
        rate_limited: None,
        spend: Spend { tokens: 0, cost_usd: 0.0, priced: false },
        budget_note: None,
    };
}

impl Default for TaskDetails {
    fn default() -> Self {
        Self::NONE
    }
}

/// A task's details, boxed once something sets one; none and all-empty read the same.
#[derive(Debug, Clone, Default)]
struct Details(Option<Box<TaskDetails>>);

static NO_DETAILS: TaskDetails = TaskDetails::NONE;

impl Details {
    fn get(&self) -> &TaskDetails {
        self.0.as_deref().unwrap_or(&NO_DETAILS)
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl std::ops::Deref for TaskModel {
    type Target = TaskDetails;

    fn deref(&self) -> &TaskDetails {
        self.details.get()
    }
}

/// Writing a detail boxes the details first (the fold writes through
/// [`TaskModel::set_details`] where most tasks would write nothing).
impl std::ops::DerefMut for TaskModel {
    fn deref_mut(&mut self) -> &mut TaskDetails {
        self.details.0.get_or_insert_with(Box::default)
    }
}

/// An attempt held back by a backend's rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitWait {
    pub backend: String,
    /// `requests_per_minute` or `tokens_per_minute`.
    pub limit: String,
    pub wait_ms: u64,
    /// When the wait began.
    pub since_ms: u64,
}

impl RateLimitWait {
    /// "waiting on rate limit: openai `requests_per_minute`, 1.2s".
    pub fn describe(&self) -> String {
        format!(
            "waiting on rate limit: {} {}, {:.1}s",
            self.backend,
            self.limit,
            self.wait_ms as f64 / 1000.0
        )
    }
}

/// Tokens and cost spent, as backends reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub tokens: u64,
    pub cost_usd: f64,
    /// Whether any attempt had a known cost.
    pub priced: bool,
}

impl Spend {
    fn add(&mut self, tokens: u64, cost_usd: Option<f64>) {
        self.tokens = self.tokens.saturating_add(tokens);
        if let Some(cost) = cost_usd {
            self.cost_usd += cost;
            self.priced = true;
        }
    }

    /// "1234 tokens, $0.0123", or `None` when nothing was spent.
    pub fn describe(&self) -> Option<String> {
        match (self.tokens, self.priced) {
            (0, false) => None,
            (tokens, false) => Some(format!("{tokens} tokens")),
            (tokens, true) => Some(format!("{tokens} tokens, ${:.4}", self.cost_usd)),
        }
    }
}

/// "task budget at 80%: 800 tokens of 1000 tokens" or "run budget reached: …".
fn budget_note(
    scope: crate::event::BudgetScope,
    measure: crate::event::BudgetMeasure,
    spent: f64,
    limit: f64,
    reached: bool,
) -> String {
    let mark = if reached {
        "reached".to_owned()
    } else {
        format!("at {:.0}%", if limit > 0.0 { spent / limit * 100.0 } else { 100.0 })
    };
    format!(
        "{} budget {mark}: {} of {}",
        scope.word(),
        measure.amount(spent),
        measure.amount(limit)
    )
}

impl TaskModel {
    pub fn new(planned: PlannedTask) -> Self {
        Self {
            agent: planned.agent.clone(),
            planned,
            status: TaskStatus::Pending,
            attempts: 0,
            retries_used: 0,
            instance: None,
            backend: None,
            simulated: false,
            started_ms: None,
            first_started_ms: None,
            finished_ms: None,
            duration_ms: None,
            attempt_ms: None,
            risk: None,
            result: None,
            details: Details::default(),
        }
    }

    /// The details, only when something set one: for writes most tasks do not need (clearing
    /// what is already clear), which would otherwise box empty details for every task.
    fn set_details(&mut self) -> Option<&mut TaskDetails> {
        self.details.0.as_deref_mut()
    }

    pub fn id(&self) -> &TaskId {
        &self.planned.task
    }

    /// The approval given and not yet used, if any.
    pub fn approved(&self) -> Option<&ApprovalDecision> {
        self.approval.as_deref().and_then(|a| a.decision.as_ref()).filter(|d| d.approved)
    }

    /// The approval still waiting for a decision.
    pub fn pending_approval(&self) -> Option<&ApprovalModel> {
        self.approval.as_deref().filter(|a| a.decision.is_none())
    }

    /// From the first start of the task's round to `end_ms`; at least the last attempt's time.
    fn whole_task_ms(&self, end_ms: u64, attempt_ms: u64) -> u64 {
        self.first_started_ms
            .map_or(attempt_ms, |first| end_ms.saturating_sub(first).max(attempt_ms))
    }
}

/// The state of one run, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct RunModel {
    pub run_id: Option<RunId>,
    pub workflow: String,
    pub file: PathBuf,
    pub goal: Option<String>,
    pub max_parallel: usize,
    pub fail_fast: bool,
    /// Any task planned on a simulation backend.
    pub simulated: bool,
    /// When the run (its first `RunStarted`) began; 0 before.
    pub started_ms: u64,
    pub outcome: Option<RunOutcome>,
    /// In plan order; tasks of every `RunStarted`, so a run resumed with a new plan keeps its
    /// earlier tasks. Each behind an `Arc`, as is the index: a copy of the model (a replay's
    /// snapshot) shares every task and copies one only when an event changes it, so copying
    /// a 10,000-task run costs a list of pointers instead of every task's strings.
    pub tasks: Vec<Arc<TaskModel>>,
    pub index: Arc<HashMap<TaskId, usize>>,
    /// Where each task of the latest `RunStarted` is in `tasks`: a host digest's changes
    /// name tasks by their position in it.
    pub latest_plan: Arc<Vec<usize>>,
    /// Attempts started on a simulation backend, and on a real one.
    pub simulated_attempts: usize,
    pub real_attempts: usize,
    /// Highest sequence number applied; envelopes at or below it are duplicates.
    pub last_seq: u64,
    /// Time of the last event applied.
    pub last_ms: u64,
    /// Events that changed this model.
    pub applied: u64,
    /// Times the run was resumed after its process died.
    pub resumes: u32,
    /// What every attempt of the run spent.
    pub spend: Spend,
    /// The latest run budget mark reached.
    pub budget_note: Option<String>,
    /// Who started the run: the user of the gate's accepted `start_run` (stored with the
    /// run), so a resumed run still knows whom separation of duties keeps from approving.
    pub started_by: Option<UserId>,
    keep: OutputKeep,
}

impl Default for RunModel {
    fn default() -> Self {
        Self::new(OutputKeep::None)
    }
}

impl RunModel {
    /// An empty model; the run's `RunStarted` fills it.
    pub fn new(keep: OutputKeep) -> Self {
        Self {
            run_id: None,
            workflow: String::new(),
            file: PathBuf::new(),
            goal: None,
            max_parallel: 0,
            fail_fast: false,
            simulated: false,
            started_ms: 0,
            outcome: None,
            tasks: Vec::new(),
            index: Arc::default(),
            latest_plan: Arc::default(),
            simulated_attempts: 0,
            real_attempts: 0,
            last_seq: 0,
            last_ms: 0,
            applied: 0,
            resumes: 0,
            spend: Spend::default(),
            budget_note: None,
            started_by: None,
            keep,
        }
    }

    /// An empty model that only takes the events of `run`.
    pub fn for_run(run: RunId, keep: OutputKeep) -> Self {
        Self { run_id: Some(run), ..Self::new(keep) }
    }

    /// Fold stored events, in order.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Envelope>,
        keep: OutputKeep,
    ) -> Self {
        let mut model = Self::new(keep);
        for envelope in events {
            model.apply(envelope);
        }
        model
    }

    pub fn task(&self, id: &TaskId) -> Option<&TaskModel> {
        self.index.get(id).and_then(|i| self.tasks.get(*i)).map(Arc::as_ref)
    }

    pub fn task_mut(&mut self, id: &TaskId) -> Option<&mut TaskModel> {
        self.index.get(id).and_then(|i| self.tasks.get_mut(*i)).map(Arc::make_mut)
    }

    /// Tasks whose conflict waits for a person, in plan order.
    pub fn open_conflicts(&self) -> impl Iterator<Item = (&TaskModel, &ConflictModel)> {
        self.tasks
            .iter()
            .filter_map(|t| t.conflict.as_deref().filter(|c| c.is_open()).map(|c| (&**t, c)))
    }

    /// "Waiting for a person": the run is live and a task of it awaits an approval or a
    /// conflict decision. Its own run state, never confused with running or idle.
    pub fn waits_for_a_person(&self) -> bool {
        self.is_active() && self.tasks.iter().any(|t| t.status.waits_for_person())
    }

    /// Whether this model has seen its `RunStarted`.
    pub fn is_started(&self) -> bool {
        self.started_ms != 0 || !self.tasks.is_empty()
    }

    /// Still going: started and not finished.
    pub fn is_active(&self) -> bool {
        self.outcome.is_none()
    }

    /// Elapsed run time at `now_ms` (frozen once the run finished).
    pub fn elapsed_ms(&self, now_ms: u64) -> u64 {
        match self.outcome {
            Some(outcome) => outcome.duration_ms,
            None => now_ms.saturating_sub(self.started_ms),
        }
    }

    /// Finished tasks (any final status) and all tasks.
    pub fn progress(&self) -> (usize, usize) {
        (self.tasks.iter().filter(|t| t.status.is_final()).count(), self.tasks.len())
    }

    pub fn counts(&self) -> TaskCounts {
        let mut counts = TaskCounts::default();
        for task in &self.tasks {
            match task.status {
                TaskStatus::Succeeded => counts.succeeded += 1,
                TaskStatus::Failed => counts.failed += 1,
                TaskStatus::Skipped => counts.skipped += 1,
                TaskStatus::Cancelled => counts.cancelled += 1,
                TaskStatus::Running | TaskStatus::Retrying => counts.running += 1,
                TaskStatus::AwaitingApproval | TaskStatus::AwaitingDecision => counts.waiting += 1,
                TaskStatus::Pending | TaskStatus::Ready => counts.pending += 1,
            }
        }
        counts
    }

    /// Fold one event. Returns whether it belonged to this run and was new; events of other
    /// runs, events before the run's start and duplicates (by `seq`) change nothing.
    pub fn apply(&mut self, envelope: &Envelope) -> bool {
        if envelope.seq != 0 && envelope.seq <= self.last_seq {
            return false;
        }
        match (&self.run_id, &envelope.run_id) {
            (Some(ours), Some(theirs)) if ours != theirs => return false,
            (None, Some(theirs)) if matches!(envelope.event, Event::RunStarted { .. }) => {
                self.run_id = Some(theirs.clone());
            }
            _ => {}
        }
        let changed = self.fold(envelope);
        if changed {
            self.last_seq = self.last_seq.max(envelope.seq);
            self.last_ms = self.last_ms.max(envelope.ts_ms);
            self.applied += 1;
        }
        changed
    }

    /// Fold a host digest's compact change: tasks that moved along their usual path
    /// (ready, started, succeeded) and the state they reached. What a change does not carry
    /// (output, usage, the instance) stays as it was; `runs show` has it from the store.
    /// Returns how many of the tasks are this run's.
    pub fn apply_change(&mut self, change: &crate::host::protocol::TaskChange) -> usize {
        let first = change.first as usize;
        let last = first.saturating_add(change.count as usize).min(self.latest_plan.len());
        let mut applied = 0;
        for position in first..last {
            let at = self.latest_plan[position];
            self.change_task(at, change);
            applied += 1;
        }
        self.last_ms = self.last_ms.max(change.at_ms);
        self.applied += applied as u64;
        applied
    }

    /// The task at `at` (in `tasks`) as `change` says.
    fn change_task(&mut self, at: usize, change: &crate::host::protocol::TaskChange) {
        let run_simulated = self.simulated;
        let t = Arc::make_mut(&mut self.tasks[at]);
        let at_ms = change.at_ms;
        match change.status {
            TaskStatus::Running => {
                if !t.status.in_round() {
                    t.first_started_ms = Some(at_ms);
                    t.attempt_ms = None;
                }
                t.started_ms = Some(at_ms);
                t.finished_ms = None;
            }
            TaskStatus::Succeeded => {
                let took = change.duration_ms.unwrap_or(0);
                let started = at_ms.saturating_sub(took);
                if !t.status.in_round() {
                    t.first_started_ms = Some(started);
                }
                t.started_ms.get_or_insert(started);
                t.retries_used = 0;
                t.attempt_ms = Some(took);
                t.duration_ms = Some(t.whole_task_ms(at_ms, took));
                t.finished_ms = Some(at_ms);
            }
            _ => {}
        }
        let attempt = change.attempt;
        if attempt > 0 {
            if t.attempts != attempt
                && matches!(change.status, TaskStatus::Running | TaskStatus::Succeeded)
            {
                // A change does not say its backend: a task's first attempt is taken to run
                // where the run says its tasks run.
                if t.attempts == 0 {
                    t.simulated = run_simulated;
                }
                if t.simulated {
                    self.simulated_attempts += 1;
                } else {
                    self.real_attempts += 1;
                }
            }
            t.attempts = attempt;
        }
        t.status = change.status;
    }

    /// The task at `position` of the run's latest plan (a digest's changes count from it).
    pub fn planned_at(&self, position: usize) -> Option<&TaskModel> {
        self.latest_plan.get(position).map(|at| &*self.tasks[*at])
    }

    fn fold(&mut self, envelope: &Envelope) -> bool {
        let ts = envelope.ts_ms;
        match &envelope.event {
            Event::RunStarted {
                workflow,
                file,
                goal,
                max_parallel,
                fail_fast,
                simulated,
                tasks,
            } => {
                if self.started_ms == 0 {
                    self.started_ms = ts;
                }
                self.workflow.clone_from(workflow);
                self.file.clone_from(file);
                self.goal.clone_from(goal);
                self.max_parallel = *max_parallel;
                self.fail_fast = *fail_fast;
                self.simulated |= *simulated;
                self.outcome = None;
                self.tasks.reserve(tasks.len());
                let index = Arc::make_mut(&mut self.index);
                let mut latest = Vec::with_capacity(tasks.len());
                for planned in tasks {
                    let at = *index.entry(planned.task.clone()).or_insert_with(|| {
                        self.tasks.push(Arc::new(TaskModel::new(planned.clone())));
                        self.tasks.len() - 1
                    });
                    latest.push(at);
                }
                self.latest_plan = Arc::new(latest);
                true
            }
            Event::RunResumed { .. } => {
                self.resumes += 1;
                self.outcome = None;
                true
            }
            Event::CommandAccepted { user, command, .. } if command == "start_run" => {
                if self.started_by.is_some() {
                    return false;
                }
                self.started_by = Some(user.clone());
                true
            }
            Event::RunFinished { status, duration_ms, .. } => {
                self.outcome = Some(RunOutcome {
                    status: *status,
                    finished_ms: ts,
                    duration_ms: *duration_ms,
                });
                true
            }
            event => {
                let Some(at) = event.task().and_then(|t| self.index.get(t)).copied() else {
                    return false;
                };
                match event {
                    Event::TaskStarted { simulated, .. } => {
                        if *simulated {
                            self.simulated_attempts += 1;
                        } else {
                            self.real_attempts += 1;
                        }
                    }
                    Event::TaskSpent { tokens, cost_usd, .. } => self.spend.add(*tokens, *cost_usd),
                    Event::BudgetWarning { scope, measure, spent, limit, .. }
                        if *scope == crate::event::BudgetScope::Run =>
                    {
                        self.budget_note =
                            Some(budget_note(*scope, *measure, *spent, *limit, false));
                    }
                    Event::BudgetExceeded { scope, measure, spent, limit, .. }
                        if *scope == crate::event::BudgetScope::Run =>
                    {
                        self.budget_note =
                            Some(budget_note(*scope, *measure, *spent, *limit, true));
                    }
                    _ => {}
                }
                let keep = self.keep;
                if matches!(event, Event::TaskOutput { .. }) && !keep.reads_output() {
                    // Before `make_mut`: a task shared with a copy stays shared.
                    return false;
                }
                let task = Arc::make_mut(&mut self.tasks[at]);
                let changed = fold_task(task, event, ts, keep);
                // A retried task makes a finished run active again.
                if changed && !task.status.is_final() && task.status != TaskStatus::Pending {
                    self.outcome = None;
                }
                changed
            }
        }
    }
}

/// Fold one task event into its task.
#[allow(clippy::too_many_lines)] // one arm per event type reads better than a dispatch table
fn fold_task(t: &mut TaskModel, event: &Event, ts: u64, keep: OutputKeep) -> bool {
    let next = t.status.after(event, t.conflict.is_some());
    if matches!(
        event,
        Event::TaskStarted { .. }
            | Event::TaskSucceeded { .. }
            | Event::TaskFailed { .. }
            | Event::TaskCancelled { .. }
            | Event::TaskSkipped { .. }
    ) && let Some(details) = t.set_details()
    {
        details.rate_limited = None;
    }
    match event {
        Event::RateLimited { backend, limit, wait_ms, .. } => {
            t.rate_limited = Some(RateLimitWait {
                backend: backend.clone(),
                limit: limit.clone(),
                wait_ms: *wait_ms,
                since_ms: ts,
            });
        }
        Event::TaskSpent { tokens, cost_usd, .. } => t.spend.add(*tokens, *cost_usd),
        Event::BudgetWarning { scope, measure, spent, limit, .. } => {
            t.budget_note = Some(budget_note(*scope, *measure, *spent, *limit, false));
        }
        Event::BudgetExceeded { scope, measure, spent, limit, .. } => {
            t.budget_note = Some(budget_note(*scope, *measure, *spent, *limit, true));
        }
        Event::TaskReady { .. } => t.status = next,
        Event::TaskAwaitingApproval { risk, .. } => {
            t.status = next;
            t.risk = Some(*risk);
        }
        Event::ApprovalRequested { agent, risk, reasons, .. } => {
            t.risk = Some(*risk);
            // Asked again (after a restart): the original request time stands.
            let requested_ms = t.pending_approval().map_or(ts, |a| a.requested_ms);
            t.approval = Some(Box::new(ApprovalModel {
                agent: agent.clone(),
                risk: *risk,
                reasons: reasons.clone(),
                requested_ms,
                decision: None,
                approved_by: Vec::new(),
                needed: 1,
                overdue: false,
                deadline_ms: None,
                requested_by: None,
            }));
        }
        Event::ApprovalDecided { approved, by, note, .. } => {
            let decision = ApprovalDecision {
                approved: *approved,
                by: by.clone(),
                note: note.clone(),
                decided_ms: ts,
            };
            match &mut t.approval {
                Some(approval) => approval.decision = Some(decision),
                None => {
                    t.approval = Some(Box::new(ApprovalModel {
                        agent: t.agent.clone(),
                        risk: t.risk.unwrap_or(Risk::High),
                        reasons: Vec::new(),
                        requested_ms: ts,
                        decision: Some(decision),
                        approved_by: Vec::new(),
                        needed: 1,
                        overdue: false,
                        deadline_ms: None,
                        requested_by: None,
                    }));
                }
            }
        }
        Event::ApprovalGiven { by, needed, .. } => {
            let Some(approval) = t.approval.as_deref_mut() else { return false };
            if !approval.approved_by.contains(by) {
                approval.approved_by.push(by.clone());
            }
            approval.needed = *needed;
        }
        Event::ApprovalTerms { requested_by, deadline_ms, needed, .. } => {
            let Some(approval) = t.approval.as_deref_mut() else { return false };
            approval.needed = *needed;
            approval.deadline_ms = *deadline_ms;
            approval.requested_by.clone_from(requested_by);
        }
        Event::ApprovalOverdue { .. } => {
            let Some(approval) = t.approval.as_deref_mut() else { return false };
            approval.overdue = true;
        }
        Event::TaskStarted { agent, attempt, instance, backend, simulated, .. } => {
            // A new round (first start, or an operator retry) starts the task's clock.
            if !t.status.in_round() {
                t.first_started_ms = Some(ts);
                t.attempt_ms = None;
            }
            t.status = next;
            t.agent = agent.clone();
            t.attempts = *attempt;
            t.instance = Some(*instance);
            t.backend = Some(backend.clone());
            t.simulated = *simulated;
            t.started_ms = Some(ts);
            t.finished_ms = None;
            if let Some(details) = t.set_details() {
                details.retry_at_ms = None;
            }
            if keep.keeps_attempts() {
                t.history.push(attempt_model(agent, *attempt, backend, *simulated, ts));
            }
        }
        Event::TaskOutput { stream, text, .. } => match keep {
            OutputKeep::None => return false,
            OutputKeep::Tail(lines) => push_tail(&mut t.output, *stream, text, lines),
            OutputKeep::Full => {
                if let Some(attempt) = t.history.last_mut() {
                    push_full(attempt, *stream, text);
                }
            }
        },
        Event::TaskRetrying { agent, attempt, delay_ms, duration_ms, error, .. } => {
            t.status = next;
            t.retries_used += 1;
            t.agent = agent.clone();
            t.attempts = *attempt;
            t.attempt_ms = Some(*duration_ms);
            t.retry_at_ms = Some(ts.saturating_add(*delay_ms));
            t.error = Some(error.clone());
            if let Some(last) = t.history.last_mut() {
                last.result = AttemptResult::Retrying;
                last.duration_ms = Some(*duration_ms);
                last.retry_delay_ms = Some(*delay_ms);
                last.error = Some(error.clone());
            }
        }
        Event::TaskFallback { from, to, reason, .. } => {
            t.agent = to.clone();
            t.note = Some(format!("fell back from {from}: {reason}"));
        }
        Event::TaskSucceeded {
            agent,
            attempt,
            duration_ms,
            output,
            usage,
            simulated,
            details,
            ..
        } => {
            if let Some(summary) = details.summary() {
                t.note = Some(summary);
            }
            t.status = next;
            t.retries_used = 0;
            t.agent = agent.clone();
            t.attempts = *attempt;
            t.attempt_ms = Some(*duration_ms);
            t.duration_ms = Some(t.whole_task_ms(ts, *duration_ms));
            t.finished_ms = Some(ts);
            t.simulated = *simulated;
            t.result = Some(output.clone());
            if usage.is_some() {
                t.usage = *usage;
            }
            if let Some(details) = t.set_details() {
                details.retry_at_ms = None;
                details.usage = *usage;
            }
            if let Some(last) = t.set_details().and_then(|d| d.history.last_mut()) {
                last.result = AttemptResult::Succeeded;
                last.duration_ms = Some(*duration_ms);
                last.usage = *usage;
                last.details = details.clone();
            }
            if let OutputKeep::Tail(lines) = keep
                && t.output.is_empty()
                && !output.is_empty()
            {
                push_tail(&mut t.output, OutputStream::Stdout, output, lines);
            }
        }
        Event::TaskFailed { agent, attempt, duration_ms, error, .. } => {
            t.status = next;
            t.retries_used = 0;
            if let Some(agent) = agent {
                t.agent = agent.clone();
            }
            t.attempts = t.attempts.max(*attempt);
            t.attempt_ms = Some(*duration_ms);
            t.duration_ms = Some(t.whole_task_ms(ts, *duration_ms));
            t.finished_ms = Some(ts);
            t.retry_at_ms = None;
            t.error = Some(error.clone());
            if let Some(last) = t.history.last_mut().filter(|a| a.result == AttemptResult::Running)
            {
                last.result = AttemptResult::Failed;
                last.duration_ms = Some(*duration_ms);
                last.error = Some(error.clone());
            }
        }
        Event::TaskSkipped { reason, .. } => {
            t.status = next;
            t.note = Some(reason.clone());
            t.finished_ms = Some(ts);
        }
        Event::TaskCancelled { reason, .. } => {
            t.status = next;
            t.retries_used = 0;
            t.note = Some(reason.clone());
            t.finished_ms = Some(ts);
            t.retry_at_ms = None;
            if let Some(last) = t.history.last_mut().filter(|a| a.result == AttemptResult::Running)
            {
                last.result = AttemptResult::Cancelled;
                last.error = Some(reason.clone());
            }
        }
        Event::WorkspaceCreated { kind, path, repo, branch, base, base_from, .. } => {
            t.workspace = Some(Box::new(WorkspaceModel {
                kind: *kind,
                path: path.clone(),
                repo: repo.clone(),
                branch: branch.clone(),
                base: base.clone(),
                base_from: base_from.clone(),
                summary: String::new(),
                changes: Vec::new(),
            }));
        }
        Event::WorkspaceChanges { files, summary, .. } => {
            let Some(workspace) = &mut t.workspace else { return false };
            workspace.summary.clone_from(summary);
            workspace.changes.clone_from(files);
        }
        Event::InstanceWorking { instance, .. } => t.instance = Some(*instance),
        Event::AttemptInterrupted { attempt, .. } => {
            t.status = next;
            t.started_ms = None;
            t.note = Some(format!("attempt {attempt} interrupted by a crash; may have run twice"));
            if let Some(last) = t.history.iter_mut().rev().find(|a| a.attempt == *attempt) {
                last.result = AttemptResult::Interrupted;
            }
        }
        Event::PanelAgreed { decision, agents, .. } => {
            t.note = Some(format!("panel of {} agreed: {decision}", agents.len()));
        }
        Event::ConflictDetected { question, options, domain, decide, verdicts, failed, .. } => {
            t.conflict = Some(Box::new(ConflictModel {
                question: question.clone(),
                options: options.clone(),
                domain: *domain,
                decide: *decide,
                verdicts: verdicts.clone(),
                failed: failed.clone(),
                steps: Vec::new(),
                recommendation: None,
                detected_ms: ts,
                asked_ms: None,
                resolution: None,
            }));
        }
        Event::ConflictStep { step, finding, winner, decision, recommendation, .. } => {
            let Some(conflict) = &mut t.conflict else { return false };
            conflict.steps.push(ConflictStepModel {
                step: *step,
                finding: finding.clone(),
                winner: winner.clone(),
                decision: decision.clone(),
                at_ms: ts,
            });
            if *step == LadderStep::Operator {
                conflict.recommendation.clone_from(recommendation);
                conflict.asked_ms.get_or_insert(ts);
                t.status = next;
            }
        }
        Event::ConflictResolved { decision, winner, resolved_by, by, note, .. } => {
            let Some(conflict) = &mut t.conflict else { return false };
            conflict.resolution = Some(ConflictResolution {
                decision: decision.clone(),
                winner: winner.clone(),
                resolved_by: *resolved_by,
                by: by.clone(),
                note: note.clone(),
                resolved_ms: ts,
            });
            t.status = next;
        }
        _ => return false,
    }
    true
}

/// A new attempt, running.
fn attempt_model(
    agent: &AgentId,
    attempt: u32,
    backend: &str,
    simulated: bool,
    started_ms: u64,
) -> AttemptModel {
    AttemptModel {
        attempt,
        agent: agent.clone(),
        backend: backend.to_owned(),
        simulated,
        started_ms,
        result: AttemptResult::Running,
        duration_ms: None,
        error: None,
        retry_delay_ms: None,
        usage: None,
        details: AnswerDetails::default(),
        output: String::new(),
        stderr: String::new(),
        reasoning: String::new(),
        tools: Vec::new(),
    }
}

/// Add output to a tail of lines. Tokens and reasoning arrive in chunks that continue the
/// last line of their stream; stdout and stderr arrive as whole lines.
fn push_tail(output: &mut VecDeque<OutputLine>, stream: OutputStream, text: &str, keep: usize) {
    let mut pieces = text.split('\n');
    let chunked = matches!(stream, OutputStream::Tokens | OutputStream::Reasoning);
    if chunked
        && let Some(last) = output.back_mut().filter(|l| l.stream == stream)
        && let Some(first) = pieces.next()
    {
        let room = OUTPUT_LINE_MAX_CHARS.saturating_sub(last.text.chars().count());
        last.text.extend(first.chars().take(room));
    }
    // A tool's call or result is one piece however many lines it has.
    let whole = matches!(stream, OutputStream::ToolCall | OutputStream::ToolResult);
    for (at, piece) in pieces.enumerate() {
        let piece = piece.strip_suffix('\r').unwrap_or(piece);
        if !chunked && piece.is_empty() && text.ends_with('\n') {
            continue;
        }
        output.push_back(OutputLine {
            stream,
            text: piece.chars().take(OUTPUT_LINE_MAX_CHARS).collect(),
            continues: whole && at > 0,
        });
        while output.len() > keep {
            output.pop_front();
        }
    }
}

/// One piece of streamed output into its own part of the attempt.
fn push_full(attempt: &mut AttemptModel, stream: OutputStream, text: &str) {
    let line = |into: &mut String| {
        into.push_str(text);
        if !text.ends_with('\n') {
            into.push('\n');
        }
    };
    match stream {
        OutputStream::Tokens => attempt.output.push_str(text),
        OutputStream::Stdout => line(&mut attempt.output),
        OutputStream::Stderr => line(&mut attempt.stderr),
        OutputStream::Reasoning => attempt.reasoning.push_str(text),
        OutputStream::ToolCall => attempt.tools.push(format!("→ {}", text.trim_end())),
        OutputStream::ToolResult => attempt.tools.push(format!("← {}", text.trim_end())),
    }
}

#[cfg(test)]
mod tests;
