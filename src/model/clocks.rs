//! What a progress printer needs of a run's fold, and nothing else: each task's clock (when
//! its current round began, so "took" covers retries) and the attempts by backend kind.
//!
//! [`RunModel`](super::RunModel) keeps a whole `TaskModel` per task (plan, status, history,
//! answer...): 32 MB for a 100,000-task run that a headless `run` only prints. These clocks
//! follow the same rules at 32 bytes a task beside its shared id; a test folds the same
//! events through both and compares.

use std::collections::HashMap;

use crate::conflict::LadderStep;
use crate::event::{Envelope, Event};
use crate::ids::{RunId, TaskId};

/// Where a task is, as far as its clock is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not in a round: planned, ready, waiting for approval, or finished. The next start
    /// begins a new round (and restarts the clock).
    Out,
    /// Running or between attempts.
    InRound,
    /// A conflict waits for a person; its resolution resumes the round.
    AwaitingDecision,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    /// When the current (or last) round began; none before any start.
    round_began_ms: Option<u64>,
    phase: Phase,
    /// A conflict was detected for the task (steps and resolutions of none are ignored).
    conflict: bool,
}

/// The clocks of one run's tasks, folded from its events.
#[derive(Debug, Clone)]
pub struct TaskClocks {
    run: RunId,
    tasks: HashMap<TaskId, Clock>,
    last_seq: u64,
    /// Attempts started on a simulation backend, and on real ones.
    pub simulated_attempts: usize,
    pub real_attempts: usize,
}

impl TaskClocks {
    pub fn for_run(run: RunId) -> Self {
        Self { run, tasks: HashMap::new(), last_seq: 0, simulated_attempts: 0, real_attempts: 0 }
    }

    /// Fold one envelope (others runs' and repeated ones are ignored, as the model does).
    pub fn apply(&mut self, envelope: &Envelope) {
        if envelope.seq != 0 && envelope.seq <= self.last_seq {
            return;
        }
        if envelope.run_id.as_ref() != Some(&self.run) {
            return;
        }
        self.last_seq = self.last_seq.max(envelope.seq);
        let event = &envelope.event;
        if let Event::RunStarted { tasks, .. } = event {
            self.tasks.reserve(tasks.len());
            for planned in tasks {
                self.tasks.entry(planned.task.clone()).or_insert(Clock {
                    round_began_ms: None,
                    phase: Phase::Out,
                    conflict: false,
                });
            }
            return;
        }
        // Tasks of no plan are not the run's (the model ignores them too).
        let Some(clock) = event.task().and_then(|task| self.tasks.get_mut(task)) else { return };
        if let Event::TaskStarted { simulated, .. } = event {
            if *simulated {
                self.simulated_attempts += 1;
            } else {
                self.real_attempts += 1;
            }
        }
        match event {
            Event::TaskStarted { .. } => {
                if clock.phase != Phase::InRound {
                    clock.round_began_ms = Some(envelope.ts_ms);
                }
                clock.phase = Phase::InRound;
            }
            Event::TaskRetrying { .. } => clock.phase = Phase::InRound,
            Event::TaskReady { .. }
            | Event::TaskAwaitingApproval { .. }
            | Event::TaskSucceeded { .. }
            | Event::TaskFailed { .. }
            | Event::TaskSkipped { .. }
            | Event::TaskCancelled { .. }
            | Event::AttemptInterrupted { .. } => clock.phase = Phase::Out,
            Event::ConflictDetected { .. } => clock.conflict = true,
            Event::ConflictStep { step: LadderStep::Operator, .. } if clock.conflict => {
                clock.phase = Phase::AwaitingDecision;
            }
            Event::ConflictResolved { .. } if clock.phase == Phase::AwaitingDecision => {
                clock.phase = Phase::InRound;
            }
            _ => {}
        }
    }

    /// The whole task's time when it ends at `end_ms` after an attempt of `attempt_ms`: from
    /// the start of its round, and never less than the attempt itself.
    pub fn whole_task_ms(&self, task: &TaskId, end_ms: u64, attempt_ms: u64) -> u64 {
        self.tasks
            .get(task)
            .and_then(|clock| clock.round_began_ms)
            .map_or(attempt_ms, |began| end_ms.saturating_sub(began).max(attempt_ms))
    }
}
