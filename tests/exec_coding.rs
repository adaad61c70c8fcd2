//! The coding-agent executors against fake CLIs (tests/fixtures/coding) that replay lines
//! copied from the documented streams of Claude Code, Codex and the Gemini CLI, in a real
//! subprocess, and record the argv, stdin, folder and environment they were given.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flightdeck::config::{BackendConfig, CodingAgentBackend, DenialPolicy, Settings};
use flightdeck::event::{OutputStream, TokenUsage};
use flightdeck::exec::claude_code::ClaudeCodeExecutor;
use flightdeck::exec::codex::CodexExecutor;
use flightdeck::exec::env::EnvSource;
use flightdeck::exec::gemini::GeminiExecutor;
use flightdeck::exec::{ErrorClass, ExecError, ExecOutcome, ExecRequest, Executor, OutputSink};
use serde_json::json;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coding")
}

/// One attempt's world: a project folder, a folder where the fake CLI records its inputs.
struct Setup {
    project: TempDir,
    record: TempDir,
}

impl Setup {
    fn new() -> Self {
        Self { project: tempfile::tempdir().unwrap(), record: tempfile::tempdir().unwrap() }
    }

    /// The backend running the fake `cli` (claude, codex, gemini) on `scenario`.
    fn backend(&self, cli: &str, scenario: &str) -> CodingAgentBackend {
        let scenario = fixtures().join(cli).join(format!("{scenario}.jsonl"));
        assert!(scenario.is_file(), "no scenario {}", scenario.display());
        let env = BTreeMap::from([
            ("FAKE_SCENARIO".to_owned(), scenario.display().to_string()),
            ("FAKE_RECORD".to_owned(), self.record.path().display().to_string()),
        ]);
        CodingAgentBackend {
            program: Some(fixtures().join("bin").join(cli).display().to_string()),
            args: Vec::new(),
            env_allow: Some(vec!["PATH".into()]),
            env,
            workspace: None,
            permission_mode: None,
            max_turns: None,
            on_denial: DenialPolicy::Fail,
            partial_messages: false,
            model: None,
            output_limit_bytes: 1024 * 1024,
        }
    }

    fn request(&self) -> ExecRequest {
        ExecRequest {
            run: "r-7".into(),
            task: "orders-api".into(),
            agent: "backend-architect".into(),
            attempt: 1,
            system_prompt: "You are a backend architect.\n".into(),
            task_description: "Design the orders API".into(),
            context: json!({"dependencies": {"research": "use postgres"}}),
            timeout: Duration::from_secs(30),
            project_dir: self.project.path().to_owned(),
            model: None,
            tools: Vec::new(),
            workdir: None,
        }
    }

