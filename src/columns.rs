//! A plan in columns: the tasks' `id`s and `description`s each as one text with the length
//! of each part (a reader parses two strings, not two per task), and the columns whose
//! values repeat task after task (a fan-out's tasks share their agent, dependencies, layer
//! and limits) as runs of equal values `[[value, how many], …]`; a task's `agent` is a
//! position in `agents`, its `depends_on` positions in its plan. A 10,000-task fan-out's
//! plan is an eighth the size of the list of its tasks and reads several times faster.
//!
//! Written borrowing the plan's texts, read borrowing the line. A console feed's digest
//! carries a large run's start this way ([`StartedRun`]), and the run store keeps a large
//! `run_started` line this way (`store::encode`).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt as _};
use serde::de::Error as _;
use serde::{Deserialize, Serialize};

use crate::event::{Envelope, Event, PlannedTask};
use crate::ids::{AgentId, RunId, TaskId};

/// Plans of more tasks than this are written in columns; a smaller one is written as the
/// list of its tasks, which anyone can read.
pub(crate) const COLUMNS_ABOVE: usize = 256;

/// A `run_started` event with its plan in columns.
#[derive(Serialize, Deserialize)]
pub(crate) struct StartedRun<'a> {
    seq: u64,
    ts_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<Cow<'a, RunId>>,
    workflow: Cow<'a, str>,
    file: Cow<'a, Path>,
    goal: Option<Cow<'a, str>>,
    max_parallel: usize,
    fail_fast: bool,
    simulated: bool,
    #[serde(borrow)]
    agents: Vec<Text<'a>>,
    #[serde(borrow)]
    tasks: Columns<'a>,
}

/// The columns of a plan's tasks.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct Columns<'a> {
    #[serde(borrow)]
    id: Texts<'a>,
    #[serde(borrow)]
    description: Texts<'a>,
    agent: Runs<usize>,
    score: Runs<Option<f64>>,
    depends_on: Runs<Vec<usize>>,
    layer: Runs<usize>,
    timeout_ms: Runs<u64>,
    retries: Runs<u32>,
}

/// A text of the plan, borrowed from the line unless it holds an escape (a plain
/// `Cow<str>` in a list is always read as an owned copy).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A column of texts as one text and each one's length in bytes (runs of equal lengths):
/// `{"text":"t0t1t2…","len":[[2,10],[3,90],…]}`. A reader parses one string instead of
/// one per task, and borrows it from the line unless it holds an escape.
#[derive(Serialize, Deserialize, Default)]
struct Texts<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
    len: Runs<usize>,
}

impl Texts<'_> {
    fn push(&mut self, text: &str) {
        self.text.to_mut().push_str(text);
        self.len.push(text.len());
    }

    /// Each text in turn; `None` where the lengths do not add up to `n` texts that cut
    /// the text at character boundaries.
    fn split(&self, n: usize) -> Option<Vec<&str>> {
        let mut lens = Cursor::new(&self.len.0, n)?;
        let mut rest: &str = &self.text;
        let mut texts = Vec::with_capacity(n);
        while let Some(len) = lens.next() {
            let (text, after) = rest.split_at_checked(*len)?;
            texts.push(text);
            rest = after;
        }
        rest.is_empty().then_some(texts)
    }
}

/// A column as runs of equal values: `[[value, how many], …]`.
#[derive(Serialize, Deserialize)]
struct Runs<T>(Vec<(T, usize)>);

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Runs<T> {
    /// How many values the runs hold (`None` past `usize`).
    fn total(&self) -> Option<usize> {
        total(&self.0)
    }
}

/// How many values `runs` hold (`None` past `usize`).
fn total<T>(runs: &[(T, usize)]) -> Option<usize> {
    runs.iter().try_fold(0_usize, |sum, (_, count)| sum.checked_add(*count))
}

impl<T: PartialEq> Runs<T> {
    fn push(&mut self, value: T) {
        match self.0.last_mut() {
            Some((last, count)) if *last == value => *count += 1,
            _ => self.0.push((value, 1)),
        }
    }
}

/// A column's runs read value by value, each as many times as it runs.
struct Cursor<'r, T> {
    runs: std::slice::Iter<'r, (T, usize)>,
    value: Option<&'r T>,
    left: usize,
}

impl<'r, T> Cursor<'r, T> {
    /// A cursor over `runs`, which must hold `n` values in all (else `None`).
    fn new(runs: &'r [(T, usize)], n: usize) -> Option<Self> {
        (total(runs) == Some(n)).then(|| Self { runs: runs.iter(), value: None, left: 0 })
    }

    fn next(&mut self) -> Option<&'r T> {
        while self.left == 0 {
            let (value, count) = self.runs.next()?;
            self.value = Some(value);
            self.left = *count;
        }
        self.left -= 1;
        self.value
    }
}

impl<'a> StartedRun<'a> {
    /// A run start's plan in columns, borrowing the event; `None` for any other event, or a
    /// plan that names a dependency it does not hold (sent whole, then).
    pub(crate) fn of(envelope: &'a Envelope) -> Option<Self> {
        let Event::RunStarted { workflow, file, goal, max_parallel, fail_fast, simulated, tasks } =
            &envelope.event
        else {
            return None;
        };
        let (agents, columns) = columns_of(tasks)?;
        Some(Self {
            seq: envelope.seq,
            ts_ms: envelope.ts_ms,
            run_id: envelope.run_id.as_ref().map(Cow::Borrowed),
            workflow: Cow::Borrowed(workflow),
            file: Cow::Borrowed(file),
            goal: goal.as_deref().map(Cow::Borrowed),
            max_parallel: *max_parallel,
            fail_fast: *fail_fast,
            simulated: *simulated,
            agents,
            tasks: columns,
        })
    }

