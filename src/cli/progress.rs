//! Human progress lines for a run's events, live (`flightdeck run`) or replayed from the run
//! store (`flightdeck runs events`); with `--json`, every envelope on stdout as it is stored.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::Backlog;
use crate::event::{Envelope, Event, Risk, RunStatus, WorkspaceKind};
use crate::ids::{RunId, TaskId};
use crate::model::TaskClocks;
use crate::safety::{Enforcement, SafetyAction};
use crate::store::Encoder;
use crate::terminal::{sanitize, sanitize_line};
use crate::words::plural;

/// Largest `--json` line buffer kept between events.
const LINE_KEPT: usize = 64 * 1024;

/// Bytes gathered before a printer that does not defer writes them out.
const SPILL_AT: usize = 64 * 1024;

/// Where the elapsed time at the start of each line comes from.
enum Clock {
    /// A run happening now.
    Live(Instant),
    /// A stored run: the time of the event shown, from the run's first event.
    Replay { first_ms: Option<u64>, now_ms: u64 },
}

/// Human progress on stderr; with `--json`, every envelope on stdout too.
pub(crate) struct Printer {
    json: bool,
    run: RunId,
    clock: Clock,
    /// The run folded as far as its clocks: attempts by backend kind, and when each task's
    /// round began, so "took" covers the whole task.
    clocks: TaskClocks,
    /// `run --approvals wait`: approvals wait for a reviewer instead of being refused.
    waits_for_reviewers: bool,
    /// A progress line before it is sanitised.
    scratch: String,
    /// What is to go to stdout and stderr. A live run's printer leaves it for
    /// [`Printer::flush`] (a hosted run's printer is on a thread of its own, see
    /// [`PrinterThread`]). Other printers write it out once [`SPILL_AT`] bytes gather.
    out: Vec<u8>,
    err: Vec<u8>,
    deferred: bool,
    /// `--json` lines, written as the run store writes them (byte for byte what `serde_json`
    /// writes for the envelope, without the cost of its `flatten`).
    encoder: Encoder,
}

impl Printer {
    /// For a run starting now. Its output waits for [`Printer::flush`].
    pub(crate) fn live(json: bool, run: RunId) -> Self {
        Self { deferred: true, ..Self::new(json, run, Clock::Live(Instant::now())) }
    }

    /// Approvals of this live run wait for reviewers (`run --approvals wait`).
    pub(crate) fn waiting_for_reviewers(mut self) -> Self {
        self.waits_for_reviewers = true;
        self
    }

    /// For the stored events of `run`, shown with their time since the run's first event.
    pub(crate) fn replay(json: bool, run: RunId) -> Self {
        Self::new(json, run, Clock::Replay { first_ms: None, now_ms: 0 })
    }

    fn new(json: bool, run: RunId, clock: Clock) -> Self {
        Self {
            json,
            clocks: TaskClocks::for_run(run.clone()),
            scratch: String::new(),
            run,
            clock,
            waits_for_reviewers: false,
            out: Vec::with_capacity(SPILL_AT),
            err: Vec::with_capacity(SPILL_AT),
            deferred: false,
            encoder: Encoder::default(),
        }
    }

    fn simulated_summary(&self) -> String {
        match (self.clocks.simulated_attempts, self.clocks.real_attempts) {
            (0, _) => String::new(),
            (_, 0) => "  (SIMULATED: no real agent ran)".to_owned(),
            (sim, real) => format!("  (PARTLY SIMULATED: {sim} of {} attempts)", sim + real),
        }
    }

    pub(crate) fn line(&mut self, text: &str) {
        self.line_fmt(format_args!("{text}"));
    }

    /// [`Printer::line`] without formatting the text into a `String` first (the two lines of
    /// every task go through here).
    fn line_fmt(&mut self, text: std::fmt::Arguments<'_>) {
        let elapsed = match self.clock {
            Clock::Live(began) => began.elapsed().as_secs_f64(),
            Clock::Replay { first_ms, now_ms } => {
                now_ms.saturating_sub(first_ms.unwrap_or(now_ms)) as f64 / 1000.0
            }
        };
        // Agent text (errors quoting a child's stderr, notices) stays on its one line. The
        // text is formatted into a buffer kept between lines, then sanitised.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let _ = std::fmt::Write::write_fmt(&mut scratch, text);
        let _ = writeln!(self.err, "[{elapsed:7.2}s] {}", sanitize_line(&scratch));
        self.scratch = scratch;
        self.spill_if_full();
    }

