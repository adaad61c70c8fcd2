//! The audit log: an append-only, hash-chained JSON Lines file (`<data_dir>/audit.jsonl`).
//!
//! This is product data, not tracing output: every decision of the gate lands here, one line
//! per record, each line bound to the previous one by a SHA-256 `prev` link and sealed by an
//! HMAC under a key kept beside it (`audit.key`, mode 0600, see [`key`]). The head of the
//! chain is anchored in the run store as records are appended (see [`anchor`]). [`verify`]
//! finds any edited, removed or reordered line, a rewrite without the key, and (given the
//! anchor) a cut tail, a cut-and-appended file or a deleted one.
//!
//! Durability: each record is written with one `write_all` and `sync_data` before `append`
//! returns, so a caller never acts on a record that is not on disk. A crash can only leave a
//! torn last line, which was never acknowledged; [`AuditLog::open`] moves it aside to
//! `audit.jsonl.torn-<time>` and continues the chain from the last whole record.
//!
//! Several processes may share one file (the console and a headless run in the same
//! project): every append takes an exclusive `flock` and re-reads the tail if another
//! process appended since, so the chain stays one chain.

mod anchor;
mod error;
pub mod key;
mod record;
mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

pub use anchor::{AnchorStore, AuditAnchor};
pub use error::AuditError;
pub use key::{AuditKey, KEY_FILE, key_path_for};
pub use record::{AuditEntry, AuditRecord, GENESIS_PREV, Keying, Outcome};
pub use verify::{ChainProblem, ProblemKind, VerifyReport, read_records, verify, verify_anchored};

use record::{decode_line, encode_line, sha256_hex};

/// The audit log file name inside the data folder.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// First window read from the end of the file when looking for the last record.
const TAIL_WINDOW_BYTES: u64 = 64 * 1024;

/// A torn last line found and moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn bytes were kept.
    pub aside: PathBuf,
    /// 1-based line number the torn bytes had in the log.
    pub line: u64,
    pub bytes: u64,
}

/// Records the run store's anchor counted that the log no longer holds, found at open. The
/// chain goes on from the anchored head, so `audit verify` keeps showing the gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainGap {
    /// Records the log held (its last `seq`).
    pub found: u64,
    /// Records the anchor says were written.
    pub anchored: u64,
}

/// Handle to the audit log. Clones share one file and one chain.
#[derive(Clone)]
pub struct AuditLog {
    path: Arc<PathBuf>,
    chain: Arc<Mutex<Chain>>,
}

struct Chain {
    file: File,
    /// File length after our last append (or the last tail read).
    len: u64,
    next_seq: u64,
    prev: String,
    /// Set when a failed write could not be undone; every later append is refused.
    poisoned: Option<String>,
    torn_tails: Vec<TornTail>,
    /// `None` only while opening a log whose key file does not exist yet.
    key: Option<AuditKey>,
    key_path: PathBuf,
    anchor: Option<Box<dyn AnchorStore>>,
    gap: Option<ChainGap>,
    /// Problems with the anchor itself, found at open.
    anchor_warnings: Vec<String>,
}

