//! The store's JSON line for an envelope, written without `serde`'s `flatten`.
//!
//! The writer thread encodes every event of every run; with `#[serde(flatten)]` on
//! [`Envelope`] and `humantime` formatting every timestamp, encoding was most of its time and
//! at 100,000 tasks it fell behind the engine (the backlog held tens of MB, and the run
//! waited for it at the end). The line is byte for byte what `serde_json::to_writer` writes
//! for the envelope (tests check it): the envelope's own fields, then the event's object
//! (tag first) without its opening brace. The date part of the timestamp is formatted once
//! per second.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::columns::{COLUMNS_ABOVE, Columns, Text, columns_of};
use crate::event::{Envelope, Event, PlannedTask};

/// Bytes of a planned task's JSON besides its strings: keys, punctuation and numbers, with
/// room to spare.
const PLANNED_TASK_OVERHEAD: usize = 160;

/// A generous guess at the length of a `run_started` object, reserved before it is written:
/// at 100,000 tasks it is a 17 MB line, and growing a buffer by doubling to that size copies
/// it over and over, each copy held by the allocator for a while. Room reserved and never
/// written costs no memory (the pages are never touched).
fn run_started_len(tasks: &[PlannedTask]) -> usize {
    let text = |task: &PlannedTask| {
        let deps: usize = task.depends_on.iter().map(|d| d.as_str().len() + 3).sum();
        task.task.as_str().len() + task.description.len() + task.agent.as_str().len() + deps
    };
    // Escapes can make a string longer; an eighth more covers ordinary text.
    tasks.iter().map(|t| PLANNED_TASK_OVERHEAD + text(t) + text(t) / 8).sum::<usize>() + 1024
}

/// The fields of a `run_started` event of more than [`COLUMNS_ABOVE`] tasks, its plan in
/// columns (`agents` before `tasks`), in the order the event's own fields are written: a
/// 100,000-task plan is a 2 MB line instead of 16 MB, written and read several times
/// faster. The decoder reads either.
#[derive(Serialize)]
struct StartInColumns<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    workflow: &'a str,
    file: &'a Path,
    goal: Option<&'a str>,
    max_parallel: usize,
    fail_fast: bool,
    simulated: bool,
    agents: Vec<Text<'a>>,
    tasks: Columns<'a>,
}

impl<'a> StartInColumns<'a> {
    /// `None` for any other event, a smaller plan, or one that names a dependency it does
    /// not hold (written whole, then).
    fn of(event: &'a Event) -> Option<Self> {
        let Event::RunStarted { workflow, file, goal, max_parallel, fail_fast, simulated, tasks } =
            event
        else {
            return None;
        };
        if tasks.len() <= COLUMNS_ABOVE {
            return None;
        }
        let (agents, tasks) = columns_of(tasks)?;
        Some(Self {
            kind: "run_started",
            workflow,
            file,
            goal: goal.as_deref(),
            max_parallel: *max_parallel,
            fail_fast: *fail_fast,
            simulated: *simulated,
            agents,
            tasks,
        })
    }
}

/// Formats `ts` values, remembering the date and time of the last second seen.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    /// Whether a line is written for the store: without its `run_id` (the row holding the
    /// line names the run, 45 bytes of every line) and with a large plan in columns, or
    /// as `run --json` prints it, byte for byte what `serde` writes.
    storing: bool,
    /// The second `second_text` is for, in milliseconds since the epoch (a multiple of 1000).
    second_ms: Option<u64>,
    /// `2023-11-14T22:13:20` for `second_ms`.
    second_text: String,
}

impl Encoder {
    /// The store's encoder: lines without their `run_id` (the reader takes it from the
    /// row), a `run_started` of more than [`COLUMNS_ABOVE`] tasks with its plan in columns
    /// ([`StartInColumns`]).
    pub(crate) fn storing() -> Self {
        Self { storing: true, ..Self::default() }
    }

    /// Append `envelope` as one JSON object (no newline) to `out`.
    pub(crate) fn encode(
        &mut self,
        out: &mut Vec<u8>,
        envelope: &Envelope,
    ) -> Result<(), serde_json::Error> {
        out.extend_from_slice(b"{\"seq\":");
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", envelope.seq);
        out.extend_from_slice(b",\"ts\":\"");
        self.push_ts(out, envelope.ts_ms);
        out.push(b'"');
        if let Some(run) = envelope.run_id.as_ref().filter(|_| !self.storing) {
            out.extend_from_slice(b",\"run_id\":");
            serde_json::to_writer(&mut *out, run)?;
        }
        let event_at = out.len();
        if let Some(start) = StartInColumns::of(&envelope.event).filter(|_| self.storing) {
            serde_json::to_writer(&mut *out, &start)?;
        } else {
            if let Event::RunStarted { tasks, .. } = &envelope.event {
                out.reserve(run_started_len(tasks));
            }
            serde_json::to_writer(&mut *out, &envelope.event)?;
        }
        // An internally tagged enum always writes an object: `{"type":…`. Its brace
        // becomes the comma after the envelope's fields, as `flatten` writes it.
        match out.get_mut(event_at) {
            Some(brace @ b'{') => *brace = b',',
            _ => {
                return Err(serde::ser::Error::custom("an event did not encode as a JSON object"));
            }
        }
        Ok(())
    }

