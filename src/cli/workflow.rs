//! `flightdeck plan` and `flightdeck run`.
//!
//! `run` exits 0 when every task succeeded, 1 when any failed or was cancelled, 2 when the
//! input was invalid (nothing ran) and 130 when interrupted with Ctrl-C (the run is
//! cancelled, its children stopped and the run recorded as cancelled first).
//!
//! By default a headless run has no reviewer: a task that needs approval is rejected at once,
//! with a note saying so. With `--approvals wait` it waits for a decision from another
//! terminal (`flightdeck approve`), until `policies.approval_timeout`; the run then hosts its
//! data dir's control socket, so reviewers can reach it.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use unicode_width::UnicodeWidthStr;

use super::progress::{PrinterThread, risk_word, short};
use super::table::pad;
use super::{Globals, exit};
use crate::agents::Registry;
use crate::bus::Backlog;
use crate::config::Settings;
use crate::conflict::LadderStep;
use crate::event::{Envelope, Event, RunStatus};
use crate::host::{Host, HostError, HostLock, HostOptions};
use crate::ids::TaskId;
use crate::learning::{History, LearningSettings};
use crate::runtime::{Runtime, RuntimeError, RuntimeOptions};
use crate::words::plural;
use crate::workflow::{Plan, PlanOverrides, Workflow, WorkflowError, plan_learned};

/// Exit code after Ctrl-C (128 + SIGINT), as shells report it.
pub const INTERRUPTED: i32 = 130;

/// Most events held back for one store commit before they are printed.
const PRINT_BATCH: usize = 4096;

/// Holds events back until the run store has committed them, so that whatever `run --json`
/// printed (and every progress line) is in the store even if the process is killed the next
/// instant. Events without a run id are never stored; they are printed in their place.
#[derive(Default)]
struct PrintCommitted {
    pending: Vec<Arc<Envelope>>,
    /// The store failed to commit and the user was told.
    warned: bool,
}

impl PrintCommitted {
    fn push(&mut self, envelope: Arc<Envelope>) {
        self.pending.push(envelope);
    }

    fn is_full(&self) -> bool {
        self.pending.len() >= PRINT_BATCH
    }

    /// Wait for the store to commit what is pending, then hand it to the printer; returns
    /// the run's status once its `RunFinished` is among it (what follows it is not printed).
    /// A store that cannot commit (disk full, locked for too long) is reported on stderr and
    /// the events are printed all the same, so a consumer is never left waiting for a run
    /// that goes on.
    async fn print(&mut self, runtime: &Runtime, printer: &mut PrinterThread) -> Option<RunStatus> {
        if let Err(error) = runtime.flush().await
            && !std::mem::replace(&mut self.warned, true)
        {
            printer.line(format!("the run store did not commit these events: {error}"));
        }
        printer.events(std::mem::take(&mut self.pending))
    }
}

/// A request to stop a headless run: Ctrl-C, `kill` (SIGTERM) or a closed terminal or SSH
/// session (SIGHUP). Each cancels the run cleanly: children are stopped, the run is stored as
/// cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Interrupt,
    Terminate,
    Hangup,
    /// A reader of the output went away (`run --json | head -1`): as SIGPIPE would.
    ReaderGone,
}

impl Stop {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::Interrupt => "interrupted",
            Self::Terminate => "terminated (SIGTERM)",
            Self::Hangup => "hung up (SIGHUP)",
            Self::ReaderGone => "the output's reader went away (broken pipe)",
        }
    }

    /// 128 + the signal's number, as shells report a process the signal ended.
    pub(super) fn exit_code(self) -> i32 {
        match self {
            Self::Interrupt => INTERRUPTED,
            Self::Terminate => 128 + 15,
            Self::Hangup => 128 + 1,
            Self::ReaderGone => exit::BROKEN_PIPE,
        }
    }
}

/// A stop signal this soon after the last one is the same request delivered twice, not a
/// second one: `timeout` sends its signal to the command and then to the command's process
/// group, and taking that for "again" left the run uncancelled (interrupted) instead of
/// cancelled. A person pressing Ctrl-C again is slower than this.
const SAME_STOP_WITHIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The listeners of the three stop signals.
pub(super) struct Stops {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
    /// When the last stop was returned.
    last: Option<std::time::Instant>,
}

