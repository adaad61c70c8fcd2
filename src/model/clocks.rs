//! What a progress printer needs of a run's fold, and nothing else: each task's clock (when
//! its current round began, so "took" covers retries) and the attempts by backend kind.
//!
//! [`RunModel`](super::RunModel) keeps a whole `TaskModel` per task (plan, status, history,
//! answer...): 32 MB for a 100,000-task run that a headless `run` only prints, and folding
//! it was a tenth of the run's main thread. These clocks keep a task's status and the start
//! of its round, at 32 bytes a task beside its shared id, and take both rules from the fold:
//! [`TaskStatus::after`] for the status an event leaves, [`TaskStatus::in_round`] for when a
//! start begins a new round. A test folds the same events through both and compares.

use foldhash::{HashMap, HashMapExt as _};

use crate::event::{Envelope, Event};
use crate::ids::{RunId, TaskId};

use super::TaskStatus;

#[derive(Debug, Clone, Copy)]
struct Clock {
    /// When the current (or last) round began; none before any start.
    round_began_ms: Option<u64>,
    /// As the run's fold has it ([`TaskStatus::after`], the one rule).
    status: TaskStatus,
    /// A conflict is on record for the task.
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
                    status: TaskStatus::Pending,
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
        // A new round (first start, or an operator retry) starts the task's clock.
        if matches!(event, Event::TaskStarted { .. }) && !clock.status.in_round() {
            clock.round_began_ms = Some(envelope.ts_ms);
        }
        clock.status = clock.status.after(event, clock.conflict);
        clock.conflict |= matches!(event, Event::ConflictDetected { .. });
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
