//! Clients of a running host: `approvals`, `approve`, `reject` and `attach`.
//!
//! They talk to the process that hosts the data dir over its control socket; the host learns
//! who they are from the kernel and passes their commands through its gate. Exit codes: 0
//! done, 1 refused by the gate, 2 bad input or no host running.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::progress::risk_word;
use super::{Globals, exit};
use crate::bus::now_ms;
use crate::command::Command;
use crate::command::ConflictChoice;
use crate::console::{self, ConsoleLink, ConsoleOptions, HostFeed, LiveFeed};
use crate::event::Envelope;
use crate::governance::{Channel, PendingApproval};
use crate::host::protocol::{Feed, HostMessage, Outcome, WaitingConflict};
use crate::host::{Hello, HostClient, HostError};
use crate::ids::{RunId, TaskId, UserId};

/// `approvals [--json]`: what waits on the host, approvals first, then conflicts waiting for
/// a person. With `--json`, one array whose entries say their `kind` (`approval`, `conflict`).
pub fn approvals(globals: &Globals, json: bool) -> i32 {
    block_on(async {
        let mut client = match connect(globals, false, false).await {
            Ok(client) => client,
            Err(code) => return code,
        };
        let pending = match client.approvals().await {
            Ok(pending) => pending,
            Err(error) => return host_failed(&error),
        };
        let conflicts = match client.conflicts().await {
            Ok(conflicts) => conflicts,
            Err(error) => return host_failed(&error),
        };
        if json {
            outln!("{}", waiting_json(&pending, &conflicts));
        } else if pending.is_empty() && conflicts.is_empty() {
            outln!("nothing waits for a person");
        } else {
            if !pending.is_empty() {
                out!("{}", approvals_text(&pending, now_ms()));
            }
            if !conflicts.is_empty() {
                if !pending.is_empty() {
                    outln!("");
                }
                out!("{}", conflicts_text(&conflicts));
            }
        }
        exit::OK
    })
}

/// Approvals and conflicts as one JSON array, each entry tagged with its `kind`.
fn waiting_json(pending: &[PendingApproval], conflicts: &[WaitingConflict]) -> String {
    let tagged = |kind: &str, value: serde_json::Value| {
        let mut value = value;
        value["kind"] = serde_json::json!(kind);
        value
    };
    let entries: Vec<serde_json::Value> = pending
        .iter()
        .map(|p| tagged("approval", serde_json::to_value(p).unwrap_or_default()))
        .chain(
            conflicts
                .iter()
                .map(|c| tagged("conflict", serde_json::to_value(c).unwrap_or_default())),
        )
        .collect();
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned())
}

/// `resolve RUN TASK CHOICE [--note]`: settle a conflict waiting for a person with a member's
/// verdict (its number, from 1, as `approvals` lists them) or a decision of one's own.
pub fn resolve(
    globals: &Globals,
    run: &str,
    task: &str,
    choice: &str,
    note: Option<String>,
) -> i32 {
    for (what, text) in [("CHOICE", Some(choice)), ("--note", note.as_deref())] {
        if let Some(bad) = text.filter(|text| text.chars().any(is_forbidden_in_note)) {
            eprintln!("flightdeck: {what} {bad:?} holds control characters; write plain text");
            return exit::INVALID;
        }
    }
    let choice = parse_choice(choice);
    block_on(async {
        let mut client = match connect(globals, false, false).await {
            Ok(client) => client,
            Err(code) => return code,
        };
        let conflicts = match client.conflicts().await {
            Ok(conflicts) => conflicts,
            Err(error) => return host_failed(&error),
        };
        let runs: Vec<&RunId> = conflicts.iter().map(|c| &c.run).collect();
        let run = match expand_run(&runs, run, "has a conflict waiting for a person") {
            Ok(run) => run,
            Err(message) => {
                eprintln!("flightdeck: {message}");
                return exit::INVALID;
            }
        };
        let task = TaskId::new(task);
        if let Err(message) = check_choice(&conflicts, &run, &task, &choice) {
            eprintln!("flightdeck: {message}");
            return exit::INVALID;
        }
        let command = Command::ResolveConflict { run, task, choice, note };
        finish_command(&mut client, command, "resolved").await
    })
}

/// A number picks a member's verdict; anything else is one's own decision.
fn parse_choice(choice: &str) -> ConflictChoice {
    match choice.trim().parse::<usize>() {
        Ok(number) => ConflictChoice::Verdict(number),
        Err(_) => ConflictChoice::Own(choice.trim().to_owned()),
    }
}

