//! The Pool pane: instance counts by state and the live instances with agent, state, task and
//! age. Only the visible rows are formatted, so a pool of thousands costs what fits on screen.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{Details, Pane, age, cell, fit, one_line, pane_block, put_line, style_row};
use crate::console::state::{InstanceState, InstanceView, PaneId, State};
use crate::console::theme::{Role, Theme};

pub struct PoolPane;

/// Glyph and role of an instance state; the glyph carries the meaning without colour.
pub fn look(state: InstanceState) -> (&'static str, Role) {
    match state {
        InstanceState::Working => ("▶", Role::Running),
        InstanceState::Reserved => ("◔", Role::Pending),
        InstanceState::Idle => ("○", Role::Ok),
    }
}

/// Rows above the list: counts, queue (when anyone waits), and the column header when the
/// pane leaves room for at least two instances under it.
fn header_rows(state: &State, area: Rect) -> (u16, bool) {
    let above = if state.pool.queued.is_empty() { 1 } else { 2 };
    let column_header = area.height.saturating_sub(2) >= above + 3;
    (above + u16::from(column_header), column_header)
}

impl Pane for PoolPane {
    fn id(&self) -> PaneId {
        PaneId::Pool
    }

    fn visible_rows(&self, state: &State, area: Rect) -> usize {
        usize::from(area.height.saturating_sub(2 + header_rows(state, area).0))
    }

    fn render(&self, state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let pool = &state.pool;
        let block = pane_block(
            state,
            theme,
            PaneId::Pool,
            area,
            Some(format!("{} live", pool.instances.len())),
        );
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.is_empty() {
            return;
        }
        let width = usize::from(inner.width);
        let muted = theme.style(Role::Muted);
        let counts = pool.counts();
        let count = |n: String, state: InstanceState, word: &str| {
            let (glyph, role) = look(state);
            [
                Span::styled(format!("{glyph} {n}"), theme.style(role)),
                Span::styled(format!(" {word}  "), muted),
            ]
        };
        let mut spans = Vec::new();
        if width >= 44 {
            spans.extend(count(counts.working.to_string(), InstanceState::Working, "working"));
            spans.extend(count(counts.reserved.to_string(), InstanceState::Reserved, "reserved"));
            spans.extend(count(counts.idle.to_string(), InstanceState::Idle, "idle"));
            spans.push(Span::styled(format!("✕ {} ended", counts.terminated), muted));
        } else {
            // Narrow: glyph and number only; the help overlay lists what the glyphs mean.
            for (n, state) in [
                (counts.working, InstanceState::Working),
                (counts.reserved, InstanceState::Reserved),
                (counts.idle, InstanceState::Idle),
            ] {
                let (glyph, role) = look(state);
                spans.push(Span::styled(format!("{glyph}{n} "), theme.style(role)));
            }
            spans.push(Span::styled(format!("✕{}", counts.terminated), muted));
        }
        put_line(buf, inner, 0, &Line::from(spans));
        let mut row = 1;
        if !pool.queued.is_empty() {
            let waiting: Vec<String> =
                pool.queued.iter().map(|(a, n)| format!("{a} ×{n}")).collect();
            let text = fit(&format!("⧗ queued: {}", waiting.join(", ")), width);
            put_line(buf, inner, row, &Line::styled(text, theme.style(Role::Warn)));
            row += 1;
        }

        // The id column fits the largest id; narrow panes show the state as its glyph only and
        // wide ones add the word and the task.
        let id_width = pool.instances.keys().next_back().map_or(2, |id| id.to_string().len()) + 1;
        let words = width >= 36;
        let task_width = if width >= 50 { 16 } else { 0 };
        let state_width = if words { 10 } else { 2 };
        let agent_width = width.saturating_sub(2 + id_width + state_width + task_width + 5).max(3);
        let mut header = vec![
            Span::styled(format!("  {}", cell("ID", id_width)), muted),
            Span::styled(cell("AGENT", agent_width), muted),
            Span::styled(cell(if words { " STATE" } else { " S" }, state_width), muted),
        ];
        if task_width > 0 {
            header.push(Span::styled(cell("TASK", task_width), muted));
        }
        header.push(Span::styled(format!("{:>5}", "AGE"), muted));
        if header_rows(state, area).1 {
            put_line(buf, inner, row, &Line::from(header));
            row += 1;
        }

        let rows = pool.rows();
        if rows.is_empty() {
            let text = if pool.cursor.filter.is_empty() {
                "no live instances"
            } else {
                "nothing matches the filter"
            };
            put_line(buf, inner, row, &Line::styled(format!("  {text}"), muted));
            return;
        }
        let visible = self.visible_rows(state, area);
        let selected_at = rows.iter().position(|i| Some(i.id) == pool.cursor.selected);
        let offset = super::scrolled_offset(
            pool.cursor.offset.min(rows.len().saturating_sub(1)),
            selected_at.unwrap_or(0),
            visible,
        );
        for (i, instance) in rows.iter().skip(offset).take(visible).enumerate() {
            let is_selected = Some(offset + i) == selected_at;
            let (glyph, role) = look(instance.state);
            let state_text = if words {
                format!(" {glyph} {}", instance.state.as_str())
            } else {
                format!(" {glyph}")
            };
            let mut spans = vec![
                Span::styled(if is_selected { "▸ " } else { "  " }, theme.style(Role::Accent)),
                Span::styled(cell(&instance.id.to_string(), id_width), muted),
                Span::styled(cell(instance.agent.as_str(), agent_width), theme.style(Role::Text)),
                Span::styled(cell(&state_text, state_width), theme.style(role)),
            ];
            if task_width > 0 {
                let task = instance.task.as_ref().map_or("-", |t| t.as_str());
                spans
                    .push(Span::styled(cell(&one_line(task), task_width), theme.style(Role::Text)));
            }
            let age_text = age(state.now_ms.saturating_sub(instance.created_ms));
            spans.push(Span::styled(format!("{age_text:>5}"), muted));
            put_line(buf, inner, row + i, &Line::from(spans));
            if is_selected && state.focus == PaneId::Pool {
                style_row(buf, inner, row + i, theme.style(Role::Selection));
            }
        }
    }

