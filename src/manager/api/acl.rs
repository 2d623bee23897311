//! `/acl`: the first management token, tokens, join tokens, and the workers' join.
//!
//! Who may call what is decided by the router's gate (`scope_of` in `mod.rs`); these handlers only
//! do the work. Every answer that holds a secret is a 201 to its creator, once; lists never do.

use super::{no_route, not_allowed};
use crate::http::{json, ApiError, Req, Resp};
use crate::manager::Manager;
use crate::security::{Acl, AclError, Policy};
use crate::wire::{CaReply, CreateToken, JoinReply, JoinRequest};

/// Routes `/acl...`; `path` still starts with `acl`.
pub(super) async fn route(
    m: &Manager,
    req: &Req,
    meth: &str,
    path: &[&str],
) -> Result<Resp, ApiError> {
    let acl = m.security().acl.clone().ok_or_else(|| {
        ApiError::bad_request("the ACL is off on this manager ([security] acl = false)")
    })?;
    match (meth, path) {
        ("POST", ["acl", "bootstrap"]) => issued(acl.bootstrap().await),
        ("GET", ["acl", "tokens"]) => Ok(json(200, &acl.list())),
        ("POST", ["acl", "tokens"]) => {
            let body: CreateToken = req.json()?;
            let policy: Policy = body.policy.parse().map_err(ApiError::bad_request)?;
            issued(acl.create(policy, None).await)
        }
        ("DELETE", ["acl", "tokens", accessor]) => {
            let view = acl.revoke(accessor).await.map_err(|e| status(&e))?;
            Ok(json(200, &view))
        }
        ("POST", ["acl", "join-token"]) => {
            let mut t = acl
                .create(Policy::Join, None)
                .await
                .map_err(|e| status(&e))?;
            // With TLS the token also carries the CA's fingerprint, so that a joining worker can
            // check the CA it is given before it sends anything secret.
            if let Some(ca) = &m.security().ca {
                t.token = format!("{}.{}", t.token, ca.fingerprint());
            }
            Ok(json(201, &t))
        }
        ("POST", ["acl", "join"]) => join(m, &acl, req).await,
        ("GET", ["acl", "ca"]) => {
            let ca = cluster_ca(m)?;
            Ok(json(
                200,
                &CaReply {
                    ca: ca.cert_pem().to_string(),
                    fingerprint: ca.fingerprint(),
                },
            ))
        }
        ("POST", ["acl", "nodes", name, "certificate"]) => {
            let cert = cluster_ca(m)?
                .issue_node(name)
                .map_err(ApiError::internal)?;
            tracing::info!(node = %name, "renewed a node certificate");
            Ok(json(200, &cert))
        }
        (_, ["acl", "bootstrap" | "tokens" | "join-token" | "join" | "ca"])
        | (_, ["acl", "tokens", _])
        | (_, ["acl", "nodes", _, "certificate"]) => Err(not_allowed(meth, path)),
        _ => Err(no_route(meth, path)),
    }
}

fn cluster_ca(m: &Manager) -> Result<std::sync::Arc<crate::security::ca::ClusterCa>, ApiError> {
    m.security()
        .ca
        .clone()
        .ok_or_else(|| ApiError::not_found("this manager has no cluster CA (tls is not \"auto\")"))
}

fn status(e: &AclError) -> ApiError {
    ApiError::new(e.status(), e.to_string())
}

fn issued(r: Result<crate::wire::IssuedToken, AclError>) -> Result<Resp, ApiError> {
    r.map(|t| json(201, &t)).map_err(|e| status(&e))
}

/// A worker joins: a node token bound to its name (refused if the name already has one), and the
/// secret the manager will present to it.
async fn join(m: &Manager, acl: &Acl, req: &Req) -> Result<Resp, ApiError> {
    let body: JoinRequest = req.json()?;
    let name_ok = (1..=63).contains(&body.name.len())
        && body
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "invalid node name {:?} (1 to 63 letters, digits, '_', '.' or '-')",
            body.name
        )));
    }
    let secret = m
        .security()
        .worker_secret(&body.name)
        .ok_or_else(|| ApiError::unavailable("this manager has no worker key"))?;
    let tls = match &m.security().ca {
        Some(ca) => Some(ca.issue_node(&body.name).map_err(ApiError::internal)?),
        None => None,
    };
    let token = acl
        .create(Policy::Node, Some(body.name.clone()))
        .await
        .map_err(|e| status(&e))?;
    tracing::info!(node = %body.name, advertise = %body.advertise, accessor = %token.accessor, "a worker joined");
    Ok(json(
        201,
        &JoinReply {
            node_token: token.token,
            manager_secret: secret,
            tls,
            secrets_key: m.security().secrets.as_ref().map(|k| k.to_hex()),
        },
    ))
}
