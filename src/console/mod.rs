//! (console: being written)
