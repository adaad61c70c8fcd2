//! The console feed: what attached consoles are sent, one line per tick for all of them.
//!
//! An attached console redraws at most once a frame, so it needs each tick's changes, not
//! each event as its own line: the feed gathers the bus's events for [`TICK`] (the first
//! event after a quiet spell goes at once), encodes them once, and hands the line to every
//! console. A tick of at most [`DIGEST_ABOVE`] events is sent whole (`events`); a flood
//! (a zero-latency fan-out publishes thousands of events a tick) is condensed into a
//! `digest`: a task that only moved along its usual path in the tick (ready, started,
//! succeeded, streamed output) becomes one compact change with its latest state, pool
//! churn becomes each instance's latest event, and everything else is sent whole and in
//! order. Twenty consoles then decode a few compact changes per task instead of every
//! event, and none falls behind into a snapshot.

use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use serde::Serialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::{DIGEST_ABOVE, TaskChange};
use super::server::{Fanout, snapshot_line};
use super::tap::Lines;
use crate::columns::StartedRun;
use crate::event::{Envelope, Event};
use crate::ids::{AgentId, InstanceId, RunId, TaskId};
use crate::model::TaskStatus;
use crate::runtime::Runtime;

/// How long the feed gathers events into one line: about a frame.
pub const TICK: Duration = Duration::from_millis(16);

/// A flood's tick reads the clock once in this many events.
const CLOCK_EVERY: usize = 16;

/// Lines kept for consoles that are behind; beyond this a console gets a snapshot instead.
const FEED_CAPACITY: usize = 1024;

/// Start the feed; consoles subscribe to the returned sender. The task ends when `closing`
/// is cancelled.
pub(super) fn spawn_console_feed(
    runtime: &Arc<Runtime>,
    closing: CancellationToken,
) -> (Lines<Fanout>, JoinHandle<()>) {
    let lines = Lines::new(FEED_CAPACITY, runtime.bus().clone());
    let feed = lines.clone();
    let sender = lines.sender.clone();
    // Weak: the host's tasks let go of the runtime when it closes.
    let runtime = Arc::downgrade(runtime);
    // When the feed itself fell behind the bus, every console missed the same events: they
    // are all sent one picture, encoded once, and the plans are those the picture holds.
    let consoles = sender.clone();
    let resync = move |missed: u64, plans: &mut Plans| {
        plans.clear();
        if consoles.receiver_count() == 0 {
            return Fanout::Lagged(missed);
        }
        let Some(runtime) = runtime.upgrade() else { return Fanout::Lagged(missed) };
        let backlog = condensed_backlog(runtime.backlog());
        for envelope in &backlog {
            plans.saw(envelope);
        }
        match snapshot_line(&backlog, Some(missed)) {
            Ok(line) => Fanout::Line(line),
            Err(_) => Fanout::Lagged(missed),
        }
    };
    let task = tokio::spawn(async move {
        // When the last line went: an event after a quiet spell goes at once.
        let mut last_sent = Instant::now().checked_sub(TICK).unwrap_or_else(Instant::now);
        let mut plans = Plans::default();
        // Kept from tick to tick, so a flood's tick does not grow them afresh each time.
        let mut tick: Vec<Arc<Envelope>> = Vec::new();
        let mut encoded: Vec<u8> = Vec::new();
        // Nobody listens: the bus is not drawn on until someone does.
        let Some(mut events) = feed.opened(&closing).await else { return };
        loop {
            let first = tokio::select! {
                () = closing.cancelled() => return,
                received = events.recv() => received,
            };
            match first {
                // Nobody to send it to: no tick, and no plans kept (a console that attaches
                // later is sent whole events of the runs already going, as it has not been
                // sent their plans' positions); the bus is let go until someone listens.
                Ok(_) if feed.unheard() => {
                    plans.clear();
                    drop(events);
                    let Some(opened) = feed.opened(&closing).await else { return };
                    events = opened;
                    continue;
                }
                Ok(envelope) => tick.push(envelope),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "host: the console feed fell behind; consoles resync");
                    let _ = sender.send(resync(missed, &mut plans));
                    continue;
                }
                Err(RecvError::Closed) => return,
            }
            let due = last_sent + TICK;
            let mut missed = None;
            // A large run's start ends its tick at once: its plan is the largest line a
            // console reads, and it is read while the run's first flood gathers instead of
            // before it.
            let mut large_start = tick.last().is_some_and(|e| starts_a_large_run(e));
            while !large_start {
                // What is already there joins the tick; then wait for more until it is due.
                match events.try_recv() {
                    Ok(envelope) => {
                        large_start = starts_a_large_run(&envelope);
                        tick.push(envelope);
                        // A flood ends its tick on time too (the clock read every
                        // `CLOCK_EVERY` events of it).
                        if !tick.len().is_multiple_of(CLOCK_EVERY) || Instant::now() < due {
                            continue;
                        }
                        break;
                    }
                    Err(TryRecvError::Lagged(n)) => {
                        missed = Some(n);
                        break;
                    }
                    Err(TryRecvError::Closed) => break,
                    Err(TryRecvError::Empty) => {}
                }
                if Instant::now() >= due {
                    break;
                }
                tokio::select! {
                    () = closing.cancelled() => return,
                    () = tokio::time::sleep_until(due) => {}
                    received = events.recv() => match received {
                        Ok(envelope) => {
                            large_start = starts_a_large_run(&envelope);
                            tick.push(envelope);
                        }
                        Err(RecvError::Lagged(n)) => {
                            missed = Some(n);
                            break;
                        }
                        Err(RecvError::Closed) => break,
                    },
                }
            }
            last_sent = Instant::now();
            match encode_tick(&tick, &mut plans, &mut encoded) {
                Ok(line) => {
                    let _ = sender.send(Fanout::Line(line));
                }
                Err(error) => tracing::warn!(%error, "host: a console feed line did not encode"),
            }
            tick.clear();
            if let Some(missed) = missed {
                tracing::warn!(missed, "host: the console feed fell behind; consoles resync");
                let _ = sender.send(resync(missed, &mut plans));
            }
        }
    });
    (lines, task)
}

