//! The control socket's wire format, version [`PROTOCOL_VERSION`]: JSON lines, one message
//! per line, each an object whose `msg` field names it.
//!
//! ```text
//! client → {"msg":"hello","version":1,"from":"attach","as_user":null,"subscribe":true,"readonly":false}
//! host   → {"msg":"welcome","version":1,"user":"rex","role":"reviewer","account":"rex","host_pid":4242}
//! host   → {"msg":"snapshot","events":[…envelopes…]}          (only when subscribed)
//! host   → {"msg":"event","event":{"seq":…,"type":"task_started",…}}   (live, in order)
//! client → {"msg":"command","id":1,"command":{"command":"approve","run":"…","task":"…","note":null}}
//! host   → {"msg":"reply","id":1,"outcome":"done","message":null}
//! client → {"msg":"approvals","id":2}
//! host   → {"msg":"approvals","id":2,"approvals":[…]}
//! client → {"msg":"conflicts","id":3}
//! host   → {"msg":"conflicts","id":3,"conflicts":[…]}
//! host   → {"msg":"closing","reason":"the host is exiting"}
//! ```
//!
//! A hello with another major version, or an `as_user` the caller may not take, gets
//! `{"msg":"refused","reason":…}` and the connection closes. A subscriber that falls behind
//! gets `{"msg":"lagged","missed":N}` and a fresh snapshot.

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::conflict::{MemberVerdict, OpenConflict, Recommendation};
use crate::event::Envelope;
use crate::governance::{Channel, PendingApproval};
use crate::ids::{RunId, TaskId};

/// The protocol's version. A host refuses a hello with another one.
pub const PROTOCOL_VERSION: u32 = 1;

/// The socket's file name inside the data dir.
pub const SOCKET_FILE: &str = "control.sock";

/// The longest line either side accepts (a snapshot of a large run is one line).
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Decodes one line a client sent (without caring for its newline): what the host reads,
/// and what the fuzz target runs.
pub fn decode_client_line(line: &str) -> Result<ClientMessage, serde_json::Error> {
    serde_json::from_str(line)
}

/// Decodes one line the host sent.
pub fn decode_host_line(line: &str) -> Result<HostMessage, serde_json::Error> {
    serde_json::from_str(line)
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first message: who the client is and what it wants.
    Hello {
        version: u32,
        /// `attach` or `command_line`; recorded in audit records.
        from: Channel,
        /// `--as` / `FLIGHTDECK_USER`: an identity no higher than the peer's own.
        #[serde(default)]
        as_user: Option<String>,
        /// Send a snapshot, then every event.
        #[serde(default)]
        subscribe: bool,
        /// Refuse every command of this connection (`attach --readonly`).
        #[serde(default)]
        readonly: bool,
    },
    /// A command for the host's gate; answered by a `reply` with the same id.
    Command { id: u64, command: Command },
    /// What waits for a reviewer; answered by `approvals` with the same id.
    Approvals { id: u64 },
    /// Conflicts waiting for a person; answered by `conflicts` with the same id.
    Conflicts { id: u64 },
}

/// How a command ended, as the command-line clients turn it into exit codes (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Carried out.
    Done,
    /// The gate refused it (role, separation of duties, readonly connection).
    Refused,
    /// Bad input: no such run or task, nothing waiting, a malformed message.
    Invalid,
}

/// What the host sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum HostMessage {
    /// The hello was accepted: who the host takes the client for.
    Welcome {
        version: u32,
        /// The identity commands run as.
        user: String,
        role: String,
        /// The OS account the kernel named.
        account: String,
        host_pid: u32,
    },
    /// The hello was refused; the connection closes.
    Refused { reason: String },
    /// The current picture: stored events of the host's runs, then pool, breaker and
    /// registry state (synthetic events with `seq` 0).
    Snapshot { events: Vec<Envelope> },
    /// One live event.
    Event { event: Envelope },
    /// The subscriber fell behind by `missed` events; a snapshot follows.
    Lagged { missed: u64 },
    /// The answer to a command.
    Reply { id: u64, outcome: Outcome, message: Option<String> },
    /// The answer to `approvals`.
    Approvals { id: u64, approvals: Vec<PendingApproval> },
    /// The answer to `conflicts`: oldest first.
    Conflicts { id: u64, conflicts: Vec<WaitingConflict> },
    /// The host is going away.
    Closing { reason: String },
}

/// A panel task's conflict that waits for a person, as `flightdeck approvals` shows it and
/// `flightdeck resolve` settles it: the choice numbers count `members` from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingConflict {
    pub run: RunId,
    pub task: TaskId,
    pub question: String,
    #[serde(default)]
    pub options: Vec<String>,
    /// The members that gave a verdict, in panel order, each with its decision.
    pub members: Vec<MemberVerdict>,
    /// What the ladder recommends, if anything.
    #[serde(default)]
    pub recommendation: Option<Recommendation>,
}

impl From<OpenConflict> for WaitingConflict {
    fn from(open: OpenConflict) -> Self {
        Self {
            run: open.run,
            task: open.task,
            question: open.question,
            options: open.options,
            members: open.verdicts,
            recommendation: open.recommendation,
        }
    }
}
