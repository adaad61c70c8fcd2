//! `flightdeck plan` and `flightdeck run` (being written).

use std::path::Path;

use super::Globals;

/// `plan WORKFLOW [--json]`: 0 when the workflow is valid, 2 otherwise.
pub fn plan(_globals: &Globals, _workflow: &Path, _json: bool) -> i32 {
    super::exit::OK
}

/// Options of `flightdeck run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub json: bool,
    pub backend: Option<String>,
    pub max_parallel: Option<usize>,
}

/// `run WORKFLOW`: 0 when every task succeeded, 1 when any failed, 2 for invalid input.
pub fn run(_globals: &Globals, _workflow: &Path, _options: &RunOptions) -> i32 {
    super::exit::OK
}
