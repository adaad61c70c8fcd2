//! `flightdeck doctor` as a user runs it: the real binary on a project in a temp dir, the
//! fake Claude Code CLI from tests/fixtures/coding, and a real HTTP server on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tempfile::TempDir;

const KEY_ENV: &str = "FLIGHTDECK_DOCTOR_TEST_KEY";
const KEY_VALUE: &str = "sk-test-do-not-print-4242";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coding")
}

/// An HTTP/1.1 server answering every request with an OpenAI-style model list; it records
/// each request's head.
struct ModelsServer {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl ModelsServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let body = r#"{"object":"list","data":[{"id":"qwen2.5-coder","object":"model","created":0,"owned_by":"llamacpp"}]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Self { url, heads }
    }
}

/// A project with three backends a bundled workflow needs: the fake `claude`, a local
/// OpenAI-compatible server with a key variable, and the simulator.
struct Project {
    dir: TempDir,
}

impl Project {
    fn new(claude_program: &str, base_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let settings = format!(
            "default_backend: sim
backends:
  sim:
    kind: sim
  coder:
    kind: claude_code
    program: {claude_program}
  local-llm:
    kind: openai
    base_url: {base_url}
    model: qwen2.5-coder
    api_key_env: {KEY_ENV}
  unused-gemini:
    kind: gemini
    program: flightdeck-test-no-such-gemini
"
        );
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        for (name, backend) in
            [("planner", "sim"), ("implementer", "coder"), ("reviewer", "local-llm")]
        {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\nbackend: {backend}\n---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        }
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(
            root.join("workflows/feature.yaml"),
            "name: feature
tasks:
  - {id: plan, description: Plan the feature, agent: planner}
  - {id: build, description: Build the feature, agent: implementer, depends_on: [plan]}
  - {id: review, description: Review the change, agent: reviewer, depends_on: [build]}
",
        )
        .unwrap();
        Self { dir }
    }

    fn doctor(&self, args: &[&str], key: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.dir.path())
            .args(["--project-dir", self.dir.path().to_str().unwrap(), "doctor"])
            .args(args)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy");
        match key {
            Some(value) => command.env(KEY_ENV, value),
            None => command.env_remove(KEY_ENV),
        };
        command.output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fake_claude() -> String {
    fixtures().join("bin/claude").display().to_string()
}

#[test]
fn everything_present_exits_0_with_versions_and_reachability() {
    let server = ModelsServer::start();
    let project = Project::new(&fake_claude(), &server.url);
    let output = project.doctor(&[], Some(KEY_VALUE));
    let text = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("2.0.14 (Claude Code)"), "{text}");
    assert!(text.contains(&format!("GET {}/models: HTTP 200", server.url)), "{text}");
    assert!(text.contains(&format!("{KEY_ENV} set")), "{text}");
    assert!(text.contains("ok: the 1 bundled workflow"), "{text}");
    // An unused backend that is missing is reported but does not fail the check.
    assert!(text.contains("flightdeck-test-no-such-gemini"), "{text}");
    assert!(!text.contains(KEY_VALUE), "doctor printed the key");
    // The key is never sent either.
    let heads = server.heads.lock().unwrap();
    assert!(heads[0].starts_with("GET /v1/models HTTP/1.1"), "{heads:?}");
    assert!(!heads[0].to_ascii_lowercase().contains("authorization"), "{heads:?}");
}

#[test]
fn json_report_lists_each_backend_and_its_users() {
    let server = ModelsServer::start();
    let project = Project::new(&fake_claude(), &server.url);
    let output = project.doctor(&["--json"], Some(KEY_VALUE));
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let backend = |name: &str| {
        report["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap().clone()
    };
    let coder = backend("coder");
    assert_eq!(coder["kind"], "claude_code");
    assert_eq!(coder["status"], "installed");
    assert_eq!(coder["version"], "2.0.14 (Claude Code)");
    assert_eq!(coder["agents"], serde_json::json!(["implementer"]));
    assert_eq!(coder["workflows"], serde_json::json!(["workflows/feature.yaml"]));
    assert_eq!(coder["key"]["env"], "ANTHROPIC_API_KEY");
    let llm = backend("local-llm");
    assert_eq!(llm["status"], "reachable");
    assert_eq!(llm["http_status"], 200);
    assert_eq!(
        llm["key"],
        serde_json::json!({"env": KEY_ENV, "set": true, "required": true, "passed": true})
    );
    assert_eq!(backend("unused-gemini")["status"], "missing");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(KEY_VALUE));
}

#[test]
fn a_workflow_needing_a_missing_program_exits_1_naming_it() {
    let server = ModelsServer::start();
    let project = Project::new("flightdeck-test-no-such-claude", &server.url);
    let output = project.doctor(&[], Some(KEY_VALUE));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("1 problem for the bundled workflows"), "{text}");
    let problem = text.lines().find(|l| l.starts_with("  - ")).unwrap();
    assert!(
        problem.contains("workflows/feature.yaml needs backend `coder` (claude_code)"),
        "{problem}"
    );
    assert!(problem.contains("`flightdeck-test-no-such-claude` is not on PATH"), "{problem}");
    assert!(problem.contains("npm install -g @anthropic-ai/claude-code"), "{problem}");
}

#[test]
fn an_unset_key_is_named_without_any_value() {
    let server = ModelsServer::start();
    let project = Project::new(&fake_claude(), &server.url);
    let output = project.doctor(&[], None);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("{KEY_ENV} NOT SET")), "{text}");
    assert!(
        text.contains(&format!("backend `local-llm`, whose key variable {KEY_ENV} is not set")),
        "{text}"
    );
}

#[test]
fn an_unreachable_server_a_workflow_needs_exits_1() {
    // Bind and drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let project = Project::new(&fake_claude(), &url);
    let output = project.doctor(&[], Some(KEY_VALUE));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}

#[test]
fn a_worktree_backend_outside_a_git_repository_is_a_problem_until_git_init() {
    let server = ModelsServer::start();
    let project = Project::new(&fake_claude(), &server.url);
    let settings = project.dir.path().join("flightdeck.yaml");
    let text = std::fs::read_to_string(&settings)
        .unwrap()
        .replace("    kind: claude_code\n", "    kind: claude_code\n    workspace: worktree\n");
    std::fs::write(&settings, text).unwrap();
    let output = project.doctor(&[], Some(KEY_VALUE));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("`workspace: worktree` needs a git repository"), "{text}");
    assert!(text.contains("run `git init`"), "{text}");

    let init = Command::new("git").arg("init").arg("-q").current_dir(project.dir.path()).status();
    assert!(init.unwrap().success());
    let output = project.doctor(&["--json"], Some(KEY_VALUE));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let coder =
        report["backends"].as_array().unwrap().iter().find(|b| b["name"] == "coder").unwrap();
    assert_eq!(coder["workspace"], "worktree");
    assert!(coder.get("workspace_problem").is_none(), "{coder}");
}
