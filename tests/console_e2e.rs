//! The real binary in a pseudo-terminal: the console comes up, takes keys, runs a workflow,
//! quits with status 0 and leaves the terminal as it found it. The screen is parsed with
//! vt100 and polled against a deadline; no fixed sleeps.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

const ROWS: u16 = 40;
const COLS: u16 = 120;
/// Generous: a debug build on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// What the reader thread has seen so far.
struct Output {
    parser: vt100::Parser,
    raw: Vec<u8>,
    closed: bool,
}

struct Session {
    output: Arc<(Mutex<Output>, Condvar)>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
    data_dir: tempfile::TempDir,
}

impl Session {
    fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra, env)
    }

    fn start_in(data_dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 })
            .unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_flightdeck"));
        command.args(["--project-dir", env!("CARGO_MANIFEST_DIR")]);
        command.arg("--data-dir");
        command.arg(data_dir.path());
        command.args(["--as", "alice"]);
        command.args(extra);
        command.cwd(env!("CARGO_MANIFEST_DIR"));
        command.env("TERM", "xterm-256color");
        command.env_remove("NO_COLOR");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = pair.slave.spawn_command(command).unwrap();
        // Only the child holds the slave now, so the reader sees the end when it exits.
        drop(pair.slave);

        let output = Arc::new((
            Mutex::new(Output {
                parser: vt100::Parser::new(ROWS, COLS, 0),
                raw: Vec::new(),
                closed: false,
            }),
            Condvar::new(),
        ));
        let mut reader = pair.master.try_clone_reader().unwrap();
        let shared = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                let read = reader.read(&mut chunk);
                let (lock, changed) = &*shared;
                let mut out = lock.lock().unwrap_or_else(PoisonError::into_inner);
                match read {
                    Ok(n) if n > 0 => {
                        out.parser.process(&chunk[..n]);
                        out.raw.extend_from_slice(&chunk[..n]);
                    }
                    // EOF, or EIO once the child closed the terminal.
                    _ => out.closed = true,
                }
                changed.notify_all();
                if out.closed {
                    return;
                }
            }
        });
        let writer = pair.master.take_writer().unwrap();
        Self { output, writer, child, _master: pair.master, data_dir }
    }

    /// Wait until the parsed screen satisfies `check`, or fail showing the screen.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) {
        let (lock, changed) = &*self.output;
        let deadline = Instant::now() + DEADLINE;
        let mut out = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let screen = out.parser.screen().contents();
            if check(&screen) {
                return;
            }
            let now = Instant::now();
            assert!(!out.closed, "the console exited while waiting for {what}:\n{screen}");
            assert!(now < deadline, "timed out waiting for {what}:\n{screen}");
            out =
                changed.wait_timeout(out, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn wait_text(&self, text: &str) {
        self.wait_for(text, |screen| screen.contains(text));
    }

    fn press(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Quit with `q`; returns whether the exit status was success and the raw output.
    fn quit(mut self) -> (bool, Vec<u8>) {
        self.press(b"q");
        self.wait_exit()
    }

    /// Wait for the child to exit on its own; returns its success and the raw output.
    fn wait_exit(self) -> (bool, Vec<u8>) {
        let (status, raw, _data_dir) = self.finish();
        (status.success(), raw)
    }

    /// [`Session::wait_exit`] with the exit status, keeping the data dir to look into.
    fn finish(mut self) -> (portable_pty::ExitStatus, Vec<u8>, tempfile::TempDir) {
        let (lock, changed) = &*self.output;
        let deadline = Instant::now() + DEADLINE;
        let mut out = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !out.closed {
            let now = Instant::now();
            assert!(
                now < deadline,
                "the console did not exit:\n{}",
                out.parser.screen().contents()
            );
            out =
                changed.wait_timeout(out, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        let raw = out.raw.clone();
        drop(out);
        let status = self.child.wait().unwrap();
        (status, raw, self.data_dir)
    }
}

/// The data dir holds one run, stored as cancelled.
fn assert_one_cancelled_run(data_dir: &std::path::Path) {
    let store = flightdeck::store::RunStore::open(data_dir.join("runs.db")).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, flightdeck::store::RunState::Cancelled, "{:?}", runs[0]);
}

/// Everything the console logged in `data_dir`.
fn logs(data_dir: &std::path::Path) -> String {
    std::fs::read_dir(data_dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
        .collect()
}

fn assert_restored(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let entered = text.find("\x1b[?1049h").expect("entered the alternate screen");
    let left = text.rfind("\x1b[?1049l").expect("left the alternate screen");
    assert!(left > entered);
    assert!(
        text.trim_end_matches(['\r', '\n']).ends_with("\x1b[?1049l"),
        "leaving the alternate screen comes last"
    );
    let hidden = text.rfind("\x1b[?25l").unwrap_or(0);
    let shown = text.rfind("\x1b[?25h").expect("cursor shown again");
    assert!(shown > hidden, "the cursor is shown after it was last hidden");
    // Mouse capture off (crossterm disables the SGR and normal tracking modes).
    let captured = text.rfind("\x1b[?1000h").expect("mouse captured");
    let released = text.rfind("\x1b[?1000l").expect("mouse released");
    assert!(released > captured);
}

#[test]
fn console_shows_panes_takes_keys_and_restores_the_terminal() {
    let mut session = Session::start(&[]);
    session.wait_for("all panes", |screen| {
        ["Agents", "Pool", "DAG", "Breakers", "Audit", "alice@admin"]
            .iter()
            .all(|t| screen.contains(t))
    });
    session.wait_text("backend-architect");

    session.press(b"\t");
    session.wait_text("│ Breakers │");
    session.press(b"?");
    session.wait_text("Commands (press : first)");
    session.press(b"\x1b");
    session.wait_for("help closed", |screen| !screen.contains("Commands (press : first)"));

    session.press(b":spawn backend-architect");
    session.wait_text(":spawn backend-architect");
    session.press(b"\r");
    session.wait_for("an instance in the Pool", |screen| {
        screen.lines().any(|line| line.contains(" i1 ") && line.contains("backend-"))
    });
    session.wait_text("1 live");

    let (success, raw) = session.quit();
    assert!(success, "exit status 0");
    assert_restored(&raw);
}

#[test]
fn demo_workflow_runs_to_completion() {
    let mut session = Session::start(&["--workflow", "workflows/demo.yaml"]);
    session.wait_text("demo");
    session.wait_for("the run to succeed", |screen| {
        screen.lines().next().is_some_and(|header| header.contains("✓ succeeded"))
    });
    session.wait_for("every task done", |screen| {
        // The DAG title says `demo · done/total`.
        let Some(at) = screen.find("demo · ") else { return false };
        let counts: String =
            screen[at + "demo · ".len()..].chars().take_while(|c| *c != ' ').collect();
        counts.split_once('/').is_some_and(|(done, total)| done == total && done != "0")
    });
    // Moving through the DAG keeps working after the run.
    session.press(b"l");
    session.press(b"\r");
    session.wait_text("· run demo ═");
    session.press(b"\x1b");
    // Esc and a key in one read would be Alt+key: wait for Esc to land first.
    session.wait_for("details closed", |screen| !screen.contains("· run demo ═"));
    let (success, raw) = session.quit();
    assert!(success, "exit status 0");
    assert_restored(&raw);
}

#[test]
fn a_panic_restores_the_terminal_and_says_where_the_log_is() {
    let session = Session::start_with_env(&[], &[("FLIGHTDECK_DEBUG_PANIC", "1")]);
    let (status, raw, data_dir) = session.finish();
    assert!(!status.success(), "a panic is a failure exit");
    // The log it points to says what broke.
    let logged = logs(data_dir.path());
    assert!(
        logged.contains("the console crashed")
            && logged.contains("FLIGHTDECK_DEBUG_PANIC is set")
            && logged.contains("src/console/app.rs"),
        "{logged}"
    );
    let text = String::from_utf8_lossy(&raw);
    let entered = text.find("\x1b[?1049h").expect("entered the alternate screen");
    let left = text.find("\x1b[?1049l").expect("left the alternate screen");
    let message = text.find("the console crashed; the log is at").expect("says where the log is");
    assert!(entered < left && left < message, "restored before the message:\n{text}");
    assert!(text[message..].contains("flightdeck.") && text[message..].contains(".log"));
    let shown = text.find("\x1b[?25h").expect("cursor shown again");
    assert!(shown < message);
}

/// Closing the terminal window (or losing the SSH session) hangs up the console's terminal:
/// the console must still cancel its runs and store them as cancelled, not die mid-way on a
/// write to a terminal that is gone.
#[test]
fn closing_the_terminal_cancels_the_runs_cleanly() {
    let pair = native_pty_system()
        .openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 })
        .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_flightdeck"));
    command.args(["--project-dir", env!("CARGO_MANIFEST_DIR")]);
    command.arg("--data-dir");
    command.arg(data_dir.path());
    command.args(["--as", "alice", "--workflow", "workflows/release.yaml"]);
    command.cwd(env!("CARGO_MANIFEST_DIR"));
    command.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(command).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let writer = pair.master.take_writer().unwrap();
    // The run waits for an approval: it cannot finish by itself before the hang-up.
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    let deadline = Instant::now() + DEADLINE;
    let mut chunk = [0u8; 8192];
    while !parser.screen().contents().contains("Approval needed") {
        assert!(Instant::now() < deadline, "{}", parser.screen().contents());
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0, "the console exited early");
        parser.process(&chunk[..n]);
    }
    // Every handle on the terminal's master side closes: the kernel hangs it up.
    drop(reader);
    drop(writer);
    drop(pair.master);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the console did not exit after the hang-up");
        std::thread::sleep(Duration::from_millis(20));
    };
    // As shells report a process SIGHUP ended, and as a headless `run` exits.
    assert_eq!(status.exit_code(), 129, "{}", logs(data_dir.path()));
    assert_one_cancelled_run(data_dir.path());
}

