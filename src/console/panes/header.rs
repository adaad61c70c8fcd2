//! The run header: workflow, status, progress N/M with a gauge, elapsed time, pending
//! approvals and the SIMULATED label.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::{fit, one_line, put_line};
use crate::console::state::{RunView, State};
use crate::console::theme::{Role, Theme};
use crate::event::RunStatus;
use crate::model::TaskCounts;
use crate::words::plural;

/// Status word, glyph and role of a run.
pub fn run_status(run: &RunView) -> (&'static str, Role) {
    match run.outcome.map(|o| o.status) {
        // Read from the store, not followed: it stopped without an end (or goes on elsewhere).
        None if run.from_store => ("↯ interrupted", Role::Warn),
        // Its own state: a person holds the run up, not the agents.
        None if run.waits_for_a_person() => ("⏸ waiting for a person", Role::Warn),
        None => ("▶ running", Role::Running),
        Some(RunStatus::Succeeded) => ("✓ succeeded", Role::Ok),
        Some(RunStatus::Failed) => ("✗ failed", Role::Error),
        Some(RunStatus::Cancelled) => ("■ cancelled", Role::Warn),
    }
}

/// The tasks that ended without succeeding, as the Runs list marks them ("✗ 2 failed · ■ 6
/// cancelled"), in the colour of the worst; `None` when there are none.
fn unsuccessful(counts: &TaskCounts) -> Option<(String, Role)> {
    let words: Vec<String> = [
        ("✗", counts.failed, "failed"),
        ("⊘", counts.skipped, "skipped"),
        ("■", counts.cancelled, "cancelled"),
    ]
    .into_iter()
    .filter(|(_, n, _)| *n > 0)
    .map(|(mark, n, word)| format!("{mark} {n} {word}"))
    .collect();
    let role = if counts.failed > 0 { Role::Error } else { Role::Warn };
    (!words.is_empty()).then(|| (words.join(" · "), role))
}

/// What waits for a person, across runs: approvals and conflicts between agents.
fn waiting_words((approvals, conflicts): (usize, usize)) -> Option<String> {
    match (approvals, conflicts) {
        (0, 0) => None,
        (n, 0) => Some(format!("⏸ {n} awaiting approval")),
        (0, n) => Some(format!("⏸ {} to decide", plural(n, "conflict"))),
        (a, c) => Some(format!(
            "⏸ {} waiting for a person: {}, {}",
            a + c,
            plural(a, "approval"),
            plural(c, "conflict")
        )),
    }
}

