//! One executor per backend name, built on first use and shared by every run after that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::error::EngineError;
use crate::config::Settings;
use crate::exec::{self, Executor};

pub(crate) struct Executors {
    settings: Arc<Settings>,
    built: Mutex<HashMap<String, Arc<dyn Executor>>>,
}

impl Executors {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Self { settings, built: Mutex::new(HashMap::new()) }
    }

    /// Use `executor` for `backend` instead of building one from the settings.
    pub(crate) fn insert(&self, backend: &str, executor: Arc<dyn Executor>) {
        self.lock().insert(backend.to_owned(), executor);
    }

    pub(crate) fn get(&self, backend: &str) -> Result<Arc<dyn Executor>, EngineError> {
        if let Some(found) = self.lock().get(backend) {
            return Ok(Arc::clone(found));
        }
        let config = self
            .settings
            .backends
            .get(backend)
            .ok_or_else(|| EngineError::UnknownBackend { backend: backend.to_owned() })?;
        let executor = exec::build(backend, config).map_err(|e| EngineError::Backend {
            backend: backend.to_owned(),
            message: e.to_string(),
        })?;
        // Another caller may have built one meanwhile; keep the first so all share it.
        Ok(Arc::clone(self.lock().entry(backend.to_owned()).or_insert(executor)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Executor>>> {
        self.built.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
