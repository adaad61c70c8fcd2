//! The conflict prompt: a panel's verdicts side by side (one column per member: decision,
//! confidence, rationale, evidence, alternatives), the ladder's findings and the
//! recommendation marked ★. Narrow screens stack the verdicts. Focus starts on "Later".

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};
use unicode_width::UnicodeWidthStr;

use super::{fit, one_line, overlay_block, put_line};
use crate::conflict::MemberVerdict;
use crate::console::layout::centered;
use crate::console::state::{PendingConflict, Prompt, State};
use crate::console::theme::{Role, Theme};

/// Below this the prompt says the terminal is too small instead of hiding choices.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;
/// Narrower columns than this stack the verdicts.
const MIN_COLUMN: u16 = 40;

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let Some(Prompt::Conflict { key, choice, own, .. }) = &state.prompt else { return };
    let Some(conflict) = state.conflicts.get(key) else { return };
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let popup = centered(area, area.width, 3.min(area.height));
        Clear.render(popup, buf);
        let text =
            format!("conflict in {}: enlarge to {MIN_WIDTH}x{MIN_HEIGHT} to decide", conflict.task);
        put_line(
            buf,
            popup,
            0,
            &Line::styled(fit(&text, usize::from(popup.width)), theme.style(Role::Warn)),
        );
        return;
    }
    let width = area.width.saturating_sub(2).min(150);
    let height = needed_height(conflict, width.saturating_sub(2), theme, own.is_some());
    let popup = centered(area, width, height.min(area.height.saturating_sub(2)));
    let hint = format!("{} verdicts · Esc later", conflict.verdicts.len());
    let block = overlay_block(theme, "Conflict: a person decides", &hint);
    let inner = block.inner(popup);
    Clear.render(popup, buf);
    block.render(popup, buf);
    let width = usize::from(inner.width);

    let mut top = vec![
        Line::from(vec![
            Span::styled(" task ", theme.style(Role::Muted)),
            Span::styled(
                fit(&one_line(conflict.task.as_str()), width / 2),
                theme.style(Role::Title),
            ),
            Span::styled(
                conflict.run.as_ref().map(|r| format!("  run {r}")).unwrap_or_default(),
                theme.style(Role::Muted),
            ),
        ]),
        Line::from(Span::styled(
            fit(&format!(" {}", one_line(&conflict.question)), width),
            theme.style(Role::Text),
        )),
    ];
    top.push(Line::raw(""));
    let mut bottom = ladder_lines(conflict, theme, width, *choice);
    if let Some(text) = own {
        let line = Line::styled(
            fit(
                &format!(" ✎ your decision: {}▌  (Enter settles, Esc goes back)", one_line(text)),
                width,
            ),
            theme.style(Role::Accent).add_modifier(Modifier::BOLD),
        );
        let at = bottom.len().saturating_sub(2);
        bottom.insert(at, line);
    }
    let columns_height =
        inner.height.saturating_sub(u16::try_from(top.len() + bottom.len()).unwrap_or(u16::MAX));
    for (row, line) in top.iter().enumerate() {
        put_line(buf, inner, row, line);
    }
    let body = Rect {
        x: inner.x,
        y: inner.y + u16::try_from(top.len()).unwrap_or(0),
        width: inner.width,
        height: columns_height,
    };
    let recommended = conflict.recommended();
    let count = u16::try_from(conflict.verdicts.len().max(1)).unwrap_or(1);
    if inner.width / count >= MIN_COLUMN {
        let column_width = inner.width / count;
        for (i, verdict) in conflict.verdicts.iter().enumerate() {
            let column = Rect {
                x: body.x + column_width * u16::try_from(i).unwrap_or(0),
                width: column_width.saturating_sub(1),
                ..body
            };
            let lines = column_lines(
                i,
                verdict,
                recommended == Some(i),
                *choice == Some(i),
                theme,
                usize::from(column.width),
            );
            for (row, line) in lines.iter().enumerate() {
                put_line(buf, column, row, line);
            }
        }
    } else {
        let mut row = 0;
        for (i, verdict) in conflict.verdicts.iter().enumerate() {
            for line in stacked_lines(
                i,
                verdict,
                recommended == Some(i),
                *choice == Some(i),
                theme,
                usize::from(body.width),
            ) {
                put_line(buf, body, row, &line);
                row += 1;
            }
        }
    }
    let start = usize::from(inner.height).saturating_sub(bottom.len());
    for (k, line) in bottom.iter().enumerate() {
        put_line(buf, inner, start + k, line);
    }
}

