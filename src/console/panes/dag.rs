//! The DAG pane: the workflow as layers left to right, edges drawn as box-drawing connectors,
//! each task's status by colour and glyph, and the selected task's details below the graph.
//!
//! Edges between neighbouring layers are routed through the gap between them, one vertical
//! track per target so fan-in stays readable. An edge from an earlier layer ends in a dashed
//! stub before its target; the details list every dependency. Only visible layers and rows
//! are drawn, so a 5,000-task run costs what fits on screen.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{Details, Pane, clock, duration, fit, one_line, put_line, style_row};
use crate::console::state::{
    PaneId, RunView, State, StatusRole, TaskModel, TaskStatus, WorkspaceModel,
};
use crate::console::theme::{Role, Theme};
use crate::engine::workspace::change_counts;
use crate::event::{OutputStream, Risk, WorkspaceKind};

pub struct DagPane;

/// Columns between two layers: one on each side plus the vertical tracks. Narrow screens use
/// the tight gap before they shrink task columns.
const WIDE_GAP: u16 = 6;
const TIGHT_GAP: u16 = 4;
/// Narrowest and widest task column (glyph, space, id).
const MIN_COLUMN: u16 = 12;
const MAX_COLUMN: u16 = 24;

/// How the graph is laid out in an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub graph: Rect,
    pub details: Rect,
    pub column: u16,
    pub gap: u16,
    /// Screen rows per task row: 2 leaves air between tasks when the tallest layer fits.
    pub pitch: u16,
    pub visible_layers: usize,
    pub visible_rows: usize,
}

/// Split the pane's inner area into graph and details and size the columns so that, when
/// possible, every layer fits without scrolling.
pub fn geometry(run: &RunView, inner: Rect) -> Geometry {
    let details_height = if inner.height >= 12 { (inner.height * 2 / 5).clamp(5, 14) } else { 0 };
    let graph = Rect { height: inner.height - details_height, ..inner };
    let details = Rect { y: graph.bottom(), height: details_height, ..inner };
    let natural =
        (u16::try_from(run.id_width).unwrap_or(MAX_COLUMN) + 3).clamp(MIN_COLUMN, MAX_COLUMN);
    let layers = u16::try_from(run.layers.len().max(1)).unwrap_or(u16::MAX);
    let fits = |column: u16, gap: u16| {
        u32::from(layers) * u32::from(column + gap) <= u32::from(graph.width) + u32::from(gap)
    };
    let (column, gap) = if fits(natural, WIDE_GAP) {
        (natural, WIDE_GAP)
    } else if fits(natural, TIGHT_GAP) {
        (natural, TIGHT_GAP)
    } else {
        let shrunk = ((graph.width + TIGHT_GAP) / layers).saturating_sub(TIGHT_GAP);
        (shrunk.clamp(MIN_COLUMN.min(natural), natural), TIGHT_GAP)
    };
    // The first graph row is the layer header.
    let node_rows = graph.height.saturating_sub(1);
    let pitch = if run.widest_layer * 2 <= usize::from(node_rows) { 2 } else { 1 };
    let visible_layers = usize::from((graph.width + gap) / (column + gap)).max(1);
    let visible_rows = usize::from(node_rows / pitch).max(1);
    Geometry { graph, details, column, gap, pitch, visible_layers, visible_rows }
}

/// The pane's inner area for a pane rectangle (inside the border).
fn inner_of(area: Rect) -> Rect {
    Rect {
        x: area.x.saturating_add(1),
        y: area.y.saturating_add(1),
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    }
}

/// Move the viewport the least needed to show the selected task.
pub fn scroll_into_view(run: &mut RunView, area: Rect) {
    let geo = geometry(run, inner_of(area));
    let Some(task) = run.tasks.get(run.cursor.selected) else { return };
    let layer = task.planned.layer;
    let row = run.row_in_layer[run.cursor.selected];
    run.cursor.layer_offset =
        super::scrolled_offset(run.cursor.layer_offset, layer, geo.visible_layers);
    run.cursor.row_offset = super::scrolled_offset(run.cursor.row_offset, row, geo.visible_rows);
}

pub fn status_style(theme: &Theme, status: TaskStatus) -> Style {
    theme.style(status.role())
}

pub fn risk_word(risk: Risk) -> &'static str {
    match risk {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "HIGH",
        Risk::Critical => "CRITICAL",
    }
}

// Direction bits of a connector cell.
const LEFT: u8 = 1;
const RIGHT: u8 = 2;
const UP: u8 = 4;
const DOWN: u8 = 8;
const DASH: u8 = 16;

