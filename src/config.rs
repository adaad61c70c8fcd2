//! Project settings from `flightdeck.yaml`: named backends, users and roles, safety policies
//! and limits. Every field has a default, so a partial file (or none) works.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings file name inside the project folder.
pub const SETTINGS_FILE: &str = "flightdeck.yaml";

/// Errors reading `flightdeck.yaml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Parse { file: PathBuf, line: usize, column: usize, message: String },
    /// Well-formed YAML with a value that cannot work; `line` is the field's, when found.
    #[error("{file}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { file: PathBuf, line: Option<usize>, field: String, message: String },
}

/// The whole settings file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Backend used by agents that name none.
    pub default_backend: String,
    /// How agents run, by name.
    #[serde(deserialize_with = "unique_map::deserialize")]
    pub backends: BTreeMap<String, BackendConfig>,
    /// User name to role name (`admin`, `developer`, `operator`, `reviewer`, `viewer`).
    #[serde(deserialize_with = "unique_map::deserialize")]
    pub users: BTreeMap<String, String>,
    /// Role of identities not listed in `users`.
    pub default_role: String,
    pub policies: Policies,
    pub limits: Limits,
    pub breakers: BreakerSettings,
    /// Theme name from `themes/` when `--theme` is not given.
    pub theme: Option<String>,
    /// How conflicts between panel members are settled.
    pub conflicts: ConflictSettings,
    /// Safety policies on agents' outputs (`safety.enforcement`, `safety.policies`).
    pub safety: crate::safety::SafetySettings,
    /// What is redacted besides the built-in secret shapes and key values.
    pub redact: RedactSettings,
    /// The control socket of the process that hosts the data dir.
    pub host: HostSettings,
    /// Who is told when a task starts waiting for a person.
    pub notify: NotifySettings,
    /// Per-backend request and token rates, by backend name (see [`RateLimitSettings`]).
    #[serde(
        deserialize_with = "unique_map::deserialize",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub rate_limits: BTreeMap<String, RateLimitSettings>,
    /// Prices per model, for the cost of backends that report tokens but no cost.
    #[serde(
        deserialize_with = "unique_map::deserialize",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub prices: BTreeMap<String, Price>,
}

/// `rate_limits.<backend>:` the most a backend is asked, across every run of this process.
/// An attempt that would go over waits (its task shows "waiting on rate limit").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Attempts started per minute (each attempt is one request to the backend).
    pub requests_per_minute: Option<u32>,
    /// Tokens (input plus output, as the backend reports them) per minute.
    pub tokens_per_minute: Option<u64>,
}

/// `prices.<model>:` US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// The cost of one attempt's tokens.
    pub fn cost(&self, usage: &crate::event::TokenUsage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_mtok
            + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// A token and cost budget (`budget: {tokens: N, cost_usd: X}`) of a task or a run; an
/// absent field is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    pub tokens: Option<u64>,
    pub cost_usd: Option<f64>,
}

impl Budget {
    pub fn is_unlimited(&self) -> bool {
        self.tokens.is_none() && self.cost_usd.is_none()
    }

    /// The field that cannot work, as `(field, what is wrong)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.tokens == Some(0) {
            return Some(("tokens", "must be at least 1 (leave it out for no limit)".into()));
        }
        match self.cost_usd {
            Some(cost) if !(cost.is_finite() && cost > 0.0) => {
                Some(("cost_usd", format!("{cost} is not an amount above 0")))
            }
            _ => None,
        }
    }
}

/// What reaching 100% of a budget does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBudget {
    /// The task stops (fails) with a budget reason; dependents are skipped.
    #[default]
    Stop,
    /// The task's output is held for a reviewer: approving raises the budget by its size
    /// again and lets the output through; rejecting fails the task.
    Approve,
}

/// `redact:` in `flightdeck.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactSettings {
    /// The project's own secret shapes, shown as `[redacted:NAME]`.
    pub patterns: Vec<RedactPattern>,
}

/// One project secret shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactPattern {
    /// The KIND in `[redacted:KIND]`.
    pub name: String,
    /// A regular expression (Rust `regex` syntax); the whole match is redacted.
    pub pattern: String,
}

/// The control socket (`<data-dir>/control.sock`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSettings {
    /// The group given read and write access to the socket (mode 0660), e.g. `reviewers`;
    /// unset, the host's own group.
    pub socket_group: Option<String>,
}

/// Attention when a task starts waiting for a person (an approval or a conflict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// Ring the terminal bell in every attached console.
    pub bell: bool,
    /// Send a desktop notification (OSC 9 and OSC 777) from every attached console.
    pub desktop: bool,
    /// A program (argv, never a shell string) run with a JSON description on stdin.
    pub command: Vec<String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self { bell: true, desktop: true, command: Vec::new() }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let mut backends = BTreeMap::new();
        backends.insert("sim".to_owned(), BackendConfig::Sim(SimBackend::default()));
        Self {
            default_backend: "sim".to_owned(),
            backends,
            users: BTreeMap::new(),
            default_role: "viewer".to_owned(),
            policies: Policies::default(),
            limits: Limits::default(),
            breakers: BreakerSettings::default(),
            theme: None,
            conflicts: ConflictSettings::default(),
            safety: crate::safety::SafetySettings::default(),
            redact: RedactSettings::default(),
            host: HostSettings::default(),
            notify: NotifySettings::default(),
            rate_limits: BTreeMap::new(),
            prices: BTreeMap::new(),
        }
    }
}

