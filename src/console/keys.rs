//! Keys are data: [`KEYMAP`] lists every binding with its action, description, scope and danger
//! flag. The hint bar and the help overlay are generated from it, and key lookup walks it, so
//! what is shown is what works. Viewers never see (or trigger) dangerous keys.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::command::Permission;

use super::panes;
use super::state::{ConflictInput, Editing, LineEdit, Overlay, PaneId, Prompt, State, UserRole};

/// What the operator means by a key (or a click).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the console.
    Quit,
    /// Focus the next pane.
    FocusNext,
    /// Focus the previous pane.
    FocusPrev,
    /// Move the selection up.
    SelectPrev,
    /// Move the selection down.
    SelectNext,
    /// Move the selection to the previous DAG layer.
    SelectLeft,
    /// Move the selection to the next DAG layer.
    SelectRight,
    /// Move the selection a page up.
    PageUp,
    /// Move the selection a page down.
    PageDown,
    /// Select the first item.
    SelectFirst,
    /// Select the last item (in the audit stream: follow the tail again).
    SelectLast,
    /// Show details of the selected item.
    OpenDetails,
    /// Close the topmost overlay.
    CloseOverlay,
    /// Show or hide the key help.
    ToggleHelp,
    /// Start typing a filter for the focused list.
    StartFilter,
    /// Add a character to the filter.
    FilterPush(char),
    /// Remove the last character of the filter.
    FilterPop,
    /// Keep the filter and stop typing.
    FilterAccept,
    /// Clear the filter and stop typing.
    FilterClear,
    /// Open the `:` command line.
    OpenCommandLine,
    /// Edit the command line (type, delete, move the cursor).
    CommandLineEdit(LineEdit),
    /// Complete the word before the cursor (Tab).
    CompleteCommandLine,
    /// Recall the previous command.
    HistoryPrev,
    /// Recall the next command.
    HistoryNext,
    /// Run the typed command.
    SubmitCommandLine,
    /// Close the command line without running it.
    CloseCommandLine,
    /// Move prompt focus right.
    PromptNext,
    /// Move prompt focus left.
    PromptPrev,
    /// Activate the focused prompt button.
    PromptConfirm,
    /// Approve the task in the prompt.
    Approve,
    /// Reject the task in the prompt.
    Reject,
    /// Close the prompt; the approval stays pending.
    Later,
    /// Answer yes to a confirmation.
    ConfirmYes,
    /// Answer no to a confirmation.
    ConfirmNo,
    /// Open the approval prompt of the selected task.
    ReviewSelected,
    /// Cancel the selected task (asks first).
    CancelSelectedTask,
    /// Retry the selected task (asks first).
    RetrySelectedTask,
    /// Cancel the whole run (asks first).
    CancelRun,
    /// Close the selected agent's breaker (asks first).
    ResetSelectedBreaker,
    /// Open the selected agent's breaker (asks first).
    OpenSelectedBreaker,
    /// Acquire an instance of the selected agent.
    SpawnSelectedAgent,
    /// Release the selected instance (asks first).
    ReleaseSelectedInstance,
    /// Re-read every agent definition.
    ReloadAgents,
    /// Open the Runs list (live, finished and interrupted runs).
    OpenRuns,
    /// Show the selected run in the DAG, header and details.
    ShowSelectedRun,
    /// Cancel the selected run of the Runs list (asks first).
    CancelSelectedRun,
    /// Resume the selected interrupted run of the Runs list (asks first).
    ResumeSelectedRun,
    /// Open the selected run of the Runs list (one that is not live) in replay.
    ReplaySelectedRun,
    /// Leave the replay: back to the live console (out, for `flightdeck replay`).
    LeaveReplay,
    /// Replay: move the time cursor.
    ReplaySeek(crate::console::replay::Seek),
    /// Replay: play at 1×, then 10×, then pause.
    ReplayPlay,
    /// Focus verdict N (1-based) of the conflict prompt; Enter then asks for a note.
    PickVerdict(usize),
    /// A key for the conflict prompt's own-decision editor (multi-line).
    DecisionKey(KeyEvent),
    /// `t` in the conflict prompt: ask the task's third-opinion agent now.
    AskThirdOpinion,
    /// Write one's own decision in the conflict prompt.
    OwnDecision,
    /// Edit the own decision or the note of the conflict prompt.
    ConflictEdit(LineEdit),
    /// Enter while typing in the conflict prompt: the note next, then the confirmation.
    ConflictAccept,
    /// Esc while typing in the conflict prompt: back to the verdicts.
    ConflictBack,
    /// Open the conflict prompt of the selected DAG task.
    OpenConflict,
    /// Open the Conflicts list (open and resolved conflicts of every run).
    OpenConflicts,
    /// Open the selected conflict of the Conflicts list in the prompt.
    OpenSelectedConflict,
    /// A mouse click: focus the pane under the pointer.
    Click { column: u16, row: u16 },
    /// The mouse wheel over a pane.
    Scroll { column: u16, row: u16, down: bool },
}

