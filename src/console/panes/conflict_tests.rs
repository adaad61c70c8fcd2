//! The conflict prompt and the Conflicts list: snapshots at three sizes, and the keys that
//! choose, write, note, confirm and put off, fed through the real reducer.

use std::path::PathBuf;
use std::sync::Arc;

use insta::assert_snapshot;

use crate::command::{Command, ConflictChoice};
use crate::conflict::{DecideMode, Domain, LadderStep, MemberVerdict, Recommendation, Verdict};
use crate::console::keys::{self, Action};
use crate::console::panes::testing::{self, T0};
use crate::console::reducer::{Effect, Input, commands, reduce};
use crate::console::state::{ConflictInput, LineEdit, Overlay, Prompt, State};
use crate::event::{Envelope, Event, PlannedTask};
use crate::ids::{AgentId, RunId, TaskId, UserId};

fn member(agent: &str, domain: Domain, decision: &str, evidence: &[&str]) -> MemberVerdict {
    MemberVerdict {
        agent: AgentId::new(agent),
        domain,
        domain_from: "category".into(),
        verdict: Verdict {
            decision: decision.into(),
            rationale: format!("{agent} weighed both and prefers {decision} for the notes list"),
            alternatives: vec!["the other one: more work for the client".into()],
            tradeoffs: vec!["one more query per page".into()],
            evidence: evidence.iter().map(|e| (*e).to_owned()).collect(),
            confidence: 0.7,
        },
    }
}

fn planned(id: &str, agent: &str, layer: usize, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        task: TaskId::new(id),
        description: format!("{id} of the notes service").into(),
        agent: AgentId::new(agent),
        score: None,
        depends_on: deps.iter().map(|d| TaskId::new(*d)).collect(),
        layer,
        timeout_ms: 30_000,
        retries: 0,
    }
}

/// Feeds events of one run through the reducer with a fixed clock.
struct Feed {
    seq: u64,
}

impl Feed {
    fn push(&mut self, state: &mut State, run: &RunId, event: Event) {
        self.seq += 1;
        let envelope = Envelope {
            seq: self.seq,
            ts_ms: T0 + self.seq * 1_000,
            run_id: Some(run.clone()),
            event,
        };
        reduce(state, Input::Event(Arc::new(envelope)));
    }
}

/// The events of a review run up to the conflict of `pagination` asking a person, after
/// `note-cache` was settled by domain priority.
fn review_events(run: &RunId, feed: &mut Feed, state: &mut State) {
    feed.push(
        state,
        run,
        Event::RunStarted {
            workflow: "review".into(),
            file: PathBuf::from("workflows/review.yaml"),
            goal: None,
            max_parallel: 2,
            fail_fast: false,
            simulated: false,
            tasks: vec![
                planned("note-cache", "security-engineer", 0, &[]),
                planned("pagination", "backend-developer", 0, &[]),
                planned("summary", "technical-writer", 1, &["note-cache", "pagination"]),
            ],
        },
    );
    feed.push(
        state,
        run,
        Event::ConflictDetected {
            task: TaskId::new("note-cache"),
            question: "Decide whether rendered note pages may be cached per user".into(),
            options: vec!["cache per user".into(), "cache only public pages".into()],
            domain: Some(Domain::Security),
            decide: DecideMode::Auto,
            verdicts: vec![
                member("security-engineer", Domain::Security, "cache only public pages", &[]),
                member("performance-engineer", Domain::Performance, "cache per user", &[]),
            ],
            failed: Vec::new(),
        },
    );
    feed.push(
        state,
        run,
        Event::ConflictStep {
            task: TaskId::new("note-cache"),
            step: LadderStep::DomainPriority,
            finding: "security-engineer owns security".into(),
            winner: Some(AgentId::new("security-engineer")),
            decision: Some("cache only public pages".into()),
            recommendation: None,
        },
    );
    feed.push(
        state,
        run,
        Event::ConflictResolved {
            task: TaskId::new("note-cache"),
            decision: "cache only public pages".into(),
            winner: "security-engineer".into(),
            resolved_by: LadderStep::DomainPriority,
            by: None,
            note: None,
        },
    );
    feed.push(
        state,
        run,
        Event::ConflictDetected {
            task: TaskId::new("pagination"),
            question: "Choose how the notes list pages through results".into(),
            options: vec!["cursor-based pages".into(), "numbered pages".into()],
            domain: None,
            decide: DecideMode::Recommend,
            verdicts: vec![
                member(
                    "backend-developer",
                    Domain::Implementation,
                    "numbered pages",
                    &["src/notes/list.rs:42", "p99 38 ms"],
                ),
                member("frontend-developer", Domain::Implementation, "cursor-based pages", &[]),
            ],
            failed: Vec::new(),
        },
    );
    for (step, finding) in [
        (LadderStep::DomainPriority, "both are implementation: not decided"),
        (LadderStep::Evidence, "scores 2.5 and 1.0 differ by less than 1.5: not decided"),
    ] {
        feed.push(
            state,
            run,
            Event::ConflictStep {
                task: TaskId::new("pagination"),
                step,
                finding: finding.into(),
                winner: None,
                decision: None,
                recommendation: None,
            },
        );
    }
    feed.push(
        state,
        run,
        Event::ConflictStep {
            task: TaskId::new("pagination"),
            step: LadderStep::Operator,
            finding: "no step decided; a person decides".into(),
            winner: None,
            decision: None,
            recommendation: Some(Recommendation {
                decision: "numbered pages".into(),
                winner: AgentId::new("backend-developer"),
                from: None,
            }),
        },
    );
}

