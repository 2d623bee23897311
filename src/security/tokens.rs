//! The manager's ACL token table.
//!
//! A token is `ACCESSOR.SECRET`: the accessor (16 hex digits) is public and names the token in
//! lists and revocations; the secret (64 hex digits, 32 random bytes) is shown once, when the token
//! is made, and only its SHA-256 is stored. [`Acl::authenticate`] finds the record by accessor and
//! compares the hash of the presented secret with the stored one in constant time; an unknown
//! accessor is compared against a dummy hash so that both paths cost the same.
//!
//! Records live in the store's `acl` space (`token/ACCESSOR`), with `bootstrap` marking that the
//! first management token was issued; writes are synced before the caller sees the token.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::keys::{hex, random_bytes, sha256_hex};
use super::{constant_time_eq, Policy};
use crate::store::{decode, encode, Op, Space, Store, StoreError};
use crate::util::now_ms;
use crate::wire::{IssuedToken, TokenView};

const BOOTSTRAP_KEY: &[u8] = b"bootstrap";
const TOKEN_PREFIX: &str = "token/";

/// One stored token: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public name of the token.
    pub accessor: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// What it may do.
    pub policy: Policy,
    /// For a `node` token, the node name it is bound to.
    pub node: Option<String>,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
}

impl TokenRecord {
    /// The record as lists show it (no hash).
    pub fn view(&self) -> TokenView {
        TokenView {
            accessor: self.accessor.clone(),
            policy: self.policy.as_str().to_string(),
            node: self.node.clone(),
            created_ms: self.created_ms,
        }
    }
}

/// Why an ACL operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// `bootstrap` was already done.
    #[error("the ACL was already bootstrapped; ask a holder of a manage token for a token")]
    AlreadyBootstrapped,
    /// No token with this accessor.
    #[error("no token with accessor {0}")]
    NotFound(String),
    /// The node name already has an identity.
    #[error("node {0} already has an identity; revoke its node token first to let another join under this name")]
    NodeTaken(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AclError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            AclError::AlreadyBootstrapped | AclError::NodeTaken(_) => 409,
            AclError::NotFound(_) => 404,
            AclError::Store(_) => 503,
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    tokens: BTreeMap<String, TokenRecord>,
    bootstrapped: bool,
}

/// The token table: in memory for lookups, written through to the store.
#[derive(Clone)]
pub struct Acl {
    store: Arc<dyn Store>,
    table: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acl").finish_non_exhaustive()
    }
}

