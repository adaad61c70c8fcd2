//! Everything that can be wrong with an agent definition file or the agent pool folder.
//!
//! Each error a user can fix names the file, the line and the field; `Display` renders
//! `file:line: field: message`, the shape editors and terminals turn into links.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ids::AgentId;

/// Why a file in the agent pool could not be loaded, or the pool could not be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The file or folder could not be read.
    #[error("{}: cannot read: {message}", file.display())]
    Read { file: PathBuf, message: String },
    /// The file is larger than [`crate::agents::MAX_FILE_BYTES`].
    #[error("{}: file is {bytes} bytes; an agent definition may be at most {limit} bytes", file.display())]
    TooLarge { file: PathBuf, bytes: u64, limit: u64 },
    /// The file is not UTF-8 text.
    #[error("{}: not a text file: {reason}", file.display())]
    NotText { file: PathBuf, reason: String },
    /// A FIFO, socket or device carries the `.md` extension.
    #[error("{}: not a regular file", file.display())]
    NotRegularFile { file: PathBuf },
    /// The file name cannot be shown or stored as text.
    #[error("{}: file name is not valid UTF-8; rename the file", file.display())]
    FileName { file: PathBuf },
    /// A symlink inside the pool points back to one of its own ancestors.
    #[error("{}: symlink loop: points back to {}", file.display(), ancestor.display())]
    SymlinkLoop { file: PathBuf, ancestor: PathBuf },
    /// The file does not start with a `---` line.
    #[error(
        "{}:1: no frontmatter: an agent definition starts with a `---` line, then `name:` and `description:`",
        file.display()
    )]
    NoFrontmatter { file: PathBuf },
    /// The opening `---` has no closing partner.
    #[error("{}:{line}: frontmatter opened here is never closed with a `---` line", file.display())]
    UnclosedFrontmatter { file: PathBuf, line: usize },
    /// The frontmatter as a whole is unusable (alias bomb, nesting, not a mapping).
    #[error("{}:{line}: frontmatter: {message}", file.display())]
    Frontmatter { file: PathBuf, line: usize, message: String },
    /// One field is missing or has a bad value.
    #[error("{}:{line}: {field}: {message}", file.display())]
    Field { file: PathBuf, line: usize, field: String, message: String },
    /// Two files in one pool define the same name. The other file keeps the name.
    #[error(
        "{}:{line}: name: `{name}` is also defined in {}:{other_line}; names must be unique in the pool",
        file.display(),
        other_file.display()
    )]
    DuplicateName {
        file: PathBuf,
        line: usize,
        name: AgentId,
        other_file: PathBuf,
        other_line: usize,
    },
    /// The agent pool folder could not be watched for changes.
    #[error("{}: cannot watch for changes: {message}", dir.display())]
    Watch { dir: PathBuf, message: String },
}

impl AgentError {
    /// The file (or folder) the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Read { file, .. }
            | Self::TooLarge { file, .. }
            | Self::NotText { file, .. }
            | Self::NotRegularFile { file }
            | Self::FileName { file }
            | Self::SymlinkLoop { file, .. }
            | Self::NoFrontmatter { file }
            | Self::UnclosedFrontmatter { file, .. }
            | Self::Frontmatter { file, .. }
            | Self::Field { file, .. }
            | Self::DuplicateName { file, .. } => file,
            Self::Watch { dir, .. } => dir,
        }
    }

    /// The 1-based line the error points at, when it is about the file's content.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::NoFrontmatter { .. } => Some(1),
            Self::UnclosedFrontmatter { line, .. }
            | Self::Frontmatter { line, .. }
            | Self::Field { line, .. }
            | Self::DuplicateName { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The frontmatter field the error is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } => Some(field),
            Self::DuplicateName { .. } => Some("name"),
            _ => None,
        }
    }

    /// The message without the `file:line: field:` prefix.
    pub fn detail(&self) -> String {
        let full = self.to_string();
        let prefix = location_prefix(self.file(), self.line(), self.field());
        full.strip_prefix(&prefix).map_or_else(|| full.clone(), str::to_owned)
    }
}

/// A finding that does not stop the file from loading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub file: PathBuf,
    /// 1-based line in the file.
    pub line: usize,
    /// The frontmatter field, when the warning is about one.
    pub field: Option<String>,
    pub message: String,
}

impl Warning {
    pub fn new(file: &Path, line: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// `line 3: tools: ...`, for places that show the file separately.
    pub fn without_file(&self) -> String {
        match &self.field {
            Some(field) => format!("line {}: {field}: {}", self.line, self.message),
            None => format!("line {}: {}", self.line, self.message),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&location_prefix(&self.file, Some(self.line), self.field.as_deref()))?;
        f.write_str(&self.message)
    }
}

fn location_prefix(file: &Path, line: Option<usize>, field: Option<&str>) -> String {
    let mut prefix = file.display().to_string();
    if let Some(line) = line {
        let _ = write!(prefix, ":{line}");
    }
    prefix.push_str(": ");
    if let Some(field) = field {
        prefix.push_str(field);
        prefix.push_str(": ");
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_names_file_line_and_field() {
        let error = AgentError::Field {
            file: PathBuf::from("agentpool/tier1-core/x.md"),
            line: 3,
            field: "name".to_owned(),
            message: "\"Bad Name\" must be lowercase letters, digits, '-' or '.'".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "agentpool/tier1-core/x.md:3: name: \"Bad Name\" must be lowercase letters, digits, '-' or '.'"
        );
        assert_eq!(error.detail(), "\"Bad Name\" must be lowercase letters, digits, '-' or '.'");
        assert_eq!(error.line(), Some(3));
        assert_eq!(error.field(), Some("name"));
    }

    #[test]
    fn duplicate_names_both_files() {
        let error = AgentError::DuplicateName {
            file: PathBuf::from("pool/b.md"),
            line: 2,
            name: AgentId::new("x"),
            other_file: PathBuf::from("pool/a.md"),
            other_line: 2,
        };
        let text = error.to_string();
        assert!(text.starts_with("pool/b.md:2: name: `x`"), "{text}");
        assert!(text.contains("pool/a.md:2"), "{text}");
    }
}
