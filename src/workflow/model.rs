//! The workflow file format and its validation.
//!
//! ```yaml
//! name: release-notes
//! goal: Draft the release notes
//! max_parallel: 4        # default 4; below 1 is refused
//! fail_fast: false       # default false
//! budget: {cost_usd: 2}  # the whole run's spend; default: policies.budget of flightdeck.yaml
//! tasks:
//!   - id: collect
//!     description: Collect merged pull requests
//!     agent: researcher  # optional: selected from the pool when absent
//!     timeout: 2m        # default: limits.task_timeout of flightdeck.yaml; `auto`: twice
//!                        # the agent's recent mean duration (see `crate::learning`)
//!     retries: 1         # default: limits.task_retries
//!     context: {since: v1.2.0}
//!     workspace: worktree # shared (default), worktree or temp; else the backend's
//!     budget: {tokens: 20000, cost_usd: 0.50}  # this task's spend; see `crate::resilience::limits`
//!   - id: draft
//!     description: Draft the notes
//!     depends_on: [collect]
//! ```
//!
//! A task may ask a panel instead of one agent: `panel: [a, b]` (two or more agents, each
//! once), optional `options: [..]` (two or more answers to pick from), optional `domain`
//! (security, design, performance or implementation; else from the description's words)
//! and optional `third_opinion: AGENT`. See [`crate::conflict`].
//!
//! Instead of `tasks`, a workflow may give `stages`, each `{name, strategy, tasks}`. Stages run
//! in order: the entry tasks of a stage depend on the exit tasks of the previous stage. In a
//! `sequential` stage (the default) the first task is the entry, each task depends on the one
//! before it, and the last task is the exit. In a `parallel` stage every task is both entry and
//! exit. Explicit `depends_on` inside stages is added to these dependencies.

use std::cell::LazyCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::error::{Problem, ProblemKind, WorkflowError};
use super::graph;
use super::lines::SourceLines;
use super::planner::unknown_agent;
use super::quick;
use crate::agents::Registry;
use crate::config::{Budget, WorkspaceKind, unique_map};
use crate::conflict::{Domain, normalise};
use crate::ids::{AgentId, TaskId};

/// Used when the file gives no `max_parallel`.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// How the tasks of a stage relate to each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each task waits for the one before it.
    #[default]
    Sequential,
    /// The tasks of the stage run side by side.
    Parallel,
}

/// A validated workflow: ids unique, dependencies known, no cycles, durations parsed.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub file: PathBuf,
    pub name: String,
    pub goal: Option<String>,
    pub max_parallel: usize,
    pub fail_fast: bool,
    /// Empty when the file gives `tasks` directly.
    pub stages: Vec<Stage>,
    /// In document order.
    pub tasks: Vec<TaskSpec>,
    /// The run's token and cost budget, when the file gives one.
    pub budget: Option<Budget>,
    /// The text as read (shared, not copied: 10 MB at 100,000 tasks).
    source: Arc<String>,
}

/// A stage as written, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub strategy: Strategy,
    /// Indices into [`Workflow::tasks`].
    pub tasks: Vec<usize>,
}

/// One task of a validated workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub id: TaskId,
    pub description: String,
    pub agent: Option<AgentId>,
    /// Every dependency, explicit and from stages, without repeats.
    pub depends_on: Vec<TaskId>,
    /// The same dependencies as indices into [`Workflow::tasks`].
    pub deps: Vec<usize>,
    pub timeout: Option<Duration>,
    /// `timeout: auto`: the planner derives the timeout from the agent's history.
    pub timeout_auto: bool,
    pub retries: Option<u32>,
    /// Any YAML, as JSON; `null` when absent.
    pub context: serde_json::Value,
    /// Index into [`Workflow::stages`].
    pub stage: Option<usize>,
    /// 1-based line of the task's `id:` in the file.
    pub line: usize,
    /// Where its attempts work; `None` leaves it to the backend.
    pub workspace: Option<WorkspaceKind>,
    /// Present for a panel task: several agents answer and conflicts are settled. Boxed: most
    /// tasks have none, and a 100,000-task workflow's tasks stay small.
    pub panel: Option<Box<Panel>>,
    /// The task's own token and cost budget (across its attempts).
    pub budget: Budget,
}

