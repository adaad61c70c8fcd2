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

#[test]
fn replay_shows_the_conflict_each_step_and_the_decision_when_they_happened() {
    use std::sync::Arc;

    use flightdeck::console::keys::Action;
    use flightdeck::console::reducer::{Effect, Input, reduce};
    use flightdeck::console::replay::{Replay, Seek};
    use flightdeck::console::state::{Prompt, State};

    let project = Project::new();
    let run = project.command(&["run", "workflows/pick.yaml", "--decide", "recommend"]).output();
    let run = run.unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    // No agent can answer any more; replay needs none.
    std::fs::remove_file(project.root().join("say.sh")).unwrap();
    let calls =
        (project.calls("impl-plain"), project.calls("impl-other"), project.calls("judge-first"));
    assert_eq!(calls, (1, 1, 2));

    let events: Vec<Arc<Envelope>> = project.events().into_iter().map(Arc::new).collect();
    let key = (events[0].run_id.clone().unwrap(), flightdeck::ids::TaskId::new("q"));
    let at =
        |wanted: &dyn Fn(&Event) -> bool| events.iter().position(|e| wanted(&e.event)).unwrap();
    let detected = at(&|e| matches!(e, Event::ConflictDetected { .. }));
    let resolved = at(&|e| matches!(e, Event::ConflictResolved { .. }));
    let steps: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.event, Event::ConflictStep { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(steps.len(), 4);

    let mut base = State::new("ann", "viewer", project.root().to_owned(), "dark");
    reduce(&mut base, Input::Resize { width: 160, height: 45 });
    let mut replay = Replay::open(events.clone(), base);
    let theme = flightdeck::console::theme::bundled("dark").unwrap();
    let screen = |state: &State| {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 45)).unwrap();
        terminal
            .draw(|f| {
                let area = f.area();
                flightdeck::console::panes::render_screen(state, &theme, area, f.buffer_mut());
            })
            .unwrap();
        terminal.backend().to_string()
    };
    // Stepping on, one event at a time: the conflict appears, grows a step at a time, waits
    // for a person and is settled, each at the event that did it.
    for position in 0..=events.len() {
        replay.seek_to(position);
        let conflict = replay.state.conflict(&key);
        if position <= detected {
            assert!(conflict.is_none(), "no conflict before it was detected ({position})");
            continue;
        }
        let conflict = conflict.unwrap();
        let ran = steps.iter().filter(|i| **i < position).count();
        assert_eq!(conflict.steps.len(), ran, "steps at {position}");
        assert_eq!(conflict.resolution.is_some(), position > resolved, "decision at {position}");
        let waiting = replay.state.conflicts.waiting.contains_key(&key);
        assert_eq!(waiting, position > steps[3] && position <= resolved, "waiting at {position}");
        assert!(replay.state.prompt.is_none(), "replay never asks anyone ({position})");
        if waiting {
            assert!(screen(&replay.state).contains("⏸ 1 conflict to decide"), "{position}");
        }
    }
    // At the end, the Conflicts list opens it, settled, and nothing can be sent.
    assert!(replay.seek(Seek::End) || replay.position() == events.len());
    reduce(&mut replay.state, Input::Action(Action::OpenConflicts));
    let shown = screen(&replay.state);
    assert!(shown.contains("resolved"), "{shown}");
    let effects = reduce(&mut replay.state, Input::Action(Action::OpenSelectedConflict));
    assert!(effects.iter().all(|e| !matches!(e, Effect::Send(_))));
    assert!(matches!(replay.state.prompt, Some(Prompt::Conflict { .. })));
    let shown = screen(&replay.state);
    assert!(shown.contains("✓ settled"), "{shown}");
    assert!(shown.contains("by flightdeck"), "{shown}");
    for key in ['1', 'e'] {
        let press = crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char(key),
            crossterm::event::KeyModifiers::NONE,
        );
        assert_eq!(flightdeck::console::keys::action_for(&replay.state, &press), None);
    }
    let after =
        (project.calls("impl-plain"), project.calls("impl-other"), project.calls("judge-first"));
    assert_eq!(after, calls, "no agent called by the replay");
}
