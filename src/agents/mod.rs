//! (agents: being written)
