//! Everything the runtime tells the world. Events are past tense; each one published through
//! [`crate::bus::EventBus`] gets a sequence number and a timestamp in an [`Envelope`].
//!
//! The console, the headless printer, `--json` output, the run store and replay are all
//! projections of this one stream, so a field added here is visible everywhere.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::config::WorkspaceKind;
use crate::conflict::{DecideMode, Domain, LadderStep, MemberVerdict, Recommendation, Verdict};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};

/// One published event with its place in the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Strictly increasing across the whole process.
    pub seq: u64,
    /// Wall-clock time of publication, RFC 3339 with milliseconds in JSON.
    #[serde(rename = "ts", with = "rfc3339_ms")]
    pub ts_ms: u64,
    /// The run this event belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run_id: Option<RunId>,
    #[serde(flatten)]
    pub event: Event,
}

/// Severity of a [`Event::Notice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Which stream a line of task output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
    /// Streamed model tokens (HTTP executors).
    Tokens,
    /// Streamed reasoning ("thinking") text, kept apart from the answer.
    Reasoning,
    /// A tool call the agent made, one line: the tool and its input.
    ToolCall,
    /// What a tool call returned, as the agent saw it.
    ToolResult,
}

/// Final status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
}

/// Risk of a task, assessed before it runs. High and critical need approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

/// Token counts reported by a model backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Every input token, cached or not, so a warm and a cold run of one task report the
    /// same prompt size (Anthropic's own `input_tokens` leaves the cached part out).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache: Anthropic's
    /// `cache_read_input_tokens`, `OpenAI`'s `prompt_tokens_details.cached_tokens`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache (Anthropic's `cache_creation_input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_input_tokens: u64,
}

impl TokenUsage {
    /// Counts without any cache part.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self { input_tokens, output_tokens, ..Self::default() }
    }
}

// serde's `skip_serializing_if` hands the field by reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// A tool the agent called while answering: a model's tool-call reply or a coding agent's
/// tool use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id as the backend named it, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// The call's arguments as JSON text.
    #[serde(default)]
    pub input: String,
}

/// What an answer carried besides its text. Empty for most attempts, and then left out of
/// the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerDetails {
    /// The answer was cut off by the output limit (`finish_reason: length`,
    /// `stop_reason: max_tokens`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Tools the agent called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Reasoning or thinking text; never part of the output that reaches dependents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// A coding agent's session id, to resume or inspect the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Cost the backend reported for the attempt, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl AnswerDetails {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// What a one-line report of a finished attempt should add: truncation first (it
    /// changes what dependents get), then tool calls, reasoning and cost. `None` when there
    /// is nothing to say.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.truncated {
            parts.push("answer truncated at the output limit".to_owned());
        }
        match self.tool_calls.len() {
            0 => {}
            1 => parts.push("1 tool call".to_owned()),
            n => parts.push(format!("{n} tool calls")),
        }
        if self.reasoning.as_ref().is_some_and(|r| !r.is_empty()) {
            parts.push("reasoning kept apart".to_owned());
        }
        if let Some(cost) = self.cost_usd {
            parts.push(format!("${cost:.4}"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// One file a task changed in its workspace, from `git diff --numstat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// Lines added and removed; `None` for a binary file.
    pub added: Option<u64>,
    pub removed: Option<u64>,
}

/// What the console needs to list an agent definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub agent: AgentId,
    pub file: PathBuf,
    pub tier: u8,
    pub category: Option<String>,
    pub triggers: usize,
    pub max_instances: u32,
    pub backend: Option<String>,
    /// Non-fatal findings, e.g. "frontmatter is not strict YAML; read line by line".
    pub warnings: Vec<String>,
}

/// One task of a planned run, as the DAG pane draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTask {
    pub task: TaskId,
    /// Shared with the workflow's task and every copy of the plan (a run's start, the
    /// console's model): a 100,000-task plan is copied without copying its texts.
    pub description: Arc<str>,
    pub agent: AgentId,
    /// Selection score when the agent was chosen automatically.
    pub score: Option<f64>,
    /// Shared like `description`; a fan-out's tasks read from a console's feed share one.
    pub depends_on: Arc<[TaskId]>,
    /// Zero-based layer in the topological layering.
    pub layer: usize,
    pub timeout_ms: u64,
    pub retries: u32,
}

