//! The one function that changes the console's state: [`reduce`] folds one [`Input`] into
//! [`State`] and returns the [`Command`]s to send. No IO, no clocks, no awaiting: the time
//! arrives as an input, so the reducer tests like arithmetic.

use std::sync::Arc;

use ratatui::layout::Rect;
use ratatui_textarea::TextArea;

use crate::command::{Command, ConflictChoice};
use crate::conflict::LadderStep;
use crate::event::{Envelope, Event, Level, OutputStream};
use crate::ids::{AgentId, TaskId};

use super::command_line::{self, LineCommand};
use super::keys::Action;
use super::layout::ScreenLayout;
use super::panes;
use super::state::{
    AgentEntry, ApprovalChoice, AuditEntry, BreakerState, BreakerView, ConflictKey, Editing,
    InstanceState, InstanceView, OUTPUT_TAIL_LINES, OutputLine, Overlay, PaneId, PendingApproval,
    PendingConflict, Prompt, RunOutcome, RunView, State, StatusMessage, TaskStatus, WorkspaceView,
};

/// How long status messages stay, by level.
const INFO_MESSAGE_MS: u64 = 4_000;
const WARN_MESSAGE_MS: u64 = 8_000;
const ERROR_MESSAGE_MS: u64 = 12_000;
/// Longest output line kept; the rest is cut (the audit log has everything).
const OUTPUT_LINE_MAX_CHARS: usize = 500;
/// Rows moved by one mouse wheel notch.
const WHEEL_ROWS: isize = 3;

/// One thing that happened to the console.
#[derive(Debug, Clone)]
pub enum Input {
    /// A live event from the runtime.
    Event(Arc<Envelope>),
    /// The startup backlog: the current picture, applied before live events.
    Backlog(Vec<Arc<Envelope>>),
    /// The broadcast lagged: rebuild the picture from a fresh backlog.
    Resync { backlog: Vec<Arc<Envelope>>, missed: u64 },
    /// A key intent.
    Action(Action),
    /// The wall clock, in milliseconds since the Unix epoch.
    Tick(u64),
    /// The terminal's new size.
    Resize { width: u16, height: u16 },
    /// The app loaded a theme (or fell back to the default because of `problem`).
    ThemeApplied { name: String, problem: Option<String> },
    /// The runtime's event stream or command channel closed.
    RuntimeGone,
}

/// Fold one input into the state; returns the commands to send to the runtime.
pub fn reduce(state: &mut State, input: Input) -> Vec<Command> {
    match input {
        Input::Event(envelope) => {
            if envelope.seq != 0 && envelope.seq <= state.applied_seq {
                return Vec::new();
            }
            apply_event(state, &envelope, true);
            Vec::new()
        }
        Input::Backlog(backlog) => {
            for envelope in &backlog {
                apply_event(state, envelope, true);
            }
            Vec::new()
        }
        Input::Resync { backlog, missed } => {
            resync(state, &backlog, missed);
            Vec::new()
        }
        Input::Action(action) => apply_action(state, action),
        Input::Tick(now_ms) => {
            state.now_ms = state.now_ms.max(now_ms);
            if state.message.as_ref().is_some_and(|m| m.expires_ms <= state.now_ms) {
                state.message = None;
            }
            Vec::new()
        }
        Input::Resize { width, height } => {
            state.screen = Rect::new(0, 0, width, height);
            state.layout = ScreenLayout::compute(state.screen);
            for pane in PaneId::ORDER {
                scroll_into_view(state, pane);
            }
            Vec::new()
        }
        Input::ThemeApplied { name, problem } => {
            state.theme_name.clone_from(&name);
            match problem {
                Some(problem) => say(state, Level::Error, problem),
                None => say(state, Level::Info, format!("theme: {name}")),
            }
            Vec::new()
        }
        Input::RuntimeGone => {
            if state.runtime_connected {
                state.runtime_connected = false;
                say(state, Level::Error, "runtime stopped: showing the last picture".to_owned());
            }
            Vec::new()
        }
    }
}

fn say(state: &mut State, level: Level, text: String) {
    let ttl = match level {
        Level::Info => INFO_MESSAGE_MS,
        Level::Warn => WARN_MESSAGE_MS,
        Level::Error => ERROR_MESSAGE_MS,
    };
    state.message = Some(StatusMessage { level, text, expires_ms: state.now_ms + ttl });
}

// ---------------------------------------------------------------- events

fn resync(state: &mut State, backlog: &[Arc<Envelope>], missed: u64) {
    state.agents.entries.clear();
    state.pool.instances.clear();
    state.pool.terminated = 0;
    state.pool.queued.clear();
    state.run = None;
    state.breakers.breakers.clear();
    state.breakers.metrics.clear();
    state.approvals.clear();
    state.conflicts.clear();
    // Streams that went on while events were missed start a fresh line.
    state.audit.streams.clear();
    let audited = state.audit.entries.back().map_or(0, |e| e.seq);
    for envelope in backlog {
        apply_event(state, envelope, envelope.seq > audited);
    }
    if let Some(Prompt::Approval { task, .. }) = &state.prompt
        && !state.approvals.contains_key(task)
    {
        state.prompt = None;
    }
    if let Some(Prompt::Conflict { key, .. }) = &state.prompt
        && !state.conflicts.contains_key(key)
    {
        state.prompt = None;
    }
    open_next_approval(state);
    for pane in PaneId::ORDER {
        fix_selection(state, pane);
    }
    say(state, Level::Warn, format!("lagged: missed {missed} events; resynced"));
}

