//! Prompts: approval requests and yes/no confirmations. [`request`] is the one place that
//! decides whether a command asks first, so a key and the `:` command that mean the same
//! ask the same question.

use crate::command::{Command, ConflictChoice};
use crate::event::Level;
use crate::ids::RunId;

use super::super::keys::Action;
use super::super::state::{ApprovalChoice, Confirmed, Editing, Prompt, State, TaskStatus};
use super::{Effect, actions, conflicts, say};

// ---------------------------------------------------------------- approvals

/// How long an approval prompt that opened by itself ignores approve and reject.
pub const APPROVAL_ARM_MS: u64 = 600;

/// Show the next approval that is not deferred, unless something else has the keys.
pub(super) fn open_next_approval(state: &mut State) {
    // An open overlay (help, details, the Runs list) has the operator's attention and keys: the
    // prompt waits until it closes, so a key meant for the overlay cannot answer it.
    if state.prompt.is_some() || state.overlay.is_some() || state.editing != Editing::None {
        return;
    }
    if !state.can_review() {
        // Approvals first; a conflict's prompt opens when none is waiting.
        conflicts::open_next(state);
        return;
    }
    let next = state
        .approvals
        .iter()
        .filter(|(_, a)| !a.deferred)
        .min_by_key(|(key, a)| (a.requested_ms, *key))
        .map(|(key, _)| key.clone());
    if let Some((run, task)) = next {
        let armed_ms = state.now_ms + APPROVAL_ARM_MS;
        let choice = ApprovalChoice::Later;
        state.prompt = Some(Prompt::Approval { run, task, choice, armed_ms });
    } else {
        conflicts::open_next(state);
    }
}

pub(super) fn decide_approval(state: &mut State, approve: bool) -> Vec<Effect> {
    if let Some(Prompt::Approval { armed_ms, .. }) = &state.prompt
        && state.now_ms < *armed_ms
    {
        let text = "the request just opened: read it, then decide".to_owned();
        say(state, Level::Warn, text);
        return Vec::new();
    }
    let Some(Prompt::Approval { run, task, .. }) = state.prompt.take() else {
        return Vec::new();
    };
    let Some(pending) = state.approvals.get_mut(&(run.clone(), task.clone())) else {
        open_next_approval(state);
        return Vec::new();
    };
    // It stays pending until ApprovalDecided arrives (the gate may refuse); don't pop it again.
    pending.deferred = true;
    let run = run.or_else(|| state.run().and_then(|r| r.run_id.clone()));
    let Some(run) = run else {
        say(state, Level::Error, format!("cannot decide {task}: its run is unknown"));
        return Vec::new();
    };
    open_next_approval(state);
    let command = if approve {
        Command::Approve { run, task, note: None }
    } else {
        Command::Reject { run, task, note: None }
    };
    vec![Effect::Send(command)]
}

pub(super) fn defer_approval(state: &mut State) {
    if let Some(Prompt::Approval { run, task, .. }) = state.prompt.take()
        && let Some(pending) = state.approvals.get_mut(&(run, task.clone()))
    {
        pending.deferred = true;
        say(
            state,
            Level::Info,
            format!("{task} stays pending; press a on it in the DAG to review"),
        );
    }
    open_next_approval(state);
}

pub(super) fn review_selected(state: &mut State) {
    let Some(run) = state.run() else { return };
    let Some(task) = run.selected_task().map(|t| t.id().clone()) else { return };
    let run = run.run_id.clone();
    if state.approvals.contains_key(&(run.clone(), task.clone())) {
        // Opened on request, so armed at once.
        let choice = ApprovalChoice::Later;
        state.prompt = Some(Prompt::Approval { run, task, choice, armed_ms: 0 });
    } else {
        say(state, Level::Warn, format!("{task} is not waiting for approval"));
    }
}

// ---------------------------------------------------------------- confirmations

/// Ask for a command, however it was asked for (key or `:` command): refused with a reason
/// when it cannot apply, asked first when it stops or changes something, else sent.
pub(super) fn request(state: &mut State, command: Command) -> Vec<Effect> {
    if let Err(reason) = check(state, &command) {
        say(state, Level::Warn, reason);
        return Vec::new();
    }
    if let Some(question) = question(state, &command) {
        let answer = Confirmed::Send(command);
        state.prompt = Some(Prompt::Confirm { question, answer, confirm: false });
        return Vec::new();
    }
    say(state, Level::Info, format!("→ {}", describe(&command)));
    vec![Effect::Send(command)]
}