/// Where a binding applies, in the order keys are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The approval prompt.
    Approval,
    /// The conflict prompt.
    Conflict,
    /// The Conflicts list.
    Conflicts,
    /// A yes/no confirmation.
    Confirm,
    /// The help overlay.
    Help,
    /// A details overlay.
    Details,
    /// The Runs list.
    Runs,
    /// Replaying a stored run: the time cursor.
    Replay,
    /// Only while this pane has focus.
    Pane(PaneId),
    /// Every list pane.
    Lists,
    /// Everywhere without a layer on top.
    Global,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Self::Approval => "Approval prompt",
            Self::Conflict => "Conflict prompt",
            Self::Conflicts => "Conflicts",
            Self::Confirm => "Confirmation",
            Self::Help => "Help",
            Self::Details => "Details",
            Self::Runs => "Runs",
            Self::Replay => "Replay",
            Self::Pane(pane) => pane.title(),
            Self::Lists => "Lists",
            Self::Global => "Global",
        }
    }
}

/// A key with modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyChord {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

const fn key(code: KeyCode) -> KeyChord {
    KeyChord { code, modifiers: KeyModifiers::NONE }
}

const fn ch(c: char) -> KeyChord {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> KeyChord {
    KeyChord { code: KeyCode::Char(c), modifiers: KeyModifiers::CONTROL }
}

impl KeyChord {
    /// Whether a pressed key is this chord. Shift is part of the character for letters, so
    /// it is ignored for `Char` keys (terminals disagree on reporting it).
    pub fn matches(&self, event: &KeyEvent) -> bool {
        let ignore = if matches!(self.code, KeyCode::Char(_)) || self.code == KeyCode::BackTab {
            KeyModifiers::SHIFT
        } else {
            KeyModifiers::NONE
        };
        event.code == self.code && (event.modifiers - ignore) == (self.modifiers - ignore)
    }

    /// How the key is written in hints and help.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Tab => "Tab".to_owned(),
            KeyCode::BackTab => "S-Tab".to_owned(),
            KeyCode::Enter => "Enter".to_owned(),
            KeyCode::Esc => "Esc".to_owned(),
            KeyCode::Up => "↑".to_owned(),
            KeyCode::Down => "↓".to_owned(),
            KeyCode::Left => "←".to_owned(),
            KeyCode::Right => "→".to_owned(),
            KeyCode::PageUp => "PgUp".to_owned(),
            KeyCode::PageDown => "PgDn".to_owned(),
            KeyCode::Home => "Home".to_owned(),
            KeyCode::End => "End".to_owned(),
            KeyCode::Backspace => "Bksp".to_owned(),
            other => format!("{other:?}"),
        };
        if self.modifiers.contains(KeyModifiers::CONTROL) { format!("Ctrl-{base}") } else { base }
    }
}

/// One entry of the keymap.
#[derive(Debug, Clone)]
pub struct Binding {
    pub keys: &'static [KeyChord],
    pub action: Action,
    pub description: &'static str,
    pub scope: Scope,
    /// Changes runtime state: hidden from viewers, drawn in the danger colour.
    pub danger: bool,
    /// What the gate will check; keys the role lacks are hidden.
    pub permission: Option<Permission>,
    /// Keys and a word or two for the status bar (the help overlay shows every binding).
    pub hint: Option<(&'static str, &'static str)>,
}

