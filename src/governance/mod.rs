//! Governance: who is asking ([`Identity`], [`Role`]), the one [`Gate`] every command passes,
//! the risk of a task ([`assess`]) and the reviewers' waiting room ([`Approvals`]).

mod approvals;
mod error;
mod gate;
mod identity;
mod permit;
mod risk;
mod role;

pub use approvals::{ApprovalPolicy, Approvals, Decision, PendingApproval, SYSTEM_USER};
pub use error::GovernanceError;
pub use gate::{ASSUME_IDENTITY, Denied, DenyReason, Gate, run_of};
pub use identity::{Channel, ClaimRefused, Provenance, Via, account_name};
pub use permit::{Permit, WrongPermit};
pub use risk::{Assessment, RiskRules, assess};
pub use role::{Identity, Role, permission_name};