/// One named backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendConfig {
    Process(ProcessBackend),
    Openai(HttpBackend),
    Anthropic(HttpBackend),
    Sim(SimBackend),
    /// Claude Code in print mode (`claude -p --output-format stream-json --verbose`).
    #[serde(alias = "claude-code")]
    ClaudeCode(CodingAgentBackend),
    /// The Codex CLI (`codex exec --json`).
    Codex(CodingAgentBackend),
    /// The Gemini CLI (`gemini --output-format stream-json`).
    Gemini(CodingAgentBackend),
}

/// Where an attempt works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceKind {
    /// The project folder (or the backend's `workdir`), shared with every other attempt.
    #[default]
    Shared,
    /// A git worktree of its own on a branch named after the run and task, kept for review.
    Worktree,
    /// A fresh empty folder.
    Temp,
}

impl BackendConfig {
    /// The workspace the backend asks for; a task's own `workspace` takes precedence.
    pub fn workspace(&self) -> Option<WorkspaceKind> {
        match self {
            Self::Process(backend) => backend.workspace,
            Self::ClaudeCode(backend) | Self::Codex(backend) | Self::Gemini(backend) => {
                backend.workspace
            }
            Self::Openai(_) | Self::Anthropic(_) | Self::Sim(_) => None,
        }
    }

    /// The coding-agent CLI this backend runs, if it is one.
    pub fn coding_cli(&self) -> Option<(CodingCli, &CodingAgentBackend)> {
        match self {
            Self::ClaudeCode(backend) => Some((CodingCli::ClaudeCode, backend)),
            Self::Codex(backend) => Some((CodingCli::Codex, backend)),
            Self::Gemini(backend) => Some((CodingCli::Gemini, backend)),
            Self::Process(_) | Self::Openai(_) | Self::Anthropic(_) | Self::Sim(_) => None,
        }
    }

    /// Retries of a task on this backend when neither the workflow nor the limits say.
    pub fn default_task_retries(&self) -> u32 {
        match self {
            Self::Openai(http) | Self::Anthropic(http) => http.max_retries,
            Self::Process(_)
            | Self::Sim(_)
            | Self::ClaudeCode(_)
            | Self::Codex(_)
            | Self::Gemini(_) => 0,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Process(_) => "process",
            Self::Openai(_) => "openai",
            Self::Anthropic(_) => "anthropic",
            Self::Sim(_) => "sim",
            Self::ClaudeCode(_) => "claude_code",
            Self::Codex(_) => "codex",
            Self::Gemini(_) => "gemini",
        }
    }
}

/// How the prompt and task reach a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessInput {
    /// The system prompt, a blank line and the task on stdin; stdout is the result.
    #[default]
    Stdin,
    /// `prompt.md` and `context.json` written to a fresh folder passed as `FLIGHTDECK_IO_DIR`;
    /// the program writes `output.json` there (reference implementation guide convention).
    Files,
}

/// A local program, run from an argv (never through a shell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessBackend {
    /// Program and arguments. `{agent}` and `{task}` in an argument are replaced by ids.
    pub command: Vec<String>,
    #[serde(default)]
    pub input: ProcessInput,
    /// Working directory, relative to the project folder.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Environment variables passed through from Flightdeck's own environment.
    #[serde(default = "default_env_allow")]
    pub env_allow: Vec<String>,
    /// Extra fixed environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bytes of stdout and stderr kept per attempt; the rest is counted and dropped.
    #[serde(default = "default_output_limit")]
    pub output_limit_bytes: usize,
    /// Where attempts work; `None` is the shared project folder.
    #[serde(default)]
    pub workspace: Option<WorkspaceKind>,
}

/// A coding agent's command-line program, run headless with its machine-readable stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodingAgentBackend {
    /// The program to run; `claude`, `codex` or `gemini` (looked up on `PATH`) when absent.
    #[serde(default)]
    pub program: Option<String>,
    /// Extra arguments, placed after the ones Flightdeck passes.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables passed through from Flightdeck's own environment; when absent, `PATH`,
    /// `HOME`, `LANG`, `TERM`, `USER` and the CLI's own key and config variables.
    #[serde(default)]
    pub env_allow: Option<Vec<String>>,
    /// Extra fixed environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where attempts work; `None` is the shared project folder.
    #[serde(default)]
    pub workspace: Option<WorkspaceKind>,
    /// Claude Code `--permission-mode`, Codex `--sandbox`, Gemini `--approval-mode`.
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// Claude Code `--max-turns`; the other CLIs have no such flag.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// What a tool call the CLI refused (permission, sandbox or policy) does to the attempt.
    #[serde(default)]
    pub on_denial: DenialPolicy,
    /// Claude Code `--include-partial-messages`: answer and thinking stream token by token
    /// instead of one message at a time.
    #[serde(default)]
    pub partial_messages: bool,
    /// The model, overriding the agent definition's `model`.
    #[serde(default)]
    pub model: Option<String>,
    /// Bytes of answer text and stderr kept per attempt; the rest is counted and dropped.
    #[serde(default = "default_output_limit")]
    pub output_limit_bytes: usize,
}

/// What a refused tool call does to an attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialPolicy {
    /// The attempt fails, not retried: headless, nobody can grant the permission, and the
    /// answer is usually "I need permission to ...".
    #[default]
    Fail,
    /// The attempt keeps its answer; each refusal is reported as a notice line.
    Warn,
}

/// The coding-agent CLIs Flightdeck knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodingCli {
    ClaudeCode,
    Codex,
    Gemini,
}