impl Binding {
    /// Keys joined for display, e.g. `↑ k`.
    pub fn label(&self) -> String {
        self.keys.iter().map(KeyChord::label).collect::<Vec<_>>().join(" ")
    }

    /// Whether this role sees and may use the binding.
    pub fn allowed(&self, role: UserRole) -> bool {
        if self.danger && role == UserRole::Viewer {
            return false;
        }
        self.permission.is_none_or(|p| role.allows(p))
    }
}

macro_rules! bind {
    ($scope:expr, [$($k:expr),+], $action:expr, $desc:literal) => {
        Binding { keys: &[$($k),+], action: $action, description: $desc, scope: $scope,
                  danger: false, permission: None, hint: None }
    };
    ($scope:expr, [$($k:expr),+], $action:expr, $desc:literal, hint $hk:literal $ht:literal) => {
        Binding { keys: &[$($k),+], action: $action, description: $desc, scope: $scope,
                  danger: false, permission: None, hint: Some(($hk, $ht)) }
    };
    ($scope:expr, [$($k:expr),+], $action:expr, $desc:literal, danger $perm:expr) => {
        Binding { keys: &[$($k),+], action: $action, description: $desc, scope: $scope,
                  danger: true, permission: Some($perm), hint: None }
    };
    ($scope:expr, [$($k:expr),+], $action:expr, $desc:literal, danger $perm:expr,
     hint $hk:literal $ht:literal) => {
        Binding { keys: &[$($k),+], action: $action, description: $desc, scope: $scope,
                  danger: true, permission: Some($perm), hint: Some(($hk, $ht)) }
    };
}

use crate::console::replay::Seek;
use KeyCode::{BackTab, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Right, Tab, Up};
use Permission::{ControlRuns, Operate, Review, RunWorkflows};
use Scope::{
    Approval, Confirm, Conflict, Conflicts, Details, Global, Help, Lists, Pane, Replay, Runs,
};

const DAG: Scope = Pane(PaneId::Dag);
const AGENTS: Scope = Pane(PaneId::Agents);
const POOL: Scope = Pane(PaneId::Pool);
const BREAKERS: Scope = Pane(PaneId::Breakers);
const AUDIT: Scope = Pane(PaneId::Audit);

