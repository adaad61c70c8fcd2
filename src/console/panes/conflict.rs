//! The conflict prompt: a panel's verdicts side by side (one column per member: decision,
//! confidence, rationale, evidence, alternatives, trade-offs), each ladder step that ran and
//! what it found, and the recommendation marked ★. Narrow screens stack the verdicts. Focus
//! starts on "Later"; a settled conflict shows how it was settled and offers no choice.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};
use unicode_width::UnicodeWidthStr;

use super::{clock, fit, one_line, overlay_block, put_line, wrap_words};
use crate::conflict::MemberVerdict;
use crate::console::conflicts::DecisionEditor;
use crate::console::layout::centered;
use crate::console::state::{CommandLine, ConflictInput, Prompt, State};
use crate::console::theme::{Role, Theme};
use crate::model::ConflictModel;
use crate::words::plural;

/// Narrower columns than this stack the verdicts.
const MIN_COLUMN: u16 = 40;
/// Rows of one stacked verdict.
const STACKED_ROWS: usize = 4;
/// Most rows one ladder step's finding wraps to, where the screen has them.
const LADDER_STEP_ROWS: usize = 3;

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let Some(Prompt::Conflict { key, choice, input, .. }) = &state.prompt else { return };
    let Some(conflict) = state.conflict(key) else { return };
    let width = area.width.saturating_sub(2).min(150);
    let inner_width = width.saturating_sub(2);
    let columns = side_by_side(conflict, inner_width);
    let body_rows = if columns {
        let column = usize::from(column_width(conflict, inner_width).saturating_sub(1));
        conflict
            .verdicts
            .iter()
            .map(|v| column_lines(0, v, false, false, theme, column).len())
            .max()
            .unwrap_or(0)
    } else {
        STACKED_ROWS * conflict.verdicts.len()
    };
    let choosing = state.can_resolve() && conflict.is_open();
    // The ladder's findings wrap where the screen has the rows, else a line each; on a
    // screen too short for a line of every verdict, only the last step shows (the audit
    // pane has the others): a person must see every side before choosing one.
    let room = usize::from(area.height.saturating_sub(2));
    let lines = |step_rows, steps_shown| {
        let bottom = Bottom {
            width: usize::from(inner_width),
            step_rows,
            steps_shown,
            choice: *choice,
            choosing,
        };
        bottom_lines(conflict, theme, &bottom, input)
    };
    let fits = |bottom: &[Line<'_>], body: usize| 3 + body + 1 + bottom.len() + 2 <= room;
    let fewest_body_rows = if columns { body_rows } else { conflict.verdicts.len() };
    let mut bottom = lines(LADDER_STEP_ROWS, usize::MAX);
    if !fits(&bottom, body_rows) {
        bottom = lines(1, usize::MAX);
    }
    if !fits(&bottom, fewest_body_rows) {
        bottom = lines(1, 1);
    }
    let wanted = 3 + body_rows + 1 + bottom.len() + 2;
    let height = u16::try_from(wanted).unwrap_or(u16::MAX).min(area.height.saturating_sub(2));
    let popup = centered(area, width, height);
    if popup.is_empty() {
        return;
    }
    let waiting = state.conflicts.waiting.len();
    let hint = match waiting {
        0 | 1 => "D all conflicts · Esc later".to_owned(),
        n => format!("{} more waiting · D all conflicts · Esc later", n - 1),
    };
    let title = if conflict.is_open() { "Conflict: a person decides" } else { "Conflict" };
    let block = overlay_block(theme, title, &hint);
    let inner = block.inner(popup);
    Clear.render(popup, buf);
    block.render(popup, buf);
    let width = usize::from(inner.width);

    let top = [
        Line::from(vec![
            Span::styled(" task ", theme.style(Role::Muted)),
            Span::styled(fit(&one_line(key.1.as_str()), width / 2), theme.style(Role::Title)),
            Span::styled(
                fit(&format!("  run {}", key.0), width.saturating_sub(6 + width / 2)),
                theme.style(Role::Muted),
            ),
        ]),
        Line::from(Span::styled(
            fit(&format!(" {}", one_line(&conflict.question)), width),
            theme.style(Role::Text),
        )),
        Line::raw(""),
    ];
    for (row, line) in top.iter().enumerate() {
        put_line(buf, inner, row, line);
    }
    // The bottom (ladder, decision, buttons) always shows; the verdicts get what is left.
    let top_rows = u16::try_from(top.len()).unwrap_or(0);
    let bottom_rows = u16::try_from(bottom.len()).unwrap_or(u16::MAX);
    let body = Rect {
        x: inner.x,
        y: inner.y + top_rows.min(inner.height),
        width: inner.width,
        height: inner.height.saturating_sub(top_rows).saturating_sub(bottom_rows),
    };
    let recommended = recommended(conflict);
    if columns {
        let column_width = column_width(conflict, inner.width);
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
        // The body's rows shared out among the verdicts (the first ones take what is left
        // over), each showing its answer first.
        let count = conflict.verdicts.len().max(1);
        let (share, left) = (usize::from(body.height) / count, usize::from(body.height) % count);
        let lines = conflict.verdicts.iter().enumerate().flat_map(|(i, verdict)| {
            let rows = (share + usize::from(i < left)).clamp(1, STACKED_ROWS);
            let lines = stacked_lines(
                i,
                verdict,
                recommended == Some(i),
                *choice == Some(i),
                theme,
                usize::from(body.width),
            );
            lines.into_iter().take(rows)
        });
        for (row, line) in lines.enumerate() {
            put_line(buf, body, row, &line);
        }
    }
    let start = usize::from(inner.height).saturating_sub(bottom.len());
    for (k, line) in bottom.iter().enumerate() {
        put_line(buf, inner, start + k, line);
    }
}

