//! Splits a definition file into frontmatter and body, and reads the frontmatter into raw
//! fields: strictly as YAML when it is YAML, else line by line.
//!
//! The line-by-line reading exists for Claude Code subagent files whose unquoted
//! `description` holds `: ` (often inside `<example>` dialogue with literal `\n`), which
//! strict YAML rejects. There, only a known key at the very start of a line begins a field;
//! every other line continues the field above it.

use serde_norway::Value;

/// Keys that begin a field when reading line by line; also the fields a definition has.
pub const KNOWN_KEYS: &[&str] = &[
    "name",
    "description",
    "tier",
    "category",
    "triggers",
    "focus_areas",
    "tools",
    "model",
    "max_instances",
    "fallback",
    "backend",
    "version",
    "color",
];

/// Fields whose value is a list (a YAML list, or a comma-separated string).
const LIST_KEYS: &[&str] = &["triggers", "focus_areas", "tools"];

/// Frontmatter larger than this is refused before YAML sees it: no real definition comes
/// close, and it bounds the work an alias-heavy document can cause.
pub const MAX_FRONTMATTER_BYTES: usize = 64 * 1024;

/// A file cut at its frontmatter delimiters.
#[derive(Debug)]
pub struct Document<'a> {
    pub frontmatter: &'a str,
    /// 1-based line of the first frontmatter line (the one after the opening `---`).
    pub frontmatter_line: usize,
    pub body: &'a str,
    /// 1-based line of the first body line.
    pub body_line: usize,
}

/// Why a text is not a definition document.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    NoFrontmatter,
    Unclosed,
}

/// Cut `text` (already without BOM and with `\n` line ends) into frontmatter and body.
/// Only the first `---` pair counts, so `---` rules in the body stay in the body.
pub fn split(text: &str) -> Result<Document<'_>, SplitError> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().ok_or(SplitError::NoFrontmatter)?;
    if !is_delimiter(first) {
        return Err(SplitError::NoFrontmatter);
    }
    let start = first.len();
    let mut offset = start;
    let mut line_no = 1;
    for line in lines {
        line_no += 1;
        if is_delimiter(line) {
            return Ok(Document {
                frontmatter: &text[start..offset],
                frontmatter_line: 2,
                body: &text[offset + line.len()..],
                body_line: line_no + 1,
            });
        }
        offset += line.len();
    }
    Err(SplitError::Unclosed)
}

fn is_delimiter(line: &str) -> bool {
    line.trim_end() == "---"
}

/// A field value before it is given a type.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Text(String),
    List(Vec<String>),
    /// A value of a shape no field accepts, e.g. a nested mapping; holds its description.
    Unsupported(&'static str),
}

/// One `key: value` of the frontmatter.
#[derive(Debug, Clone, PartialEq)]
pub struct RawField {
    pub key: String,
    /// 1-based line in the file.
    pub line: usize,
    pub value: RawValue,
}

/// A problem found while reading the frontmatter, before fields get types.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNote {
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

/// The frontmatter read into fields.
#[derive(Debug, Default)]
pub struct RawFrontmatter {
    pub fields: Vec<RawField>,
    pub warnings: Vec<RawNote>,
    pub errors: Vec<RawNote>,
}

