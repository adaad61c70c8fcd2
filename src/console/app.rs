//! The only impure part of the console: the terminal, the event channels, timers and theme
//! files. [`run_loop`] selects over terminal input, runtime events and a wake-up timer, feeds
//! the reducer, forwards its commands and redraws only when something changed, at most once
//! per frame. With nothing on screen depending on time, it sleeps until input arrives.

use std::cell::Cell;
use std::io::{self, Stdout};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use color_eyre::eyre::WrapErr;
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind,
    MouseButton, MouseEventKind,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::buffer::Buffer;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::keys::{self, Action};
use super::reducer::{Effect, Input, reduce};
use super::replay::Replay;
use super::state::State;
use super::theme::{self, Theme};
use super::{Attention, ConsoleLink, ConsoleOptions, HostFeed, LiveFeed, panes};
use crate::command::Command;
use crate::event::Envelope;

/// Shortest time between two frames; bursts of events within it share one redraw.
pub const FRAME_MS: u64 = 25;
/// How long quitting waits for the runs it cancelled to end before it leaves anyway (the
/// runtime's shutdown then stops what is left).
const QUIT_GRACE: Duration = Duration::from_secs(3);
/// Events taken from the broadcast per wake-up before the screen gets a turn.
const EVENT_BURST: usize = 1024;

/// Run the console until the operator quits (`None`) or a stop signal ends it (the exit code
/// a shell reports for it, 143 or 129). Restores the terminal on every exit path, including
/// panics.
pub async fn run(options: ConsoleOptions, link: ConsoleLink) -> color_eyre::Result<Option<i32>> {
    install_panic_hook(options.log_file.clone());
    let guard = TerminalGuard::enter().wrap_err("cannot set up the terminal")?;
    // Debug builds only: lets the end-to-end test prove the panic path restores the terminal.
    #[cfg(debug_assertions)]
    assert!(std::env::var_os("FLIGHTDECK_DEBUG_PANIC").is_none(), "FLIGHTDECK_DEBUG_PANIC is set");
    // No `Terminal::clear`: it asks the terminal for the cursor position, which some
    // terminals (and test harnesses) never answer. Entering the alternate screen cleared it.
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let settings = LoopSettings {
        project_dir: options.project_dir.clone(),
        theme: options.theme.clone(),
        no_color: theme::no_color_requested(std::env::var_os("NO_COLOR").as_deref()),
        start_workflow: options.start_workflow.clone(),
        attention: options.attention,
    };
    let signalled = Cell::new(None);
    let stop = async { signalled.set(Some(termination().await)) };
    let result =
        run_loop(&mut terminal, EventStream::new(), link, settings, crate::bus::now_ms, stop, None)
            .await;
    // After a hang-up (the terminal window or SSH session closed) the terminal is gone:
    // ratatui's drop would report the cursor it cannot show with `eprintln!`, which panics on
    // a dead terminal and would abort before the runs are cancelled and stored. Show it here
    // and, if that fails, skip the drop; there is no terminal left to restore.
    if terminal.show_cursor().is_ok() {
        drop(terminal);
    } else {
        std::mem::forget(terminal);
    }
    drop(guard);
    ended(result, signalled.get())
}

/// How a console loop's end is reported: `None` when the operator quit, else the exit code of
/// what ended it. A terminal that failed because it is gone (its window or SSH session
/// closed) is a hang-up, whichever the console saw first, the failed write or the SIGHUP.
fn ended<T>(
    result: color_eyre::Result<T>,
    signalled: Option<i32>,
) -> color_eyre::Result<Option<i32>> {
    match result {
        Ok(_) => Ok(signalled),
        Err(error) if terminal_gone(&error) => {
            tracing::info!(error = %format!("{error:#}"), "the terminal is gone: ended as a hang-up");
            Ok(Some(128 + 1))
        }
        Err(error) => Err(error),
    }
}

