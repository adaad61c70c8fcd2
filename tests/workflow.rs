//! Workflow files: parsing, every refusal with its `file:line`, stages, planning.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck::agents::Registry;
use flightdeck::config::Settings;
use flightdeck::ids::{AgentId, TaskId};
use flightdeck::workflow::{
    Plan, PlanOverrides, ProblemKind, Strategy, Workflow, WorkflowError, plan, plan_with,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/workflows").join(name)
}

fn registry() -> Registry {
    Registry::load(&fixture("agentpool"))
}

fn plan_fixture(name: &str) -> Result<Plan, WorkflowError> {
    let workflow = Workflow::load(&fixture(name))?;
    plan(&workflow, &registry(), &Settings::default())
}

fn ids(workflow: &Workflow, indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| workflow.tasks[i].id.to_string()).collect()
}

/// The one problem of an invalid file, with its rendered message.
fn single_problem(error: &WorkflowError) -> (usize, ProblemKind, String) {
    let problems = error.problems();
    assert_eq!(problems.len(), 1, "{error}");
    (problems[0].line, problems[0].kind.clone(), error.to_string())
}

#[test]
fn parses_every_field() {
    let workflow = Workflow::load(&fixture("valid.yaml")).unwrap();
    assert_eq!(workflow.name, "release");
    assert_eq!(workflow.goal.as_deref(), Some("Ship the next version"));
    assert_eq!(workflow.max_parallel, 3);
    assert!(workflow.fail_fast);
    let compile = &workflow.tasks[0];
    assert_eq!(compile.agent, Some(AgentId::new("builder")));
    assert_eq!(compile.timeout, Some(Duration::from_secs(45)));
    assert_eq!(compile.retries, Some(2));
    assert_eq!(compile.line, 6);
    let notes = &workflow.tasks[1];
    assert_eq!(notes.agent, None);
    assert_eq!(notes.context["since"], "v1.2.0");
    assert_eq!(notes.context["labels"][1], "fix");
    let review = &workflow.tasks[2];
    assert_eq!(review.depends_on, vec![TaskId::new("compile"), TaskId::new("notes")]);
    assert_eq!(review.deps, vec![0, 1]);
}

#[test]
fn defaults_apply_when_fields_are_absent() {
    let text = "tasks:\n  - id: only\n    description: one task\n";
    let workflow = Workflow::parse(text, Path::new("workflows/tiny.yaml")).unwrap();
    assert_eq!(workflow.name, "tiny");
    assert_eq!(workflow.max_parallel, 4);
    assert!(!workflow.fail_fast);
    assert_eq!(workflow.tasks[0].timeout, None);
    assert!(workflow.tasks[0].context.is_null());
}

#[test]
fn cycle_is_named_with_its_line() {
    let error = Workflow::load(&fixture("cycle.yaml")).unwrap_err();
    let (line, kind, text) = single_problem(&error);
    assert_eq!(line, 3);
    assert_eq!(kind, ProblemKind::Cycle(["a", "c", "b", "a"].map(TaskId::new).to_vec()));
    assert!(text.contains("cycle.yaml:3: dependency cycle: a → c → b → a"), "{text}");
}

#[test]
fn self_dependency_is_a_cycle() {
    let text = "tasks:\n  - id: loop\n    description: x\n    depends_on: [loop]\n";
    let error = Workflow::parse(text, Path::new("self.yaml")).unwrap_err();
    assert!(error.to_string().contains("self.yaml:2: dependency cycle: loop → loop"), "{error}");
}

#[test]
fn unknown_dependency_points_at_its_line() {
    let error = Workflow::load(&fixture("unknown_dep.yaml")).unwrap_err();
    let (line, kind, text) = single_problem(&error);
    assert_eq!(line, 11);
    assert_eq!(
        kind,
        ProblemKind::UnknownDependency { task: TaskId::new("b"), dependency: TaskId::new("ghost") }
    );
    assert!(text.contains("unknown_dep.yaml:11: task `b` depends on `ghost`"), "{text}");
}

#[test]
fn duplicate_id_names_both_lines() {
    let error = Workflow::load(&fixture("duplicate.yaml")).unwrap_err();
    let (line, kind, text) = single_problem(&error);
    assert_eq!(line, 9);
    assert_eq!(kind, ProblemKind::DuplicateId { id: TaskId::new("a"), first_line: 3 });
    assert!(
        text.contains("duplicate.yaml:9: task id `a` is used twice (first on line 3)"),
        "{text}"
    );
}

