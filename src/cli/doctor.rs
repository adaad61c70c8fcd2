//! `flightdeck doctor [--json]`: for each configured backend, whether it can run here
//! (simulated, installed with its version, or reachable over HTTP), whether its key variable
//! is set (never its value), and which agents and bundled workflows use it.
//!
//! Exits 1 when a backend that a bundled workflow (`workflows/*.yaml`) runs on is missing,
//! unreachable or lacks its key, or when a bundled workflow does not plan; 0 otherwise, so
//! CI and setup scripts can gate on it. Missing backends nobody uses are reported, not fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use super::table::{self, Align};
use super::{Globals, exit};
use crate::agents::Registry;
use crate::agents::registry::tidy_path;
use crate::config::{BackendConfig, CodingCli, HttpBackend, Settings, WorkspaceKind};
use crate::workflow::{PlanOverrides, Workflow, plan_with};

/// How long a backend's HTTP endpoint may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `<program> --version` may take (Node CLIs start slowly on a cold cache).
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a backend can run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// The simulator: always there.
    Simulated,
    /// The program was found.
    Installed,
    /// The program was not found.
    Missing,
    /// The endpoint answered over HTTP (any status: a 401 still proves the server is there).
    Reachable,
    /// No HTTP answer within the timeout.
    Unreachable,
}

impl Status {
    fn is_ready(self) -> bool {
        matches!(self, Self::Simulated | Self::Installed | Self::Reachable)
    }

    fn word(self) -> &'static str {
        match self {
            Self::Simulated => "ok",
            Self::Installed => "installed",
            Self::Missing => "MISSING",
            Self::Reachable => "reachable",
            Self::Unreachable => "UNREACHABLE",
        }
    }
}

/// An API key variable and whether it is set; its value is never read into the report.
#[derive(Debug, Clone, Serialize)]
struct Key {
    env: String,
    set: bool,
    /// False for coding CLIs, which can log in instead.
    required: bool,
    /// Whether the backend hands the variable on: a coding CLI only sees what `env_allow`
    /// lets through.
    passed: bool,
}

/// What doctor found about one backend.
#[derive(Debug, Clone, Serialize)]
struct BackendReport {
    name: String,
    kind: &'static str,
    status: Status,
    /// True when the backend can run and has what it needs.
    ready: bool,
    /// One line for people: version, path, HTTP status or what is wrong and how to fix it.
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    program: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Key>,
    /// The backend's `workspace`, when it sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace: Option<WorkspaceKind>,
    /// Why the workspace cannot be made here (`git` missing, not a repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace_problem: Option<String>,
    /// Agents whose definition runs on this backend (by name or as the default).
    agents: Vec<String>,
    /// Bundled workflows with a task on this backend.
    workflows: Vec<String>,
}

/// One bundled workflow and the backends its plan uses.
#[derive(Debug, Clone, Serialize)]
struct WorkflowReport {
    file: PathBuf,
    backends: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    settings: PathBuf,
    backends: Vec<BackendReport>,
    workflows: Vec<WorkflowReport>,
    /// What the bundled workflows need and do not have, one sentence each.
    problems: Vec<String>,
}

/// `doctor [--json]`: 0 when the bundled workflows have everything they need, 1 otherwise,
/// 2 when the settings file cannot be read.
pub fn doctor(globals: &Globals, json: bool) -> i32 {
    let settings = match Settings::load(&globals.project_dir) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return exit::INVALID;
        }
    };
    let registry = Registry::load(&tidy_path(&globals.agentpool_dir()));
    let workflows = bundled_workflows(&globals.project_dir, &registry, &settings);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return exit::FAILED;
        }
    };
    let mut backends = runtime.block_on(check_all(&settings, &globals.project_dir));
    attach_users(&mut backends, &registry, &settings, &workflows);
    let problems = problems(&backends, &workflows);
    let report = Report {
        ok: problems.is_empty(),
        settings: globals.project_dir.join(crate::config::SETTINGS_FILE),
        backends,
        workflows,
        problems,
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => outln!("{text}"),
            Err(error) => eprintln!("cannot encode the report: {error}"),
        }
    } else {
        out!("{}", render(&report));
    }
    if report.ok { exit::OK } else { exit::FAILED }
}

