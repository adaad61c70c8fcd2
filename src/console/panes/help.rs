//! The help overlay, generated from the keymap and the command table: what is listed is what
//! works, for this role. Keys that change runtime state are marked `!`.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::{Clear, Widget};
use unicode_width::UnicodeWidthStr;

use super::{RoleLine, overlay_block, put_line, role_line, wrap_words};
use crate::console::command_line::COMMANDS;
use crate::console::keys::{self, EDITING_KEYS, Scope};
use crate::console::layout::centered;
use crate::console::state::{BreakerState, PaneId, State, StatusRole, TaskStatus, UserRole};
use crate::console::theme::{Role, Theme};

/// Width of the key column.
const KEYS: usize = 16;
/// Width of the command column (`approve TASK [NOTE]`).
const COMMAND: usize = 21;

/// Every line of help for the state's role.
pub fn lines(state: &State) -> Vec<RoleLine> {
    let mut out: Vec<RoleLine> = Vec::new();
    let section = |out: &mut Vec<RoleLine>, title: &str| {
        if !out.is_empty() {
            out.push(Vec::new());
        }
        out.push(vec![(Role::Title, title.to_owned())]);
    };
    let mut scopes = vec![Scope::Global, Scope::Lists];
    scopes.extend(PaneId::ORDER.map(Scope::Pane));
    if state.can_review() {
        scopes.push(Scope::Approval);
    }
    scopes.push(Scope::Conflict);
    scopes.push(Scope::Confirm);
    if state.replay.is_some() {
        scopes.insert(0, Scope::Replay);
    } else {
        scopes.push(Scope::Runs);
    }
    scopes.push(Scope::Conflicts);
    for scope in scopes {
        let bindings: Vec<_> = keys::bindings(scope, state.role).collect();
        if bindings.is_empty() {
            continue;
        }
        section(&mut out, scope.title());
        for binding in bindings {
            let (mark, role) =
                if binding.danger { ("! ", Role::Danger) } else { ("  ", Role::Accent) };
            out.push(vec![
                (role, format!("{mark}{:<KEYS$}", binding.label())),
                (Role::Text, binding.description.to_owned()),
            ]);
        }
    }
    section(&mut out, "Typing (command line and filter)");
    for (key, description) in EDITING_KEYS {
        out.push(vec![
            (Role::Accent, format!("  {key:<KEYS$}")),
            (Role::Text, (*description).to_owned()),
        ]);
    }
    section(&mut out, "Commands (press : first)");
    for command in COMMANDS.iter().filter(|c| c.permission.is_none_or(|p| state.role.allows(p))) {
        let role = if command.permission.is_some() { Role::Danger } else { Role::Accent };
        let mark = if command.permission.is_some() { "! " } else { "  " };
        out.push(vec![
            (
                role,
                format!(
                    "{mark}{:<COMMAND$}",
                    format!("{} {}", command.name, command.args).trim_end()
                ),
            ),
            (Role::Text, command.description.to_owned()),
        ]);
    }
    section(&mut out, "Task status");
    let statuses = [
        TaskStatus::Pending,
        TaskStatus::Ready,
        TaskStatus::AwaitingApproval,
        TaskStatus::Running,
        TaskStatus::Retrying,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Cancelled,
    ];
    for chunk in statuses.chunks(3) {
        let mut line = vec![(Role::Text, "  ".to_owned())];
        for status in chunk {
            line.push((status.role(), format!("{} {:<20}", status.glyph(), status.word())));
        }
        out.push(line);
    }
    if state.replay.is_some() {
        out.push(vec![
            (Role::Danger, format!("  {:<KEYS$}", super::dag::SIDE_EFFECT_MARK.trim_start())),
            (
                Role::Text,
                "after a task: it ran on a real backend (process, coding agent, HTTP) and may \
                 have changed things outside the run; a replay runs nothing"
                    .to_owned(),
            ),
        ]);
    }
    section(&mut out, "Breakers");
    let mut line = vec![(Role::Text, "  ".to_owned())];
    for (state, role) in [
        (BreakerState::Closed, Role::Ok),
        (BreakerState::HalfOpen, Role::Warn),
        (BreakerState::Open, Role::Error),
    ] {
        line.push((role, format!("{} {:<20}", state.glyph(), state.word())));
    }
    out.push(line);
    if state.role != UserRole::Viewer {
        out.push(vec![(
            Role::Muted,
            "  ! marks keys and commands that change the runtime; the gate decides who may."
                .to_owned(),
        )]);
    }
    out
}