impl Stops {
    pub(super) fn listen() -> Self {
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
            hangup: signal(SignalKind::hangup()).ok(),
            last: None,
        }
    }

    /// The next stop signal (one delivered twice at once counts once); pending for ever
    /// when none can be listened to.
    pub(super) async fn next(&mut self) -> Stop {
        loop {
            let stop = self.any().await;
            let now = std::time::Instant::now();
            if self.last.is_some_and(|last| now.duration_since(last) < SAME_STOP_WITHIN) {
                continue;
            }
            self.last = Some(now);
            return stop;
        }
    }

    async fn any(&mut self) -> Stop {
        async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
            let received = match signal {
                Some(signal) => signal.recv().await.is_some(),
                None => false,
            };
            if !received {
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(self.interrupt.as_mut()) => Stop::Interrupt,
            () = recv(self.terminate.as_mut()) => Stop::Terminate,
            () = recv(self.hangup.as_mut()) => Stop::Hangup,
        }
    }
}

/// How often `run` asks a data dir's host to take its run (every 50 ms: 10 s) before giving up.
const HOST_ANSWER_TRIES: u32 = 200;

/// Said to reviewers-in-waiting of a headless run.
const NO_REVIEWER: &str = "headless run: no reviewer can approve it (run with `--approvals wait` \
                           to wait for `flightdeck approve` from another terminal, raise \
                           policies.approval_at in flightdeck.yaml, or run it from the console)";

/// `plan WORKFLOW [--json]`: 0 when the workflow is valid, 2 otherwise.
pub fn plan(globals: &Globals, workflow: &Path, json: bool) -> i32 {
    let settings = match Settings::load(&globals.project_dir) {
        Ok(settings) => settings,
        Err(error) => return invalid(&error.to_string(), json),
    };
    let registry = Registry::load(&globals.agentpool_dir());
    let file = globals.resolve(workflow);
    let history = learned_history(globals, &settings);
    let planned = Workflow::load_for(&file, Some(&registry))
        .and_then(|w| plan_learned(&w, &registry, &settings, &PlanOverrides::default(), &history));
    match planned {
        Ok(plan) => {
            // A worktree outside a git repository would stop the run: say so now.
            if let Err(error) = crate::engine::workspace::check_plan(&plan, &globals.project_dir) {
                return invalid(&error.to_string(), json);
            }
            if json {
                let mut value = plan_json(&plan);
                value["safety"] = settings.safety.in_force_json();
                outln!("{value}");
            } else {
                out!("{}\n{}", plan_text(&plan), settings.safety.in_force_text());
            }
            exit::OK
        }
        Err(error) => {
            if json {
                outln!("{}", errors_json(&error));
            }
            eprintln!("{error}");
            exit::INVALID
        }
    }
}

/// What the run store learned, as the runtime plans with it; a store that cannot be read is
/// noted and planning goes on without history.
fn learned_history(globals: &Globals, settings: &Settings) -> History {
    let learning = LearningSettings::from(&settings.limits);
    History::load_from_dir(&globals.data_dir, learning, crate::bus::now_ms()).unwrap_or_else(
        |error| {
            eprintln!("note: planned without learned history: {error}");
            History::empty(learning)
        },
    )
}

fn invalid(message: &str, json: bool) -> i32 {
    if json {
        outln!("{}", json!({ "valid": false, "errors": [{ "message": message }] }));
    }
    eprintln!("{message}");
    exit::INVALID
}

fn errors_json(error: &WorkflowError) -> Value {
    let errors: Vec<Value> = match error {
        WorkflowError::Invalid { file, problems } => problems
            .iter()
            .map(|p| json!({ "file": file, "line": p.line, "message": p.kind.to_string() }))
            .collect(),
        WorkflowError::Syntax { file, line, column, message } => {
            vec![json!({ "file": file, "line": line, "column": column, "message": message })]
        }
        WorkflowError::Read { file, .. } => {
            vec![json!({ "file": file, "message": error.to_string() })]
        }
    };
    json!({ "valid": false, "errors": errors })
}

