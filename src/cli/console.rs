//! `flightdeck` with no subcommand: the runtime and the console in one process.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Globals, exit};
use crate::bus::now_ms;
use crate::command::Command;
use crate::console::{self, ConsoleLink, ConsoleOptions};
use crate::event::{Envelope, Event, Level};
use crate::governance::Identity;
use crate::host::{Host, HostError, HostLock, HostOptions};
use crate::ids::{AgentId, InstanceId};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::workflow::PlanOverrides;

/// How the console was asked to start.
#[derive(Debug, Clone, Default)]
pub struct ConsoleRequest {
    /// `--workflow FILE`: start this run once the console is up.
    pub workflow: Option<PathBuf>,
    /// `--demo-pool`: acquire and release instances so the pool shows life.
    pub demo_pool: bool,
}

/// Open the console; returns the exit code.
pub fn open(globals: &Globals, request: ConsoleRequest, log_file: PathBuf) -> i32 {
    let settings = match crate::host::governed_settings(&globals.project_dir, &globals.data_dir) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::INVALID;
        }
    };
    // One host per data dir: a second console attaches to the first.
    let lock = match HostLock::take(&globals.data_dir) {
        Ok(lock) => lock,
        Err(HostError::AlreadyHosted { pid, .. }) => {
            let host = pid.map_or_else(|| "another flightdeck".to_owned(), |p| format!("pid {p}"));
            if let Some(workflow) = &request.workflow {
                eprintln!(
                    "flightdeck: {} is hosted by {host}; attaching (start {} there with `:run`)",
                    globals.data_dir.display(),
                    workflow.display()
                );
            }
            return super::host::attach(globals, false, log_file);
        }
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::FAILED;
        }
    };
    let tokio = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("flightdeck: cannot start the async runtime: {error}");
            return exit::FAILED;
        }
    };
    tokio.block_on(async move {
        let theme = globals.theme.clone().or_else(|| settings.theme.clone());
        let host_options = HostOptions::from_settings(&settings);
        let attention = crate::console::Attention {
            bell: settings.notify.bell,
            desktop: settings.notify.desktop,
        };
        let identity = Identity::resolve(&globals.user, &settings);
        let runtime = match Runtime::start(RuntimeOptions {
            project_dir: globals.project_dir.clone(),
            data_dir: globals.data_dir.clone(),
            settings,
            watch_agents: true,
        }) {
            Ok(runtime) => Arc::new(runtime),
            Err(error) => {
                eprintln!("flightdeck: {error}");
                return exit::FAILED;
            }
        };
        // `--workflow FILE` that does not plan is refused here, as `run` refuses it (exit
        // 2, each problem with its file and line), before the terminal is taken over.
        let start_workflow = request.workflow.map(|path| globals.resolve(&path));
        if let Some(workflow) = &start_workflow
            && let Err(error) = runtime.plan(workflow, &PlanOverrides::default())
        {
            eprintln!("{error}");
            if let Ok(runtime) = Arc::try_unwrap(runtime) {
                runtime.shutdown().await;
            }
            return exit::INVALID;
        }
        let host = match Host::listen(lock, Arc::clone(&runtime), &host_options) {
            Ok(host) => host,
            Err(error) => {
                eprintln!("flightdeck: {error}");
                if let Ok(runtime) = Arc::try_unwrap(runtime) {
                    runtime.shutdown().await;
                }
                return exit::FAILED;
            }
        };
        // Subscribe before taking the backlog so nothing falls between the two.
        let events = runtime.bus().subscribe();
        let mut backlog = runtime.backlog();
        // Said on screen, not only in the log file: a torn or cut audit log at start.
        backlog.extend(runtime.audit_warnings().iter().map(|warning| {
            Arc::new(Envelope {
                seq: 0,
                ts_ms: now_ms(),
                run_id: None,
                event: Event::Notice { level: Level::Warn, message: warning.clone() },
            })
        }));
        let commands = runtime.command_sender(globals.user.clone());
        let demo = request
            .demo_pool
            .then(|| tokio::spawn(demo_pool(Arc::clone(&runtime), commands.clone())));
        let resync_runtime = Arc::clone(&runtime);
        let link = ConsoleLink {
            backlog,
            events: events.into(),
            commands,
            user: globals.user.clone(),
            role: identity.role.to_string(),
            resync: Box::new(move || resync_runtime.backlog()),
            stored_runs: Box::new({
                let store = globals.data_dir.join(crate::store::RUNS_FILE);
                move || read_runs(&store)
            }),
            attached: false,
            run_events: Box::new({
                let store = globals.data_dir.join(crate::store::RUNS_FILE);
                move |run| read_run_events(&store, run)
            }),
        };
        let options = ConsoleOptions {
            project_dir: globals.project_dir.clone(),
            theme,
            log_file,
            start_workflow,
            attention,
        };
        let result = console::run(options, link).await;
        if let Some(demo) = demo {
            demo.abort();
        }
        // Attached consoles are told the host is going; then no connection holds the runtime.
        host.close().await;
        // The link's resync closure holds a clone; once the console is gone it is the last.
        match Arc::try_unwrap(runtime) {
            Ok(runtime) => runtime.shutdown().await,
            Err(runtime) => {
                let _ = runtime.flush().await;
            }
        }
        match result {
            Ok(signalled) => signalled.unwrap_or(exit::OK),
            Err(error) => {
                // Not `eprintln!`: after the console the terminal may be gone, and it panics then.
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!("flightdeck: {error:#}\n"),
                );
                exit::FAILED
            }
        }
    })
}

