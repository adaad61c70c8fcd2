//! One agent definition and how a file becomes one.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use super::error::{AgentError, Warning};
use super::frontmatter::{self, KNOWN_KEYS, RawField, RawValue, SplitError};
use super::selector::MatchTerms;
use super::validate;
use crate::event::AgentSummary;
use crate::ids::AgentId;

/// Files larger than this are refused without being read in full.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// `max_instances` when the file names none.
pub const DEFAULT_MAX_INSTANCES: u32 = 3;
/// Tier when neither the file nor its folder names one.
pub const DEFAULT_TIER: u8 = 2;
/// An upper bound that catches typos such as `max_instances: 3000`.
const MAX_INSTANCES_LIMIT: u32 = 1000;

/// An agent: who it is, when to pick it, how it runs, and its system prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDefinition {
    /// Unique in the pool; lowercase letters, digits, `-` and `.`.
    pub name: AgentId,
    pub description: String,
    /// 1 core, 2 specialized, 3 experimental. Lower tiers win ties in selection.
    pub tier: u8,
    pub category: Option<String>,
    /// Phrases that select this agent when they appear in a task.
    pub triggers: Vec<String>,
    pub focus_areas: Vec<String>,
    /// Tool names the agent may use; empty means the backend's default set.
    pub tools: Vec<String>,
    pub model: Option<String>,
    pub max_instances: u32,
    /// The agent to use when this one's breaker is open.
    pub fallback: Option<AgentId>,
    /// A backend name from `flightdeck.yaml`; the default backend when absent.
    pub backend: Option<String>,
    pub version: Option<String>,
    /// Claude Code's display colour; kept so those files load unchanged.
    pub color: Option<String>,
    /// The markdown body after the frontmatter, trimmed.
    pub system_prompt: String,
    pub file: PathBuf,
    /// 1-based line of each field present in the file.
    pub field_lines: BTreeMap<String, usize>,
    pub warnings: Vec<Warning>,
    #[serde(skip)]
    terms: TermsCache,
}

impl AgentDefinition {
    /// A definition with defaults, for building pools in code and tests.
    pub fn new(name: impl Into<AgentId>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            tier: DEFAULT_TIER,
            category: None,
            triggers: Vec::new(),
            focus_areas: Vec::new(),
            tools: Vec::new(),
            model: None,
            max_instances: DEFAULT_MAX_INSTANCES,
            fallback: None,
            backend: None,
            version: None,
            color: None,
            system_prompt: String::new(),
            file: PathBuf::new(),
            field_lines: BTreeMap::new(),
            warnings: Vec::new(),
            terms: TermsCache::default(),
        }
    }

    /// What the console lists.
    pub fn summary(&self) -> AgentSummary {
        AgentSummary {
            agent: self.name.clone(),
            file: self.file.clone(),
            tier: self.tier,
            category: self.category.clone(),
            triggers: self.triggers.len(),
            max_instances: self.max_instances,
            backend: self.backend.clone(),
            warnings: self.warnings.iter().map(Warning::without_file).collect(),
        }
    }

    /// `backend-architect` → `Backend Architect`.
    pub fn display_name(&self) -> String {
        self.name
            .as_str()
            .split('-')
            .filter(|word| !word.is_empty())
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The line of `field` in the file, or 1 when the field is absent.
    pub fn line_of(&self, field: &str) -> usize {
        self.field_lines.get(field).copied().unwrap_or(1)
    }

    /// Words the selector matches against; computed once per definition.
    pub(crate) fn terms(&self) -> &MatchTerms {
        self.terms.0.get_or_init(|| MatchTerms::of(self))
    }
}

/// Selector terms, derived from the public fields. A definition is shared behind `Arc` and
/// not changed after that, so computing them once is safe; equality ignores the cache.
#[derive(Debug, Clone, Default)]
struct TermsCache(OnceLock<MatchTerms>);

impl PartialEq for TermsCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A file that could not become a definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFailure {
    /// The name, when the file got far enough to have one.
    pub agent: Option<AgentId>,
    pub errors: Vec<AgentError>,
    pub warnings: Vec<Warning>,
}