/// Whether `error` says the terminal is gone: EIO or ENXIO on its device, or a broken pipe.
fn terminal_gone(error: &color_eyre::Report) -> bool {
    error.chain().filter_map(|cause| cause.downcast_ref::<io::Error>()).any(|cause| {
        cause.kind() == io::ErrorKind::BrokenPipe
            || cause.raw_os_error().is_some_and(|code| {
                code == nix::errno::Errno::EIO as i32 || code == nix::errno::Errno::ENXIO as i32
            })
    })
}

/// What the loop needs besides the link.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub project_dir: PathBuf,
    pub theme: Option<String>,
    pub no_color: bool,
    pub start_workflow: Option<PathBuf>,
    pub attention: Attention,
}

/// Reported each time the loop has handled everything it was given and drawn it.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Terminal inputs handled so far.
    pub inputs: u64,
    /// The last frame drawn.
    pub screen: Buffer,
    pub state: State,
}

/// The next inputs from the live feed, with what already waits behind them (up to a
/// burst); `None` once the feed closed.
async fn next_inputs(
    feed: &mut LiveFeed,
    resync: &(dyn Fn() -> Vec<Arc<Envelope>> + Send + Sync),
) -> Option<Vec<Input>> {
    match feed {
        LiveFeed::Bus(events) => {
            let first = match events.recv().await {
                Ok(envelope) => Input::Event(envelope),
                Err(RecvError::Lagged(missed)) => Input::Resync { backlog: resync(), missed },
                Err(RecvError::Closed) => return None,
            };
            let mut batch = vec![first];
            for _ in 0..EVENT_BURST {
                match events.try_recv() {
                    Ok(envelope) => batch.push(Input::Event(envelope)),
                    Err(TryRecvError::Lagged(missed)) => {
                        batch.push(Input::Resync { backlog: resync(), missed });
                    }
                    Err(_) => break,
                }
            }
            Some(batch)
        }
        LiveFeed::Host(items) => {
            let mut batch = vec![host_input(items.recv().await?)];
            for _ in 0..EVENT_BURST {
                match items.try_recv() {
                    Ok(item) => batch.push(host_input(item)),
                    Err(_) => break,
                }
            }
            Some(batch)
        }
    }
}

fn host_input(item: HostFeed) -> Input {
    match item {
        HostFeed::Event(envelope) => Input::Event(envelope),
        HostFeed::Digest(digest) => Input::Digest(digest),
        HostFeed::Resync { backlog, missed } => Input::Resync { backlog, missed },
    }
}

