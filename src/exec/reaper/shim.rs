//! `flightdeck __reap HOST GRACE_MS ERROR_FILE -- PROGRAM ARGS…`: the small program each
//! attempt's program runs under.
//!
//! It marks itself a child subreaper, so a descendant whose parent exits is re-parented to it
//! rather than to init, wherever it moved in process groups and sessions; then it starts the
//! program with its own stdin, stdout and stderr (the attempt's pipes) and waits. When the
//! program exits, whatever it left behind is killed. On SIGTERM, SIGINT or SIGHUP (sent by
//! Flightdeck to stop the attempt, or as its parent-death signal when Flightdeck itself goes)
//! every descendant gets SIGTERM, then SIGKILL after the grace. Either way it exits only once
//! no descendant is left, which also closes the last copy of the attempt's pipes, and it
//! exits the way the program did (the same code, or the same signal).
//!
//! It is synchronous and single-threaded: the signals it handles are blocked and taken with
//! `sigwait`, and it reaps with `waitpid(-1)`, which is only safe in a process where nothing
//! else waits for children (so not in Flightdeck itself, whose runtime reaps its own).

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::tree;

/// The hidden subcommand: `flightdeck __reap …`.
pub const SUBCOMMAND: &str = "__reap";
/// The shim's exit code when the program could not be started; the reason is then in the
/// error file. (A program may exit with 127 itself; then there is no error file.)
pub const SPAWN_FAILED: i32 = 127;
/// Exit code for arguments that do not follow the form above.
const USAGE: i32 = 2;
/// How long descendants sent SIGKILL get to disappear; only a process stuck in the kernel
/// (uninterruptible sleep) takes longer, and then the shim gives up on it.
pub const KILL_WAIT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(5);

/// What `flightdeck __reap` was asked to do.
#[derive(Debug, PartialEq)]
struct Request {
    /// Flightdeck's pid: if it is no longer the parent, it died before the shim could ask to
    /// hear of it, and nobody would ever stop the program.
    host: Pid,
    grace: Duration,
    error_file: PathBuf,
    program: OsString,
    args: Vec<OsString>,
}

impl Request {
    fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Self, String> {
        let mut next = |what: &str| args.next().ok_or_else(|| format!("missing {what}"));
        let host = next("the host pid")?;
        let host = host.to_str().and_then(|s| s.parse::<i32>().ok()).ok_or("bad host pid")?;
        let grace = next("the grace")?;
        let grace = grace.to_str().and_then(|s| s.parse::<u64>().ok()).ok_or("bad grace")?;
        let error_file = PathBuf::from(next("the error file")?);
        if next("`--`")? != "--" {
            return Err("expected `--` before the program".into());
        }
        let program = next("the program")?;
        Ok(Self {
            host: Pid::from_raw(host),
            grace: Duration::from_millis(grace),
            error_file,
            program,
            args: args.collect(),
        })
    }
}

/// How the wait for the program ended.
enum Ending {
    /// It exited (or was killed by someone else): clear up after it at once.
    Exited,
    /// Flightdeck (or the kernel, for a dead Flightdeck) asked to stop.
    Stop,
}

/// Runs the shim on the arguments after `__reap` and returns its exit code, unless it ends by
/// re-raising the signal that killed the program.
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let request = match Request::parse(args) {
        Ok(request) => request,
        Err(message) => {
            eprintln!(
                "flightdeck {SUBCOMMAND}: {message} (usage: flightdeck {SUBCOMMAND} HOST_PID \
                 GRACE_MS ERROR_FILE -- PROGRAM ARGS…; Flightdeck starts this itself)"
            );
            return USAGE;
        }
    };
    run(&request)
}

