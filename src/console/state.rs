//! The console's view state: plain data folded from events and keys. No channels, clocks or IO;
//! the reducer is the only writer and panes only read it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ratatui::layout::Rect;

use crate::command::{Command, Permission};
use crate::event::{AgentSummary, Envelope, Level, PlannedTask, Risk};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
use crate::resilience::{CallMetrics, assess};

pub use super::conflicts::{ConflictEntry, ConflictInput, ConflictKey, ConflictsView};
use super::layout::ScreenLayout;
use super::ring::SharedRing;
use super::theme::Role;

/// Audit lines kept in memory; older ones drop off the top.
pub const AUDIT_CAPACITY: usize = 10_000;
/// Output lines kept per task for the details view.
pub const OUTPUT_TAIL_LINES: usize = 200;
/// Breaker threshold shown before the runtime has reported one (DESIGN.md default).
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;

/// The five panes, in focus order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PaneId {
    Agents,
    Pool,
    Dag,
    Breakers,
    Audit,
}

impl PaneId {
    /// Focus order for Tab.
    pub const ORDER: [PaneId; 5] =
        [PaneId::Agents, PaneId::Pool, PaneId::Dag, PaneId::Breakers, PaneId::Audit];

    /// The title drawn on the pane's border.
    pub fn title(self) -> &'static str {
        match self {
            Self::Agents => "Agents",
            Self::Pool => "Pool",
            Self::Dag => "DAG",
            Self::Breakers => "Breakers",
            Self::Audit => "Audit",
        }
    }

    fn index(self) -> usize {
        Self::ORDER.iter().position(|p| *p == self).unwrap_or(0)
    }

    /// The next pane in focus order, wrapping.
    #[must_use]
    pub fn next(self) -> Self {
        Self::ORDER[(self.index() + 1) % Self::ORDER.len()]
    }

    /// The previous pane in focus order, wrapping.
    #[must_use]
    pub fn prev(self) -> Self {
        Self::ORDER[(self.index() + Self::ORDER.len() - 1) % Self::ORDER.len()]
    }
}

/// The caller's role, only to hide keys it cannot use; the gate still decides. The same
/// table as the gate's, so the console can never show a key the gate would refuse.
pub use crate::governance::Role as UserRole;

/// Selection and scrolling of one list pane. Selection is by key, so rows that come and go
/// never move the selection onto a different item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor<K> {
    pub selected: Option<K>,
    /// First visible row.
    pub offset: usize,
    /// Case-insensitive substring the list is narrowed to; empty shows everything.
    pub filter: String,
    /// The operator moved the selection: it follows that item. Until then it stays on the
    /// first row while rows arrive.
    pub pinned: bool,
}

impl<K> Default for ListCursor<K> {
    fn default() -> Self {
        Self { selected: None, offset: 0, filter: String::new(), pinned: false }
    }
}

/// Whether `text` matches a filter (case-insensitive; empty matches everything).
pub fn matches_filter(filter: &str, text: &str) -> bool {
    filter.is_empty() || text.to_lowercase().contains(&filter.to_lowercase())
}

// ---------------------------------------------------------------- agents

/// One row of the Agents pane: a definition, its last load error, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEntry {
    /// The active definition; `None` when the file never loaded.
    pub summary: Option<AgentSummary>,
    pub file: PathBuf,
    /// The last load error; the last good version (if any) stays active.
    pub error: Option<String>,
}

impl AgentEntry {
    /// The row's key: the agent name, or the file when the file never loaded.
    pub fn key(&self) -> String {
        self.summary
            .as_ref()
            .map_or_else(|| self.file.display().to_string(), |s| s.agent.to_string())
    }

