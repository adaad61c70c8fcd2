//! Reading a stored JSON line back into an [`Envelope`], fast.
//!
//! `serde` reads an [`Envelope`] through two buffers: `#[serde(flatten)]` collects every
//! field of the line into a tree of owned values, then the internally tagged [`Event`]
//! collects its own fields into another before its variant reads them. On a 10,000-task run
//! that was most of what resume and `runs show` spent. The writer's lines have one shape
//! (see [`super::encode`]): `{"seq":N,"ts":"…","run_id":"…","type":"kind",…fields}`. This
//! reads that envelope prefix by hand and the event's fields, copied into an object of
//! their own, of the common kinds straight into their variant (a struct per kind). Any
//! other kind, or a line of another shape, is read by `serde` as before, so the result is
//! always what `serde_json::from_str::<Envelope>` gives (tests compare both).

use std::time::UNIX_EPOCH;

use crate::columns::{Columns, Text, tasks_of};
use crate::event::TokenUsage;
use crate::event::{AnswerDetails, Envelope, Event, OutputStream, PlannedTask, RunStatus};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};

/// `2023-11-14T22:13:20.123Z`: the length of every timestamp the store writes.
const TS_LEN: usize = 24;
/// `2023-11-14T22:13:20`: the part of a timestamp that names its second.
const SECOND_LEN: usize = 19;

/// Reads stored lines, remembering the second of the last timestamp read (a run's events
/// come many to a second).
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// The `YYYY-MM-DDTHH:MM:SS` last read, and its milliseconds since the epoch.
    second: Option<(String, u64)>,
    /// The event's fields as a JSON object of their own, rebuilt for each line.
    fields: String,
}

/// The envelope's own fields and the event's kind, read off the start of a line.
struct Prefix<'a> {
    seq: u64,
    ts_ms: u64,
    run_id: Option<RunId>,
    kind: &'a str,
    /// The rest of the line after the kind: `,"task":…}`.
    fields: &'a str,
}

impl Decoder {
    /// One stored line (or a line of the same shape, as the host sends) as an envelope.
    pub(crate) fn decode(&mut self, line: &str) -> Result<Envelope, serde_json::Error> {
        match self.prefix(line) {
            Some(prefix) => self.read(prefix, line),
            None => serde_json::from_str(line),
        }
    }

    /// One stored line as an envelope, or `None` if its event's kind is one `skip` names:
    /// such a line is not read past its kind.
    pub(crate) fn decode_unless(
        &mut self,
        line: &str,
        skip: impl Fn(&str) -> bool,
    ) -> Result<Option<Envelope>, serde_json::Error> {
        match self.prefix(line) {
            Some(prefix) if skip(prefix.kind) => Ok(None),
            Some(prefix) => self.read(prefix, line).map(Some),
            None => {
                let envelope: Envelope = serde_json::from_str(line)?;
                Ok((!skip(envelope.event.kind())).then_some(envelope))
            }
        }
    }

    /// The whole line's envelope: the event of a common kind read straight into its variant
    /// from its fields alone (the envelope's keys already read), any other (or a fast read
    /// that failed, for `serde`'s own error) by `serde`.
    fn read(&mut self, prefix: Prefix<'_>, line: &str) -> Result<Envelope, serde_json::Error> {
        self.fields.clear();
        self.fields.push('{');
        self.fields.push_str(prefix.fields.strip_prefix(',').unwrap_or(prefix.fields));
        match fast_event(prefix.kind, &self.fields) {
            Some(Ok(event)) => {
                let Prefix { seq, ts_ms, run_id, .. } = prefix;
                Ok(Envelope { seq, ts_ms, run_id, event })
            }
            // `serde` cannot read a plan in columns: its own error would name the wrong fault.
            Some(Err(error)) if prefix.kind == "run_started" => {
                serde_json::from_str(line).map_err(|_| error)
            }
            _ => serde_json::from_str(line),
        }
    }