/// `kill` (SIGTERM, a container stop) ends the console as it ends a headless run: the live
/// run cancelled and stored so, the terminal restored, exit 143.
#[test]
fn a_terminate_signal_cancels_the_run_restores_the_terminal_and_exits_143() {
    let session = Session::start(&["--workflow", "workflows/release.yaml"]);
    session.wait_text("Approval needed");
    let pid = session.child.process_id().expect("the console's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, raw, data_dir) = session.finish();
    assert_eq!(status.exit_code(), 143);
    assert_restored(&raw);
    assert_one_cancelled_run(data_dir.path());
}

/// `q` while a run waits for an approval asks first and says what happens to the run; yes
/// cancels it through the gate (audited as alice's `cancel_run`), stored as cancelled. On
/// the way, the Runs list (W) lists the live run as waiting (for a person: its approvals).
#[test]
fn quitting_with_a_live_run_asks_then_cancels_it_through_the_gate() {
    let mut session = Session::start(&["--workflow", "workflows/release.yaml"]);
    // Both approvals of the release (release-notes, security-review) are asked; Later on each
    // (the second prompt opens as the first closes): they stay pending, the run stays live.
    session.wait_for("both approvals asked", |screen| {
        screen.contains("2 awaiting approval") && screen.contains("Approval needed")
    });
    session.press(b"\x1b");
    // Apart, so the terminal does not read two escapes as one Alt-Esc.
    std::thread::sleep(Duration::from_millis(300));
    session.press(b"\x1b");
    session.wait_for("the prompts closed", |screen| !screen.contains("Approval needed"));
    session.press(b"W");
    session.wait_for("the Runs list", |screen| {
        screen.contains("Runs · ")
            && screen.lines().any(|l| l.contains("waiting") && l.contains("release"))
    });
    session.press(b"\x1b");
    session.wait_for("the Runs list closed", |screen| !screen.contains("Runs · "));
    session.press(b"q");
    session.wait_text("Quit? 1 live run (release) is cancelled");
    session.press(b"y");
    let (status, raw, data_dir) = session.finish();
    assert!(status.success(), "exit status 0");
    assert_restored(&raw);
    assert_one_cancelled_run(data_dir.path());
    let audit = std::fs::read_to_string(data_dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|line| line.contains("cancel_run") && line.contains("alice")),
        "the cancel is audited as alice's command:\n{audit}"
    );
}