/// Rows the prompt needs at this inner width: the header, the tallest column (or the
/// stacked verdicts), the ladder and the buttons, plus the border.
fn needed_height(
    conflict: &PendingConflict,
    inner_width: u16,
    theme: &Theme,
    writing: bool,
) -> u16 {
    let count = u16::try_from(conflict.verdicts.len().max(1)).unwrap_or(1);
    let body = if inner_width / count >= MIN_COLUMN {
        let column = usize::from((inner_width / count).saturating_sub(1));
        conflict
            .verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| column_lines(i, v, false, false, theme, column).len())
            .max()
            .unwrap_or(0)
    } else {
        3 * conflict.verdicts.len()
    };
    let ladder = ladder_lines(conflict, theme, usize::from(inner_width), None).len();
    u16::try_from(3 + body + 1 + ladder + 2 + usize::from(writing)).unwrap_or(u16::MAX)
}

fn header<'a>(
    i: usize,
    verdict: &MemberVerdict,
    recommended: bool,
    focused: bool,
    theme: &Theme,
    width: usize,
) -> Line<'a> {
    let star = if recommended { " ★" } else { "" };
    let text = fit(&format!("{} {} ({}){star}", i + 1, verdict.agent, verdict.domain), width);
    let style = theme.style(if recommended { Role::Accent } else { Role::Title });
    let style =
        if focused { style.add_modifier(Modifier::REVERSED | Modifier::BOLD) } else { style };
    let marker = if focused { "▸" } else { " " };
    Line::from(vec![Span::raw(marker), Span::styled(text, style)])
}

fn column_lines<'a>(
    i: usize,
    verdict: &MemberVerdict,
    recommended: bool,
    focused: bool,
    theme: &Theme,
    width: usize,
) -> Vec<Line<'a>> {
    let v = &verdict.verdict;
    let text = |s: String, role: Role| Line::from(Span::styled(s, theme.style(role)));
    let mut lines = vec![
        header(i, verdict, recommended, focused, theme, width.saturating_sub(1)),
        Line::from(Span::styled(
            fit(&format!(" ▶ {}", one_line(&v.decision)), width),
            theme.style(Role::Text).add_modifier(Modifier::BOLD),
        )),
        text(format!(" confidence {:.2}", v.confidence), Role::Muted),
    ];
    for (k, piece) in wrap(&one_line(&v.rationale), width.saturating_sub(5)).into_iter().enumerate()
    {
        let head = if k == 0 { " why " } else { "     " };
        lines.push(text(format!("{head}{piece}"), Role::Text));
    }
    for evidence in &v.evidence {
        lines.push(text(fit(&format!(" ◆ {}", one_line(evidence)), width), Role::Text));
    }
    for alternative in &v.alternatives {
        lines.push(text(fit(&format!(" ✗ {}", one_line(alternative)), width), Role::Muted));
    }
    lines
}

fn stacked_lines<'a>(
    i: usize,
    verdict: &MemberVerdict,
    recommended: bool,
    focused: bool,
    theme: &Theme,
    width: usize,
) -> Vec<Line<'a>> {
    let v = &verdict.verdict;
    let mut head = header(i, verdict, recommended, focused, theme, width / 2);
    head.spans.push(Span::styled(
        fit(
            &format!(" ▶ {} ({:.2})", one_line(&v.decision), v.confidence),
            width.saturating_sub(head.width()),
        ),
        theme.style(Role::Text).add_modifier(Modifier::BOLD),
    ));
    let evidence =
        if v.evidence.is_empty() { "none given".to_owned() } else { v.evidence.join("; ") };
    vec![
        head,
        Line::styled(
            fit(&format!("   why {}", one_line(&v.rationale)), width),
            theme.style(Role::Text),
        ),
        Line::styled(
            fit(&format!("   ◆ {}", one_line(&evidence)), width),
            theme.style(Role::Muted),
        ),
    ]
}