pub fn render(state: &State, theme: &Theme, area: Rect, scroll: usize, buf: &mut Buffer) {
    let popup =
        centered(area, area.width.saturating_sub(4).min(140), area.height.saturating_sub(2));
    if popup.is_empty() {
        return;
    }
    let block = overlay_block(theme, "Help", "Esc close · ↑↓ scroll");
    let inner = block.inner(popup);
    Clear.render(popup, buf);
    block.render(popup, buf);
    // Wide screens get two columns, split at the section boundary nearest the middle.
    let two = inner.width >= 96;
    let column = usize::from(if two { inner.width / 2 } else { inner.width }).saturating_sub(1);
    let lines: Vec<RoleLine> = lines(state).iter().flat_map(|line| wrapped(line, column)).collect();
    let columns: Vec<&[RoleLine]> = if two {
        let middle = lines.len() / 2;
        let split = (0..lines.len())
            .filter(|i| lines[*i].is_empty())
            .min_by_key(|i| i.abs_diff(middle))
            .map_or(middle, |i| i + 1);
        vec![&lines[..split], &lines[split..]]
    } else {
        vec![&lines[..]]
    };
    let count = u16::try_from(columns.len()).unwrap_or(1);
    let width = inner.width / count;
    let rows = usize::from(inner.height);
    let longest = columns.iter().map(|c| c.len()).max().unwrap_or(0);
    let scroll = scroll.min(longest.saturating_sub(rows));
    for (i, column) in columns.iter().enumerate() {
        let x = inner.x + width * u16::try_from(i).unwrap_or(0);
        let area = Rect { x, width: width.saturating_sub(1), ..inner };
        for (row, line) in column.iter().skip(scroll).take(rows).enumerate() {
            put_line(buf, area, row, &role_line(line, theme));
        }
    }
}

/// A key's line whose description is wider than `width`: the description in lines under
/// itself, after the key's column. Any other line as it is.
fn wrapped(line: &RoleLine, width: usize) -> Vec<RoleLine> {
    let [(key_role, key), (role, description)] = line.as_slice() else {
        return vec![line.clone()];
    };
    let indent = key.width();
    let room = width.saturating_sub(indent);
    if indent + description.width() <= width || room < 12 {
        return vec![line.clone()];
    }
    wrap_words(description, room, usize::MAX)
        .into_iter()
        .enumerate()
        .map(|(at, piece)| {
            let lead =
                if at == 0 { (*key_role, key.clone()) } else { (Role::Text, " ".repeat(indent)) };
            vec![lead, (*role, piece)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::console::keys::Action;
    use crate::console::panes::testing::{self, Fixture};
    use crate::console::reducer::{Input, reduce};

    #[test]
    fn snapshots() {
        let theme = testing::theme();
        let mut state = testing::state(Fixture::Busy, PaneId::Dag);
        reduce(&mut state, Input::Action(Action::ToggleHelp));
        assert_snapshot!("help_admin_120x40", testing::render_screen(&state, &theme, 120, 40));
        assert_snapshot!("help_admin_60x16", testing::render_screen(&state, &theme, 60, 16));
        state.role = UserRole::Viewer;
        assert_snapshot!("help_viewer_120x40", testing::render_screen(&state, &theme, 120, 40));
    }

    #[test]
    fn a_long_description_wraps_under_itself_and_loses_no_word() {
        let mut state = testing::state(Fixture::Busy, PaneId::Dag);
        state.role = UserRole::Admin;
        let text = |lines: &[RoleLine]| -> Vec<String> {
            lines
                .iter()
                .flat_map(|line| line.iter().map(|(_, t)| t.clone()))
                .flat_map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        };
        let all = lines(&state);
        for width in [44, 57, 69] {
            let every: Vec<RoleLine> = all.iter().flat_map(|l| wrapped(l, width)).collect();
            assert!(every.len() > all.len(), "width {width}: something wrapped");
            assert_eq!(text(&every), text(&all), "width {width}: every word, in order");
            // A key's lines fit (the status and breaker legends are laid out as they are).
            for line in all.iter().filter(|line| line.len() == 2) {
                for piece in wrapped(line, width) {
                    let used: usize = piece.iter().map(|(_, t)| t.width()).sum();
                    assert!(used <= width, "width {width}: {piece:?}");
                }
            }
        }
    }

    #[test]
    fn viewers_see_no_dangerous_keys_or_commands() {
        let mut state = testing::state(Fixture::Empty, PaneId::Dag);
        state.role = UserRole::Viewer;
        let text: String = lines(&state).iter().flatten().map(|(_, t)| t.as_str()).collect();
        assert!(!text.contains("! "), "{text}");
        assert!(text.contains("quit"));
        assert!(!text.contains("cancel the selected task"));
        state.role = UserRole::Admin;
        let text: String = lines(&state).iter().flatten().map(|(_, t)| t.as_str()).collect();
        assert!(text.contains("! c "), "{text}");
    }
}
