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
        let mut cursor = 0;
        let mut found = Vec::new();
        for id in ids {
            let hit = (cursor..self.lines.len())
                .find(|&i| key_value(self.lines[i], "id").is_some_and(|v| v == id));
            match hit {
                Some(i) => {
                    found.push(i + 1);
                    cursor = i + 1;
                }
                None => found.push(cursor.max(1)),
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