/// The column of the recommended verdict.
fn recommended(conflict: &ConflictModel) -> Option<usize> {
    let recommendation = conflict.recommendation.as_ref()?;
    conflict.verdicts.iter().position(|v| v.agent == recommendation.winner)
}

fn column_width(conflict: &ConflictModel, inner_width: u16) -> u16 {
    inner_width / u16::try_from(conflict.verdicts.len().max(1)).unwrap_or(1)
}

/// Whether the verdicts fit side by side; otherwise they stack.
fn side_by_side(conflict: &ConflictModel, inner_width: u16) -> bool {
    column_width(conflict, inner_width) >= MIN_COLUMN
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
    let text = |s: String, role: Role| Line::from(Span::styled(fit(&s, width), theme.style(role)));
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
        lines.push(text(format!(" ◆ {}", one_line(evidence)), Role::Text));
    }
    for alternative in &v.alternatives {
        lines.push(text(format!(" ✗ {}", one_line(alternative)), Role::Muted));
    }
    for tradeoff in &v.tradeoffs {
        lines.push(text(format!(" ⇄ {}", one_line(tradeoff)), Role::Muted));
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
    let joined = |items: &[String], none: &str| {
        if items.is_empty() { none.to_owned() } else { items.join("; ") }
    };
    let alternatives = format!(
        "   ✗ {} ⇄ {}",
        joined(&v.alternatives, "no alternatives"),
        joined(&v.tradeoffs, "no trade-offs")
    );
    vec![
        head,
        Line::styled(
            fit(&format!("   why {}", one_line(&v.rationale)), width),
            theme.style(Role::Text),
        ),
        Line::styled(
            fit(&format!("   ◆ {}", one_line(&joined(&v.evidence, "no evidence given"))), width),
            theme.style(Role::Muted),
        ),
        Line::styled(fit(&one_line(&alternatives), width), theme.style(Role::Muted)),
    ]
}