    pub fn tier(&self) -> u8 {
        self.summary.as_ref().map_or(0, |s| s.tier)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentsView {
    /// By row key (see [`AgentEntry::key`]).
    pub entries: BTreeMap<String, AgentEntry>,
    pub cursor: ListCursor<String>,
}

impl AgentsView {
    /// Rows in display order: broken files first, then by tier and name; filtered.
    pub fn rows(&self) -> Vec<&AgentEntry> {
        let mut rows: Vec<&AgentEntry> =
            self.entries.values().filter(|e| self.matches(e)).collect();
        rows.sort_by_key(|e| (e.summary.is_some(), e.tier(), e.key()));
        rows
    }

    /// Whether an entry passes the filter (name, file or category).
    pub fn matches(&self, entry: &AgentEntry) -> bool {
        let filter = &self.cursor.filter;
        matches_filter(filter, &entry.key())
            || entry
                .summary
                .as_ref()
                .is_some_and(|s| s.category.as_deref().is_some_and(|c| matches_filter(filter, c)))
    }

    /// Whether the row with this key is listed.
    pub fn is_listed(&self, key: &str) -> bool {
        self.entries.get(key).is_some_and(|e| self.matches(e))
    }
}

// ---------------------------------------------------------------- pool

/// A live instance's state; terminated instances leave the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Reserved,
    Working,
    Idle,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Working => "working",
            Self::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: InstanceId,
    pub agent: AgentId,
    pub state: InstanceState,
    pub task: Option<TaskId>,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolView {
    pub instances: BTreeMap<InstanceId, InstanceView>,
    pub terminated: u64,
    /// Callers waiting per agent (last report; zero entries are removed).
    pub queued: BTreeMap<AgentId, usize>,
    pub cursor: ListCursor<InstanceId>,
}

/// Instance counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub reserved: usize,
    pub working: usize,
    pub idle: usize,
    pub terminated: u64,
}

impl PoolView {
    pub fn counts(&self) -> PoolCounts {
        let mut counts = PoolCounts { terminated: self.terminated, ..PoolCounts::default() };
        for instance in self.instances.values() {
            match instance.state {
                InstanceState::Reserved => counts.reserved += 1,
                InstanceState::Working => counts.working += 1,
                InstanceState::Idle => counts.idle += 1,
            }
        }
        counts
    }

    /// Live instances in id order, filtered by agent, state or task.
    pub fn rows(&self) -> Vec<&InstanceView> {
        self.instances.values().filter(|i| self.matches(i)).collect()
    }

    /// Whether an instance passes the filter (agent, state, id or task).
    pub fn matches(&self, instance: &InstanceView) -> bool {
        let filter = &self.cursor.filter;
        filter.is_empty()
            || matches_filter(filter, instance.agent.as_str())
            || matches_filter(filter, instance.state.as_str())
            || matches_filter(filter, &instance.id.to_string())
            || instance.task.as_ref().is_some_and(|t| matches_filter(filter, t.as_str()))
    }

    /// The first listed instance, without building the list when nothing is filtered.
    pub fn first_listed(&self) -> Option<InstanceId> {
        self.instances.values().find(|i| self.matches(i)).map(|i| i.id)
    }

    pub fn is_listed(&self, id: InstanceId) -> bool {
        self.instances.get(&id).is_some_and(|i| self.matches(i))
    }
}

// ---------------------------------------------------------------- breakers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The word shown next to the colour, so state reads without colour.
    pub fn word(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "OPEN",
            Self::HalfOpen => "half-open",
        }
    }

    pub fn glyph(self) -> &'static str {
        match self {
            Self::Closed => "●",
            Self::Open => "○",
            Self::HalfOpen => "◐",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    pub state: BreakerState,
    pub failures: u32,
    pub threshold: u32,
    pub opened_ms: Option<u64>,
    pub recovery_ms: u64,
    pub probes: u32,
    pub last_error: Option<String>,
    /// Why it last closed (probes succeeded, operator reset).
    pub closed_reason: Option<String>,
}

impl Default for BreakerView {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            threshold: DEFAULT_BREAKER_THRESHOLD,
            opened_ms: None,
            recovery_ms: 0,
            probes: 0,
            last_error: None,
            closed_reason: None,
        }
    }
}

impl BreakerView {
    /// Milliseconds until the runtime may half-open an open breaker.
    pub fn until_half_open_ms(&self, now_ms: u64) -> Option<u64> {
        match (self.state, self.opened_ms) {
            (BreakerState::Open, Some(opened)) => {
                Some((opened + self.recovery_ms).saturating_sub(now_ms))
            }
            _ => None,
        }
    }
}

pub use crate::resilience::Health;

/// The word shown for a health verdict.
pub fn health_word(health: Health) -> &'static str {
    match health {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
    }
}

/// Calls of one agent folded from task events; each finished attempt is a call. The runtime's
/// own [`CallMetrics`] and [`assess`] judge them, so the console and the runtime agree on an
/// agent's health (error rate over the last 64 calls, not its whole life).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentMetrics {
    pub calls: CallMetrics,
    pub consecutive_failures: u32,
}

impl AgentMetrics {
    pub fn record(&mut self, ok: bool, duration_ms: u64) {
        self.calls.record(!ok, Duration::from_millis(duration_ms));
        self.consecutive_failures = if ok { 0 } else { self.consecutive_failures + 1 };
    }