/// Every key binding. Order within a scope is the order of hints and help.
#[rustfmt::skip]
pub static KEYMAP: &[Binding] = &[
    // Approval prompt: focus starts on Later; Enter presses the focused button.
    bind!(Approval, [key(Left), key(BackTab), ch('h')], Action::PromptPrev, "previous button"),
    bind!(Approval, [key(Right), key(Tab), ch('l')], Action::PromptNext, "next button", hint "←→" "choose"),
    bind!(Approval, [key(Enter)], Action::PromptConfirm, "press the focused button", hint "Enter" "press"),
    bind!(Approval, [ch('a')], Action::Approve, "approve: the task runs", danger Review, hint "a" "approve"),
    bind!(Approval, [ch('r')], Action::Reject, "reject: the task fails", danger Review, hint "r" "reject"),
    bind!(Approval, [key(Esc)], Action::Later, "later: close, it stays pending", hint "Esc" "later"),
    // Conflict prompt: focus starts on Later; a verdict then Enter asks for a note, then to
    // confirm (the same question as `:resolve`).
    bind!(Conflict, [key(Left), key(BackTab), ch('h')], Action::PromptPrev, "previous verdict"),
    bind!(Conflict, [key(Right), key(Tab), ch('l')], Action::PromptNext, "next verdict", hint "←→" "choose"),
    bind!(Conflict, [ch('1')], Action::PickVerdict(1), "choose verdict 1", danger ControlRuns, hint "1-9" "verdict"),
    bind!(Conflict, [ch('2')], Action::PickVerdict(2), "choose verdict 2", danger ControlRuns),
    bind!(Conflict, [ch('3')], Action::PickVerdict(3), "choose verdict 3", danger ControlRuns),
    bind!(Conflict, [ch('4')], Action::PickVerdict(4), "choose verdict 4", danger ControlRuns),
    bind!(Conflict, [ch('5')], Action::PickVerdict(5), "choose verdict 5", danger ControlRuns),
    bind!(Conflict, [ch('6')], Action::PickVerdict(6), "choose verdict 6", danger ControlRuns),
    bind!(Conflict, [ch('7')], Action::PickVerdict(7), "choose verdict 7", danger ControlRuns),
    bind!(Conflict, [ch('8')], Action::PickVerdict(8), "choose verdict 8", danger ControlRuns),
    bind!(Conflict, [ch('9')], Action::PickVerdict(9), "choose verdict 9", danger ControlRuns),
    bind!(Conflict, [key(Enter)], Action::PromptConfirm, "settle with the focused verdict: a note, then confirm", hint "Enter" "settle"),
    bind!(Conflict, [ch('t')], Action::AskThirdOpinion, "ask the third opinion now (once per conflict)", danger ControlRuns, hint "t" "third opinion"),
    bind!(Conflict, [ch('e')], Action::OwnDecision, "write your own decision instead", danger ControlRuns, hint "e" "own"),
    bind!(Conflict, [key(Esc)], Action::Later, "later: close, only its dependents wait", hint "Esc" "later"),
    // Yes/no confirmation: focus starts on No.
    bind!(Confirm, [key(Left), key(Right), key(Tab)], Action::PromptNext, "switch button", hint "←→" "choose"),
    bind!(Confirm, [key(Enter)], Action::PromptConfirm, "press the focused button", hint "Enter" "press"),
    bind!(Confirm, [ch('y')], Action::ConfirmYes, "yes", hint "y" "yes"),
    bind!(Confirm, [ch('n'), key(Esc)], Action::ConfirmNo, "no", hint "n" "no"),
    // Overlays.
    bind!(Help, [key(Esc), ch('?'), ch('q')], Action::CloseOverlay, "close help", hint "Esc" "close"),
    bind!(Help, [key(Up), ch('k')], Action::SelectPrev, "scroll up"),
    bind!(Help, [key(Down), ch('j')], Action::SelectNext, "scroll down", hint "↑↓" "scroll"),
    bind!(Details, [key(Esc), key(Enter), ch('q')], Action::CloseOverlay, "close details", hint "Esc" "close"),
    bind!(Details, [key(Up), ch('k')], Action::SelectPrev, "scroll up"),
    bind!(Details, [key(Down), ch('j')], Action::SelectNext, "scroll down", hint "↑↓" "scroll"),
    bind!(Runs, [key(Esc), ch('q'), ch('W')], Action::CloseOverlay, "close the runs", hint "Esc" "close"),
    bind!(Runs, [key(Up), ch('k')], Action::SelectPrev, "previous run"),
    bind!(Runs, [key(Down), ch('j')], Action::SelectNext, "next run", hint "↑↓" "move"),
    bind!(Runs, [key(Enter)], Action::ShowSelectedRun, "show the run (a stored one as it ended)", hint "Enter" "show"),
    bind!(Runs, [ch('p')], Action::ReplaySelectedRun, "replay the selected run (finished or interrupted) with a time cursor", hint "p" "replay"),
    bind!(Runs, [ch('C')], Action::CancelSelectedRun, "cancel the selected live run", danger ControlRuns, hint "C" "cancel run"),
    bind!(Runs, [ch('r')], Action::ResumeSelectedRun, "resume the selected interrupted run", danger RunWorkflows, hint "r" "resume"),
    bind!(Runs, [ch('/')], Action::StartFilter, "filter (Esc clears)", hint "/" "filter"),
    bind!(Conflicts, [key(Esc), ch('q'), ch('D')], Action::CloseOverlay, "close the conflicts", hint "Esc" "close"),
    bind!(Conflicts, [key(Up), ch('k')], Action::SelectPrev, "previous conflict"),
    bind!(Conflicts, [key(Down), ch('j')], Action::SelectNext, "next conflict", hint "↑↓" "move"),
    bind!(Conflicts, [key(Enter)], Action::OpenSelectedConflict, "open it in the prompt", hint "Enter" "open"),
    bind!(Conflicts, [ch('/')], Action::StartFilter, "filter (Esc clears)", hint "/" "filter"),
    bind!(Replay, [key(Left)], Action::ReplaySeek(Seek::Step(-1)), "one event back"),
    bind!(Replay, [key(Right)], Action::ReplaySeek(Seek::Step(1)), "one event on", hint "←→" "step"),
    bind!(Replay, [key(PageUp)], Action::ReplaySeek(Seek::Task { forward: false }), "a task back"),
    bind!(Replay, [key(PageDown)], Action::ReplaySeek(Seek::Task { forward: true }), "a task on", hint "PgUp/Dn" "task"),
    bind!(Replay, [key(Home)], Action::ReplaySeek(Seek::Start), "the start"),
    bind!(Replay, [key(End)], Action::ReplaySeek(Seek::End), "the end"),
    bind!(Replay, [ch(' ')], Action::ReplayPlay, "play 1×, 10×, pause", hint "Space" "play"),
    bind!(Replay, [ch('q')], Action::LeaveReplay, "leave the replay (back to the live console)", hint "q" "leave"),
    // Pane keys.
    bind!(DAG, [key(Left), ch('h')], Action::SelectLeft, "previous layer"),
    bind!(DAG, [key(Right), ch('l')], Action::SelectRight, "next layer", hint "←→" "layers"),
    bind!(DAG, [ch('a')], Action::ReviewSelected, "review the selected task's approval", danger Review, hint "a" "review"),
    bind!(DAG, [ch('d')], Action::OpenConflict, "the selected task's conflict (open or settled)"),
    bind!(DAG, [ch('c')], Action::CancelSelectedTask, "cancel the selected task", danger ControlRuns, hint "c" "cancel"),
    bind!(DAG, [ch('R')], Action::RetrySelectedTask, "retry the selected task", danger ControlRuns, hint "R" "retry"),
    bind!(DAG, [ch('C')], Action::CancelRun, "cancel the whole run", danger ControlRuns, hint "C" "cancel run"),
    bind!(AGENTS, [ch('s')], Action::SpawnSelectedAgent, "spawn an instance of the agent", danger Operate, hint "s" "spawn"),
    bind!(AGENTS, [ch('R')], Action::ReloadAgents, "reload every definition", danger Operate, hint "R" "reload"),
    bind!(POOL, [ch('x')], Action::ReleaseSelectedInstance, "release the instance", danger Operate, hint "x" "release"),
    bind!(BREAKERS, [ch('r')], Action::ResetSelectedBreaker, "reset (close) the breaker", danger Operate, hint "r" "reset"),
    bind!(BREAKERS, [ch('o')], Action::OpenSelectedBreaker, "open the breaker by hand", danger Operate, hint "o" "open"),
    bind!(AUDIT, [ch('f'), ch('G')], Action::SelectLast, "follow the newest line", hint "f" "follow"),
    // Every list.
    bind!(Lists, [key(Up), ch('k')], Action::SelectPrev, "move up"),
    bind!(Lists, [key(Down), ch('j')], Action::SelectNext, "move down", hint "↑↓" "move"),
    bind!(Lists, [key(PageUp)], Action::PageUp, "page up"),
    bind!(Lists, [key(PageDown)], Action::PageDown, "page down"),
    bind!(Lists, [key(Home), ch('g')], Action::SelectFirst, "first item"),
    bind!(Lists, [key(End)], Action::SelectLast, "last item"),
    bind!(Lists, [key(Enter)], Action::OpenDetails, "details", hint "Enter" "details"),
    bind!(Lists, [ch('/')], Action::StartFilter, "filter (Esc clears)", hint "/" "filter"),
    // Global.
    bind!(Global, [ch('?')], Action::ToggleHelp, "help", hint "?" "help"),
    bind!(Global, [ch('q'), ctrl('c')], Action::Quit, "quit", hint "q" "quit"),
    bind!(Global, [key(Tab)], Action::FocusNext, "next pane", hint "Tab" "pane"),
    bind!(Global, [key(BackTab)], Action::FocusPrev, "previous pane"),
    bind!(Global, [ch(':')], Action::OpenCommandLine, "command line", hint ":" "command"),
    bind!(Global, [key(Esc)], Action::FilterClear, "clear the filter"),
    bind!(Global, [ch('W')], Action::OpenRuns, "runs: live, finished, interrupted"),
    bind!(Global, [ch('D')], Action::OpenConflicts, "conflicts: open and resolved, every run"),
];