/// Read the frontmatter of `doc`: as YAML, else line by line with a warning.
pub fn read(doc: &Document<'_>) -> RawFrontmatter {
    let first_line = doc.frontmatter_line;
    if doc.frontmatter.len() > MAX_FRONTMATTER_BYTES {
        return only_error(
            first_line,
            format!(
                "{} bytes is too large; at most {MAX_FRONTMATTER_BYTES} bytes are allowed",
                doc.frontmatter.len()
            ),
        );
    }
    if let Some(line) = too_deep_at(doc.frontmatter) {
        return only_error(first_line + line, "YAML is nested too deeply".to_owned());
    }
    match serde_norway::from_str::<Value>(doc.frontmatter) {
        Ok(value) => from_yaml(value, doc),
        Err(error) => {
            let message = error.to_string();
            let line = error.location().map_or(first_line, |at| first_line + at.line() - 1);
            // Resource limits mean a hostile or broken document, not a Claude Code quirk.
            if message.contains("recursion limit exceeded") {
                return only_error(line, "YAML is nested too deeply".to_owned());
            }
            if message.contains("repetition limit exceeded") {
                return only_error(line, "YAML aliases expand too far (alias bomb)".to_owned());
            }
            let bare = message.split(" at line ").next().unwrap_or(&message).to_owned();
            let mut fallback = line_by_line(doc);
            if fallback.fields.is_empty() {
                return only_error(line, format!("not valid YAML: {bare}"));
            }
            // Name the field the YAML error falls in: usually an unquoted description.
            let field = fallback
                .fields
                .iter()
                .filter(|f| f.line <= line)
                .max_by_key(|f| f.line)
                .map(|f| f.key.clone());
            fallback.warnings.insert(
                0,
                RawNote {
                    line,
                    field,
                    message: format!(
                        "frontmatter is not strict YAML ({bare}); read line by line, where only a known key at the start of a line begins a field"
                    ),
                },
            );
            fallback
        }
    }
}

/// Deepest flow nesting (`[`, `{`) YAML is given. Deeper documents fail in the YAML
/// reader anyway, but only after it spent time proportional to the square of the depth;
/// counting brackets first keeps a hostile file cheap. Brackets inside quoted text count
/// too, which no real definition nests this deep.
const MAX_FLOW_DEPTH: usize = 128;

/// The 0-based line where flow nesting first exceeds [`MAX_FLOW_DEPTH`].
fn too_deep_at(text: &str) -> Option<usize> {
    let mut depth = 0_usize;
    let mut line = 0;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    None
}

fn only_error(line: usize, message: String) -> RawFrontmatter {
    RawFrontmatter {
        errors: vec![RawNote { line, field: None, message }],
        ..RawFrontmatter::default()
    }
}

fn from_yaml(value: Value, doc: &Document<'_>) -> RawFrontmatter {
    let mut out = RawFrontmatter::default();
    let mapping = match value {
        Value::Null => return out,
        Value::Mapping(mapping) => mapping,
        other => {
            let found = describe(&other);
            out.errors.push(RawNote {
                line: doc.frontmatter_line,
                field: None,
                message: format!("must be `key: value` fields, found {found}"),
            });
            return out;
        }
    };
    let lines = key_lines(doc);
    for (key, value) in mapping {
        let Value::String(key) = key else {
            out.warnings.push(RawNote {
                line: doc.frontmatter_line,
                field: None,
                message: format!("ignored a key that is {}, not text", describe(&key)),
            });
            continue;
        };
        let line = lines
            .iter()
            .find(|(name, _)| *name == key)
            .map_or(doc.frontmatter_line, |(_, line)| *line);
        let value = match value {
            Value::Sequence(items) => items
                .into_iter()
                .map(|item| scalar_text(&item))
                .collect::<Option<Vec<_>>>()
                .map_or(RawValue::Unsupported("a list holding nested values"), RawValue::List),
            other => scalar_text(&other)
                .map_or_else(|| RawValue::Unsupported(describe(&other)), RawValue::Text),
        };
        out.fields.push(RawField { key, line, value });
    }
    out
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::String(text) => Some(text.clone()),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The line of each top-level `key:` in the frontmatter, first occurrence first.
fn key_lines<'a>(doc: &Document<'a>) -> Vec<(&'a str, usize)> {
    doc.frontmatter
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let (key, _) = line.split_once(':')?;
            let plain = !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            plain.then_some((key, doc.frontmatter_line + index))
        })
        .collect()
}

/// A field being collected line by line.
struct Pending<'a> {
    key: &'a str,
    line: usize,
    first: &'a str,
    rest: Vec<&'a str>,
}

