//! The planner: a validated [`Workflow`] plus the agent pool and settings become a [`Plan`] —
//! layers, the agent and backend of each task, timeouts, retries and an estimate.
//!
//! Estimates: a task on a `sim` backend takes the mean of its latency range; on any other
//! backend, the agent's learned mean duration ([`crate::learning`]), and without enough history
//! a quarter of its timeout. The run estimate
//! is the longer of the critical path (longest chain of estimates) and the total work divided
//! by `max_parallel`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::error::{Problem, ProblemKind, WorkflowError};
use super::graph;
use super::model::{TaskSpec, Workflow};
use crate::agents::{Registry, Scored, SelectionQuery, best};
use crate::config::{BackendConfig, Settings, WorkspaceKind};
use crate::conflict::{DecideMode, Domain};
use crate::event::PlannedTask;
use crate::governance::{Assessment, RiskRules};
use crate::ids::{AgentId, TaskId};
use crate::learning::{AutoTimeout, History, LearningSettings};

/// Choices the caller makes on top of the file (`--backend`, `--max-parallel`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOverrides {
    /// Run every task on this backend.
    pub backend: Option<String>,
    /// Replace the workflow's `max_parallel`.
    pub max_parallel: Option<usize>,
}

/// A workflow ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub workflow: String,
    pub file: PathBuf,
    pub goal: Option<String>,
    pub max_parallel: usize,
    pub fail_fast: bool,
    /// True when any task runs on a simulation backend.
    pub simulated: bool,
    /// Same order as the workflow's tasks.
    pub steps: Vec<PlannedStep>,
    /// Task indices per topological layer.
    pub layers: Vec<Vec<usize>>,
    /// Task indices of the longest chain of estimates.
    pub critical_path: Vec<usize>,
    #[serde(rename = "estimate_ms", serialize_with = "as_ms")]
    pub estimate: Duration,
    /// `--backend`: fallback agents run on it too.
    pub backend_override: Option<String>,
    /// The workflow's run budget; `None` leaves it to `policies.budget`.
    pub budget: Option<crate::config::Budget>,
}

/// One task of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub id: TaskId,
    pub description: String,
    pub agent: AgentId,
    /// Present when the agent was selected automatically. Boxed, like the other fields most
    /// tasks leave empty, so a step of a 100,000-task plan stays small.
    pub selection: Option<Box<Selection>>,
    /// Shared by every step on the same backend.
    pub backend: Arc<str>,
    pub backend_kind: &'static str,
    pub simulated: bool,
    #[serde(rename = "timeout_ms", serialize_with = "as_ms")]
    pub timeout: Duration,
    /// How `timeout: auto` was decided, for tasks that ask for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_auto: Option<Box<AutoTimeout>>,
    pub retries: u32,
    pub depends_on: Vec<TaskId>,
    pub layer: usize,
    #[serde(rename = "estimate_ms", serialize_with = "as_ms")]
    pub estimate: Duration,
    /// 1-based line of the task in the workflow file.
    pub line: usize,
    /// The task's `context`, boxed since most tasks have none; read with
    /// [`PlannedStep::context`].
    #[serde(rename = "context", serialize_with = "context_or_null")]
    context_given: Option<Box<serde_json::Value>>,
    /// The risk of its description and agent, from `policies` and the built-in rules.
    pub risk: Assessment,
    /// The risk reaches `policies.approval_at`: a reviewer must approve before it runs.
    pub needs_approval: bool,
    /// Where its attempts work: the task's `workspace`, else its backend's, else shared.
    pub workspace: WorkspaceKind,
    /// Present for a panel task; `agent` is then its first member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel: Option<Box<PlannedPanel>>,
    /// Indices of the tasks this one waits for.
    #[serde(skip)]
    pub deps: Vec<usize>,
    /// Indices of the tasks that wait for this one.
    #[serde(skip)]
    pub dependents: Vec<usize>,
    /// The task's own token and cost budget, boxed since most tasks have none; read with
    /// [`PlannedStep::budget`].
    #[serde(rename = "budget", serialize_with = "budget_or_unlimited")]
    budget_given: Option<Box<crate::config::Budget>>,
}

impl PlannedStep {
    /// The task's `context` from the workflow (`null` when it gave none).
    pub fn context(&self) -> &serde_json::Value {
        static NONE: serde_json::Value = serde_json::Value::Null;
        self.context_given.as_deref().unwrap_or(&NONE)
    }

