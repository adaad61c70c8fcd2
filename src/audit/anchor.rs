//! The head of the chain kept outside the log: how many records there are and the hash of
//! the last line, stored in the run store as records are appended.
//!
//! The chain alone cannot show that its tail was cut off, that the file was cut and written
//! on again, or that it was deleted: what is left is still a valid chain. The anchor
//! remembers what the log held, so [`super::verify`] can tell, and a deleted log is not
//! silently replaced by a new chain (the next record continues the anchored one, and the
//! gap shows). The anchor carries its own MAC, so editing it needs the key as well.

use super::key::AuditKey;

/// The anchored head of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAnchor {
    /// `seq` of the last record anchored.
    pub count: u64,
    /// SHA-256 (hex) of that record's line.
    pub last_hash: String,
    /// HMAC-SHA256 (hex) of `count` and `last_hash` under the log's key.
    pub mac: String,
}

impl AuditAnchor {
    /// The anchor for a chain whose last record is `count` with line hash `last_hash`.
    pub fn new(count: u64, last_hash: String, key: &AuditKey) -> Self {
        let mac = key.mac_hex(Self::message(count, &last_hash).as_bytes());
        Self { count, last_hash, mac }
    }

    /// Whether the anchor was written by a holder of `key`.
    pub fn is_signed_by(&self, key: &AuditKey) -> bool {
        key.checks(Self::message(self.count, &self.last_hash).as_bytes(), &self.mac)
    }

    fn message(count: u64, last_hash: &str) -> String {
        format!("flightdeck audit anchor {count} {last_hash}")
    }
}

/// Where the anchor is kept (the run store). Errors are text: the log only reports them.
pub trait AnchorStore: Send {
    /// The anchor saved last, if any.
    fn load_anchor(&mut self) -> Result<Option<AuditAnchor>, String>;
    /// Replace the anchor.
    fn save_anchor(&mut self, anchor: &AuditAnchor) -> Result<(), String>;
}