    fn argv(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.record.path().join("argv.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn recorded(&self, name: &str) -> String {
        std::fs::read_to_string(self.record.path().join(name)).unwrap()
    }
}

/// The real PATH (for `sh` and `python3`) and a secret that must not reach the CLI.
fn env() -> EnvSource {
    EnvSource::fixed([
        ("PATH", std::env::var("PATH").unwrap()),
        ("SECRET_TOKEN", "do-not-pass".to_owned()),
    ])
}

type Seen = Arc<Mutex<Vec<(OutputStream, String)>>>;

fn sink() -> (OutputSink, Seen) {
    // Every attempt runs under the reaper shim, as it does in the `flightdeck` binary.
    flightdeck::exec::reaper::install(env!("CARGO_BIN_EXE_flightdeck"));
    let seen: Seen = Arc::default();
    let store = Arc::clone(&seen);
    let sink: OutputSink = Arc::new(move |stream, line: String| {
        store.lock().unwrap().push((stream, line));
    });
    (sink, seen)
}

async fn run(executor: &dyn Executor, req: ExecRequest) -> (Result<ExecOutcome, ExecError>, Seen) {
    let (sink, seen) = sink();
    let result = executor.execute(req, sink, CancellationToken::new()).await;
    (result, seen)
}

fn lines(seen: &Seen, stream: OutputStream) -> Vec<String> {
    seen.lock().unwrap().iter().filter(|(s, _)| *s == stream).map(|(_, l)| l.clone()).collect()
}

/// Compares the two counts every backend reports (other fields may be added to usage).
fn assert_usage(usage: Option<TokenUsage>, input: u64, output: u64) {
    let usage = usage.expect("usage reported");
    assert_eq!((usage.input_tokens, usage.output_tokens), (input, output));
}

fn claude(config: CodingAgentBackend) -> ClaudeCodeExecutor {
    ClaudeCodeExecutor::new(config).with_env(env())
}

fn codex(config: CodingAgentBackend) -> CodexExecutor {
    CodexExecutor::new(config).with_env(env())
}

fn gemini(config: CodingAgentBackend) -> GeminiExecutor {
    GeminiExecutor::new(config).with_env(env())
}

// ---- Claude Code ----

#[tokio::test]
async fn claude_success_reports_result_tools_reasoning_usage_cost_and_session() {
    let setup = Setup::new();
    let (result, seen) = run(&claude(setup.backend("claude", "success")), setup.request()).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "The orders table exists; the API is GET/POST /orders.");
    // Cache reads and writes count as input.
    assert_usage(outcome.usage, 18 + 1500 + 41700, 145);
    let usage = outcome.usage.unwrap();
    assert_eq!((usage.cache_creation_input_tokens, usage.cache_read_input_tokens), (1500, 41700));
    let details = &outcome.details;
    assert_eq!(details.cost_usd, Some(0.0213));
    assert_eq!(details.session_id.as_deref(), Some("5c3e7b1a-8f6d-4c2e-9a41-2f0b6d3e9c10"));
    let names: Vec<&str> = details.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Bash", "Read"]);
    assert_eq!(details.tool_calls[0].id.as_deref(), Some("toolu_01Bash"));
    assert!(details.tool_calls[0].input.contains("ls migrations"), "{:?}", details.tool_calls[0]);
    assert_eq!(
        details.reasoning.as_deref(),
        Some("The orders API needs a schema first; list the migrations.")
    );
    assert!(!outcome.output.contains("schema first"), "reasoning leaked into the output");

    let calls = lines(&seen, OutputStream::ToolCall);
    assert_eq!(calls.len(), 2);
    assert!(calls[0].starts_with("Bash {"), "{calls:?}");
    let results = lines(&seen, OutputStream::ToolResult);
    assert_eq!(results[0], "Bash: 001_init.sql\n002_orders.sql");
    assert!(results[1].starts_with("Read:      1\tCREATE TABLE orders"), "{results:?}");
    assert_eq!(
        lines(&seen, OutputStream::Tokens).concat(),
        "The orders table exists; the API is GET/POST /orders.\n"
    );
    assert_eq!(lines(&seen, OutputStream::Reasoning).len(), 1);
    let status = lines(&seen, OutputStream::Stdout);
    assert!(status[0].contains("model claude-sonnet-4-5-20250929"), "{status:?}");
}

#[tokio::test]
async fn claude_gets_prompt_model_tools_permission_mode_and_turns_as_documented() {
    let setup = Setup::new();
    let workdir = tempfile::tempdir().unwrap();
    let mut config = setup.backend("claude", "success");
    config.permission_mode = Some("acceptEdits".into());
    config.max_turns = Some(7);
    config.args = vec!["--add-dir".into(), "/srv/shared".into()];
    let mut req = setup.request();
    req.model = Some("opus".into());
    req.tools = vec!["Read".into(), "Grep".into(), "Bash(git:*)".into()];
    req.workdir = Some(workdir.path().to_owned());
    run(&claude(config), req).await.0.unwrap();

    assert_eq!(
        setup.argv(),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--append-system-prompt",
            "You are a backend architect.",
            "--model",
            "opus",
            "--allowedTools",
            "Read,Grep,Bash(git:*)",
            "--permission-mode",
            "acceptEdits",
            "--max-turns",
            "7",
            "--add-dir",
            "/srv/shared",
        ]
    );
    let stdin = setup.recorded("stdin.txt");
    assert!(stdin.starts_with("Design the orders API\n\nContext:\n"), "{stdin}");
    assert!(stdin.contains("use postgres"), "{stdin}");
    // The attempt runs in its own workspace, not the project folder.
    let cwd = PathBuf::from(setup.recorded("cwd.txt"));
    assert_eq!(cwd.canonicalize().unwrap(), workdir.path().canonicalize().unwrap());
    let env: Vec<String> = serde_json::from_str(&setup.recorded("env.json")).unwrap();
    assert!(!env.contains(&"SECRET_TOKEN".to_owned()), "{env:?}");
    assert!(env.contains(&"FLIGHTDECK_TASK".to_owned()), "{env:?}");
}

