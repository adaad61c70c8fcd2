//! The Runs list: live, finished and interrupted runs (the store's list, with the progress of
//! the runs this console folds live), newest first, filtered with `/`. Enter shows a run in
//! the DAG, header and details; `C` cancels a live one through the gate, asking first.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};
use unicode_width::UnicodeWidthStr;

use super::{cell, clock, duration, fit, overlay_block, put_line, style_row};
use crate::console::keys::{self, Action, Scope};
use crate::console::layout::centered;
use crate::console::state::{RunEntry, State};
use crate::console::theme::{Role, Theme};

/// Rows the list shows in a popup over `area` (for paging and scrolling).
pub fn visible_rows(area: Rect) -> usize {
    usize::from(popup(area).height.saturating_sub(3))
}

fn popup(area: Rect) -> Rect {
    centered(area, area.width.saturating_sub(4).min(110), area.height.saturating_sub(2))
}

/// Whether a Runs-list key applies to the selected run: cancel to a live one, resume to an
/// interrupted one, replay to one that is not running.
pub fn applies(state: &State, action: Action) -> bool {
    let Some(selected) = state.runs_list.cursor.selected.as_ref() else { return false };
    let entries = state.run_entries();
    let Some(entry) = entries.iter().find(|e| e.id == *selected) else { return false };
    match action {
        Action::CancelSelectedRun => entry.status == "running",
        Action::ResumeSelectedRun => entry.status == "interrupted",
        Action::ReplaySelectedRun => entry.status != "running",
        _ => true,
    }
}

/// The glyph that says a run's status without colour.
fn glyph(entry: &RunEntry) -> &'static str {
    match entry.status {
        "running" => "▶",
        "waiting" => "⏸",
        "succeeded" => "✓",
        "failed" => "✗",
        "interrupted" => "↯",
        _ => "■",
    }
}

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let popup = popup(area);
    if popup.is_empty() {
        return;
    }
    let entries = state.run_entries();
    let filter = &state.runs_list.cursor.filter;
    let title = if filter.is_empty() {
        format!("Runs · {}", entries.len())
    } else {
        format!("Runs · {} matching /{filter}", entries.len())
    };
    // The list's keys that apply to the selected run (also under a confirmation).
    let (close, mut keys): (Vec<_>, Vec<_>) = keys::bindings(Scope::Runs, state.role)
        .filter(|b| keys::applies(state, b.action))
        .filter_map(|b| b.hint)
        .map(|(k, words)| (k, format!("{k} {words}")))
        .partition(|(k, _)| *k == "Esc");
    keys.extend(close);
    let mut keys: Vec<String> = keys.into_iter().map(|(_, text)| text).collect();
    // On a narrow screen the most obvious keys (moving, showing) give way first.
    let room = usize::from(popup.width.saturating_sub(6));
    while keys.len() > 1 && UnicodeWidthStr::width(keys.join(" · ").as_str()) > room {
        keys.remove(0);
    }
    let block = overlay_block(theme, &title, &keys.join(" · "));
    let inner = block.inner(popup);
    Clear.render(popup, buf);
    block.render(popup, buf);
    let width = usize::from(inner.width);
    // Columns shrink from the right on a narrow screen: the status and name always show.
    let header = row_text("", "STATUS", "WORKFLOW", "SUCCEEDED", "STARTED", "TOOK", "RUN", width);
    put_line(buf, inner, 0, &Line::styled(header, theme.style(Role::Muted)));
    if entries.is_empty() {
        let text = if filter.is_empty() { "no runs yet" } else { "no run matches" };
        put_line(buf, inner, 1, &Line::styled(fit(text, width), theme.style(Role::Muted)));
        return;
    }
    let rows = usize::from(inner.height).saturating_sub(1);
    let selected = state.runs_list.cursor.selected.as_ref();
    let at = entries.iter().position(|e| Some(&e.id) == selected).unwrap_or(0);
    let offset = super::scrolled_offset(state.runs_list.cursor.offset, at, rows);
    for (row, entry) in entries.iter().enumerate().skip(offset).take(rows) {
        let mark = if entry.shown { "▸" } else { " " };
        let succeeded = format!("{}/{}", entry.succeeded, entry.total);
        let took = entry.duration_ms.map_or_else(|| "-".to_owned(), duration);
        let status = format!("{} {}", glyph(entry), entry.status);
        let text = row_text(
            mark,
            &status,
            &entry.workflow,
            &succeeded,
            &clock(entry.started_ms),
            &took,
            entry.id.as_str(),
            width,
        );
        let line = Line::from(vec![Span::styled(text, theme.style(entry.role()))]);
        let y = row - offset + 1;
        put_line(buf, inner, y, &line);
        if row == at {
            style_row(buf, inner, y, theme.style(Role::Selection));
        }
    }
}

