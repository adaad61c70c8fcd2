//! The audit log against real files: chain, tamper detection, torn tails, concurrency and a
//! real writer process killed with SIGKILL.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flightdeck::audit::{
    AUDIT_FILE, AuditEntry, AuditError, AuditLog, Outcome, ProblemKind, verify,
};
use flightdeck::ids::UserId;
use serde_json::json;

fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        user: UserId::new(format!("user{}", n % 3)),
        role: "operator".into(),
        action: "cancel_run".into(),
        outcome: if n.is_multiple_of(2) { Outcome::Accepted } else { Outcome::Denied },
        detail: json!({"command": {"command": "cancel_run", "run": format!("r{n}")}, "n": n}),
    }
}

fn log_with(dir: &Path, count: usize) -> (AuditLog, PathBuf) {
    let path = dir.join("data").join(AUDIT_FILE);
    let log = AuditLog::open(&path).unwrap();
    for n in 0..count {
        log.append(&entry(n)).unwrap();
    }
    (log, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn chain_verifies_and_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 20);
    assert_eq!(log.next_seq(), 21);
    drop(log);

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.append(&entry(20)).unwrap(), 21);
    assert!(log.torn_tails().is_empty());

    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 21);
    let all = lines(&path);
    assert!(all[0].contains(r#""prev":"0000000000000000"#), "{}", all[0]);
    assert!(all[0].starts_with(r#"{"seq":1,"ts":""#), "{}", all[0]);
}

#[test]
fn edited_field_is_reported_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = log_with(dir.path(), 6);
    let mut all = lines(&path);
    assert!(all[2].contains(r#""outcome":"accepted""#));
    all[2] = all[2].replace(r#""outcome":"accepted""#, r#""outcome":"denied""#);
    write_lines(&path, &all);

    let report = verify(&path).unwrap();
    assert!(!report.is_intact());
    let first = &report.problems[0];
    assert_eq!(first.line, 3);
    assert!(matches!(first.kind, ProblemKind::Damaged { .. }), "{report}");
    // The next line's link no longer matches the edited line.
    assert_eq!(report.problems[1].line, 4);
    assert_eq!(report.problems[1].kind, ProblemKind::PrevMismatch);
    assert!(report.to_string().contains(":3: damaged record"), "{report}");
}

#[test]
fn edit_with_recomputed_hash_still_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = log_with(dir.path(), 4);
    let mut all = lines(&path);
    // A forger who re-hashes the edited record still cannot fix the following `prev`.
    let mut record: serde_json::Value = serde_json::from_str(&all[1]).unwrap();
    record["user"] = json!("mallory");
    let hash_at = all[1].rfind(r#","hash":""#).unwrap();
    let old_body = format!("{}}}", &all[1][..hash_at]);
    let new_body = old_body.replacen(r#""user":"user1""#, r#""user":"mallory""#, 1);
    assert_ne!(old_body, new_body);
    let hash = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(new_body.as_bytes()))
    };
    all[1] = format!("{},\"hash\":\"{hash}\"}}", &new_body[..new_body.len() - 1]);
    write_lines(&path, &all);

    // Without the key, the re-hashed record is one no keyed log can hold; the next link
    // breaks too.
    let report = verify(&path).unwrap();
    assert_eq!(report.problems.len(), 2, "{report}");
    assert_eq!(report.problems[0].line, 2);
    assert_eq!(report.problems[0].kind, ProblemKind::Unkeyed);
    assert_eq!(report.problems[1].line, 3);
    assert_eq!(report.problems[1].kind, ProblemKind::PrevMismatch);
}

#[test]
fn removed_line_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = log_with(dir.path(), 6);
    let mut all = lines(&path);
    all.remove(3);
    write_lines(&path, &all);

    let report = verify(&path).unwrap();
    assert_eq!(report.records, 5);
    assert!(report.problems.iter().all(|p| p.line == 4), "{report:?}");
    assert!(report.problems.contains(&flightdeck::audit::ChainProblem {
        line: 4,
        kind: ProblemKind::SeqOutOfOrder { expected: 4, found: 5 },
    }));
}

#[test]
fn swapped_lines_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = log_with(dir.path(), 6);
    let mut all = lines(&path);
    all.swap(1, 2);
    write_lines(&path, &all);

    let report = verify(&path).unwrap();
    assert!(!report.is_intact());
    assert_eq!(report.problems[0].line, 2, "{report}");
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::SeqOutOfOrder { expected: 2, found: 3 }
    ));
}

