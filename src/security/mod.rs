//! Security: ACL tokens and their policies, the node identity of workers, the rate limit on failed
//! authentication, key files, the cluster CA and TLS settings, and task secrets at rest.
//!
//! The pieces, one concern a file:
//! - [`tokens`]: the manager's token table ([`Acl`]): bootstrap, create, list, revoke, and
//!   [`Acl::authenticate`], which hashes the presented secret and compares it in constant time;
//! - [`limiter`]: failed authentications counted per peer address ([`FailureLimiter`]);
//! - [`keys`]: 32-byte keys kept in a data directory (mode 0600) and the HMAC that derives the
//!   secret the manager presents to each worker;
//! - [`identity`]: a worker's identity (node token, manager secret, node certificate), kept in
//!   its data directory, obtained by joining with a join token;
//! - [`ca`]: the cluster CA of `tls = "auto"`, certificate names and lifetimes;
//! - [`tls`]: rustls configurations, swappable certificates, the role-name verifier;
//! - [`secrets`]: task secrets encrypted at rest (ChaCha20-Poly1305, key in the data directory);
//! - [`shared`]: the CA and keys that managers in high availability share through etcd.
//!
//! Where the checks happen: the manager's router (`manager::api::gate`) authenticates every request
//! but `GET /health` before its body is read, picks the scope of the route, and only then picks the
//! body limit; the worker's API (`worker::api::gate`) admits only its manager when it has one.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod ca;
pub mod identity;
pub mod keys;
pub mod limiter;
pub mod secrets;
pub mod shared;
pub mod tls;
pub mod tokens;

pub use limiter::FailureLimiter;
pub use tokens::{Acl, AclError};

/// What a token may do. `read` < `submit` < `manage`; `node` and `join` are for workers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Every `GET` but the token list.
    Read,
    /// `read`, and submitting and stopping tasks (and services).
    Submit,
    /// Everything: node administration and the ACL itself.
    Manage,
    /// A worker's identity: heartbeats and reports for its own node name only.
    Node,
    /// Joining the cluster as a worker (`POST /acl/join`), nothing else.
    Join,
}

impl Policy {
    /// The policies a user may ask for with `poseidon acl token create --policy`.
    pub const USER: [Policy; 3] = [Policy::Read, Policy::Submit, Policy::Manage];

    /// The name used on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Read => "read",
            Policy::Submit => "submit",
            Policy::Manage => "manage",
            Policy::Node => "node",
            Policy::Join => "join",
        }
    }

    /// Whether a token of this policy may use a route that needs `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        match scope {
            Scope::Read => matches!(self, Policy::Read | Policy::Submit | Policy::Manage),
            Scope::Submit => matches!(self, Policy::Submit | Policy::Manage),
            Scope::Manage => self == Policy::Manage,
            // A node scope is checked against the token's bound name by the caller.
            Scope::Node => self == Policy::Node,
            Scope::Join => self == Policy::Join,
            Scope::Open => true,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Policy::Read),
            "submit" => Ok(Policy::Submit),
            "manage" => Ok(Policy::Manage),
            _ => Err(format!(
                "unknown policy {s:?} (valid: read, submit, manage)"
            )),
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Nothing: `GET /health`, and `POST /acl/bootstrap` (which refuses a second call itself).
    Open,
    /// Reading.
    Read,
    /// Submitting and stopping work.
    Submit,
    /// Administration.
    Manage,
    /// A worker's own node identity.
    Node,
    /// A join token.
    Join,
}

/// Who sent a request, as the server's gate decided before the body was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Principal {
    /// Security is off on this server: anyone may do anything.
    #[default]
    Open,
    /// No credential, on an open route.
    Anonymous,
    /// A token holder.
    Token {
        /// The token's public accessor.
        accessor: String,
        /// Its policy.
        policy: Policy,
        /// The node name a `node` token is bound to.
        node: Option<String>,
    },
    /// On a worker: its manager.
    Manager,
}

/// The security a manager runs with; the default is none (every route open, plain HTTP).
#[derive(Debug, Clone, Default)]
pub struct ManagerSecurity {
    /// The token table, when `acl = true`.
    pub acl: Option<Acl>,
    /// Failed authentications per peer address.
    pub limiter: Arc<FailureLimiter>,
    /// The key from which the secret presented to each worker is derived
    /// ([`keys::worker_secret`]); set when `acl = true`.
    pub worker_key: Option<[u8; 32]>,
    /// The client TLS configuration used towards workers (the manager's certificate, the CA).
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
    /// The cluster CA (`tls = "auto"`): signs node certificates at join and renewal; its
    /// fingerprint goes into join tokens. With it, heartbeats and reports must come with the
    /// node's own certificate.
    pub ca: Option<Arc<ca::ClusterCa>>,
    /// The key task secrets are sealed with (`secrets.key` in the data directory).
    pub secrets: Option<Arc<secrets::SecretsKey>>,
}

impl ManagerSecurity {
    /// The secret the manager presents to the worker called `node`, when the ACL is on.
    pub fn worker_secret(&self, node: &str) -> Option<String> {
        self.worker_key
            .as_ref()
            .map(|k| keys::worker_secret(k, node))
    }
}

/// The security settings a worker runs with.
#[derive(Debug, Clone, Default)]
pub struct WorkerSecurity {
    /// The node token sent with every heartbeat and report (`Authorization: Bearer`).
    pub node_token: Option<String>,
    /// The secret the manager presents to this worker; when set, only the manager is admitted
    /// (every route but `GET /health`) and direct `POST /tasks` is refused.
    pub manager_secret: Option<String>,
    /// With TLS: the manager must also present the manager's certificate (mutual TLS).
    pub manager_cert_required: bool,
    /// The cluster's secrets key, to open task secrets for containers (and to seal those of
    /// tasks submitted to a worker alone).
    pub secrets: Option<Arc<secrets::SecretsKey>>,
}

/// Compares two byte strings in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let t = rest.trim();
        (!t.is_empty()).then_some(t)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_allow_exactly_their_scopes() {
        // (policy, read, submit, manage, node, join)
        let table: &[(Policy, bool, bool, bool, bool, bool)] = &[
            (Policy::Read, true, false, false, false, false),
            (Policy::Submit, true, true, false, false, false),
            (Policy::Manage, true, true, true, false, false),
            (Policy::Node, false, false, false, true, false),
            (Policy::Join, false, false, false, false, true),
        ];
        for (p, r, s, m, n, j) in table {
            assert_eq!(p.allows(Scope::Read), *r, "{p} read");
            assert_eq!(p.allows(Scope::Submit), *s, "{p} submit");
            assert_eq!(p.allows(Scope::Manage), *m, "{p} manage");
            assert_eq!(p.allows(Scope::Node), *n, "{p} node");
            assert_eq!(p.allows(Scope::Join), *j, "{p} join");
            assert!(p.allows(Scope::Open));
        }
    }

    #[test]
    fn bearer_takes_only_the_bearer_scheme() {
        assert_eq!(bearer("Bearer abc.def"), Some("abc.def"));
        assert_eq!(bearer("bearer  x "), Some("x"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
