//! The prompt layer: an approval of a high-risk task, or a yes/no confirmation of a dangerous
//! key. Drawn above everything; focus starts on the choice that changes nothing.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};

use super::dag::risk_word;

use super::{fit, one_line, overlay_block, put_line, wrap_words};
use crate::console::layout::centered;
use crate::console::state::{ApprovalChoice, PendingApproval, Prompt, State};
use crate::console::theme::{Role, Theme};
use crate::event::Risk;
use crate::ids::UserId;

/// Width of the prompt's labels ("approvals").
const LABEL: usize = 9;

fn label(text: &str, theme: &Theme) -> Span<'static> {
    Span::styled(format!(" {text:<LABEL$} "), theme.style(Role::Muted))
}

/// The terms of an approval, one labelled line each: who started the run and how long the
/// task has waited, the deadline (counting down, or overdue once escalated) and, for a
/// two-person task, the approvals so far.
fn terms_lines(pending: &PendingApproval, now_ms: u64) -> Vec<(&'static str, String, Role)> {
    let starter = pending.requested_by.as_ref().map_or("unknown", UserId::as_str);
    let waited = now_ms.saturating_sub(pending.requested_ms);
    let mut lines =
        vec![("started", format!("by {starter} · waiting {}", span(waited)), Role::Text)];
    match pending.deadline_ms {
        _ if pending.overdue => {
            lines.push((
                "deadline",
                "OVERDUE (escalated: everyone was called again)".to_owned(),
                Role::Error,
            ));
        }
        Some(at) if at > now_ms => {
            lines.push(("deadline", format!("in {}", span(at - now_ms)), Role::Warn));
        }
        Some(_) => lines.push(("deadline", "passed: deciding now".to_owned(), Role::Error)),
        None => {}
    }
    if pending.needed > 1 {
        let given = pending.approved_by.len();
        let text = match pending.approved_by.first() {
            Some(first) => format!("{given} of {} — first by {first}", pending.needed),
            None => format!("0 of {}: two different people must approve", pending.needed),
        };
        lines.push(("approvals", text, Role::Warn));
    }
    lines
}

/// A duration in whole seconds, as a person reads it: `45s`, `2m 05s`, `1h 02m`.
fn span(ms: u64) -> String {
    let total = ms / 1000;
    match total {
        0..60 => format!("{total}s"),
        60..3600 => format!("{}m {:02}s", total / 60, total % 60),
        _ => format!("{}h {:02}m", total / 3600, total % 3600 / 60),
    }
}

