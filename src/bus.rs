//! The event bus: one ordered stream of [`Envelope`]s.
//!
//! Publishing assigns the sequence number and timestamp under one lock, so every subscriber
//! sees the same order. Numbers only grow within a process; a bus fed by a [`SeqSource`] (the
//! run store's reservations) also never hands out a number another process has, so `seq`
//! never repeats nor goes back, whatever processes share the data dir. Two kinds of subscriber exist:
//! - lossless sinks (run store, headless printer) get an unbounded channel and never miss an
//!   event (the run store's sees only events that belong to a run: it keeps no others);
//! - broadcast receivers (the console) may lag behind; a lagging console says so and re-reads
//!   the run store instead of slowing the engine.
//!
//! A lossless sink may be *paced* ([`EventBus::paced_run_sink`], [`EventBus::paced_sink`]): it
//! counts what it holds in a [`Backlog`], and [`EventBus::room`], which the engine awaits
//! before each task, waits while a paced sink holds more than [`Backlog::HIGH`] events, until
//! it is down to [`Backlog::LOW`]. The engine never waits for the database per event; only a
//! consumer that is far behind (at 100,000 tasks the run store's queue reached 490,000 events
//! and the printer held as many) holds up new tasks, so memory stays bounded.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, broadcast, mpsc};

use crate::event::{Envelope, Event};
use crate::ids::RunId;
use crate::redact::Redactor;

/// Capacity of the lossy broadcast channel.
pub const BROADCAST_CAPACITY: usize = 16_384;

/// Hands out blocks of sequence numbers that belong to this process alone.
pub trait SeqSource: Send {
    /// The next block; every number in it is above every number of earlier blocks.
    fn next_block(&mut self) -> Result<Range<u64>, String>;
}

struct Inner {
    next_seq: u64,
    /// One past the last number of the current block (`u64::MAX`: no source, no limit).
    end_seq: u64,
    source: Option<Box<dyn SeqSource>>,
    sinks: Vec<Sink>,
}

/// Events a paced sink's consumer has received and not yet finished with (committed,
/// printed). Shared by the bus, which counts what it sends, and the consumer, which reports
/// what it is done with.
#[derive(Debug, Default)]
pub struct Backlog {
    held: AtomicUsize,
    /// Not holding anyone up: the consumer cannot make progress for now (the store failed to
    /// commit) or is gone.
    released: AtomicBool,
    /// The sink is gone: the bus forgets this backlog.
    closed: AtomicBool,
    room: Notify,
}

impl Backlog {
    /// Above this many events held, new tasks wait.
    pub const HIGH: usize = 16_384;
    /// Waiting tasks go on once the backlog is down to this many.
    pub const LOW: usize = 8_192;

    /// The consumer is done with `count` events (committed, printed).
    pub fn done(&self, count: usize) {
        let before = self.held.fetch_sub(count, Ordering::AcqRel);
        self.released.store(false, Ordering::Release);
        if before.saturating_sub(count) <= Self::LOW {
            self.room.notify_waiters();
        }
    }

    /// The consumer cannot make progress for now (a failed commit it will retry): nobody
    /// waits for it until its next [`Backlog::done`].
    pub fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    /// Events held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn holds_up(&self, limit: usize) -> bool {
        !self.released.load(Ordering::Acquire)
            && !self.closed.load(Ordering::Acquire)
            && self.held() > limit
    }

    /// The consumer stops reading: nobody waits for it any more. Also done by the bus once
    /// it finds the receiver gone.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    /// Wait until this backlog is down to [`Backlog::LOW`] (or released).
    async fn drained(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `done` in between is not missed.
            notified.as_mut().enable();
            if !self.holds_up(Self::LOW) {
                return;
            }
            notified.await;
        }
    }
}

/// One lossless receiver's sending half.
struct Sink {
    tx: mpsc::UnboundedSender<Arc<Envelope>>,
    /// Only events with a `run_id`: a consumer that would drop the others (the run store)
    /// does not hold them in its queue while it is behind. At 100,000 tasks the pool's
    /// instance events are two in five, and the store's queue held up to 490,000 events.
    runs_only: bool,
    /// Counts what the receiver holds, for a paced sink.
    backlog: Option<Arc<Backlog>>,
}

impl Sink {
    /// Send `envelope` if this sink takes it; false once the receiver is gone.
    fn offer(&self, envelope: &Arc<Envelope>) -> bool {
        if self.runs_only && envelope.run_id.is_none() {
            return !self.tx.is_closed();
        }
        if let Some(backlog) = &self.backlog {
            backlog.held.fetch_add(1, Ordering::AcqRel);
        }
        self.tx.send(Arc::clone(envelope)).is_ok()
    }
}

impl Drop for Sink {
    /// A gone receiver holds nobody up.
    fn drop(&mut self) {
        if let Some(backlog) = &self.backlog {
            backlog.close();
        }
    }
}

