//! Hot reload on a real temp folder: every change must reach the registry, and its event
//! the bus, within 500 ms of the write.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck::agents::{AgentWatcher, DEBOUNCE_MS, Registry, watch};
use flightdeck::bus::EventBus;
use flightdeck::event::{Envelope, Event};
use tokio::sync::mpsc::UnboundedReceiver;

const DEADLINE: Duration = Duration::from_millis(500);

fn definition(name: &str, description: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\n---\nYou are {name}.\n")
}

struct Pool {
    project: tempfile::TempDir,
    registry: Registry,
    events: UnboundedReceiver<Arc<Envelope>>,
    watcher: Option<AgentWatcher>,
}

impl Pool {
    /// A project with `agentpool/` holding `files`, loaded and watched.
    fn start(files: &[(&str, String)]) -> Self {
        let project = tempfile::tempdir().unwrap();
        let dir = project.path().join("agentpool");
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let registry = Registry::load(&dir);
        let bus = EventBus::new();
        let events = bus.sink();
        let watcher = watch(registry.clone(), bus).unwrap();
        Self { project, registry, events, watcher: Some(watcher) }
    }

    fn dir(&self) -> PathBuf {
        self.project.path().join("agentpool")
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir().join(file)
    }

    /// Wait until `ready` holds for the registry, then until an event matching `expected`
    /// arrives; both within [`DEADLINE`] of `since`. Returns the events seen.
    fn expect(
        &mut self,
        since: Instant,
        what: &str,
        ready: impl Fn(&Registry) -> bool,
        expected: impl Fn(&Event) -> bool,
    ) -> Vec<Event> {
        expect_on(&self.registry, &mut self.events, since, what, ready, expected)
    }

    /// Drop `file` into the pool in one step (written beside the folder, then renamed in),
    /// so the watcher sees one burst and rescans once.
    fn drop_in(&self, file: &str, text: &str) -> Instant {
        let staged = self.project.path().join(format!("{file}.staged"));
        std::fs::write(&staged, text).unwrap();
        let at = Instant::now();
        std::fs::rename(&staged, self.path(file)).unwrap();
        at
    }

    fn description(&self, name: &str) -> Option<String> {
        self.registry.get(name).map(|def| def.description.clone())
    }
}

