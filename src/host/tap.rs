//! A host feed's hold on the bus, kept only while a client listens. A feed that holds a
//! receiver is woken for every event; a headless run of 100,000 tasks with nobody attached
//! publishes half a million, and two feeds waking for each and dropping it was a tenth of
//! the run's CPU. A feed with nobody to send to lets go of the bus; a client that subscribes
//! to the feed opens the tap before it is sent its snapshot, so the feed sees every event
//! the snapshot does not hold (a console skips what it was sent twice, by `seq`).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::event::Envelope;

pub(super) struct Tap {
    bus: EventBus,
    state: Mutex<State>,
    armed: Notify,
}

#[derive(Default)]
struct State {
    /// The feed holds a receiver.
    open: bool,
    /// A receiver subscribed for the feed, until it takes it.
    armed: Option<broadcast::Receiver<Arc<Envelope>>>,
}

impl Tap {
    /// Closed: nobody listens yet.
    pub(super) fn new(bus: EventBus) -> Arc<Self> {
        Arc::new(Self { bus, state: Mutex::default(), armed: Notify::new() })
    }

    /// A client subscribed to the feed (call after subscribing, before its snapshot): from
    /// now on the feed sees every event published.
    pub(super) fn open(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.open && state.armed.is_none() {
            state.armed = Some(self.bus.subscribe());
            self.armed.notify_one();
        }
    }

    /// For the feed: the receiver a client's [`Tap::open`] subscribed, once there is one.
    pub(super) async fn opened(&self) -> broadcast::Receiver<Arc<Envelope>> {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(events) = state.armed.take() {
                    state.open = true;
                    return events;
                }
            }
            // `notify_one` keeps its permit when nobody waits yet: no opening is missed.
            self.armed.notified().await;
        }
    }

    /// For the feed: whether nobody listens to `lines`, in which case the tap is closed and
    /// the feed is to drop its receiver. Checked under the lock [`Tap::open`] takes, so a
    /// client that subscribed meanwhile either keeps the feed open or opens it again.
    pub(super) fn close_if_unheard<T>(&self, lines: &broadcast::Sender<T>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.receiver_count() > 0 {
            return false;
        }
        state.open = false;
        true
    }
}

/// A feed's lines, and the tap its task draws the bus through.
pub(super) struct Lines<T> {
    pub(super) sender: broadcast::Sender<T>,
    pub(super) tap: Arc<Tap>,
}

impl<T: Clone> Lines<T> {
    /// Lines for `capacity` subscribers' worth of backlog, drawn from `bus` once someone
    /// listens.
    pub(super) fn new(capacity: usize, bus: EventBus) -> Self {
        Self { sender: broadcast::channel(capacity).0, tap: Tap::new(bus) }
    }

    /// A client's subscription: every line from now on, and the feed kept drawing on the bus.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<T> {
        let lines = self.sender.subscribe();
        self.tap.open();
        lines
    }

    /// For the feed: the bus from the next client's subscription on; `None` once `closing`.
    pub(super) async fn opened(
        &self,
        closing: &CancellationToken,
    ) -> Option<broadcast::Receiver<Arc<Envelope>>> {
        tokio::select! {
            () = closing.cancelled() => None,
            events = self.tap.opened() => Some(events),
        }
    }

    /// For the feed, on each event: whether nobody listens, in which case the tap is closed
    /// and the feed is to drop its receiver (the lock is only taken when nobody seems to).
    pub(super) fn unheard(&self) -> bool {
        self.sender.receiver_count() == 0 && self.tap.close_if_unheard(&self.sender)
    }
}

impl<T> Clone for Lines<T> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone(), tap: Arc::clone(&self.tap) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::{Event, Level};

    fn notice(bus: &EventBus, text: &str) -> u64 {
        bus.publish(None, Event::Notice { level: Level::Info, message: text.to_owned() })
    }

    async fn opened_soon(tap: &Tap) -> Option<broadcast::Receiver<Arc<Envelope>>> {
        tokio::time::timeout(Duration::from_millis(50), tap.opened()).await.ok()
    }

    #[tokio::test]
    async fn the_feed_draws_on_the_bus_only_while_a_client_listens() {
        let bus = EventBus::new();
        let tap = Tap::new(bus.clone());
        let (sender, _) = broadcast::channel::<u64>(8);
        let lines = Lines { sender, tap: Arc::clone(&tap) };
        // Nobody listens: no receiver is held, and none is offered to the feed.
        notice(&bus, "before anyone");
        assert!(opened_soon(&tap).await.is_none());

        // A client subscribes: the feed's receiver sees what is published from then on.
        let client = lines.subscribe();
        let mut events = opened_soon(&tap).await.expect("opened for the client");
        let seq = notice(&bus, "for the client");
        assert_eq!(events.recv().await.expect("an event").seq, seq);
        // Someone listens: the feed keeps drawing.
        assert!(!tap.close_if_unheard(&lines.sender));

        // The client goes: the feed closes the tap and lets go; nothing is offered again
        // until the next client.
        drop(client);
        assert!(tap.close_if_unheard(&lines.sender));
        drop(events);
        assert!(opened_soon(&tap).await.is_none());
        let _again = lines.subscribe();
        let mut events = opened_soon(&tap).await.expect("opened again");
        let seq = notice(&bus, "for the next client");
        assert_eq!(events.recv().await.expect("an event").seq, seq);
    }

    #[tokio::test]
    async fn a_client_arriving_as_the_feed_closes_keeps_it_open_or_opens_it_again() {
        let bus = EventBus::new();
        let tap = Tap::new(bus.clone());
        let (sender, _) = broadcast::channel::<u64>(8);
        let lines = Lines { sender, tap: Arc::clone(&tap) };
        let first = lines.subscribe();
        let _events = opened_soon(&tap).await.expect("opened");
        drop(first);
        // A client subscribes before the feed looks: the feed stays open.
        let second = lines.subscribe();
        assert!(!tap.close_if_unheard(&lines.sender));
        assert!(
            opened_soon(&tap).await.is_none(),
            "the open feed is not offered a second receiver"
        );
        // It goes, the feed closes, another comes: a fresh receiver is offered.
        drop(second);
        assert!(tap.close_if_unheard(&lines.sender));
        let _third = lines.subscribe();
        assert!(opened_soon(&tap).await.is_some());
    }
}