/// A hash no secret has: what an unknown accessor is compared against.
const DUMMY_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Acl {
    /// Loads the table from `store`.
    pub fn load(store: Arc<dyn Store>) -> Result<Acl, StoreError> {
        let mut table = Table::default();
        for (k, v) in store.scan(Space::Acl)? {
            if k == BOOTSTRAP_KEY {
                table.bootstrapped = decode::<bool>(&v)?;
            } else if k.starts_with(TOKEN_PREFIX.as_bytes()) {
                let rec: TokenRecord = decode(&v)?;
                table.tokens.insert(rec.accessor.clone(), rec);
            }
        }
        Ok(Acl {
            store,
            table: Arc::new(Mutex::new(table)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the first management token was issued.
    pub fn bootstrapped(&self) -> bool {
        self.lock().bootstrapped
    }

    /// Issues the first management token; refused once done.
    pub async fn bootstrap(&self) -> Result<IssuedToken, AclError> {
        let (issued, rec) = new_token(Policy::Manage, None)?;
        let pending = {
            let mut t = self.lock();
            if t.bootstrapped {
                return Err(AclError::AlreadyBootstrapped);
            }
            t.bootstrapped = true;
            t.tokens.insert(rec.accessor.clone(), rec.clone());
            self.store.submit(vec![
                Op::Put(Space::Acl, BOOTSTRAP_KEY.to_vec(), encode(&true)?),
                put(&rec)?,
            ])
        };
        if let Err(e) = pending.wait().await {
            let mut t = self.lock();
            t.bootstrapped = false;
            t.tokens.remove(&rec.accessor);
            return Err(e.into());
        }
        tracing::info!(accessor = %rec.accessor, "ACL bootstrapped: first management token issued");
        Ok(issued)
    }

    /// Makes a token of `policy` (bound to `node` for a node token).
    pub async fn create(
        &self,
        policy: Policy,
        node: Option<String>,
    ) -> Result<IssuedToken, AclError> {
        let (issued, rec) = new_token(policy, node)?;
        let pending = {
            let mut t = self.lock();
            if let Some(name) = &rec.node {
                if t.tokens.values().any(|r| r.node.as_ref() == Some(name)) {
                    return Err(AclError::NodeTaken(name.clone()));
                }
            }
            t.tokens.insert(rec.accessor.clone(), rec.clone());
            self.store.submit(vec![put(&rec)?])
        };
        if let Err(e) = pending.wait().await {
            self.lock().tokens.remove(&rec.accessor);
            return Err(e.into());
        }
        tracing::info!(accessor = %rec.accessor, policy = %policy, node = rec.node.as_deref().unwrap_or(""), "ACL token created");
        Ok(issued)
    }

    /// Every token, without hashes, by accessor.
    pub fn list(&self) -> Vec<TokenView> {
        self.lock().tokens.values().map(TokenRecord::view).collect()
    }

    /// Revokes a token: from the moment this returns, it authenticates nothing.
    pub async fn revoke(&self, accessor: &str) -> Result<TokenView, AclError> {
        let (rec, pending) = {
            let mut t = self.lock();
            let rec = t
                .tokens
                .remove(accessor)
                .ok_or_else(|| AclError::NotFound(accessor.to_string()))?;
            let key = format!("{TOKEN_PREFIX}{accessor}").into_bytes();
            (rec, self.store.submit(vec![Op::Delete(Space::Acl, key)]))
        };
        if let Err(e) = pending.wait().await {
            self.lock().tokens.insert(rec.accessor.clone(), rec);
            return Err(e.into());
        }
        tracing::info!(accessor = %rec.accessor, policy = %rec.policy, "ACL token revoked");
        Ok(rec.view())
    }

    /// Whether the table holds a token with the accessor (the part before the first `.`) of
    /// `token`, whatever its secret.
    pub fn knows_accessor(&self, token: &str) -> bool {
        let accessor = token.split('.').next().unwrap_or_default();
        self.lock().tokens.contains_key(accessor)
    }

    /// The record of a presented token, if it is one of ours; `None` for anything else.
    pub fn authenticate(&self, token: &str) -> Option<TokenRecord> {
        // A join token made with TLS carries the CA's fingerprint as a third part.
        let mut parts = token.splitn(3, '.');
        let accessor = parts.next().unwrap_or_default();
        let secret = parts.next().unwrap_or_default();
        let presented = sha256_hex(secret.as_bytes());
        let found = self.lock().tokens.get(accessor).cloned();
        let stored = found.as_ref().map_or(DUMMY_HASH, |r| r.hash.as_str());
        let equal = constant_time_eq(presented.as_bytes(), stored.as_bytes());
        found.filter(|_| equal && !secret.is_empty())
    }
}

fn put(rec: &TokenRecord) -> Result<Op, StoreError> {
    Ok(Op::Put(
        Space::Acl,
        format!("{TOKEN_PREFIX}{}", rec.accessor).into_bytes(),
        encode(rec)?,
    ))
}

fn new_token(policy: Policy, node: Option<String>) -> Result<(IssuedToken, TokenRecord), AclError> {
    let rand = |e: String| AclError::Store(StoreError::Db(e));
    let accessor = hex(&random_bytes::<8>().map_err(rand)?);
    let secret = hex(&random_bytes::<32>().map_err(rand)?);
    let rec = TokenRecord {
        accessor: accessor.clone(),
        hash: sha256_hex(secret.as_bytes()),
        policy,
        node: node.clone(),
        created_ms: now_ms(),
    };
    let issued = IssuedToken {
        accessor: accessor.clone(),
        token: format!("{accessor}.{secret}"),
        policy: policy.as_str().to_string(),
        node,
    };
    Ok((issued, rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[tokio::test]
    async fn a_token_authenticates_until_revoked_and_its_secret_is_never_stored() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let acl = Acl::load(store.clone()).expect("load");
        let t = acl.create(Policy::Read, None).await.expect("create");
        let rec = acl.authenticate(&t.token).expect("authenticates");
        assert_eq!(rec.policy, Policy::Read);
        let secret = t.token.split_once('.').expect("dot").1;
        for (_, v) in store.scan(Space::Acl).expect("scan") {
            assert!(!String::from_utf8_lossy(&v).contains(secret));
        }
        let wrong = format!("{}.{}", t.accessor, "0".repeat(64));
        assert!(acl.authenticate(&wrong).is_none());
        // A wrong secret still names a known accessor; a made-up accessor does not.
        assert!(acl.knows_accessor(&wrong) && acl.knows_accessor(&t.token));
        assert!(!acl.knows_accessor(&format!("{}.{secret}", "f".repeat(16))));
        assert!(acl.authenticate(&t.accessor).is_none());
        assert!(acl.authenticate("").is_none());
        acl.revoke(&t.accessor).await.expect("revoke");
        assert!(acl.authenticate(&t.token).is_none());
        // Reloaded from the store, the table agrees.
        let again = Acl::load(store).expect("reload");
        assert!(again.authenticate(&t.token).is_none());
    }

    #[tokio::test]
    async fn bootstrap_works_once_even_after_a_reload() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let acl = Acl::load(store.clone()).expect("load");
        let t = acl.bootstrap().await.expect("first");
        assert_eq!(t.policy, "manage");
        assert!(matches!(
            acl.bootstrap().await,
            Err(AclError::AlreadyBootstrapped)
        ));
        let again = Acl::load(store).expect("reload");
        assert!(matches!(
            again.bootstrap().await,
            Err(AclError::AlreadyBootstrapped)
        ));
        assert!(again.authenticate(&t.token).is_some());
    }

    #[tokio::test]
    async fn a_node_name_takes_one_identity() {
        let acl = Acl::load(Arc::new(MemStore::new())).expect("load");
        let n = acl
            .create(Policy::Node, Some("w1".into()))
            .await
            .expect("first");
        assert!(matches!(
            acl.create(Policy::Node, Some("w1".into())).await,
            Err(AclError::NodeTaken(_))
        ));
        acl.revoke(&n.accessor).await.expect("revoke");
        acl.create(Policy::Node, Some("w1".into()))
            .await
            .expect("free again");
    }
}