/// `flightdeck replay last` on a run stored by a headless `run`: REPLAY in the header, the
/// cursor steps and jumps, `q` leaves at once (a replayed run is not live), exit 0.
#[test]
fn replay_opens_a_stored_run_with_a_time_cursor() {
    let data_dir = tempfile::tempdir().unwrap();
    let stored = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--project-dir", env!("CARGO_MANIFEST_DIR")])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--as", "alice", "run", "workflows/demo.yaml", "--backend", "sim"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    let mut session = Session::start_in(data_dir, &["replay", "last"], &[]);
    session.wait_for("the replay header", |screen| {
        screen
            .lines()
            .next()
            .is_some_and(|header| header.contains("REPLAY") && header.contains("· 0/"))
    });
    session.press(b"\x1b[C");
    session.wait_for("one event on", |screen| {
        screen.lines().next().is_some_and(|header| header.contains("· 1/"))
    });
    // A task at a time: the run has started and its first task ended.
    session.press(b"\x1b[6~");
    session.wait_for("the first task's end", |screen| {
        screen
            .lines()
            .next()
            .is_some_and(|header| header.contains("demo") && header.contains("▶ running"))
    });
    session.press(b"\x1b[F");
    session.wait_for("the end: the run succeeded", |screen| {
        screen.lines().next().is_some_and(|header| header.contains("✓ succeeded"))
    });
    let (success, raw) = session.quit();
    assert!(success, "exit status 0");
    assert_restored(&raw);
}

