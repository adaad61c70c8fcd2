//! Wires the parts together: registry (and its watcher), pool, breakers, executors,
//! approvals, audit log, gate, run store and engine. The console and `flightdeck run` both
//! drive a [`Runtime`]: they read its event stream and send it commands, which pass the gate
//! before anything changes. The runtime never touches the terminal.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agents::{AgentError, AgentWatcher, Registry, watch_gated};
use crate::audit::{AuditError, AuditLog};
use crate::bus::{EventBus, now_ms};
use crate::command::{Command, Request};
use crate::config::Settings;
use crate::conflict::ConflictChoice;
use crate::engine::Resumed;
use crate::engine::{Engine, EngineError, EngineParts, RunHandle};
use crate::event::{Envelope, Event, Level, RunStatus};
use crate::governance::{
    Approvals, Channel, Denied, Gate, GovernanceError, Identity, PendingApproval, Permit,
    Provenance, run_of,
};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
use crate::learning::{History, LearningSettings};
use crate::model::{OutputKeep, RunModel};
use crate::pool::{Pool, PoolConfig, PoolError};
use crate::redact::Redactor;
use crate::resilience::BreakerBoard;
use crate::resume::{ResumePoint, StoredError, StoredWorkflow, kill_leftovers};
use crate::store::RunState;
use crate::store::{
    OwnerError, PruneRule, RUNS_FILE, RunLock, RunRow, RunStore, SeqBlocks, StoreError,
    StoreWriter, spawn_paced_writer,
};
use crate::workflow::{Plan, PlanOverrides, ProblemKind, Workflow, WorkflowError, plan_owned};

pub use crate::audit::AUDIT_FILE;

/// How long [`Runtime::shutdown`] waits for cancelled runs to stop their work.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// How long `resume` keeps trying to take over a run whose lock is held.
const TAKE_OVER_PATIENCE: Duration = Duration::from_millis(500);

