//! The Audit pane: every meaningful event as one readable line, newest last. It follows the
//! tail unless the operator scrolls up. Lines are formatted once on arrival; drawing touches
//! only the rows that fit.
//!
//! Streamed output is not a line per token: each attempt's output gets one line that counts
//! what streamed ("▸ design-api streaming… (326 tokens)"), updated in place, so task and
//! breaker events stay in view. The text itself is in the task's details (DAG pane). Tool
//! calls are meaningful and keep a line each.

use std::sync::Arc;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::dag::risk_word;
use super::{Details, Pane, clock, duration, fit, one_line, pane_block, put_line, style_row};
use crate::console::state::{AuditEntry, PaneId, State, StreamTally};
use crate::console::theme::{Role, Theme};
use crate::event::{Envelope, Event, Level, OutputStream, RunStatus, WorkspaceKind};
use crate::ids::TaskId;
use crate::words::plural;

pub struct AuditPane;

/// Longest audit line kept; the details overlay shows the whole event.
const LINE_MAX_CHARS: usize = 400;

/// The audit line of an event. `first_started_ms` is when the event's task first started (this
/// round), so a finished task's line says how long the whole task took.
pub fn entry(envelope: &Arc<Envelope>, first_started_ms: Option<u64>) -> AuditEntry {
    let whole_ms = first_started_ms.map(|first| envelope.ts_ms.saturating_sub(first));
    let (role, text) = describe(&envelope.event, whole_ms);
    line_entry(envelope, role, &text)
}

/// The one line of an attempt's streamed output, as of `envelope`.
pub fn stream_entry(envelope: &Arc<Envelope>, task: &TaskId, tally: &StreamTally) -> AuditEntry {
    line_entry(envelope, Role::Muted, &stream_text(task, tally, true))
}