/// Plans each `workflows/*.yaml` of the project to learn the backends its tasks run on.
fn bundled_workflows(
    project: &Path,
    registry: &Registry,
    settings: &Settings,
) -> Vec<WorkflowReport> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(project.join("workflows"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let planned = Workflow::load_for(&file, Some(registry))
                .and_then(|w| plan_with(&w, registry, settings, &PlanOverrides::default()));
            let shown = file.strip_prefix(project).unwrap_or(&file).to_owned();
            match planned {
                Ok(plan) => {
                    let backends: BTreeSet<String> =
                        plan.steps.iter().map(|step| step.backend.to_string()).collect();
                    WorkflowReport {
                        file: shown,
                        backends: backends.into_iter().collect(),
                        error: None,
                    }
                }
                Err(error) => WorkflowReport {
                    file: shown,
                    backends: Vec::new(),
                    error: Some(error.to_string()),
                },
            }
        })
        .collect()
}

/// Checks every backend at once: HTTP requests and `--version` runs overlap.
async fn check_all(settings: &Settings, project: &Path) -> Vec<BackendReport> {
    let checks = settings.backends.iter().map(|(name, config)| check(name, config, project));
    futures::future::join_all(checks).await
}

async fn check(name: &str, config: &BackendConfig, project: &Path) -> BackendReport {
    let mut report = BackendReport {
        name: name.to_owned(),
        kind: config.kind(),
        status: Status::Simulated,
        ready: true,
        detail: String::new(),
        program: None,
        path: None,
        version: None,
        url: None,
        http_status: None,
        key: None,
        workspace: config.workspace(),
        workspace_problem: None,
        agents: Vec::new(),
        workflows: Vec::new(),
    };
    if report.workspace == Some(WorkspaceKind::Worktree) {
        report.workspace_problem = worktree_problem(project).await;
    }
    match config {
        BackendConfig::Sim(_) => report.detail = "simulated; needs nothing".into(),
        BackendConfig::Process(process) => {
            let program = process.command.first().cloned().unwrap_or_default();
            check_program(&mut report, &program, project, None).await;
        }
        BackendConfig::Openai(http) | BackendConfig::Anthropic(http) => {
            check_http(&mut report, http).await;
        }
        BackendConfig::ClaudeCode(agent)
        | BackendConfig::Codex(agent)
        | BackendConfig::Gemini(agent) => {
            let Some((cli, _)) = config.coding_cli() else { return report };
            let env = cli.key_env();
            let passed = agent.env_allow(cli).iter().any(|name| name == env);
            report.key =
                Some(Key { env: env.to_owned(), set: is_set(env), required: false, passed });
            check_program(&mut report, agent.program(cli), project, Some(cli)).await;
        }
    }
    if let Some(problem) = &report.workspace_problem {
        let _ = write!(report.detail, "; {problem}");
    }
    report.ready = report.status.is_ready()
        && report.workspace_problem.is_none()
        && report.key.as_ref().is_none_or(|k| k.set || !k.required);
    report
}

fn is_set(env: &str) -> bool {
    std::env::var_os(env).is_some_and(|value| !value.is_empty())
}

/// Finds the program and, for coding CLIs, asks it for its version. Process backends'
/// programs are only located: running someone's agent script with `--version` could start
/// real work.
async fn check_program(
    report: &mut BackendReport,
    program: &str,
    project: &Path,
    cli: Option<CodingCli>,
) {
    report.program = Some(program.to_owned());
    let Some(path) = locate(program, project) else {
        report.status = Status::Missing;
        let hint = cli.map_or_else(
            || "install it or fix the backend's `command`".to_owned(),
            |cli| format!("{} (or set the backend's `program`)", cli.install_hint()),
        );
        report.detail = if program.contains('/') {
            format!("`{program}` does not exist or is not executable; {hint}")
        } else {
            format!("`{program}` is not on PATH; {hint}")
        };
        return;
    };
    report.status = Status::Installed;
    report.detail = path.display().to_string();
    if cli.is_some() {
        match version(&path).await {
            Ok(version) => {
                report.detail = format!("{version} ({})", path.display());
                report.version = Some(version);
            }
            Err(problem) => report.detail = format!("{} (--version: {problem})", path.display()),
        }
    }
    report.path = Some(path);
}