fn apply_event(state: &mut State, envelope: &Arc<Envelope>, audit: bool) {
    state.now_ms = state.now_ms.max(envelope.ts_ms);
    state.applied_seq = state.applied_seq.max(envelope.seq);
    if audit {
        push_audit(state, envelope);
    }
    let ts = envelope.ts_ms;
    match &envelope.event {
        Event::AgentAdded(summary) | Event::AgentUpdated(summary) => {
            let stale = summary.file.display().to_string();
            state.agents.entries.retain(|key, e| !(e.summary.is_none() && *key == stale));
            state.agents.entries.insert(
                summary.agent.to_string(),
                AgentEntry {
                    summary: Some(summary.clone()),
                    file: summary.file.clone(),
                    error: None,
                },
            );
        }
        Event::AgentRemoved { agent, file } => {
            state.agents.entries.remove(agent.as_str());
            state.agents.entries.remove(&file.display().to_string());
        }
        Event::AgentInvalid { file, agent, error } => {
            agent_invalid(state, file, agent.as_ref(), error);
        }
        Event::AgentFileCleared { file } => {
            state.agents.entries.remove(&file.display().to_string());
            for entry in state.agents.entries.values_mut().filter(|e| e.file == *file) {
                entry.error = None;
            }
        }
        Event::InstanceReserved { instance, agent } => {
            state.pool.instances.insert(
                *instance,
                InstanceView {
                    id: *instance,
                    agent: agent.clone(),
                    state: InstanceState::Reserved,
                    task: None,
                    created_ms: ts,
                },
            );
        }
        Event::InstanceWorking { instance, agent, task } => {
            let view = state.pool.instances.entry(*instance).or_insert_with(|| InstanceView {
                id: *instance,
                agent: agent.clone(),
                state: InstanceState::Working,
                task: None,
                created_ms: ts,
            });
            view.state = InstanceState::Working;
            view.task.clone_from(task);
        }
        Event::InstanceIdle { instance, agent } => {
            let view = state.pool.instances.entry(*instance).or_insert_with(|| InstanceView {
                id: *instance,
                agent: agent.clone(),
                state: InstanceState::Idle,
                task: None,
                created_ms: ts,
            });
            view.state = InstanceState::Idle;
            view.task = None;
        }
        Event::InstanceTerminated { instance, .. } => {
            if state.pool.instances.remove(instance).is_some() {
                state.pool.terminated += 1;
            }
        }
        Event::InstanceQueued { agent, waiting } => {
            if *waiting == 0 {
                state.pool.queued.remove(agent);
            } else {
                state.pool.queued.insert(agent.clone(), *waiting);
            }
        }
        Event::RunStarted { workflow, file, goal, max_parallel, fail_fast, simulated, tasks } => {
            let filter = state.run.as_ref().map(|r| r.cursor.filter.clone()).unwrap_or_default();
            let mut run = RunView::new(
                envelope.run_id.clone(),
                workflow.clone(),
                file.clone(),
                goal.clone(),
                *max_parallel,
                *fail_fast,
                *simulated,
                ts,
                tasks.clone(),
            );
            run.cursor.filter = filter;
            state.run = Some(run);
        }
        Event::RunFinished { status, duration_ms, .. } => {
            if let Some(run) = current_run_mut(state, envelope) {
                run.outcome = Some(RunOutcome {
                    status: *status,
                    finished_ms: ts,
                    duration_ms: *duration_ms,
                });
            }
        }
        Event::ApprovalRequested { task, agent, risk, reasons } => {
            state.approvals.insert(
                task.clone(),
                PendingApproval {
                    run: envelope.run_id.clone(),
                    task: task.clone(),
                    agent: agent.clone(),
                    risk: *risk,
                    reasons: reasons.clone(),
                    requested_ms: ts,
                    deferred: false,
                },
            );
            if let Some(view) = task_mut(state, envelope, task) {
                view.risk = Some(*risk);
            }
            if !state.can_review() {
                say(state, Level::Info, format!("{task} awaits approval by a reviewer"));
            }
            open_next_approval(state);
        }
        Event::ConflictDetected { task, question, verdicts, .. } => {
            state.conflicts.insert(
                (envelope.run_id.clone(), task.clone()),
                PendingConflict {
                    run: envelope.run_id.clone(),
                    task: task.clone(),
                    question: question.clone(),
                    verdicts: verdicts.clone(),
                    steps: Vec::new(),
                    recommendation: None,
                    asked_ms: None,
                    deferred: false,
                },
            );
        }
        Event::ConflictStep { task, step, finding, winner, recommendation, .. } => {
            apply_task_event(state, envelope);
            let key = (envelope.run_id.clone(), task.clone());
            if let Some(conflict) = state.conflicts.get_mut(&key) {
                conflict.steps.push((*step, finding.clone(), winner.clone()));
                if *step == LadderStep::Operator {
                    conflict.recommendation.clone_from(recommendation);
                    conflict.asked_ms.get_or_insert(ts);
                    if !state.can_resolve() {
                        say(state, Level::Info, format!("{task}: a conflict waits for a decision"));
                    }
                    open_next_approval(state);
                }
            }
        }
        Event::ConflictResolved { task, decision, by, .. } => {
            let key = (envelope.run_id.clone(), task.clone());
            close_conflict(state, &key);
            if let Some(by) = by.as_ref().filter(|b| b.as_str() != state.user) {
                say(state, Level::Info, format!("{by} settled {task}: {decision}"));
            }
        }
        Event::TaskSucceeded { task, .. }
        | Event::TaskFailed { task, .. }
        | Event::TaskCancelled { task, .. } => {
            apply_task_event(state, envelope);
            let key = (envelope.run_id.clone(), task.clone());
            if state.conflicts.contains_key(&key) {
                close_conflict(state, &key);
            }
        }
        Event::ApprovalDecided { task, approved, by, note } => {
            state.approvals.remove(task);
            if matches!(&state.prompt, Some(Prompt::Approval { task: t, .. }) if t == task) {
                state.prompt = None;
            }
            if by.as_str() != state.user {
                let verdict = if *approved { "approved" } else { "rejected" };
                let note = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                say(state, Level::Info, format!("{by} {verdict} {task}{note}"));
            }
            open_next_approval(state);
        }
        Event::BreakerOpened { agent, failures, threshold, recovery_ms, last_error } => {
            let breaker = state.breakers.breakers.entry(agent.clone()).or_default();
            *breaker = BreakerView {
                state: BreakerState::Open,
                failures: *failures,
                threshold: *threshold,
                opened_ms: Some(ts),
                recovery_ms: *recovery_ms,
                probes: 0,
                last_error: Some(last_error.clone()),
                closed_reason: None,
            };
        }
        Event::BreakerHalfOpened { agent, probes } => {
            let breaker = state.breakers.breakers.entry(agent.clone()).or_default();
            breaker.state = BreakerState::HalfOpen;
            breaker.probes = *probes;
        }
        Event::BreakerClosed { agent, reason } => {
            let breaker = state.breakers.breakers.entry(agent.clone()).or_default();
            breaker.state = BreakerState::Closed;
            breaker.failures = 0;
            breaker.opened_ms = None;
            breaker.closed_reason = Some(reason.clone());
        }
        Event::CommandAccepted { user, command, .. } => {
            if user.as_str() == state.user {
                say(state, Level::Info, format!("{command} accepted"));
            }
        }
        Event::CommandDenied { user, command, reason, .. } => {
            if user.as_str() == state.user {
                say(state, Level::Error, format!("denied: {command} — {reason}"));
            }
        }
        Event::Notice { level, message } => say(state, *level, message.clone()),
        _ => apply_task_event(state, envelope),
    }
    // Only the list this event can change needs its selection checked.
    let pane = match &envelope.event {
        Event::AgentAdded(_)
        | Event::AgentUpdated(_)
        | Event::AgentRemoved { .. }
        | Event::AgentInvalid { .. }
        | Event::AgentFileCleared { .. } => Some(PaneId::Agents),
        Event::InstanceReserved { .. }
        | Event::InstanceWorking { .. }
        | Event::InstanceIdle { .. }
        | Event::InstanceTerminated { .. } => Some(PaneId::Pool),
        Event::BreakerOpened { .. }
        | Event::BreakerHalfOpened { .. }
        | Event::BreakerClosed { .. }
        | Event::TaskRetrying { .. }
        | Event::TaskSucceeded { .. }
        | Event::TaskFailed { .. } => Some(PaneId::Breakers),
        _ => None,
    };
    if let Some(pane) = pane {
        fix_selection(state, pane);
    }
}