impl FileFailure {
    pub(crate) fn single(error: AgentError) -> Self {
        Self { agent: None, errors: vec![error], warnings: Vec::new() }
    }
}

/// Read and parse one file. `folder_tier` comes from the pool folder the file sits in.
pub fn read_definition(
    file: &Path,
    folder_tier: Option<u8>,
) -> Result<AgentDefinition, FileFailure> {
    let bytes = read_capped(file).map_err(FileFailure::single)?;
    let text = decode(file, &bytes).map_err(FileFailure::single)?;
    parse_definition(&text, file, folder_tier)
}

/// Read at most [`MAX_FILE_BYTES`] (plus one, to notice a larger file).
pub(crate) fn read_capped(file: &Path) -> Result<Vec<u8>, AgentError> {
    let read_error = |error: std::io::Error| AgentError::Read {
        file: file.to_owned(),
        message: error.to_string(),
    };
    // Check before opening: opening a FIFO blocks until someone writes to it.
    if !std::fs::metadata(file).map_err(read_error)?.is_file() {
        return Err(AgentError::NotRegularFile { file: file.to_owned() });
    }
    let handle = std::fs::File::open(file).map_err(read_error)?;
    let metadata = handle.metadata().map_err(read_error)?;
    let too_large =
        |bytes| AgentError::TooLarge { file: file.to_owned(), bytes, limit: MAX_FILE_BYTES };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    handle.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// UTF-8 text without BOM and with `\n` line ends.
pub fn decode(file: &Path, bytes: &[u8]) -> Result<String, AgentError> {
    let text = std::str::from_utf8(bytes).map_err(|error| AgentError::NotText {
        file: file.to_owned(),
        reason: format!("invalid UTF-8 at byte {}", error.valid_up_to()),
    })?;
    if let Some(at) = text.find('\0') {
        return Err(AgentError::NotText {
            file: file.to_owned(),
            reason: format!("NUL byte at byte {at}"),
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Ok(if text.contains('\r') { text.replace("\r\n", "\n") } else { text.to_owned() })
}

/// Parse the text of one definition file.
pub fn parse_definition(
    text: &str,
    file: &Path,
    folder_tier: Option<u8>,
) -> Result<AgentDefinition, FileFailure> {
    let doc = frontmatter::split(text).map_err(|error| {
        FileFailure::single(match error {
            SplitError::NoFrontmatter => AgentError::NoFrontmatter { file: file.to_owned() },
            SplitError::Unclosed => {
                AgentError::UnclosedFrontmatter { file: file.to_owned(), line: 1 }
            }
        })
    })?;
    let raw = frontmatter::read(&doc);
    let unreadable = raw.fields.is_empty() && !raw.errors.is_empty();
    let mut builder = Builder { file, errors: Vec::new(), warnings: Vec::new() };
    for note in raw.errors {
        builder.errors.push(match note.field {
            Some(field) => AgentError::Field {
                file: file.to_owned(),
                line: note.line,
                field,
                message: note.message,
            },
            None => AgentError::Frontmatter {
                file: file.to_owned(),
                line: note.line,
                message: note.message,
            },
        });
    }
    for note in raw.warnings {
        builder.warnings.push(Warning::new(file, note.line, note.field.as_deref(), note.message));
    }
    if unreadable {
        // "name: missing" on top of "frontmatter is not YAML" would only be noise.
        return Err(FileFailure {
            agent: None,
            errors: builder.errors,
            warnings: builder.warnings,
        });
    }
    let fields: BTreeMap<&str, &RawField> =
        raw.fields.iter().map(|f| (f.key.as_str(), f)).collect();
    let mut definition = builder.build(&fields, &doc, folder_tier);
    builder.errors.sort_by_key(AgentError::line);
    builder.warnings.sort_by_key(|warning| warning.line);
    if let Some(definition) = &mut definition {
        definition.warnings.sort_by_key(|warning| warning.line);
    }
    match definition {
        Some(definition) if builder.errors.is_empty() => Ok(definition),
        Some(definition) => Err(FileFailure {
            agent: Some(definition.name),
            errors: builder.errors,
            warnings: definition.warnings,
        }),
        None => Err(FileFailure {
            agent: Builder::name_only(&fields),
            errors: builder.errors,
            warnings: builder.warnings,
        }),
    }
}

struct Builder<'a> {
    file: &'a Path,
    errors: Vec<AgentError>,
    warnings: Vec<Warning>,
}

impl Builder<'_> {
    fn error(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.errors.push(AgentError::Field {
            file: self.file.to_owned(),
            line,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn warn(&mut self, line: usize, field: Option<&str>, message: impl Into<String>) {
        self.warnings.push(Warning::new(self.file, line, field, message));
    }

    fn build(
        &mut self,
        fields: &BTreeMap<&str, &RawField>,
        doc: &frontmatter::Document<'_>,
        folder_tier: Option<u8>,
    ) -> Option<AgentDefinition> {
        for field in fields.values() {
            if !KNOWN_KEYS.contains(&field.key.as_str()) {
                self.warn(field.line, Some(&field.key), "unknown field; ignored");
            }
        }
        let name = self.required_text(fields, "name");
        let name = name.and_then(|(name, line)| match validate::check_name(&name) {
            Ok(()) => Some(AgentId::new(name)),
            Err(message) => {
                self.error(line, "name", message);
                None
            }
        });
        let description = self.required_text(fields, "description").map(|(text, _)| text);
        let tier = self.tier(fields, folder_tier);
        let category = self.optional_text(fields, "category");
        let triggers = self.list(fields, "triggers");
        let focus_areas = self.list(fields, "focus_areas");
        let tools = self.list(fields, "tools");
        self.check_tools(fields, &tools);
        let model = self.optional_text(fields, "model");
        let max_instances = self.max_instances(fields);
        let fallback = self.fallback(fields, name.as_ref());
        let backend = self.optional_text(fields, "backend");
        let version = self.optional_text(fields, "version");
        let color = self.optional_text(fields, "color");
        if tier == 1 && triggers.len() < 5 {
            let line = fields.get("triggers").or_else(|| fields.get("tier")).map_or(1, |f| f.line);
            self.warn(
                line,
                Some("triggers"),
                format!("tier 1 agents should have at least 5 triggers; found {}", triggers.len()),
            );
        }
        let system_prompt = doc.body.trim().to_owned();
        if system_prompt.is_empty() {
            self.error(
                doc.body_line,
                "body",
                "system prompt is empty; write it as markdown after the closing `---`",
            );
        }
        let field_lines = fields.iter().map(|(key, f)| ((*key).to_owned(), f.line)).collect();
        Some(AgentDefinition {
            name: name?,
            description: description?,
            tier,
            category,
            triggers,
            focus_areas,
            tools,
            model,
            max_instances,
            fallback,
            backend,
            version,
            color,
            system_prompt,
            file: self.file.to_owned(),
            field_lines,
            warnings: std::mem::take(&mut self.warnings),
            terms: TermsCache::default(),
        })
    }

    /// The name as written, for reporting a file that failed for other reasons.
    fn name_only(fields: &BTreeMap<&str, &RawField>) -> Option<AgentId> {
        match &fields.get("name")?.value {
            RawValue::Text(name) if validate::check_name(name).is_ok() => {
                Some(AgentId::new(name.clone()))
            }
            _ => None,
        }
    }

    fn text(&mut self, field: &RawField) -> Option<String> {
        match &field.value {
            RawValue::Text(text) => Some(text.trim().to_owned()),
            RawValue::List(_) => {
                self.error(field.line, &field.key, "expected text, found a list");
                None
            }
            RawValue::Unsupported(found) => {
                self.error(field.line, &field.key, format!("expected text, found {found}"));
                None
            }
        }
    }

    fn required_text(
        &mut self,
        fields: &BTreeMap<&str, &RawField>,
        key: &str,
    ) -> Option<(String, usize)> {
        let Some(field) = fields.get(key) else {
            self.error(1, key, "missing; every agent definition needs `name` and `description`");
            return None;
        };
        let text = self.text(field)?;
        if text.is_empty() {
            self.error(field.line, key, "is empty");
            return None;
        }
        Some((text, field.line))
    }

    fn optional_text(&mut self, fields: &BTreeMap<&str, &RawField>, key: &str) -> Option<String> {
        let field = fields.get(key)?;
        self.text(field).filter(|text| !text.is_empty())
    }

    /// A YAML list, or a comma-separated string as Claude Code writes `tools`.
    fn list(&mut self, fields: &BTreeMap<&str, &RawField>, key: &str) -> Vec<String> {
        let Some(field) = fields.get(key) else { return Vec::new() };
        let items: Vec<String> = match &field.value {
            RawValue::List(items) => items.iter().map(|item| item.trim().to_owned()).collect(),
            RawValue::Text(text) => text.split(',').map(|item| item.trim().to_owned()).collect(),
            RawValue::Unsupported(found) => {
                self.error(
                    field.line,
                    key,
                    format!("expected a list or comma-separated text, found {found}"),
                );
                return Vec::new();
            }
        };
        items.into_iter().filter(|item| !item.is_empty()).collect()
    }

    fn check_tools(&mut self, fields: &BTreeMap<&str, &RawField>, tools: &[String]) {
        let unknown: Vec<&str> = tools
            .iter()
            .map(String::as_str)
            .filter(|tool| !validate::is_known_tool(tool))
            .collect();
        if !unknown.is_empty() {
            let line = fields.get("tools").map_or(1, |f| f.line);
            self.warn(
                line,
                Some("tools"),
                format!(
                    "unknown tool {}; known are Claude Code tool names and mcp__*",
                    quoted_list(&unknown)
                ),
            );
        }
    }

    fn tier(&mut self, fields: &BTreeMap<&str, &RawField>, folder_tier: Option<u8>) -> u8 {
        let fallback = folder_tier.unwrap_or(DEFAULT_TIER);
        let Some(field) = fields.get("tier") else { return fallback };
        let Some(text) = self.text(field) else { return fallback };
        let Ok(tier @ 1..=3) = text.parse::<u8>() else {
            self.error(field.line, "tier", format!("`{text}` must be 1, 2 or 3"));
            return fallback;
        };
        if let Some(folder) = folder_tier.filter(|folder| *folder != tier) {
            self.warn(
                field.line,
                Some("tier"),
                format!("tier {tier} differs from the folder's tier {folder}; the field wins"),
            );
        }
        tier
    }

    fn max_instances(&mut self, fields: &BTreeMap<&str, &RawField>) -> u32 {
        let Some(field) = fields.get("max_instances") else { return DEFAULT_MAX_INSTANCES };
        let Some(text) = self.text(field) else { return DEFAULT_MAX_INSTANCES };
        let Ok(count @ 1..=MAX_INSTANCES_LIMIT) = text.parse::<u32>() else {
            self.error(
                field.line,
                "max_instances",
                format!("`{text}` must be a whole number from 1 to {MAX_INSTANCES_LIMIT}"),
            );
            return DEFAULT_MAX_INSTANCES;
        };
        count
    }

    fn fallback(
        &mut self,
        fields: &BTreeMap<&str, &RawField>,
        name: Option<&AgentId>,
    ) -> Option<AgentId> {
        let field = fields.get("fallback")?;
        let text = self.text(field).filter(|text| !text.is_empty())?;
        if let Err(message) = validate::check_name(&text) {
            self.error(field.line, "fallback", message);
            return None;
        }
        if name.is_some_and(|name| name.as_str() == text) {
            self.error(
                field.line,
                "fallback",
                format!("`{text}` is this agent itself; name another agent"),
            );
            return None;
        }
        Some(AgentId::new(text))
    }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|item| format!("`{item}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentDefinition, FileFailure> {
        parse_definition(text, Path::new("pool/x.md"), None)
    }

    fn messages(failure: &FileFailure) -> Vec<String> {
        failure.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn full_definition() {
        let def = parse(
            "---\nname: api-designer\ndescription: Designs APIs\ntier: 1\ncategory: architecture\ntriggers: [api, rest, graphql, openapi, endpoint]\nfocus_areas:\n  - versioning\ntools: Read, Grep\nmodel: opus\nmax_instances: 2\nfallback: backend-architect\nbackend: sim\nversion: \"1.0\"\n---\n# Prompt\n\nDo it.\n",
        )
        .unwrap();
        assert_eq!(def.name.as_str(), "api-designer");
        assert_eq!(def.tier, 1);
        assert_eq!(def.triggers.len(), 5);
        assert_eq!(def.tools, vec!["Read", "Grep"]);
        assert_eq!(def.max_instances, 2);
        assert_eq!(def.fallback, Some(AgentId::new("backend-architect")));
        assert_eq!(def.version.as_deref(), Some("1.0"));
        assert_eq!(def.system_prompt, "# Prompt\n\nDo it.");
        assert_eq!(def.line_of("tools"), 9);
        assert!(def.warnings.is_empty(), "{:?}", def.warnings);
        assert_eq!(def.display_name(), "Api Designer");
    }

    #[test]
    fn defaults_apply() {
        let def = parse("---\nname: a\ndescription: d\n---\nbody").unwrap();
        assert_eq!((def.tier, def.max_instances), (DEFAULT_TIER, DEFAULT_MAX_INSTANCES));
        let def =
            parse_definition("---\nname: a\ndescription: d\n---\nbody", Path::new("x.md"), Some(3))
                .unwrap();
        assert_eq!(def.tier, 3);
    }

    #[test]
    fn bad_name_names_file_line_and_field() {
        let failure = parse("---\ndescription: d\nname: Bad Name\n---\nbody").unwrap_err();
        assert_eq!(
            messages(&failure),
            vec!["pool/x.md:3: name: \"Bad Name\" must be lowercase letters, digits, '-' or '.'"]
        );
    }

    #[test]
    fn many_errors_are_reported_together() {
        let failure =
            parse("---\nname: a\ntier: 7\nmax_instances: 0\nfallback: a\n---\n   \n").unwrap_err();
        let text = messages(&failure).join("\n");
        assert!(text.contains("pool/x.md:1: description: missing"), "{text}");
        assert!(text.contains("pool/x.md:3: tier: `7` must be 1, 2 or 3"), "{text}");
        assert!(text.contains("pool/x.md:4: max_instances: `0`"), "{text}");
        assert!(text.contains("pool/x.md:5: fallback: `a` is this agent itself"), "{text}");
        assert!(text.contains("pool/x.md:7: body: system prompt is empty"), "{text}");
        assert_eq!(failure.agent, Some(AgentId::new("a")));
    }

    #[test]
    fn warnings_for_tools_tier1_and_unknown_fields() {
        let def = parse("---\nname: a\ndescription: d\ntier: 1\ntriggers: [x]\ntools: [Read, Teleport, mcp__db__query]\nmood: sunny\n---\nbody")
            .unwrap();
        let text: Vec<String> = def.warnings.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(
                &"pool/x.md:5: triggers: tier 1 agents should have at least 5 triggers; found 1"
                    .to_owned()
            ),
            "{text:?}"
        );
        assert!(
            text.iter().any(|w| w.starts_with("pool/x.md:6: tools: unknown tool `Teleport`")),
            "{text:?}"
        );
        assert!(text.contains(&"pool/x.md:7: mood: unknown field; ignored".to_owned()), "{text:?}");
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let bytes =
            b"\xef\xbb\xbf---\r\nname: a\r\ndescription: d\r\n---\r\nline one\r\nline two\r\n";
        let text = decode(Path::new("x.md"), bytes).unwrap();
        let def = parse(&text).unwrap();
        assert_eq!(def.system_prompt, "line one\nline two");
    }

    #[test]
    fn binary_is_not_text() {
        let error = decode(Path::new("x.md"), &[0x2d, 0xff, 0xfe, 0x00]).unwrap_err();
        assert!(error.to_string().contains("not a text file"), "{error}");
    }
}
