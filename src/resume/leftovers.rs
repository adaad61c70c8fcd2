//! Agent processes an interrupted run left behind. Every child Flightdeck starts for an
//! attempt gets `FLIGHTDECK_RUN=<run id>` in its environment and a process group of its own;
//! whatever it starts inherits both. The kernel keeps them for as long as a process lives, so
//! they record the run's process groups even when the host died before it could store
//! anything. Before a run resumes, every such process is killed with its group (SIGKILL: the
//! host that could have asked them to stop nicely is gone).

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::ids::RunId;
use crate::store::owner::LOCKS_DIR;
use crate::store::{Owner, owner};

/// How long [`kill_leftovers`] waits for killed processes to disappear.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);

/// A live process of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    /// Its process group (the attempt's group unless it left it).
    pub pgid: i32,
}

/// Every live process (other than this one) whose environment names `run`.
pub fn leftovers(run: &RunId) -> Vec<Leftover> {
    let marker = format!("FLIGHTDECK_RUN={run}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Processes of other users cannot be read: they are not ours to kill either.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()) {
            continue;
        }
        if let Some(pgid) = process_group(&entry.path()) {
            found.push(Leftover { pid, pgid });
        }
    }
    found
}

/// Kill every leftover process of `run` with its process group and wait (up to 5 s) until
/// none is left; returns how many processes there were.
pub fn kill_leftovers(run: &RunId) -> usize {
    let found = leftovers(run);
    if found.is_empty() {
        return 0;
    }
    let mut groups: Vec<i32> = found.iter().map(|l| l.pgid).filter(|g| *g > 1).collect();
    groups.sort_unstable();
    groups.dedup();
    let own_group = nix::unistd::getpgrp().as_raw();
    for group in groups.into_iter().filter(|g| *g != own_group) {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    // A process that left its attempt's group (setsid) is killed on its own.
    for leftover in &found {
        let _ = kill(Pid::from_raw(leftover.pid), Signal::SIGKILL);
    }
    tracing::warn!(%run, processes = found.len(), "killed leftover agent processes");
    let began = Instant::now();
    while began.elapsed() < GONE_TIMEOUT && found.iter().any(|l| is_running(l.pid)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    found.len()
}

/// Kill the leftover agents of runs that died before their start was stored: their lock
/// file exists, nobody holds it, and the store has no row for them, so they can never be
/// resumed (or listed). `is_stored` says whether the store has a run. Returns the processes
/// killed.
pub fn sweep_unstored(data_dir: &Path, is_stored: impl Fn(&RunId) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join(LOCKS_DIR)) else { return 0 };
    let mut killed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(run) = name.to_str().and_then(|n| n.strip_suffix(".lock")).map(RunId::new) else {
            continue;
        };
        if is_stored(&run) || owner(data_dir, &run) != Owner::Gone {
            continue;
        }
        killed += kill_leftovers(&run);
    }
    killed
}

/// The process group in `/proc/<pid>/stat` (the fifth field; the second, the command name in
/// parentheses, may hold spaces).
fn process_group(proc_dir: &Path) -> Option<i32> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    let _ppid = fields.next()?;
    fields.next()?.parse().ok()
}

/// Alive and not a zombie (a killed child of a dead host is reaped by init).
fn is_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|at| stat[at + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;

    use super::*;

    #[test]
    fn a_process_of_the_run_and_its_group_are_found_and_killed() {
        let run = RunId::new(format!("r-leftover-{}", std::process::id()));
        // A shell in its own group that starts a grandchild: both carry the run's marker.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .env("FLIGHTDECK_RUN", run.as_str())
            .process_group(0)
            .spawn()
            .expect("spawn");
        // Both there, the grandchild past its exec (a forked child's environment reads
        // empty while it execs, so under load it could be counted once and not again).
        let settled = || {
            let found = leftovers(&run);
            let sleeping = found.iter().any(|l| {
                std::fs::read_to_string(format!("/proc/{}/comm", l.pid))
                    .is_ok_and(|comm| comm.trim() == "sleep")
            });
            found.len() == 2 && sleeping
        };
        let began = Instant::now();
        while !settled() && began.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let found = leftovers(&run);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|l| l.pgid == child.id() as i32), "{found:?}");
        assert!(leftovers(&RunId::new("r-other")).iter().all(|l| l.pgid != child.id() as i32));
        assert_eq!(kill_leftovers(&run), 2);
        let _ = child.wait();
        assert!(leftovers(&run).is_empty());
    }
}