fn run(request: &Request) -> i32 {
    if let Err(error) = prctl::set_child_subreaper(true) {
        eprintln!(
            "flightdeck {SUBCOMMAND}: cannot become a child subreaper ({error}); processes \
             that leave the attempt's process group may outlive it"
        );
    }
    // Flightdeck set SIGKILL as our parent-death signal; SIGTERM lets us stop the tree first.
    if prctl::set_pdeathsig(Signal::SIGTERM).is_err() || nix::unistd::getppid() != request.host {
        return USAGE;
    }
    let watched = watched_signals();
    if let Err(error) = watched.thread_block() {
        eprintln!("flightdeck {SUBCOMMAND}: cannot block signals: {error}");
        return USAGE;
    }
    // std resets the signal mask of the child before exec, so the program starts with none of
    // these blocked.
    let mut command = std::process::Command::new(&request.program);
    command.args(&request.args);
    crate::exec::process::die_with_host(&mut command);
    let leader = match command.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(error) => {
            write_error_file(request, &error);
            return SPAWN_FAILED;
        }
    };
    let mut reaper = Reaper { leader, status: None };
    let ending = loop {
        match watched.wait() {
            Ok(Signal::SIGCHLD) => {
                reaper.reap();
                if reaper.status.is_some() {
                    break Ending::Exited;
                }
            }
            Err(Errno::EINTR) => {}
            // A stop signal, or sigwait failing: stop rather than wait blind.
            Ok(_) | Err(_) => break Ending::Stop,
        }
    };
    if matches!(ending, Ending::Stop) {
        reaper.terminate(request.grace);
    }
    reaper.kill_all();
    exit_as(reaper.status)
}

fn watched_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        set.add(signal);
    }
    set
}

/// The shim's children and how the program (the `leader`) ended.
struct Reaper {
    leader: Pid,
    status: Option<WaitStatus>,
}

impl Reaper {
    /// Reaps every child that has exited; true while any child is left.
    fn reap(&mut self) -> bool {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return true,
                Ok(status) => {
                    if status.pid() == Some(self.leader) {
                        self.status = Some(status);
                    }
                }
                Err(Errno::EINTR) => {}
                // ECHILD: nobody is left.
                Err(_) => return false,
            }
        }
    }

    /// SIGTERM (and SIGCONT, for a stopped one) to every descendant, then up to `grace` for
    /// all of them to exit.
    fn terminate(&mut self, grace: Duration) {
        for pid in tree::descendants(nix::unistd::getpid()) {
            let _ = kill(pid, Signal::SIGTERM);
            let _ = kill(pid, Signal::SIGCONT);
        }
        let until = Instant::now() + grace;
        while self.reap() && Instant::now() < until {
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL to every descendant until none is left. Each round finds what the last one
    /// missed: a process forked just before its parent was killed, or a grandchild
    /// re-parented to the shim.
    fn kill_all(&mut self) {
        let until = Instant::now() + KILL_WAIT;
        loop {
            for pid in tree::descendants(nix::unistd::getpid()) {
                let _ = kill(pid, Signal::SIGKILL);
            }
            if !self.reap() {
                return;
            }
            if Instant::now() >= until {
                eprintln!(
                    "flightdeck {SUBCOMMAND}: some processes did not exit {} s after SIGKILL",
                    KILL_WAIT.as_secs()
                );
                return;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Ends the shim the way the program ended: its exit code, or death by its signal.
fn exit_as(status: Option<WaitStatus>) -> i32 {
    match status {
        Some(WaitStatus::Exited(_, code)) => code,
        Some(WaitStatus::Signaled(_, signal, _)) => {
            // The program's core dump, if any, was written; the shim's would only mislead.
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            let _ = signal_hook::low_level::emulate_default_handler(signal as i32);
            // Still here: the signal is one whose default is to be ignored.
            128 + signal as i32
        }
        // Never reaped within the kill wait: report a failure.
        _ => 1,
    }
}

/// Tells Flightdeck why the program could not be started: the error's kind on the first line,
/// its text on the second. Created afresh (never through an existing file or link).
fn write_error_file(request: &Request, error: &std::io::Error) {
    let kind = super::SpawnErrorKind::of(error.kind());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&request.error_file)
        .and_then(|mut file| writeln!(file, "{}\n{error}", kind.as_str()));
    if let Err(e) = written {
        eprintln!(
            "flightdeck {SUBCOMMAND}: cannot start `{}`: {error} (and cannot report it: {e})",
            request.program.to_string_lossy()
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Result<Request, String> {
        Request::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        let request = parse(&["12", "500", "/tmp/e", "--", "sh", "-c", "true"]).unwrap();
        assert_eq!(request.host, Pid::from_raw(12));
        assert_eq!(request.grace, Duration::from_millis(500));
        assert_eq!(request.error_file, PathBuf::from("/tmp/e"));
        assert_eq!(request.program, "sh");
        assert_eq!(request.args, ["-c", "true"]);
        assert_eq!(
            parse(&["12", "500", "/tmp/e", "sh"]).unwrap_err(),
            "expected `--` before the program"
        );
        assert_eq!(parse(&["12", "500", "/tmp/e", "--"]).unwrap_err(), "missing the program");
        assert_eq!(parse(&["x"]).unwrap_err(), "bad host pid");
    }
}
