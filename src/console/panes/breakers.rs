//! The Breakers pane: per agent, the breaker's state (colour and word), failures against the
//! threshold, time until half-open, the last error, and call metrics with a health verdict.
//! Open breakers come first.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{Details, Pane, cell, duration, fit, one_line, pane_block, put_line, style_row};
use crate::console::state::{
    AgentMetrics, BreakerState, BreakerView, DEFAULT_BREAKER_THRESHOLD, Health, PaneId, State,
    health_word,
};
use crate::console::theme::{Role, Theme};
use crate::ids::AgentId;

/// Each agent takes three rows: breaker, failures and countdown, health and metrics.
const ROWS_PER_AGENT: u16 = 3;

/// Rows each agent takes in `area`: three when at least two agents fit that way, else one
/// compact row (name, breaker, failures, health glyph) so a short pane still lists agents.
fn rows_per_agent(area: Rect) -> u16 {
    if area.height.saturating_sub(2) >= 2 * ROWS_PER_AGENT { ROWS_PER_AGENT } else { 1 }
}

/// The compact row's right part: breaker glyph (and word unless closed), failures, health
/// glyph.
fn compact_status(
    breaker: &BreakerView,
    metrics: Option<&AgentMetrics>,
    consecutive: u32,
) -> Vec<(Role, String)> {
    let failures = match breaker.state {
        BreakerState::Closed => consecutive.min(breaker.threshold),
        _ => breaker.failures,
    };
    // Closed is the usual state: its glyph alone says it, leaving room for the name.
    let state = match breaker.state {
        BreakerState::Closed => breaker.state.glyph().to_owned(),
        other => format!("{} {}", other.glyph(), other.word()),
    };
    let mut parts = vec![
        (breaker_role(breaker.state), state),
        (Role::Muted, format!(" {failures}/{}", breaker.threshold)),
    ];
    if let Some(m) = metrics.filter(|m| m.calls.calls > 0) {
        let (glyph, role) = health_look(m.health(Some(breaker.state)));
        parts.push((role, format!(" {glyph}")));
    }
    parts
}

pub struct BreakersPane;

pub fn breaker_role(state: BreakerState) -> Role {
    match state {
        BreakerState::Closed => Role::Ok,
        BreakerState::Open => Role::Error,
        BreakerState::HalfOpen => Role::Warn,
    }
}

pub fn health_look(health: Health) -> (&'static str, Role) {
    match health {
        Health::Healthy => ("✓", Role::Ok),
        Health::Degraded => ("◐", Role::Warn),
        Health::Unhealthy => ("✗", Role::Error),
    }
}

fn breaker_line(breaker: &BreakerView, consecutive: u32, now_ms: u64) -> Vec<(Role, String)> {
    let role = breaker_role(breaker.state);
    let mut parts = vec![(role, format!("{} {}", breaker.state.glyph(), breaker.state.word()))];
    match breaker.state {
        BreakerState::Closed => {
            let failures = consecutive.min(breaker.threshold);
            parts.push((Role::Muted, format!(" · fails {failures}/{}", breaker.threshold)));
        }
        BreakerState::Open => {
            parts.push((
                Role::Error,
                format!(" · fails {}/{}", breaker.failures, breaker.threshold),
            ));
            let left = breaker.until_half_open_ms(now_ms).unwrap_or(0);
            let text = if left == 0 {
                " · half-open due".to_owned()
            } else {
                format!(" · half-open in {}", duration(left.div_ceil(1000) * 1000))
            };
            parts.push((Role::Warn, text));
        }
        BreakerState::HalfOpen => {
            parts.push((Role::Warn, format!(" · probing with {} calls", breaker.probes)));
        }
    }
    if breaker.state != BreakerState::Closed
        && let Some(error) = &breaker.last_error
    {
        parts.push((Role::Muted, format!(" · {}", one_line(error))));
    }
    parts
}

fn metrics_line(metrics: Option<&AgentMetrics>, breaker: BreakerState) -> Vec<(Role, String)> {
    let Some(m) = metrics.filter(|m| m.calls.calls > 0) else {
        return vec![(Role::Muted, "no calls yet".to_owned())];
    };
    let health = m.health(Some(breaker));
    let (glyph, role) = health_look(health);
    let mean = m.mean_duration_ms().map_or_else(|| "-".to_owned(), duration);
    let calls = m.calls.calls;
    vec![
        (role, format!("{glyph} {}", health_word(health))),
        (
            Role::Muted,
            // Compact enough for the narrow right column; Enter shows rates and counts.
            format!(" · {}/{calls} ok · {mean} avg", calls.saturating_sub(m.calls.errors)),
        ),
    ]
}

