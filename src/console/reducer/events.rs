//! Runtime events into the state: registry, pool, breakers, approvals, the audit stream,
//! and each run's model.

use std::sync::Arc;

use crate::event::{Envelope, Event, Level, OutputStream};
use crate::host::protocol::Digest;
use crate::ids::{AgentId, RunId, TaskId};
use crate::model::TaskStatus;

use super::super::panes;
use super::super::state::{
    AgentEntry, AuditEntry, BreakerState, BreakerView, InstanceState, InstanceView, PaneId,
    PendingApproval, Prompt, RunView, State, TaskModel, matches_filter,
};
use super::conflicts;
use super::prompts::open_next_approval;
use super::say;
use super::scrolling::fix_selection;

// ---------------------------------------------------------------- events

pub(super) fn resync(state: &mut State, backlog: &[Arc<Envelope>], missed: u64) {
    state.agents.entries.clear();
    state.pool.instances.clear();
    state.pool.terminated = 0;
    state.pool.queued.clear();
    // Runs are rebuilt from the backlog; the operator's choice of run stays if it is there.
    state.runs.clear();
    state.breakers.breakers.clear();
    state.breakers.metrics.clear();
    state.approvals.clear();
    state.conflicts.waiting.clear();
    state.conflicts.known.clear();
    // Streams that went on while events were missed start a fresh line.
    state.audit.streams.clear();
    let audited = state.audit.entries.back().map_or(0, |e| e.seq);
    for envelope in backlog {
        apply_event(state, envelope, envelope.seq > audited);
    }
    if let Some(Prompt::Approval { run, task, .. }) = &state.prompt
        && !state.approvals.contains_key(&(run.clone(), task.clone()))
    {
        state.prompt = None;
    }
    conflicts::resynced(state);
    if state.run().is_none() {
        state.shown_run = state.runs.keys().next_back().cloned();
        state.shown_pinned = false;
    }
    open_next_approval(state);
    for pane in PaneId::ORDER {
        fix_selection(state, pane);
    }
    say(state, Level::Warn, format!("lagged: missed {missed} events; resynced"));
}