    /// The `run_started` event it stands for.
    pub(crate) fn into_envelope(self) -> serde_json::Result<Envelope> {
        let Self {
            seq,
            ts_ms,
            run_id,
            workflow,
            file,
            goal,
            max_parallel,
            fail_fast,
            simulated,
            agents,
            tasks,
        } = self;
        let planned = tasks_of(&agents, tasks)?;
        Ok(Envelope {
            seq,
            ts_ms,
            run_id: run_id.map(Cow::into_owned),
            event: Event::RunStarted {
                workflow: workflow.into_owned(),
                file: file.into_owned(),
                goal: goal.map(Cow::into_owned),
                max_parallel,
                fail_fast,
                simulated,
                tasks: planned,
            },
        })
    }
}

/// A plan's tasks in columns, and the agents they name, borrowing the tasks; `None` when a
/// task depends on one the plan does not hold (such a plan is written whole).
pub(crate) fn columns_of(tasks: &[PlannedTask]) -> Option<(Vec<Text<'_>>, Columns<'_>)> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    index.extend(tasks.iter().enumerate().map(|(at, task)| (task.task.as_str(), at)));
    let mut agents: Vec<Text<'_>> = Vec::new();
    let mut columns = Columns::default();
    for task in tasks {
        let name = task.agent.as_str();
        let agent = if let Some(at) = agents.iter().position(|known| known.0 == name) {
            at
        } else {
            agents.push(Text(Cow::Borrowed(name)));
            agents.len() - 1
        };
        let depends_on: Option<Vec<usize>> =
            task.depends_on.iter().map(|dep| index.get(dep.as_str()).copied()).collect();
        columns.id.push(task.task.as_str());
        columns.description.push(&task.description);
        columns.agent.push(agent);
        columns.score.push(task.score);
        columns.depends_on.push(depends_on?);
        columns.layer.push(task.layer);
        columns.timeout_ms.push(task.timeout_ms);
        columns.retries.push(task.retries);
    }
    Some((agents, columns))
}

/// The planned tasks `columns` stand for, naming `agents`; an error names what does not
/// add up.
pub(crate) fn tasks_of(
    agents: &[Text<'_>],
    columns: Columns<'_>,
) -> serde_json::Result<Vec<PlannedTask>> {
    let tasks = columns;
    let Columns { id, description, agent, score, depends_on, layer, timeout_ms, retries } = tasks;
    let bad = |what: &str| serde_json::Error::custom(format!("a run's plan: {what}"));
    let differ = || bad("its columns differ in length");
    let n = id.len.total().ok_or_else(differ)?;
    if description.len.total() != Some(n) {
        return Err(differ());
    }
    let misfit = || bad("a text's length does not fit its column");
    let descriptions = description.split(n).ok_or_else(misfit)?;
    let agents: Vec<AgentId> = agents.iter().map(|name| AgentId::new(&name.0)).collect();
    let ids: Vec<TaskId> = id.split(n).ok_or_else(misfit)?.into_iter().map(TaskId::new).collect();
    // Each run of equal dependencies named once, and shared by its tasks.
    let depends_on = depends_on
        .0
        .iter()
        .map(|(deps, count)| {
            let deps: Option<Arc<[TaskId]>> =
                deps.iter().map(|dep| ids.get(*dep).cloned()).collect();
            deps.map(|deps| (deps, *count))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("a dependency out of range"))?;
    let agent = agent
        .0
        .iter()
        .map(|(at, count)| agents.get(*at).map(|agent| (agent.clone(), *count)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("an agent out of range"))?;
    let mut agent = Cursor::new(&agent, n).ok_or_else(differ)?;
    let mut score = Cursor::new(&score.0, n).ok_or_else(differ)?;
    let mut depends_on = Cursor::new(&depends_on, n).ok_or_else(differ)?;
    let mut layer = Cursor::new(&layer.0, n).ok_or_else(differ)?;
    let mut timeout_ms = Cursor::new(&timeout_ms.0, n).ok_or_else(differ)?;
    let mut retries = Cursor::new(&retries.0, n).ok_or_else(differ)?;
    let mut planned = Vec::with_capacity(n);
    for (task, description) in ids.into_iter().zip(descriptions) {
        // Each cursor holds `n` values, and this asks each for `n`.
        let (
            Some(agent),
            Some(score),
            Some(depends_on),
            Some(layer),
            Some(timeout_ms),
            Some(retries),
        ) = (
            agent.next(),
            score.next(),
            depends_on.next(),
            layer.next(),
            timeout_ms.next(),
            retries.next(),
        )
        else {
            return Err(differ());
        };
        planned.push(PlannedTask {
            task,
            description: Arc::from(description),
            agent: agent.clone(),
            score: *score,
            depends_on: depends_on.clone(),
            layer: *layer,
            timeout_ms: *timeout_ms,
            retries: *retries,
        });
    }
    Ok(planned)
}
