//! The live descendants of a process, read from `/proc`.
//!
//! `/proc/<pid>/task/<tid>/children` would be cheaper, but it needs `CONFIG_PROC_CHILDREN`,
//! which some kernels (Firecracker guests among them) leave out; every Linux has
//! `/proc/<pid>/stat` with the parent's pid, so the tree is built from that.

use std::collections::HashMap;

use nix::unistd::Pid;

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    pid: i32,
    parent: i32,
    zombie: bool,
}

/// Every process below `root` (children, their children, …) that has not exited yet,
/// parents before their children. A zombie is left out: it is already dead, and its parent
/// (or, once that dies too, the subreaper) reaps it.
pub fn descendants(root: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut children: HashMap<i32, Vec<Entry>> = HashMap::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        // A process may exit between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if let Some(entry) = parse_stat(pid, &stat) {
            children.entry(entry.parent).or_default().push(entry);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root.as_raw()];
    while let Some(parent) = queue.pop() {
        for child in children.remove(&parent).unwrap_or_default() {
            queue.push(child.pid);
            if !child.zombie {
                found.push(Pid::from_raw(child.pid));
            }
        }
    }
    found
}

/// The state and parent from `pid (comm) S ppid …`. The command name may hold spaces and
/// parentheses, so the fields are read after its last `)`.
fn parse_stat(pid: i32, stat: &str) -> Option<Entry> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let parent = fields.next()?.parse().ok()?;
    Some(Entry { pid, parent, zombie: state == "Z" || state == "X" })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stat_with_an_awkward_command_name() {
        let stat = "4242 (a) b (c) S 17 4242 17 0 -1 4194304";
        assert_eq!(parse_stat(4242, stat), Some(Entry { pid: 4242, parent: 17, zombie: false }));
        let zombie = "7 (sh) Z 3 7 3 0";
        assert_eq!(parse_stat(7, zombie), Some(Entry { pid: 7, parent: 3, zombie: true }));
        assert_eq!(parse_stat(7, "7 (sh"), None);
    }

    #[test]
    fn finds_a_child_and_its_child() {
        let mut child =
            std::process::Command::new("sh").args(["-c", "sleep 30 & wait"]).spawn().unwrap();
        let me = nix::unistd::getpid();
        let child_pid = Pid::from_raw(child.id() as i32);
        let mut found = Vec::new();
        for _ in 0..200 {
            found = descendants(me);
            if found.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(found.contains(&child_pid), "{found:?}");
        let grandchildren = descendants(child_pid);
        assert_eq!(grandchildren.len(), 1, "{grandchildren:?}");
        assert!(found.contains(&grandchildren[0]));
        child.kill().unwrap();
        child.wait().unwrap();
        for pid in grandchildren {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