    fn details(&self, state: &State) -> Option<Details> {
        let id = state.pool.cursor.selected?;
        let instance: &InstanceView = state.pool.instances.get(&id)?;
        let label = |l: &str| (Role::Muted, format!("{l:<10}"));
        let (glyph, role) = look(instance.state);
        let lines = vec![
            vec![label("instance"), (Role::Text, instance.id.to_string())],
            vec![label("agent"), (Role::Text, instance.agent.to_string())],
            vec![label("state"), (role, format!("{glyph} {}", instance.state.as_str()))],
            vec![
                label("task"),
                (
                    Role::Text,
                    instance.task.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
                ),
            ],
            vec![label("age"), (Role::Text, age(state.now_ms.saturating_sub(instance.created_ms)))],
        ];
        Some(Details { title: format!("Instance {}", instance.id), lines })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use insta::assert_snapshot;

    use super::*;
    use crate::console::panes::testing::{self, Fixture, T0};
    use crate::console::reducer::{Input, reduce};
    use crate::event::{Envelope, Event};
    use crate::ids::{AgentId, InstanceId};

    #[test]
    fn snapshots() {
        for (name, fixture) in [("empty", Fixture::Empty), ("busy", Fixture::Busy)] {
            let state = testing::state(fixture, PaneId::Pool);
            assert_snapshot!(
                format!("pool_{name}_120x40"),
                testing::render_pane(&state, PaneId::Pool, 120, 40)
            );
            assert_snapshot!(
                format!("pool_{name}_160x45"),
                testing::render_pane(&state, PaneId::Pool, 160, 45)
            );
            assert_snapshot!(
                format!("pool_{name}_40x10"),
                testing::render_pane(&state, PaneId::Pool, 40, 10)
            );
            assert_snapshot!(
                format!("pool_{name}_70x20"),
                testing::render_pane(&state, PaneId::Pool, 70, 20)
            );
        }
    }

    #[test]
    fn thousand_instances_scroll_to_the_selection() {
        let mut state = testing::state(Fixture::Empty, PaneId::Pool);
        for i in 1..=1000 {
            let event =
                Event::InstanceReserved { instance: InstanceId(i), agent: AgentId::new("worker") };
            reduce(
                &mut state,
                Input::Event(Arc::new(Envelope { seq: i, ts_ms: T0, run_id: None, event })),
            );
        }
        reduce(
            &mut state,
            Input::Event(Arc::new(Envelope {
                seq: 1001,
                ts_ms: T0,
                run_id: None,
                event: Event::InstanceQueued { agent: AgentId::new("worker"), waiting: 4 },
            })),
        );
        reduce(&mut state, Input::Action(crate::console::keys::Action::SelectLast));
        let shown = testing::render_pane(&state, PaneId::Pool, 120, 40).to_string();
        assert!(shown.contains("▸ i1000"), "{shown}");
        assert!(shown.contains("◔1000"), "{shown}");
        assert!(shown.contains("⧗ queued: worker ×4"), "{shown}");
    }
}