fn connector(bits: u8) -> &'static str {
    match bits & !DASH {
        0 if bits & DASH != 0 => "╌",
        b if b == LEFT | RIGHT || b == LEFT || b == RIGHT => "─",
        b if b == UP | DOWN || b == UP || b == DOWN => "│",
        b if b == RIGHT | DOWN => "╭",
        b if b == LEFT | DOWN => "╮",
        b if b == RIGHT | UP => "╰",
        b if b == LEFT | UP => "╯",
        b if b == LEFT | RIGHT | DOWN => "┬",
        b if b == LEFT | RIGHT | UP => "┴",
        b if b == UP | DOWN | RIGHT => "├",
        b if b == UP | DOWN | LEFT => "┤",
        b if b == LEFT | RIGHT | UP | DOWN => "┼",
        _ => " ",
    }
}

/// Connector cells of one gap, clipped to the visible rows.
struct GapGrid {
    width: usize,
    height: usize,
    bits: Vec<u8>,
    related: Vec<bool>,
}

impl GapGrid {
    fn new(width: usize, height: usize) -> Self {
        Self { width, height, bits: vec![0; width * height], related: vec![false; width * height] }
    }

    fn mark(&mut self, x: usize, y: i64, bits: u8, related: bool) {
        let Ok(y) = usize::try_from(y) else { return };
        if x < self.width && y < self.height {
            self.bits[y * self.width + x] |= bits;
            self.related[y * self.width + x] |= related;
        }
    }

    /// Route from the left edge at `from` to the right edge at `to` through column `track`.
    fn route(&mut self, from: i64, to: i64, track: usize, related: bool) {
        for x in 0..track {
            self.mark(x, from, LEFT | RIGHT, related);
        }
        for x in track + 1..self.width {
            self.mark(x, to, LEFT | RIGHT, related);
        }
        if from == to {
            self.mark(track, from, LEFT | RIGHT, related);
            return;
        }
        let (toward_to, toward_from) = if to > from { (DOWN, UP) } else { (UP, DOWN) };
        self.mark(track, from, LEFT | toward_to, related);
        self.mark(track, to, RIGHT | toward_from, related);
        let (low, high) = (from.min(to), from.max(to));
        // Only the visible part of a long vertical run is marked.
        let first = (low + 1).max(0);
        let last = (high - 1).min(i64::try_from(self.height).unwrap_or(i64::MAX));
        for y in first..=last {
            self.mark(track, y, UP | DOWN, related);
        }
    }
}