/// The program's file: a path as given (relative ones from the project folder), or the
/// first executable of that name on `PATH`.
fn locate(program: &str, project: &Path) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let path = project.join(program);
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The first non-empty line `<program> --version` prints.
async fn version(path: &Path) -> Result<String, String> {
    let child = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(VERSION_TIMEOUT, child).await {
        Err(_) => return Err(format!("no answer within {}s", VERSION_TIMEOUT.as_secs())),
        Ok(Err(error)) => return Err(error.to_string()),
        Ok(Ok(output)) => output,
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let first = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    if output.status.success() && !first.is_empty() {
        Ok(first.chars().take(120).collect())
    } else {
        Err(format!(
            "{}{}",
            output.status,
            if first.is_empty() { String::new() } else { format!(": {first}") }
        ))
    }
}

/// Why `workspace: worktree` cannot work in `project`: no `git`, or not a repository.
async fn worktree_problem(project: &Path) -> Option<String> {
    let Some(git) = locate("git", project) else {
        return Some("`workspace: worktree` needs `git`, which is not on PATH".to_owned());
    };
    let inside = tokio::process::Command::new(git)
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(VERSION_TIMEOUT, inside).await {
        Ok(Ok(output)) if output.status.success() => None,
        _ => Some(format!(
            "`workspace: worktree` needs a git repository, and {} is not one (run `git init`)",
            project.display()
        )),
    }
}

/// The models list of an OpenAI-compatible or Anthropic API: cheap, harmless, and answered
/// by every such server. No key is sent: any HTTP answer proves the server is there.
fn models_url(kind: &str, base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if kind == "anthropic" && !base.ends_with("/v1") {
        format!("{base}/v1/models")
    } else {
        format!("{base}/models")
    }
}

async fn check_http(report: &mut BackendReport, http: &HttpBackend) {
    if let Some(env) = &http.api_key_env {
        report.key = Some(Key { env: env.clone(), set: is_set(env), required: true, passed: true });
    }
    let url = models_url(report.kind, &http.base_url);
    report.url = Some(url.clone());
    let loopback = reqwest::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|host| host == "localhost" || host.starts_with("127.") || host == "[::1]");
    let mut builder = reqwest::Client::builder().timeout(HTTP_TIMEOUT);
    if loopback {
        // A proxy cannot reach this machine's loopback; HTTP_PROXY must not decide.
        builder = builder.no_proxy();
    }
    let answer = match builder.build() {
        Ok(client) => client.get(&url).send().await.map_err(|e| describe_http_error(&e)),
        Err(error) => Err(error.to_string()),
    };
    match answer {
        Ok(response) => {
            let status = response.status();
            report.status = Status::Reachable;
            report.http_status = Some(status.as_u16());
            report.detail = format!("GET {url}: HTTP {}", status.as_u16());
        }
        Err(problem) => {
            report.status = Status::Unreachable;
            report.detail =
                format!("GET {url}: {problem}; is the server running and base_url right?");
        }
    }
}

/// The innermost cause (`Connection refused`, `dns error: ...`): reqwest's own layers
/// repeat the URL, which the line already shows.
fn describe_http_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s", HTTP_TIMEOUT.as_secs());
    }
    let mut innermost: &dyn std::error::Error = error;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    let kind = if error.is_connect() { "cannot connect" } else { "request failed" };
    format!("{kind}: {innermost}")
}

/// Fills in which agents and bundled workflows use each backend.
fn attach_users(
    backends: &mut [BackendReport],
    registry: &Registry,
    settings: &Settings,
    workflows: &[WorkflowReport],
) {
    let mut agents: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let definitions = registry.definitions();
    for definition in &definitions {
        let backend = definition.backend.as_deref().unwrap_or(&settings.default_backend);
        agents.entry(backend).or_default().push(definition.name.as_str().to_owned());
    }
    for report in backends.iter_mut() {
        report.agents = agents.remove(report.name.as_str()).unwrap_or_default();
        report.agents.sort();
        report.workflows = workflows
            .iter()
            .filter(|w| w.backends.contains(&report.name))
            .map(|w| w.file.display().to_string())
            .collect();
    }
}

/// What the bundled workflows need and lack.
fn problems(backends: &[BackendReport], workflows: &[WorkflowReport]) -> Vec<String> {
    let mut problems = Vec::new();
    for workflow in workflows {
        if let Some(error) = &workflow.error {
            problems.push(format!("workflow {} does not plan: {error}", workflow.file.display()));
        }
    }
    for backend in backends.iter().filter(|b| !b.workflows.is_empty()) {
        let users = backend.workflows.join(", ");
        if !backend.status.is_ready() {
            problems.push(format!(
                "{users} need{} backend `{}` ({}): {}",
                if backend.workflows.len() == 1 { "s" } else { "" },
                backend.name,
                backend.kind,
                backend.detail
            ));
        }
        if let Some(problem) = &backend.workspace_problem {
            problems.push(format!(
                "{users} need{} backend `{}`: {problem}",
                if backend.workflows.len() == 1 { "s" } else { "" },
                backend.name
            ));
        }
        if let Some(key) = backend.key.as_ref().filter(|k| k.required && !k.set) {
            problems.push(format!(
                "{users} need{} backend `{}`, whose key variable {} is not set",
                if backend.workflows.len() == 1 { "s" } else { "" },
                backend.name,
                key.env
            ));
        }
    }
    problems
}