fn run_a() -> RunId {
    RunId::new("r-a")
}

fn run_b() -> RunId {
    RunId::new("r-b")
}

/// A console (as `role`) that saw a conflict of task `pagination` reach a person.
fn with_conflict(role: &str, width: u16, height: u16) -> State {
    let mut state = State::new("alice", role, PathBuf::from("/project"), "dark");
    reduce(&mut state, Input::Resize { width, height });
    let mut feed = Feed { seq: 0 };
    review_events(&run_a(), &mut feed, &mut state);
    state
}

fn act(state: &mut State, action: Action) -> Vec<Effect> {
    reduce(state, Input::Action(action))
}

/// Type `text` as key presses, the way the keyboard would (a newline is Enter).
fn type_text(state: &mut State, text: &str) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    for c in text.chars() {
        let code = if c == '\n' { KeyCode::Enter } else { KeyCode::Char(c) };
        let key = KeyEvent::new(code, KeyModifiers::NONE);
        if let Some(action) = keys::action_for(state, &key) {
            act(state, action);
        }
    }
}

fn confirm_question(state: &State) -> String {
    match &state.prompt {
        Some(Prompt::Confirm { question, .. }) => question.clone(),
        other => panic!("no confirmation: {other:?}"),
    }
}

#[test]
fn the_prompt_at_three_sizes() {
    let theme = testing::theme();
    for (width, height) in [(160, 45), (80, 24), (40, 12)] {
        let state = with_conflict("admin", width, height);
        assert!(
            matches!(&state.prompt, Some(Prompt::Conflict { choice: None, key, .. }) if key.1.as_str() == "pagination"),
            "{width}x{height}: {:?}",
            state.prompt
        );
        assert_snapshot!(
            format!("conflict_prompt_{width}x{height}"),
            testing::render_screen(&state, &theme, width, height)
        );
    }
}

/// The smallest console (60x16) has no room for the ladder and every verdict: both sides
/// are still shown (their answers), and the ladder keeps its last step and counts the rest.
#[test]
fn a_short_screen_shows_every_side_before_the_ladder() {
    let theme = testing::theme();
    let state = with_conflict("admin", 60, 16);
    let screen = testing::render_screen(&state, &theme, 60, 16).to_string();
    assert!(
        screen.contains("1 backend-developer") && screen.contains("2 frontend-developer"),
        "{screen}"
    );
    assert!(screen.contains("before this one in the audit pane"), "{screen}");
    assert_snapshot!("conflict_prompt_60x16", testing::render_screen(&state, &theme, 60, 16));
}

#[test]
fn the_prompt_never_panics_at_any_size() {
    let theme = testing::theme();
    let mut state = with_conflict("admin", 160, 45);
    state.now_ms += 1_000;
    act(&mut state, Action::OwnDecision);
    type_text(&mut state, "both, behind a flag that the client picks");
    for width in 0..=90 {
        for height in (0..=30).step_by(3) {
            let _ = testing::render_screen(&state, &theme, width, height);
        }
    }
}