    /// Write what is gathered, blocking until the pipes take it; `false` when a pipe's
    /// reader is gone (`run --json | head -1`: what was for it is dropped).
    pub(crate) fn flush(&mut self) -> bool {
        let gone = |written: std::io::Result<()>| {
            written.is_err_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
        };
        let out_gone = gone(std::io::stdout().lock().write_all(&self.out));
        let err_gone = gone(std::io::stderr().lock().write_all(&self.err));
        self.out.clear();
        self.err.clear();
        self.keep_buffers_small();
        !(out_gone || err_gone)
    }

    fn spill_if_full(&mut self) {
        if !self.deferred && (self.out.len() >= SPILL_AT || self.err.len() >= SPILL_AT) {
            // A reader that went away is told by the next job's flush.
            let _ = self.flush();
        }
    }

    /// A `run_started` of 100,000 tasks is a 17 MB line: its room is not kept.
    fn keep_buffers_small(&mut self) {
        if self.out.capacity() > LINE_KEPT {
            self.out = Vec::with_capacity(SPILL_AT);
        }
        if self.err.capacity() > LINE_KEPT {
            self.err = Vec::with_capacity(SPILL_AT);
        }
    }

    /// Print one envelope; returns the run's status when this was its `RunFinished`.
    pub(crate) fn print(&mut self, envelope: &Arc<Envelope>) -> Option<RunStatus> {
        if let Clock::Replay { first_ms, now_ms } = &mut self.clock {
            *now_ms = envelope.ts_ms;
            first_ms.get_or_insert(envelope.ts_ms);
        }
        let ours = envelope.run_id.as_ref() == Some(&self.run);
        // Another run's events (runs handed to this process as the data dir's host) are
        // theirs to print: a script reading this stream sees its run and the shared pool.
        if self.json && (ours || envelope.run_id.is_none()) {
            // Encoded in place: a `run_started` of 100,000 tasks is a 17 MB line.
            let start = self.out.len();
            if self.encoder.encode(&mut self.out, envelope).is_ok() {
                // C1 controls pass raw through JSON encoders: shown as `\u00XX` escapes.
                if let Ok(std::borrow::Cow::Owned(clean)) =
                    std::str::from_utf8(&self.out[start..]).map(sanitize)
                {
                    self.out.truncate(start);
                    self.out.extend_from_slice(clean.as_bytes());
                }
                self.out.push(b'\n');
            } else {
                self.out.truncate(start);
            }
            self.spill_if_full();
        }
        if ours {
            self.clocks.apply(envelope);
        }
        let label = |simulated: bool| if simulated { "  SIMULATED" } else { "" };
        match &envelope.event {
            Event::RunStarted { workflow, tasks, simulated, .. } if ours => {
                let note = if *simulated { "  (uses a SIMULATED backend)" } else { "" };
                let text = format!("run {} of {workflow}: {} tasks{note}", self.run, tasks.len());
                self.line(&text);
            }
            Event::RunResumed { .. } if ours => {
                let text = crate::resume::describe(&envelope.event).unwrap_or_default();
                self.line(&format!("run {} {}", self.run, text.trim_start_matches("run ")));
            }
            Event::AttemptInterrupted { .. } if ours => {
                let text = crate::resume::describe(&envelope.event).unwrap_or_default();
                self.line(&format!("interrupt {text}"));
            }
            Event::TaskStarted { task, agent, attempt, backend, simulated, .. } if ours => {
                self.line_fmt(format_args!(
                    "start     {task}  agent {agent}, attempt {attempt}, backend {backend}{}",
                    label(*simulated)
                ));
            }
            Event::TaskSucceeded { task, attempt, duration_ms, simulated, details, .. } if ours => {
                let took = self.took(task, envelope.ts_ms, *attempt, *duration_ms);
                let extra = details.summary().map(|s| format!(" ({s})")).unwrap_or_default();
                self.line_fmt(format_args!(
                    "done      {task}  in {took}{extra}{}",
                    label(*simulated)
                ));
            }
            Event::TaskRetrying { task, attempt, delay_ms, duration_ms, error, .. } if ours => {
                let delay = short(Duration::from_millis(*delay_ms));
                let after = short(Duration::from_millis(*duration_ms));
                let text = format!(
                    "retry     {task}  attempt {attempt} failed after {after}: {error}; retrying in {delay}"
                );
                self.line(&text);
            }
            Event::WorkspaceCreated { task, kind, path, branch, base_from, .. } if ours => {
                let text = match (kind, branch) {
                    (WorkspaceKind::Worktree, Some(branch)) => format!(
                        "workspace {task}  branch {branch} from {} in {}",
                        base_from.as_deref().unwrap_or("HEAD"),
                        path.display()
                    ),
                    _ => format!("workspace {task}  fresh folder {}", path.display()),
                };
                self.line(&text);
            }
            Event::WorkspaceChanges { task, attempt, branch, files, summary, .. } if ours => {
                let text = if files.is_empty() {
                    format!("changes   {task}  attempt {attempt} changed no files on {branch}")
                } else {
                    format!("changes   {task}  {summary} on {branch}")
                };
                self.line(&text);
            }
            Event::TaskFallback { task, from, to, reason } if ours => {
                self.line(&format!("fallback  {task}  {from} → {to}: {reason}"));
            }
            Event::TaskFailed { task, attempt, duration_ms, error, .. } if ours => {
                let took = self.took(task, envelope.ts_ms, *attempt, *duration_ms);
                let attempts = plural(*attempt, "attempt");
                self.line(&format!("FAILED    {task}  after {attempts} in {took}: {error}"));
            }
            Event::TaskSkipped { task, reason } if ours => {
                self.line(&format!("skipped   {task}  {reason}"));
            }
            Event::TaskCancelled { task, reason } if ours => {
                self.line(&format!("cancelled {task}  {reason}"));
            }
            Event::TaskAwaitingApproval { task, risk, reasons, .. } if ours => {
                // A live headless run refuses it at once; a stored run says what followed.
                let outcome = match self.clock {
                    Clock::Live(_) if self.waits_for_reviewers => "; waiting for a reviewer",
                    Clock::Live(_) => "; refused: no reviewer in a headless run",
                    Clock::Replay { .. } => "",
                };
                let text = format!(
                    "approval  {task}  risk {}: {}{outcome}",
                    risk_word(*risk),
                    reasons.join("; ")
                );
                self.line(&text);
            }
            Event::ApprovalDecided { task, approved, by, note } if ours => {
                let word = if *approved { "approved " } else { "rejected " };
                let note = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                self.line(&format!("{word} {task}  by {by}{note}"));
            }
            Event::PanelVerdict { task, agent, verdict, error, asked } if ours => {
                let text = match (verdict, error) {
                    (Some(v), _) => format!(
                        "verdict   {task}  {agent}: \"{}\" (confidence {:.2}{})",
                        v.decision,
                        v.confidence,
                        if *asked > 1 { ", asked twice" } else { "" }
                    ),
                    (None, error) => format!(
                        "verdict   {task}  {agent} gave none, does not vote: {}",
                        error.as_deref().unwrap_or("?")
                    ),
                };
                self.line(&text);
            }
            Event::PanelAgreed { task, decision, agents } if ours => {
                self.line(&format!("agreed    {task}  {} members: \"{decision}\"", agents.len()));
            }
            Event::ConflictDetected { task, verdicts, domain, decide, .. } if ours => {
                let sides: Vec<String> = verdicts
                    .iter()
                    .map(|v| format!("{} ({}) \"{}\"", v.agent, v.domain, v.verdict.decision))
                    .collect();
                let domain =
                    domain.map_or_else(|| "no domain".to_owned(), |d| format!("domain {d}"));
                self.line(&format!(
                    "conflict  {task}  {}; {domain}, decide {}",
                    sides.join(" vs "),
                    decide.as_str()
                ));
            }
            Event::ConflictStep { task, step, finding, .. } if ours => {
                self.line(&format!("ladder    {task}  {step}: {finding}"));
            }
            Event::ConflictResolved { task, decision, winner, resolved_by, by, note } if ours => {
                let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
                let note = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                self.line(&format!(
                    "resolved  {task}  \"{decision}\" ({winner}), {resolved_by}{by}{note}"
                ));
            }
            Event::BreakerOpened { agent, failures, last_error, .. } => {
                self.line(&format!(
                    "breaker   {agent} opened after {failures} failures: {last_error}"
                ));
            }
            Event::Notice { message, .. } => self.line(&format!("notice    {message}")),
            Event::SafetyRuleMatched {
                task,
                policy,
                rule,
                action,
                enforcement,
                source,
                excerpt,
                ..
            } if ours => {
                let what = match (enforcement, action) {
                    (Enforcement::Strict, SafetyAction::Block) => "blocks",
                    (Enforcement::Strict, SafetyAction::Confirm) => "holds for approval",
                    _ => "warns (advisory)",
                };
                self.line(&format!(
                    "safety    {task}  rule {policy}/{rule} {what}: {source}: {excerpt}"
                ));
            }
            Event::RateLimited { task, backend, limit, wait_ms, .. } if ours => {
                self.line(&format!(
                    "waiting   {task}  on rate limit: {backend} {limit}, {:.1}s",
                    *wait_ms as f64 / 1000.0
                ));
            }
            Event::BudgetWarning { task, scope, measure, spent, limit } if ours => {
                self.line(&format!(
                    "budget    {task}  {} budget at {:.0}%: {} of {}",
                    scope.word(),
                    spent / limit * 100.0,
                    measure.amount(*spent),
                    measure.amount(*limit)
                ));
            }
            Event::BudgetExceeded { task, scope, measure, spent, limit } if ours => {
                self.line(&format!(
                    "budget    {task}  {} budget reached: {} of {}",
                    scope.word(),
                    measure.amount(*spent),
                    measure.amount(*limit)
                ));
            }
            Event::RunFinished { status, succeeded, failed, skipped, cancelled, duration_ms }
                if ours =>
            {
                let word = match status {
                    RunStatus::Succeeded => "succeeded",
                    RunStatus::Failed => "FAILED",
                    RunStatus::Cancelled => "cancelled",
                };
                let text = format!(
                    "run {} {word} in {}: {succeeded} succeeded, {failed} failed, {skipped} skipped, {cancelled} cancelled{}",
                    self.run,
                    short(Duration::from_millis(*duration_ms)),
                    self.simulated_summary()
                );
                self.line(&text);
                return Some(*status);
            }
            _ => {}
        }
        None
    }
}

