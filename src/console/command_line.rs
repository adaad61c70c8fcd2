//! The `:` command line: text to a [`LineCommand`]. Pure; messages say what was wrong and
//! how to write it. The commands are data ([`COMMANDS`]) so help lists exactly what parses.

use std::path::PathBuf;

use crate::command::{Command, ConflictChoice, Permission};
use crate::ids::{AgentId, InstanceId, RunId, TaskId};
use crate::model::TaskStatus;

use super::state::{CommandLine, State};

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

/// Most candidates Tab lists after the command line.
const SHOWN_CHOICES: usize = 8;

/// Tab on the command line: the word before the cursor completed as far as its candidates
/// agree (a command; then its argument: a task of the shown run, a task waiting for a
/// decision, an agent, an instance, a theme, an interrupted run, a workflow file), with a
/// space after a whole word. Where they differ and nothing more is agreed, the line keeps its
/// text and offers them in `choices`; without a candidate it is left as it is.
pub fn complete(line: &CommandLine, state: &State) -> CommandLine {
    let (before, after) = split_at_cursor(line);
    let (head, word) = before.split_at(word_start(&before));
    let position = head.split_whitespace().count();
    let command = head.split_whitespace().next();
    let candidates = candidates(state, command, position);
    let lower = word.to_lowercase();
    let matching: Vec<&String> = candidates
        .iter()
        .filter(|candidate| {
            let candidate = candidate.to_lowercase();
            // A workflow file is found by its name too (`demo` is workflows/demo.yaml).
            candidate.starts_with(&lower)
                || (command == Some("run")
                    && !lower.contains('/')
                    && candidate.rsplit('/').next().is_some_and(|name| name.starts_with(&lower)))
        })
        .collect();
    let rebuilt = |completed: &str, space: bool| {
        let space = if space && !after.starts_with(char::is_whitespace) { " " } else { "" };
        let text = format!("{head}{completed}{space}{after}");
        let cursor = format!("{head}{completed}{space}").chars().count();
        CommandLine { text, cursor, choices: Vec::new() }
    };
    match matching.as_slice() {
        [] => CommandLine { choices: Vec::new(), ..line.clone() },
        [only] => rebuilt(only, true),
        many => {
            let agreed = common_prefix(many);
            if agreed.chars().count() > word.chars().count()
                && agreed.to_lowercase().starts_with(&lower)
            {
                return rebuilt(&agreed, false);
            }
            let mut choices: Vec<String> =
                many.iter().take(SHOWN_CHOICES).map(|c| (*c).clone()).collect();
            if many.len() > SHOWN_CHOICES {
                choices.push(format!("+{} more", many.len() - SHOWN_CHOICES));
            }
            CommandLine { choices, ..line.clone() }
        }
    }
}

/// Whether Tab on `line` completes a stored run (`resume`'s argument): the store's runs are
/// read for it then, not each time the line opens (listing an unfinished run folds its
/// events, which for a large live run takes seconds).
pub fn completes_a_stored_run(line: &CommandLine) -> bool {
    let (before, _) = split_at_cursor(line);
    let head = &before[..word_start(&before)];
    let mut words = head.split_whitespace();
    words.next() == Some("resume") && words.next().is_none()
}

/// The text before the cursor and after it.
fn split_at_cursor(line: &CommandLine) -> (String, String) {
    let chars: Vec<char> = line.text.chars().collect();
    let at = line.cursor.min(chars.len());
    (chars[..at].iter().collect(), chars[at..].iter().collect())
}

/// Where the last word of `before` starts (byte offset).
fn word_start(before: &str) -> usize {
    before.char_indices().rfind(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8())
}

