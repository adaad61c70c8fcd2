//! The Runs list's resume and replay keys: asked like every command that changes something,
//! offered only where they apply and never to a viewer.

use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::super::{Effect, Input, commands, reduce};
use crate::command::Command;
use crate::console::keys::{self, Action};
use crate::console::state::{Prompt, RunState, State};
use crate::event::{Envelope, Event, PlannedTask, RunStatus};
use crate::ids::{AgentId, RunId, TaskId};
use crate::store::RunRow;

const T0: u64 = 1_700_000_000_000;

fn row(id: &str, state: RunState, started_ms: u64) -> RunRow {
    RunRow {
        workflow: format!("wf-{id}"),
        file: "workflows/x.yaml".into(),
        started_ms,
        tasks: 4,
        succeeded: 2,
        ..RunRow::sample(id, state)
    }
}

fn envelope(run: &str, seq: u64, event: Event) -> Arc<Envelope> {
    Arc::new(Envelope { seq, ts_ms: T0 + seq, run_id: Some(RunId::new(run)), event })
}

fn started(workflow: &str) -> Event {
    Event::RunStarted {
        workflow: workflow.into(),
        file: format!("workflows/{workflow}.yaml").into(),
        goal: None,
        max_parallel: 1,
        fail_fast: false,
        simulated: true,
        tasks: vec![PlannedTask {
            task: TaskId::new("only"),
            description: String::new().into(),
            agent: AgentId::new("backend-architect"),
            score: None,
            depends_on: vec![].into(),
            layer: 0,
            timeout_ms: 1_000,
            retries: 0,
        }],
    }
}

/// A console of `role` following the live run `r-live`, with the Runs list open over the
/// store's interrupted `r-int` (newest) and succeeded `r-done`; `selected` is chosen.
fn listed(role: &str, selected: &str) -> State {
    let mut state = State::new("alice", role, PathBuf::from("/project"), "dark");
    reduce(&mut state, Input::Resize { width: 120, height: 40 });
    reduce(&mut state, Input::Tick(T0));
    reduce(&mut state, Input::Event(envelope("r-live", 1, started("live"))));
    reduce(&mut state, Input::Action(Action::OpenRuns));
    reduce(
        &mut state,
        Input::RunsLoaded(vec![
            row("r-int", RunState::Interrupted, T0 + 5_000),
            row("r-done", RunState::Succeeded, T0 - 5_000),
        ]),
    );
    reduce(&mut state, Input::Action(Action::SelectFirst));
    while state.runs_list.cursor.selected.as_ref().is_some_and(|s| s.as_str() != selected) {
        let before = state.runs_list.cursor.selected.clone();
        reduce(&mut state, Input::Action(Action::SelectNext));
        assert_ne!(before, state.runs_list.cursor.selected, "{selected} is listed");
    }
    state
}

fn act(state: &mut State, action: Action) -> Vec<Effect> {
    reduce(state, Input::Action(action))
}

fn question(state: &State) -> Option<&str> {
    match &state.prompt {
        Some(Prompt::Confirm { question, .. }) => Some(question),
        _ => None,
    }
}

fn offered(state: &State) -> Vec<&'static str> {
    keys::hints(state).into_iter().map(|(_, words, _)| words).collect()
}

