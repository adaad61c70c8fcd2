//! The audit chain's anchor (`audit_anchor`, one row): the store keeps it for the audit log.

use rusqlite::{OptionalExtension as _, params};

use super::{RunStore, StoreError, sql_error};
use crate::audit::{AnchorStore, AuditAnchor};

impl RunStore {
    /// The audit anchor saved last, if any.
    pub fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError> {
        self.conn
            .query_row("SELECT count, last_hash, mac FROM audit_anchor WHERE id = 1", [], |row| {
                Ok(AuditAnchor {
                    count: row.get::<_, i64>(0)? as u64,
                    last_hash: row.get(1)?,
                    mac: row.get(2)?,
                })
            })
            .optional()
            .map_err(|source| sql_error(&self.path, source))
    }

    /// Replace the audit anchor. An anchor never moves back: another process's later record
    /// may have been anchored first.
    pub fn set_audit_anchor(&self, anchor: &AuditAnchor) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO audit_anchor (id, count, last_hash, mac) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET count = ?1, last_hash = ?2, mac = ?3 \
                 WHERE excluded.count >= audit_anchor.count",
                params![anchor.count as i64, anchor.last_hash, anchor.mac],
            )
            .map(drop)
            .map_err(|source| sql_error(&self.path, source))
    }
}

impl AnchorStore for RunStore {
    fn load_anchor(&mut self) -> Result<Option<AuditAnchor>, String> {
        self.audit_anchor().map_err(|e| e.to_string())
    }

    fn save_anchor(&mut self, anchor: &AuditAnchor) -> Result<(), String> {
        self.set_audit_anchor(anchor).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::AuditKey;

    #[test]
    fn a_version_4_store_gains_the_anchor_table_and_the_anchor_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        {
            // A store as the previous release left it: schema 4, no anchor table.
            let store = RunStore::open(&path).unwrap();
            store.conn.execute_batch("DROP TABLE audit_anchor; PRAGMA user_version = 4;").unwrap();
        }
        let store = RunStore::open(&path).unwrap();
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        assert_eq!(store.audit_anchor().unwrap(), None);

        let key = AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
        let later = AuditAnchor::new(7, "b".repeat(64), &key);
        store.set_audit_anchor(&later).unwrap();
        store.set_audit_anchor(&AuditAnchor::new(6, "a".repeat(64), &key)).unwrap();
        assert_eq!(store.audit_anchor().unwrap(), Some(later.clone()));
        assert!(later.is_signed_by(&key));
    }
}