impl CodingCli {
    /// The name users see in messages, as written in `kind:`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude_code",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
        }
    }

    /// The program looked up on `PATH` when the backend names none.
    pub fn default_program(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
        }
    }

    /// How to install the CLI, for "not found" messages.
    pub fn install_hint(self) -> &'static str {
        match self {
            Self::ClaudeCode => "install Claude Code: npm install -g @anthropic-ai/claude-code",
            Self::Codex => "install the Codex CLI: npm install -g @openai/codex",
            Self::Gemini => "install the Gemini CLI: npm install -g @google/gemini-cli",
        }
    }

    /// The variable holding an API key; optional, since each CLI can also log in.
    pub fn key_env(self) -> &'static str {
        match self {
            Self::ClaudeCode => "ANTHROPIC_API_KEY",
            Self::Codex => "OPENAI_API_KEY",
            Self::Gemini => "GEMINI_API_KEY",
        }
    }

    /// How to log in instead of setting the key.
    pub fn login_hint(self) -> &'static str {
        match self {
            Self::ClaudeCode => "run `claude` once and log in, or set ANTHROPIC_API_KEY",
            Self::Codex => "run `codex login`, or set OPENAI_API_KEY",
            Self::Gemini => "run `gemini` once and log in, or set GEMINI_API_KEY",
        }
    }

    /// `env_allow` when the backend gives none: the basics plus the CLI's own variables.
    pub fn default_env_allow(self) -> Vec<String> {
        let own: &[&str] = match self {
            Self::ClaudeCode => &["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CONFIG_DIR"],
            Self::Codex => &["OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME"],
            Self::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT"],
        };
        ["PATH", "HOME", "LANG", "TERM", "USER"]
            .iter()
            .chain(own)
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// Accepted `permission_mode` values, as the CLI spells them.
    pub fn permission_modes(self) -> &'static [&'static str] {
        match self {
            Self::ClaudeCode => {
                &["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"]
            }
            Self::Codex => &["read-only", "workspace-write", "danger-full-access"],
            Self::Gemini => &["default", "auto_edit", "yolo", "plan"],
        }
    }
}

impl CodingAgentBackend {
    /// The program to run.
    pub fn program(&self, cli: CodingCli) -> &str {
        self.program.as_deref().unwrap_or(cli.default_program())
    }

    /// The variables passed through from Flightdeck's environment.
    pub fn env_allow(&self, cli: CodingCli) -> Vec<String> {
        self.env_allow.clone().unwrap_or_else(|| cli.default_env_allow())
    }

    /// A problem with the settings, as (field, message).
    fn problem(&self, cli: CodingCli) -> Option<(&'static str, String)> {
        if self.program.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Some(("program", "must name a program (or be left out)".into()));
        }
        if let Some(mode) = &self.permission_mode
            && !cli.permission_modes().contains(&mode.as_str())
        {
            return Some((
                "permission_mode",
                format!(
                    "`{mode}` is not a {} permission mode (expected one of {})",
                    cli.kind(),
                    cli.permission_modes().join(", ")
                ),
            ));
        }
        if self.partial_messages && cli != CodingCli::ClaudeCode {
            return Some((
                "partial_messages",
                format!(
                    "only Claude Code streams partial messages; remove it from this {} backend",
                    cli.kind()
                ),
            ));
        }
        match (cli, self.max_turns) {
            (CodingCli::ClaudeCode, Some(0)) => {
                Some(("max_turns", "must be at least 1 (or be left out)".into()))
            }
            (CodingCli::Codex | CodingCli::Gemini, Some(_)) => Some((
                "max_turns",
                format!("the {} CLI has no turn limit flag; remove max_turns", cli.kind()),
            )),
            _ => None,
        }
    }
}

fn default_env_allow() -> Vec<String> {
    ["PATH", "HOME", "LANG", "TERM"].map(str::to_owned).to_vec()
}

fn default_output_limit() -> usize {
    1024 * 1024
}

/// An OpenAI-compatible or Anthropic HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBackend {
    /// e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1`, `https://api.anthropic.com`.
    pub base_url: String,
    /// The model every request names. An agent's Claude Code alias (`sonnet`, `opus`,
    /// `haiku`) never replaces it; absent or `from-agent` takes the agent's model instead.
    #[serde(default)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key; never the key itself.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "yes")]
    pub stream: bool,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sent as `max_completion_tokens` instead of `max_tokens` (`OpenAI` reasoning models
    /// refuse `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// Passed through as the request's `response_format` (e.g. `{type: json_object}`).
    #[serde(default)]
    pub response_format: Option<serde_json::Value>,
    /// Extra request headers; each value is literal text or `{env: VARIABLE}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderSource>,
    /// Retries of a task on this backend when neither the workflow nor `limits.task_retries`
    /// sets them. The engine makes every retry, honouring `Retry-After`.
    #[serde(default = "default_http_retries")]
    pub max_retries: u32,
    /// Longest one HTTP request may take, within the task's timeout.
    #[serde(default, with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    /// A stream silent for longer than this is broken, and the attempt is retried.
    #[serde(default = "default_stall_timeout", with = "duration")]
    pub stall_timeout: Duration,
    /// A PEM file of certificates added to the trusted roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether requests go through `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`.
    #[serde(default)]
    pub proxy: ProxyMode,
}

impl HttpBackend {
    /// A backend at `base_url` with `model` and every other setting at its default.
    pub fn new(base_url: impl Into<String>, model: Option<&str>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.map(str::to_owned),
            api_key_env: None,
            stream: true,
            max_tokens: default_max_tokens(),
            max_completion_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            seed: None,
            response_format: None,
            headers: BTreeMap::new(),
            max_retries: default_http_retries(),
            request_timeout: None,
            stall_timeout: default_stall_timeout(),
            ca_file: None,
            proxy: ProxyMode::default(),
        }
    }
}

