//! Panes and layers. Each pane is a component: `render` draws from borrowed state and the theme
//! and cannot fail; `handle_key` maps a key to an [`Action`] and changes nothing. Layers
//! (help, details, prompts) are drawn above the panes by [`render_screen`].

pub mod agents;
pub mod approval;
pub mod audit;
pub mod breakers;
pub mod conflict;
pub mod conflicts;
pub mod dag;
pub mod header;
pub mod help;
pub mod pool;
pub mod runs;
pub mod status;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Widget, Wrap};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::keys::{self, Action, Scope};
use super::layout::{MIN_HEIGHT, MIN_WIDTH, ScreenLayout, centered};
use super::state::{Overlay, PaneId, State};
use super::theme::{Role, Theme};

/// Styled text spans by role: how details are described without holding a theme.
pub type RoleLine = Vec<(Role, String)>;

/// The content of a details overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    pub title: String,
    pub lines: Vec<RoleLine>,
}

/// A pane: draws itself and says what keys mean while it has focus.
pub trait Pane: Sync {
    fn id(&self) -> PaneId;

    /// Draw into `area` of `buf`. Never fails; any size, including zero, is fine.
    fn render(&self, state: &State, theme: &Theme, area: Rect, buf: &mut Buffer);

    /// Item rows visible when the pane has `area` (for paging and scrolling).
    fn visible_rows(&self, state: &State, area: Rect) -> usize;

    /// Details of the selected item, if there is one.
    fn details(&self, state: &State) -> Option<Details>;

    /// The pane's own keys (from the keymap), for the role.
    fn handle_key(&self, state: &State, key: &KeyEvent) -> Option<Action> {
        keys::bindings(Scope::Pane(self.id()), state.role)
            .find(|b| b.keys.iter().any(|k| k.matches(key)))
            .map(|b| b.action)
    }
}

/// The component of a pane.
pub fn pane(id: PaneId) -> &'static dyn Pane {
    match id {
        PaneId::Agents => &agents::AgentsPane,
        PaneId::Pool => &pool::PoolPane,
        PaneId::Dag => &dag::DagPane,
        PaneId::Breakers => &breakers::BreakersPane,
        PaneId::Audit => &audit::AuditPane,
    }
}

pub fn visible_rows(state: &State, id: PaneId) -> usize {
    pane(id).visible_rows(state, state.layout.pane(id))
}

pub fn has_details(state: &State, id: PaneId) -> bool {
    pane(id).details(state).is_some()
}

/// The smallest change to `offset` that keeps row `selected` among `rows` visible rows.
pub fn scrolled_offset(offset: usize, selected: usize, rows: usize) -> usize {
    if rows == 0 || selected < offset {
        selected
    } else if selected >= offset + rows {
        selected + 1 - rows
    } else {
        offset
    }
}

/// Draw a whole frame.
pub fn draw(frame: &mut Frame<'_>, state: &State, theme: &Theme) {
    let area = frame.area();
    render_screen(state, theme, area, frame.buffer_mut());
}

/// Draw the screen into any buffer (the app's frame, tests, benchmarks).
pub fn render_screen(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    let area = area.intersection(buf.area);
    let layout = ScreenLayout::compute(area);
    if layout.too_small {
        render_too_small(theme, area, buf);
        return;
    }
    header::render(state, theme, layout.header, buf);
    for id in PaneId::ORDER {
        pane(id).render(state, theme, layout.pane(id), buf);
    }
    status::render(state, theme, layout.status, buf);
    match state.overlay {
        Some(Overlay::Help { scroll }) => help::render(state, theme, area, scroll, buf),
        Some(Overlay::Details { pane: id, scroll }) => {
            if let Some(details) = pane(id).details(state) {
                render_details(&details, theme, area, scroll, buf);
            }
        }
        Some(Overlay::Runs) => runs::render(state, theme, area, buf),
        Some(Overlay::Conflicts) => conflicts::render(state, theme, area, buf),
        None => {}
    }
    approval::render(state, theme, area, buf);
}

fn render_too_small(theme: &Theme, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let text = format!(
        "Flightdeck needs at least {MIN_WIDTH}x{MIN_HEIGHT} (now {}x{})",
        area.width, area.height
    );
    let lines = u16::try_from(text.width().div_ceil(usize::from(area.width.max(1)))).unwrap_or(1);
    let target = centered(area, area.width, lines);
    Clear.render(area, buf);
    Paragraph::new(text)
        .style(theme.style(Role::Warn))
        .centered()
        .wrap(Wrap { trim: true })
        .render(target, buf);
}

