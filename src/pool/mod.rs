//! (pool: being written)