    fn prefix<'a>(&mut self, line: &'a str) -> Option<Prefix<'a>> {
        let rest = line.strip_prefix("{\"seq\":")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let seq = rest.get(..digits)?.parse().ok()?;
        let rest = rest.get(digits..)?.strip_prefix(",\"ts\":\"")?;
        let ts_ms = self.ts_ms(rest.get(..TS_LEN)?)?;
        let rest = rest.get(TS_LEN..)?.strip_prefix('"')?;
        let (run_id, rest) = match rest.strip_prefix(",\"run_id\":") {
            Some(rest) => {
                let end = string_end(rest)?;
                let text = rest.get(..end)?;
                // Quotes and backslashes are escaped in an id only if it has any.
                let id = match text.get(1..end - 1) {
                    Some(plain) if !plain.contains('\\') => RunId::new(plain),
                    _ => serde_json::from_str(text).ok()?,
                };
                (Some(id), rest.get(end..)?)
            }
            None => (None, rest),
        };
        let rest = rest.strip_prefix(",\"type\":\"")?;
        // Kinds are snake_case words: no escapes.
        let end = rest.find('"')?;
        let (kind, fields) = (rest.get(..end)?, rest.get(end + 1..)?);
        Some(Prefix { seq, ts_ms, run_id, kind, fields })
    }

    /// `2023-11-14T22:13:20.123Z` in milliseconds since the epoch, as `event::rfc3339_ms` reads
    /// it; `None` for any other shape (the line is then read by `serde`).
    fn ts_ms(&mut self, ts: &str) -> Option<u64> {
        let (second, fraction) = (ts.get(..SECOND_LEN)?, ts.get(SECOND_LEN..)?);
        let millis = fraction.strip_prefix('.')?.strip_suffix('Z')?;
        if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let millis: u64 = millis.parse().ok()?;
        let second_ms = match &self.second {
            Some((text, ms)) if text == second => *ms,
            _ => {
                let at = humantime::parse_rfc3339_weak(&format!("{second}Z")).ok()?;
                let ms = u64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
                self.second = Some((second.to_owned(), ms));
                ms
            }
        };
        Some(second_ms + millis)
    }
}

/// A `run_started` event's fields, its plan a list of tasks or in columns (as the store
/// writes a large one, see [`crate::columns`]).
fn run_started(fields: &str) -> Result<Event, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        workflow: String,
        file: std::path::PathBuf,
        goal: Option<String>,
        max_parallel: usize,
        fail_fast: bool,
        simulated: bool,
        #[serde(default, borrow)]
        agents: Vec<Text<'a>>,
        #[serde(borrow)]
        tasks: Plan<'a>,
    }
    let Fields { workflow, file, goal, max_parallel, fail_fast, simulated, agents, tasks } =
        serde_json::from_str(fields)?;
    let tasks = match tasks {
        Plan::Listed(tasks) => tasks,
        Plan::Columns(columns) => tasks_of(&agents, *columns)?,
    };
    Ok(Event::RunStarted { workflow, file, goal, max_parallel, fail_fast, simulated, tasks })
}

/// A run's plan as stored: the list of its tasks, or (an object) its columns.
enum Plan<'a> {
    Listed(Vec<PlannedTask>),
    Columns(Box<Columns<'a>>),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Plan<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Plan<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of planned tasks, or a plan in columns")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut tasks = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(task) = seq.next_element()? {
                    tasks.push(task);
                }
                Ok(Plan::Listed(tasks))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let columns = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(Plan::Columns(Box::new(columns)))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// The byte just past the JSON string `text` starts with, escapes skipped.
fn string_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut at = 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

