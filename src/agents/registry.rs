//! The agent registry: every definition of one pool folder, swapped as a whole on rescan.
//!
//! Files are `**/*.md` under the folder (symlinks followed; hidden entries and `README.md`
//! skipped). The registry never fails: files that cannot be loaded become [`Problem`]s.
//! Rules across files:
//! - Names are unique within one pool. When two files define the same name, the file that
//!   already held the name keeps it (so an edit elsewhere cannot take it away), else the
//!   first file in path order; the other file gets an error naming both files.
//! - An edit that makes a file invalid keeps its last good version active and reports the
//!   error; fixing the file clears the error.
//! - A `fallback` naming no agent of the pool is a warning on the definition.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::definition::{self, AgentDefinition, FileFailure};
use super::error::{AgentError, Warning};
use crate::command::Command;
use crate::event::Event;
use crate::governance::Gate;
use crate::ids::AgentId;

/// How deep the registry looks into the pool folder.
const MAX_DEPTH: usize = 16;
/// Threads that read and parse files during a scan.
const MAX_READERS: usize = 4;
/// Below this many files per thread, threads cost more than they save.
const FILES_PER_READER: usize = 64;

/// A file that is not loaded as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// The agent the file defines (or defined when it was last good), if known.
    pub agent: Option<AgentId>,
    pub errors: Vec<AgentError>,
    pub warnings: Vec<Warning>,
    /// True when the file's last good version is still active.
    pub last_good_active: bool,
}

impl Problem {
    fn new(file: &Path, agent: Option<AgentId>) -> Self {
        Self {
            file: file.to_owned(),
            agent,
            errors: Vec::new(),
            warnings: Vec::new(),
            last_good_active: false,
        }
    }

    /// All errors, `; `-separated, each as `file:line: field: message`.
    pub fn message(&self) -> String {
        let mut text = self.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        if self.last_good_active {
            text.push_str(" (the last good version stays active)");
        }
        text
    }

    fn to_event(&self) -> Event {
        Event::AgentInvalid {
            file: self.file.clone(),
            agent: self.agent.clone(),
            error: self.message(),
        }
    }
}

/// What one file held at the last scan.
#[derive(Debug, Clone)]
struct FileRecord {
    /// Hash of the bytes; `None` when they could not be read.
    content_hash: Option<u64>,
    outcome: Result<Arc<AgentDefinition>, FileFailure>,
    last_good: Option<Arc<AgentDefinition>>,
}

/// One consistent state of the pool.
#[derive(Debug, Default)]
struct Snapshot {
    files: BTreeMap<PathBuf, FileRecord>,
    active: BTreeMap<AgentId, Arc<AgentDefinition>>,
    problems: Vec<Problem>,
    scanned_files: usize,
    /// Scans done so far, this one included.
    generation: u64,
}

struct Shared {
    dir: PathBuf,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serializes rescans so each diff is against the state it replaces.
    rescanning: Mutex<()>,
}

/// The agent definitions of one pool folder. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Registry")
            .field("dir", &self.shared.dir)
            .field("agents", &snapshot.active.len())
            .field("problems", &snapshot.problems.len())
            .finish()
    }
}

