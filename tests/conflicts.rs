//! Panel tasks end to end: a real runtime on a project folder in a temp dir, members that are
//! real `sh` children printing verdicts (or the sim backend), the real gate and audit file,
//! and the real binary for headless runs.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck::command::{Command, ConflictChoice, Request};
use flightdeck::config::Settings;
use flightdeck::conflict::LadderStep;
use flightdeck::event::{Envelope, Event, RunStatus};
use flightdeck::ids::{RunId, TaskId, UserId};
use flightdeck::runtime::{Runtime, RuntimeError, RuntimeOptions};
use flightdeck::workflow::{PlanOverrides, ProblemKind, Workflow};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

const SETTINGS: &str = "default_role: viewer
users:
  ann: admin
  dev: developer
  rex: reviewer
  vic: viewer
backends:
  sim:
    kind: sim
    latency_min: 1ms
    latency_max: 3ms
    agreement: 0.0
  agree-sim:
    kind: sim
    latency_min: 1ms
    latency_max: 3ms
    agreement: 1.0
  say:
    kind: process
    command: [sh, say.sh, '{agent}']
    input: stdin
";

/// Each scripted agent prints a fixed verdict, except the judges, which read the sides they
/// are shown, and `late`, which answers in prose until it is asked again.
const SAY: &str = r#"agent="$1"
input=$(cat)
case "$agent" in
  sec) echo 'Data of one user must never reach another.'
       echo '{"decision":"x","rationale":"keeps users apart","confidence":0.7}' ;;
  perf) echo '{"decision":"y","rationale":"faster","confidence":0.9}' ;;
  impl-plain) echo '{"decision":"x","rationale":"simpler","confidence":0.9}' ;;
  impl-other) echo '{"decision":"y","rationale":"familiar","confidence":0.5}' ;;
  impl-concrete) printf '%s\n' 'Measured it.' '```json' \
      '{"decision":"y","rationale":"measured 38 ms on 10000 rows","evidence":["src/store.rs:120","bench: 38 ms p99"],"alternatives":["x: scans the table"],"confidence":0.6}' '```' ;;
  judge-first) first=$(printf '%s\n' "$input" | sed -n 's/^Side 1: "\(.*\)"$/\1/p' | head -n 1)
       printf '{"decision":"%s","rationale":"the first side","confidence":0.5}\n' "$first" ;;
  judge-y) echo '{"decision":"y","rationale":"y holds up","confidence":0.8}' ;;
  late) if printf '%s' "$input" | grep -q 'could not be used'; then
          echo '{"decision":"x","rationale":"second try","confidence":0.5}'
        else echo 'I would go with x.'; fi ;;
  mute) echo 'no idea' ;;
esac
"#;

struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("flightdeck.yaml"), SETTINGS).unwrap();
        std::fs::write(root.join("say.sh"), SAY).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        let agent = |name: &str, category: &str, backend: &str| {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\ncategory: {category}\n\
                 backend: {backend}\n---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        };
        agent("sec", "security", "say");
        agent("perf", "performance", "say");
        for name in ["impl-plain", "impl-other", "impl-concrete", "late", "mute"] {
            agent(name, "implementation", "say");
        }
        agent("judge-first", "quality", "say");
        agent("judge-y", "quality", "say");
        agent("simmer-a", "implementation", "sim");
        agent("simmer-b", "implementation", "sim");
        agent("agreer-a", "implementation", "agree-sim");
        agent("agreer-b", "implementation", "agree-sim");
        agent("writer", "documentation", "sim");
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn workflow(&self, name: &str, tasks: &str) -> PathBuf {
        let file = self.root().join(format!("workflows/{name}.yaml"));
        std::fs::write(&file, format!("name: {name}\nmax_parallel: 4\ntasks:\n{tasks}")).unwrap();
        file
    }

    fn runtime(&self) -> Runtime {
        Runtime::start(RuntimeOptions {
            project_dir: self.root().to_owned(),
            data_dir: self.root().join(".flightdeck"),
            settings: Settings::load(self.root()).unwrap(),
            watch_agents: false,
        })
        .unwrap()
    }
}

/// A started run with its events.
struct Live {
    runtime: Runtime,
    run: RunId,
    events: UnboundedReceiver<Arc<Envelope>>,
    seen: Vec<Arc<Envelope>>,
}