/// The panel of a task, as written and validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Panel {
    /// Two or more, each once.
    pub members: Vec<AgentId>,
    /// Empty, or two or more answers to pick from.
    pub options: Vec<String>,
    /// `domain:` as written; the planner falls back to the description's words.
    pub domain: Option<Domain>,
    pub third_opinion: Option<AgentId>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkflow {
    pub(super) name: Option<String>,
    pub(super) goal: Option<String>,
    pub(super) max_parallel: Option<i64>,
    #[serde(default)]
    pub(super) fail_fast: bool,
    pub(super) tasks: Option<Vec<RawTask>>,
    pub(super) stages: Option<Vec<RawStage>>,
    pub(super) budget: Option<Budget>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    name: String,
    #[serde(default)]
    strategy: Strategy,
    tasks: Vec<RawTask>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) id: String,
    pub(super) description: String,
    pub(super) agent: Option<String>,
    #[serde(default)]
    pub(super) depends_on: Vec<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    #[serde(default)]
    pub(super) context: serde_json::Value,
    /// Kept as written so a bad value is reported with the task and its line.
    pub(super) workspace: Option<String>,
    pub(super) panel: Option<Vec<String>>,
    pub(super) options: Option<Vec<String>>,
    pub(super) domain: Option<String>,
    pub(super) third_opinion: Option<String>,
    pub(super) budget: Option<Budget>,
}

/// Keep a duration as written (string or bare number) so validation can name the task.
fn duration_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Str(String),
        Int(i64),
        Float(f64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::Str(s) => s,
        Text::Int(n) => n.to_string(),
        Text::Float(x) => x.to_string(),
    }))
}

impl Workflow {
    /// Read and validate a workflow file.
    pub fn load(file: &Path) -> Result<Self, WorkflowError> {
        Self::load_for(file, None)
    }

    /// Read and validate a workflow file; with `pool`, agents it names that are not in the
    /// pool are reported along with every other problem.
    pub fn load_for(file: &Path, pool: Option<&Registry>) -> Result<Self, WorkflowError> {
        let text = std::fs::read_to_string(file)
            .map_err(|source| WorkflowError::Read { file: file.to_owned(), source })?;
        Self::parse_owned(Arc::new(text), file, pool)
    }

