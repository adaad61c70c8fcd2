//! Where executors read Flightdeck's own environment.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Looks up variables of Flightdeck's own environment: the real process environment in
/// production, a fixed map in tests (changing a running process's environment is `unsafe`
/// and races with other threads).
#[derive(Clone)]
pub struct EnvSource(Arc<Lookup>);

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl EnvSource {
    /// The environment Flightdeck was started with.
    pub fn process() -> Self {
        Self(Arc::new(|name| std::env::var(name).ok()))
    }

    /// A fixed set of variables; everything else is unset.
    pub fn fixed<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self(Arc::new(move |name| vars.get(name).cloned()))
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

impl Default for EnvSource {
    fn default() -> Self {
        Self::process()
    }
}

/// Values may hold secrets, so they are never printed.
impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvSource(..)")
    }
}
