//! The worker's watch on the catalog: a blocking query on `GET /nodes/{name}/mesh?index=N&wait=`
//! that the manager answers as soon as an endpoint or a `publish` entry changes, so a killed
//! container leaves the mesh as fast as it leaves the catalog. While the manager cannot be
//! reached the mesh keeps its last table and the watch retries with a capped backoff; after a
//! failure it asks without an index, since a restarted manager counts from 1 again.

use std::time::Duration;

use super::Mesh;
use crate::client::ManagerClient;
use crate::http::Shutdown;

/// How long one blocking query waits for a change.
pub const WAIT: Duration = Duration::from_secs(30);

/// The first and the longest pause after a failed query.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Runs until `shutdown`.
pub(crate) async fn run(mesh: Mesh, client: ManagerClient, shutdown: Shutdown) {
    // The request outlives its wait by a margin, so a slow answer is not taken for a dead manager.
    let client = client.with_timeout(WAIT + Duration::from_secs(10));
    let node = mesh.node().to_string();
    let mut index: Option<u64> = None;
    let mut backoff = BACKOFF.0;
    let mut reachable = true;
    loop {
        let block = index.map(|i| (i, WAIT));
        let answer = tokio::select! {
            _ = shutdown.wait() => return,
            a = client.mesh(&node, block) => a,
        };
        match answer {
            Ok(a) => {
                if !reachable {
                    tracing::info!(node = %node, "routing mesh: the manager answers again");
                    reachable = true;
                }
                backoff = BACKOFF.0;
                if index != Some(a.index) && mesh.set_services(&a.value) {
                    tracing::debug!(node = %node, index = a.index, "routing mesh: new table");
                }
                // An index that went back (a restarted manager) is taken as it is: the next
                // query waits for a change after it.
                index = Some(a.index);
            }
            Err(e) => {
                if reachable {
                    tracing::warn!(node = %node, error = %e, "routing mesh: cannot read the catalog; keeping the last known endpoints");
                    reachable = false;
                }
                index = None;
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}
