//! `flightdeck`: arguments, logging, panic hook, config, runtime, console.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use flightdeck::cli::{self, Globals};
use flightdeck::exec::reaper;
use flightdeck::governance::Channel;

/// mimalloc instead of the system allocator: the engine allocates a few small objects per
/// task event, and glibc's malloc made up a sixth of its CPU time (see benches/engine.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Terminal operator console for multi-agent workflows.
#[derive(Debug, Parser)]
#[command(name = "flightdeck", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Start this workflow as soon as the console opens.
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    /// Keep acquiring and releasing pool instances so the console shows life without a run.
    #[arg(long)]
    demo_pool: bool,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Project folder holding agentpool/, workflows/ and flightdeck.yaml.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    project_dir: PathBuf,
    /// Where runs, the audit log and logs are kept [default: <project>/.flightdeck].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[arg(help = "Act as this user, whose role may not be higher than your account's own \
                [default: $FLIGHTDECK_USER, else your account]")]
    #[arg(long = "as", global = true, value_name = "USER")]
    user: Option<String>,
    /// Theme from themes/: dark, light, high-contrast.
    #[arg(long, global = true, value_name = "NAME")]
    theme: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Inspect, validate and watch agent definitions.
    #[command(subcommand)]
    Agents(AgentsCmd),
    /// Validate a workflow and print its plan: layers, agents, timeouts, estimate.
    Plan {
        /// The workflow file.
        workflow: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow without the console; progress on stderr.
    Run {
        /// The workflow file.
        workflow: PathBuf,
        /// One JSON event per line on stdout. An event of the run is printed only once the
        /// run store has committed it, so all that was printed is in `runs events` even
        /// after a kill; events of no run (gate, pool) are printed but never stored.
        #[arg(long)]
        json: bool,
        /// Run every task on this backend (e.g. sim).
        #[arg(long, value_name = "NAME")]
        backend: Option<String>,
        #[arg(help = "Override the workflow's max_parallel")]
        #[arg(long, value_name = "N")]
        max_parallel: Option<usize>,
        /// Tasks that need approval: `reject` them at once (the default, for scripts and
        /// CI) or `wait` for a decision from another terminal until the deadline
        /// (`policies.approval_timeout`). With `wait`, a conflict that needs a person also
        /// waits for `flightdeck resolve` (unless `--decide recommend`).
        #[arg(long, value_enum, default_value_t = ApprovalMode::Reject)]
        approvals: ApprovalMode,
        /// How a conflict that needs a person is settled with nobody there: `recommend`
        /// takes the ladder's recommendation (recorded as the system user's, with why);
        /// `wait` leaves it waiting for a person (an attached console's prompt, or
        /// `flightdeck resolve` from another terminal; so does `--approvals wait`).
        /// Without either such a panel task fails, naming the agents and their decisions.
        #[arg(long, value_name = "HOW", value_parser = ["recommend", "wait"])]
        decide: Option<String>,
    },
    /// What waits for a person on the running host: approvals (run, task, agent, risk,
    /// reasons, who started the run, since when, the deadline and the approvals so far),
    /// then conflicts between agents (each member's decision, the recommendation).
    Approvals {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Approve a task waiting on the running host. Exit 0 done, 1 refused, 2 bad input or
    /// no host.
    Approve {
        #[arg(
            help = "Run id, a unique start of one, or `last` (the newest run with something waiting)"
        )]
        run: String,
        /// The waiting task.
        task: String,
        /// A note kept with the decision.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Reject a task waiting on the running host; it fails with the note as its reason.
    Reject {
        #[arg(
            help = "Run id, a unique start of one, or `last` (the newest run with something waiting)"
        )]
        run: String,
        /// The waiting task.
        task: String,
        /// Why (required).
        #[arg(long, value_name = "TEXT")]
        note: String,
    },
    /// Settle a conflict that waits for a person on the running host: CHOICE is a member's
    /// number as `approvals` lists them, or a decision in words. Exit 0 done, 1 refused, 2
    /// bad input or no host.
    Resolve {
        #[arg(
            help = "Run id, a unique start of one, or `last` (the newest run with something waiting)"
        )]
        run: String,
        /// The panel task in conflict.
        task: String,
        /// A member's number (1, 2, ...) or a decision of your own.
        choice: String,
        /// A note kept with the decision.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// The full console against the running host: every pane live, the same keys; commands
    /// pass the host's gate as you. Detaching leaves runs going.
    Attach {
        /// Show no key that changes anything; the host refuses commands of this console.
        #[arg(long)]
        readonly: bool,
    },
    /// Go on with an interrupted run (its process died): tasks that succeeded are not run
    /// again, an attempt that was in flight runs again. Same output and exit codes as `run`;
    /// exit 2 when the run is unknown, finished, or still owned by a live process.
    Resume {
        #[arg(help = "Run id, a unique start of one, or `last`")]
        run: String,
        /// One JSON event per line on stdout, as `run --json`.
        #[arg(long)]
        json: bool,
        /// Run every remaining task on this backend (e.g. sim).
        #[arg(long, value_name = "NAME")]
        backend: Option<String>,
        /// A conflict waiting for a person when the run stopped is asked again (its
        /// members are not): `recommend` or `wait`, as for `run`.
        #[arg(long, value_name = "HOW", value_parser = ["recommend", "wait"])]
        decide: Option<String>,
    },
    /// Runs kept in the run store: list them, show one, replay its events.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// The audit log: check that it proves itself, show its records.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Open the console on a stored run with a time cursor: ← → one event, PgUp/PgDn a task,
    /// Home/End, Space plays 1×/10×. Read-only: no agent is called, nothing can change.
    Replay {
        /// A run id, a unique start of one, or `last`.
        run: String,
    },
    /// Check each backend: installed or reachable, version, key set, who uses it. Exit 1 when
    /// a bundled workflow (workflows/*.yaml) lacks something it needs.
    Doctor {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script for your shell: `flightdeck completions bash >
    /// ~/.local/share/bash-completion/completions/flightdeck` (zsh: into a folder of
    /// `$fpath` as `_flightdeck`; fish: `~/.config/fish/completions/flightdeck.fish`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// What a headless run does with tasks that need approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ApprovalMode {
    /// Refuse them at once.
    Reject,
    /// Wait for a decision from another terminal, until the deadline.
    Wait,
}

#[derive(Debug, Subcommand)]
enum RunsCmd {
    /// The stored runs, newest first.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One run and what became of each of its tasks, or one task in full.
    Show {
        #[arg(help = "Run id, a unique start of one, or `last`")]
        run: String,
        #[arg(help = "A task of the run: its attempts, streamed output and result")]
        task: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Replay a run's stored events: progress lines on stderr, as `run` printed them.
    Events {
        #[arg(help = "Run id, a unique start of one, or `last`")]
        run: String,
        /// One JSON event per line on stdout, as `run --json` printed them.
        #[arg(long)]
        json: bool,
    },
    /// Delete finished runs and their events (running ones are never touched).
    #[command(arg_required_else_help = true)]
    Prune {
        /// Keep this many of the newest finished runs.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        #[arg(help = "Keep runs started within this long (e.g. 30d, 12h)")]
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Check every record's MAC, the chain and the run store's anchor. Exit 0 when intact,
    /// 1 when anything is wrong (each problem with its line).
    Verify {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The last records, oldest first; with -f, then each new one as it is written.
    Tail {
        /// Keep printing new records until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// One JSON record per line on stdout.
        #[arg(long)]
        json: bool,
        /// Only records of this user.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[arg(help = "Only records of this action (e.g. cancel_run, start_run)")]
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only records about this run (an id or a unique start of one).
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
        /// How many of the matching records to show first.
        #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
enum AgentsCmd {
    /// Check every definition in a folder; exit 1 if any has an error.
    Validate {
        /// Folder to check [default: <project>/agentpool].
        dir: Option<PathBuf>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the definitions of the pool.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print one line per change to the pool folder until interrupted.
    Watch {
        #[arg(long)]
        json: bool,
    },
    /// Score every agent against a task and show why.
    Explain {
        /// The task description.
        task: String,
        /// Extra context that may match focus areas.
        #[arg(long)]
        context: Option<String>,
        /// How many agents to show.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// What finished attempts taught: per agent attempts, success rate, mean duration,
    /// learning boost and the task words it succeeds on, and the pool's totals.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    // `flightdeck __reap …`: the shim each attempt's program runs under (exec::reaper). It is
    // no user command and needs nothing else of Flightdeck: no arguments parser, no logging.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == reaper::SUBCOMMAND) {
        std::process::exit(reaper::shim_main(std::env::args_os().skip(2)));
    }
    reaper::install_current_exe();
    let cli = Cli::parse();
    // Needs no project, data dir or identity: printed before any of them is looked at.
    if let Some(Cmd::Completions { shell }) = cli.command {
        cli::print_completions(shell, &mut Cli::command());
        return;
    }
    let project_dir = cli.globals.project_dir.clone();
    let data_dir = cli.globals.data_dir.clone().unwrap_or_else(|| project_dir.join(".flightdeck"));
    let claimed = cli.globals.user.clone().or_else(|| std::env::var("FLIGHTDECK_USER").ok());
    // Clients of a host leave the check of `--as` to the host, which writes the audit.
    let host_client = matches!(
        cli.command,
        Some(
            Cmd::Approvals { .. }
                | Cmd::Approve { .. }
                | Cmd::Reject { .. }
                | Cmd::Resolve { .. }
                | Cmd::Attach { .. }
        )
    );
    let user = if host_client {
        Ok(flightdeck::governance::Provenance::local(Channel::CommandLine).account)
    } else {
        cli::acting_user(&project_dir, &data_dir, claimed.as_deref())
    };
    let user = match user {
        Ok(user) => user,
        Err(message) => {
            eprintln!("flightdeck: {message}");
            std::process::exit(cli::exit::INVALID);
        }
    };
    let globals =
        Globals { data_dir, project_dir, user, theme: cli.globals.theme.clone(), claimed };
    let log = flightdeck::logging::init(&globals.data_dir);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), user = %globals.user, "flightdeck starting");
    let code = match cli.command {
        None => {
            let request =
                cli::console::ConsoleRequest { workflow: cli.workflow, demo_pool: cli.demo_pool };
            cli::console::open(&globals, request, log.current_file())
        }
        Some(Cmd::Agents(cmd)) => match cmd {
            AgentsCmd::Validate { dir, json } => cli::agents::validate(&globals, dir, json),
            AgentsCmd::List { json } => cli::agents::list(&globals, json),
            AgentsCmd::Watch { json } => cli::agents::watch(&globals, json),
            AgentsCmd::Explain { task, context, top, json } => {
                cli::agents::explain(&globals, &task, context.as_deref(), top, json)
            }
            AgentsCmd::Stats { json } => cli::agents::stats(&globals, json),
        },
        Some(Cmd::Plan { workflow, json }) => cli::workflow::plan(&globals, &workflow, json),
        Some(Cmd::Run { workflow, json, backend, max_parallel, approvals, decide }) => {
            let options = cli::workflow::RunOptions {
                json,
                backend,
                max_parallel,
                wait_for_approvals: approvals == ApprovalMode::Wait,
                take_recommendation: decide.as_deref() == Some("recommend"),
                wait_for_decisions: decide.as_deref() == Some("wait"),
            };
            cli::workflow::run(&globals, &workflow, &options)
        }
        Some(Cmd::Approvals { json }) => cli::host::approvals(&globals, json),
        Some(Cmd::Approve { run, task, note }) => {
            cli::host::decide(&globals, &run, &task, true, note)
        }
        Some(Cmd::Reject { run, task, note }) => {
            cli::host::decide(&globals, &run, &task, false, Some(note))
        }
        Some(Cmd::Resolve { run, task, choice, note }) => {
            cli::host::resolve(&globals, &run, &task, &choice, note)
        }
        Some(Cmd::Attach { readonly }) => cli::host::attach(&globals, readonly, log.current_file()),
        Some(Cmd::Resume { run, json, backend, decide }) => {
            let options = cli::workflow::RunOptions {
                json,
                backend,
                max_parallel: None,
                wait_for_approvals: false,
                take_recommendation: decide.as_deref() == Some("recommend"),
                wait_for_decisions: decide.as_deref() == Some("wait"),
            };
            cli::workflow::resume(&globals, &run, &options)
        }
        Some(Cmd::Doctor { json }) => cli::doctor::doctor(&globals, json),
        // Printed before the project was looked at (above).
        Some(Cmd::Completions { .. }) => cli::exit::OK,
        Some(Cmd::Audit(cmd)) => match cmd {
            AuditCmd::Verify { json } => cli::audit::verify(&globals, json),
            AuditCmd::Tail { follow, json, user, action, run, lines } => {
                let filter = cli::audit::TailFilter { user, action, run, lines };
                cli::audit::tail(&globals, &filter, follow, json)
            }
        },
        Some(Cmd::Replay { run }) => cli::console::replay(&globals, &run, log.current_file()),
        Some(Cmd::Runs(cmd)) => match cmd {
            RunsCmd::List { limit, json } => cli::runs::list(&globals, limit, json),
            RunsCmd::Show { run, task, json } => {
                cli::runs::show(&globals, &run, task.as_deref(), json)
            }
            RunsCmd::Events { run, json } => cli::runs::events(&globals, &run, json),
            RunsCmd::Prune { keep, older_than, dry_run } => {
                cli::runs::prune(&globals, keep, older_than, dry_run)
            }
        },
    };
    // exit() skips destructors: flush the log first.
    drop(log);
    std::process::exit(code);
}