/// The console loop over any terminal backend and input stream, so tests can drive it with
/// scripted keys and a `TestBackend`. `clock` gives wall-clock milliseconds; `stop` ends the
/// loop (signals); `idle` receives a report whenever the loop has caught up. Returns the final
/// state.
#[allow(clippy::too_many_arguments)]
pub async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    mut input: S,
    link: ConsoleLink,
    settings: LoopSettings,
    clock: fn() -> u64,
    stop: impl Future<Output = ()>,
    idle: Option<mpsc::UnboundedSender<Idle>>,
) -> color_eyre::Result<State>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let ConsoleLink {
        backlog,
        mut events,
        commands,
        user,
        role,
        resync,
        stored_runs,
        run_events,
        attached,
    } = link;
    let loaded = theme::load(&settings.project_dir, settings.theme.as_deref(), settings.no_color);
    let mut theme: Theme = loaded.theme;
    let mut state = State::new(&user, &role, settings.project_dir.clone(), theme.name());
    state.attached = attached;
    // The clock first: a message said before the first tick would expire on it, unseen.
    reduce(&mut state, Input::Tick(clock()));
    if let Some(problem) = loaded.problem {
        tracing::warn!(theme = ?settings.theme, %problem, "theme not loaded; using the default");
        reduce(
            &mut state,
            Input::ThemeApplied {
                name: theme.name().to_owned(),
                problem: Some(problem.to_string()),
            },
        );
    }
    let size = terminal.size()?;
    reduce(&mut state, Input::Resize { width: size.width, height: size.height });
    reduce(&mut state, Input::Backlog(backlog));
    if let Some(workflow) = settings.start_workflow.clone() {
        let command = Command::StartRun { workflow, backend: None, max_parallel: None };
        if commands.send(command).is_err() {
            reduce(&mut state, Input::RuntimeGone);
        }
    }

    tokio::pin!(stop);
    let frame = Duration::from_millis(FRAME_MS);
    let mut events_open = true;
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    let mut inputs: u64 = 0;
    let mut quit_at: Option<Instant> = None;
    // A stored run opened in replay from the Runs list: drawn and given the keys instead of
    // the live console, which goes on folding its events underneath until the replay closes.
    let mut replay: Option<Replay> = None;
    loop {
        if dirty && last_draw.is_none_or(|at| at.elapsed() >= frame) {
            reduce(&mut state, Input::Tick(clock()));
            let size = terminal.size()?;
            if (size.width, size.height) != (state.screen.width, state.screen.height) {
                reduce(&mut state, Input::Resize { width: size.width, height: size.height });
            }
            if let Some(open) = replay.as_mut()
                && (size.width, size.height) != (open.state.screen.width, open.state.screen.height)
            {
                reduce(&mut open.state, Input::Resize { width: size.width, height: size.height });
            }
            let shown = replay.as_ref().map_or(&state, |open| &open.state);
            let completed = terminal.draw(|f| panes::draw(f, shown, &theme))?;
            if let Some(idle) = &idle {
                let report =
                    Idle { inputs, screen: completed.buffer.clone(), state: shown.clone() };
                // A test that stopped listening is not the console's problem.
                let _ = idle.send(report);
            }
            dirty = false;
            last_draw = Some(Instant::now());
        }
        // Quitting waits (a little) for the runs it cancelled to end, so their
        // `RunFinished` is the gate's cancel and not the shutdown's.
        if quit_at.is_some_and(|at| state.live_runs().is_empty() || Instant::now() >= at) {
            break;
        }
        let frame_due = last_draw.map_or_else(Instant::now, |at| at + frame);
        let wake = state.next_deadline_ms().map(|deadline| {
            Instant::now() + Duration::from_millis(deadline.saturating_sub(clock()))
        });
        let mut batch: Vec<Input> = Vec::new();
        tokio::select! {
            biased;
            () = &mut stop => break,
            next = input.next() => match next {
                Some(Ok(event)) if replay.is_some() => {
                    inputs += 1;
                    dirty = true;
                    if let TermEvent::Resize(width, height) = event {
                        batch.push(Input::Resize { width, height });
                    }
                    if replay.as_mut().is_some_and(|open| replay_input(open, &event)) {
                        replay = None;
                        // "replaying run …" was said when it opened; it is over.
                        state.message = None;
                    }
                }
                Some(Ok(event)) => {
                    inputs += 1;
                    // Redraw even for unbound keys so every input ends in an idle report.
                    dirty = true;
                    // The reducer's clock, current for keys that depend on time (a prompt that
                    // just opened ignores approve and reject).
                    batch.push(Input::Tick(clock()));
                    batch.extend(terminal_input(&state, &event).map(Input::Action));
                    if let TermEvent::Resize(width, height) = event {
                        batch.push(Input::Resize { width, height });
                    }
                }
                Some(Err(err)) => return Err(err).wrap_err("reading terminal input"),
                // The input stream only ends when the terminal is gone.
                None => break,
            },
            received = next_inputs(&mut events, &resync), if events_open => {
                if let Some(inputs) = received {
                    batch.extend(inputs);
                } else {
                    events_open = false;
                    batch.push(Input::RuntimeGone);
                }
            }
            () = tokio::time::sleep_until(frame_due), if dirty => {}
            () = sleep_until_opt(quit_at), if quit_at.is_some() => {}
            () = tokio::time::sleep(frame), if replay.as_ref().is_some_and(Replay::is_playing) => {
                if let Some(open) = replay.as_mut() {
                    open.play_frame(FRAME_MS);
                }
                dirty = true;
            }
            () = sleep_until_opt(wake), if wake.is_some() && !dirty => {
                batch.push(Input::Tick(clock()));
            }
        }
        let mut calls = Vec::new();
        for item in batch {
            dirty = true;
            calls.extend(attention_calls(&item));
            if let Input::Resync { missed, .. } = &item {
                tracing::warn!(missed, "console lagged behind the event stream; resynced");
            }
            for effect in reduce(&mut state, item) {
                match effect {
                    Effect::Send(command) => {
                        tracing::info!(command = command.name(), user = %user, "console command");
                        if commands.send(command).is_err() {
                            reduce(&mut state, Input::RuntimeGone);
                        }
                    }
                    Effect::LoadTheme(name) => {
                        let loaded =
                            theme::load(&settings.project_dir, Some(&name), settings.no_color);
                        theme = loaded.theme;
                        let problem = loaded.problem.map(|p| p.to_string());
                        if let Some(problem) = &problem {
                            tracing::warn!(theme = %name, %problem, "theme not loaded; using the default");
                        }
                        let name = theme.name().to_owned();
                        reduce(&mut state, Input::ThemeApplied { name, problem });
                    }
                    Effect::LoadRuns => {
                        reduce(&mut state, Input::RunsLoaded(stored_runs()));
                    }
                    Effect::ListWorkflows => {
                        let files = super::command_line::workflow_files(&settings.project_dir);
                        reduce(&mut state, Input::WorkflowsListed(files));
                    }
                    Effect::LoadRun(run) => {
                        let events = run_events(&run);
                        reduce(&mut state, Input::RunLoaded { run, events });
                    }
                    Effect::OpenReplay(run) => {
                        let events = run_events(&run);
                        if events.is_empty() {
                            // Said like any stored run that cannot be read.
                            reduce(&mut state, Input::RunLoaded { run, events });
                        } else {
                            replay = Some(open_replay(&state, events));
                        }
                    }
                    // A live console has no time cursor, and no replay to leave.
                    Effect::Seek(_) | Effect::LeaveReplay => {}
                    Effect::Quit => {
                        let grace =
                            if state.runtime_connected { QUIT_GRACE } else { Duration::ZERO };
                        quit_at = Some(Instant::now() + grace);
                    }
                }
            }
        }
        // Between two frames, so the sequences never split one of ratatui's.
        call_a_person(settings.attention, &calls);
    }
    Ok(state)
}