fn render_graph(state: &State, run: &RunView, theme: &Theme, geo: &Geometry, buf: &mut Buffer) {
    let graph = geo.graph;
    if graph.is_empty() {
        return;
    }
    let muted = theme.style(Role::Muted);
    let first_layer = run.cursor.layer_offset.min(run.layers.len().saturating_sub(1));
    let first_row = run.cursor.row_offset;
    let selected = run.cursor.selected;
    let column = usize::from(geo.column);
    let stride = column + usize::from(geo.gap);
    let node_area = Rect { y: graph.y + 1, height: graph.height.saturating_sub(1), ..graph };
    let pitch = i64::from(geo.pitch);
    let screen_y = |row: usize| -> i64 {
        (i64::try_from(row).unwrap_or(i64::MAX) - i64::try_from(first_row).unwrap_or(0)) * pitch
    };
    let last_layer = (first_layer + geo.visible_layers + 1).min(run.layers.len());

    for (slot, layer) in (first_layer..last_layer).enumerate() {
        let x = slot * stride;
        if x >= usize::from(graph.width) {
            break;
        }
        let left = graph.x + u16::try_from(x).unwrap_or(u16::MAX);
        let width = graph.right().saturating_sub(left);
        // Header: layer number and size.
        let header = fit(&format!("L{} ·{}", layer + 1, run.layers[layer].len()), column);
        put_line(buf, Rect { x: left, width, ..graph }, 0, &Line::styled(header, muted));

        // Connectors in the gap before this layer.
        // (The first visible layer has its gap off screen: x - gap underflows.)
        if let Some(gap_left) = x.checked_sub(usize::from(geo.gap)) {
            let gap = Gap { layer, left: gap_left, width: usize::from(geo.gap) };
            draw_gap(run, &gap, node_area, theme, &screen_y, buf);
        }

        // Nodes.
        let rows = &run.layers[layer];
        let start = first_row.min(rows.len());
        for (row, task_index) in rows.iter().enumerate().skip(start) {
            let y = screen_y(row);
            let Ok(y) = usize::try_from(y) else { continue };
            if y >= usize::from(node_area.height) {
                break;
            }
            let task = &run.tasks[*task_index];
            let related = run.deps[selected].contains(task_index)
                || run.dependents[selected].contains(task_index);
            let matches = run.matches(*task_index);
            let glyph_style = if matches { status_style(theme, task.status) } else { muted };
            let id_style = if !matches {
                muted
            } else if related {
                theme.style(Role::Accent)
            } else {
                theme.style(Role::Text)
            };
            // In replay, a task that ran where it could change things is marked on the node.
            let marked = state.replay.is_some() && side_effect_backend(task).is_some();
            let mark_width =
                if marked { unicode_width::UnicodeWidthStr::width(SIDE_EFFECT_MARK) } else { 0 };
            let label = fit(task.planned.task.as_str(), column.saturating_sub(2 + mark_width));
            let mut spans = vec![
                Span::styled(format!("{} ", task.status.glyph()), glyph_style),
                Span::styled(label.clone(), id_style),
            ];
            if marked {
                let role = if matches { Role::Danger } else { Role::Muted };
                spans.push(Span::styled(SIDE_EFFECT_MARK, theme.style(role)));
            }
            // Tasks that feed the next layer reach their edge with a line, not with spaces.
            let feeds_next = run.dependents[*task_index]
                .iter()
                .any(|d| run.tasks[*d].planned.layer == layer + 1);
            let used = 2 + unicode_width::UnicodeWidthStr::width(label.as_str()) + mark_width;
            if feeds_next && used + 1 < column {
                let edge_related =
                    *task_index == selected || run.dependents[*task_index].contains(&selected);
                let style = theme.style(if edge_related { Role::Accent } else { Role::Border });
                spans.push(Span::styled(format!(" {}", "─".repeat(column - used - 1)), style));
            }
            let line = Line::from(spans);
            let area = Rect { x: left, width: width.min(geo.column), ..node_area };
            put_line(buf, area, y, &line);
            if *task_index == selected {
                let style = if state.focus == PaneId::Dag {
                    theme.style(Role::Selection)
                } else {
                    theme.style(Role::Accent).add_modifier(ratatui::style::Modifier::REVERSED)
                };
                style_row(buf, area, y, style);
            }
        }
    }
    // Arrows say there is more to scroll to.
    if first_layer > 0 {
        put_line(buf, Rect { width: 1, ..graph }, 0, &Line::styled("‹", theme.style(Role::Accent)));
    }
    if first_layer + geo.visible_layers < run.layers.len() {
        let right = Rect { x: graph.right().saturating_sub(1), width: 1, ..graph };
        put_line(buf, right, 0, &Line::styled("›", theme.style(Role::Accent)));
    }
}

/// The gap before `layer`, starting `left` columns into the graph.
struct Gap {
    layer: usize,
    left: usize,
    width: usize,
}

fn draw_gap(
    run: &RunView,
    gap: &Gap,
    node_area: Rect,
    theme: &Theme,
    screen_y: &dyn Fn(usize) -> i64,
    buf: &mut Buffer,
) {
    let (layer, gap_left, width) = (gap.layer, gap.left, gap.width);
    let tracks = width.saturating_sub(2).max(1);
    let height = usize::from(node_area.height);
    let mut grid = GapGrid::new(width, height);
    let selected = run.cursor.selected;
    for (target_row, target) in run.layers[layer].iter().enumerate() {
        let to = screen_y(target_row);
        let track = 1 + target_row % tracks;
        for dep in &run.deps[*target] {
            let related = *dep == selected || *target == selected;
            let dep_layer = run.tasks[*dep].planned.layer;
            if dep_layer + 1 == layer {
                let from = screen_y(run.row_in_layer[*dep]);
                grid.route(from, to, track, related);
            } else {
                // From an earlier layer: a dashed stub into the target.
                grid.mark(width - 2, to, DASH, related);
                grid.mark(width - 1, to, DASH, related);
            }
        }
    }
    let border = theme.style(Role::Border);
    let accent = theme.style(Role::Accent);
    for y in 0..height {
        for x in 0..width {
            let bits = grid.bits[y * width + x];
            if bits == 0 {
                continue;
            }
            let Ok(cx) = u16::try_from(gap_left + x) else { continue };
            let cx = node_area.x.saturating_add(cx);
            let cy = node_area.y + u16::try_from(y).unwrap_or(u16::MAX);
            if cx >= node_area.right() || cy >= node_area.bottom() {
                continue;
            }
            let style = if grid.related[y * width + x] { accent } else { border };
            if let Some(cell) = buf.cell_mut((cx, cy)) {
                cell.set_symbol(connector(bits)).set_style(style);
            }
        }
    }
}