impl Registry {
    /// Load every definition under `dir`. Never fails; see [`Registry::problems`].
    pub fn load(dir: &Path) -> Self {
        let registry = Self {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                rescanning: Mutex::new(()),
            }),
        };
        registry.rescan();
        registry
    }

    /// The active definition called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<AgentDefinition>> {
        self.snapshot().active.get(&AgentId::from(name)).cloned()
    }

    /// Every active definition, sorted by name.
    pub fn definitions(&self) -> Vec<Arc<AgentDefinition>> {
        self.snapshot().active.values().cloned().collect()
    }

    /// Files that are not loaded as they are now, sorted by file.
    pub fn problems(&self) -> Vec<Problem> {
        self.snapshot().problems.clone()
    }

    /// The pool folder.
    pub fn dir(&self) -> PathBuf {
        self.shared.dir.clone()
    }

    /// How many candidate files the last scan saw (loaded or not).
    pub fn scanned_files(&self) -> usize {
        self.snapshot().scanned_files
    }

    /// How many scans produced the current state (1 after `load`).
    pub fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    /// The current state as events, for a view that subscribes late: one `AgentAdded` per
    /// definition, then one `AgentInvalid` per problem.
    pub fn backlog_events(&self) -> Vec<Event> {
        let snapshot = self.snapshot();
        let added = snapshot.active.values().map(|def| Event::AgentAdded(def.summary()));
        added.chain(snapshot.problems.iter().map(Problem::to_event)).collect()
    }

    /// Re-read the folder, swap in the new state and return what changed. For a registry
    /// of one's own (`agents validate`, `agents watch`); the runtime's registry is not
    /// reachable from outside it and changes only through [`Registry::reload_through`].
    pub fn rescan(&self) -> Vec<Event> {
        self.rescan_if(|_| true)
    }

    /// [`Registry::rescan`] for the runtime's registry: when the folder changed, the swap is
    /// Flightdeck's own `reload_agents` command and passes `gate` first (audited with `why`
    /// and then with what changed); refused (the audit log cannot be written), the last good
    /// state stays active and nothing is returned.
    pub(crate) fn reload_through(&self, gate: &Gate, why: &str) -> Vec<Event> {
        let mut permit = None;
        let events = self.rescan_if(|events| match gate.system(Command::ReloadAgents, why) {
            Ok(given) => {
                permit = Some((given, summary(events)));
                true
            }
            Err(denied) => {
                tracing::error!(%denied, "agent pool: reload refused; the last good state stays");
                false
            }
        });
        if let Some((permit, did)) = permit {
            gate.record(permit, Ok(did));
        }
        events
    }

    /// Scan, and swap the result in when nothing changed or `allow` agrees to the changes.
    fn rescan_if(&self, allow: impl FnOnce(&[Event]) -> bool) -> Vec<Event> {
        let _one_at_a_time = self.shared.rescanning.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.snapshot();
        let new = Arc::new(scan(&self.shared.dir, &old));
        let events = diff(&old, &new);
        if !events.is_empty() && !allow(&events) {
            return Vec::new();
        }
        *self.shared.snapshot.write().unwrap_or_else(PoisonError::into_inner) = new;
        events
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.shared.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A path the walk turned up.
enum Found {
    File(PathBuf),
    Failed(AgentError),
}

fn walk(dir: &Path) -> Vec<Found> {
    let entries = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .max_depth(MAX_DEPTH)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_skipped(entry.file_name()));
    let mut found = Vec::new();
    // A file reached twice (through a link to a folder above the pool, or two links to one
    // folder) is one file: the first path it was reached by is the one used.
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let is_markdown =
                    path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("md"))
                        && !entry.file_type().is_dir();
                if !is_markdown {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    use std::os::unix::fs::MetadataExt as _;
                    if !seen.insert((meta.dev(), meta.ino())) {
                        continue;
                    }
                }
                if entry.file_name().to_str().is_none() {
                    found.push(Found::Failed(AgentError::FileName { file: path.to_owned() }));
                } else {
                    found.push(Found::File(path.to_owned()));
                }
            }
            Err(error) => {
                let file = error.path().map_or_else(|| dir.to_owned(), Path::to_owned);
                let failure = match error.loop_ancestor() {
                    Some(ancestor) => {
                        AgentError::SymlinkLoop { file, ancestor: ancestor.to_owned() }
                    }
                    None => AgentError::Read {
                        file,
                        message: error
                            .io_error()
                            .map_or_else(|| error.to_string(), ToString::to_string),
                    },
                };
                found.push(Found::Failed(failure));
            }
        }
    }
    found
}

fn is_skipped(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || name.eq_ignore_ascii_case("readme.md")
}