/// How the bottom of the prompt is laid out.
struct Bottom {
    width: usize,
    /// Most lines one ladder step's finding may take.
    step_rows: usize,
    /// How many of the latest ladder steps show (the earlier ones are counted).
    steps_shown: usize,
    choice: Option<usize>,
    /// The viewer may settle it: the buttons show.
    choosing: bool,
}

/// The ladder's steps, the recommendation or the decision, then the text being typed or the
/// buttons.
fn bottom_lines<'a>(
    conflict: &ConflictModel,
    theme: &Theme,
    layout: &Bottom,
    input: &ConflictInput,
) -> Vec<Line<'a>> {
    let &Bottom { width, step_rows, steps_shown, choice, choosing } = layout;
    let earlier = conflict.steps.len().saturating_sub(steps_shown);
    let title = match earlier {
        0 => " ladder".to_owned(),
        n => format!(" ladder ({} before this one in the audit pane)", plural(n, "step")),
    };
    let mut lines = vec![Line::styled(fit(&title, width), theme.style(Role::Muted))];
    for step in &conflict.steps[earlier..] {
        let mark = if step.winner.is_some() { "✓" } else { "·" };
        let text = format!("{} {}: {}", clock(step.at_ms), step.step, one_line(&step.finding));
        // Wrapped under itself, after the mark; on one line, cut where the line ends.
        let wrapped = if step_rows > 1 {
            wrap_words(&text, width.saturating_sub(4).max(1), step_rows)
        } else {
            vec![text]
        };
        for (k, part) in wrapped.into_iter().enumerate() {
            let lead = if k == 0 { format!("  {mark} ") } else { "    ".to_owned() };
            lines.push(Line::styled(fit(&format!("{lead}{part}"), width), theme.style(Role::Text)));
        }
    }
    if conflict.steps.is_empty() {
        lines.push(Line::styled(fit("  · no step has run yet", width), theme.style(Role::Muted)));
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
    if let Some(resolution) = &conflict.resolution {
        let by = resolution.by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
        let note =
            resolution.note.as_deref().map(|n| format!(" — {}", one_line(n))).unwrap_or_default();
        lines.push(Line::styled(
            fit(
                &format!(
                    " ✓ settled {}: \"{}\" ({}, {}{by}){note}",
                    clock(resolution.resolved_ms),
                    one_line(&resolution.decision),
                    resolution.winner,
                    resolution.resolved_by
                ),
                width,
            ),
            theme.style(Role::Ok),
        ));
        return lines;
    }
    lines.push(Line::raw(""));
    match input {
        ConflictInput::Own(editor) => lines.extend(editor_lines(editor, theme, width)),
        ConflictInput::Note { choice: chosen, line } => {
            let what = match chosen {
                crate::command::ConflictChoice::Verdict(n) => conflict
                    .verdicts
                    .get(n.saturating_sub(1))
                    .map_or_else(|| format!("verdict {n}"), |v| format!("{n} {}", v.agent)),
                crate::command::ConflictChoice::Own(text) => {
                    format!("your own \"{}\"", one_line(text))
                }
                // The prompt never makes these two (they are the headless run's settlements),
                // but they read plainly if a note is ever asked for them.
                crate::command::ConflictChoice::Recommended => "the recommendation".to_owned(),
                crate::command::ConflictChoice::Refused(_) => "a refusal".to_owned(),
            };
            lines.push(Line::styled(
                fit(&format!(" settle with {what}"), width),
                theme.style(Role::Text),
            ));
            lines.push(typed(" note (optional): ", line, "Enter settle · Esc back", theme, width));
        }
        ConflictInput::Choosing if choosing => lines.push(buttons(conflict, theme, width, choice)),
        ConflictInput::Choosing => lines.push(Line::styled(
            fit(" waiting for someone who may control runs", width),
            theme.style(Role::Muted),
        )),
    }
    lines
}

/// A text being typed, with a cursor mark at its end and what Enter and Esc do.
/// Rows of the own-decision editor shown at most; the ones up to the cursor's are kept.
const EDITOR_ROWS: usize = 4;

