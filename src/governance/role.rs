//! Roles, what they may do, and who someone is.
//!
//! | role      | run workflows | control runs | review | operate |
//! |-----------|:-:|:-:|:-:|:-:|
//! | admin     | ✓ | ✓ | ✓ | ✓ |
//! | operator  | ✓ | ✓ |   | ✓ |
//! | developer | ✓ | ✓ |   |   |
//! | reviewer  |   |   | ✓ |   |
//! | viewer    |   |   |   |   |
//!
//! Why: the reference RBAC gives admin everything, operator and developer execution of
//! agents and workflows, and viewer only reads. Breakers and the pool are shared by every
//! run, so `Operate` is the operator's. Approving high-risk work is kept apart from running
//! it (separation of duties): only reviewers and admins approve, and reviewers start nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::GovernanceError;
use crate::command::Permission;
use crate::config::Settings;
use crate::ids::UserId;

/// A role from `flightdeck.yaml`'s `users` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Runs workflows and controls runs.
    Developer,
    /// Runs workflows, controls runs, resets breakers and manages the pool.
    Operator,
    /// Approves or rejects high-risk tasks.
    Reviewer,
    /// Watches only.
    Viewer,
}

impl Role {
    pub const ALL: [Self; 5] =
        [Self::Admin, Self::Developer, Self::Operator, Self::Reviewer, Self::Viewer];

    /// Whether this role may do what `permission` guards. Permissions added later are
    /// refused to every role but admin until listed here.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::{ControlRuns, Operate, Review, RunWorkflows};
        match self {
            Self::Admin => true,
            Self::Operator => matches!(permission, RunWorkflows | ControlRuns | Operate),
            Self::Developer => matches!(permission, RunWorkflows | ControlRuns),
            Self::Reviewer => matches!(permission, Review),
            Self::Viewer => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Operator => "operator",
            Self::Reviewer => "reviewer",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = GovernanceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| GovernanceError::UnknownRole(text.to_owned()))
    }
}

/// Who is asking, with the role the settings give them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub user: UserId,
    pub role: Role,
}

impl Identity {
    /// The role `settings.users` gives `user`; anyone not listed gets `default_role`.
    /// A role that does not parse (settings built in code, not validated) falls back to
    /// viewer: a mistake must never grant more.
    pub fn resolve(user: &str, settings: &Settings) -> Self {
        Roles::from_settings(settings).identify(user)
    }

    pub fn allows(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }
}

/// The user-to-role table, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roles {
    users: BTreeMap<String, Role>,
    default_role: Role,
}

impl Roles {
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        let users = settings
            .users
            .iter()
            .map(|(user, role)| (user.clone(), role.parse().unwrap_or(Role::Viewer)))
            .collect();
        let default_role = settings.default_role.parse().unwrap_or(Role::Viewer);
        Self { users, default_role }
    }

    pub(crate) fn identify(&self, user: &str) -> Identity {
        let role = self.users.get(user).copied().unwrap_or(self.default_role);
        Identity { user: UserId::new(user), role }
    }
}

/// The `snake_case` name of a permission, as written in audit records and messages.
pub fn permission_name(permission: Permission) -> &'static str {
    match permission {
        Permission::RunWorkflows => "run_workflows",
        Permission::ControlRuns => "control_runs",
        Permission::Review => "review",
        Permission::Operate => "operate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_text() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert_eq!(" Operator ".parse::<Role>(), Ok(Role::Operator));
        assert_eq!(
            "wizard".parse::<Role>(),
            Err(GovernanceError::UnknownRole("wizard".to_owned()))
        );
    }

    #[test]
    fn listed_users_get_their_role_and_others_the_default() {
        let mut settings = Settings::default();
        settings.users.insert("ann".into(), "admin".into());
        settings.users.insert("bob".into(), "nonsense".into());
        assert_eq!(Identity::resolve("ann", &settings).role, Role::Admin);
        assert_eq!(Identity::resolve("bob", &settings).role, Role::Viewer);
        assert_eq!(Identity::resolve("zed", &settings).role, Role::Viewer);
        settings.default_role = "developer".into();
        assert_eq!(Identity::resolve("zed", &settings).role, Role::Developer);
        assert_eq!(Identity::resolve("", &settings).role, Role::Developer);
    }
}