/// [`Pool::expect`] for any registry and event stream.
fn expect_on(
    registry: &Registry,
    events: &mut UnboundedReceiver<Arc<Envelope>>,
    since: Instant,
    what: &str,
    ready: impl Fn(&Registry) -> bool,
    expected: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    while !ready(registry) {
        assert!(
            since.elapsed() < DEADLINE,
            "{what}: registry not updated after {:?}",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut seen = Vec::new();
    loop {
        while let Ok(envelope) = events.try_recv() {
            seen.push(envelope.event.clone());
        }
        if seen.iter().any(&expected) {
            return seen;
        }
        assert!(
            since.elapsed() < DEADLINE,
            "{what}: no matching event after {:?}; saw {seen:?}",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_added(name: &'static str) -> impl Fn(&Event) -> bool {
    move |event| matches!(event, Event::AgentAdded(summary) if summary.agent.as_str() == name)
}

fn write(path: &Path, text: &str) -> Instant {
    let at = Instant::now();
    std::fs::write(path, text).unwrap();
    at
}

#[test]
fn add() {
    let mut pool = Pool::start(&[("a.md", definition("a", "first"))]);
    let at = write(&pool.path("b.md"), &definition("b", "second"));
    pool.expect(
        at,
        "add",
        |r| r.get("b").is_some(),
        |e| matches!(e, Event::AgentAdded(s) if s.agent.as_str() == "b"),
    );
    assert_eq!(pool.registry.definitions().len(), 2);
}

#[test]
fn edit() {
    let mut pool = Pool::start(&[("a.md", definition("a", "first"))]);
    let at = write(&pool.path("a.md"), &definition("a", "edited"));
    pool.expect(
        at,
        "edit",
        |r| r.get("a").is_some_and(|d| d.description == "edited"),
        |e| matches!(e, Event::AgentUpdated(s) if s.agent.as_str() == "a"),
    );
}

#[test]
fn add_in_new_subfolder() {
    let mut pool = Pool::start(&[]);
    let at = Instant::now();
    std::fs::create_dir(pool.path("tier1-core")).unwrap();
    std::fs::write(pool.path("tier1-core/core.md"), definition("core", "in a new folder")).unwrap();
    pool.expect(
        at,
        "subfolder",
        |r| r.get("core").is_some_and(|d| d.tier == 1),
        |e| matches!(e, Event::AgentAdded(_)),
    );
}

#[test]
fn rename() {
    let mut pool = Pool::start(&[("a.md", definition("a", "first"))]);
    let at = Instant::now();
    std::fs::rename(pool.path("a.md"), pool.path("renamed.md")).unwrap();
    let target = pool.path("renamed.md");
    pool.expect(
        at,
        "rename",
        |r| r.get("a").is_some_and(|d| d.file == target),
        |e| matches!(e, Event::AgentUpdated(s) if s.file.ends_with("renamed.md")),
    );
    assert_eq!(pool.registry.definitions().len(), 1);
}

#[test]
fn delete() {
    let mut pool =
        Pool::start(&[("a.md", definition("a", "first")), ("b.md", definition("b", "second"))]);
    let at = Instant::now();
    std::fs::remove_file(pool.path("a.md")).unwrap();
    pool.expect(
        at,
        "delete",
        |r| r.get("a").is_none(),
        |e| matches!(e, Event::AgentRemoved { agent, .. } if agent.as_str() == "a"),
    );
    assert!(pool.registry.get("b").is_some());
}

#[test]
fn editor_atomic_save() {
    let mut pool = Pool::start(&[("a.md", definition("a", "first"))]);
    let at = Instant::now();
    // What editors do: write a temp file beside the target, then rename it over the target.
    let temp = pool.path(".a.md.swp");
    std::fs::write(&temp, definition("a", "saved atomically")).unwrap();
    std::fs::rename(&temp, pool.path("a.md")).unwrap();
    let seen = pool.expect(
        at,
        "atomic save",
        |r| r.get("a").is_some_and(|d| d.description == "saved atomically"),
        |e| matches!(e, Event::AgentUpdated(s) if s.agent.as_str() == "a"),
    );
    assert!(!seen.iter().any(|e| matches!(e, Event::AgentRemoved { .. })), "{seen:?}");
    assert!(pool.registry.problems().is_empty());
}

#[test]
fn delete_and_recreate_the_whole_folder() {
    let mut pool = Pool::start(&[("a.md", definition("a", "first"))]);
    for round in 0..2 {
        let at = Instant::now();
        std::fs::remove_dir_all(pool.dir()).unwrap();
        pool.expect(
            at,
            "folder deleted",
            |r| r.definitions().is_empty(),
            |e| matches!(e, Event::AgentRemoved { .. }),
        );

        let at = Instant::now();
        std::fs::create_dir(pool.dir()).unwrap();
        let description = format!("recreated {round}");
        std::fs::write(pool.path("a.md"), definition("a", &description)).unwrap();
        pool.expect(
            at,
            "folder recreated",
            |r| r.get("a").is_some_and(|d| d.description == description),
            |e| matches!(e, Event::AgentAdded(s) if s.agent.as_str() == "a"),
        );
        // The new folder is watched: a later edit arrives too.
        let at = write(&pool.path("a.md"), &definition("a", "edited after recreate"));
        pool.expect(
            at,
            "edit in recreated folder",
            |r| r.get("a").is_some_and(|d| d.description == "edited after recreate"),
            |e| matches!(e, Event::AgentUpdated(_)),
        );
    }
}

#[test]
fn invalid_edit_keeps_last_good_and_fix_clears_it() {
    let mut pool = Pool::start(&[("a.md", definition("a", "good"))]);
    let at =
        write(&pool.path("a.md"), "---\nname: a\ndescription: broken\ntier: 9\n---\nYou are a.\n");
    let seen = pool.expect(
        at,
        "invalid edit",
        |r| !r.problems().is_empty(),
        |e| matches!(e, Event::AgentInvalid { agent: Some(agent), .. } if agent.as_str() == "a"),
    );
    assert_eq!(
        pool.description("a").as_deref(),
        Some("good"),
        "the last good version stays active"
    );
    let problem = &pool.registry.problems()[0];
    assert!(problem.last_good_active);
    assert!(
        problem.message().contains("a.md:4: tier: `9` must be 1, 2 or 3"),
        "{}",
        problem.message()
    );
    let Some(Event::AgentInvalid { error, .. }) =
        seen.iter().find(|e| matches!(e, Event::AgentInvalid { .. }))
    else {
        unreachable!()
    };
    assert!(error.contains("tier"), "{error}");

    let at = write(&pool.path("a.md"), &definition("a", "fixed"));
    pool.expect(
        at,
        "fix",
        |r| r.problems().is_empty() && r.get("a").is_some_and(|d| d.description == "fixed"),
        |e| matches!(e, Event::AgentUpdated(s) if s.agent.as_str() == "a"),
    );
}

#[test]
fn fixing_back_to_the_same_content_still_reports_the_update() {
    let mut pool = Pool::start(&[("a.md", definition("a", "good"))]);
    let at = write(&pool.path("a.md"), "---\nname: a\n---\n");
    pool.expect(
        at,
        "break",
        |r| !r.problems().is_empty(),
        |e| matches!(e, Event::AgentInvalid { .. }),
    );
    let at = write(&pool.path("a.md"), &definition("a", "good"));
    pool.expect(
        at,
        "restore",
        |r| r.problems().is_empty(),
        |e| matches!(e, Event::AgentUpdated(_)),
    );
}

#[test]
fn an_idle_folder_is_not_rescanned() {
    let mut pool =
        Pool::start(&[("a.md", definition("a", "first")), ("b.md", definition("b", "second"))]);
    let generation = pool.registry.generation();
    // The watcher's first rescan read every file. If reads counted as changes, those reads
    // would make a burst of their own once the folder has been quiet for a debounce period.
    std::thread::sleep(Duration::from_millis(4 * DEBOUNCE_MS));
    // The positive signal: a probe dropped in afterwards is rescanned and reported, so every
    // file system event queued before it has been handled by now.
    let at = pool.drop_in("probe.md", &definition("probe", "proves the watcher is live"));
    pool.expect(at, "probe", |r| r.get("probe").is_some(), is_added("probe"));
    assert_eq!(
        pool.registry.generation(),
        generation + 1,
        "one rescan, for the probe; none for the watcher's own reads"
    );
    // Nor do the probe rescan's reads start another: a second probe is again one rescan.
    std::thread::sleep(Duration::from_millis(4 * DEBOUNCE_MS));
    let at = pool.drop_in("probe2.md", &definition("probe2", "again"));
    pool.expect(at, "second probe", |r| r.get("probe2").is_some(), is_added("probe2"));
    assert_eq!(pool.registry.generation(), generation + 2);
}

#[test]
fn dropping_the_watcher_stops_it() {
    let mut pool = Pool::start(&[("a.md", definition("a", "first"))]);
    drop(pool.watcher.take());
    // A second watcher on the same folder is the positive signal: once it has reloaded the
    // change, a first watcher that was still running would have seen it too.
    let witness = Registry::load(&pool.dir());
    let bus = EventBus::new();
    let mut witness_events = bus.sink();
    let _witness_watcher = watch(witness.clone(), bus).unwrap();
    let at = write(&pool.path("a.md"), &definition("a", "unseen"));
    expect_on(
        &witness,
        &mut witness_events,
        at,
        "witness",
        |r| r.get("a").is_some_and(|def| def.description == "unseen"),
        |e| matches!(e, Event::AgentUpdated(_)),
    );
    assert_eq!(pool.description("a").as_deref(), Some("first"));
    assert!(pool.events.try_recv().is_err());
}

#[test]
fn cli_watch_prints_changes_until_interrupted() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("agentpool");
    std::fs::create_dir(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--project-dir", project.path().to_str().unwrap(), "agents", "watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    // A watchdog, so a missing line fails the test instead of hanging it.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    // The banner on stderr says the watch is established.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    assert!(banner.starts_with("watching "), "{banner}");

    std::fs::write(dir.join("w.md"), definition("w", "watched")).unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "agent_added");
    assert_eq!(event["agent"], "w");

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn deleting_a_file_that_never_loaded_clears_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = dir.path().join("agentpool");
    std::fs::create_dir_all(&pool).expect("pool dir");
    std::fs::write(pool.join("notes.md"), "just notes, no frontmatter\n").expect("write");
    let registry = flightdeck::agents::Registry::load(&pool);
    assert_eq!(registry.problems().len(), 1);
    std::fs::remove_file(pool.join("notes.md")).expect("remove");
    let events = registry.rescan();
    assert!(registry.problems().is_empty());
    assert!(
        events.iter().any(|event| matches!(
            event,
            flightdeck::event::Event::AgentFileCleared { file } if file.ends_with("notes.md")
        )),
        "{events:?}"
    );
}