impl HttpBackend {
    /// The first setting that cannot work, as `(field, what is wrong)`.
    fn check(&self) -> Result<(), (&'static str, String)> {
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(_) => {
                return Err((
                    "base_url",
                    format!("`{}` must start with http:// or https://", self.base_url),
                ));
            }
            Err(e) => return Err(("base_url", format!("`{}` is not a URL: {e}", self.base_url))),
        }
        if self.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err((
                "model",
                "is empty; leave it out or write `from-agent` to use the agent's model".into(),
            ));
        }
        if self.max_tokens == 0 || self.max_completion_tokens == Some(0) {
            return Err(("max_tokens", "must be at least 1".into()));
        }
        if let Some(top_p) = self.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(("top_p", format!("{top_p} is not between 0 and 1")));
        }
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(("temperature", format!("{t} is not between 0 and 2")));
        }
        if self.stall_timeout.is_zero() {
            return Err(("stall_timeout", "must be longer than 0s".into()));
        }
        if self.request_timeout.is_some_and(|t| t.is_zero()) {
            return Err(("request_timeout", "must be longer than 0s".into()));
        }
        if let Some(format) = &self.response_format
            && !format.is_object()
        {
            return Err((
                "response_format",
                "must be a mapping such as `{type: json_object}`".into(),
            ));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(("headers", format!("`{name}` is not a valid header name")));
            }
            if let HeaderSource::Text(text) = value
                && reqwest::header::HeaderValue::from_str(text).is_err()
            {
                return Err((
                    "headers",
                    format!("the value of `{name}` holds characters not allowed in a header"),
                ));
            }
        }
        if let Some(ca_file) = &self.ca_file
            && let Err(e) = std::fs::metadata(ca_file)
        {
            return Err(("ca_file", format!("cannot read `{}`: {e}", ca_file.display())));
        }
        Ok(())
    }
}

/// Where a configured header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderSource {
    /// Read from Flightdeck's environment at each attempt, and redacted like the API key.
    Env { env: String },
    /// Literal text from the settings file; not for secrets.
    Text(String),
}

/// Whether an HTTP backend's requests use the proxy named by the environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// The environment's proxy, except for loopback hosts (127.0.0.0/8, `::1`, `localhost`) and
    /// hosts matched by `NO_PROXY`, so a local server's key never reaches a proxy.
    #[default]
    Auto,
    /// The environment's proxy for every host, loopback and `NO_PROXY` hosts included.
    Always,
    /// Straight to the server whatever the environment says.
    Never,
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(30)
}

fn yes() -> bool {
    true
}

fn default_max_tokens() -> u32 {
    1024
}

fn default_http_retries() -> u32 {
    3
}

/// The rehearsal backend: seeded, deterministic, always labelled as simulated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimBackend {
    #[serde(with = "duration")]
    pub latency_min: Duration,
    #[serde(with = "duration")]
    pub latency_max: Duration,
    /// Probability in 0..=1 that an attempt fails.
    pub failure_rate: f64,
    pub seed: u64,
    /// Probability in 0..=1 that a panel member takes the panel's common answer; the others
    /// each take a different option, so 0 always shows a conflict.
    pub agreement: f64,
}

impl Default for SimBackend {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(300),
            latency_max: Duration::from_millis(1500),
            failure_rate: 0.0,
            seed: 7,
            agreement: 0.5,
        }
    }
}

/// `conflicts:` — how the ladder settles disagreements between panel members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConflictSettings {
    /// `auto`: the first deciding step settles; `recommend`: a person confirms. Unset:
    /// `recommend` for tasks at or above `policies.approval_at`, else `auto`.
    pub decide: Option<crate::conflict::DecideMode>,
    /// The ladder's automatic steps, in order; leave one out to turn it off.
    pub steps: Vec<crate::conflict::LadderStep>,
    /// Third agent for panels that name none; without one the step is skipped.
    pub third_opinion: Option<String>,
    /// How many points more specific a verdict must be for the evidence step to decide.
    pub evidence_margin: f64,
}

impl Default for ConflictSettings {
    fn default() -> Self {
        use crate::conflict::LadderStep;
        Self {
            decide: None,
            steps: vec![LadderStep::DomainPriority, LadderStep::Evidence, LadderStep::ThirdOpinion],
            third_opinion: None,
            evidence_margin: 1.5,
        }
    }
}

impl ConflictSettings {
    /// The mode for a task of this risk.
    pub fn decide_for(
        &self,
        risk: crate::event::Risk,
        approval_at: crate::event::Risk,
    ) -> crate::conflict::DecideMode {
        use crate::conflict::DecideMode;
        self.decide.unwrap_or(if risk >= approval_at {
            DecideMode::Recommend
        } else {
            DecideMode::Auto
        })
    }

    /// Whether a ladder step runs.
    pub fn runs(&self, step: crate::conflict::LadderStep) -> bool {
        self.steps.contains(&step)
    }
}

/// Safety policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policies {
    /// Tasks at or above this risk wait for a reviewer.
    pub approval_at: crate::event::Risk,
    /// Extra words that make a task high-risk.
    pub high_risk_words: Vec<String>,
    /// How long a task waits for its approval.
    #[serde(with = "duration")]
    pub approval_timeout: Duration,
    /// What happens at the deadline.
    pub on_timeout: OnTimeout,
    /// Tasks at or above this risk need two different approvers; `off`: never.
    #[serde(with = "risk_or_off")]
    pub two_person_at: Option<crate::event::Risk>,
    /// Whether the user who started a run may approve its tasks (separation of duties).
    pub self_approval: bool,
    /// The run budget of workflows that give none.
    pub budget: Budget,
    /// What a task or run reaching its budget does.
    pub on_budget: OnBudget,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            approval_at: crate::event::Risk::High,
            high_risk_words: Vec::new(),
            approval_timeout: Duration::from_secs(3600),
            on_timeout: OnTimeout::Reject,
            two_person_at: Some(crate::event::Risk::Critical),
            self_approval: false,
            budget: Budget::default(),
            on_budget: OnBudget::default(),
        }
    }
}

