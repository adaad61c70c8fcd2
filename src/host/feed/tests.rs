//! The console feed's lines: what a tick becomes on the wire, and that a console folding a
//! digest ends where one folding every event ends.

use std::sync::Arc;

use super::{Plans, tick_line};
use crate::event::{AnswerDetails, Envelope, Event, Level, OutputStream, PlannedTask};
use crate::host::protocol::{DIGEST_ABOVE, Digest, HostMessage, decode_host_line};
use crate::ids::{AgentId, InstanceId, RunId, TaskId};
use crate::model::{OutputKeep, RunModel, TaskStatus};

const T0: u64 = 1_765_000_000_000;

/// Envelopes of run `r1`, numbered from 1; `at` sets the clock (ms after `T0`).
struct Stream {
    seq: u64,
    at: u64,
    events: Vec<Arc<Envelope>>,
}

impl Stream {
    fn new() -> Self {
        Self { seq: 0, at: 0, events: Vec::new() }
    }

    fn push(&mut self, event: Event) {
        self.seq += 1;
        self.events.push(Arc::new(Envelope {
            seq: self.seq,
            ts_ms: T0 + self.at,
            run_id: Some(RunId::new("r1")),
            event,
        }));
    }
}

fn task(name: &str) -> TaskId {
    TaskId::new(name)
}

fn planned(i: usize, deps: &[usize]) -> PlannedTask {
    PlannedTask {
        task: task(&format!("t{i}")),
        description: format!("Part {i} \"quoted\" \u{e9}").into(),
        agent: AgentId::new(if i.is_multiple_of(7) { "reviewer" } else { "worker" }),
        score: i.is_multiple_of(5).then_some(0.5),
        depends_on: deps.iter().map(|d| task(&format!("t{d}"))).collect(),
        layer: usize::from(!deps.is_empty()),
        timeout_ms: 300_000,
        retries: u32::from(i.is_multiple_of(3)),
    }
}

fn started(n: usize) -> Event {
    Event::RunStarted {
        workflow: "fan".into(),
        file: "/p/fan.yaml".into(),
        goal: Some("all of it".into()),
        max_parallel: 8,
        fail_fast: false,
        simulated: true,
        tasks: (0..n).map(|i| planned(i, if i == 0 { &[] } else { &[0] })).collect(),
    }
}

/// One task's usual path: ready, an instance working, started, output, succeeded, idle.
fn usual_path(stream: &mut Stream, i: usize, instance: u64) {
    let t = task(&format!("t{i}"));
    let agent = AgentId::new("worker");
    stream.push(Event::TaskReady { task: t.clone() });
    stream.push(Event::InstanceWorking {
        instance: InstanceId(instance),
        agent: agent.clone(),
        task: Some(t.clone()),
    });
    stream.push(Event::TaskStarted {
        task: t.clone(),
        agent: agent.clone(),
        attempt: 1,
        instance: InstanceId(instance),
        backend: "sim".into(),
        simulated: true,
    });
    stream.push(Event::TaskOutput {
        task: t.clone(),
        stream: OutputStream::Tokens,
        text: "x".into(),
    });
    stream.push(Event::TaskSucceeded {
        task: t,
        agent: agent.clone(),
        attempt: 1,
        duration_ms: 0,
        output: "done".into(),
        usage: None,
        simulated: true,
        details: AnswerDetails::default(),
    });
    stream.push(Event::InstanceIdle { instance: InstanceId(instance), agent });
}

fn decode(line: &[u8]) -> HostMessage {
    let text = std::str::from_utf8(line).expect("utf-8");
    assert!(text.ends_with('\n'), "one line");
    decode_host_line(text.trim_end()).expect("the line decodes")
}

/// A tick's line folded into `model`, whichever kind it is.
fn fold_line(model: &mut RunModel, tick: &[Arc<Envelope>], plans: &mut Plans) {
    match decode(&tick_line(tick, plans).expect("encodes")) {
        HostMessage::Digest(digest) => fold_digest(model, &digest),
        HostMessage::Events { events } => events.iter().for_each(|e| {
            model.apply(e);
        }),
        _ => panic!("expected events or a digest"),
    }
}