/// Bad input said before it reaches the gate: no such conflict, a number no member has, an
/// empty decision.
fn check_choice(
    conflicts: &[WaitingConflict],
    run: &RunId,
    task: &TaskId,
    choice: &ConflictChoice,
) -> Result<(), String> {
    let Some(conflict) = conflicts.iter().find(|c| &c.run == run && &c.task == task) else {
        let tasks: Vec<&str> =
            conflicts.iter().filter(|c| &c.run == run).map(|c| c.task.as_str()).collect();
        return Err(format!(
            "no conflict of task `{task}` waits in run {run} (waiting: {})",
            tasks.join(", ")
        ));
    };
    match choice {
        ConflictChoice::Verdict(number) if *number == 0 || *number > conflict.members.len() => {
            Err(format!(
                "{task} has {} member verdict(s): choose 1 to {}, or write a decision of your own",
                conflict.members.len(),
                conflict.members.len()
            ))
        }
        ConflictChoice::Own(text) if text.is_empty() => {
            Err("an empty decision: give a member's number or a decision in words".to_owned())
        }
        _ => Ok(()),
    }
}

/// Send `command` and turn the host's answer into the exit code (0 done, 1 refused by the
/// gate, 2 bad input or the host gone).
async fn finish_command(client: &mut HostClient, command: Command, verb: &str) -> i32 {
    match client.command(command).await {
        Ok((Outcome::Done, _)) => {
            let (user, role) = client.identity();
            outln!("{verb} as {user} ({role})");
            exit::OK
        }
        Ok((Outcome::Refused, message)) => {
            eprintln!("flightdeck: refused: {}", message.unwrap_or_default());
            exit::FAILED
        }
        Ok((Outcome::Invalid, message)) => {
            eprintln!("flightdeck: {}", message.unwrap_or_default());
            exit::INVALID
        }
        Err(error) => host_failed(&error),
    }
}

/// `approve RUN TASK [--note]` and `reject RUN TASK --note`.
pub fn decide(
    globals: &Globals,
    run: &str,
    task: &str,
    approve: bool,
    note: Option<String>,
) -> i32 {
    if let Some(bad) = note.as_deref().filter(|note| note.chars().any(is_forbidden_in_note)) {
        eprintln!("flightdeck: --note {bad:?} holds control characters; write plain text");
        return exit::INVALID;
    }
    block_on(async {
        let mut client = match connect(globals, false, false).await {
            Ok(client) => client,
            Err(code) => return code,
        };
        // A unique start of a waiting run's id is enough.
        let run = match client.approvals().await {
            Ok(pending) => match expand_run(
                &pending.iter().map(|p| &p.run).collect::<Vec<_>>(),
                run,
                "has a task waiting for approval",
            ) {
                Ok(run) => run,
                Err(message) => {
                    eprintln!("flightdeck: {message}");
                    return exit::INVALID;
                }
            },
            Err(error) => return host_failed(&error),
        };
        let task = TaskId::new(task);
        let command = if approve {
            Command::Approve { run, task, note }
        } else {
            Command::Reject { run, task, note }
        };
        let verb = if approve { "approved" } else { "rejected" };
        finish_command(&mut client, command, verb).await
    })
}

/// Newlines and escapes in a note could forge log lines or drive a reviewer's terminal.
fn is_forbidden_in_note(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// Host messages an attached console holds before it stops reading the socket.
const HOST_FEED_CAPACITY: usize = 4096;

/// `attach [--readonly]`: the console, fed by the host's socket.
pub fn attach(globals: &Globals, readonly: bool, log_file: PathBuf) -> i32 {
    let tokio = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("flightdeck: cannot start the async runtime: {error}");
            return exit::FAILED;
        }
    };
    tokio.block_on(async {
        let client = match connect(globals, true, readonly).await {
            Ok(client) => client,
            Err(code) => return code,
        };
        match run_attached(globals, client, readonly, log_file).await {
            Ok(signalled) => signalled.unwrap_or(exit::OK),
            Err(error) => {
                // Not `eprintln!`: after the console the terminal may be gone, and it panics then.
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!("flightdeck: {error:#}\n"),
                );
                exit::FAILED
            }
        }
    })
}