#[tokio::test]
async fn claude_backend_model_wins_over_the_agent_alias() {
    let setup = Setup::new();
    let mut config = setup.backend("claude", "success");
    config.model = Some("claude-opus-4-1".into());
    let mut req = setup.request();
    req.model = Some("sonnet".into());
    run(&claude(config), req).await.0.unwrap();
    let argv = setup.argv();
    let at = argv.iter().position(|a| a == "--model").unwrap();
    assert_eq!(argv[at + 1], "claude-opus-4-1");
    assert!(!argv.contains(&"--allowedTools".to_owned()), "no tools, no flag: {argv:?}");
}

#[tokio::test]
async fn claude_error_result_fails_transiently_with_its_subtype() {
    let setup = Setup::new();
    let (result, seen) = run(&claude(setup.backend("claude", "max_turns")), setup.request()).await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("exit code 1"), "{text}");
    assert!(text.contains("error_max_turns after 2 turns"), "{text}");
    assert!(text.contains("Reached maximum number of turns (2)"), "{text}");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(lines(&seen, OutputStream::ToolResult), ["Bash failed: 2 failed"]);
}

#[tokio::test]
async fn claude_authentication_failure_is_permanent_and_says_how_to_log_in() {
    let setup = Setup::new();
    let (result, _) = run(&claude(setup.backend("claude", "auth")), setup.request()).await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("not authenticated: Invalid API key"), "{text}");
    assert!(text.contains("ANTHROPIC_API_KEY"), "{text}");
    // The result's subtype (`success`) and its turns say nothing here.
    assert!(!text.contains("success") && !text.contains("turn"), "{text}");
    assert!(error.is_permanent(), "{error:?}");
}

#[tokio::test]
async fn claude_crash_mid_stream_fails_with_the_stderr_tail() {
    let setup = Setup::new();
    let (result, seen) = run(&claude(setup.backend("claude", "crash")), setup.request()).await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("without a `result` event"), "{text}");
    assert!(text.contains("ENOSPC: no space left on device"), "{text}");
    assert_eq!(error.class(), ErrorClass::Transient);
    // What arrived before the crash was still streamed.
    assert_eq!(lines(&seen, OutputStream::Tokens).concat(), "Starting on the migration.\n");
    assert!(lines(&seen, OutputStream::Stderr).iter().any(|l| l.contains("ENOSPC")));
}

#[tokio::test]
async fn claude_permission_denial_fails_naming_the_tool_and_the_fix() {
    let setup = Setup::new();
    let (result, seen) = run(&claude(setup.backend("claude", "denied")), setup.request()).await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("refused 1 tool call: Edit"), "{text}");
    assert!(text.contains("src/orders.rs"), "{text}");
    assert!(text.contains("--allowedTools"), "{text}");
    assert!(error.is_permanent());
    let results = lines(&seen, OutputStream::ToolResult);
    assert!(results[0].starts_with("Edit failed: Claude requested permissions"), "{results:?}");

    // With `on_denial: warn` the answer stands and the refusal is a notice line.
    let mut config = setup.backend("claude", "denied");
    config.on_denial = DenialPolicy::Warn;
    let (result, seen) = run(&claude(config), setup.request()).await;
    assert_eq!(result.unwrap().output, "I need permission to edit src/orders.rs.");
    let notices = lines(&seen, OutputStream::Stderr);
    assert!(notices.iter().any(|l| l.contains("refused 1 tool call: Edit")), "{notices:?}");
}