    pub fn mean_duration_ms(&self) -> Option<u64> {
        self.calls.mean_duration().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The runtime's verdict; an open breaker makes the agent unhealthy, a half-open one at
    /// least degraded.
    pub fn health(&self, breaker: Option<BreakerState>) -> Health {
        let open = breaker == Some(BreakerState::Open);
        let half_open = breaker == Some(BreakerState::HalfOpen);
        assess(&self.calls, self.consecutive_failures, open, half_open).0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakersView {
    pub breakers: BTreeMap<AgentId, BreakerView>,
    pub metrics: BTreeMap<AgentId, AgentMetrics>,
    pub cursor: ListCursor<AgentId>,
}

impl BreakersView {
    /// Agents with a breaker report or call history: open first, then half-open, then by name.
    pub fn rows(&self) -> Vec<&AgentId> {
        let mut agents: Vec<&AgentId> = self.breakers.keys().chain(self.metrics.keys()).collect();
        agents.sort();
        agents.dedup();
        agents.retain(|a| matches_filter(&self.cursor.filter, a.as_str()));
        agents.sort_by_key(|a| self.rank(a));
        agents
    }

    /// Open breakers sort first, then half-open ones.
    fn rank(&self, agent: &AgentId) -> u8 {
        match self.breakers.get(agent).map(|b| b.state) {
            Some(BreakerState::Open) => 0,
            Some(BreakerState::HalfOpen) => 1,
            _ => 2,
        }
    }

    /// The first row, in one pass without sorting.
    pub fn first_listed(&self) -> Option<&AgentId> {
        self.breakers
            .keys()
            .chain(self.metrics.keys())
            .filter(|a| matches_filter(&self.cursor.filter, a.as_str()))
            .min_by_key(|a| (self.rank(a), *a))
    }

    pub fn is_listed(&self, agent: &AgentId) -> bool {
        (self.breakers.contains_key(agent) || self.metrics.contains_key(agent))
            && matches_filter(&self.cursor.filter, agent.as_str())
    }
}

// ---------------------------------------------------------------- run and DAG

pub use crate::model::{
    OutputKeep, OutputLine, RunModel, RunOutcome, TaskModel, TaskStatus, WorkspaceModel,
};

/// The theme role that colours a task status.
pub trait StatusRole {
    fn role(self) -> Role;
}

impl StatusRole for TaskStatus {
    fn role(self) -> Role {
        match self {
            Self::Pending | Self::Ready => Role::Pending,
            Self::AwaitingApproval | Self::AwaitingDecision | Self::Retrying => Role::Warn,
            Self::Running => Role::Running,
            Self::Succeeded => Role::Ok,
            Self::Failed => Role::Error,
            Self::Skipped | Self::Cancelled => Role::Muted,
        }
    }
}

/// The run's state (the one fold, [`RunModel`]) and what only the DAG needs: layers, rows,
/// edges, column widths and the cursor. Reads go through to the model (`run.tasks`,
/// `run.progress()`); only [`RunView::apply`] changes it, so the console and every other
/// view of a run agree.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub model: RunModel,
    /// Task indices per layer, ordered to reduce edge crossings. This and the other lists
    /// of the layout change only with the plan: shared, so a copy of the view (a replay's
    /// snapshot) does not copy them.
    pub layers: Arc<Vec<Vec<usize>>>,
    /// Position of each task inside its layer.
    pub row_in_layer: Arc<Vec<usize>>,
    /// Task indices each task depends on.
    pub deps: Arc<Vec<Vec<usize>>>,
    /// Task indices depending on each task.
    pub dependents: Arc<Vec<Vec<usize>>>,
    /// Display width of the longest task id (sizes the DAG columns).
    pub id_width: usize,
    /// Tasks in the largest layer.
    pub widest_layer: usize,
    pub cursor: DagCursor,
    /// Read from the store (the Runs list's Enter), not followed live: without an outcome it
    /// is interrupted (or going on in another process), not running here. Cleared when one of
    /// its events arrives live (a resume).
    pub from_store: bool,
}

impl std::ops::Deref for RunView {
    type Target = RunModel;

    fn deref(&self) -> &RunModel {
        &self.model
    }
}

/// Selection and scrolling of the DAG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagCursor {
    /// Index into the model's tasks.
    pub selected: usize,
    pub layer_offset: usize,
    pub row_offset: usize,
    /// Tasks not matching are dimmed.
    pub filter: String,
}

impl RunView {
    /// An empty view of `run` (or of the next run to start, without an id); its
    /// `RunStarted` fills it.
    pub fn new(run: Option<RunId>) -> Self {
        let keep = OutputKeep::Tail(OUTPUT_TAIL_LINES);
        let model = match run {
            Some(run) => RunModel::for_run(run, keep),
            None => RunModel::new(keep),
        };
        Self::from_model(model)
    }

