//! `flightdeck run` on a data dir another process hosts (a console, or an earlier headless
//! run): one host per data dir, so the workflow is handed to the host — a `start_run` through
//! its gate, as the OS user the kernel names this process — and this process prints the run's
//! events as the host sends them and exits with the run's outcome. The run shows in the host's
//! console like any other; its approvals wait for the people there (or `flightdeck approve`).
//! Ctrl-C cancels the run on the host (asking its gate); a second Ctrl-C leaves at once.

use std::path::Path;
use std::sync::Arc;

use super::progress::Printer;
use super::workflow::{RunOptions, Stop, Stops};
use super::{Globals, exit};
use crate::command::Command;
use crate::event::{Envelope, RunStatus};
use crate::governance::Channel;
use crate::host::protocol::{Feed, HostMessage, Outcome};
use crate::host::{Hello, HostClient, HostError};
use crate::ids::RunId;

/// Hand `workflow` to the host of `globals.data_dir` (pid `host_pid`) and follow the run;
/// returns the exit code as `run`'s: 0 succeeded, 1 failed (or the host went away), 2 refused
/// or bad input, 128 + N on a signal. `None` when no host answers (it exited after its lock
/// was seen): the caller hosts the run itself.
pub(super) async fn run_on_host(
    globals: &Globals,
    workflow: &Path,
    options: &RunOptions,
    host_pid: Option<u32>,
) -> Option<i32> {
    let hello = Hello {
        from: Channel::CommandLine,
        as_user: globals.claimed.clone(),
        subscribe: true,
        readonly: false,
        // Every event: the run is printed as `run` prints it.
        feed: Feed::Events,
    };
    let mut client = match HostClient::connect(&globals.data_dir, hello).await {
        Ok(client) => client,
        Err(HostError::NoHost { .. }) => return None,
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return Some(exit::INVALID);
        }
    };
    let host = host_pid.map_or_else(|| "another flightdeck".to_owned(), |pid| format!("pid {pid}"));
    eprintln!(
        "flightdeck: {} is hosted by {host}: the run starts there (it shows in that console; \
         Ctrl-C here cancels it)",
        globals.data_dir.display()
    );
    let command = Command::StartRun {
        workflow: globals.resolve(workflow),
        backend: options.backend.clone(),
        max_parallel: options.max_parallel,
    };
    let (run, early) = match start(&mut client, command).await {
        Ok(started) => started,
        Err(code) => return Some(code),
    };
    Some(follow(client, run, early, options).await)
}

/// Send the start and wait for its reply, keeping the events that arrive meanwhile (the run's
/// first events can come before the reply). `Err` is the exit code, after saying why.
async fn start(client: &mut HostClient, command: Command) -> Result<(RunId, Vec<Envelope>), i32> {
    let id = client.send_command(command).await.map_err(|error| {
        eprintln!("flightdeck: {error}");
        exit::INVALID
    })?;
    let mut early = Vec::new();
    loop {
        match client.next().await {
            Ok(Some(HostMessage::Reply { id: answered, outcome, message })) if answered == id => {
                let message = message.unwrap_or_default();
                return match outcome {
                    Outcome::Done if !message.is_empty() => Ok((RunId::new(message), early)),
                    Outcome::Done => {
                        eprintln!("flightdeck: the host started no run");
                        Err(exit::FAILED)
                    }
                    Outcome::Refused => {
                        eprintln!("flightdeck: refused: {message}");
                        Err(exit::INVALID)
                    }
                    Outcome::Invalid => {
                        eprintln!("{message}");
                        Err(exit::INVALID)
                    }
                };
            }
            Ok(Some(HostMessage::Event { event })) => early.push(event),
            Ok(Some(HostMessage::Closing { reason })) => {
                eprintln!("flightdeck: the host is closing ({reason}); nothing was started");
                return Err(exit::FAILED);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                eprintln!("flightdeck: the host closed the connection before starting the run");
                return Err(exit::FAILED);
            }
            Err(error) => {
                eprintln!("flightdeck: {error}");
                return Err(exit::FAILED);
            }
        }
    }
}

/// Print the run's events until it finishes, the host goes away, or a signal stops us.
async fn follow(
    mut client: HostClient,
    run: RunId,
    early: Vec<Envelope>,
    options: &RunOptions,
) -> i32 {
    let mut printer = Printer::live(options.json, run.clone()).waiting_for_reviewers();
    let mut last_seq = 0;
    let mut show = |printer: &mut Printer, envelope: Envelope| -> Option<RunStatus> {
        if envelope.run_id.as_ref() != Some(&run) || envelope.seq <= last_seq {
            return None;
        }
        last_seq = envelope.seq;
        printer.print(&Arc::new(envelope))
    };
    let mut finished = None;
    for envelope in early {
        finished = finished.or(show(&mut printer, envelope));
    }
    let mut stops = Stops::listen();
    let mut interrupted: Option<Stop> = None;
    let status = loop {
        if let Some(status) = finished {
            break status;
        }
        // A reader of the output that went away stops the run as a stop signal does.
        let reader_gone = (!printer.flush() && interrupted.is_none()).then_some(Stop::ReaderGone);
        let message = tokio::select! {
            biased;
            stop = async {
                match reader_gone {
                    Some(stop) => stop,
                    None => stops.next().await,
                }
            } => {
                if let Some(first) = interrupted {
                    printer.line("interrupted again: leaving the run to the host");
                    printer.flush();
                    return first.exit_code();
                }
                interrupted = Some(stop);
                printer.line(&format!(
                    "{}: cancelling the run on the host (Ctrl-C again to leave it running)",
                    stop.describe()
                ));
                if let Err(error) = client.send_command(Command::CancelRun { run: run.clone() }).await {
                    printer.line(&format!("cannot ask the host to cancel: {error}"));
                }
                continue;
            }
            message = client.next() => message,
        };
        match message {
            Ok(Some(HostMessage::Event { event })) => finished = show(&mut printer, event),
            // After a lag the host sends its picture again: print what we missed of our run.
            Ok(Some(HostMessage::Snapshot { events })) => {
                for envelope in events {
                    finished = finished.or(show(&mut printer, envelope));
                }
            }
            Ok(Some(HostMessage::Reply { outcome: Outcome::Refused, message, .. })) => {
                printer.line(&format!("the host refused: {}", message.unwrap_or_default()));
            }
            Ok(Some(HostMessage::Closing { reason })) => {
                printer.line(&format!("the host is closing ({reason}); the run stops with it"));
                break RunStatus::Cancelled;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                printer.line("the host closed the connection; `flightdeck runs show` has the run");
                break RunStatus::Cancelled;
            }
            Err(error) => {
                printer.line(&format!("lost the host: {error}"));
                break RunStatus::Cancelled;
            }
        }
    };
    printer.flush();
    if let Some(stop) = interrupted {
        stop.exit_code()
    } else if status == RunStatus::Succeeded {
        exit::OK
    } else {
        exit::FAILED
    }
}