/// Keys that work while typing; listed in help, handled by [`action_for`] directly.
pub static EDITING_KEYS: &[(&str, &str)] = &[
    ("Enter", "run the command / keep the filter"),
    ("Esc", "close the command line / clear the filter"),
    ("↑ ↓", "command history"),
    ("Tab", "complete a command, task, agent, instance, theme, run or workflow file"),
    ("Ctrl-c", "quit"),
];

/// The bindings this role may see in a scope, in keymap order.
pub fn bindings(scope: Scope, role: UserRole) -> impl Iterator<Item = &'static Binding> {
    KEYMAP.iter().filter(move |b| b.scope == scope && b.allowed(role))
}

/// Scopes active right now, innermost first: the first binding that matches wins.
pub fn active_scopes(state: &State) -> Vec<Scope> {
    match (&state.prompt, &state.overlay) {
        (Some(Prompt::Approval { .. }), _) => vec![Scope::Approval],
        (Some(Prompt::Confirm { .. }), _) => vec![Scope::Confirm],
        (Some(Prompt::Conflict { .. }), _) => vec![Scope::Conflict],
        (None, Some(Overlay::Help { .. })) => vec![Scope::Help],
        (None, Some(Overlay::Details { .. })) => vec![Scope::Details],
        (None, Some(Overlay::Runs)) => vec![Scope::Runs],
        (None, Some(Overlay::Conflicts)) => vec![Scope::Conflicts],
        (None, None) if state.replay.is_some() => {
            vec![Scope::Replay, Scope::Pane(state.focus), Scope::Lists, Scope::Global]
        }
        (None, None) => vec![Scope::Pane(state.focus), Scope::Lists, Scope::Global],
    }
}

