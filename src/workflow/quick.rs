//! A fast reader for the plain shape most workflow files have, beside `serde_norway`.
//!
//! `serde_norway` loads every event of a document into memory before deserializing it: at
//! 100,000 tasks that is 200 MB and most of the time `flightdeck run` spends before the first
//! task starts. Files written the usual way — top-level `name`, `goal`, `max_parallel`,
//! `fail_fast`, then `tasks:` as a block list of `key: value` lines, `depends_on` as a
//! one-line `[a, b]` — are read here line by line instead.
//!
//! It is deliberately narrow: anything it is not sure about (quotes, comments after a value,
//! multi-line or nested values, `context`, `stages`, anchors, tabs, a value YAML could read
//! as a number, bool or null, an unknown or repeated key, a missing field) makes it give up,
//! and the file is read by `serde_norway` as before, with its error messages. So whatever it
//! accepts, it reads exactly as `serde_norway` would (see the tests).

use super::model::{RawTask, RawWorkflow};

/// A workflow read from the plain shape, with the 1-based line of each task's `id:` (the
/// line-number pass of [`super::lines`] would find the same ones).
#[derive(Debug, PartialEq)]
pub(super) struct Quick {
    pub(super) raw: RawWorkflow,
    pub(super) id_lines: Vec<usize>,
}

/// The workflow, when the text has the plain shape; `None` to let `serde_norway` read it.
pub(super) fn parse(text: &str) -> Option<Quick> {
    if text.contains(['\t', '\r', '\u{feff}']) {
        return None;
    }
    let mut workflow = RawWorkflow::default();
    let mut fail_fast_seen = false;
    let mut id_lines = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !is_blank_or_comment(line))
        .peekable();
    while let Some((_, line)) = lines.next() {
        let (key, value) = key_value(line)?;
        match key {
            "name" if workflow.name.is_none() => workflow.name = Some(string(value)?),
            "goal" if workflow.goal.is_none() => workflow.goal = Some(string(value)?),
            "max_parallel" if workflow.max_parallel.is_none() => {
                workflow.max_parallel = Some(integer(value)?);
            }
            "fail_fast" if !fail_fast_seen => {
                workflow.fail_fast = boolean(value)?;
                fail_fast_seen = true;
            }
            "tasks" if workflow.tasks.is_none() && value.is_empty() => {
                workflow.tasks = Some(tasks(&mut lines, &mut id_lines, text.len())?);
            }
            _ => return None,
        }
    }
    workflow.tasks.is_some().then_some(Quick { raw: workflow, id_lines })
}

/// The block list under `tasks:`, up to the next top-level key; each task's `id:` line is
/// added to `id_lines`. `size` is the whole text's length: room for as many tasks as the
/// first one's size says it holds is taken at once (a generated file of 100,000 tasks would
/// otherwise move its tasks 17 times as the list doubles, 50 MB of copies).
fn tasks<'a>(
    lines: &mut std::iter::Peekable<impl Iterator<Item = (usize, &'a str)>>,
    id_lines: &mut Vec<usize>,
    size: usize,
) -> Option<Vec<RawTask>> {
    let mut tasks = Vec::new();
    let mut dash = None;
    while let Some(&(number, line)) = lines.peek() {
        let indent = indentation(line);
        let rest = &line[indent..];
        let Some(first) = rest.strip_prefix("- ") else {
            // A top-level key ends the list; anything else is not the plain shape.
            return (indent == 0 && !tasks.is_empty()).then_some(tasks);
        };
        if *dash.get_or_insert(indent) != indent {
            return None;
        }
        lines.next();
        if first.starts_with(' ') {
            return None;
        }
        let keys = indent + 2;
        let mut task = Fields::default();
        task.set(first, number)?;
        let mut bytes = line.len() + 1;
        while let Some(&(number, next)) = lines.peek() {
            let next_indent = indentation(next);
            if next_indent < keys {
                break;
            }
            if next_indent > keys {
                return None;
            }
            task.set(&next[keys..], number)?;
            bytes += next.len() + 1;
            lines.next();
        }
        if tasks.is_empty() {
            let room = size / bytes;
            tasks.reserve(room);
            id_lines.reserve(room);
        }
        id_lines.push(task.id_line);
        tasks.push(task.finish()?);
    }
    (!tasks.is_empty()).then_some(tasks)
}

