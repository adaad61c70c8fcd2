//! The gate: the one function every command passes before it reaches the runtime.
//!
//! For each request it resolves who is asking, checks the role against the command's
//! permission, appends the decision to the audit log and publishes `CommandAccepted` or
//! `CommandDenied`. It fails closed: a decision that cannot be audited is a refusal.
//! `check` writes and syncs one audit line, so it blocks for one `fdatasync` (0.1-4 ms
//! measured on the development VM's disk); operators issue commands at human speed.

use std::fmt;
use std::sync::Arc;

use serde_json::json;

use super::SYSTEM_USER;
use super::identity::{Channel, Provenance, assume};
use super::permit::Permit;
use super::role::{Identity, Role, Roles, permission_name};
use crate::audit::{AuditEntry, AuditLog, Outcome};
use crate::bus::EventBus;
use crate::command::{Command, Permission, Request};
use crate::config::Settings;
use crate::event::Event;
use crate::ids::RunId;

/// Checks, audits and announces every command. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    /// Replaced whole when the settings are reloaded (`users`, `default_role`).
    roles: Arc<std::sync::RwLock<Arc<Roles>>>,
    audit: AuditLog,
    bus: EventBus,
}

/// A refused command: who asked, for what, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}) may not {command}: {reason}", identity.user, identity.role)]
pub struct Denied {
    pub identity: Identity,
    /// The command's name as in the audit log (`cancel_run`).
    pub command: &'static str,
    pub reason: DenyReason,
}

/// Why the gate refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The caller's role lacks the permission the command needs.
    MissingPermission(Permission),
    /// The decision could not be written to the audit log, so nothing is let through.
    AuditUnavailable(String),
    /// `--as` / `FLIGHTDECK_USER` asked for a higher role (or a name that cannot be one).
    Claim(String),
    /// A policy of the project forbids it (approving one's own run, approving twice).
    Policy(String),
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPermission(permission) => {
                write!(f, "the role lacks the `{}` permission", permission_name(*permission))
            }
            Self::AuditUnavailable(error) => {
                write!(f, "the decision cannot be recorded in the audit log ({error})")
            }
            Self::Claim(why) | Self::Policy(why) => f.write_str(why),
        }
    }
}

impl Gate {
    pub fn new(settings: &Settings, audit: AuditLog, bus: EventBus) -> Self {
        let roles = Arc::new(Roles::from_settings(settings));
        Self { roles: Arc::new(std::sync::RwLock::new(roles)), audit, bus }
    }

    /// The users and roles of `settings` from now on (settings reload).
    pub fn set_roles(&self, settings: &Settings) {
        let roles = Arc::new(Roles::from_settings(settings));
        *self.roles.write().unwrap_or_else(std::sync::PoisonError::into_inner) = roles;
    }