/// The tier a folder implies: the nearest folder named `tier<N>` or `tier<N>-<anything>`.
fn folder_tier(dir: &Path, file: &Path) -> Option<u8> {
    let relative = file.strip_prefix(dir).ok()?;
    let folders: Vec<Component<'_>> = relative.parent()?.components().collect();
    folders.iter().rev().find_map(|component| {
        let name = component.as_os_str().to_str()?;
        let rest = name.strip_prefix("tier")?;
        let (digit, tail) = rest.split_at_checked(1)?;
        let tier = digit.parse::<u8>().ok().filter(|tier| (1..=3).contains(tier))?;
        (tail.is_empty() || tail.starts_with('-')).then_some(tier)
    })
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn read_record(dir: &Path, file: &Path, old: Option<&FileRecord>) -> FileRecord {
    let last_good = old.and_then(|record| record.last_good.clone());
    let (content_hash, outcome) = match definition::read_capped(file) {
        Err(error) => (None, Err(FileFailure::single(error))),
        Ok(bytes) => {
            let hash = content_hash(&bytes);
            let outcome =
                if let Some(unchanged) = old.filter(|record| record.content_hash == Some(hash)) {
                    unchanged.outcome.clone()
                } else {
                    definition::decode(file, &bytes)
                        .map_err(FileFailure::single)
                        .and_then(|text| {
                            definition::parse_definition(&text, file, folder_tier(dir, file))
                        })
                        .map(Arc::new)
                };
            (Some(hash), outcome)
        }
    };
    let last_good = match &outcome {
        Ok(def) => Some(Arc::clone(def)),
        Err(_) => last_good,
    };
    FileRecord { content_hash, outcome, last_good }
}

/// Read and parse `paths` on a few threads: parsing dominates a load of many files.
fn read_records(dir: &Path, paths: &[PathBuf], old: &Snapshot) -> Vec<FileRecord> {
    let read = |part: &[PathBuf]| -> Vec<FileRecord> {
        part.iter().map(|path| read_record(dir, path, old.files.get(path))).collect()
    };
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(MAX_READERS);
    if workers < 2 || paths.len() < FILES_PER_READER {
        return read(paths);
    }
    let chunk = paths.len().div_ceil(workers).max(FILES_PER_READER);
    std::thread::scope(|scope| {
        let readers: Vec<_> =
            paths.chunks(chunk).map(|part| scope.spawn(move || read(part))).collect();
        readers
            .into_iter()
            .flat_map(|reader| {
                reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn scan(dir: &Path, old: &Snapshot) -> Snapshot {
    let mut files = BTreeMap::new();
    let mut problems: BTreeMap<PathBuf, Problem> = BTreeMap::new();
    let found = walk(dir);
    let scanned_files = found.len();
    let mut paths = Vec::new();
    for item in found {
        match item {
            Found::File(path) => paths.push(path),
            Found::Failed(error) => {
                let file = error.file().to_owned();
                problems
                    .entry(file.clone())
                    .or_insert_with(|| Problem::new(&file, None))
                    .errors
                    .push(error);
            }
        }
    }
    let records = read_records(dir, &paths, old);
    files.extend(paths.into_iter().zip(records));
    for (path, record) in &files {
        if let Err(failure) = &record.outcome {
            let agent = record
                .last_good
                .as_ref()
                .map(|def| def.name.clone())
                .or_else(|| failure.agent.clone());
            let problem = problems.entry(path.clone()).or_insert_with(|| Problem::new(path, agent));
            problem.errors.extend(failure.errors.iter().cloned());
            problem.warnings.extend(failure.warnings.iter().cloned());
        }
    }
    let winners = resolve_names(&files, old, &mut problems);
    let active = with_pool_warnings(winners, old);
    Snapshot {
        files,
        active,
        problems: problems.into_values().collect(),
        scanned_files,
        generation: old.generation + 1,
    }
}

/// Pick one definition per name; the others get a duplicate-name error.
fn resolve_names(
    files: &BTreeMap<PathBuf, FileRecord>,
    old: &Snapshot,
    problems: &mut BTreeMap<PathBuf, Problem>,
) -> BTreeMap<AgentId, Arc<AgentDefinition>> {
    let mut by_name: BTreeMap<AgentId, Vec<&Arc<AgentDefinition>>> = BTreeMap::new();
    for record in files.values() {
        let candidate = match &record.outcome {
            Ok(def) => Some(def),
            Err(_) => record.last_good.as_ref(),
        };
        if let Some(def) = candidate {
            by_name.entry(def.name.clone()).or_default().push(def);
        }
    }
    let mut winners = BTreeMap::new();
    for (name, candidates) in by_name {
        let previous_file = old.active.get(&name).map(|def| def.file.as_path());
        // The holder keeps its name; on a fresh load the file that existed first (oldest
        // change time, then path order) does, so a copy made to start a new agent never
        // takes the original out of the pool.
        let winner_index = candidates
            .iter()
            .position(|def| Some(def.file.as_path()) == previous_file)
            .unwrap_or_else(|| oldest(&candidates));
        let winner = candidates[winner_index];
        for (index, loser) in candidates.iter().enumerate() {
            if index == winner_index {
                continue;
            }
            let problem = problems
                .entry(loser.file.clone())
                .or_insert_with(|| Problem::new(&loser.file, Some(name.clone())));
            if problem.errors.is_empty() {
                problem.warnings.clone_from(&loser.warnings);
            }
            problem.errors.push(AgentError::DuplicateName {
                file: loser.file.clone(),
                line: loser.line_of("name"),
                name: name.clone(),
                other_file: winner.file.clone(),
                other_line: winner.line_of("name"),
            });
        }
        if let Some(problem) = problems.get_mut(&winner.file) {
            problem.last_good_active = true;
        }
        winners.insert(name, Arc::clone(winner));
    }
    winners
}

/// Index of the candidate whose file was changed longest ago (the first on a tie or when
/// times cannot be read).
fn oldest(candidates: &[&Arc<AgentDefinition>]) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let changed = |def: &Arc<AgentDefinition>| {
        std::fs::metadata(&def.file).map_or((i64::MAX, i64::MAX), |m| (m.ctime(), m.ctime_nsec()))
    };
    (0..candidates.len()).min_by_key(|&i| (changed(candidates[i]), i)).unwrap_or(0)
}

/// Add warnings that depend on the whole pool; keep the old `Arc` when nothing changed.
fn with_pool_warnings(
    winners: BTreeMap<AgentId, Arc<AgentDefinition>>,
    old: &Snapshot,
) -> BTreeMap<AgentId, Arc<AgentDefinition>> {
    let names: HashSet<AgentId> = winners.keys().cloned().collect();
    winners
        .into_iter()
        .map(|(name, def)| {
            let def = match &def.fallback {
                Some(fallback) if !names.contains(fallback) => {
                    let mut warned = AgentDefinition::clone(&def);
                    let line = warned.line_of("fallback");
                    warned.warnings.push(Warning::new(
                        &warned.file,
                        line,
                        Some("fallback"),
                        format!("`{fallback}` is not an agent in this pool"),
                    ));
                    warned.warnings.sort_by_key(|warning| warning.line);
                    Arc::new(warned)
                }
                _ => def,
            };
            let def = match old.active.get(&name) {
                Some(previous) if Arc::ptr_eq(previous, &def) || **previous == *def => {
                    Arc::clone(previous)
                }
                _ => def,
            };
            (name, def)
        })
        .collect()
}

/// What changed between two snapshots, as events: removed, added, updated, invalid.
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();
    for (name, def) in &old.active {
        if !new.active.contains_key(name) {
            events.push(Event::AgentRemoved { agent: name.clone(), file: def.file.clone() });
        }
    }
    let had_problem: HashSet<&Path> = old.problems.iter().map(|p| p.file.as_path()).collect();
    let has_problem: HashSet<&Path> = new.problems.iter().map(|p| p.file.as_path()).collect();
    for (name, def) in &new.active {
        match old.active.get(name) {
            None => events.push(Event::AgentAdded(def.summary())),
            Some(previous) => {
                let changed = !Arc::ptr_eq(previous, def) && **previous != **def;
                let fixed = had_problem.contains(def.file.as_path())
                    && !has_problem.contains(def.file.as_path());
                if changed || fixed {
                    events.push(Event::AgentUpdated(def.summary()));
                }
            }
        }
    }
    let active_files: HashSet<&Path> = new.active.values().map(|d| d.file.as_path()).collect();
    for file in had_problem.difference(&has_problem) {
        if !active_files.contains(file) {
            events.push(Event::AgentFileCleared { file: file.to_path_buf() });
        }
    }
    for problem in &new.problems {
        let seen =
            old.problems.iter().any(|p| p.file == problem.file && p.errors == problem.errors);
        if !seen {
            events.push(problem.to_event());
        }
    }
    events
}

/// `dir` without `.` components, so messages read `agentpool/x.md`, not `./agentpool/x.md`.
pub fn tidy_path(dir: &Path) -> PathBuf {
    let tidy: PathBuf = dir.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    if tidy.as_os_str().is_empty() { PathBuf::from(".") } else { tidy }
}

/// What a reload changed, for its audit record: the agents added, updated and removed, and
/// the files that became invalid or were cleared.
pub(crate) fn summary(events: &[Event]) -> serde_json::Value {
    let mut summary = serde_json::Map::new();
    for event in events {
        let (kind, name) = match event {
            Event::AgentAdded(agent) => ("added", agent.agent.to_string()),
            Event::AgentUpdated(agent) => ("updated", agent.agent.to_string()),
            Event::AgentRemoved { agent, .. } => ("removed", agent.to_string()),
            Event::AgentInvalid { file, .. } => ("invalid", file.display().to_string()),
            Event::AgentFileCleared { file } => ("cleared", file.display().to_string()),
            _ => continue,
        };
        if let serde_json::Value::Array(list) =
            summary.entry(kind).or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            list.push(serde_json::Value::String(name));
        }
    }
    serde_json::Value::Object(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tiers_from_folders() {
        let dir = Path::new("pool");
        assert_eq!(folder_tier(dir, Path::new("pool/tier1-core/a.md")), Some(1));
        assert_eq!(folder_tier(dir, Path::new("pool/tier3-experimental/x/a.md")), Some(3));
        assert_eq!(folder_tier(dir, Path::new("pool/tier2/a.md")), Some(2));
        assert_eq!(folder_tier(dir, Path::new("pool/tier4/a.md")), None);
        assert_eq!(folder_tier(dir, Path::new("pool/tiers/a.md")), None);
        assert_eq!(folder_tier(dir, Path::new("pool/a.md")), None);
        // The pool's own location does not count.
        assert_eq!(folder_tier(Path::new("tier1/pool"), Path::new("tier1/pool/a.md")), None);
    }

    #[test]
    fn tidy_paths() {
        assert_eq!(tidy_path(Path::new("./agentpool")), PathBuf::from("agentpool"));
        assert_eq!(tidy_path(Path::new(".")), PathBuf::from("."));
        assert_eq!(tidy_path(Path::new("/a/./b")), PathBuf::from("/a/b"));
    }
}