/// The own-decision editor: a title with its keys, then its lines (the last few up to the
/// cursor's row), the cursor drawn where one types.
fn editor_lines<'a>(editor: &DecisionEditor, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let (row, column) = editor.cursor();
    let count = editor.lines().len();
    let mut lines = vec![Line::from(vec![
        Span::styled(" ✎ your decision", theme.style(Role::Accent).add_modifier(Modifier::BOLD)),
        Span::styled(
            format!(
                "  ({count} line{})  Enter new line · Ctrl-S then a note · Esc back",
                if count == 1 { "" } else { "s" }
            ),
            theme.style(Role::Muted),
        ),
    ])];
    let first = (row + 1).saturating_sub(EDITOR_ROWS);
    let room = width.saturating_sub(5);
    for (at, text) in editor.lines().iter().enumerate().skip(first).take(EDITOR_ROWS) {
        let shown = if at == row {
            let before: String = text.chars().take(column).collect();
            let after: String = text.chars().skip(column).collect();
            // Past the edge, the end of what comes before the cursor shows, where one types.
            let before = if before.width() + 1 > room {
                let skip = before.chars().count().saturating_sub(room.saturating_sub(2));
                format!("…{}", before.chars().skip(skip).collect::<String>())
            } else {
                before
            };
            format!("{before}▌{after}")
        } else {
            text.clone()
        };
        lines.push(Line::styled(fit(&format!("   {shown}"), width), theme.style(Role::Text)));
    }
    lines
}

fn typed<'a>(label: &str, line: &CommandLine, keys: &str, theme: &Theme, width: usize) -> Line<'a> {
    let text = one_line(&line.text);
    let room = width.saturating_sub(label.width() + keys.width() + 4);
    // The end of a long text shows, where one types.
    let shown: String = if text.width() > room {
        let skip = text.chars().count().saturating_sub(room.saturating_sub(1));
        format!("…{}", text.chars().skip(skip).collect::<String>())
    } else {
        text
    };
    Line::from(vec![
        Span::styled(label.to_owned(), theme.style(Role::Accent).add_modifier(Modifier::BOLD)),
        Span::styled(format!("{shown}▌"), theme.style(Role::Text)),
        Span::styled(format!("  {keys}"), theme.style(Role::Muted)),
    ])
}

fn buttons<'a>(
    conflict: &ConflictModel,
    theme: &Theme,
    width: usize,
    choice: Option<usize>,
) -> Line<'a> {
    let mut spans = vec![Span::raw(" ")];
    for (i, verdict) in conflict.verdicts.iter().enumerate() {
        spans.push(button(
            &format!("{} {}", i + 1, verdict.agent),
            choice == Some(i),
            Role::Danger,
            theme,
        ));
        spans.push(Span::raw(" "));
    }
    spans.push(button("Later Esc", choice.is_none(), Role::Text, theme));
    spans.push(Span::styled("  e own", theme.style(Role::Muted)));
    let row = Line::from(spans);
    if row.width() <= width {
        return row;
    }
    // Too many to show by name: numbers only.
    let mut short = vec![Span::raw(" ")];
    for i in 0..conflict.verdicts.len() {
        short.push(button(&(i + 1).to_string(), choice == Some(i), Role::Danger, theme));
    }
    short.push(button("Later", choice.is_none(), Role::Text, theme));
    Line::from(short)
}

fn button<'a>(label: &str, focused: bool, role: Role, theme: &Theme) -> Span<'a> {
    let text = if focused { format!("▸[ {label} ]◂") } else { format!(" [ {label} ] ") };
    let style = theme.style(role);
    Span::styled(
        text,
        if focused { style.add_modifier(Modifier::REVERSED | Modifier::BOLD) } else { style },
    )
}

/// Words into lines of at most `width` columns (a longer word is cut); none for no words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    wrap_words(text, width.max(1), usize::MAX)
}

#[cfg(test)]
#[path = "conflict_tests.rs"]
mod tests;