/// The ladder's findings, the recommendation and the buttons, bottom-up fixed.
fn ladder_lines<'a>(
    conflict: &PendingConflict,
    theme: &Theme,
    width: usize,
    choice: Option<usize>,
) -> Vec<Line<'a>> {
    let mut lines = vec![Line::styled(" ladder", theme.style(Role::Muted))];
    for (step, finding, winner) in &conflict.steps {
        let mark = if winner.is_some() { "✓" } else { "·" };
        lines.push(Line::styled(
            fit(&format!("  {mark} {step}: {}", one_line(finding)), width),
            theme.style(Role::Text),
        ));
    }
    if let Some(recommendation) = &conflict.recommendation {
        let from =
            recommendation.from.map_or_else(|| "no step decided".to_owned(), |s| format!("by {s}"));
        lines.push(Line::styled(
            fit(
                &format!(
                    " ★ recommended: \"{}\" ({}, {from})",
                    one_line(&recommendation.decision),
                    recommendation.winner
                ),
                width,
            ),
            theme.style(Role::Accent),
        ));
    }
    let mut buttons = vec![Span::raw(" ")];
    for (i, verdict) in conflict.verdicts.iter().enumerate() {
        buttons.push(button(
            &format!("{} {}", i + 1, verdict.agent),
            choice == Some(i),
            Role::Danger,
            theme,
        ));
        buttons.push(Span::raw(" "));
    }
    buttons.push(button("Later Esc", choice.is_none(), Role::Text, theme));
    let mut row = Line::from(buttons);
    if row.width() > width {
        // Too many to show by name: numbers only.
        let mut short = vec![Span::raw(" ")];
        for i in 0..conflict.verdicts.len() {
            short.push(button(&(i + 1).to_string(), choice == Some(i), Role::Danger, theme));
        }
        short.push(button("Later", choice.is_none(), Role::Text, theme));
        row = Line::from(short);
    }
    lines.push(Line::raw(""));
    lines.push(row);
    lines
}

fn button<'a>(label: &str, focused: bool, role: Role, theme: &Theme) -> Span<'a> {
    let text = if focused { format!("▸[ {label} ]◂") } else { format!(" [ {label} ] ") };
    let style = theme.style(role);
    Span::styled(
        text,
        if focused { style.add_modifier(Modifier::REVERSED | Modifier::BOLD) } else { style },
    )
}