/// Replay a stored run (`flightdeck replay RUN`): the console on `events` with a time cursor.
/// No runtime, no command channel: nothing can change. Restores the terminal on every exit.
/// Ends as [`run`] does: `None` when the operator quits, else the stop signal's exit code.
pub async fn replay(
    options: ConsoleOptions,
    user: &str,
    events: Vec<Arc<Envelope>>,
) -> color_eyre::Result<Option<i32>> {
    install_panic_hook(options.log_file.clone());
    let guard = TerminalGuard::enter().wrap_err("cannot set up the terminal")?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let no_color = theme::no_color_requested(std::env::var_os("NO_COLOR").as_deref());
    let signalled = Cell::new(None);
    let stop = async { signalled.set(Some(termination().await)) };
    let result = replay_loop(
        &mut terminal,
        EventStream::new(),
        &options,
        user,
        events,
        no_color,
        stop,
        None,
    )
    .await;
    if terminal.show_cursor().is_ok() {
        drop(terminal);
    } else {
        std::mem::forget(terminal);
    }
    drop(guard);
    ended(result, signalled.get())
}

/// The replay loop over any backend and input stream (tests drive it like [`run_loop`]).
/// Playing advances the cursor by the events' own time, 1× or 10×.
#[allow(clippy::too_many_arguments)]
pub async fn replay_loop<B, S>(
    terminal: &mut Terminal<B>,
    mut input: S,
    options: &ConsoleOptions,
    user: &str,
    events: Vec<Arc<Envelope>>,
    no_color: bool,
    stop: impl Future<Output = ()>,
    idle: Option<mpsc::UnboundedSender<Idle>>,
) -> color_eyre::Result<State>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let loaded = theme::load(&options.project_dir, options.theme.as_deref(), no_color);
    let theme: Theme = loaded.theme;
    // A viewer: the keys that would change anything are not even offered.
    let mut base = State::new(user, "viewer", options.project_dir.clone(), theme.name());
    let size = terminal.size()?;
    reduce(&mut base, Input::Resize { width: size.width, height: size.height });
    let mut replay = Replay::open(events, base);
    tokio::pin!(stop);
    let frame = Duration::from_millis(FRAME_MS);
    let mut inputs: u64 = 0;
    // Every wake-up is an input or a playing frame: each redraws.
    loop {
        {
            let size = terminal.size()?;
            let state = &mut replay.state;
            if (size.width, size.height) != (state.screen.width, state.screen.height) {
                reduce(state, Input::Resize { width: size.width, height: size.height });
            }
            let completed = terminal.draw(|f| panes::draw(f, &replay.state, &theme))?;
            if let Some(idle) = &idle {
                let report =
                    Idle { inputs, screen: completed.buffer.clone(), state: replay.state.clone() };
                let _ = idle.send(report);
            }
        }
        tokio::select! {
            biased;
            () = &mut stop => break,
            next = input.next() => match next {
                Some(Ok(event)) => {
                    inputs += 1;
                    if replay_input(&mut replay, &event) {
                        return Ok(replay.state);
                    }
                }
                Some(Err(err)) => return Err(err).wrap_err("reading terminal input"),
                None => break,
            },
            () = tokio::time::sleep(frame), if replay.is_playing() => replay.play_frame(FRAME_MS),
        }
    }
    Ok(replay.state)
}

