//! The proof that the gate let a command through. Only [`super::Gate`] makes a [`Permit`]:
//! its fields are private and it has no public constructor, and every operation that changes
//! a run, the agent pool or a decision takes one. So "passed the gate" is checked by the
//! compiler, not by convention: code that wants to cancel a run without asking the gate
//! does not build.
//!
//! ```compile_fail
//! // A permit cannot be made outside the gate: its fields are private.
//! use flightdeck::command::Command;
//! use flightdeck::governance::{Identity, Permit, Provenance};
//! fn forge(identity: Identity, command: Command, provenance: Provenance) -> Permit {
//!     Permit { identity, command, run: None, provenance }
//! }
//! ```
//!
//! ```compile_fail
//! // Cancelling a run takes the gate's permit.
//! async fn cancel_without_asking(run: flightdeck::engine::RunHandle) {
//!     let _ = run.cancel().await;
//! }
//! ```
//!
//! ```compile_fail
//! // The runtime's engine and registry are not reachable from outside it.
//! fn reach_in(runtime: &flightdeck::runtime::Runtime) {
//!     let _ = runtime.engine();
//! }
//! ```
//!
//! ```compile_fail
//! fn reach_in(runtime: &flightdeck::runtime::Runtime) {
//!     let _ = runtime.registry();
//! }
//! ```
//!
//! A permit is for one command: an operation checks that the permit's command is the one
//! it carries out (a permit to cancel run A cancels nothing of run B).

use std::fmt;

use super::identity::Provenance;
use super::role::Identity;
use crate::command::Command;
use crate::ids::{RunId, UserId};

/// A command the gate accepted, with who asked, how that was established and the run it
/// acts on. Not `Clone`: one decision, one permit.
#[must_use = "a permit is the gate's decision; carry the command out or drop it"]
#[derive(Debug)]
pub struct Permit {
    identity: Identity,
    command: Command,
    run: Option<RunId>,
    provenance: Provenance,
    /// Why the system gave itself this permit (a shutdown, a stop signal); `None` for a
    /// person's command.
    why: Option<String>,
}

/// An operation was handed a permit for another command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the gate's permit is for `{given}`, not for `{needed}`")]
pub struct WrongPermit {
    /// What the operation needed (`cancel_run of run-…`).
    pub needed: String,
    /// What the permit was for.
    pub given: String,
}

impl Permit {
    pub(super) fn new(
        identity: Identity,
        command: Command,
        run: Option<RunId>,
        provenance: Provenance,
        why: Option<String>,
    ) -> Self {
        Self { identity, command, run, provenance, why }
    }

    /// Who the gate let through.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn user(&self) -> &UserId {
        &self.identity.user
    }

    /// The accepted command.
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// The run the command acts on or creates.
    pub fn run(&self) -> Option<&RunId> {
        self.run.as_ref()
    }

    /// How the caller's identity was established, and from where.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Why the system acts on its own (`None`: a person asked).
    pub fn why(&self) -> Option<&str> {
        self.why.as_deref()
    }

    /// `Ok` when this permit is for a command `fits` accepts; else [`WrongPermit`] naming
    /// `needed`.
    pub(crate) fn require(
        &self,
        needed: impl fmt::Display,
        fits: impl FnOnce(&Command) -> bool,
    ) -> Result<(), WrongPermit> {
        if fits(&self.command) {
            Ok(())
        } else {
            Err(WrongPermit { needed: needed.to_string(), given: self.describe() })
        }
    }

    fn describe(&self) -> String {
        match &self.run {
            Some(run) => format!("{} of {run}", self.command.name()),
            None => self.command.name().to_owned(),
        }
    }
}
