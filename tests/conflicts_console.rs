//! The conflict prompt in a pseudo-terminal: the real binary runs `workflows/review.yaml`
//! (sim panels, no key), the prompt opens by itself, a verdict is chosen with keys, a note
//! typed, the confirmation answered, and the decision is found in the audit log. The screen
//! is parsed with vt100 and polled against a deadline; no fixed sleeps.

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
        Self::start_in(tempfile::tempdir().unwrap(), extra, &[])
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

    /// Whether the screen satisfies `check` within `limit` (for keys that may be ignored).
    fn wait_within(&self, limit: Duration, check: impl Fn(&str) -> bool) -> bool {
        let (lock, changed) = &*self.output;
        let deadline = Instant::now() + limit;
        let mut out = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if check(&out.parser.screen().contents()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || out.closed {
                return false;
            }
            out =
                changed.wait_timeout(out, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn screen(&self) -> String {
        let (lock, _) = &*self.output;
        lock.lock().unwrap_or_else(PoisonError::into_inner).parser.screen().contents()
    }

    fn wait_text(&self, text: &str) {
        self.wait_for(text, |screen| screen.contains(text));
    }

    fn press(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Wait for the child to exit; returns its success, the raw output and the data dir.
    fn finish(mut self) -> (bool, Vec<u8>, tempfile::TempDir) {
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
        (status.success(), raw, self.data_dir)
    }
}

#[test]
fn a_conflict_is_resolved_with_keys_a_note_and_the_confirmation_and_audited() {
    let mut session = Session::start(&["--workflow", "workflows/review.yaml"]);
    session.wait_text("Conflict: a person decides");
    let task = {
        let screen = session.screen();
        let line = screen.lines().find(|l| l.contains(" task ")).unwrap().to_owned();
        let after = &line[line.find(" task ").unwrap() + " task ".len()..];
        after.split_whitespace().next().unwrap().to_owned()
    };
    // A prompt that popped up by itself ignores choices for a moment: press until it takes.
    let deadline = Instant::now() + DEADLINE;
    loop {
        session.press(b"2");
        if session.wait_within(Duration::from_millis(300), |s| s.contains("▸[ 2 ")) {
            break;
        }
        assert!(Instant::now() < deadline, "verdict 2 was never chosen:\n{}", session.screen());
    }
    // Enter asks for a note; typing `q` there is text, not quit.
    session.press(b"\r");
    session.wait_text("note (optional):");
    session.press(b"quick pages win");
    session.wait_text("note (optional): quick pages win");
    session.press(b"\r");
    session.wait_text(&format!("Settle {task} with"));
    session.press(b"y");
    session.wait_for("the conflict settled", |screen| {
        !screen.contains(&format!("Settle {task} with"))
            && screen.contains("resolved (operator by alice)")
    });
    // Every decision taken is listed: D opens the Conflicts list (after putting off the
    // other panel's prompt, if its third agent sent it to a person meanwhile).
    let deadline = Instant::now() + DEADLINE;
    loop {
        if session.screen().contains("Conflict: a person decides") {
            session.press(b"\x1b");
            session.wait_for("the prompt put off", |s| !s.contains("Conflict: a person decides"));
        }
        session.press(b"D");
        if session.wait_within(Duration::from_secs(2), |s| s.contains("Conflicts ·")) {
            break;
        }
        assert!(Instant::now() < deadline, "no conflicts list:\n{}", session.screen());
    }
    session.wait_for("the decision listed", |s| s.contains("operator by alice"));
    session.press(b"\x1b");
    session.wait_for("the list closed", |s| !s.contains("Conflicts ·"));
    // Quitting asks while the run is live (Ctrl-c twice is the yes); a finished run quits.
    session.press(b"\x03");
    if session.wait_within(Duration::from_secs(5), |s| s.contains("Quit?")) {
        session.press(b"\x03");
    }
    let (success, raw, data_dir) = session.finish();
    assert!(success, "exit status 0");
    assert!(String::from_utf8_lossy(&raw).contains("\x1b[?1049l"), "left the alternate screen");
    let audit = data_dir.path().join("audit.jsonl");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let record = records
        .iter()
        .find(|r| r["action"] == "resolve_conflict")
        .expect("an audit record of the decision");
    assert_eq!(record["user"], "alice");
    assert_eq!(record["outcome"], "accepted");
    assert_eq!(record["detail"]["command"]["task"], task.as_str());
    assert_eq!(record["detail"]["command"]["choice"]["verdict"], 2);
    assert_eq!(record["detail"]["command"]["note"], "quick pages win");
}