impl AuditLog {
    /// Open (or create) the log and continue its chain, without an anchor. A torn last line
    /// is moved aside (see [`AuditLog::torn_tails`]); a damaged last complete record is an
    /// error. The key file beside it is created when missing and the log has no keyed
    /// record; a keyed log whose key is gone is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        Self::open_with(path.as_ref(), None)
    }

    /// [`AuditLog::open`], keeping the head of the chain in `anchor` after every append. When
    /// the anchor counts more records than the log holds (a cut tail, a deleted file), the
    /// chain continues from the anchored head rather than starting again: see
    /// [`AuditLog::gap`].
    pub fn open_anchored(
        path: impl AsRef<Path>,
        anchor: Box<dyn AnchorStore>,
    ) -> Result<Self, AuditError> {
        Self::open_with(path.as_ref(), Some(anchor))
    }

    fn open_with(path: &Path, anchor: Option<Box<dyn AnchorStore>>) -> Result<Self, AuditError> {
        let path = path.to_owned();
        let open_err = |source| AuditError::Open { path: path.clone(), source };
        let existed = path.exists();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(open_err)?;
        if !existed {
            // The new directory entry must survive a crash as well as the records.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(open_err)?;
            }
        }
        let mut chain = Chain {
            file,
            len: 0,
            next_seq: 1,
            prev: GENESIS_PREV.to_owned(),
            poisoned: None,
            torn_tails: Vec::new(),
            key: AuditKey::load(&key_path_for(&path))?,
            key_path: key_path_for(&path),
            anchor,
            gap: None,
            anchor_warnings: Vec::new(),
        };
        chain.file.lock().map_err(open_err)?;
        let loaded = chain.reload_tail(&path).and_then(|()| chain.join_anchor());
        let _ = chain.file.unlock();
        loaded?;
        Ok(Self { path: Arc::new(path), chain: Arc::new(Mutex::new(chain)) })
    }

    /// What opening found that a person should hear of, one sentence each (torn tails moved
    /// aside, a gap against the anchor, an anchor that does not check out); normally none.
    /// Front ends print these on stderr or on screen.
    pub fn warnings(&self) -> Vec<String> {
        let chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.path.display();
        let mut warnings: Vec<String> = chain
            .torn_tails
            .iter()
            .map(|torn| {
                format!(
                    "{path}:{}: an interrupted write left a torn last record ({} bytes); it was \
                     moved aside to {} and the chain goes on from the last whole record",
                    torn.line,
                    torn.bytes,
                    torn.aside.display()
                )
            })
            .collect();
        if let Some(gap) = &chain.gap {
            warnings.push(format!(
                "{path}: the run store's anchor counts {} audit records but the log holds {}: \
                 records were deleted or cut off. The chain goes on from the anchored record; \
                 `flightdeck audit verify` shows the gap",
                gap.anchored, gap.found
            ));
        }
        warnings.extend(chain.anchor_warnings.iter().cloned());
        warnings
    }

    /// The gap found at open between the anchor and the log, if any.
    pub fn gap(&self) -> Option<ChainGap> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner).gap.clone()
    }

    /// The file this log writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Torn last lines moved aside since this log was opened (normally none).
    pub fn torn_tails(&self) -> Vec<TornTail> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner).torn_tails.clone()
    }

    /// The `seq` the next record will get (in this process's view of the chain).
    pub fn next_seq(&self) -> u64 {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner).next_seq
    }

    /// Append one record and sync it to disk; returns its `seq`. On error nothing was
    /// recorded, so the caller must treat the action as not audited.
    pub fn append(&self, entry: &AuditEntry) -> Result<u64, AuditError> {
        let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.path.as_path();
        if let Some(reason) = &chain.poisoned {
            return Err(AuditError::Poisoned { path: path.to_owned(), reason: reason.clone() });
        }
        chain.file.lock().map_err(|source| AuditError::Write { path: path.to_owned(), source })?;
        let appended = chain.append_locked(path, entry);
        // Closing the descriptor would release the lock too; an error here changes nothing.
        let _ = chain.file.unlock();
        appended
    }
}

impl Chain {
    /// Write one record; the caller holds the file lock.
    fn append_locked(&mut self, path: &Path, entry: &AuditEntry) -> Result<u64, AuditError> {
        let write_err = |source| AuditError::Write { path: path.to_owned(), source };
        let on_disk = self.file.metadata().map_err(write_err)?.len();
        if on_disk != self.len {
            // Another process appended (or crashed mid-append) since our last write.
            self.reload_tail(path)?;
        }
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let key = self.key()?;
        let (line, line_hash) = encode_line(self.next_seq, &ts, &self.prev, entry, &key)?;
        let written = self.file.write_all(line.as_bytes()).and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Take back whatever part of the line reached the file, or stop appending.
            if let Err(undo) = self.file.set_len(self.len).and_then(|()| self.file.sync_data()) {
                let reason = format!("{source}; truncating back failed: {undo}");
                tracing::error!(path = %path.display(), %reason, "audit log poisoned");
                self.poisoned = Some(reason);
            }
            return Err(write_err(source));
        }
        let seq = self.next_seq;
        self.len += line.len() as u64;
        self.next_seq += 1;
        if let Some(anchor) = &mut self.anchor {
            // The record is durable already; an anchor that lags is only less proof, and
            // `verify` accepts records after the anchored one.
            if let Err(error) = anchor.save_anchor(&AuditAnchor::new(seq, line_hash.clone(), &key))
            {
                tracing::warn!(path = %path.display(), %error, "audit log: cannot anchor the head");
            }
        }
        self.prev = line_hash;
        Ok(seq)
    }

    fn key(&mut self) -> Result<AuditKey, AuditError> {
        if let Some(key) = &self.key {
            return Ok(key.clone());
        }
        let key = AuditKey::load_or_create(&self.key_path)?;
        self.key = Some(key.clone());
        Ok(key)
    }

    /// Compare the tail just read with the anchor: continue from the anchored head when the
    /// log holds fewer records than it counts. The caller holds the file lock.
    fn join_anchor(&mut self) -> Result<(), AuditError> {
        let key = self.key()?;
        let Some(store) = &mut self.anchor else { return Ok(()) };
        let anchor = match store.load_anchor() {
            Ok(Some(anchor)) => anchor,
            Ok(None) => return Ok(()),
            Err(error) => {
                self.anchor_warnings.push(format!("cannot read the audit anchor: {error}"));
                return Ok(());
            }
        };
        if !anchor.is_signed_by(&key) {
            self.anchor_warnings.push(format!(
                "the run store's audit anchor (record {}) is not signed by {}: it was edited, or \
                 the key was replaced",
                anchor.count,
                self.key_path.display()
            ));
            return Ok(());
        }
        let found = self.next_seq - 1;
        if anchor.count > found {
            tracing::error!(found, anchored = anchor.count, "audit log: records missing");
            self.gap = Some(ChainGap { found, anchored: anchor.count });
            self.next_seq = anchor.count + 1;
            self.prev = anchor.last_hash;
        }
        Ok(())
    }

    /// Read the tail of the file and continue the chain after its last whole record,
    /// moving a torn last line aside first. The caller holds the file lock.
    fn reload_tail(&mut self, path: &Path) -> Result<(), AuditError> {
        let read_err = |source| AuditError::Read { path: path.to_owned(), source };
        let len = self.file.metadata().map_err(read_err)?.len();
        let tail = read_tail(&self.file, len).map_err(read_err)?;
        // Check the last whole record before touching anything: damage is left as found.
        let (next_seq, prev) = match &tail.last_line {
            None => (1, GENESIS_PREV.to_owned()),
            Some((offset, line)) => {
                let (record, _) = decode_line(line, self.key.as_ref()).map_err(|reason| {
                    let line = line_number_at(&self.file, *offset).unwrap_or(0);
                    if self.key.is_none() {
                        AuditError::KeyMissing {
                            path: path.to_owned(),
                            key: self.key_path.clone(),
                            line,
                        }
                    } else {
                        AuditError::CorruptTail { path: path.to_owned(), line, reason }
                    }
                })?;
                (record.seq + 1, sha256_hex(line))
            }
        };
        let mut len = len;
        if let Some(torn_from) = tail.torn_from {
            let torn = move_aside(&self.file, path, torn_from, len)?;
            tracing::warn!(
                path = %path.display(),
                aside = %torn.aside.display(),
                line = torn.line,
                bytes = torn.bytes,
                "audit log: torn last line from an interrupted write moved aside"
            );
            self.torn_tails.push(torn);
            len = torn_from;
        }
        self.next_seq = next_seq;
        self.prev = prev;
        self.len = len;
        Ok(())
    }
}

