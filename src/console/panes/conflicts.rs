//! The Conflicts list (`D`): open and resolved conflicts between agents of every run this
//! console folds, waiting ones first. Each row: status, run, task, the members with their
//! decisions, how it was settled and by whom. Enter opens one in the conflict prompt.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};

use super::{cell, fit, one_line, overlay_block, put_line, style_row};
use crate::console::layout::centered;
use crate::console::state::{ConflictEntry, State};
use crate::console::theme::{Role, Theme};

/// Rows the list shows in a popup over `area` (for paging and scrolling).
pub fn visible_rows(area: Rect) -> usize {
    usize::from(popup(area).height.saturating_sub(3))
}

fn popup(area: Rect) -> Rect {
    centered(area, area.width.saturating_sub(4).min(150), area.height.saturating_sub(2))
}

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let popup = popup(area);
    if popup.is_empty() {
        return;
    }
    let entries = state.conflict_entries();
    let filter = &state.conflicts.cursor.filter;
    let open = entries.iter().filter(|e| e.waiting).count();
    let title = if filter.is_empty() {
        format!("Conflicts · {open} open · {} in all", entries.len())
    } else {
        format!("Conflicts · {} matching /{filter}", entries.len())
    };
    let block = overlay_block(theme, &title, "Enter open · / filter · Esc close");
    let inner = block.inner(popup);
    Clear.render(popup, buf);
    block.render(popup, buf);
    let width = usize::from(inner.width);
    let header = row_text("", "STATUS", "RUN", "TASK", "MEMBERS → DECISIONS", "SETTLED", width);
    put_line(buf, inner, 0, &Line::styled(header, theme.style(Role::Muted)));
    if entries.is_empty() {
        let text = if filter.is_empty() {
            "no conflict between agents yet"
        } else {
            "no conflict matches"
        };
        put_line(buf, inner, 1, &Line::styled(fit(text, width), theme.style(Role::Muted)));
        return;
    }
    let rows = usize::from(inner.height).saturating_sub(1);
    let selected = state.conflicts.cursor.selected.as_ref();
    let at = entries.iter().position(|e| Some(&e.key()) == selected).unwrap_or(0);
    let offset = super::scrolled_offset(state.conflicts.cursor.offset, at, rows);
    for (row, entry) in entries.iter().enumerate().skip(offset).take(rows) {
        let mark = if entry.waiting { "⚔" } else { " " };
        let run = format!("{} {}", entry.workflow, entry.run);
        let text = row_text(
            mark,
            entry.status(),
            &run,
            entry.task.id().as_str(),
            &members(entry),
            &settled(entry),
            width,
        );
        let role = if entry.waiting {
            Role::Warn
        } else if entry.conflict.resolution.is_some() {
            Role::Text
        } else {
            Role::Muted
        };
        let y = row - offset + 1;
        put_line(buf, inner, y, &Line::from(vec![Span::styled(text, theme.style(role))]));
        if row == at {
            style_row(buf, inner, y, theme.style(Role::Selection));
        }
    }
}

/// `agent: "decision"` of each member, in panel order.
fn members(entry: &ConflictEntry<'_>) -> String {
    let sides: Vec<String> = entry
        .conflict
        .verdicts
        .iter()
        .map(|v| format!("{}: \"{}\"", v.agent, one_line(&v.verdict.decision)))
        .collect();
    sides.join(" · ")
}

/// How it was settled: the step, who when a person decided, and the decision.
fn settled(entry: &ConflictEntry<'_>) -> String {
    match &entry.conflict.resolution {
        Some(r) => {
            let by = r.by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            // How and by whom first: a narrow column cuts the decision, not the person.
            format!("{}{by} · \"{}\"", r.resolved_by, one_line(&r.decision))
        }
        None => "-".to_owned(),
    }
}

/// One row, columns fitted to `width`: mark, status, run, task, members, settlement. The
/// members and the settlement share what is left, the settlement first.
fn row_text(
    mark: &str,
    status: &str,
    run: &str,
    task: &str,
    members: &str,
    settled: &str,
    width: usize,
) -> String {
    // A narrow screen keeps the status, the task and what was decided.
    let (status_width, run_width, task_width) = if width < 110 { (8, 0, 12) } else { (15, 22, 16) };
    let run = if run_width == 0 { String::new() } else { format!("{} ", cell(run, run_width)) };
    let fixed = format!(
        "{} {} {run}{} ",
        cell(mark, 1),
        cell(status, status_width),
        cell(task, task_width)
    );
    let left = width.saturating_sub(unicode_width::UnicodeWidthStr::width(fixed.as_str()));
    let settled_width = (left * 2 / 5).max(8);
    let members_width = left.saturating_sub(settled_width + 1);
    let line = format!("{fixed}{} {}", cell(members, members_width), settled);
    fit(&line, width)
}