pub(super) fn apply_event(state: &mut State, envelope: &Arc<Envelope>, audit: bool) {
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
            let removed = state.pool.instances.remove(instance).is_some();
            state.pool.terminated += u64::from(removed);
        }
        Event::InstanceQueued { agent, waiting } => {
            if *waiting == 0 {
                state.pool.queued.remove(agent);
            } else {
                state.pool.queued.insert(agent.clone(), *waiting);
            }
        }
        Event::ApprovalRequested { task, agent, risk, reasons } => {
            state.approvals.insert(
                (envelope.run_id.clone(), task.clone()),
                PendingApproval {
                    run: envelope.run_id.clone(),
                    task: task.clone(),
                    agent: agent.clone(),
                    risk: *risk,
                    reasons: reasons.clone(),
                    requested_ms: ts,
                    deferred: false,
                    requested_by: None,
                    deadline_ms: None,
                    needed: 1,
                    approved_by: Vec::new(),
                    overdue: false,
                },
            );
            if !state.can_review() {
                say(state, Level::Info, format!("{task} awaits approval by a reviewer"));
            }
            open_next_approval(state);
        }
        Event::ApprovalTerms { task, requested_by, deadline_ms, needed } => {
            if let Some(pending) = state.approvals.get_mut(&(envelope.run_id.clone(), task.clone()))
            {
                pending.requested_by.clone_from(requested_by);
                pending.deadline_ms = *deadline_ms;
                pending.needed = *needed;
            }
        }
        Event::ApprovalGiven { task, by, needed, .. } => {
            if let Some(pending) = state.approvals.get_mut(&(envelope.run_id.clone(), task.clone()))
            {
                if !pending.approved_by.contains(by) {
                    pending.approved_by.push(by.clone());
                }
                pending.needed = *needed;
            }
        }
        Event::ApprovalOverdue { task, .. } => {
            if let Some(pending) = state.approvals.get_mut(&(envelope.run_id.clone(), task.clone()))
            {
                pending.overdue = true;
            }
        }
        Event::ApprovalDecided { task, approved, by, note } => {
            state.approvals.remove(&(envelope.run_id.clone(), task.clone()));
            if matches!(&state.prompt, Some(Prompt::Approval { run, task: t, .. })
                if t == task && *run == envelope.run_id)
            {
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
        Event::CommandAccepted { user, command, .. } if user.as_str() == state.user => {
            say(state, Level::Info, format!("{command} accepted"));
        }
        Event::CommandDenied { user, command, reason, .. } if user.as_str() == state.user => {
            say(state, Level::Error, format!("denied: {command} — {reason}"));
        }
        Event::Notice { level, message } => say(state, *level, message.clone()),
        _ => {}
    }
    if let Some(run) = fold_run(state, envelope)
        && envelope.event.task().is_some()
    {
        conflicts::on_event(state, &run, envelope);
    } else if let (Event::RunFinished { .. }, Some(run)) = (&envelope.event, &envelope.run_id) {
        conflicts::on_event(state, run, envelope);
    }
    record_calls(state, envelope);
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

/// A host's digest of a flood: whole events as events, each compact task change into its
/// run, and one audit line that says what was condensed.
pub(super) fn apply_digest(state: &mut State, digest: &Digest) {
    if digest.last_seq != 0 && digest.last_seq <= state.applied_seq {
        return;
    }
    let mut moved: [u64; 3] = [0; 3];
    let mut at_ms = 0;
    for part in &digest.parts {
        for envelope in &part.events {
            if envelope.seq == 0 || envelope.seq > state.applied_seq {
                apply_event(state, &Arc::new(envelope.clone()), true);
            }
        }
        let key = match (&part.run, &state.shown_run) {
            (Some(run), _) => run.clone(),
            (None, Some(shown)) => shown.clone(),
            (None, None) => continue,
        };
        let Some(run) = state.runs.get_mut(&key) else { continue };
        run.from_store = false;
        let mut calls: Vec<(AgentId, u64)> = Vec::new();
        for change in &part.tasks {
            let applied = run.model.apply_change(change) as u64;
            if applied == 0 {
                continue;
            }
            at_ms = at_ms.max(change.at_ms);
            match change.status {
                TaskStatus::Ready => moved[0] += applied,
                TaskStatus::Running => moved[1] += applied,
                TaskStatus::Succeeded => {
                    moved[2] += applied;
                    let first = change.first as usize;
                    for position in first..first + applied as usize {
                        if let Some(t) = run.model.planned_at(position) {
                            calls.push((t.agent.clone(), change.duration_ms.unwrap_or(0)));
                        }
                    }
                }
                _ => {}
            }
        }
        for (agent, duration_ms) in calls {
            state.breakers.metrics.entry(agent).or_default().record(true, duration_ms);
        }
    }
    state.now_ms = state.now_ms.max(at_ms);
    state.applied_seq = state.applied_seq.max(digest.last_seq);
    let said: Vec<String> = [(moved[2], "succeeded"), (moved[1], "running"), (moved[0], "ready")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, word)| format!("{n} {word}"))
        .collect();
    if !said.is_empty() {
        let text =
            format!("⋯ {} events condensed by the host: tasks {}", digest.events, said.join(", "));
        let envelope = Arc::new(Envelope {
            seq: digest.last_seq,
            ts_ms: at_ms,
            run_id: state.shown_run.clone().filter(|run| !run.as_str().is_empty()),
            event: Event::Notice { level: Level::Info, message: text.clone() },
        });
        let entry = panes::audit::condensed_entry(&envelope, &text);
        append_audit(state, entry);
    }
    fix_selection(state, PaneId::Breakers);
    fix_selection(state, PaneId::Pool);
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

/// Finished runs kept besides the shown one; older ones leave the console (the store keeps
/// them).
const FINISHED_RUNS_KEPT: usize = 16;

/// Fold the event into its own run's model (an event without a run id goes to the shown
/// run). A `RunStarted` of a new run adds its view and, unless the operator chose a run,
/// shows it; the DAG filter carries over.
fn fold_run(state: &mut State, envelope: &Envelope) -> Option<RunId> {
    let starts = matches!(envelope.event, Event::RunStarted { .. });
    let key = match (&envelope.run_id, &state.shown_run) {
        (Some(id), _) => id.clone(),
        (None, Some(shown)) if !starts => shown.clone(),
        // A run without an id (tests, old stores): one slot, replaced by each start.
        (None, _) if starts => RunId::new(""),
        (None, _) => return None,
    };
    if starts && (!state.runs.contains_key(&key) || envelope.run_id.is_none()) {
        let filter = state.run().map(|r| r.cursor.filter.clone()).unwrap_or_default();
        let mut run = RunView::new(envelope.run_id.clone());
        run.cursor.filter = filter;
        state.runs.insert(key.clone(), run);
        if !state.shown_pinned || state.run().is_none() {
            state.shown_run = Some(key.clone());
        }
        forget_old_runs(state);
    }
    let run = state.runs.get_mut(&key)?;
    // A run read from the store whose events arrive live again (resumed) is followed.
    run.from_store = false;
    run.apply(envelope);
    Some(key)
}

/// Keep the shown run, every live one and the newest finished ones.
fn forget_old_runs(state: &mut State) {
    let mut finished: Vec<(u64, RunId)> = state
        .runs
        .iter()
        .filter(|(id, run)| !run.is_active() && state.shown_run.as_ref() != Some(*id))
        .map(|(id, run)| (run.started_ms, id.clone()))
        .collect();
    if finished.len() <= FINISHED_RUNS_KEPT {
        return;
    }
    finished.sort();
    for (_, id) in &finished[..finished.len() - FINISHED_RUNS_KEPT] {
        state.runs.remove(id);
    }
}

/// Each finished attempt is a call of its agent, whichever run it belongs to.
fn record_calls(state: &mut State, envelope: &Envelope) {
    let (agent, duration_ms, ok) = match &envelope.event {
        Event::TaskRetrying { agent, duration_ms, .. } => (agent.clone(), *duration_ms, false),
        Event::TaskSucceeded { agent, duration_ms, .. } => (agent.clone(), *duration_ms, true),
        Event::TaskFailed { task, agent, attempt, duration_ms, .. } if *attempt > 0 => {
            let agent = agent.clone().or_else(|| {
                state
                    .run_of(envelope.run_id.as_ref())
                    .and_then(|r| r.task(task))
                    .map(|t| t.agent.clone())
            });
            let Some(agent) = agent else { return };
            (agent, *duration_ms, false)
        }
        _ => return,
    };
    state.breakers.metrics.entry(agent).or_default().record(ok, duration_ms);
}

/// The task of the envelope's run.
fn shown_task<'s>(state: &'s State, envelope: &Envelope, task: &TaskId) -> Option<&'s TaskModel> {
    state.run_of(envelope.run_id.as_ref())?.task(task)
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
            shown_task(state, envelope, task).and_then(|t| t.first_started_ms)
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
fn close_stream(state: &mut State, run: Option<RunId>, task: &TaskId) {
    let audit = &mut state.audit;
    let Some((line, tally)) = audit.streams.remove(&(run, task.clone())) else { return };
    if let Some(kept) = audit.line_mut(line) {
        kept.text = panes::audit::stream_text(task, &tally, false);
    }
}

/// Add a line at the tail; returns its stream position.
fn append_audit(state: &mut State, mut entry: AuditEntry) -> u64 {
    let audit = &mut state.audit;
    let visible = audit.filter.is_empty() || matches_filter(&audit.filter, &entry.text);
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
