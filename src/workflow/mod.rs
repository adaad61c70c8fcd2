//! (workflow: being written)