/// A large run's start: its plan ends the tick it falls in (a small one rides with it).
fn starts_a_large_run(envelope: &Envelope) -> bool {
    matches!(&envelope.event, Event::RunStarted { tasks, .. } if tasks.len() > PLAN_IN_COLUMNS_ABOVE)
}

/// A task by its run and its id.
type TaskKey<'a> = (Option<&'a RunId>, &'a str);

/// The picture a console that fell behind is sent again, without what the model would fold
/// away: a task that succeeded, and had nothing happen to it but its usual path, is its
/// `task_succeeded` alone (its ready, start and streamed output dropped), and each pool
/// instance is its latest churn. A 10,000-task flood's snapshot is a sixth of its events,
/// and twenty consoles reading it at once cost the host's machine that much less.
pub fn condensed_backlog(backlog: Vec<Arc<Envelope>>) -> Vec<Arc<Envelope>> {
    let mut whole_tasks: HashSet<TaskKey<'_>> = HashSet::new();
    let mut succeeded: HashSet<TaskKey<'_>> = HashSet::new();
    let mut last_churn: HashMap<InstanceId, usize> = HashMap::new();
    for (at, envelope) in backlog.iter().enumerate() {
        let run = envelope.run_id.as_ref();
        match &envelope.event {
            Event::TaskSucceeded { task, .. } => {
                succeeded.insert((run, task.as_str()));
            }
            Event::TaskReady { .. } | Event::TaskStarted { .. } | Event::TaskOutput { .. } => {}
            Event::InstanceWorking { instance, .. } | Event::InstanceIdle { instance, .. } => {
                last_churn.insert(*instance, at);
            }
            event => {
                if let Some(task) = event.task() {
                    whole_tasks.insert((run, task));
                }
            }
        }
    }
    let keep: Vec<bool> = backlog
        .iter()
        .enumerate()
        .map(|(at, envelope)| match &envelope.event {
            Event::TaskReady { task }
            | Event::TaskStarted { task, .. }
            | Event::TaskOutput { task, .. } => {
                let key = (envelope.run_id.as_ref(), task.as_str());
                whole_tasks.contains(&key) || !succeeded.contains(&key)
            }
            Event::InstanceWorking { instance, .. } | Event::InstanceIdle { instance, .. } => {
                last_churn.get(instance) == Some(&at)
            }
            _ => true,
        })
        .collect();
    backlog.into_iter().zip(keep).filter_map(|(envelope, keep)| keep.then_some(envelope)).collect()
}

