//! `flightdeck runs`: the runs kept in the run store (`<data_dir>/runs.db`), what became of
//! each task of one run, and one run's stored events replayed.
//!
//! A run is named by its id, by a unique start of it, or by `last` (the newest run). Reading
//! never writes: a data folder without a run store simply has no runs. Pruning deletes, so it
//! passes the gate like any command that changes state.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use unicode_width::UnicodeWidthStr;

use super::progress::{Printer, short};
use super::table::{self, Align, pad};
use super::{Globals, exit};
use crate::bus::now_ms;
use crate::engine::workspace::{KeptWorktree, change_counts};
use crate::event::{AnswerDetails, Envelope, FileChange, TokenUsage, WorkspaceKind};
use crate::ids::{AgentId, RunId, TaskId};
use crate::model::{AttemptModel, OutputKeep, RunModel, TaskModel, TaskStatus, WorkspaceModel};
use crate::runtime::{Runtime, RuntimeError, RuntimeOptions};
use crate::store::{Owner, PruneRule, RUNS_FILE, RunRow, RunState, RunStore, StoreError, owner};
use crate::words::plural;

/// `runs list [--limit N] [--json]`: newest first. 0, or 2 when the store cannot be read.
pub fn list(globals: &Globals, limit: usize, json: bool) -> i32 {
    let runs = match open(globals).and_then(|store| store.map_or(Ok(Vec::new()), |s| s.runs())) {
        Ok(runs) => runs,
        Err(error) => return fail(&error.to_string()),
    };
    let runs: Vec<RunRow> = runs.into_iter().take(limit).collect();
    // An interrupted run (its owner died) can go on with `flightdeck resume`.
    let resumable = |run: &RunRow| run.state == RunState::Interrupted;
    if json {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|run| {
                let mut value = serde_json::to_value(run).unwrap_or_default();
                value["resumable"] = json!(resumable(run));
                value
            })
            .collect();
        outln!("{}", serde_json::to_string(&rows).unwrap_or_default());
    } else if runs.is_empty() {
        eprintln!("no runs yet in {}", store_path(globals).display());
    } else {
        out!("{}", runs_table(&runs));
        let interrupted: Vec<&str> =
            runs.iter().filter(|r| resumable(r)).map(|r| r.run_id.as_str()).collect();
        if let [first, ..] = interrupted.as_slice() {
            outln!(
                "\n{} can be resumed: flightdeck resume RUN (e.g. {first})",
                plural(interrupted.len(), "interrupted run")
            );
        }
    }
    exit::OK
}

/// `runs show RUN [TASK] [--json]`: the run and each of its tasks, or one task in full
/// (attempts, streamed output, result). 0 when found, 2 otherwise.
pub fn show(globals: &Globals, run: &str, task: Option<&str>, json: bool) -> i32 {
    let (row, events) = match load(globals, run) {
        Ok(found) => found,
        Err(message) => return fail(&message),
    };
    if let Some(task) = task {
        let Some(detail) = task_detail(&events, &TaskId::new(task)) else {
            let known: Vec<String> =
                task_outcomes(&events).into_iter().map(|t| t.task.to_string()).collect();
            return fail(&format!(
                "run {} has no task `{task}` (its tasks: {})",
                row.run_id,
                known.join(", ")
            ));
        };
        if json {
            outln!("{}", serde_json::to_string(&detail).unwrap_or_default());
        } else {
            out!("{}", task_text(&row, &detail));
        }
        return exit::OK;
    }
    let model = RunModel::from_events(&events, OutputKeep::None);
    let tasks = outcomes_of(&model);
    let spend = RunSpend::of(&model);
    // A running run's owner, from its lock file (see `store::owner`).
    let owner_pid = match owner(&globals.data_dir, &row.run_id) {
        Owner::Alive { pid } if !row.state.is_finished() => pid,
        _ => None,
    };
    if json {
        outln!("{}", json!({ "run": row, "tasks": tasks, "owner_pid": owner_pid, "spend": spend }));
    } else {
        out!("{}", run_text(&row, owner_pid, &tasks, &spend));
    }
    exit::OK
}

/// `runs events RUN [--json]`: the stored events of a run, as `flightdeck run` printed them
/// (progress lines on stderr, or one JSON event per line on stdout with `--json`).
pub fn events(globals: &Globals, run: &str, json: bool) -> i32 {
    let (row, events) = match load(globals, run) {
        Ok(found) => found,
        Err(message) => return fail(&message),
    };
    let mut printer = Printer::replay(json, row.run_id.clone());
    for envelope in events {
        printer.print(&Arc::new(envelope));
    }
    if row.state == RunState::Interrupted {
        printer.line("interrupted: the process running it ended before the run finished");
    }
    printer.flush();
    exit::OK
}