/// The action a key press means in this state, if any.
pub fn action_for(state: &State, event: &KeyEvent) -> Option<Action> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    if ctrl('c').matches(event) {
        return Some(Action::Quit);
    }
    if let Some(Prompt::Conflict { input, .. }) = &state.prompt {
        match input {
            ConflictInput::Own(_) => return Some(decision_action(event)),
            ConflictInput::Note { .. } => return conflict_text_action(event),
            ConflictInput::Choosing => {}
        }
    }
    match state.editing {
        Editing::CommandLine => return command_line_action(event),
        Editing::Filter => return filter_action(event),
        Editing::None => {}
    }
    active_scopes(state).into_iter().find_map(|scope| match scope {
        Scope::Pane(id) => panes::pane(id).handle_key(state, event),
        scope => bindings(scope, state.role)
            .find(|b| b.keys.iter().any(|k| k.matches(event)))
            .map(|b| b.action),
    })
}

fn command_line_action(event: &KeyEvent) -> Option<Action> {
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    let edit = match event.code {
        KeyCode::Enter => return Some(Action::SubmitCommandLine),
        KeyCode::Esc => return Some(Action::CloseCommandLine),
        KeyCode::Tab => return Some(Action::CompleteCommandLine),
        KeyCode::Up => return Some(Action::HistoryPrev),
        KeyCode::Down => return Some(Action::HistoryNext),
        KeyCode::Char('a') if ctrl => LineEdit::Home,
        KeyCode::Char('e') if ctrl => LineEdit::End,
        KeyCode::Char('w') | KeyCode::Backspace if ctrl => LineEdit::DeleteWord,
        KeyCode::Char('u') if ctrl => LineEdit::DeleteToStart,
        KeyCode::Char(c) if !ctrl && !c.is_control() => LineEdit::Insert(c),
        KeyCode::Backspace => LineEdit::Backspace,
        KeyCode::Delete => LineEdit::Delete,
        KeyCode::Left => LineEdit::Left,
        KeyCode::Right => LineEdit::Right,
        KeyCode::Home => LineEdit::Home,
        KeyCode::End => LineEdit::End,
        _ => return None,
    };
    Some(Action::CommandLineEdit(edit))
}

