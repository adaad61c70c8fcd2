//! Settings reload: the host watches the flightdeck.yaml of the project that governs its data
//! dir, and changes to `users`, `default_role` and `policies` take effect without a restart.
//!
//! An edit that does not load (bad YAML, a duplicate user, an unknown field) keeps the last
//! good settings and says why: a `notice` event (the console shows it) and a warning in the
//! log. Each change that loads is a `reload_settings` command by the system user through the
//! gate ([`Runtime::reload_settings_from`]): accepted, then what it did, naming what changed
//! (`users.vic: viewer → admin`), never the whole file.
//!
//! Like the agent pool's watcher: a blocking receive with a quiet-period timeout on its own
//! thread, so an idle host never wakes up for it.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::HostError;
use crate::agents::watcher::is_read;
use crate::config::{SETTINGS_FILE, Settings};
use crate::runtime::Runtime;
use notify::{RecursiveMode, Watcher as _};

/// How long the file must be quiet before it is read; editors write in several steps.
const QUIET: Duration = Duration::from_millis(100);

/// Policies the engine reads once, at start: a change is recorded and said, and applies from
/// the next start.
const ENGINE_POLICIES: [&str; 2] = ["approval_at", "high_risk_words"];

enum Signal {
    Change(notify::Result<notify::Event>),
    Stop,
}