/// `runs prune [--keep N] [--older-than AGE] [--dry-run]`: 0 when done, 2 when refused by
/// the gate (pruning needs the `operate` permission) or the store cannot be changed. The git
/// worktrees and branches of the pruned runs go with them.
pub fn prune(
    globals: &Globals,
    keep: Option<usize>,
    older_than: Option<Duration>,
    dry_run: bool,
) -> i32 {
    if keep.is_none() && older_than.is_none() {
        return fail("runs prune: give --keep N, --older-than AGE or both");
    }
    let before_ms = older_than.map(|age| now_ms().saturating_sub(age.as_millis() as u64));
    let rule = PruneRule { keep, before_ms };
    let kept = match prunable_worktrees(globals, &rule) {
        Ok(kept) => kept,
        Err(error) => return fail(&error.to_string()),
    };
    if dry_run {
        let prunable =
            match open(globals).and_then(|s| s.map_or(Ok(Vec::new()), |s| s.prunable(&rule))) {
                Ok(prunable) => prunable,
                Err(error) => return fail(&error.to_string()),
            };
        if prunable.is_empty() {
            eprintln!("nothing to prune");
        } else {
            out!("{}", runs_table(&prunable));
            for (_, worktree) in &kept {
                eprintln!("would remove worktree {}", worktree.path.display());
                eprintln!("would delete branch {}", worktree.branch);
            }
            eprintln!(
                "{} finished runs would be pruned (dry run: nothing deleted)",
                prunable.len()
            );
        }
        return exit::OK;
    }
    if !store_path(globals).exists() {
        eprintln!("no runs yet in {}", store_path(globals).display());
        return exit::OK;
    }
    let settings = match crate::host::governed_settings(&globals.project_dir, &globals.data_dir) {
        Ok(settings) => settings,
        Err(error) => return fail(&error.to_string()),
    };
    let tokio = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(tokio) => tokio,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    tokio.block_on(async {
        let options = RuntimeOptions {
            project_dir: globals.project_dir.clone(),
            data_dir: globals.data_dir.clone(),
            settings,
            watch_agents: false,
        };
        let runtime = match Runtime::start(options) {
            Ok(runtime) => runtime,
            Err(error) => return fail(&error.to_string()),
        };
        super::say_audit_warnings(&runtime);
        let result = runtime.prune_runs(&globals.user, rule).await;
        runtime.shutdown().await;
        match result {
            Ok((runs, events)) => {
                eprintln!("pruned {} finished runs ({events} events)", runs.len());
                remove_worktrees(&runs, &kept);
                exit::OK
            }
            Err(RuntimeError::Denied(denied)) => fail(&format!("refused: {denied}")),
            Err(error) => fail(&error.to_string()),
        }
    })
}

/// The worktrees kept by the runs a prune with `rule` would delete.
fn prunable_worktrees(
    globals: &Globals,
    rule: &PruneRule,
) -> Result<Vec<(RunId, KeptWorktree)>, StoreError> {
    let Some(store) = open(globals)? else { return Ok(Vec::new()) };
    let mut kept = Vec::new();
    for run in store.prunable(rule)? {
        let events = store.events(&run.run_id)?;
        for outcome in task_outcomes(&events) {
            if let Some(worktree) = outcome.workspace.as_ref().and_then(WorkspaceSummary::kept) {
                kept.push((run.run_id.clone(), worktree));
            }
        }
    }
    Ok(kept)
}

/// Remove the worktrees and branches of the runs that were pruned; what cannot be removed is
/// said, and does not undo the prune.
fn remove_worktrees(pruned: &[RunRow], kept: &[(RunId, KeptWorktree)]) {
    let (mut removed, mut failed) = (0, 0);
    for (run, worktree) in kept {
        if !pruned.iter().any(|row| &row.run_id == run) {
            continue;
        }
        match worktree.remove() {
            Ok(()) => removed += 1,
            Err(error) => {
                failed += 1;
                eprintln!(
                    "flightdeck: cannot remove worktree {}: {error}",
                    worktree.path.display()
                );
            }
        }
    }
    if removed + failed > 0 {
        eprintln!("removed {removed} worktrees and their branches");
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("flightdeck: {message}");
    exit::INVALID
}

fn store_path(globals: &Globals) -> PathBuf {
    globals.data_dir.join(RUNS_FILE)
}

/// The run store, if there is one (opening creates the file, so check first).
fn open(globals: &Globals) -> Result<Option<RunStore>, StoreError> {
    let path = store_path(globals);
    if !path.exists() {
        return Ok(None);
    }
    RunStore::open_read_only(&path).map(Some)
}

/// The run named by `wanted` and its stored events.
pub(crate) fn load(globals: &Globals, wanted: &str) -> Result<(RunRow, Vec<Envelope>), String> {
    let path = store_path(globals);
    let Some(store) = open(globals).map_err(|e| e.to_string())? else {
        return Err(format!("no runs yet in {}", path.display()));
    };
    let runs = store.runs_uncounted().map_err(|e| e.to_string())?;
    let found = resolve(&runs, wanted, &path)?;
    // Counted, for an unfinished run.
    let row = store.run(&found.run_id).map_err(|e| e.to_string())?.unwrap_or(found);
    let events = store.events(&row.run_id).map_err(|e| e.to_string())?;
    Ok((row, events))
}

/// `last`, an exact id, or a unique start of one.
fn resolve(runs: &[RunRow], wanted: &str, path: &Path) -> Result<RunRow, String> {
    if wanted == "last" {
        return runs.first().cloned().ok_or_else(|| format!("no runs yet in {}", path.display()));
    }
    if let Some(row) = runs.iter().find(|r| r.run_id.as_str() == wanted) {
        return Ok(row.clone());
    }
    let matching: Vec<&RunRow> =
        runs.iter().filter(|r| r.run_id.as_str().starts_with(wanted)).collect();
    match matching.as_slice() {
        [row] => Ok((*row).clone()),
        [] => Err(format!(
            "no run `{wanted}` in {} (`flightdeck runs list` shows them)",
            path.display()
        )),
        several => {
            let ids: Vec<&str> = several.iter().take(5).map(|r| r.run_id.as_str()).collect();
            Err(format!("`{wanted}` matches {} runs: {}", several.len(), ids.join(", ")))
        }
    }
}

/// What became of one task, folded from the run's events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskOutcome {
    pub task: TaskId,
    /// The agent of the last attempt, else the planned one.
    pub agent: AgentId,
    /// The task's status key: `pending`, `ready`, `awaiting_approval`, `running`, `retrying`,
    /// `succeeded`, `failed`, `skipped` or `cancelled`.
    pub state: &'static str,
    pub attempts: u32,
    /// The whole task: from its first attempt's start to its end, waits between attempts
    /// included.
    pub duration_ms: Option<u64>,
    /// The error, or why it was skipped or cancelled.
    pub note: Option<String>,
    pub simulated: bool,
    /// Where it worked, when not in the shared project folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceSummary>,
    /// What its attempts spent, when a backend reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend: Option<SpendSummary>,
    /// Its latest budget mark ("task budget at 80%: …").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// Set while its next attempt waits on a backend's rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<String>,
}