/// Cheap to clone; all clones publish into the same stream.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Mutex<Inner>>,
    broadcast: broadcast::Sender<Arc<Envelope>>,
    /// Applied to every event before it is numbered, so nothing downstream (store, views,
    /// `--json`) ever holds a secret. Set once by the runtime.
    redactor: Arc<OnceLock<Redactor>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A bus whose first event gets `first_seq`: a runtime reopening a run store continues
    /// after the last stored sequence number, so `seq` never repeats across restarts.
    pub fn starting_at(first_seq: u64) -> Self {
        let (broadcast, _) = broadcast::channel(BROADCAST_CAPACITY);
        let inner = Inner {
            next_seq: first_seq.max(1),
            end_seq: u64::MAX,
            source: None,
            sinks: Vec::new(),
        };
        Self { inner: Arc::new(Mutex::new(inner)), broadcast, redactor: Arc::new(OnceLock::new()) }
    }

    /// A bus numbering from `first` (a block already reserved) and then from the blocks
    /// `source` hands out; see [`SeqSource`].
    pub fn numbered_by(first: Range<u64>, source: Box<dyn SeqSource>) -> Self {
        let bus = Self::starting_at(first.start);
        {
            let mut inner = bus.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.end_seq = first.end.max(inner.next_seq);
            inner.source = Some(source);
        }
        bus
    }

    /// Publish one event and return its sequence number.
    pub fn publish(&self, run_id: Option<&RunId>, event: Event) -> u64 {
        let event = match self.redactor.get() {
            Some(redactor) => redactor.event(event),
            None => event,
        };
        let ts_ms = now_ms();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.next_seq >= inner.end_seq {
            inner.refill();
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let envelope = Arc::new(Envelope { seq, ts_ms, run_id: run_id.cloned(), event });
        inner.sinks.retain(|sink| sink.offer(&envelope));
        // No receivers is fine: nobody is watching yet.
        let _ = self.broadcast.send(envelope);
        seq
    }

    /// Redact every event published from now on with `redactor` (once; later calls are
    /// ignored). See [`crate::redact`].
    pub fn set_redactor(&self, redactor: Redactor) {
        let _ = self.redactor.set(redactor);
    }

    /// The redactor events pass, for producers that must redact across chunks themselves.
    pub fn redactor(&self) -> Option<&Redactor> {
        self.redactor.get()
    }

    /// A lossy receiver for views; see the module docs.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.broadcast.subscribe()
    }

    /// A lossless receiver; it sees every event published after this call.
    pub fn sink(&self) -> mpsc::UnboundedReceiver<Arc<Envelope>> {
        self.add_sink(false)
    }

    /// A lossless receiver of the events published after this call that belong to a run
    /// (those with a `run_id`), for the run store.
    pub fn run_sink(&self) -> mpsc::UnboundedReceiver<Arc<Envelope>> {
        self.add_sink(true)
    }

    /// [`EventBus::sink`], paced: its consumer reports what it is done with to the
    /// returned [`Backlog`], and [`EventBus::room`] waits while it is far behind.
    pub fn paced_sink(&self) -> (mpsc::UnboundedReceiver<Arc<Envelope>>, Arc<Backlog>) {
        let backlog = Arc::new(Backlog::default());
        (self.add_sink_with(false, Some(Arc::clone(&backlog))), backlog)
    }

    /// [`EventBus::run_sink`], paced (the run store's writer); see [`EventBus::paced_sink`].
    pub fn paced_run_sink(&self) -> (mpsc::UnboundedReceiver<Arc<Envelope>>, Arc<Backlog>) {
        let backlog = Arc::new(Backlog::default());
        (self.add_sink_with(true, Some(Arc::clone(&backlog))), backlog)
    }

    fn add_sink(&self, runs_only: bool) -> mpsc::UnboundedReceiver<Arc<Envelope>> {
        self.add_sink_with(runs_only, None)
    }

    fn add_sink_with(
        &self,
        runs_only: bool,
        backlog: Option<Arc<Backlog>>,
    ) -> mpsc::UnboundedReceiver<Arc<Envelope>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink { tx, runs_only, backlog };
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).sinks.push(sink);
        rx
    }

    /// Wait while a paced sink holds more than [`Backlog::HIGH`] events, until it is down
    /// to [`Backlog::LOW`]. Returns at once otherwise (the usual case: one lock, a few loads).
    pub async fn room(&self) {
        loop {
            let behind = {
                let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
                inner
                    .sinks
                    .iter()
                    .filter(|sink| !sink.tx.is_closed())
                    .filter_map(|sink| sink.backlog.as_ref())
                    .find(|backlog| backlog.holds_up(Backlog::HIGH))
                    .map(Arc::clone)
            };
            // Another paced sink may be behind too: look again after each wait.
            match behind {
                Some(backlog) => backlog.drained().await,
                None => return,
            }
        }
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).next_seq
    }
}

