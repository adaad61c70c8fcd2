//! A conflict survives a crash: the real binary runs a panel task whose members and third
//! agent are `sh` children appending to a log, is killed (SIGKILL) while the conflict waits
//! for a person, and `flightdeck resume` asks the person again from the stored events: no
//! member and no third opinion is asked twice, and the decision flows on.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flightdeck::conflict::LadderStep;
use flightdeck::event::{Envelope, Event};
use flightdeck::store::{RUNS_FILE, RunStore};
use serde_json::Value;
use tempfile::TempDir;

const SETTINGS: &str = "default_role: viewer
users:
  ann: admin
backends:
  sim:
    kind: sim
    latency_min: 1ms
    latency_max: 3ms
  say:
    kind: process
    command: [sh, say.sh, '{agent}']
    input: stdin
";

/// Every call appends the agent's name to `agent.log`. The judge takes whichever side it is
/// shown first, so it changes its answer with the order and never decides.
const SAY: &str = r#"agent="$1"
input=$(cat)
echo "$agent" >> agent.log
case "$agent" in
  impl-plain) echo '{"decision":"x","rationale":"simpler","confidence":0.9}' ;;
  impl-other) echo '{"decision":"y","rationale":"familiar","confidence":0.5}' ;;
  judge-first) first=$(printf '%s\n' "$input" | sed -n 's/^Side 1: "\(.*\)"$/\1/p' | head -n 1)
       printf '{"decision":"%s","rationale":"the first side","confidence":0.5}\n' "$first" ;;
esac
"#;

const WORKFLOW: &str = "name: pick
max_parallel: 2
tasks:
  - id: q
    description: Choose between x and y
    panel: [impl-plain, impl-other]
    third_opinion: judge-first
  - id: after
    description: Write down what was chosen
    agent: writer
    depends_on: [q]
";

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
        for (name, category, backend) in [
            ("impl-plain", "implementation", "say"),
            ("impl-other", "implementation", "say"),
            ("judge-first", "quality", "say"),
            ("writer", "documentation", "sim"),
        ] {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\ncategory: {category}\n\
                 backend: {backend}\n---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        }
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(root.join("workflows/pick.yaml"), WORKFLOW).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join(".flightdeck")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flightdeck"));
        command
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER");
        command
    }

    /// How many times each agent was called.
    fn calls(&self, agent: &str) -> usize {
        std::fs::read_to_string(self.root().join("agent.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == agent)
            .count()
    }

    fn events(&self) -> Vec<Envelope> {
        let store = RunStore::open(self.data_dir().join(RUNS_FILE)).unwrap();
        let run = store.runs().unwrap()[0].run_id.clone();
        store.events(&run).unwrap()
    }
}

/// `run --json --decide wait`, read until the conflict of `q` waits for a person.
fn run_until_a_person_is_asked(project: &Project) -> Child {
    let mut child = project
        .command(&["run", "workflows/pick.yaml", "--json", "--decide", "wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (seen, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let asked = serde_json::from_str::<Value>(&line)
                .is_ok_and(|e| e["type"] == "conflict_step" && e["step"] == "operator");
            if asked {
                let _ = seen.send(());
            }
        }
    });
    lines.recv_timeout(Duration::from_secs(60)).expect("the conflict of q reaches a person");
    child
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn a_conflict_waiting_when_the_run_is_killed_is_asked_again_on_resume_not_its_members() {
    let project = Project::new();
    let mut child = run_until_a_person_is_asked(&project);
    // The conflict waits (the run holds no worker for it): kill the run's process outright.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        (project.calls("impl-plain"), project.calls("impl-other"), project.calls("judge-first")),
        (1, 1, 2),
        "each member once, the third agent in both orders"
    );

    // Resumed without a person: the conflict is asked again and the recommendation taken.
    let began = Instant::now();
    let resumed = project.command(&["resume", "last", "--decide", "recommend"]).output().unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(began.elapsed() < Duration::from_secs(60));
    assert_eq!(
        (project.calls("impl-plain"), project.calls("impl-other"), project.calls("judge-first")),
        (1, 1, 2),
        "no member and no third opinion asked again: {}",
        text(&resumed)
    );

    let events = project.events();
    let detected = events
        .iter()
        .filter(
            |e| matches!(&e.event, Event::ConflictDetected { task, .. } if task.as_str() == "q"),
        )
        .count();
    assert_eq!(detected, 1, "detected once, before the crash");
    let steps: Vec<(LadderStep, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ConflictStep { task, step, finding, .. } if task.as_str() == "q" => {
                Some((*step, finding.clone()))
            }
            _ => None,
        })
        .collect();
    let kinds: Vec<LadderStep> = steps.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        kinds,
        [
            LadderStep::DomainPriority,
            LadderStep::Evidence,
            LadderStep::ThirdOpinion,
            LadderStep::Operator,
            LadderStep::Operator
        ],
        "the steps that ran before the crash are not run again"
    );
    assert!(steps[4].1.starts_with("asked again after the run resumed"), "{}", steps[4].1);
    let resolved: Vec<&Event> = events
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, Event::ConflictResolved { task, .. } if task.as_str() == "q"))
        .collect();
    assert_eq!(resolved.len(), 1, "settled once");
    let Event::ConflictResolved { by, resolved_by, .. } = resolved[0] else { unreachable!() };
    assert_eq!(*resolved_by, LadderStep::Operator);
    assert_eq!(by.as_ref().map(flightdeck::ids::UserId::as_str), Some("flightdeck"));

    // The decision flows on to the dependent, and the stored run folds to it.
    let model =
        flightdeck::model::RunModel::from_events(&events, flightdeck::model::OutputKeep::None);
    let q = model.task(&flightdeck::ids::TaskId::new("q")).unwrap();
    assert_eq!(q.status, flightdeck::model::TaskStatus::Succeeded);
    let output: Value = serde_json::from_str(q.result.as_deref().unwrap()).unwrap();
    assert_eq!(output["resolved_by"], "operator");
    assert_eq!(
        model.task(&flightdeck::ids::TaskId::new("after")).unwrap().status,
        flightdeck::model::TaskStatus::Succeeded
    );
    assert_eq!(model.open_conflicts().count(), 0);

    // A finished run is never resumed again, so its conflict is never asked again.
    let again = project.command(&["resume", "last", "--decide", "recommend"]).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert_eq!(project.calls("impl-plain"), 1);
}