/// Tokens and cost (when known) spent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpendSummary {
    pub tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl SpendSummary {
    fn of(spend: &crate::model::Spend) -> Option<Self> {
        spend.describe().map(|_| Self {
            tokens: spend.tokens,
            cost_usd: spend.priced.then_some(spend.cost_usd),
        })
    }
}

/// What the whole run spent, and its latest budget mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSpend {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub spent: Option<SpendSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

impl RunSpend {
    pub fn of(model: &RunModel) -> Self {
        Self { spent: SpendSummary::of(&model.spend), budget: model.budget_note.clone() }
    }
}

/// A task's own workspace and what it changed there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceSummary {
    pub kind: WorkspaceKind,
    /// The folder it worked in (for `temp`, the last attempt's, removed since).
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit its branch started from, and where that came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_from: Option<String>,
    pub files_changed: usize,
    /// `git diff --shortstat` of the branch against its base.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    pub changes: Vec<FileChange>,
}

impl WorkspaceSummary {
    /// The worktree to remove when its run is pruned.
    fn kept(&self) -> Option<KeptWorktree> {
        Some(KeptWorktree {
            repo: self.repo.clone()?,
            path: self.path.clone(),
            branch: self.branch.clone()?,
        })
    }
}

/// One outcome per planned task, in plan order (tasks from every `RunStarted`, so a run
/// resumed with a new plan keeps its earlier tasks).
pub fn task_outcomes(events: &[Envelope]) -> Vec<TaskOutcome> {
    outcomes_of(&RunModel::from_events(events, OutputKeep::None))
}

/// The outcome of every task of a folded run, in plan order.
pub fn outcomes_of(model: &RunModel) -> Vec<TaskOutcome> {
    model.tasks.iter().map(|task| TaskOutcome::of(task)).collect()
}

impl TaskOutcome {
    /// What the fold knows about a task, as `runs show` reports it.
    pub fn of(task: &TaskModel) -> Self {
        let note = match task.status {
            TaskStatus::Failed => task.error.clone(),
            TaskStatus::Skipped | TaskStatus::Cancelled => task.note.clone(),
            _ => None,
        };
        Self {
            task: task.planned.task.clone(),
            agent: task.agent.clone(),
            state: task.status.key(),
            attempts: task.attempts,
            duration_ms: task.duration_ms.filter(|_| task.status.is_final()),
            note,
            simulated: task.simulated,
            workspace: task.workspace.as_deref().map(WorkspaceSummary::of),
            spend: SpendSummary::of(&task.spend),
            budget: task.budget_note.clone(),
            rate_limited: task.rate_limited.as_ref().map(crate::model::RateLimitWait::describe),
        }
    }
}

impl WorkspaceSummary {
    fn of(workspace: &WorkspaceModel) -> Self {
        Self {
            kind: workspace.kind,
            path: workspace.path.clone(),
            repo: workspace.repo.clone(),
            branch: workspace.branch.clone(),
            base: workspace.base.clone(),
            base_from: workspace.base_from.clone(),
            files_changed: workspace.changes.len(),
            summary: workspace.summary.clone(),
            changes: workspace.changes.clone(),
        }
    }
}

/// One attempt of a task, with everything it produced kept apart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub agent: AgentId,
    pub backend: String,
    pub started_ms: u64,
    /// `running`, `succeeded`, `failed`, `retrying` (failed, another attempt followed) or
    /// `cancelled`.
    pub result: &'static str,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// The wait before the next attempt, when it was retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_delay_ms: Option<u64>,
    /// The answer as it streamed: stdout lines, model tokens.
    pub output: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Reasoning ("thinking") the model streamed, never part of the answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// Tool calls (`→ …`) and their results (`← …`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// Truncation, tool calls, reasoning, session and cost the backend reported.
    #[serde(skip_serializing_if = "AnswerDetails::is_empty")]
    pub details: AnswerDetails,
}