/// The Runs list (`W`) lists a run stored by a headless `run`; `p` opens it in replay (REPLAY
/// in the header, `End` shows it succeeded), `q` goes back to the list over the live console,
/// `q` closes the list and `q` quits (no live run).
#[test]
fn the_runs_list_opens_a_stored_run_in_replay_and_q_goes_back() {
    let data_dir = tempfile::tempdir().unwrap();
    let stored = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--project-dir", env!("CARGO_MANIFEST_DIR")])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--as", "alice", "run", "workflows/demo.yaml", "--backend", "sim"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    let mut session = Session::start_in(data_dir, &[], &[]);
    session.wait_text("no run yet");
    session.press(b"W");
    session.wait_for("the stored run listed, replay offered", |screen| {
        screen.lines().any(|l| l.contains("succeeded") && l.contains("demo"))
            && screen.contains("p replay")
    });
    session.press(b"p");
    session.wait_for("the replay header", |screen| {
        screen
            .lines()
            .next()
            .is_some_and(|header| header.contains("REPLAY") && header.contains("· 0/"))
    });
    session.press(b"\x1b[F");
    session.wait_for("the end: the run succeeded", |screen| {
        screen.lines().next().is_some_and(|h| h.contains("REPLAY") && h.contains("✓ succeeded"))
    });
    session.press(b"q");
    session.wait_for("back to the Runs list over the live console", |screen| {
        screen.lines().next().is_some_and(|header| !header.contains("REPLAY"))
            && screen.contains("p replay")
    });
    session.press(b"q");
    session.wait_for("the Runs list closed", |screen| !screen.contains("p replay"));
    let (success, raw) = session.quit();
    assert!(success, "exit status 0");
    assert_restored(&raw);
}
