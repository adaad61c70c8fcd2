//! Checking a whole audit log: every line's own MAC, its `prev` link and its `seq`, and,
//! given the run store's anchor, that the anchored record is still there unchanged.

use std::fmt;
use std::path::{Path, PathBuf};

use super::AuditError;
use super::anchor::AuditAnchor;
use super::key::{AuditKey, key_path_for};
use super::record::{AuditRecord, GENESIS_PREV, Keying, decode_line, sha256_hex};
use crate::words::plural;

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// Lines that hold a record whose own MAC checks out.
    pub records: u64,
    /// Of those, records from before the log was keyed (a plain hash, at its start).
    pub unkeyed: u64,
    /// The anchored head the log was checked against, if any.
    pub anchored: Option<u64>,
    /// SHA-256 of the last line. Keep it elsewhere to detect later truncation of the tail,
    /// which the chain alone cannot reveal.
    pub last_line_hash: Option<String>,
    /// Every problem, in file order; empty when the chain is intact.
    pub problems: Vec<ChainProblem>,
}

/// One broken spot of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// 1-based line number in the file; 0 for the file as a whole.
    pub line: u64,
    pub kind: ProblemKind,
}

/// How a line breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The line is not a record, or its own hash does not match its content.
    Damaged { reason: String },
    /// `seq` is not the previous one plus one: a line was removed, inserted or moved.
    SeqOutOfOrder { expected: u64, found: u64 },
    /// `prev` is not the hash of the line before: that line was edited, removed or moved.
    PrevMismatch,
    /// The last line has no newline: a write was interrupted and the log not reopened since.
    TornTail,
    /// A record with a plain hash after keyed ones: written by someone without the key.
    Unkeyed,
    /// The key file is missing, so no keyed record can be proven.
    KeyMissing { key: PathBuf },
    /// The log file is gone although the anchor counts records.
    FileMissing { anchored: u64 },
    /// The anchor in the run store is not signed by the key: it was edited.
    AnchorForged,
    /// The log ends before the anchored record: its tail was cut off.
    CutOff { anchored: u64, found: u64 },
    /// The record the anchor names is not the one anchored: the file was cut and written on.
    AnchorMismatch { seq: u64 },
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.first() {
            None => {
                write!(f, "{}: {} records, chain intact", self.path.display(), self.records)?;
                if let Some(anchored) = self.anchored {
                    write!(f, ", anchored at record {anchored}")?;
                }
                if self.unkeyed > 0 {
                    write!(f, " ({} records from before keying)", self.unkeyed)?;
                }
                Ok(())
            }
            Some(first) => {
                write!(f, "{}:", self.path.display())?;
                if first.line > 0 {
                    write!(f, "{}:", first.line)?;
                }
                write!(
                    f,
                    " {} ({} in {})",
                    first.kind,
                    plural(self.problems.len(), "problem"),
                    plural(self.records, "record")
                )
            }
        }
    }
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "line {}: {}", self.line, self.kind)
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Damaged { reason } => write!(f, "damaged record: {reason}"),
            Self::SeqOutOfOrder { expected, found } => write!(
                f,
                "seq {found} where {expected} was expected: a record was removed, inserted or moved"
            ),
            Self::PrevMismatch => f.write_str(
                "prev does not match the line before: that line was edited, removed or moved",
            ),
            Self::TornTail => f.write_str("the last line is incomplete (interrupted write)"),
            Self::Unkeyed => f.write_str(
                "a record without a MAC where a keyed one must be: written by someone without \
                 the key",
            ),
            Self::KeyMissing { key } => {
                write!(f, "the key {} is missing: no record can be proven", key.display())
            }
            Self::FileMissing { anchored } => write!(
                f,
                "the log file is missing but the run store's anchor counts {anchored} records: \
                 it was deleted"
            ),
            Self::AnchorForged => f.write_str(
                "the run store's anchor is not signed by the key: the anchor was edited",
            ),
            Self::CutOff { anchored, found } => write!(
                f,
                "the log ends at record {found} but the run store anchored record {anchored}: \
                 its tail was cut off"
            ),
            Self::AnchorMismatch { seq } => write!(
                f,
                "record {seq} is not the record the run store anchored: the log was cut and \
                 written on again, or rewritten"
            ),
        }
    }
}

/// Check the whole log at `path` with the key beside it, without an anchor. I/O errors are
/// errors; a broken chain is a report with problems, each naming its line.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    verify_anchored(path, None)
}