/// Everything stored about one task of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub outcome: TaskOutcome,
    pub description: String,
    pub depends_on: Vec<TaskId>,
    /// Each attempt in order, its output with it.
    pub history: Vec<AttemptRecord>,
    /// The output the task succeeded with.
    pub result: Option<String>,
    pub usage: Option<TokenUsage>,
}

/// The detail of `task`, if the run planned it.
pub fn task_detail(events: &[Envelope], task: &TaskId) -> Option<TaskDetail> {
    let model = RunModel::from_events(events, OutputKeep::Full);
    let task = model.task(task)?;
    Some(TaskDetail {
        outcome: TaskOutcome::of(task),
        description: task.planned.description.to_string(),
        depends_on: task.planned.depends_on.to_vec(),
        history: task.history.iter().map(AttemptRecord::of).collect(),
        result: task.result.clone(),
        usage: task.usage,
    })
}

impl AttemptRecord {
    fn of(attempt: &AttemptModel) -> Self {
        Self {
            attempt: attempt.attempt,
            agent: attempt.agent.clone(),
            backend: attempt.backend.clone(),
            started_ms: attempt.started_ms,
            result: attempt.result.key(),
            duration_ms: attempt.duration_ms,
            error: attempt.error.clone(),
            retry_delay_ms: attempt.retry_delay_ms,
            output: attempt.output.clone(),
            stderr: attempt.stderr.clone(),
            reasoning: attempt.reasoning.clone(),
            tools: attempt.tools.clone(),
            usage: attempt.usage,
            details: attempt.details.clone(),
        }
    }
}

fn task_text(run: &RunRow, detail: &TaskDetail) -> String {
    let outcome = &detail.outcome;
    let mut text = String::new();
    let _ = writeln!(text, "task      {}  (run {}, {})", outcome.task, run.run_id, run.workflow);
    let _ = writeln!(text, "does      {}", detail.description);
    let _ = writeln!(text, "agent     {}", outcome.agent);
    let took =
        outcome.duration_ms.map(|ms| format!(", took {} in all", short_ms(ms))).unwrap_or_default();
    let simulated = if outcome.simulated { "  SIMULATED" } else { "" };
    let _ = writeln!(
        text,
        "state     {} after {}{took}{simulated}",
        outcome.state,
        plural(outcome.attempts, "attempt")
    );
    if !detail.depends_on.is_empty() {
        let deps: Vec<&str> = detail.depends_on.iter().map(TaskId::as_str).collect();
        let _ = writeln!(text, "after     {}", deps.join(", "));
    }
    if let Some(note) = &outcome.note {
        let _ = writeln!(text, "why       {}", one_line(note));
    }
    if let Some(usage) = &detail.usage {
        let _ = writeln!(text, "tokens    {}", usage_text(usage));
    }
    if let Some(spent) = &outcome.spend {
        let _ = writeln!(text, "spent     {}", spend_text(spent));
    }
    if let Some(budget) = &outcome.budget {
        let _ = writeln!(text, "budget    {budget}");
    }
    if let Some(waiting) = &outcome.rate_limited {
        let _ = writeln!(text, "waiting   {waiting}");
    }
    if let Some(workspace) = &outcome.workspace {
        text.push_str(&workspace_text(workspace));
    }
    for attempt in &detail.history {
        text.push_str(&attempt_text(attempt));
    }
    // A process agent's result is its stdout, already shown with its attempt: show it once.
    let streamed = detail.history.last().map(|a| a.output.trim());
    if let Some(result) = &detail.result
        && !result.trim().is_empty()
        && streamed != Some(result.trim())
    {
        let _ = writeln!(text, "\nresult");
        push_indented(&mut text, result, "  ");
    }
    text
}

fn workspace_text(workspace: &WorkspaceSummary) -> String {
    let mut text = String::new();
    match (&workspace.kind, &workspace.branch) {
        (WorkspaceKind::Worktree, Some(branch)) => {
            let from = workspace.base_from.as_deref().unwrap_or("?");
            let base = workspace.base.as_deref().map_or("?", |b| &b[..b.len().min(10)]);
            let _ = writeln!(text, "branch    {branch}  (from {from}, {base})");
            let _ = writeln!(text, "worktree  {}", workspace.path.display());
        }
        _ => {
            let _ = writeln!(text, "folder    {} (temporary, removed)", workspace.path.display());
        }
    }
    if workspace.kind == WorkspaceKind::Worktree {
        if workspace.changes.is_empty() {
            let _ = writeln!(text, "changes   none");
        } else {
            let _ = writeln!(text, "changes   {}", workspace.summary);
            let width = workspace
                .changes
                .iter()
                .map(|c| change_counts(c).chars().count())
                .max()
                .unwrap_or(0);
            for change in &workspace.changes {
                let counts = change_counts(change);
                let _ = writeln!(text, "          {counts:>width$}  {}", change.path);
            }
        }
    }
    text
}

