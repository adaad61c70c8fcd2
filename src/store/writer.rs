//! The store writer: a dedicated thread that drains the bus's lossless sink into the
//! database, everything available at once (up to [`MAX_BATCH`] events per transaction), so
//! the engine never waits for the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{Checkpointer, EVENTS_PER_CHECKPOINT, WAKES_PER_OWN_CHECKPOINT};
use super::{RunStore, StoreError};
use crate::bus::Backlog;
use crate::event::{Envelope, Event};

/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 4096;

/// How long a batch that is not full waits for more events before it is committed; also the
/// most a stored event lags behind its publication (a flush does not wait for it).
pub const LINGER: Duration = Duration::from_millis(1);

/// Handle to the writer thread.
pub struct StoreWriter {
    control: mpsc::UnboundedSender<Control>,
    stored_events: Arc<AtomicU64>,
}

enum Control {
    Flush(oneshot::Sender<Result<(), StoreError>>),
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// Start writing every envelope from `events` (normally `bus.run_sink()`) into `store`.
///
/// A failed transaction is logged and retried with the next batch, so no event is dropped
/// while the disk is full; [`StoreWriter::flush`] reports the failure. If the handle is
/// dropped without [`StoreWriter::close`], the thread keeps writing until the bus is gone.
pub fn spawn_writer(
    store: RunStore,
    events: mpsc::UnboundedReceiver<Arc<Envelope>>,
) -> Result<StoreWriter, StoreError> {
    spawn_paced_writer(store, events, None)
}

/// [`spawn_writer`] for a paced sink (`bus.paced_run_sink()`): each commit tells `backlog`
/// how many events are done, so runs wait for the store only when it is far behind; a failed
/// commit releases them (the events stay queued for the next try).
pub fn spawn_paced_writer(
    store: RunStore,
    events: mpsc::UnboundedReceiver<Arc<Envelope>>,
    backlog: Option<Arc<Backlog>>,
) -> Result<StoreWriter, StoreError> {
    let (control, control_rx) = mpsc::unbounded_channel();
    let stored_events = Arc::new(AtomicU64::new(0));
    // Without a thread of its own for them, the writer's connection checkpoints as usual.
    let checkpointer = match Checkpointer::spawn(store.path()) {
        Ok(checkpointer) => match store.leave_checkpoints() {
            Ok(()) => Some(checkpointer),
            Err(error) => {
                tracing::warn!(%error, "run store: checkpoints stay with the writer");
                None
            }
        },
        Err(error) => {
            tracing::warn!(%error, "run store: checkpoints stay with the writer");
            None
        }
    };
    let mut writer = Writer {
        checkpointer,
        checkpointed_at: 0,
        wakes: 0,
        store,
        events,
        control: control_rx,
        batch: Vec::with_capacity(MAX_BATCH),
        stored_events: Arc::clone(&stored_events),
        backlog,
        committed: 0,
        give_back_at: None,
    };
    std::thread::Builder::new()
        .name("flightdeck-store".to_owned())
        // tokio's channels need no runtime; a plain executor can wait on both of them.
        .spawn(move || futures::executor::block_on(writer.run()))
        .map_err(StoreError::Spawn)?;
    Ok(StoreWriter { control, stored_events })
}

impl StoreWriter {
    /// Wait until every event sent to the writer before this call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.control.send(Control::Flush(ack)).map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Commit everything received so far, then stop the thread.
    pub async fn close(self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.control.send(Control::Close(ack)).map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Events committed since the writer started.
    pub fn stored_events(&self) -> u64 {
        self.stored_events.load(Ordering::Relaxed)
    }
}

struct Writer {
    /// Dropped before `store`: the writer's connection closes last and copies what is left
    /// of the log.
    checkpointer: Option<Checkpointer>,
    /// `committed` when the checkpointer was last woken.
    checkpointed_at: u64,
    /// Times it was (or the writer checkpointed instead).
    wakes: u64,
    store: RunStore,
    events: mpsc::UnboundedReceiver<Arc<Envelope>>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Received, not yet committed (kept across a failed commit).
    batch: Vec<Arc<Envelope>>,
    stored_events: Arc<AtomicU64>,
    /// Told what is committed, for a paced sink.
    backlog: Option<Arc<Backlog>>,
    /// Events committed so far, and when to give memory back again after a run's start.
    committed: u64,
    give_back_at: Option<u64>,
}

impl Drop for Writer {
    /// A writer that stopped holds no run up.
    fn drop(&mut self) {
        if let Some(backlog) = &self.backlog {
            backlog.close();
        }
    }
}

impl Writer {
    async fn run(&mut self) {
        let mut events_open = true;
        let mut control_open = true;
        while events_open || control_open {
            tokio::select! {
                biased;
                request = self.control.recv(), if control_open => match request {
                    Some(Control::Flush(ack)) => {
                        let _ = ack.send(self.drain());
                    }
                    Some(Control::Close(ack)) => {
                        let _ = ack.send(self.drain());
                        return;
                    }
                    None => control_open = false,
                },
                first = self.events.recv(), if events_open => {
                    if let Some(envelope) = first {
                        self.batch.push(envelope);
                        self.fill();
                        if self.batch.len() < MAX_BATCH {
                            // Group commit: many small transactions rewrite the same pages
                            // into the WAL and trigger fsyncing checkpoints far more often.
                            std::thread::sleep(LINGER);
                            self.fill();
                        }
                    } else {
                        events_open = false;
                    }
                    if let Err(error) = self.commit() {
                        tracing::error!(%error, "run store: commit failed; kept for the next one");
                    }
                }
            }
        }
    }