/// `mm:ss`, or `h:mm:ss` past an hour.
pub fn elapsed(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

pub fn render(state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    buf.set_style(area, theme.style(Role::Header));
    let muted = theme.style(Role::Muted);
    let mut left = vec![
        Span::styled(" ✈ Flightdeck", theme.style(Role::Accent)),
        Span::styled("  │  ", muted),
    ];
    if let Some(cursor) = state.replay {
        // Read-only and in the past: say so first, with the cursor's time.
        let playing = match cursor.playing {
            Some(speed) => format!(" · playing {speed}×"),
            None => " · paused".to_owned(),
        };
        left.push(Span::styled(
            format!("REPLAY {} UTC{playing}", super::clock(cursor.at_ms)),
            theme.style(Role::Warn),
        ));
        left.push(Span::styled(format!(" · {}/{}", cursor.position, cursor.total), muted));
        left.push(Span::styled("  │  ", muted));
    }
    let Some(run) = state.run() else {
        left.push(Span::styled("no run", theme.style(Role::Text)));
        let note = if state.replay.is_some() {
            "  ·  the run has not started at the cursor"
        } else {
            "  ·  agents, pool and breakers are live"
        };
        left.push(Span::styled(note, muted));
        put_line(buf, area, 0, &Line::from(left));
        return;
    };
    let (mut status, role) = run_status(run);
    let waiting = waiting_words(state.decisions_waiting());
    if waiting.is_some() && run.waits_for_a_person() {
        // The right side says for what ("1 conflict to decide"): no need to say it twice.
        status = "⏸ waiting";
    }
    left.push(Span::styled(fit(&one_line(&run.workflow), 28), theme.style(Role::Header)));
    left.push(Span::raw("  "));
    left.push(Span::styled(status, theme.style(role)));

    let counts = run.counts();
    let (done, total) = (counts.finished(), run.tasks.len());
    // Parts of the right side, with how much each is worth keeping on a narrow screen.
    let mut parts: Vec<(u8, Vec<Span<'static>>)> = Vec::new();
    parts.push((6, vec![Span::styled(format!("{done}/{total}"), theme.style(Role::Text))]));
    // The gauge fills with every task that ended; those that ended without succeeding are
    // drawn apart (failed, then skipped or cancelled), so a cancelled run's 100% is not read
    // as a finished one.
    let gauge_width = usize::from(area.width / 6).clamp(6, 30);
    let cells = |n: usize| (gauge_width * n).checked_div(total).unwrap_or(0);
    let (ok, failed) = (cells(counts.succeeded), cells(counts.succeeded + counts.failed));
    let filled = cells(done);
    let percent = (done * 100).checked_div(total).unwrap_or(0);
    parts.push((
        2,
        vec![
            Span::raw(" "),
            Span::styled("━".repeat(ok), theme.style(Role::GaugeFilled)),
            Span::styled("━".repeat(failed - ok), theme.style(Role::Error)),
            Span::styled("━".repeat(filled - failed), theme.style(Role::Warn)),
            Span::styled("─".repeat(gauge_width - filled), theme.style(Role::GaugeEmpty)),
            Span::styled(format!(" {percent:>3}%"), muted),
        ],
    ));
    if let Some((text, role)) = unsuccessful(&counts) {
        parts.push((1, vec![Span::styled("  ", muted), Span::styled(text, theme.style(role))]));
    }
    parts.push((
        5,
        vec![
            Span::styled("  │  ", muted),
            Span::styled(
                format!("⏱ {}", elapsed(run.elapsed_ms(state.now_ms))),
                theme.style(Role::Text),
            ),
        ],
    ));
    if let Some(waiting) = waiting {
        parts.push((
            4,
            vec![Span::styled("  │  ", muted), Span::styled(waiting, theme.style(Role::Warn))],
        ));
    }
    if let Some(spent) = run.spend.describe() {
        let role = if run.budget_note.is_some() { Role::Warn } else { Role::Text };
        let text = match &run.budget_note {
            Some(note) => format!("$ {spent} · {note}"),
            None => format!("$ {spent}"),
        };
        parts.push((3, vec![Span::styled("  │  ", muted), Span::styled(text, theme.style(role))]));
    }
    if run.simulated {
        parts.push((
            3,
            vec![Span::raw("  "), Span::styled(" SIMULATED ", theme.style(Role::Simulated))],
        ));
    }
    let left_width: usize = left.iter().map(Span::width).sum::<usize>() + 2;
    let width_of = |parts: &[(u8, Vec<Span<'static>>)]| -> usize {
        parts.iter().flat_map(|(_, spans)| spans.iter().map(Span::width)).sum::<usize>() + 1
    };
    for priority in 1..=6 {
        if left_width + width_of(&parts) <= usize::from(area.width) {
            break;
        }
        parts.retain(|(p, _)| *p > priority);
    }
    put_line(buf, area, 0, &Line::from(left));
    let right: Vec<Span<'static>> = parts.into_iter().flat_map(|(_, spans)| spans).collect();
    let right_width: usize = right.iter().map(Span::width).sum::<usize>() + 1;
    if left_width + right_width <= usize::from(area.width) {
        let x = area.right() - u16::try_from(right_width).unwrap_or(0);
        put_line(buf, Rect { x, width: area.right() - x, ..area }, 0, &Line::from(right));
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::console::panes::testing::{self, Fixture};
    use crate::console::state::PaneId;

    fn header(fixture: Fixture, width: u16) -> TestBackend {
        let state = testing::state(fixture, PaneId::Dag);
        let theme = testing::theme();
        let mut terminal = Terminal::new(TestBackend::new(width, 1)).expect("terminal");
        terminal
            .draw(|frame| {
                let area = frame.area();
                render(&state, &theme, area, frame.buffer_mut());
            })
            .expect("draw");
        terminal.backend().clone()
    }

    #[test]
    fn snapshots() {
        for (name, fixture) in [
            ("empty", Fixture::Empty),
            ("busy", Fixture::Busy),
            ("failed", Fixture::Failed),
            ("prompt", Fixture::Prompt),
        ] {
            assert_snapshot!(format!("header_{name}_120"), header(fixture, 120));
            assert_snapshot!(format!("header_{name}_60"), header(fixture, 60));
        }
    }

    /// A run that ended with tasks that did not succeed: its gauge draws them apart (1 of 7
    /// succeeded, 1 failed, 5 skipped or cancelled: 3, 4 and 19 of 26 cells) and, where
    /// there is room, says what they are.
    #[test]
    fn tasks_that_did_not_succeed_are_drawn_and_named_apart() {
        let backend = header(Fixture::Failed, 160);
        let buffer = backend.buffer();
        let line: String = (0..160).map(|x| buffer[(x, 0)].symbol()).collect();
        assert!(line.contains("7/7 ━━━"), "{line}");
        assert!(line.contains("100%  ✗ 1 failed · ⊘ 4 skipped · ■ 1 cancelled  │"), "{line}");
        let theme = testing::theme();
        let cells = |role: Role| {
            let colour = theme.style(role).fg;
            (0..160)
                .filter(|x| {
                    buffer[(*x, 0)].symbol() == "━"
                        && buffer[(*x, 0)].fg == colour.unwrap_or_default()
                })
                .count()
        };
        assert_eq!((cells(Role::GaugeFilled), cells(Role::Error), cells(Role::Warn)), (3, 4, 19));
        // Narrower, the gauge stays and the words go first.
        let narrow = header(Fixture::Failed, 120);
        let line: String = (0..120).map(|x| narrow.buffer()[(x, 0)].symbol()).collect();
        assert!(line.contains("7/7 ━") && !line.contains("skipped"), "{line}");
    }

    #[test]
    fn decisions_waiting_count_approvals_and_conflicts() {
        assert_eq!(waiting_words((0, 0)), None);
        assert_eq!(waiting_words((2, 0)).as_deref(), Some("⏸ 2 awaiting approval"));
        assert_eq!(waiting_words((0, 1)).as_deref(), Some("⏸ 1 conflict to decide"));
        assert_eq!(
            waiting_words((1, 2)).as_deref(),
            Some("⏸ 3 waiting for a person: 1 approval, 2 conflicts")
        );
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(elapsed(42_000), "00:42");
        assert_eq!(elapsed(3_723_000), "1:02:03");
    }
}