impl Printer {
    /// The whole task's time, from the start of its round to its end at `end_ms`; with the
    /// last attempt's own time when there were several.
    fn took(&self, task: &TaskId, end_ms: u64, attempt: u32, attempt_ms: u64) -> String {
        let whole = self.clocks.whole_task_ms(task, end_ms, attempt_ms);
        let (whole, last) =
            (short(Duration::from_millis(whole)), short(Duration::from_millis(attempt_ms)));
        // The last attempt apart only when it differs (a resumed run's earlier attempt ran
        // in a process whose clock is gone: then the two are the same).
        if attempt > 1 && last != whole {
            format!("{whole} (attempt {attempt} took {last})")
        } else {
            whole
        }
    }
}

/// What the printer's thread is handed, in order.
enum Job {
    /// Committed events to print, and how many events the backlog is to be told of once
    /// they are written (those after the run's end are not printed, but were taken).
    Events(Vec<Arc<Envelope>>, usize),
    Line(String),
}

/// A live run's [`Printer`] on a thread of its own. A 100,000-task run prints 200,000 lines:
/// formatting and writing them is then not the work of the runtime's thread, which runs the
/// engine. The thread writes to the pipes blocking: a reader that stops reading holds it
/// (and, through the backlog, the engine's next tasks), never the runtime that answers
/// `flightdeck approve`.
pub(crate) struct PrinterThread {
    run: RunId,
    to: To,
    gone: Arc<ReaderGone>,
}