#[test]
fn the_conflicts_list_at_three_sizes() {
    let theme = testing::theme();
    for (width, height) in [(160, 45), (80, 24), (40, 12)] {
        let mut state = with_conflict("admin", width, height);
        act(&mut state, Action::Later);
        act(&mut state, Action::OpenConflicts);
        assert_eq!(state.overlay, Some(Overlay::Conflicts));
        assert_snapshot!(
            format!("conflicts_list_{width}x{height}"),
            testing::render_screen(&state, &theme, width, height)
        );
    }
}

#[test]
fn a_verdict_then_a_note_then_the_confirmation_sends_resolve_conflict() {
    let mut state = with_conflict("admin", 160, 45);
    // A prompt that popped up by itself ignores choosing at first.
    act(&mut state, Action::PickVerdict(2));
    assert!(matches!(state.prompt, Some(Prompt::Conflict { choice: None, .. })));
    state.now_ms += 1_000;
    act(&mut state, Action::PickVerdict(2));
    assert!(matches!(state.prompt, Some(Prompt::Conflict { choice: Some(1), .. })));
    assert!(act(&mut state, Action::PromptConfirm).is_empty(), "a note is asked first");
    assert!(matches!(
        &state.prompt,
        Some(Prompt::Conflict { input: ConflictInput::Note { .. }, .. })
    ));
    type_text(&mut state, "clients already page by cursor");
    let shown = testing::render_screen(&state, &testing::theme(), 160, 45).to_string();
    assert!(shown.contains("note (optional): clients already page by cursor▌"), "{shown}");
    assert!(commands(&act(&mut state, Action::ConflictAccept)).is_empty(), "asks first");
    let question = confirm_question(&state);
    assert!(question.contains("frontend-developer's \"cursor-based pages\""), "{question}");
    let sent = commands(&act(&mut state, Action::ConfirmYes));
    assert_eq!(
        sent,
        vec![Command::ResolveConflict {
            run: run_a(),
            task: TaskId::new("pagination"),
            choice: ConflictChoice::Verdict(2),
            note: Some("clients already page by cursor".into()),
        }]
    );
    // Answered: it does not pop up again while the decision travels.
    assert!(state.prompt.is_none());
}

#[test]
fn no_on_the_confirmation_goes_back_to_the_conflict() {
    let mut state = with_conflict("admin", 160, 45);
    state.now_ms += 1_000;
    act(&mut state, Action::PickVerdict(1));
    act(&mut state, Action::PromptConfirm);
    act(&mut state, Action::ConflictAccept);
    confirm_question(&state);
    assert!(commands(&act(&mut state, Action::ConfirmNo)).is_empty());
    assert!(matches!(&state.prompt, Some(Prompt::Conflict { key, .. }) if key.0 == run_a()));
}

#[test]
fn e_writes_an_own_decision_that_asks_first() {
    let mut state = with_conflict("admin", 160, 45);
    state.now_ms += 1_000;
    act(&mut state, Action::OwnDecision);
    // Enter is a new line in the editor; the decision keeps both lines.
    type_text(&mut state, "both, behind a flag\noff by default until 2.0");
    let shown = testing::render_screen(&state, &testing::theme(), 160, 45).to_string();
    assert!(shown.contains("✎ your decision  (2 lines)"), "{shown}");
    assert!(shown.contains("   both, behind a flag "), "{shown}");
    assert!(shown.contains("   off by default until 2.0▌"), "{shown}");
    let ctrl_s = crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char('s'),
        crossterm::event::KeyModifiers::CONTROL,
    );
    assert_eq!(keys::action_for(&state, &ctrl_s), Some(Action::ConflictAccept));
    act(&mut state, Action::ConflictAccept);
    // Straight through the (empty) note.
    assert!(commands(&act(&mut state, Action::ConflictAccept)).is_empty());
    let question = confirm_question(&state);
    assert!(question.contains("your own decision \"both, behind a flag"), "{question}");
    let sent = commands(&act(&mut state, Action::ConfirmYes));
    assert!(
        matches!(sent.as_slice(), [Command::ResolveConflict { choice: ConflictChoice::Own(text), note: None, .. }]
            if text == "both, behind a flag\noff by default until 2.0"),
        "{sent:?}"
    );
}