/// One attempt as its own block: a header with its outcome, then each kind of output in its
/// own labelled part.
fn attempt_text(attempt: &AttemptRecord) -> String {
    let mut text = String::new();
    let outcome = match (attempt.result, attempt.duration_ms) {
        ("running", _) => "still running".to_owned(),
        ("retrying" | "failed", Some(ms)) => format!("failed after {}", short_ms(ms)),
        ("succeeded", Some(ms)) => format!("succeeded in {}", short_ms(ms)),
        (result, _) => result.to_owned(),
    };
    let retry = attempt
        .retry_delay_ms
        .map(|ms| format!(" · retried after a {} wait", short_ms(ms)))
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "\n── attempt {} · {} on {} · {} UTC · {outcome}{retry}",
        attempt.attempt,
        attempt.agent,
        attempt.backend,
        timestamp(attempt.started_ms),
    );
    if let Some(error) = &attempt.error {
        let _ = writeln!(text, "  error");
        push_indented(&mut text, error, "    ");
    }
    let details = &attempt.details;
    let reasoning = if attempt.reasoning.trim().is_empty() {
        details.reasoning.as_deref().unwrap_or_default()
    } else {
        &attempt.reasoning
    };
    let tools: Vec<String> = if attempt.tools.is_empty() {
        details.tool_calls.iter().map(|c| format!("→ {} {}", c.name, c.input)).collect()
    } else {
        attempt.tools.clone()
    };
    let parts = [
        ("reasoning", reasoning.to_owned()),
        // A result of several lines stays under its arrow.
        (
            "tool calls",
            tools.iter().map(|t| t.trim_end().replace('\n', "\n  ")).collect::<Vec<_>>().join("\n"),
        ),
        ("output", attempt.output.clone()),
        ("stderr", attempt.stderr.clone()),
    ];
    for (title, body) in parts {
        if body.trim().is_empty() {
            continue;
        }
        let _ = writeln!(text, "  {title}");
        push_indented(&mut text, &body, "    ");
    }
    if details.truncated {
        let _ = writeln!(text, "  truncated: the answer was cut off by the output limit");
    }
    if let Some(usage) = &attempt.usage {
        let _ = writeln!(text, "  tokens    {}", usage_text(usage));
    }
    if let Some(cost) = details.cost_usd {
        let _ = writeln!(text, "  cost      ${cost:.4}");
    }
    if let Some(session) = &details.session_id {
        let _ = writeln!(text, "  session   {session}");
    }
    text
}

fn push_indented(text: &mut String, body: &str, indent: &str) {
    for line in body.trim_end().lines() {
        let _ = writeln!(text, "{indent}{line}");
    }
}

/// `47 in, 12 out, 1200 cache read`: every count the backend reported, zeros left out.
/// Read through JSON so counts added to [`TokenUsage`] show without changes here.
fn usage_text(usage: &TokenUsage) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(usage) else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (name, value) in &fields {
        let Some(count) = value.as_u64() else { continue };
        let label = match name.as_str() {
            "input_tokens" => "in".to_owned(),
            "output_tokens" => "out".to_owned(),
            "cache_read_input_tokens" => "cache read".to_owned(),
            "cache_creation_input_tokens" => "cache written".to_owned(),
            other => other.trim_end_matches("_tokens").replace('_', " "),
        };
        // Input and output always show; other counts only when there are some.
        if count > 0 || matches!(name.as_str(), "input_tokens" | "output_tokens") {
            parts.push((name.as_str() != "input_tokens", format!("{count} {label}")));
        }
    }
    // Input first, then output, then the rest as the type lists them.
    parts.sort_by_key(|(not_input, _)| *not_input);
    parts.into_iter().map(|(_, part)| part).collect::<Vec<_>>().join(", ")
}

fn runs_table(runs: &[RunRow]) -> String {
    let id_width = runs.iter().map(|r| r.run_id.as_str().len()).max().unwrap_or(3).max(3);
    // As wide as a terminal shows the widest name (`ユニコード` takes ten columns).
    let name_width = runs.iter().map(|r| r.workflow.width()).max().unwrap_or(8).max(8);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<id_width$}  {}  {:<11}  {:>5}  {:>5}  {:>5}  {:>5}  {:>5}  {:<20}  {:>8}",
        "RUN",
        pad("WORKFLOW", name_width),
        "STATE",
        "TASKS",
        "✓",
        "✗",
        "⊘",
        "■",
        "STARTED (UTC)",
        "TOOK"
    );
    for run in runs {
        let took = run.duration_ms.map_or_else(|| "-".to_owned(), short_ms);
        let _ = writeln!(
            text,
            "{:<id_width$}  {}  {:<11}  {:>5}  {:>5}  {:>5}  {:>5}  {:>5}  {:<20}  {:>8}{}",
            run.run_id.as_str(),
            pad(&run.workflow, name_width),
            run.state.as_str(),
            run.tasks,
            run.succeeded,
            run.failed,
            run.skipped,
            run.cancelled,
            timestamp(run.started_ms),
            took,
            if run.simulated { "  SIMULATED" } else { "" },
        );
    }
    text
}

/// "1234 tokens, $0.0123".
fn spend_text(spent: &SpendSummary) -> String {
    match spent.cost_usd {
        Some(cost) => format!("{} tokens, ${cost:.4}", spent.tokens),
        None => format!("{} tokens", spent.tokens),
    }
}

