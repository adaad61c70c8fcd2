//! The keyed, anchored audit log against an attacker with write access to the data folder but
//! not the key: every way of changing the log is found by `verify`, by the library and by the
//! real `flightdeck audit verify`, which names the line and what is wrong.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use flightdeck::audit::{
    AUDIT_FILE, AuditAnchor, AuditEntry, AuditKey, AuditLog, KEY_FILE, Outcome, ProblemKind,
    VerifyReport, verify, verify_anchored,
};
use flightdeck::ids::UserId;
use flightdeck::store::{RUNS_FILE, RunStore};
use rstest::rstest;
use serde_json::json;
use sha2::{Digest, Sha256};

fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        user: UserId::new(format!("user{}", n % 3)),
        role: "operator".into(),
        action: if n.is_multiple_of(2) { "cancel_run" } else { "start_run" }.into(),
        outcome: Outcome::Accepted,
        detail: json!({"command": {"command": "cancel_run", "run": format!("r{n}")}, "n": n}),
    }
}

struct DataDir {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl DataDir {
    fn log(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    fn open(&self) -> AuditLog {
        let store = RunStore::open(self.dir.join(RUNS_FILE)).unwrap();
        AuditLog::open_anchored(self.log(), Box::new(store)).unwrap()
    }

    fn anchor(&self) -> Option<AuditAnchor> {
        RunStore::open(self.dir.join(RUNS_FILE)).unwrap().audit_anchor().unwrap()
    }

    fn verify(&self) -> VerifyReport {
        verify_anchored(self.log(), self.anchor().as_ref()).unwrap()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log()).unwrap().lines().map(str::to_owned).collect()
    }

    fn write_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        std::fs::write(self.log(), text).unwrap();
    }
}

fn data_dir_with(records: usize) -> DataDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let data = DataDir { _tmp: tmp, dir };
    let log = data.open();
    for n in 0..records {
        log.append(&entry(n)).unwrap();
    }
    data
}

/// Re-seal every line as someone without the key would: a plain SHA-256 where the MAC was,
/// with `prev` links recomputed, so the chain itself is consistent.
fn reseal_without_key(lines: &[String], edit: impl Fn(usize, &str) -> String) -> Vec<String> {
    let mut prev = "0".repeat(64);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut value: serde_json::Value = serde_json::from_str(&edit(i, line)).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove("hash");
        object.insert("prev".into(), json!(prev));
        let body = serde_json::to_string(&value).unwrap();
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let sealed = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
        prev = hex::encode(Sha256::digest(sealed.as_bytes()));
        out.push(sealed);
    }
    out
}

#[test]
fn an_untouched_log_verifies_with_key_and_anchor() {
    let data = data_dir_with(8);
    let key = std::fs::metadata(data.dir.join(KEY_FILE)).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    let report = data.verify();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 8);
    assert_eq!(report.anchored, Some(8));
    assert_eq!(report.unkeyed, 0);
}

#[rstest]
#[case::flip_a_field("flip", 4, "edited")]
#[case::delete_a_line("delete", 3, "removed")]
#[case::swap_two_lines("swap", 3, "moved")]
#[case::cut_the_tail("cut", 5, "tail was cut off")]
#[case::cut_and_append("cut_and_append", 8, "not the record the run store anchored")]
#[case::rewrite_without_key("rewrite", 8, "without the key")]
#[case::edit_then_reseal_all("reseal_edit", 8, "without the key")]
#[case::delete_the_file("delete_file", 0, "deleted")]
#[case::forge_the_anchor("forge_anchor", 0, "anchor was edited")]
#[case::delete_the_key("delete_key", 0, "key")]
fn every_tampering_is_found(#[case] how: &str, #[case] first_line: u64, #[case] said: &str) {
    let data = data_dir_with(8);
    let lines = data.lines();
    match how {
        "flip" => {
            let mut lines = lines;
            lines[3] = lines[3].replace("user0", "user9");
            data.write_lines(&lines);
        }
        "delete" => {
            let mut lines = lines;
            lines.remove(2);
            data.write_lines(&lines);
        }
        "swap" => {
            let mut lines = lines;
            lines.swap(2, 3);
            data.write_lines(&lines);
        }
        "cut" => data.write_lines(&lines[..5]),
        "cut_and_append" => {
            // Cut to 5 records, then let a fresh Flightdeck without the anchor write three
            // more: a valid chain of 8 whose 8th is not the anchored one.
            data.write_lines(&lines[..5]);
            let log = AuditLog::open(data.log()).unwrap();
            for n in 0..3 {
                log.append(&entry(100 + n)).unwrap();
            }
        }
        "rewrite" => data.write_lines(&reseal_without_key(&lines, |_, l| l.to_owned())),
        "reseal_edit" => data.write_lines(&reseal_without_key(&lines, |i, l| {
            if i == 5 { l.replace("user2", "root") } else { l.to_owned() }
        })),
        "delete_file" => std::fs::remove_file(data.log()).unwrap(),
        "forge_anchor" => {
            let store = RunStore::open(data.dir.join(RUNS_FILE)).unwrap();
            let mut anchor = store.audit_anchor().unwrap().unwrap();
            anchor.count = 5;
            anchor.last_hash = hex::encode(Sha256::digest(lines[4].as_bytes()));
            // Written straight into the table, as an attacker would.
            let conn = rusqlite::Connection::open(data.dir.join(RUNS_FILE)).unwrap();
            conn.execute(
                "UPDATE audit_anchor SET count = ?1, last_hash = ?2",
                rusqlite::params![5, anchor.last_hash],
            )
            .unwrap();
            data.write_lines(&lines[..5]);
        }
        "delete_key" => std::fs::remove_file(data.dir.join(KEY_FILE)).unwrap(),
        other => panic!("unknown case {other}"),
    }
    let report = data.verify();
    assert!(!report.is_intact(), "{how}: not found: {report}");
    assert_eq!(report.problems[0].line, first_line, "{how}: {report}");
    let all: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert!(all.iter().any(|p| p.contains(said)), "{how}: {all:#?}");

    // The real command says the same and exits 1.
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--data-dir", data.dir.to_str().unwrap(), "audit", "verify"])
        .env("FLIGHTDECK_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{how}: {stdout}");
    assert!(stdout.contains(said), "{how}: {stdout}");
    if first_line > 0 {
        assert!(stdout.contains(&format!("{AUDIT_FILE}:{first_line}:")), "{how}: {stdout}");
    }
}

