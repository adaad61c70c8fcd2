//! The console's view state: plain data folded from events and keys. No channels, clocks or IO;
//! the reducer is the only writer and panes only read it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use ratatui::layout::Rect;
use ratatui_textarea::TextArea;

use crate::command::{Command, Permission};
use crate::conflict::{LadderStep, MemberVerdict, Recommendation};
use crate::event::{
    AgentSummary, Envelope, FileChange, Level, OutputStream, PlannedTask, Risk, RunStatus,
    WorkspaceKind,
};
use crate::ids::{AgentId, InstanceId, RunId, TaskId};

use super::layout::ScreenLayout;
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

/// Health of an agent from its call history (DESIGN.md alert thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Three or more failures in a row.
    Degraded,
    /// More than a quarter of calls failed.
    Unhealthy,
}

impl Health {
    pub fn word(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// Calls of one agent folded from task events; each attempt is a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentMetrics {
    pub calls: u64,
    pub errors: u64,
    pub total_duration_ms: u64,
    pub consecutive_failures: u32,
}

impl AgentMetrics {
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 { 0.0 } else { self.errors as f64 / self.calls as f64 }
    }

    pub fn success_rate(&self) -> f64 {
        if self.calls == 0 { 1.0 } else { 1.0 - self.error_rate() }
    }

    pub fn mean_duration_ms(&self) -> Option<u64> {
        self.total_duration_ms.checked_div(self.calls)
    }

    pub fn health(&self) -> Health {
        if self.error_rate() > 0.25 {
            Health::Unhealthy
        } else if self.consecutive_failures >= 3 {
            Health::Degraded
        } else {
            Health::Healthy
        }
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

pub use crate::model::TaskStatus;

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

#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub planned: PlannedTask,
    pub status: TaskStatus,
    /// The agent of the latest attempt (changes on fallback).
    pub agent: AgentId,
    pub attempts: u32,
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
    pub retry_at_ms: Option<u64>,
    pub error: Option<String>,
    /// Why it was skipped or cancelled, or the fallback that happened.
    pub note: Option<String>,
    pub risk: Option<Risk>,
    /// The last [`OUTPUT_TAIL_LINES`] lines of output.
    pub output: VecDeque<OutputLine>,
    /// Its own workspace, when it has one.
    pub workspace: Option<WorkspaceView>,
}

/// A task's own workspace and what its branch changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceView {
    pub kind: WorkspaceKind,
    pub path: PathBuf,
    pub branch: Option<String>,
    pub base_from: Option<String>,
    /// `git diff --shortstat` of the branch against its base; empty until an attempt ended.
    pub summary: String,
    pub changes: Vec<FileChange>,
}

/// One line of task output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub text: String,
}

impl TaskView {
    pub fn new(planned: PlannedTask) -> Self {
        Self {
            agent: planned.agent.clone(),
            planned,
            status: TaskStatus::Pending,
            attempts: 0,
            instance: None,
            backend: None,
            simulated: false,
            started_ms: None,
            first_started_ms: None,
            finished_ms: None,
            duration_ms: None,
            attempt_ms: None,
            retry_at_ms: None,
            error: None,
            note: None,
            risk: None,
            output: VecDeque::new(),
            workspace: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub finished_ms: u64,
    pub duration_ms: u64,
}

/// Selection and scrolling of the DAG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagCursor {
    /// Index into [`RunView::tasks`].
    pub selected: usize,
    pub layer_offset: usize,
    pub row_offset: usize,
    /// Tasks not matching are dimmed.
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub run_id: Option<RunId>,
    pub workflow: String,
    pub file: PathBuf,
    pub goal: Option<String>,
    pub max_parallel: usize,
    pub fail_fast: bool,
    pub simulated: bool,
    pub started_ms: u64,
    pub outcome: Option<RunOutcome>,
    /// In plan order.
    pub tasks: Vec<TaskView>,
    pub index: HashMap<TaskId, usize>,
    /// Task indices per layer, ordered to reduce edge crossings.
    pub layers: Vec<Vec<usize>>,
    /// Position of each task inside its layer.
    pub row_in_layer: Vec<usize>,
    /// Task indices each task depends on.
    pub deps: Vec<Vec<usize>>,
    /// Task indices depending on each task.
    pub dependents: Vec<Vec<usize>>,
    /// Display width of the longest task id (sizes the DAG columns).
    pub id_width: usize,
    /// Tasks in the largest layer.
    pub widest_layer: usize,
    pub cursor: DagCursor,
}

impl RunView {
    /// Build the view of a freshly planned run (the fields of `RunStarted`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: Option<RunId>,
        workflow: String,
        file: PathBuf,
        goal: Option<String>,
        max_parallel: usize,
        fail_fast: bool,
        simulated: bool,
        started_ms: u64,
        planned: Vec<PlannedTask>,
    ) -> Self {
        let index: HashMap<TaskId, usize> =
            planned.iter().enumerate().map(|(i, t)| (t.task.clone(), i)).collect();
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
        let selected = layers.first().and_then(|l| l.first()).copied().unwrap_or(0);
        let id_width = planned
            .iter()
            .map(|t| unicode_width::UnicodeWidthStr::width(t.task.as_str()))
            .max()
            .unwrap_or(0);
        let widest_layer = layers.iter().map(Vec::len).max().unwrap_or(0);
        Self {
            run_id,
            workflow,
            file,
            goal,
            max_parallel,
            fail_fast,
            simulated,
            started_ms,
            outcome: None,
            tasks: planned.into_iter().map(TaskView::new).collect(),
            index,
            layers,
            row_in_layer,
            deps,
            dependents,
            id_width,
            widest_layer,
            cursor: DagCursor { selected, ..DagCursor::default() },
        }
    }