fn press(state: &State, c: char) -> Option<Action> {
    keys::action_for(state, &KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

#[test]
fn resuming_an_interrupted_run_asks_first_then_sends_resume_run() {
    let mut state = listed("operator", "r-int");
    assert_eq!(press(&state, 'r'), Some(Action::ResumeSelectedRun));
    assert_eq!(commands(&act(&mut state, Action::ResumeSelectedRun)), vec![]);
    let asked = question(&state).expect("asks first").to_owned();
    assert!(
        asked
            .starts_with("Resume run wf-r-int (r-int)? 2 of 4 tasks succeeded and never run again"),
        "{asked}"
    );
    assert!(asked.contains("resumed by alice"), "{asked}");
    // No keeps everything as it was.
    assert_eq!(commands(&act(&mut state, Action::ConfirmNo)), vec![]);
    act(&mut state, Action::ResumeSelectedRun);
    let resume = Command::ResumeRun { run: RunId::new("r-int"), backend: None };
    assert_eq!(commands(&act(&mut state, Action::ConfirmYes)), vec![resume.clone()]);
    // `:resume RUN` is the same request: the same question, the same command.
    let mut typed = listed("operator", "r-int");
    act(&mut typed, Action::CloseOverlay);
    act(&mut typed, Action::OpenCommandLine);
    for c in "resume r-int".chars() {
        act(&mut typed, Action::CommandLineEdit(crate::console::state::LineEdit::Insert(c)));
    }
    assert_eq!(commands(&act(&mut typed, Action::SubmitCommandLine)), vec![]);
    assert_eq!(question(&typed), Some(asked.as_str()));
    assert_eq!(commands(&act(&mut typed, Action::ConfirmYes)), vec![resume]);
}

#[test]
fn only_an_interrupted_run_resumes() {
    for selected in ["r-live", "r-done"] {
        let mut state = listed("admin", selected);
        assert_eq!(commands(&act(&mut state, Action::ResumeSelectedRun)), vec![]);
        assert_eq!(state.prompt, None);
        let said = state.message.as_ref().map(|m| m.text.clone()).unwrap_or_default();
        assert!(said.contains("only an interrupted run resumes"), "{selected}: {said}");
    }
    // Typed, too: the console refuses what it knows cannot resume.
    let mut state = listed("admin", "r-done");
    act(&mut state, Action::CloseOverlay);
    act(&mut state, Action::OpenCommandLine);
    for c in "resume r-done".chars() {
        act(&mut state, Action::CommandLineEdit(crate::console::state::LineEdit::Insert(c)));
    }
    assert_eq!(commands(&act(&mut state, Action::SubmitCommandLine)), vec![]);
    assert_eq!(state.prompt, None);
}

/// Keys are offered where they apply: cancel on the live run, resume on the interrupted one,
/// replay on any run that is not live.
#[test]
fn the_list_offers_the_keys_that_apply_to_the_selected_run() {
    let live = listed("admin", "r-live");
    assert_eq!(live.runs_list.cursor.selected, Some(RunId::new("r-live")));
    let words = offered(&live);
    assert!(words.contains(&"cancel run") && !words.contains(&"resume"), "{words:?}");
    assert!(!words.contains(&"replay"), "{words:?}");
    let words = offered(&listed("admin", "r-int"));
    assert!(words.contains(&"resume") && words.contains(&"replay"), "{words:?}");
    assert!(!words.contains(&"cancel run"), "{words:?}");
    let words = offered(&listed("admin", "r-done"));
    assert!(words.contains(&"replay"), "{words:?}");
    assert!(!words.contains(&"resume") && !words.contains(&"cancel run"), "{words:?}");
}

/// A viewer (and `attach --readonly`, which runs as one) is neither offered resume nor can
/// press it; the key that got through anyway would still meet the gate.
#[test]
fn resume_from_the_list_is_not_offered_to_a_viewer() {
    let state = listed("viewer", "r-int");
    assert_eq!(press(&state, 'r'), None);
    assert_eq!(press(&state, 'C'), None);
    assert_eq!(press(&state, 'p'), Some(Action::ReplaySelectedRun), "replay changes nothing");
    let words = offered(&state);
    assert!(!words.contains(&"resume") && words.contains(&"replay"), "{words:?}");
    assert!(keys::hints(&state).iter().all(|(_, _, danger)| !danger));
    // A reviewer may not start runs either.
    assert_eq!(press(&listed("reviewer", "r-int"), 'r'), None);
}

#[test]
fn replay_opens_a_run_that_is_not_live_and_refuses_a_live_one() {
    let mut state = listed("viewer", "r-done");
    assert_eq!(
        act(&mut state, Action::ReplaySelectedRun),
        vec![Effect::OpenReplay(RunId::new("r-done"))]
    );
    let mut state = listed("viewer", "r-int");
    assert_eq!(
        act(&mut state, Action::ReplaySelectedRun),
        vec![Effect::OpenReplay(RunId::new("r-int"))]
    );
    let mut state = listed("viewer", "r-live");
    assert_eq!(act(&mut state, Action::ReplaySelectedRun), vec![]);
    let said = state.message.as_ref().map(|m| m.text.clone()).unwrap_or_default();
    assert!(said.contains("is running"), "{said}");
}

/// An interrupted run read from the store to be shown is interrupted, not running: it is not
/// live (quitting does not offer to cancel it) and the list offers to resume it. Once its
/// events arrive live (resumed), it is followed like any run.
#[test]
fn an_interrupted_run_shown_from_the_store_is_not_live() {
    let mut state = listed("admin", "r-int");
    assert_eq!(
        act(&mut state, Action::ShowSelectedRun),
        vec![Effect::LoadRun(RunId::new("r-int"))]
    );
    let events = vec![envelope("r-int", 1, started("interrupted"))];
    reduce(&mut state, Input::RunLoaded { run: RunId::new("r-int"), events });
    assert_eq!(state.shown_run, Some(RunId::new("r-int")));
    let live: Vec<RunId> = state.live_runs().into_iter().map(|(id, _)| id).collect();
    assert_eq!(live, [RunId::new("r-live")]);
    act(&mut state, Action::OpenRuns);
    let entries = state.run_entries();
    let entry = entries.iter().find(|e| e.id.as_str() == "r-int").expect("listed");
    assert_eq!((entry.status, entry.live), ("interrupted", false));
    // Resumed: its events arrive live and it is running again.
    reduce(&mut state, Input::Event(envelope("r-int", 10, started("interrupted"))));
    let entries = state.run_entries();
    let entry = entries.iter().find(|e| e.id.as_str() == "r-int").expect("listed");
    assert_eq!((entry.status, entry.live), ("running", true));
    let finished = Event::RunFinished {
        status: RunStatus::Succeeded,
        succeeded: 1,
        failed: 0,
        skipped: 0,
        cancelled: 0,
        duration_ms: 5,
    };
    reduce(&mut state, Input::Event(envelope("r-int", 11, finished)));
    assert_eq!(
        state.run_entries().iter().find(|e| e.id.as_str() == "r-int").map(|e| e.status),
        Some("succeeded")
    );
}

/// Tab on `resume`'s run reads the store's runs first (not every `:`), then completes with
/// the interrupted one when they arrive.
#[test]
fn tab_on_resume_reads_the_stored_runs_then_completes() {
    let mut state = State::new("alice", "operator", PathBuf::from("/p"), "dark");
    assert_eq!(act(&mut state, Action::OpenCommandLine), vec![Effect::ListWorkflows]);
    for c in "resume r".chars() {
        act(&mut state, Action::CommandLineEdit(crate::console::state::LineEdit::Insert(c)));
    }
    assert_eq!(act(&mut state, Action::CompleteCommandLine), vec![Effect::LoadRuns]);
    assert_eq!(state.command_line.text, "resume r");
    reduce(
        &mut state,
        Input::RunsLoaded(vec![
            row("r-int", RunState::Interrupted, T0),
            row("r-done", RunState::Succeeded, T0 + 1),
        ]),
    );
    assert_eq!(state.command_line.text, "resume r-int ");
}