#[test]
fn a_deleted_log_is_not_silently_started_again() {
    let data = data_dir_with(6);
    std::fs::remove_file(data.log()).unwrap();
    let log = data.open();
    assert_eq!(log.gap().map(|g| (g.found, g.anchored)), Some((0, 6)));
    let warnings = log.warnings();
    assert!(
        warnings[0].contains("anchor counts 6 audit records but the log holds 0"),
        "{warnings:?}"
    );
    // The chain goes on from the anchored head, so the gap stays visible.
    assert_eq!(log.append(&entry(6)).unwrap(), 7);
    let report = data.verify();
    assert!(!report.is_intact());
    assert_eq!(report.problems[0].line, 1);
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::SeqOutOfOrder { expected: 1, found: 7 }
    ));
}

#[test]
fn a_torn_tail_is_recovered_and_said() {
    let data = data_dir_with(4);
    let mut bytes = std::fs::read(data.log()).unwrap();
    bytes.extend_from_slice(br#"{"seq":5,"ts":"2026-"#);
    std::fs::write(data.log(), bytes).unwrap();
    let report = data.verify();
    assert_eq!(report.problems[0].kind, ProblemKind::TornTail);
    let log = data.open();
    let warnings = log.warnings();
    assert!(
        warnings[0].contains(":5: an interrupted write left a torn last record"),
        "{warnings:?}"
    );
    log.append(&entry(5)).unwrap();
    assert!(data.verify().is_intact());
}

#[test]
fn a_keyed_log_without_its_key_refuses_to_open() {
    let data = data_dir_with(3);
    std::fs::remove_file(data.dir.join(KEY_FILE)).unwrap();
    let err = AuditLog::open(data.log()).err().expect("no key").to_string();
    assert!(err.contains("audit.key is missing") && err.contains(":3:"), "{err}");
}

#[test]
fn a_log_from_before_keying_is_continued_and_its_start_accepted() {
    let data = data_dir_with(4);
    let legacy = reseal_without_key(&data.lines(), |_, l| l.to_owned());
    std::fs::remove_file(data.dir.join(KEY_FILE)).unwrap();
    std::fs::remove_file(data.dir.join(RUNS_FILE)).unwrap();
    data.write_lines(&legacy);
    let log = data.open();
    log.append(&entry(4)).unwrap();
    let report = data.verify();
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.records, report.unkeyed), (5, 4));
    assert!(AuditKey::load(&data.dir.join(KEY_FILE)).unwrap().is_some());
}

#[test]
fn anchorless_verify_still_finds_edits() {
    let data = data_dir_with(4);
    let mut lines = data.lines();
    lines[1] = lines[1].replace("start_run", "stop_run!");
    data.write_lines(&lines);
    let report = verify(data.log()).unwrap();
    assert_eq!(report.problems[0].line, 2);
}

#[test]
fn audit_tail_filters_and_prints_json() {
    let data = data_dir_with(6);
    let tail = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .args(["--data-dir", data.dir.to_str().unwrap(), "audit", "tail"])
            .args(args)
            .env("FLIGHTDECK_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let all = tail(&["--json"]);
    assert_eq!(all.lines().count(), 6);
    let by_user = tail(&["--json", "--user", "user1"]);
    let seqs: Vec<u64> = by_user
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 5]);
    assert_eq!(tail(&["--action", "start_run"]).lines().count(), 3);
    let run = tail(&["--run", "r4"]);
    assert_eq!(run.lines().count(), 1, "{run}");
    assert!(run.contains("user1") && run.contains("cancel_run"), "{run}");
    assert_eq!(tail(&["-n", "2", "--json"]).lines().count(), 2);
}

#[test]
fn intact_log_verify_exits_0_with_json() {
    let data = data_dir_with(3);
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--data-dir", data.dir.to_str().unwrap(), "audit", "verify", "--json"])
        .env("FLIGHTDECK_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["records"], 3);
    assert_eq!(report["anchored"], 3);
}