/// The plan as JSON, with layers and the critical path as task ids.
fn plan_json(plan: &Plan) -> Value {
    let ids = |indices: &[usize]| -> Vec<&str> {
        indices.iter().map(|&i| plan.steps[i].id.as_str()).collect()
    };
    let mut value = serde_json::to_value(plan).unwrap_or(Value::Null);
    value["valid"] = json!(true);
    value["layers"] = json!(plan.layers.iter().map(|l| ids(l)).collect::<Vec<_>>());
    value["critical_path"] = json!(ids(&plan.critical_path));
    value
}

fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "workflow {} ({})", plan.workflow, plan.file.display());
    if let Some(goal) = &plan.goal {
        let _ = writeln!(out, "goal: {goal}");
    }
    let _ = writeln!(
        out,
        "{} tasks in {} layers, max_parallel {}, fail_fast {}, estimate ~{}{}",
        plan.steps.len(),
        plan.layers.len(),
        plan.max_parallel,
        if plan.fail_fast { "on" } else { "off" },
        short(plan.estimate),
        simulated_note(plan),
    );
    // Lined up as a terminal shows them (an id like `設計` takes four columns).
    let id_width = plan.steps.iter().map(|s| s.id.as_str().width()).max().unwrap_or(0);
    let agent_width = plan.steps.iter().map(|s| agent_label(s).width()).max().unwrap_or(0);
    let backend_width = plan.steps.iter().map(|s| s.backend.width()).max().unwrap_or(0);
    let timeout_width = plan.steps.iter().map(|s| short(s.timeout).len()).max().unwrap_or(0);
    let estimate_width = plan.steps.iter().map(|s| short(s.estimate).len()).max().unwrap_or(0);
    for (number, layer) in plan.layers.iter().enumerate() {
        let _ = writeln!(out, "\nlayer {number}");
        for &i in layer {
            let step = &plan.steps[i];
            let mut line = format!(
                "  {}  {}  {}  timeout {:<timeout_width$}  retries {}  ~{:<estimate_width$}",
                pad(step.id.as_str(), id_width),
                pad(&agent_label(step), agent_width),
                pad(&step.backend, backend_width),
                short(step.timeout),
                step.retries,
                short(step.estimate),
            );
            if !step.depends_on.is_empty() {
                let deps: Vec<&str> = step.depends_on.iter().map(TaskId::as_str).collect();
                let _ = write!(line, "  after {}", deps.join(", "));
            }
            match step.workspace {
                crate::config::WorkspaceKind::Shared => {}
                crate::config::WorkspaceKind::Worktree => line.push_str("  in its own worktree"),
                crate::config::WorkspaceKind::Temp => line.push_str("  in a fresh folder"),
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(auto) = &step.timeout_auto {
                let _ = writeln!(out, "  {:id_width$}  timeout {}", "", auto.describe());
            }
            if let Some(panel) = &step.panel {
                let _ = writeln!(out, "  {:id_width$}  {}", "", panel_line(panel));
            }
            if step.needs_approval {
                let _ = writeln!(
                    out,
                    "  {:id_width$}  ⏸ needs approval, risk {}: {}",
                    "",
                    risk_word(step.risk.risk),
                    step.risk.reasons.join("; ")
                );
            }
        }
    }
    let waiting = plan.steps.iter().filter(|s| s.needs_approval).count();
    if waiting > 0 {
        let (tasks, wait) = if waiting == 1 { ("task", "waits") } else { ("tasks", "wait") };
        let _ = writeln!(
            out,
            "\n{waiting} {tasks} {wait} for a reviewer (the console's prompt, or `flightdeck \
             approve` from any terminal); `flightdeck run` refuses them unless run with \
             `--approvals wait`"
        );
    }
    let path: Vec<&str> = plan.critical_path.iter().map(|&i| plan.steps[i].id.as_str()).collect();
    let _ = writeln!(out, "\ncritical path: {}", path.join(" → "));
    out
}

fn simulated_note(plan: &Plan) -> String {
    let simulated = plan.steps.iter().filter(|s| s.simulated).count();
    if simulated == 0 {
        String::new()
    } else if simulated == plan.steps.len() {
        "  [SIMULATED: every task runs on a sim backend]".to_owned()
    } else {
        format!("  [PARTLY SIMULATED: {simulated} of {} tasks on a sim backend]", plan.steps.len())
    }
}

