//! Agent definitions: parsing `agentpool/**/*.md`, the registry of one pool, hot reload,
//! and explainable selection.
//!
//! A definition is YAML frontmatter between `---` lines, then a markdown body that is the
//! system prompt. Files written for Claude Code load unchanged, including those whose
//! frontmatter is not strict YAML (see [`frontmatter`]).

pub mod definition;
pub mod error;
pub mod frontmatter;
pub mod registry;
pub mod selector;
pub mod validate;
pub mod watcher;
mod words;

pub use definition::{
    AgentDefinition, DEFAULT_MAX_INSTANCES, DEFAULT_TIER, FileFailure, MAX_FILE_BYTES,
    parse_definition, read_definition,
};
pub use error::{AgentError, Warning};
pub use registry::{Problem, Registry};
pub use selector::{Breakdown, Component, MIN_SCORE, Scored, SelectionQuery, best, rank, top};
pub use watcher::{AgentWatcher, watch};