    pub fn task(&self, id: &TaskId) -> Option<&TaskView> {
        self.index.get(id).and_then(|i| self.tasks.get(*i))
    }

    pub fn selected_task(&self) -> Option<&TaskView> {
        self.tasks.get(self.cursor.selected)
    }

    /// Finished tasks (any final status) and all tasks.
    pub fn progress(&self) -> (usize, usize) {
        (self.tasks.iter().filter(|t| t.status.is_final()).count(), self.tasks.len())
    }

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

    /// Whether the task at `index` matches the DAG filter.
    pub fn matches(&self, index: usize) -> bool {
        self.tasks.get(index).is_some_and(|t| {
            matches_filter(&self.cursor.filter, t.planned.task.as_str())
                || matches_filter(&self.cursor.filter, t.agent.as_str())
        })
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
    pub entries: VecDeque<AuditEntry>,
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
            entries: VecDeque::new(),
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
}

/// A panel task's conflict, from its events: open once the ladder asks a person.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingConflict {
    pub run: Option<RunId>,
    pub task: TaskId,
    pub question: String,
    /// The members that gave a verdict, in panel order: the prompt's columns.
    pub verdicts: Vec<MemberVerdict>,
    /// Each ladder step that ran: step, finding, winner.
    pub steps: Vec<(LadderStep, String, Option<AgentId>)>,
    pub recommendation: Option<Recommendation>,
    /// When a person was asked; `None` while the ladder still runs.
    pub asked_ms: Option<u64>,
    /// "Later" was chosen: it stays open but does not pop up again by itself.
    pub deferred: bool,
}

impl PendingConflict {
    pub fn is_open(&self) -> bool {
        self.asked_ms.is_some()
    }

    /// The column of the recommended verdict.
    pub fn recommended(&self) -> Option<usize> {
        let recommendation = self.recommendation.as_ref()?;
        self.verdicts.iter().position(|v| v.agent == recommendation.winner)
    }
}

/// The key of a conflict: two runs may both have a task `pick` in conflict.
pub type ConflictKey = (Option<RunId>, TaskId);

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
    Approval { task: TaskId, choice: ApprovalChoice, armed_ms: u64 },
    /// Settle a conflict: `choice` is a verdict's column, or `None` for "Later" (where focus
    /// starts). Before `armed_ms` choosing does nothing, as for approvals.
    /// `own` holds a decision being written instead of picking a verdict (`e`).
    Conflict { key: ConflictKey, choice: Option<usize>, armed_ms: u64, own: Option<String> },
    /// Confirm a dangerous single-key action; `confirm` starts false (the safe choice).
    Confirm { question: String, command: Command, confirm: bool },
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
    pub run: Option<RunView>,
    pub breakers: BreakersView,
    pub audit: AuditView,
    pub approvals: BTreeMap<TaskId, PendingApproval>,
    /// Conflicts of panel tasks, by run and task, until settled.
    pub conflicts: BTreeMap<ConflictKey, PendingConflict>,
    pub prompt: Option<Prompt>,
    pub overlay: Option<Overlay>,
    pub editing: Editing,
    pub command_line: TextArea<'static>,
    pub command_history: Vec<String>,
    /// Position while browsing history with Up/Down (`None`: not browsing).
    pub history_pos: Option<usize>,
    pub message: Option<StatusMessage>,
    /// Highest event sequence applied; live events at or below it are duplicates.
    pub applied_seq: u64,
    /// False once the runtime's event stream closed.
    pub runtime_connected: bool,
    pub should_quit: bool,
    /// A theme the app should load (IO), then report with `Input::ThemeApplied`.
    pub theme_request: Option<String>,
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
            run: None,
            breakers: BreakersView::default(),
            audit: AuditView::default(),
            approvals: BTreeMap::new(),
            conflicts: BTreeMap::new(),
            prompt: None,
            overlay: None,
            editing: Editing::None,
            command_line: TextArea::default(),
            command_history: Vec::new(),
            history_pos: None,
            message: None,
            applied_seq: 0,
            runtime_connected: true,
            should_quit: false,
            theme_request: None,
        }
    }

    /// Whether the operator may settle conflicts (those who may control runs).
    pub fn can_resolve(&self) -> bool {
        self.role.allows(Permission::ControlRuns)
    }

    /// Whether the operator may review approvals (prompts are hidden otherwise).
    pub fn can_review(&self) -> bool {
        self.role.allows(Permission::Review)
    }

    /// The filter of a pane.
    pub fn filter(&self, pane: PaneId) -> &str {
        match pane {
            PaneId::Agents => &self.agents.cursor.filter,
            PaneId::Pool => &self.pool.cursor.filter,
            PaneId::Dag => self.run.as_ref().map_or("", |r| r.cursor.filter.as_str()),
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
        if let Some(run) = self.run.as_ref().filter(|r| r.is_active()) {
            deadlines.push(next_second(run.started_ms));
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
