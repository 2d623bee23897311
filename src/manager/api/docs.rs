//! What the manager serves about itself: `GET /openapi.json` (the OpenAPI 3.1 document of this
//! API) and the web dashboard, `GET /ui` (one page) and `GET /ui/app.js` (its script).
//!
//! All three are files in this directory embedded at build time, so the binary serves them with
//! no build step and nothing on disk. The document is written by hand; `tests/openapi.rs` keeps it
//! honest by validating the real answers of every route against its schemas and its route list
//! against the router's.

use std::sync::OnceLock;

use super::not_allowed;
use crate::http::{text, ApiError, Resp};

/// The OpenAPI 3.1 document of the manager API.
pub const OPENAPI: &str = include_str!("openapi.json");
/// The dashboard page.
const UI_PAGE: &str = include_str!("ui.html");
/// The dashboard's script.
const UI_SCRIPT: &str = include_str!("ui.js");

/// Routes `/openapi.json`, `/ui` and `/ui/app.js`; `None` for any other path under them.
pub(super) fn route(meth: &str, path: &[&str]) -> Option<Result<Resp, ApiError>> {
    let (body, content_type) = match path {
        ["openapi.json"] => (OPENAPI, "application/json"),
        ["ui"] => (UI_PAGE, "text/html; charset=utf-8"),
        ["ui", "app.js"] => (UI_SCRIPT, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(match meth {
        "GET" => Ok(text(200, body, content_type)),
        _ => Err(not_allowed(meth, path)),
    })
}

/// Adds `Allow` (RFC 9110 requires it on a 405) to a 405 answer for `path`: the methods the
/// document lists for the path's template. The document is the list the router is tested against
/// (`tests/openapi.rs` checks every other method on a documented path answers 405), so the header
/// names exactly the methods served. Planned operations are left out until they are served.
pub(super) fn add_allow(resp: &mut Resp, path: &[String]) {
    let Some(allow) = allowed_methods(path) else {
        return;
    };
    match hyper::header::HeaderValue::from_str(&allow) {
        Ok(v) => {
            resp.headers_mut().insert(hyper::header::ALLOW, v);
        }
        Err(e) => tracing::warn!(allow = %allow, error = %e, "cannot send an Allow header"),
    }
}

/// The methods the document lists for the template that matches `path` (`GET, POST`).
fn allowed_methods(path: &[String]) -> Option<String> {
    static DOC: OnceLock<Option<serde_json::Value>> = OnceLock::new();
    let doc = DOC
        .get_or_init(|| match serde_json::from_str(OPENAPI) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "the embedded OpenAPI document does not parse");
                None
            }
        })
        .as_ref()?;
    for (template, ops) in doc["paths"].as_object()? {
        let segments: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let matches = segments.len() == path.len()
            && segments
                .iter()
                .zip(path)
                .all(|(t, p)| t.starts_with('{') || t == p);
        if !matches {
            continue;
        }
        let methods: Vec<String> = ops
            .as_object()?
            .iter()
            .filter(|(_, op)| op["x-poseidon-planned"] != true)
            .map(|(m, _)| m.to_uppercase())
            .collect();
        return (!methods.is_empty()).then(|| methods.join(", "));
    }
    None
}