fn digest_of(tick: &[Arc<Envelope>], plans: &mut Plans) -> Digest {
    match decode(&tick_line(tick, plans).expect("encodes")) {
        HostMessage::Digest(digest) => digest,
        _ => panic!("expected a digest"),
    }
}

/// A model folded from a digest, as an attached console folds it.
fn fold_digest(model: &mut RunModel, digest: &Digest) {
    for part in &digest.parts {
        for envelope in &part.events {
            model.apply(envelope);
        }
        for change in &part.tasks {
            model.apply_change(change);
        }
    }
}

/// Each task's id, status, attempts, end and duration.
type TaskState = (String, TaskStatus, u32, Option<u64>, Option<u64>);

fn statuses(model: &RunModel) -> Vec<TaskState> {
    model
        .tasks
        .iter()
        .map(|t| (t.id().to_string(), t.status, t.attempts, t.finished_ms, t.duration_ms))
        .collect()
}

#[test]
fn a_quiet_tick_is_sent_whole_in_order() {
    let mut stream = Stream::new();
    stream.push(started(3));
    usual_path(&mut stream, 0, 1);
    assert!(stream.events.len() <= DIGEST_ABOVE);
    let line = tick_line(&stream.events, &mut Plans::default()).expect("encodes");
    let HostMessage::Events { events } = decode(&line) else { panic!("expected events") };
    let sent: Vec<Envelope> = stream.events.iter().map(|e| (**e).clone()).collect();
    assert_eq!(events, sent);
}

#[test]
fn a_flood_is_condensed_and_folds_to_the_same_run() {
    let mut stream = Stream::new();
    stream.push(started(400));
    for i in 0..400 {
        stream.at = i as u64 / 50;
        usual_path(&mut stream, i, (i % 8) as u64);
    }
    // Something else happened to task 7: its events stay whole, in order.
    stream.push(Event::TaskFallback {
        task: task("t7"),
        from: AgentId::new("worker"),
        to: AgentId::new("reviewer"),
        reason: "a test".into(),
    });
    stream.push(Event::Notice { level: crate::event::Level::Info, message: "half way".into() });
    let mut plans = Plans::default();
    let digest = digest_of(&stream.events, &mut plans);

    assert_eq!(digest.events, stream.events.len() as u64);
    assert_eq!(digest.last_seq, stream.seq);
    let changes: usize = digest.parts.iter().map(|p| p.tasks.len()).sum();
    let tasks: u32 = digest.parts.iter().flat_map(|p| &p.tasks).map(|c| c.count).sum();
    // Every task but t7 is one change, in a few ranges:
    // 400 tasks finishing over 8 milliseconds.
    assert_eq!(tasks, 399);
    assert!(changes <= 20, "{changes} ranges");
    // t7's own events are all there, in order; each instance's churn only its latest.
    let whole: Vec<&Envelope> = digest.parts.iter().flat_map(|p| &p.events).collect();
    let t7: Vec<&str> = whole
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::TaskReady { .. }
                    | Event::TaskStarted { .. }
                    | Event::TaskSucceeded { .. }
                    | Event::TaskOutput { .. }
            )
        })
        .filter(|e| e.event.task() == Some("t7"))
        .map(|e| e.event.kind())
        .collect();
    assert_eq!(t7, ["task_ready", "task_started", "task_output", "task_succeeded"]);
    let churn = whole
        .iter()
        .filter(|e| matches!(e.event, Event::InstanceIdle { .. } | Event::InstanceWorking { .. }));
    assert_eq!(churn.count(), 8, "one per instance");
    assert!(
        whole
            .iter()
            .any(|e| matches!(&e.event, Event::Notice { message, .. } if message == "half way"))
    );

    // The run a console folds from the digest is the run folded from every event.
    let mut every = RunModel::new(OutputKeep::None);
    stream.events.iter().for_each(|e| {
        every.apply(e);
    });
    let mut condensed = RunModel::new(OutputKeep::None);
    fold_digest(&mut condensed, &digest);
    assert_eq!(statuses(&condensed), statuses(&every));
    assert_eq!(condensed.counts(), every.counts());
    assert_eq!(condensed.simulated_attempts, every.simulated_attempts);
}