/// Words into lines of at most `width` columns (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let needed = if line.is_empty() { word.width() } else { line.width() + 1 + word.width() };
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&fit(word, width));
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use insta::assert_snapshot;

    use super::*;
    use crate::conflict::{DecideMode, Domain, LadderStep, Recommendation, Verdict};
    use crate::console::keys::Action;
    use crate::console::panes::testing::{self, Fixture};
    use crate::console::reducer::{Input, reduce};
    use crate::console::state::PaneId;
    use crate::event::{Envelope, Event};
    use crate::ids::{AgentId, TaskId};

    fn member(agent: &str, domain: Domain, decision: &str, evidence: &[&str]) -> MemberVerdict {
        MemberVerdict {
            agent: AgentId::new(agent),
            domain,
            domain_from: "category".into(),
            verdict: Verdict {
                decision: decision.into(),
                rationale: format!(
                    "{agent} weighed both and prefers {decision} for the notes list"
                ),
                alternatives: vec!["the other one: more work".into()],
                tradeoffs: vec!["one more query".into()],
                evidence: evidence.iter().map(|e| (*e).to_owned()).collect(),
                confidence: 0.7,
            },
        }
    }

    /// A console that saw a conflict of task `pick` reach the operator step.
    fn with_conflict(width: u16, height: u16) -> State {
        let mut state = testing::state_sized(Fixture::Busy, PaneId::Dag, width, height);
        let run = Some(testing::run_id());
        let task = TaskId::new("pick");
        let mut seq = 10_000;
        let mut feed = |state: &mut State, event: Event| {
            seq += 1;
            let envelope = Envelope { seq, ts_ms: state.now_ms + 1, run_id: run.clone(), event };
            reduce(state, Input::Event(Arc::new(envelope)));
        };
        feed(
            &mut state,
            Event::ConflictDetected {
                task: task.clone(),
                question: "Choose how the notes list pages through results".into(),
                options: vec!["cursor-based pages".into(), "numbered pages".into()],
                domain: None,
                decide: DecideMode::Auto,
                verdicts: vec![
                    member(
                        "backend-developer",
                        Domain::Implementation,
                        "numbered pages",
                        &["src/notes/list.rs:42"],
                    ),
                    member("frontend-developer", Domain::Implementation, "cursor-based pages", &[]),
                ],
                failed: Vec::new(),
            },
        );
        feed(
            &mut state,
            Event::ConflictStep {
                task: task.clone(),
                step: LadderStep::DomainPriority,
                finding: "both are implementation: not decided".into(),
                winner: None,
                decision: None,
                recommendation: None,
            },
        );
        feed(
            &mut state,
            Event::ConflictStep {
                task,
                step: LadderStep::Operator,
                finding: "a person decides".into(),
                winner: None,
                decision: None,
                recommendation: Some(Recommendation {
                    decision: "numbered pages".into(),
                    winner: AgentId::new("backend-developer"),
                    from: None,
                }),
            },
        );
        state
    }

    #[test]
    fn snapshots() {
        let theme = testing::theme();
        for (width, height) in [(160, 45), (80, 24), (36, 10)] {
            let state = with_conflict(width, height);
            assert!(
                matches!(state.prompt, Some(Prompt::Conflict { choice: None, .. })),
                "{width}x{height}"
            );
            assert_snapshot!(
                format!("conflict_prompt_{width}x{height}"),
                testing::render_screen(&state, &theme, width, height)
            );
        }
    }

    #[test]
    fn keys_choose_a_verdict_and_enter_asks_first() {
        let mut state = with_conflict(160, 45);
        // A prompt that popped up by itself ignores choosing at first.
        reduce(&mut state, Input::Action(Action::PickVerdict(2)));
        assert!(matches!(state.prompt, Some(Prompt::Conflict { choice: None, .. })));
        state.now_ms += 1_000;
        reduce(&mut state, Input::Action(Action::PickVerdict(2)));
        assert!(matches!(state.prompt, Some(Prompt::Conflict { choice: Some(1), .. })));
        let sent = reduce(&mut state, Input::Action(Action::PromptConfirm));
        assert!(sent.is_empty(), "nothing is sent before the confirmation");
        let Some(Prompt::Confirm { question, .. }) = &state.prompt else {
            panic!("{:?}", state.prompt)
        };
        assert!(question.contains("frontend-developer's \"cursor-based pages\""), "{question}");
        let sent = reduce(&mut state, Input::Action(Action::ConfirmYes));
        assert!(
            matches!(
                sent.as_slice(),
                [crate::command::Command::ResolveConflict {
                    choice: crate::command::ConflictChoice::Verdict(2),
                    ..
                }]
            ),
            "{sent:?}"
        );
    }

    #[test]
    fn e_writes_an_own_decision_that_asks_first() {
        let mut state = with_conflict(160, 45);
        state.now_ms += 1_000;
        reduce(&mut state, Input::Action(Action::OwnStart));
        for c in "both, behind a flag".chars() {
            reduce(&mut state, Input::Action(Action::OwnPush(c)));
        }
        let theme = testing::theme();
        let shown = testing::render_screen(&state, &theme, 160, 45).to_string();
        assert!(shown.contains("✎ your decision: both, behind a flag▌"), "{shown}");
        assert!(reduce(&mut state, Input::Action(Action::OwnAccept)).is_empty());
        let Some(Prompt::Confirm { question, .. }) = &state.prompt else {
            panic!("{:?}", state.prompt)
        };
        assert!(question.contains("your own decision \"both, behind a flag\""), "{question}");
        let sent = reduce(&mut state, Input::Action(Action::ConfirmYes));
        assert!(
            matches!(
                sent.as_slice(),
                [crate::command::Command::ResolveConflict { choice: crate::command::ConflictChoice::Own(text), .. }]
                    if text == "both, behind a flag"
            ),
            "{sent:?}"
        );
    }

    #[test]
    fn the_command_line_asks_the_same_confirmation() {
        let mut state = with_conflict(160, 45);
        reduce(&mut state, Input::Action(Action::Later));
        assert!(state.prompt.is_none());
        reduce(&mut state, Input::Action(Action::OpenCommandLine));
        for c in "resolve pick 1 fewest queries".chars() {
            reduce(
                &mut state,
                Input::Action(Action::CommandLineInput(ratatui_textarea::Input {
                    key: ratatui_textarea::Key::Char(c),
                    ..Default::default()
                })),
            );
        }
        let sent = reduce(&mut state, Input::Action(Action::SubmitCommandLine));
        assert!(sent.is_empty());
        let Some(Prompt::Confirm { question, command, .. }) = &state.prompt else {
            panic!("{:?}", state.prompt)
        };
        assert!(question.contains("backend-developer's \"numbered pages\""), "{question}");
        assert!(
            matches!(command, crate::command::Command::ResolveConflict { note: Some(n), .. } if n == "fewest queries")
        );
    }
}
