//! Replay: the console on a stored run with a time cursor. [`Replay`] owns the run's events
//! and the console [`State`] at the cursor; moving the cursor folds events through the same
//! reducer as live ones. Snapshots of the state every [`SNAPSHOT_EVERY`] events make a step
//! back cheap: restore the nearest snapshot before the cursor and fold forward from there.
//! No IO, no clocks (the app reads the store and draws); a state left behind by a step back
//! is freed on a short-lived thread.

use std::sync::Arc;

use crate::event::{Envelope, Event};

use super::reducer::{Input, reduce};
use super::state::{ReplayCursor, State};

/// Events between two snapshots of the state. The worst step (back from a snapshot) restores
/// the one before and folds `SNAPSHOT_EVERY - 1` events; halving it halves that fold and
/// doubles the snapshots kept (a 30,001-event run keeps 29).
pub const SNAPSHOT_EVERY: usize = 1_024;

/// Task copies all snapshots together may hold (a snapshot holds every planned task; about
/// 13 MB for 10,000 tasks): a run too big for [`SNAPSHOT_EVERY`] within it gets fewer
/// snapshots, further apart, trading slower steps back for bounded memory.
pub const SNAPSHOT_TASK_BUDGET: usize = 320_000;

/// Events between snapshots for a run of `events` events and `tasks` planned tasks: every
/// [`SNAPSHOT_EVERY`], unless that would hold more than [`SNAPSHOT_TASK_BUDGET`] task copies.
pub fn snapshot_spacing(events: usize, tasks: usize) -> usize {
    let snapshots = (SNAPSHOT_TASK_BUDGET / tasks.max(1)).max(1);
    SNAPSHOT_EVERY.max(events.div_ceil(snapshots))
}

/// Where to move the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// One event forward or back.
    Step(isize),
    /// To the next (or previous) event that ends a task.
    Task { forward: bool },
    /// Before the first event.
    Start,
    /// After the last event.
    End,
}

/// A stored run, folded up to a cursor.
pub struct Replay {
    events: Vec<Arc<Envelope>>,
    /// The state before any event (size, theme, user), restored by [`Seek::Start`].
    base: State,
    /// `(events applied, state)`, ascending; the first is `base` at 0.
    snapshots: Vec<(usize, State)>,
    /// The state with the first `position` events applied.
    pub state: State,
    position: usize,
    /// Events between snapshots.
    every: usize,
}

impl Replay {
    /// Open at the start (nothing applied): opening costs the events' reading, not their
    /// folding.
    pub fn open(events: Vec<Arc<Envelope>>, base: State) -> Self {
        let tasks = events
            .iter()
            .map(|e| match &e.event {
                Event::RunStarted { tasks, .. } => tasks.len(),
                _ => 0,
            })
            .sum();
        let every = snapshot_spacing(events.len(), tasks);
        Self::open_every(events, base, every)
    }

    /// [`Replay::open`] with a snapshot every `every` events (tests use small numbers).
    pub fn open_every(events: Vec<Arc<Envelope>>, mut base: State, every: usize) -> Self {
        base.replay = Some(ReplayCursor {
            position: 0,
            total: events.len(),
            at_ms: events.first().map_or(0, |e| e.ts_ms),
            playing: None,
        });
        Self {
            events,
            snapshots: vec![(0, base.clone())],
            state: base.clone(),
            base,
            position: 0,
            every: every.max(1),
        }
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Time of the next event to apply, if any.
    pub fn peek_ms(&self) -> Option<u64> {
        self.events.get(self.position).map(|e| e.ts_ms)
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Move the cursor; returns whether it moved.
    pub fn seek(&mut self, seek: Seek) -> bool {
        let target = match seek {
            Seek::Step(delta) => self.position.saturating_add_signed(delta).min(self.len()),
            Seek::Task { forward } => self.task_boundary(forward),
            Seek::Start => 0,
            Seek::End => self.len(),
        };
        self.seek_to(target)
    }

    /// Put the cursor after `target` events.
    pub fn seek_to(&mut self, target: usize) -> bool {
        let target = target.min(self.len());
        if target == self.position {
            return false;
        }
        if target < self.position {
            let (at, snapshot) = self
                .snapshots
                .iter()
                .rev()
                .find(|(at, _)| *at <= target)
                .map_or_else(|| (0, self.base.clone()), |(at, s)| (*at, s.clone()));
            // The state left behind is dropped on another thread: freeing a big run's tasks
            // costs about what cloning them does, and the step need not wait for it.
            retire(std::mem::replace(&mut self.state, snapshot));
            self.position = at;
        }
        while self.position < target {
            let envelope = Arc::clone(&self.events[self.position]);
            reduce(&mut self.state, Input::Event(envelope));
            self.position += 1;
            let last = self.snapshots.last().map_or(0, |(at, _)| *at);
            if self.position.is_multiple_of(self.every) && self.position > last {
                self.snapshots.push((self.position, self.state.clone()));
            }
        }
        let at_ms = self.position.checked_sub(1).map_or_else(
            || self.events.first().map_or(0, |e| e.ts_ms),
            |last| self.events[last].ts_ms,
        );
        if let Some(cursor) = self.state.replay.as_mut() {
            cursor.position = self.position;
            cursor.total = self.events.len();
            cursor.at_ms = at_ms;
        }
        // The picture's clocks stand at the cursor, not at the wall clock.
        self.state.now_ms = at_ms;
        true
    }

    /// Whether the cursor is playing (1× or 10×).
    pub fn is_playing(&self) -> bool {
        self.state.replay.is_some_and(|c| c.playing.is_some())
    }

    /// Playing: advance the cursor by one frame of the run's own time (`frame_ms` times the
    /// speed), applying every event up to it; stops at the end.
    pub fn play_frame(&mut self, frame_ms: u64) {
        let Some(speed) = self.state.replay.and_then(|c| c.playing) else { return };
        let until = self.state.replay.map_or(0, |c| c.at_ms) + frame_ms * u64::from(speed);
        let mut target = self.position;
        while self.events.get(target).is_some_and(|e| e.ts_ms <= until) {
            target += 1;
        }
        self.seek_to(target);
        let ended = self.position == self.len();
        if let Some(cursor) = self.state.replay.as_mut() {
            cursor.at_ms = until;
            if ended {
                cursor.playing = None;
            }
        }
        self.state.now_ms = until;
    }

    /// The position just after the next (or before the previous) event that ends a task.
    fn task_boundary(&self, forward: bool) -> usize {
        let ends_task = |e: &Arc<Envelope>| {
            matches!(
                e.event,
                Event::TaskSucceeded { .. }
                    | Event::TaskFailed { .. }
                    | Event::TaskSkipped { .. }
                    | Event::TaskCancelled { .. }
            )
        };
        if forward {
            self.events
                .iter()
                .enumerate()
                .skip(self.position)
                .find(|(_, e)| ends_task(e))
                .map_or(self.len(), |(i, _)| i + 1)
        } else {
            self.events
                .iter()
                .enumerate()
                .take(self.position.saturating_sub(1))
                .rev()
                .find(|(_, e)| ends_task(e))
                .map_or(0, |(i, _)| i + 1)
        }
    }
}

/// Drop a state off the caller's thread. If no thread can be started, the refused closure
/// is dropped here, and the state with it.
fn retire(state: State) {
    let _ = std::thread::Builder::new().name("replay-drop".to_owned()).spawn(move || drop(state));
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