/// Why a command cannot apply to what the console shows, if it cannot.
fn check(state: &State, command: &Command) -> Result<(), String> {
    let status =
        |run: &RunId, task| state.runs.get(run).and_then(|r| r.task(task)).map(|t| t.status);
    match command {
        Command::CancelTask { run, task } => match status(run, task) {
            Some(status) if status.is_final() => Err(format!("{task} already {}", status.word())),
            _ => Ok(()),
        },
        Command::RetryTask { run, task } => match status(run, task) {
            Some(status)
                if !matches!(
                    status,
                    TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled
                ) =>
            {
                Err(format!(
                    "{task} is {}; only failed, skipped or cancelled tasks retry",
                    status.word()
                ))
            }
            _ => Ok(()),
        },
        Command::ResumeRun { run, .. } => {
            // Only a run the console knows to be in another state is refused here (a prefix
            // or `last` is resolved by the runtime, which refuses what cannot resume).
            match state.run_entries().iter().find(|e| e.id == *run).map(|e| e.status) {
                Some(status) if status != "interrupted" => {
                    Err(format!("{run} is {status}: only an interrupted run resumes"))
                }
                _ => Ok(()),
            }
        }
        Command::AskThirdOpinion { run, task } => {
            let conflict = open_conflict(state, run, task)?;
            match conflict
                .steps
                .iter()
                .find(|s| s.step == crate::conflict::LadderStep::ThirdOpinion)
            {
                Some(asked) => Err(format!(
                    "{task}: the third opinion was already asked ({}); it is never fetched twice",
                    asked.finding
                )),
                None => Ok(()),
            }
        }
        Command::ResolveConflict { run, task, choice, .. } => {
            let conflict = open_conflict(state, run, task)?;
            match choice {
                ConflictChoice::Verdict(n) if *n == 0 || *n > conflict.verdicts.len() => {
                    Err(format!("{task}: no verdict {n}; choose 1 to {}", conflict.verdicts.len()))
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The conflict of `run`'s `task` while it waits for a decision, or why there is none.
fn open_conflict<'a>(
    state: &'a State,
    run: &RunId,
    task: &crate::ids::TaskId,
) -> Result<&'a crate::model::ConflictModel, String> {
    state
        .runs
        .get(run)
        .and_then(|r| r.task(task))
        .and_then(|t| t.conflict.as_deref())
        .filter(|c| c.is_open())
        .ok_or_else(|| format!("{task} has no conflict waiting for a decision"))
}

/// The question a command asks before it is sent; `None` sends it at once.
fn question(state: &State, command: &Command) -> Option<String> {
    let run_of = |run: &RunId| {
        state.runs.get(run).map(|r| {
            let unfinished = r.tasks.iter().filter(|t| !t.status.is_final()).count();
            (r.workflow.clone(), unfinished)
        })
    };
    Some(match command {
        Command::CancelRun { run } => match run_of(run) {
            Some((workflow, unfinished)) => {
                format!("Cancel run {workflow}? {unfinished} unfinished tasks stop.")
            }
            None => format!("Cancel run {run}?"),
        },
        Command::CancelTask { task, .. } => {
            format!("Cancel task {task}? Tasks depending on it are skipped.")
        }
        Command::ResumeRun { run, .. } => {
            let entries = state.run_entries();
            match entries.iter().find(|e| e.id == *run) {
                Some(entry) => format!(
                    "Resume run {} ({run})? {} of {} tasks succeeded and never run again; the \
                     rest run now, resumed by {}.",
                    entry.workflow, entry.succeeded, entry.total, state.user
                ),
                None => format!("Resume run {run}? Its unfinished tasks run now."),
            }
        }
        Command::RetryTask { task, .. } => {
            format!("Retry task {task} and the tasks depending on it?")
        }
        Command::ResolveConflict { run, task, choice, .. } => {
            let verdict = match choice {
                ConflictChoice::Verdict(n) => state
                    .runs
                    .get(run)
                    .and_then(|r| r.task(task))
                    .and_then(|t| t.conflict.as_deref())
                    .and_then(|c| c.verdicts.get(n.saturating_sub(1)))
                    .map(|v| format!("{}'s \"{}\"", v.agent, v.verdict.decision)),
                ConflictChoice::Own(text) => {
                    Some(format!("your own decision \"{}\"", crate::console::panes::one_line(text)))
                }
                ConflictChoice::Recommended => Some("the ladder's recommendation".to_owned()),
                ConflictChoice::Refused(_) => {
                    return Some(format!("Refuse to decide {task}? The panel task fails."));
                }
            };
            format!(
                "Settle {task} with {}? The other verdicts are overruled.",
                verdict.unwrap_or_else(|| "this choice".to_owned())
            )
        }
        Command::ResetBreaker { agent } => {
            format!("Reset the breaker of {agent}? Calls resume at once.")
        }
        Command::OpenBreaker { agent } => {
            format!("Open the breaker of {agent}? Its calls are refused.")
        }
        Command::ReleaseInstance { instance } => {
            let agent =
                state.pool.instances.get(instance).map(|i| i.agent.to_string()).unwrap_or_default();
            format!("Release {instance} ({agent})?")
        }
        _ => return None,
    })
}

/// Leave the console: at once when no run is live, else after asking, saying what happens to
/// the live runs (each is cancelled through the gate, audited as the operator's command).
/// Asked twice (Ctrl-C Ctrl-C), the second is the yes.
pub(super) fn quit(state: &mut State) -> Vec<Effect> {
    if matches!(&state.prompt, Some(Prompt::Confirm { answer: Confirmed::Quit { .. }, .. })) {
        return answer(state, true);
    }
    let live = state.live_runs();
    // A replay's runs are stored, not live, and an attached console's runs belong to the
    // host: leaving changes nothing.
    if live.is_empty() || state.replay.is_some() || state.attached {
        return vec![Effect::Quit];
    }
    let names: Vec<String> = live.iter().map(|(_, workflow)| workflow.clone()).collect();
    let question = format!(
        "Quit? {} live run{} ({}) {} cancelled, recorded in the audit log as cancelled by {}.",
        live.len(),
        if live.len() == 1 { "" } else { "s" },
        names.join(", "),
        if live.len() == 1 { "is" } else { "are" },
        state.user,
    );
    let cancel = live.into_iter().map(|(run, _)| run).collect();
    state.prompt =
        Some(Prompt::Confirm { question, answer: Confirmed::Quit { cancel }, confirm: false });
    Vec::new()
}

/// Answer the open confirmation.
pub(super) fn answer(state: &mut State, yes: bool) -> Vec<Effect> {
    if !matches!(state.prompt, Some(Prompt::Confirm { .. })) {
        return Vec::new();
    }
    let Some(Prompt::Confirm { answer, .. }) = state.prompt.take() else { return Vec::new() };
    if !yes {
        if let Confirmed::Send(command) = &answer {
            conflicts::reopen_after_no(state, command);
        }
        open_next_approval(state);
        return Vec::new();
    }
    match answer {
        Confirmed::Send(command) => {
            say(state, Level::Info, format!("→ {}", describe(&command)));
            vec![Effect::Send(command)]
        }
        Confirmed::Quit { cancel } => cancel
            .into_iter()
            .map(|run| Effect::Send(Command::CancelRun { run }))
            .chain([Effect::Quit])
            .collect(),
    }
}

pub(super) fn cycle_prompt(state: &mut State, forward: bool) {
    match &mut state.prompt {
        Some(Prompt::Approval { choice, .. }) => {
            let order = [ApprovalChoice::Approve, ApprovalChoice::Reject, ApprovalChoice::Later];
            let at = order.iter().position(|c| c == choice).unwrap_or(2);
            let next = if forward { (at + 1) % 3 } else { (at + 2) % 3 };
            *choice = order[next];
        }
        Some(Prompt::Confirm { confirm, .. }) => *confirm = !*confirm,
        Some(Prompt::Conflict { .. }) => conflicts::cycle(state, forward),
        None => {}
    }
}

pub(super) fn press_prompt(state: &mut State) -> Vec<Effect> {
    match &state.prompt {
        Some(Prompt::Approval { choice, .. }) => match choice {
            ApprovalChoice::Approve => decide_approval(state, true),
            ApprovalChoice::Reject => decide_approval(state, false),
            ApprovalChoice::Later => {
                defer_approval(state);
                Vec::new()
            }
        },
        Some(Prompt::Confirm { confirm, .. }) => {
            let yes = *confirm;
            actions::apply_action(state, if yes { Action::ConfirmYes } else { Action::ConfirmNo })
        }
        Some(Prompt::Conflict { .. }) => conflicts::press(state),
        None => Vec::new(),
    }
}

/// A command as the operator would type it, for the status bar.
fn describe(command: &Command) -> String {
    match command {
        Command::StartRun { workflow, .. } => format!("run {}", workflow.display()),
        Command::CancelRun { run } => format!("cancel run {run}"),
        Command::ResumeRun { run, .. } => format!("resume run {run}"),
        Command::CancelTask { task, .. } => format!("cancel {task}"),
        Command::RetryTask { task, .. } => format!("retry {task}"),
        Command::Approve { task, .. } => format!("approve {task}"),
        Command::Reject { task, .. } => format!("reject {task}"),
        Command::ResetBreaker { agent } => format!("reset {agent}"),
        Command::OpenBreaker { agent } => format!("open {agent}"),
        Command::SpawnInstance { agent } => format!("spawn {agent}"),
        Command::ReleaseInstance { instance } => format!("release {instance}"),
        Command::AskThirdOpinion { task, .. } => format!("ask the third opinion on {task}"),
        other => other.name().replace('_', " "),
    }
}
