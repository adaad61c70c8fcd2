//! The control socket's wire format, version [`PROTOCOL_VERSION`]: JSON lines, one message
//! per line, each an object whose `msg` field names it.
//!
//! ```text
//! client → {"msg":"hello","version":2,"from":"attach","as_user":null,"subscribe":true,"readonly":false,"feed":"console"}
//! host   → {"msg":"welcome","version":2,"user":"rex","role":"reviewer","account":"rex","host_pid":4242}
//! host   → {"msg":"snapshot","events":[…envelopes…]}          (only when subscribed)
//! host   → {"msg":"event","event":{"seq":…,"type":"task_started",…}}   (live, in order)
//! host   → {"msg":"events","events":[…]}         (feed "console": a tick's events, in order)
//! host   → {"msg":"digest","events":N,"last_seq":S,"parts":[…]}   (feed "console", a flood)
//! client → {"msg":"command","id":1,"command":{"command":"approve","run":"…","task":"…","note":null}}
//! host   → {"msg":"reply","id":1,"outcome":"done","message":null}
//! client → {"msg":"approvals","id":2}
//! host   → {"msg":"approvals","id":2,"approvals":[…]}
//! client → {"msg":"conflicts","id":3}
//! host   → {"msg":"conflicts","id":3,"conflicts":[…]}
//! host   → {"msg":"closing","reason":"the host is exiting"}
//! ```
//!
//! A subscriber chooses its feed in the hello: `"feed":"events"` (the default) is every
//! event, one `event` line each, as `flightdeck run` follows a run it handed to the host;
//! `"feed":"console"` is what an attached console needs: the events of each tick (16 ms) in
//! one `events` line, or, when a tick holds more than [`DIGEST_ABOVE`] events, one `digest`
//! line in which each task that only moved along its usual path (ready, started, succeeded,
//! streamed) is one compact change with its latest state, and pool churn is each instance's
//! latest event; every other event is sent whole, in order.
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
use crate::model::TaskStatus;

/// The protocol's version. A host refuses a hello with another one.
///
/// 2: a large plan's `id` and `description` columns are each one text with the tasks'
/// lengths (version 1 sent a list of strings), which a version-1 console cannot read.
pub const PROTOCOL_VERSION: u32 = 2;

/// The socket's file name inside the data dir.
pub const SOCKET_FILE: &str = "control.sock";

/// A console feed's tick with more events than this is sent as a [`Digest`].
pub const DIGEST_ABOVE: usize = 64;

/// The longest line either side accepts (a snapshot of a large run is one line).
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Decodes one line a client sent (without caring for its newline): what the host reads,
/// and what the fuzz target runs.
pub fn decode_client_line(line: &str) -> Result<ClientMessage, serde_json::Error> {
    serde_json::from_str(line)
}

/// Decodes one line the host sent. The host's event-carrying lines are read by
/// [`fast`] (their envelopes as the store reads its lines); any other line, or one of
/// another shape, by `serde`.
pub fn decode_host_line(line: &str) -> Result<HostMessage, serde_json::Error> {
    let kind = line
        .strip_prefix(r#"{"msg":""#)
        .and_then(|rest| rest.split_once('"'))
        .map_or("", |(kind, _)| kind);
    match kind {
        "events" => fast::events(line),
        "event" => fast::event(line),
        "snapshot" => fast::snapshot(line),
        "digest" => fast::digest(line),
        _ => serde_json::from_str(line),
    }
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
        /// What a subscriber is sent: every event, or a console's feed.
        #[serde(default)]
        feed: Feed,
    },
    /// A command for the host's gate; answered by a `reply` with the same id.
    Command { id: u64, command: Command },
    /// What waits for a reviewer; answered by `approvals` with the same id.
    Approvals { id: u64 },
    /// Conflicts waiting for a person; answered by `conflicts` with the same id.
    Conflicts { id: u64 },
}

/// What a subscribed client is sent after its snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// Every event, one `event` line each.
    #[default]
    Events,
    /// A console's feed: `events` lines per tick, `digest` lines in a flood.
    Console,
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
    /// A console feed's tick: its events, in order.
    Events { events: Vec<Envelope> },
    /// A console feed's tick in a flood.
    Digest(Digest),
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

/// A flood of events condensed for a console: `parts` in order, each either whole events or
/// the latest state of tasks that only moved along their usual path in this tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// Events this digest stands for.
    pub events: u64,
    /// When the first of them was published (ms since the epoch): none waited longer.
    #[serde(default)]
    pub since_ms: u64,
    /// The highest `seq` among them: later events repeat nothing of it.
    pub last_seq: u64,
    pub parts: Vec<DigestPart>,
}

/// Part of a [`Digest`]: whole events, or task changes of one run. On the wire a part may
/// instead hold `started`: a run's start with its plan in columns (`agents`, and `tasks`
/// as `id`, `description`, `agent` (an index into `agents`), `score`, `depends_on` (indices
/// into `id`), `layer`, `timeout_ms`, `retries`), read back into its `run_started` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DigestPart {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Envelope>,
    /// The run of `tasks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskChange>,
}