#[test]
fn a_big_plan_goes_in_columns_and_reads_back_as_its_run_started() {
    let mut stream = Stream::new();
    stream.push(started(1000));
    let digest = digest_of(&stream.events, &mut Plans::default());
    let whole: Vec<&Envelope> = digest.parts.iter().flat_map(|p| &p.events).collect();
    assert_eq!(whole, [stream.events[0].as_ref()]);
    // In columns on the wire: far smaller than the event.
    let line = tick_line(&stream.events, &mut Plans::default()).expect("encodes");
    let event = serde_json::to_vec(stream.events[0].as_ref()).expect("encodes");
    assert!(line.len() * 2 < event.len(), "{} vs {}", line.len(), event.len());
}

#[test]
fn changes_of_a_later_tick_name_tasks_by_the_plan_an_earlier_tick_carried() {
    let mut plans = Plans::default();
    let mut stream = Stream::new();
    stream.push(started(100));
    let mut model = RunModel::new(OutputKeep::None);
    fold_line(&mut model, &stream.events, &mut plans);
    let mut later = Stream { seq: stream.seq, at: 5, events: Vec::new() };
    for i in (0..100).rev() {
        usual_path(&mut later, i, 1);
    }
    let second = digest_of(&later.events, &mut plans);
    fold_digest(&mut model, &second);
    assert_eq!(model.counts().succeeded, 100);
    // Finished in reverse plan order, at the same moment: still one range.
    assert_eq!(second.parts.iter().map(|p| p.tasks.len()).sum::<usize>(), 1);
}

/// `event` as run `run`'s, next in `tick`.
fn push_as(tick: &mut Stream, run: &RunId, event: Event) {
    tick.push(event);
    let last = tick.events.pop().expect("pushed");
    let envelope = Envelope { run_id: Some(run.clone()), ..(*last).clone() };
    tick.events.push(Arc::new(envelope));
}

/// Task `i`'s usual path as run `run`'s, next in `tick`.
fn steps_as(tick: &mut Stream, run: &RunId, i: usize) {
    let mut path = Stream { seq: 0, at: tick.at, events: Vec::new() };
    usual_path(&mut path, i, (i % 4) as u64);
    for envelope in path.events {
        push_as(tick, run, envelope.event.clone());
    }
}

#[test]
fn runs_that_end_and_start_again_within_a_flood_fold_to_the_same_runs() {
    let (a, b) = (RunId::new("r20261207000000-aaaa"), RunId::new("r20261207000000-bbbb"));
    // Both runs' events in one tick, interleaved: `a` finishes half way; `b` starts again
    // with a plan in another order (its tasks at new positions) and goes on.
    let mut tick = Stream::new();
    push_as(&mut tick, &a, started(40));
    push_as(&mut tick, &b, started(40));
    for i in 0..20 {
        tick.at = i as u64 / 5;
        steps_as(&mut tick, &a, i);
        steps_as(&mut tick, &b, i);
    }
    let finished = Event::RunFinished {
        status: crate::event::RunStatus::Succeeded,
        succeeded: 20,
        failed: 0,
        skipped: 0,
        cancelled: 20,
        duration_ms: 4,
    };
    let mut again = started(40);
    if let Event::RunStarted { tasks, .. } = &mut again {
        tasks.reverse();
    }
    push_as(&mut tick, &a, finished);
    push_as(&mut tick, &b, again);
    for i in 20..40 {
        tick.at = 10 + i as u64 / 5;
        steps_as(&mut tick, &b, i);
    }
    assert!(tick.events.len() > DIGEST_ABOVE);
    let digest = digest_of(&tick.events, &mut Plans::default());
    for run in [&a, &b] {
        let mut every = RunModel::new(OutputKeep::None);
        for envelope in tick.events.iter().filter(|e| e.run_id.as_ref() == Some(run)) {
            every.apply(envelope);
        }
        let mut condensed = RunModel::new(OutputKeep::None);
        for part in &digest.parts {
            for envelope in part.events.iter().filter(|e| e.run_id.as_ref() == Some(run)) {
                condensed.apply(envelope);
            }
            if part.run.as_ref() == Some(run) {
                for change in &part.tasks {
                    condensed.apply_change(change);
                }
            }
        }
        assert_eq!(statuses(&condensed), statuses(&every), "run {run}");
        assert_eq!(condensed.counts(), every.counts(), "run {run}");
    }
}

