//! Task secrets at rest and in flight: a task's `secrets` values are sealed with ChaCha20-Poly1305
//! under the cluster's secrets key as soon as the manager (or a worker alone) accepts the task, and
//! are opened only by the worker, in memory, to build the container's environment.
//!
//! So the stores (the manager's and the workers'), every API answer, the assignments on the wire
//! and every log line hold the sealed form (`sealed:v1:` then hex of a random 12-byte nonce and the
//! ciphertext with its tag, the secret's name bound in as associated data), never a value.
//!
//! The key is `secrets.key` in the manager's data directory (32 bytes, mode 0600). Workers get it
//! at join, inside their identity (kept 0600), so it travels only over the join request's
//! connection: TLS with `tls = "auto"`.

use std::collections::BTreeMap;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use super::keys::{hex, load_or_create_key, random_bytes, unhex};
use crate::task::TaskSpec;

/// The prefix of a sealed value.
const SEALED: &str = "sealed:v1:";

/// The cluster's secrets key.
#[derive(Clone)]
pub struct SecretsKey([u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// The key in `dir/secrets.key`, made (mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<SecretsKey, String> {
        load_or_create_key(dir, "secrets.key").map(SecretsKey)
    }

    /// The key from its hex form (as a worker's identity keeps it).
    pub fn from_hex(text: &str) -> Result<SecretsKey, String> {
        let bytes = unhex(text).ok_or("the secrets key is not hex")?;
        bytes
            .try_into()
            .map(SecretsKey)
            .map_err(|_| "the secrets key is not 32 bytes".to_string())
    }

    /// The key in hex, to hand to a joining worker.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    fn key(&self) -> Result<LessSafeKey, String> {
        UnboundKey::new(&CHACHA20_POLY1305, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| "unusable secrets key".to_string())
    }

    /// Seals `value`, binding it to the secret's `name`.
    pub fn seal(&self, name: &str, value: &str) -> Result<String, String> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let mut data = value.as_bytes().to_vec();
        self.key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| "cannot seal a secret".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED}{}", hex(&out)))
    }

    /// Opens a sealed value of the secret `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String, String> {
        let bad = || format!("secret {name} is not sealed with this cluster's key");
        let bytes = sealed
            .strip_prefix(SEALED)
            .and_then(unhex)
            .filter(|b| b.len() >= NONCE_LEN)
            .ok_or_else(bad)?;
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut data = data.to_vec();
        let plain = self
            .key()?
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }

    /// Seals every value of `spec.secrets` (as given by the user: plain text).
    pub fn seal_spec(&self, spec: &mut TaskSpec) -> Result<(), String> {
        for (name, value) in spec.secrets.iter_mut() {
            *value = self.seal(name, value)?;
        }
        Ok(())
    }

    /// The plain values of a task's secrets, for its container's environment.
    pub fn open_all(&self, spec: &TaskSpec) -> Result<BTreeMap<String, String>, String> {
        spec.secrets
            .iter()
            .map(|(name, sealed)| Ok((name.clone(), self.open(name, sealed)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_name() {
        let k = SecretsKey([7u8; 32]);
        let sealed = k.seal("DB_PASSWORD", "hunter2").expect("seal");
        assert!(sealed.starts_with(SEALED) && !sealed.contains("hunter2"));
        assert_eq!(k.open("DB_PASSWORD", &sealed).expect("open"), "hunter2");
        assert_ne!(
            k.seal("DB_PASSWORD", "hunter2").expect("seal"),
            sealed,
            "random nonces"
        );
        assert!(k.open("OTHER", &sealed).is_err(), "bound to its name");
        assert!(SecretsKey([8u8; 32]).open("DB_PASSWORD", &sealed).is_err());
        assert!(
            k.open("DB_PASSWORD", "hunter2").is_err(),
            "plain text is not sealed"
        );
        assert!(k.open("DB_PASSWORD", "sealed:v1:zz").is_err());
        assert_eq!(SecretsKey::from_hex(&k.to_hex()).expect("hex").0, [7u8; 32]);
    }
}
