//! The one thing Flightdeck asks of its allocator: give back, at once, what a run's start
//! freed.
//!
//! A run reads and plans its whole workflow before the first task starts; most of what
//! parsing held, and then the run's start (its plan as an event, a 17 MB line at 100,000
//! tasks), is freed just as the run begins to grow. mimalloc 3 returns freed memory to the
//! system only a second later, so both were resident at once: a 100,000-task
//! `flightdeck run` peaked at 221 MB. Collecting at those few moments (after reading, after
//! planning, after the store wrote the start and once the bus let go of it) brings the peak
//! down without the CPU a short purge delay for the whole process would cost (a 10 ms delay
//! did as much for the peak for 0.2 s more system time at 100k).

/// Return the memory this thread has freed to the system now, ignoring the purge delay.
/// Cheap for small plans (a walk over the thread's pages).
#[allow(unsafe_code)]
pub fn give_back_freed_memory() {
    // SAFETY: `mi_collect` frees mimalloc's own empty pages and purges its free arena
    // memory; it takes a plain flag, touches no memory of ours and may be called any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