fn agent_invalid(state: &mut State, file: &std::path::Path, agent: Option<&AgentId>, error: &str) {
    let by_agent = agent
        .map(ToString::to_string)
        .filter(|key| state.agents.entries.get(key).is_some_and(|e| e.summary.is_some()));
    let by_file = || {
        state
            .agents
            .entries
            .iter()
            .find(|(_, e)| e.summary.is_some() && e.file == file)
            .map(|(k, _)| k.clone())
    };
    match by_agent.or_else(by_file) {
        Some(key) => {
            if let Some(entry) = state.agents.entries.get_mut(&key) {
                entry.error = Some(error.to_owned());
            }
        }
        None => {
            state.agents.entries.insert(
                file.display().to_string(),
                AgentEntry { summary: None, file: file.to_owned(), error: Some(error.to_owned()) },
            );
        }
    }
}

/// The current run, if the envelope belongs to it.
fn current_run_mut<'s>(state: &'s mut State, envelope: &Envelope) -> Option<&'s mut RunView> {
    state.run.as_mut().filter(|run| {
        run.run_id.is_none() || envelope.run_id.is_none() || run.run_id == envelope.run_id
    })
}

fn task_mut<'s>(
    state: &'s mut State,
    envelope: &Envelope,
    task: &TaskId,
) -> Option<&'s mut super::state::TaskView> {
    let run = current_run_mut(state, envelope)?;
    let index = *run.index.get(task)?;
    run.tasks.get_mut(index)
}

/// A change to one task view, chosen by event and applied once the task is found.
type TaskUpdate<'a> = Box<dyn FnOnce(&mut super::state::TaskView) + 'a>;

/// Task events: the DAG's task views and the per-agent call metrics.
fn apply_task_event(state: &mut State, envelope: &Envelope) {
    let ts = envelope.ts_ms;
    // Metrics count every attempt of every run, so fold them before looking for the task.
    match &envelope.event {
        Event::TaskRetrying { agent, duration_ms, .. } => {
            record_call(state, agent, *duration_ms, false);
        }
        Event::TaskSucceeded { agent, duration_ms, .. } => {
            record_call(state, agent, *duration_ms, true);
        }
        Event::TaskFailed { task, agent, attempt, duration_ms, .. } if *attempt > 0 => {
            let agent = agent
                .clone()
                .or_else(|| state.run.as_ref().and_then(|r| r.task(task)).map(|t| t.agent.clone()));
            if let Some(agent) = agent {
                record_call(state, &agent, *duration_ms, false);
            }
        }
        _ => {}
    }
    let (task, update): (&TaskId, TaskUpdate<'_>) = match &envelope.event {
        Event::TaskReady { task } => (task, Box::new(move |t| t.status = TaskStatus::Ready)),
        Event::TaskAwaitingApproval { task, risk, .. } => (
            task,
            Box::new(move |t| {
                t.status = TaskStatus::AwaitingApproval;
                t.risk = Some(*risk);
            }),
        ),
        Event::TaskStarted { task, agent, attempt, instance, backend, simulated } => (
            task,
            Box::new(move |t| {
                // A new round (first start, or an operator retry) starts the task's clock.
                if !matches!(t.status, TaskStatus::Running | TaskStatus::Retrying) {
                    t.first_started_ms = Some(ts);
                    t.attempt_ms = None;
                }
                t.status = TaskStatus::Running;
                t.agent = agent.clone();
                t.attempts = *attempt;
                t.instance = Some(*instance);
                t.backend = Some(backend.clone());
                t.simulated = *simulated;
                t.started_ms = Some(ts);
                t.finished_ms = None;
                t.retry_at_ms = None;
            }),
        ),
        Event::TaskOutput { task, stream, text } => {
            (task, Box::new(move |t| push_output(&mut t.output, *stream, text)))
        }
        Event::TaskRetrying { task, agent, attempt, delay_ms, duration_ms, error } => (
            task,
            Box::new(move |t| {
                t.status = TaskStatus::Retrying;
                t.agent = agent.clone();
                t.attempts = *attempt;
                t.attempt_ms = Some(*duration_ms);
                t.retry_at_ms = Some(ts + delay_ms);
                t.error = Some(error.clone());
            }),
        ),
        Event::TaskFallback { task, from, to, reason } => (
            task,
            Box::new(move |t| {
                t.agent = to.clone();
                t.note = Some(format!("fell back from {from}: {reason}"));
            }),
        ),
        Event::TaskSucceeded {
            task,
            agent,
            attempt,
            duration_ms,
            output,
            simulated,
            details,
            ..
        } => (
            task,
            Box::new(move |t| {
                if let Some(summary) = details.summary() {
                    t.note = Some(summary);
                }
                t.status = TaskStatus::Succeeded;
                t.agent = agent.clone();
                t.attempts = *attempt;
                t.attempt_ms = Some(*duration_ms);
                t.duration_ms = Some(whole_task_ms(t.first_started_ms, ts, *duration_ms));
                t.finished_ms = Some(ts);
                t.simulated = *simulated;
                t.retry_at_ms = None;
                if t.output.is_empty() && !output.is_empty() {
                    push_output(&mut t.output, OutputStream::Stdout, output);
                }
            }),
        ),
        Event::TaskFailed { task, agent, attempt, duration_ms, error } => (
            task,
            Box::new(move |t| {
                t.status = TaskStatus::Failed;
                if let Some(agent) = agent {
                    t.agent = agent.clone();
                }
                t.attempts = t.attempts.max(*attempt);
                t.attempt_ms = Some(*duration_ms);
                t.duration_ms = Some(whole_task_ms(t.first_started_ms, ts, *duration_ms));
                t.finished_ms = Some(ts);
                t.retry_at_ms = None;
                t.error = Some(error.clone());
            }),
        ),
        Event::WorkspaceCreated { task, kind, path, branch, base_from, .. } => (
            task,
            Box::new(move |t| {
                t.workspace = Some(WorkspaceView {
                    kind: *kind,
                    path: path.clone(),
                    branch: branch.clone(),
                    base_from: base_from.clone(),
                    summary: String::new(),
                    changes: Vec::new(),
                });
            }),
        ),
        Event::WorkspaceChanges { task, files, summary, .. } => (
            task,
            Box::new(move |t| {
                if let Some(workspace) = &mut t.workspace {
                    workspace.summary.clone_from(summary);
                    workspace.changes.clone_from(files);
                }
            }),
        ),
        Event::TaskSkipped { task, reason } => (
            task,
            Box::new(move |t| {
                t.status = TaskStatus::Skipped;
                t.note = Some(reason.clone());
                t.finished_ms = Some(ts);
            }),
        ),
        Event::TaskCancelled { task, reason } => (
            task,
            Box::new(move |t| {
                t.status = TaskStatus::Cancelled;
                t.note = Some(reason.clone());
                t.finished_ms = Some(ts);
                t.retry_at_ms = None;
            }),
        ),
        Event::ConflictStep { task, step: LadderStep::Operator, .. } => {
            (task, Box::new(move |t| t.status = TaskStatus::AwaitingDecision))
        }
        _ => return,
    };
    let Some(run) = current_run_mut(state, envelope) else { return };
    let Some(view) = run.index.get(task).and_then(|i| run.tasks.get_mut(*i)) else { return };
    update(view);
    // A retried task makes a finished run active again.
    if !view.status.is_final() && view.status != TaskStatus::Pending {
        run.outcome = None;
    }
}