    /// The task's own token and cost budget (unlimited when it gave none).
    pub fn budget(&self) -> crate::config::Budget {
        self.budget_given.as_deref().copied().unwrap_or_default()
    }
}

// serde's `serialize_with` hands the field itself: `&Option<…>`.
#[allow(clippy::ref_option)]
fn context_or_null<S: serde::Serializer>(
    given: &Option<Box<serde_json::Value>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(given.as_deref().unwrap_or(&serde_json::Value::Null), serializer)
}

#[allow(clippy::ref_option)]
fn budget_or_unlimited<S: serde::Serializer>(
    given: &Option<Box<crate::config::Budget>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&given.as_deref().copied().unwrap_or_default(), serializer)
}

/// A panel as it will run: members, options, the question's domain, the third agent and
/// whether the ladder decides or recommends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedPanel {
    pub members: Vec<AgentId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// From `domain:`, else the description's words; `None` when neither names one.
    pub domain: Option<Domain>,
    /// True when the domain came from the description's words.
    pub domain_from_words: bool,
    /// The task's `third_opinion`, else `conflicts.third_opinion` (unless on the panel).
    pub third_opinion: Option<AgentId>,
    pub decide: DecideMode,
}

/// Why the selector chose an agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub score: f64,
    /// Human-readable parts of the score, e.g. `trigger "deploy" +3.0`.
    pub breakdown: Vec<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Plan a workflow with the file's own settings.
pub fn plan(
    workflow: &Workflow,
    registry: &Registry,
    settings: &Settings,
) -> Result<Plan, WorkflowError> {
    plan_with(workflow, registry, settings, &PlanOverrides::default())
}

/// Plan a workflow, applying command-line overrides, without learned history.
pub fn plan_with(
    workflow: &Workflow,
    registry: &Registry,
    settings: &Settings,
    overrides: &PlanOverrides,
) -> Result<Plan, WorkflowError> {
    let history = History::empty(LearningSettings::from(&settings.limits));
    plan_learned(workflow, registry, settings, overrides, &history)
}

/// Plan a workflow with what `history` learned: success rates boost selection and
/// `timeout: auto` follows the agent's recent durations.
pub fn plan_learned(
    workflow: &Workflow,
    registry: &Registry,
    settings: &Settings,
    overrides: &PlanOverrides,
    history: &History,
) -> Result<Plan, WorkflowError> {
    let (max_parallel, choices) = choose(workflow, registry, settings, overrides, history)?;
    Ok(assemble(workflow, workflow.tasks.iter().cloned(), choices, max_parallel, overrides))
}

/// [`plan_learned`], taking the workflow: its tasks' ids, descriptions, dependencies and
/// contexts move into the plan instead of being copied, so a big workflow is not held twice
/// (at 100,000 tasks, some 40 MB less at the peak of `flightdeck run`).
pub fn plan_owned(
    mut workflow: Workflow,
    registry: &Registry,
    settings: &Settings,
    overrides: &PlanOverrides,
    history: &History,
) -> Result<Plan, WorkflowError> {
    let (max_parallel, choices) = choose(&workflow, registry, settings, overrides, history)?;
    let tasks = std::mem::take(&mut workflow.tasks);
    Ok(assemble(&workflow, tasks.into_iter(), choices, max_parallel, overrides))
}

/// What planning decides for one task, apart from what the workflow says of it. What most
/// tasks leave empty is boxed already, as the step keeps it: the choices of a 100,000-task
/// plan live beside its steps while they are assembled.
struct Choice {
    agent: AgentId,
    selection: Option<Box<Selection>>,
    backend: Arc<str>,
    backend_kind: &'static str,
    simulated: bool,
    estimate: Duration,
    timeout: Duration,
    timeout_auto: Option<Box<AutoTimeout>>,
    retries: u32,
    risk: Assessment,
    needs_approval: bool,
    workspace: WorkspaceKind,
    panel: Option<Box<PlannedPanel>>,
}

/// The shared copy of `name` among `names`, added when new (a plan names few backends).
fn intern(names: &mut Vec<Arc<str>>, name: String) -> Arc<str> {
    if let Some(known) = names.iter().find(|known| known.as_ref() == name.as_str()) {
        return Arc::clone(known);
    }
    let name: Arc<str> = name.into();
    names.push(Arc::clone(&name));
    name
}

