//! The Agents pane: every definition in the pool folder with tier, category, triggers,
//! backend and validity. Files that failed to load are listed first, in the error colour,
//! with the file and message at the bottom of the pane.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{Details, Pane, cell, fit, one_line, pane_block, put_line, style_row};
use crate::console::state::{AgentEntry, PaneId, State};
use crate::console::theme::{Role, Theme};

/// Error lines shown at the bottom of the pane at most.
const MAX_ERROR_LINES: usize = 3;

pub struct AgentsPane;

/// Which optional columns fit, by inner width.
struct Columns {
    name: usize,
    triggers: bool,
    backend: bool,
    category: bool,
}

impl Columns {
    const BACKEND: usize = 9;
    const CATEGORY: usize = 13;

    fn for_width(width: usize) -> Self {
        let triggers = width >= 34;
        let backend = width >= 48;
        let category = width >= 64;
        let fixed = 2
            + 3
            + Self::status_width(width)
            + usize::from(triggers) * 5
            + usize::from(backend) * Self::BACKEND
            + usize::from(category) * Self::CATEGORY;
        Self { name: width.saturating_sub(fixed).max(4), triggers, backend, category }
    }

    /// Narrow panes show the status glyph (and warning count) only.
    fn status_width(width: usize) -> usize {
        if width >= 34 { 9 } else { 3 }
    }
}

fn error_lines(state: &State) -> usize {
    state.agents.entries.values().filter(|e| e.error.is_some()).count().min(MAX_ERROR_LINES)
}

fn status(entry: &AgentEntry, words: bool) -> (Role, String) {
    match (&entry.summary, &entry.error) {
        (_, Some(_)) => (Role::Error, if words { "✗ error" } else { "✗" }.to_owned()),
        (Some(s), None) if !s.warnings.is_empty() => {
            let n = s.warnings.len();
            (Role::Warn, if words { format!("⚠ {n} warn") } else { format!("⚠{n}") })
        }
        _ => (Role::Ok, if words { "✓ ok" } else { "✓" }.to_owned()),
    }
}

/// The name column: the agent, or the file name when it never loaded.
fn name(entry: &AgentEntry) -> String {
    entry.summary.as_ref().map_or_else(
        || entry.file.file_name().map_or_else(|| entry.key(), |f| f.to_string_lossy().into_owned()),
        |s| s.agent.to_string(),
    )
}

impl Pane for AgentsPane {
    fn id(&self) -> PaneId {
        PaneId::Agents
    }

    fn visible_rows(&self, state: &State, area: Rect) -> usize {
        usize::from(area.height.saturating_sub(3)).saturating_sub(error_lines(state))
    }

    fn render(&self, state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let rows = state.agents.rows();
        let errors = state.agents.entries.values().filter(|e| e.error.is_some()).count();
        let info = if errors > 0 {
            format!("{} · {errors} ✗", state.agents.entries.len())
        } else {
            state.agents.entries.len().to_string()
        };
        let block = pane_block(state, theme, PaneId::Agents, area, Some(info));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.is_empty() {
            return;
        }
        let width = usize::from(inner.width);
        let cols = Columns::for_width(width);
        let muted = theme.style(Role::Muted);

        let mut header = vec![Span::styled(format!("  {}", cell("NAME", cols.name)), muted)];
        header.push(Span::styled(" T ", muted));
        if cols.triggers {
            header.push(Span::styled("TRIG ", muted));
        }
        if cols.category {
            header.push(Span::styled(cell("CATEGORY", Columns::CATEGORY), muted));
        }
        if cols.backend {
            header.push(Span::styled(cell("BACKEND", Columns::BACKEND), muted));
        }
        header.push(Span::styled(
            if Columns::status_width(width) > 3 { "STATUS" } else { "OK" },
            muted,
        ));
        put_line(buf, inner, 0, &Line::from(header));

        if rows.is_empty() {
            let text = if state.agents.cursor.filter.is_empty() {
                "no agent definitions yet"
            } else {
                "nothing matches the filter"
            };
            put_line(buf, inner, 1, &Line::styled(format!("  {text}"), muted));
        }

        let error_rows = error_lines(state);
        let list_rows = self.visible_rows(state, area);
        let selected = state.agents.cursor.selected.as_deref();
        let selected_at = rows.iter().position(|e| Some(e.key().as_str()) == selected);
        let offset = super::scrolled_offset(
            state.agents.cursor.offset.min(rows.len().saturating_sub(1)),
            selected_at.unwrap_or(0),
            list_rows,
        );
        for (row, entry) in rows.iter().skip(offset).take(list_rows).enumerate() {
            let is_selected = Some(offset + row) == selected_at;
            let (status_role, status_text) = status(entry, Columns::status_width(width) > 3);
            let name_role = if entry.summary.is_none() { Role::Error } else { Role::Text };
            let marker = if is_selected { "▸ " } else { "  " };
            let mut spans = vec![
                Span::styled(marker, theme.style(Role::Accent)),
                Span::styled(cell(&one_line(&name(entry)), cols.name), theme.style(name_role)),
                Span::styled(
                    entry
                        .summary
                        .as_ref()
                        .map_or_else(|| " - ".to_owned(), |s| format!(" {} ", s.tier)),
                    muted,
                ),
            ];
            if cols.triggers {
                let triggers = entry.summary.as_ref().map_or(0, |s| s.triggers);
                spans.push(Span::styled(format!("{triggers:>4} "), muted));
            }
            if cols.category {
                let category =
                    entry.summary.as_ref().and_then(|s| s.category.as_deref()).unwrap_or("-");
                spans.push(Span::styled(cell(&one_line(category), Columns::CATEGORY), muted));
            }
            if cols.backend {
                let backend =
                    entry.summary.as_ref().and_then(|s| s.backend.as_deref()).unwrap_or("default");
                spans.push(Span::styled(cell(&one_line(backend), Columns::BACKEND), muted));
            }
            spans.push(Span::styled(status_text, theme.style(status_role)));
            put_line(buf, inner, row + 1, &Line::from(spans));
            if is_selected && state.focus == PaneId::Agents {
                style_row(buf, inner, row + 1, theme.style(Role::Selection));
            }
        }

        // Load errors at the bottom: file and message, so a broken file is visible at once.
        let first_error_row = usize::from(inner.height).saturating_sub(error_rows);
        let broken = rows.iter().filter(|e| e.error.is_some()).take(error_rows);
        for (i, entry) in broken.enumerate() {
            let file = entry
                .file
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            let message = entry.error.as_deref().unwrap_or_default();
            let text = fit(&one_line(&format!("✗ {file}: {message}")), width);
            put_line(
                buf,
                inner,
                first_error_row + i,
                &Line::styled(text, theme.style(Role::Error)),
            );
        }
    }

