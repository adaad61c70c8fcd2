//! Wires the parts together: registry (and its watcher), pool, breakers, executors,
//! approvals, audit log, gate, run store and engine. The console and `flightdeck run` both
//! drive a [`Runtime`]: they read its event stream and send it commands, which pass the gate
//! before anything changes. The runtime never touches the terminal.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agents::{AgentError, AgentWatcher, Registry, watch};
use crate::audit::{AuditError, AuditLog};
use crate::bus::{EventBus, now_ms};
use crate::command::{Command, Request};
use crate::config::Settings;
use crate::engine::{Engine, EngineError, EngineParts, RunHandle};
use crate::event::{Envelope, Event, Level, RunStatus};
use crate::governance::{Approvals, Denied, Gate, GovernanceError, Identity, SYSTEM_USER};
use crate::ids::{AgentId, InstanceId, RunId, TaskId, UserId};
use crate::learning::{History, LearningSettings};
use crate::pool::{Pool, PoolConfig, PoolError};
use crate::resilience::BreakerBoard;
use crate::store::{
    OwnerError, PruneRule, RUNS_FILE, RunLock, RunRow, RunStore, SeqBlocks, StoreError,
    StoreWriter, spawn_writer,
};
use crate::workflow::{Plan, PlanOverrides, Workflow, WorkflowError, plan_owned};

pub use crate::audit::AUDIT_FILE;

