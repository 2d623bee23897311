//! A worker's identity: the node token, the secret its manager presents, and (with TLS) its node
//! certificate, kept in `identity.json` (mode 0600) in its data directory. A worker without one
//! joins with a join token (`POST /acl/join`) and keeps what the manager answers; a worker with
//! neither refuses to start.

use std::path::Path;
use std::time::Duration;

use crate::client::ManagerClient;
use crate::http::HttpClient;
use crate::wire::{JoinReply, JoinRequest};

use super::keys::{read_private, replace_private};

/// The file name of a worker's identity in its data directory.
pub const IDENTITY_FILE: &str = "identity.json";

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
/// `join_token` (kept at once). `http` must trust the manager when it speaks TLS.
pub async fn load_or_join(
    data_dir: &Path,
    name: &str,
    advertise: &str,
    manager: &str,
    join_token: Option<&str>,
    http: HttpClient,
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
    let client = ManagerClient::with_http(http.with_timeout(Duration::from_secs(10)), manager)
        .with_token(Some(token.to_string()));
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