#[tokio::test]
async fn claude_long_tool_output_is_shown_in_part_and_counted() {
    let setup = Setup::new();
    let (result, seen) =
        run(&claude(setup.backend("claude", "long_tool_output")), setup.request()).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "The build log is clean.");
    let results = lines(&seen, OutputStream::ToolResult);
    assert_eq!(results.len(), 1);
    assert!(results[0].len() < 3000, "tool result line is {} bytes", results[0].len());
    assert!(results[0].contains("(1048576 bytes,"), "{}", &results[0][results[0].len() - 80..]);
    assert!(outcome.dropped_bytes > 1_000_000, "dropped {}", outcome.dropped_bytes);
    let streamed: usize = seen.lock().unwrap().iter().map(|(_, l)| l.len()).sum();
    assert!(streamed < 16 * 1024, "{streamed} bytes streamed for a 1 MiB tool output");
}

#[tokio::test]
async fn missing_program_is_a_permanent_spawn_error_with_an_install_hint() {
    let setup = Setup::new();
    let mut config = setup.backend("claude", "success");
    config.program = Some("flightdeck-test-no-such-claude".into());
    let (result, _) = run(&claude(config), setup.request()).await;
    let error = result.unwrap_err();
    let ExecError::Spawn { program, message } = &error else { panic!("{error:?}") };
    assert_eq!(program, "flightdeck-test-no-such-claude");
    assert!(message.contains("npm install -g @anthropic-ai/claude-code"), "{message}");
    assert!(error.is_permanent());
}

#[tokio::test]
async fn timeout_and_cancel_stop_the_cli() {
    let setup = Setup::new();
    let executor =
        claude(setup.backend("claude", "hang")).with_kill_grace(Duration::from_millis(100));
    let mut req = setup.request();
    req.timeout = Duration::from_millis(1500);
    let began = Instant::now();
    let (result, _) = run(&executor, req).await;
    assert!(matches!(result, Err(ExecError::Timeout(_))), "{result:?}");
    assert!(began.elapsed() < Duration::from_secs(10));
    let pid: i32 = setup.recorded("agent.pid").trim().parse().unwrap();
    assert!(wait_dead(pid).await, "the fake CLI {pid} survived the timeout");
    // The command it started is in its process group and goes with it.
    let tool: i32 = setup.recorded("tool.pid").trim().parse().unwrap();
    assert!(wait_dead(tool).await, "the CLI's child {tool} survived the timeout");

    std::fs::remove_file(setup.record.path().join("agent.pid")).unwrap();
    let cancel = CancellationToken::new();
    let (sink, _) = sink();
    let task = {
        let cancel = cancel.clone();
        let req = setup.request();
        tokio::spawn(async move { executor.execute(req, sink, cancel).await })
    };
    let pid_file = setup.record.path().join("agent.pid");
    for _ in 0..500 {
        if pid_file.exists() && !std::fs::read_to_string(&pid_file).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let result = task.await.unwrap();
    assert_eq!(result, Err(ExecError::Cancelled));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(wait_dead(pid).await, "the fake CLI {pid} survived the cancel");
    let tool: i32 = setup.recorded("tool.pid").trim().parse().unwrap();
    assert!(wait_dead(tool).await, "the CLI's child {tool} survived the cancel");
}

/// True once `pid` is gone or a zombie.
async fn wait_dead(pid: i32) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')) => {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    false
}

// ---- Codex ----

#[tokio::test]
async fn codex_success_answers_with_the_last_agent_message() {
    let setup = Setup::new();
    let (result, seen) = run(&codex(setup.backend("codex", "success")), setup.request()).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Added the POST /orders handler in src/orders/handler.rs.");
    assert_usage(outcome.usage, 24763, 122);
    assert_eq!(outcome.usage.unwrap().cache_read_input_tokens, 24448);
    let details = &outcome.details;
    assert_eq!(details.session_id.as_deref(), Some("0199a213-81c0-7800-8aa1-bbab2a035a53"));
    let names: Vec<&str> = details.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["command", "file_change", "docs.search"]);
    assert_eq!(details.reasoning.as_deref(), Some("**Checking the orders module before editing**"));
    let results = lines(&seen, OutputStream::ToolResult);
    assert_eq!(
        results,
        [
            "command: 12:    todo!()",
            "file_change: update src/orders.rs\nadd src/orders/handler.rs",
            "docs.search: Handlers are async fns.",
        ]
    );
    let status = lines(&seen, OutputStream::Stdout);
    assert!(
        status.iter().any(|l| l == "plan: [x] Read orders.rs; [x] Add the handler"),
        "{status:?}"
    );
}