    /// The view of a model already folded (a stored run, a replay's cursor).
    pub fn from_model(model: RunModel) -> Self {
        let mut view = Self {
            model,
            layers: Arc::default(),
            row_in_layer: Arc::default(),
            deps: Arc::default(),
            dependents: Arc::default(),
            id_width: 0,
            widest_layer: 0,
            cursor: DagCursor::default(),
            from_store: false,
        };
        view.lay_out();
        view
    }

    /// Fold one event into the model; returns whether it changed it. A plan that brought new
    /// tasks lays the DAG out again, keeping the selected task.
    pub fn apply(&mut self, envelope: &Envelope) -> bool {
        let planned = self.model.tasks.len();
        let changed = self.model.apply(envelope);
        if self.model.tasks.len() != planned {
            self.lay_out();
        }
        changed
    }

    /// Layers, rows and edges of the planned tasks.
    fn lay_out(&mut self) {
        let selected = self.model.tasks.get(self.cursor.selected).map(|t| t.id().clone());
        let planned: Vec<&PlannedTask> = self.model.tasks.iter().map(|t| &t.planned).collect();
        let index = &self.model.index;
        let deps: Vec<Vec<usize>> = planned
            .iter()
            .map(|t| t.depends_on.iter().filter_map(|d| index.get(d).copied()).collect())
            .collect();
        let mut dependents = vec![Vec::new(); planned.len()];
        for (task, task_deps) in deps.iter().enumerate() {
            for dep in task_deps {
                dependents[*dep].push(task);
            }
        }
        let layer_count = planned.iter().map(|t| t.layer + 1).max().unwrap_or(0);
        let mut layers = vec![Vec::new(); layer_count];
        for (i, task) in planned.iter().enumerate() {
            layers[task.layer].push(i);
        }
        // One barycentre pass: order each layer by the mean row of its dependencies, which
        // removes most crossings in real workflows for the cost of one sort per layer.
        let mut row_in_layer = vec![0; planned.len()];
        for layer in &mut layers {
            let weight = |task: usize| -> f64 {
                let rows: Vec<usize> = deps[task].iter().map(|d| row_in_layer[*d]).collect();
                if rows.is_empty() {
                    f64::from(u32::try_from(task).unwrap_or(u32::MAX))
                } else {
                    rows.iter().sum::<usize>() as f64 / rows.len() as f64
                }
            };
            let mut weighted: Vec<(f64, usize)> = layer.iter().map(|t| (weight(*t), *t)).collect();
            weighted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *layer = weighted.into_iter().map(|(_, t)| t).collect();
            for (row, task) in layer.iter().enumerate() {
                row_in_layer[*task] = row;
            }
        }
        let first = layers.first().and_then(|l| l.first()).copied().unwrap_or(0);
        self.cursor.selected = selected.and_then(|id| index.get(&id).copied()).unwrap_or(first);
        self.id_width = planned
            .iter()
            .map(|t| unicode_width::UnicodeWidthStr::width(t.task.as_str()))
            .max()
            .unwrap_or(0);
        self.widest_layer = layers.iter().map(Vec::len).max().unwrap_or(0);
        self.layers = Arc::new(layers);
        self.row_in_layer = Arc::new(row_in_layer);
        self.deps = Arc::new(deps);
        self.dependents = Arc::new(dependents);
    }

    pub fn selected_task(&self) -> Option<&TaskModel> {
        self.model.tasks.get(self.cursor.selected).map(Arc::as_ref)
    }

    /// Whether the task at `index` matches the DAG filter.
    pub fn matches(&self, index: usize) -> bool {
        self.model.tasks.get(index).is_some_and(|t| {
            matches_filter(&self.cursor.filter, t.planned.task.as_str())
                || matches_filter(&self.cursor.filter, t.agent.as_str())
        })
    }
}

// ---------------------------------------------------------------- runs

pub use crate::store::{RunRow, RunState};

/// The Runs list: runs read from the store when it opened, merged with the runs this console
/// folds live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsList {
    /// What the store listed when the operator opened the list.
    pub stored: Vec<RunRow>,
    pub cursor: ListCursor<RunId>,
}

