//! Redacting the text an event carries, before the bus hands it to the store and the views.

use crate::event::{AnswerDetails, Event};

use super::Redactor;

impl Redactor {
    /// `event` with every free text in it redacted (outputs, errors, reasons, notes, task
    /// descriptions, tool calls). `TaskOutput` is redacted where it is produced, by a
    /// [`super::StreamRedactor`] that sees across chunks, and passes here untouched.
    pub fn event(&self, mut event: Event) -> Event {
        let r = |text: &mut String| {
            if self.has_secret(text) {
                *text = self.redact_string(std::mem::take(text));
            }
        };
        match &mut event {
            Event::AgentInvalid { error: text, .. }
            | Event::InstanceTerminated { reason: text, .. }
            | Event::TaskRetrying { error: text, .. }
            | Event::TaskFallback { reason: text, .. }
            | Event::TaskFailed { error: text, .. }
            | Event::TaskSkipped { reason: text, .. }
            | Event::TaskCancelled { reason: text, .. }
            | Event::BreakerOpened { last_error: text, .. }
            | Event::BreakerClosed { reason: text, .. }
            | Event::CommandDenied { reason: text, .. }
            | Event::Notice { message: text, .. } => r(text),
            Event::TaskSucceeded { output, details, .. } => {
                r(output);
                self.details(details);
            }
            Event::RunStarted { goal, tasks, .. } => {
                goal.iter_mut().for_each(r);
                for task in tasks {
                    if self.has_secret(&task.description) {
                        task.description = self.redact(&task.description).into();
                    }
                }
            }
            Event::TaskAwaitingApproval { reasons, .. }
            | Event::ApprovalRequested { reasons, .. } => reasons.iter_mut().for_each(r),
            Event::ApprovalDecided { note, .. } => note.iter_mut().for_each(r),
            Event::WorkspaceChanges { summary, .. } => r(summary),
            _ => {}
        }
        event
    }

    /// The reasoning and tool calls of an answer.
    pub fn details(&self, details: &mut AnswerDetails) {
        if let Some(reasoning) = &mut details.reasoning
            && self.has_secret(reasoning)
        {
            *reasoning = self.redact_string(std::mem::take(reasoning));
        }
        for call in &mut details.tool_calls {
            if self.has_secret(&call.input) {
                call.input = self.redact_string(std::mem::take(&mut call.input));
            }
        }
    }
}