fn render_details(details: &Details, theme: &Theme, area: Rect, scroll: usize, buf: &mut Buffer) {
    // As large as the content, within the screen less a margin.
    let widest = details
        .lines
        .iter()
        .map(|line| line.iter().map(|(_, text)| text.width()).sum::<usize>())
        .chain([details.title.width() + 4, 30])
        .max()
        .unwrap_or(30);
    let width =
        u16::try_from(widest + 2).unwrap_or(u16::MAX).min(area.width.saturating_sub(8).min(100));
    let height = u16::try_from(details.lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height.saturating_sub(4));
    let popup = centered(area, width, height);
    let block = overlay_block(theme, &details.title, "Esc close · ↑↓ scroll");
    let inner = block.inner(popup);
    Clear.render(popup, buf);
    block.render(popup, buf);
    let rows = usize::from(inner.height);
    let scroll = scroll.min(details.lines.len().saturating_sub(rows));
    for (row, line) in details.lines.iter().skip(scroll).take(rows).enumerate() {
        let line = role_line(line, theme);
        put_line(buf, inner, row, &line);
    }
}

/// A bordered block for overlays, with a title and a key hint at the bottom.
pub fn overlay_block<'a>(theme: &Theme, title: &str, hint: &str) -> Block<'a> {
    Block::bordered()
        .border_type(BorderType::Double)
        .border_style(theme.style(Role::FocusedBorder))
        .style(theme.style(Role::Overlay))
        .title(Line::from(Span::styled(format!(" {title} "), theme.style(Role::Title))))
        .title_bottom(
            Line::from(Span::styled(format!(" {hint} "), theme.style(Role::Muted))).right_aligned(),
        )
}

/// The border of a pane: thick and marked when focused, with the filter in the title and
/// `info` (muted) at the top right.
pub fn pane_block<'a>(
    state: &State,
    theme: &Theme,
    id: PaneId,
    area: Rect,
    info: Option<String>,
) -> Block<'a> {
    let info = info.map(|text| vec![Span::styled(format!(" {text} "), theme.style(Role::Muted))]);
    pane_block_spans(state, theme, id, area, info.unwrap_or_default())
}

/// [`pane_block`] with styled spans at the top right.
pub fn pane_block_spans<'a>(
    state: &State,
    theme: &Theme,
    id: PaneId,
    area: Rect,
    info: Vec<Span<'a>>,
) -> Block<'a> {
    let focused = state.focus == id;
    let mut title = vec![Span::styled(
        format!("{}{} ", if focused { " ▸ " } else { " " }, id.title()),
        theme.style(Role::Title),
    )];
    let filter = state.filter(id);
    if !filter.is_empty() || (focused && state.editing == super::state::Editing::Filter) {
        title.push(Span::styled(format!("/{} ", one_line(filter)), theme.style(Role::Accent)));
    }
    let mut block = Block::bordered()
        .border_type(if focused { BorderType::Thick } else { BorderType::Rounded })
        .border_style(theme.style(if focused { Role::FocusedBorder } else { Role::Border }))
        .title(Line::from(title));
    // The info goes only where it does not run into the title.
    let title_width: usize = block_title_width(state, id);
    let info_width: usize = info.iter().map(Span::width).sum();
    if !info.is_empty() && title_width + info_width + 3 <= usize::from(area.width) {
        block = block.title(Line::from(info).right_aligned());
    }
    block
}

fn block_title_width(state: &State, id: PaneId) -> usize {
    let filter = state.filter(id);
    let filter_width = if filter.is_empty() { 0 } else { one_line(filter).width() + 2 };
    id.title().width() + 4 + filter_width
}

/// Convert role-tagged spans to a styled line.
pub fn role_line(spans: &RoleLine, theme: &Theme) -> Line<'static> {
    Line::from(
        spans
            .iter()
            .map(|(role, text)| Span::styled(text.clone(), theme.style(*role)))
            .collect::<Vec<_>>(),
    )
}

/// Write a line at `row` of `area`, clipped to the area. Rows outside are ignored.
pub fn put_line(buf: &mut Buffer, area: Rect, row: usize, line: &Line<'_>) {
    let Ok(row) = u16::try_from(row) else { return };
    if row >= area.height || area.width == 0 {
        return;
    }
    let area = area.intersection(buf.area);
    if area.is_empty() || row >= area.height {
        return;
    }
    buf.set_line(area.x, area.y + row, line, area.width);
}

/// Paint a style over one row of `area` (selection highlight).
pub fn style_row(buf: &mut Buffer, area: Rect, row: usize, style: ratatui::style::Style) {
    let Ok(row) = u16::try_from(row) else { return };
    if row < area.height {
        let rect = Rect { y: area.y + row, height: 1, ..area }.intersection(buf.area);
        buf.set_style(rect, style);
    }
}

