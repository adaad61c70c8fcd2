//! Errors of the console part. Theme errors are shown in the status bar, so they name the file,
//! the line and the field.

use std::path::PathBuf;

/// Everything the console can fail at.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A theme file could not be read.
    #[error("{file}: cannot read theme: {source}")]
    ThemeRead { file: PathBuf, source: std::io::Error },
    /// A theme file is not valid: bad YAML, an unknown role or field, or a bad colour.
    #[error("{file}:{line}: {field}: {message}")]
    ThemeInvalid { file: PathBuf, line: usize, field: String, message: String },
    /// No theme file and no bundled theme with this name.
    #[error("unknown theme `{name}` (bundled: {bundled}; or add themes/{name}.yaml)")]
    ThemeUnknown { name: String, bundled: String },
    /// The terminal could not be set up, drawn to or restored.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}
