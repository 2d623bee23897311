//! `/nodes`: the cluster's nodes for users, eligibility and drain, and the workers' side of the
//! protocol (heartbeats and reports).
//!
//! - `GET /nodes`: every node with its labels, eligibility and drain flag;
//! - `POST /nodes/{name}/eligibility` `{"eligible": bool}`: the node's view;
//! - `POST /nodes/{name}/drain`: a `DrainReply` (service tasks to be moved, plain tasks left).

use super::{no_route, not_allowed, status_of};
use crate::http::{json, ApiError, Req, Resp};
use crate::manager::Manager;
use crate::wire::{EligibilityRequest, Heartbeat, Report};

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
            check_labels(&hb.labels)?;
            let reply = m.heartbeat(name, hb).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        ("POST", ["nodes", name, "reports"]) => {
            let r: Report = req.json()?;
            let reply = m.report(name, r.tasks).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        ("POST", ["nodes", name, "eligibility"]) => {
            let body = eligibility_request(&req.body)?;
            let view = m
                .set_eligibility(name, body.eligible)
                .await
                .map_err(|e| status_of(&e))?;
            Ok(json(200, &view))
        }
        ("POST", ["nodes", name, "drain"]) => {
            let reply = m.drain(name).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        (_, ["nodes"]) | (_, ["nodes", _, "heartbeat" | "reports" | "eligibility" | "drain"]) => {
            Err(not_allowed(meth, path))
        }
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

/// Reads `{"eligible": true|false}`, with an error that names the field.
fn eligibility_request(body: &[u8]) -> Result<EligibilityRequest, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Some(fields) = value.as_object() else {
        return Err(ApiError::bad_request(
            "the body must be an object such as {\"eligible\": false}",
        ));
    };
    if let Some(key) = fields.keys().find(|k| k.as_str() != "eligible") {
        return Err(ApiError::bad_request(format!(
            "unknown field {key:?} (valid: eligible)"
        )));
    }
    match fields.get("eligible") {
        Some(serde_json::Value::Bool(eligible)) => Ok(EligibilityRequest {
            eligible: *eligible,
        }),
        Some(other) => Err(ApiError::bad_request(format!(
            "eligible must be true or false, got {other}"
        ))),
        None => Err(ApiError::bad_request(
            "eligible is required (true or false)",
        )),
    }
}

/// A heartbeat's labels must follow the config's rules, since constraints name them.
fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in labels {
        crate::placement::check_label_key(key)
            .map_err(|e| ApiError::bad_request(format!("labels: invalid label key: {e}")))?;
        crate::placement::check_label_value(value).map_err(|e| {
            ApiError::bad_request(format!("labels.{key}: invalid label value: {e}"))
        })?;
    }
    Ok(())
}