impl Live {
    fn start(project: &Project, workflow: &Path) -> Self {
        let runtime = project.runtime();
        let events = runtime.bus().sink();
        let plan = runtime.plan(workflow, &PlanOverrides::default()).unwrap();
        let run = runtime.start_planned("ann", plan).unwrap().id().clone();
        Self { runtime, run, events, seen: Vec::new() }
    }

    /// Wait for the first event of this run (seen or to come) that `wanted` accepts.
    async fn until(&mut self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        if let Some(found) = self.seen.iter().find(|e| self.ours(e) && wanted(&e.event)) {
            return found.event.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let envelope =
                next.unwrap_or_else(|_| panic!("no {what}; saw {:#?}", self.kinds())).unwrap();
            self.seen.push(Arc::clone(&envelope));
            if self.ours(&envelope) && wanted(&envelope.event) {
                return envelope.event.clone();
            }
        }
    }

    fn ours(&self, envelope: &Envelope) -> bool {
        envelope.run_id.as_ref() == Some(&self.run)
    }

    fn kinds(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|e| self.ours(e))
            .map(|e| format!("{} {}", e.event.kind(), e.event.task().unwrap_or("")))
            .collect()
    }

    async fn finish(mut self) -> (RunStatus, Vec<Arc<Envelope>>) {
        let event = self.until("run_finished", |e| matches!(e, Event::RunFinished { .. })).await;
        let Event::RunFinished { status, .. } = event else { unreachable!() };
        let run = self.run.clone();
        let seen: Vec<Arc<Envelope>> =
            self.seen.into_iter().filter(|e| e.run_id.as_ref() == Some(&run)).collect();
        self.runtime.shutdown().await;
        (status, seen)
    }

    async fn waits_for_person(&mut self, task: &str) {
        self.until("operator step", |e| {
            matches!(e, Event::ConflictStep { task: t, step: LadderStep::Operator, .. } if t.as_str() == task)
        })
        .await;
    }

    async fn resolve(
        &self,
        user: &str,
        task: &str,
        choice: ConflictChoice,
        note: Option<&str>,
    ) -> Result<(), RuntimeError> {
        self.runtime
            .submit(Request {
                user: UserId::new(user),
                command: Command::ResolveConflict {
                    run: self.run.clone(),
                    task: TaskId::new(task),
                    choice,
                    note: note.map(str::to_owned),
                },
            })
            .await
    }
}

