//! (governance: being written)