/// `▸ design-api streaming… (326 tokens, 12 reasoning)` while it streams, `streamed …` after.
pub fn stream_text(task: &TaskId, tally: &StreamTally, open: bool) -> String {
    let counts = [
        (tally.tokens, "token", "tokens"),
        (tally.reasoning, "reasoning chunk", "reasoning chunks"),
        (tally.stdout_lines, "line", "lines"),
        (tally.stderr_lines, "stderr line", "stderr lines"),
        (tally.tool_results, "tool result", "tool results"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    if open {
        format!("▸ {task} streaming… ({})", parts.join(", "))
    } else {
        format!("▸ {task} streamed {}", parts.join(", "))
    }
}

/// The line an attached console adds for a host's digest: what it condensed.
pub fn condensed_entry(envelope: &Arc<Envelope>, text: &str) -> AuditEntry {
    line_entry(envelope, Role::Muted, text)
}

fn line_entry(envelope: &Arc<Envelope>, role: Role, text: &str) -> AuditEntry {
    let mut text = one_line(text);
    if text.len() > LINE_MAX_CHARS {
        text = text.chars().take(LINE_MAX_CHARS).collect();
    }
    AuditEntry {
        line: 0,
        seq: envelope.seq,
        ts_ms: envelope.ts_ms,
        role,
        text,
        envelope: Arc::clone(envelope),
    }
}

fn describe(event: &Event, whole_ms: Option<u64>) -> (Role, String) {
    // "took": the whole task, and the last attempt alone when they differ.
    let took = |attempt: u32, attempt_ms: u64| match whole_ms.map(duration) {
        Some(whole) if attempt > 1 && whole != duration(attempt_ms) => {
            format!("{whole} (attempt {attempt} took {})", duration(attempt_ms))
        }
        _ => format!("{} (attempt {attempt})", duration(attempt_ms)),
    };
    match event {
        Event::AgentAdded(s) => (
            Role::Text,
            format!("+ agent {} loaded (tier {}, {})", s.agent, s.tier, s.file.display()),
        ),
        Event::AgentUpdated(s) => {
            (Role::Accent, format!("~ agent {} reloaded from {}", s.agent, s.file.display()))
        }
        Event::AgentRemoved { agent, file } => {
            (Role::Muted, format!("- agent {agent} removed ({})", file.display()))
        }
        Event::AgentInvalid { file, error, .. } => {
            (Role::Error, format!("✗ {} is invalid: {error}", file.display()))
        }
        Event::AgentFileCleared { file } => {
            (Role::Muted, format!("- {} is gone; its error no longer applies", file.display()))
        }
        Event::InstanceReserved { instance, agent } => {
            (Role::Pending, format!("◔ {instance} reserved for {agent}"))
        }
        Event::InstanceWorking { instance, agent, task } => (
            Role::Running,
            match task {
                Some(task) => format!("▶ {instance} {agent} working on {task}"),
                None => format!("▶ {instance} {agent} working"),
            },
        ),
        Event::InstanceIdle { instance, agent } => {
            (Role::Muted, format!("○ {instance} {agent} idle"))
        }
        Event::InstanceTerminated { instance, agent, reason } => {
            (Role::Muted, format!("✕ {instance} {agent} terminated: {reason}"))
        }
        Event::InstanceQueued { agent, waiting } => {
            (Role::Warn, format!("⧗ {waiting} waiting for {agent}"))
        }
        Event::RunStarted { workflow, tasks, max_parallel, simulated, .. } => {
            let layers = tasks.iter().map(|t| t.layer + 1).max().unwrap_or(0);
            let sim = if *simulated { " · SIMULATED" } else { "" };
            (
                Role::Accent,
                format!(
                    "run {workflow} started: {} tasks in {layers} layers, {max_parallel} at a time{sim}",
                    tasks.len()
                ),
            )
        }
        Event::TaskReady { task } => (Role::Pending, format!("◔ {task} ready")),
        Event::TaskAwaitingApproval { task, risk, .. } => {
            (Role::Warn, format!("⏸ {task} awaits approval (risk {})", risk_word(*risk)))
        }
        Event::TaskStarted { task, agent, attempt, instance, backend, simulated } => {
            // The `sim` backend is simulated by name; other backends say so when they are.
            let sim = if *simulated && backend != "sim" { ", simulated" } else { "" };
            (
                Role::Running,
                format!(
                    "▶ {task} started on {agent} {instance} (attempt {attempt} on {backend}{sim})"
                ),
            )
        }
        Event::TaskOutput { task, stream: OutputStream::ToolCall, text } => {
            (Role::Text, format!("⚒ {task} calls {}", text.trim_end()))
        }
        Event::TaskOutput { task, stream, text } => {
            let tag = match stream {
                OutputStream::Stdout => "out",
                OutputStream::Stderr => "err",
                OutputStream::Tokens => "tok",
                OutputStream::Reasoning => "think",
                OutputStream::ToolCall => "tool",
                OutputStream::ToolResult => "result",
            };
            (Role::Muted, format!("│ {task} {tag}: {}", text.trim_end()))
        }
        Event::TaskRetrying { task, attempt, delay_ms, duration_ms, error, .. } => (
            Role::Warn,
            format!(
                "↻ {task} attempt {attempt} failed after {}: {error}; retrying in {}",
                duration(*duration_ms),
                duration(*delay_ms)
            ),
        ),
        Event::TaskFallback { task, from, to, reason } => {
            (Role::Warn, format!("⤳ {task} falls back from {from} to {to}: {reason}"))
        }
        Event::TaskSucceeded { task, agent, attempt, duration_ms, details, .. } => {
            let text = format!("✓ {task} succeeded on {agent} in {}", took(*attempt, *duration_ms));
            match details.summary() {
                // A cut-off answer is worth a second look before its dependents use it.
                Some(summary) if details.truncated => (Role::Warn, format!("{text} · {summary}")),
                Some(summary) => (Role::Ok, format!("{text} · {summary}")),
                None => (Role::Ok, text),
            }
        }
        Event::TaskFailed { task, attempt, duration_ms, error, .. } => (
            Role::Error,
            format!("✗ {task} failed after {}: {error}", took(*attempt, *duration_ms)),
        ),
        Event::TaskSkipped { task, reason } => (Role::Muted, format!("⊘ {task} skipped: {reason}")),
        Event::TaskCancelled { task, reason } => {
            (Role::Warn, format!("■ {task} cancelled: {reason}"))
        }
        Event::WorkspaceCreated { task, kind, path, branch, base_from, .. } => {
            let text = match (kind, branch) {
                (WorkspaceKind::Worktree, Some(branch)) => {
                    let from =
                        base_from.as_deref().map(|b| format!(" from {b}")).unwrap_or_default();
                    format!("⎇ {task} works on branch {branch}{from} in {}", path.display())
                }
                _ => format!("⎇ {task} works in a fresh folder {}", path.display()),
            };
            (Role::Accent, text)
        }
        Event::WorkspaceChanges { task, attempt, files, summary, .. } => {
            let text = if files.is_empty() {
                format!("± {task} changed no files (attempt {attempt})")
            } else {
                format!("± {task} attempt {attempt}: {summary}")
            };
            (Role::Text, text)
        }
        Event::RunFinished { status, succeeded, failed, skipped, cancelled, duration_ms } => {
            let role = match status {
                RunStatus::Succeeded => Role::Ok,
                RunStatus::Failed => Role::Error,
                RunStatus::Cancelled => Role::Warn,
            };
            (
                role,
                format!(
                    "run {status:?}: ✓{succeeded} ✗{failed} ⊘{skipped} ■{cancelled} in {}",
                    duration(*duration_ms)
                )
                .to_lowercase(),
            )
        }
        Event::ApprovalRequested { task, agent, risk, reasons } => (
            Role::Warn,
            format!(
                "? approval requested: {task} on {agent}, risk {}: {}",
                risk_word(*risk),
                reasons.join("; ")
            ),
        ),
        Event::ApprovalDecided { task, approved, by, note } => {
            let note = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
            if *approved {
                (Role::Ok, format!("✓ {task} approved by {by}{note}"))
            } else {
                (Role::Error, format!("✗ {task} rejected by {by}{note}"))
            }
        }
        Event::BreakerOpened { agent, failures, threshold, recovery_ms, last_error } => (
            Role::Error,
            format!(
                "○ breaker {agent} OPEN after {failures}/{threshold} failures, half-open in {}: {last_error}",
                duration(*recovery_ms)
            ),
        ),
        Event::BreakerHalfOpened { agent, probes } => {
            (Role::Warn, format!("◐ breaker {agent} half-open: {probes} probe calls"))
        }
        Event::BreakerClosed { agent, reason } => {
            (Role::Ok, format!("● breaker {agent} closed: {reason}"))
        }
        Event::CommandAccepted { user, role, command } => {
            (Role::Muted, format!("gate ✓ {user} ({role}) {command}"))
        }
        Event::CommandDenied { user, role, command, reason } => {
            (Role::Error, format!("gate ✗ {user} ({role}) {command}: {reason}"))
        }
        Event::ApprovalGiven { task, by, count, needed } => {
            (Role::Warn, format!("✓ {task} approved by {by}: {count} of {needed}"))
        }
        Event::ApprovalTerms { task, requested_by, deadline_ms, needed } => (
            Role::Muted,
            format!(
                "  {task}: {} needed{}{}",
                plural(*needed, "approver"),
                requested_by
                    .as_ref()
                    .map(|by| format!(", run started by {by}"))
                    .unwrap_or_default(),
                deadline_ms
                    .map(|at| format!(", deadline {} UTC", super::clock(at)))
                    .unwrap_or_default(),
            ),
        ),
        Event::ApprovalOverdue { task, waited_ms } => (
            Role::Error,
            format!(
                "⏰ {task} approval overdue (waited {}); reviewers told again",
                duration(*waited_ms)
            ),
        ),
        Event::Notice { level, message } => match level {
            Level::Info => (Role::Text, format!("i {message}")),
            Level::Warn => (Role::Warn, format!("⚠ {message}")),
            Level::Error => (Role::Error, format!("✗ {message}")),
        },
        Event::SafetyRuleMatched {
            task,
            policy,
            rule,
            action,
            enforcement,
            source,
            excerpt,
            ..
        } => {
            let (role, what) = match (enforcement, action) {
                (crate::safety::Enforcement::Strict, crate::safety::SafetyAction::Block) => {
                    (Role::Error, "blocked")
                }
                (crate::safety::Enforcement::Strict, crate::safety::SafetyAction::Confirm) => {
                    (Role::Warn, "held for approval")
                }
                _ => (Role::Warn, "warning"),
            };
            (role, format!("⚠ {task}: safety rule {policy}/{rule} ({what}) in {source}: {excerpt}"))
        }
        Event::RateLimited { task, backend, limit, wait_ms, .. } => (
            Role::Pending,
            format!("⧗ {task} waiting on rate limit: {backend} {limit}, {}", duration(*wait_ms)),
        ),
        Event::TaskSpent { task, attempt, tokens, cost_usd } => (
            Role::Muted,
            match cost_usd {
                Some(cost) => {
                    format!("$ {task} attempt {attempt} spent {tokens} tokens, ${cost:.4}")
                }
                None => format!("$ {task} attempt {attempt} spent {tokens} tokens"),
            },
        ),
        Event::BudgetWarning { task, scope, measure, spent, limit } => (
            Role::Warn,
            format!(
                "⚠ {task}: {} budget at {:.0}%: {} of {}",
                scope.word(),
                spent / limit * 100.0,
                measure.amount(*spent),
                measure.amount(*limit)
            ),
        ),
        Event::BudgetExceeded { task, scope, measure, spent, limit } => (
            Role::Error,
            format!(
                "✗ {task}: {} budget reached: {} of {}",
                scope.word(),
                measure.amount(*spent),
                measure.amount(*limit)
            ),
        ),
        Event::PanelVerdict { task, agent, verdict, error, .. } => match (verdict, error) {
            (Some(verdict), _) => (
                Role::Text,
                format!(
                    "⚖ {task} {agent} votes \"{}\" ({:.0}% sure)",
                    verdict.decision,
                    verdict.confidence * 100.0
                ),
            ),
            (None, error) => (
                Role::Warn,
                format!("⚖ {task} {agent} gave no verdict: {}", error.as_deref().unwrap_or("?")),
            ),
        },
        Event::PanelAgreed { task, decision, agents } => {
            (Role::Ok, format!("⚖ {task} panel agreed ({}): {decision}", agents.len()))
        }
        Event::ConflictDetected { task, verdicts, .. } => {
            let sides: Vec<String> = verdicts
                .iter()
                .map(|v| format!("{} \"{}\"", v.agent, v.verdict.decision))
                .collect();
            (Role::Warn, format!("⚔ {task} conflict: {}", sides.join(" vs ")))
        }
        Event::ConflictStep { task, step, finding, winner, .. } => match winner {
            Some(winner) => (Role::Accent, format!("⚔ {task} {step}: {winner} wins · {finding}")),
            None => (Role::Muted, format!("⚔ {task} {step}: {finding}")),
        },
        Event::ConflictResolved { task, decision, winner, resolved_by, by, note } => {
            let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            let note = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
            (
                Role::Ok,
                format!(
                    "✓ {task} conflict resolved ({resolved_by}{by}): \"{decision}\" ({winner}){note}"
                ),
            )
        }
        Event::RunResumed { .. } => {
            (Role::Accent, crate::resume::describe(event).unwrap_or_default())
        }
        Event::AttemptInterrupted { .. } => {
            (Role::Warn, crate::resume::describe(event).unwrap_or_default())
        }
    }
}

impl Pane for AuditPane {
    fn id(&self) -> PaneId {
        PaneId::Audit
    }

    fn visible_rows(&self, _state: &State, area: Rect) -> usize {
        usize::from(area.height.saturating_sub(2))
    }

    fn render(&self, state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let audit = &state.audit;
        let info = if audit.is_following() {
            format!("{} lines · following · UTC", audit.entries.len())
        } else {
            format!("{} lines · ↑{} · f to follow · UTC", audit.entries.len(), audit.scroll)
        };
        let block = pane_block(state, theme, PaneId::Audit, area, Some(info));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.is_empty() {
            return;
        }
        let rows = usize::from(inner.height);
        let width = usize::from(inner.width);
        if audit.entries.is_empty() {
            put_line(buf, inner, 0, &Line::styled("  no events yet", theme.style(Role::Muted)));
            return;
        }
        let offset = super::scrolled_offset(audit.offset, audit.scroll, rows);
        let shown = audit.newest_matching(offset, rows);
        if shown.is_empty() {
            put_line(
                buf,
                inner,
                0,
                &Line::styled("  nothing matches the filter", theme.style(Role::Muted)),
            );
            return;
        }
        // Newest at the bottom: fill from the last row upwards.
        let highlight = state.focus == PaneId::Audit && !audit.is_following();
        for (i, index) in shown.iter().enumerate() {
            let Some(entry) = audit.entries.get(*index) else { continue };
            let row = rows - 1 - i;
            let is_selected = offset + i == audit.scroll;
            let marker = if is_selected && highlight { "▸" } else { " " };
            let line = Line::from(vec![
                Span::styled(marker, theme.style(Role::Accent)),
                Span::styled(format!("{} ", clock(entry.ts_ms)), theme.style(Role::Muted)),
                Span::styled(fit(&entry.text, width.saturating_sub(10)), theme.style(entry.role)),
            ]);
            put_line(buf, inner, row, &line);
            if is_selected && highlight {
                style_row(buf, inner, row, theme.style(Role::Selection));
            }
        }
    }

    fn details(&self, state: &State) -> Option<Details> {
        let entry = state.audit.selected()?;
        let json =
            serde_json::to_string_pretty(entry.envelope.as_ref()).unwrap_or_else(|e| e.to_string());
        let mut lines = vec![vec![(entry.role, entry.text.clone())], vec![]];
        lines.extend(json.lines().map(|l| vec![(Role::Text, one_line(l))]));
        Some(Details {
            title: format!("Event #{} {}", entry.seq, entry.envelope.event.kind()),
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::console::keys::Action;
    use crate::console::panes::testing::{self, Fixture, T0};
    use crate::console::reducer::{Input, reduce};
    use crate::ids::TaskId;

    #[test]
    fn a_truncated_answer_is_a_warning_line_saying_so() {
        let envelope = |details| {
            Arc::new(Envelope {
                seq: 1,
                ts_ms: T0,
                run_id: None,
                event: Event::TaskSucceeded {
                    task: TaskId::new("design-api"),
                    agent: crate::ids::AgentId::new("api-designer"),
                    attempt: 1,
                    duration_ms: 1200,
                    output: "half an answ".into(),
                    usage: None,
                    simulated: false,
                    details,
                },
            })
        };
        let cut = crate::event::AnswerDetails { truncated: true, ..Default::default() };
        let line = entry(&envelope(cut), None);
        assert_eq!(line.role, Role::Warn);
        assert!(line.text.ends_with("· answer truncated at the output limit"), "{}", line.text);
        let plain = entry(&envelope(crate::event::AnswerDetails::default()), None);
        assert_eq!(plain.role, Role::Ok);
        assert!(!plain.text.contains('·'), "{}", plain.text);
    }

    #[test]
    fn snapshots() {
        for (name, fixture) in
            [("empty", Fixture::Empty), ("busy", Fixture::Busy), ("failed", Fixture::Failed)]
        {
            let state = testing::state(fixture, PaneId::Audit);
            assert_snapshot!(
                format!("audit_{name}_120x40"),
                testing::render_pane(&state, PaneId::Audit, 120, 40)
            );
            assert_snapshot!(
                format!("audit_{name}_40x10"),
                testing::render_pane(&state, PaneId::Audit, 40, 10)
            );
        }
    }

    /// The busy fixture, then a model streaming hundreds of tokens for one task while a
    /// breaker opens and another task fails over.
    fn token_flood() -> State {
        let mut state = testing::state(Fixture::Busy, PaneId::Audit);
        let run = Some(testing::run_id());
        let mut seq = state.applied_seq;
        let mut feed = |state: &mut State, event: Event| {
            seq += 1;
            let envelope =
                Envelope { seq, ts_ms: T0 + 60_000 + seq * 10, run_id: run.clone(), event };
            reduce(state, Input::Event(Arc::new(envelope)));
        };
        let task = || TaskId::new("threat-model");
        for i in 0..326 {
            feed(
                &mut state,
                Event::TaskOutput {
                    task: task(),
                    stream: OutputStream::Tokens,
                    text: format!("w{i} "),
                },
            );
            if i == 40 {
                feed(
                    &mut state,
                    Event::TaskOutput {
                        task: task(),
                        stream: OutputStream::Reasoning,
                        text: "check STRIDE".into(),
                    },
                );
            }
            if i == 200 {
                feed(
                    &mut state,
                    Event::BreakerOpened {
                        agent: crate::ids::AgentId::new("code-reviewer"),
                        failures: 3,
                        threshold: 3,
                        recovery_ms: 60_000,
                        last_error: "HTTP 503".into(),
                    },
                );
                feed(
                    &mut state,
                    Event::TaskFallback {
                        task: TaskId::new("write-tests"),
                        from: crate::ids::AgentId::new("code-reviewer"),
                        to: crate::ids::AgentId::new("security-auditor"),
                        reason: "breaker open".into(),
                    },
                );
            }
        }
        state
    }

    #[test]
    fn a_token_heavy_run_keeps_task_and_breaker_events_in_view() {
        let state = token_flood();
        let roomy = testing::render_pane(&state, PaneId::Audit, 120, 40);
        let shown = roomy.to_string();
        assert!(
            shown.contains("threat-model streaming… (326 tokens, 1 reasoning chunk)"),
            "{shown}"
        );
        assert!(shown.contains("breaker code-reviewer OPEN"), "{shown}");
        assert!(shown.contains("write-tests falls back"), "{shown}");
        assert_snapshot!("audit_token_flood_120x40", roomy);
        assert_snapshot!(
            "audit_token_flood_40x10",
            testing::render_pane(&state, PaneId::Audit, 40, 10)
        );
    }

    fn push(state: &mut State, seq: u64) {
        let event = Event::TaskReady { task: TaskId::new(format!("t{seq}")) };
        let envelope = Envelope { seq, ts_ms: T0 + seq, run_id: None, event };
        reduce(state, Input::Event(Arc::new(envelope)));
    }

    #[test]
    fn follows_the_tail_until_scrolled_and_keeps_its_place() {
        let mut state = testing::state(Fixture::Empty, PaneId::Audit);
        for seq in 1..=50 {
            push(&mut state, seq);
        }
        let shown = testing::render_pane(&state, PaneId::Audit, 120, 40).to_string();
        assert!(shown.contains("t50 ready"), "{shown}");
        for _ in 0..20 {
            reduce(&mut state, Input::Action(Action::SelectPrev));
        }
        push(&mut state, 51);
        let shown = testing::render_pane(&state, PaneId::Audit, 120, 40).to_string();
        assert!(!shown.contains("t51 ready"), "scrolled view stays put: {shown}");
        assert!(shown.contains("▸22:13:20 ◔ t30 ready"), "{shown}");
        reduce(&mut state, Input::Action(Action::SelectLast));
        let shown = testing::render_pane(&state, PaneId::Audit, 120, 40).to_string();
        assert!(shown.contains("t51 ready"), "{shown}");
    }

    #[test]
    fn ring_buffer_is_bounded() {
        let mut state = testing::state(Fixture::Empty, PaneId::Audit);
        state.audit.capacity = 100;
        for seq in 1..=250 {
            push(&mut state, seq);
        }
        assert_eq!(state.audit.entries.len(), 100);
        assert_eq!(state.audit.entries.front().map(|e| e.seq), Some(151));
    }
}
