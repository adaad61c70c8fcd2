//! The schema, versioned with the database's `user_version`. Each migration moves the database
//! from version `i` to `i + 1` inside one transaction; never edit a released one.

use rusqlite::{Connection, Transaction};

/// Schema steps; the database is at version `MIGRATIONS.len()` when up to date.
const MIGRATIONS: &[&str] = &[
    // 1: runs and their events.
    "CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY NOT NULL,
        workflow    TEXT NOT NULL,
        file        TEXT NOT NULL,
        started_at  INTEGER NOT NULL,          -- ms since the Unix epoch
        finished_at INTEGER,                   -- NULL until RunFinished
        status      TEXT NOT NULL,             -- running | succeeded | failed | cancelled
        tasks       INTEGER NOT NULL,
        succeeded   INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0,
        skipped     INTEGER NOT NULL DEFAULT 0,
        cancelled   INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER,
        simulated   INTEGER NOT NULL,
        pid         INTEGER NOT NULL           -- process that runs it; dead + running = interrupted
    ) STRICT;
    CREATE TABLE events (
        id     INTEGER PRIMARY KEY,            -- insertion order, also across processes
        run_id TEXT NOT NULL,
        seq    INTEGER NOT NULL,
        ts     INTEGER NOT NULL,               -- ms since the Unix epoch
        type   TEXT NOT NULL,
        task   TEXT,
        agent  TEXT,
        json   TEXT NOT NULL                   -- the whole envelope
    ) STRICT;
    -- Instead of an index on events (a third of the cost of every insert), each run keeps
    -- the id range its events lie in; reading a run scans that range of the table.
    CREATE TABLE run_spans (
        run_id      TEXT PRIMARY KEY NOT NULL,
        first_event INTEGER NOT NULL,
        last_event  INTEGER NOT NULL
    ) STRICT;",
    // 2: facts about the store itself. `pruned_seq`: the highest `seq` of any pruned event,
    // so numbering never goes back even when every run has been pruned.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) STRICT;",
    // 3: events stored in blocks, one row per run per committed batch instead of one per
    // event: a row costs SQLite about 2 µs, three times what encoding the event costs, and
    // was most of the engine's overhead. Readers decode a run's blocks line by line.
    "CREATE TABLE event_blocks (
        id        INTEGER PRIMARY KEY,         -- insertion order, also across processes
        run_id    TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        body      TEXT NOT NULL                -- the envelopes, one JSON object per line
    ) STRICT;
    INSERT INTO event_blocks (run_id, first_seq, last_seq, count, body)
        SELECT run_id, seq, seq, 1, json || char(10) FROM events ORDER BY id;
    CREATE INDEX event_blocks_by_run ON event_blocks (run_id, id);
    DROP TABLE events;
    DROP TABLE run_spans;",
    // 4: one row per finished attempt, for learning which agents succeed. Kept apart from the
    // runs so that pruning old runs does not forget what they taught.
    "CREATE TABLE outcomes (
        id          INTEGER PRIMARY KEY,
        agent       TEXT NOT NULL,
        words       TEXT NOT NULL,             -- the task's distinct key words, space-separated
        success     INTEGER NOT NULL,          -- 1 succeeded, 0 failed (timeouts included)
        duration_ms INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,          -- ms since the Unix epoch
        simulated   INTEGER NOT NULL,
        backend     TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        task        TEXT NOT NULL,
        attempt     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX outcomes_by_time ON outcomes (finished_at);",
    // 5: the head of the audit log's chain, kept here so that cutting or deleting the log
    // shows (see `audit::anchor`). One row.
    "CREATE TABLE audit_anchor (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        count     INTEGER NOT NULL,            -- seq of the last anchored record
        last_hash TEXT NOT NULL,               -- SHA-256 of its line
        mac       TEXT NOT NULL                -- HMAC of both under the audit key
    ) STRICT;",
    // 6: no change to the tables, to the lines only: a line no longer holds its `run_id`
    // (its row names the run), and a `run_started` of more than 256 tasks holds its plan in
    // columns (`crate::columns`). A build before this one would misread such lines, so it
    // refuses the store as too new.
    "-- the lines' format only",
];

/// The version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What [`migrate`] found.
pub enum Migration {
    UpToDate,
    /// The database is newer than this build.
    TooNew(i64),
}

/// Bring the database to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migration> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Ok(Migration::TooNew(found));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        step(&tx, sql, index as i64 + 1)?;
    }
    tx.commit()?;
    Ok(Migration::UpToDate)
}

fn step(tx: &Transaction<'_>, sql: &str, version: i64) -> rusqlite::Result<()> {
    tx.execute_batch(sql)?;
    tx.pragma_update(None, "user_version", version)
}