/// Reads the fields of each listed kind straight into its variant. Each kind gets a struct
/// with the variant's fields and their serde attributes; the variant is then built field by
/// field, so a field added to [`Event`] and not here fails to compile. Keys a struct does not
/// know are skipped, as serde skips them in the variant.
macro_rules! fast_kinds {
    ($kind:expr, $line:expr; $(
        $name:literal => $variant:ident { $( $(#[$attr:meta])* $field:ident : $ty:ty ),* $(,)? }
    )*) => {
        match $kind {
            $( $name => {
                #[derive(serde::Deserialize)]
                struct Fields { $( $(#[$attr])* $field: $ty ),* }
                Some(serde_json::from_str::<Fields>($line)
                    .map(|f| Event::$variant { $( $field: f.$field ),* }))
            } )*
            _ => None,
        }
    };
}

/// The event of a common kind from its fields (a JSON object); `None` for the other kinds.
fn fast_event(kind: &str, fields: &str) -> Option<Result<Event, serde_json::Error>> {
    if kind == "run_started" {
        return Some(run_started(fields));
    }
    fast_kinds!(kind, fields;
        "task_ready" => TaskReady { task: TaskId }
        "task_started" => TaskStarted {
            task: TaskId,
            agent: AgentId,
            attempt: u32,
            instance: InstanceId,
            backend: String,
            simulated: bool,
        }
        "task_output" => TaskOutput { task: TaskId, stream: OutputStream, text: String }
        "task_retrying" => TaskRetrying {
            task: TaskId,
            agent: AgentId,
            attempt: u32,
            delay_ms: u64,
            duration_ms: u64,
            error: String,
        }
        "task_succeeded" => TaskSucceeded {
            task: TaskId,
            agent: AgentId,
            attempt: u32,
            duration_ms: u64,
            output: String,
            usage: Option<TokenUsage>,
            simulated: bool,
            #[serde(default)]
            details: AnswerDetails,
        }
        "task_failed" => TaskFailed {
            task: TaskId,
            agent: Option<AgentId>,
            attempt: u32,
            duration_ms: u64,
            error: String,
        }
        "task_skipped" => TaskSkipped { task: TaskId, reason: String }
        "task_cancelled" => TaskCancelled { task: TaskId, reason: String }
        "instance_reserved" => InstanceReserved { instance: InstanceId, agent: AgentId }
        "instance_working" => InstanceWorking {
            instance: InstanceId,
            agent: AgentId,
            task: Option<TaskId>,
        }
        "instance_idle" => InstanceIdle { instance: InstanceId, agent: AgentId }
        "command_accepted" => CommandAccepted { user: UserId, role: String, command: String }
        "run_finished" => RunFinished {
            status: RunStatus,
            succeeded: usize,
            failed: usize,
            skipped: usize,
            cancelled: usize,
            duration_ms: u64,
        }
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::event::{Level, ToolCall};
    use crate::store::Encoder;

    fn events() -> Vec<Event> {
        let task = || TaskId::new("build \"quoted\" \u{e9}\n");
        let agent = || AgentId::new("coder");
        vec![
            Event::RunStarted {
                workflow: "wf".into(),
                file: PathBuf::from("workflows/a b.yaml"),
                goal: Some("ship it".into()),
                max_parallel: 4,
                fail_fast: true,
                simulated: true,
                tasks: vec![PlannedTask {
                    task: TaskId::new("a"),
                    description: "do a\twith tabs".into(),
                    agent: agent(),
                    score: Some(0.5),
                    depends_on: vec![TaskId::new("b")].into(),
                    layer: 1,
                    timeout_ms: 30_000,
                    retries: 2,
                }],
            },
            Event::TaskReady { task: task() },
            Event::TaskStarted {
                task: task(),
                agent: agent(),
                attempt: 2,
                instance: InstanceId(7),
                backend: "sim".into(),
                simulated: true,
            },
            Event::TaskOutput { task: task(), stream: OutputStream::Tokens, text: "a\nb".into() },
            Event::TaskRetrying {
                task: task(),
                agent: agent(),
                attempt: 1,
                delay_ms: 5,
                duration_ms: 9,
                error: "flaky".into(),
            },
            Event::TaskSucceeded {
                task: task(),
                agent: agent(),
                attempt: 1,
                duration_ms: 12,
                output: "out".into(),
                usage: Some(TokenUsage::new(3, 4)),
                simulated: false,
                details: AnswerDetails {
                    truncated: true,
                    tool_calls: vec![ToolCall {
                        id: None,
                        name: "Read".into(),
                        input: "{}".into(),
                    }],
                    reasoning: Some("why".into()),
                    session_id: None,
                    cost_usd: Some(0.25),
                },
            },
            Event::TaskSucceeded {
                task: task(),
                agent: agent(),
                attempt: 1,
                duration_ms: 12,
                output: String::new(),
                usage: None,
                simulated: true,
                details: AnswerDetails::default(),
            },
            Event::TaskFailed {
                task: task(),
                agent: None,
                attempt: 3,
                duration_ms: 1,
                error: "no".into(),
            },
            Event::TaskSkipped { task: task(), reason: "dep".into() },
            Event::TaskCancelled { task: task(), reason: "op".into() },
            Event::InstanceReserved { instance: InstanceId(1), agent: agent() },
            Event::InstanceWorking { instance: InstanceId(1), agent: agent(), task: None },
            Event::InstanceWorking { instance: InstanceId(1), agent: agent(), task: Some(task()) },
            Event::InstanceIdle { instance: InstanceId(1), agent: agent() },
            Event::CommandAccepted {
                user: UserId::new("ann"),
                role: "admin".into(),
                command: "run".into(),
            },
            Event::RunFinished {
                status: RunStatus::Failed,
                succeeded: 1,
                failed: 2,
                skipped: 3,
                cancelled: 4,
                duration_ms: 5,
            },
            // Not a fast kind: read by serde.
            Event::Notice { level: Level::Warn, message: "careful".into() },
        ]
    }

    fn line(envelope: &Envelope) -> String {
        let mut out = Vec::new();
        Encoder::default().encode(&mut out, envelope).expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn reads_every_line_as_serde_does() {
        let mut decoder = Decoder::default();
        let stamps = [0, 999, 1_700_000_000_123, 1_700_000_000_999, 1_700_000_001_007, 5];
        for (at, ts_ms) in stamps.into_iter().enumerate() {
            for (seq, event) in events().into_iter().enumerate() {
                let run_id = match seq % 3 {
                    0 => None,
                    1 => Some(RunId::new(format!("r{at}"))),
                    _ => Some(RunId::new(format!("r{at}\"x\\y"))),
                };
                let envelope = Envelope { seq: (at * 100 + seq) as u64, ts_ms, run_id, event };
                let line = line(&envelope);
                let slow: Envelope = serde_json::from_str(&line).expect("serde reads it");
                assert_eq!(slow, envelope);
                let prefix = decoder.prefix(&line).expect("the writer's shape");
                if prefix.kind != "notice" {
                    let fields = format!("{{{}", &prefix.fields[1..]);
                    let fast = fast_event(prefix.kind, &fields).expect("a fast kind");
                    assert_eq!(fast.expect("read"), envelope.event, "{line}");
                }
                assert_eq!(decoder.decode(&line).expect("decode"), envelope, "{line}");
            }
        }
    }

    #[test]
    fn lines_of_another_shape_are_read_by_serde() {
        let mut decoder = Decoder::default();
        // Keys in another order, a timestamp without milliseconds, spaces.
        let lines = [
            r#"{"type":"task_ready","task":"a","seq":3,"ts":"2023-11-14T22:13:20.123Z","run_id":"r"}"#,
            r#"{"seq":3,"ts":"2023-11-14T22:13:20Z","run_id":"r","type":"task_ready","task":"a"}"#,
            r#"{ "seq": 3, "ts": "2023-11-14T22:13:20.123Z", "type": "task_ready", "task": "a" }"#,
        ];
        for line in lines {
            let slow: Envelope = serde_json::from_str(line).expect("serde reads it");
            assert_eq!(decoder.decode(line).expect("decode"), slow, "{line}");
        }
    }

    #[test]
    fn a_bad_line_fails_as_serde_fails() {
        let mut decoder = Decoder::default();
        let lines = [
            // A field of the wrong type in a fast kind.
            r#"{"seq":3,"ts":"2023-11-14T22:13:20.123Z","run_id":"r","type":"task_started","task":"a"}"#,
            r#"{"seq":3,"ts":"2023-11-14T22:13:20.123Z","type":"no_such_kind","task":"a"}"#,
            r#"{"seq":3,"ts":"2023-13-14T22:13:20.123Z","type":"task_ready","task":"a"}"#,
            "not json",
        ];
        for line in lines {
            let slow = serde_json::from_str::<Envelope>(line).expect_err("serde refuses it");
            let fast = decoder.decode(line).expect_err("refused");
            assert_eq!(fast.to_string(), slow.to_string());
        }
    }

    #[test]
    fn skipped_kinds_are_not_read() {
        let mut decoder = Decoder::default();
        let skip = |kind: &str| kind == "task_output";
        let output = Envelope {
            seq: 1,
            ts_ms: 1,
            run_id: Some(RunId::new("r")),
            event: Event::TaskOutput {
                task: TaskId::new("t"),
                stream: OutputStream::Stdout,
                text: "\"type\":\"task_ready\"".into(),
            },
        };
        assert_eq!(decoder.decode_unless(&line(&output), skip).expect("read"), None);
        // Also in a line of another shape, and only that kind.
        let other = r#"{"type":"task_output","task":"a","stream":"stdout","text":"x","seq":3,"ts":"2023-11-14T22:13:20.123Z"}"#;
        assert_eq!(decoder.decode_unless(other, skip).expect("read"), None);
        let ready = r#"{"type":"task_ready","task":"a","seq":3,"ts":"2023-11-14T22:13:20.123Z"}"#;
        assert!(decoder.decode_unless(ready, skip).expect("read").is_some());
    }
}