/// Errors starting the runtime or carrying out a command.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}: cannot create the data folder: {source}", path.display())]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("Runtime::start must be called inside a tokio runtime")]
    NoTokio,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A run's lock could not be taken (an id that exists, or a live owner).
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error(transparent)]
    Redact(#[from] crate::redact::PatternError),
    #[error("cannot watch the agent pool: {0}")]
    Watch(AgentError),
    /// The gate refused the command.
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// The governing flightdeck.yaml did not load on a settings reload.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    #[error("agent `{0}` is not in the agent pool")]
    UnknownAgent(AgentId),
    #[error(transparent)]
    Conflict(#[from] crate::conflict::ConflictError),
    #[error("instance {0} was not spawned by an operator; a task holds it")]
    NotSpawned(InstanceId),
    /// `resume` named no stored run, or several.
    #[error("{0}")]
    NoSuchRun(String),
    /// The run exists but cannot be resumed (finished, or never started).
    #[error("run {run} cannot be resumed: {why}")]
    NotResumable { run: RunId, why: String },
    #[error(transparent)]
    Stored(#[from] StoredError),
}

/// What [`Runtime::start`] needs.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Holds `agentpool/`, `workflows/`; relative workflow paths resolve against it.
    pub project_dir: PathBuf,
    /// Where `runs.db` and `audit.jsonl` live; created when missing.
    pub data_dir: PathBuf,
    pub settings: Settings,
    /// Reload agent definitions when their files change (the console); off for headless runs.
    pub watch_agents: bool,
}

struct Inner {
    project_dir: PathBuf,
    data_dir: PathBuf,
    settings: Arc<Settings>,
    bus: EventBus,
    registry: Registry,
    pool: Pool,
    breakers: BreakerBoard,
    approvals: Approvals,
    gate: Gate,
    engine: Engine,
    /// A reading connection of the run store (the writer thread owns its own).
    reader: Mutex<RunStore>,
    /// What opening the audit log found that a person should hear of (torn tail, gap).
    audit_warnings: Vec<String>,
    /// The settings the gate and the approvals govern by: the start's, then each reload's.
    governing: Mutex<Settings>,
    /// Instances acquired by `SpawnInstance`, released by `ReleaseInstance`.
    spawned: Mutex<HashSet<InstanceId>>,
    /// The locks of the runs this process owns, held while the engine knows the run (a
    /// finished run can still be retried) and released at shutdown or when the process dies.
    owned: Mutex<Vec<RunLock>>,
}

/// The running system. Cheap handles to it: [`Runtime::bus`], [`Runtime::command_sender`].
pub struct Runtime {
    inner: Arc<Inner>,
    writer: StoreWriter,
    watcher: Option<AgentWatcher>,
    background: Vec<JoinHandle<()>>,
}

impl Runtime {
    /// Build every part. Must be called inside a tokio runtime.
    pub fn start(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        tokio::runtime::Handle::try_current().map_err(|_| RuntimeError::NoTokio)?;
        let RuntimeOptions { project_dir, data_dir, settings, watch_agents } = options;
        std::fs::create_dir_all(&data_dir)
            .map_err(|source| RuntimeError::DataDir { path: data_dir.clone(), source })?;
        crate::host::record_project(&data_dir, &project_dir);
        let settings = Arc::new(settings);
        // The store first, so its sink sees every event from here on, and the bus numbers
        // from blocks the store reserves for this process alone, so `seq` never repeats nor
        // goes back, whatever processes share the data dir.
        let mut store = RunStore::open(data_dir.join(RUNS_FILE))?;
        store.record_simulated_outcomes(settings.limits.learn_from_sim);
        let reader = RunStore::open(data_dir.join(RUNS_FILE))?;
        sweep_orphans(&data_dir, &reader);
        let (first, seqs) = SeqBlocks::start(RunStore::open(data_dir.join(RUNS_FILE))?)?;
        let bus = EventBus::numbered_by(first, Box::new(seqs));
        // Before anything is published: no event, stored or shown, ever holds a secret.
        bus.set_redactor(Redactor::from_settings(&settings, |name| std::env::var(name).ok())?);
        // Paced: a run waits for the store when it is far behind instead of queueing every
        // event of a 100,000-task run in memory.
        let (events, backlog) = bus.paced_run_sink();
        let writer = spawn_paced_writer(store, events, Some(backlog))?;

        let registry = Registry::load(&project_dir.join("agentpool"));
        let pool = Pool::new(PoolConfig::from(&settings.limits), bus.clone());
        let breakers = BreakerBoard::new(settings.breakers.clone(), bus.clone());
        let approvals = Approvals::with_policy(bus.clone(), (&settings.policies).into());
        let anchor = RunStore::open(data_dir.join(RUNS_FILE))?;
        let audit = AuditLog::open_anchored(data_dir.join(AUDIT_FILE), Box::new(anchor))?;
        let audit_warnings = audit.warnings();
        for warning in &audit_warnings {
            tracing::warn!(%warning, "audit log");
        }
        let gate = Gate::new(&settings, audit.clone(), bus.clone());
        let watcher = if watch_agents {
            let watcher = watch_gated(registry.clone(), bus.clone(), gate.clone());
            Some(watcher.map_err(RuntimeError::Watch)?)
        } else {
            None
        };
        let engine = Engine::new(EngineParts {
            bus: bus.clone(),
            registry: registry.clone(),
            pool: pool.clone(),
            breakers: breakers.clone(),
            approvals: approvals.clone(),
            settings: Arc::clone(&settings),
            project_dir: project_dir.clone(),
            data_dir: data_dir.clone(),
        });
        engine.audit_to(audit);
        let background = vec![pool.spawn_reaper(), breakers.spawn_ticker()];
        Ok(Self {
            inner: Arc::new(Inner {
                governing: Mutex::new(Settings::clone(&settings)),
                project_dir,
                data_dir,
                settings,
                bus,
                registry,
                pool,
                breakers,
                approvals,
                gate,
                engine,
                reader: Mutex::new(reader),
                audit_warnings,
                spawned: Mutex::new(HashSet::new()),
                owned: Mutex::new(Vec::new()),
            }),
            writer,
            watcher,
            background,
        })
    }

    /// The event stream: `subscribe()` for views, `sink()` for lossless consumers.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The active agent definitions, sorted by name. The registry itself is not public:
    /// it changes only through the gate (`reload_agents`, or a hot reload by the system).
    pub fn agents(&self) -> Vec<Arc<crate::agents::AgentDefinition>> {
        self.inner.registry.definitions()
    }

    /// Ids of the runs of this runtime that have not finished, oldest first.
    pub fn active_run_ids(&self) -> Vec<RunId> {
        self.inner.engine.active_runs().iter().map(|run| run.id().clone()).collect()
    }

    /// Ids of the runs this runtime knows (running, or finished a while ago), oldest first.
    /// The engine itself is not public: every change goes through [`Runtime::submit`] and
    /// the gate.
    pub fn run_ids(&self) -> Vec<RunId> {
        self.inner.engine.runs().iter().map(|run| run.id().clone()).collect()
    }

    /// What opening the audit log found (a torn last record moved aside, records missing
    /// against the run store's anchor), one sentence each; front ends say these on stderr or
    /// on screen. Normally empty.
    pub fn audit_warnings(&self) -> &[String] {
        &self.inner.audit_warnings
    }

    pub fn project_dir(&self) -> &Path {
        &self.inner.project_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Current state for a view that starts late or lagged: the stored events (with their
    /// real `seq`) of every run in progress and of the latest run even when it has finished,
    /// then the state of the registry, pool and breakers as synthetic events with `seq` 0 and
    /// no run id.
    pub fn backlog(&self) -> Vec<Arc<Envelope>> {
        let inner = &self.inner;
        let mut backlog = Vec::new();
        {
            let reader = inner.reader.lock().unwrap_or_else(PoisonError::into_inner);
            let runs = inner.engine.runs();
            let latest = runs.last().map(|r| r.id().clone());
            let shown = runs.iter().filter(|r| !r.is_finished() || Some(r.id()) == latest.as_ref());
            for run in shown {
                match reader.events(run.id()) {
                    Ok(events) => backlog.extend(events.into_iter().map(Arc::new)),
                    Err(error) => {
                        tracing::warn!(run = %run.id(), %error, "backlog: cannot read the run");
                    }
                }
            }
        }
        let ts_ms = now_ms();
        let state = inner
            .registry
            .backlog_events()
            .into_iter()
            .chain(inner.pool.backlog_events())
            .chain(inner.breakers.backlog_events());
        backlog
            .extend(state.map(|event| Arc::new(Envelope { seq: 0, ts_ms, run_id: None, event })));
        backlog
    }

    /// Check a request at the gate, then carry it out. A workflow that does not plan is
    /// announced with a `Notice` and returned as the error.
    pub async fn submit(&self, request: Request) -> Result<(), RuntimeError> {
        submit(&self.inner, request).await.map(|_| ())
    }

    /// [`Runtime::submit`] for a caller whose identity was established as `provenance`
    /// says (a control-socket peer): the gate's audit record carries it.
    pub async fn submit_from(
        &self,
        request: Request,
        provenance: &Provenance,
    ) -> Result<Option<RunId>, RuntimeError> {
        submit_from(&self.inner, request, provenance).await
    }

    /// The identity `caller` acts as (its own, or a lower `claimed` one), through the gate.
    pub fn assume(&self, caller: &Provenance, claimed: Option<&str>) -> Result<Identity, Denied> {
        self.inner.gate.assume(caller, claimed)
    }

    /// The host's settings watcher saw the governing flightdeck.yaml in `dir` change: a
    /// `reload_settings` by the system user, through the gate, when what governs changed.
    /// Returns what changed (empty: nothing to do). A file that does not load changes
    /// nothing and is said as a notice.
    pub(crate) fn reload_settings_from(&self, dir: &Path) -> Result<Vec<String>, RuntimeError> {
        let new = match load_governing(&self.inner, dir) {
            Ok(new) => new,
            Err(error) => {
                tracing::warn!(%error, "settings not reloaded; the last good ones stay");
                return Ok(Vec::new());
            }
        };
        let governing = self.inner.governing.lock().unwrap_or_else(PoisonError::into_inner);
        let unchanged = crate::host::settings_changes(&governing, &new).is_empty();
        drop(governing);
        if unchanged {
            return Ok(Vec::new());
        }
        let why = "flightdeck.yaml changed on disk";
        let permit = self.inner.gate.system(Command::ReloadSettings, why)?;
        let result = Ok(apply_settings(&self.inner, dir, new));
        finish(&self.inner, permit, result, |changed| settings_did(dir, changed))
    }

    /// The audit log the gate writes.
    pub fn audit_log(&self) -> &crate::audit::AuditLog {
        self.inner.gate.audit()
    }

    /// What waits for a reviewer, oldest first.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        self.inner.approvals.pending()
    }

    /// Delete finished runs from the run store as `user`, through the gate (as `PruneRuns`);
    /// returns the runs deleted and how many events went with them.
    pub async fn prune_runs(
        &self,
        user: &str,
        rule: PruneRule,
    ) -> Result<(Vec<RunRow>, u64), RuntimeError> {
        let command = Command::PruneRuns { keep: rule.keep, before_ms: rule.before_ms };
        let permit = self.inner.gate.check(&Request { user: UserId::new(user), command })?;
        let pruned = prune_runs(&self.inner, rule).await;
        finish(&self.inner, permit, pruned, |(runs, events)| {
            let ids: Vec<&RunId> = runs.iter().map(|row| &row.run_id).collect();
            json!({ "pruned": ids, "events": events })
        })
    }

    /// Read and plan a workflow without running it. Relative paths resolve against the
    /// project folder.
    pub fn plan(&self, workflow: &Path, overrides: &PlanOverrides) -> Result<Plan, RuntimeError> {
        plan_file(&self.inner, workflow, overrides)
    }

    /// Start an already planned workflow as `user`, through the gate (as `StartRun`).
    pub fn start_planned(&self, user: &str, plan: Plan) -> Result<RunHandle, RuntimeError> {
        let request = Request {
            user: UserId::new(user),
            command: Command::StartRun {
                workflow: plan.file.clone(),
                backend: plan.backend_override.clone(),
                max_parallel: Some(plan.max_parallel),
            },
        };
        // The id is made first, so the gate's decision belongs to the run it starts.
        let run = RunId::generate();
        let permit = self.inner.gate.check_for_run(&request, Some(&run))?;
        self.inner.approvals.record_starter(&run, permit.user());
        let started = start_owned(&self.inner, run, plan, &permit);
        finish(&self.inner, permit, started, |handle| json!({ "started": handle.id() }))
    }

    /// Go on with an interrupted run as `user`, through the gate (as `ResumeRun`): `run` is
    /// an id, a unique start of one, or `last`. Refused while the run's owner is alive
    /// ([`OwnerError::Owned`], naming its pid) and for a finished run.
    pub fn resume_run(
        &self,
        user: &str,
        run: &str,
        backend: Option<String>,
    ) -> Result<RunHandle, RuntimeError> {
        let run = resolve_run(&self.inner, run)?;
        let command = Command::ResumeRun { run: run.clone(), backend: backend.clone() };
        let request = Request { user: UserId::new(user), command };
        let permit = self.inner.gate.check_for_run(&request, Some(&run))?;
        let resumed = resume_owned(&self.inner, run, backend, &permit);
        finish(&self.inner, permit, resumed, |handle| json!({ "resumed": handle.id() }))
    }

    /// A channel for one user's commands. Each is submitted in order; an error becomes a
    /// `Notice` event (a refusal is already announced by the gate as `CommandDenied`).
    pub fn command_sender(&self, user: String) -> mpsc::UnboundedSender<Command> {
        let (sender, mut commands) = mpsc::unbounded_channel::<Command>();
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                let request = Request { user: UserId::new(user.clone()), command };
                match submit(&inner, request).await {
                    Ok(_) | Err(RuntimeError::Denied(_) | RuntimeError::Workflow(_)) => {}
                    Err(error) => notice(&inner.bus, None, Level::Error, error.to_string()),
                }
            }
        });
        sender
    }

    /// Reject a task waiting for approval when no reviewer can answer (headless runs): a
    /// `reject` by [`SYSTEM_USER`](crate::governance::SYSTEM_USER) with `note` as the reason, through the gate and audited
    /// like a reviewer's.
    pub fn refuse_unattended(
        &self,
        run: &RunId,
        task: &TaskId,
        note: &str,
    ) -> Result<(), RuntimeError> {
        let command =
            Command::Reject { run: run.clone(), task: task.clone(), note: Some(note.to_owned()) };
        let permit = self.inner.gate.system(command, "a headless run: no reviewer can answer")?;
        let decided = self
            .inner
            .approvals
            .decide(run, task, false, permit.user(), Some(note.to_owned()))
            .map_err(RuntimeError::from);
        finish(&self.inner, permit, decided, |()| json!({ "rejected": task }))
    }

    /// Conflicts waiting for a person, across runs (the console's Conflicts pane).
    pub fn open_conflicts(&self) -> Vec<crate::conflict::OpenConflict> {
        self.inner.engine.conflicts().open()
    }

    /// Settle a conflict no person can see (headless runs): a `resolve_conflict` by
    /// [`SYSTEM_USER`](crate::governance::SYSTEM_USER) through the gate, taking the ladder's recommendation when
    /// `take_recommendation`, else failing the panel task with a message naming every member
    /// and its decision.
    pub fn settle_unattended(
        &self,
        run: &RunId,
        task: &TaskId,
        take_recommendation: bool,
    ) -> Result<(), RuntimeError> {
        let conflicts = self.inner.engine.conflicts();
        let (choice, why) = if take_recommendation {
            let why = "headless run: --decide recommend took the ladder's recommendation";
            (ConflictChoice::Recommended, why)
        } else {
            let sides = conflicts.get(run, task).map_or_else(String::new, |open| {
                open.verdicts
                    .iter()
                    .map(|v| format!("{} chose \"{}\"", v.agent, v.verdict.decision))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let reason = format!(
                "conflict needs a person: {sides}; no one can decide in a headless run (pass \
                 --decide recommend to take the ladder's recommendation, or run it from the \
                 console)"
            );
            (ConflictChoice::Refused(reason), "headless run: no one can decide a conflict")
        };
        let command =
            Command::ResolveConflict { run: run.clone(), task: task.clone(), choice, note: None };
        let permit = self.inner.gate.system(command, why)?;
        let settled = match permit.command() {
            Command::ResolveConflict { choice, .. } => conflicts
                .resolve(run, task, choice, permit.user(), Some(why.to_owned()))
                .map_err(RuntimeError::from),
            _ => Ok(()),
        };
        finish(&self.inner, permit, settled, |()| json!({ "settled": task }))
    }

    /// Cancel a run of this runtime on Flightdeck's own behalf (a headless run's Ctrl-C or
    /// SIGTERM, said in `why`): a `cancel_run` by [`SYSTEM_USER`](crate::governance::SYSTEM_USER) through the gate.
    pub async fn interrupt(&self, run: &RunId, why: &str) -> Result<(), RuntimeError> {
        interrupt(&self.inner, run, why).await
    }

    /// Wait for a run to finish. `None` when this runtime does not know the run (any more).
    pub async fn wait_run(&self, run: &RunId) -> Option<RunStatus> {
        Some(self.inner.engine.run(run)?.wait().await)
    }

    /// Cancel active runs (each a `cancel_run` by [`SYSTEM_USER`](crate::governance::SYSTEM_USER) through the gate), wait
    /// (up to 10 s) for their work to stop, and flush the store. A cancel the gate refuses
    /// (the audit log cannot be written) is logged; the run is left as it is, interrupted
    /// and resumable.
    pub async fn shutdown(self) {
        let active = self.inner.engine.active_runs();
        for run in &active {
            let why = "shutting down: the process that hosts the run is exiting";
            if let Err(error) = interrupt(&self.inner, run.id(), why).await {
                tracing::warn!(run = %run.id(), %error, "shutdown: run not cancelled");
            }
        }
        for run in &active {
            if tokio::time::timeout(SHUTDOWN_WAIT, run.wait()).await.is_err() {
                tracing::warn!(run = %run.id(), "shutdown: run did not stop in time");
            }
        }
        self.inner.engine.forget_runs();
        for task in &self.background {
            task.abort();
        }
        drop(self.watcher);
        if let Err(error) = self.writer.close().await {
            tracing::error!(%error, "shutdown: the run store could not be flushed");
        }
        // Only now, with every `RunFinished` committed, may another process see them free.
        self.inner.owned.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Wait until every event published so far is in the run store.
    pub async fn flush(&self) -> Result<(), RuntimeError> {
        Ok(self.writer.flush().await?)
    }
}

/// Agents of a run that died before its start was stored cannot be resumed, so nothing
/// else would ever stop them: kill them now. A store that cannot be read is logged.
fn sweep_orphans(data_dir: &Path, reader: &RunStore) {
    match reader.runs_uncounted() {
        Ok(rows) => {
            let stored: HashSet<RunId> = rows.into_iter().map(|row| row.run_id).collect();
            let killed = crate::resume::sweep_unstored(data_dir, |run| stored.contains(run));
            if killed > 0 {
                tracing::warn!(killed, "killed agents of runs that died before they were stored");
            }
        }
        Err(error) => tracing::warn!(%error, "leftover agents of unstored runs not swept"),
    }
}

fn notice(bus: &EventBus, run: Option<&RunId>, level: Level, message: String) {
    bus.publish(run, Event::Notice { level, message });
}

/// Start a run under a fresh id (from [`RunId::generate`]) that this process owns: the id's
/// lock file is created and held first (an id whose file or stored row exists is refused,
/// never merged), then the engine starts. Locks of runs the engine has forgotten are
/// released on the way.
fn start_owned(
    inner: &Inner,
    run: RunId,
    plan: Plan,
    permit: &Permit,
) -> Result<RunHandle, RuntimeError> {
    let lock = RunLock::claim_new(&inner.data_dir, &run)?;
    let stored = inner.reader.lock().unwrap_or_else(PoisonError::into_inner).has_run(&run);
    if !matches!(stored, Ok(false)) {
        let path = lock.path().to_owned();
        lock.discard();
        stored?;
        return Err(OwnerError::Exists { run, path }.into());
    }
    // The workflow as it is now, before the run's first event: what a resume plans from.
    match StoredWorkflow::capture(
        &plan.file,
        plan.backend_override.clone(),
        Some(plan.max_parallel),
    ) {
        Ok(stored) => {
            if let Err(error) = stored.save(&inner.data_dir, &run) {
                lock.discard();
                return Err(error.into());
            }
        }
        Err(error) => {
            tracing::warn!(%run, file = %plan.file.display(), %error,
                "workflow not stored: the run cannot be resumed from it");
        }
    }
    let handle = match inner.engine.start_as(run, plan, permit) {
        Ok(handle) => handle,
        Err(error) => {
            lock.discard();
            return Err(error.into());
        }
    };
    let mut owned = inner.owned.lock().unwrap_or_else(PoisonError::into_inner);
    owned.retain(|lock| inner.engine.run(lock.run()).is_some());
    owned.push(lock);
    Ok(handle)
}

/// `last` (the newest run), an exact id, or a unique start of one, among the stored runs.
fn resolve_run(inner: &Inner, wanted: &str) -> Result<RunId, RuntimeError> {
    let runs = inner.reader.lock().unwrap_or_else(PoisonError::into_inner).runs_uncounted()?;
    let path = inner.data_dir.join(RUNS_FILE);
    if wanted == "last" {
        return runs
            .first()
            .map(|r| r.run_id.clone())
            .ok_or_else(|| RuntimeError::NoSuchRun(format!("no runs yet in {}", path.display())));
    }
    if let Some(row) = runs.iter().find(|r| r.run_id.as_str() == wanted) {
        return Ok(row.run_id.clone());
    }
    let matching: Vec<&RunId> =
        runs.iter().map(|r| &r.run_id).filter(|id| id.as_str().starts_with(wanted)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(RuntimeError::NoSuchRun(format!(
            "no run `{wanted}` in {} (`flightdeck runs list` shows them)",
            path.display()
        ))),
        several => {
            let ids: Vec<&str> = several.iter().take(5).map(|id| id.as_str()).collect();
            Err(RuntimeError::NoSuchRun(format!(
                "`{wanted}` matches {} runs: {}",
                several.len(),
                ids.join(", ")
            )))
        }
    }
}

/// Take over an interrupted run and go on with it: its owner's lock first (refused while
/// the owner lives), then its stored events folded by [`RunModel`], its leftover agent
/// processes killed, its stored workflow planned again with each task pinned to what the
/// run started with, and the engine resumed from there.
fn resume_owned(
    inner: &Inner,
    run: RunId,
    backend: Option<String>,
    permit: &Permit,
) -> Result<RunHandle, RuntimeError> {
    if inner.engine.run(&run).is_some() {
        let why = "this process is running it".to_owned();
        return Err(RuntimeError::NotResumable { run, why });
    }
    let lock = take_over(&inner.data_dir, &run)?;
    let (row, model) = {
        let reader = inner.reader.lock().unwrap_or_else(PoisonError::into_inner);
        // Uncounted: the fold below counts, and counting would decode every event twice.
        let row = reader.runs_uncounted()?.into_iter().find(|row| row.run_id == run);
        (row, reader.fold_run(&run, OutputKeep::None)?)
    };
    let Some(row) = row else {
        let why = "it is not in the run store".to_owned();
        return Err(RuntimeError::NotResumable { run, why });
    };
    if matches!(row.state, RunState::Succeeded | RunState::Failed | RunState::Cancelled) {
        let why = format!(
            "it finished ({}); `flightdeck runs show {run}` has its outcome, and the console \
             can retry its tasks",
            row.state
        );
        return Err(RuntimeError::NotResumable { run, why });
    }
    if !model.is_started() {
        let why = "its run_started event is not stored".to_owned();
        return Err(RuntimeError::NotResumable { run, why });
    }
    // Separation of duties outlives the process: the starter recorded with the run still
    // may not approve its tasks.
    if let Some(starter) = &model.started_by {
        inner.approvals.record_starter(&run, starter);
    }
    let point = ResumePoint::from_model(&model);
    let killed_processes = kill_leftovers(&run);
    let (plan, workflow_changed) = plan_stored(inner, &run, &model, backend)?;
    let resumed = Resumed { workflow_changed, killed_processes };
    let handle = inner.engine.resume_as(run, plan, &point, resumed, permit)?;
    let mut owned = inner.owned.lock().unwrap_or_else(PoisonError::into_inner);
    owned.retain(|lock| inner.engine.run(lock.run()).is_some());
    owned.push(lock);
    Ok(handle)
}

/// [`RunLock::take_over`], tried again for a moment while it is refused: a lock can outlive
/// its dead owner by the instant a child it forked needs to exec or exit, and a probe by
/// `runs list` holds it for microseconds. A live owner is still refused after that.
fn take_over(data_dir: &Path, run: &RunId) -> Result<RunLock, OwnerError> {
    let began = std::time::Instant::now();
    loop {
        match RunLock::take_over(data_dir, run) {
            Err(OwnerError::Owned { .. }) if began.elapsed() < TAKE_OVER_PATIENCE => {
                std::thread::sleep(Duration::from_millis(20));
            }
            taken => return taken,
        }
    }
}

/// The plan of a resumed run: its stored workflow (or, for a run started before workflows
/// were stored, the file as it is now), with every task pinned to the agent, timeout and
/// retries its `RunStarted` recorded, so learning or an edited agent pool changes nothing.
/// Returns whether the workflow file changed since the run started.
fn plan_stored(
    inner: &Inner,
    run: &RunId,
    model: &RunModel,
    backend: Option<String>,
) -> Result<(Plan, bool), RuntimeError> {
    let (mut workflow, overrides, changed) = if let Some(stored) =
        StoredWorkflow::load(&inner.data_dir, run)?
    {
        let changed = stored.file_changed();
        let workflow = Workflow::parse_for(&stored.source, &stored.file, Some(&inner.registry))?;
        let overrides = PlanOverrides {
            backend: backend.or(stored.backend),
            max_parallel: stored.max_parallel,
        };
        (workflow, overrides, changed)
    } else {
        tracing::warn!(%run, "no stored workflow: planning the resumed run from its file");
        let workflow = Workflow::load_for(&model.file, Some(&inner.registry))?;
        let overrides = PlanOverrides { backend, max_parallel: Some(model.max_parallel) };
        (workflow, overrides, false)
    };
    for task in &mut workflow.tasks {
        if let Some(stored) = model.task(&task.id) {
            task.agent = Some(stored.planned.agent.clone());
            task.timeout = Some(Duration::from_millis(stored.planned.timeout_ms));
            task.timeout_auto = false;
            task.retries = Some(stored.planned.retries);
        }
    }
    let history = learned_history(inner);
    let plan = plan_owned(workflow, &inner.registry, &inner.settings, &overrides, &history)?;
    let planned: HashSet<&TaskId> = plan.steps.iter().map(|step| &step.id).collect();
    let missing: Vec<&str> = model
        .tasks
        .iter()
        .map(|task| task.id())
        .filter(|id| !planned.contains(id))
        .map(TaskId::as_str)
        .take(5)
        .collect();
    if !missing.is_empty() || plan.steps.len() != model.tasks.len() {
        let why = format!(
            "its stored workflow no longer plans the tasks it started with ({} planned, {} \
             stored; missing: {})",
            plan.steps.len(),
            model.tasks.len(),
            missing.join(", ")
        );
        return Err(RuntimeError::NotResumable { run: run.clone(), why });
    }
    Ok((plan, changed))
}

fn plan_file(
    inner: &Inner,
    workflow: &Path,
    overrides: &PlanOverrides,
) -> Result<Plan, RuntimeError> {
    let file =
        if workflow.is_absolute() { workflow.to_owned() } else { inner.project_dir.join(workflow) };
    let workflow = Workflow::load_for(&file, Some(&inner.registry))?;
    crate::allocator::give_back_freed_memory();
    let history = learned_history(inner);
    let plan = plan_owned(workflow, &inner.registry, &inner.settings, overrides, &history)
        .map_err(|error| backends_added_since_start(inner, error))?;
    // What parsing held is free now, just before the run grows (`allocator` says why).
    crate::allocator::give_back_freed_memory();
    Ok(plan)
}

/// A plan refused for a backend the host's settings do not define, though the project's
/// flightdeck.yaml defines it now (added while the host runs; backends apply from its next
/// start): the problem says so, instead of only "not defined".
fn backends_added_since_start(inner: &Inner, mut error: WorkflowError) -> WorkflowError {
    let WorkflowError::Invalid { problems, .. } = &mut error else { return error };
    let mut now: Option<Option<Settings>> = None;
    for problem in problems {
        if let ProblemKind::UnknownBackend { backend, added_since_start, .. } = &mut problem.kind {
            let now = now.get_or_insert_with(|| Settings::load(&inner.project_dir).ok());
            *added_since_start =
                now.as_ref().is_some_and(|settings| settings.backends.contains_key(backend));
        }
    }
    error
}

/// What the run store learned from finished attempts. A store that cannot be read plans
/// without history rather than refusing the run (the failure is logged).
fn learned_history(inner: &Inner) -> History {
    let settings = LearningSettings::from(&inner.settings.limits);
    let store = inner.reader.lock().unwrap_or_else(PoisonError::into_inner);
    History::load(&store, settings, now_ms()).unwrap_or_else(|error| {
        tracing::warn!(%error, "learning: outcomes not read; planning without history");
        History::empty(settings)
    })
}

async fn submit(inner: &Arc<Inner>, request: Request) -> Result<Option<RunId>, RuntimeError> {
    submit_from(inner, request, &Provenance::local(Channel::Console)).await
}

async fn submit_from(
    inner: &Arc<Inner>,
    request: Request,
    provenance: &Provenance,
) -> Result<Option<RunId>, RuntimeError> {
    // A resume names its run as the user typed it; the gate and the audit see the full id.
    let request = match request.command {
        Command::ResumeRun { run, backend } => {
            let run = resolve_run(inner, run.as_str())
                .inspect_err(|error| notice(&inner.bus, None, Level::Error, error.to_string()))?;
            let permit = inner.gate.check_from(
                &Request {
                    user: request.user.clone(),
                    command: Command::ResumeRun { run: run.clone(), backend },
                },
                Some(&run),
                provenance,
            )?;
            return dispatch(inner, permit, None).await;
        }
        _ => request,
    };
    // A run started by this command gets its id before the gate, so the decision (accepted
    // or denied) carries the run's id like every other event the run caused.
    let new_run = matches!(request.command, Command::StartRun { .. }).then(RunId::generate);
    let run = new_run.as_ref().or_else(|| run_of(&request.command));
    let broken_rule = match &request.command {
        Command::Approve { run, task, .. } => {
            inner.approvals.separation(run, task, &request.user, &provenance.account)
        }
        _ => None,
    };
    let permit = inner.gate.check_with_rule(&request, run, provenance, broken_rule)?;
    dispatch(inner, permit, new_run).await
}

/// Carry out an accepted command, then audit what it did.
async fn dispatch(
    inner: &Arc<Inner>,
    permit: Permit,
    new_run: Option<RunId>,
) -> Result<Option<RunId>, RuntimeError> {
    let done = carry_out(inner, &permit, new_run).await;
    finish(inner, permit, done, Value::clone)
        .map(|did| did.get("run").and_then(|run| serde_json::from_value::<RunId>(run.clone()).ok()))
}

/// What the command of `permit` does; `Ok` says what happened (`run` names a run it
/// started or resumed).
async fn carry_out(
    inner: &Arc<Inner>,
    permit: &Permit,
    new_run: Option<RunId>,
) -> Result<Value, RuntimeError> {
    let engine = &inner.engine;
    let run_handle =
        |run: &RunId| engine.run(run).ok_or_else(|| EngineError::UnknownRun { run: run.clone() });
    let user = permit.user();
    let account = permit.provenance().account.as_str();
    Ok(match permit.command().clone() {
        Command::StartRun { workflow, backend, max_parallel } => {
            let overrides = PlanOverrides { backend, max_parallel };
            let plan = plan_file(inner, &workflow, &overrides).inspect_err(|error| {
                notice(&inner.bus, None, Level::Error, error.to_string());
            })?;
            let run = new_run.unwrap_or_else(RunId::generate);
            inner.approvals.record_starter(&run, user);
            let tasks = plan.steps.len();
            let handle = start_owned(inner, run, plan, permit)?;
            json!({ "run": handle.id(), "tasks": tasks })
        }
        Command::CancelRun { run } => {
            run_handle(&run)?.cancel(permit).await?;
            json!({ "cancelled": run })
        }
        Command::CancelTask { run, task } => {
            run_handle(&run)?.cancel_task(&task, permit).await?;
            json!({ "cancelled": task })
        }
        Command::RetryTask { run, task } => {
            run_handle(&run)?.retry_task(&task, permit).await?;
            json!({ "retrying": task })
        }
        Command::Approve { run, task, note } => {
            inner.approvals.decide_as(&run, &task, true, user, account, note)?;
            let waiting =
                inner.approvals.pending().into_iter().any(|p| p.run == run && p.task == task);
            json!({ "approved": task, "still_waiting": waiting })
        }
        Command::Reject { run, task, note } => {
            inner.approvals.decide(&run, &task, false, user, note)?;
            json!({ "rejected": task })
        }
        Command::ResolveConflict { run, task, choice, note } => {
            engine.conflicts().resolve(&run, &task, &choice, user, note)?;
            json!({ "resolved": task, "choice": choice })
        }
        Command::AskThirdOpinion { run, task } => {
            let agent = engine.conflicts().ask_third_opinion(&run, &task, user)?;
            json!({ "asked": agent, "task": task })
        }
        Command::ResetBreaker { agent } => {
            inner.breakers.reset(&agent, user.as_str());
            json!({ "breaker": agent, "state": "closed" })
        }
        Command::OpenBreaker { agent } => {
            inner.breakers.force_open(&agent, user.as_str());
            json!({ "breaker": agent, "state": "open" })
        }
        Command::SpawnInstance { agent } => {
            spawn_instance(inner, agent.clone())?;
            json!({ "spawning": agent })
        }
        Command::ReleaseInstance { instance } => {
            // Instances held by running tasks are released by their task, never by hand.
            let mut spawned = inner.spawned.lock().unwrap_or_else(PoisonError::into_inner);
            if !spawned.remove(&instance) {
                return Err(RuntimeError::NotSpawned(instance));
            }
            drop(spawned);
            inner.pool.release(instance)?;
            json!({ "released": instance })
        }
        Command::ReloadSettings => {
            let dir = crate::host::recorded_project(&inner.data_dir)
                .unwrap_or_else(|| inner.project_dir.clone());
            let new = load_governing(inner, &dir)?;
            let changed = apply_settings(inner, &dir, new);
            settings_did(&dir, &changed)
        }
        Command::ReloadAgents => {
            let events = inner.registry.rescan();
            let did = crate::agents::registry::summary(&events);
            for event in events {
                inner.bus.publish(None, event);
            }
            did
        }
        Command::PruneRuns { keep, before_ms } => {
            let (runs, events) = prune_runs(inner, PruneRule { keep, before_ms }).await?;
            let ids: Vec<&RunId> = runs.iter().map(|row| &row.run_id).collect();
            json!({ "pruned": ids, "events": events })
        }
        Command::ResumeRun { run, backend } => {
            let handle = resume_owned(inner, run, backend, permit)?;
            json!({ "run": handle.id(), "resumed": true })
        }
    })
}

/// The governing flightdeck.yaml in `dir`, or why it does not load (also said as a notice:
/// the last good settings stay).
fn load_governing(inner: &Inner, dir: &Path) -> Result<Settings, RuntimeError> {
    Settings::load(dir).map_err(|error| {
        let message = format!("settings not reloaded, the last good ones stay: {error}");
        inner.bus.publish(None, Event::Notice { level: Level::Error, message });
        RuntimeError::from(error)
    })
}

/// Users, roles and approval policies of `new` from now on (requests already waiting keep
/// their deadline); consoles are told what changed, which is returned.
fn apply_settings(inner: &Inner, dir: &Path, new: Settings) -> Vec<String> {
    let mut governing = inner.governing.lock().unwrap_or_else(PoisonError::into_inner);
    let changed = crate::host::settings_changes(&governing, &new);
    if changed.is_empty() {
        return changed;
    }
    inner.gate.set_roles(&new);
    inner.approvals.set_policy((&new.policies).into());
    *governing = new;
    drop(governing);
    tracing::info!(file = %dir.join(crate::config::SETTINGS_FILE).display(), changes = ?changed, "settings reloaded");
    let message = format!("settings reloaded: {}", changed.join("; "));
    inner.bus.publish(None, Event::Notice { level: Level::Info, message });
    changed
}

fn settings_did(dir: &Path, changed: &[String]) -> Value {
    json!({ "file": dir.join(crate::config::SETTINGS_FILE), "changes": changed })
}

/// Audit what became of an accepted command (`did` of its result, or its error) and pass
/// the result on.
fn finish<T>(
    inner: &Inner,
    permit: Permit,
    result: Result<T, RuntimeError>,
    did: impl FnOnce(&T) -> Value,
) -> Result<T, RuntimeError> {
    let outcome = match &result {
        Ok(value) => Ok(did(value)),
        Err(error) => Err(error.to_string()),
    };
    inner.gate.record(permit, outcome);
    result
}

/// A `cancel_run` by the system user, through the gate.
async fn interrupt(inner: &Inner, run: &RunId, why: &str) -> Result<(), RuntimeError> {
    let permit = inner.gate.system(Command::CancelRun { run: run.clone() }, why)?;
    let cancelled = match inner.engine.run(run) {
        Some(handle) => handle.cancel(&permit).await.map_err(RuntimeError::from),
        None => Err(EngineError::UnknownRun { run: run.clone() }.into()),
    };
    finish(inner, permit, cancelled, |()| json!({ "cancelled": run }))
}

/// Prune on a connection of its own, off the async threads (a large prune takes a while),
/// and say what went.
async fn prune_runs(
    inner: &Arc<Inner>,
    rule: PruneRule,
) -> Result<(Vec<RunRow>, u64), RuntimeError> {
    let path = inner.data_dir.join(RUNS_FILE);
    let pruned = tokio::task::spawn_blocking(move || RunStore::open(&path)?.prune(&rule))
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
    let message = format!("pruned {} finished runs ({} events)", pruned.0.len(), pruned.1);
    notice(&inner.bus, None, Level::Info, message);
    Ok(pruned)
}

/// Acquire an instance in the background (the pool may queue the request) and keep it
/// working until an operator releases it.
fn spawn_instance(inner: &Arc<Inner>, agent: AgentId) -> Result<(), RuntimeError> {
    let definition = inner
        .registry
        .get(agent.as_str())
        .ok_or_else(|| RuntimeError::UnknownAgent(agent.clone()))?;
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        match inner.pool.acquire(&agent, definition.max_instances, true).await {
            Ok(instance) => {
                let _ = inner.pool.start_work(instance, None);
                inner.spawned.lock().unwrap_or_else(PoisonError::into_inner).insert(instance);
            }
            Err(error) => notice(&inner.bus, None, Level::Warn, error.to_string()),
        }
    });
    Ok(())
}