/// One line naming a panel's members, options, domain, third agent and mode.
fn panel_line(panel: &crate::workflow::PlannedPanel) -> String {
    let members: Vec<&str> = panel.members.iter().map(crate::ids::AgentId::as_str).collect();
    let mut line = format!("⚖ panel {}", members.join(", "));
    if !panel.options.is_empty() {
        let _ = write!(line, " · options: {}", panel.options.join(" | "));
    }
    match panel.domain {
        Some(domain) if panel.domain_from_words => {
            let _ = write!(line, " · domain {domain} (from its words)");
        }
        Some(domain) => {
            let _ = write!(line, " · domain {domain}");
        }
        None => line.push_str(" · no domain"),
    }
    match &panel.third_opinion {
        Some(third) => {
            let _ = write!(line, " · third opinion {third}");
        }
        None => line.push_str(" · no third opinion"),
    }
    let _ = write!(line, " · decide {}", panel.decide.as_str());
    line
}

fn agent_label(step: &crate::workflow::PlannedStep) -> String {
    if let Some(panel) = &step.panel {
        return format!("panel of {}", panel.members.len());
    }
    match &step.selection {
        Some(selection) => format!("{} (auto, score {:.1})", step.agent, selection.score),
        None => step.agent.to_string(),
    }
}

/// Options of `flightdeck run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub json: bool,
    pub backend: Option<String>,
    pub max_parallel: Option<usize>,
    /// `--approvals wait`: tasks that need approval wait for a reviewer in another terminal
    /// (until `policies.approval_timeout`) instead of being rejected at once.
    pub wait_for_approvals: bool,
    /// `--decide recommend`: conflicts that need a person take the ladder's recommendation.
    pub take_recommendation: bool,
    /// `--decide wait`: such conflicts wait for a person in another terminal (an attached
    /// console's prompt or `:resolve`).
    pub wait_for_decisions: bool,
}

/// `run WORKFLOW`: 0 when every task succeeded, 1 when any failed, 2 for invalid input,
/// 130 when interrupted.
pub fn run(globals: &Globals, workflow: &Path, options: &RunOptions) -> i32 {
    if options.max_parallel == Some(0) {
        eprintln!("flightdeck: --max-parallel 0: at least one task must be able to run");
        return exit::INVALID;
    }
    headless(globals, |settings| run_headless(globals, workflow, options, settings))
}

/// Run a headless command: the settings governed by the data dir's project (users, roles and
/// policies never come from the caller's `--project-dir`), then `body` on a current-thread
/// runtime; returns its exit code.
fn headless<F, Fut>(globals: &Globals, body: F) -> i32
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let settings = match crate::host::governed_settings(&globals.project_dir, &globals.data_dir) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return exit::INVALID;
        }
    };
    let tokio = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("flightdeck: cannot start the async runtime: {error}");
            return exit::FAILED;
        }
    };
    tokio.block_on(body(settings))
}