/// How long [`Runtime::shutdown`] waits for cancelled runs to stop their work.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

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
    #[error("agent `{0}` is not in the agent pool")]
    UnknownAgent(AgentId),
    #[error("instance {0} was not spawned by an operator; a task holds it")]
    NotSpawned(InstanceId),
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
        let settings = Arc::new(settings);
        // The store first, so its sink sees every event from here on, and the bus numbers
        // from blocks the store reserves for this process alone, so `seq` never repeats nor
        // goes back, whatever processes share the data dir.
        let mut store = RunStore::open(data_dir.join(RUNS_FILE))?;
        store.record_simulated_outcomes(settings.limits.learn_from_sim);
        let reader = RunStore::open(data_dir.join(RUNS_FILE))?;
        let mut seqs = SeqBlocks::new(RunStore::open(data_dir.join(RUNS_FILE))?);
        let first = seqs.reserve()?;
        let bus = EventBus::numbered_by(first, Box::new(seqs));
        let writer = spawn_writer(store, bus.run_sink())?;

        let registry = Registry::load(&project_dir.join("agentpool"));
        let watcher = if watch_agents {
            Some(watch(registry.clone(), bus.clone()).map_err(RuntimeError::Watch)?)
        } else {
            None
        };
        let pool = Pool::new(PoolConfig::from(&settings.limits), bus.clone());
        let breakers = BreakerBoard::new(settings.breakers.clone(), bus.clone());
        let approvals = Approvals::new(bus.clone());
        let audit = AuditLog::open(data_dir.join(AUDIT_FILE))?;
        let gate = Gate::new(&settings, audit.clone(), bus.clone());
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

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
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

    /// Delete finished runs from the run store as `user`, through the gate (as `PruneRuns`);
    /// returns the runs deleted and how many events went with them.
    pub async fn prune_runs(
        &self,
        user: &str,
        rule: PruneRule,
    ) -> Result<(Vec<RunRow>, u64), RuntimeError> {
        let command = Command::PruneRuns { keep: rule.keep, before_ms: rule.before_ms };
        self.inner.gate.check(&Request { user: UserId::new(user), command })?;
        prune_runs(&self.inner, rule).await
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
        self.inner.gate.check_for_run(&request, Some(&run))?;
        start_owned(&self.inner, run, plan)
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

    /// Reject a task waiting for approval when no reviewer can answer (headless runs), as
    /// [`SYSTEM_USER`] with `note` as the reason. Not an operator command, so no gate.
    pub fn refuse_unattended(
        &self,
        run: &RunId,
        task: &TaskId,
        note: &str,
    ) -> Result<(), RuntimeError> {
        let by = UserId::new(SYSTEM_USER);
        Ok(self.inner.approvals.decide(run, task, false, &by, Some(note.to_owned()))?)
    }

    /// Wait for a run to finish. `None` when this runtime does not know the run (any more).
    pub async fn wait_run(&self, run: &RunId) -> Option<RunStatus> {
        Some(self.inner.engine.run(run)?.wait().await)
    }

    /// Cancel active runs, wait (up to 10 s) for their work to stop, and flush the store.
    pub async fn shutdown(self) {
        let active = self.inner.engine.active_runs();
        for run in &active {
            let _ = run.cancel().await;
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

fn notice(bus: &EventBus, run: Option<&RunId>, level: Level, message: String) {
    bus.publish(run, Event::Notice { level, message });
}

/// Start a run under a fresh id (from [`RunId::generate`]) that this process owns: the id's
/// lock file is created and held first (an id whose file or stored row exists is refused,
/// never merged), then the engine starts. Locks of runs the engine has forgotten are
/// released on the way.
fn start_owned(inner: &Inner, run: RunId, plan: Plan) -> Result<RunHandle, RuntimeError> {
    let lock = RunLock::claim_new(&inner.data_dir, &run)?;
    let stored = inner.reader.lock().unwrap_or_else(PoisonError::into_inner).has_run(&run);
    if !matches!(stored, Ok(false)) {
        let path = lock.path().to_owned();
        lock.discard();
        stored?;
        return Err(OwnerError::Exists { run, path }.into());
    }
    let handle = match inner.engine.start_as(run, plan) {
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

fn plan_file(
    inner: &Inner,
    workflow: &Path,
    overrides: &PlanOverrides,
) -> Result<Plan, RuntimeError> {
    let file =
        if workflow.is_absolute() { workflow.to_owned() } else { inner.project_dir.join(workflow) };
    let workflow = Workflow::load_for(&file, Some(&inner.registry))?;
    let history = learned_history(inner);
    Ok(plan_owned(workflow, &inner.registry, &inner.settings, overrides, &history)?)
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
    // A run started by this command gets its id before the gate, so the decision (accepted
    // or denied) carries the run's id like every other event the run caused.
    let new_run = matches!(request.command, Command::StartRun { .. }).then(RunId::generate);
    let identity = match &new_run {
        Some(run) => inner.gate.check_for_run(&request, Some(run))?,
        None => inner.gate.check(&request)?,
    };
    dispatch(inner, &identity, request.command, new_run).await
}

async fn dispatch(
    inner: &Arc<Inner>,
    identity: &Identity,
    command: Command,
    new_run: Option<RunId>,
) -> Result<Option<RunId>, RuntimeError> {
    let engine = &inner.engine;
    let run_handle =
        |run: &RunId| engine.run(run).ok_or_else(|| EngineError::UnknownRun { run: run.clone() });
    match command {
        Command::StartRun { workflow, backend, max_parallel } => {
            let overrides = PlanOverrides { backend, max_parallel };
            let plan = plan_file(inner, &workflow, &overrides).inspect_err(|error| {
                notice(&inner.bus, None, Level::Error, error.to_string());
            })?;
            let run = new_run.unwrap_or_else(RunId::generate);
            return Ok(Some(start_owned(inner, run, plan)?.id().clone()));
        }
        Command::CancelRun { run } => run_handle(&run)?.cancel().await?,
        Command::CancelTask { run, task } => run_handle(&run)?.cancel_task(&task).await?,
        Command::RetryTask { run, task } => run_handle(&run)?.retry_task(&task).await?,
        Command::Approve { run, task, note } => {
            inner.approvals.decide(&run, &task, true, &identity.user, note)?;
        }
        Command::Reject { run, task, note } => {
            inner.approvals.decide(&run, &task, false, &identity.user, note)?;
        }
        Command::ResetBreaker { agent } => inner.breakers.reset(&agent, identity.user.as_str()),
        Command::OpenBreaker { agent } => inner.breakers.force_open(&agent, identity.user.as_str()),
        Command::SpawnInstance { agent } => spawn_instance(inner, agent)?,
        Command::ReleaseInstance { instance } => {
            // Instances held by running tasks are released by their task, never by hand.
            let mut spawned = inner.spawned.lock().unwrap_or_else(PoisonError::into_inner);
            if !spawned.remove(&instance) {
                return Err(RuntimeError::NotSpawned(instance));
            }
            drop(spawned);
            inner.pool.release(instance)?;
        }
        Command::ReloadAgents => {
            for event in inner.registry.rescan() {
                inner.bus.publish(None, event);
            }
        }
        Command::PruneRuns { keep, before_ms } => {
            prune_runs(inner, PruneRule { keep, before_ms }).await?;
        }
    }
    Ok(None)
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
