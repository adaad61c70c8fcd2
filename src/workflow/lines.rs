//! Line numbers for semantic errors. `serde_norway` reports locations only for syntax errors, so
//! the text is scanned for the `id:` line of each task (in document order, with a cursor so
//! duplicate ids map to their own occurrence) and for field keys inside a task's block.

/// 1-based line numbers of the source text.
pub(crate) struct SourceLines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> SourceLines<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { lines: text.lines().collect() }
    }

    /// The line of each task's `id:` key, for ids given in document order. Unfound ids get the
    /// line of the previous one (or 1), which still points near the problem.
    pub(crate) fn task_lines<'i>(&self, ids: impl IntoIterator<Item = &'i str>) -> Vec<usize> {
        let candidates = self.id_lines();
        let mut cursor = 0;
        let mut found = Vec::new();
        for id in ids {
            let hit = candidates[cursor..].iter().position(|&(_, value)| value == id);
            match hit {
                Some(offset) => {
                    found.push(candidates[cursor + offset].0 + 1);
                    cursor += offset + 1;
                }
                None => found.push(found.last().copied().unwrap_or(1)),
            }
        }
        found
    }

    /// The lines (0-based) that can hold a task's `id:`, with its value. Tasks are the list
    /// items at the least indentation of any item opening with a task key; an `id:` counts on
    /// such an item's first line or at its keys' column, so one nested in a `context` does not.
    fn id_lines(&self) -> Vec<(usize, &'a str)> {
        let task_indent = self
            .lines
            .iter()
            .filter_map(|line| {
                let (indent, rest) = list_item(line)?;
                let rest = rest.trim_start_matches('{').trim_start();
                TASK_KEYS
                    .iter()
                    .any(|key| rest.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
                    .then_some(indent)
            })
            .min();
        let mut key_column = None;
        let mut found = Vec::new();
        for (i, &line) in self.lines.iter().enumerate() {
            let item = list_item(line);
            let opens_task = matches!((task_indent, item), (Some(t), Some((dash, _))) if dash == t);
            if opens_task {
                key_column = item.map(|(_, rest)| line.len() - rest.len());
            }
            let Some(value) = key_value(line, "id") else { continue };
            let indent = line.len() - line.trim_start().len();
            let task_level = task_indent.is_none()
                || opens_task
                || (item.is_none() && Some(indent) == key_column);
            if task_level {
                found.push((i, value));
            }
        }
        found
    }

    /// The first line in `from..to` (1-based, `to` exclusive) holding `key:`.
    pub(crate) fn key_line(&self, key: &str, from: usize, to: usize) -> Option<usize> {
        self.scan(from, to, |line| key_value(line, key).is_some())
    }

    /// The first line in `from..to` containing `needle` as a whole word.
    pub(crate) fn word_line(&self, needle: &str, from: usize, to: usize) -> Option<usize> {
        self.scan(from, to, |line| contains_word(line, needle))
    }

    /// The line of a top-level key (no indentation).
    pub(crate) fn top_level_line(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|line| {
                line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
            .map(|i| i + 1)
    }

    /// One past the last line.
    pub(crate) fn end(&self) -> usize {
        self.lines.len() + 1
    }

    fn scan(&self, from: usize, to: usize, hit: impl Fn(&str) -> bool) -> Option<usize> {
        let start = from.saturating_sub(1);
        let stop = to.saturating_sub(1).min(self.lines.len());
        (start..stop).find(|&i| hit(self.lines[i])).map(|i| i + 1)
    }
}

/// Keys that open a task's mapping.
const TASK_KEYS: [&str; 6] = ["id", "description", "agent", "depends_on", "timeout", "context"];

/// A list item's dash indentation and what follows the dash and its spaces.
fn list_item(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    let rest = trimmed.strip_prefix('-')?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some((line.len() - trimmed.len(), rest.trim_start()))
}

/// The value after `key:` on a line, in block (`  key: v`, `- key: v`) or flow
/// (`{a: 1, key: v}`) style, without quotes or a trailing comment.
fn key_value<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let pattern_len = key.len() + 1;
    for (pos, _) in line.match_indices(key) {
        let after = &line[pos + key.len()..];
        if !after.starts_with(':') {
            continue;
        }
        let before = line[..pos].chars().next_back();
        if !matches!(before, None | Some(' ' | '\t' | '{' | ',' | '-')) {
            continue;
        }
        let prefix = line[..pos].trim();
        if !(prefix.is_empty() || prefix == "-" || prefix.contains('{')) {
            continue;
        }
        let rest = line[pos + pattern_len..].trim_start();
        let end = rest.find([',', '}', '#']).unwrap_or(rest.len());
        return Some(rest[..end].trim().trim_matches('"').trim_matches('\''));
    }
    None
}

fn contains_word(line: &str, word: &str) -> bool {
    let is_id_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    line.match_indices(word).any(|(pos, _)| {
        let before = line[..pos].chars().next_back();
        let after = line[pos + word.len()..].chars().next();
        !before.is_some_and(is_id_char) && !after.is_some_and(is_id_char)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_in_block_and_flow_style() {
        let text =
            "tasks:\n  - id: a\n    description: x\n  - {id: \"b\", description: y}\n  - id: a\n";
        let lines = SourceLines::new(text);
        assert_eq!(lines.task_lines(["a", "b", "a"]), vec![2, 4, 5]);
    }

    #[test]
    fn ids_nested_in_a_context_are_not_tasks() {
        let text = "tasks:\n  - id: a\n    context:\n      id: b\n      items:\n        - id: b\n  \
                    - description: second\n    id: b\n";
        let lines = SourceLines::new(text);
        assert_eq!(lines.task_lines(["a", "b"]), vec![2, 8]);
    }

    #[test]
    fn stage_tasks_are_found_under_their_stage() {
        let text = "stages:\n  - name: one\n    tasks:\n      - id: a\n      - id: b\n";
        let lines = SourceLines::new(text);
        assert_eq!(lines.task_lines(["a", "b"]), vec![4, 5]);
    }

    #[test]
    fn key_lines_stay_inside_the_block() {
        let text = "tasks:\n  - id: a\n    timeout: soon\n  - id: b\n    depends_on: [a, zz]\n";
        let lines = SourceLines::new(text);
        assert_eq!(lines.key_line("timeout", 2, 4), Some(3));
        assert_eq!(lines.key_line("timeout", 4, lines.end()), None);
        assert_eq!(lines.word_line("zz", 4, lines.end()), Some(5));
        assert_eq!(lines.word_line("z", 4, lines.end()), None);
        assert_eq!(lines.top_level_line("tasks"), Some(1));
    }
}
