//! (audit: being written)