/// One tick's line for every console: `events`, or a `digest` in a flood. `plans` follows
/// the runs' starts from tick to tick.
pub fn tick_line(tick: &[Arc<Envelope>], plans: &mut Plans) -> serde_json::Result<Arc<[u8]>> {
    encode_tick(tick, plans, &mut Vec::new())
}

/// [`tick_line`], encoded in `buffer` (whatever it held is dropped; its room is kept).
fn encode_tick(
    tick: &[Arc<Envelope>],
    plans: &mut Plans,
    buffer: &mut Vec<u8>,
) -> serde_json::Result<Arc<[u8]>> {
    buffer.clear();
    let line = buffer;
    if tick.len() <= DIGEST_ABOVE && !tick.iter().any(|envelope| starts_a_large_run(envelope)) {
        plans.tidy();
        for envelope in tick {
            plans.saw(envelope);
        }
        let events: Vec<&Envelope> = tick.iter().map(AsRef::as_ref).collect();
        serde_json::to_writer(&mut *line, &EventsLine { msg: "events", events })?;
    } else {
        serde_json::to_writer(&mut *line, &digest(tick, plans))?;
    }
    line.push(b'\n');
    Ok(Arc::from(line.as_slice()))
}

#[derive(Serialize)]
struct EventsLine<'a> {
    msg: &'static str,
    events: Vec<&'a Envelope>,
}

/// [`super::protocol::Digest`] as it is written, borrowing the events.
#[derive(Serialize)]
struct DigestLine<'a> {
    msg: &'static str,
    events: u64,
    since_ms: u64,
    last_seq: u64,
    parts: Vec<PartLine<'a>>,
}

#[derive(Serialize, Default)]
struct PartLine<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    events: Vec<&'a Envelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<StartedRun<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a RunId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tasks: Vec<TaskChange>,
}

/// Plans larger than this make their tick a digest, where they go in columns.
const PLAN_IN_COLUMNS_ABOVE: usize = crate::columns::COLUMNS_ABOVE;

/// Where each task is in its run's latest plan, as the feed saw the plans go by: a digest's
/// changes name tasks by it. A few runs go at once, so they are found by a look along them
/// (without a copy of the run's id, or a hash of it, for every event).
///
/// Within a tick a task is known by its plan's slot here and its position in the plan
/// ([`Place`]), which hashes as one number. A plan that ends (its run finished, or started
/// again with a new plan) is only marked so until the next tick, so the slots a tick's
/// events were given stay theirs.
#[derive(Default)]
pub struct Plans(Vec<PlanSlot>);

struct PlanSlot {
    run: Option<RunId>,
    positions: HashMap<TaskId, u32>,
    ended: bool,
}

/// A task of a plan the feed saw: its plan's slot in [`Plans`] and its position in the plan.
type Place = u64;

impl Plans {
    fn saw(&mut self, envelope: &Envelope) {
        match &envelope.event {
            Event::RunStarted { tasks, .. } => {
                let mut positions = HashMap::with_capacity(tasks.len());
                positions.extend((0..).zip(tasks).map(|(at, task)| (task.task.clone(), at)));
                self.end(envelope.run_id.as_ref());
                self.0.push(PlanSlot { run: envelope.run_id.clone(), positions, ended: false });
            }
            Event::RunFinished { .. } => self.end(envelope.run_id.as_ref()),
            _ => {}
        }
    }

