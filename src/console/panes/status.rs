//! The status bar: who is acting with which role, the theme, the focused pane, then either the
//! command line, the filter being typed, a transient message or key hints from the keymap.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{fit, one_line, put_line};
use crate::console::keys;
use crate::console::state::{Editing, State};
use crate::console::theme::{Role, Theme};
use crate::event::Level;

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let bar = theme.style(Role::StatusBar);
    buf.set_style(area, bar);
    let on_bar = |role: Role| bar.patch(theme.style(role));
    match state.editing {
        Editing::CommandLine => {
            put_line(buf, area, 0, &Line::styled(" :", on_bar(Role::Accent)));
            let input = Rect { x: area.x + 2, width: area.width.saturating_sub(2), ..area };
            let mut line = state.command_line.clone();
            line.set_style(bar);
            line.set_cursor_line_style(Style::default());
            line.set_cursor_style(bar.add_modifier(Modifier::REVERSED));
            line.set_placeholder_text(
                "run PATH · cancel [TASK] · retry TASK · approve TASK · spawn AGENT · help",
            );
            line.set_placeholder_style(on_bar(Role::Muted));
            (&line).render(input, buf);
            return;
        }
        Editing::Filter => {
            let filter = one_line(state.filter(state.focus));
            let line = Line::from(vec![
                Span::styled(" /", on_bar(Role::Accent)),
                Span::styled(filter, on_bar(Role::Text)),
                Span::styled("▏", on_bar(Role::Accent)),
                Span::styled(
                    format!("   filtering {} · Enter keep · Esc clear", state.focus.title()),
                    on_bar(Role::Muted),
                ),
            ]);
            put_line(buf, area, 0, &line);
            return;
        }
        Editing::None => {}
    }
    let mut spans = vec![
        Span::styled(format!(" {}@{} ", state.user, state.role.as_str()), on_bar(Role::Accent)),
        Span::styled(
            format!("│ {} │ {} ", state.theme_name, state.focus.title()),
            on_bar(Role::Muted),
        ),
    ];
    if !state.runtime_connected {
        spans.push(Span::styled("│ ⚠ runtime stopped ", on_bar(Role::Error)));
    }
    let mut used: usize = spans.iter().map(Span::width).sum();
    let width = usize::from(area.width);
    if let Some(message) = &state.message {
        let (glyph, role) = match message.level {
            Level::Info => ("•", Role::Text),
            Level::Warn => ("⚠", Role::Warn),
            Level::Error => ("✗", Role::Error),
        };
        let text =
            fit(&format!("│ {glyph} {} ", one_line(&message.text)), width.saturating_sub(used));
        used += unicode_width::UnicodeWidthStr::width(text.as_str());
        spans.push(Span::styled(text, on_bar(role)));
    }
    spans.push(Span::styled("│", on_bar(Role::Muted)));
    used += 1;
    for (key, description, danger) in keys::hints(state) {
        let piece = format!(" {key} {description} ");
        let piece_width = unicode_width::UnicodeWidthStr::width(piece.as_str());
        if used + piece_width > width {
            break;
        }
        used += piece_width;
        spans.push(Span::styled(
            format!(" {key}"),
            on_bar(if danger { Role::Danger } else { Role::Accent }),
        ));
        spans.push(Span::styled(format!(" {description} "), on_bar(Role::Muted)));
    }
    put_line(buf, area, 0, &Line::from(spans));
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::console::keys::Action;
    use crate::console::panes::testing::{self, Fixture};
    use crate::console::reducer::{Input, reduce};
    use crate::console::state::PaneId;

    fn bar(state: &State, width: u16) -> TestBackend {
        let theme = testing::theme();
        let mut terminal = Terminal::new(TestBackend::new(width, 1)).expect("terminal");
        terminal
            .draw(|frame| {
                let area = frame.area();
                render(state, &theme, area, frame.buffer_mut());
            })
            .expect("draw");
        terminal.backend().clone()
    }

    #[test]
    fn snapshots() {
        let idle = testing::state(Fixture::Empty, PaneId::Dag);
        assert_snapshot!("status_idle_120", bar(&idle, 120));
        assert_snapshot!("status_idle_60", bar(&idle, 60));
        let denied = testing::state(Fixture::Failed, PaneId::Breakers);
        assert_snapshot!("status_denied_120", bar(&denied, 120));
        let mut typing = testing::state(Fixture::Busy, PaneId::Dag);
        reduce(&mut typing, Input::Action(Action::OpenCommandLine));
        for c in "spawn back".chars() {
            let key = crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char(c));
            reduce(&mut typing, Input::Action(Action::CommandLineInput(key.into())));
        }
        assert_snapshot!("status_command_line_120", bar(&typing, 120));
        let mut filtering = testing::state(Fixture::Busy, PaneId::Agents);
        reduce(&mut filtering, Input::Action(Action::StartFilter));
        reduce(&mut filtering, Input::Action(Action::FilterPush('s')));
        assert_snapshot!("status_filter_120", bar(&filtering, 120));
    }

    #[test]
    fn viewer_hints_hide_dangerous_keys() {
        let mut state = testing::state(Fixture::Busy, PaneId::Dag);
        state.role = crate::console::state::UserRole::Viewer;
        let shown = bar(&state, 200).to_string();
        assert!(shown.contains("Tab pane"), "{shown}");
        assert!(!shown.contains("cancel"), "{shown}");
        state.role = crate::console::state::UserRole::Admin;
        let shown = bar(&state, 200).to_string();
        assert!(shown.contains("c cancel"), "{shown}");
    }
}
