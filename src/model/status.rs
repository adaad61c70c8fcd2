//! Where a task is in its life: the one definition, shared by the scheduler, the fold, the
//! console and every command that prints a task.

use serde::{Deserialize, Serialize};

use crate::conflict::LadderStep;
use crate::event::Event;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Every dependency succeeded; waiting for a slot.
    Ready,
    /// High-risk: waiting for a person to approve it.
    AwaitingApproval,
    Running,
    /// A panel task's conflict waits for a person; it holds no `max_parallel` slot.
    AwaitingDecision,
    /// An attempt failed; the next one starts after a delay.
    Retrying,
    Succeeded,
    Failed,
    /// A dependency failed or was cancelled, so it never ran.
    Skipped,
    Cancelled,
}

impl TaskStatus {
    /// Every status, in life order (for tables and tests).
    pub const ALL: [TaskStatus; 10] = [
        Self::Pending,
        Self::Ready,
        Self::AwaitingApproval,
        Self::Running,
        Self::AwaitingDecision,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// The status a task's event leaves it in: the one rule, for the run's fold and for the
    /// views that keep less of it (the progress printer's clocks). `conflict`: a conflict
    /// is on record for the task (a ladder step or a resolution of none changes nothing).
    #[must_use]
    pub fn after(self, event: &Event, conflict: bool) -> Self {
        match event {
            Event::TaskReady { .. } => Self::Ready,
            Event::TaskAwaitingApproval { .. } => Self::AwaitingApproval,
            Event::TaskStarted { .. } => Self::Running,
            Event::TaskRetrying { .. } => Self::Retrying,
            Event::TaskSucceeded { .. } => Self::Succeeded,
            Event::TaskFailed { .. } => Self::Failed,
            Event::TaskSkipped { .. } => Self::Skipped,
            Event::TaskCancelled { .. } => Self::Cancelled,
            // The task starts again; the attempt keeps its place in the history.
            Event::AttemptInterrupted { .. } => Self::Pending,
            Event::ConflictStep { step: LadderStep::Operator, .. } if conflict => {
                Self::AwaitingDecision
            }
            Event::ConflictResolved { .. } if conflict && self == Self::AwaitingDecision => {
                Self::Running
            }
            _ => self,
        }
    }

    /// Running, or between two attempts: a start from any other status begins a new round of
    /// the task (and its clock, so "took" covers every attempt of the round).
    pub fn in_round(self) -> bool {
        matches!(self, Self::Running | Self::Retrying)
    }

    /// Succeeded, failed, skipped or cancelled: nothing more happens unless an operator
    /// retries it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled)
    }

    /// Waiting for a person, never confused with idle or running.
    pub fn waits_for_person(self) -> bool {
        matches!(self, Self::AwaitingApproval | Self::AwaitingDecision)
    }

    /// The word people read ("awaiting approval").
    pub fn word(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::AwaitingApproval => "awaiting approval",
            Self::Running => "running",
            Self::AwaitingDecision => "awaiting a decision",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// The key machines read, as in JSON (`awaiting_approval`).
    pub fn key(self) -> &'static str {
        match self {
            Self::AwaitingApproval => "awaiting_approval",
            Self::AwaitingDecision => "awaiting_decision",
            other => other.word(),
        }
    }

    /// The glyph that carries the status without colour.
    pub fn glyph(self) -> &'static str {
        match self {
            Self::Pending => "○",
            Self::Ready => "◔",
            Self::AwaitingApproval => "⏸",
            Self::Running => "▶",
            Self::AwaitingDecision => "⚖",
            Self::Retrying => "↻",
            Self::Succeeded => "✓",
            Self::Failed => "✗",
            Self::Skipped => "⊘",
            Self::Cancelled => "■",
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}