/// The `max_parallel` and each task's agent, backend and risk; every problem at once.
fn choose(
    workflow: &Workflow,
    registry: &Registry,
    settings: &Settings,
    overrides: &PlanOverrides,
    history: &History,
) -> Result<(usize, Vec<Choice>), WorkflowError> {
    let success_rate = |agent: &AgentId| history.success_rate(agent);
    let mut problems = Vec::new();
    // One copy of each backend's name for all the steps that use it.
    let mut backend_names: Vec<Arc<str>> = Vec::new();
    let max_parallel = match overrides.max_parallel {
        Some(0) => {
            problems.push(Problem { line: 1, kind: ProblemKind::MaxParallel { value: 0 } });
            1
        }
        Some(n) => n,
        None => workflow.max_parallel,
    };
    let known_backends: Vec<String> = settings.backends.keys().cloned().collect();
    if let Some(backend) = &overrides.backend
        && !settings.backends.contains_key(backend)
        && let Some(first) = workflow.tasks.first()
    {
        problems.push(Problem {
            line: first.line,
            kind: ProblemKind::UnknownBackend {
                task: first.id.clone(),
                agent: first.agent.clone().unwrap_or_else(|| AgentId::new("-")),
                backend: backend.clone(),
                known: known_backends.clone(),
                added_since_start: false,
            },
        });
        return Err(workflow.invalid(problems));
    }

    let definitions = registry.definitions();
    let risk_rules = RiskRules::new(&settings.policies.high_risk_words);
    let mut choices = Vec::with_capacity(workflow.tasks.len());
    for (i, task) in workflow.tasks.iter().enumerate() {
        let (agent, selection) = if let Some(panel) = &task.panel {
            let missing: Vec<&AgentId> =
                panel.members.iter().filter(|m| registry.get(m.as_str()).is_none()).collect();
            if !missing.is_empty() {
                for agent in missing {
                    problems.push(unknown_agent(
                        workflow.field_line(i, "panel"),
                        &task.id,
                        agent,
                        registry,
                    ));
                }
                continue;
            }
            (panel.members[0].clone(), None)
        } else if let Some(name) = &task.agent {
            if registry.get(name.as_str()).is_none() {
                let line = workflow.field_line(i, "agent");
                problems.push(unknown_agent(line, &task.id, name, registry));
                continue;
            }
            (name.clone(), None)
        } else {
            let context = context_text(&task.context);
            let mut query = SelectionQuery::new(&task.description).with_success_rate(&success_rate);
            if let Some(context) = &context {
                query = query.with_context(context);
            }
            let Some(scored) = best(&definitions, &query) else {
                problems.push(Problem {
                    line: task.line,
                    kind: ProblemKind::NoAgentFound { task: task.id.clone() },
                });
                continue;
            };
            let selection = Selection { score: scored.score, breakdown: breakdown_lines(&scored) };
            (scored.agent, Some(Box::new(selection)))
        };
        let definition = registry.get(agent.as_str());
        let backend = overrides
            .backend
            .clone()
            .or_else(|| definition.as_ref().and_then(|d| d.backend.clone()))
            .unwrap_or_else(|| settings.default_backend.clone());
        let Some(config) = settings.backends.get(&backend) else {
            problems.push(Problem {
                line: workflow.field_line(i, "agent"),
                kind: ProblemKind::UnknownBackend {
                    task: task.id.clone(),
                    agent,
                    backend,
                    known: known_backends.clone(),
                    added_since_start: false,
                },
            });
            continue;
        };
        let (timeout, timeout_auto) = if task.timeout_auto {
            let (timeout, why) = history.auto_timeout(&agent, &settings.limits);
            (timeout, Some(Box::new(why)))
        } else {
            (task.timeout.unwrap_or(settings.limits.task_timeout), None)
        };
        // The agent's name counts: it says what kind of work runs (`deployment-engineer`).
        // A panel only answers a question: asking `security-engineer` is not risky work, so
        // its members' names do not count.
        let risk = match &task.panel {
            Some(_) => risk_rules.assess_parts(&[&task.description]),
            None => risk_rules.assess_parts(&[&task.description, agent.as_str()]),
        };
        let needs_approval = risk.needs_approval(settings.policies.approval_at);
        let panel = match &task.panel {
            Some(panel) => match plan_panel(panel, task, settings, registry, risk.risk) {
                Ok(planned) => Some(Box::new(planned)),
                Err(agent) => {
                    problems.push(unknown_agent(task.line, &task.id, &agent, registry));
                    continue;
                }
            },
            None => None,
        };
        let estimate = history
            .learned(&agent)
            .and_then(crate::learning::AgentRecord::mean_success_ms)
            .filter(|_| !matches!(config, BackendConfig::Sim(_)))
            .map_or_else(|| estimate_task(config, timeout), Duration::from_millis);
        choices.push(Choice {
            panel,
            workspace: task.workspace.or(config.workspace()).unwrap_or_default(),
            risk,
            needs_approval,
            agent,
            selection,
            backend_kind: config.kind(),
            simulated: matches!(config, BackendConfig::Sim(_)),
            estimate,
            backend: intern(&mut backend_names, backend),
            timeout,
            timeout_auto,
            retries: task
                .retries
                .or(settings.limits.task_retries)
                .unwrap_or_else(|| config.default_task_retries()),
        });
    }
    if problems.is_empty() { Ok((max_parallel, choices)) } else { Err(workflow.invalid(problems)) }
}