#[test]
fn bad_duration_points_at_the_timeout() {
    let error = Workflow::load(&fixture("bad_duration.yaml")).unwrap_err();
    let (line, _, text) = single_problem(&error);
    assert_eq!(line, 10);
    assert!(
        text.contains("bad_duration.yaml:10: task `b`: timeout: bad duration `soon`"),
        "{text}"
    );
}

#[test]
fn bare_number_timeout_asks_for_a_unit() {
    let text = "tasks:\n  - id: a\n    description: x\n    timeout: 30\n";
    let error = Workflow::parse(text, Path::new("w.yaml")).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("w.yaml:4: task `a`: timeout: bad duration `30`"), "{text}");
    assert!(text.contains("no unit"), "{text}");
}

#[test]
fn max_parallel_below_one_is_refused() {
    let error = Workflow::load(&fixture("max_parallel_zero.yaml")).unwrap_err();
    let (line, kind, text) = single_problem(&error);
    assert_eq!(line, 2);
    assert_eq!(kind, ProblemKind::MaxParallel { value: 0 });
    assert!(text.contains("max_parallel_zero.yaml:2: max_parallel: 0 is below 1"), "{text}");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let error = Workflow::load(&fixture("syntax.yaml")).unwrap_err();
    let WorkflowError::Syntax { line, file, .. } = &error else { panic!("{error:?}") };
    assert_eq!(*line, 6);
    assert!(file.ends_with("syntax.yaml"));
    assert!(error.to_string().contains("syntax.yaml:6:"), "{error}");
}

#[test]
fn unknown_fields_are_refused_with_their_line() {
    let text = "tasks:\n  - id: a\n    description: x\n    dependson: [b]\n";
    let error = Workflow::parse(text, Path::new("w.yaml")).unwrap_err();
    assert!(error.to_string().starts_with("w.yaml:4:"), "{error}");
    assert!(error.to_string().contains("dependson"), "{error}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "max_parallel: -1\ntasks:\n  - id: a\n    description: x\n    timeout: never\n  - id: a\n    description: y\n    depends_on: [zz]\n";
    let error = Workflow::parse(text, Path::new("w.yaml")).unwrap_err();
    let lines: Vec<usize> = error.problems().iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![1, 5, 6, 8], "{error}");
}

#[test]
fn stages_become_dependencies() {
    let workflow = Workflow::load(&fixture("stages.yaml")).unwrap();
    assert_eq!(workflow.stages.len(), 3);
    assert_eq!(workflow.stages[0].strategy, Strategy::Parallel);
    assert_eq!(workflow.stages[1].strategy, Strategy::Sequential);
    let deps = |id: &str| {
        let task = workflow.tasks.iter().find(|t| t.id.as_str() == id).unwrap();
        ids(&workflow, &task.deps)
    };
    assert!(deps("fetch").is_empty());
    assert!(deps("lint").is_empty());
    // A sequential stage's first task waits for every task of the parallel stage before it.
    assert_eq!(deps("compile"), ["fetch", "lint"]);
    assert_eq!(deps("package"), ["compile"]);
    // A parallel stage waits for the last task of the sequential stage before it; explicit
    // dependencies are kept.
    assert_eq!(deps("docs"), ["package"]);
    assert_eq!(deps("review"), ["fetch", "package"]);
}

#[test]
fn plan_has_layers_agents_and_estimate() {
    let plan = plan_fixture("valid.yaml").unwrap();
    assert_eq!(plan.layers, vec![vec![0, 1], vec![2]]);
    let compile = &plan.steps[0];
    assert_eq!(compile.agent, AgentId::new("builder"));
    assert!(compile.selection.is_none());
    assert_eq!(compile.timeout, Duration::from_secs(45));
    assert_eq!(compile.retries, 2);
    assert_eq!(&*compile.backend, "sim");
    assert!(compile.simulated);
    // Unset fields come from the settings.
    let review = &plan.steps[2];
    assert_eq!(review.timeout, Settings::default().limits.task_timeout);
    assert_eq!(review.layer, 1);
    assert_eq!(plan.steps[0].dependents, vec![2]);
    // Sim latency 300ms..1500ms: 900ms per task, two layers on the critical path.
    assert_eq!(plan.estimate, Duration::from_millis(1800));
    assert_eq!(plan.critical_path.len(), 2);
    assert!(plan.simulated);
    let planned = plan.planned_tasks();
    assert_eq!(*planned[2].depends_on, [TaskId::new("compile"), TaskId::new("notes")]);
    assert_eq!(planned[0].timeout_ms, 45_000);
}