/// From the first start of the task's round to `end_ms`; at least the last attempt's time.
fn whole_task_ms(first_started_ms: Option<u64>, end_ms: u64, attempt_ms: u64) -> u64 {
    first_started_ms.map_or(attempt_ms, |first| end_ms.saturating_sub(first).max(attempt_ms))
}

fn record_call(state: &mut State, agent: &AgentId, duration_ms: u64, ok: bool) {
    let metrics = state.breakers.metrics.entry(agent.clone()).or_default();
    metrics.calls += 1;
    metrics.total_duration_ms += duration_ms;
    if ok {
        metrics.consecutive_failures = 0;
    } else {
        metrics.errors += 1;
        metrics.consecutive_failures += 1;
    }
}

fn push_output(
    output: &mut std::collections::VecDeque<OutputLine>,
    stream: OutputStream,
    text: &str,
) {
    let mut pieces = text.split('\n');
    // Tokens and reasoning arrive in chunks that continue the last line of their stream;
    // stdout and stderr arrive as whole lines.
    let chunked = matches!(stream, OutputStream::Tokens | OutputStream::Reasoning);
    if chunked
        && let Some(last) = output.back_mut().filter(|l| l.stream == stream)
        && let Some(first) = pieces.next()
    {
        let room = OUTPUT_LINE_MAX_CHARS.saturating_sub(last.text.chars().count());
        last.text.extend(first.chars().take(room));
    }
    for piece in pieces {
        let piece = piece.strip_suffix('\r').unwrap_or(piece);
        if !chunked && piece.is_empty() && text.ends_with('\n') {
            continue;
        }
        output.push_back(OutputLine {
            stream,
            text: piece.chars().take(OUTPUT_LINE_MAX_CHARS).collect(),
        });
        while output.len() > OUTPUT_TAIL_LINES {
            output.pop_front();
        }
    }
}

fn push_audit(state: &mut State, envelope: &Arc<Envelope>) {
    if let Event::TaskOutput { task, stream, .. } = &envelope.event
        && *stream != OutputStream::ToolCall
    {
        stream_audit(state, envelope, task, *stream);
        return;
    }
    // An attempt's end (or a new attempt) closes its stream line.
    if let Some(task) = envelope.event.task()
        && matches!(
            envelope.event,
            Event::TaskStarted { .. }
                | Event::TaskRetrying { .. }
                | Event::TaskSucceeded { .. }
                | Event::TaskFailed { .. }
                | Event::TaskCancelled { .. }
        )
    {
        close_stream(state, envelope.run_id.clone(), &TaskId::new(task));
    }
    let first_started = match &envelope.event {
        Event::TaskSucceeded { task, .. } | Event::TaskFailed { task, .. } => {
            task_mut(state, envelope, task).and_then(|t| t.first_started_ms)
        }
        _ => None,
    };
    let entry = panes::audit::entry(envelope, first_started);
    append_audit(state, entry);
}

/// Count a piece of streamed output on its attempt's one audit line, adding that line for the
/// attempt's first piece.
fn stream_audit(state: &mut State, envelope: &Arc<Envelope>, task: &TaskId, stream: OutputStream) {
    let Event::TaskOutput { text, .. } = &envelope.event else { return };
    // Processes send whole lines, sometimes several at once.
    let lines = text.lines().count().max(1) as u64;
    let key = (envelope.run_id.clone(), task.clone());
    let audit = &mut state.audit;
    let (line, mut tally) = audit.streams.get(&key).copied().unwrap_or_default();
    match stream {
        OutputStream::Tokens => tally.tokens += 1,
        OutputStream::Reasoning => tally.reasoning += 1,
        OutputStream::Stdout => tally.stdout_lines += lines,
        OutputStream::Stderr => tally.stderr_lines += lines,
        OutputStream::ToolResult => tally.tool_results += 1,
        OutputStream::ToolCall => {}
    }
    let entry = panes::audit::stream_entry(envelope, task, &tally);
    if audit.streams.contains_key(&key)
        && let Some(kept) = audit.line_mut(line)
    {
        // Updated in place: the line keeps its place, its number and the time it began.
        *kept = AuditEntry { line, ts_ms: kept.ts_ms, ..entry };
        audit.streams.insert(key, (line, tally));
        return;
    }
    let line = append_audit(state, entry);
    state.audit.streams.insert(key, (line, tally));
}

/// The attempt ended: its stream line says what streamed, in the past tense.
fn close_stream(state: &mut State, run: Option<crate::ids::RunId>, task: &TaskId) {
    let audit = &mut state.audit;
    let Some((line, tally)) = audit.streams.remove(&(run, task.clone())) else { return };
    if let Some(kept) = audit.line_mut(line) {
        kept.text = panes::audit::stream_text(task, &tally, false);
    }
}

/// Add a line at the tail; returns its stream position.
fn append_audit(state: &mut State, mut entry: AuditEntry) -> u64 {
    let audit = &mut state.audit;
    let visible =
        audit.filter.is_empty() || super::state::matches_filter(&audit.filter, &entry.text);
    let line = audit.pushed;
    entry.line = line;
    audit.pushed += 1;
    audit.entries.push_back(entry);
    if audit.entries.len() > audit.capacity {
        audit.entries.pop_front();
    }
    // A scrolled view stays on the same lines while new ones arrive below (and the oldest
    // may drop off the top). Following the tail needs no bookkeeping.
    if !audit.is_following() {
        if visible {
            audit.scroll += 1;
            audit.offset += 1;
        }
        let last = audit.matching_len().saturating_sub(1);
        audit.scroll = audit.scroll.min(last);
        audit.offset = audit.offset.min(audit.scroll);
    }
    line
}

// ---------------------------------------------------------------- approvals

/// How long an approval prompt that opened by itself ignores approve and reject.
pub const APPROVAL_ARM_MS: u64 = 600;

/// Show the next approval (or else conflict) that is not deferred, unless something else
/// has the keys.
fn open_next_approval(state: &mut State) {
    if state.prompt.is_some() || state.editing != Editing::None {
        return;
    }
    if state.can_review() {
        let next = state
            .approvals
            .values()
            .filter(|a| !a.deferred)
            .min_by_key(|a| (a.requested_ms, a.task.clone()))
            .map(|a| a.task.clone());
        if let Some(task) = next {
            let armed_ms = state.now_ms + APPROVAL_ARM_MS;
            state.prompt = Some(Prompt::Approval { task, choice: ApprovalChoice::Later, armed_ms });
            return;
        }
    }
    if state.can_resolve() {
        let next = state
            .conflicts
            .iter()
            .filter(|(_, c)| c.is_open() && !c.deferred)
            .min_by_key(|(key, c)| (c.asked_ms, (*key).clone()))
            .map(|(key, _)| key.clone());
        if let Some(key) = next {
            let armed_ms = state.now_ms + APPROVAL_ARM_MS;
            state.prompt = Some(Prompt::Conflict { key, choice: None, armed_ms, own: None });
        }
    }
}

