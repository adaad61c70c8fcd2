//! The engine: runs planned workflows.
//!
//! A task starts as soon as its dependencies have succeeded, within the run's `max_parallel`
//! and within its agent's `max_instances` (the pool queues the rest). High-risk tasks wait
//! for a reviewer first. Each attempt passes the agent's breaker (an open breaker moves the
//! task along the agent's `fallback` chain), takes a pool instance and runs on the backend's
//! executor; failures are retried with exponential backoff and jitter. Every transition is
//! published on the bus with the run id.
//!
//! Operators reach a run through its [`RunHandle`] — after the gate, which the runtime
//! applies; the engine itself trusts its callers.

mod approval;
mod attempt;
pub mod error;
mod executors;
mod handle;
mod panel;
mod safety;
mod scheduler;
pub mod workspace;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::{mpsc, watch};

pub use error::EngineError;
pub use handle::{RunHandle, RunPhase};
pub use scheduler::TaskStatus;

use crate::agents::{AgentDefinition, Registry};
use crate::audit::AuditLog;
use crate::bus::EventBus;
use crate::command::Command;
use crate::config::Settings;
use crate::conflict::Conflicts;
use crate::event::Event;
use crate::exec::Executor;
use crate::governance::{Approvals, Permit};
use crate::ids::{AgentId, RunId};
use crate::pool::Pool;
use crate::resilience::BreakerBoard;
use crate::resilience::limits::RateLimits;
use crate::resume::ResumePoint;
use crate::safety::SafetyChecker;
use crate::workflow::Plan;
use executors::Executors;
use scheduler::{RunShared, Scheduler};
use workspace::Workspaces;

/// What resuming found besides the stored events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumed {
    /// The workflow file changed since the run started; its stored text is used.
    pub workflow_changed: bool,
    /// Leftover agent processes of the crashed process, killed before resuming.
    pub killed_processes: usize,
}

/// Finished runs kept for operator retries; older ones are forgotten.
pub const FINISHED_RUNS_KEPT: usize = 16;

/// Everything the engine works with. The runtime builds these once.
pub struct EngineParts {
    pub bus: EventBus,
    pub registry: Registry,
    pub pool: Pool,
    pub breakers: BreakerBoard,
    pub approvals: Approvals,
    pub settings: Arc<Settings>,
    /// Relative working directories of executors resolve against it.
    pub project_dir: PathBuf,
    /// Tasks' git worktrees go to its `worktrees/` folder.
    pub data_dir: PathBuf,
}

pub(crate) struct EngineInner {
    pub(crate) bus: EventBus,
    pub(crate) registry: Registry,
    pub(crate) pool: Pool,
    pub(crate) breakers: BreakerBoard,
    pub(crate) approvals: Approvals,
    /// Conflicts of panel tasks waiting for a person.
    pub(crate) conflicts: Conflicts,
    pub(crate) settings: Arc<Settings>,
    pub(crate) project_dir: PathBuf,
    pub(crate) executors: Executors,
    pub(crate) workspaces: Workspaces,
    /// The safety rules in force, compiled once.
    pub(crate) safety: SafetyChecker,
    /// Per-backend request and token rates, shared by every run.
    pub(crate) rate_limits: RateLimits,
    /// Where safety matches are recorded, once the runtime gave it (see [`Engine::audit_to`]).
    pub(crate) audit: OnceLock<AuditLog>,
    /// Oldest first.
    runs: Mutex<VecDeque<RunHandle>>,
}

impl EngineInner {
    pub(crate) fn definition(&self, agent: &AgentId) -> Option<Arc<AgentDefinition>> {
        self.registry.get(agent.as_str())
    }

    /// The backend an agent runs on in this run: `--backend`, else the agent's own, else the
    /// default.
    pub(crate) fn backend_for(&self, plan: &Plan, agent_backend: Option<&str>) -> String {
        plan.backend_override
            .as_deref()
            .or(agent_backend)
            .unwrap_or(&self.settings.default_backend)
            .to_owned()
    }
}