async fn run_headless(
    globals: &Globals,
    workflow: &Path,
    options: &RunOptions,
    settings: Settings,
) -> i32 {
    // The first process on a data dir hosts it, so reviewers elsewhere can reach its runs;
    // a later `run` hands its workflow to that host instead of starting a second runtime.
    // Someone may run it already; asking its socket first needs no write access to the data
    // dir (a reviewer's or developer's account may have none).
    if globals.data_dir.join(crate::host::protocol::SOCKET_FILE).exists() {
        let pid = crate::host::host_pid(&globals.data_dir);
        if let Some(code) = super::on_host::run_on_host(globals, workflow, options, pid).await {
            return code;
        }
    }
    let mut tries = 0;
    let lock = loop {
        match HostLock::take(&globals.data_dir) {
            Ok(lock) => break Some(lock),
            Err(HostError::AlreadyHosted { pid, .. }) => {
                if let Some(code) =
                    super::on_host::run_on_host(globals, workflow, options, pid).await
                {
                    return code;
                }
                // No answer: the host is still starting (it locks before it listens), or it
                // went away between the two looks (then the next try hosts the run here).
                tries += 1;
                if tries == HOST_ANSWER_TRIES {
                    eprintln!(
                        "flightdeck: {} is locked by a host that does not answer on its socket; \
                         try again",
                        globals.data_dir.display()
                    );
                    return exit::INVALID;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => {
                eprintln!("flightdeck: {error}");
                return exit::INVALID;
            }
        }
    };
    let host_options = HostOptions::from_settings(&settings);
    let runtime = match Runtime::start(RuntimeOptions {
        project_dir: globals.project_dir.clone(),
        data_dir: globals.data_dir.clone(),
        settings,
        watch_agents: false,
    }) {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::INVALID;
        }
    };
    super::say_audit_warnings(&runtime);
    let host = match lock.map(|lock| Host::listen(lock, Arc::clone(&runtime), &host_options)) {
        Some(Ok(host)) => Some(host),
        Some(Err(error)) => {
            eprintln!("flightdeck: {error}");
            shutdown(runtime, None).await;
            return exit::INVALID;
        }
        None => None,
    };
    let overrides =
        PlanOverrides { backend: options.backend.clone(), max_parallel: options.max_parallel };
    let plan = match runtime.plan(&globals.resolve(workflow), &overrides) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("{error}");
            shutdown(runtime, host).await;
            return exit::INVALID;
        }
    };
    // Subscribed before the run starts, so no event is missed. Paced: the run waits for the
    // printer when it is far behind, so unprinted events cannot pile up in memory.
    let (events, printed) = runtime.bus().paced_sink();
    let handle = match runtime.start_planned(&globals.user, plan) {
        Ok(handle) => handle,
        Err(error) => {
            match &error {
                RuntimeError::Denied(denied) => eprintln!("flightdeck: refused: {denied}"),
                other => eprintln!("flightdeck: {other}"),
            }
            shutdown(runtime, host).await;
            return exit::INVALID;
        }
    };
    let code = follow(&runtime, handle, events, &printed, options).await;
    if host.is_some() && code <= exit::FAILED {
        finish_hosted_runs(&runtime).await;
    }
    shutdown(runtime, host).await;
    code
}

/// Runs that other terminals handed to this host (`flightdeck run` beside it) live in its
/// runtime: the host stays until they finish. A stop signal ends the wait; shutting down then
/// cancels them through the gate, and their terminals are told.
async fn finish_hosted_runs(runtime: &Runtime) {
    let mut stops = Stops::listen();
    loop {
        let live = runtime.active_run_ids();
        let Some(next) = live.first() else { return };
        eprintln!(
            "flightdeck: waiting for {} other terminals started on this host ({next}...); \
             Ctrl-C cancels them",
            plural(live.len(), "run")
        );
        tokio::select! {
            _ = stops.next() => return,
            _ = runtime.wait_run(next) => {}
        }
    }
}

/// Close the host (attached clients are told) and shut the runtime down.
async fn shutdown(runtime: Arc<Runtime>, host: Option<Host>) {
    if let Some(host) = host {
        host.close().await;
    }
    match Arc::try_unwrap(runtime) {
        Ok(runtime) => runtime.shutdown().await,
        Err(runtime) => {
            let _ = runtime.flush().await;
        }
    }
}

/// `resume RUN`: goes on with an interrupted run; the same output and exit codes as `run`.
/// Exit 2 when the run cannot be resumed: unknown, finished, or its owner is alive (the
/// message names the owner's pid).
pub fn resume(globals: &Globals, run: &str, options: &RunOptions) -> i32 {
    headless(globals, |settings| resume_headless(globals, run, options, settings))
}

async fn resume_headless(
    globals: &Globals,
    run: &str,
    options: &RunOptions,
    settings: Settings,
) -> i32 {
    let runtime = match Runtime::start(RuntimeOptions {
        project_dir: globals.project_dir.clone(),
        data_dir: globals.data_dir.clone(),
        settings,
        watch_agents: false,
    }) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::INVALID;
        }
    };
    // Subscribed before the run resumes, and paced, as for `run`.
    let (events, printed) = runtime.bus().paced_sink();
    let handle = match runtime.resume_run(&globals.user, run, options.backend.clone()) {
        Ok(handle) => handle,
        Err(error) => {
            match &error {
                RuntimeError::Denied(denied) => eprintln!("flightdeck: refused: {denied}"),
                other => eprintln!("flightdeck: {other}"),
            }
            runtime.shutdown().await;
            return exit::INVALID;
        }
    };
    let code = follow(&runtime, handle, events, &printed, options).await;
    runtime.shutdown().await;
    code
}