#[test]
fn torn_tail_is_moved_aside_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 5);
    drop(log);
    // A crash half-way through the sixth write.
    let sixth = r#"{"seq":6,"ts":"2026-01-01T00:00:00.000Z","user":"ann","role":"vie"#;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(sixth.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(verify(&path).unwrap().problems[0].kind, ProblemKind::TornTail);

    let log = AuditLog::open(&path).unwrap();
    let torn = log.torn_tails();
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0].line, 6);
    assert_eq!(torn[0].bytes, sixth.len() as u64);
    assert_eq!(std::fs::read_to_string(&torn[0].aside).unwrap(), sixth);
    let aside_name = torn[0].aside.file_name().unwrap().to_string_lossy().into_owned();
    assert!(aside_name.starts_with("audit.jsonl.torn-"), "{aside_name}");

    assert_eq!(log.append(&entry(6)).unwrap(), 6);
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 6);
}

#[test]
fn torn_first_line_leaves_an_empty_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(AUDIT_FILE);
    std::fs::write(&path, b"\0\0\0\0\0\0").unwrap();
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.torn_tails().len(), 1);
    assert_eq!(log.append(&entry(0)).unwrap(), 1);
    assert!(verify(&path).unwrap().is_intact());
}

#[test]
fn damaged_last_complete_record_refuses_to_open_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 3);
    drop(log);
    let mut all = lines(&path);
    all[2] = all[2].replace("operator", "admin");
    write_lines(&path, &all);
    let before = std::fs::read(&path).unwrap();

    let err = AuditLog::open(&path).err().expect("damaged tail");
    assert!(matches!(err, AuditError::CorruptTail { line: 3, .. }), "{err}");
    assert!(err.to_string().contains(&format!("{}:3:", path.display())), "{err}");
    // Evidence is left untouched.
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn damage_before_a_torn_tail_leaves_everything_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 3);
    drop(log);
    let mut all = lines(&path);
    all[2] = all[2].replace("operator", "admin");
    write_lines(&path, &all);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"seq":4,"ts""#);
    std::fs::write(&path, &bytes).unwrap();

    let err = AuditLog::open(&path).err().expect("damaged");
    assert!(matches!(err, AuditError::CorruptTail { line: 3, .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let entries = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != flightdeck::audit::KEY_FILE)
        .count();
    assert_eq!(entries, 1, "nothing moved aside");
}

#[test]
fn concurrent_appends_from_many_threads_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 0);
    let threads = 8;
    let each = 40;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let log = log.clone();
            scope.spawn(move || {
                for n in 0..each {
                    log.append(&entry(t * 1000 + n)).unwrap();
                }
            });
        }
    });
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, (threads * each) as u64);
}

#[test]
fn two_handles_on_one_file_interleave_like_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(AUDIT_FILE);
    let console = AuditLog::open(&path).unwrap();
    let headless = AuditLog::open(&path).unwrap();
    for n in 0..10_usize {
        let seq = if n.is_multiple_of(2) {
            console.append(&entry(n))
        } else {
            headless.append(&entry(n))
        };
        assert_eq!(seq.unwrap(), n as u64 + 1);
    }
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 10);
}

#[test]
fn missing_folder_is_created_and_unreadable_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c").join(AUDIT_FILE);
    AuditLog::open(&path).unwrap().append(&entry(0)).unwrap();
    assert!(path.exists());

    let blocked = dir.path().join("file-not-dir");
    std::fs::write(&blocked, "x").unwrap();
    let err = AuditLog::open(blocked.join(AUDIT_FILE)).err().expect("parent is a file");
    assert!(err.to_string().contains("file-not-dir"), "{err}");
}

/// Runs only as the child of `writer_killed_with_sigkill_leaves_a_verifiable_log`.
#[test]
fn child_appends_until_killed() {
    let Some(path) = std::env::var_os("FLIGHTDECK_AUDIT_CHILD") else { return };
    let log = AuditLog::open(PathBuf::from(path)).unwrap();
    let big = "x".repeat(4096);
    for n in 0.. {
        let mut e = entry(n);
        // Large records make a kill inside a write more likely.
        e.detail = json!({"n": n, "padding": big});
        log.append(&e).unwrap();
    }
}

#[test]
fn writer_killed_with_sigkill_leaves_a_verifiable_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(AUDIT_FILE);
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_appends_until_killed", "--exact", "--nocapture", "--test-threads=1"])
            .env("FLIGHTDECK_AUDIT_CHILD", &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start_len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&path).map_or(0, |m| m.len()) < start_len + 40_000 {
            assert!(Instant::now() < deadline, "child wrote nothing (round {round})");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();

        let log = AuditLog::open(&path).unwrap();
        let next = log.next_seq();
        assert_eq!(log.append(&entry(0)).unwrap(), next);
        drop(log);
        let report = verify(&path).unwrap();
        assert!(report.is_intact(), "round {round}: {report}");
        assert_eq!(report.records, next);
    }
}