/// Watches the governing flightdeck.yaml until dropped (which joins its thread, so the
/// runtime it holds is released).
pub struct SettingsWatcher {
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for SettingsWatcher {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Watch `project_dir`'s flightdeck.yaml.
pub fn watch_settings(
    runtime: Arc<Runtime>,
    project_dir: &Path,
) -> Result<SettingsWatcher, HostError> {
    let dir = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_owned());
    let io = |error: notify::Error| HostError::Io {
        path: dir.join(SETTINGS_FILE),
        source: std::io::Error::other(error.to_string()),
    };
    let (signals, inbox) = mpsc::channel();
    let from_fs = signals.clone();
    let mut watcher = notify::recommended_watcher(move |result| {
        let _ = from_fs.send(Signal::Change(result));
    })
    .map_err(io)?;
    // The folder, not the file: editors replace the file by renaming a new one over it.
    watcher.watch(&dir, RecursiveMode::NonRecursive).map_err(io)?;
    let path = dir.join(SETTINGS_FILE);
    let file = path.clone();
    let thread = std::thread::Builder::new()
        .name("settings-watcher".to_owned())
        .spawn(move || {
            let _watcher = watcher;
            // What the file held when last read: an event that leaves it so (its access
            // time, a rewrite with the same text) reads nothing new, and an edit that does
            // not load is said once, not again at each later event.
            let mut last_read: Option<Vec<u8>> = None;
            while let Ok(Signal::Change(first)) = inbox.recv() {
                let mut touched = touches_settings(&first);
                loop {
                    match inbox.recv_timeout(QUIET) {
                        Ok(Signal::Change(more)) => touched |= touches_settings(&more),
                        Ok(Signal::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                    }
                }
                if !touched {
                    continue;
                }
                let now = std::fs::read(&file).ok();
                if now.is_some() && now == last_read {
                    continue;
                }
                last_read = now;
                reload(&runtime, &dir);
            }
        })
        .map_err(|source| HostError::Io { path, source })?;
    Ok(SettingsWatcher { signals, thread: Some(thread) })
}

/// An event that may have changed flightdeck.yaml. Opening or reading it is no change: the
/// reload's own read would otherwise trigger the next reload, forever.
fn touches_settings(result: &notify::Result<notify::Event>) -> bool {
    match result {
        Ok(event) => {
            !is_read(event.kind)
                && event.paths.iter().any(|path| path.file_name() == Some(SETTINGS_FILE.as_ref()))
        }
        // Dropped events: read the file again to be sure.
        Err(_) => true,
    }
}

/// Read the file again: a `reload_settings` by the system when what governs changed.
fn reload(runtime: &Runtime, dir: &Path) {
    if let Err(error) = runtime.reload_settings_from(dir) {
        tracing::error!(%error, "settings reload refused");
    }
}

/// Said of a change the running process does not take up.
const LATER: &str = " (applies from the next start)";

/// Sections that take effect when changed: `users`, `default_role` and `policies`.
const RELOADED: [&str; 3] = ["users", "default_role", "policies"];

/// What differs, one entry per setting: `users`, `default_role` and `policies`, which take
/// effect at once, and every other section (`backends` by name), which the runtime read at
/// start and takes up at the next, so an operator who adds a backend is told why a run
/// cannot use it yet.
pub fn changes(old: &Settings, new: &Settings) -> Vec<String> {
    let mut changed = Vec::new();
    for (user, role) in &new.users {
        match old.users.get(user) {
            None => changed.push(format!("users.{user}: added ({role})")),
            Some(was) if was != role => changed.push(format!("users.{user}: {was} → {role}")),
            Some(_) => {}
        }
    }
    for (user, role) in &old.users {
        if !new.users.contains_key(user) {
            changed.push(format!("users.{user}: removed (was {role})"));
        }
    }
    if old.default_role != new.default_role {
        changed.push(format!("default_role: {} → {}", old.default_role, new.default_role));
    }
    let (was, now) = (fields(&old.policies), fields(&new.policies));
    for (key, value) in &now {
        let before = was.get(key).cloned().unwrap_or_default();
        if before != *value {
            // The engine assesses risk with the settings it started with.
            let later = if ENGINE_POLICIES.contains(&key.as_str()) {
                " (applies from the next start)"
            } else {
                ""
            };
            changed.push(format!("policies.{key}: {before} → {value}{later}"));
        }
    }
    for (name, backend) in &new.backends {
        match old.backends.get(name) {
            None => changed.push(format!("backends.{name}: added{LATER}")),
            Some(was) if was != backend => changed.push(format!("backends.{name}: changed{LATER}")),
            Some(_) => {}
        }
    }
    for name in old.backends.keys().filter(|name| !new.backends.contains_key(*name)) {
        changed.push(format!("backends.{name}: removed{LATER}"));
    }
    let (was, now) = (fields(old), fields(new));
    let keys: std::collections::BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    for key in keys {
        let handled = RELOADED.contains(&key.as_str()) || key == "backends";
        if !handled && was.get(key) != now.get(key) {
            changed.push(format!("{key}: changed{LATER}"));
        }
    }
    changed
}

/// A setting's fields (or the settings' sections) by name, as written.
fn fields(value: &impl serde::Serialize) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_setting_that_moved_and_nothing_else() {
        let old = Settings::parse(
            "default_role: viewer\nusers:\n  vic: viewer\n  rex: reviewer\n",
            Path::new("flightdeck.yaml"),
        )
        .unwrap();
        let new = Settings::parse(
            "default_role: viewer\nusers:\n  vic: admin\n  ann: admin\npolicies:\n  \
             approval_timeout: 30m\n",
            Path::new("flightdeck.yaml"),
        )
        .unwrap();
        let changed = changes(&old, &new);
        assert_eq!(changed.len(), 4, "{changed:?}");
        assert!(changed.contains(&"users.vic: viewer → admin".to_owned()), "{changed:?}");
        assert!(changed.contains(&"users.ann: added (admin)".to_owned()), "{changed:?}");
        assert!(changed.contains(&"users.rex: removed (was reviewer)".to_owned()), "{changed:?}");
        assert!(
            changed.iter().any(|c| c.starts_with("policies.approval_timeout: ")),
            "{changed:?}"
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[test]
    fn sections_read_at_start_are_named_with_when_they_apply() {
        let old = Settings::parse(
            "backends:\n  sim:\n    kind: sim\n  old:\n    kind: sim\n",
            Path::new("flightdeck.yaml"),
        )
        .unwrap();
        let new = Settings::parse(
            "backends:\n  sim:\n    kind: sim\n    latency_max: 5s\n  writer:\n    kind: process\n    \
             command: [sh, -c, 'echo hi']\nlimits:\n  max_instances_total: 3\n",
            Path::new("flightdeck.yaml"),
        )
        .unwrap();
        let changed = changes(&old, &new);
        assert_eq!(
            changed,
            [
                "backends.sim: changed (applies from the next start)",
                "backends.writer: added (applies from the next start)",
                "backends.old: removed (applies from the next start)",
                "limits: changed (applies from the next start)",
            ],
        );
    }
}