fn run_text(
    run: &RunRow,
    owner_pid: Option<u32>,
    tasks: &[TaskOutcome],
    spend: &RunSpend,
) -> String {
    let mut text = String::new();
    let simulated = if run.simulated { "  (uses a SIMULATED backend)" } else { "" };
    let _ = writeln!(text, "run       {}  {}  {}{simulated}", run.run_id, run.workflow, run.state);
    if let Some(pid) = owner_pid {
        let _ = writeln!(text, "owner     pid {pid} (holds the run's lock)");
    }
    let _ = writeln!(text, "file      {}", run.file.display());
    let took = run.duration_ms.map_or_else(String::new, |ms| format!(", took {}", short_ms(ms)));
    let _ = writeln!(text, "started   {} UTC{took}", timestamp(run.started_ms));
    let _ = writeln!(
        text,
        "tasks     {}: {} succeeded, {} failed, {} skipped, {} cancelled",
        run.tasks, run.succeeded, run.failed, run.skipped, run.cancelled
    );
    if let Some(spent) = &spend.spent {
        let _ = writeln!(text, "spent     {}", spend_text(spent));
    }
    if let Some(budget) = &spend.budget {
        let _ = writeln!(text, "budget    {budget}");
    }
    if tasks.is_empty() {
        return text;
    }
    // An unfinished task of a run whose process is gone will not finish.
    let state = |task: &TaskOutcome| match (task.state, run.state) {
        ("running", RunState::Interrupted) => "interrupted".to_owned(),
        (state, _) => state.replace('_', " "),
    };
    // Columns as wide as their widest text on a terminal (an id may be `設計`).
    let task_width = tasks.iter().map(|t| t.task.as_str().width()).fold(4, usize::max);
    let agent_width = tasks.iter().map(|t| t.agent.as_str().width()).fold(5, usize::max);
    let state_width = tasks.iter().map(|t| state(t).width()).fold(11, usize::max);
    let _ = writeln!(
        text,
        "\n{}  {}  {}  {:>8}  {:>8}  NOTE",
        pad("TASK", task_width),
        pad("AGENT", agent_width),
        pad("STATE", state_width),
        "ATTEMPTS",
        "TOOK"
    );
    for task in tasks {
        let took = task.duration_ms.map_or_else(|| "-".to_owned(), short_ms);
        let mut note = task.note.as_deref().map(one_line).unwrap_or_default();
        let marks =
            [task.rate_limited.clone(), task.spend.as_ref().map(spend_text), task.budget.clone()];
        for mark in marks.into_iter().flatten() {
            note = if note.is_empty() { mark } else { format!("{note} · {mark}") };
        }
        if task.simulated {
            note = if note.is_empty() {
                "SIMULATED".to_owned()
            } else {
                format!("SIMULATED · {note}")
            };
        }
        let line = format!(
            "{}  {}  {}  {:>8}  {took:>8}  {note}",
            pad(task.task.as_str(), task_width),
            pad(task.agent.as_str(), agent_width),
            pad(&state(task), state_width),
            task.attempts,
        );
        let _ = writeln!(text, "{}", line.trim_end());
    }
    text.push_str(&workspaces_table(tasks));
    text
}