/// Print a started (or resumed) run's events as the store commits them, refuse approvals
/// nobody can give (or say how to give them, with `--approvals wait`), stop cleanly on a
/// signal; returns the exit code. The caller shuts the runtime down.
async fn follow(
    runtime: &Runtime,
    handle: crate::engine::RunHandle,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Arc<Envelope>>,
    printed: &Arc<Backlog>,
    options: &RunOptions,
) -> i32 {
    let run = handle.id().clone();
    let mut printer =
        PrinterThread::start(options.json, &run, options.wait_for_approvals, Arc::clone(printed));
    let reader_gone = printer.reader_gone();
    let mut committed = PrintCommitted::default();
    // One listener per signal for the whole run, so none falls between two polls.
    let mut stops = Stops::listen();
    let mut interrupted: Option<Stop> = None;
    // Taken from the sink in batches: one wait (and one poll of the signal listeners) per
    // batch rather than per event.
    let mut received = Vec::with_capacity(PRINT_BATCH);
    let status = loop {
        let count = tokio::select! {
            biased;
            stop = async {
                tokio::select! {
                    stop = stops.next() => stop,
                    // Once: the reader stays gone, and a stop is already under way.
                    () = reader_gone.wait(), if interrupted.is_none() => Stop::ReaderGone,
                }
            } => {
                if let Some(first) = interrupted {
                    // A second signal: whoever sent it does not want to wait for the clean-up.
                    printer.line("interrupted again: exiting without waiting");
                    printer.finish_now();
                    std::process::exit(first.exit_code());
                }
                interrupted = Some(stop);
                printer.line(format!(
                    "{}: cancelling the run (Ctrl-C again to exit at once)",
                    stop.describe()
                ));
                let why = format!("{}: the headless run was interrupted", stop.describe());
                if let Err(error) = runtime.interrupt(&run, &why).await {
                    printer.line(format!("cannot cancel the run: {error}"));
                }
                continue;
            }
            count = events.recv_many(&mut received, PRINT_BATCH) => count,
        };
        if count == 0 {
            break RunStatus::Cancelled;
        }
        for envelope in received.drain(..) {
            if let Event::TaskAwaitingApproval { task, .. } = &envelope.event
                && envelope.run_id.as_ref() == Some(&run)
            {
                if options.wait_for_approvals {
                    printer.line(format!(
                        "{task} waits for a reviewer: `flightdeck approve {run} {task}` from \
                         another terminal (deadline in {})",
                        crate::words::duration(runtime.settings().policies.approval_timeout)
                    ));
                } else if let Err(error) = runtime.refuse_unattended(&run, task, NO_REVIEWER) {
                    printer.line(format!("cannot refuse approval of {task}: {error}"));
                }
            }
            if let Event::ConflictStep { task, step: LadderStep::Operator, .. } = &envelope.event
                && envelope.run_id.as_ref() == Some(&run)
            {
                // `--decide wait` or `--approvals wait`: a person in another terminal may
                // settle it (an attached console's prompt, `flightdeck resolve`), unless
                // `--decide recommend` said how.
                if options.wait_for_decisions
                    || (options.wait_for_approvals && !options.take_recommendation)
                {
                    printer.line(format!(
                        "{task} has a conflict waiting for a person: `flightdeck approvals` \
                         lists it, `flightdeck resolve {run} {task} CHOICE` or an attached \
                         console's prompt settles it"
                    ));
                } else if let Err(error) =
                    runtime.settle_unattended(&run, task, options.take_recommendation)
                {
                    printer.line(format!("cannot settle the conflict of {task}: {error}"));
                }
            }
            committed.push(envelope);
        }
        if (events.is_empty() || committed.is_full())
            && let Some(status) = committed.print(runtime, &mut printer).await
        {
            break status;
        }
    };
    printed.close();
    printer.finish().await;
    if let Some(stop) = interrupted {
        stop.exit_code()
    } else if status == RunStatus::Succeeded {
        exit::OK
    } else {
        exit::FAILED
    }
}