/// Read the frontmatter where only a known key at the start of a line begins a field.
fn line_by_line(doc: &Document<'_>) -> RawFrontmatter {
    let mut out = RawFrontmatter::default();
    let mut pending: Vec<Pending<'_>> = Vec::new();
    for (index, line) in doc.frontmatter.lines().enumerate() {
        let line_no = doc.frontmatter_line + index;
        if let Some((key, rest)) = known_key_at_start(line) {
            pending.push(Pending { key, line: line_no, first: rest.trim(), rest: Vec::new() });
        } else if let Some(current) = pending.last_mut() {
            current.rest.push(line);
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            out.warnings.push(RawNote {
                line: line_no,
                field: None,
                message: "text before the first field is ignored".to_owned(),
            });
        }
    }
    for field in pending {
        if let Some(earlier) = out.fields.iter().find(|f| f.key == field.key) {
            out.errors.push(RawNote {
                line: field.line,
                field: Some(field.key.to_owned()),
                message: format!("appears twice (first at line {})", earlier.line),
            });
            continue;
        }
        let value = if LIST_KEYS.contains(&field.key) {
            list_value(&field)
        } else {
            RawValue::Text(text_value(&field))
        };
        out.fields.push(RawField { key: field.key.to_owned(), line: field.line, value });
    }
    out
}

fn known_key_at_start(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once(':')?;
    let begins_value = rest.is_empty() || rest.starts_with([' ', '\t']);
    (begins_value && KNOWN_KEYS.contains(&key)).then_some((key, rest))
}

fn text_value(field: &Pending<'_>) -> String {
    if let Some(style) = block_style(field.first) {
        return block_text(&field.rest, style);
    }
    let mut text = unquote(field.first).to_owned();
    for line in &field.rest {
        let line = line.trim();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line);
    }
    // Claude Code files write `\n` meaning a line break inside one-line descriptions.
    text.replace("\\n", "\n").trim().to_owned()
}

fn list_value(field: &Pending<'_>) -> RawValue {
    let first = field.first;
    if first.is_empty() {
        let items: Vec<String> = field
            .rest
            .iter()
            .map(|line| line.trim())
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| unquote(line.strip_prefix('-').unwrap_or(line).trim()).to_owned())
            .collect();
        return RawValue::List(items);
    }
    if let Some(inner) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return RawValue::List(
            inner.split(',').map(|item| unquote(item.trim()).to_owned()).collect(),
        );
    }
    let mut text = first.to_owned();
    for line in &field.rest {
        text.push(' ');
        text.push_str(line.trim());
    }
    RawValue::Text(unquote(text.trim()).to_owned())
}

#[derive(Clone, Copy)]
enum BlockStyle {
    Literal,
    Folded,
}

fn block_style(first: &str) -> Option<BlockStyle> {
    let indicator = first.split_whitespace().next()?;
    let rest_ok = |s: &str| s.chars().all(|c| c == '-' || c == '+' || c.is_ascii_digit());
    if let Some(rest) = indicator.strip_prefix('|') {
        return rest_ok(rest).then_some(BlockStyle::Literal);
    }
    if let Some(rest) = indicator.strip_prefix('>') {
        return rest_ok(rest).then_some(BlockStyle::Folded);
    }
    None
}

fn block_text(lines: &[&str], style: BlockStyle) -> String {
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let dedented = lines.iter().map(|line| line.get(indent..).unwrap_or("").trim_end());
    let text = match style {
        BlockStyle::Literal => dedented.collect::<Vec<_>>().join("\n"),
        BlockStyle::Folded => {
            let mut folded = String::new();
            for line in dedented {
                if line.is_empty() {
                    folded.push('\n');
                } else {
                    if !folded.is_empty() && !folded.ends_with('\n') {
                        folded.push(' ');
                    }
                    folded.push_str(line);
                }
            }
            folded
        }
    };
    text.trim().to_owned()
}