#[tokio::test]
async fn codex_gets_exec_json_cd_model_and_sandbox() {
    let setup = Setup::new();
    let mut config = setup.backend("codex", "success");
    config.permission_mode = Some("workspace-write".into());
    config.model = Some("gpt-5-codex".into());
    config.args = vec!["-c".into(), "model_reasoning_effort=\"high\"".into()];
    run(&codex(config), setup.request()).await.0.unwrap();
    let dir = setup.project.path().display().to_string();
    assert_eq!(
        setup.argv(),
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--cd",
            dir.as_str(),
            "--model",
            "gpt-5-codex",
            "--sandbox",
            "workspace-write",
            "-c",
            "model_reasoning_effort=\"high\"",
            "-",
        ]
    );
    // Codex has no system-prompt flag: the agent's prompt leads stdin.
    let stdin = setup.recorded("stdin.txt");
    assert!(stdin.starts_with("You are a backend architect.\n\nDesign the orders API"), "{stdin}");
}

#[tokio::test]
async fn codex_ignores_a_claude_alias_from_the_agent() {
    let setup = Setup::new();
    let mut req = setup.request();
    req.model = Some("sonnet".into());
    run(&codex(setup.backend("codex", "success")), req).await.0.unwrap();
    assert!(!setup.argv().contains(&"--model".to_owned()), "{:?}", setup.argv());

    let mut req = setup.request();
    req.model = Some("o4-mini".into());
    run(&codex(setup.backend("codex", "success")), req).await.0.unwrap();
    assert!(setup.argv().windows(2).any(|w| w == ["--model", "o4-mini"]), "{:?}", setup.argv());
}

#[tokio::test]
async fn codex_failed_turn_is_permanent_for_auth_and_transient_otherwise() {
    let setup = Setup::new();
    let (result, _) = run(&codex(setup.backend("codex", "auth")), setup.request()).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("401 Unauthorized") && text.contains("codex login"), "{text}");

    let (result, seen) = run(&codex(setup.backend("codex", "stream_error")), setup.request()).await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(error.to_string().contains("stream disconnected before completion"), "{error}");
    assert!(lines(&seen, OutputStream::Stderr).iter().any(|l| l.contains("Reconnecting... 1/5")));
}

#[tokio::test]
async fn codex_crash_mid_turn_fails_with_the_stderr_tail() {
    let setup = Setup::new();
    let (result, _) = run(&codex(setup.backend("codex", "crash")), setup.request()).await;
    let text = result.unwrap_err().to_string();
    assert!(text.contains("exit code 101"), "{text}");
    assert!(text.contains("without a `turn.completed` event"), "{text}");
    assert!(text.contains("panicked at"), "{text}");
}

#[tokio::test]
async fn codex_declined_command_and_long_output() {
    let setup = Setup::new();
    let (result, _) = run(&codex(setup.backend("codex", "declined")), setup.request()).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent());
    assert!(error.to_string().contains("command `git push origin main`"), "{error}");
    assert!(error.to_string().contains("workspace-write"), "{error}");

    let (result, seen) =
        run(&codex(setup.backend("codex", "long_tool_output")), setup.request()).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "The log is clean.");
    assert!(outcome.dropped_bytes > 1_000_000);
    let results = lines(&seen, OutputStream::ToolResult);
    assert!(results[0].len() < 3000 && results[0].contains("not shown"), "{}", results[0].len());
}

// ---- Gemini CLI ----