impl Inner {
    /// Move on to the source's next block. If the source fails (the store is unreadable),
    /// numbering goes on locally, still increasing, and the failure is logged: an event
    /// number shared with another process is better than an engine that stops.
    fn refill(&mut self) {
        let Some(source) = self.source.as_mut() else {
            self.end_seq = u64::MAX;
            return;
        };
        match source.next_block() {
            Ok(block) => {
                self.next_seq = self.next_seq.max(block.start);
                self.end_seq = block.end.max(self.next_seq + 1);
            }
            Err(error) => {
                tracing::error!(%error, "event numbers: no block reserved; numbering on locally");
                self.end_seq = self.next_seq.saturating_add(1024);
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TaskId;

    #[tokio::test]
    async fn sinks_see_every_event_in_order() {
        let bus = EventBus::new();
        let mut sink = bus.sink();
        let mut view = bus.subscribe();
        for i in 0..100 {
            bus.publish(None, Event::TaskReady { task: TaskId::new(format!("t{i}")) });
        }
        for expected in 1..=100 {
            assert_eq!(sink.recv().await.expect("event").seq, expected);
            assert_eq!(view.recv().await.expect("event").seq, expected);
        }
    }

    #[tokio::test]
    async fn run_sinks_see_only_events_of_runs_and_go_when_dropped() {
        let bus = EventBus::new();
        let mut runs = bus.run_sink();
        let mut all = bus.sink();
        let run = RunId::new("r1");
        for i in 0..10 {
            let run_id = (i % 2 == 0).then_some(&run);
            bus.publish(run_id, Event::TaskReady { task: TaskId::new(format!("t{i}")) });
        }
        for expected in [1, 3, 5, 7, 9] {
            let envelope = runs.recv().await.expect("event");
            assert_eq!((envelope.seq, envelope.run_id.as_ref()), (expected, Some(&run)));
        }
        assert!(runs.try_recv().is_err(), "events without a run are not sent");
        for expected in 1..=10 {
            assert_eq!(all.recv().await.expect("event").seq, expected);
        }
        drop(runs);
        bus.publish(None, Event::TaskReady { task: TaskId::new("late") });
        assert_eq!(bus.inner.lock().expect("lock").sinks.len(), 1, "the dropped sink is gone");
    }

    fn ready(task: &str) -> Event {
        Event::TaskReady { task: TaskId::new(task) }
    }

    /// Whether `room()` would let a task start now (polled once).
    fn has_room(bus: &EventBus) -> bool {
        futures::FutureExt::now_or_never(bus.room()).is_some()
    }

    #[tokio::test]
    async fn a_paced_sink_far_behind_holds_up_new_work_until_it_catches_up() {
        let bus = EventBus::new();
        let (mut events, backlog) = bus.paced_sink();
        let run = RunId::new("r1");
        for _ in 0..=Backlog::HIGH {
            bus.publish(Some(&run), ready("t"));
        }
        assert_eq!(backlog.held(), Backlog::HIGH + 1);
        assert!(!has_room(&bus), "more than HIGH events held");
        // Catching up below HIGH is not enough once waiting started: down to LOW.
        let waiter = tokio::spawn({
            let bus = bus.clone();
            async move { bus.room().await }
        });
        tokio::task::yield_now().await;
        for _ in 0..Backlog::HIGH - Backlog::LOW {
            events.recv().await.expect("event");
        }
        backlog.done(Backlog::HIGH - Backlog::LOW);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "LOW + 1 held");
        events.recv().await.expect("event");
        backlog.done(1);
        waiter.await.expect("waiter");
        assert!(has_room(&bus));
    }

    #[tokio::test]
    async fn a_paced_sink_that_fails_or_goes_holds_nobody_up() {
        let bus = EventBus::new();
        let (events, backlog) = bus.paced_run_sink();
        let run = RunId::new("r1");
        for _ in 0..=Backlog::HIGH {
            bus.publish(Some(&run), ready("t"));
        }
        // Events without a run never reach a run sink, so they are not counted.
        bus.publish(None, ready("pool"));
        assert_eq!(backlog.held(), Backlog::HIGH + 1);
        assert!(!has_room(&bus));
        backlog.release();
        assert!(has_room(&bus), "a consumer that cannot commit releases the run");
        backlog.done(0);
        assert!(!has_room(&bus), "held again after its next commit");
        drop(events);
        assert!(has_room(&bus), "a gone receiver holds nobody up");
    }

    /// Blocks of three, each starting ten above the last.
    struct Tens(u64);

    impl SeqSource for Tens {
        fn next_block(&mut self) -> Result<Range<u64>, String> {
            self.0 += 10;
            Ok(self.0..self.0 + 3)
        }
    }

    #[test]
    fn numbers_come_from_the_source_block_by_block() {
        let bus = EventBus::numbered_by(5..7, Box::new(Tens(0)));
        let seqs: Vec<u64> = (0..7)
            .map(|_| bus.publish(None, Event::TaskReady { task: TaskId::new("t") }))
            .collect();
        assert_eq!(seqs, [5, 6, 10, 11, 12, 20, 21]);
    }
}