/// One row of the Runs list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEntry {
    pub id: RunId,
    pub workflow: String,
    /// `running`, `waiting` (for a person), `succeeded`, `failed`, `cancelled` or
    /// `interrupted`.
    pub status: &'static str,
    /// Tasks that succeeded (what a run that ended short of its plan did get done).
    pub succeeded: usize,
    pub total: usize,
    pub started_ms: u64,
    pub duration_ms: Option<u64>,
    /// Folded live by this console (its events arrive).
    pub live: bool,
    /// The run the DAG shows.
    pub shown: bool,
}

impl RunEntry {
    pub fn role(&self) -> Role {
        match self.status {
            "running" => Role::Running,
            "succeeded" => Role::Ok,
            "failed" => Role::Error,
            "interrupted" | "waiting" => Role::Warn,
            _ => Role::Muted,
        }
    }

    fn matches(&self, filter: &str) -> bool {
        matches_filter(filter, &self.workflow)
            || matches_filter(filter, self.id.as_str())
            || matches_filter(filter, self.status)
    }
}

// ---------------------------------------------------------------- audit

/// One line of the audit stream, formatted once when the event arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Position in the audit stream: one more than the line before, so a line still kept is
    /// found by arithmetic.
    pub line: u64,
    pub seq: u64,
    pub ts_ms: u64,
    pub role: Role,
    pub text: String,
    pub envelope: Arc<Envelope>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditView {
    /// Shared in chunks: a replay's snapshots of the state copy them cheaply.
    pub entries: SharedRing<AuditEntry>,
    pub capacity: usize,
    /// Matching lines between the selected line and the newest; 0 follows the tail.
    pub scroll: usize,
    /// Matching lines between the bottom visible line and the newest.
    pub offset: usize,
    pub filter: String,
    /// Lines pushed so far.
    pub pushed: u64,
    /// The line of each task whose output is streaming now, and what it streamed: one line
    /// per attempt instead of one per token.
    pub streams: HashMap<(Option<RunId>, TaskId), (u64, StreamTally)>,
}

/// What one attempt of a task streamed, counted for its audit line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTally {
    /// Token chunks of the answer (about one token each).
    pub tokens: u64,
    /// Chunks of reasoning.
    pub reasoning: u64,
    pub stdout_lines: u64,
    pub stderr_lines: u64,
    pub tool_results: u64,
}

impl Default for AuditView {
    fn default() -> Self {
        Self {
            entries: SharedRing::new(),
            capacity: AUDIT_CAPACITY,
            scroll: 0,
            offset: 0,
            filter: String::new(),
            pushed: 0,
            streams: HashMap::new(),
        }
    }
}

impl AuditView {
    /// The entry at stream position `line`, if it is still kept.
    pub fn line_mut(&mut self, line: u64) -> Option<&mut AuditEntry> {
        let first = self.entries.front()?.line;
        let index = usize::try_from(line.checked_sub(first)?).ok()?;
        self.entries.get_mut(index)
    }

    pub fn is_following(&self) -> bool {
        self.scroll == 0
    }

    /// Indices (into `entries`) of the newest matching lines, newest first, skipping `skip`.
    /// Costs what is shown, not what is stored, when no filter is set.
    pub fn newest_matching(&self, skip: usize, take: usize) -> Vec<usize> {
        if self.filter.is_empty() {
            let end = self.entries.len().saturating_sub(skip);
            let start = end.saturating_sub(take);
            return (start..end).rev().collect();
        }
        (0..self.entries.len())
            .rev()
            .filter(|i| matches_filter(&self.filter, &self.entries[*i].text))
            .skip(skip)
            .take(take)
            .collect()
    }

    pub fn matching_len(&self) -> usize {
        if self.filter.is_empty() {
            self.entries.len()
        } else {
            self.entries.iter().filter(|e| matches_filter(&self.filter, &e.text)).count()
        }
    }

    /// The selected line (the newest one when following).
    pub fn selected(&self) -> Option<&AuditEntry> {
        self.newest_matching(self.scroll, 1).first().and_then(|i| self.entries.get(*i))
    }
}

// ---------------------------------------------------------------- prompts and overlays

/// Which approval: the run (when the event named one) and the task.
pub type ApprovalKey = (Option<RunId>, TaskId);

/// A high-risk task waiting for a reviewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    pub run: Option<RunId>,
    pub task: TaskId,
    pub agent: AgentId,
    pub risk: Risk,
    pub reasons: Vec<String>,
    pub requested_ms: u64,
    /// The reviewer chose "Later"; it stays pending but does not pop up again by itself.
    pub deferred: bool,
    /// Who started the run (`approval_terms`).
    pub requested_by: Option<UserId>,
    /// When the deadline passes (`approval_terms`); the prompt counts down to it.
    pub deadline_ms: Option<u64>,
    /// How many different people must approve (2 at `two_person_at`).
    pub needed: u32,
    /// Who approved so far ("1 of 2 — first by alice").
    pub approved_by: Vec<UserId>,
    /// The deadline passed under `on_timeout: escalate`.
    pub overdue: bool,
}

