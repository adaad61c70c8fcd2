//! `flightdeck plan` and `flightdeck run` as a user runs them: the real binary on a project
//! folder written into a temp dir, real `sh` children for the process backend, and SIGINT.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flightdeck::event::Envelope;
use flightdeck::store::{RunState, RunStore};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

const SETTINGS: &str = "default_role: viewer
users:
  ann: admin
  vic: viewer
backends:
  sim:
    kind: sim
    latency_min: 5ms
    latency_max: 20ms
  broken-sim:
    kind: sim
    latency_min: 1ms
    latency_max: 2ms
    failure_rate: 1.0
  local:
    kind: process
    command: [sh, agent.sh]
    env:
      PID_FILE: PID_FILE_PATH
";

const GOOD: &str = "name: good
tasks:
  - {id: plan, description: Plan the work, agent: worker}
  - {id: build, description: Build it, agent: worker, depends_on: [plan]}
  - {id: test, description: Test it, agent: worker, depends_on: [plan]}
";

const FAILING: &str = "name: failing
tasks:
  - {id: first, description: Try it, agent: unlucky}
  - {id: second, description: Use it, agent: worker, depends_on: [first]}
";

const CYCLE: &str = "name: cycle
tasks:
  - {id: a, description: x, agent: worker, depends_on: [b]}
  - {id: b, description: y, agent: worker, depends_on: [a]}
";

const RISKY: &str = "name: risky
tasks:
  - {id: ship, description: Deploy the service to production, agent: worker}
  - {id: notes, description: Write notes, agent: worker}
";

const LOCAL: &str = "name: local
tasks:
  - {id: shell, description: Say hello from sh, agent: scripted}
";

struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pid_file = root.join("child.pid");
        let settings = SETTINGS.replace("PID_FILE_PATH", pid_file.to_str().unwrap());
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        let agent = |name: &str, extra: &str| {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\n{extra}---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        };
        agent("worker", "");
        agent("unlucky", "backend: broken-sim\n");
        agent("scripted", "backend: local\n");
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        for (name, text) in [
            ("good", GOOD),
            ("failing", FAILING),
            ("cycle", CYCLE),
            ("local", LOCAL),
            ("risky", RISKY),
        ] {
            std::fs::write(root.join(format!("workflows/{name}.yaml")), text).unwrap();
        }
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, user: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", user])
            .args(args)
            .env_remove("FLIGHTDECK_USER");
        command
    }

    fn run(&self, user: &str, args: &[&str]) -> Output {
        self.command(user, args).output().unwrap()
    }

    fn store(&self) -> RunStore {
        RunStore::open(self.root().join(".flightdeck/runs.db")).unwrap()
    }

    fn write_script(&self, body: &str) {
        std::fs::write(self.root().join("agent.sh"), body).unwrap();
    }

    fn pid_file(&self) -> PathBuf {
        self.root().join("child.pid")
    }
}

