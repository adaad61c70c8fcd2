//! The `:` command line: text to a [`LineCommand`]. Pure; messages say what was wrong and
//! how to write it. The commands are data ([`COMMANDS`]) so help lists exactly what parses.

use std::path::PathBuf;

use crate::command::{Command, ConflictChoice, Permission};
use crate::ids::{AgentId, InstanceId, RunId, TaskId};

use super::state::State;

/// One command-line command, for help and completion of messages.
#[derive(Debug, Clone, Copy)]
pub struct LineCommandSpec {
    pub name: &'static str,
    pub args: &'static str,
    pub description: &'static str,
    /// What the gate will check; `None` for console-only commands.
    pub permission: Option<Permission>,
}

/// Every command the command line understands.
pub static COMMANDS: &[LineCommandSpec] = &[
    spec("run", "PATH", "start a workflow file", Some(Permission::RunWorkflows)),
    spec("resume", "RUN", "go on with an interrupted run", Some(Permission::RunWorkflows)),
    spec("cancel", "[TASK]", "cancel the current run, or one task", Some(Permission::ControlRuns)),
    spec("retry", "TASK", "run a failed task again", Some(Permission::ControlRuns)),
    spec("resolve", "TASK N", "settle a conflict: take verdict N", Some(Permission::ControlRuns)),
    spec("approve", "TASK [NOTE]", "let a high-risk task run", Some(Permission::Review)),
    spec("reject", "TASK [NOTE]", "refuse a high-risk task", Some(Permission::Review)),
    spec("reset", "AGENT", "close an agent's breaker", Some(Permission::Operate)),
    spec("open", "AGENT", "open an agent's breaker", Some(Permission::Operate)),
    spec("spawn", "AGENT", "acquire a pool instance", Some(Permission::Operate)),
    spec("release", "INSTANCE", "release an instance (i3 or 3)", Some(Permission::Operate)),
    spec("reload", "", "re-read every agent definition", Some(Permission::Operate)),
    spec("theme", "NAME", "switch theme (dark, light, high-contrast)", None),
    spec("help", "", "show keys and commands", None),
    spec("quit", "", "leave the console", None),
];

const fn spec(
    name: &'static str,
    args: &'static str,
    description: &'static str,
    permission: Option<Permission>,
) -> LineCommandSpec {
    LineCommandSpec { name, args, description, permission }
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum LineCommand {
    /// Send this to the runtime.
    Send(Command),
    /// Load another theme.
    Theme(String),
    /// Show help.
    Help,
    /// Leave the console.
    Quit,
}

/// Parse one command line against the current picture (run id, tasks, agents).
pub fn parse(text: &str, state: &State) -> Result<LineCommand, String> {
    let mut words = text.split_whitespace();
    let Some(name) = words.next() else {
        return Err("empty command; type `help` for the list".to_owned());
    };
    let args: Vec<&str> = words.collect();
    let usage = |spec_name: &str| {
        COMMANDS.iter().find(|c| c.name == spec_name).map_or_else(String::new, |c| {
            format!("usage: {} {}", c.name, c.args).trim_end().to_owned()
        })
    };
    let exactly = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "`{name}` takes {n} argument{}; {}",
                if n == 1 { "" } else { "s" },
                usage(name)
            ))
        }
    };
    let command = match name {
        "run" => {
            exactly(1)?;
            let path = PathBuf::from(args[0]);
            let workflow = if path.is_absolute() { path } else { state.project_dir.join(path) };
            Command::StartRun { workflow, backend: None, max_parallel: None }
        }
        "cancel" => match args.as_slice() {
            [] => Command::CancelRun { run: current_run(state)? },
            [task] => {
                Command::CancelTask { run: current_run(state)?, task: known_task(state, task)? }
            }
            _ => return Err(format!("`cancel` takes 0 or 1 argument; {}", usage("cancel"))),
        },
        "retry" => {
            exactly(1)?;
            Command::RetryTask { run: current_run(state)?, task: known_task(state, args[0])? }
        }
        "approve" | "reject" => {
            let Some((task, note)) = args.split_first() else {
                return Err(format!("`{name}` needs a task; {}", usage(name)));
            };
            let task = TaskId::new(*task);
            let run = if let Some(run) = waiting_run(state, &task)? {
                run
            } else {
                known_task(state, task.as_str())?;
                current_run(state)?
            };
            let note = (!note.is_empty()).then(|| note.join(" "));
            if name == "approve" {
                Command::Approve { run, task, note }
            } else {
                Command::Reject { run, task, note }
            }
        }
        "resolve" => {
            let [task, number, note @ ..] = args.as_slice() else {
                return Err(format!(
                    "`resolve` needs a task and a verdict number; {}",
                    usage(name)
                ));
            };
            let run = current_run(state)?;
            let task = known_task(state, task)?;
            let number = number.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("`{number}` is no verdict number (1, 2, …); {}", usage(name))
            })?;
            let note = (!note.is_empty()).then(|| note.join(" "));
            Command::ResolveConflict { run, task, choice: ConflictChoice::Verdict(number), note }
        }
        "reset" | "open" | "spawn" => {
            exactly(1)?;
            let agent = known_agent(state, args[0])?;
            match name {
                "reset" => Command::ResetBreaker { agent },
                "open" => Command::OpenBreaker { agent },
                _ => Command::SpawnInstance { agent },
            }
        }
        "release" => {
            exactly(1)?;
            Command::ReleaseInstance { instance: parse_instance(args[0])? }
        }
        "resume" => {
            exactly(1)?;
            // The runtime resolves a start of an id or `last` against the run store.
            Command::ResumeRun { run: RunId::new(args[0]), backend: None }
        }
        "reload" => {
            exactly(0)?;
            Command::ReloadAgents
        }
        "theme" => {
            exactly(1)?;
            return Ok(LineCommand::Theme(args[0].to_owned()));
        }
        "help" | "?" => return Ok(LineCommand::Help),
        "quit" | "q" => return Ok(LineCommand::Quit),
        other => {
            let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
            return Err(format!("unknown command `{other}`; try {}", names.join(", ")));
        }
    };
    Ok(LineCommand::Send(command))
}