/// Open a console whose events come from the host and whose commands go to it. The console
/// is the same one the host shows; only its link differs.
async fn run_attached(
    globals: &Globals,
    client: HostClient,
    readonly: bool,
    log_file: PathBuf,
) -> color_eyre::Result<Option<i32>> {
    let (user, role) = client.identity();
    let user = user.to_owned();
    // A read-only console shows what a viewer sees: no key that changes anything.
    let role = if readonly { "viewer".to_owned() } else { role.to_owned() };
    let (mut incoming, mut outgoing) = client.split();
    let backlog = match incoming.next().await? {
        Some(HostMessage::Snapshot { events }) => events.into_iter().map(Arc::new).collect(),
        other => color_eyre::eyre::bail!("the host sent {other:?} instead of a snapshot"),
    };
    let latest: Arc<Mutex<Vec<Arc<Envelope>>>> = Arc::new(Mutex::new(backlog));
    // Bounded: a console that falls behind stops reading the socket, and the host, seeing
    // its lines pile up, says it lagged and sends its picture again.
    let (feed, events) = mpsc::channel::<HostFeed>(HOST_FEED_CAPACITY);
    let snapshot = Arc::clone(&latest);
    let reading = tokio::spawn(async move {
        // Ends (dropping the sender, so the console says the runtime is gone) when the host
        // closes the connection or says it is exiting.
        let mut missed = 0;
        while let Ok(Some(message)) = incoming.next().await {
            let sent = match message {
                HostMessage::Events { events } => {
                    let mut sent = Ok(());
                    for event in events {
                        sent = feed.send(HostFeed::Event(Arc::new(event))).await;
                    }
                    sent
                }
                HostMessage::Event { event } => feed.send(HostFeed::Event(Arc::new(event))).await,
                HostMessage::Digest(digest) => feed.send(HostFeed::Digest(Arc::new(digest))).await,
                HostMessage::Lagged { missed: n } => {
                    missed = n;
                    Ok(())
                }
                HostMessage::Snapshot { events } => {
                    let backlog: Vec<Arc<Envelope>> = events.into_iter().map(Arc::new).collect();
                    snapshot.lock().unwrap_or_else(PoisonError::into_inner).clone_from(&backlog);
                    feed.send(HostFeed::Resync { backlog, missed: std::mem::take(&mut missed) })
                        .await
                }
                HostMessage::Closing { reason } => {
                    tracing::info!(%reason, "attach: the host is going");
                    return;
                }
                HostMessage::Reply { outcome, message, .. } if outcome != Outcome::Done => {
                    tracing::warn!(?outcome, ?message, "attach: command not carried out");
                    Ok(())
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    let (commands, mut to_send) = mpsc::unbounded_channel::<Command>();
    let writing = tokio::spawn(async move {
        while let Some(command) = to_send.recv().await {
            if outgoing.send(command).await.is_err() {
                return;
            }
        }
    });
    let backlog = latest.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let link = ConsoleLink {
        backlog,
        events: LiveFeed::Host(events),
        commands,
        user,
        role,
        resync: Box::new(move || latest.lock().unwrap_or_else(PoisonError::into_inner).clone()),
        // The Runs list and stored runs read the host's run store directly (read-only).
        stored_runs: Box::new({
            let store = globals.data_dir.join(crate::store::RUNS_FILE);
            move || super::console::read_runs(&store)
        }),
        attached: true,
        run_events: Box::new({
            let store = globals.data_dir.join(crate::store::RUNS_FILE);
            move |run| super::console::read_run_events(&store, run)
        }),
    };
    let settings = crate::config::Settings::load(&globals.project_dir).unwrap_or_default();
    let options = ConsoleOptions {
        project_dir: globals.project_dir.clone(),
        theme: globals.theme.clone().or(settings.theme),
        log_file,
        start_workflow: None,
        attention: crate::console::Attention {
            bell: settings.notify.bell,
            desktop: settings.notify.desktop,
        },
    };
    let result = console::run(options, link).await;
    reading.abort();
    writing.abort();
    result
}

/// Connect and say hello; on failure, say why and return the exit code.
async fn connect(globals: &Globals, subscribe: bool, readonly: bool) -> Result<HostClient, i32> {
    let from = if subscribe { Channel::Attach } else { Channel::CommandLine };
    // A subscriber here is an attached console: it is sent the console feed.
    let feed = if subscribe { Feed::Console } else { Feed::Events };
    let hello = Hello { from, as_user: globals.claimed.clone(), subscribe, readonly, feed };
    HostClient::connect(&globals.data_dir, hello).await.map_err(|error| match error {
        HostError::Refused(reason) => {
            eprintln!("flightdeck: refused: {reason}");
            exit::INVALID
        }
        other => host_failed(&other),
    })
}

fn host_failed(error: &HostError) -> i32 {
    eprintln!("flightdeck: {error}");
    exit::INVALID
}

fn block_on(work: impl Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(tokio) => tokio.block_on(work),
        Err(error) => {
            eprintln!("flightdeck: cannot start the async runtime: {error}");
            exit::FAILED
        }
    }
}

/// What names the newest run with something waiting, as `runs show last` names the newest
/// run.
const LAST: &str = "last";

/// The run a person means among `waiting`: an exact id, the unique one whose id starts so,
/// or [`LAST`], the newest. `what` says what the runs have waiting, for the message.
fn expand_run(waiting: &[&RunId], given: &str, what: &str) -> Result<RunId, String> {
    // A run's id starts with the second it started, so the greatest is the newest.
    if given == LAST {
        return waiting
            .iter()
            .max()
            .map(|run| (*run).clone())
            .ok_or_else(|| format!("no run {what} (see `flightdeck approvals`)"));
    }
    if waiting.iter().any(|run| run.as_str() == given) {
        return Ok(RunId::new(given));
    }
    let mut matching: Vec<&RunId> =
        waiting.iter().copied().filter(|run| run.as_str().starts_with(given)).collect();
    matching.sort();
    matching.dedup();
    match matching.as_slice() {
        [run] => Ok((*run).clone()),
        [] => Err(format!("no run `{given}` {what} (see `flightdeck approvals`)")),
        _ => Err(format!("`{given}` is the start of several waiting runs; give more of the id")),
    }
}

/// The conflicts waiting for a person: each member's decision by its number, and what the
/// ladder recommends.
fn conflicts_text(conflicts: &[WaitingConflict]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "conflicts waiting for a person (flightdeck resolve RUN TASK CHOICE):");
    for conflict in conflicts {
        let _ =
            writeln!(out, "{} {}  conflict: {}", conflict.run, conflict.task, conflict.question);
        for (number, member) in conflict.members.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {} ({}) chose \"{}\"  confidence {:.2}: {}",
                number + 1,
                member.agent,
                member.domain,
                member.verdict.decision,
                member.verdict.confidence,
                member.verdict.rationale,
            );
        }
        match &conflict.recommendation {
            Some(recommendation) => {
                let from = recommendation.from.map_or_else(
                    || "no step decided; most members, then highest confidence".to_owned(),
                    |step| format!("by {step}"),
                );
                let _ = writeln!(
                    out,
                    "  recommended: \"{}\" ({}, {from})",
                    recommendation.decision, recommendation.winner
                );
            }
            None => {
                let _ = writeln!(out, "  recommended: nothing");
            }
        }
    }
    out
}

/// The waiting approvals as an aligned table.
fn approvals_text(pending: &[PendingApproval], now_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "approvals waiting for a reviewer (flightdeck approve RUN TASK, or reject RUN TASK --note T):"
    );
    for approval in pending {
        let waited = now_ms.saturating_sub(approval.requested_ms) / 1000;
        let _ = writeln!(
            out,
            "{} {}  agent {}  risk {}  waiting {}",
            approval.run,
            approval.task,
            approval.agent,
            risk_word(approval.risk),
            seconds(waited),
        );
        let _ = writeln!(out, "  why: {}", approval.reasons.join("; "));
        let starter = approval.requested_by.as_ref().map_or("unknown", |user| user.as_str());
        let deadline = match approval.deadline_ms {
            _ if approval.overdue => "OVERDUE".to_owned(),
            Some(at) => format!("in {}", seconds(at.saturating_sub(now_ms) / 1000)),
            None => "none".to_owned(),
        };
        let given: Vec<&str> = approval.approved_by.iter().map(UserId::as_str).collect();
        let so_far = if given.is_empty() {
            format!("0 of {}", approval.needed)
        } else {
            format!("{} of {} ({})", given.len(), approval.needed, given.join(", "))
        };
        let _ = writeln!(out, "  started by {starter}  deadline {deadline}  approvals {so_far}");
    }
    out
}