/// One line of display text: control characters and line breaks never reach the terminal.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str(" ⏎ "),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `text` in lines of at most `width` columns, broken between words, at most `most` lines;
/// a word longer than a line, or text beyond the last line, is cut with `…`.
pub fn wrap_words(text: &str, width: usize, most: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let needed =
            if current.is_empty() { word.width() } else { current.width() + 1 + word.width() };
        if needed <= width || current.is_empty() {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        } else {
            lines.push(std::mem::take(&mut current));
            current.push_str(word);
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    let cut = lines.len() > most;
    lines.truncate(most);
    for line in &mut lines {
        *line = fit(line, width);
    }
    if cut && let Some(last) = lines.last_mut() {
        *last = fit(&format!("{last} …"), width);
    }
    lines
}

/// Cut `text` to `width` columns, ending with `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// [`fit`] then pad with spaces to exactly `width` columns.
pub fn cell(text: &str, width: usize) -> String {
    let mut out = fit(text, width);
    let used = out.width();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

/// A duration for people: `850ms`, `1.2s`, `42s`, `3m05s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        10_000..60_000 => format!("{}s", ms / 1000),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// An age in its largest unit: `12s`, `3m`, `1h`.
pub fn age(ms: u64) -> String {
    match ms {
        0..60_000 => format!("{}s", ms / 1000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        _ => format!("{}h", ms / 3_600_000),
    }
}

/// Time of day (UTC) of a Unix timestamp in milliseconds: `14:03:22`.
pub fn clock(ts_ms: u64) -> String {
    let secs = ts_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::testing::{self, Fixture};
    use super::*;
    use crate::console::keys::Action;
    use crate::console::reducer::{Input, reduce};

    #[test]
    fn whole_screen_snapshots() {
        let theme = testing::theme();
        for (name, fixture) in
            [("empty", Fixture::Empty), ("busy", Fixture::Busy), ("failed", Fixture::Failed)]
        {
            for (w, h) in [(160, 45), (120, 40), (60, 16)] {
                let state = testing::state_sized(fixture, PaneId::Dag, w, h);
                assert_snapshot!(
                    format!("screen_{name}_{w}x{h}"),
                    testing::render_screen(&state, &theme, w, h)
                );
            }
        }
        let state = testing::state_sized(Fixture::Busy, PaneId::Dag, 59, 15);
        assert_snapshot!("screen_too_small_59x15", testing::render_screen(&state, &theme, 59, 15));
    }

    #[test]
    fn details_overlay_snapshots() {
        let theme = testing::theme();
        for pane in PaneId::ORDER {
            let fixture = if pane == PaneId::Pool { Fixture::Busy } else { Fixture::Failed };
            let mut state = testing::state(fixture, pane);
            reduce(&mut state, Input::Action(Action::OpenDetails));
            assert!(matches!(state.overlay, Some(Overlay::Details { .. })), "{pane:?}");
            let name = pane.title().to_lowercase();
            assert_snapshot!(
                format!("details_{name}_120x40"),
                testing::render_screen(&state, &theme, 120, 40)
            );
        }
    }

    #[test]
    fn every_size_renders_without_panicking() {
        let theme = testing::theme();
        for fixture in [Fixture::Empty, Fixture::Prompt, Fixture::Failed] {
            let mut state = testing::state(fixture, PaneId::Dag);
            reduce(&mut state, Input::Action(Action::ToggleHelp));
            for w in [0, 1, 2, 5, 10, 20, 39, 40, 59, 60, 61, 80, 119, 200] {
                for h in [0, 1, 2, 3, 5, 9, 15, 16, 17, 30, 60] {
                    reduce(&mut state, Input::Resize { width: w, height: h });
                    let mut buffer = Buffer::empty(Rect::new(0, 0, w, h));
                    render_screen(&state, &theme, buffer.area, &mut buffer);
                }
            }
        }
        let shown =
            testing::render_screen(&testing::state(Fixture::Busy, PaneId::Dag), &theme, 1, 1);
        assert_eq!(shown.buffer().area, Rect::new(0, 0, 1, 1));
    }

    #[test]
    fn text_helpers_fit_and_format() {
        assert_eq!(fit("backend-architect", 8), "backend…");
        assert_eq!(fit("ok", 8), "ok");
        assert_eq!(cell("ab", 4), "ab  ");
        assert_eq!(one_line("a\nb\tc\u{1b}[2J"), "a ⏎ b c[2J");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(1_250), "1.2s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(61_000), "1m");
        assert_eq!(clock(1_700_000_000_123), "22:13:20");
        assert_eq!(scrolled_offset(0, 25, 10), 16);
        assert_eq!(scrolled_offset(16, 20, 10), 16);
        assert_eq!(scrolled_offset(16, 3, 10), 3);
    }
}