/// Buttons of the approval prompt. Focus starts on `Later`, which changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalChoice {
    Approve,
    Reject,
    Later,
}

/// A layer above the panes that sees keys first.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Approve or reject a high-risk task. Before `armed_ms` the deciding keys do nothing,
    /// so a key meant for the pane behind a prompt that just popped up cannot decide it.
    Approval { run: Option<RunId>, task: TaskId, choice: ApprovalChoice, armed_ms: u64 },
    /// Confirm a dangerous action, asked the same whether it came from a key or a `:`
    /// command; `confirm` starts false (the safe choice).
    Confirm { question: String, answer: Confirmed, confirm: bool },
    /// Settle a conflict between agents: `choice` is a verdict's column, or `None` for
    /// "Later" (where focus starts). Before `armed_ms` choosing does nothing, as for
    /// approvals.
    Conflict { key: ConflictKey, choice: Option<usize>, armed_ms: u64, input: ConflictInput },
}

/// What a confirmation does when answered yes.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmed {
    /// Send this command (the gate still decides).
    Send(Command),
    /// Cancel these live runs through the gate (audited as the operator's commands), then
    /// leave the console.
    Quit { cancel: Vec<RunId> },
}

/// A read-only overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help {
        scroll: usize,
    },
    /// Details of the selected item of a pane.
    Details {
        pane: PaneId,
        scroll: usize,
    },
    /// The Runs list: live, finished and interrupted runs.
    Runs,
    /// The Conflicts list: open and resolved conflicts of every run.
    Conflicts,
}

/// What typed text goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editing {
    /// Keys are commands.
    None,
    /// Typing narrows the focused pane's list.
    Filter,
    /// The `:` command line has the keys.
    CommandLine,
}

/// The `:` command line being typed: plain text and a cursor (in characters), edited by the
/// reducer and drawn by the status bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub text: String,
    /// Characters before the cursor.
    pub cursor: usize,
    /// What Tab offered where the candidates differ, shown after the text until the next
    /// edit.
    pub choices: Vec<String>,
}

/// One edit of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEdit {
    Insert(char),
    /// Delete the character before the cursor.
    Backspace,
    /// Delete the character under the cursor.
    Delete,
    Left,
    Right,
    Home,
    End,
    /// Delete the word before the cursor (Ctrl-w).
    DeleteWord,
    /// Delete everything before the cursor (Ctrl-u).
    DeleteToStart,
}

impl CommandLine {
    /// A line holding `text` with the cursor at its end.
    pub fn with_text(text: &str) -> Self {
        Self { text: text.to_owned(), cursor: text.chars().count(), choices: Vec::new() }
    }

    /// Byte offset of a character position.
    fn byte_at(&self, chars: usize) -> usize {
        self.text.char_indices().nth(chars).map_or(self.text.len(), |(at, _)| at)
    }

    pub fn edit(&mut self, edit: LineEdit) {
        self.choices.clear();
        let len = self.text.chars().count();
        self.cursor = self.cursor.min(len);
        match edit {
            LineEdit::Insert(c) => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            LineEdit::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.text.remove(at);
                self.cursor -= 1;
            }
            LineEdit::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            LineEdit::Left => self.cursor = self.cursor.saturating_sub(1),
            LineEdit::Right => self.cursor = (self.cursor + 1).min(len),
            LineEdit::Home => self.cursor = 0,
            LineEdit::End => self.cursor = len,
            LineEdit::DeleteWord => {
                let before: Vec<char> = self.text.chars().take(self.cursor).collect();
                let kept = before.iter().rposition(|c| !c.is_whitespace()).map_or(0, |last| {
                    before[..=last].iter().rposition(|c| c.is_whitespace()).map_or(0, |w| w + 1)
                });
                let (from, to) = (self.byte_at(kept), self.byte_at(self.cursor));
                self.text.replace_range(from..to, "");
                self.cursor = kept;
            }
            LineEdit::DeleteToStart => {
                let to = self.byte_at(self.cursor);
                self.text.replace_range(..to, "");
                self.cursor = 0;
            }
            LineEdit::Backspace | LineEdit::Delete => {}
        }
    }
}

/// Where a replay's cursor stands. Set only in replay: nothing can change then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCursor {
    /// Events applied.
    pub position: usize,
    pub total: usize,
    /// Time of the last event applied (of the first, before any).
    pub at_ms: u64,
    /// Playing at this speed (1 or 10), or paused.
    pub playing: Option<u32>,
}

