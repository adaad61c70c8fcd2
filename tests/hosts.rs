//! Hosts and terminals against a real control socket in a temp data dir, with real OS users:
//! as root (CI), test users are created with `useradd` and every client runs under its own
//! uid, so the host learns who it is from the kernel. Not root: each test says so and skips.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// The group given access to the socket (`host.socket_group`).
const GROUP: &str = "fdhosts";
/// Test users and their roles in the host's flightdeck.yaml.
const USERS: [(&str, &str); 4] =
    [("fdrex", "reviewer"), ("fdrita", "reviewer"), ("fdvic", "viewer"), ("fdann", "admin")];

const WAIT: Duration = Duration::from_secs(60);

/// Create the group and users once per test binary; false (with the reason printed) when
/// the tests cannot switch users.
fn users_ready() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: cannot create test users or run clients as them".into());
        }
        let status = Command::new("groupadd").args(["-f", GROUP]).status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(format!("groupadd {GROUP} failed"));
        }
        for (user, _) in USERS {
            if nix::unistd::User::from_name(user).ok().flatten().is_some() {
                continue;
            }
            let status = Command::new("useradd")
                .args(["-M", "-N", "-g", GROUP, "-s", "/usr/sbin/nologin", user])
                .status();
            if !status.is_ok_and(|s| s.success()) {
                return Err(format!("useradd {user} failed"));
            }
        }
        Ok(())
    });
    match ready {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            false
        }
    }
}

fn ids_of(user: &str) -> (u32, u32) {
    let user = nix::unistd::User::from_name(user).unwrap().unwrap();
    (user.uid.as_raw(), user.gid.as_raw())
}

struct Project {
    dir: TempDir,
}

impl Project {
    /// A project whose `policies` block is `policies` (YAML lines indented by two).
    fn new(policies: &str) -> Self {
        Self::with_extra(policies, "")
    }