/// The keys of one task as they are read.
#[derive(Default)]
struct Fields {
    id: Option<String>,
    description: Option<String>,
    agent: Option<String>,
    depends_on: Option<Vec<String>>,
    timeout: Option<String>,
    retries: Option<u32>,
    id_line: usize,
}

impl Fields {
    /// Read one `key: value` line (number `number`) of the task; `None` for a key it does
    /// not take.
    fn set(&mut self, line: &str, number: usize) -> Option<()> {
        let (key, value) = key_value(line)?;
        match key {
            "id" if self.id.is_none() => {
                self.id = Some(string(value)?);
                self.id_line = number;
            }
            "description" if self.description.is_none() => {
                self.description = Some(string(value)?);
            }
            "agent" if self.agent.is_none() => self.agent = Some(string(value)?),
            "depends_on" if self.depends_on.is_none() => self.depends_on = Some(list(value)?),
            "timeout" if self.timeout.is_none() => self.timeout = Some(duration(value)?),
            "retries" if self.retries.is_none() => {
                self.retries = Some(u32::try_from(integer(value)?).ok()?);
            }
            _ => return None,
        }
        Some(())
    }

    fn finish(self) -> Option<RawTask> {
        Some(RawTask {
            id: self.id?,
            description: self.description?,
            agent: self.agent,
            depends_on: self.depends_on.unwrap_or_default(),
            timeout: self.timeout,
            retries: self.retries,
            ..RawTask::default()
        })
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let trimmed = line.trim_start_matches(' ');
    trimmed.is_empty() || trimmed.starts_with('#')
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `key: value` or `key:` at the start of `line` (no indentation), value trimmed.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    if !(value.is_empty() || value.starts_with(' ')) {
        return None;
    }
    Some((key, value.trim_matches(' ')))
}

/// A plain scalar that YAML can only read as this very string.
fn string(value: &str) -> Option<String> {
    is_plain_string(value, false).then(|| value.to_owned())
}

/// Starts with a letter (so no indicator, number, `.inf` or `~`), holds no character that
/// could start a comment, a mapping or (in a flow list) the next item, and is not a word YAML
/// reads as null or a bool.
fn is_plain_string(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else { return false };
    let allowed = |c: char| {
        c.is_alphanumeric()
            || matches!(c, ' ' | '_' | '-' | '.' | '/' | '(' | ')' | '\'' | ';' | '?' | '!' | '=')
            || (!in_flow && c == ',')
    };
    first.is_alphabetic()
        && value.chars().all(allowed)
        && !matches!(
            value,
            "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
        )
}

/// `[a, b]` on one line, or `[]`.
fn list(value: &str) -> Option<Vec<String>> {
    let inner = value.strip_prefix('[')?.strip_suffix(']')?.trim_matches(' ');
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|item| {
            let item = item.trim_matches(' ');
            is_plain_string(item, true).then(|| item.to_owned())
        })
        .collect()
}

