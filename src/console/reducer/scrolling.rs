//! Selection, filters and scrolling of the panes.

use crate::ids::{AgentId, RunId};

use super::super::panes;
use super::super::state::{Overlay, PaneId, State};

/// Rows moved by one mouse wheel notch.
pub(super) const WHEEL_ROWS: isize = 3;

// ---------------------------------------------------------------- selection

/// The filter of a pane; the DAG has none without a run.
pub(super) fn filter_mut(state: &mut State, pane: PaneId) -> Option<&mut String> {
    if state.overlay == Some(Overlay::Runs) {
        return Some(&mut state.runs_list.cursor.filter);
    }
    if state.overlay == Some(Overlay::Conflicts) {
        return Some(&mut state.conflicts.cursor.filter);
    }
    match pane {
        PaneId::Agents => Some(&mut state.agents.cursor.filter),
        PaneId::Pool => Some(&mut state.pool.cursor.filter),
        PaneId::Dag => state.run_mut().map(|run| &mut run.cursor.filter),
        PaneId::Breakers => Some(&mut state.breakers.cursor.filter),
        PaneId::Audit => Some(&mut state.audit.filter),
    }
}

pub(super) fn after_filter_change(state: &mut State) {
    if state.overlay == Some(Overlay::Runs) {
        fix_runs_selection(state);
        return;
    }
    if state.overlay == Some(Overlay::Conflicts) {
        super::conflicts::fix_list_selection(state);
        return;
    }
    match state.focus {
        PaneId::Audit => {
            state.audit.scroll = 0;
            state.audit.offset = 0;
        }
        PaneId::Dag => {
            // The task the filter names exactly (typing `build` stops at `build`, not at the
            // `build-docs` it matched on the way); else stay on a match, else jump to the
            // first, so the filter finds things.
            if let Some(run) = state.run_mut() {
                let filter = run.cursor.filter.clone();
                let exact = (!filter.is_empty())
                    .then(|| {
                        run.tasks
                            .iter()
                            .position(|t| t.planned.task.as_str().eq_ignore_ascii_case(&filter))
                    })
                    .flatten();
                if let Some(exact) = exact {
                    run.cursor.selected = exact;
                } else if !run.matches(run.cursor.selected)
                    && let Some(first) =
                        run.layers.iter().flatten().copied().find(|i| run.matches(*i))
                {
                    run.cursor.selected = first;
                }
            }
        }
        pane => {
            fix_selection(state, pane);
            scroll_into_view(state, pane);
        }
    }
    scroll_into_view(state, state.focus);
}

/// Keys of a list pane's rows in display order.
fn row_keys(state: &State, pane: PaneId) -> Vec<String> {
    match pane {
        PaneId::Agents => state.agents.rows().iter().map(|e| e.key()).collect(),
        PaneId::Pool => state.pool.rows().iter().map(|i| i.id.0.to_string()).collect(),
        PaneId::Breakers => state.breakers.rows().iter().map(ToString::to_string).collect(),
        PaneId::Dag | PaneId::Audit => Vec::new(),
    }
}

fn selected_key(state: &State, pane: PaneId) -> Option<String> {
    match pane {
        PaneId::Agents => state.agents.cursor.selected.clone(),
        PaneId::Pool => state.pool.cursor.selected.map(|i| i.0.to_string()),
        PaneId::Breakers => state.breakers.cursor.selected.as_ref().map(ToString::to_string),
        PaneId::Dag | PaneId::Audit => None,
    }
}

/// Select a row; `pin` when the operator chose it.
fn set_selected_key(state: &mut State, pane: PaneId, key: Option<String>, pin: bool) {
    match pane {
        PaneId::Agents => {
            state.agents.cursor.selected = key;
            state.agents.cursor.pinned = pin;
        }
        PaneId::Pool => {
            state.pool.cursor.selected =
                key.and_then(|k| k.parse().ok()).map(crate::ids::InstanceId);
            state.pool.cursor.pinned = pin;
        }
        PaneId::Breakers => {
            state.breakers.cursor.selected = key.map(AgentId::new);
            state.breakers.cursor.pinned = pin;
        }
        PaneId::Dag | PaneId::Audit => {}
    }
}

fn is_pinned(state: &State, pane: PaneId) -> bool {
    match pane {
        PaneId::Agents => state.agents.cursor.pinned,
        PaneId::Pool => state.pool.cursor.pinned,
        PaneId::Breakers => state.breakers.cursor.pinned,
        PaneId::Dag | PaneId::Audit => false,
    }
}

/// Keep the selection on a visible row: the item the operator chose while it is listed,
/// else the first row.
pub(super) fn fix_selection(state: &mut State, pane: PaneId) {
    if matches!(pane, PaneId::Dag | PaneId::Audit) {
        return;
    }
    let listed = match pane {
        PaneId::Agents => {
            state.agents.cursor.selected.as_ref().is_some_and(|k| state.agents.is_listed(k))
        }
        PaneId::Pool => state.pool.cursor.selected.is_some_and(|id| state.pool.is_listed(id)),
        _ => state.breakers.cursor.selected.as_ref().is_some_and(|a| state.breakers.is_listed(a)),
    };
    if listed && is_pinned(state, pane) {
        return;
    }
    // Runs on every event for its pane: find the first row without building the list.
    let first = match pane {
        PaneId::Agents => state.agents.rows().first().map(|e| e.key()),
        PaneId::Pool => state.pool.first_listed().map(|id| id.0.to_string()),
        _ => state.breakers.first_listed().map(ToString::to_string),
    };
    if selected_key(state, pane) != first {
        set_selected_key(state, pane, first, false);
    }
}