/// A message in the status bar until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub level: Level,
    pub text: String,
    pub expires_ms: u64,
}

// ---------------------------------------------------------------- the whole picture

/// Everything the console shows.
#[derive(Debug, Clone)]
pub struct State {
    pub user: String,
    pub role: UserRole,
    pub project_dir: PathBuf,
    pub theme_name: String,
    /// Wall-clock time of the last tick or event.
    pub now_ms: u64,
    pub screen: Rect,
    pub layout: ScreenLayout,
    pub focus: PaneId,
    pub agents: AgentsView,
    pub pool: PoolView,
    /// Every run this console has seen start, each folded from its own events.
    pub runs: BTreeMap<RunId, RunView>,
    /// The run the DAG, the header and the details show.
    pub shown_run: Option<RunId>,
    /// The operator chose the shown run; until then the newest run that started is shown.
    pub shown_pinned: bool,
    pub breakers: BreakersView,
    pub audit: AuditView,
    pub runs_list: RunsList,
    /// Approvals waiting, by run and task: two runs may wait on tasks with the same id.
    pub approvals: BTreeMap<ApprovalKey, PendingApproval>,
    /// Conflicts between agents, by run and task.
    pub conflicts: ConflictsView,
    pub prompt: Option<Prompt>,
    pub overlay: Option<Overlay>,
    pub editing: Editing,
    pub command_line: CommandLine,
    /// The project's workflow files (`workflows/demo.yaml`), listed when the command line
    /// opens: what Tab completes after `run`.
    pub workflow_files: Vec<String>,
    /// A Tab on `resume`'s argument waits for the store's runs.
    pub completing_runs: bool,
    pub command_history: Vec<String>,
    /// Position while browsing history with Up/Down (`None`: not browsing).
    pub history_pos: Option<usize>,
    pub message: Option<StatusMessage>,
    /// Highest event sequence applied; live events at or below it are duplicates.
    pub applied_seq: u64,
    /// False once the runtime's event stream closed.
    pub runtime_connected: bool,
    /// In replay: the cursor. No command is offered or sent.
    pub replay: Option<ReplayCursor>,
    /// Attached to another process's host: quitting detaches, the runs go on there.
    pub attached: bool,
}

impl State {
    pub fn new(user: &str, role: &str, project_dir: PathBuf, theme_name: &str) -> Self {
        Self {
            user: user.to_owned(),
            role: role.parse().unwrap_or(UserRole::Viewer),
            project_dir,
            theme_name: theme_name.to_owned(),
            now_ms: 0,
            screen: Rect::default(),
            layout: ScreenLayout::default(),
            focus: PaneId::Dag,
            agents: AgentsView::default(),
            pool: PoolView::default(),
            runs: BTreeMap::new(),
            runs_list: RunsList::default(),
            shown_run: None,
            shown_pinned: false,
            breakers: BreakersView::default(),
            audit: AuditView::default(),
            approvals: BTreeMap::new(),
            conflicts: ConflictsView::default(),
            prompt: None,
            overlay: None,
            editing: Editing::None,
            command_line: CommandLine::default(),
            workflow_files: Vec::new(),
            completing_runs: false,
            command_history: Vec::new(),
            history_pos: None,
            message: None,
            applied_seq: 0,
            runtime_connected: true,
            replay: None,
            attached: false,
        }
    }