/// [`verify`], and also that the record `anchor` names is in the log unchanged (so a cut
/// tail, a cut-and-appended log, a rewrite and a deleted file are found). A missing file
/// is a report (not an error) when the anchor counts records.
pub fn verify_anchored(
    path: impl AsRef<Path>,
    anchor: Option<&AuditAnchor>,
) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let mut report = VerifyReport {
        path: path.to_owned(),
        records: 0,
        unkeyed: 0,
        anchored: anchor.map(|a| a.count),
        last_line_hash: None,
        problems: Vec::new(),
    };
    let file_problem = |kind| ChainProblem { line: 0, kind };
    let key_path = key_path_for(path);
    let key = AuditKey::load(&key_path)?;
    let bytes = match read_shared(path) {
        Ok(bytes) => bytes,
        Err(AuditError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                && anchor.is_some_and(|a| a.count > 0) =>
        {
            let anchored = anchor.map_or(0, |a| a.count);
            report.problems.push(file_problem(ProblemKind::FileMissing { anchored }));
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    if key.is_none() && !bytes.is_empty() {
        report.problems.push(file_problem(ProblemKind::KeyMissing { key: key_path }));
    }
    let anchor = match (anchor, &key) {
        (Some(anchor), Some(key)) if !anchor.is_signed_by(key) => {
            report.problems.push(file_problem(ProblemKind::AnchorForged));
            None
        }
        (anchor, _) => anchor,
    };
    let mut anchor_seen = false;
    let mut keyed_seen = false;
    let mut last_seq = 0;
    let mut expected_prev = GENESIS_PREV.to_owned();
    let mut expected_seq = 1;
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    let mut number = 0;
    while let Some(line) = lines.next() {
        let is_last = lines.peek().is_none();
        if is_last && line.is_empty() {
            break; // the newline that ends the file
        }
        number += 1;
        let mut problem = |kind| report.problems.push(ChainProblem { line: number, kind });
        if is_last {
            problem(ProblemKind::TornTail);
        }
        let line_hash = sha256_hex(line);
        match decode_line(line, key.as_ref()) {
            Ok((record, keying)) => {
                check_links(&record, expected_seq, &expected_prev, &mut problem);
                match keying {
                    Keying::Keyed => keyed_seen = true,
                    Keying::Unkeyed if keyed_seen => problem(ProblemKind::Unkeyed),
                    Keying::Unkeyed => report.unkeyed += 1,
                }
                if let Some(anchor) = anchor.filter(|a| a.count == record.seq) {
                    anchor_seen = true;
                    // Only keyed appends are anchored: an unkeyed one here was rewritten.
                    if keying == Keying::Unkeyed {
                        problem(ProblemKind::Unkeyed);
                    }
                    if anchor.last_hash != line_hash {
                        problem(ProblemKind::AnchorMismatch { seq: record.seq });
                    }
                }
                expected_seq = record.seq + 1;
                last_seq = last_seq.max(record.seq);
                report.records += 1;
            }
            Err(reason) => {
                // Without the key, the missing key is the one problem worth saying.
                if key.is_some() {
                    problem(ProblemKind::Damaged { reason });
                }
                expected_seq += 1;
            }
        }
        // Re-sync on this line so one removal or edit is reported once, not on every line after.
        expected_prev = line_hash;
        report.last_line_hash = Some(expected_prev.clone());
    }
    if let Some(anchor) = anchor.filter(|a| !anchor_seen && a.count > 0) {
        let kind = if last_seq < anchor.count {
            ProblemKind::CutOff { anchored: anchor.count, found: last_seq }
        } else {
            ProblemKind::AnchorMismatch { seq: anchor.count }
        };
        report.problems.push(ChainProblem { line: number, kind });
    }
    Ok(report)
}

/// Every record of the log at `path` in file order, skipping lines that are not records
/// (`audit verify` is what judges them). For `audit tail`.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<AuditRecord>, AuditError> {
    let bytes = read_shared(path.as_ref())?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect())
}

fn check_links(
    record: &AuditRecord,
    expected_seq: u64,
    expected_prev: &str,
    problem: &mut impl FnMut(ProblemKind),
) {
    if record.seq != expected_seq {
        problem(ProblemKind::SeqOutOfOrder { expected: expected_seq, found: record.seq });
    }
    if record.prev != expected_prev {
        problem(ProblemKind::PrevMismatch);
    }
}

/// Read the file under a shared lock so a concurrent append is never seen half-written.
fn read_shared(path: &Path) -> Result<Vec<u8>, AuditError> {
    let read_err = |source| AuditError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    file.lock_shared().map_err(read_err)?;
    let mut bytes = Vec::new();
    let read = std::io::Read::read_to_end(&mut &file, &mut bytes);
    let _ = file.unlock();
    read.map_err(read_err)?;
    Ok(bytes)
}