/// The run whose approval of `task` is waiting: the shown run's, else the only one. Two
/// other runs waiting on the same task id are ambiguous: the operator picks the run first.
fn waiting_run(state: &State, task: &TaskId) -> Result<Option<RunId>, String> {
    let waiting: Vec<Option<RunId>> =
        state.approvals.keys().filter(|(_, t)| t == task).map(|(run, _)| run.clone()).collect();
    let shown = state.run().and_then(|r| r.run_id.clone());
    if shown.is_some() && waiting.contains(&shown) {
        return Ok(shown);
    }
    match waiting.as_slice() {
        [] => Ok(None),
        [run] => Ok(run.clone()),
        runs => {
            let names: Vec<String> = runs
                .iter()
                .map(|r| r.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string))
                .collect();
            Err(format!(
                "{task} waits in {} runs ({}); show one in the Runs pane (R) first",
                runs.len(),
                names.join(", ")
            ))
        }
    }
}

fn current_run(state: &State) -> Result<RunId, String> {
    match state.run() {
        None => Err("no run yet; start one with `run PATH`".to_owned()),
        Some(run) => run.run_id.clone().ok_or_else(|| "the current run has no id".to_owned()),
    }
}

fn known_task(state: &State, task: &str) -> Result<TaskId, String> {
    let run = state.run().ok_or_else(|| "no run yet; start one with `run PATH`".to_owned())?;
    let id = TaskId::new(task);
    if run.index.contains_key(&id) {
        Ok(id)
    } else {
        Err(format!("no task `{task}` in run {}", run.workflow))
    }
}

fn known_agent(state: &State, agent: &str) -> Result<AgentId, String> {
    let id = AgentId::new(agent);
    let known = state.agents.entries.is_empty()
        || state.agents.entries.contains_key(agent)
        || state.breakers.breakers.contains_key(&id);
    if known { Ok(id) } else { Err(format!("unknown agent `{agent}`")) }
}