/// Each task that worked in a workspace of its own: branch, changed files and where.
fn workspaces_table(tasks: &[TaskOutcome]) -> String {
    let rows: Vec<[String; 4]> = tasks
        .iter()
        .filter_map(|task| {
            let workspace = task.workspace.as_ref()?;
            let changed = match (workspace.kind, workspace.files_changed) {
                (WorkspaceKind::Worktree, 1) => "1 file".to_owned(),
                (WorkspaceKind::Worktree, n) => format!("{n} files"),
                _ => "-".to_owned(),
            };
            Some([
                task.task.to_string(),
                workspace.branch.clone().unwrap_or_else(|| "(temporary)".into()),
                changed,
                workspace.path.display().to_string(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let (left, right) = (Align::Left, Align::Right);
    let lines =
        table::lines(["TASK", "BRANCH", "CHANGED", "PATH"], [left, left, right, left], &rows);
    format!("\n{}\n", lines.join("\n"))
}

fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    if text.lines().nth(1).is_some() { format!("{first} …") } else { first.to_owned() }
}

fn short_ms(ms: u64) -> String {
    short(Duration::from_millis(ms))
}

/// `2026-11-22 04:29:05`, UTC.
fn timestamp(ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(ms / 1000);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, OutputStream, PlannedTask};
    use crate::ids::RunId;

    /// A stored run of workflow `w` that started at 1 s: one task, succeeded.
    fn run_row(id: &str) -> RunRow {
        RunRow::sample(id, RunState::Succeeded)
    }

    fn envelope(seq: u64, event: Event) -> Envelope {
        Envelope { seq, ts_ms: 1_000 * seq, run_id: Some(RunId::new("r1")), event }
    }

    fn planned(task: &str) -> PlannedTask {
        PlannedTask {
            task: TaskId::new(task),
            description: format!("do {task}").into(),
            agent: AgentId::new("worker"),
            score: None,
            depends_on: Vec::new().into(),
            layer: 0,
            timeout_ms: 1_000,
            retries: 0,
        }
    }

    #[test]
    fn outcomes_follow_the_last_event_of_each_task() {
        let events = vec![
            envelope(
                1,
                Event::RunStarted {
                    workflow: "w".into(),
                    file: PathBuf::from("w.yaml"),
                    goal: None,
                    max_parallel: 2,
                    fail_fast: false,
                    simulated: true,
                    tasks: vec![planned("a"), planned("b"), planned("c"), planned("d")],
                },
            ),
            envelope(
                2,
                Event::TaskStarted {
                    task: TaskId::new("a"),
                    agent: AgentId::new("worker"),
                    attempt: 1,
                    instance: crate::ids::InstanceId(1),
                    backend: "sim".into(),
                    simulated: true,
                },
            ),
            envelope(
                3,
                Event::TaskFallback {
                    task: TaskId::new("b"),
                    from: AgentId::new("worker"),
                    to: AgentId::new("helper"),
                    reason: "breaker open".into(),
                },
            ),
            envelope(
                4,
                Event::TaskFailed {
                    task: TaskId::new("b"),
                    agent: Some(AgentId::new("helper")),
                    attempt: 2,
                    duration_ms: 40,
                    error: "exit 3\nmore".into(),
                },
            ),
            envelope(
                5,
                Event::TaskSkipped {
                    task: TaskId::new("c"),
                    reason: "dependency `b` failed".into(),
                },
            ),
        ];
        let outcomes = task_outcomes(&events);
        let states: Vec<(&str, &str, u32)> =
            outcomes.iter().map(|o| (o.task.as_str(), o.state, o.attempts)).collect();
        assert_eq!(
            states,
            [("a", "running", 1), ("b", "failed", 2), ("c", "skipped", 0), ("d", "pending", 0)]
        );
        assert_eq!(outcomes[1].agent, AgentId::new("helper"));
        assert_eq!(outcomes[1].note.as_deref(), Some("exit 3\nmore"));
        assert!(outcomes[0].simulated);
    }

    #[test]
    fn a_task_detail_keeps_every_attempt_and_its_output() {
        let task = TaskId::new("a");
        let started = |attempt| Event::TaskStarted {
            task: task.clone(),
            agent: AgentId::new("worker"),
            attempt,
            instance: crate::ids::InstanceId(1),
            backend: "local".into(),
            simulated: false,
        };
        let events = vec![
            envelope(
                1,
                Event::RunStarted {
                    workflow: "w".into(),
                    file: PathBuf::from("w.yaml"),
                    goal: None,
                    max_parallel: 1,
                    fail_fast: false,
                    simulated: false,
                    tasks: vec![planned("a")],
                },
            ),
            envelope(2, started(1)),
            envelope(
                3,
                Event::TaskOutput {
                    task: task.clone(),
                    stream: OutputStream::Stderr,
                    text: "flaky".into(),
                },
            ),
            envelope(
                4,
                Event::TaskRetrying {
                    task: task.clone(),
                    agent: AgentId::new("worker"),
                    attempt: 1,
                    delay_ms: 100,
                    duration_ms: 30,
                    error: "exit 1".into(),
                },
            ),
            envelope(5, started(2)),
            envelope(
                6,
                Event::TaskOutput {
                    task: task.clone(),
                    stream: OutputStream::Stdout,
                    text: "done".into(),
                },
            ),
            envelope(
                7,
                Event::TaskSucceeded {
                    task: task.clone(),
                    agent: AgentId::new("worker"),
                    attempt: 2,
                    duration_ms: 20,
                    output: "done\n".into(),
                    usage: None,
                    simulated: false,
                    details: crate::event::AnswerDetails::default(),
                },
            ),
        ];
        let detail = task_detail(&events, &task).expect("planned");
        let history: Vec<(u32, &str, Option<u64>)> =
            detail.history.iter().map(|a| (a.attempt, a.result, a.duration_ms)).collect();
        assert_eq!(history, [(1, "retrying", Some(30)), (2, "succeeded", Some(20))]);
        assert_eq!(detail.history[0].error.as_deref(), Some("exit 1"));
        assert_eq!(detail.history[0].stderr, "flaky\n");
        assert_eq!(detail.history[0].retry_delay_ms, Some(100));
        assert_eq!(
            (detail.history[0].output.as_str(), detail.history[1].output.as_str()),
            ("", "done\n")
        );
        assert_eq!(detail.outcome.state, "succeeded");
        assert!(task_detail(&events, &TaskId::new("zz")).is_none());
    }

    #[test]
    // Built field by field so counts added to `TokenUsage` later need no change here.
    #[allow(clippy::field_reassign_with_default)]
    fn each_attempt_is_a_block_with_its_parts_apart() {
        let mut usage = TokenUsage::default();
        usage.input_tokens = 47;
        usage.output_tokens = 12;
        let task = TaskId::new("a");
        let out = |stream, text: &str| Event::TaskOutput {
            task: task.clone(),
            stream,
            text: text.into(),
        };
        let started = |attempt| Event::TaskStarted {
            task: task.clone(),
            agent: AgentId::new("worker"),
            attempt,
            instance: crate::ids::InstanceId(1),
            backend: "llama".into(),
            simulated: false,
        };
        let events = vec![
            envelope(
                1,
                Event::RunStarted {
                    workflow: "w".into(),
                    file: PathBuf::from("w.yaml"),
                    goal: None,
                    max_parallel: 1,
                    fail_fast: false,
                    simulated: false,
                    tasks: vec![planned("a")],
                },
            ),
            envelope(2, started(1)),
            envelope(3, out(OutputStream::Tokens, "partial ans")),
            envelope(
                4,
                Event::TaskRetrying {
                    task: task.clone(),
                    agent: AgentId::new("worker"),
                    attempt: 1,
                    delay_ms: 1_500,
                    duration_ms: 800,
                    error: "stream broken".into(),
                },
            ),
            envelope(6, started(2)),
            envelope(7, out(OutputStream::Reasoning, "think first")),
            envelope(8, out(OutputStream::ToolCall, "search {\"q\":\"x\"}")),
            envelope(9, out(OutputStream::ToolResult, "3 hits\na.rs\nb.rs")),
            envelope(10, out(OutputStream::Tokens, "The answer")),
            envelope(
                11,
                Event::TaskSucceeded {
                    task: task.clone(),
                    agent: AgentId::new("worker"),
                    attempt: 2,
                    duration_ms: 2_000,
                    output: "The answer".into(),
                    usage: Some(usage),
                    simulated: false,
                    details: AnswerDetails { truncated: true, ..AnswerDetails::default() },
                },
            ),
        ];
        let detail = task_detail(&events, &task).expect("planned");
        // From the first start (t=2 s) to the end (t=11 s): waits included.
        assert_eq!(detail.outcome.duration_ms, Some(9_000));
        let second = &detail.history[1];
        assert_eq!(
            (second.reasoning.as_str(), second.output.as_str()),
            ("think first", "The answer")
        );
        assert_eq!(second.tools, ["→ search {\"q\":\"x\"}", "← 3 hits\na.rs\nb.rs"]);
        let row = RunRow { duration_ms: Some(10_000), ..run_row("r1") };
        let text = task_text(&row, &detail);
        let first = text.find("── attempt 1").expect("first block");
        let second = text.find("── attempt 2").expect("second block");
        let (one, two) = (&text[first..second], &text[second..]);
        assert!(one.contains("failed after 800ms · retried after a 1.5s wait"), "{text}");
        assert!(one.contains("  output\n    partial ans\n"), "{text}");
        assert!(!two.contains("partial"), "{text}");
        assert!(two.contains("  reasoning\n    think first\n"), "{text}");
        assert!(two.contains("  tool calls\n    → search"), "{text}");
        assert!(two.contains("    ← 3 hits\n      a.rs\n      b.rs\n"), "{text}");
        assert!(two.contains("  output\n    The answer\n"), "{text}");
        assert!(two.contains("truncated: the answer was cut off"), "{text}");
        assert!(two.contains("tokens    47 in, 12 out"), "{text}");
        assert!(text.contains("took 9.0s in all"), "{text}");
        // The result equals the streamed answer: shown once.
        assert_eq!(text.matches("The answer").count(), 1, "{text}");
    }

    #[test]
    fn the_task_table_lines_up_with_wide_ids_and_long_states() {
        let outcome = |task: &str, state: &'static str| TaskOutcome {
            task: TaskId::new(task),
            agent: AgentId::new("worker"),
            state,
            attempts: 0,
            duration_ms: None,
            note: None,
            simulated: false,
            workspace: None,
            spend: None,
            budget: None,
            rate_limited: None,
        };
        let row = RunRow { state: RunState::Waiting, tasks: 2, succeeded: 0, ..run_row("r1") };
        let tasks = [outcome("設計", "awaiting_approval"), outcome("deploy", "pending")];
        let text = run_text(&row, None, &tasks, &RunSpend { spent: None, budget: None });
        let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("TASK")).collect();
        assert!(table[1].contains("awaiting approval"), "{text}");
        // Every row's ATTEMPTS column ends where the header's does, as a terminal shows it.
        let end = |line: &str| line.width() - line.split("ATTEMPTS").nth(1).map_or(0, str::width);
        let column = end(table[0]);
        for line in &table[1..] {
            let before_took = line.trim_end().trim_end_matches('-').trim_end();
            assert_eq!(before_took.width(), column, "{text}");
        }
        // The runs list: a workflow's wide name keeps the STATE column in line.
        let wide =
            RunRow { workflow: "ユニコード".into(), run_id: RunId::new("r2"), ..row.clone() };
        let list = runs_table(&[row, wide]);
        let state_at: Vec<usize> = list
            .lines()
            .map(|line| {
                line[..line.find("STATE").or_else(|| line.find("waiting")).unwrap_or(0)].width()
            })
            .collect();
        assert!(state_at.iter().all(|at| *at == state_at[0]), "{list}");
    }

    #[test]
    fn runs_resolve_by_last_id_or_unique_prefix() {
        let runs = [run_row("r2-b"), run_row("r1-a"), run_row("r1-ab")];
        let path = Path::new("runs.db");
        assert_eq!(resolve(&runs, "last", path).map(|r| r.run_id), Ok(RunId::new("r2-b")));
        assert_eq!(resolve(&runs, "r2", path).map(|r| r.run_id), Ok(RunId::new("r2-b")));
        assert_eq!(resolve(&runs, "r1-a", path).map(|r| r.run_id), Ok(RunId::new("r1-a")));
        let both = resolve(&runs, "r1", path).expect_err("ambiguous");
        assert!(both.contains("matches 2 runs"), "{both}");
        let none = resolve(&runs, "zz", path).expect_err("unknown");
        assert!(none.contains("no run `zz`"), "{none}");
        assert!(resolve(&[], "last", path).expect_err("empty").contains("no runs yet"));
    }

    #[test]
    fn timestamps_are_utc_to_the_second() {
        assert_eq!(timestamp(1_795_000_000_123), "2026-11-18 11:06:40");
    }
}
