//! Identifier newtypes. Each id is a distinct type so a task id can never be passed where a
//! run id is expected. The text is shared: every event names its run, task and agent, and
//! cloning an id is a reference count, not a copy (a 100,000-task run clones ids millions
//! of times).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Arc<str>);

        impl $name {
            pub fn new(value: impl AsRef<str>) -> Self {
                Self(Arc::from(value.as_ref()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Maps keyed by id can be searched with a borrowed `&str` (same hash and order).
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.into())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value.into())
            }
        }
    };
}

string_id!(
    /// The name of an agent definition (`backend-architect`); also the breaker key.
    AgentId
);
string_id!(
    /// One run of a workflow, e.g. `r20261122014501-7f3a09c2e41b5d68`.
    RunId
);
string_id!(
    /// A task id as written in the workflow file.
    TaskId
);
string_id!(
    /// A user name as given by `--as` or the `FLIGHTDECK_USER`/`USER` environment.
    UserId
);

/// One pool instance of an agent: `backend-architect#3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl RunId {
    /// A fresh run id: the wall clock (readable, sorts by start second) and 64 random bits,
    /// so runs started in the same second by any number of processes never share an id
    /// (16 bits collided once in a few hundred runs per second).
    pub fn generate() -> Self {
        let now = std::time::SystemTime::now();
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        let compact: String = stamp.chars().filter(char::is_ascii_digit).collect();
        let suffix: u64 = rand::random();
        Self(format!("r{compact}-{suffix:016x}").into())
    }
}