/// Keys while writing one's own decision: Enter is a new line, Ctrl-S or Alt-Enter goes on to
/// the note, Esc back to the verdicts; the rest is the editor's.
fn decision_action(event: &KeyEvent) -> Action {
    let alt = event.modifiers.contains(KeyModifiers::ALT);
    match event.code {
        KeyCode::Esc => Action::ConflictBack,
        KeyCode::Enter if alt => Action::ConflictAccept,
        _ if ctrl('s').matches(event) => Action::ConflictAccept,
        _ => Action::DecisionKey(*event),
    }
}

/// Keys while writing the note in the conflict prompt.
fn conflict_text_action(event: &KeyEvent) -> Option<Action> {
    match event.code {
        KeyCode::Enter => Some(Action::ConflictAccept),
        KeyCode::Esc => Some(Action::ConflictBack),
        _ => match command_line_action(event)? {
            Action::CommandLineEdit(edit) => Some(Action::ConflictEdit(edit)),
            _ => None,
        },
    }
}

fn filter_action(event: &KeyEvent) -> Option<Action> {
    if event.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) {
        return None;
    }
    match event.code {
        KeyCode::Enter => Some(Action::FilterAccept),
        KeyCode::Esc => Some(Action::FilterClear),
        KeyCode::Backspace => Some(Action::FilterPop),
        KeyCode::Up => Some(Action::SelectPrev),
        KeyCode::Down => Some(Action::SelectNext),
        KeyCode::Char(c) if !c.is_control() => Some(Action::FilterPush(c)),
        _ => None,
    }
}

/// `(keys, words, danger)` hints for the status bar: global keys first so help and quit always
/// fit, then the focused pane's own keys, then list keys.
pub fn hints(state: &State) -> Vec<(&'static str, &'static str, bool)> {
    if let Some(Prompt::Conflict { input, .. }) = &state.prompt {
        match input {
            ConflictInput::Own(_) => {
                return vec![
                    ("Enter", "new line", false),
                    ("Ctrl-S", "then a note", false),
                    ("Esc", "back to the verdicts", false),
                ];
            }
            ConflictInput::Note { .. } => {
                return vec![("Enter", "settle (asks first)", true), ("Esc", "back", false)];
            }
            ConflictInput::Choosing => {}
        }
    }
    match state.editing {
        Editing::CommandLine => {
            return vec![
                ("Enter", "run", false),
                ("Esc", "cancel", false),
                ("↑↓", "history", false),
            ];
        }
        Editing::Filter => return vec![("Enter", "keep filter", false), ("Esc", "clear", false)],
        Editing::None => {}
    }
    let active = active_scopes(state);
    let mut scopes = active.clone();
    if let Some(global) = scopes.iter().position(|s| *s == Scope::Global) {
        let global = scopes.remove(global);
        scopes.insert(0, global);
    }
    scopes
        .into_iter()
        .flat_map(|scope| bindings(scope, state.role))
        .filter(|b| !shadowed(b, &active, state.role) && applies(state, b.action))
        .filter_map(|b| b.hint.map(|(keys, words)| (keys, words, b.danger)))
        .collect()
}

/// Whether the key a binding's hint names (its first) is taken by a scope looked up before
/// its own: replay's `q` leaves the replay and its `←→` step, so the global "q quit" and the
/// DAG's "←→ layers" are not offered there.
fn shadowed(binding: &Binding, active: &[Scope], role: UserRole) -> bool {
    let Some(own) = active.iter().position(|s| *s == binding.scope) else { return false };
    let Some(chord) = binding.keys.first() else { return false };
    active[..own]
        .iter()
        .flat_map(|scope| bindings(*scope, role))
        .any(|earlier| earlier.keys.contains(chord))
}

