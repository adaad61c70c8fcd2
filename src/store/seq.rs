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

/// Most numbers one reservation takes once blocks have grown (see [`SeqBlocks`]).
pub const SEQ_BLOCK_MAX: u64 = 1 << 18;

/// A [`SeqSource`] on a store connection of its own, for a runtime's bus.
///
/// The next block is always reserved ahead, on a thread of its own, as soon as the current
/// one is handed out, so the bus (which asks while holding its lock, on the engine's thread)
/// normally finds it ready. Reserving there took the write lock while the store writer held
/// it, and `SQLite`'s busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries: at
/// 100,000 tasks the engine's thread slept 0.5 s in 120 reservations. Blocks also double from
/// [`SEQ_BLOCK`] up to [`SEQ_BLOCK_MAX`], so a long run reserves rarely while a short one leaves
/// a small gap when its process stops.
pub struct SeqBlocks {
    /// Asks the reserving thread for a block of this many numbers.
    ask: std::sync::mpsc::Sender<u64>,
    /// Its answers, in order.
    blocks: std::sync::mpsc::Receiver<Result<Range<u64>, String>>,
    /// Size of the block asked for after the one in flight.
    next_size: u64,
}

impl SeqBlocks {
    /// Reserve the first block now, reporting a failure (a store that cannot number events
    /// stops the start with a clear error), and start reserving the next one ahead.
    pub fn start(mut store: RunStore) -> Result<(Range<u64>, Self), StoreError> {
        let first = store.reserve_seqs(SEQ_BLOCK)?;
        let (ask, asked) = std::sync::mpsc::channel::<u64>();
        let (answer, blocks) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("flightdeck-seq".to_owned())
            .spawn(move || {
                // Ends when the bus (holding `ask`) is gone.
                while let Ok(count) = asked.recv() {
                    let block = store.reserve_seqs(count).map_err(|error| error.to_string());
                    if answer.send(block).is_err() {
                        return;
                    }
                }
            })
            .map_err(StoreError::Spawn)?;
        let mut blocks = Self { ask, blocks, next_size: SEQ_BLOCK };
        blocks.ask_ahead();
        Ok((first, blocks))
    }

    fn ask_ahead(&mut self) {
        self.next_size = (self.next_size * 2).min(SEQ_BLOCK_MAX);
        // A thread that is gone shows up as a failed answer below.
        let _ = self.ask.send(self.next_size);
    }
}

impl SeqSource for SeqBlocks {
    fn next_block(&mut self) -> Result<Range<u64>, String> {
        let block = self
            .blocks
            .recv()
            .map_err(|_| "the thread reserving event numbers stopped".to_owned())
            .and_then(|block| block);
        self.ask_ahead();
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reserved_ahead_grow_and_never_overlap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("runs.db");
        let (first, mut blocks) =
            SeqBlocks::start(RunStore::open(&path).expect("open")).expect("first block");
        assert_eq!(first, 1..1 + SEQ_BLOCK);
        let mut last = first;
        let mut sizes = Vec::new();
        for _ in 0..8 {
            let block = blocks.next_block().expect("block");
            assert!(block.start >= last.end, "{block:?} overlaps {last:?}");
            sizes.push(block.end - block.start);
            last = block;
        }
        assert_eq!(sizes[..3], [2 * SEQ_BLOCK, 4 * SEQ_BLOCK, 8 * SEQ_BLOCK]);
        assert_eq!(*sizes.last().expect("sizes"), SEQ_BLOCK_MAX);
        // Another process reserving meanwhile (maybe before the block asked for ahead) never
        // shares a number with this one.
        let mut other = RunStore::open(&path).expect("open");
        let theirs = other.reserve_seqs(SEQ_BLOCK).expect("reserve");
        let next = blocks.next_block().expect("block");
        assert!(theirs.start >= last.end, "{theirs:?} vs {last:?}");
        assert!(next.end <= theirs.start || next.start >= theirs.end, "{next:?} vs {theirs:?}");
    }
}