/// Each line of a command's stdout, read as JSON.
fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The run that `run --json` printed, and its lines among `lines`.
fn lines_of_run(lines: &[Value]) -> (String, Vec<&Value>) {
    let run = lines.iter().find_map(|v| v["run_id"].as_str()).unwrap().to_owned();
    let of_run = lines.iter().filter(|v| v["run_id"] == run.as_str()).collect();
    (run, of_run)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_successful_run_exits_0_and_says_it_was_simulated() {
    let project = Project::new();
    let output = project.run("ann", &["run", "workflows/good.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(
        err.contains("start     plan  agent worker, attempt 1, backend sim  SIMULATED"),
        "{err}"
    );
    assert!(err.contains("done      test"), "{err}");
    assert!(err.contains("succeeded in"), "{err}");
    assert!(err.contains("3 succeeded, 0 failed, 0 skipped, 0 cancelled"), "{err}");
    let runs = project.store().runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Succeeded);
}

#[test]
fn a_failing_task_exits_1_and_skips_its_dependents() {
    let project = Project::new();
    let output = project.run("ann", &["run", "workflows/failing.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("FAILED    first"), "{err}");
    assert!(err.contains("skipped   second  dependency `first` failed"), "{err}");
    assert_eq!(project.store().runs().unwrap()[0].state, RunState::Failed);
}

#[test]
fn an_invalid_workflow_exits_2_with_file_and_line_and_runs_nothing() {
    let project = Project::new();
    let output = project.run("ann", &["run", "workflows/cycle.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("cycle.yaml:3: dependency cycle: a → b → a"), "{err}");
    assert!(project.store().runs().unwrap().is_empty());
}

#[test]
fn a_user_whose_role_may_not_run_gets_exit_2_naming_user_and_role() {
    let project = Project::new();
    let output = project.run("vic", &["run", "workflows/good.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("vic (viewer) may not start_run"), "{err}");
    assert!(project.store().runs().unwrap().is_empty());
}

#[test]
fn tasks_needing_approval_are_refused_when_nobody_can_review() {
    let project = Project::new();
    let output = project.run("ann", &["run", "workflows/risky.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("approval  ship  risk critical"), "{err}");
    assert!(err.contains("headless run: no reviewer can approve it"), "{err}");
    assert!(err.contains("done      notes"), "{err}");
}

#[test]
fn a_headless_host_whose_output_nobody_reads_still_answers_other_terminals() {
    let project = Project::new();
    // About 2,000 events of JSON: far more than a pipe holds.
    let mut flood = String::from("name: flood\nmax_parallel: 50\ntasks:\n");
    for i in 0..400 {
        let _ = writeln!(flood, "  - {{id: t{i}, description: Part {i}, agent: worker}}");
    }
    std::fs::write(project.root().join("workflows/flood.yaml"), flood).unwrap();
    let mut host = project
        .command("ann", &["run", "workflows/flood.yaml", "--json", "--approvals", "wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Nobody reads its stdout: the pipe fills, and the run waits for its reader.
    std::thread::sleep(Duration::from_secs(2));
    let mut asking = project
        .command("ann", &["approvals", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let answered = wait_with_deadline(&mut asking, Duration::from_secs(10));
    assert_eq!(answered, Some(0), "the host answered while its own output was stuck");
    let listed = asking.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]", "{}", stderr(&listed));

    // Its reader comes back: every event arrives, and the run ends well.
    let stdout = host.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok).count()
    });
    assert_eq!(wait_with_deadline(&mut host, Duration::from_secs(60)), Some(0));
    let lines = reader.join().unwrap();
    assert!(lines > 2_000, "{lines} lines");
}

#[test]
fn max_parallel_zero_on_the_command_line_is_invalid() {
    let project = Project::new();
    let output = project.run("ann", &["run", "workflows/good.yaml", "--max-parallel", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--max-parallel 0"));
}

#[test]
fn json_output_is_one_envelope_per_line() {
    let project = Project::new();
    let output =
        project.run("ann", &["run", "workflows/good.yaml", "--json", "--max-parallel", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 10);
    for line in &lines {
        assert!(line["seq"].is_u64(), "{line}");
        assert!(line["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line["type"].is_string(), "{line}");
        serde_json::from_value::<Envelope>(line.clone()).unwrap();
    }
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let run_events: Vec<&Value> = lines.iter().filter(|l| l.get("run_id").is_some()).collect();
    assert_eq!(run_events[0]["type"], "command_accepted");
    assert_eq!(run_events[1]["type"], "run_started");
    assert_eq!(run_events[1]["max_parallel"], 1);
    assert_eq!(lines.last().unwrap()["type"], "run_finished");
    let run_id = &run_events[0]["run_id"];
    assert!(run_events.iter().all(|l| &l["run_id"] == run_id));
}

#[test]
fn plan_prints_layers_or_json_and_refuses_invalid_files() {
    let project = Project::new();
    let output = project.run("vic", &["plan", "workflows/good.yaml"]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("3 tasks in 2 layers"), "{text}");
    assert!(text.contains("layer 1"), "{text}");
    assert!(text.contains("after plan"), "{text}");

    let output = project.run("vic", &["plan", "workflows/good.yaml", "--json"]);
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["valid"], true);
    assert_eq!(plan["layers"], serde_json::json!([["plan"], ["build", "test"]]));
    assert_eq!(plan["steps"][1]["agent"], "worker");

    let output = project.run("vic", &["plan", "workflows/cycle.yaml", "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let refusal: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(refusal["valid"], false);
    assert_eq!(refusal["errors"][0]["line"], 3);
}

#[test]
fn the_process_backend_runs_real_sh_children() {
    let project = Project::new();
    project.write_script("read -r first_line\necho \"hello from sh $$: $first_line\"\n");
    let output = project.run("ann", &["run", "workflows/local.yaml", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let succeeded: Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["type"] == "task_succeeded")
        .unwrap();
    let text = succeeded["output"].as_str().unwrap();
    assert!(text.starts_with("hello from sh "), "{text}");
    assert!(text.contains("You are scripted."), "the system prompt came first on stdin: {text}");
    assert_eq!(succeeded["simulated"], false);
    assert!(!stderr(&output).contains("SIMULATED"));
}

/// Ctrl-C, `kill` and a closed terminal each cancel cleanly: the children are killed, the run
/// is stored as cancelled, and the exit code is 128 + the signal, as shells report it.
#[rstest::rstest]
#[case::ctrl_c(Signal::SIGINT, 130, "interrupted: cancelling the run")]
#[case::kill(Signal::SIGTERM, 143, "terminated (SIGTERM): cancelling the run")]
#[case::closed_terminal(Signal::SIGHUP, 129, "hung up (SIGHUP): cancelling the run")]
fn a_stop_signal_cancels_the_run_and_kills_the_children(
    #[case] signal: Signal,
    #[case] code: i32,
    #[case] said: &str,
) {
    let project = Project::new();
    let (child, sleeper) = run_a_sleeper(&project);
    let (status, err) = stopped(child, &[signal]);
    assert_eq!(status, Some(code), "{err}");
    assert!(err.contains(said), "{err}");
    // The task says why: the signal, not an operator.
    let stop = said.trim_end_matches(": cancelling the run");
    assert!(err.contains(&format!("cancelled shell  run cancelled: {stop}")), "{err}");
    assert!(!is_alive(sleeper), "the child process {sleeper} survived");
    let runs = project.store().runs().unwrap();
    assert_eq!(runs[0].state, RunState::Cancelled);
}

/// `run` of a task whose agent sleeps, started and waited for: the run and the agent's pid.
fn run_a_sleeper(project: &Project) -> (Child, i32) {
    project.write_script("echo $$ > \"$PID_FILE\"\nexec sleep 30\n");
    let child = project
        .command("ann", &["run", "workflows/local.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeper = wait_for_pid(&project.pid_file());
    (child, sleeper)
}

/// `signals` sent to the run, one after the other at once: its exit code and stderr.
fn stopped(mut child: Child, signals: &[Signal]) -> (Option<i32>, String) {
    for signal in signals {
        kill(Pid::from_raw(child.id() as i32), *signal).unwrap();
    }
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// `run --json | head -1`: once the output's reader is gone the run stops as on a stop
/// signal (cancelled and stored so, exit 141 as for SIGPIPE), instead of going on unseen
/// while the shell waits for it to end.
#[test]
fn a_reader_that_goes_away_stops_the_run() {
    let project = Project::new();
    project.write_script("sleep 0.3\necho done\n");
    std::fs::write(
        project.root().join("workflows/chain.yaml"),
        "name: chain
tasks:
  - {id: one, description: First step, agent: scripted}
  - {id: two, description: Second step, agent: scripted, depends_on: [one]}
  - {id: three, description: Third step, agent: scripted, depends_on: [two]}
  - {id: four, description: Fourth step, agent: scripted, depends_on: [three]}
",
    )
    .unwrap();
    let mut child = project
        .command("ann", &["run", "workflows/chain.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&first).is_ok(), "{first}");
    drop(out);
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status, Some(141), "{err}");
    assert!(
        err.contains("the output's reader went away (broken pipe): cancelling the run"),
        "{err}"
    );
    let runs = project.store().runs().unwrap();
    assert_eq!(runs[0].state, RunState::Cancelled, "{err}");
    assert!(runs[0].succeeded < 4, "{:?}", runs[0]);
}

/// `timeout` signals the command and then its process group, so the run gets SIGTERM twice at
/// once: one request, and the run is still cancelled cleanly (it was left interrupted, as if
/// asked to exit at once).
#[test]
fn a_signal_delivered_twice_at_once_cancels_the_run_once() {
    let project = Project::new();
    let (child, _) = run_a_sleeper(&project);
    let (status, err) = stopped(child, &[Signal::SIGTERM, Signal::SIGTERM]);
    assert_eq!(status, Some(143), "{err}");
    assert!(!err.contains("interrupted again"), "{err}");
    assert_eq!(project.store().runs().unwrap()[0].state, RunState::Cancelled, "{err}");
}

/// A host killed with SIGKILL cannot clean up; the kernel kills its agents for it (the
/// parent-death signal), so nothing keeps running unsupervised.
#[test]
fn an_agent_does_not_outlive_a_killed_host() {
    let project = Project::new();
    project.write_script("echo $$ > \"$PID_FILE\"\nexec sleep 30\n");
    let mut child: Child = project
        .command("ann", &["run", "workflows/local.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = wait_for_pid(&project.pid_file());
    assert!(is_alive(agent));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(agent) {
        assert!(Instant::now() < deadline, "the agent {agent} outlived its host");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_pid(file: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the child never wrote {}", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("flightdeck did not exit after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alive and not a zombie waiting for a parent that is gone.
fn is_alive(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status.is_empty() && !status.lines().any(|l| l.starts_with("State:") && l.contains('Z'))
}

/// The pool's events are a run's doing while its task holds the instance: they say which run.
#[test]
fn the_start_and_the_pool_events_of_a_run_carry_its_run_id() {
    let project = Project::new();
    let output = project.run("ann", &["run", "workflows/good.yaml", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let run = lines.iter().find(|v| v["type"] == "run_started").unwrap()["run_id"].clone();
    // The gate's acceptance of the start is the run's first event.
    assert_eq!(lines[0]["type"], "command_accepted", "{:?}", lines[0]);
    assert_eq!(lines[0]["command"], "start_run");
    assert_eq!(lines[0]["run_id"], run);
    let pool: Vec<&Value> = lines
        .iter()
        .filter(|v| v["type"].as_str().is_some_and(|t| t.starts_with("instance_")))
        .collect();
    assert!(pool.iter().any(|v| v["type"] == "instance_reserved"), "{pool:?}");
    assert!(pool.iter().any(|v| v["type"] == "instance_working"), "{pool:?}");
    assert!(pool.iter().any(|v| v["type"] == "instance_idle"), "{pool:?}");
    for event in pool {
        assert_eq!(event["run_id"], run, "{event}");
    }
}

#[test]
fn sequence_numbers_continue_across_runs_in_one_data_dir() {
    let project = Project::new();
    let seq_range = |output: &Output| -> (u64, u64) {
        let text = String::from_utf8_lossy(&output.stdout);
        let seqs: Vec<u64> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|value| value["seq"].as_u64())
            .collect();
        (*seqs.iter().min().expect("events"), *seqs.iter().max().expect("events"))
    };
    let (_, first_max) = seq_range(&project.run("ann", &["run", "workflows/good.yaml", "--json"]));
    let (second_min, _) = seq_range(&project.run("ann", &["run", "workflows/good.yaml", "--json"]));
    assert!(
        second_min > first_max,
        "second run starts at {second_min}, first ended at {first_max}"
    );
}

#[test]
fn a_large_plan_stored_in_columns_replays_as_it_ran() {
    let project = Project::new();
    // 300 tasks (the store keeps a plan of more than 256 in columns), with texts to escape.
    let mut workflow = String::from(
        "name: wide\ntasks:\n  - {id: root, description: \"Start \\\"here\\\"\", agent: worker}\n",
    );
    for i in 0..299 {
        let _ = writeln!(
            workflow,
            "  - {{id: part-{i}, description: \"Part {i}: caf\u{e9}\", agent: worker, depends_on: [root]}}"
        );
    }
    std::fs::write(project.root().join("workflows/wide.yaml"), workflow).unwrap();
    let live = project.run("ann", &["run", "workflows/wide.yaml", "--json"]);
    assert_eq!(live.status.code(), Some(0), "{}", stderr(&live));
    let lines = json_lines(&live);
    let (_, live_run_lines) = lines_of_run(&lines);
    let started = live_run_lines.iter().find(|v| v["type"] == "run_started").unwrap();
    assert_eq!(started["tasks"].as_array().map(Vec::len), Some(300));

    let replay = project.run("vic", &["runs", "events", "last", "--json"]);
    assert_eq!(replay.status.code(), Some(0), "{}", stderr(&replay));
    let replayed = json_lines(&replay);
    assert_eq!(replayed.iter().collect::<Vec<_>>(), live_run_lines);
    let show = project.run("vic", &["runs", "show", "last", "--json"]);
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["tasks"].as_array().map(Vec::len), Some(300));
    assert_eq!(shown["tasks"][0]["task"], "root");

    // What the store holds is the plan in columns, not the list.
    let conn = rusqlite::Connection::open(project.root().join(".flightdeck/runs.db")).unwrap();
    let body: String = conn
        .query_row(
            "SELECT body FROM event_blocks WHERE body LIKE '%\"type\":\"run_started\"%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(body.contains(r#""tasks":{"id":{"text":"rootpart-0part-1"#), "{}", &body[..400]);
}

#[test]
fn stored_runs_are_listed_shown_and_replayed_as_they_ran() {
    let project = Project::new();
    let live = project.run("ann", &["run", "workflows/failing.yaml", "--json"]);
    assert_eq!(live.status.code(), Some(1), "{}", stderr(&live));
    let lines = json_lines(&live);
    let (run, live_run_lines) = lines_of_run(&lines);

    // A viewer may look: reading the store changes nothing.
    let list = project.run("vic", &["runs", "list", "--json"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["run_id"], run.as_str());
    assert_eq!(listed[0]["state"], "failed");
    let table = project.run("vic", &["runs", "list"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.starts_with("RUN "), "{table}");
    assert!(table.contains(&run) && table.contains("failing") && table.contains("SIMULATED"));

    let prefix = &run[..run.len() - 2];
    let show = project.run("vic", &["runs", "show", prefix, "--json"]);
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    let tasks: Vec<(&str, &str)> = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(tasks, [("first", "failed"), ("second", "skipped")]);
    let text = project.run("vic", &["runs", "show", "last"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("second") && text.contains("dependency `first` failed"), "{text}");

    // Replayed with --json, the stored stream is what `run --json` printed for the run.
    let replay = project.run("vic", &["runs", "events", "last", "--json"]);
    assert_eq!(replay.status.code(), Some(0), "{}", stderr(&replay));
    let replayed = json_lines(&replay);
    assert_eq!(replayed.iter().collect::<Vec<_>>(), live_run_lines);
    let human = project.run("vic", &["runs", "events", &run]);
    let err = stderr(&human);
    assert!(err.contains("FAILED    first"), "{err}");
    assert!(err.contains("skipped   second  dependency `first` failed"), "{err}");

    let missing = project.run("vic", &["runs", "show", "nosuch"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no run `nosuch`"), "{}", stderr(&missing));
}

#[test]
fn listing_runs_of_a_fresh_project_creates_nothing() {
    let project = Project::new();
    let output = project.run("vic", &["runs", "list"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("no runs yet"), "{}", stderr(&output));
    assert!(!project.root().join(".flightdeck/runs.db").exists());
    let show = project.run("vic", &["runs", "show", "last"]);
    assert_eq!(show.status.code(), Some(2));
}

#[test]
fn pruning_old_runs_passes_the_gate() {
    let project = Project::new();
    for _ in 0..3 {
        assert_eq!(project.run("ann", &["run", "workflows/good.yaml"]).status.code(), Some(0));
    }
    let ids: Vec<String> =
        project.store().runs().unwrap().into_iter().map(|r| r.run_id.to_string()).collect();

    let dry = project.run("vic", &["runs", "prune", "--keep", "1", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let listed = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(listed.contains(&ids[1]) && listed.contains(&ids[2]) && !listed.contains(&ids[0]));
    assert!(stderr(&dry).contains("2 finished runs would be pruned"), "{}", stderr(&dry));

    let refused = project.run("vic", &["runs", "prune", "--keep", "1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("vic (viewer) may not prune_runs"), "{}", stderr(&refused));
    assert_eq!(project.store().runs().unwrap().len(), 3);

    let done = project.run("ann", &["runs", "prune", "--keep", "1"]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(stderr(&done).contains("pruned 2 finished runs"), "{}", stderr(&done));
    let left: Vec<String> =
        project.store().runs().unwrap().into_iter().map(|r| r.run_id.to_string()).collect();
    assert_eq!(left, [ids[0].clone()]);

    // Both decisions are in the audit log, and what the accepted one did.
    let audit = std::fs::read_to_string(project.root().join(".flightdeck/audit.jsonl")).unwrap();
    let decisions: Vec<(String, String)> = audit
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["action"] == "prune_runs")
        .map(|r| {
            (r["user"].as_str().unwrap().to_owned(), r["outcome"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("vic".to_owned(), "denied".to_owned()),
            ("ann".to_owned(), "accepted".to_owned()),
            ("ann".to_owned(), "succeeded".to_owned()),
        ]
    );

    let neither = project.run("ann", &["runs", "prune"]);
    assert_ne!(neither.status.code(), Some(0));
}

#[test]
fn plan_says_which_tasks_wait_for_a_reviewer() {
    let project = Project::new();
    let output = project.run("ann", &["plan", "workflows/risky.yaml"]);
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        out.contains("⏸ needs approval, risk critical: production: deploy, production"),
        "{out}"
    );
    assert!(out.contains("1 task waits for a reviewer"), "{out}");
    let json = project.run("ann", &["plan", "workflows/risky.yaml", "--json"]);
    let plan: Value = serde_json::from_slice(&json.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps[0]["needs_approval"], true);
    assert_eq!(steps[0]["risk"]["risk"], "critical");
    assert_eq!(steps[1]["needs_approval"], false);
}

#[test]
fn one_task_of_a_stored_run_is_shown_with_its_attempts_and_output() {
    let project = Project::new();
    project.write_script("#!/bin/sh\ncat > /dev/null\necho \"hello from sh\"\n");
    assert_eq!(project.run("ann", &["run", "workflows/local.yaml"]).status.code(), Some(0));
    let shown = project.run("vic", &["runs", "show", "last", "shell", "--json"]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let detail: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(detail["state"], "succeeded");
    assert_eq!(detail["history"][0]["backend"], "local");
    assert_eq!(detail["result"], "hello from sh");
    let text = project.run("vic", &["runs", "show", "last", "shell"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("state     succeeded after 1 attempt,"), "{text}");
    assert_eq!(text.matches("\n    hello from sh").count(), 1, "shown once: {text}");
    assert!(text.contains("── attempt 1 · scripted on local"), "{text}");
    let missing = project.run("vic", &["runs", "show", "last", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("has no task `nope` (its tasks: shell)"));
}

/// `flightdeck plan … | head -1` and the like: a reader that stops reading ends the command
/// quietly (141, as shells report SIGPIPE), never with a panic.
#[rstest::rstest]
#[case::plan(&["plan", "workflows/good.yaml"])]
#[case::plan_json(&["plan", "workflows/good.yaml", "--json"])]
#[case::agents_list(&["agents", "list", "--json"])]
#[case::agents_table(&["agents", "list"])]
#[case::doctor(&["doctor"])]
fn a_closed_pipe_ends_printing_commands_quietly(#[case] args: &[&str]) {
    let project = Project::new();
    let mut child =
        project.command("ann", args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    assert_eq!(output.status.code(), Some(141), "{err}");
}