    /// [`Project::new`] with more top-level settings.
    fn with_extra(policies: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Clients run as other users: they must reach the data dir's socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path();
        let mut users = String::new();
        for (user, role) in USERS {
            writeln!(users, "  {user}: {role}").unwrap();
        }
        let settings = format!(
            "default_role: viewer\nusers:\n  root: admin\n{users}host:\n  socket_group: {GROUP}\n\
             policies:\n{policies}backends:\n  sim:\n    kind: sim\n    latency_min: 1ms\n    \
             latency_max: 5ms\n{extra}"
        );
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("worker.md"),
            "---\nname: worker\ndescription: Test worker\n---\nYou work.\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(
            root.join("workflows/high.yaml"),
            "name: high\ntasks:\n  - {id: prep, description: Write notes, agent: worker}\n  - \
             {id: rotate, description: Rotate the password store, agent: worker, depends_on: [prep]}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("workflows/release.yaml"),
            "name: release\ntasks:\n  - {id: ship, description: Deploy to production, agent: worker}\n",
        )
        .unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join(".flightdeck")
    }

    /// `flightdeck` as root (the host's account) with these arguments.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap()])
            .args(args)
            .env_remove("FLIGHTDECK_USER");
        command
    }

    /// `flightdeck` run under `user`'s uid and gid: the kernel's word on who asks.
    fn as_user(&self, user: &str, args: &[&str]) -> Output {
        let (uid, gid) = ids_of(user);
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir("/")
            .args(["--data-dir", self.data_dir().to_str().unwrap()])
            .args(args)
            .env_remove("FLIGHTDECK_USER")
            .uid(uid)
            .gid(gid);
        command.output().unwrap()
    }

    /// A headless host: `run WORKFLOW --approvals wait` as root, as `starter`.
    fn host(&self, workflow: &str, starter: &str) -> Child {
        self.command(&["--as", starter, "run", workflow, "--approvals", "wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Wait until `task` waits for approval; returns the approvals entry.
    fn waiting(&self, task: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let output = self.command(&["approvals", "--json"]).output().unwrap();
            if output.status.success() {
                let list: Value = serde_json::from_slice(&output.stdout).unwrap();
                if let Some(found) =
                    list.as_array().unwrap().iter().find(|entry| entry["task"] == task)
                {
                    return found.clone();
                }
            }
            assert!(Instant::now() < deadline, "{task} never waited for approval");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.data_dir().join("audit.jsonl")).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

fn finish(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the host did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn audit_record<'a>(audit: &'a [Value], user: &str, action: &str) -> Option<&'a Value> {
    audit.iter().find(|record| record["user"] == user && record["action"] == action)
}

#[test]
fn a_reviewer_approves_from_another_terminal_and_the_headless_run_completes() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let host = project.host("workflows/high.yaml", "root");
    let waiting = project.waiting("rotate");
    let run = waiting["run"].as_str().unwrap().to_owned();
    assert_eq!(waiting["requested_by"], "root");
    assert_eq!(waiting["needed"], 1);

    // The socket is owner and group only.
    let socket = project.data_dir().join("control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "{mode:o}");

    // A unique start of the run id is enough.
    let runs = project.command(&["runs", "list", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["state"], "waiting", "a task awaiting approval: {runs}");

    let out = project.as_user("fdrex", &["approve", &run[..12], "rotate", "--note", "checked"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("approved as fdrex (reviewer)"), "{}", text(&out.stdout));
    let (code, err) = finish(host);
    assert_eq!(code, 0, "{err}");

    let audit = project.audit();
    let record = audit_record(&audit, "fdrex", "approve").expect("the approval is audited");
    assert_eq!(record["outcome"], "accepted");
    let identity = &record["detail"]["identity"];
    assert_eq!(identity["via"], "peer");
    assert_eq!(identity["uid"], ids_of("fdrex").0);
    assert!(identity["pid"].as_i64().is_some_and(|pid| pid > 0), "{identity}");
    assert_eq!(identity["from"], "command_line");
    // The socket is gone with its host.
    assert!(!socket.exists());
}

#[test]
fn a_viewers_approval_is_refused_and_audited_and_a_reviewer_may_not_act_as_an_admin() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let host = project.host("workflows/high.yaml", "root");
    let run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();

    let out = project.as_user("fdvic", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("fdvic (viewer) may not approve"), "{}", text(&out.stderr));

    // --as may only lower one's role: a reviewer cannot become an admin.
    let out = project.as_user("fdrex", &["--as", "fdann", "approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("may not act as fdann (admin)"), "{}", text(&out.stderr));
    // ... nor claim a name that could forge a log line.
    let out = project.as_user("fdrex", &["--as", "fdvic\nforged", "approvals"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Lowering is fine: a reviewer acting as a viewer may list, not approve.
    let out = project.as_user("fdrex", &["--as", "fdvic", "approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let out = project.as_user("fdrex", &["reject", &run, "rotate", "--note", "not now"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, _) = finish(host);
    assert_eq!(code, 1, "a rejected task fails the run");

    let audit = project.audit();
    let refused = audit_record(&audit, "fdvic", "approve").expect("the refusal is audited");
    assert_eq!(refused["outcome"], "denied");
    assert_eq!(refused["detail"]["identity"]["uid"], ids_of("fdvic").0);
    let claim = audit_record(&audit, "fdrex", "assume_identity").expect("the claim is audited");
    assert_eq!(claim["outcome"], "denied");
    assert_eq!(claim["detail"]["identity"]["via"], "peer");
}

#[test]
fn a_critical_task_needs_two_different_reviewers() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n  two_person_at: critical\n");
    let host = project.host("workflows/release.yaml", "root");
    let run = project.waiting("ship")["run"].as_str().unwrap().to_owned();

    let out = project.as_user("fdrex", &["approve", &run, "ship"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let waiting = project.waiting("ship");
    assert_eq!(waiting["approved_by"], serde_json::json!(["fdrex"]));
    let listed = project.as_user("fdrita", &["approvals"]);
    let listed = text(&listed.stdout);
    assert!(listed.starts_with("approvals waiting for a reviewer (flightdeck approve"), "{listed}");
    assert!(listed.contains("approvals 1 of 2 (fdrex)"), "{listed}");

    let out = project.as_user("fdrex", &["approve", &run, "ship"]);
    assert_eq!(out.status.code(), Some(1), "the same reviewer twice: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already approved"), "{}", text(&out.stderr));

    // `last`: the newest run with something waiting.
    let out = project.as_user("fdrita", &["approve", "last", "ship"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, err) = finish(host);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_runs_starter_cannot_approve_its_own_task() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    // Root starts the run as fdann (root may take any identity).
    let host = project.host("workflows/high.yaml", "fdann");
    let run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();
    let out = project.as_user("fdann", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("separation of duties"), "{}", text(&out.stderr));
    let out = project.as_user("fdrita", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(finish(host).0, 0);
}

#[test]
fn a_passed_deadline_rejects_the_task() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 1s\n  on_timeout: reject\n");
    let host = project.host("workflows/high.yaml", "root");
    let waiting = project.waiting("rotate");
    let deadline = waiting["deadline_ms"].as_u64().unwrap();
    assert_eq!(deadline - waiting["requested_ms"].as_u64().unwrap(), 1000);
    let (code, err) = finish(host);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("approval_timeout (1s)"), "{err}");
}

#[test]
fn a_viewer_with_their_own_project_folder_cannot_change_the_hosts_store() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let out = project.command(&["run", "workflows/release.yaml", "--approvals", "reject"]).output();
    assert_eq!(out.unwrap().status.code(), Some(1), "the run exists, its task refused");
    // A one-line project of one's own that makes everyone an admin.
    let own = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("flightdeck.yaml"), "default_role: admin\n").unwrap();
    let data_dir = project.data_dir();
    let args = [
        "--project-dir",
        own.path().to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--as",
        "fdvic",
        "runs",
        "prune",
        "--keep",
        "0",
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck")).args(args).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("fdvic (viewer) may not prune_runs"),
        "{}",
        text(&out.stderr)
    );
    let listed = project.command(&["runs", "list", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "the run is still there");
}

/// A raw protocol client, as `attach` is one.
struct RawClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RawClient {
    /// Connect as root acting as `as_user` (root may take any identity).
    fn connect(data_dir: &Path, subscribe: bool, as_user: &str) -> Self {
        let stream = UnixStream::connect(data_dir.join("control.sock")).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut client =
            Self { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        client.send(&serde_json::json!({
            "msg": "hello", "version": 2, "from": "attach", "subscribe": subscribe,
            "as_user": as_user
        }));
        let welcome = client.next();
        assert_eq!(welcome["msg"], "welcome", "{welcome}");
        assert_eq!(welcome["user"], as_user);
        assert_eq!(welcome["account"], "root");
        client
    }

    fn send(&mut self, message: &Value) {
        writeln!(self.writer, "{message}").unwrap();
    }

    fn next(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or(Value::Null)
    }
}

#[test]
fn attached_clients_get_the_snapshot_and_live_events_and_survive_a_neighbour_that_vanishes() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let host = project.host("workflows/high.yaml", "fdann");
    let run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();

    let mut watcher = RawClient::connect(&project.data_dir(), true, "fdrex");
    let snapshot = watcher.next();
    assert_eq!(snapshot["msg"], "snapshot");
    let events = snapshot["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["type"] == "task_awaiting_approval" && e["task"] == "rotate"),
        "the snapshot shows what the host's console shows"
    );
    // A neighbour says half a line and vanishes.
    {
        let mut rude = RawClient::connect(&project.data_dir(), true, "fdvic");
        write!(rude.writer, "{{\"msg\":\"comm").unwrap();
    }
    // A command through the socket: its reply, then its effects as live events.
    watcher.send(&serde_json::json!({
        "msg": "command", "id": 7,
        "command": {"command": "approve", "run": run, "task": "rotate", "note": null}
    }));
    let mut replied = false;
    let mut finished = false;
    while !(replied && finished) {
        let message = watcher.next();
        match message["msg"].as_str() {
            Some("reply") => {
                assert_eq!(message["id"], 7);
                assert_eq!(message["outcome"], "done", "{message}");
                replied = true;
            }
            Some("event") if message["event"]["type"] == "run_finished" => finished = true,
            Some("event" | "lagged" | "snapshot") => {}
            Some("closing") => break,
            _ => panic!("unexpected {message}"),
        }
    }
    assert!(replied && finished);
    assert_eq!(finish(host).0, 0);
}

#[test]
fn a_stale_socket_is_replaced_and_a_second_host_is_refused() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let mut host = project.host("workflows/high.yaml", "root");
    project.waiting("rotate");
    // One host per data dir: a second host cannot listen there (a second `run` is handed to
    // the first, see below).
    let lock = project.data_dir().join("host.lock");
    let error = flightdeck::host::HostLock::take(&project.data_dir()).err().unwrap();
    assert!(error.to_string().contains("already hosted by flightdeck pid"), "{error}");
    assert!(lock.exists());

    host.kill().unwrap();
    host.wait().unwrap();
    let socket = project.data_dir().join("control.sock");
    assert!(socket.exists(), "a killed host leaves its socket");
    let out = project.as_user("fdrex", &["approvals"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no flightdeck is running"), "{}", text(&out.stderr));

    let host = project.host("workflows/high.yaml", "root");
    let run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();
    let out = project.as_user("fdrex", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(finish(host).0, 0);
}

#[test]
fn notify_command_runs_within_100_ms_with_one_notification_for_requests_arriving_together() {
    if !users_ready() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("notified");
    // The program notes when it started, then what it was told; one line per run.
    let script = format!(
        "started=$(date +%s%3N); body=$(cat); echo \"$started $body\" >> {}",
        log.display()
    );
    let extra = format!("notify:\n  command: [sh, -c, {}]\n", serde_json::json!(script));
    let project = Project::with_extra("  approval_timeout: 5m\n", &extra);
    std::fs::write(
        project.root().join("workflows/pair.yaml"),
        "name: pair\ntasks:\n  - {id: rotate-a, description: Rotate the password store, agent: worker}\n  \
         - {id: rotate-b, description: Rotate the auth keys, agent: worker}\n",
    )
    .unwrap();
    let host = project.host("workflows/pair.yaml", "root");
    let run = project.waiting("rotate-b")["run"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    while !log.exists() {
        assert!(Instant::now() < deadline, "notify.command never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let notified = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = notified.lines().collect();
    assert_eq!(lines.len(), 1, "two requests at once are one notification: {notified}");
    let (started, body) = lines[0].split_once(' ').unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    let requests = body["waiting_for_a_person"].as_array().unwrap();
    let tasks: Vec<&str> = requests.iter().map(|r| r["task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["rotate-a", "rotate-b"]);
    assert_eq!(requests[0]["run"], run.as_str());
    let since = requests[0]["since"].as_u64().unwrap();
    let latency = started.parse::<u64>().unwrap().saturating_sub(since);
    assert!(latency <= 100, "notify.command started {latency} ms after the request");
    for task in ["rotate-a", "rotate-b"] {
        let out = project.as_user("fdrex", &["approve", &run, task]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(finish(host).0, 0);
}

/// A console in a pseudo-terminal; a thread keeps every byte it writes.
struct Terminal {
    raw: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    writer: Box<dyn std::io::Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Terminal {
    /// `flightdeck` (as root) with `args` in a 120x40 pseudo-terminal.
    fn open(args: &[&str]) -> Self {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let pair = native_pty_system()
            .openpty(PtySize { rows: 40, cols: 120, pixel_width: 0, pixel_height: 0 })
            .unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_flightdeck"));
        command.args(args);
        command.cwd(env!("CARGO_MANIFEST_DIR"));
        command.env("TERM", "xterm-256color");
        command.env_remove("FLIGHTDECK_USER");
        let child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let raw = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&raw);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut reader, &mut chunk) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self { raw, writer, child, _master: pair.master }
    }

    fn screen(&self) -> String {
        let mut parser = vt100::Parser::new(40, 120, 0);
        parser.process(&self.raw.lock().unwrap());
        parser.screen().contents()
    }

    fn wait_for(&self, what: &str, found: impl Fn(&str, &[u8]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let raw = self.raw.lock().unwrap().clone();
            if found(&self.screen(), &raw) {
                return;
            }
            assert!(Instant::now() < deadline, "never saw {what}:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn a_second_console_attaches_shows_the_hosts_screen_and_is_called_when_a_task_waits() {
    if !users_ready() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let manifest = env!("CARGO_MANIFEST_DIR");
    let mut host =
        Terminal::open(&["--project-dir", manifest, "--data-dir", data, "--as", "alice"]);
    host.wait_for("the host's console", |screen, _| screen.contains("Pool"));
    // The second console on the same data dir attaches instead of starting a runtime.
    let mut attached = Terminal::open(&["--project-dir", manifest, "--data-dir", data]);
    attached.wait_for("the attached console", |screen, _| screen.contains("Pool"));
    // A workflow started from the attached console runs on the host.
    attached.writer.write_all(b":run workflows/release.yaml\r").unwrap();
    for terminal in [&host, &attached] {
        terminal.wait_for("the approval prompt", |screen, _| screen.contains("Approval needed"));
        terminal.wait_for("the bell and desktop notifications", |_, raw| {
            contains(raw, b"\x07")
                && contains(raw, b"\x1b]9;Flightdeck: ")
                && contains(raw, b"\x1b]777;notify;Flightdeck;")
        });
    }
    // Detaching leaves the run going on the host.
    attached.writer.write_all(b"\x03").unwrap();
    let deadline = Instant::now() + WAIT;
    while attached.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the attached console did not quit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--data-dir", data, "approvals", "--json"])
        .output()
        .unwrap();
    let waiting: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!waiting.as_array().unwrap().is_empty(), "the run still waits on the host");
    host.child.kill().unwrap();
    host.child.wait().unwrap();
}

/// Settings for a panel whose two members print different verdicts (`x` and `y`, same
/// domain, no evidence): the ladder ends with a person.
const SAY: &str = r#"case "$1" in
  impl-plain) echo '{"decision":"x","rationale":"simpler","confidence":0.9}' ;;
  impl-other) echo '{"decision":"y","rationale":"familiar","confidence":0.5}' ;;
esac
"#;

impl Project {
    /// A project with a panel workflow `workflows/panel.yaml` (task `q`) whose conflict
    /// waits for a person, and `extra` top-level settings.
    fn with_panel(extra: &str) -> Self {
        let project = Self::with_extra("  approval_timeout: 5m\n", "");
        let root = project.root();
        std::fs::write(root.join("say.sh"), SAY).unwrap();
        let settings = std::fs::read_to_string(root.join("flightdeck.yaml")).unwrap();
        let say = format!(
            "  say:\n    kind: process\n    command: [sh, {}, '{{agent}}']\n    input: stdin\n",
            root.join("say.sh").display()
        );
        std::fs::write(root.join("flightdeck.yaml"), format!("{settings}{say}{extra}")).unwrap();
        for name in ["impl-plain", "impl-other"] {
            std::fs::write(
                root.join(format!("agentpool/tier1-core/{name}.md")),
                format!(
                    "---\nname: {name}\ndescription: Test agent {name}\ncategory: \
                     implementation\nbackend: say\n---\nYou are {name}.\n"
                ),
            )
            .unwrap();
        }
        std::fs::write(
            root.join("workflows/panel.yaml"),
            "name: panel\ntasks:\n  - {id: q, description: Choose between x and y, panel: \
             [impl-plain, impl-other]}\n",
        )
        .unwrap();
        project
    }
}

#[test]
fn a_conflict_is_listed_with_its_members_and_resolved_from_another_terminal() {
    if !users_ready() {
        return;
    }
    let project = Project::with_panel("");
    let host = project.host("workflows/panel.yaml", "root");
    let waiting = project.waiting("q");
    assert_eq!(waiting["kind"], "conflict", "{waiting}");
    let run = waiting["run"].as_str().unwrap().to_owned();
    let decisions: Vec<(&str, &str)> = waiting["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["agent"].as_str().unwrap(), m["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(decisions, [("impl-plain", "x"), ("impl-other", "y")]);
    assert!(waiting["recommendation"]["decision"].is_string(), "{waiting}");

    // "Waiting for a person" is the run's own state in `runs list`, text and JSON.
    let runs = project.command(&["runs", "list", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["state"], "waiting", "{runs}");
    let runs = project.command(&["runs", "list"]).output().unwrap();
    assert!(text(&runs.stdout).contains(" waiting "), "{}", text(&runs.stdout));

    let listed = project.as_user("fdrex", &["approvals"]);
    let listed = text(&listed.stdout);
    assert!(listed.contains("conflicts waiting for a person"), "{listed}");
    assert!(listed.contains(r#"1. impl-plain (implementation) chose "x""#), "{listed}");
    assert!(listed.contains(r#"2. impl-other (implementation) chose "y""#), "{listed}");
    assert!(listed.contains("recommended: "), "{listed}");

    // A viewer may not decide: refused by the gate (exit 1) and audited with the peer's uid.
    let out = project.as_user("fdvic", &["resolve", &run, "q", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("fdvic (viewer) may not resolve_conflict"),
        "{}",
        text(&out.stderr)
    );
    // Bad input is exit 2 and never reaches the gate.
    for (args, said) in [
        (vec!["resolve", &run, "q", "3"], "choose 1 to 2"),
        (vec!["resolve", &run, "nope", "1"], "no conflict of task `nope`"),
        (vec!["resolve", "r-none", "q", "1"], "no run `r-none` has a conflict"),
        (vec!["resolve", &run, "q", "x\u{1b}[2J"], "control characters"),
    ] {
        let out = project.as_user("fdann", &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(said), "{args:?}: {}", text(&out.stderr));
    }

    // An admin settles it with the second member's verdict; a unique start of the id does.
    let out = project.as_user("fdann", &["resolve", &run[..12], "q", "2", "--note", "y it is"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("resolved as fdann (admin)"), "{}", text(&out.stdout));
    let (code, err) = finish(host);
    assert_eq!(code, 0, "{err}");

    let audit = project.audit();
    let refused = audit_record(&audit, "fdvic", "resolve_conflict").expect("refusal audited");
    assert_eq!(refused["outcome"], "denied");
    assert_eq!(refused["detail"]["identity"]["uid"], ids_of("fdvic").0);
    let accepted = audit_record(&audit, "fdann", "resolve_conflict").expect("decision audited");
    assert_eq!(accepted["outcome"], "accepted");
    assert_eq!(accepted["detail"]["identity"]["via"], "peer");
    let shown = project.command(&["runs", "show", &run, "q", "--json"]).output().unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let result: Value = serde_json::from_str(shown["result"].as_str().unwrap()).unwrap();
    assert_eq!((&result["decision"], &result["by"]), (&Value::from("y"), &Value::from("fdann")));
}

#[test]
fn a_conflict_waiting_for_a_person_runs_notify_command() {
    if !users_ready() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("notified");
    let script = format!("cat >> {}", log.display());
    let extra = format!("notify:\n  command: [sh, -c, {}]\n", serde_json::json!(script));
    let project = Project::with_panel(&extra);
    let host = project.host("workflows/panel.yaml", "root");
    let run = project.waiting("q")["run"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.ends_with('\n')) {
        assert!(Instant::now() < deadline, "notify.command never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let body: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    let request = &body["waiting_for_a_person"][0];
    assert_eq!(request["kind"], "conflict", "{body}");
    assert_eq!(
        (request["run"].as_str(), request["task"].as_str()),
        (Some(run.as_str()), Some("q"))
    );
    let out = project.as_user("fdann", &["resolve", &run, "q", "go with x after all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(finish(host).0, 0);
}

#[test]
fn a_resumed_run_remembers_its_starter_who_still_cannot_approve() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let mut host = project.host("workflows/high.yaml", "fdann");
    let run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();
    // The host dies while the task waits: the run is interrupted.
    host.kill().unwrap();
    host.wait().unwrap();

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        use flightdeck::command::{Command as Cmd, Request};
        use flightdeck::event::{Event, RunStatus};
        use flightdeck::ids::{RunId, TaskId, UserId};
        let settings = flightdeck::config::Settings::load(project.root()).unwrap();
        let runtime = flightdeck::runtime::Runtime::start(flightdeck::runtime::RuntimeOptions {
            project_dir: project.root().to_owned(),
            data_dir: project.data_dir(),
            settings,
            watch_agents: false,
        })
        .unwrap();
        let mut events = runtime.bus().sink();
        // Resumed by someone else: the starter is still fdann, from the stored run.
        let handle = runtime.resume_run("root", &run, None).unwrap();
        loop {
            let envelope = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
            if matches!(&envelope.event, Event::TaskAwaitingApproval { task, .. } if task.as_str() == "rotate")
            {
                break;
            }
        }
        let pending = runtime.pending_approvals();
        assert_eq!(pending[0].requested_by, Some(UserId::new("fdann")), "{pending:?}");
        let approve = |user: &str| Request {
            user: UserId::new(user),
            command: Cmd::Approve { run: RunId::new(&run), task: TaskId::new("rotate"), note: None },
        };
        let refused = runtime.submit(approve("fdann")).await.unwrap_err().to_string();
        assert!(refused.contains("separation of duties"), "{refused}");
        runtime.submit(approve("fdrex")).await.unwrap();
        assert_eq!(handle.wait().await, RunStatus::Succeeded);
        runtime.shutdown().await;
    });
}

#[test]
fn users_and_policies_reload_from_an_edited_file_and_a_bad_edit_keeps_the_last_good_ones() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    let host = project.host("workflows/high.yaml", "root");
    let run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();
    let mut watcher = RawClient::connect(&project.data_dir(), true, "fdrex");
    assert_eq!(watcher.next()["msg"], "snapshot");
    // The notice wanted, and the texts of the other notices before it.
    let notice = |watcher: &mut RawClient, wanted: &str| -> (String, Vec<String>) {
        let mut others = Vec::new();
        loop {
            let message = watcher.next();
            assert_ne!(message, Value::Null, "the host went away before {wanted}");
            if message["event"]["type"] == "notice" {
                let text = message["event"]["message"].as_str().unwrap_or_default().to_owned();
                if text.contains(wanted) {
                    return (text, others);
                }
                others.push(text);
            }
        }
    };
    let out = project.as_user("fdvic", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(1), "a viewer: {}", text(&out.stderr));

    let file = project.root().join("flightdeck.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    // A bad edit (vic twice) keeps the last good settings and says why.
    let bad = good.replace("  fdvic: viewer\n", "  fdvic: viewer\n  fdvic: admin\n");
    std::fs::write(&file, &bad).unwrap();
    let (said, _) = notice(&mut watcher, "settings not reloaded");
    assert!(said.contains("duplicate key"), "{said}");
    let out = project.as_user("fdvic", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(1), "still a viewer: {}", text(&out.stderr));
    // Said once: reading the file again (the host's own read, a reviewer's) is no edit.
    // (The watcher once took its own read of the file for an edit, and said the same
    // error ten times a second until the file was fixed.)
    std::fs::read_to_string(&file).unwrap();
    std::thread::sleep(Duration::from_millis(600));

    // A good edit takes effect at once: fdvic becomes a reviewer.
    std::fs::write(&file, good.replace("  fdvic: viewer\n", "  fdvic: reviewer\n")).unwrap();
    let (said, before) = notice(&mut watcher, "settings reloaded");
    assert!(said.contains("users.fdvic: viewer → reviewer"), "{said}");
    assert!(before.is_empty(), "the bad edit was said again: {before:#?}");
    let out = project.as_user("fdvic", &["approve", &run, "rotate"]);
    assert_eq!(out.status.code(), Some(0), "now a reviewer: {}", text(&out.stderr));
    assert_eq!(finish(host).0, 0);

    // The change went through the gate as the system's `reload_settings`: accepted, then
    // what it did. The edit that did not load changed nothing and left no record.
    let audit = project.audit();
    let reloads: Vec<&Value> = audit.iter().filter(|r| r["action"] == "reload_settings").collect();
    assert_eq!(reloads.len(), 2, "one change that loaded: {reloads:#?}");
    assert_eq!(
        (&reloads[0]["user"], &reloads[0]["outcome"]),
        (&json!("flightdeck"), &json!("accepted"))
    );
    assert!(reloads[0]["detail"]["why"].as_str().unwrap().contains("changed on disk"));
    assert_eq!(reloads[1]["outcome"], "succeeded");
    assert_eq!(
        reloads[1]["detail"]["did"]["changes"],
        serde_json::json!(["users.fdvic: viewer → reviewer"])
    );
}

#[test]
fn a_second_run_on_a_hosted_data_dir_is_handed_to_the_host_and_followed_to_its_end() {
    if !users_ready() {
        return;
    }
    let project = Project::new("  approval_timeout: 5m\n");
    std::fs::write(
        project.root().join("workflows/notes.yaml"),
        "name: notes\ntasks:\n  - {id: draft, description: Draft the notes, agent: worker}\n  - \
         {id: edit, description: Edit the notes, agent: worker, depends_on: [draft]}\n",
    )
    .unwrap();
    let host = project.host("workflows/high.yaml", "root");
    let hosts_run = project.waiting("rotate")["run"].as_str().unwrap().to_owned();

    // An admin in another terminal: no second runtime, the host runs it, this one follows.
    let workflow = project.root().join("workflows/notes.yaml");
    let out = project.as_user("fdann", &["run", workflow.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is hosted by pid"), "{}", text(&out.stderr));
    let events: Vec<Value> =
        text(&out.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"command_accepted"), "{kinds:?}");
    assert!(kinds.contains(&"run_started") && kinds.last() == Some(&"run_finished"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    let run = events[0]["run_id"].as_str().unwrap().to_owned();
    assert!(events.iter().all(|e| e["run_id"] == run.as_str()), "only its own run's events");

    // A reader of its output that goes away (`run --json | head -1`): the client asks the
    // host to cancel the run, and exits 141 as for SIGPIPE.
    let mut chain =
        String::from("name: chain\ntasks:\n  - {id: t0, description: Step, agent: worker}\n");
    for i in 1..60 {
        let _ = std::fmt::Write::write_fmt(
            &mut chain,
            format_args!(
                "  - {{id: t{i}, description: Step, agent: worker, depends_on: [t{}]}}\n",
                i - 1
            ),
        );
    }
    std::fs::write(project.root().join("workflows/chain.yaml"), chain).unwrap();
    let mut client = project
        .command(&["run", "workflows/chain.yaml", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(client.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    drop(reader);
    let gone = client.wait_with_output().unwrap();
    assert_eq!(gone.status.code(), Some(141), "{}", text(&gone.stderr));
    let chain_run =
        serde_json::from_str::<Value>(&first).unwrap()["run_id"].as_str().unwrap().to_owned();
    let shown = project.command(&["runs", "show", &chain_run, "--json"]).output().unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["run"]["state"], "cancelled", "{shown}");

    // Started by the host's gate as the kernel named the client.
    let audit = project.audit();
    let start = audit_record(&audit, "fdann", "start_run").expect("the start is audited");
    assert_eq!(start["outcome"], "accepted");
    assert_eq!(start["detail"]["identity"]["via"], "peer");
    assert_eq!(start["detail"]["run"], run.as_str());
    // One process: the host's own run still waits, and ends when approved.
    let out = project.as_user("fdrex", &["approve", &hosts_run, "rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, err) = finish(host);
    assert_eq!(code, 0, "{err}");
    let runs = project.command(&["runs", "list", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}

/// A console attached while a zero-latency fan-out floods the host is sent digests, and what
/// it folds from them is the run the host stored: every task, its state and its attempts.
/// A runtime on the project at `root` (its data dir `.flightdeck`), and a host listening
/// for it, in this process: inside a tokio runtime.
fn in_process_host(
    root: &Path,
) -> (std::sync::Arc<flightdeck::runtime::Runtime>, flightdeck::host::Host) {
    use flightdeck::host::{Host, HostLock, HostOptions};
    use flightdeck::runtime::{Runtime, RuntimeOptions};
    let data_dir = root.join(".flightdeck");
    let runtime = std::sync::Arc::new(
        Runtime::start(RuntimeOptions {
            project_dir: root.to_owned(),
            data_dir: data_dir.clone(),
            settings: flightdeck::config::Settings::load(root).unwrap(),
            watch_agents: false,
        })
        .unwrap(),
    );
    let host = Host::listen(
        HostLock::take(&data_dir).unwrap(),
        std::sync::Arc::clone(&runtime),
        &HostOptions::default(),
    )
    .unwrap();
    (runtime, host)
}

#[test]
fn a_hello_of_another_protocol_version_is_refused_with_both_versions() {
    use flightdeck::host::protocol::PROTOCOL_VERSION;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("flightdeck.yaml"), "default_role: viewer\n").unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        let (runtime, host) = in_process_host(root);
        let socket = host.socket().to_owned();
        let answers = tokio::task::spawn_blocking(move || {
            [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, PROTOCOL_VERSION].map(|version| {
                let stream = UnixStream::connect(&socket).unwrap();
                // A host that did not close would leave the read waiting: 10 s, then it shows.
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut writer = stream.try_clone().unwrap();
                writeln!(writer, r#"{{"msg":"hello","version":{version},"from":"attach"}}"#)
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut lines = Vec::new();
                let mut line = String::new();
                // Up to the end of the connection, or the first line after a welcome.
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let value: Value = serde_json::from_str(&line).unwrap();
                    line.clear();
                    let welcomed = value["msg"] == "welcome";
                    lines.push(value);
                    if welcomed {
                        break;
                    }
                }
                lines
            })
        })
        .await
        .unwrap();
        for (answer, version) in
            answers[..2].iter().zip([PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1])
        {
            assert_eq!(answer.len(), 1, "refused, then closed: {answer:?}");
            assert_eq!(answer[0]["msg"], "refused");
            let reason = answer[0]["reason"].as_str().unwrap();
            assert_eq!(reason, format!("protocol version {version} is not {PROTOCOL_VERSION}"));
        }
        assert_eq!(answers[2][0]["msg"], "welcome", "{:?}", answers[2]);
        assert_eq!(answers[2][0]["version"], PROTOCOL_VERSION);
        host.close().await;
        let runtime = Arc::try_unwrap(runtime).ok().expect("the host let go of the runtime");
        runtime.shutdown().await;
    });
}

#[test]
fn a_console_attached_through_a_flood_folds_the_run_the_host_stored() {
    use flightdeck::event::Event;
    use flightdeck::host::protocol::{HostMessage, decode_host_line};
    use flightdeck::model::{OutputKeep, RunModel};
    use std::sync::Arc;

    const TASKS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("flightdeck.yaml"),
        "default_role: admin\nbackends:\n  sim:\n    kind: sim\n    latency_min: 0ms\n    latency_max: 0ms\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("agentpool/tier1-core")).unwrap();
    std::fs::write(
        root.join("agentpool/tier1-core/worker.md"),
        "---\nname: worker\ndescription: Does any work at all\nmax_instances: 8\n---\nYou work.\n",
    )
    .unwrap();
    let mut workflow = String::from(
        "name: fan\nmax_parallel: 8\ntasks:\n  - {id: t0, description: Start, agent: worker}\n",
    );
    for i in 1..TASKS {
        writeln!(
            workflow,
            "  - {{id: t{i}, description: Part {i}, agent: worker, depends_on: [t0]}}"
        )
        .unwrap();
    }
    std::fs::write(root.join("fan.yaml"), workflow).unwrap();

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (folded, stored, digests, after_start) = tokio.block_on(async {
        let (runtime, host) = in_process_host(root);
        let mut stream = UnixStream::connect(host.socket()).unwrap();
        writeln!(
            stream,
            r#"{{"msg":"hello","version":2,"from":"attach","subscribe":true,"feed":"console"}}"#
        )
        .unwrap();
        let console = std::thread::spawn(move || {
            let mut model = RunModel::new(OutputKeep::None);
            let mut digests = 0;
            // What the line that carried the run's start carried after it.
            let mut after_start = None;
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 {
                let mut seen_start = false;
                let mut after = 0;
                let mut saw = |is_start: bool| {
                    if seen_start {
                        after += 1;
                    }
                    seen_start |= is_start;
                };
                match decode_host_line(line.trim_end()).unwrap() {
                    HostMessage::Snapshot { events } | HostMessage::Events { events } => {
                        for envelope in &events {
                            saw(matches!(envelope.event, Event::RunStarted { .. }));
                            model.apply(envelope);
                        }
                    }
                    HostMessage::Digest(digest) => {
                        digests += 1;
                        for part in &digest.parts {
                            for envelope in &part.events {
                                saw(matches!(envelope.event, Event::RunStarted { .. }));
                                model.apply(envelope);
                            }
                            for change in &part.tasks {
                                saw(false);
                                model.apply_change(change);
                            }
                        }
                    }
                    HostMessage::Closing { .. } => break,
                    HostMessage::Welcome { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
                if seen_start {
                    after_start = Some(after);
                }
                line.clear();
            }
            (model, digests, after_start)
        });
        let plan = runtime
            .plan(&root.join("fan.yaml"), &flightdeck::workflow::PlanOverrides::default())
            .unwrap();
        let handle = runtime.start_planned("tester", plan).unwrap();
        handle.wait().await;
        runtime.flush().await.unwrap();
        let stored =
            RunModel::from_events(runtime.backlog().iter().map(AsRef::as_ref), OutputKeep::None);
        host.close().await;
        let (folded, digests, after_start) = console.join().unwrap();
        let runtime = Arc::try_unwrap(runtime).ok().expect("the host let go of the runtime");
        runtime.shutdown().await;
        (folded, stored, digests, after_start)
    });
    assert!(digests > 0, "the flood was condensed");
    // The run's start (its plan: a console's largest read) went at once, not with the flood.
    assert_eq!(after_start, Some(0), "the run's start ended its line");
    assert_eq!(folded.counts().succeeded, TASKS);
    let state = |model: &RunModel| -> Vec<_> {
        model
            .tasks
            .iter()
            .map(|t| (t.id().to_string(), t.status, t.attempts, t.finished_ms))
            .collect()
    };
    assert_eq!(state(&folded), state(&stored));
    assert_eq!(folded.outcome.map(|o| o.status), stored.outcome.map(|o| o.status));
}