    /// `2023-11-14T22:13:20.123Z`, as `event::rfc3339_ms` writes it.
    fn push_ts(&mut self, out: &mut Vec<u8>, ts_ms: u64) {
        let second_ms = ts_ms - ts_ms % 1000;
        if self.second_ms != Some(second_ms) {
            let at = UNIX_EPOCH + Duration::from_millis(second_ms);
            self.second_text = humantime::format_rfc3339_seconds(at).to_string();
            // Without its `Z`: the milliseconds go before it.
            self.second_text.pop();
            self.second_ms = Some(second_ms);
        }
        out.extend_from_slice(self.second_text.as_bytes());
        let millis = ts_ms % 1000;
        // Each is a single decimal digit, so the casts cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let digits = [
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ];
        out.extend_from_slice(&digits);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::event::{AnswerDetails, Event, Level, PlannedTask, TokenUsage, ToolCall};
    use crate::ids::{AgentId, RunId, TaskId};

    fn events() -> Vec<Event> {
        vec![
            Event::TaskReady { task: TaskId::new("build \"quoted\" \u{e9}\n") },
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
                    agent: AgentId::new("coder"),
                    score: Some(0.5),
                    depends_on: vec![TaskId::new("b")].into(),
                    layer: 1,
                    timeout_ms: 30_000,
                    retries: 2,
                }],
            },
            Event::TaskSucceeded {
                task: TaskId::new("t"),
                agent: AgentId::new("a"),
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
            Event::Notice { level: Level::Warn, message: "careful".into() },
        ]
    }

    #[test]
    fn lines_equal_what_serde_writes_for_the_envelope() {
        let mut encoder = Encoder::default();
        // Across second boundaries and back, with and without a run.
        let stamps = [0, 999, 1_000, 1_700_000_000_123, 1_700_000_000_999, 1_700_000_001_007, 5];
        for (at, ts_ms) in stamps.into_iter().enumerate() {
            for (seq, event) in events().into_iter().enumerate() {
                let run_id = (seq % 2 == 0).then(|| RunId::new(format!("r{at}\"x")));
                let envelope = Envelope { seq: (at * 10 + seq) as u64, ts_ms, run_id, event };
                let mut line = Vec::new();
                encoder.encode(&mut line, &envelope).expect("encode");
                let expected = serde_json::to_string(&envelope).expect("serialize");
                assert_eq!(String::from_utf8(line).expect("utf-8"), expected);
            }
        }
    }

    #[test]
    fn appends_after_what_is_already_there() {
        let mut encoder = Encoder::default();
        let mut out = b"{\"previous\":1}\n".to_vec();
        let envelope = Envelope {
            seq: 1,
            ts_ms: 1_000,
            run_id: None,
            event: Event::TaskReady { task: TaskId::new("a") },
        };
        encoder.encode(&mut out, &envelope).expect("encode");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"previous\":1}\n{\"seq\":1,\"ts\":\"1970-01-01T00:00:01.000Z\",\"type\":\"task_ready\",\"task\":\"a\"}"
        );
    }

    #[test]
    fn the_run_started_guess_covers_its_line_so_the_buffer_never_grows() {
        let planned = |i: usize| PlannedTask {
            task: TaskId::new(format!("layer{}_{i}", i / 100)),
            description: format!("step {i}: \"quoted\", tabbed\t and caf\u{e9}").into(),
            agent: AgentId::new("backend-architect"),
            score: Some(3.25),
            depends_on: (0..3).map(|d| TaskId::new(format!("layer{}_{d}", i / 100))).collect(),
            layer: i / 100,
            timeout_ms: 1_800_000,
            retries: u32::MAX,
        };
        let tasks: Vec<PlannedTask> = (0..1000).map(planned).collect();
        let guess = run_started_len(&tasks);
        let envelope = Envelope {
            seq: u64::MAX,
            ts_ms: 1_700_000_000_123,
            run_id: Some(RunId::new("r20261207-0123456789abcdef")),
            event: Event::RunStarted {
                workflow: "big".into(),
                file: PathBuf::from("workflows/big.yaml"),
                goal: None,
                max_parallel: 8,
                fail_fast: false,
                simulated: true,
                tasks,
            },
        };
        let mut line = Vec::new();
        Encoder::default().encode(&mut line, &envelope).expect("encodes");
        assert!(line.len() <= guess, "{} > {guess}", line.len());
        assert!(line.len() * 2 > guess, "{} is far below {guess}", line.len());
    }
    /// A run's start of `n` tasks: texts with escapes and characters of every width,
    /// two agents, scores, dependencies on earlier tasks (and `outside`, if given).
    fn start_of(n: usize, outside: Option<&str>) -> Envelope {
        let id = |i: usize| TaskId::new(format!("t{i} \"q\" caf\u{e9}"));
        let tasks = (0..n)
            .map(|i| PlannedTask {
                task: id(i),
                description: format!("part {i}\twith \"quotes\", \\ and \u{1F680}").into(),
                agent: AgentId::new(if i % 3 == 0 { "reviewer" } else { "coder" }),
                score: (i % 2 == 0).then_some(0.25 * i as f64),
                depends_on: match (i, outside) {
                    (0, _) => Vec::new(),
                    (1, Some(name)) => vec![TaskId::new(name)],
                    _ => vec![id(0), id(i - 1)],
                }
                .into(),
                layer: i.min(1) + i / 100,
                timeout_ms: 1_000 + i as u64,
                retries: (i % 4) as u32,
            })
            .collect();
        Envelope {
            seq: 7,
            ts_ms: 1_700_000_000_123,
            run_id: Some(RunId::new("r1")),
            event: Event::RunStarted {
                workflow: "big".into(),
                file: PathBuf::from("workflows/big \"one\".yaml"),
                goal: Some("all of it".into()),
                max_parallel: 8,
                fail_fast: true,
                simulated: true,
                tasks,
            },
        }
    }

    /// A stored line read back as the store reads it: the run's id from its row.
    fn decoded(line: &[u8], run: &RunId) -> Envelope {
        let line = std::str::from_utf8(line).expect("utf-8");
        let mut envelope = crate::store::decode::Decoder::default().decode(line).expect("decodes");
        assert_eq!(envelope.run_id, None, "a stored line holds no run_id");
        envelope.run_id = Some(run.clone());
        envelope
    }

    /// What `serde` writes for the envelope, without its run's id.
    fn without_run(envelope: &Envelope) -> String {
        serde_json::to_string(&Envelope { run_id: None, ..envelope.clone() }).expect("serializes")
    }

    #[test]
    fn a_large_plan_is_stored_in_columns_and_reads_back_as_its_event() {
        let envelope = start_of(COLUMNS_ABOVE + 1, None);
        let mut line = Vec::new();
        Encoder::storing().encode(&mut line, &envelope).expect("encodes");
        let text = String::from_utf8(line.clone()).expect("utf-8");
        assert!(text.contains(r#""agents":["reviewer","coder"],"tasks":{"id":{"text":"#), "{text}");
        let whole = without_run(&envelope);
        assert!(line.len() * 2 < whole.len(), "{} vs {}", line.len(), whole.len());
        assert!(decoded(&line, &RunId::new("r1")) == envelope, "reads back as it was");
    }

    #[test]
    fn what_run_json_prints_is_every_plan_as_its_list() {
        let envelope = start_of(COLUMNS_ABOVE + 1, None);
        let mut line = Vec::new();
        Encoder::default().encode(&mut line, &envelope).expect("encodes");
        let whole = serde_json::to_string(&envelope).expect("serializes");
        assert_eq!(String::from_utf8(line).expect("utf-8"), whole);
    }

    #[test]
    fn a_small_plan_or_one_that_names_a_task_outside_it_is_stored_as_its_list() {
        for envelope in [start_of(COLUMNS_ABOVE, None), start_of(1000, Some("elsewhere"))] {
            let mut line = Vec::new();
            Encoder::storing().encode(&mut line, &envelope).expect("encodes");
            assert!(String::from_utf8(line.clone()).expect("utf-8") == without_run(&envelope));
            assert!(decoded(&line, &RunId::new("r1")) == envelope, "reads back as it was");
        }
    }

    #[test]
    fn a_plan_in_columns_that_does_not_add_up_is_refused_with_what_is_wrong() {
        let envelope = start_of(COLUMNS_ABOVE + 1, None);
        let mut line = Vec::new();
        Encoder::storing().encode(&mut line, &envelope).expect("encodes");
        let text = String::from_utf8(line).expect("utf-8");
        let broken = text.replacen(r#""retries":[[0,1]"#, r#""retries":[[0,2]"#, 1);
        assert_ne!(broken, text);
        let error = crate::store::decode::Decoder::default().decode(&broken).expect_err("refused");
        assert!(error.to_string().contains("a run's plan: its columns differ"), "{error}");
    }
}