fn seconds(total: u64) -> String {
    match total {
        0..60 => format!("{total}s"),
        60..3600 => format!("{}m {:02}s", total / 60, total % 60),
        _ => format!("{}h {:02}m", total / 3600, total % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "has a task waiting for approval";

    #[test]
    fn last_is_the_newest_waiting_run() {
        let older = RunId::new("r20261207230230-07584af5eb8bcafe");
        let newer = RunId::new("r20261207230231-00000000000000aa");
        assert_eq!(expand_run(&[&newer, &older], "last", WHAT), Ok(newer.clone()));
        assert_eq!(expand_run(&[&older, &newer], "last", WHAT), Ok(newer));
        let none = expand_run(&[], "last", WHAT).expect_err("nothing waits");
        assert_eq!(none, "no run has a task waiting for approval (see `flightdeck approvals`)");
    }

    #[test]
    fn a_run_is_an_exact_id_or_a_unique_start_of_one() {
        let one = RunId::new("r20261207230230-07584af5eb8bcafe");
        let two = RunId::new("r20261207230231-00000000000000aa");
        assert_eq!(expand_run(&[&one, &two], one.as_str(), WHAT), Ok(one.clone()));
        assert_eq!(expand_run(&[&one, &two], "r20261207230230", WHAT), Ok(one.clone()));
        // The same run twice (two of its tasks wait) is one run.
        assert_eq!(expand_run(&[&one, &one], "r20261207230230-0", WHAT), Ok(one.clone()));
        let several = expand_run(&[&one, &two], "r2026", WHAT).expect_err("two match");
        assert!(several.contains("several waiting runs"), "{several}");
        let none = expand_run(&[&one], "r1999", WHAT).expect_err("none match");
        assert!(none.starts_with("no run `r1999` has a task waiting"), "{none}");
    }
}