/// The plan from the workflow's header, its tasks (in order) and the choices made for them.
fn assemble(
    workflow: &Workflow,
    tasks: impl Iterator<Item = TaskSpec>,
    choices: Vec<Choice>,
    max_parallel: usize,
    overrides: &PlanOverrides,
) -> Plan {
    let mut steps: Vec<PlannedStep> = tasks
        .zip(choices)
        .map(|(task, choice)| PlannedStep {
            id: task.id,
            description: task.description,
            agent: choice.agent,
            selection: choice.selection,
            backend: choice.backend,
            backend_kind: choice.backend_kind,
            simulated: choice.simulated,
            timeout: choice.timeout,
            timeout_auto: choice.timeout_auto,
            retries: choice.retries,
            depends_on: task.depends_on,
            layer: 0,
            estimate: choice.estimate,
            line: task.line,
            context_given: (!task.context.is_null()).then(|| Box::new(task.context)),
            risk: choice.risk,
            needs_approval: choice.needs_approval,
            workspace: choice.workspace,
            panel: choice.panel,
            deps: task.deps,
            dependents: Vec::new(),
            budget_given: (!task.budget.is_unlimited()).then(|| Box::new(task.budget)),
        })
        .collect();

    // Borrowed out of the steps (and put back below) rather than copied: 100,000 lists.
    let deps: Vec<Vec<usize>> = steps.iter_mut().map(|s| std::mem::take(&mut s.deps)).collect();
    let layer_of = graph::layers(&deps);
    let depth = layer_of.iter().copied().max().map_or(0, |d| d + 1);
    let mut layers = vec![Vec::new(); depth];
    for (i, &layer) in layer_of.iter().enumerate() {
        layers[layer].push(i);
        steps[i].layer = layer;
        for &d in &deps[i] {
            steps[d].dependents.push(i);
        }
    }
    let (critical_path, critical) = critical_path(&steps, &deps, &layers);
    for (step, deps) in steps.iter_mut().zip(deps) {
        step.deps = deps;
    }
    let total = steps.iter().fold(Duration::ZERO, |sum, s| sum.saturating_add(s.estimate));
    let spread = total / u32::try_from(max_parallel).unwrap_or(u32::MAX);

    Plan {
        workflow: workflow.name.clone(),
        file: workflow.file.clone(),
        goal: workflow.goal.clone(),
        max_parallel,
        fail_fast: workflow.fail_fast,
        simulated: steps.iter().any(|s| s.simulated),
        steps,
        layers,
        critical_path,
        estimate: critical.max(spread),
        backend_override: overrides.backend.clone(),
        budget: workflow.budget,
    }
}

impl Plan {
    /// The tasks as [`crate::event::Event::RunStarted`] carries them.
    pub fn planned_tasks(&self) -> Vec<PlannedTask> {
        self.steps
            .iter()
            .map(|s| PlannedTask {
                task: s.id.clone(),
                description: s.description.as_str().into(),
                agent: s.agent.clone(),
                score: s.selection.as_ref().map(|sel| sel.score),
                depends_on: s.depends_on.as_slice().into(),
                layer: s.layer,
                timeout_ms: s.timeout.as_millis() as u64,
                retries: s.retries,
            })
            .collect()
    }