/// A whole number written plainly: `0`, `12`, `-3` (no sign on zero, no leading zeros).
fn integer(value: &str) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && digits.len() == value.len() || !digits.starts_with('0'));
    if plain { value.parse().ok() } else { None }
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A timeout as text, the way the model keeps it: a plain string (`never`), a whole number
/// (`30`, which the model then refuses for lacking a unit) or digits and a unit (`45s`, `2m`;
/// a unit starting with `e`, `x`, `o` or `b` could make a number and is left to YAML).
fn duration(value: &str) -> Option<String> {
    if is_plain_string(value, false) || integer(value).is_some_and(|n| n >= 0) {
        return Some(value.to_owned());
    }
    let unit_at = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(unit_at);
    let plain = integer(number).is_some_and(|n| n >= 0)
        && unit.bytes().all(|b| b.is_ascii_lowercase())
        && !unit.starts_with(['e', 'x', 'o', 'b']);
    plain.then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::lines::SourceLines;

    /// What `serde_norway` reads from the same text.
    fn by_yaml(text: &str) -> RawWorkflow {
        serde_norway::from_str(text).expect("valid YAML")
    }

    fn same_as_yaml(text: &str) {
        let quick = parse(text).unwrap_or_else(|| panic!("not taken:\n{text}"));
        assert_eq!(quick.raw, by_yaml(text), "{text}");
        let tasks = quick.raw.tasks.iter().flatten();
        let by_scan = SourceLines::new(text).task_lines(tasks.map(|t| t.id.as_str()));
        assert_eq!(quick.id_lines, by_scan, "{text}");
    }

    #[test]
    fn reads_the_plain_shape_as_yaml_does() {
        same_as_yaml(
            "name: release\ngoal: Ship the next version, soon\nmax_parallel: 3\nfail_fast: true\n\
             tasks:\n  - id: compile\n    description: Build it (all of it)\n    agent: builder\n    \
             timeout: 45s\n    retries: 2\n\n  # a comment line\n  - id: notes-1.2\n    \
             description: Draft the notes; don't forget docs/\n    depends_on: [compile]\n  \
             - id: review\n    description: Review\n    depends_on: [ compile , notes-1.2 ]\n    \
             timeout: never\n",
        );
        same_as_yaml("tasks:\n- id: a\n  description: x\n  depends_on: []\n  timeout: 30\n");
        same_as_yaml("tasks:\n  - id: a\n    description: x\nmax_parallel: -1\nname: late\n");
        same_as_yaml("tasks:\n  - description: first key is not the id\n    id: b\n");
    }

    #[test]
    fn leaves_everything_else_to_yaml() {
        let not_plain = [
            "tasks:\n  - id: a\n    description: \"quoted\"\n",
            "tasks:\n  - id: a\n    description: x # trailing comment\n",
            "tasks:\n  - id: a\n    description: key: value\n",
            "tasks:\n  - id: a\n    description: first\n      continued\n",
            "tasks:\n  - id: a\n    description: x\n    context: {since: v1}\n",
            "tasks:\n  - id: a\n    description: x\n    depends_on:\n      - b\n",
            "tasks:\n  - id: a\n    description: x\n    depends_on: [b,\n      c]\n",
            "tasks:\n  - id: 12\n    description: x\n",
            "tasks:\n  - id: a\n    description: true\n",
            "tasks:\n  - id: a\n    description: null\n",
            "tasks:\n  - id: a\n    description: x\n    retries: 010\n",
            "tasks:\n  - id: a\n    description: x\n    timeout: 1e3\n",
            "tasks:\n  - id: a\n    description: x\n    timeout: 0x10\n",
            "tasks:\n  - id: a\n    description: x\n    dependson: [b]\n",
            "tasks:\n  - id: a\n    id: b\n    description: x\n",
            "tasks:\n  - id: a\n",
            "tasks:\n  - id: a\n    description: x\nname: a\nname: b\n",
            "stages:\n  - name: one\n    tasks:\n      - id: a\n        description: x\n",
            "---\ntasks:\n  - id: a\n    description: x\n",
            "tasks:\n  - id: a\n    description: x\n   agent: misindented\n",
            "tasks:\n\t- id: a\n    description: x\n",
            "tasks:\r\n  - id: a\r\n    description: x\r\n",
            "tasks:\n  - &anchor id: a\n    description: x\n",
            "fail_fast: yes\ntasks:\n  - id: a\n    description: x\n",
            "tasks: []\n",
            "tasks:\n",
        ];
        for text in not_plain {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn the_bundled_and_fixture_workflows_read_as_yaml_does_or_are_left_to_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut taken = 0;
        for dir in ["workflows", "tests/fixtures/workflows"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("folder") {
                let path = entry.expect("entry").path();
                if path.extension().is_none_or(|e| e != "yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("readable");
                if parse(&text).is_some() {
                    taken += 1;
                    same_as_yaml(&text);
                }
            }
        }
        assert!(taken > 0, "no file of the plain shape among the workflows");
    }

    #[test]
    fn a_big_generated_file_reads_as_yaml_does() {
        use std::fmt::Write as _;
        let mut text = String::from("name: big\nmax_parallel: 8\ntasks:\n");
        for i in 0..2_000 {
            let _ = write!(text, "  - id: l{i}\n    description: step l{i}\n    agent: worker\n");
            if i > 0 {
                let _ = writeln!(text, "    depends_on: [l{}, l{}]", i - 1, i / 2);
            }
        }
        same_as_yaml(&text);
    }
}