#[test]
fn missing_agents_are_selected_with_a_score() {
    let plan = plan_fixture("valid.yaml").unwrap();
    let notes = &plan.steps[1];
    assert_eq!(notes.agent, AgentId::new("writer"));
    let selection = notes.selection.as_ref().unwrap();
    assert!(selection.score > 0.0);
    assert!(!selection.breakdown.is_empty());
    assert_eq!(plan.planned_tasks()[1].score, Some(selection.score));
}

#[test]
fn unknown_agent_is_refused_with_a_suggestion() {
    let error = plan_fixture("unknown_agent.yaml").unwrap_err();
    let (line, kind, text) = single_problem(&error);
    assert_eq!(line, 8);
    assert!(
        matches!(kind, ProblemKind::UnknownAgent { ref agent, .. } if agent.as_str() == "bulder")
    );
    assert!(
        text.contains("unknown_agent.yaml:8: task `b`: agent `bulder` is not in the agent pool")
    );
    assert!(text.contains("did you mean builder"), "{text}");
}

#[test]
fn unknown_agents_are_reported_with_the_structural_problems() {
    let text = "tasks:
  - id: a
    description: build it
    agent: bulder
    context:
      id: b
  - id: b
    description: check it
    depends_on: [a, nowhere]
    timeout: soon
";
    let error = Workflow::parse_for(text, Path::new("mixed.yaml"), Some(&registry())).unwrap_err();
    let lines: Vec<(usize, &str)> = error
        .problems()
        .iter()
        .map(|p| {
            let kind = match p.kind {
                ProblemKind::UnknownAgent { .. } => "agent",
                ProblemKind::UnknownDependency { .. } => "dependency",
                ProblemKind::BadDuration { .. } => "duration",
                _ => "other",
            };
            (p.line, kind)
        })
        .collect();
    // Task `b` is found on line 7, not at the `id: b` inside task `a`'s context.
    assert_eq!(lines, [(4, "agent"), (9, "dependency"), (10, "duration")], "{error}");
    assert!(error.to_string().contains("did you mean builder"), "{error}");
}

#[test]
fn task_without_agent_and_no_match_is_refused() {
    let error = plan_fixture("no_agent.yaml").unwrap_err();
    let (line, kind, _) = single_problem(&error);
    assert_eq!(line, 5);
    assert_eq!(kind, ProblemKind::NoAgentFound { task: TaskId::new("mystery") });
}

#[test]
fn unknown_backend_override_is_refused() {
    let workflow = Workflow::load(&fixture("valid.yaml")).unwrap();
    let overrides = PlanOverrides { backend: Some("nowhere".into()), max_parallel: None };
    let error = plan_with(&workflow, &registry(), &Settings::default(), &overrides).unwrap_err();
    assert!(error.to_string().contains("backend `nowhere`"), "{error}");
}

#[test]
fn overrides_replace_backend_and_parallelism() {
    let workflow = Workflow::load(&fixture("valid.yaml")).unwrap();
    let overrides = PlanOverrides { backend: Some("sim".into()), max_parallel: Some(1) };
    let plan = plan_with(&workflow, &registry(), &Settings::default(), &overrides).unwrap();
    assert_eq!(plan.max_parallel, 1);
    assert_eq!(plan.backend_override.as_deref(), Some("sim"));
    // One at a time: the estimate is the sum of the tasks.
    assert_eq!(plan.estimate, Duration::from_millis(2700));
}

#[test]
fn ten_thousand_tasks_plan_quickly() {
    use std::fmt::Write as _;
    let mut text =
        String::from("tasks:\n  - id: root\n    description: start\n    agent: builder\n");
    for i in 0..10_000 {
        let _ = write!(
            text,
            "  - id: t{i}\n    description: step\n    agent: builder\n    depends_on: [root]\n"
        );
    }
    text.push_str("  - id: sink\n    description: end\n    agent: builder\n    depends_on: [");
    text.push_str(&(0..10_000).map(|i| format!("t{i}")).collect::<Vec<_>>().join(", "));
    text.push_str("]\n");
    let began = std::time::Instant::now();
    let workflow = Workflow::parse(&text, Path::new("big.yaml")).unwrap();
    let plan = plan(&workflow, &registry(), &Settings::default()).unwrap();
    assert_eq!(plan.layers.len(), 3);
    assert_eq!(plan.steps[10_001].deps.len(), 10_000);
    // Generous for unoptimised test builds on a loaded machine; release takes ~20 ms.
    assert!(began.elapsed() < Duration::from_secs(5), "{:?}", began.elapsed());
}
