//! One audit record and its line format.
//!
//! A line is the record's JSON with `hash` as the last field:
//! `{"seq":1,"ts":"…","user":"ann","role":"viewer","action":"cancel_run","outcome":"denied",
//! "detail":{…},"prev":"<64 hex>","hash":"<64 hex>"}`.
//! `hash` is the HMAC-SHA256, under the log's key (see [`super::key`]), of the same line with
//! the `,"hash":"…"` part removed, exactly as written, so checking never depends on
//! re-serialising JSON. `prev` is the SHA-256 of the whole previous line (without its
//! newline), which binds the previous MAC too. Logs written before the key existed carry a
//! plain SHA-256 there ([`Keying::Unkeyed`]); such records are accepted only as the start
//! of a log, before its first keyed one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::key::AuditKey;
use crate::ids::UserId;

/// `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// How a recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The gate let a command through.
    Accepted,
    /// The gate refused a command.
    Denied,
    /// An audited action completed.
    Succeeded,
    /// An audited action failed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Denied => "denied",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// What a caller asks to record; the log adds `seq`, `ts`, `prev` and `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub user: UserId,
    pub role: String,
    /// What was attempted, e.g. a command name (`cancel_run`).
    pub action: String,
    pub outcome: Outcome,
    /// Arguments, reasons and anything else worth keeping.
    pub detail: serde_json::Value,
}

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1 for the first record of a chain, then +1 per record.
    pub seq: u64,
    /// RFC 3339 with milliseconds, UTC.
    pub ts: String,
    pub user: UserId,
    pub role: String,
    pub action: String,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
    /// SHA-256 (hex) of the previous line, or [`GENESIS_PREV`].
    pub prev: String,
    /// SHA-256 (hex) of this line without its `hash` field.
    pub hash: String,
}

/// The record without `hash`, in the order it is written.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: &'a str,
    user: &'a UserId,
    role: &'a str,
    action: &'a str,
    outcome: Outcome,
    detail: &'a serde_json::Value,
    prev: &'a str,
}

/// How a record's `hash` was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keying {
    /// An HMAC under the log's key: only a holder of the key could have written it.
    Keyed,
    /// A plain SHA-256, as written before logs were keyed: anyone could have written it.
    Unkeyed,
}

/// The line for `entry` (ending in `\n`) and the hash of the line for the next `prev`.
pub(crate) fn encode_line(
    seq: u64,
    ts: &str,
    prev: &str,
    entry: &AuditEntry,
    key: &AuditKey,
) -> Result<(String, String), serde_json::Error> {
    let body = serde_json::to_string(&Body {
        seq,
        ts,
        user: &entry.user,
        role: &entry.role,
        action: &entry.action,
        outcome: entry.outcome,
        detail: &entry.detail,
        prev,
    })?;
    let hash = key.mac_hex(body.as_bytes());
    let mut line = body;
    // The body is a JSON object, so it ends with `}`: reopen it to append `hash` last.
    line.pop();
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}");
    let line_hash = sha256_hex(line.as_bytes());
    line.push('\n');
    Ok((line, line_hash))
}

/// Parse one line (without its newline) and check its own MAC (or, for a record from before
/// keying, its plain hash). Without a key only unkeyed records check out. The error says what
/// is wrong.
pub(crate) fn decode_line(
    line: &[u8],
    key: Option<&AuditKey>,
) -> Result<(AuditRecord, Keying), String> {
    if line.is_empty() {
        return Err("empty line".to_owned());
    }
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_owned())?;
    let record: AuditRecord =
        serde_json::from_str(text).map_err(|e| format!("not an audit record: {e}"))?;
    let expected_suffix = format!(",\"hash\":\"{}\"}}", record.hash);
    if record.hash.len() != 64 || !text.ends_with(&expected_suffix) {
        return Err("`hash` is not the last field with 64 hex digits".to_owned());
    }
    let mut body = String::with_capacity(text.len());
    body.push_str(&text[..text.len() - HASH_SUFFIX_LEN]);
    body.push('}');
    if key.is_some_and(|key| key.checks(body.as_bytes(), &record.hash)) {
        return Ok((record, Keying::Keyed));
    }
    if sha256_hex(body.as_bytes()) == record.hash {
        return Ok((record, Keying::Unkeyed));
    }
    Err(if key.is_some() {
        "its MAC does not match its content (edited, or written without the key)".to_owned()
    } else {
        "its MAC cannot be checked without the key file".to_owned()
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        let dir = tempfile::tempdir().expect("tempdir");
        AuditKey::load_or_create(&dir.path().join("audit.key")).expect("key")
    }

    fn entry() -> AuditEntry {
        AuditEntry {
            user: UserId::new("ann"),
            role: "viewer".into(),
            action: "cancel_run".into(),
            outcome: Outcome::Denied,
            detail: serde_json::json!({"run": "r1", "reason": "no"}),
        }
    }

    #[test]
    fn encoded_line_decodes_and_hash_is_last() {
        let key = key();
        let (line, line_hash) =
            encode_line(1, "2026-01-01T00:00:00.000Z", GENESIS_PREV, &entry(), &key)
                .expect("encode");
        assert!(line.ends_with("\"}\n"));
        let trimmed = line.trim_end_matches('\n');
        assert_eq!(line_hash, sha256_hex(trimmed.as_bytes()));
        let (record, keying) = decode_line(trimmed.as_bytes(), Some(&key)).expect("decode");
        assert_eq!(keying, Keying::Keyed);
        assert_eq!(record.seq, 1);
        assert_eq!(record.outcome, Outcome::Denied);
        assert_eq!(record.prev, GENESIS_PREV);
        assert!(trimmed.starts_with(r#"{"seq":1,"ts":"2026-01-01T00:00:00.000Z","user":"ann""#));
    }

    #[test]
    fn any_edit_breaks_the_hash() {
        let key = key();
        let (line, _) = encode_line(1, "2026-01-01T00:00:00.000Z", GENESIS_PREV, &entry(), &key)
            .expect("encode");
        let edited = line.trim_end().replace("denied", "accepted");
        let err = decode_line(edited.as_bytes(), Some(&key)).expect_err("edited");
        assert!(err.contains("MAC"), "{err}");
        let spaced = line.trim_end().replacen(':', ": ", 1);
        assert!(decode_line(spaced.as_bytes(), Some(&key)).is_err());
        // Another key cannot vouch for it either.
        assert!(decode_line(line.trim_end().as_bytes(), Some(&self::key())).is_err());
    }
}