    /// Validate workflow text; `file` names it in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, WorkflowError> {
        Self::parse_for(text, file, None)
    }

    /// [`Workflow::parse`], also checking the agents it names against `pool`.
    pub fn parse_for(
        text: &str,
        file: &Path,
        pool: Option<&Registry>,
    ) -> Result<Self, WorkflowError> {
        Self::parse_owned(Arc::new(text.to_owned()), file, pool)
    }

    /// [`Workflow::parse_for`] keeping `source` itself as the workflow's text.
    fn parse_owned(
        source: Arc<String>,
        file: &Path,
        pool: Option<&Registry>,
    ) -> Result<Self, WorkflowError> {
        let text = source.as_str();
        let (raw, quick_lines) = parse_yaml(text, file)?;
        // The line-number pass is only needed for files `quick` did not read, and to place
        // problems.
        let lines = LazyCell::new(|| SourceLines::new(text));
        let mut problems = Vec::new();

        let max_parallel = match raw.max_parallel {
            None => DEFAULT_MAX_PARALLEL,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(value) => {
                let line = lines.top_level_line("max_parallel").unwrap_or(1);
                problems.push(Problem { line, kind: ProblemKind::MaxParallel { value } });
                DEFAULT_MAX_PARALLEL
            }
        };

        if let Some((field, message)) = raw.budget.as_ref().and_then(Budget::problem) {
            let line = lines.top_level_line("budget").unwrap_or(1);
            problems.push(Problem {
                line,
                kind: ProblemKind::BadBudget { task: None, field, message },
            });
        }

        let (raw_tasks, raw_stages) = match (raw.tasks, raw.stages) {
            (Some(_), Some(_)) => {
                let line = lines.top_level_line("stages").unwrap_or(1);
                problems.push(Problem { line, kind: ProblemKind::TasksAndStages });
                return Err(invalid(file, problems));
            }
            (Some(tasks), None) => (tasks, Vec::new()),
            (None, Some(stages)) => (Vec::new(), stages),
            (None, None) => (Vec::new(), Vec::new()),
        };

        // Flatten stages into one task list, remembering each task's stage (the tasks of a
        // file without stages are not moved: 33 MB at 100,000 tasks).
        let mut stage_of: Vec<Option<usize>> = vec![None; raw_tasks.len()];
        let mut flat: Vec<RawTask> = raw_tasks;
        let mut stages = Vec::with_capacity(raw_stages.len());
        for (s, stage) in raw_stages.into_iter().enumerate() {
            let first = flat.len();
            stages.push(Stage {
                name: stage.name,
                strategy: stage.strategy,
                tasks: (first..first + stage.tasks.len()).collect(),
            });
            stage_of.extend(std::iter::repeat_n(Some(s), stage.tasks.len()));
            flat.extend(stage.tasks);
        }
        if flat.is_empty() {
            let line = lines.top_level_line("tasks").or_else(|| lines.top_level_line("stages"));
            problems.push(Problem { line: line.unwrap_or(1), kind: ProblemKind::NoTasks });
            return Err(invalid(file, problems));
        }

        let task_lines = match quick_lines {
            Some(found) => found,
            None => lines.task_lines(flat.iter().map(|t| t.id.as_str())),
        };
        let block_end = |i: usize| task_lines.get(i + 1).copied().unwrap_or(lines.end());

        let mut index: HashMap<&str, usize> = HashMap::with_capacity(flat.len());
        let mut duplicates = false;
        for (i, task) in flat.iter().enumerate() {
            if !is_valid_id(&task.id) {
                problems.push(Problem {
                    line: task_lines[i],
                    kind: ProblemKind::BadId { id: task.id.clone() },
                });
            }
            if let Some(&first) = index.get(task.id.as_str()) {
                duplicates = true;
                problems.push(Problem {
                    line: task_lines[i],
                    kind: ProblemKind::DuplicateId {
                        id: TaskId::new(task.id.clone()),
                        first_line: task_lines[first],
                    },
                });
            } else {
                index.insert(&task.id, i);
            }
        }

        if let Some(pool) = pool {
            for (i, task) in flat.iter().enumerate() {
                let Some(agent) = task.agent.as_deref() else { continue };
                if pool.get(agent).is_none() {
                    let line = lines.key_line("agent", task_lines[i], block_end(i));
                    problems.push(unknown_agent(
                        line.unwrap_or(task_lines[i]),
                        &TaskId::new(task.id.clone()),
                        &AgentId::new(agent),
                        pool,
                    ));
                }
            }
        }

        let panels: Vec<Option<Panel>> = flat
            .iter()
            .enumerate()
            .map(|(i, task)| {
                let at = |key: &str| {
                    lines.key_line(key, task_lines[i], block_end(i)).unwrap_or(task_lines[i])
                };
                let word = |key: &str, word: &str| {
                    lines
                        .key_line(key, task_lines[i], block_end(i))
                        .and_then(|from| lines.word_line(word, from, block_end(i)))
                        .unwrap_or_else(|| at(key))
                };
                check_panel(task, pool, &at, &word, &mut problems)
            })
            .collect();

        let mut timeouts = Vec::with_capacity(flat.len());
        let mut workspaces = Vec::with_capacity(flat.len());
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(flat.len());
        let mut unknown_deps = false;
        for (i, task) in flat.iter().enumerate() {
            let auto = task.timeout.as_deref().is_some_and(|value| value.trim() == "auto");
            let timeout = task.timeout.as_deref().filter(|_| !auto).and_then(|value| {
                parse_timeout(value)
                    .map_err(|message| {
                        let line = lines.key_line("timeout", task_lines[i], block_end(i));
                        problems.push(Problem {
                            line: line.unwrap_or(task_lines[i]),
                            kind: ProblemKind::BadDuration {
                                task: TaskId::new(task.id.clone()),
                                field: "timeout",
                                value: value.to_owned(),
                                message,
                            },
                        });
                    })
                    .ok()
            });
            timeouts.push((timeout, auto));
            if let Some((field, message)) = task.budget.as_ref().and_then(Budget::problem) {
                let line = lines.key_line("budget", task_lines[i], block_end(i));
                problems.push(Problem {
                    line: line.unwrap_or(task_lines[i]),
                    kind: ProblemKind::BadBudget {
                        task: Some(TaskId::new(task.id.clone())),
                        field,
                        message,
                    },
                });
            }
            workspaces.push(task.workspace.as_deref().and_then(|value| {
                parse_workspace(value)
                    .ok_or_else(|| {
                        let line = lines.key_line("workspace", task_lines[i], block_end(i));
                        problems.push(Problem {
                            line: line.unwrap_or(task_lines[i]),
                            kind: ProblemKind::BadWorkspace {
                                task: TaskId::new(task.id.clone()),
                                value: value.to_owned(),
                            },
                        });
                    })
                    .ok()
            }));

            let mut own = Vec::with_capacity(task.depends_on.len());
            for dep in &task.depends_on {
                if let Some(&d) = index.get(dep.as_str()) {
                    own.push(d);
                    continue;
                }
                unknown_deps = true;
                let from = lines.key_line("depends_on", task_lines[i], block_end(i));
                let line = from
                    .and_then(|from| lines.word_line(dep, from, block_end(i)))
                    .or(from)
                    .unwrap_or(task_lines[i]);
                problems.push(Problem {
                    line,
                    kind: ProblemKind::UnknownDependency {
                        task: TaskId::new(task.id.clone()),
                        dependency: TaskId::new(dep.clone()),
                    },
                });
            }
            deps.push(own);
        }
        drop(index);
        add_stage_dependencies(&stages, &mut deps);
        dedup_dependencies(&mut deps);

        if !duplicates && !unknown_deps {
            let ids: Vec<&str> = flat.iter().map(|t| t.id.as_str()).collect();
            for cycle in graph::find_cycles(&deps) {
                let first = cycle.iter().copied().min().unwrap_or(0);
                problems.push(Problem {
                    line: task_lines[first],
                    kind: ProblemKind::Cycle(cycle.iter().map(|&i| TaskId::new(ids[i])).collect()),
                });
            }
        }

        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(invalid(file, problems));
        }

        let ids: Vec<TaskId> = flat.iter().map(|t| TaskId::new(&t.id)).collect();
        let tasks = flat
            .into_iter()
            .zip(stage_of)
            .zip(deps)
            .zip(timeouts)
            .zip(workspaces)
            .zip(panels)
            .enumerate()
            .map(|(i, (((((task, stage), deps), (timeout, timeout_auto)), workspace), panel))| {
                TaskSpec {
                    depends_on: deps.iter().map(|&d| ids[d].clone()).collect(),
                    id: ids[i].clone(),
                    description: task.description,
                    agent: task.agent.map(AgentId::new),
                    deps,
                    timeout,
                    timeout_auto,
                    retries: task.retries,
                    context: task.context,
                    stage,
                    line: task_lines[i],
                    workspace,
                    panel: panel.map(Box::new),
                    budget: task.budget.unwrap_or_default(),
                }
            })
            .collect();

        Ok(Self {
            file: file.to_owned(),
            name: raw.name.unwrap_or_else(|| file_stem(file)),
            goal: raw.goal,
            max_parallel,
            fail_fast: raw.fail_fast,
            stages,
            tasks,
            budget: raw.budget,
            source,
        })
    }

    /// The line of `key:` inside task `index`'s block, else the task's own line.
    pub fn field_line(&self, index: usize, key: &str) -> usize {
        let lines = SourceLines::new(&self.source);
        let Some(task) = self.tasks.get(index) else { return 1 };
        let end = self.tasks.get(index + 1).map_or(lines.end(), |next| next.line);
        lines.key_line(key, task.line, end).unwrap_or(task.line)
    }

    /// Build the error for problems found after loading (e.g. by the planner).
    pub fn invalid(&self, mut problems: Vec<Problem>) -> WorkflowError {
        problems.sort_by_key(|p| p.line);
        invalid(&self.file, problems)
    }
}