/// A terminal event in a replay: keys move the cursor; returns whether the operator left it.
/// Nothing else can come of it (a replay runs as a viewer and its reducer drops commands).
fn replay_input(replay: &mut Replay, event: &TermEvent) -> bool {
    if let TermEvent::Resize(width, height) = *event {
        reduce(&mut replay.state, Input::Resize { width, height });
    }
    let Some(action) = terminal_input(&replay.state, event) else { return false };
    let mut leave = false;
    for effect in reduce(&mut replay.state, Input::Action(action)) {
        match effect {
            Effect::Seek(seek) => {
                replay.seek(seek);
            }
            Effect::Quit | Effect::LeaveReplay => leave = true,
            Effect::Send(_)
            | Effect::LoadTheme(_)
            | Effect::LoadRuns
            | Effect::ListWorkflows
            | Effect::LoadRun(_)
            | Effect::OpenReplay(_) => {}
        }
    }
    leave
}

/// The replay of a stored run opened from the live console's Runs list: a viewer (nothing
/// can be sent from it), the live console's user, theme and size, the cursor at the start.
fn open_replay(live: &State, events: Vec<Arc<Envelope>>) -> Replay {
    let mut base = State::new(&live.user, "viewer", live.project_dir.clone(), &live.theme_name);
    reduce(&mut base, Input::Resize { width: live.screen.width, height: live.screen.height });
    Replay::open(events, base)
}