    fn details(&self, state: &State) -> Option<Details> {
        let key = state.agents.cursor.selected.as_ref()?;
        let entry = state.agents.entries.get(key)?;
        let label = |l: &str| (Role::Muted, format!("{l:<14}"));
        let mut lines = vec![vec![label("file"), (Role::Text, entry.file.display().to_string())]];
        if let Some(s) = &entry.summary {
            lines.push(vec![label("agent"), (Role::Text, s.agent.to_string())]);
            lines.push(vec![label("tier"), (Role::Text, s.tier.to_string())]);
            lines.push(vec![
                label("category"),
                (Role::Text, s.category.clone().unwrap_or_else(|| "-".to_owned())),
            ]);
            lines.push(vec![label("triggers"), (Role::Text, s.triggers.to_string())]);
            lines.push(vec![label("max instances"), (Role::Text, s.max_instances.to_string())]);
            lines.push(vec![
                label("backend"),
                (Role::Text, s.backend.clone().unwrap_or_else(|| "default".to_owned())),
            ]);
            for warning in &s.warnings {
                lines
                    .push(vec![label("warning"), (Role::Warn, format!("⚠ {}", one_line(warning)))]);
            }
        } else {
            lines.push(vec![label("agent"), (Role::Error, "never loaded".to_owned())]);
        }
        if let Some(error) = &entry.error {
            let note =
                if entry.summary.is_some() { " (the last good version stays active)" } else { "" };
            lines.push(vec![label("error"), (Role::Error, format!("✗ load failed{note}"))]);
            for part in error.lines() {
                lines.push(vec![(Role::Muted, " ".repeat(14)), (Role::Error, one_line(part))]);
            }
        }
        Some(Details { title: format!("Agent {}", name(entry)), lines })
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::console::panes::testing::{self, Fixture};

    #[test]
    fn snapshots() {
        for (name, fixture) in
            [("empty", Fixture::Empty), ("busy", Fixture::Busy), ("failed", Fixture::Failed)]
        {
            let state = testing::state(fixture, PaneId::Agents);
            assert_snapshot!(
                format!("agents_{name}_120x40"),
                testing::render_pane(&state, PaneId::Agents, 120, 40)
            );
            assert_snapshot!(
                format!("agents_{name}_40x10"),
                testing::render_pane(&state, PaneId::Agents, 40, 10)
            );
        }
    }

    #[test]
    fn invalid_file_is_drawn_in_the_error_colour() {
        let state = testing::state(Fixture::Failed, PaneId::Agents);
        let theme = testing::theme();
        let buffer = testing::pane_buffer(&state, &theme, PaneId::Agents, 60, 20);
        let at = testing::find(&buffer, "✗ broken.md").expect("error line");
        assert_eq!(buffer[at].fg, theme.style(Role::Error).fg.expect("error colour"));
    }
}