#[test]
fn keys_while_typing_edit_the_text_and_esc_goes_back() {
    let mut state = with_conflict("admin", 160, 45);
    state.now_ms += 1_000;
    act(&mut state, Action::OwnDecision);
    let press = |code| crossterm::event::KeyEvent::new(code, crossterm::event::KeyModifiers::NONE);
    // `q` and digits are text here, not quit or a verdict.
    let q = press(crossterm::event::KeyCode::Char('q'));
    assert_eq!(keys::action_for(&state, &q), Some(Action::DecisionKey(q)));
    type_text(&mut state, "q1");
    let backspace = press(crossterm::event::KeyCode::Backspace);
    let action = keys::action_for(&state, &backspace).expect("an edit");
    act(&mut state, action);
    assert!(
        matches!(&state.prompt, Some(Prompt::Conflict { input: ConflictInput::Own(editor), .. }) if editor.text() == "q"),
        "{:?}",
        state.prompt
    );
    assert_eq!(
        keys::action_for(&state, &press(crossterm::event::KeyCode::Esc)),
        Some(Action::ConflictBack)
    );
    act(&mut state, Action::ConflictBack);
    assert!(matches!(&state.prompt, Some(Prompt::Conflict { input: ConflictInput::Choosing, .. })));
}

#[test]
fn the_command_line_asks_the_same_confirmation() {
    let mut state = with_conflict("admin", 160, 45);
    act(&mut state, Action::Later);
    assert!(state.prompt.is_none(), "later closes it and it does not pop up again");
    act(&mut state, Action::OpenCommandLine);
    for c in "resolve pagination 1 fewest queries".chars() {
        act(&mut state, Action::CommandLineEdit(LineEdit::Insert(c)));
    }
    assert!(commands(&act(&mut state, Action::SubmitCommandLine)).is_empty());
    let question = confirm_question(&state);
    assert!(question.contains("backend-developer's \"numbered pages\""), "{question}");
    assert!(matches!(
        &state.prompt,
        Some(Prompt::Confirm { answer: crate::console::state::Confirmed::Send(Command::ResolveConflict { note: Some(n), .. }), .. })
            if n == "fewest queries"
    ));
}

#[test]
fn two_runs_with_the_same_task_are_asked_and_settled_by_run_and_task() {
    let mut state = with_conflict("admin", 160, 45);
    let mut feed = Feed { seq: 100 };
    review_events(&run_b(), &mut feed, &mut state);
    assert_eq!(state.decisions_waiting(), (0, 2));
    let header = testing::render_screen(&state, &testing::theme(), 160, 45).to_string();
    assert!(header.contains("⏸ 2 conflicts to decide"), "{header}");
    // The older one is asked first; settle run b's from the list.
    assert!(matches!(&state.prompt, Some(Prompt::Conflict { key, .. }) if key.0 == run_a()));
    act(&mut state, Action::Later);
    assert!(matches!(&state.prompt, Some(Prompt::Conflict { key, .. }) if key.0 == run_b()));
    act(&mut state, Action::Later);
    act(&mut state, Action::OpenConflicts);
    let open: Vec<_> = state
        .conflict_entries()
        .iter()
        .filter(|e| e.waiting)
        .map(crate::console::conflicts::ConflictEntry::key)
        .collect();
    assert_eq!(open.len(), 2);
    act(&mut state, Action::SelectNext);
    let selected = state.conflicts.cursor.selected.clone().expect("selected");
    act(&mut state, Action::OpenSelectedConflict);
    assert!(matches!(&state.prompt, Some(Prompt::Conflict { key, .. }) if *key == selected));
    act(&mut state, Action::PickVerdict(1));
    act(&mut state, Action::PromptConfirm);
    act(&mut state, Action::ConflictAccept);
    let sent = commands(&act(&mut state, Action::ConfirmYes));
    assert!(
        matches!(sent.as_slice(), [Command::ResolveConflict { run, task, .. }] if *run == selected.0 && *task == selected.1),
        "{sent:?}"
    );
    // The runtime settles it: only that run's conflict closes.
    let (settled_run, other_run) =
        if selected.0 == run_a() { (run_a(), run_b()) } else { (run_b(), run_a()) };
    feed.push(
        &mut state,
        &settled_run,
        Event::ConflictResolved {
            task: TaskId::new("pagination"),
            decision: "numbered pages".into(),
            winner: "backend-developer".into(),
            resolved_by: LadderStep::Operator,
            by: Some(UserId::new("alice")),
            note: None,
        },
    );
    assert_eq!(state.decisions_waiting(), (0, 1));
    assert!(state.conflicts.waiting.contains_key(&(other_run, TaskId::new("pagination"))));
    let settled = state.conflict(&(settled_run, TaskId::new("pagination"))).expect("kept");
    assert_eq!(settled.resolution.as_ref().and_then(|r| r.by.clone()), Some(UserId::new("alice")));
}

