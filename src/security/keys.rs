//! Key files and derived secrets: a 32-byte key per purpose, created on first use in a data
//! directory with mode 0600 (only the owner may read it), and the HMAC that derives the secret the
//! manager presents to each worker, so that no plain per-worker secret is ever stored.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::rand::SecureRandom;

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| "the operating system's random source failed".to_string())?;
    Ok(out)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (either case), or `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Writes `data` to a new file at `path` readable by its owner only (0600), refusing to overwrite.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Replaces the file at `path` with `data` (0600), through a temporary file and a rename, so a
/// crash leaves the old or the new content, never half of one.
pub fn replace_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(|e| format!("cannot remove {}: {e}", tmp.display()))?;
    }
    write_private(&tmp, data)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Reads a private file, refusing one that others may read (a key file must stay 0600).
pub fn read_private(path: &Path) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} may be read by other users (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The 32-byte key in `dir/name`, created (random, mode 0600) when missing.
pub fn load_or_create_key(dir: &Path, name: &str) -> Result<[u8; 32], String> {
    let path = dir.join(name);
    if path.exists() {
        let bytes = read_private(&path)?;
        return bytes
            .try_into()
            .map_err(|_| format!("{} is not a 32-byte key", path.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = random_bytes::<32>()?;
    write_private(&path, &key)?;
    Ok(key)
}

/// The secret the manager presents to the worker called `node`: HMAC-SHA-256 of its name under the
/// manager's key, in hex. Derived, so the manager's store holds no plain secret.
pub fn worker_secret(key: &[u8; 32], node: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex(ring::hmac::sign(&k, format!("poseidon-worker:{node}").as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_key(dir.path(), "k.key").expect("create");
        let mode = std::fs::metadata(dir.path().join("k.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_key(dir.path(), "k.key").expect("read");
        assert_eq!(a, b);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        load_or_create_key(dir.path(), "k.key").expect("create");
        let path = dir.path().join("k.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_or_create_key(dir.path(), "k.key").expect_err("refused");
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn worker_secrets_differ_by_node_and_by_key() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        assert_ne!(worker_secret(&k1, "w1"), worker_secret(&k1, "w2"));
        assert_ne!(worker_secret(&k1, "w1"), worker_secret(&k2, "w1"));
        assert_eq!(worker_secret(&k1, "w1").len(), 64);
    }
}