// ---------------------------------------------------------------- conflicts

/// A conflict was settled (or its task ended): forget it and close its prompt.
fn close_conflict(state: &mut State, key: &ConflictKey) {
    state.conflicts.remove(key);
    if matches!(&state.prompt, Some(Prompt::Conflict { key: k, .. }) if k == key) {
        state.prompt = None;
    }
    if matches!(&state.prompt, Some(Prompt::Confirm { command: Command::ResolveConflict { run, task, .. }, .. })
        if Some(run) == key.0.as_ref() && *task == key.1)
    {
        state.prompt = None;
    }
    open_next_approval(state);
}

/// 1-9 in the conflict prompt: focus that verdict (Enter then confirms).
fn pick_verdict(state: &mut State, number: usize) {
    let now = state.now_ms;
    let Some(Prompt::Conflict { key, choice, armed_ms, .. }) = &mut state.prompt else { return };
    if now < *armed_ms {
        say(state, Level::Warn, "the conflict just opened: read it, then choose".to_owned());
        return;
    }
    let count = state.conflicts.get(key).map_or(0, |c| c.verdicts.len());
    if (1..=count).contains(&number) {
        *choice = Some(number - 1);
    }
}

/// Enter on a verdict: ask to confirm, exactly as `:resolve TASK N` does.
fn confirm_conflict_choice(state: &mut State) {
    let now = state.now_ms;
    let Some(Prompt::Conflict { key, choice, armed_ms, .. }) = &state.prompt else { return };
    if now < *armed_ms {
        say(state, Level::Warn, "the conflict just opened: read it, then choose".to_owned());
        return;
    }
    let Some(index) = *choice else {
        defer_conflict(state);
        return;
    };
    let key = key.clone();
    match resolve_question(state, &key, index + 1, None) {
        Ok((question, command)) => confirm(state, question, command),
        Err(message) => say(state, Level::Error, message),
    }
}

/// The confirmation question and the command for settling `key` with verdict `number`.
pub(super) fn resolve_question(
    state: &State,
    key: &ConflictKey,
    number: usize,
    note: Option<String>,
) -> Result<(String, Command), String> {
    let conflict = state
        .conflicts
        .get(key)
        .filter(|c| c.is_open())
        .ok_or_else(|| format!("{} has no conflict waiting for a decision", key.1))?;
    let verdict =
        number.checked_sub(1).and_then(|i| conflict.verdicts.get(i)).ok_or_else(|| {
            format!("{}: no verdict {number}; choose 1 to {}", key.1, conflict.verdicts.len())
        })?;
    let run = conflict
        .run
        .clone()
        .or_else(|| state.run.as_ref().and_then(|r| r.run_id.clone()))
        .ok_or_else(|| format!("cannot settle {}: its run is unknown", key.1))?;
    let question = format!(
        "Settle {} with {}'s \"{}\"? The others are overruled.",
        key.1, verdict.agent, verdict.verdict.decision
    );
    let command = Command::ResolveConflict {
        run,
        task: key.1.clone(),
        choice: ConflictChoice::Verdict(number),
        note,
    };
    Ok((question, command))
}

/// `e` in the conflict prompt starts writing one's own decision; typing edits it.
fn edit_own_decision(state: &mut State, action: &Action) {
    let now = state.now_ms;
    let Some(Prompt::Conflict { own, armed_ms, .. }) = &mut state.prompt else { return };
    match action {
        Action::OwnStart if now < *armed_ms => {
            say(state, Level::Warn, "the conflict just opened: read it, then choose".to_owned());
        }
        Action::OwnStart => *own = Some(String::new()),
        Action::OwnPush(c) => own.get_or_insert_with(String::new).push(*c),
        Action::OwnPop => {
            if let Some(text) = own {
                text.pop();
            }
        }
        _ => *own = None,
    }
}

/// Enter while writing: ask to confirm, like a chosen verdict.
fn confirm_own_decision(state: &mut State) {
    let Some(Prompt::Conflict { key, own: Some(text), .. }) = &state.prompt else { return };
    let text = text.trim().to_owned();
    if text.is_empty() {
        say(state, Level::Warn, "write a decision first, or Esc to go back".to_owned());
        return;
    }
    let key = key.clone();
    let run = state
        .conflicts
        .get(&key)
        .and_then(|c| c.run.clone())
        .or_else(|| state.run.as_ref().and_then(|r| r.run_id.clone()));
    let Some(run) = run else {
        say(state, Level::Error, format!("cannot settle {}: its run is unknown", key.1));
        return;
    };
    let question =
        format!("Settle {} with your own decision \"{text}\"? Every verdict is overruled.", key.1);
    let command = Command::ResolveConflict {
        run,
        task: key.1.clone(),
        choice: ConflictChoice::Own(text),
        note: None,
    };
    confirm(state, question, command);
}

fn defer_conflict(state: &mut State) {
    if let Some(Prompt::Conflict { key, .. }) = state.prompt.take()
        && let Some(conflict) = state.conflicts.get_mut(&key)
    {
        conflict.deferred = true;
        say(
            state,
            Level::Info,
            format!(
                "{} waits for a decision; press d on it in the DAG or :resolve {} N",
                key.1, key.1
            ),
        );
    }
    open_next_approval(state);
}

/// `d` on a DAG task: open its conflict prompt, armed at once (asked for).
fn open_selected_conflict(state: &mut State) {
    let Some(task) =
        state.run.as_ref().and_then(|r| r.selected_task()).map(|t| t.planned.task.clone())
    else {
        return;
    };
    let key = state.conflicts.keys().find(|(_, t)| *t == task).cloned();
    match key.filter(|k| state.conflicts.get(k).is_some_and(PendingConflict::is_open)) {
        Some(key) => {
            state.prompt = Some(Prompt::Conflict { key, choice: None, armed_ms: 0, own: None });
        }
        None => say(state, Level::Warn, format!("{task} has no conflict waiting for a decision")),
    }
}

fn decide_approval(state: &mut State, approve: bool) -> Vec<Command> {
    if let Some(Prompt::Approval { armed_ms, .. }) = &state.prompt
        && state.now_ms < *armed_ms
    {
        let text = "the request just opened: read it, then decide".to_owned();
        say(state, Level::Warn, text);
        return Vec::new();
    }
    let Some(Prompt::Approval { task, .. }) = state.prompt.take() else { return Vec::new() };
    let Some(pending) = state.approvals.get_mut(&task) else {
        open_next_approval(state);
        return Vec::new();
    };
    // It stays pending until ApprovalDecided arrives (the gate may refuse); don't pop it again.
    pending.deferred = true;
    let run = pending.run.clone().or_else(|| state.run.as_ref().and_then(|r| r.run_id.clone()));
    let Some(run) = run else {
        say(state, Level::Error, format!("cannot decide {task}: its run is unknown"));
        return Vec::new();
    };
    open_next_approval(state);
    let command = if approve {
        Command::Approve { run, task, note: None }
    } else {
        Command::Reject { run, task, note: None }
    };
    vec![command]
}