/// The longest start the candidates share (compared without case; the first one's letters).
fn common_prefix(candidates: &[&String]) -> String {
    let Some((first, rest)) = candidates.split_first() else { return String::new() };
    let mut agreed: Vec<char> = first.chars().collect();
    for other in rest {
        let shared = agreed
            .iter()
            .zip(other.chars())
            .take_while(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
            .count();
        agreed.truncate(shared);
    }
    agreed.into_iter().collect()
}

/// What may stand at word `position` (0: the command) of `command`'s line.
fn candidates(state: &State, command: Option<&str>, position: usize) -> Vec<String> {
    // Tasks of the shown run in a state the command takes.
    let shown_tasks = |takes: fn(TaskStatus) -> bool| {
        state.run().map_or_else(Vec::new, |run| {
            run.tasks
                .iter()
                .filter(|task| takes(task.status))
                .map(|task| task.planned.task.to_string())
                .collect()
        })
    };
    // Tasks waiting in `keys`, those of the shown run first, each once.
    let waiting = |keys: Vec<(Option<&RunId>, &TaskId)>| {
        let shown = state.run().and_then(|run| run.run_id.as_ref());
        let mut tasks: Vec<String> = Vec::new();
        let (first, rest): (Vec<_>, Vec<_>) = keys.into_iter().partition(|(run, _)| *run == shown);
        for (_, task) in first.into_iter().chain(rest) {
            if !tasks.iter().any(|known| known == task.as_str()) {
                tasks.push(task.to_string());
            }
        }
        tasks
    };
    match (command, position) {
        (_, 0) => COMMANDS.iter().map(|spec| spec.name.to_owned()).collect(),
        (Some("run"), 1) => state.workflow_files.clone(),
        (Some("resume"), 1) => state
            .run_entries()
            .into_iter()
            .filter(|entry| entry.status == "interrupted")
            .map(|entry| entry.id.to_string())
            .collect(),
        (Some("cancel"), 1) => shown_tasks(|status| !status.is_final()),
        (Some("retry"), 1) => shown_tasks(|status| {
            matches!(status, TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled)
        }),
        (Some("approve" | "reject"), 1) => {
            waiting(state.approvals.keys().map(|(run, task)| (run.as_ref(), task)).collect())
        }
        (Some("resolve"), 1) => {
            waiting(state.conflicts.waiting.keys().map(|(run, task)| (Some(run), task)).collect())
        }
        (Some("reset" | "open" | "spawn"), 1) => {
            let mut agents: Vec<String> = state.agents.entries.keys().cloned().collect();
            for agent in state.breakers.breakers.keys() {
                if !agents.iter().any(|known| known == agent.as_str()) {
                    agents.push(agent.to_string());
                }
            }
            agents.sort();
            agents
        }
        (Some("release"), 1) => state.pool.instances.keys().map(ToString::to_string).collect(),
        (Some("theme"), 1) => {
            crate::console::theme::BUNDLED.iter().map(|(name, _)| (*name).to_owned()).collect()
        }
        _ => Vec::new(),
    }
}

/// The project's workflow files for `run`: YAML files in `workflows/` (and one folder
/// below), as paths from the project folder, sorted.
pub fn workflow_files(project_dir: &std::path::Path) -> Vec<String> {
    fn yaml_in(dir: &std::path::Path, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if depth > 0 {
                    yaml_in(&path, depth - 1, found);
                }
            } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    yaml_in(&project_dir.join("workflows"), 1, &mut found);
    let mut files: Vec<String> = found
        .iter()
        .filter_map(|path| path.strip_prefix(project_dir).ok())
        .filter_map(|path| path.to_str().map(str::to_owned))
        .collect();
    files.sort();
    files
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

    /// Tab on `text` (cursor at `cursor`, or at the end): the line it makes.
    fn tab(state: &State, text: &str, cursor: Option<usize>) -> CommandLine {
        let mut line = CommandLine::with_text(text);
        if let Some(cursor) = cursor {
            line.cursor = cursor;
        }
        complete(&line, state)
    }

    #[rstest]
    #[case::a_command("ca", "cancel ")]
    #[case::a_task("cancel b", "cancel build ")]
    #[case::a_task_without_case("cancel BU", "cancel build ")]
    #[case::only_a_task_the_command_takes("retry b", "retry b")]
    #[case::an_agent("spawn back", "spawn backend-architect ")]
    #[case::a_theme("theme hi", "theme high-contrast ")]
    #[case::a_workflow_by_its_name("run rel", "run workflows/release.yaml ")]
    #[case::as_far_as_they_agree("run w", "run workflows/")]
    #[case::nothing_matches("cancel zzz", "cancel zzz")]
    #[case::no_argument_there("reload x", "reload x")]
    fn tab_completes_the_word_before_the_cursor(#[case] text: &str, #[case] completed: &str) {
        let mut state = state_with_run();
        state.workflow_files = vec!["workflows/demo.yaml".into(), "workflows/release.yaml".into()];
        let line = tab(&state, text, None);
        assert_eq!((line.text.as_str(), line.cursor), (completed, completed.chars().count()));
        assert!(line.choices.is_empty(), "{:?}", line.choices);
    }

    /// Candidates that differ past the typed word are offered, not chosen; the line stays.
    #[test]
    fn tab_offers_the_candidates_where_they_differ() {
        let mut state = state_with_run();
        state.workflow_files = vec!["workflows/demo.yaml".into(), "workflows/release.yaml".into()];
        let line = tab(&state, "run workflows/", None);
        assert_eq!(line.text, "run workflows/");
        assert_eq!(line.choices, ["workflows/demo.yaml", "workflows/release.yaml"]);
        let line = tab(&state, "re", None);
        assert_eq!(line.text, "re");
        assert_eq!(
            line.choices,
            ["resume", "retry", "resolve", "reject", "reset", "release", "reload"]
        );
        // Typing clears what was offered.
        let mut typed = line;
        typed.edit(super::super::state::LineEdit::Insert('l'));
        assert!(typed.choices.is_empty());
        // Many: the first few and how many more.
        state.workflow_files = (0..12).map(|i| format!("workflows/w{i:02}.yaml")).collect();
        let line = tab(&state, "run w", None);
        assert_eq!(line.text, "run workflows/w");
        let line = tab(&state, "run workflows/w", None);
        assert_eq!(line.choices.len(), SHOWN_CHOICES + 1);
        assert_eq!(line.choices.last().map(String::as_str), Some("+4 more"));
    }

    /// `resume` offers the store's interrupted runs, not its finished ones.
    #[test]
    fn tab_offers_interrupted_runs_to_resume() {
        let mut state = state_with_run();
        let row = |id: &str, run_state| crate::console::state::RunRow {
            workflow: "nightly".into(),
            tasks: 3,
            ..crate::console::state::RunRow::sample(id, run_state)
        };
        state.runs_list.stored = vec![
            row("r20261207-aa", crate::console::state::RunState::Interrupted),
            row("r20261207-ab", crate::console::state::RunState::Succeeded),
        ];
        let line = tab(&state, "resume r2", None);
        assert_eq!(line.text, "resume r20261207-aa ");
    }

    /// The word before the cursor is completed and what follows it is kept.
    #[test]
    fn tab_in_the_middle_keeps_the_rest() {
        let state = state_with_run();
        let line = tab(&state, "can build", Some(3));
        assert_eq!((line.text.as_str(), line.cursor), ("cancel build", 6));
    }

    /// The project's workflow files, as paths from the project, one folder deep.
    #[test]
    fn workflow_files_lists_yaml_in_workflows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let workflows = dir.path().join("workflows");
        std::fs::create_dir_all(workflows.join("team/deeper")).expect("folders");
        for file in ["b.yaml", "a.yml", "notes.md", "team/c.yaml", "team/deeper/d.yaml"] {
            std::fs::write(workflows.join(file), "").expect("file");
        }
        assert_eq!(
            workflow_files(dir.path()),
            ["workflows/a.yml", "workflows/b.yaml", "workflows/team/c.yaml"]
        );
        assert!(workflow_files(&dir.path().join("missing")).is_empty());
    }
}
