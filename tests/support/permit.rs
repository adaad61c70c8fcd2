//! The gate's permit for a command, for tests that drive an [`Engine`] of their own: only a
//! gate makes permits, so these tests pass a real one (an admin's, audited to a log of
//! their own), exactly as the runtime does.
//!
//! [`Engine`]: flightdeck::engine::Engine

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use flightdeck::audit::AuditLog;
use flightdeck::bus::EventBus;
use flightdeck::command::{Command, Request};
use flightdeck::config::Settings;
use flightdeck::governance::{Gate, Permit};
use flightdeck::ids::UserId;

/// Who the tests act as.
pub const TESTER: &str = "tester";

/// A gate letting [`TESTER`] do anything, auditing to `dir/audit.jsonl`.
pub fn gate(dir: &Path, bus: &EventBus) -> Gate {
    let mut settings = Settings::default();
    settings.users.insert(TESTER.into(), "admin".into());
    let audit = AuditLog::open(dir.join("audit.jsonl")).unwrap();
    Gate::new(&settings, audit, bus.clone())
}

/// The permit `gate` gives [`TESTER`] for `command`.
pub fn permit(gate: &Gate, command: Command) -> Permit {
    gate.check(&Request { user: UserId::new(TESTER), command }).unwrap()
}
