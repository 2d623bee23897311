//! `/catalog`: the endpoints of services, for discovery. `GET /catalog/services` lists every
//! service with its endpoint count, `GET /catalog/services/{name}` its endpoints. Both answers
//! carry `X-Poseidon-Index`; `?index=N` makes a blocking query that is answered once the index
//! passes N, or after `?wait=` (default 5 minutes, at most 10, Nomad's bounds), whichever is first.
//! `GET /catalog/mesh` (and `GET /nodes/{name}/mesh`, with a node token) answers the routing mesh: every published service's `publish`
//! entries with their endpoints, under the same index and blocking rules.

use std::time::Duration;

use super::{no_route, not_allowed};
use crate::http::{json, ApiError, Req, Resp};
use crate::manager::Manager;
use crate::spec::check_service_name;

/// The header that carries the catalog index.
pub const INDEX_HEADER: &str = "x-poseidon-index";

/// How long a blocking query waits when it names no `wait`.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The longest `wait` a blocking query may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// A blocking query's parameters: the index to pass and how long to wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocking {
    /// Answer once the index is above this.
    pub after: u64,
    /// Answer anyway after this long.
    pub wait: Duration,
}

/// Reads `?index=N&wait=D`; `None` without `index` (answer at once). Each bad value is a 400
/// naming its parameter.
pub(crate) fn blocking(
    index: Option<&str>,
    wait: Option<&str>,
) -> Result<Option<Blocking>, ApiError> {
    let wait = match wait {
        None => DEFAULT_WAIT,
        Some(w) => {
            let d = humantime::parse_duration(w).map_err(|e| {
                ApiError::bad_request(format!(
                    "query parameter wait must be a duration such as 30s or 5m, got {w:?}: {e}"
                ))
            })?;
            if d > MAX_WAIT {
                return Err(ApiError::bad_request(format!(
                    "query parameter wait must be at most 10m, got {w:?}"
                )));
            }
            d
        }
    };
    let Some(index) = index else {
        return Ok(None);
    };
    let after = index.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "query parameter index must be a whole number, got {index:?}"
        ))
    })?;
    Ok(Some(Blocking { after, wait }))
}

/// Routes `/catalog...`; `path` still starts with `catalog`.
pub(super) async fn route(
    m: &Manager,
    req: &Req,
    meth: &str,
    path: &[&str],
) -> Result<Resp, ApiError> {
    match (meth, path) {
        ("GET", ["catalog", "services"]) => {
            wait(m, req).await?;
            let (index, list) = m.catalog_services();
            Ok(with_index(json(200, &list), index))
        }
        ("GET", ["catalog", "services", name]) => {
            check_service_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
            wait(m, req).await?;
            let (index, list) = m
                .catalog_service(name)
                .ok_or_else(|| ApiError::not_found(format!("no service named {name:?}")))?;
            Ok(with_index(json(200, &list), index))
        }
        ("GET", ["catalog", "mesh"]) => mesh(m, req).await,
        (_, ["catalog", "services"])
        | (_, ["catalog", "services", _])
        | (_, ["catalog", "mesh"]) => Err(not_allowed(meth, path)),
        _ => Err(no_route(meth, path)),
    }
}

/// Routes `GET /nodes/{name}/mesh`: the mesh table as the worker `name` reads it with its node
/// token (the same answer as `GET /catalog/mesh`).
pub(super) async fn route_mesh(
    m: &Manager,
    req: &Req,
    meth: &str,
    path: &[&str],
) -> Result<Resp, ApiError> {
    match meth {
        "GET" => mesh(m, req).await,
        _ => Err(not_allowed(meth, path)),
    }
}

async fn mesh(m: &Manager, req: &Req) -> Result<Resp, ApiError> {
    wait(m, req).await?;
    let (index, list) = m.catalog_mesh();
    Ok(with_index(json(200, &list), index))
}

/// Holds a blocking query until its index passes or its wait ends.
async fn wait(m: &Manager, req: &Req) -> Result<(), ApiError> {
    if let Some(b) = blocking(req.param("index"), req.param("wait"))? {
        m.wait_catalog(b.after, b.wait).await;
    }
    Ok(())
}

fn with_index(mut resp: Resp, index: u64) -> Resp {
    resp.headers_mut()
        .insert(INDEX_HEADER, hyper::header::HeaderValue::from(index));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `index`, `wait`, and the `(after, wait in s)` read or the parameter named by the 400.
    type Row = (
        Option<&'static str>,
        Option<&'static str>,
        Result<Option<(u64, u64)>, &'static str>,
    );

    #[test]
    fn blocking_parameters_are_read_and_each_bad_one_is_named() {
        let rows: &[Row] = &[
            (None, None, Ok(None)),
            (None, Some("30s"), Ok(None)),
            (Some("7"), None, Ok(Some((7, 300)))),
            (Some("0"), Some("30s"), Ok(Some((0, 30)))),
            (Some("7"), Some("10m"), Ok(Some((7, 600)))),
            (Some("-1"), None, Err("index")),
            (Some("seven"), Some("30s"), Err("index")),
            (Some("7"), Some("soon"), Err("wait")),
            (Some("7"), Some("11m"), Err("wait")),
            (None, Some("30"), Err("wait")),
        ];
        for (index, wait, want) in rows {
            let got = blocking(*index, *wait);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(
                    g.map(|b| (b.after, b.wait.as_secs())),
                    *w,
                    "{index:?} {wait:?}"
                ),
                (Err(e), Err(param)) => {
                    assert_eq!(e.status, 400);
                    assert!(
                        e.message.starts_with(&format!("query parameter {param} ")),
                        "{index:?} {wait:?}: {}",
                        e.message
                    );
                }
                (g, w) => panic!("{index:?} {wait:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