fn defer_approval(state: &mut State) {
    if let Some(Prompt::Approval { task, .. }) = state.prompt.take()
        && let Some(pending) = state.approvals.get_mut(&task)
    {
        pending.deferred = true;
        say(
            state,
            Level::Info,
            format!("{task} stays pending; press a on it in the DAG to review"),
        );
    }
    open_next_approval(state);
}

fn confirm(state: &mut State, question: String, command: Command) {
    state.prompt = Some(Prompt::Confirm { question, command, confirm: false });
}

// ---------------------------------------------------------------- actions

fn apply_action(state: &mut State, action: Action) -> Vec<Command> {
    match action {
        Action::Quit => state.should_quit = true,
        Action::FocusNext | Action::FocusPrev => {
            state.editing = Editing::None;
            state.focus =
                if action == Action::FocusNext { state.focus.next() } else { state.focus.prev() };
            open_next_approval(state);
        }
        Action::SelectPrev => move_selection(state, -1),
        Action::SelectNext => move_selection(state, 1),
        Action::PageUp => move_selection(state, -page(state)),
        Action::PageDown => move_selection(state, page(state)),
        Action::SelectFirst => move_selection(state, isize::MIN / 2),
        Action::SelectLast => move_selection(state, isize::MAX / 2),
        Action::SelectLeft => move_dag_layer(state, -1),
        Action::SelectRight => move_dag_layer(state, 1),
        Action::OpenDetails => {
            if panes::has_details(state, state.focus) {
                state.overlay = Some(Overlay::Details { pane: state.focus, scroll: 0 });
            }
        }
        Action::CloseOverlay => state.overlay = None,
        Action::ToggleHelp => {
            state.overlay = match state.overlay {
                Some(Overlay::Help { .. }) => None,
                _ => Some(Overlay::Help { scroll: 0 }),
            };
        }
        Action::StartFilter => {
            if filter_mut(state, state.focus).is_some() {
                state.editing = Editing::Filter;
            } else {
                say(state, Level::Info, "nothing to filter yet".to_owned());
            }
        }
        Action::FilterPush(c) => {
            if let Some(filter) = filter_mut(state, state.focus) {
                filter.push(c);
            }
            after_filter_change(state);
        }
        Action::FilterPop => {
            if let Some(filter) = filter_mut(state, state.focus) {
                filter.pop();
            }
            after_filter_change(state);
        }
        Action::FilterAccept | Action::CloseCommandLine => {
            state.editing = Editing::None;
            open_next_approval(state);
        }
        Action::FilterClear => {
            // Esc without a filter changes nothing (a scrolled audit view stays put).
            if !state.filter(state.focus).is_empty() {
                if let Some(filter) = filter_mut(state, state.focus) {
                    filter.clear();
                }
                after_filter_change(state);
            }
            state.editing = Editing::None;
            open_next_approval(state);
        }
        Action::OpenCommandLine => {
            state.editing = Editing::CommandLine;
            state.command_line = TextArea::default();
            state.history_pos = None;
        }
        Action::CommandLineInput(input) => {
            state.command_line.input(input);
        }
        Action::HistoryPrev | Action::HistoryNext => browse_history(state, action),
        Action::SubmitCommandLine => return submit_command_line(state),
        Action::PromptNext | Action::PromptPrev => {
            cycle_prompt(state, action == Action::PromptNext);
        }
        Action::PromptConfirm => return press_prompt(state),
        Action::Approve => return decide_approval(state, true),
        Action::Reject => return decide_approval(state, false),
        Action::Later => {
            if matches!(state.prompt, Some(Prompt::Conflict { .. })) {
                defer_conflict(state);
            } else {
                defer_approval(state);
            }
        }
        Action::PickVerdict(number) => pick_verdict(state, number),
        Action::OwnStart | Action::OwnPush(_) | Action::OwnPop | Action::OwnCancel => {
            edit_own_decision(state, &action);
        }
        Action::OwnAccept => confirm_own_decision(state),
        Action::OpenConflict => open_selected_conflict(state),
        Action::ConfirmYes => {
            if let Some(Prompt::Confirm { command, .. }) = state.prompt.take() {
                // Sent: the conflict stays until `conflict_resolved` (the gate may refuse),
                // but does not pop up again meanwhile.
                if let Command::ResolveConflict { run, task, .. } = &command
                    && let Some(conflict) =
                        state.conflicts.get_mut(&(Some(run.clone()), task.clone()))
                {
                    conflict.deferred = true;
                }
                return vec![command];
            }
        }
        Action::ConfirmNo => {
            if matches!(state.prompt, Some(Prompt::Confirm { .. })) {
                state.prompt = None;
                open_next_approval(state);
            }
        }
        Action::ReviewSelected => review_selected(state),
        Action::CancelSelectedTask | Action::RetrySelectedTask | Action::CancelRun => {
            run_action(state, action);
        }
        Action::ResetSelectedBreaker | Action::OpenSelectedBreaker => {
            if let Some(agent) = state.breakers.cursor.selected.clone() {
                let (question, command) = if action == Action::ResetSelectedBreaker {
                    (
                        format!("Reset the breaker of {agent}? Calls resume at once."),
                        Command::ResetBreaker { agent },
                    )
                } else {
                    (
                        format!("Open the breaker of {agent}? Its calls are refused."),
                        Command::OpenBreaker { agent },
                    )
                };
                confirm(state, question, command);
            }
        }
        Action::SpawnSelectedAgent => {
            let agent = state.agents.cursor.selected.as_ref().and_then(|key| {
                state
                    .agents
                    .entries
                    .get(key)
                    .and_then(|e| e.summary.as_ref())
                    .map(|s| s.agent.clone())
            });
            if let Some(agent) = agent {
                say(state, Level::Info, format!("→ spawn {agent}"));
                return vec![Command::SpawnInstance { agent }];
            }
        }
        Action::ReleaseSelectedInstance => {
            if let Some(instance) = state.pool.cursor.selected {
                let agent = state
                    .pool
                    .instances
                    .get(&instance)
                    .map(|i| i.agent.to_string())
                    .unwrap_or_default();
                confirm(
                    state,
                    format!("Release {instance} ({agent})?"),
                    Command::ReleaseInstance { instance },
                );
            }
        }
        Action::ReloadAgents => {
            say(state, Level::Info, "→ reload agents".to_owned());
            return vec![Command::ReloadAgents];
        }
        Action::Click { column, row } => click(state, column, row),
        Action::Scroll { column, row, down } => {
            if state.overlay.is_some() || state.prompt.is_some() {
                move_selection(state, if down { WHEEL_ROWS } else { -WHEEL_ROWS });
            } else if let Some(pane) = state.layout.pane_at(column, row) {
                state.focus = pane;
                move_selection(state, if down { WHEEL_ROWS } else { -WHEEL_ROWS });
            }
        }
    }
    Vec::new()
}