async fn sleep_until_opt(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// What a terminal event means: keys through the keymap, clicks and the wheel by position.
fn terminal_input(state: &State, event: &TermEvent) -> Option<Action> {
    match event {
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => keys::action_for(state, key),
        TermEvent::Mouse(mouse) => match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                Some(Action::Click { column: mouse.column, row: mouse.row })
            }
            MouseEventKind::ScrollDown => {
                Some(Action::Scroll { column: mouse.column, row: mouse.row, down: true })
            }
            MouseEventKind::ScrollUp => {
                Some(Action::Scroll { column: mouse.column, row: mouse.row, down: false })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Resolves when the process is asked to stop (SIGTERM, SIGHUP), so the guard still restores
/// the terminal, to the exit code a shell reports for a process that signal ended (128 + its
/// number), which the console exits with. Raw mode turns Ctrl-C into a key, handled by the
/// keymap.
async fn termination() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hangup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => 128 + 15,
        _ = hangup.recv() => 128 + 1,
    }
}

/// Raw mode, alternate screen, mouse capture and a hidden cursor while alive; all undone on
/// drop, whatever the exit path.
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        enable_raw_mode()?;
        let guard = Self { _private: () };
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            crossterm::terminal::Clear(crossterm::terminal::ClearType::All),
            EnableMouseCapture,
            crossterm::cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal(&mut io::stdout());
    }
}

/// Best effort: every step runs even if an earlier one failed. Leaving the alternate screen
/// comes last, so it is the final thing the terminal sees.
fn restore_terminal(out: &mut Stdout) {
    let _ = disable_raw_mode();
    let _ = execute!(out, DisableMouseCapture, crossterm::cursor::Show, LeaveAlternateScreen);
}

/// Restore the terminal before anything else prints, say where the log is, then let the
/// previous hook report the panic. Installed once per process, before raw mode.
fn install_panic_hook(log_file: PathBuf) {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(move || {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal(&mut io::stdout());
            // The log says what broke, where the message says to look.
            tracing::error!(panic = %info, "the console crashed");
            // Never `eprintln!` here: on a terminal that is gone it panics inside the hook,
            // and a panic in a panic hook aborts the process.
            let _ = std::io::Write::write_fmt(
                &mut io::stderr(),
                format_args!(
                    "flightdeck: the console crashed; the log is at {}\n",
                    display(&log_file)
                ),
            );
            previous(info);
        }));
    });
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;

/// What to tell a person about an input's events, for those that ask for one.
fn attention_calls(item: &Input) -> Vec<String> {
    match item {
        Input::Event(envelope) => attention_call(envelope).into_iter().collect(),
        // A flood's digest sends whole every event that asks for a person.
        Input::Digest(digest) => {
            digest.parts.iter().flat_map(|part| &part.events).filter_map(attention_call).collect()
        }
        _ => Vec::new(),
    }
}

/// What to tell a person about `envelope`, when it asks for one.
fn attention_call(envelope: &crate::event::Envelope) -> Option<String> {
    use crate::event::Event;
    match &envelope.event {
        Event::TaskAwaitingApproval { task, .. } => Some(format!("{task} waits for approval")),
        Event::ApprovalOverdue { task, .. } => Some(format!("{task}: approval overdue")),
        Event::ConflictStep { task, step: crate::conflict::LadderStep::Operator, .. } => {
            Some(format!("{task}: a conflict waits for a person"))
        }
        _ => None,
    }
}

/// Ring the bell and send one desktop notification for every call of one batch (coalesced),
/// on a real terminal only.
fn call_a_person(attention: Attention, calls: &[String]) {
    use std::io::{IsTerminal as _, Write as _};
    if calls.is_empty() || !(attention.bell || attention.desktop) || !io::stdout().is_terminal() {
        return;
    }
    // Task ids are plain names; still, nothing but printable text goes into the sequence.
    let text: String = match calls {
        [one] => one.clone(),
        many => format!("{} tasks wait for a person: {}", many.len(), many.join(", ")),
    }
    .chars()
    .filter(|c| !c.is_control())
    .collect();
    let mut out = String::new();
    if attention.bell {
        out.push('\x07');
    }
    if attention.desktop {
        out.push_str("\x1b]9;Flightdeck: ");
        out.push_str(&text);
        out.push_str("\x07\x1b]777;notify;Flightdeck;");
        out.push_str(&text);
        out.push('\x07');
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
}