/// Tasks that reached the same state at the same moment within a digest's tick: `count`
/// tasks from position `first` of the run's latest plan (its latest `run_started`, in
/// order). On the wire a JSON array, `[12,3,"succeeded",1,1765100000123,4]`: first, count,
/// status, attempt (0: unchanged), when (ms since the epoch), and for a finished attempt its
/// duration in ms (else `null`). A fan-out's tasks become ready, start and finish in plan
/// order, so a flood's thousands of changes are a few ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ChangeTuple", into = "ChangeTuple")]
pub struct TaskChange {
    pub first: u32,
    pub count: u32,
    pub status: TaskStatus,
    pub attempt: u32,
    pub at_ms: u64,
    pub duration_ms: Option<u64>,
}

type ChangeTuple = (u32, u32, TaskStatus, u32, u64, Option<u64>);

impl From<ChangeTuple> for TaskChange {
    fn from((first, count, status, attempt, at_ms, duration_ms): ChangeTuple) -> Self {
        Self { first, count, status, attempt, at_ms, duration_ms }
    }
}

impl From<TaskChange> for ChangeTuple {
    fn from(c: TaskChange) -> Self {
        (c.first, c.count, c.status, c.attempt, c.at_ms, c.duration_ms)
    }
}

impl TaskChange {
    /// Whether `next` (of the task at `self`'s end) can join this range.
    pub fn extends_with(&self, position: u32, next: &Self) -> bool {
        position == self.first.saturating_add(self.count)
            && (next.status, next.attempt, next.at_ms, next.duration_ms)
                == (self.status, self.attempt, self.at_ms, self.duration_ms)
    }
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

/// Lines that carry events, read with their envelopes decoded as the store decodes its
/// lines ([`crate::store::decode`]): the host writes them in the same shape. `serde`'s own
/// reading of [`HostMessage`] buffers the whole message (its tag), then each envelope twice
/// (the flattened event, then the event's tag), which made a 10,000-task run's start cost
/// each attached console more than the rest of the run.
mod fast {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::value::RawValue;

    use super::{Digest, DigestPart, HostMessage, TaskChange};
    use crate::columns::StartedRun;
    use crate::event::Envelope;
    use crate::ids::RunId;
    use crate::store::decode::Decoder;

    #[derive(Deserialize)]
    struct Many {
        #[serde(deserialize_with = "envelopes")]
        events: Vec<Envelope>,
    }

    #[derive(Deserialize)]
    struct One {
        #[serde(deserialize_with = "envelope")]
        event: Envelope,
    }

    #[derive(Deserialize)]
    struct Condensed<'a> {
        events: u64,
        #[serde(default)]
        since_ms: u64,
        last_seq: u64,
        #[serde(borrow)]
        parts: Vec<Part<'a>>,
    }

    #[derive(Deserialize)]
    struct Part<'a> {
        #[serde(default, deserialize_with = "envelopes")]
        events: Vec<Envelope>,
        #[serde(default, borrow)]
        started: Option<StartedRun<'a>>,
        #[serde(default)]
        run: Option<RunId>,
        #[serde(default)]
        tasks: Vec<TaskChange>,
    }

    pub(super) fn events(line: &str) -> serde_json::Result<HostMessage> {
        serde_json::from_str::<Many>(line).map(|m| HostMessage::Events { events: m.events })
    }

    pub(super) fn snapshot(line: &str) -> serde_json::Result<HostMessage> {
        serde_json::from_str::<Many>(line).map(|m| HostMessage::Snapshot { events: m.events })
    }

    pub(super) fn event(line: &str) -> serde_json::Result<HostMessage> {
        serde_json::from_str::<One>(line).map(|one| HostMessage::Event { event: one.event })
    }

    pub(super) fn digest(line: &str) -> serde_json::Result<HostMessage> {
        let Condensed { events, since_ms, last_seq, parts } = serde_json::from_str(line)?;
        let parts = parts
            .into_iter()
            .map(|Part { mut events, started, run, tasks }| {
                if let Some(started) = started {
                    events.push(started.into_envelope()?);
                }
                Ok(DigestPart { events, run, tasks })
            })
            .collect::<serde_json::Result<_>>()?;
        Ok(HostMessage::Digest(Digest { events, since_ms, last_seq, parts }))
    }

    fn envelopes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Envelope>, D::Error> {
        let raw: Vec<Box<RawValue>> = Vec::deserialize(deserializer)?;
        let mut decoder = Decoder::default();
        raw.iter().map(|line| decoder.decode(line.get()).map_err(D::Error::custom)).collect()
    }

    fn envelope<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Envelope, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Decoder::default().decode(raw.get()).map_err(D::Error::custom)
    }
}
