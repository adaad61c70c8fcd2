//! The workflow a run started from, kept next to the run's lock file
//! (`<data-dir>/runs/<run-id>.workflow.json`): its text, the SHA-256 of that text and the
//! command-line choices. `resume` plans from it, so a workflow file edited (or deleted) since
//! the run started changes nothing about the run; the hash tells whether it was.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::RunId;
use crate::store::owner::LOCKS_DIR;

/// File name ending of a run's stored workflow.
pub const WORKFLOW_SUFFIX: &str = ".workflow.json";

/// What a run was planned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWorkflow {
    /// The workflow file as the run named it.
    pub file: PathBuf,
    /// SHA-256 of `source`, in hex.
    pub sha256: String,
    /// The file's whole text when the run started.
    pub source: String,
    /// `--backend`, if given.
    pub backend: Option<String>,
    /// `--max-parallel` (or the console's), if given.
    pub max_parallel: Option<usize>,
}

/// Why the stored workflow could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("{}: cannot write the run's stored workflow: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot read the run's stored workflow: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: the run's stored workflow is damaged ({message}); resume cannot know its plan", path.display())]
    Damaged { path: PathBuf, message: String },
}

/// Where the stored workflow of `run` lives.
pub fn stored_path(data_dir: &Path, run: &RunId) -> PathBuf {
    data_dir.join(LOCKS_DIR).join(format!("{run}{WORKFLOW_SUFFIX}"))
}

/// Remove a pruned run's stored workflow; a missing file is fine.
pub fn remove_stored(data_dir: &Path, run: &RunId) {
    let path = stored_path(data_dir, run);
    if let Err(error) = std::fs::remove_file(&path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "stored workflow not removed");
    }
}

/// SHA-256 of a workflow's text, in hex.
pub fn hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

impl StoredWorkflow {
    /// Read the workflow file now, to store it with the run that starts from it.
    pub fn capture(
        file: &Path,
        backend: Option<String>,
        max_parallel: Option<usize>,
    ) -> std::io::Result<Self> {
        let source = std::fs::read_to_string(file)?;
        Ok(Self { file: file.to_owned(), sha256: hash(&source), source, backend, max_parallel })
    }

    /// Write it (synced, then renamed into place) before the run's first event, so a run
    /// that has events always has its workflow.
    pub fn save(&self, data_dir: &Path, run: &RunId) -> Result<(), StoredError> {
        let path = stored_path(data_dir, run);
        let write = |source| StoredError::Write { path: path.clone(), source };
        let partial = path.with_extension("partial");
        let file = std::fs::File::create(&partial).map_err(write)?;
        // Streamed into the file rather than built in memory first: a 100,000-task
        // workflow's text is 10 MB, and its JSON buffer grown by doubling (held by the
        // allocator for a while after) was the peak of the process's memory.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
        serde_json::to_writer(&mut out, self).map_err(|e| write(std::io::Error::other(e)))?;
        let file = out.into_inner().map_err(|e| write(e.into_error()))?;
        file.sync_all().map_err(write)?;
        std::fs::rename(&partial, &path).map_err(write)
    }

    /// The stored workflow of `run`; `None` for a run started before workflows were stored.
    pub fn load(data_dir: &Path, run: &RunId) -> Result<Option<Self>, StoredError> {
        let path = stored_path(data_dir, run);
        let body = match std::fs::read(&path) {
            Ok(body) => body,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoredError::Read { path, source }),
        };
        let stored: Self = serde_json::from_slice(&body)
            .map_err(|e| StoredError::Damaged { path: path.clone(), message: e.to_string() })?;
        if hash(&stored.source) != stored.sha256 {
            let message = "its text does not match its hash".to_owned();
            return Err(StoredError::Damaged { path, message });
        }
        Ok(Some(stored))
    }

    /// Whether the file on disk is still the one the run started from (a missing or
    /// unreadable file has changed).
    pub fn file_changed(&self) -> bool {
        std::fs::read_to_string(&self.file).map_or(true, |now| hash(&now) != self.sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_workflow_round_trips_and_notices_an_edited_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("w.yaml");
        std::fs::write(&file, "name: w\ntasks: []\n").expect("write");
        std::fs::create_dir_all(dir.path().join(LOCKS_DIR)).expect("locks dir");
        let run = RunId::new("r1");
        let stored = StoredWorkflow::capture(&file, Some("sim".into()), Some(3)).expect("capture");
        stored.save(dir.path(), &run).expect("save");
        let back = StoredWorkflow::load(dir.path(), &run).expect("load").expect("present");
        assert_eq!(back, stored);
        assert!(!back.file_changed());
        std::fs::write(&file, "name: w2\ntasks: []\n").expect("edit");
        assert!(back.file_changed());
        std::fs::write(stored_path(dir.path(), &run), "{").expect("damage");
        let error = StoredWorkflow::load(dir.path(), &run).expect_err("damaged");
        assert!(error.to_string().contains("damaged"), "{error}");
        assert_eq!(StoredWorkflow::load(dir.path(), &RunId::new("r2")).expect("load"), None);
    }
}