/// Said by a [`PrinterThread`] when a reader of its output went away (`run --json | head
/// -1`): the run then stops as on a stop signal, instead of going on unseen while the shell
/// waits for it to end.
#[derive(Default)]
pub(crate) struct ReaderGone {
    notify: tokio::sync::Notify,
}

impl ReaderGone {
    fn say(&self) {
        // One permit, however often it is said, kept for a `wait` that comes later (the run
        // waits for it once).
        self.notify.notify_one();
    }

    /// Resolves once a reader went away.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

enum To {
    Thread {
        jobs: std::sync::mpsc::Sender<Job>,
        thread: std::thread::JoinHandle<()>,
    },
    /// No thread could be had: printed on the caller's, the same lines in the same order.
    Here {
        printer: Box<Printer>,
        printed: Arc<Backlog>,
    },
}

impl PrinterThread {
    /// Start printing the live run `run` (`--json`: every envelope on stdout too; with
    /// `waits_for_reviewers`, approvals wait instead of being refused); `printed` is told
    /// of every event written.
    pub(crate) fn start(
        json: bool,
        run: &RunId,
        waits_for_reviewers: bool,
        printed: Arc<Backlog>,
    ) -> Self {
        let began = Instant::now();
        let printer = {
            let run = run.clone();
            move || Printer { waits_for_reviewers, ..Printer::new(json, run, Clock::Live(began)) }
        };
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let backlog = Arc::clone(&printed);
        let make = printer.clone();
        let gone = Arc::new(ReaderGone::default());
        let said = Arc::clone(&gone);
        let spawned =
            std::thread::Builder::new().name("flightdeck-print".to_owned()).spawn(move || {
                // However the thread ends, the run must not wait for its backlog.
                let _release = Release(Arc::clone(&backlog));
                let mut printer = make();
                for job in inbox {
                    if !printer.take(job, &backlog) {
                        said.say();
                    }
                }
                let _ = printer.flush();
            });
        let to = match spawned {
            Ok(thread) => To::Thread { jobs, thread },
            Err(error) => {
                tracing::warn!(%error, "cannot start the printer's thread; printing in place");
                To::Here { printer: Box::new(printer()), printed }
            }
        };
        Self { run: run.clone(), to, gone }
    }