fn key_text(key: Option<&Key>) -> String {
    match key {
        None => "-".to_owned(),
        Some(Key { env, set: true, passed: false, .. }) => format!("{env} set, not in env_allow"),
        Some(Key { env, set: true, .. }) => format!("{env} set"),
        Some(Key { env, set: false, required: true, .. }) => format!("{env} NOT SET"),
        Some(Key { env, set: false, required: false, .. }) => format!("{env} not set (login ok)"),
    }
}

fn users_text(report: &BackendReport) -> String {
    const SHOWN: usize = 3;
    let mut parts = Vec::new();
    if !report.agents.is_empty() {
        let mut names = report.agents.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if report.agents.len() > SHOWN {
            let _ = write!(names, " +{}", report.agents.len() - SHOWN);
        }
        parts.push(format!("agents {names}"));
    }
    if !report.workflows.is_empty() {
        // File stems keep the table narrow; `--json` has the paths.
        let stems: Vec<String> = report
            .workflows
            .iter()
            .map(|w| {
                Path::new(w)
                    .file_stem()
                    .map_or_else(|| w.clone(), |s| s.to_string_lossy().into_owned())
            })
            .collect();
        parts.push(format!("workflows {}", stems.join(", ")));
    }
    if parts.is_empty() { "-".to_owned() } else { parts.join("; ") }
}

/// The table, then the verdict. Each backend is one aligned row of short columns, followed
/// by indented lines for who uses it and the detail (version, path, URL, error), which are
/// too long to share a line in an 80- or 120-column terminal.
fn render(report: &Report) -> String {
    let header = ["BACKEND", "KIND", "STATUS", "KEY"];
    let rows: Vec<[String; 4]> = report
        .backends
        .iter()
        .map(|b| {
            [
                b.name.clone(),
                b.kind.to_owned(),
                b.status.word().to_owned(),
                key_text(b.key.as_ref()),
            ]
        })
        .collect();
    let mut lines = table::lines(header, [Align::Left; 4], &rows).into_iter();
    let mut out = String::new();
    if report.settings.is_file() {
        let _ = writeln!(out, "backends in {}\n", report.settings.display());
    } else {
        let _ = writeln!(out, "default backends (no {})\n", report.settings.display());
    }
    let _ = writeln!(out, "{}", lines.next().unwrap_or_default());
    for (line, backend) in lines.zip(&report.backends) {
        let _ = writeln!(out, "{line}");
        let users = users_text(backend);
        if users != "-" {
            let _ = writeln!(out, "    used by {users}");
        }
        if !backend.detail.is_empty() {
            let _ = writeln!(out, "    {}", backend.detail);
        }
    }
    out.push('\n');
    if report.workflows.is_empty() {
        let _ = writeln!(out, "ok: no bundled workflows (workflows/*.yaml) to check against");
    } else if report.problems.is_empty() {
        let _ = writeln!(
            out,
            "ok: the {} bundled workflow{} have everything they need",
            report.workflows.len(),
            if report.workflows.len() == 1 { "" } else { "s" }
        );
    } else {
        let _ = writeln!(
            out,
            "{} problem{} for the bundled workflows:",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        );
        for problem in &report.problems {
            let _ = writeln!(out, "  - {problem}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_url_follows_each_api() {
        assert_eq!(
            models_url("openai", "http://127.0.0.1:8080/v1/"),
            "http://127.0.0.1:8080/v1/models"
        );
        assert_eq!(
            models_url("anthropic", "https://api.anthropic.com"),
            "https://api.anthropic.com/v1/models"
        );
        assert_eq!(models_url("anthropic", "http://h/v1"), "http://h/v1/models");
    }

    #[test]
    fn key_text_never_shows_a_value() {
        let key = Key { env: "OPENAI_API_KEY".into(), set: true, required: true, passed: true };
        assert_eq!(key_text(Some(&key)), "OPENAI_API_KEY set");
        let key = Key { env: "OPENAI_API_KEY".into(), set: false, required: true, passed: true };
        assert_eq!(key_text(Some(&key)), "OPENAI_API_KEY NOT SET");
        let key =
            Key { env: "ANTHROPIC_API_KEY".into(), set: true, required: false, passed: false };
        assert_eq!(key_text(Some(&key)), "ANTHROPIC_API_KEY set, not in env_allow");
    }
}
