//! The status bar: who is acting with which role, the theme, the focused pane, then either the
//! command line, the filter being typed, a transient message or key hints from the keymap.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::{fit, one_line, put_line};
use crate::console::keys;
use crate::console::state::{CommandLine, Editing, State};
use crate::console::theme::{Role, Theme};
use crate::event::Level;

/// Shown in an empty command line.
const COMMAND_LINE_PLACEHOLDER: &str =
    "run PATH · cancel [TASK] · retry TASK · approve TASK · spawn AGENT · help · Tab completes";

/// The typed text with its cursor cell reversed, scrolled so the cursor stays in `width`.
fn command_line(
    line: &CommandLine,
    width: u16,
    text: Style,
    cursor: Style,
    placeholder: Style,
) -> Line<'static> {
    let chars: Vec<char> = line.text.chars().collect();
    let at = line.cursor.min(chars.len());
    if chars.is_empty() {
        let mut rest = COMMAND_LINE_PLACEHOLDER.chars();
        let first = rest.next().map(String::from).unwrap_or_default();
        return Line::from(vec![
            Span::styled(first, cursor.patch(placeholder).add_modifier(Modifier::REVERSED)),
            Span::styled(rest.collect::<String>(), placeholder),
        ]);
    }
    // Keep the cursor on screen: show the end of a line longer than the room.
    let room = usize::from(width).saturating_sub(1).max(1);
    let start = at.saturating_sub(room.saturating_sub(1));
    let before: String = chars[start..at].iter().collect();
    let under: String = chars.get(at).map_or_else(|| " ".to_owned(), char::to_string);
    let after: String = chars.iter().skip(at + 1).collect();
    Line::from(vec![
        Span::styled(before, text),
        Span::styled(under, cursor),
        Span::styled(after, text),
    ])
}

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
            let cursor = bar.add_modifier(Modifier::REVERSED);
            let mut line =
                command_line(&state.command_line, input.width, bar, cursor, on_bar(Role::Muted));
            // What Tab offered, after the text.
            if !state.command_line.choices.is_empty() {
                let choices = state.command_line.choices.join(" · ");
                line.spans.push(Span::styled(format!("   ⇥ {choices}"), on_bar(Role::Muted)));
            }
            put_line(buf, input, 0, &line);
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
        let gone = if state.attached { "│ ⚠ host gone " } else { "│ ⚠ runtime stopped " };
        spans.push(Span::styled(gone, on_bar(Role::Error)));
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
            reduce(
                &mut typing,
                Input::Action(Action::CommandLineEdit(crate::console::state::LineEdit::Insert(c))),
            );
        }
        assert_snapshot!("status_command_line_120", bar(&typing, 120));
        // Tab where the candidates differ: they follow the text.
        reduce(
            &mut typing,
            Input::Action(Action::CommandLineEdit(crate::console::state::LineEdit::DeleteToStart)),
        );
        for c in "re".chars() {
            reduce(
                &mut typing,
                Input::Action(Action::CommandLineEdit(crate::console::state::LineEdit::Insert(c))),
            );
        }
        reduce(&mut typing, Input::Action(Action::CompleteCommandLine));
        assert_snapshot!("status_command_line_choices_120", bar(&typing, 120));
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