#[test]
fn tasks_of_a_run_whose_start_the_feed_never_saw_are_sent_whole() {
    let mut stream = Stream::new();
    for i in 0..20 {
        usual_path(&mut stream, i, 1);
    }
    let digest = digest_of(&stream.events, &mut Plans::default());
    assert!(digest.parts.iter().all(|p| p.tasks.is_empty()));
    let whole = digest.parts.iter().map(|p| p.events.len()).sum::<usize>();
    // Every task event whole (60 steps and 20 outputs); the churn, only its latest.
    assert_eq!(whole, 20 * 4 + 1);
}

#[test]
fn a_digest_whose_plan_columns_disagree_is_refused() {
    let line = r#"{"msg":"digest","events":1,"last_seq":1,"parts":[{"started":{"seq":1,"ts_ms":1,"workflow":"w","file":"f","goal":null,"max_parallel":1,"fail_fast":false,"simulated":true,"agents":["a"],"tasks":{"id":{"text":"xy","len":[[1,2]]},"description":{"text":"d","len":[[1,1]]},"agent":[[0,2]],"score":[[null,2]],"depends_on":[[[],2]],"layer":[[0,2]],"timeout_ms":[[1,2]],"retries":[[0,2]]}}}]}"#;
    let error = decode_host_line(line).expect_err("refused");
    assert!(error.to_string().contains("columns differ"), "{error}");
    let out_of_range =
        line.replace(r#""depends_on":[[[],2]]"#, r#""depends_on":[[[5],2]]"#).replace(
            r#""description":{"text":"d","len":[[1,1]]}"#,
            r#""description":{"text":"dé","len":[[1,1],[2,1]]}"#,
        );
    let error = decode_host_line(&out_of_range).expect_err("refused");
    assert!(error.to_string().contains("dependency out of range"), "{error}");
    // A length that cuts a character, or leaves text over, does not fit.
    for lens in ["[[2,1],[1,1]]", "[[1,1],[1,1]]"] {
        let misfit = line.replace(
            r#""description":{"text":"d","len":[[1,1]]}"#,
            &format!(r#""description":{{"text":"dé","len":{lens}}}"#),
        );
        let error = decode_host_line(&misfit).expect_err("refused");
        assert!(error.to_string().contains("does not fit"), "{lens}: {error}");
    }
}

#[test]
fn the_fuzz_corpus_digest_decodes_to_what_it_says() {
    let text = include_str!("../../../fuzz/corpus/control_protocol/console_feed.jsonl");
    let line = text.lines().find(|l| l.starts_with(r#"{"msg":"digest""#)).expect("a digest");
    let HostMessage::Digest(digest) = decode_host_line(line).expect("decodes") else {
        panic!("expected a digest")
    };
    let Event::RunStarted { tasks, .. } = &digest.parts[0].events[0].event else {
        panic!("expected the run's start")
    };
    let deps: Vec<Vec<&str>> =
        tasks.iter().map(|t| t.depends_on.iter().map(TaskId::as_str).collect()).collect();
    assert_eq!(deps, [vec![], vec!["t0"], vec!["t0"]]);
    assert_eq!(tasks[2].agent.as_str(), "reviewer");
    assert_eq!(tasks[2].score, Some(0.5));
    assert_eq!(&*tasks[1].description, "Part \"1\"");
    assert_eq!(digest.parts[1].tasks[0].count, 2);
    assert_eq!(digest.since_ms, 1_796_652_812_000);
}

#[test]
fn a_resync_picture_drops_only_what_the_model_folds_away() {
    let mut stream = Stream::new();
    stream.push(started(60));
    for i in 0..50 {
        stream.at = i as u64;
        usual_path(&mut stream, i, (i % 4) as u64);
    }
    // t3 was retried: its whole story stays. t55 is running: its start stays.
    stream.push(Event::TaskRetrying {
        task: task("t3"),
        agent: AgentId::new("worker"),
        attempt: 1,
        delay_ms: 10,
        duration_ms: 1,
        error: "flaky".into(),
    });
    stream.push(Event::TaskReady { task: task("t55") });
    stream.push(Event::TaskStarted {
        task: task("t55"),
        agent: AgentId::new("worker"),
        attempt: 1,
        instance: InstanceId(9),
        backend: "sim".into(),
        simulated: true,
    });
    let all = stream.events.clone();
    let condensed = super::condensed_backlog(stream.events);
    // 49 tasks keep their success alone; t3 its 4 steps and the retry; t55 both steps; the
    // start; the churn of four instances, latest each.
    assert_eq!(condensed.len(), 1 + 49 + 5 + 2 + 4, "{} of {}", condensed.len(), all.len());
    let kinds = |task: &str| -> Vec<&str> {
        condensed.iter().filter(|e| e.event.task() == Some(task)).map(|e| e.event.kind()).collect()
    };
    assert_eq!(
        kinds("t3"),
        ["task_ready", "task_started", "task_output", "task_succeeded", "task_retrying"]
    );
    assert_eq!(kinds("t7"), ["task_succeeded"]);
    let fold = |events: &[Arc<Envelope>]| {
        let mut model = RunModel::new(OutputKeep::None);
        for envelope in events {
            model.apply(envelope);
        }
        model
    };
    let (every, picture) = (fold(&all), fold(&condensed));
    let state = |m: &RunModel| -> Vec<(TaskStatus, u32, Option<u64>)> {
        m.tasks.iter().map(|t| (t.status, t.attempts, t.finished_ms)).collect()
    };
    assert_eq!(state(&picture), state(&every));
    assert_eq!(picture.counts(), every.counts());
}

/// A large run's start ends its tick at once: its plan (a console's largest read) goes on its
/// own line, before the flood of the run's first tasks, rather than held with it for the tick;
/// a small plan rides with its tick.
#[tokio::test(flavor = "current_thread")]
async fn a_large_runs_start_ends_its_tick_and_goes_at_once() {
    use crate::host::server::Fanout;
    use crate::runtime::{Runtime, RuntimeOptions};

    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(
        Runtime::start(RuntimeOptions {
            project_dir: dir.path().to_owned(),
            data_dir: dir.path().join(".flightdeck"),
            settings: crate::config::Settings::default(),
            watch_agents: false,
        })
        .expect("runtime"),
    );
    let closing = tokio_util::sync::CancellationToken::new();
    let (lines, feed) = super::spawn_console_feed(&runtime, closing.clone());
    let mut console = lines.subscribe();
    // Each line as what it carries, in order: event kinds, and `change` for a task range.
    let mut next_line = async || match console.recv().await.expect("a line") {
        Fanout::Line(line) => {
            let text = std::str::from_utf8(&line).expect("utf-8").trim_end().to_owned();
            match decode_host_line(&text).expect("a host line") {
                HostMessage::Events { events } => events.iter().map(|e| e.event.kind()).collect(),
                HostMessage::Digest(digest) => digest
                    .parts
                    .iter()
                    .flat_map(|part| {
                        let events = part.events.iter().map(|e| e.event.kind());
                        events.chain(part.tasks.iter().map(|_| "change"))
                    })
                    .collect::<Vec<_>>(),
                other => panic!("expected events, got {other:?}"),
            }
        }
        Fanout::Lagged(missed) => panic!("lagged by {missed}"),
    };
    let bus = runtime.bus();
    let ready = |i: usize| Event::TaskReady { task: task(&format!("t{i}")) };
    for (run, tasks, alone) in [("big", 300, true), ("small", 3, false)] {
        let run = RunId::new(run);
        // An event after a quiet spell goes at once…
        tokio::time::sleep(super::TICK).await;
        bus.publish(Some(&run), Event::Notice { level: Level::Info, message: "go".into() });
        assert_eq!(next_line().await, ["notice"]);
        // …and the run's start comes within the next tick, its first tasks right behind it:
        // the feed runs only when this test waits, so all of it is queued when it looks.
        bus.publish(Some(&run), started(tasks));
        for i in 0..3 {
            bus.publish(Some(&run), ready(i));
        }
        let line = next_line().await;
        if alone {
            assert_eq!(line, ["run_started"], "the large plan alone");
            assert_eq!(next_line().await.len(), 3, "its tasks in the next tick");
        } else {
            assert_eq!(line.first(), Some(&"run_started"), "a small plan with its tick");
            assert_eq!(line.len(), 4, "{line:?}");
        }
    }
    closing.cancel();
    feed.await.expect("the feed ends");
    drop(lines);
    let runtime = Arc::try_unwrap(runtime).ok().expect("the feed let go of the runtime");
    runtime.shutdown().await;
}