fn unquote(text: &str) -> &str {
    for quote in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(quote) && text.ends_with(quote) {
            return &text[1..text.len() - 1];
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn field<'a>(raw: &'a RawFrontmatter, key: &str) -> &'a RawField {
        raw.fields.iter().find(|f| f.key == key).unwrap()
    }

    #[test]
    fn split_keeps_body_rules() {
        let doc = split("---\nname: a\n---\nbody\n---\nmore\n").unwrap();
        assert_eq!(doc.frontmatter, "name: a\n");
        assert_eq!(doc.body, "body\n---\nmore\n");
        assert_eq!(doc.body_line, 4);
    }

    #[test]
    fn split_errors() {
        assert_eq!(split("# title\n").unwrap_err(), SplitError::NoFrontmatter);
        assert_eq!(split("").unwrap_err(), SplitError::NoFrontmatter);
        assert_eq!(split("---\nname: a\n").unwrap_err(), SplitError::Unclosed);
    }

    #[test]
    fn strict_yaml_reads_lists_and_lines() {
        let doc = split("---\nname: a\ntools:\n  - Read\n  - Bash\ntier: 1\n---\nx").unwrap();
        let raw = read(&doc);
        assert!(raw.warnings.is_empty() && raw.errors.is_empty());
        assert_eq!(field(&raw, "tools").value, RawValue::List(vec!["Read".into(), "Bash".into()]));
        assert_eq!(field(&raw, "tools").line, 3);
        assert_eq!(field(&raw, "tier").value, RawValue::Text("1".into()));
        assert_eq!(field(&raw, "tier").line, 6);
    }

    #[test]
    fn colon_in_description_falls_back_to_lines() {
        let text = "---\nname: helper\ndescription: Use when: things happen.\\n\\n<example>\nuser: \"hi\"\n</example>\ntools: Read, Grep\n---\nbody";
        let doc = split(text).unwrap();
        let raw = read(&doc);
        assert!(raw.errors.is_empty(), "{:?}", raw.errors);
        assert_eq!(raw.warnings.len(), 1);
        assert!(raw.warnings[0].message.contains("not strict YAML"));
        assert_eq!(
            field(&raw, "description").value,
            RawValue::Text(
                "Use when: things happen.\n\n<example>\nuser: \"hi\"\n</example>".into()
            )
        );
        assert_eq!(field(&raw, "tools").value, RawValue::Text("Read, Grep".into()));
        assert_eq!(field(&raw, "tools").line, 6);
    }

    #[test]
    fn line_by_line_lists_and_blocks() {
        let text = "---\nname: a\ndescription: >\n  folded\n  text\ntriggers:\n  - one\n  - \"two\"\nfocus_areas: [x, y]\nmodel: a: b\n---\nb";
        let raw = read(&split(text).unwrap());
        assert_eq!(field(&raw, "description").value, RawValue::Text("folded text".into()));
        assert_eq!(field(&raw, "triggers").value, RawValue::List(vec!["one".into(), "two".into()]));
        assert_eq!(field(&raw, "focus_areas").value, RawValue::List(vec!["x".into(), "y".into()]));
        assert_eq!(field(&raw, "model").value, RawValue::Text("a: b".into()));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text =
            String::from("---\nname: a\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..10 {
            let prev = level - 1;
            let refs = vec![format!("*a{prev}"); 9].join(", ");
            let _ = writeln!(text, "a{level}: &a{level} [{refs}]");
        }
        text.push_str("---\nbody\n");
        let raw = read(&split(&text).unwrap());
        assert_eq!(raw.errors.len(), 1, "{raw:?}");
        assert!(raw.errors[0].message.contains("alias"), "{:?}", raw.errors);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text =
            format!("---\nname: a\ndeep: {}{}\n---\nbody\n", "[".repeat(5000), "]".repeat(5000));
        let raw = read(&split(&text).unwrap());
        assert_eq!(raw.errors.len(), 1, "{raw:?}");
        assert!(raw.errors[0].message.contains("nested too deeply"), "{:?}", raw.errors);
    }
}