    /// The audit log the gate writes (for records that are not commands: a settings reload).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    fn roles(&self) -> Arc<Roles> {
        Arc::clone(&self.roles.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Who `user` is under the gate's settings.
    pub fn identify(&self, user: &str) -> Identity {
        self.roles().identify(user)
    }

    /// Decide one request. `Ok` carries the [`Permit`] that the operation carrying the
    /// command out requires (and the caller's identity, e.g. for `ApprovalDecided`'s `by`).
    /// Every call leaves one audit record and one event, whatever the outcome.
    pub fn check(&self, request: &Request) -> Result<Permit, Denied> {
        self.check_for_run(request, run_of(&request.command))
    }

    /// [`Gate::check`] for a command that creates the run `run` (starting a workflow): the
    /// decision lands in that run's event stream, like the decisions on commands naming it.
    pub fn check_for_run(&self, request: &Request, run: Option<&RunId>) -> Result<Permit, Denied> {
        self.check_from(request, run, &Provenance::local(Channel::CommandLine))
    }

    /// [`Gate::check_for_run`] for a caller whose identity was established as `provenance`
    /// says (a control-socket peer, the console's own account); the audit record carries it.
    pub fn check_from(
        &self,
        request: &Request,
        run: Option<&RunId>,
        provenance: &Provenance,
    ) -> Result<Permit, Denied> {
        self.check_with_rule(request, run, provenance, None)
    }

    /// [`Gate::check_from`] with a rule of the project the request breaks (separation of
    /// duties, a second approval by the same person): refused and audited like a missing
    /// permission.
    pub fn check_with_rule(
        &self,
        request: &Request,
        run: Option<&RunId>,
        provenance: &Provenance,
        broken_rule: Option<String>,
    ) -> Result<Permit, Denied> {
        let identity = self.roles().identify(request.user.as_str());
        self.decide(identity, request, run, provenance, broken_rule, None)
    }

    /// Flightdeck's own action (shutting down, a headless run refusing what nobody can
    /// approve, Ctrl-C, a hot reload), as the system user with the admin role: it passes the
    /// same gate, so it is audited like a person's command, with `why`. Still refused when
    /// the decision cannot be audited.
    pub fn system(&self, command: Command, why: &str) -> Result<Permit, Denied> {
        let identity = Identity { user: crate::ids::UserId::new(SYSTEM_USER), role: Role::Admin };
        let request = Request { user: identity.user.clone(), command };
        let run = run_of(&request.command).cloned();
        let provenance = Provenance::local(Channel::System);
        self.decide(identity, &request, run.as_ref(), &provenance, None, Some(why))
    }

    /// Record what an accepted command then did (`Succeeded` with `did`) or why it failed
    /// (`Failed` with the error): the gate's first record says it was let through, this one
    /// what became of it. An audit log that cannot be written is logged, not returned: the
    /// command has already happened.
    pub fn record(&self, permit: Permit, result: Result<serde_json::Value, String>) {
        let (outcome, mut detail) = match result {
            Ok(did) => (Outcome::Succeeded, json!({ "did": did })),
            Err(error) => (Outcome::Failed, json!({ "error": error })),
        };
        detail["identity"] = permit.provenance().to_audit();
        if let Some(run) = permit.run() {
            detail["run"] = json!(run);
        }
        let identity = permit.identity();
        let entry = AuditEntry {
            user: identity.user.clone(),
            role: identity.role.to_string(),
            action: permit.command().name().to_owned(),
            outcome,
            detail,
        };
        if let Err(error) = self.audit.append(&entry) {
            tracing::error!(user = %identity.user, command = entry.action, %error,
                "gate: the outcome of an accepted command could not be audited");
        }
        // Spent: a permit whose outcome is recorded permits nothing more.
        drop(permit);
    }

    fn decide(
        &self,
        identity: Identity,
        request: &Request,
        run: Option<&RunId>,
        provenance: &Provenance,
        broken_rule: Option<String>,
        why: Option<&str>,
    ) -> Result<Permit, Denied> {
        let command = request.command.name();
        let permission = request.command.permission();
        let mut refusal = if identity.allows(permission) {
            broken_rule.map(DenyReason::Policy)
        } else {
            Some(DenyReason::MissingPermission(permission))
        };

        let args = serde_json::to_value(&request.command).unwrap_or_default();
        let mut detail = json!({
            "command": args,
            "permission": permission_name(permission),
            "identity": provenance.to_audit(),
        });
        if let Some(reason) = &refusal {
            detail["reason"] = json!(reason.to_string());
        }
        if let Some(why) = why {
            detail["why"] = json!(why);
        }
        // The run a start creates is named nowhere in its arguments; `audit tail --run` needs it.
        if let Some(run) = run {
            detail["run"] = json!(run);
        }
        let entry = AuditEntry {
            user: identity.user.clone(),
            role: identity.role.to_string(),
            action: command.to_owned(),
            outcome: if refusal.is_none() { Outcome::Accepted } else { Outcome::Denied },
            detail,
        };
        if let Err(error) = self.audit.append(&entry) {
            tracing::error!(user = %identity.user, command, %error, "gate: audit write failed");
            refusal.get_or_insert(DenyReason::AuditUnavailable(error.to_string()));
        }

        let user = identity.user.clone();
        let role = identity.role.to_string();
        let command_name = command.to_owned();
        match refusal {
            None => {
                self.bus.publish(run, Event::CommandAccepted { user, role, command: command_name });
                let permit = Permit::new(
                    identity,
                    request.command.clone(),
                    run.cloned(),
                    provenance.clone(),
                    why.map(str::to_owned),
                );
                Ok(permit)
            }
            Some(reason) => {
                let text = reason.to_string();
                // A refused start creates no run, so its refusal belongs to none.
                let run = run_of(&request.command);
                self.bus.publish(
                    run,
                    Event::CommandDenied { user, role, command: command_name, reason: text },
                );
                Err(Denied { identity, command, reason })
            }
        }
    }
}

impl Gate {
    /// The identity `caller` acts as: its own, or `claimed` (`--as`, `FLIGHTDECK_USER`) when
    /// that role is no higher. A refused claim is audited (`assume_identity`, denied) and
    /// announced like any refused command.
    pub fn assume(&self, caller: &Provenance, claimed: Option<&str>) -> Result<Identity, Denied> {
        let roles = self.roles();
        match assume(&roles, caller, claimed) {
            Ok(identity) => Ok(identity),
            Err(refused) => {
                let own = roles.identify(&caller.account);
                let text = refused.to_string();
                let entry = AuditEntry {
                    user: own.user.clone(),
                    role: own.role.to_string(),
                    action: ASSUME_IDENTITY.to_owned(),
                    outcome: Outcome::Denied,
                    detail: json!({
                        // Debug-quoted: a name with control characters stays one inert string.
                        "claimed": format!("{:?}", claimed.unwrap_or_default()),
                        "reason": text,
                        "identity": caller.to_audit(),
                    }),
                };
                if let Err(error) = self.audit.append(&entry) {
                    tracing::error!(%error, "gate: audit write failed for a refused --as");
                }
                self.bus.publish(
                    None,
                    Event::CommandDenied {
                        user: own.user.clone(),
                        role: own.role.to_string(),
                        command: ASSUME_IDENTITY.to_owned(),
                        reason: text.clone(),
                    },
                );
                Err(Denied {
                    identity: own,
                    command: ASSUME_IDENTITY,
                    reason: DenyReason::Claim(text),
                })
            }
        }
    }
}

/// The audit action of taking another identity with `--as`.
pub const ASSUME_IDENTITY: &str = "assume_identity";

/// The run a command acts on, so its decision lands in that run's event stream.
pub fn run_of(command: &Command) -> Option<&RunId> {
    match command {
        Command::CancelRun { run }
        | Command::CancelTask { run, .. }
        | Command::RetryTask { run, .. }
        | Command::Approve { run, .. }
        | Command::Reject { run, .. }
        | Command::ResolveConflict { run, .. }
        | Command::AskThirdOpinion { run, .. } => Some(run),
        _ => None,
    }
}
