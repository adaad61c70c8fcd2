//! (resilience: being written)
