//! `/nodes`: the cluster's nodes for users, and the workers' side of the protocol (heartbeats
//! and reports).

use super::{no_route, not_allowed, status_of};
use crate::http::{json, ApiError, Req, Resp};
use crate::manager::Manager;
use crate::wire::{Heartbeat, Report};

/// Routes `/nodes...`; `path` still starts with `nodes`.
pub(super) async fn route(
    m: &Manager,
    req: &Req,
    meth: &str,
    path: &[&str],
) -> Result<Resp, ApiError> {
    match (meth, path) {
        ("GET", ["nodes"]) => Ok(json(200, &m.nodes())),
        ("POST", ["nodes", name, "heartbeat"]) => {
            let hb: Heartbeat = req.json()?;
            if hb.name != *name {
                return Err(ApiError::bad_request(format!(
                    "heartbeat for {name} carries the name {}",
                    hb.name
                )));
            }
            check_address(&hb.address)?;
            let reply = m.heartbeat(name, hb).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        ("POST", ["nodes", name, "reports"]) => {
            let r: Report = req.json()?;
            let reply = m.report(name, r.tasks).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        (_, ["nodes"]) | (_, ["nodes", _, "heartbeat" | "reports"]) => Err(not_allowed(meth, path)),
        _ => Err(no_route(meth, path)),
    }
}

/// A node's advertised address must be an absolute `http://host:port` base URL: the manager
/// relays logs and sends assignments to it, and anything else would fail only then, as a 502.
fn check_address(address: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "address {address:?} {why} (expected http://HOST:PORT or https://HOST:PORT)"
        ))
    };
    let uri: hyper::Uri = address.parse().map_err(|_| bad("is not a URL"))?;
    // https:// is the address of a worker that serves TLS (`tls = "auto"` or files).
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("does not start with http:// or https://"));
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && a.port_u16().is_some() => {}
        _ => return Err(bad("has no host and port")),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("has a path or query"));
    }
    Ok(())
}