/// What an approval that reaches its deadline becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The task is rejected (it fails, saying the deadline passed).
    #[default]
    Reject,
    /// The request stays open, marked overdue, and the reviewers are notified again.
    Escalate,
}

/// Limits of the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Instances alive at once across all agents.
    pub max_instances_total: usize,
    /// Idle instances older than this are terminated.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Task timeout when the workflow gives none.
    #[serde(with = "duration")]
    pub task_timeout: Duration,
    /// Retries when the workflow gives none; unset, a task gets its HTTP backend's
    /// `max_retries` (other backends: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_retries: Option<u32>,
    /// First retry delay; doubled each attempt, with jitter.
    #[serde(with = "duration")]
    pub retry_base_delay: Duration,
    #[serde(with = "duration")]
    pub retry_max_delay: Duration,
    /// Outcomes this old count half as much in an agent's learned success rate.
    #[serde(with = "duration")]
    pub learning_half_life: Duration,
    /// Outcomes an agent needs before its success rate (and `timeout: auto`) is used.
    pub learning_min_outcomes: u32,
    /// Learn from attempts on simulation backends too (off: simulated work says nothing
    /// about a real agent).
    pub learn_from_sim: bool,
    /// The least and the most a task's `timeout: auto` can become.
    #[serde(with = "duration")]
    pub auto_timeout_min: Duration,
    #[serde(with = "duration")]
    pub auto_timeout_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_instances_total: 32,
            idle_timeout: Duration::from_secs(300),
            task_timeout: Duration::from_secs(300),
            task_retries: None,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            learning_half_life: Duration::from_secs(7 * 24 * 3600),
            learning_min_outcomes: 5,
            learn_from_sim: false,
            auto_timeout_min: Duration::from_secs(10),
            auto_timeout_max: Duration::from_secs(3600),
        }
    }
}

/// Circuit breaker thresholds, with per-agent overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    #[serde(with = "duration")]
    pub recovery_timeout: Duration,
    pub half_open_probes: u32,
    #[serde(deserialize_with = "unique_map::deserialize")]
    pub overrides: BTreeMap<String, BreakerOverride>,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(60),
            half_open_probes: 3,
            overrides: BTreeMap::new(),
        }
    }
}

/// Per-agent breaker settings; absent fields use the global ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerOverride {
    pub failure_threshold: Option<u32>,
    #[serde(with = "opt_duration")]
    pub recovery_timeout: Option<Duration>,
    pub half_open_probes: Option<u32>,
}

impl Settings {
    /// Read `flightdeck.yaml` from the project folder, or the defaults when it is absent.
    pub fn load(project_dir: &Path) -> Result<Self, ConfigError> {
        let file = project_dir.join(SETTINGS_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => Self::parse(&text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { file, source }),
        }
    }