fn button<'a>(label: &str, focused: bool, role: Role, theme: &Theme) -> Span<'a> {
    let text = if focused { format!("▸[ {label} ]◂") } else { format!(" [ {label} ] ") };
    let style = theme.style(role);
    Span::styled(
        text,
        if focused { style.add_modifier(Modifier::REVERSED | Modifier::BOLD) } else { style },
    )
}

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    match &state.prompt {
        Some(Prompt::Approval { run, task, choice, .. }) => {
            let Some(pending) = state.approvals.get(&(run.clone(), task.clone())) else { return };
            let more = state.approvals.len() - 1;
            let hint = if more > 0 {
                format!("{more} more pending · Esc later")
            } else {
                "Esc later".to_owned()
            };
            let terms = terms_lines(pending, state.now_ms);
            let reasons = pending.reasons.len().min(5);
            let height = u16::try_from(8 + reasons + terms.len()).unwrap_or(17);
            let popup = centered(area, area.width.saturating_sub(4).min(72), height);
            if popup.is_empty() {
                return;
            }
            let block = overlay_block(theme, "Approval needed", &hint);
            let inner = block.inner(popup);
            Clear.render(popup, buf);
            block.render(popup, buf);
            let width = usize::from(inner.width).saturating_sub(LABEL + 2);
            let risk_role = if pending.risk >= Risk::High { Role::Danger } else { Role::Warn };
            let mut lines = vec![
                Line::from(vec![
                    label("task", theme),
                    Span::styled(fit(&one_line(task.as_str()), width), theme.style(Role::Title)),
                ]),
                Line::from(vec![
                    label("agent", theme),
                    Span::styled(fit(pending.agent.as_str(), width), theme.style(Role::Text)),
                ]),
                Line::from(vec![
                    label("risk", theme),
                    Span::styled(format!("▲ {}", risk_word(pending.risk)), theme.style(risk_role)),
                ]),
            ];
            for (i, reason) in pending.reasons.iter().take(5).enumerate() {
                let head = if i == 0 { "why" } else { "" };
                lines.push(Line::from(vec![
                    label(head, theme),
                    Span::styled(
                        fit(&format!("• {}", one_line(reason)), width),
                        theme.style(Role::Text),
                    ),
                ]));
            }
            lines.extend(terms.into_iter().map(|(head, text, role)| {
                Line::from(vec![
                    label(head, theme),
                    Span::styled(fit(&text, width), theme.style(role)),
                ])
            }));
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::raw(" "),
                button("Approve a", *choice == ApprovalChoice::Approve, Role::Danger, theme),
                Span::raw(" "),
                button("Reject r", *choice == ApprovalChoice::Reject, Role::Error, theme),
                Span::raw(" "),
                button("Later Esc", *choice == ApprovalChoice::Later, Role::Text, theme),
            ]));
            for (row, line) in lines.iter().enumerate() {
                put_line(buf, inner, row, line);
            }
        }
        Some(Prompt::Confirm { question, confirm, .. }) => {
            // The question says what will happen (which runs a quit cancels, which verdicts
            // are overruled): wrapped, never cut, up to the lines the screen has.
            let width = area.width.saturating_sub(4).min(72);
            let text_width = usize::from(width.saturating_sub(4));
            let most = usize::from(area.height.saturating_sub(6)).max(1);
            let lines = wrap_words(&one_line(question), text_width, most);
            let height = u16::try_from(lines.len()).unwrap_or(1).saturating_add(5);
            let popup = centered(area, width, height);
            if popup.is_empty() {
                return;
            }
            let block = overlay_block(theme, "Confirm", "y yes · n no");
            let inner = block.inner(popup);
            Clear.render(popup, buf);
            block.render(popup, buf);
            for (row, text) in lines.iter().enumerate() {
                put_line(
                    buf,
                    inner,
                    row,
                    &Line::styled(format!(" {text}"), theme.style(Role::Text)),
                );
            }
            let buttons = Line::from(vec![
                Span::raw(" "),
                button("No", !*confirm, Role::Text, theme),
                Span::raw(" "),
                button("Yes", *confirm, Role::Danger, theme),
            ]);
            put_line(buf, inner, lines.len() + 1, &buttons);
        }
        Some(Prompt::Conflict { .. }) => super::conflict::render(state, theme, area, buf),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::console::keys::Action;
    use crate::console::panes::testing::{self, Fixture};
    use crate::console::reducer::{Input, reduce};
    use crate::console::state::PaneId;

    #[test]
    fn questions_wrap_between_words_and_are_never_cut_silently() {
        let question = "Quit? 1 live run (review) is cancelled, recorded in the audit log as \
                        cancelled by alice.";
        assert_eq!(
            wrap_words(question, 30, 5),
            [
                "Quit? 1 live run (review) is",
                "cancelled, recorded in the",
                "audit log as cancelled by",
                "alice."
            ]
        );
        let cut = wrap_words(question, 30, 2);
        assert_eq!(cut.len(), 2);
        assert!(cut[1].ends_with('…'), "{cut:?}");
        assert_eq!(wrap_words("", 30, 3), [""]);
    }

    #[test]
    fn snapshots() {
        let theme = testing::theme();
        let state = testing::state(Fixture::Prompt, PaneId::Dag);
        assert!(matches!(
            state.prompt,
            Some(Prompt::Approval { choice: ApprovalChoice::Later, .. })
        ));
        assert_snapshot!("approval_prompt_160x45", testing::render_screen(&state, &theme, 160, 45));
        assert_snapshot!("approval_prompt_120x40", testing::render_screen(&state, &theme, 120, 40));
        assert_snapshot!("approval_prompt_80x24", testing::render_screen(&state, &theme, 80, 24));
        assert_snapshot!("approval_prompt_60x16", testing::render_screen(&state, &theme, 60, 16));
        let mut confirm = testing::state(Fixture::Busy, PaneId::Dag);
        reduce(&mut confirm, Input::Action(Action::SelectRight));
        reduce(&mut confirm, Input::Action(Action::CancelSelectedTask));
        assert_snapshot!(
            "confirm_cancel_120x40",
            testing::render_screen(&confirm, &theme, 120, 40)
        );
    }

    #[test]
    fn focused_button_is_marked_without_colour() {
        let state = testing::state(Fixture::Prompt, PaneId::Dag);
        let theme = testing::theme().monochrome();
        let shown = testing::render_screen(&state, &theme, 120, 40).to_string();
        assert!(shown.contains("▸[ Later Esc ]◂"), "{shown}");
        assert!(shown.contains("▲ CRITICAL"), "{shown}");
    }

    /// The prompt's own terms: the starter, the wait, the countdown, "1 of 2 — first by".
    #[test]
    fn the_prompt_counts_down_names_the_starter_and_the_first_approver() {
        let theme = testing::theme().monochrome();
        let mut state = testing::state(Fixture::Prompt, PaneId::Dag);
        let shown = testing::render_screen(&state, &theme, 120, 40).to_string();
        for wanted in ["by bob · waiting 4s", "in 59m 56s", "1 of 2 — first by rita"] {
            assert!(shown.contains(wanted), "{wanted}: {shown}");
        }
        // A minute later the countdown moved on.
        let later = state.now_ms + 60_000;
        reduce(&mut state, Input::Tick(later));
        let shown = testing::render_screen(&state, &theme, 120, 40).to_string();
        assert!(shown.contains("in 58m 56s") && shown.contains("waiting 1m 04s"), "{shown}");
        // Escalated: overdue instead of a countdown.
        let (run, task) = state.approvals.keys().next().cloned().expect("a pending approval");
        let overdue = crate::event::Envelope {
            seq: 1_000,
            ts_ms: later,
            run_id: run,
            event: crate::event::Event::ApprovalOverdue { task, waited_ms: 3_600_000 },
        };
        reduce(&mut state, Input::Event(std::sync::Arc::new(overdue)));
        let shown = testing::render_screen(&state, &theme, 120, 40).to_string();
        assert!(shown.contains("OVERDUE (escalated"), "{shown}");
    }

    /// The countdown wakes the console once a second only while a prompt with a deadline
    /// is shown: without one, nothing in the prompt changes by itself.
    #[test]
    fn only_a_prompt_with_a_deadline_wakes_an_idle_console() {
        let mut state = testing::state(Fixture::Prompt, PaneId::Dag);
        // Nothing else on screen that moves with time: no run clock, no message, no
        // instance ages, no breaker countdowns. Only the prompt can ask for a wake.
        state.shown_run = None;
        state.message = None;
        state.pool.instances.clear();
        state.breakers.breakers.clear();
        let now = state.now_ms;
        let wake = state.next_deadline_ms().expect("the countdown wakes the console");
        assert!(wake > now && wake <= now + 1_000, "{wake} vs {now}");
        for pending in state.approvals.values_mut() {
            pending.deadline_ms = None;
        }
        assert_eq!(state.next_deadline_ms(), None, "no deadline: asleep");
    }
}
