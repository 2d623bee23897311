//! `/services`: create, list, inspect, update (scale or roll), roll back, stop or purge.

use super::{no_route, not_allowed, status_of};
use crate::http::{json, ApiError, Req, Resp};
use crate::manager::Manager;
use crate::spec::{check_service_name, parse_service};
use crate::wire::ServicePurged;

/// The name in a service URL, checked as a DNS label so a bad one is a 400 naming `name`.
fn name_of(name: &str) -> Result<&str, ApiError> {
    check_service_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(name)
}

/// Routes `/services...`; `path` still starts with `services`.
pub(super) async fn route(
    m: &Manager,
    req: &Req,
    meth: &str,
    path: &[&str],
) -> Result<Resp, ApiError> {
    match (meth, path) {
        ("GET", ["services"]) => Ok(json(200, &m.services())),
        ("POST", ["services"]) => {
            let spec =
                parse_service(&req.body, None).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let view = m.create_service(spec).await.map_err(|e| status_of(&e))?;
            let mut resp = json(201, &view);
            if let Ok(v) = format!("/services/{}", view.name).parse() {
                resp.headers_mut().insert(hyper::header::LOCATION, v);
            }
            Ok(resp)
        }
        ("GET", ["services", name]) => {
            let name = name_of(name)?;
            m.service(name)
                .map(|s| json(200, &s))
                .ok_or_else(|| ApiError::not_found(format!("no service named {name:?}")))
        }
        ("PUT", ["services", name]) => {
            let name = name_of(name)?;
            let spec = parse_service(&req.body, Some(name))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let view = m
                .update_service(name, spec)
                .await
                .map_err(|e| status_of(&e))?;
            Ok(json(200, &view))
        }
        ("DELETE", ["services", name]) => {
            let name = name_of(name)?;
            let purge = req.flag("purge")?;
            match m
                .delete_service(name, purge)
                .await
                .map_err(|e| status_of(&e))?
            {
                Some(view) => Ok(json(200, &view)),
                None => Ok(json(
                    200,
                    &ServicePurged {
                        purged: name.to_string(),
                    },
                )),
            }
        }
        ("POST", ["services", name, "rollback"]) => {
            let name = name_of(name)?;
            let view = m.rollback_service(name).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &view))
        }
        (_, ["services"]) | (_, ["services", _]) | (_, ["services", _, "rollback"]) => {
            Err(not_allowed(meth, path))
        }
        _ => Err(no_route(meth, path)),
    }
}
