//! Flightdeck: a terminal operator console for multi-agent workflows.
//!
//! The runtime publishes [`event::Event`]s on an [`bus::EventBus`]; operators act through
//! [`command::Command`]s that pass the gate in [`governance`]. See `DESIGN.md` for the picture.

pub mod agents;
pub mod allocator;
pub mod audit;
pub mod bus;
pub mod cli;
pub(crate) mod columns;
pub mod command;
pub mod config;
pub mod conflict;
pub mod console;
pub mod engine;
pub mod event;
pub mod exec;
pub mod fuzzing;
pub mod governance;
pub mod host;
pub mod ids;
pub mod learning;
pub mod logging;
pub mod model;
pub mod pool;
pub mod redact;
pub mod resilience;
pub mod resume;
pub mod runtime;
pub mod safety;
pub mod store;
pub mod terminal;
pub mod words;
pub mod workflow;
