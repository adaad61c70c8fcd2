//! Resume after a crash: what an interrupted run goes on from.
//!
//! Everything here is derived from the run's stored events through the one fold,
//! [`RunModel`]; nothing re-reads task state on its own. Three things live outside the
//! event stream because an event may be lost in the very crash they are about:
//! - the workflow a run started from (its text, hash and the command-line choices), written
//!   next to the run's lock file before the run's first event ([`StoredWorkflow`]);
//! - the agent processes of the run, which carry `FLIGHTDECK_RUN=<run id>` in their
//!   environment and their own process group: the kernel keeps both for as long as any of
//!   them lives, so [`kill_leftovers`] finds every group of the run, even one whose start was
//!   never committed.

mod leftovers;
mod point;
mod stored;

pub use leftovers::{Leftover, kill_leftovers, leftovers, sweep_unstored};
pub use point::{ResumePoint, TaskResume};
pub use stored::{StoredError, StoredWorkflow, WORKFLOW_SUFFIX, remove_stored, stored_path};

use std::fmt::Write as _;

use crate::event::Event;

/// The one line that tells a person what a resume event means; the console's audit pane
/// and the headless progress lines both print it.
pub fn describe(event: &Event) -> Option<String> {
    match event {
        Event::RunResumed { done, remaining, workflow_changed, killed_processes } => {
            let mut text = format!("run resumed: {done} tasks done, {remaining} to go");
            if *killed_processes > 0 {
                let _ = write!(
                    text,
                    "; killed {killed_processes} leftover agent process(es) of the crashed run"
                );
            }
            if *workflow_changed {
                text.push_str(
                    "; the workflow file changed since the run started: the stored plan is used",
                );
            }
            Some(text)
        }
        Event::AttemptInterrupted { task, agent, attempt } => Some(format!(
            "{task} attempt {attempt} on {agent} was interrupted by the crash; it runs again \
             and may have run twice"
        )),
        _ => None,
    }
}
