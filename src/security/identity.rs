//! A worker's identity: the node token, the secret its manager presents, and (with TLS) its node
//! certificate, kept in `identity.json` (mode 0600) in its data directory. A worker without one
//! joins with a join token (`POST /acl/join`) and keeps what the manager answers; a worker with
//! neither refuses to start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::client::ManagerClient;
use crate::http::{HttpClient, Shutdown};
use crate::wire::{JoinReply, JoinRequest};

use super::ca::{MANAGER_NAME, RENEW_AFTER};
use super::keys::{read_private, replace_private, sha256_hex};
use super::tls::{certs_from_pem, client_config, first_contact_client, CertStore};

/// The file name of a worker's identity in its data directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// How long a failed renewal waits before it is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// Reads the identity kept in `data_dir`, if there is one.
pub fn load(data_dir: &Path) -> Result<Option<JoinReply>, String> {
    let path = data_dir.join(IDENTITY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_private(&path)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{} is not a valid identity: {e}", path.display()))
}

/// Keeps `identity` in `data_dir` (0600).
pub fn save(data_dir: &Path, identity: &JoinReply) -> Result<(), String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let bytes = serde_json::to_vec_pretty(identity)
        .map_err(|e| format!("cannot encode the identity: {e}"))?;
    replace_private(&data_dir.join(IDENTITY_FILE), &bytes)
}

/// The worker's identity: the one kept in `data_dir`, or a new one from joining `manager` with
/// `join_token` (kept at once). A join token made with TLS ends with the CA's fingerprint: the CA
/// is fetched first, checked against it, and only then is the token sent, over TLS verified with
/// that CA.
pub async fn load_or_join(
    data_dir: &Path,
    name: &str,
    advertise: &str,
    manager: &str,
    join_token: Option<&str>,
) -> Result<JoinReply, String> {
    if let Some(id) = load(data_dir)? {
        return Ok(id);
    }
    let Some(token) = join_token.filter(|t| !t.is_empty()) else {
        return Err(format!(
            "worker {name} has no identity in {} and no join token: get one with `poseidon acl join-token` and set [security] join_token or $POSEIDON_JOIN_TOKEN",
            data_dir.display()
        ));
    };
    let http = join_client(manager, token).await?;
    let client = ManagerClient::with_http(http, manager).with_token(Some(token.to_string()));
    let reply = client
        .acl_join(&JoinRequest {
            name: name.to_string(),
            advertise: advertise.to_string(),
        })
        .await
        .map_err(|e| format!("worker {name} cannot join the cluster at {manager}: {e}"))?;
    save(data_dir, &reply)?;
    tracing::info!(worker = %name, manager = %manager, "joined the cluster; identity kept in the data directory");
    Ok(reply)
}

/// The client a worker joins with: plain, or (for a join token with a CA fingerprint) TLS that
/// trusts the CA the manager shows only if its fingerprint is the token's.
async fn join_client(manager: &str, token: &str) -> Result<HttpClient, String> {
    let timeout = Duration::from_secs(10);
    let Some(fingerprint) = token.splitn(3, '.').nth(2) else {
        return Ok(HttpClient::new(timeout));
    };
    let first = ManagerClient::with_http(
        HttpClient::with_tls(timeout, first_contact_client()),
        manager,
    );
    let ca = first
        .acl_ca()
        .await
        .map_err(|e| format!("cannot fetch the cluster CA from {manager}: {e}"))?;
    let der = certs_from_pem(&ca.ca)?
        .into_iter()
        .next()
        .ok_or("the manager's CA answer holds no certificate")?;
    if !super::constant_time_eq(sha256_hex(&der).as_bytes(), fingerprint.as_bytes()) {
        return Err(format!(
            "the CA shown by {manager} does not match the join token's fingerprint; refusing to join"
        ));
    }
    Ok(HttpClient::with_tls(
        timeout,
        client_config(&ca.ca, MANAGER_NAME, None)?,
    ))
}

/// Renews this worker's certificate now and then every [`RENEW_AFTER`] (retrying every minute
/// on failure), swapping it into `certs` (so listeners and clients use it from their next
/// handshake) and into the identity file. `client` speaks for the node (its token and mTLS).
pub async fn renew_loop(
    client: ManagerClient,
    name: String,
    data_dir: std::path::PathBuf,
    certs: Arc<CertStore>,
    shutdown: Shutdown,
) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
        wait = match renew_once(&client, &name, &data_dir, &certs).await {
            Ok(()) => {
                tracing::info!(worker = %name, next_in = ?RENEW_AFTER, "node certificate renewed");
                RENEW_AFTER
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, retry_in = ?RENEW_RETRY, "cannot renew the node certificate");
                RENEW_RETRY
            }
        };
    }
}

async fn renew_once(
    client: &ManagerClient,
    name: &str,
    data_dir: &Path,
    certs: &CertStore,
) -> Result<(), String> {
    let cert = client.acl_renew(name).await.map_err(|e| e.to_string())?;
    certs.set(&cert)?;
    if let Some(mut id) = load(data_dir)? {
        id.tls = Some(cert);
        save(data_dir, &id)?;
    }
    Ok(())
}
