//! The key material that managers in high availability share: the cluster CA (certificate and
//! key), the key worker secrets are derived from, and the secrets key.
//!
//! One manager alone keeps these as files in its data directory (`ca.pem`, `ca.key`, `acl.key`,
//! `secrets.key`). Several managers on etcd must hold the same ones, or a worker that joined
//! through one leader would not trust (or be trusted by) the next, and task secrets sealed by one
//! could not be opened with what another hands out. So with `store = "etcd"` the first manager to
//! start makes them and puts them at one etcd key in a create-only transaction
//! (`store::etcd::create_once`); every manager, that one included, uses what etcd then holds. They
//! are never rewritten, so every manager's copy stays right for the cluster's life.
//!
//! etcd then holds the CA's private key: whoever can read etcd can mint certificates for the
//! cluster, as whoever can read a manager's data directory can today. Keep etcd on a private
//! network or behind its own TLS and authentication (Kubernetes keeps its Secrets in etcd the
//! same way).

use serde::{Deserialize, Serialize};

use super::ca::ClusterCa;
use super::keys::{hex, random_bytes, unhex};
use super::secrets::SecretsKey;

/// The shared key material, as it is kept in etcd (JSON).
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedKeys {
    /// The CA certificate (PEM).
    pub ca_cert: String,
    /// The CA key (PEM).
    pub ca_key: String,
    /// The key worker secrets are derived from (`keys::worker_secret`), hex.
    pub acl_key: String,
    /// The secrets key, hex.
    pub secrets_key: String,
}

impl std::fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKeys(..)")
    }
}

impl SharedKeys {
    /// New key material (a new CA and two random keys).
    pub fn generate() -> Result<SharedKeys, String> {
        let (ca, ca_key) = ClusterCa::generate()?;
        Ok(SharedKeys {
            ca_cert: ca.cert_pem().to_string(),
            ca_key,
            acl_key: hex(&random_bytes::<32>()?),
            secrets_key: hex(&random_bytes::<32>()?),
        })
    }

    /// The encoded form kept in etcd.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| format!("cannot encode the cluster keys: {e}"))
    }

    /// The keys from their encoded form, every one checked.
    pub fn decode(bytes: &[u8]) -> Result<SharedKeys, String> {
        let keys: SharedKeys = serde_json::from_slice(bytes)
            .map_err(|e| format!("the cluster keys in etcd are unreadable: {e}"))?;
        keys.ca()?;
        keys.acl_key()?;
        keys.secrets()?;
        Ok(keys)
    }

    /// The cluster CA.
    pub fn ca(&self) -> Result<ClusterCa, String> {
        ClusterCa::from_pem(&self.ca_cert, &self.ca_key)
            .map_err(|e| format!("the cluster CA in etcd: {e}"))
    }

    /// The key worker secrets are derived from.
    pub fn acl_key(&self) -> Result<[u8; 32], String> {
        unhex(&self.acl_key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "the ACL key in etcd is not 32 bytes of hex".to_string())
    }

    /// The secrets key.
    pub fn secrets(&self) -> Result<SecretsKey, String> {
        SecretsKey::from_hex(&self.secrets_key).map_err(|e| format!("in etcd: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_their_encoding_and_a_broken_one_is_refused() {
        let keys = SharedKeys::generate().expect("generate");
        let back = SharedKeys::decode(&keys.encode().expect("encode")).expect("decode");
        assert_eq!(
            back.ca().expect("ca").fingerprint(),
            keys.ca().expect("ca").fingerprint()
        );
        assert_eq!(back.acl_key().expect("acl"), keys.acl_key().expect("acl"));
        // The same CA signs: a certificate it issues names it.
        let cert = back.ca().expect("ca").issue_manager().expect("issue");
        assert_eq!(cert.ca, keys.ca_cert);

        let mut broken = keys.clone();
        broken.acl_key = "abc".into();
        let err = SharedKeys::decode(&broken.encode().expect("encode")).expect_err("refused");
        assert!(err.contains("ACL key"), "{err}");
        let mut broken = keys;
        broken.ca_key = "not pem".into();
        let err = SharedKeys::decode(&broken.encode().expect("encode")).expect_err("refused");
        assert!(err.contains("CA"), "{err}");
    }
}
