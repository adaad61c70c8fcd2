//! Which project governs a data dir. Roles and policies are read from the project whose runs
//! the data dir keeps, never from whatever `--project-dir` a caller names: otherwise a viewer
//! with a one-line folder saying `default_role: admin` could prune a shared run store.
//!
//! The first runtime to use a data dir records its project folder in `<data-dir>/project`
//! (one absolute path); later callers read their governance from there.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Settings};

/// The file, inside the data dir, naming the project that governs it.
pub const PROJECT_FILE: &str = "project";

/// The project recorded for `data_dir`, if any.
pub fn recorded_project(data_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(data_dir.join(PROJECT_FILE)).ok()?;
    let path = PathBuf::from(text.trim_end_matches('\n'));
    path.is_absolute().then_some(path)
}

/// Record `project_dir` as the governing project of `data_dir`, unless one is recorded
/// already (the first wins). Failures are logged: an unrecorded data dir is governed by the
/// caller's project, as before.
pub fn record_project(data_dir: &Path, project_dir: &Path) {
    if recorded_project(data_dir).is_some() {
        return;
    }
    let project = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_owned());
    let text = format!("{}\n", project.display());
    if let Err(error) = std::fs::write(data_dir.join(PROJECT_FILE), text) {
        tracing::warn!(data_dir = %data_dir.display(), %error, "cannot record the project");
    }
}

/// The settings a caller works with: its own project's, with `users`, `default_role` and
/// `policies` taken from the project that governs `data_dir` when that is another one.
pub fn governed_settings(project_dir: &Path, data_dir: &Path) -> Result<Settings, ConfigError> {
    let mut settings = Settings::load(project_dir)?;
    let own = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_owned());
    if let Some(host) = recorded_project(data_dir).filter(|host| *host != own) {
        let governing = Settings::load(&host)?;
        settings.users = governing.users;
        settings.default_role = governing.default_role;
        settings.policies = governing.policies;
    }
    Ok(settings)
}