    fn end(&mut self, run: Option<&RunId>) {
        for slot in &mut self.0 {
            if slot.run.as_ref() == run {
                slot.ended = true;
            }
        }
    }

    /// Drop the plans that ended: between ticks, when no event holds their slots.
    fn tidy(&mut self) {
        self.0.retain(|slot| !slot.ended);
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    /// The latest plan of `run`: its slot and the tasks' positions.
    fn latest(&self, run: Option<&RunId>) -> Option<(usize, &HashMap<TaskId, u32>)> {
        self.0
            .iter()
            .enumerate()
            .rfind(|(_, slot)| !slot.ended && slot.run.as_ref() == run)
            .map(|(at, slot)| (at, &slot.positions))
    }

    /// Where `task` of `run` is: its position in the run's latest plan, and its [`Place`].
    fn place(&self, run: Option<&RunId>, task: &str) -> Option<(u32, Place)> {
        let (slot, positions) = self.latest(run)?;
        let position = *positions.get(task)?;
        Some((position, ((slot as u64) << 32) | u64::from(position)))
    }
}

/// What a tick's event is to the digest.
enum Kind {
    /// A step along a task's usual path; `Some` when it sets the task's state.
    Path(Place, Option<TaskChange>),
    /// Pool churn of one instance.
    Churn(InstanceId),
    /// The queue length of one agent (its position among the tick's agents): only the
    /// latest counts.
    Queue(usize),
    /// Sent whole.
    Whole,
}

fn kind(envelope: &Envelope, plans: &Plans, agents: &mut Vec<AgentId>) -> Kind {
    let run = envelope.run_id.as_ref();
    // A task not in a plan the feed saw is sent whole.
    let path = |task: &TaskId, status: Option<TaskStatus>, attempt, duration_ms| {
        let Some((first, place)) = plans.place(run, task.as_str()) else { return Kind::Whole };
        let at_ms = envelope.ts_ms;
        let change = status.map(|status| TaskChange {
            first,
            count: 1,
            status,
            attempt,
            at_ms,
            duration_ms,
        });
        Kind::Path(place, change)
    };
    match &envelope.event {
        Event::TaskReady { task } => path(task, Some(TaskStatus::Ready), 0, None),
        Event::TaskStarted { task, attempt, .. } => {
            path(task, Some(TaskStatus::Running), *attempt, None)
        }
        Event::TaskSucceeded { task, attempt, duration_ms, .. } => {
            path(task, Some(TaskStatus::Succeeded), *attempt, Some(*duration_ms))
        }
        Event::TaskOutput { task, .. } => path(task, None, 0, None),
        Event::InstanceWorking { instance, .. } | Event::InstanceIdle { instance, .. } => {
            Kind::Churn(*instance)
        }
        Event::InstanceQueued { agent, .. } => {
            let at = agents.iter().position(|known| known == agent).unwrap_or_else(|| {
                agents.push(agent.clone());
                agents.len() - 1
            });
            Kind::Queue(at)
        }
        _ => Kind::Whole,
    }
}

/// Condense a flood: see the module's documentation.
fn digest<'a>(tick: &'a [Arc<Envelope>], plans: &mut Plans) -> DigestLine<'a> {
    plans.tidy();
    let mut agents: Vec<AgentId> = Vec::new();
    // Tasks that something else happened to in this tick are sent whole, so the order of
    // their events is kept. (An instance's reservation comes before its churn and its end
    // after it, so its latest churn alone keeps its order.) Each is known by its place in
    // the plan its run had at that event; a task of no plan has no path steps to keep in
    // order.
    let mut whole_tasks: HashSet<Place> = HashSet::new();
    let mut kinds: Vec<Kind> = Vec::with_capacity(tick.len());
    for envelope in tick {
        plans.saw(envelope);
        let kind = kind(envelope, plans, &mut agents);
        if let (Kind::Whole, Some(task)) = (&kind, envelope.event.task())
            && let Some((_, place)) = plans.place(envelope.run_id.as_ref(), task)
        {
            whole_tasks.insert(place);
        }
        kinds.push(kind);
    }
    // The latest state-setting step of each task, churn of each instance, queue of each agent.
    let mut last_step: HashMap<Place, usize> = HashMap::with_capacity(tick.len() / 2);
    let mut last_churn: HashMap<InstanceId, usize> = HashMap::new();
    let mut last_queue: Vec<usize> = vec![0; agents.len()];
    for (at, kind) in kinds.iter().enumerate() {
        match kind {
            Kind::Path(place, Some(_)) => {
                last_step.insert(*place, at);
            }
            Kind::Churn(instance) => {
                last_churn.insert(*instance, at);
            }
            Kind::Queue(agent) => last_queue[*agent] = at,
            Kind::Path(_, None) | Kind::Whole => {}
        }
    }
    let mut parts: Vec<PartLine<'_>> = Vec::new();
    for (at, (envelope, kind)) in tick.iter().zip(kinds).enumerate() {
        match kind {
            Kind::Path(place, _) if whole_tasks.contains(&place) => whole(&mut parts, envelope),
            Kind::Path(place, Some(change)) if last_step.get(&place) == Some(&at) => {
                let run = envelope.run_id.as_ref();
                match parts.last_mut() {
                    Some(part)
                        if part.events.is_empty() && part.started.is_none() && part.run == run =>
                    {
                        part.tasks.push(change);
                    }
                    _ => parts.push(PartLine { run, tasks: vec![change], ..PartLine::default() }),
                }
            }
            Kind::Churn(instance) if last_churn.get(&instance) == Some(&at) => {
                whole(&mut parts, envelope);
            }
            Kind::Queue(agent) if last_queue[agent] == at => whole(&mut parts, envelope),
            Kind::Path(..) | Kind::Churn(_) | Kind::Queue(_) => {}
            Kind::Whole => match StartedRun::of(envelope) {
                Some(started) => {
                    parts.push(PartLine { started: Some(started), ..PartLine::default() });
                }
                None => whole(&mut parts, envelope),
            },
        }
    }
    for part in &mut parts {
        part.tasks = ranges(std::mem::take(&mut part.tasks));
    }
    DigestLine {
        msg: "digest",
        events: tick.len() as u64,
        since_ms: tick.iter().map(|envelope| envelope.ts_ms).min().unwrap_or(0),
        last_seq: tick.iter().map(|envelope| envelope.seq).max().unwrap_or(0),
        parts,
    }
}

/// A part's changes (one per task) as ranges: the order of different tasks' changes within
/// a part means nothing (no other event comes between them), so they are sorted by the
/// state they reached and consecutive positions with the same state joined.
fn ranges(mut changes: Vec<TaskChange>) -> Vec<TaskChange> {
    changes.sort_unstable_by_key(|c| (c.at_ms, c.status as u8, c.attempt, c.duration_ms, c.first));
    let mut joined: Vec<TaskChange> = Vec::with_capacity(changes.len());
    for change in changes {
        match joined.last_mut() {
            Some(range) if range.extends_with(change.first, &change) => range.count += 1,
            _ => joined.push(change),
        }
    }
    joined
}

/// Add a whole event to the digest's last part, or start a part for it.
fn whole<'a>(parts: &mut Vec<PartLine<'a>>, envelope: &'a Envelope) {
    match parts.last_mut() {
        Some(part) if part.tasks.is_empty() && part.started.is_none() => part.events.push(envelope),
        _ => parts.push(PartLine { events: vec![envelope], ..PartLine::default() }),
    }
}

#[cfg(test)]
mod tests;