/// The end of the file: its last newline-terminated line and where a torn remainder starts.
struct Tail {
    last_line: Option<(u64, Vec<u8>)>,
    torn_from: Option<u64>,
}

fn read_tail(file: &File, len: u64) -> std::io::Result<Tail> {
    let mut window = TAIL_WINDOW_BYTES;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0; (len - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        // Grow the window when the line we need starts before it.
        let complete_end = match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => {
                window *= 2;
                continue;
            }
        };
        let torn_from = (complete_end < buf.len()).then(|| start + complete_end as u64);
        if complete_end == 0 {
            return Ok(Tail { last_line: None, torn_from });
        }
        let line_end = complete_end - 1;
        let line_start = match buf[..line_end].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => {
                window *= 2;
                continue;
            }
        };
        let line = buf[line_start..line_end].to_vec();
        return Ok(Tail { last_line: Some((start + line_start as u64, line)), torn_from });
    }
}

/// Copy `[from, len)` to `<file>.torn-<time>`, sync it, then cut it off the log.
fn move_aside(file: &File, path: &Path, from: u64, len: u64) -> Result<TornTail, AuditError> {
    let stamp: String = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".torn-{stamp}"));
    let mut aside = path.with_file_name(&name);
    let mut bytes = vec![0; (len - from) as usize];
    let mut copy = || -> std::io::Result<()> {
        file.read_exact_at(&mut bytes, from)?;
        let mut out = create_unique(&mut aside)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        file.set_len(from)?;
        file.sync_data()
    };
    copy().map_err(|source| AuditError::MoveAside {
        path: path.to_owned(),
        aside: aside.clone(),
        source,
    })?;
    let line = line_number_at(file, from).unwrap_or(0);
    Ok(TornTail { aside, line, bytes: len - from })
}

/// Create `path` without overwriting anything; add `-1`, `-2`, ... when it exists.
fn create_unique(path: &mut PathBuf) -> std::io::Result<File> {
    let base = path.clone().into_os_string();
    for n in 1u32.. {
        match OpenOptions::new().write(true).create_new(true).open(&*path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                let mut next = base.clone();
                next.push(format!("-{n}"));
                *path = PathBuf::from(next);
            }
            other => return other,
        }
    }
    Err(std::io::Error::other("no free file name"))
}

/// 1-based line number of the byte at `offset`. Only used when reporting damage.
#[allow(clippy::naive_bytecount)]
fn line_number_at(file: &File, offset: u64) -> std::io::Result<u64> {
    let mut buf = vec![0; 64 * 1024];
    let mut pos = 0;
    let mut newlines = 0;
    while pos < offset {
        let want = buf.len().min((offset - pos) as usize);
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        pos += n as u64;
    }
    Ok(newlines + 1)
}