/// Everything the runtime reports. `type` in JSON is the `snake_case` variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    // ---- agent registry ----
    /// A definition file loaded for the first time.
    AgentAdded(AgentSummary),
    /// A definition changed on disk and the new version is active.
    AgentUpdated(AgentSummary),
    /// A definition file was deleted or renamed away.
    AgentRemoved { agent: AgentId, file: PathBuf },
    /// A definition file failed to load; the last good version (if any) stays active.
    AgentInvalid { file: PathBuf, agent: Option<AgentId>, error: String },
    /// A file that had an error was deleted (or fixed into a non-agent file): its error is gone.
    AgentFileCleared { file: PathBuf },

    // ---- pool ----
    /// An instance was created and reserved for a caller.
    InstanceReserved { instance: InstanceId, agent: AgentId },
    /// An instance started work.
    InstanceWorking { instance: InstanceId, agent: AgentId, task: Option<TaskId> },
    /// An instance finished work and waits for reuse.
    InstanceIdle { instance: InstanceId, agent: AgentId },
    /// An instance is gone for good.
    InstanceTerminated { instance: InstanceId, agent: AgentId, reason: String },
    /// A caller is queued because the agent or the pool is at capacity.
    InstanceQueued { agent: AgentId, waiting: usize },

    // ---- runs and tasks ----
    /// A run was planned and begins.
    RunStarted {
        workflow: String,
        file: PathBuf,
        goal: Option<String>,
        max_parallel: usize,
        fail_fast: bool,
        /// True when any task runs on the simulation backend.
        simulated: bool,
        tasks: Vec<PlannedTask>,
    },
    /// All dependencies succeeded; the task waits for a slot.
    TaskReady { task: TaskId },
    /// The task is high-risk and waits for a reviewer.
    TaskAwaitingApproval { task: TaskId, agent: AgentId, risk: Risk, reasons: Vec<String> },
    /// An attempt began on an instance.
    TaskStarted {
        task: TaskId,
        agent: AgentId,
        attempt: u32,
        instance: InstanceId,
        backend: String,
        simulated: bool,
    },
    /// A line (or token chunk) of output from a running attempt.
    TaskOutput { task: TaskId, stream: OutputStream, text: String },
    /// An attempt failed and another follows after a delay.
    TaskRetrying {
        task: TaskId,
        agent: AgentId,
        attempt: u32,
        delay_ms: u64,
        duration_ms: u64,
        error: String,
    },
    /// The agent's breaker is open; the task moves along the fallback chain.
    TaskFallback { task: TaskId, from: AgentId, to: AgentId, reason: String },
    /// The task finished successfully.
    TaskSucceeded {
        task: TaskId,
        agent: AgentId,
        attempt: u32,
        duration_ms: u64,
        output: String,
        usage: Option<TokenUsage>,
        simulated: bool,
        #[serde(default, skip_serializing_if = "AnswerDetails::is_empty")]
        details: AnswerDetails,
    },
    /// The task failed for good.
    TaskFailed {
        task: TaskId,
        agent: Option<AgentId>,
        attempt: u32,
        duration_ms: u64,
        error: String,
    },
    /// A dependency failed or was cancelled, so the task never ran.
    TaskSkipped { task: TaskId, reason: String },
    /// The task was cancelled by an operator or by `fail_fast`.
    TaskCancelled { task: TaskId, reason: String },
    /// A task got a workspace of its own: a git worktree on its own branch (kept after the
    /// run for review) or a fresh empty folder for one attempt.
    WorkspaceCreated {
        task: TaskId,
        kind: WorkspaceKind,
        /// The folder the agent works in.
        path: PathBuf,
        /// The repository the worktree belongs to (its main working tree).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repo: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        /// The commit the branch starts from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<String>,
        /// Where that commit came from: `HEAD`, a dependency's branch, or a merge of several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_from: Option<String>,
    },
    /// After an attempt, what the task's branch changed since its base, all attempts so far.
    WorkspaceChanges {
        task: TaskId,
        attempt: u32,
        branch: String,
        /// The commit holding the attempt's work; `None` when the attempt changed nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        files: Vec<FileChange>,
        /// `git diff --shortstat`, e.g. `2 files changed, 5 insertions(+)`.
        summary: String,
    },
    /// The run reached a final state.
    RunFinished {
        status: RunStatus,
        succeeded: usize,
        failed: usize,
        skipped: usize,
        cancelled: usize,
        duration_ms: u64,
    },

    // ---- approvals ----
    /// A reviewer must approve or reject the task before it runs.
    ApprovalRequested { task: TaskId, agent: AgentId, risk: Risk, reasons: Vec<String> },
    /// A reviewer decided.
    ApprovalDecided { task: TaskId, approved: bool, by: UserId, note: Option<String> },

    // ---- circuit breakers ----
    /// Failures reached the threshold; calls are refused until the recovery timeout.
    BreakerOpened {
        agent: AgentId,
        failures: u32,
        threshold: u32,
        recovery_ms: u64,
        last_error: String,
    },
    /// The recovery timeout passed; a limited number of probe calls are allowed.
    BreakerHalfOpened { agent: AgentId, probes: u32 },
    /// Probes succeeded or an operator reset the breaker.
    BreakerClosed { agent: AgentId, reason: String },

    // ---- governance ----
    /// The gate let a command through.
    CommandAccepted { user: UserId, role: String, command: String },
    /// The gate refused a command.
    CommandDenied { user: UserId, role: String, command: String, reason: String },

    // ---- everything else ----
    /// A message for the operator.
    Notice { level: Level, message: String },

    // ---- resume ----
    /// An interrupted run goes on in a new process (`flightdeck resume`): its stored plan,
    /// the tasks already done, and whether the workflow file changed since it started.
    RunResumed {
        /// Tasks that had succeeded and are not run again.
        done: usize,
        /// Tasks still to finish.
        remaining: usize,
        /// The workflow file no longer matches the one the run started with; the stored
        /// workflow is used.
        workflow_changed: bool,
        /// Leftover agent processes of the interrupted run that were killed first.
        killed_processes: usize,
    },
    /// An attempt was in flight when its run's process died. It runs again, so it may have
    /// run twice (whatever it did before the crash is not undone).
    AttemptInterrupted { task: TaskId, agent: AgentId, attempt: u32 },

    // ---- approvals (hosts) ----
    /// One approval of a task that needs `needed` different approvers; it still waits.
    ApprovalGiven { task: TaskId, by: UserId, count: u32, needed: u32 },
    /// The deadline of an approval passed under `on_timeout: escalate`: it keeps waiting,
    /// marked overdue, and the reviewers are told again.
    ApprovalOverdue { task: TaskId, waited_ms: u64 },
    // ---- panels and conflicts (added at the end: stored events keep their meaning) ----
    /// A panel member answered: its verdict, or why it gave none after `asked` questions
    /// (a member without a verdict never counts as a vote).
    PanelVerdict {
        task: TaskId,
        agent: AgentId,
        asked: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verdict: Option<Verdict>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Every verdict of the panel named the same decision.
    PanelAgreed { task: TaskId, decision: String, agents: Vec<AgentId> },
    /// The verdicts differ: the ladder starts. Carries everything a person needs to decide
    /// later (question, options, each verdict), so a restarted console can ask again.
    ConflictDetected {
        task: TaskId,
        question: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
        /// The question's domain, from `domain:` or its words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<Domain>,
        decide: DecideMode,
        verdicts: Vec<MemberVerdict>,
        /// Members that gave no usable verdict.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<AgentId>,
    },
    /// One step of the ladder ran. `winner` and `decision` are set when it decided; the
    /// `operator` step means a person is asked, with the ladder's recommendation.
    ConflictStep {
        task: TaskId,
        step: LadderStep,
        finding: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner: Option<AgentId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recommendation: Option<Recommendation>,
    },
    /// The conflict is settled: by a ladder step (`by` empty) or by a person.
    ConflictResolved {
        task: TaskId,
        decision: String,
        /// The agent whose verdict won, or `operator` for a person's own text.
        winner: String,
        resolved_by: LadderStep,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    // ---- safety policies ----
    /// An agent's output, or a coding agent's tool call, matched a safety rule. Enforced
    /// (`strict`) matches then block the task or hold its output for approval; advisory ones
    /// are only this warning.
    SafetyRuleMatched {
        task: TaskId,
        agent: AgentId,
        attempt: u32,
        policy: String,
        rule: String,
        action: crate::safety::SafetyAction,
        enforcement: crate::safety::Enforcement,
        /// What was checked: `output`, or `tool call <name>`.
        source: String,
        /// The match in context, on one line, the match itself between `«` and `»`.
        excerpt: String,
    },
    // ---- limits and budgets ----
    /// An attempt waits before it starts: its backend's rate limit is reached. The task
    /// shows "waiting on rate limit" until its next `TaskStarted`.
    RateLimited {
        task: TaskId,
        agent: AgentId,
        backend: String,
        /// `requests_per_minute` or `tokens_per_minute`.
        limit: String,
        wait_ms: u64,
    },
    /// What one attempt spent, as its backend reported it (published only when it reported
    /// tokens or a cost). The cost is the backend's own, else from `prices` in
    /// flightdeck.yaml; `None` when neither is known.
    TaskSpent {
        task: TaskId,
        attempt: u32,
        tokens: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// Spend reached 80% of a budget (once per budget and measure).
    BudgetWarning {
        /// The task whose attempt took the spend over the mark.
        task: TaskId,
        scope: BudgetScope,
        measure: BudgetMeasure,
        spent: f64,
        limit: f64,
    },
    /// Spend reached a budget: the task stops (`on_budget: stop`) or its output waits for a
    /// reviewer to raise the budget (`on_budget: approve`).
    BudgetExceeded {
        task: TaskId,
        scope: BudgetScope,
        measure: BudgetMeasure,
        spent: f64,
        limit: f64,
    },
    // ---- approvals (hosts2) ----
    /// The terms of an approval just requested, published right after its
    /// `approval_requested`: who started the run (who may not approve it), when the deadline
    /// passes, and how many different people must approve. The prompt shows them.
    ApprovalTerms {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<UserId>,
        /// ms since the Unix epoch; none without `policies.approval_timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<u64>,
        needed: u32,
    },
}

/// Whose budget: one task's, or the whole run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    Task,
    Run,
}

impl BudgetScope {
    pub fn word(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Run => "run",
        }
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMeasure {
    Tokens,
    CostUsd,
}

impl BudgetMeasure {
    /// `12,345 tokens` or `$0.1234`.
    pub fn amount(self, value: f64) -> String {
        match self {
            Self::Tokens => format!("{} tokens", value.round() as u64),
            Self::CostUsd => format!("${value:.4}"),
        }
    }
}

impl Event {
    /// The task this event is about, if any.
    pub fn task(&self) -> Option<&str> {
        match self {
            Self::InstanceWorking { task, .. } => task.as_ref().map(crate::ids::TaskId::as_str),
            Self::TaskReady { task }
            | Self::TaskAwaitingApproval { task, .. }
            | Self::TaskStarted { task, .. }
            | Self::TaskOutput { task, .. }
            | Self::TaskRetrying { task, .. }
            | Self::TaskFallback { task, .. }
            | Self::TaskSucceeded { task, .. }
            | Self::TaskFailed { task, .. }
            | Self::TaskSkipped { task, .. }
            | Self::TaskCancelled { task, .. }
            | Self::WorkspaceCreated { task, .. }
            | Self::WorkspaceChanges { task, .. }
            | Self::ApprovalRequested { task, .. }
            | Self::ApprovalDecided { task, .. }
            | Self::AttemptInterrupted { task, .. }
            | Self::ApprovalGiven { task, .. }
            | Self::ApprovalOverdue { task, .. }
            | Self::PanelVerdict { task, .. }
            | Self::PanelAgreed { task, .. }
            | Self::ConflictDetected { task, .. }
            | Self::ConflictStep { task, .. }
            | Self::ConflictResolved { task, .. }
            | Self::SafetyRuleMatched { task, .. }
            | Self::RateLimited { task, .. }
            | Self::TaskSpent { task, .. }
            | Self::BudgetWarning { task, .. }
            | Self::BudgetExceeded { task, .. }
            | Self::ApprovalTerms { task, .. } => Some(task.as_str()),
            _ => None,
        }
    }

    /// The agent this event is about, if any (for a fallback, the agent taking over).
    pub fn agent(&self) -> Option<&str> {
        match self {
            Self::AgentAdded(summary) | Self::AgentUpdated(summary) => Some(summary.agent.as_str()),
            Self::TaskFailed { agent, .. } | Self::AgentInvalid { agent, .. } => {
                agent.as_ref().map(crate::ids::AgentId::as_str)
            }
            Self::TaskFallback { to, .. } => Some(to.as_str()),
            Self::AgentRemoved { agent, .. }
            | Self::InstanceReserved { agent, .. }
            | Self::InstanceWorking { agent, .. }
            | Self::InstanceIdle { agent, .. }
            | Self::InstanceTerminated { agent, .. }
            | Self::InstanceQueued { agent, .. }
            | Self::TaskAwaitingApproval { agent, .. }
            | Self::TaskStarted { agent, .. }
            | Self::TaskRetrying { agent, .. }
            | Self::TaskSucceeded { agent, .. }
            | Self::ApprovalRequested { agent, .. }
            | Self::PanelVerdict { agent, .. }
            | Self::BreakerOpened { agent, .. }
            | Self::BreakerHalfOpened { agent, .. }
            | Self::BreakerClosed { agent, .. }
            | Self::AttemptInterrupted { agent, .. }
            | Self::RateLimited { agent, .. } => Some(agent.as_str()),
            _ => None,
        }
    }

    /// The `snake_case` name used as `type` in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AgentAdded(_) => "agent_added",
            Self::AgentUpdated(_) => "agent_updated",
            Self::AgentRemoved { .. } => "agent_removed",
            Self::AgentInvalid { .. } => "agent_invalid",
            Self::AgentFileCleared { .. } => "agent_file_cleared",
            Self::InstanceReserved { .. } => "instance_reserved",
            Self::InstanceWorking { .. } => "instance_working",
            Self::InstanceIdle { .. } => "instance_idle",
            Self::InstanceTerminated { .. } => "instance_terminated",
            Self::InstanceQueued { .. } => "instance_queued",
            Self::RunStarted { .. } => "run_started",
            Self::TaskReady { .. } => "task_ready",
            Self::TaskAwaitingApproval { .. } => "task_awaiting_approval",
            Self::TaskStarted { .. } => "task_started",
            Self::TaskOutput { .. } => "task_output",
            Self::TaskRetrying { .. } => "task_retrying",
            Self::TaskFallback { .. } => "task_fallback",
            Self::TaskSucceeded { .. } => "task_succeeded",
            Self::TaskFailed { .. } => "task_failed",
            Self::TaskSkipped { .. } => "task_skipped",
            Self::TaskCancelled { .. } => "task_cancelled",
            Self::WorkspaceCreated { .. } => "workspace_created",
            Self::WorkspaceChanges { .. } => "workspace_changes",
            Self::RunFinished { .. } => "run_finished",
            Self::ApprovalRequested { .. } => "approval_requested",
            Self::ApprovalDecided { .. } => "approval_decided",
            Self::BreakerOpened { .. } => "breaker_opened",
            Self::BreakerHalfOpened { .. } => "breaker_half_opened",
            Self::BreakerClosed { .. } => "breaker_closed",
            Self::CommandAccepted { .. } => "command_accepted",
            Self::CommandDenied { .. } => "command_denied",
            Self::Notice { .. } => "notice",
            Self::RunResumed { .. } => "run_resumed",
            Self::AttemptInterrupted { .. } => "attempt_interrupted",
            Self::ApprovalGiven { .. } => "approval_given",
            Self::ApprovalOverdue { .. } => "approval_overdue",
            Self::PanelVerdict { .. } => "panel_verdict",
            Self::PanelAgreed { .. } => "panel_agreed",
            Self::ConflictDetected { .. } => "conflict_detected",
            Self::ConflictStep { .. } => "conflict_step",
            Self::ConflictResolved { .. } => "conflict_resolved",
            Self::SafetyRuleMatched { .. } => "safety_rule_matched",
            Self::RateLimited { .. } => "rate_limited",
            Self::TaskSpent { .. } => "task_spent",
            Self::BudgetWarning { .. } => "budget_warning",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::ApprovalTerms { .. } => "approval_terms",
        }
    }
}