#[test]
fn viewers_and_reviewers_can_read_a_conflict_but_not_settle_it() {
    for role in ["viewer", "reviewer"] {
        let mut state = with_conflict(role, 160, 45);
        assert!(state.prompt.is_none(), "{role}: it does not pop up");
        act(&mut state, Action::OpenConflicts);
        act(&mut state, Action::OpenSelectedConflict);
        assert!(matches!(state.prompt, Some(Prompt::Conflict { .. })), "{role}");
        let press = |c| {
            crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Char(c),
                crossterm::event::KeyModifiers::NONE,
            )
        };
        assert_eq!(keys::action_for(&state, &press('1')), None, "{role}");
        assert_eq!(keys::action_for(&state, &press('e')), None, "{role}");
        assert_eq!(keys::action_for(&state, &press('t')), None, "{role}");
        act(&mut state, Action::PromptNext);
        assert!(commands(&act(&mut state, Action::PromptConfirm)).is_empty());
        assert!(
            matches!(&state.prompt, Some(Prompt::Conflict { input: ConflictInput::Choosing, .. })),
            "{role}: {:?}",
            state.prompt
        );
    }
}

#[test]
fn t_asks_the_third_opinion_at_once_and_never_twice() {
    let mut state = with_conflict("admin", 160, 45);
    let press = crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char('t'),
        crossterm::event::KeyModifiers::NONE,
    );
    assert_eq!(keys::action_for(&state, &press), Some(Action::AskThirdOpinion));
    // A prompt that popped up by itself ignores it at first, like a choice.
    assert!(commands(&act(&mut state, Action::AskThirdOpinion)).is_empty());
    state.now_ms += 1_000;
    let sent = commands(&act(&mut state, Action::AskThirdOpinion));
    assert_eq!(
        sent,
        vec![Command::AskThirdOpinion { run: run_a(), task: TaskId::new("pagination") }]
    );
    assert!(matches!(state.prompt, Some(Prompt::Conflict { .. })), "the prompt stays open");

    // Once its finding is in the ladder, the console says so instead of asking again.
    let finding = "asked by alice: judge picked \"offset pages\" in both orders".to_owned();
    let step = Event::ConflictStep {
        task: TaskId::new("pagination"),
        step: LadderStep::ThirdOpinion,
        finding,
        winner: None,
        decision: None,
        recommendation: None,
    };
    Feed { seq: 1_000 }.push(&mut state, &run_a(), step);
    assert!(commands(&act(&mut state, Action::AskThirdOpinion)).is_empty());
    let said = state.message.as_ref().map(|m| m.text.clone()).unwrap_or_default();
    assert!(said.contains("already asked"), "{said}");
}

#[test]
fn the_own_decision_editor_at_two_sizes() {
    let theme = testing::theme();
    for (width, height) in [(160, 45), (80, 24)] {
        let mut state = with_conflict("admin", width, height);
        state.now_ms += 1_000;
        act(&mut state, Action::OwnDecision);
        type_text(&mut state, "both, behind a flag\noff by default until 2.0\nrevisit");
        assert_snapshot!(
            format!("own_decision_{width}x{height}"),
            testing::render_screen(&state, &theme, width, height)
        );
    }
}
