//! `flightdeck agents ...` (being written).

use std::path::PathBuf;

use super::Globals;

/// `agents validate [DIR] [--json]`: 0 when no file has an error, 1 otherwise.
pub fn validate(_globals: &Globals, _dir: Option<PathBuf>, _json: bool) -> i32 {
    super::exit::OK
}

/// `agents list [--json]`.
pub fn list(_globals: &Globals, _json: bool) -> i32 {
    super::exit::OK
}

/// `agents watch [--json]`: one line per change until interrupted.
pub fn watch(_globals: &Globals, _json: bool) -> i32 {
    super::exit::OK
}

/// `agents explain TASK [--context TEXT] [--top N] [--json]`.
pub fn explain(
    _globals: &Globals,
    _task: &str,
    _context: Option<&str>,
    _top: usize,
    _json: bool,
) -> i32 {
    super::exit::OK
}