    /// Names of the backends the plan uses, each once.
    pub fn backends(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.steps.iter().map(|s| &*s.backend).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Index of a task by id.
    pub fn index_of(&self, task: &TaskId) -> Option<usize> {
        self.steps.iter().position(|s| &s.id == task)
    }
}

/// The panel as it will run; `Err` names a default third agent that is not in the pool.
fn plan_panel(
    panel: &crate::workflow::Panel,
    task: &TaskSpec,
    settings: &Settings,
    registry: &Registry,
    risk: crate::event::Risk,
) -> Result<PlannedPanel, AgentId> {
    let default_third = match &settings.conflicts.third_opinion {
        Some(name) if registry.get(name).is_none() => return Err(AgentId::new(name.clone())),
        Some(name) => Some(AgentId::new(name.clone())),
        None => None,
    };
    let third_opinion = panel
        .third_opinion
        .clone()
        .or(default_third.filter(|agent| !panel.members.contains(agent)));
    let words = Domain::from_words(&task.description);
    Ok(PlannedPanel {
        members: panel.members.clone(),
        options: panel.options.clone(),
        domain: panel.domain.or(words),
        domain_from_words: panel.domain.is_none() && words.is_some(),
        third_opinion,
        decide: settings.conflicts.decide_for(risk, settings.policies.approval_at),
    })
}

fn estimate_task(config: &BackendConfig, timeout: Duration) -> Duration {
    match config {
        BackendConfig::Sim(sim) => sim.latency_min.saturating_add(sim.latency_max) / 2,
        _ => timeout / 4,
    }
}

/// The longest chain of estimates, and its length. Layer by layer is a topological order
/// (every dependency lies in an earlier layer), so no second sort is needed.
fn critical_path(
    steps: &[PlannedStep],
    deps: &[Vec<usize>],
    layers: &[Vec<usize>],
) -> (Vec<usize>, Duration) {
    let mut finish = vec![Duration::ZERO; steps.len()];
    let mut via = vec![usize::MAX; steps.len()];
    for &task in layers.iter().flatten() {
        let (start, from) = deps[task]
            .iter()
            .map(|&d| (finish[d], d))
            .max_by_key(|&(f, _)| f)
            .unwrap_or((Duration::ZERO, usize::MAX));
        finish[task] = start.saturating_add(steps[task].estimate);
        via[task] = from;
    }
    let Some((mut at, &longest)) = finish.iter().enumerate().max_by_key(|&(_, f)| *f) else {
        return (Vec::new(), Duration::ZERO);
    };
    let mut path = vec![at];
    while via[at] != usize::MAX {
        at = via[at];
        path.push(at);
    }
    path.reverse();
    (path, longest)
}

fn breakdown_lines(scored: &Scored) -> Vec<String> {
    scored
        .breakdown
        .components()
        .iter()
        .filter(|(_, c)| c.points != 0.0)
        .map(|(label, c)| format!("{label} +{:.1} ({})", c.points, c.matched.join(", ")))
        .collect()
}

/// Context as text the selector can match focus areas against.
fn context_text(context: &serde_json::Value) -> Option<String> {
    match context {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Task `task` names `agent`, which the pool (`definitions`) does not have; close names
/// are suggested.
pub(crate) fn unknown_agent(
    line: usize,
    task: &TaskId,
    agent: &AgentId,
    registry: &Registry,
) -> Problem {
    let definitions = registry.definitions();
    let known = similar_names(agent.as_str(), definitions.iter().map(|d| d.name.as_str()));
    // A file that defines the agent (or is named after it) but failed to load is the reason.
    let failed = registry
        .problems()
        .into_iter()
        .find(|p| {
            p.agent.as_ref() == Some(agent)
                || p.file.file_stem().is_some_and(|stem| stem == agent.as_str())
        })
        .map(|p| p.message());
    Problem {
        line,
        kind: ProblemKind::UnknownAgent { task: task.clone(), agent: agent.clone(), known, failed },
    }
}

/// Agent names within a small edit distance, for "did you mean".
fn similar_names<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<AgentId> {
    let mut close: Vec<(usize, &str)> = names
        .map(|n| (edit_distance(wanted, n), n))
        .filter(|&(d, n)| d <= 3.max(wanted.len() / 4) || n.contains(wanted) || wanted.contains(n))
        .collect();
    close.sort_unstable();
    close.into_iter().take(3).map(|(_, n)| AgentId::new(n)).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("backend", "backend"), 0);
        assert_eq!(edit_distance("backnd", "backend"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