#[tokio::test]
async fn gemini_success_assembles_the_streamed_answer() {
    let setup = Setup::new();
    let mut config = setup.backend("gemini", "success");
    config.permission_mode = Some("auto_edit".into());
    let mut req = setup.request();
    req.model = Some("gemini-2.5-flash".into());
    let (result, seen) = run(&gemini(config), req).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "Let me read the schema.\nThe API is GET/POST /orders.");
    assert_usage(outcome.usage, 1100, 150);
    assert_eq!(outcome.usage.unwrap().cache_read_input_tokens, 400);
    assert_eq!(outcome.details.session_id.as_deref(), Some("test-session-123"));
    // A plain line before the stream is passed on, not mistaken for an event.
    assert_eq!(
        lines(&seen, OutputStream::Stdout),
        ["Loaded cached credentials.", "gemini session test-session-123 · model gemini-2.5-pro"]
    );
    let names: Vec<&str> = outcome.details.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["read_file", "glob"]);
    let results = lines(&seen, OutputStream::ToolResult);
    assert_eq!(
        results,
        [
            "read_file: CREATE TABLE orders (id bigserial primary key);",
            "glob failed: glob_execution_error: No files found",
        ]
    );
    assert_eq!(
        setup.argv(),
        [
            "--output-format",
            "stream-json",
            "--prompt",
            "Carry out the task above.",
            "--model",
            "gemini-2.5-flash",
            "--approval-mode",
            "auto_edit",
        ]
    );
    let stdin = setup.recorded("stdin.txt");
    assert!(stdin.starts_with("You are a backend architect.\n\nDesign the orders API"), "{stdin}");
}

#[tokio::test]
async fn gemini_errors_policy_denials_and_crashes() {
    let setup = Setup::new();
    let (result, _) = run(&gemini(setup.backend("gemini", "error")), setup.request()).await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(error.to_string().contains("The model is overloaded"), "{error}");

    let (result, _) = run(&gemini(setup.backend("gemini", "auth")), setup.request()).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent() && error.to_string().contains("GEMINI_API_KEY"), "{error}");

    let (result, _) = run(&gemini(setup.backend("gemini", "policy")), setup.request()).await;
    let error = result.unwrap_err();
    assert!(error.is_permanent());
    assert!(
        error.to_string().contains("run_shell_command: Tool execution denied by policy"),
        "{error}"
    );

    let (result, _) = run(&gemini(setup.backend("gemini", "crash")), setup.request()).await;
    let text = result.unwrap_err().to_string();
    assert!(text.contains("exit code 134") && text.contains("heap out of memory"), "{text}");
}

// ---- settings ----

#[test]
fn settings_accept_the_three_kinds_and_name_bad_fields() {
    let text = "default_backend: claude
backends:
  claude:
    kind: claude_code
    permission_mode: acceptEdits
    max_turns: 12
  claude-alias:
    kind: claude-code
  codex:
    kind: codex
    model: gpt-5-codex
    workspace: worktree
  gemini:
    kind: gemini
    program: /opt/gemini/bin/gemini
";
    let settings = Settings::parse(text, Path::new("f.yaml")).unwrap();
    let BackendConfig::ClaudeCode(claude) = &settings.backends["claude"] else { panic!() };
    assert_eq!(claude.max_turns, Some(12));
    assert!(matches!(settings.backends["claude-alias"], BackendConfig::ClaudeCode(_)));
    assert_eq!(settings.backends["codex"].kind(), "codex");
    assert_eq!(
        settings.backends["codex"].workspace(),
        Some(flightdeck::config::WorkspaceKind::Worktree)
    );

    let bad =
        "default_backend: codex\nbackends:\n  codex:\n    kind: codex\n    permission_mode: yolo\n";
    let error = Settings::parse(bad, Path::new("f.yaml")).unwrap_err().to_string();
    assert!(error.starts_with("f.yaml:5: backends.codex.permission_mode: `yolo`"), "{error}");
    assert!(error.contains("workspace-write"), "{error}");

    let bad = "default_backend: g\nbackends:\n  g:\n    kind: gemini\n    max_turns: 3\n";
    let error = Settings::parse(bad, Path::new("f.yaml")).unwrap_err().to_string();
    assert!(error.starts_with("f.yaml:5: backends.g.max_turns:"), "{error}");
}

// ---- end to end ----