    /// Take what is already queued, without waiting, up to a full batch.
    fn fill(&mut self) {
        while self.batch.len() < MAX_BATCH {
            match self.events.try_recv() {
                Ok(envelope) => self.batch.push(envelope),
                Err(_) => break,
            }
        }
    }

    /// Commit everything queued at the time of the call, batch by batch. Events arriving
    /// meanwhile wait for the next round, so a flush ends even under constant load.
    fn drain(&mut self) -> Result<(), StoreError> {
        let mut queued = self.events.len();
        loop {
            while queued > 0 && self.batch.len() < MAX_BATCH {
                let Ok(envelope) = self.events.try_recv() else { break };
                self.batch.push(envelope);
                queued -= 1;
            }
            self.commit()?;
            if queued == 0 || self.events.is_empty() {
                return Ok(());
            }
        }
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // A run's start is the largest event there is (its plan, and a 17 MB line at 100,000
        // tasks); the store is usually the last to let go of it.
        let started_a_run =
            self.batch.iter().any(|envelope| matches!(envelope.event, Event::RunStarted { .. }));
        let stored = match self.store.append_batch(&self.batch) {
            Ok(stored) => stored,
            Err(error) => {
                if let Some(backlog) = &self.backlog {
                    backlog.release();
                }
                return Err(error);
            }
        };
        self.stored_events.fetch_add(stored as u64, Ordering::Relaxed);
        if let Some(backlog) = &self.backlog {
            backlog.done(self.batch.len());
        }
        self.committed += self.batch.len() as u64;
        self.batch.clear();
        if let Some(checkpointer) = &self.checkpointer
            && self.committed - self.checkpointed_at >= EVENTS_PER_CHECKPOINT
        {
            self.checkpointed_at = self.committed;
            self.wakes += 1;
            // While the writer keeps committing, the thread's checkpoints never catch up with
            // the end of the log, and SQLite starts the log over only after a checkpoint that
            // did: now and then the writer copies the little left itself, so the log is
            // reused instead of growing for as long as a run goes on.
            if self.wakes.is_multiple_of(WAKES_PER_OWN_CHECKPOINT) {
                if let Err(error) = self.store.checkpoint() {
                    tracing::warn!(%error, "run store: a checkpoint failed; the next one retries");
                }
            } else if !checkpointer.wake() {
                tracing::warn!("run store: the checkpoint thread is gone; the writer checkpoints");
                self.checkpointer = None;
                if let Err(error) = self.store.keep_checkpoints() {
                    tracing::warn!(%error, "run store: checkpoints could not be turned back on");
                }
            }
        }
        if started_a_run {
            // Give back what it held rather than keep it for the allocator's purge delay;
            // and again once the bus's ring, which holds the last events published, has
            // let go of it too.
            crate::allocator::give_back_freed_memory();
            self.give_back_at = Some(self.committed + crate::bus::BROADCAST_CAPACITY as u64);
        } else if self.give_back_at.is_some_and(|at| self.committed >= at) {
            self.give_back_at = None;
            crate::allocator::give_back_freed_memory();
        }
        Ok(())
    }
}