pub(super) fn page(state: &State) -> isize {
    let rows = panes::visible_rows(state, state.focus);
    isize::try_from(rows.max(1)).unwrap_or(1)
}

pub(super) fn move_selection(state: &mut State, delta: isize) {
    if state.overlay == Some(Overlay::Runs) {
        move_run_selection(state, delta);
        return;
    }
    if state.overlay == Some(Overlay::Conflicts) {
        super::conflicts::move_list_selection(state, delta);
        return;
    }
    if let Some(overlay) = &mut state.overlay {
        let scroll = match overlay {
            Overlay::Runs | Overlay::Conflicts => return,
            Overlay::Help { scroll } | Overlay::Details { scroll, .. } => scroll,
        };
        *scroll = scroll.saturating_add_signed(delta.clamp(-10_000, 10_000));
        return;
    }
    match state.focus {
        PaneId::Audit => {
            // Up (negative) goes back in time, which is a larger distance from the tail.
            let last = state.audit.matching_len().saturating_sub(1);
            state.audit.scroll = state.audit.scroll.saturating_add_signed(-delta).min(last);
        }
        PaneId::Dag => move_dag_row(state, delta),
        pane => {
            let keys = row_keys(state, pane);
            if keys.is_empty() {
                return;
            }
            let at = selected_key(state, pane)
                .and_then(|k| keys.iter().position(|x| *x == k))
                .unwrap_or(0);
            let next = at.saturating_add_signed(delta).min(keys.len() - 1);
            set_selected_key(state, pane, keys.get(next).cloned(), true);
        }
    }
    scroll_into_view(state, state.focus);
}

fn move_dag_row(state: &mut State, delta: isize) {
    let Some(run) = state.run_mut() else { return };
    let Some(task) = run.tasks.get(run.cursor.selected) else { return };
    let layer = &run.layers[task.planned.layer];
    let at = run.row_in_layer[run.cursor.selected];
    let next = at.saturating_add_signed(delta).min(layer.len().saturating_sub(1));
    if let Some(index) = layer.get(next) {
        run.cursor.selected = *index;
    }
}

pub(super) fn move_dag_layer(state: &mut State, delta: isize) {
    let Some(run) = state.run_mut() else { return };
    let Some(task) = run.tasks.get(run.cursor.selected) else { return };
    let row = run.row_in_layer[run.cursor.selected];
    let layer =
        task.planned.layer.saturating_add_signed(delta).min(run.layers.len().saturating_sub(1));
    if let Some(target) = run.layers.get(layer).filter(|l| !l.is_empty()) {
        run.cursor.selected = target[row.min(target.len() - 1)];
    }
    scroll_into_view(state, PaneId::Dag);
}

/// Move a pane's scroll offset the least needed to show its selection.
pub(super) fn scroll_into_view(state: &mut State, pane: PaneId) {
    let area = state.layout.pane(pane);
    let rows = panes::visible_rows(state, pane);
    match pane {
        PaneId::Dag => {
            if let Some(run) = state.run_mut() {
                panes::dag::scroll_into_view(run, area);
            }
        }
        PaneId::Audit => {
            let audit = &mut state.audit;
            audit.offset = panes::scrolled_offset(audit.offset, audit.scroll, rows);
        }
        _ => {
            let keys = row_keys(state, pane);
            let at = selected_key(state, pane).and_then(|k| keys.iter().position(|x| *x == k));
            let offset = match pane {
                PaneId::Agents => &mut state.agents.cursor.offset,
                PaneId::Pool => &mut state.pool.cursor.offset,
                _ => &mut state.breakers.cursor.offset,
            };
            *offset = panes::scrolled_offset(*offset, at.unwrap_or(0), rows);
        }
    }
}

/// Keep the Runs list's selection on a listed run: the chosen one, else the shown run, else
/// the newest.
pub(super) fn fix_runs_selection(state: &mut State) {
    let entries = state.run_entries();
    let cursor = &state.runs_list.cursor;
    let listed = |id: &RunId| entries.iter().any(|e| e.id == *id);
    if cursor.selected.as_ref().is_some_and(listed) {
        return;
    }
    let shown = state.shown_run.clone().filter(listed);
    state.runs_list.cursor.selected = shown.or_else(|| entries.first().map(|e| e.id.clone()));
}

fn move_run_selection(state: &mut State, delta: isize) {
    let entries = state.run_entries();
    if entries.is_empty() {
        return;
    }
    let selected = state.runs_list.cursor.selected.as_ref();
    let at = entries.iter().position(|e| Some(&e.id) == selected).unwrap_or(0);
    let next = at.saturating_add_signed(delta).min(entries.len() - 1);
    let cursor = &mut state.runs_list.cursor;
    cursor.selected = Some(entries[next].id.clone());
    cursor.pinned = true;
    let rows = panes::runs::visible_rows(state.screen);
    cursor.offset = panes::scrolled_offset(cursor.offset, next, rows);
}