fn click(state: &mut State, column: u16, row: u16) {
    if state.prompt.is_some() {
        return;
    }
    if state.overlay.is_some() {
        state.overlay = None;
        return;
    }
    if let Some(pane) = state.layout.pane_at(column, row) {
        if state.focus != pane {
            state.editing = Editing::None;
        }
        state.focus = pane;
    }
}

fn submit_command_line(state: &mut State) -> Vec<Command> {
    let text = state.command_line.lines().join(" ").trim().to_owned();
    state.editing = Editing::None;
    state.history_pos = None;
    if text.is_empty() {
        open_next_approval(state);
        return Vec::new();
    }
    if state.command_history.last() != Some(&text) {
        state.command_history.push(text.clone());
    }
    let commands = match command_line::parse(&text, state) {
        Ok(LineCommand::Resolve { task, number, note }) => {
            let key = state.conflicts.keys().find(|(_, t)| *t == task).cloned();
            let key = key.unwrap_or((state.run.as_ref().and_then(|r| r.run_id.clone()), task));
            match resolve_question(state, &key, number, note) {
                Ok((question, command)) => confirm(state, question, command),
                Err(message) => say(state, Level::Error, message),
            }
            Vec::new()
        }
        Ok(LineCommand::Send(command)) => {
            say(state, Level::Info, format!("→ {text}"));
            vec![command]
        }
        Ok(LineCommand::Theme(name)) => {
            state.theme_request = Some(name);
            Vec::new()
        }
        Ok(LineCommand::Help) => {
            state.overlay = Some(Overlay::Help { scroll: 0 });
            Vec::new()
        }
        Ok(LineCommand::Quit) => {
            state.should_quit = true;
            Vec::new()
        }
        Err(message) => {
            say(state, Level::Error, message);
            Vec::new()
        }
    };
    open_next_approval(state);
    commands
}

fn browse_history(state: &mut State, action: Action) {
    let len = state.command_history.len();
    if len == 0 {
        return;
    }
    let pos = match (action, state.history_pos) {
        (Action::HistoryPrev, None) => Some(len - 1),
        (Action::HistoryPrev, Some(p)) => Some(p.saturating_sub(1)),
        (_, Some(p)) if p + 1 < len => Some(p + 1),
        _ => None,
    };
    state.history_pos = pos;
    let text = pos.and_then(|p| state.command_history.get(p)).cloned().unwrap_or_default();
    let mut line = TextArea::new(vec![text]);
    line.move_cursor(ratatui_textarea::CursorMove::End);
    state.command_line = line;
}

fn cycle_prompt(state: &mut State, forward: bool) {
    match &mut state.prompt {
        Some(Prompt::Approval { choice, .. }) => {
            let order = [ApprovalChoice::Approve, ApprovalChoice::Reject, ApprovalChoice::Later];
            let at = order.iter().position(|c| c == choice).unwrap_or(2);
            let next = if forward { (at + 1) % 3 } else { (at + 2) % 3 };
            *choice = order[next];
        }
        Some(Prompt::Confirm { confirm, .. }) => *confirm = !*confirm,
        Some(Prompt::Conflict { key, choice, .. }) => {
            // Columns, then Later; wrapping both ways.
            let count = state.conflicts.get(key).map_or(0, |c| c.verdicts.len());
            let at = choice.unwrap_or(count);
            let next = if forward { (at + 1) % (count + 1) } else { (at + count) % (count + 1) };
            *choice = (next < count).then_some(next);
        }
        None => {}
    }
}

fn press_prompt(state: &mut State) -> Vec<Command> {
    match &state.prompt {
        Some(Prompt::Approval { choice, .. }) => match choice {
            ApprovalChoice::Approve => decide_approval(state, true),
            ApprovalChoice::Reject => decide_approval(state, false),
            ApprovalChoice::Later => {
                defer_approval(state);
                Vec::new()
            }
        },
        Some(Prompt::Conflict { .. }) => {
            confirm_conflict_choice(state);
            Vec::new()
        }
        Some(Prompt::Confirm { confirm: true, .. }) => apply_action(state, Action::ConfirmYes),
        Some(Prompt::Confirm { confirm: false, .. }) => apply_action(state, Action::ConfirmNo),
        None => Vec::new(),
    }
}

fn review_selected(state: &mut State) {
    let Some(task) =
        state.run.as_ref().and_then(|r| r.selected_task()).map(|t| t.planned.task.clone())
    else {
        return;
    };
    if state.approvals.contains_key(&task) {
        // Opened on request, so armed at once.
        state.prompt = Some(Prompt::Approval { task, choice: ApprovalChoice::Later, armed_ms: 0 });
    } else {
        say(state, Level::Warn, format!("{task} is not waiting for approval"));
    }
}

fn run_action(state: &mut State, action: Action) {
    let Some(run) = &state.run else {
        say(state, Level::Warn, "no run yet; start one with :run PATH".to_owned());
        return;
    };
    let Some(run_id) = run.run_id.clone() else {
        say(state, Level::Error, "the current run has no id".to_owned());
        return;
    };
    let selected = run.selected_task().map(|t| (t.planned.task.clone(), t.status));
    let unfinished = run.tasks.iter().filter(|t| !t.status.is_final()).count();
    let workflow = run.workflow.clone();
    let (question, command) = match (action, selected) {
        (Action::CancelRun, _) => (
            format!("Cancel run {workflow}? {unfinished} unfinished tasks stop."),
            Command::CancelRun { run: run_id },
        ),
        (Action::CancelSelectedTask, Some((task, status))) => {
            if status.is_final() {
                say(state, Level::Warn, format!("{task} already {}", status.word()));
                return;
            }
            (
                format!("Cancel task {task}? Tasks depending on it are skipped."),
                Command::CancelTask { run: run_id, task },
            )
        }
        (Action::RetrySelectedTask, Some((task, status))) => {
            if !matches!(status, TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled) {
                say(
                    state,
                    Level::Warn,
                    format!(
                        "{task} is {}; only failed, skipped or cancelled tasks retry",
                        status.word()
                    ),
                );
                return;
            }
            (
                format!("Retry task {task} and the tasks depending on it?"),
                Command::RetryTask { run: run_id, task },
            )
        }
        _ => return,
    };
    confirm(state, question, command);
}

// ---------------------------------------------------------------- selection

/// The filter of a pane; the DAG has none without a run.
fn filter_mut(state: &mut State, pane: PaneId) -> Option<&mut String> {
    match pane {
        PaneId::Agents => Some(&mut state.agents.cursor.filter),
        PaneId::Pool => Some(&mut state.pool.cursor.filter),
        PaneId::Dag => state.run.as_mut().map(|run| &mut run.cursor.filter),
        PaneId::Breakers => Some(&mut state.breakers.cursor.filter),
        PaneId::Audit => Some(&mut state.audit.filter),
    }
}

