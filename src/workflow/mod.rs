//! Workflows: the file format ([`model`]), validation with `file:line` messages, and the
//! [`planner`] that turns a workflow into layers, agents, timeouts and an estimate.

pub mod error;
mod graph;
mod lines;
pub mod model;
pub mod planner;
mod quick;

pub use error::{Problem, ProblemKind, WorkflowError};
pub use model::{DEFAULT_MAX_PARALLEL, Panel, Stage, Strategy, TaskSpec, Workflow};
pub use planner::{
    Plan, PlanOverrides, PlannedPanel, PlannedStep, Selection, plan, plan_learned, plan_owned,
    plan_with,
};
