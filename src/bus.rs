//! The event bus: one ordered stream of [`Envelope`]s.
//!
//! Publishing assigns the sequence number and timestamp under one lock, so every subscriber
//! sees the same order. Two kinds of subscriber exist:
//! - lossless sinks (run store, headless printer) get an unbounded channel and never miss an
//!   event;
//! - broadcast receivers (the console) may lag behind; a lagging console says so and re-reads
//!   the run store instead of slowing the engine.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc};

use crate::event::{Envelope, Event};
use crate::ids::RunId;

/// Capacity of the lossy broadcast channel.
pub const BROADCAST_CAPACITY: usize = 16_384;

struct Inner {
    next_seq: u64,
    sinks: Vec<mpsc::UnboundedSender<Arc<Envelope>>>,
}

/// Cheap to clone; all clones publish into the same stream.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Mutex<Inner>>,
    broadcast: broadcast::Sender<Arc<Envelope>>,
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
        let inner = Inner { next_seq: first_seq.max(1), sinks: Vec::new() };
        Self { inner: Arc::new(Mutex::new(inner)), broadcast }
    }

    /// Publish one event and return its sequence number.
    pub fn publish(&self, run_id: Option<&RunId>, event: Event) -> u64 {
        let ts_ms = now_ms();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let envelope = Arc::new(Envelope { seq, ts_ms, run_id: run_id.cloned(), event });
        inner.sinks.retain(|sink| sink.send(Arc::clone(&envelope)).is_ok());
        // No receivers is fine: nobody is watching yet.
        let _ = self.broadcast.send(envelope);
        seq
    }

    /// A lossy receiver for views; see the module docs.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.broadcast.subscribe()
    }

    /// A lossless receiver; it sees every event published after this call.
    pub fn sink(&self) -> mpsc::UnboundedReceiver<Arc<Envelope>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).sinks.push(tx);
        rx
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).next_seq
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
}
