//! What the manager serves about itself: `GET /openapi.json` (the OpenAPI 3.1 document of this
//! API) and the web dashboard, `GET /ui` (one page) and `GET /ui/app.js` (its script).
//!
//! All three are files in this directory embedded at build time, so the binary serves them with
//! no build step and nothing on disk. The document is written by hand; `tests/openapi.rs` keeps it
//! honest by validating the real answers of every route against its schemas and its route list
//! against the router's.

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
