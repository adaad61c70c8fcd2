//! The audit key: 64 random bytes (128 hex digits, one SHA-256 block) in `<data_dir>/audit.key`, mode 0600,
//! created on first use.
//!
//! Each record's `hash` is an HMAC-SHA256 under this key, so a log rewritten by someone who
//! cannot read the key (a copy shipped elsewhere, a backup, another account) cannot be made
//! to verify. The key never leaves the data folder and is never logged.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::AuditError;

/// The key file name inside the data folder.
pub const KEY_FILE: &str = "audit.key";

/// One SHA-256 block: HMAC uses such a key as it is, so making the MAC cannot fail.
const KEY_BYTES: usize = 64;

/// The secret every record's MAC is made with.
#[derive(Clone)]
pub struct AuditKey([u8; KEY_BYTES]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// Where the key of the log at `log` lives: `audit.key` beside it.
pub fn key_path_for(log: &Path) -> PathBuf {
    log.with_file_name(KEY_FILE)
}

impl AuditKey {
    /// Read the key at `path`; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Self>, AuditError> {
        let key_err = |reason: String| AuditError::Key { path: path.to_owned(), reason };
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(key_err(e.to_string())),
        };
        let mode = file.metadata().map_err(|e| key_err(e.to_string()))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "audit key is readable by others; chmod 600 it");
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| key_err(e.to_string()))?;
        let bytes =
            hex::decode(text.trim()).map_err(|_| key_err("not 128 hex digits".to_owned()))?;
        let key: [u8; KEY_BYTES] =
            bytes.try_into().map_err(|_| key_err("not 128 hex digits".to_owned()))?;
        Ok(Some(Self(key)))
    }

    /// Read the key at `path`, or make a new one there (mode 0600) when there is none.
    /// Two processes creating it at once end up with the same key: the file appears whole,
    /// by a hard link of a finished temporary file, or not at all.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        if let Some(key) = Self::load(path)? {
            return Ok(key);
        }
        let key_err =
            |e: std::io::Error| AuditError::Key { path: path.to_owned(), reason: e.to_string() };
        let mut bytes = [0u8; KEY_BYTES];
        rand::fill(&mut bytes);
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(name);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(hex::encode(bytes).as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        written.map_err(key_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(key_err)?;
        }
        // Whoever won the race, the key on disk is the one.
        Self::load(path)?.ok_or_else(|| AuditError::Key {
            path: path.to_owned(),
            reason: "vanished right after it was created".to_owned(),
        })
    }

    /// HMAC-SHA256 of `bytes`, hex.
    pub(crate) fn mac_hex(&self, bytes: &[u8]) -> String {
        hex::encode(self.mac(bytes))
    }

    fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new(&self.0.into())
    }

    /// Whether `hex_mac` is the MAC of `bytes`, compared in constant time.
    pub(crate) fn checks(&self, bytes: &[u8], hex_mac: &str) -> bool {
        let Ok(given) = hex::decode(hex_mac) else { return false };
        let mut mac = self.hmac();
        mac.update(bytes);
        mac.verify_slice(&given).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        assert!(AuditKey::load(&path).unwrap().is_none());
        let key = AuditKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = AuditKey::load_or_create(&path).unwrap();
        assert_eq!(key.mac_hex(b"x"), again.mac_hex(b"x"));
        assert!(key.checks(b"x", &key.mac_hex(b"x")));
        assert!(!key.checks(b"y", &key.mac_hex(b"x")));
    }

    #[test]
    fn a_damaged_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "not hex").unwrap();
        let err = AuditKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("audit.key") && err.contains("128 hex"), "{err}");
    }
}