    /// What says that a reader of the output went away.
    pub(crate) fn reader_gone(&self) -> Arc<ReaderGone> {
        Arc::clone(&self.gone)
    }

    /// Print committed events up to the run's `RunFinished` (what follows it is not);
    /// returns the run's status when they hold it.
    pub(crate) fn events(&mut self, mut events: Vec<Arc<Envelope>>) -> Option<RunStatus> {
        let taken = events.len();
        let end = events.iter().enumerate().find_map(|(at, envelope)| match &envelope.event {
            Event::RunFinished { status, .. } if envelope.run_id.as_ref() == Some(&self.run) => {
                Some((at, *status))
            }
            _ => None,
        });
        if let Some((at, _)) = end {
            events.truncate(at + 1);
        }
        self.send(Job::Events(events, taken));
        end.map(|(_, status)| status)
    }

    /// A line of its own, after what was handed over before it.
    pub(crate) fn line(&mut self, text: impl Into<String>) {
        self.send(Job::Line(text.into()));
    }

    fn send(&mut self, job: Job) {
        match &mut self.to {
            To::Thread { jobs, .. } => {
                // The thread only ends when this is dropped.
                let _ = jobs.send(job);
            }
            To::Here { printer, printed } => {
                if !printer.take(job, printed) {
                    self.gone.say();
                }
            }
        }
    }

    /// Wait until everything handed over is written, without blocking the runtime.
    pub(crate) async fn finish(self) {
        if let To::Thread { jobs, thread } = self.to {
            drop(jobs);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// [`PrinterThread::finish`], blocking: for a process about to exit.
    pub(crate) fn finish_now(self) {
        if let To::Thread { jobs, thread } = self.to {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

/// Closes a backlog when dropped: a printer's thread that ends, even by a panic, holds no run.
struct Release(Arc<Backlog>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Printer {
    /// Do one job of a [`PrinterThread`], writing it out at once; `false` when a reader of
    /// the output is gone.
    fn take(&mut self, job: Job, printed: &Backlog) -> bool {
        match job {
            Job::Events(events, taken) => {
                for envelope in &events {
                    self.print(envelope);
                }
                let open = self.flush();
                printed.done(taken);
                open
            }
            Job::Line(text) => {
                self.line(&text);
                self.flush()
            }
        }
    }
}

pub(crate) fn risk_word(risk: Risk) -> &'static str {
    match risk {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "high",
        Risk::Critical => "critical",
    }
}

/// A duration rounded for people: `850ms`, `12.3s`, `4m 5s`.
pub(crate) fn short(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        crate::words::duration(Duration::from_secs(duration.as_secs()))
    }
}