fn after_filter_change(state: &mut State) {
    match state.focus {
        PaneId::Audit => {
            state.audit.scroll = 0;
            state.audit.offset = 0;
        }
        PaneId::Dag => {
            // Jump to the first matching task so the filter finds things.
            if let Some(run) = state.run.as_mut()
                && !run.matches(run.cursor.selected)
                && let Some(first) = run.layers.iter().flatten().copied().find(|i| run.matches(*i))
            {
                run.cursor.selected = first;
            }
        }
        pane => {
            fix_selection(state, pane);
            scroll_into_view(state, pane);
        }
    }
    scroll_into_view(state, state.focus);
}

/// Keys of a list pane's rows in display order.
fn row_keys(state: &State, pane: PaneId) -> Vec<String> {
    match pane {
        PaneId::Agents => state.agents.rows().iter().map(|e| e.key()).collect(),
        PaneId::Pool => state.pool.rows().iter().map(|i| i.id.0.to_string()).collect(),
        PaneId::Breakers => state.breakers.rows().iter().map(ToString::to_string).collect(),
        PaneId::Dag | PaneId::Audit => Vec::new(),
    }
}

fn selected_key(state: &State, pane: PaneId) -> Option<String> {
    match pane {
        PaneId::Agents => state.agents.cursor.selected.clone(),
        PaneId::Pool => state.pool.cursor.selected.map(|i| i.0.to_string()),
        PaneId::Breakers => state.breakers.cursor.selected.as_ref().map(ToString::to_string),
        PaneId::Dag | PaneId::Audit => None,
    }
}

/// Select a row; `pin` when the operator chose it.
fn set_selected_key(state: &mut State, pane: PaneId, key: Option<String>, pin: bool) {
    match pane {
        PaneId::Agents => {
            state.agents.cursor.selected = key;
            state.agents.cursor.pinned = pin;
        }
        PaneId::Pool => {
            state.pool.cursor.selected =
                key.and_then(|k| k.parse().ok()).map(crate::ids::InstanceId);
            state.pool.cursor.pinned = pin;
        }
        PaneId::Breakers => {
            state.breakers.cursor.selected = key.map(AgentId::new);
            state.breakers.cursor.pinned = pin;
        }
        PaneId::Dag | PaneId::Audit => {}
    }
}

fn is_pinned(state: &State, pane: PaneId) -> bool {
    match pane {
        PaneId::Agents => state.agents.cursor.pinned,
        PaneId::Pool => state.pool.cursor.pinned,
        PaneId::Breakers => state.breakers.cursor.pinned,
        PaneId::Dag | PaneId::Audit => false,
    }
}

/// Keep the selection on a visible row: the item the operator chose while it is listed,
/// else the first row.
fn fix_selection(state: &mut State, pane: PaneId) {
    if matches!(pane, PaneId::Dag | PaneId::Audit) {
        return;
    }
    let listed = match pane {
        PaneId::Agents => {
            state.agents.cursor.selected.as_ref().is_some_and(|k| state.agents.is_listed(k))
        }
        PaneId::Pool => state.pool.cursor.selected.is_some_and(|id| state.pool.is_listed(id)),
        _ => state.breakers.cursor.selected.as_ref().is_some_and(|a| state.breakers.is_listed(a)),
    };
    if listed && is_pinned(state, pane) {
        return;
    }
    // Runs on every event for its pane: find the first row without building the list.
    let first = match pane {
        PaneId::Agents => state.agents.rows().first().map(|e| e.key()),
        PaneId::Pool => state.pool.first_listed().map(|id| id.0.to_string()),
        _ => state.breakers.first_listed().map(ToString::to_string),
    };
    if selected_key(state, pane) != first {
        set_selected_key(state, pane, first, false);
    }
}

fn page(state: &State) -> isize {
    let rows = panes::visible_rows(state, state.focus);
    isize::try_from(rows.max(1)).unwrap_or(1)
}

fn move_selection(state: &mut State, delta: isize) {
    if let Some(overlay) = &mut state.overlay {
        let scroll = match overlay {
            Overlay::Help { scroll } | Overlay::Details { scroll, .. } => scroll,
        };
        *scroll = scroll.saturating_add_signed(delta.clamp(-10_000, 10_000));
        return;
    }
    match state.focus {
        PaneId::Audit => {
            // Up (negative) goes back in time, which is a larger distance from the tail.
            let last = state.audit.matching_len().saturating_sub(1);
            state.audit.scroll = state.audit.scroll.saturating_add_signed(-delta).min(last);
        }
        PaneId::Dag => move_dag_row(state, delta),
        pane => {
            let keys = row_keys(state, pane);
            if keys.is_empty() {
                return;
            }
            let at = selected_key(state, pane)
                .and_then(|k| keys.iter().position(|x| *x == k))
                .unwrap_or(0);
            let next = at.saturating_add_signed(delta).min(keys.len() - 1);
            set_selected_key(state, pane, keys.get(next).cloned(), true);
        }
    }
    scroll_into_view(state, state.focus);
}

fn move_dag_row(state: &mut State, delta: isize) {
    let Some(run) = state.run.as_mut() else { return };
    let Some(task) = run.tasks.get(run.cursor.selected) else { return };
    let layer = &run.layers[task.planned.layer];
    let at = run.row_in_layer[run.cursor.selected];
    let next = at.saturating_add_signed(delta).min(layer.len().saturating_sub(1));
    if let Some(index) = layer.get(next) {
        run.cursor.selected = *index;
    }
}

fn move_dag_layer(state: &mut State, delta: isize) {
    let Some(run) = state.run.as_mut() else { return };
    let Some(task) = run.tasks.get(run.cursor.selected) else { return };
    let row = run.row_in_layer[run.cursor.selected];
    let layer =
        task.planned.layer.saturating_add_signed(delta).min(run.layers.len().saturating_sub(1));
    if let Some(target) = run.layers.get(layer).filter(|l| !l.is_empty()) {
        run.cursor.selected = target[row.min(target.len() - 1)];
    }
    scroll_into_view(state, PaneId::Dag);
}

/// Move a pane's scroll offset the least needed to show its selection.
fn scroll_into_view(state: &mut State, pane: PaneId) {
    let area = state.layout.pane(pane);
    let rows = panes::visible_rows(state, pane);
    match pane {
        PaneId::Dag => {
            if let Some(run) = state.run.as_mut() {
                panes::dag::scroll_into_view(run, area);
            }
        }
        PaneId::Audit => {
            let audit = &mut state.audit;
            audit.offset = panes::scrolled_offset(audit.offset, audit.scroll, rows);
        }
        _ => {
            let keys = row_keys(state, pane);
            let at = selected_key(state, pane).and_then(|k| keys.iter().position(|x| *x == k));
            let offset = match pane {
                PaneId::Agents => &mut state.agents.cursor.offset,
                PaneId::Pool => &mut state.pool.cursor.offset,
                _ => &mut state.breakers.cursor.offset,
            };
            *offset = panes::scrolled_offset(*offset, at.unwrap_or(0), rows);
        }
    }
}

#[cfg(test)]
#[path = "reducer_tests.rs"]
mod tests;