/// One row, columns fitted to `width`: mark, status, workflow, tasks succeeded, start,
/// duration, id.
#[allow(clippy::too_many_arguments)] // one argument per column reads better than a struct
fn row_text(
    mark: &str,
    status: &str,
    workflow: &str,
    succeeded: &str,
    started: &str,
    took: &str,
    id: &str,
    width: usize,
) -> String {
    let line = format!(
        "{}{} {} {} {} {} {}",
        cell(mark, 1),
        cell(status, 13),
        cell(workflow, 20),
        cell(succeeded, 9),
        cell(started, 8),
        cell(took, 8),
        id
    );
    fit(&line, width)
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::super::testing::{self, Fixture, T0};
    use crate::console::keys::Action;
    use crate::console::reducer::{Input, reduce};
    use crate::console::state::{PaneId, RunRow, RunState, State};
    use crate::ids::RunId;

    /// What the store lists besides the fixture's live run: an interrupted and a failed run.
    pub fn stored() -> Vec<RunRow> {
        let row = |id: &str,
                   workflow: &str,
                   state,
                   started_ms: u64,
                   done: usize,
                   duration_ms: Option<u64>| RunRow {
            run_id: RunId::new(id),
            workflow: workflow.to_owned(),
            file: format!("workflows/{workflow}.yaml").into(),
            started_ms,
            finished_ms: duration_ms.map(|d| started_ms + d),
            state,
            tasks: 12,
            succeeded: done,
            failed: 0,
            skipped: 0,
            cancelled: 0,
            duration_ms,
            simulated: false,
        };
        vec![
            row(
                "r20231114-nightly",
                "nightly-audit",
                RunState::Interrupted,
                T0 - 3_600_000,
                7,
                None,
            ),
            row(
                "r20231113-release",
                "release",
                RunState::Failed,
                T0 - 86_400_000,
                12,
                Some(754_000),
            ),
        ]
    }

    pub fn opened(width: u16, height: u16) -> State {
        let mut state = testing::state_sized(Fixture::Busy, PaneId::Dag, width, height);
        reduce(&mut state, Input::Action(Action::OpenRuns));
        reduce(&mut state, Input::RunsLoaded(stored()));
        state
    }

    #[test]
    fn snapshots() {
        let theme = testing::theme();
        for (w, h) in [(160, 45), (80, 24), (60, 16)] {
            let state = opened(w, h);
            assert_snapshot!(format!("runs_{w}x{h}"), testing::render_screen(&state, &theme, w, h));
        }
        let mut filtered = opened(80, 24);
        reduce(&mut filtered, Input::Action(Action::StartFilter));
        for c in "inter".chars() {
            reduce(&mut filtered, Input::Action(Action::FilterPush(c)));
        }
        assert_snapshot!("runs_filtered_80x24", testing::render_screen(&filtered, &theme, 80, 24));
        // The keys offered follow the selected run: resume (and replay) for the interrupted
        // one, replay for the failed one; a viewer is offered neither resume nor cancel.
        for (w, h) in [(160, 45), (80, 24), (60, 16)] {
            let mut state = opened(w, h);
            reduce(&mut state, Input::Action(Action::SelectNext));
            let name = format!("runs_interrupted_selected_{w}x{h}");
            assert_snapshot!(name, testing::render_screen(&state, &theme, w, h));
        }
        let mut failed = opened(80, 24);
        reduce(&mut failed, Input::Action(Action::SelectNext));
        reduce(&mut failed, Input::Action(Action::SelectNext));
        assert_snapshot!(
            "runs_failed_selected_80x24",
            testing::render_screen(&failed, &theme, 80, 24)
        );
        let mut asked = opened(80, 24);
        reduce(&mut asked, Input::Action(Action::SelectNext));
        reduce(&mut asked, Input::Action(Action::ResumeSelectedRun));
        assert_snapshot!("runs_resume_asked_80x24", testing::render_screen(&asked, &theme, 80, 24));
        let mut viewer = opened(80, 24);
        viewer.role = crate::console::state::UserRole::Viewer;
        reduce(&mut viewer, Input::Action(Action::SelectNext));
        assert_snapshot!("runs_viewer_80x24", testing::render_screen(&viewer, &theme, 80, 24));
        let mut nothing = testing::state_sized(Fixture::Empty, PaneId::Dag, 80, 24);
        reduce(&mut nothing, Input::Action(Action::OpenRuns));
        reduce(&mut nothing, Input::RunsLoaded(Vec::new()));
        assert_snapshot!("runs_empty_80x24", testing::render_screen(&nothing, &theme, 80, 24));
    }
}