/// `i3` or `3`.
fn parse_instance(text: &str) -> Result<InstanceId, String> {
    text.strip_prefix('i')
        .unwrap_or(text)
        .parse::<u64>()
        .map(InstanceId)
        .map_err(|_| format!("`{text}` is not an instance; write it like i3 or 3"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rstest::rstest;

    use super::*;
    use crate::console::reducer::{Input, reduce};
    use crate::event::{AgentSummary, Envelope, Event, PlannedTask};

    fn state_with_run() -> State {
        let mut state = State::new("alice", "admin", PathBuf::from("/proj"), "dark");
        let summary = AgentSummary {
            agent: AgentId::new("backend-architect"),
            file: PathBuf::from("agentpool/tier1-core/backend-architect.md"),
            tier: 1,
            category: None,
            triggers: 2,
            max_instances: 3,
            backend: None,
            warnings: vec![],
        };
        let task = PlannedTask {
            task: TaskId::new("build"),
            description: "build it".into(),
            agent: AgentId::new("backend-architect"),
            score: None,
            depends_on: vec![].into(),
            layer: 0,
            timeout_ms: 1000,
            retries: 0,
        };
        let events = [
            (None, Event::AgentAdded(summary)),
            (
                Some(RunId::new("r1")),
                Event::RunStarted {
                    workflow: "demo".into(),
                    file: "workflows/demo.yaml".into(),
                    goal: None,
                    max_parallel: 2,
                    fail_fast: false,
                    simulated: true,
                    tasks: vec![task],
                },
            ),
        ];
        for (seq, (run_id, event)) in events.into_iter().enumerate() {
            let envelope = Envelope { seq: seq as u64 + 1, ts_ms: 1000, run_id, event };
            reduce(&mut state, Input::Event(Arc::new(envelope)));
        }
        state
    }

    fn run() -> RunId {
        RunId::new("r1")
    }

    #[rstest]
    #[case("run workflows/demo.yaml", Command::StartRun { workflow: "/proj/workflows/demo.yaml".into(), backend: None, max_parallel: None })]
    #[case("run /abs/x.yaml", Command::StartRun { workflow: "/abs/x.yaml".into(), backend: None, max_parallel: None })]
    #[case("resume r2026", Command::ResumeRun { run: RunId::new("r2026"), backend: None })]
    #[case("cancel", Command::CancelRun { run: run() })]
    #[case("cancel build", Command::CancelTask { run: run(), task: "build".into() })]
    #[case("retry build", Command::RetryTask { run: run(), task: "build".into() })]
    #[case("approve build", Command::Approve { run: run(), task: "build".into(), note: None })]
    #[case("reject  build  too risky ", Command::Reject { run: run(), task: "build".into(), note: Some("too risky".into()) })]
    #[case("reset backend-architect", Command::ResetBreaker { agent: "backend-architect".into() })]
    #[case("open backend-architect", Command::OpenBreaker { agent: "backend-architect".into() })]
    #[case("spawn backend-architect", Command::SpawnInstance { agent: "backend-architect".into() })]
    #[case("release i3", Command::ReleaseInstance { instance: InstanceId(3) })]
    #[case("release 3", Command::ReleaseInstance { instance: InstanceId(3) })]
    #[case("reload", Command::ReloadAgents)]
    #[case("resolve build 2 security wins", Command::ResolveConflict { run: run(), task: "build".into(), choice: ConflictChoice::Verdict(2), note: Some("security wins".into()) })]
    fn commands_parse(#[case] text: &str, #[case] expected: Command) {
        assert_eq!(parse(text, &state_with_run()), Ok(LineCommand::Send(expected)));
    }

    #[rstest]
    #[case("theme light", Ok(LineCommand::Theme("light".into())))]
    #[case("quit", Ok(LineCommand::Quit))]
    #[case("help", Ok(LineCommand::Help))]
    #[case("", Err("empty command; type `help` for the list".into()))]
    #[case("frobnicate", Err("unknown command `frobnicate`; try run, resume, cancel, retry, resolve, approve, reject, reset, open, spawn, release, reload, theme, help, quit".into()))]
    #[case("retry", Err("`retry` takes 1 argument; usage: retry TASK".into()))]
    #[case("retry nope", Err("no task `nope` in run demo".into()))]
    #[case("release abc", Err("`abc` is not an instance; write it like i3 or 3".into()))]
    #[case("spawn ghost", Err("unknown agent `ghost`".into()))]
    #[case("reload now", Err("`reload` takes 0 arguments; usage: reload".into()))]
    #[case("resolve build", Err("`resolve` needs a task and a verdict number; usage: resolve TASK N".into()))]
    #[case("resolve build zero", Err("`zero` is no verdict number (1, 2, …); usage: resolve TASK N".into()))]
    #[case("cancel a b", Err("`cancel` takes 0 or 1 argument; usage: cancel [TASK]".into()))]
    fn local_commands_and_mistakes(
        #[case] text: &str,
        #[case] expected: Result<LineCommand, String>,
    ) {
        assert_eq!(parse(text, &state_with_run()), expected);
    }

    #[test]
    fn run_commands_need_a_run() {
        let state = State::new("alice", "admin", PathBuf::from("/proj"), "dark");
        assert_eq!(parse("cancel", &state), Err("no run yet; start one with `run PATH`".into()));
        assert_eq!(parse("spawn anything", &state).map(|_| ()), Ok(()));
    }
}