fn spans(parts: &[(Role, String)], theme: &Theme, width: usize) -> Line<'static> {
    let mut used = 0;
    let mut out = Vec::new();
    for (role, text) in parts {
        if used >= width {
            break;
        }
        let piece = fit(text, width - used);
        used += unicode_width::UnicodeWidthStr::width(piece.as_str());
        out.push(Span::styled(piece, theme.style(*role)));
    }
    Line::from(out)
}

impl Pane for BreakersPane {
    fn id(&self) -> PaneId {
        PaneId::Breakers
    }

    fn visible_rows(&self, _state: &State, area: Rect) -> usize {
        usize::from(area.height.saturating_sub(2) / rows_per_agent(area))
    }

    fn render(&self, state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let view = &state.breakers;
        let open = view.breakers.values().filter(|b| b.state == BreakerState::Open).count();
        let info = if open > 0 { Some(format!("{open} open")) } else { None };
        let block = pane_block(state, theme, PaneId::Breakers, area, info);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.is_empty() {
            return;
        }
        let rows = view.rows();
        if rows.is_empty() {
            let text = if view.cursor.filter.is_empty() {
                "no breaker activity yet"
            } else {
                "nothing matches the filter"
            };
            put_line(
                buf,
                inner,
                0,
                &Line::styled(fit(text, usize::from(inner.width)), theme.style(Role::Muted)),
            );
            return;
        }
        let width = usize::from(inner.width).saturating_sub(2);
        let visible = self.visible_rows(state, area);
        let selected_at = rows.iter().position(|a| Some(*a) == view.cursor.selected.as_ref());
        let offset = super::scrolled_offset(
            view.cursor.offset.min(rows.len().saturating_sub(1)),
            selected_at.unwrap_or(0),
            visible,
        );
        let default = BreakerView::default();
        let per_agent = rows_per_agent(area);
        if per_agent == 1 {
            // Compact rows align their status column to the widest one on screen.
            let shown: Vec<(&AgentId, Vec<(Role, String)>)> = rows
                .iter()
                .skip(offset)
                .take(visible)
                .map(|agent| {
                    let metrics = view.metrics.get(*agent);
                    let consecutive = metrics.map_or(0, |m| m.consecutive_failures);
                    let breaker = view.breakers.get(*agent).unwrap_or(&default);
                    (*agent, compact_status(breaker, metrics, consecutive))
                })
                .collect();
            let status_width = shown
                .iter()
                .map(|(_, status)| {
                    status
                        .iter()
                        .map(|(_, t)| unicode_width::UnicodeWidthStr::width(t.as_str()))
                        .sum()
                })
                .max()
                .unwrap_or(0)
                .min(width);
            let name_width = width.saturating_sub(status_width + 1);
            for (i, (agent, status)) in shown.iter().enumerate() {
                let is_selected = Some(offset + i) == selected_at;
                let mut line = vec![
                    Span::styled(if is_selected { "▸ " } else { "  " }, theme.style(Role::Accent)),
                    Span::styled(cell(agent.as_str(), name_width), theme.style(Role::Title)),
                    Span::raw(" "),
                ];
                line.extend(spans(status, theme, status_width).spans);
                put_line(buf, inner, i, &Line::from(line));
                if is_selected && state.focus == PaneId::Breakers {
                    style_row(buf, inner, i, theme.style(Role::Selection));
                }
            }
            return;
        }
        for (i, agent) in rows.iter().skip(offset).take(visible).enumerate() {
            let top = i * usize::from(ROWS_PER_AGENT);
            let is_selected = Some(offset + i) == selected_at;
            let breaker = view.breakers.get(*agent).unwrap_or(&default);
            let metrics = view.metrics.get(*agent);
            let consecutive = metrics.map_or(0, |m| m.consecutive_failures);
            let first = Line::from(vec![
                Span::styled(if is_selected { "▸ " } else { "  " }, theme.style(Role::Accent)),
                Span::styled(
                    fit(agent.as_str(), usize::from(inner.width).saturating_sub(2)),
                    theme.style(Role::Title),
                ),
            ]);
            put_line(buf, inner, top, &first);
            let second = spans(&breaker_line(breaker, consecutive, state.now_ms), theme, width);
            let third = spans(&metrics_line(metrics, breaker.state), theme, width);
            let indent = |line: Line<'static>| {
                let mut all = vec![Span::raw("  ")];
                all.extend(line.spans);
                Line::from(all)
            };
            put_line(buf, inner, top + 1, &indent(second));
            put_line(buf, inner, top + 2, &indent(third));
            if is_selected && state.focus == PaneId::Breakers {
                for r in 0..usize::from(ROWS_PER_AGENT) {
                    style_row(buf, inner, top + r, theme.style(Role::Selection));
                }
            }
        }
    }

    fn details(&self, state: &State) -> Option<Details> {
        let agent: &AgentId = state.breakers.cursor.selected.as_ref()?;
        let breaker = state.breakers.breakers.get(agent).cloned().unwrap_or_default();
        let metrics = state.breakers.metrics.get(agent).copied().unwrap_or_default();
        let label = |l: &str| (Role::Muted, format!("{l:<16}"));
        let mut lines = vec![
            vec![
                label("breaker"),
                (
                    breaker_role(breaker.state),
                    format!("{} {}", breaker.state.glyph(), breaker.state.word()),
                ),
            ],
            vec![
                label("failures"),
                (Role::Text, format!("{}/{}", breaker.failures, breaker.threshold)),
            ],
        ];
        if breaker.threshold == DEFAULT_BREAKER_THRESHOLD && breaker.opened_ms.is_none() {
            lines.push(vec![
                label(""),
                (Role::Muted, "threshold is the default until the breaker reports".to_owned()),
            ]);
        }
        if let Some(left) = breaker.until_half_open_ms(state.now_ms) {
            lines.push(vec![label("half-open in"), (Role::Warn, duration(left))]);
        }
        if let Some(error) = &breaker.last_error {
            lines.push(vec![label("last error"), (Role::Error, one_line(error))]);
        }
        if let Some(reason) = &breaker.closed_reason {
            lines.push(vec![label("closed because"), (Role::Text, one_line(reason))]);
        }
        let health = metrics.health(Some(breaker.state));
        let (glyph, role) = health_look(health);
        lines.push(vec![label("health"), (role, format!("{glyph} {}", health_word(health)))]);
        lines.push(vec![label("calls"), (Role::Text, metrics.calls.calls.to_string())]);
        lines.push(vec![label("errors"), (Role::Text, metrics.calls.errors.to_string())]);
        let recent = metrics.calls.recent_error_rate().unwrap_or(0.0) * 100.0;
        lines.push(vec![
            label("recent errors"),
            (
                Role::Text,
                format!(
                    "{} of the last {} ({recent:.0}%)",
                    metrics.calls.recent_errors, metrics.calls.recent_calls
                ),
            ),
        ]);
        lines.push(vec![
            label("failures in row"),
            (Role::Text, metrics.consecutive_failures.to_string()),
        ]);
        lines.push(vec![
            label("mean duration"),
            (Role::Text, metrics.mean_duration_ms().map_or_else(|| "-".to_owned(), duration)),
        ]);
        Some(Details { title: format!("Breaker {agent}"), lines })
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;

    use super::*;
    use crate::console::panes::testing::{self, Fixture};
    use crate::console::theme::bundled;

    #[test]
    fn snapshots() {
        for (name, fixture) in
            [("empty", Fixture::Empty), ("busy", Fixture::Busy), ("failed", Fixture::Failed)]
        {
            let state = testing::state(fixture, PaneId::Breakers);
            assert_snapshot!(
                format!("breakers_{name}_120x40"),
                testing::render_pane(&state, PaneId::Breakers, 120, 40)
            );
            assert_snapshot!(
                format!("breakers_{name}_40x10"),
                testing::render_pane(&state, PaneId::Breakers, 40, 10)
            );
            assert_snapshot!(
                format!("breakers_{name}_70x20"),
                testing::render_pane(&state, PaneId::Breakers, 70, 20)
            );
        }
    }

    #[test]
    fn open_breaker_is_the_error_colour_and_says_open() {
        let state = testing::state(Fixture::Failed, PaneId::Agents);
        for theme_name in ["dark", "light", "high-contrast"] {
            let theme = bundled(theme_name).expect("theme");
            let buffer = testing::pane_buffer(&state, &theme, PaneId::Breakers, 40, 20);
            let at = testing::find(&buffer, "○ OPEN").expect("open breaker");
            assert_eq!(buffer[at].fg, theme.style(Role::Error).fg.expect("colour"), "{theme_name}");
        }
        let mono = bundled("high-contrast").expect("theme").monochrome();
        let buffer = testing::pane_buffer(&state, &mono, PaneId::Breakers, 40, 20);
        assert!(testing::find(&buffer, "OPEN").is_some(), "the word carries the state");
        assert!(testing::find(&buffer, "✗ unhealthy").is_some());
    }
}
