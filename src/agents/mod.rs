//! Agent definitions: parsing `agentpool/**/*.md`, the registry of one pool, hot reload,
//! and explainable selection.
//!
//! A definition is YAML frontmatter between `---` lines, then a markdown body that is the
//! system prompt (only the first `---` pair delimits, so `---` rules in the body stay).
//! UTF-8 with or without BOM, `\n` or `\r\n` line ends.
//!
//! - **Tier**: the `tier` field (1-3) wins; else the nearest folder named `tier<N>` or
//!   `tier<N>-<anything>` (`tier1-core`, `tier2-specialized`, `tier3-experimental`); else 2.
//!   A field that disagrees with its folder gets a warning.
//! - **Claude Code files** load unchanged. When the frontmatter is not strict YAML (an
//!   unquoted description holding `: `, `<example>` blocks), it is read line by line: only
//!   a known key at the very start of a line begins a field, every other line continues
//!   the field above, and literal `\n` becomes a line break. The file loads with a warning
//!   naming the line where YAML failed. See [`frontmatter`].
//! - **Limits**: files over [`MAX_FILE_BYTES`] (1 MiB), frontmatter over 64 KiB, nesting
//!   deeper than 128 and alias bombs are errors for that file; the rest of the pool loads.
//! - **Pool rules** ([`registry`]): names unique within one pool folder (duplicates are an
//!   error naming both files); hidden entries and `README.md` are skipped; symlinks are
//!   followed and loops reported.

pub mod definition;
pub mod error;
pub mod frontmatter;
pub mod registry;
pub mod selector;
pub mod validate;
pub mod watcher;
pub(crate) mod words;

pub use definition::{
    AgentDefinition, DEFAULT_MAX_INSTANCES, DEFAULT_TIER, FileFailure, MAX_FILE_BYTES,
    parse_definition, read_definition,
};
pub use error::{AgentError, Warning};
pub use registry::{Problem, Registry};
pub use selector::{
    Breakdown, Component, LearnedRate, MIN_SCORE, Scored, SelectionQuery, SuccessRate, best, rank,
    top,
};
pub(crate) use watcher::watch_gated;
pub use watcher::{AgentWatcher, DEBOUNCE_MS, watch};