/// Milliseconds since the Unix epoch, written as RFC 3339 (`2026-11-22T01:45:00.123Z`).
pub mod rfc3339_ms {
    use std::time::{Duration, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        let at = UNIX_EPOCH + Duration::from_millis(*ms);
        s.collect_str(&humantime::format_rfc3339_millis(at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        let at = humantime::parse_rfc3339_weak(&text).map_err(D::Error::custom)?;
        let since = at.duration_since(UNIX_EPOCH).map_err(D::Error::custom)?;
        Ok(since.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_details_summary_leads_with_truncation_and_is_absent_when_empty() {
        assert_eq!(AnswerDetails::default().summary(), None);
        let details = AnswerDetails {
            truncated: true,
            tool_calls: vec![
                ToolCall { id: None, name: "Read".into(), input: "{}".into() },
                ToolCall { id: Some("t2".into()), name: "Bash".into(), input: "{}".into() },
            ],
            reasoning: Some("think".into()),
            session_id: Some("s1".into()),
            cost_usd: Some(0.0213),
        };
        assert_eq!(
            details.summary().as_deref(),
            Some(
                "answer truncated at the output limit, 2 tool calls, reasoning kept apart, $0.0213"
            )
        );
        // An empty details object stays out of the JSON, so old events read the same.
        let event = Event::TaskSucceeded {
            task: TaskId::new("t"),
            agent: AgentId::new("a"),
            attempt: 1,
            duration_ms: 1,
            output: String::new(),
            usage: None,
            simulated: false,
            details: AnswerDetails::default(),
        };
        let json = serde_json::to_string(&event).expect("serialize");
        assert!(!json.contains("details"), "{json}");
    }

    #[test]
    fn envelope_json_has_flat_type_and_rfc3339_ts() {
        let env = Envelope {
            seq: 7,
            ts_ms: 1_700_000_000_123,
            run_id: Some(RunId::new("r1")),
            event: Event::TaskReady { task: TaskId::new("build") },
        };
        let json = serde_json::to_string(&env).expect("serialize");
        assert_eq!(
            json,
            r#"{"seq":7,"ts":"2023-11-14T22:13:20.123Z","run_id":"r1","type":"task_ready","task":"build"}"#
        );
        let back: Envelope = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, env);
        assert_eq!(env.event.kind(), "task_ready");
    }
}