/// The file's YAML as the raw workflow: the plain shape most files have is read by
/// [`quick`], anything else by `serde_norway` (see [`quick`] for why).
///
/// With it come the tasks' `id:` lines when `quick` read the file (it knows them already).
fn parse_yaml(text: &str, file: &Path) -> Result<(RawWorkflow, Option<Vec<usize>>), WorkflowError> {
    if let Some(quick) = quick::parse(text) {
        return Ok((quick.raw, Some(quick.id_lines)));
    }
    let raw = serde_norway::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        // The location leads the message already.
        let mut message = e.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // A duplicate is found where its map starts; point at the second key.
        let (line, column) = unique_map::duplicate_in(&message)
            .and_then(|key| unique_map::second_line(text, line, key))
            .map_or((line, column), |line| (line, 1));
        WorkflowError::Syntax { file: file.to_owned(), line, column, message }
    })?;
    Ok((raw, None))
}

fn invalid(file: &Path, problems: Vec<Problem>) -> WorkflowError {
    WorkflowError::Invalid { file: file.to_owned(), problems }
}

fn file_stem(file: &Path) -> String {
    file.file_stem().map_or_else(|| "workflow".to_owned(), |s| s.to_string_lossy().into_owned())
}

/// Drop repeated dependencies, keeping the first mention, in time linear in the edges.
fn dedup_dependencies(deps: &mut [Vec<usize>]) {
    let mut last_seen_by = vec![usize::MAX; deps.len()];
    for (task, own) in deps.iter_mut().enumerate() {
        own.retain(|&dep| std::mem::replace(&mut last_seen_by[dep], task) != task);
    }
}