/// Whether a key's action applies to what is selected now, so it is offered only there (the
/// Runs list offers cancel for a live run, resume for an interrupted one, replay for one
/// that is not live). A key that does not apply still explains why when pressed.
pub fn applies(state: &State, action: Action) -> bool {
    match action {
        Action::CancelSelectedRun | Action::ResumeSelectedRun | Action::ReplaySelectedRun => {
            panes::runs::applies(state, action)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rstest::rstest;

    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn state(role: &str) -> State {
        State::new("alice", role, PathBuf::from("."), "dark")
    }

    #[rstest]
    #[case::tab(KeyCode::Tab, Some(Action::FocusNext))]
    #[case::backtab(KeyCode::BackTab, Some(Action::FocusPrev))]
    #[case::down(KeyCode::Down, Some(Action::SelectNext))]
    #[case::j(KeyCode::Char('j'), Some(Action::SelectNext))]
    #[case::k(KeyCode::Char('k'), Some(Action::SelectPrev))]
    #[case::left_in_dag(KeyCode::Left, Some(Action::SelectLeft))]
    #[case::help(KeyCode::Char('?'), Some(Action::ToggleHelp))]
    #[case::colon(KeyCode::Char(':'), Some(Action::OpenCommandLine))]
    #[case::slash(KeyCode::Char('/'), Some(Action::StartFilter))]
    #[case::q(KeyCode::Char('q'), Some(Action::Quit))]
    #[case::cancel_task(KeyCode::Char('c'), Some(Action::CancelSelectedTask))]
    #[case::unbound(KeyCode::Char('z'), None)]
    fn keys_in_the_dag_as_admin(#[case] code: KeyCode, #[case] expected: Option<Action>) {
        assert_eq!(action_for(&state("admin"), &press(code)), expected);
    }

    #[test]
    fn viewers_get_no_dangerous_actions_or_hints() {
        let mut viewer = state("viewer");
        for pane in PaneId::ORDER {
            viewer.focus = pane;
            for binding in KEYMAP.iter().filter(|b| b.danger) {
                for chord in binding.keys {
                    let event = KeyEvent::new(chord.code, chord.modifiers);
                    assert_ne!(action_for(&viewer, &event), Some(binding.action), "{binding:?}");
                }
            }
            assert!(hints(&viewer).iter().all(|(_, _, danger)| !danger));
        }
        assert!(KEYMAP.iter().filter(|b| b.danger).all(|b| !b.allowed(UserRole::Viewer)));
    }

    #[test]
    fn roles_see_only_keys_they_may_use() {
        let mut reviewer = state("reviewer");
        reviewer.focus = PaneId::Dag;
        assert_eq!(action_for(&reviewer, &press(KeyCode::Char('c'))), None);
        assert_eq!(action_for(&reviewer, &press(KeyCode::Char('a'))), Some(Action::ReviewSelected));
        let mut operator = state("operator");
        operator.focus = PaneId::Breakers;
        assert_eq!(
            action_for(&operator, &press(KeyCode::Char('r'))),
            Some(Action::ResetSelectedBreaker)
        );
    }

    #[test]
    fn ctrl_c_quits_even_while_typing() {
        let mut typing = state("admin");
        typing.editing = Editing::CommandLine;
        let event = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(&typing, &event), Some(Action::Quit));
        assert!(matches!(
            action_for(&typing, &press(KeyCode::Char('q'))),
            Some(Action::CommandLineEdit(LineEdit::Insert('q')))
        ));
    }

    #[test]
    fn every_binding_is_described_and_unambiguous_within_its_scope() {
        for binding in KEYMAP {
            assert!(!binding.description.is_empty());
            for other in KEYMAP {
                if std::ptr::eq(binding, other) || binding.scope != other.scope {
                    continue;
                }
                for chord in binding.keys {
                    assert!(!other.keys.contains(chord), "{chord:?} twice in {:?}", binding.scope);
                }
            }
        }
    }
}
