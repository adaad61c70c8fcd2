//! `flightdeck audit`: check the audit log's chain against its key and the run store's
//! anchor (`verify`), and show its records (`tail`).
//!
//! Reading never writes: no key is created and no store is made where there is none.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::table::pad;
use super::{Globals, exit};
use crate::audit::{
    AUDIT_FILE, AuditAnchor, AuditRecord, ChainProblem, VerifyReport, read_records, verify_anchored,
};
use crate::store::{RUNS_FILE, RunStore};
use crate::terminal::sanitize;
use crate::words::plural;

/// How often `audit tail -f` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// `audit verify [--json]`: 0 when the chain is intact, 1 when anything is wrong (each
/// problem named with its line), 2 when the log cannot be read at all.
pub fn verify(globals: &Globals, json: bool) -> i32 {
    let path = globals.data_dir.join(AUDIT_FILE);
    let anchor = match anchor(globals) {
        Ok(anchor) => anchor,
        Err(message) => {
            eprintln!("flightdeck: {message}");
            return exit::INVALID;
        }
    };
    let report = match verify_anchored(&path, anchor.as_ref()) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::INVALID;
        }
    };
    if json {
        outln!("{}", report_json(&report));
    } else if report.is_intact() {
        outln!("{report}");
    } else {
        for problem in &report.problems {
            outln!("{}", problem_line(&report, problem));
        }
        outln!(
            "{}: {} in {}: the audit log does not prove itself",
            path.display(),
            plural(report.problems.len(), "problem"),
            plural(report.records, "record")
        );
    }
    if report.is_intact() { exit::OK } else { exit::FAILED }
}

/// Which records `audit tail` shows.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    pub user: Option<String>,
    pub action: Option<String>,
    /// A run id or a start of one, found in the record's detail.
    pub run: Option<String>,
    /// Show at most this many of the matching records before following.
    pub lines: usize,
}

impl TailFilter {
    fn matches(&self, record: &AuditRecord) -> bool {
        let run_of = |value: &serde_json::Value| {
            value
                .get("run")
                .or_else(|| value.get("command").and_then(|c| c.get("run")))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        self.user.as_ref().is_none_or(|u| record.user.as_str() == u)
            && self.action.as_ref().is_none_or(|a| &record.action == a)
            && self
                .run
                .as_ref()
                .is_none_or(|r| run_of(&record.detail).is_some_and(|run| run.starts_with(r)))
    }
}

/// `audit tail [-f] [--json] [--user U] [--action A] [--run R] [-n N]`: the last records,
/// oldest first; with `-f`, then every new one as it is appended, until interrupted.
pub fn tail(globals: &Globals, filter: &TailFilter, follow: bool, json: bool) -> i32 {
    let path = globals.data_dir.join(AUDIT_FILE);
    let records = match read_records(&path) {
        Ok(records) => records,
        Err(_) if !path.exists() && follow => Vec::new(),
        Err(error) => {
            eprintln!("flightdeck: {error}");
            return exit::INVALID;
        }
    };
    let shown: Vec<&AuditRecord> = records.iter().filter(|r| filter.matches(r)).collect();
    for record in &shown[shown.len().saturating_sub(filter.lines)..] {
        print_record(record, json);
    }
    if !follow {
        return exit::OK;
    }
    let mut offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut pending = Vec::new();
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let Ok(mut file) = std::fs::File::open(&path) else { continue };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < offset {
            eprintln!(
                "flightdeck: {}: the audit log got shorter; reading it again",
                path.display()
            );
            offset = 0;
            pending.clear();
        }
        if len == offset {
            continue;
        }
        let mut bytes = Vec::new();
        if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).is_err()
            || file.read_to_end(&mut bytes).is_err()
        {
            continue;
        }
        offset += bytes.len() as u64;
        pending.extend_from_slice(&bytes);
        // Only whole lines: a record being written shows on the next poll.
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Ok(record) = serde_json::from_slice::<AuditRecord>(&line)
                && filter.matches(&record)
            {
                print_record(&record, json);
            }
        }
    }
}

/// The run store's anchor, when there is a store (reading never creates one).
fn anchor(globals: &Globals) -> Result<Option<AuditAnchor>, String> {
    let path: PathBuf = globals.data_dir.join(RUNS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let store = RunStore::open_read_only(&path).map_err(|e| e.to_string())?;
    store.audit_anchor().map_err(|e| e.to_string())
}

fn problem_line(report: &VerifyReport, problem: &ChainProblem) -> String {
    if problem.line == 0 {
        format!("{}: {}", report.path.display(), problem.kind)
    } else {
        format!("{}:{}: {}", report.path.display(), problem.line, problem.kind)
    }
}

fn report_json(report: &VerifyReport) -> serde_json::Value {
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| json!({ "line": p.line, "problem": p.kind.to_string() }))
        .collect();
    json!({
        "path": report.path,
        "intact": report.is_intact(),
        "records": report.records,
        "unkeyed": report.unkeyed,
        "anchored": report.anchored,
        "problems": problems,
    })
}

fn print_record(record: &AuditRecord, json: bool) {
    if json {
        outln!("{}", serde_json::to_string(record).unwrap_or_default());
        return;
    }
    let detail = record.detail.get("reason").and_then(serde_json::Value::as_str).map_or_else(
        || {
            let mut args = record.detail.get("command").cloned().unwrap_or_default();
            if let Some(object) = args.as_object_mut() {
                object.remove("command");
            }
            if args.as_object().is_some_and(serde_json::Map::is_empty) || args.is_null() {
                String::new()
            } else {
                args.to_string()
            }
        },
        |reason| format!("reason: {reason}"),
    );
    // Padded by the columns a terminal shows (a user name may be wide), no trailing spaces.
    let line = format!(
        "{:>5}  {}  {} {} {} {}  {}",
        record.seq,
        sanitize(&record.ts),
        pad(&sanitize(record.user.as_str()), 10),
        pad(&sanitize(&record.role), 9),
        pad(&sanitize(&record.action), 18),
        pad(record.outcome.as_str(), 8),
        sanitize(&detail)
    );
    outln!("{}", line.trim_end());
}
