//! Event numbers that no two processes share: each process reserves blocks of `seq` values
//! from the store (`meta.next_seq`, bumped in an immediate transaction) and numbers its events
//! from them. A process that dies leaves a gap, never a number someone else hands out again,
//! and every later reservation lies above every number any process has printed.

use std::ops::Range;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::{RunStore, StoreError, sql_error};
use crate::bus::SeqSource;

/// How many numbers one reservation takes: one immediate transaction per block keeps the
/// reservations rare (a 10,000-task run takes about 15), and a gap of at most this many is
/// what a process that stops leaves behind.
pub const SEQ_BLOCK: u64 = 4096;

impl RunStore {
    /// Reserve `count` event numbers that no other process (now or later) gets. The first
    /// reservation of a store numbers on from the highest stored or pruned event.
    pub fn reserve_seqs(&mut self, count: u64) -> Result<Range<u64>, StoreError> {
        let path = &self.path;
        let sql = |source| sql_error(path, source);
        // IMMEDIATE takes the write lock first, so two processes never read the same value.
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let stored: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |row| row.get(0))
            .optional()
            .map_err(sql)?;
        let start = match stored {
            Some(next) => next.max(1) as u64,
            None => highest_seq(&tx).map_err(sql)? + 1,
        };
        let end = start.saturating_add(count.max(1));
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('next_seq', ?1) ON CONFLICT (key) \
             DO UPDATE SET value = max(value, excluded.value)",
            [end as i64],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(start..end)
    }
}

/// `seq` of the highest stored or pruned event, 0 when none ever was.
pub(super) fn highest_seq(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT max(last_seq) FROM event_blocks), 0), \
         coalesce((SELECT value FROM meta WHERE key = 'pruned_seq'), 0))",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|seq| seq.max(0) as u64)
}

/// A [`SeqSource`] on a store connection of its own, for a runtime's bus.
pub struct SeqBlocks {
    store: RunStore,
}

impl SeqBlocks {
    pub fn new(store: RunStore) -> Self {
        Self { store }
    }

    /// Reserve the next block, reporting a failure (the runtime's first block, so a store
    /// that cannot number events stops the start with a clear error).
    pub fn reserve(&mut self) -> Result<Range<u64>, StoreError> {
        self.store.reserve_seqs(SEQ_BLOCK)
    }
}

impl SeqSource for SeqBlocks {
    fn next_block(&mut self) -> Result<Range<u64>, String> {
        self.reserve().map_err(|error| error.to_string())
    }
}
