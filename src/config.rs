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
    pub backends: BTreeMap<String, BackendConfig>,
    /// User name to role name (`admin`, `developer`, `operator`, `reviewer`, `viewer`).
    pub users: BTreeMap<String, String>,
    /// Role of identities not listed in `users`.
    pub default_role: String,
    pub policies: Policies,
    pub limits: Limits,
    pub breakers: BreakerSettings,
    /// Theme name from `themes/` when `--theme` is not given.
    pub theme: Option<String>,
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
            Self::Openai(_) | Self::Anthropic(_) | Self::Sim(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Process(_) => "process",
            Self::Openai(_) => "openai",
            Self::Anthropic(_) => "anthropic",
            Self::Sim(_) => "sim",
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
    pub model: String,
    /// Name of the environment variable holding the API key; never the key itself.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "yes")]
    pub stream: bool,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Retries of 429 and 5xx within one attempt, honouring Retry-After.
    #[serde(default = "default_http_retries")]
    pub max_retries: u32,
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
}

impl Default for SimBackend {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(300),
            latency_max: Duration::from_millis(1500),
            failure_rate: 0.0,
            seed: 7,
        }
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
}

impl Default for Policies {
    fn default() -> Self {
        Self { approval_at: crate::event::Risk::High, high_risk_words: Vec::new() }
    }
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
    /// Retries when the workflow gives none.
    pub task_retries: u32,
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
            task_retries: 0,
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
                ConfigError::Parse { file: file.to_owned(), line, column, message }
            })?
        };
        settings.validate(text, file)?;
        Ok(settings)
    }

    fn validate(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        const ROLES: [&str; 5] = ["admin", "developer", "operator", "reviewer", "viewer"];
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            line: field_line(text, field),
            field: field.to_owned(),
            message,
        };
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
                BackendConfig::Sim(s) if s.latency_min > s.latency_max => {
                    return Err(invalid(
                        &format!("backends.{name}.latency_min"),
                        "is greater than latency_max".into(),
                    ));
                }
                _ => {}
            }
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
        if self.limits.max_instances_total == 0 {
            return Err(invalid("limits.max_instances_total", "must be at least 1".into()));
        }
        if self.limits.learning_half_life.is_zero() {
            return Err(invalid("limits.learning_half_life", "must be longer than zero".into()));
        }
        if self.limits.auto_timeout_min > self.limits.auto_timeout_max {
            return Err(invalid(
                "limits.auto_timeout_min",
                "is greater than auto_timeout_max".into(),
            ));
        }
        Ok(())
    }
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

/// Durations written as `500ms`, `30s`, `5m`, `1h 30m`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| D::Error::custom(format!("bad duration `{text}`: {e} (try `30s`, `5m`)")))
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
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("bad duration `{text}`: {e} (try `30s`, `5m`)")))
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
}