    /// Rows of the Runs list, newest first, filtered: the stored runs, with the progress of
    /// the runs this console folds taken from their models.
    pub fn run_entries(&self) -> Vec<RunEntry> {
        let mut entries: Vec<RunEntry> = self
            .runs
            .iter()
            .filter(|(_, run)| run.is_started())
            .map(|(id, run)| {
                let (succeeded, total) = (run.counts().succeeded, run.tasks.len());
                let stored = || self.runs_list.stored.iter().find(|row| row.run_id == *id);
                let status = match run.outcome {
                    Some(outcome) => run_status_key(outcome.status),
                    // Read from the store and not followed: as the store says (interrupted,
                    // or running in another process).
                    None if run.from_store => {
                        stored().map_or("interrupted", |row| row.state.as_str())
                    }
                    None if run.waits_for_a_person() => "waiting",
                    None => "running",
                };
                RunEntry {
                    id: id.clone(),
                    workflow: run.workflow.clone(),
                    status,
                    succeeded,
                    total,
                    started_ms: run.started_ms,
                    duration_ms: run.outcome.map(|o| o.duration_ms),
                    live: run.is_active() && !run.from_store,
                    shown: self.shown_run.as_ref() == Some(id),
                }
            })
            .collect();
        for row in &self.runs_list.stored {
            if self.runs.contains_key(&row.run_id) {
                continue;
            }
            entries.push(RunEntry {
                id: row.run_id.clone(),
                workflow: row.workflow.clone(),
                status: row.state.as_str(),
                succeeded: row.succeeded,
                total: row.tasks,
                started_ms: row.started_ms,
                duration_ms: row.duration_ms,
                live: false,
                shown: false,
            });
        }
        entries.retain(|e| e.matches(&self.runs_list.cursor.filter));
        entries.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then_with(|| b.id.cmp(&a.id)));
        entries
    }

    /// The run the DAG, the header and the details show.
    pub fn run(&self) -> Option<&RunView> {
        self.shown_run.as_ref().and_then(|id| self.runs.get(id))
    }

    pub fn run_mut(&mut self) -> Option<&mut RunView> {
        self.shown_run.as_ref().and_then(|id| self.runs.get_mut(id))
    }

    /// The run an event belongs to: its own, or (without an id) the shown one.
    pub fn run_of(&self, run: Option<&RunId>) -> Option<&RunView> {
        run.map_or_else(|| self.run(), |id| self.runs.get(id))
    }

    /// Runs that are still going (started, not finished), with their workflow names.
    pub fn live_runs(&self) -> Vec<(RunId, String)> {
        self.runs
            .values()
            .filter(|run| run.is_started() && run.is_active() && !run.from_store)
            .filter_map(|run| run.run_id.clone().map(|id| (id, run.workflow.clone())))
            .collect()
    }

    /// Whether the operator may review approvals (prompts are hidden otherwise).
    pub fn can_review(&self) -> bool {
        self.role.allows(Permission::Review)
    }

    /// The filter being typed: the Runs list's while it is open, else the pane's.
    pub fn filter(&self, pane: PaneId) -> &str {
        if self.overlay == Some(Overlay::Runs) {
            return &self.runs_list.cursor.filter;
        }
        if self.overlay == Some(Overlay::Conflicts) {
            return &self.conflicts.cursor.filter;
        }
        match pane {
            PaneId::Agents => &self.agents.cursor.filter,
            PaneId::Pool => &self.pool.cursor.filter,
            PaneId::Dag => self.run().map_or("", |r| r.cursor.filter.as_str()),
            PaneId::Breakers => &self.breakers.cursor.filter,
            PaneId::Audit => &self.audit.filter,
        }
    }

    /// When the picture next changes by time alone (elapsed clocks, countdowns, ages,
    /// message expiry). `None` means nothing on screen depends on time, so the app may sleep
    /// until input arrives.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let now = self.now_ms;
        let next_second = |since: u64| since + (now.saturating_sub(since) / 1000 + 1) * 1000;
        let mut deadlines: Vec<u64> = Vec::new();
        if let Some(message) = &self.message {
            deadlines.push(message.expires_ms.max(now + 1));
        }
        if let Some(run) = self.run().filter(|r| r.is_active() && !r.from_store) {
            deadlines.push(next_second(run.started_ms));
        }
        // An approval prompt with a deadline counts down each second; nothing else shown
        // there changes by itself, so without a deadline an idle console stays asleep.
        if let Some(Prompt::Approval { run, task, .. }) = &self.prompt
            && let Some(pending) = self.approvals.get(&(run.clone(), task.clone()))
            && pending.deadline_ms.is_some()
        {
            deadlines.push(next_second(pending.requested_ms));
        }
        for breaker in self.breakers.breakers.values() {
            // Countdowns show whole seconds: the next change is at the next second boundary.
            if let Some(left) = breaker.until_half_open_ms(now).filter(|left| *left > 0) {
                let step = if left % 1000 == 0 { 1000.min(left) } else { left % 1000 };
                deadlines.push(now + step);
            }
        }
        for instance in self.pool.instances.values() {
            // Ages show seconds under a minute, minutes under an hour, then hours.
            let age = now.saturating_sub(instance.created_ms);
            let unit = match age {
                0..60_000 => 1000,
                60_000..3_600_000 => 60_000,
                _ => 3_600_000,
            };
            deadlines.push(instance.created_ms + (age / unit + 1) * unit);
        }
        deadlines.into_iter().min()
    }
}

/// The word machines read for a run's outcome (as the store says it).
pub fn run_status_key(status: crate::event::RunStatus) -> &'static str {
    use crate::event::RunStatus;
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}