    /// Parse settings text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let settings: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_norway::from_str(text).map_err(|e| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                // The location leads the message already.
                let message = e.to_string();
                let message = match message.rfind(" at line ") {
                    Some(at) if line > 0 => message[..at].to_owned(),
                    _ => message,
                };
                // A duplicate is found where its map starts; point at the second key.
                let (line, column) = match unique_map::duplicate_in(&message) {
                    Some(key) => unique_map::second_line(text, line, key)
                        .map_or((line, column), |line| (line, 1)),
                    None => (line, column),
                };
                ConfigError::Parse { file: file.to_owned(), line, column, message }
            })?
        };
        let mut settings = settings;
        settings.resolve_paths(file);
        settings.validate(text, file)?;
        Ok(settings)
    }

    /// Relative `ca_file` paths are read from the settings file's folder, wherever
    /// Flightdeck was started.
    fn resolve_paths(&mut self, file: &Path) {
        let Some(folder) = file.parent() else { return };
        for backend in self.backends.values_mut() {
            if let BackendConfig::Openai(http) | BackendConfig::Anthropic(http) = backend
                && let Some(ca_file) = &mut http.ca_file
                && ca_file.is_relative()
            {
                *ca_file = folder.join(&*ca_file);
            }
        }
    }

    fn validate(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        const ROLES: [&str; 5] = ["admin", "developer", "operator", "reviewer", "viewer"];
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            line: field_line(text, field),
            field: field.to_owned(),
            message,
        };
        if let Some((policy, rule, message)) = self.safety.invalid_pattern() {
            return Err(invalid(
                "safety.policies",
                format!(
                    "policy `{}`, rule {} (`{}`): the pattern is not a valid regular expression: {}",
                    self.safety.policies[policy].name,
                    rule + 1,
                    self.safety.policies[policy].rules[rule].pattern,
                    message.lines().last().unwrap_or_default().trim()
                ),
            ));
        }
        if !self.backends.contains_key(&self.default_backend) {
            return Err(invalid(
                "default_backend",
                format!("`{}` is not one of the backends defined", self.default_backend),
            ));
        }
        for (name, backend) in &self.backends {
            match backend {
                BackendConfig::Process(p) if p.command.is_empty() => {
                    return Err(invalid(
                        &format!("backends.{name}.command"),
                        "must name a program".into(),
                    ));
                }
                BackendConfig::Sim(s) if !(0.0..=1.0).contains(&s.failure_rate) => {
                    return Err(invalid(
                        &format!("backends.{name}.failure_rate"),
                        format!("{} is not between 0 and 1", s.failure_rate),
                    ));
                }
                BackendConfig::Sim(s) if !(0.0..=1.0).contains(&s.agreement) => {
                    return Err(invalid(
                        &format!("backends.{name}.agreement"),
                        format!("{} is not between 0 and 1", s.agreement),
                    ));
                }
                BackendConfig::Sim(s) if s.latency_min > s.latency_max => {
                    return Err(invalid(
                        &format!("backends.{name}.latency_min"),
                        "is greater than latency_max".into(),
                    ));
                }
                BackendConfig::Openai(http) | BackendConfig::Anthropic(http) => {
                    if let Err((field, message)) = http.check() {
                        return Err(invalid(&format!("backends.{name}.{field}"), message));
                    }
                }
                _ => {}
            }
            if let Some((cli, agent)) = backend.coding_cli()
                && let Some((field, message)) = agent.problem(cli)
            {
                return Err(invalid(&format!("backends.{name}.{field}"), message));
            }
        }
        if let Some(user) = self.users.keys().find(|user| !is_plain_user_name(user)) {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                line: None,
                field: "users".to_owned(),
                message: format!(
                    "user name {user:?} is empty or holds control characters (newlines, escapes); \
                     such a name could forge log lines or drive a terminal"
                ),
            });
        }
        let roles = self
            .users
            .iter()
            .map(|(user, role)| (format!("users.{user}"), role))
            .chain([("default_role".to_owned(), &self.default_role)]);
        for (field, role) in roles {
            if !ROLES.contains(&role.as_str()) {
                return Err(invalid(
                    &field,
                    format!("unknown role `{role}` (expected one of {})", ROLES.join(", ")),
                ));
            }
        }
        if self.conflicts.steps.contains(&crate::conflict::LadderStep::Operator) {
            return Err(invalid(
                "conflicts.steps",
                "`operator` is not an automatic step: list domain_priority, evidence, third_opinion"
                    .into(),
            ));
        }
        if !(self.conflicts.evidence_margin.is_finite() && self.conflicts.evidence_margin > 0.0) {
            return Err(invalid("conflicts.evidence_margin", "must be above 0".into()));
        }
        if self.limits.max_instances_total == 0 {
            return Err(invalid("limits.max_instances_total", "must be at least 1".into()));
        }
        if self.limits.learning_half_life.is_zero() {
            return Err(invalid("limits.learning_half_life", "must be longer than zero".into()));
        }
        for (index, pattern) in self.redact.patterns.iter().enumerate() {
            if let Err(error) = regex::Regex::new(&pattern.pattern) {
                return Err(invalid(
                    &format!("redact.patterns[{index}].pattern"),
                    format!("`{}` is not a regular expression: {error}", pattern.pattern),
                ));
            }
            if pattern.name.is_empty() {
                return Err(invalid(
                    &format!("redact.patterns[{index}].name"),
                    "must not be empty".into(),
                ));
            }
        }
        self.validate_limits(text, file)?;
        if self.limits.auto_timeout_min > self.limits.auto_timeout_max {
            return Err(invalid(
                "limits.auto_timeout_min",
                "is greater than auto_timeout_max".into(),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// `rate_limits`, `prices` and `policies.budget`.
    fn validate_limits(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            line: field_line(text, &field).or_else(|| {
                field.rsplit_once('.').and_then(|(parent, _)| field_line(text, parent))
            }),
            field,
            message,
        };
        for (backend, limit) in &self.rate_limits {
            if !self.backends.contains_key(backend) {
                return Err(invalid(
                    format!("rate_limits.{backend}"),
                    format!(
                        "`{backend}` is not one of the backends defined ({})",
                        self.backends.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if limit.requests_per_minute == Some(0) {
                return Err(invalid(
                    format!("rate_limits.{backend}.requests_per_minute"),
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
            if limit.tokens_per_minute == Some(0) {
                return Err(invalid(
                    format!("rate_limits.{backend}.tokens_per_minute"),
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
        }
        for (model, price) in &self.prices {
            for (field, value) in [
                ("input_per_mtok", price.input_per_mtok),
                ("output_per_mtok", price.output_per_mtok),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(invalid(
                        format!("prices.{model}.{field}"),
                        format!("{value} is not a price (dollars per million tokens, 0 or more)"),
                    ));
                }
            }
        }
        if let Some((field, message)) = self.policies.budget.problem() {
            return Err(invalid(format!("policies.budget.{field}"), message));
        }
        Ok(())
    }
}

/// Whether `name` can be a user name: not empty, at most 64 characters, no control
/// characters (newlines, escapes), so it cannot forge an audit or log line nor send escape
/// sequences to a terminal that shows it.
pub fn is_plain_user_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control)
}

/// The 1-based line of a dotted field (`backends.sim.command`) in block-style YAML: each
/// key is looked for inside the block of the one before it.
fn field_line(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let (mut from, mut to, mut parent_indent) = (0, lines.len(), None::<usize>);
    let mut found = None;
    for key in field.split('.') {
        let at = (from..to).find(|&i| {
            let line = lines[i];
            let trimmed = line.trim_start();
            parent_indent.is_none_or(|p| indent(line) > p)
                && trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':'))
                && (parent_indent.is_some() || indent(line) == 0)
        })?;
        found = Some(at + 1);
        let own = indent(lines[at]);
        // The block ends at the next line indented no deeper than the key.
        to = (at + 1..to)
            .find(|&i| !lines[i].trim().is_empty() && indent(lines[i]) <= own)
            .unwrap_or(to);
        from = at + 1;
        parent_indent = Some(own);
    }
    found
}

/// The longest duration any setting or workflow may give (a year): enough for any real
/// timeout or wait, and far from where adding two durations or a deadline to a clock would
/// overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Read a duration written as `500ms`, `30s`, `5m`, `1h 30m`, at most [`MAX_DURATION`]; the
/// error says what is wrong and how to write it.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("bad duration `{text}`: {e} (try `30s`, `5m`)"))?;
    if duration > MAX_DURATION {
        return Err(format!("duration `{text}` is longer than the longest allowed (365 days)"));
    }
    Ok(duration)
}

/// Durations written as `500ms`, `30s`, `5m`, `1h 30m`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(D::Error::custom)
    }
}

/// Maps whose keys must be unique. YAML parsers (`serde_norway` too) keep the last of two
/// equal keys, so `users: {vic: viewer, vic: admin}` would silently make vic an admin; here
/// the second one is an error at its line.
pub mod unique_map {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};

    pub fn deserialize<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
    where
        D: Deserializer<'de>,
        V: Deserialize<'de>,
    {
        struct Unique<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
            type Value = BTreeMap<String, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map with unique keys")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.contains_key(&key) {
                        return Err(A::Error::custom(format!(
                            "duplicate key `{key}` (each name may be given once)"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.insert(key, value);
                }
                Ok(entries)
            }
        }
        d.deserialize_map(Unique(PhantomData))
    }

    /// The key named by a duplicate-key message: a map's (`duplicate key`, from
    /// [`deserialize`]) or a section's (`duplicate field`, from `serde`, e.g. `users:`
    /// written twice).
    pub(crate) fn duplicate_in(message: &str) -> Option<&str> {
        let rest = message
            .split("duplicate key `")
            .nth(1)
            .or_else(|| message.split("duplicate field `").nth(1))?;
        rest.split('`').next()
    }

    /// The 1-based line of the second `key:` at or after `from` (the map's first line):
    /// the line of the duplicate. The second is in the same map: on the first's line (flow
    /// style) or at the first's column, so a key of the same name in a nested map between
    /// them does not count.
    pub(crate) fn second_line(text: &str, from: usize, key: &str) -> Option<usize> {
        let mut first: Option<(usize, usize)> = None;
        for (index, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
            let keys = line.match_indices(key).map(|(at, _)| at).filter(|at| {
                let before = line[..*at].trim_end();
                let after = line[at + key.len()..].trim_start();
                let quoted = before.ends_with(['"', '\'']);
                (before.is_empty() || before.ends_with(['{', ',', '-']) || quoted)
                    && (after.starts_with(':') || after.starts_with(['"', '\'']))
            });
            for at in keys {
                match first {
                    None => first = Some((index, at)),
                    Some((line_of, column)) if line_of == index || column == at => {
                        return Some(index + 1);
                    }
                    Some(_) => {}
                }
            }
        }
        None
    }
}

/// A risk level, or `off` for a rule that never applies.
pub mod risk_or_off {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::event::Risk;

    pub fn serialize<S: Serializer>(risk: &Option<Risk>, s: S) -> Result<S::Ok, S::Error> {
        match risk {
            Some(risk) => serde::Serialize::serialize(risk, s),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Risk>, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "off" => Ok(None),
            "low" => Ok(Some(Risk::Low)),
            "medium" => Ok(Some(Risk::Medium)),
            "high" => Ok(Some(Risk::High)),
            "critical" => Ok(Some(Risk::Critical)),
            other => Err(D::Error::custom(format!(
                "`{other}` is not a risk (expected low, medium, high, critical or off)"
            ))),
        }
    }
}

/// Optional durations, as [`duration`].
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        super::parse_duration(&text).map(Some).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_defaults() {
        let s = Settings::parse("limits:\n  task_timeout: 2m\n", Path::new("f.yaml"))
            .expect("valid settings");
        assert_eq!(s.limits.task_timeout, Duration::from_secs(120));
        assert_eq!(s.breakers.failure_threshold, 3);
        assert_eq!(s.default_backend, "sim");
    }

    #[test]
    fn bad_field_names_file_and_line() {
        let err = Settings::parse("limits:\n  task_timeout: soon\n", Path::new("f.yaml"))
            .expect_err("bad duration");
        let text = err.to_string();
        assert!(text.starts_with("f.yaml:2:"), "{text}");
        assert!(text.contains("soon"), "{text}");
    }

    #[test]
    fn unknown_role_is_refused_with_its_line() {
        let text = "default_role: viewer\nusers:\n  bob: admin\n  ann: wizard\n";
        let err = Settings::parse(text, Path::new("f.yaml")).expect_err("bad role");
        assert!(err.to_string().starts_with("f.yaml:4: users.ann: unknown role `wizard`"), "{err}");
        let err = Settings::parse("default_role: admn\n", Path::new("f.yaml")).expect_err("role");
        assert!(err.to_string().starts_with("f.yaml:1: default_role: unknown role"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_errors_at_their_line() {
        let text = "default_role: viewer\nusers:\n  vic: viewer\n  ann: admin\n  vic: admin\n";
        let err = Settings::parse(text, Path::new("f.yaml")).expect_err("duplicate user");
        assert!(err.to_string().starts_with("f.yaml:5:"), "{err}");
        assert!(err.to_string().contains("duplicate key `vic`"), "{err}");
        let err = Settings::parse("users: {vic: viewer, vic: admin}\n", Path::new("f.yaml"))
            .expect_err("duplicate user in flow style");
        assert!(err.to_string().contains("duplicate key `vic`"), "{err}");
        let text = "backends:\n  sim:\n    kind: sim\n  sim:\n    kind: sim\n";
        let err = Settings::parse(text, Path::new("f.yaml")).expect_err("duplicate backend");
        assert!(err.to_string().starts_with("f.yaml:4:"), "{err}");
        let text = "breakers:\n  overrides:\n    a: {failure_threshold: 1}\n    a: {}\n";
        let err = Settings::parse(text, Path::new("f.yaml")).expect_err("duplicate override");
        assert!(err.to_string().starts_with("f.yaml:4:"), "{err}");
        // A whole section twice (appended to the file) is found at the second one, not
        // where the file's settings begin.
        let text = "# settings\ndefault_role: viewer\nusers:\n  vic: viewer\ntheme: dark\nusers:\n  vic: admin\n";
        let err = Settings::parse(text, Path::new("f.yaml")).expect_err("users twice");
        assert!(err.to_string().starts_with("f.yaml:6:"), "{err}");
        assert!(err.to_string().contains("duplicate field `users`"), "{err}");
    }

    #[test]
    fn user_names_with_control_characters_are_refused() {
        let text = "users:\n  \"vic\\nadmin\": viewer\n";
        let err = Settings::parse(text, Path::new("f.yaml")).expect_err("newline in a name");
        assert!(err.to_string().contains("control characters"), "{err}");
        let text = "users:\n  \"vic\\u001b[2J\": viewer\n";
        assert!(Settings::parse(text, Path::new("f.yaml")).is_err());
        assert!(is_plain_user_name("rex.o'neil"));
    }

    #[test]
    fn nested_fields_are_found_in_their_own_block() {
        let text = "backends:\n  other:\n    command: []\n  local:\n    kind: process\n    \
                    command: []\nlimits:\n  command: 1\n";
        assert_eq!(field_line(text, "backends.local.command"), Some(6));
        assert_eq!(field_line(text, "backends.other.command"), Some(3));
        assert_eq!(field_line(text, "limits.command"), Some(8));
        assert_eq!(field_line(text, "backends.missing.command"), None);
    }

    #[test]
    fn syntax_errors_say_the_location_once() {
        let err = Settings::parse("backends:\n  sim:\n    kind: simm\n", Path::new("f.yaml"))
            .expect_err("unknown kind");
        let text = err.to_string();
        assert!(text.starts_with("f.yaml:3:"), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }

    const HTTP: &str = "default_backend: local\nbackends:\n  local:\n    kind: openai\n    \
                        base_url: http://127.0.0.1:8080/v1\n";

    #[test]
    fn http_backend_settings_parse_with_defaults() {
        let text = format!(
            "{HTTP}    top_p: 0.9\n    stop: [END]\n    seed: 7\n    max_completion_tokens: 900\n    \
             response_format: {{type: json_object}}\n    stall_timeout: 5s\n    request_timeout: 2m\n    \
             proxy: always\n    headers:\n      X-Org: {{env: ORG_ID}}\n      X-Title: Flightdeck\n"
        );
        let s = Settings::parse(&text, Path::new("f.yaml")).expect("valid settings");
        let BackendConfig::Openai(http) = &s.backends["local"] else { panic!() };
        assert_eq!(http.model, None, "model is optional: the agent may name it");
        assert_eq!(http.top_p, Some(0.9));
        assert_eq!(http.stop, ["END"]);
        assert_eq!(http.seed, Some(7));
        assert_eq!(http.max_completion_tokens, Some(900));
        assert_eq!(http.stall_timeout, Duration::from_secs(5));
        assert_eq!(http.request_timeout, Some(Duration::from_secs(120)));
        assert_eq!(http.proxy, ProxyMode::Always);
        assert_eq!(http.headers["X-Org"], HeaderSource::Env { env: "ORG_ID".into() });
        assert_eq!(http.headers["X-Title"], HeaderSource::Text("Flightdeck".into()));
        assert_eq!(s.limits.task_retries, None);
        assert_eq!(s.backends["local"].default_task_retries(), 3);

        let plain = Settings::parse(HTTP, Path::new("f.yaml")).expect("valid settings");
        let BackendConfig::Openai(http) = &plain.backends["local"] else { panic!() };
        assert_eq!(http.stall_timeout, Duration::from_secs(30));
        assert_eq!(http.proxy, ProxyMode::Auto);
    }

    #[test]
    fn bad_http_settings_name_file_line_and_field() {
        let cases = [
            ("    top_p: 1.5\n", "f.yaml:6: backends.local.top_p: 1.5 is not between 0 and 1"),
            ("    stall_timeout: 0s\n", "f.yaml:6: backends.local.stall_timeout: must be longer"),
            ("    model: \"\"\n", "f.yaml:6: backends.local.model: is empty"),
            (
                "    response_format: json\n",
                "f.yaml:6: backends.local.response_format: must be a mapping",
            ),
            (
                "    headers:\n      \"Bad Name\": x\n",
                "f.yaml:6: backends.local.headers: `Bad Name`",
            ),
            ("    ca_file: no-such-ca.pem\n", "f.yaml:6: backends.local.ca_file: cannot read"),
        ];
        for (extra, expected) in cases {
            let err = Settings::parse(&format!("{HTTP}{extra}"), Path::new("dir/f.yaml"))
                .expect_err(expected);
            let text = err.to_string().replacen("dir/", "", 1);
            assert!(text.starts_with(expected), "{text}");
        }
        let err = Settings::parse(&format!("{HTTP}    proxy: sometimes\n"), Path::new("f.yaml"))
            .expect_err("unknown proxy mode");
        assert!(err.to_string().starts_with("f.yaml:"), "{err}");
    }

    #[test]
    fn a_relative_ca_file_is_read_from_the_settings_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), "pem").expect("write");
        let text = format!("{HTTP}    ca_file: ca.pem\n");
        let s = Settings::parse(&text, &dir.path().join(SETTINGS_FILE)).expect("valid settings");
        let BackendConfig::Openai(http) = &s.backends["local"] else { panic!() };
        assert_eq!(http.ca_file.as_deref(), Some(dir.path().join("ca.pem").as_path()));
    }
}