fn output_of(events: &[Arc<Envelope>], task: &str) -> Value {
    events
        .iter()
        .find_map(|e| match &e.event {
            Event::TaskSucceeded { task: t, output, .. } if t.as_str() == task => {
                Some(serde_json::from_str(output).unwrap())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{task} did not succeed"))
}

fn resolved(events: &[Arc<Envelope>], task: &str) -> Option<Event> {
    events
        .iter()
        .map(|e| e.event.clone())
        .find(|e| matches!(e, Event::ConflictResolved { task: t, .. } if t.as_str() == task))
}

fn steps(events: &[Arc<Envelope>], task: &str) -> Vec<(LadderStep, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ConflictStep { task: t, step, winner, .. } if t.as_str() == task => {
                Some((*step, winner.as_ref().map(ToString::to_string)))
            }
            _ => None,
        })
        .collect()
}

async fn run_to_end(tasks: &str) -> (RunStatus, Vec<Arc<Envelope>>) {
    let project = Project::new();
    let file = project.workflow("w", tasks);
    Live::start(&project, &file).finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_decision_is_no_conflict() {
    let (status, events) = run_to_end(
        "  - {id: q, description: Pick one, panel: [agreer-a, agreer-b], options: [red, blue]}\n",
    )
    .await;
    assert_eq!(status, RunStatus::Succeeded);
    assert!(events.iter().any(|e| matches!(e.event, Event::PanelAgreed { .. })));
    assert!(!events.iter().any(|e| matches!(e.event, Event::ConflictDetected { .. })));
    let output = output_of(&events, "q");
    assert_eq!(output["resolved_by"], "agreement");
    assert!(output["decision"] == "red" || output["decision"] == "blue", "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_against_performance_is_decided_by_domain_priority() {
    let (status, events) =
        run_to_end("  - {id: q, description: Choose between x and y, panel: [perf, sec]}\n").await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(steps(&events, "q"), [(LadderStep::DomainPriority, Some("sec".to_owned()))]);
    let Some(Event::ConflictResolved { decision, winner, resolved_by, by, .. }) =
        resolved(&events, "q")
    else {
        panic!("not resolved");
    };
    assert_eq!(
        (decision.as_str(), winner.as_str(), resolved_by, by),
        ("x", "sec", LadderStep::DomainPriority, None)
    );
    let output = output_of(&events, "q");
    assert_eq!(output["decision"], "x");
    assert_eq!(output["rationale"], "keeps users apart");
    let overruled: Vec<bool> = output["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["overruled"].as_bool().unwrap())
        .collect();
    assert_eq!(overruled, [true, false], "{output}");
    // The winner is credited; the overruled member is not blamed.
    assert!(events.iter().any(
        |e| matches!(&e.event, Event::TaskSucceeded { agent, .. } if agent.as_str() == "sec")
    ));
    assert!(!events.iter().any(|e| matches!(e.event, Event::TaskFailed { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_domain_with_concrete_evidence_is_decided_by_evidence() {
    let (status, events) = run_to_end(
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-concrete]}\n",
    )
    .await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(
        steps(&events, "q"),
        [
            (LadderStep::DomainPriority, None),
            (LadderStep::Evidence, Some("impl-concrete".to_owned()))
        ]
    );
    let finding = events.iter().find_map(|e| match &e.event {
        Event::ConflictStep { step: LadderStep::Evidence, finding, .. } => Some(finding.clone()),
        _ => None,
    });
    assert!(finding.unwrap().contains("impl-concrete 3.50"), "the scores are shown");
    assert_eq!(output_of(&events, "q")["decision"], "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_opinion_decides_only_when_it_holds_both_ways() {
    let (status, events) = run_to_end(
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-other], third_opinion: judge-y}\n",
    )
    .await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(
        steps(&events, "q").last().unwrap(),
        &(LadderStep::ThirdOpinion, Some("impl-other".to_owned()))
    );

    let project = Project::new();
    let file = project.workflow(
        "w",
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-other], third_opinion: judge-first}\n",
    );
    let mut live = Live::start(&project, &file);
    live.waits_for_person("q").await;
    let step = live
        .until("third opinion", |e| {
            matches!(e, Event::ConflictStep { step: LadderStep::ThirdOpinion, .. })
        })
        .await;
    let Event::ConflictStep { winner, finding, .. } = step else { unreachable!() };
    assert_eq!(winner, None);
    assert!(finding.contains("in panel order: \"x\"; in reverse order: \"y\""), "{finding}");
    live.resolve("ann", "q", ConflictChoice::Verdict(2), Some("y reads better")).await.unwrap();
    let (status, events) = live.finish().await;
    assert_eq!(status, RunStatus::Succeeded);
    let output = output_of(&events, "q");
    assert_eq!((output["decision"].as_str(), output["by"].as_str()), (Some("y"), Some("ann")));
    assert_eq!(output["note"], "y reads better");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_one_split_is_settled_by_the_ladder_not_the_majority() {
    let (status, events) = run_to_end(
        "  - {id: q, description: Choose between x and y, panel: [impl-other, perf, sec]}\n",
    )
    .await;
    assert_eq!(status, RunStatus::Succeeded);
    let output = output_of(&events, "q");
    assert_eq!(output["decision"], "x");
    assert_eq!(output["winner"], "sec");
    let overruled =
        output["verdicts"].as_array().unwrap().iter().filter(|v| v["overruled"] == true).count();
    assert_eq!(overruled, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_verdict_is_asked_again_and_a_failed_member_never_votes() {
    let (status, events) = run_to_end(
        "  - {id: q, description: Choose between x and y, panel: [late, mute, impl-plain]}\n",
    )
    .await;
    assert_eq!(status, RunStatus::Succeeded);
    let verdicts: Vec<(String, u32, bool)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::PanelVerdict { agent, asked, verdict, .. } => {
                Some((agent.to_string(), *asked, verdict.is_some()))
            }
            _ => None,
        })
        .collect();
    assert!(verdicts.contains(&("late".into(), 2, true)), "{verdicts:?}");
    assert!(verdicts.contains(&("mute".into(), 2, false)), "{verdicts:?}");
    let Some(Event::PanelAgreed { agents, .. }) =
        events.iter().map(|e| e.event.clone()).find(|e| matches!(e, Event::PanelAgreed { .. }))
    else {
        panic!("late and impl-plain agree on x");
    };
    assert_eq!(agents.iter().map(ToString::to_string).collect::<Vec<_>>(), ["late", "impl-plain"]);
    assert_eq!(output_of(&events, "q")["failed"], serde_json::json!(["mute"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deciding_later_blocks_only_the_panel_tasks_dependents() {
    let project = Project::new();
    let file = project.workflow(
        "w",
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-other]}
  - {id: after-q, description: Use the answer, agent: writer, depends_on: [q]}
  - {id: other, description: Unrelated work, agent: writer}
  - {id: other-2, description: More unrelated work, agent: writer, depends_on: [other]}
",
    );
    let mut live = Live::start(&project, &file);
    live.waits_for_person("q").await;
    for task in ["other", "other-2"] {
        live.until(
            task,
            |e| matches!(e, Event::TaskSucceeded { task: t, .. } if t.as_str() == task),
        )
        .await;
    }
    assert!(!live.kinds().iter().any(|k| k.ends_with(" after-q")), "{:?}", live.kinds());
    live.resolve("dev", "q", ConflictChoice::Own("both, behind a flag".into()), None)
        .await
        .unwrap();
    let (status, events) = live.finish().await;
    assert_eq!(status, RunStatus::Succeeded);
    let output = output_of(&events, "q");
    assert_eq!(
        (output["decision"].as_str(), output["winner"].as_str()),
        (Some("both, behind a flag"), Some("operator"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conflicts_of_the_same_task_are_resolved_by_run_and_task_through_the_gate() {
    let project = Project::new();
    let file = project.workflow(
        "w",
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-other]}\n",
    );
    let runtime = project.runtime();
    let mut events = runtime.bus().sink();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let plan = runtime.plan(&file, &PlanOverrides::default()).unwrap();
        runs.push(runtime.start_planned("ann", plan).unwrap().id().clone());
    }
    let mut waiting = 0;
    while waiting < 2 {
        let envelope =
            tokio::time::timeout(Duration::from_secs(20), events.recv()).await.unwrap().unwrap();
        if matches!(envelope.event, Event::ConflictStep { step: LadderStep::Operator, .. }) {
            waiting += 1;
        }
    }
    assert_eq!(runtime.open_conflicts().len(), 2);
    let resolve = |user: &str, run: &RunId, choice: ConflictChoice| Request {
        user: UserId::new(user),
        command: Command::ResolveConflict {
            run: run.clone(),
            task: TaskId::new("q"),
            choice,
            note: None,
        },
    };
    // Viewers and reviewers may not decide; the refusal is audited like every decision.
    for user in ["vic", "rex"] {
        let denied = runtime.submit(resolve(user, &runs[0], ConflictChoice::Verdict(1))).await;
        assert!(matches!(denied, Err(RuntimeError::Denied(_))), "{user}: {denied:?}");
    }
    let unknown =
        runtime.submit(resolve("ann", &RunId::new("r-none"), ConflictChoice::Verdict(1))).await;
    assert!(unknown.unwrap_err().to_string().contains("no conflict waiting"));
    runtime.submit(resolve("ann", &runs[1], ConflictChoice::Verdict(2))).await.unwrap();
    runtime.submit(resolve("dev", &runs[0], ConflictChoice::Verdict(1))).await.unwrap();
    for run in &runs {
        assert_eq!(runtime.wait_run(run).await, Some(RunStatus::Succeeded));
    }
    runtime.flush().await.unwrap();
    let audit = std::fs::read_to_string(project.root().join(".flightdeck/audit.jsonl")).unwrap();
    let records: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let resolves: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["action"] == "resolve_conflict")
        .map(|r| (r["user"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        resolves,
        [
            ("vic", "denied"),
            ("rex", "denied"),
            // Let through, then what became of it: no conflict of that run waits.
            ("ann", "accepted"),
            ("ann", "failed"),
            ("ann", "accepted"),
            ("ann", "succeeded"),
            ("dev", "accepted"),
            ("dev", "succeeded"),
        ]
    );
    let decided: Vec<(String, String)> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match &e.event {
            Event::ConflictResolved { decision, by, .. } => Some((
                e.run_id.clone().unwrap().to_string(),
                format!("{decision} by {}", by.clone().unwrap()),
            )),
            _ => None,
        })
        .collect();
    assert!(decided.contains(&(runs[1].to_string(), "y by ann".to_owned())), "{decided:?}");
    assert!(decided.contains(&(runs[0].to_string(), "x by dev".to_owned())), "{decided:?}");
    runtime.shutdown().await;
}

#[test]
fn panel_fields_are_validated_with_file_and_line() {
    let project = Project::new();
    let registry = flightdeck::agents::Registry::load(&project.root().join("agentpool"));
    let file = project.workflow(
        "bad",
        "  - id: one
    description: A panel of one
    panel: [sec]
  - id: twice
    description: The same agent twice
    panel: [sec, perf, sec]
    options: [only]
  - id: unknown
    description: Who is that
    panel:
      - sec
      - nobody
    domain: astrology
  - id: loose
    description: Options without a panel
    agent: sec
    options: [a, b]
",
    );
    let error = Workflow::load_for(&file, Some(&registry)).unwrap_err();
    let found: Vec<(usize, String)> =
        error.problems().iter().map(|p| (p.line, p.kind.to_string())).collect();
    let expect = [
        (6, "a panel needs two or more agents, this one has 1"),
        (9, "agent `sec` is on the panel twice"),
        (10, "options: give two or more answers"),
        (15, "agent `nobody` is not in the agent pool"),
        (16, "domain: `astrology` is not a domain"),
        (20, "`options` belongs to panel tasks"),
    ];
    for (line, text) in expect {
        assert!(
            found.iter().any(|(l, t)| *l == line && t.contains(text)),
            "{line}: {text} not in {found:#?}"
        );
    }
    assert!(error.to_string().contains("bad.yaml:6:"), "{error}");
    assert!(matches!(error.problems()[0].kind, ProblemKind::PanelTooSmall { .. }));
}

/// The bundled project: `workflows/review.yaml` on the bundled sim pool, with no key.
fn bundled(args: &[&str], data: &Path) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .current_dir(root)
        .args([
            "--project-dir",
            root.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--as",
            "ann",
        ])
        .args(args)
        .env_remove("FLIGHTDECK_USER")
        .output()
        .unwrap()
}

#[test]
fn the_review_workflow_settles_one_conflict_by_the_ladder_and_asks_a_person_for_another() {
    let data = tempfile::tempdir().unwrap();
    let failed = bundled(&["run", "workflows/review.yaml"], data.path());
    let text = String::from_utf8_lossy(&failed.stdout).into_owned()
        + &String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    let settled = text.lines().find(|l| l.contains("resolved  note-cache")).unwrap_or_default();
    assert!(settled.contains("(security-engineer), domain_priority"), "{text}");
    assert!(text.contains("conflict needs a person: backend-developer chose"), "{text}");

    let decided =
        bundled(&["run", "workflows/review.yaml", "--decide", "recommend", "--json"], data.path());
    let lines = String::from_utf8_lossy(&decided.stdout).into_owned();
    assert_eq!(
        decided.status.code(),
        Some(0),
        "{lines}{}",
        String::from_utf8_lossy(&decided.stderr)
    );
    let events: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pagination = events
        .iter()
        .find(|e| e["type"] == "conflict_resolved" && e["task"] == "pagination")
        .expect("pagination resolved");
    assert_eq!(pagination["by"], "flightdeck");
    assert_eq!(pagination["resolved_by"], "operator");
    assert!(pagination["note"].as_str().unwrap().contains("--decide recommend"), "{pagination}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_events_fold_back_to_the_conflict_and_its_decision() {
    let project = Project::new();
    let file = project.workflow(
        "w",
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-other], third_opinion: judge-first}\n",
    );
    let mut live = Live::start(&project, &file);
    live.waits_for_person("q").await;
    live.resolve(
        "ann",
        "q",
        ConflictChoice::Own("x behind a flag".into()),
        Some("both have a point"),
    )
    .await
    .unwrap();
    let run = live.run.clone();
    let (status, _) = live.finish().await;
    assert_eq!(status, RunStatus::Succeeded);
    // No agent can answer any more: the fold needs none.
    std::fs::remove_file(project.root().join("say.sh")).unwrap();
    let store =
        flightdeck::store::RunStore::open(project.root().join(".flightdeck/runs.db")).unwrap();
    let events = store.events(&run).unwrap();
    let model =
        flightdeck::model::RunModel::from_events(&events, flightdeck::model::OutputKeep::None);
    let task = model.task(&TaskId::new("q")).unwrap();
    let conflict = task.conflict.as_deref().unwrap();
    assert_eq!(conflict.question, "Choose between x and y");
    assert_eq!(conflict.verdicts.len(), 2);
    let steps: Vec<LadderStep> = conflict.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [
            LadderStep::DomainPriority,
            LadderStep::Evidence,
            LadderStep::ThirdOpinion,
            LadderStep::Operator
        ]
    );
    let resolution = conflict.resolution.as_ref().unwrap();
    assert_eq!(resolution.decision, "x behind a flag");
    assert_eq!(resolution.winner, "operator");
    assert_eq!(resolution.by.as_ref().map(UserId::as_str), Some("ann"));
    assert_eq!(resolution.note.as_deref(), Some("both have a point"));
    assert!(!conflict.is_open(), "a resolved conflict is never asked again");
    assert_eq!(model.open_conflicts().count(), 0);
    assert_eq!(task.status, flightdeck::model::TaskStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_asks_the_third_opinion_once_and_it_becomes_the_recommendation() {
    let project = Project::new();
    // The ladder itself never asks a third agent here: only a person can (the prompt's `t`).
    let settings = project.root().join("flightdeck.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, format!("{text}conflicts:\n  steps: [domain_priority, evidence]\n"))
        .unwrap();
    let file = project.workflow(
        "w",
        "  - {id: q, description: Choose between x and y, panel: [impl-plain, impl-other], third_opinion: judge-y}
  - {id: r, description: Choose between x and y again, panel: [impl-plain, impl-other]}
",
    );
    let mut live = Live::start(&project, &file);
    live.waits_for_person("q").await;
    live.waits_for_person("r").await;
    let run = live.run.clone();
    let ask = |user: &str, task: &str| Request {
        user: UserId::new(user),
        command: Command::AskThirdOpinion { run: run.clone(), task: TaskId::new(task) },
    };
    let denied = live.runtime.submit(ask("vic", "q")).await;
    assert!(matches!(denied, Err(RuntimeError::Denied(_))), "{denied:?}");
    let none = live.runtime.submit(ask("dev", "r")).await.unwrap_err().to_string();
    assert!(none.contains("no agent for a third opinion"), "{none}");
    live.runtime.submit(ask("dev", "q")).await.unwrap();
    let step = live
        .until("third opinion", |e| {
            matches!(e, Event::ConflictStep { task, step: LadderStep::ThirdOpinion, .. } if task.as_str() == "q")
        })
        .await;
    let Event::ConflictStep { finding, winner, decision, .. } = step else { unreachable!() };
    assert!(finding.starts_with("asked by dev: "), "{finding}");
    assert_eq!(
        (winner.as_ref().map(flightdeck::ids::AgentId::as_str), decision.as_deref()),
        (Some("impl-other"), Some("y"))
    );
    // Its pick is now what the ladder recommends; the conflict still waits for the person.
    live.until("new recommendation", |e| {
        matches!(e, Event::ConflictStep { task, step: LadderStep::Operator, recommendation: Some(r), .. }
            if task.as_str() == "q" && r.from == Some(LadderStep::ThirdOpinion) && r.decision == "y")
    })
    .await;
    let twice = live.runtime.submit(ask("ann", "q")).await.unwrap_err().to_string();
    assert!(twice.contains("already asked"), "{twice}");
    live.resolve("dev", "q", ConflictChoice::Recommended, None).await.unwrap();
    live.resolve("dev", "r", ConflictChoice::Verdict(1), None).await.unwrap();
    let (status, events) = live.finish().await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(output_of(&events, "q")["decision"], "y");
    let asked = events
        .iter()
        .filter(
            |e| matches!(&e.event, Event::TaskStarted { agent, .. } if agent.as_str() == "judge-y"),
        )
        .count();
    assert_eq!(asked, 2, "the third agent is asked twice (both orders), once per request");
}