/// Rehearsal load for the Pool pane: every 700 ms acquire an instance of a tier-1 agent and
/// release the oldest one once four are held. Commands pass the gate like an operator's.
async fn demo_pool(runtime: Arc<Runtime>, commands: mpsc::UnboundedSender<Command>) {
    let mut events = runtime.bus().subscribe();
    let agents: Vec<AgentId> = runtime
        .agents()
        .iter()
        .filter(|definition| definition.tier == 1)
        .map(|definition| definition.name.clone())
        .collect();
    if agents.is_empty() {
        return;
    }
    let mut requested: HashMap<AgentId, usize> = HashMap::new();
    let mut held: VecDeque<InstanceId> = VecDeque::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(700));
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if held.len() >= 4
                    && let Some(instance) = held.pop_front() {
                        let _ = commands.send(Command::ReleaseInstance { instance });
                    }
                let agent = agents[next % agents.len()].clone();
                next = next.wrapping_mul(7).wrapping_add(3);
                *requested.entry(agent.clone()).or_default() += 1;
                if commands.send(Command::SpawnInstance { agent }).is_err() {
                    return;
                }
            }
            received = events.recv() => match received {
                Ok(envelope) => {
                    if let Event::InstanceReserved { instance, agent } = &envelope.event
                        && let Some(count) = requested.get_mut(agent).filter(|count| **count > 0) {
                            *count -= 1;
                            held.push_back(*instance);
                        }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The store's runs for the console's Runs list (its own connection: the list is read rarely,
/// when the operator opens it).
pub(crate) fn read_runs(store: &std::path::Path) -> Vec<crate::store::RunRow> {
    match crate::store::RunStore::open_read_only(store).and_then(|store| store.runs()) {
        Ok(runs) => runs,
        Err(error) => {
            tracing::warn!(%error, store = %store.display(), "console: cannot list the runs");
            Vec::new()
        }
    }
}

/// A stored run's events, for the console to show a run it did not follow.
pub(crate) fn read_run_events(
    store: &std::path::Path,
    run: &crate::ids::RunId,
) -> Vec<Arc<crate::event::Envelope>> {
    match crate::store::RunStore::open_read_only(store).and_then(|store| store.events(run)) {
        Ok(events) => events.into_iter().map(Arc::new).collect(),
        Err(error) => {
            tracing::warn!(%error, %run, "console: cannot read the run's events");
            Vec::new()
        }
    }
}

/// `flightdeck replay RUN`: the console on a stored run with a time cursor; returns the exit
/// code. No runtime starts: nothing is called and nothing can change.
pub fn replay(globals: &Globals, wanted: &str, log_file: PathBuf) -> i32 {
    let (row, events) = match super::runs::load(globals, wanted) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::INVALID;
        }
    };
    tracing::info!(run = %row.run_id, events = events.len(), "replay");
    let settings = crate::config::Settings::load(&globals.project_dir).unwrap_or_default();
    let options = ConsoleOptions {
        project_dir: globals.project_dir.clone(),
        theme: globals.theme.clone().or(settings.theme),
        log_file,
        start_workflow: None,
        // A replay calls nobody: what waited for a person then needs nobody now.
        attention: crate::console::Attention { bell: false, desktop: false },
    };
    let tokio = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("flightdeck: cannot start the async runtime: {error}");
            return exit::FAILED;
        }
    };
    let events = events.into_iter().map(Arc::new).collect();
    match tokio.block_on(console::replay(options, &globals.user, events)) {
        Ok(signalled) => signalled.unwrap_or(exit::OK),
        Err(error) => {
            // Not `eprintln!`: after the console the terminal may be gone, and it panics then.
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("flightdeck: {error:#}\n"),
            );
            exit::FAILED
        }
    }
}