/// See the module docs for the rules.
fn add_stage_dependencies(stages: &[Stage], deps: &mut [Vec<usize>]) {
    let mut previous_exits: Vec<usize> = Vec::new();
    for stage in stages {
        match stage.strategy {
            Strategy::Sequential => {
                for (k, &task) in stage.tasks.iter().enumerate() {
                    if k == 0 {
                        for &exit in &previous_exits {
                            deps[task].push(exit);
                        }
                    } else {
                        deps[task].push(stage.tasks[k - 1]);
                    }
                }
                if let Some(&last) = stage.tasks.last() {
                    previous_exits = vec![last];
                }
            }
            Strategy::Parallel => {
                for &task in &stage.tasks {
                    for &exit in &previous_exits {
                        deps[task].push(exit);
                    }
                }
                if !stage.tasks.is_empty() {
                    previous_exits.clone_from(&stage.tasks);
                }
            }
        }
    }
}

/// The panel of a task, checking `panel`, `options`, `domain` and `third_opinion`; each
/// problem is pushed with the line `at` (a key's line) or `word` (a list item's line) gives.
fn check_panel(
    task: &RawTask,
    pool: Option<&Registry>,
    at: &dyn Fn(&str) -> usize,
    word: &dyn Fn(&str, &str) -> usize,
    problems: &mut Vec<Problem>,
) -> Option<Panel> {
    let id = || TaskId::new(task.id.clone());
    let Some(members) = &task.panel else {
        for (field, given) in [
            ("options", task.options.is_some()),
            ("domain", task.domain.is_some()),
            ("third_opinion", task.third_opinion.is_some()),
        ] {
            if given {
                problems.push(Problem {
                    line: at(field),
                    kind: ProblemKind::PanelOnly { task: id(), field },
                });
            }
        }
        return None;
    };
    let before = problems.len();
    if task.agent.is_some() {
        problems
            .push(Problem { line: at("agent"), kind: ProblemKind::AgentAndPanel { task: id() } });
    }
    if members.len() < 2 {
        problems.push(Problem {
            line: at("panel"),
            kind: ProblemKind::PanelTooSmall { task: id(), count: members.len() },
        });
    }
    for (k, member) in members.iter().enumerate() {
        if members[..k].contains(member) {
            problems.push(Problem {
                line: word("panel", member),
                kind: ProblemKind::PanelRepeat { task: id(), agent: AgentId::new(member.clone()) },
            });
        }
    }
    let options = task.options.clone().unwrap_or_default();
    if task.options.is_some() && options.len() < 2 {
        problems.push(Problem {
            line: at("options"),
            kind: ProblemKind::TooFewOptions { task: id(), count: options.len() },
        });
    }
    for (k, option) in options.iter().enumerate() {
        if options[..k].iter().any(|o| normalise(o) == normalise(option))
            || option.trim().is_empty()
        {
            problems.push(Problem {
                line: at("options"),
                kind: ProblemKind::OptionRepeat { task: id(), option: option.clone() },
            });
        }
    }
    let domain = task.domain.as_deref().and_then(|value| {
        value
            .parse::<Domain>()
            .map_err(|message| {
                problems.push(Problem {
                    line: at("domain"),
                    kind: ProblemKind::BadDomain { task: id(), message },
                });
            })
            .ok()
    });
    if let Some(third) = &task.third_opinion
        && members.contains(third)
    {
        problems.push(Problem {
            line: at("third_opinion"),
            kind: ProblemKind::ThirdIsMember { task: id(), agent: AgentId::new(third.clone()) },
        });
    }
    if let Some(pool) = pool {
        let named = members
            .iter()
            .map(|m| ("panel", m))
            .chain(task.third_opinion.iter().map(|t| ("third_opinion", t)));
        for (key, agent) in named {
            if pool.get(agent).is_none() {
                problems.push(unknown_agent(
                    word(key, agent),
                    &id(),
                    &AgentId::new(agent.clone()),
                    pool,
                ));
            }
        }
    }
    (problems.len() == before).then(|| Panel {
        members: members.iter().map(|m| AgentId::new(m.clone())).collect(),
        options,
        domain,
        third_opinion: task.third_opinion.clone().map(AgentId::new),
    })
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_workspace(value: &str) -> Option<WorkspaceKind> {
    match value {
        "shared" => Some(WorkspaceKind::Shared),
        "worktree" => Some(WorkspaceKind::Worktree),
        "temp" => Some(WorkspaceKind::Temp),
        _ => None,
    }
}

fn parse_timeout(value: &str) -> Result<Duration, String> {
    if value.trim().parse::<f64>().is_ok() {
        return Err("a bare number has no unit".to_owned());
    }
    match crate::config::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_owned()),
        other => other,
    }
}