/// Cheap to clone; clones share runs and executors.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    pub fn new(parts: EngineParts) -> Self {
        Self {
            inner: Arc::new(EngineInner {
                executors: Executors::new(Arc::clone(&parts.settings)),
                workspaces: Workspaces::new(&parts.project_dir, &parts.data_dir),
                conflicts: Conflicts::new(parts.bus.clone()),
                safety: SafetyChecker::new(&parts.settings.safety),
                rate_limits: RateLimits::new(&parts.settings.rate_limits),
                audit: OnceLock::new(),
                bus: parts.bus,
                registry: parts.registry,
                pool: parts.pool,
                breakers: parts.breakers,
                approvals: parts.approvals,
                settings: parts.settings,
                project_dir: parts.project_dir,
                runs: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Records what the engine decides on its own (safety rule matches) in `audit`. The
    /// first call wins.
    pub fn audit_to(&self, audit: AuditLog) {
        let _ = self.inner.audit.set(audit);
    }

    /// Run `backend`'s tasks on `executor` instead of one built from the settings.
    pub fn use_executor(&self, backend: &str, executor: Arc<dyn Executor>) {
        self.inner.executors.insert(backend, executor);
    }

    /// Start a planned run under a fresh id, with the gate's permit to start it. Must be
    /// called inside a tokio runtime.
    pub fn start(&self, plan: Plan, permit: &Permit) -> Result<RunHandle, EngineError> {
        self.start_as(RunId::generate(), plan, permit)
    }

    /// Start a planned run under the given id, with the gate's permit to start it (a
    /// `start_run`, or one decided for this very run).
    pub fn start_as(
        &self,
        run: RunId,
        plan: Plan,
        permit: &Permit,
    ) -> Result<RunHandle, EngineError> {
        permit.require("start_run", |command| {
            matches!(command, Command::StartRun { .. })
                && permit.run().is_none_or(|permitted| permitted == &run)
        })?;
        // Build every executor the plan needs now, so a broken backend stops the run before
        // anything starts.
        let mut simulated = false;
        for backend in plan.backends() {
            simulated |= self.inner.executors.get(backend)?.is_simulated();
        }
        // A task asking for a worktree outside a git repository stops the run here, not
        // halfway through it.
        self.inner.workspaces.check(&plan)?;
        let plan = Arc::new(plan);
        self.inner.bus.publish(
            Some(&run),
            Event::RunStarted {
                workflow: plan.workflow.clone(),
                file: plan.file.clone(),
                goal: plan.goal.clone(),
                max_parallel: plan.max_parallel,
                fail_fast: plan.fail_fast,
                simulated,
                tasks: plan.planned_tasks(),
            },
        );
        Ok(self.spawn_scheduler(run, plan, None))
    }

    /// Go on with an interrupted run under its own id, from where its stored events left it
    /// (`point`, folded by [`crate::model::RunModel`]). Announces `RunResumed` and each attempt
    /// that was in flight as `AttemptInterrupted`; succeeded tasks never run again.
    pub fn resume_as(
        &self,
        run: RunId,
        plan: Plan,
        point: &ResumePoint,
        resumed: Resumed,
        permit: &Permit,
    ) -> Result<RunHandle, EngineError> {
        permit.require(format!("resume_run of {run}"), |command| {
            matches!(command, Command::ResumeRun { run: permitted, .. } if permitted == &run)
        })?;
        for backend in plan.backends() {
            self.inner.executors.get(backend)?;
        }
        self.inner.workspaces.check(&plan)?;
        let plan = Arc::new(plan);
        self.inner.bus.publish(
            Some(&run),
            Event::RunResumed {
                done: point.done(),
                remaining: point.remaining(),
                workflow_changed: resumed.workflow_changed,
                killed_processes: resumed.killed_processes,
            },
        );
        // In plan order, so the stream reads the same on every resume.
        for step in &plan.steps {
            if let Some((agent, attempt)) = point.task(&step.id).and_then(|t| t.interrupted.clone())
            {
                self.inner.bus.publish(
                    Some(&run),
                    Event::AttemptInterrupted { task: step.id.clone(), agent, attempt },
                );
            }
        }
        Ok(self.spawn_scheduler(run, plan, Some(point)))
    }

    fn spawn_scheduler(
        &self,
        run: RunId,
        plan: Arc<Plan>,
        point: Option<&ResumePoint>,
    ) -> RunHandle {
        let (sender, inbox) = mpsc::unbounded_channel();
        let (phase_tx, phase_rx) = watch::channel(RunPhase::Running);
        let handle = RunHandle {
            id: run.clone(),
            workflow: plan.workflow.clone(),
            control: sender.clone(),
            phase: phase_rx,
        };
        let shared = Arc::new(RunShared::new(run, plan, Arc::clone(&self.inner)));
        let mut scheduler = Scheduler::new(shared, sender.downgrade(), phase_tx);
        if let Some(point) = point {
            scheduler.resume_from(point, crate::bus::now_ms());
        }
        tokio::spawn(scheduler.drive(inbox));
        self.remember(handle.clone());
        handle
    }

    fn remember(&self, handle: RunHandle) {
        let mut runs = self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.push_back(handle);
        let finished = runs.iter().filter(|r| r.is_finished()).count();
        let mut excess = finished.saturating_sub(FINISHED_RUNS_KEPT);
        runs.retain(|r| {
            if excess > 0 && r.is_finished() {
                excess -= 1;
                return false;
            }
            true
        });
    }

    /// Conflicts of panel tasks that wait for a person, across runs.
    pub(crate) fn conflicts(&self) -> &Conflicts {
        &self.inner.conflicts
    }

    /// A run started by this engine and not yet forgotten.
    pub fn run(&self, id: &RunId) -> Option<RunHandle> {
        let runs = self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.iter().find(|r| &r.id == id).cloned()
    }

    /// Every run still known, oldest first.
    pub fn runs(&self) -> Vec<RunHandle> {
        self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Runs that have not finished.
    pub fn active_runs(&self) -> Vec<RunHandle> {
        self.runs().into_iter().filter(|r| !r.is_finished()).collect()
    }

    /// Forget every run. A run's scheduler (holding its plan and outputs) ends once the
    /// last handle to it is gone; call this when shutting down.
    pub fn forget_runs(&self) {
        self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }
}
