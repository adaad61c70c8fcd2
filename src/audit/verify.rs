//! Checking a whole audit log: every line's own hash, its `prev` link and its `seq`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::AuditError;
use super::record::{AuditRecord, GENESIS_PREV, decode_line, sha256_hex};

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// Lines that hold a record whose own hash checks out.
    pub records: u64,
    /// SHA-256 of the last line. Keep it elsewhere to detect later truncation of the tail,
    /// which the chain alone cannot reveal.
    pub last_line_hash: Option<String>,
    /// Every problem, in file order; empty when the chain is intact.
    pub problems: Vec<ChainProblem>,
}

/// One broken spot of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// 1-based line number in the file.
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
            None => write!(f, "{}: {} records, chain intact", self.path.display(), self.records),
            Some(first) => write!(
                f,
                "{}:{}: {} ({} problem(s) in {} records)",
                self.path.display(),
                first.line,
                first.kind,
                self.problems.len(),
                self.records
            ),
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
        }
    }
}

/// Check the whole log at `path`. I/O errors are errors; a broken chain is a report with
/// problems, each naming its line.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let bytes = read_shared(path)?;
    let mut report = VerifyReport {
        path: path.to_owned(),
        records: 0,
        last_line_hash: None,
        problems: Vec::new(),
    };
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
        match decode_line(line) {
            Ok(record) => {
                check_links(&record, expected_seq, &expected_prev, &mut problem);
                expected_seq = record.seq + 1;
                report.records += 1;
            }
            Err(reason) => {
                problem(ProblemKind::Damaged { reason });
                expected_seq += 1;
            }
        }
        // Re-sync on this line so one removal or edit is reported once, not on every line after.
        expected_prev = sha256_hex(line);
        report.last_line_hash = Some(expected_prev.clone());
    }
    Ok(report)
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
