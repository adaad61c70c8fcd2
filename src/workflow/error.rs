//! Why a workflow file is refused. Every message names the file and the line, and the task
//! ids involved, so the author can go straight to the problem.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::ids::{AgentId, TaskId};

/// Errors loading, validating or planning a workflow. Nothing runs when any of these occurs.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or not the shape of a workflow.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    /// The YAML is well-formed but the workflow cannot run. All problems found are listed.
    #[error("{}", render(file, problems))]
    Invalid { file: PathBuf, problems: Vec<Problem> },
}

impl WorkflowError {
    /// The problems of an [`WorkflowError::Invalid`] error; empty for the other kinds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn render(file: &std::path::Path, problems: &[Problem]) -> String {
    let mut text = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let _ = write!(text, "{}:{}: {}", file.display(), problem.line, problem.kind);
    }
    text
}

/// One semantic problem at one line (1-based) of the workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProblemKind {
    /// Tasks wait for each other in a circle; each id waits for the next one.
    #[error("dependency cycle: {} (each task depends on the next)", arrows(.0))]
    Cycle(Vec<TaskId>),
    #[error("task `{task}` depends on `{dependency}`, which is not a task of this workflow")]
    UnknownDependency { task: TaskId, dependency: TaskId },
    #[error("task id `{id}` is used twice (first on line {first_line})")]
    DuplicateId { id: TaskId, first_line: usize },
    #[error(
        "task id `{id}` is invalid: use letters, digits, `-`, `_` and `.`, at most 128 characters"
    )]
    BadId { id: String },
    #[error("task `{task}`: agent `{agent}` is not in the agent pool{}", failed_or_hint(.failed.as_deref(), .known))]
    UnknownAgent {
        task: TaskId,
        agent: AgentId,
        known: Vec<AgentId>,
        /// Why the file that defines (or is named after) the agent did not load, if one did not.
        failed: Option<String>,
    },
    #[error("task `{task}`: no agent given and no agent in the pool matches its description")]
    NoAgentFound { task: TaskId },
    #[error(
        "task `{task}`: {field}: bad duration `{value}`: {message} (try `30s`, `5m` or `auto`)"
    )]
    BadDuration { task: TaskId, field: &'static str, value: String, message: String },
    #[error(
        "task `{task}`: workspace: `{value}` is not a workspace (use shared, worktree or temp)"
    )]
    BadWorkspace { task: TaskId, value: String },
    #[error("max_parallel: {value} is below 1")]
    MaxParallel { value: i64 },
    #[error(
        "task `{task}`: agent `{agent}` runs on backend `{backend}`, which is not defined in \
         flightdeck.yaml (defined: {}){}",
        known.join(", "),
        if *added_since_start {
            "; flightdeck.yaml has it now, but it was added after this host started: backends \
             apply from the host's next start"
        } else {
            ""
        }
    )]
    UnknownBackend {
        task: TaskId,
        agent: AgentId,
        backend: String,
        known: Vec<String>,
        /// The project's flightdeck.yaml defines it now, but the host planning the run read
        /// its settings before it was added.
        added_since_start: bool,
    },
    #[error("task `{task}`: a panel needs two or more agents, this one has {count}")]
    PanelTooSmall { task: TaskId, count: usize },
    #[error("task `{task}`: agent `{agent}` is on the panel twice")]
    PanelRepeat { task: TaskId, agent: AgentId },
    #[error("task `{task}`: give `agent` or `panel`, not both")]
    AgentAndPanel { task: TaskId },
    #[error("task `{task}`: `{field}` belongs to panel tasks; add `panel: [agent, agent]`")]
    PanelOnly { task: TaskId, field: &'static str },
    #[error(
        "task `{task}`: options: give two or more answers to pick from, or leave it out ({count} given)"
    )]
    TooFewOptions { task: TaskId, count: usize },
    #[error("task `{task}`: options: `{option}` is empty or given twice")]
    OptionRepeat { task: TaskId, option: String },
    #[error("task `{task}`: domain: {message}")]
    BadDomain { task: TaskId, message: String },
    #[error("task `{task}`: third_opinion: `{agent}` is on the panel; pick an agent outside it")]
    ThirdIsMember { task: TaskId, agent: AgentId },
    /// `budget:` of a task (`task` set) or of the workflow.
    #[error("{}budget.{field}: {message}", .task.as_ref().map(|t| format!("task `{t}`: ")).unwrap_or_default())]
    BadBudget { task: Option<TaskId>, field: &'static str, message: String },
    #[error("the workflow has no tasks (give `tasks:` or `stages:`)")]
    NoTasks,
    #[error("give either `tasks:` or `stages:`, not both")]
    TasksAndStages,
}

fn arrows(ids: &[TaskId]) -> String {
    let mut text = String::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push_str(" → ");
        }
        text.push_str(id.as_str());
    }
    text
}

/// The load failure of the agent's file when there is one (the reason it is missing), else
/// "did you mean".
fn failed_or_hint(failed: Option<&str>, known: &[AgentId]) -> String {
    match failed {
        Some(failure) => format!(": its file failed to load: {failure}"),
        None => hint(known),
    }
}

fn hint(known: &[AgentId]) -> String {
    if known.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = known.iter().map(AgentId::as_str).collect();
    format!(" (did you mean {}?)", names.join(", "))
}