/// `flightdeck run` on a project whose agent runs on the fake Claude Code: the agent's
/// `tools` and `model` reach the CLI, and the answer's details reach the event stream.
#[test]
fn a_workflow_runs_on_claude_code_through_the_engine() {
    let project = tempfile::tempdir().unwrap();
    let record = tempfile::tempdir().unwrap();
    let root = project.path();
    let settings = format!(
        "default_backend: coder
default_role: admin
backends:
  coder:
    kind: claude_code
    program: {}
    permission_mode: acceptEdits
    env:
      FAKE_SCENARIO: {}
      FAKE_RECORD: {}
",
        fixtures().join("bin/claude").display(),
        fixtures().join("claude/success.jsonl").display(),
        record.path().display(),
    );
    std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
    std::fs::create_dir_all(root.join("agentpool")).unwrap();
    std::fs::write(
        root.join("agentpool/architect.md"),
        "---\nname: architect\ndescription: Designs APIs\ntools: Read, Grep\nmodel: opus\n---\nYou design APIs.\n",
    )
    .unwrap();
    std::fs::write(
        root.join("flow.yaml"),
        "name: flow\ntasks:\n  - {id: design, description: Design the orders API, agent: architect}\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .current_dir(root)
        .args(["--project-dir", root.to_str().unwrap(), "run", "flow.yaml", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let succeeded = events.iter().find(|e| e["type"] == "task_succeeded").unwrap();
    assert_eq!(succeeded["output"], "The orders table exists; the API is GET/POST /orders.");
    assert_eq!(succeeded["details"]["session_id"], "5c3e7b1a-8f6d-4c2e-9a41-2f0b6d3e9c10");
    assert_eq!(succeeded["details"]["cost_usd"], 0.0213);
    assert_eq!(succeeded["details"]["tool_calls"][0]["name"], "Bash");
    let streams: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "task_output")
        .filter_map(|e| e["stream"].as_str())
        .collect();
    for stream in ["tool_call", "tool_result", "reasoning", "tokens"] {
        assert!(streams.contains(&stream), "no {stream} output in {streams:?}");
    }
    let argv: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(record.path().join("argv.json")).unwrap())
            .unwrap();
    assert!(argv.windows(2).any(|w| w == ["--allowedTools", "Read,Grep"]), "{argv:?}");
    assert!(argv.windows(2).any(|w| w == ["--model", "opus"]), "{argv:?}");
    assert!(
        argv.windows(2).any(|w| w == ["--append-system-prompt", "You design APIs."]),
        "{argv:?}"
    );
}

/// The commented coding-agent examples in the project's flightdeck.yaml stay valid settings.
#[test]
fn the_commented_examples_in_flightdeck_yaml_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("flightdeck.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut inside = false;
    let uncommented: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("  # claude:") {
                inside = true;
            } else if line.starts_with("  # Each") {
                inside = false;
            }
            match line.strip_prefix("  # ") {
                Some(rest) if inside => format!("  {rest}"),
                _ if inside && line.trim() == "#" => String::new(),
                _ => line.to_owned(),
            }
        })
        .collect();
    let settings = Settings::parse(&uncommented.join("\n"), &path).unwrap();
    for (name, kind) in [("claude", "claude_code"), ("codex", "codex"), ("gemini", "gemini")] {
        assert_eq!(settings.backends[name].kind(), kind);
        assert_eq!(
            settings.backends[name].workspace(),
            Some(flightdeck::config::WorkspaceKind::Worktree)
        );
    }
}

#[tokio::test]
async fn claude_partial_messages_stream_tokens_once() {
    let setup = Setup::new();
    let mut config = setup.backend("claude", "partial");
    config.partial_messages = true;
    let (result, seen) = run(&claude(config), setup.request()).await;
    let outcome = result.unwrap();
    assert_eq!(outcome.output, "The orders table exists.");
    assert_eq!(outcome.details.reasoning.as_deref(), Some("Short answer suffices."));
    // Shown as the deltas came, and not again when the whole message arrived.
    assert_eq!(lines(&seen, OutputStream::Tokens), ["The orders ", "table exists.", "\n"]);
    assert_eq!(lines(&seen, OutputStream::Reasoning), ["Short answer suffices."]);
    assert!(setup.argv().contains(&"--include-partial-messages".to_owned()));

    let bad = "default_backend: c\nbackends:\n  c:\n    kind: codex\n    partial_messages: true\n";
    let error = Settings::parse(bad, Path::new("f.yaml")).unwrap_err().to_string();
    assert!(error.starts_with("f.yaml:5: backends.c.partial_messages:"), "{error}");
}