fn detail_lines(
    state: &State,
    run: &RunView,
    task: &TaskModel,
    full: bool,
) -> Vec<Vec<(Role, String)>> {
    let mut lines = Vec::new();
    let retries = task.planned.retries + 1;
    let mut first =
        vec![(task.status.role(), format!("{} {}", task.status.glyph(), task.status.word()))];
    if task.simulated || (run.simulated && task.backend.is_none()) {
        first.push((Role::Muted, " ".to_owned()));
        first.push((Role::Simulated, " SIMULATED ".to_owned()));
    }
    first.extend([
        (Role::Muted, " · ".to_owned()),
        (Role::Text, task.agent.to_string()),
        (Role::Muted, format!(" · attempt {}/{retries}", task.attempts)),
    ]);
    if let Some(instance) = task.instance {
        first.push((Role::Muted, format!(" · {instance}")));
    }
    if let Some(backend) = &task.backend {
        first.push((Role::Muted, format!(" · {backend}")));
    }
    lines.push(first);
    if let Some(wait) = &task.rate_limited {
        lines.push(vec![(Role::Pending, format!("⧗ {}", wait.describe()))]);
    }
    let spent = task.spend.describe().map(|spent| format!("spent {spent}"));
    let marks: Vec<String> = spent.into_iter().chain(task.budget_note.clone()).collect();
    if !marks.is_empty() {
        let role = if task.budget_note.is_some() { Role::Warn } else { Role::Muted };
        lines.push(vec![(role, marks.join(" · "))]);
    }

    let names = |indices: &[usize]| -> String {
        indices
            .iter()
            .map(|i| run.tasks[*i].planned.task.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let index = run.index.get(&task.planned.task).copied().unwrap_or(0);
    let mut links = Vec::new();
    if !run.deps[index].is_empty() {
        links.push((Role::Muted, format!("needs {}", names(&run.deps[index]))));
    }
    if !run.dependents[index].is_empty() {
        let sep = if links.is_empty() { "" } else { " · " };
        links.push((Role::Muted, format!("{sep}feeds {}", names(&run.dependents[index]))));
    }
    if links.is_empty() {
        links.push((Role::Muted, "no dependencies".to_owned()));
    }
    lines.push(links);

    lines.push(timing_line(state, task));
    if state.replay.is_some()
        && let Some(backend) = side_effect_backend(task)
    {
        lines.push(vec![(
            Role::Danger,
            format!("⚠ side effects possible: ran on {backend} (a replay runs nothing)"),
        )]);
    }
    if let Some(workspace) = &task.workspace {
        lines.extend(workspace_lines(workspace, task.status.is_final(), full));
    }

    if let Some(risk) = task.risk {
        let role = if risk >= Risk::High { Role::Danger } else { Role::Warn };
        let run = state.run().and_then(|r| r.run_id.clone());
        let waiting = if state.approvals.contains_key(&(run, task.id().clone())) {
            " · awaiting approval (a)"
        } else {
            ""
        };
        lines.push(vec![(role, format!("risk {}{waiting}", risk_word(risk)))]);
    }
    if let Some(error) = &task.error {
        let prefix = if task.status == TaskStatus::Failed { "✗ " } else { "last error: " };
        lines.push(vec![(Role::Error, format!("{prefix}{}", one_line(error)))]);
    }
    if let Some(note) = &task.note {
        lines.push(vec![(Role::Muted, one_line(note))]);
    }
    if full {
        lines.push(vec![
            (Role::Muted, "description ".to_owned()),
            (Role::Text, one_line(&task.planned.description)),
        ]);
        if let Some(score) = task.planned.score {
            lines.push(vec![(Role::Muted, format!("selection score {score:.1}"))]);
        }
        lines.push(vec![]);
    }
    let shown = if full { task.output.len() } else { task.output.len().min(8) };
    for line in task.output.iter().skip(task.output.len() - shown) {
        // Each kind of output reads apart: reasoning muted, tool calls marked, stderr warned.
        let (role, mark) = match line.stream {
            OutputStream::Stderr => (Role::Warn, ""),
            OutputStream::Reasoning => (Role::Muted, "thinking: "),
            // A later line of a call or result goes under the first, without an arrow.
            OutputStream::ToolCall | OutputStream::ToolResult if line.continues => (
                if line.stream == OutputStream::ToolCall { Role::Accent } else { Role::Muted },
                "  ",
            ),
            OutputStream::ToolCall => (Role::Accent, "→ "),
            OutputStream::ToolResult => (Role::Muted, "← "),
            OutputStream::Stdout | OutputStream::Tokens => (Role::Text, ""),
        };
        lines.push(vec![
            (Role::Muted, "│ ".to_owned()),
            (role, format!("{mark}{}", one_line(&line.text))),
        ]);
    }
    lines
}

/// Drawn after the id of a replayed task that ran on a real backend (see
/// [`side_effect_backend`]); the help and the DAG's border explain it.
pub const SIDE_EFFECT_MARK: &str = " ⚠";

/// The backend of a task's attempt that could have changed something outside the run (a
/// process, a coding agent, an HTTP call): any attempt not on a simulation backend.
pub fn side_effect_backend(task: &TaskModel) -> Option<&str> {
    if task.attempts == 0 || task.simulated {
        return None;
    }
    task.backend.as_deref()
}

/// Started, how long the whole task took (or runs), the last attempt's own time, the wait
/// before a retry and the timeout.
fn timing_line(state: &State, task: &TaskModel) -> Vec<(Role, String)> {
    let mut timing = Vec::new();
    if let Some(started) = task.first_started_ms.or(task.started_ms) {
        timing.push((Role::Muted, format!("started {} · ", clock(started))));
    }
    let now = state.now_ms;
    match (task.status, task.started_ms, task.duration_ms) {
        (TaskStatus::Running, Some(started), _) => {
            let whole = now.saturating_sub(task.first_started_ms.unwrap_or(started));
            timing.push((Role::Running, format!("running {}", duration(whole))));
            if task.attempts > 1 {
                let this = duration(now.saturating_sub(started));
                timing.push((Role::Muted, format!(" · attempt {} {this}", task.attempts)));
            }
        }
        (TaskStatus::Retrying, _, _) => {
            let failed = task.attempt_ms.map(|ms| format!(" after {}", duration(ms)));
            let text = format!("attempt {} failed{}", task.attempts, failed.unwrap_or_default());
            timing.push((Role::Warn, text));
            if let Some(at) = task.retry_at_ms {
                let wait = duration(at.saturating_sub(now));
                timing.push((Role::Warn, format!(" · retrying in {wait}")));
            }
        }
        (_, _, Some(took)) => {
            let took = duration(took);
            // The last attempt apart only where it reads differently from the whole task.
            let last = task.attempt_ms.filter(|_| task.attempts > 1).map(duration);
            timing.push((Role::Text, format!("took {took}")));
            if let Some(last) = last.filter(|last| *last != took) {
                timing.push((Role::Muted, format!(" · attempt {} took {last}", task.attempts)));
            }
        }
        _ => timing.push((Role::Muted, "not started".to_owned())),
    }
    timing.push((Role::Muted, format!(" · timeout {}", duration(task.planned.timeout_ms))));
    timing
}

/// Files listed under the workspace line in the small details view; the overlay lists all.
const FILES_SHOWN: usize = 3;

/// The branch (or folder) and the files its branch changed; `done`: the task is over, so
/// an empty diff is no change rather than none yet.
fn workspace_lines(workspace: &WorkspaceModel, done: bool, full: bool) -> Vec<Vec<(Role, String)>> {
    let mut lines = Vec::new();
    let place = match (&workspace.branch, workspace.kind) {
        (Some(branch), WorkspaceKind::Worktree) => format!("⎇ {branch}"),
        _ => format!("⎇ fresh folder {}", workspace.path.display()),
    };
    let mut first = vec![(Role::Accent, place)];
    if workspace.kind == WorkspaceKind::Worktree {
        let summary = if workspace.summary.is_empty() {
            if done { "no changes" } else { "no changes yet" }.to_owned()
        } else {
            workspace.summary.clone()
        };
        first.push((Role::Muted, format!(" · {summary}")));
    }
    lines.push(first);
    if full {
        lines.push(vec![(Role::Muted, format!("  in {}", workspace.path.display()))]);
        if let Some(from) = &workspace.base_from {
            lines.push(vec![(Role::Muted, format!("  from {from}"))]);
        }
    }
    let shown = if full { workspace.changes.len() } else { FILES_SHOWN };
    for change in workspace.changes.iter().take(shown) {
        lines.push(vec![
            (Role::Muted, format!("  {:>9} ", change_counts(change))),
            (Role::Text, change.path.clone()),
        ]);
    }
    let hidden = workspace.changes.len().saturating_sub(shown);
    if hidden > 0 {
        lines.push(vec![(Role::Muted, format!("  … {hidden} more (Enter for all)"))]);
    }
    lines
}

fn render_details(state: &State, run: &RunView, theme: &Theme, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let Some(task) = run.selected_task() else { return };
    // A rule with the task id separates details from the graph.
    let title = format!("─ {} ", task.planned.task);
    let rule: String =
        title.chars().chain(std::iter::repeat('─')).take(usize::from(area.width)).collect();
    put_line(buf, area, 0, &Line::styled(rule, theme.style(Role::Border)));
    let lines = detail_lines(state, run, task, false);
    let rows = usize::from(area.height.saturating_sub(1));
    // Keep the facts and the newest output: cut older output lines first.
    let facts = lines.iter().take_while(|l| l.first().is_none_or(|(_, t)| t != "│ ")).count();
    let skip = if lines.len() > rows {
        (lines.len() - rows).min(lines.len() - facts.min(lines.len()))
    } else {
        0
    };
    let kept = lines.iter().take(facts).chain(lines.iter().skip(facts + skip));
    let width = usize::from(area.width);
    for (row, spans) in kept.take(rows).enumerate() {
        let mut used = 0;
        let mut out = Vec::new();
        for (role, text) in spans {
            let piece = fit(text, width.saturating_sub(used));
            used += unicode_width::UnicodeWidthStr::width(piece.as_str());
            out.push(Span::styled(piece, theme.style(*role)));
        }
        put_line(buf, area, row + 1, &Line::from(out));
    }
}

impl Pane for DagPane {
    fn id(&self) -> PaneId {
        PaneId::Dag
    }

    fn visible_rows(&self, state: &State, area: Rect) -> usize {
        state.run().map_or(1, |run| geometry(run, inner_of(area)).visible_rows)
    }

    fn render(&self, state: &State, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let mut info = Vec::new();
        if let Some(run) = state.run() {
            let (done, total) = run.progress();
            let text = format!(
                " {} · {done}/{total} · {} layers ",
                one_line(&run.workflow),
                run.layers.len()
            );
            info.push(Span::styled(text, theme.style(Role::Muted)));
            if run.simulated {
                info.push(Span::styled(" SIMULATED ", theme.style(Role::Simulated)));
                info.push(Span::raw(" "));
            }
            // The legend of the node mark, where it is drawn.
            if state.replay.is_some() && run.tasks.iter().any(|t| side_effect_backend(t).is_some())
            {
                info.push(Span::styled(
                    format!("{} side effects possible ", SIDE_EFFECT_MARK.trim_start()),
                    theme.style(Role::Danger),
                ));
            }
        }
        let block = super::pane_block_spans(state, theme, PaneId::Dag, area, info);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.is_empty() {
            return;
        }
        let Some(run) = state.run() else {
            let can_run = state.role.allows(crate::command::Permission::RunWorkflows);
            let hint = if can_run {
                "no run yet · press : and type  run workflows/demo.yaml"
            } else {
                "no run yet · waiting for one to start"
            };
            let row = usize::from(inner.height / 2);
            let text = fit(hint, usize::from(inner.width));
            let pad = usize::from(inner.width)
                .saturating_sub(unicode_width::UnicodeWidthStr::width(text.as_str()))
                / 2;
            put_line(
                buf,
                inner,
                row,
                &Line::styled(format!("{}{text}", " ".repeat(pad)), theme.style(Role::Muted)),
            );
            return;
        };
        if run.tasks.is_empty() {
            put_line(
                buf,
                inner,
                0,
                &Line::styled("  the run has no tasks", theme.style(Role::Muted)),
            );
            return;
        }
        let geo = geometry(run, inner);
        render_graph(state, run, theme, &geo, buf);
        render_details(state, run, theme, geo.details, buf);
    }

    fn details(&self, state: &State) -> Option<Details> {
        let run = state.run()?;
        let task = run.selected_task()?;
        let lines = detail_lines(state, run, task, true);
        Some(Details {
            title: format!("Task {} · run {}", task.planned.task, run.workflow), lines
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use insta::assert_snapshot;

    use super::*;
    use crate::console::keys::Action;
    use crate::console::panes::testing::{self, Fixture, T0};
    use crate::console::reducer::{Input, reduce};
    use crate::event::{Envelope, Event, PlannedTask};
    use crate::ids::{AgentId, RunId, TaskId};

    #[test]
    fn snapshots() {
        for (name, fixture) in
            [("empty", Fixture::Empty), ("busy", Fixture::Busy), ("failed", Fixture::Failed)]
        {
            let state = testing::state(fixture, PaneId::Dag);
            assert_snapshot!(
                format!("dag_{name}_120x40"),
                testing::render_pane(&state, PaneId::Dag, 120, 40)
            );
            assert_snapshot!(
                format!("dag_{name}_160x45"),
                testing::render_pane(&state, PaneId::Dag, 160, 45)
            );
            assert_snapshot!(
                format!("dag_{name}_40x10"),
                testing::render_pane(&state, PaneId::Dag, 40, 10)
            );
        }
    }

    /// The busy fixture's `design-api` given a worktree and branch of its own.
    fn worktree_of_design_api() -> Event {
        Event::WorkspaceCreated {
            task: TaskId::new("design-api"),
            kind: crate::event::WorkspaceKind::Worktree,
            path: "/project/.flightdeck/worktrees/r20231114-7f3a/design-api".into(),
            repo: Some("/project".into()),
            branch: Some("flightdeck/r20231114-7f3a/design-api".into()),
            base: Some("4be1d2c".into()),
            base_from: Some("HEAD".into()),
        }
    }

    #[test]
    fn task_details_show_the_branch_and_its_changed_files() {
        let mut state = testing::state(Fixture::Busy, PaneId::Dag);
        let run = Some(testing::run_id());
        let task = || TaskId::new("design-api");
        let events = [
            worktree_of_design_api(),
            Event::WorkspaceChanges {
                task: task(),
                attempt: 1,
                branch: "flightdeck/r20231114-7f3a/design-api".into(),
                commit: Some("9c0ffee".into()),
                files: ["docs/api.md", "openapi.yaml", "src/routes.rs", "src/schema.rs"]
                    .iter()
                    .enumerate()
                    .map(|(i, path)| crate::event::FileChange {
                        path: (*path).into(),
                        added: Some(10 * (i as u64 + 1)),
                        removed: Some(i as u64),
                    })
                    .collect(),
                summary: "4 files changed, 100 insertions(+), 6 deletions(-)".into(),
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            let envelope =
                Envelope { seq: 1_000 + i as u64, ts_ms: T0 + 90_000, run_id: run.clone(), event };
            reduce(&mut state, Input::Event(Arc::new(envelope)));
        }
        let pane = testing::render_pane(&state, PaneId::Dag, 120, 40);
        let shown = pane.to_string();
        assert!(
            shown.contains("⎇ flightdeck/r20231114-7f3a/design-api · 4 files changed"),
            "{shown}"
        );
        assert!(shown.contains("+10 −0 docs/api.md"), "{shown}");
        assert!(shown.contains("… 1 more"), "{shown}");
        assert_snapshot!("dag_workspace_120x40", pane);
        reduce(&mut state, Input::Action(Action::OpenDetails));
        let details = DagPane.details(&state).expect("details");
        let text: Vec<String> =
            details.lines.iter().map(|l| l.iter().map(|(_, t)| t.as_str()).collect()).collect();
        assert!(text.iter().any(|l| l.contains("src/schema.rs")), "{text:#?}");
        assert!(text.iter().any(|l| l.contains("from HEAD")), "{text:#?}");
    }

    #[test]
    fn a_tools_result_of_several_lines_reads_as_one_and_an_empty_diff_of_a_done_task_is_no_change()
    {
        let mut state = testing::state(Fixture::Busy, PaneId::Dag);
        let run = Some(testing::run_id());
        let task = || TaskId::new("design-api");
        let branch = "flightdeck/r20231114-7f3a/design-api";
        let events = [
            worktree_of_design_api(),
            Event::TaskOutput {
                task: task(),
                stream: crate::event::OutputStream::ToolCall,
                text: "Bash {\"command\":\"ls\"}".into(),
            },
            Event::TaskOutput {
                task: task(),
                stream: crate::event::OutputStream::ToolResult,
                text: "Bash: a.rs\nb.rs\n".into(),
            },
            Event::WorkspaceChanges {
                task: task(),
                attempt: 1,
                branch: branch.into(),
                commit: None,
                files: Vec::new(),
                summary: String::new(),
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            let envelope =
                Envelope { seq: 1_000 + i as u64, ts_ms: T0 + 90_000, run_id: run.clone(), event };
            reduce(&mut state, Input::Event(Arc::new(envelope)));
        }
        reduce(&mut state, Input::Action(Action::OpenDetails));
        let details = DagPane.details(&state).expect("details");
        let text: Vec<String> =
            details.lines.iter().map(|l| l.iter().map(|(_, t)| t.as_str()).collect()).collect();
        let at = |wanted: &str| text.iter().position(|l| l == wanted);
        let result = at("│ ← Bash: a.rs").expect("the result's first line");
        assert_eq!(at("│   b.rs"), Some(result + 1), "{text:#?}");
        assert!(at("│ → Bash {\"command\":\"ls\"}").is_some(), "{text:#?}");
        assert!(text.iter().any(|l| l == &format!("⎇ {branch} · no changes")), "{text:#?}");
    }

    #[test]
    fn selecting_moves_through_layers_and_scrolls() {
        let mut state = testing::state(Fixture::Busy, PaneId::Dag);
        reduce(&mut state, Input::Action(Action::SelectRight));
        reduce(&mut state, Input::Action(Action::SelectRight));
        reduce(&mut state, Input::Action(Action::SelectRight));
        let run = state.run().expect("run");
        assert_eq!(run.selected_task().map(|t| t.planned.task.as_str()), Some("deploy-staging"));
        let shown = testing::render_pane(&state, PaneId::Dag, 120, 40).to_string();
        assert!(shown.contains("─ deploy-staging"), "{shown}");
        reduce(&mut state, Input::Action(Action::SelectLeft));
        reduce(&mut state, Input::Action(Action::SelectNext));
        let run = state.run().expect("run");
        assert_eq!(run.selected_task().map(|t| t.planned.task.as_str()), Some("code-review"));
    }

    #[test]
    fn status_reads_without_colour() {
        let state = testing::state(Fixture::Failed, PaneId::Dag);
        let theme = testing::theme().monochrome();
        let buffer = testing::pane_buffer(&state, &theme, PaneId::Dag, 70, 30);
        for glyph in ["✗ design-api", "✓ threat-model", "⊘ implement", "■ deploy"] {
            assert!(testing::find(&buffer, glyph).is_some(), "{glyph}");
        }
        let mut state = state;
        reduce(&mut state, Input::Action(Action::SelectNext));
        let colour = testing::theme();
        let buffer = testing::pane_buffer(&state, &colour, PaneId::Dag, 70, 30);
        let at = testing::find(&buffer, "✗ design-api").expect("failed task");
        assert_eq!(buffer[at].fg, colour.style(Role::Error).fg.expect("colour"));
    }

    /// A wide, deep DAG: `layers` layers of `width` tasks, each depending on two tasks of the
    /// layer before and one from two layers back.
    pub fn big_run(layers: usize, width: usize) -> Vec<PlannedTask> {
        let mut tasks = Vec::new();
        for layer in 0..layers {
            for i in 0..width {
                let mut deps = Vec::new();
                if layer > 0 {
                    deps.push(TaskId::new(format!("t{}-{}", layer - 1, i)));
                    deps.push(TaskId::new(format!("t{}-{}", layer - 1, (i + 7) % width)));
                }
                if layer > 1 && i % 5 == 0 {
                    deps.push(TaskId::new(format!("t{}-{}", layer - 2, (i + 3) % width)));
                }
                tasks.push(PlannedTask {
                    task: TaskId::new(format!("t{layer}-{i}")),
                    description: String::new().into(),
                    agent: AgentId::new("worker"),
                    score: None,
                    depends_on: deps.into(),
                    layer,
                    timeout_ms: 1000,
                    retries: 0,
                });
            }
        }
        tasks
    }

    #[test]
    fn large_dags_render_at_any_size_and_follow_the_selection() {
        let mut state = testing::state(Fixture::Empty, PaneId::Dag);
        let event = Event::RunStarted {
            workflow: "big".into(),
            file: "big.yaml".into(),
            goal: None,
            max_parallel: 8,
            fail_fast: false,
            simulated: false,
            tasks: big_run(50, 100),
        };
        let envelope = Envelope { seq: 1, ts_ms: T0, run_id: Some(RunId::new("r")), event };
        reduce(&mut state, Input::Event(Arc::new(envelope)));
        for _ in 0..30 {
            reduce(&mut state, Input::Action(Action::SelectRight));
        }
        for _ in 0..3 {
            reduce(&mut state, Input::Action(Action::PageDown));
        }
        let run = state.run().expect("run");
        let selected = run.selected_task().expect("selected").planned.task.to_string();
        let shown = testing::render_pane(&state, PaneId::Dag, 120, 40).to_string();
        assert!(shown.contains(&selected), "{selected} visible:\n{shown}");
        for (w, h) in [(1, 1), (0, 0), (3, 2), (10, 4), (200, 3)] {
            testing::render_pane(&state, PaneId::Dag, w, h);
        }
    }

    #[test]
    fn connectors_join_neighbouring_layers() {
        let state = testing::state(Fixture::Busy, PaneId::Dag);
        let shown = testing::render_pane(&state, PaneId::Dag, 160, 45).to_string();
        assert!(shown.contains("─╮") || shown.contains("┬"), "{shown}");
        assert!(shown.contains("╰─") || shown.contains("├─") || shown.contains("────"), "{shown}");
    }
}
