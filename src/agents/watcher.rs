//! Hot reload: watch the pool folder, rescan the registry after each burst of changes and
//! publish what changed.
//!
//! The folder itself is watched recursively and its parent non-recursively, so deleting
//! and recreating the whole folder is noticed and the recursive watch re-established. Each
//! burst triggers a full rescan, which reads unchanged files again but parses only changed
//! ones, so coalesced or reordered file system events can never leave the registry stale.
//!
//! The debounce is a blocking receive with a quiet-period timeout on the watcher thread,
//! not a ticking debouncer: an idle console must not wake up at all.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::error::AgentError;
use super::registry::Registry;
use crate::bus::EventBus;
use crate::governance::Gate;

/// Why a hot reload happened, for its audit record.
const CHANGED: &str = "hot reload: files in the agent pool folder changed";
const CAUGHT_UP: &str = "hot reload: the agent pool changed before it was watched";

/// How long the folder must be quiet before a rescan; editors write a file in several steps.
pub const DEBOUNCE_MS: u64 = 50;

enum Signal {
    Change(notify::Result<notify::Event>),
    Stop,
}

/// Watches the pool folder until dropped.
pub struct AgentWatcher {
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AgentWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentWatcher").finish_non_exhaustive()
    }
}

impl Drop for AgentWatcher {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start watching `registry.dir()`; change events go to `bus`. Changes made between the
/// registry's load and this call are picked up by an initial rescan. For a registry of
/// one's own (`agents watch`); the runtime watches its registry with [`watch_gated`].
pub fn watch(registry: Registry, bus: EventBus) -> Result<AgentWatcher, AgentError> {
    start(registry, bus, None)
}

/// [`watch`] for the runtime's registry: every swap is a `reload_agents` by the system
/// user through `gate`, audited with what changed.
pub(crate) fn watch_gated(
    registry: Registry,
    bus: EventBus,
    gate: Gate,
) -> Result<AgentWatcher, AgentError> {
    start(registry, bus, Some(gate))
}

/// One rescan, through the gate when there is one.
fn reload(registry: &Registry, gate: Option<&Gate>, why: &str) -> Vec<crate::event::Event> {
    match gate {
        Some(gate) => registry.reload_through(gate, why),
        None => registry.rescan(),
    }
}

fn start(
    registry: Registry,
    bus: EventBus,
    gate: Option<Gate>,
) -> Result<AgentWatcher, AgentError> {
    let given = registry.dir();
    let watch_error = |message: String| AgentError::Watch { dir: given.clone(), message };
    let dir = std::path::absolute(&given).map_err(|error| watch_error(error.to_string()))?;
    let parent = dir
        .parent()
        .map(Path::to_owned)
        .ok_or_else(|| watch_error("the folder has no parent to watch".to_owned()))?;

    let (signals, inbox) = mpsc::channel();
    let from_fs = signals.clone();
    let mut watcher = notify::recommended_watcher(move |result| {
        let _ = from_fs.send(Signal::Change(result));
    })
    .map_err(|error| watch_error(error.to_string()))?;
    watcher
        .watch(&parent, RecursiveMode::NonRecursive)
        .map_err(|error| watch_error(format!("{}: {error}", parent.display())))?;
    let mut watching_dir = false;
    if dir.is_dir() {
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|error| watch_error(error.to_string()))?;
        watching_dir = true;
    }
    publish(&bus, reload(&registry, gate.as_ref(), CAUGHT_UP));

    let thread = std::thread::Builder::new()
        .name("agent-watcher".to_owned())
        .spawn(move || {
            while let Ok(Signal::Change(first)) = inbox.recv() {
                let Some(burst) = collect_burst(first, &inbox) else { return };
                let mut changed = false;
                let mut touches_dir = false;
                for result in &burst {
                    match result {
                        Ok(event) => {
                            changed |= changes_content(event, &dir);
                            touches_dir |= replaces_dir(event, &dir);
                        }
                        Err(error) => {
                            // Dropped events (queue overflow) are why a full rescan is the answer.
                            tracing::warn!(dir = %dir.display(), %error, "agent pool watch error");
                            changed = true;
                            touches_dir = true;
                        }
                    }
                }
                if !changed {
                    continue;
                }
                if touches_dir || !watching_dir {
                    let _ = watcher.unwatch(&dir);
                    watching_dir =
                        dir.is_dir() && watcher.watch(&dir, RecursiveMode::Recursive).is_ok();
                }
                publish(&bus, reload(&registry, gate.as_ref(), CHANGED));
            }
        })
        .map_err(|error| watch_error(error.to_string()))?;
    Ok(AgentWatcher { signals, thread: Some(thread) })
}

/// Everything that arrives until the folder has been quiet for [`DEBOUNCE_MS`] (bounded, so
/// a folder that never stops changing is still rescanned once a second). `None` on stop.
fn collect_burst(
    first: notify::Result<notify::Event>,
    inbox: &mpsc::Receiver<Signal>,
) -> Option<Vec<notify::Result<notify::Event>>> {
    let quiet = Duration::from_millis(DEBOUNCE_MS);
    let started = Instant::now();
    let mut burst = vec![first];
    while started.elapsed() < Duration::from_secs(1) {
        match inbox.recv_timeout(quiet) {
            Ok(Signal::Change(result)) => burst.push(result),
            Ok(Signal::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
        }
    }
    Some(burst)
}

fn publish(bus: &EventBus, events: Vec<crate::event::Event>) {
    for event in events {
        bus.publish(None, event);
    }
}

/// A change under `dir`. Opening or reading a file is not a change; it must not count,
/// or the rescan's own reads would trigger the next rescan forever.
fn changes_content(event: &notify::Event, dir: &Path) -> bool {
    !is_read(event.kind) && event.paths.iter().any(|path| path.starts_with(dir))
}

/// Whether an event only opened, read or closed a file it did not write.
pub(crate) fn is_read(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

/// The folder itself was created, removed or renamed, so its recursive watch is stale.
fn replaces_dir(event: &notify::Event, dir: &Path) -> bool {
    let structural = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(notify::event::ModifyKind::Name(_))
    );
    structural && event.paths.iter().any(|path| path == dir)
}
