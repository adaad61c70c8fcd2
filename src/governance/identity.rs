//! How a caller's identity was established, and which identities a caller may take.
//!
//! Identity comes from the operating system, never from what a client claims: on the control
//! socket the kernel tells the host the peer's uid and pid (`SO_PEERCRED`); on the command
//! line it is the account the process runs as. `--as NAME` and `FLIGHTDECK_USER` may only
//! *lower* that: the claimed role's permissions must be a subset of the caller's own (a
//! reviewer may act as a viewer, never as an admin). The superuser may take any identity: it
//! can already become any user of the machine (`runuser`), so refusing it would protect
//! nothing; its claims are audited like everyone's.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::role::{Identity, Role, Roles};
use crate::command::Permission;
use crate::config::is_plain_user_name;

/// How the host learned who the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Via {
    /// Peer credentials of a control-socket connection, from the kernel.
    Peer { uid: u32, pid: Option<i32> },
    /// The account this very process runs as.
    LocalAccount { uid: u32 },
}

impl Via {
    pub fn uid(self) -> u32 {
        match self {
            Self::Peer { uid, .. } | Self::LocalAccount { uid } => uid,
        }
    }
}

/// Where a command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The host's own console.
    Console,
    /// A console attached over the control socket.
    Attach,
    /// A command-line client (`flightdeck run`, `approve`, `runs prune`, ...).
    CommandLine,
    /// Flightdeck itself: shutdown, a headless run's refusals and Ctrl-C, hot reloads.
    System,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::Attach => "attach",
            Self::CommandLine => "command_line",
            Self::System => "system",
        }
    }
}

/// Who is really asking: the OS account, how that was established and from where. Written
/// into every audit record of the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The OS account name (or `uid:N` when the uid has no name).
    pub account: String,
    #[serde(flatten)]
    pub via: Via,
    pub from: Channel,
}

impl Provenance {
    /// This process's own account, for commands it gives itself.
    pub fn local(from: Channel) -> Self {
        let uid = nix::unistd::getuid().as_raw();
        Self { account: account_name(uid), via: Via::LocalAccount { uid }, from }
    }

    /// A control-socket peer whose credentials the kernel gave.
    pub fn peer(uid: u32, pid: Option<i32>, from: Channel) -> Self {
        Self { account: account_name(uid), via: Via::Peer { uid, pid }, from }
    }

    /// Whether the caller is the superuser, who may take any identity.
    pub fn is_superuser(&self) -> bool {
        self.via.uid() == 0
    }

    /// The provenance as an audit detail.
    pub fn to_audit(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({ "account": self.account }))
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Via::Peer { uid, pid: Some(pid) } => {
                write!(f, "{} (uid {uid}, pid {pid}, {})", self.account, self.from.as_str())
            }
            Via::Peer { uid, pid: None } => {
                write!(f, "{} (uid {uid}, {})", self.account, self.from.as_str())
            }
            Via::LocalAccount { uid } => {
                write!(f, "{} (local account, uid {uid}, {})", self.account, self.from.as_str())
            }
        }
    }
}

/// The account name of `uid`, or `uid:N` when the system has none (a container without
/// that user in `/etc/passwd`): such a caller is an unknown identity, a viewer by default.
pub fn account_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid:{uid}"), |user| user.name)
}

/// A refused `--as` / `FLIGHTDECK_USER`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    /// The claimed name could forge log lines or drive a terminal.
    #[error("user name {0:?} is empty or holds control characters")]
    BadName(String),
    /// The claimed identity may do something the caller may not.
    #[error(
        "{account} ({own}) may not act as {claimed} ({claimed_role}): --as and FLIGHTDECK_USER \
         may only take a role no higher than one's own"
    )]
    Higher { account: String, own: Role, claimed: String, claimed_role: Role },
    /// The name of Flightdeck's own actions, which no person may act as.
    #[error(
        "`{0}` is Flightdeck's own identity (shutdown, headless refusals, hot reloads); no one may act as it"
    )]
    System(String),
}

impl Role {
    /// Whether this role may do everything `other` may: the test for `--as`.
    pub fn includes(self, other: Role) -> bool {
        const ALL: [Permission; 4] = [
            Permission::RunWorkflows,
            Permission::ControlRuns,
            Permission::Review,
            Permission::Operate,
        ];
        ALL.into_iter().all(|permission| !other.allows(permission) || self.allows(permission))
    }
}

/// The identity a caller acts as: its own account's, or the claimed one when the claim
/// lowers (or keeps) the role.
pub(crate) fn assume(
    roles: &Roles,
    caller: &Provenance,
    claimed: Option<&str>,
) -> Result<Identity, ClaimRefused> {
    let own = roles.identify(&caller.account);
    let Some(claimed) = claimed.filter(|name| *name != caller.account) else { return Ok(own) };
    if !is_plain_user_name(claimed) {
        return Err(ClaimRefused::BadName(claimed.to_owned()));
    }
    if claimed == super::SYSTEM_USER {
        return Err(ClaimRefused::System(claimed.to_owned()));
    }
    let wanted = roles.identify(claimed);
    if caller.is_superuser() || own.role.includes(wanted.role) {
        Ok(wanted)
    } else {
        Err(ClaimRefused::Higher {
            account: caller.account.clone(),
            own: own.role,
            claimed: claimed.to_owned(),
            claimed_role: wanted.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn roles() -> Roles {
        let mut settings = Settings::default();
        for (user, role) in [("ann", "admin"), ("rex", "reviewer"), ("vic", "viewer")] {
            settings.users.insert(user.into(), role.into());
        }
        settings.users.insert("dev".into(), "developer".into());
        Roles::from_settings(&settings)
    }

    fn peer(account: &str, uid: u32) -> Provenance {
        Provenance {
            account: account.into(),
            via: Via::Peer { uid, pid: Some(7) },
            from: Channel::CommandLine,
        }
    }

    #[test]
    fn nobody_acts_as_the_system_user() {
        let root = peer("root", 0);
        let refused = assume(&roles(), &root, Some(crate::governance::SYSTEM_USER))
            .expect_err("the system user is nobody's to take");
        assert!(matches!(refused, ClaimRefused::System(_)), "{refused}");
    }

    #[test]
    fn roles_include_only_what_they_can_do() {
        assert!(Role::Admin.includes(Role::Reviewer));
        assert!(Role::Reviewer.includes(Role::Viewer));
        assert!(Role::Operator.includes(Role::Developer));
        assert!(!Role::Reviewer.includes(Role::Admin));
        assert!(!Role::Reviewer.includes(Role::Developer));
        assert!(!Role::Developer.includes(Role::Reviewer));
        assert!(!Role::Viewer.includes(Role::Reviewer));
    }

    #[test]
    fn a_claim_may_only_lower_the_role() {
        let roles = roles();
        let rex = peer("rex", 1001);
        assert_eq!(assume(&roles, &rex, None).map(|i| i.role), Ok(Role::Reviewer));
        assert_eq!(assume(&roles, &rex, Some("vic")).map(|i| i.role), Ok(Role::Viewer));
        assert!(matches!(assume(&roles, &rex, Some("ann")), Err(ClaimRefused::Higher { .. })));
        assert!(matches!(assume(&roles, &rex, Some("dev")), Err(ClaimRefused::Higher { .. })));
        let root = peer("root", 0);
        assert_eq!(assume(&roles, &root, Some("ann")).map(|i| i.role), Ok(Role::Admin));
        assert!(matches!(
            assume(&roles, &root, Some("ann\n2026 forged")),
            Err(ClaimRefused::BadName(_))
        ));
    }
}
