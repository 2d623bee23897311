//! Poseidon's own JSON format: the fields, their two shapes where there are two, and their defaults.

use super::*;

pub(super) const FIELDS: &[&str] = &[
    "id",
    "name",
    "image",
    "cmd",
    "env",
    "secrets",
    "cpus",
    "memory",
    "ports",
    "restart_policy",
    "health_check",
    "labels",
    "stop_after_disconnect",
    "volumes",
    "pull",
    "constraints",
];
pub(super) const PORT_FIELDS: &[&str] = &["container_port", "host_port", "protocol"];
pub(super) const RESTART_FIELDS: &[&str] = &[
    "policy",
    "max_restarts",
    "backoff",
    "max_backoff",
    "reset_after",
];
pub(super) const HEALTH_FIELDS: &[&str] = &[
    "type",
    "port",
    "path",
    "cmd",
    "interval",
    "timeout",
    "retries",
    "start_period",
];

pub(super) fn submission(fields: &[(String, Json)]) -> Result<Submission, SpecError> {
    let is_go = fields
        .iter()
        .any(|(k, _)| k == "Task" || k.starts_with(|c: char| c.is_ascii_uppercase()));
    if is_go {
        go_submission(fields)
    } else {
        poseidon_submission(&Fields::new("", fields))
    }
}

pub(super) fn poseidon_submission(f: &Fields<'_>) -> Result<Submission, SpecError> {
    f.deny_unknown(FIELDS)?;
    let id = f.str("id")?.map(parse_id).transpose()?;
    let image = f.str("image")?.ok_or(SpecError::Missing("image".into()))?;
    let image = check_image(image, "image")?;
    let name = match f.str("name")? {
        Some(name) => name.to_string(),
        None => name_from_image(&image),
    };
    let cmd = f
        .get("cmd")
        .map(|v| string_list(v, "cmd"))
        .transpose()?
        .unwrap_or_default();
    let env = f
        .get("env")
        .map(|v| string_map(v, "env", true))
        .transpose()?
        .unwrap_or_default();
    let secrets = f
        .get("secrets")
        .map(|v| string_map(v, "secrets", false))
        .transpose()?
        .unwrap_or_default();
    let labels = f
        .get("labels")
        .map(|v| string_map(v, "labels", false))
        .transpose()?
        .unwrap_or_default();
    let cpus = f.f64("cpus")?.unwrap_or(0.0);
    let memory = f.get("memory").map(memory).transpose()?.unwrap_or(0);
    let ports = f.get("ports").map(ports).transpose()?.unwrap_or_default();
    let restart_policy = f
        .get("restart_policy")
        .map(restart_policy)
        .transpose()?
        .unwrap_or_default();
    let health_check = f.get("health_check").map(health_check).transpose()?;
    let stop_after_disconnect_ms = f.duration_ms("stop_after_disconnect")?;
    let volumes = f
        .get("volumes")
        .map(volumes)
        .transpose()?
        .unwrap_or_default();
    let pull = f.get("pull").map(pull).transpose()?.unwrap_or_default();
    let constraints = f
        .get("constraints")
        .map(constraints::constraints)
        .transpose()?
        .unwrap_or_default();
    let spec = TaskSpec::new(
        name,
        SpecBody {
            image,
            cmd,
            env,
            secrets,
            cpus,
            memory,
            ports,
            restart_policy,
            health_check: health_check.map(Box::new),
            labels,
            stop_after_disconnect_ms,
            volumes,
            pull,
            constraints,
            ..SpecBody::default()
        },
    );
    validate(&spec)?;
    Ok(Submission {
        id,
        spec,
        notes: Vec::new(),
    })
}

pub(super) fn parse_id(text: &str) -> Result<TaskId, SpecError> {
    text.parse().map_err(|_| {
        invalid(
            "id",
            format!(
                "invalid id {text:?} (expected a UUID such as 21b23589-5d2d-4731-b5c9-a97e9832d021)"
            ),
        )
    })
}

pub(super) fn memory(v: &Json) -> Result<u64, SpecError> {
    match v {
        Json::UInt(n) => Ok(*n),
        Json::Str(text) => parse_size(text).map_err(|e| {
            if e.contains("out of range") {
                invalid(
                    "memory",
                    format!("memory must be at most 1t (1 TiB), got {text:?}"),
                )
            } else {
                invalid(
                    "memory",
                    format!("invalid memory {text:?} ({SIZE_EXAMPLES})"),
                )
            }
        }),
        Json::NegInt(_) | Json::Float(_) => Err(invalid(
            "memory",
            format!("invalid memory {v} (a whole number of bytes, or a string; {SIZE_EXAMPLES})"),
        )),
        other => Err(wrong("memory", "a number of bytes or a string", other)),
    }
}

pub(super) fn ports(v: &Json) -> Result<Vec<Port>, SpecError> {
    let Json::Array(items) = v else {
        return Err(wrong("ports", "an array", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let place = format!("ports[{i}]");
            match item {
                Json::Str(text) => short_port(text, &place),
                Json::Object(fields) => {
                    let f = Fields::new(place.clone(), fields);
                    f.deny_unknown(PORT_FIELDS)?;
                    let container = f
                        .get("container_port")
                        .ok_or_else(|| SpecError::Missing(f.path("container_port")))?;
                    let path = f.path("container_port");
                    let container_port = as_u16(container, &path, "")?;
                    let host_port = f
                        .get("host_port")
                        .map(|v| {
                            let path = f.path("host_port");
                            as_u16(v, &path, " (omit it to let Docker choose)")
                        })
                        .transpose()?;
                    let protocol = f.str("protocol")?.unwrap_or("tcp").to_string();
                    Ok(Port {
                        container_port,
                        host_port,
                        protocol,
                    })
                }
                other => Err(wrong(
                    &place,
                    "an object or a string such as \"8080:80\"",
                    other,
                )),
            }
        })
        .collect()
}

/// Docker's short form: `80`, `8080:80`, `53/udp`, `8053:53/udp`.
pub(super) fn short_port(text: &str, place: &str) -> Result<Port, SpecError> {
    let bad = |why: &str| {
        invalid(
            place,
            format!("invalid port {text:?} in {place}: {why} ({PORT_EXAMPLES})"),
        )
    };
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, proto)) => (ports, proto),
        None => (text, "tcp"),
    };
    let number = |s: &str| -> Result<u16, SpecError> {
        if s.contains('-') {
            return Err(bad("port ranges are not supported"));
        }
        s.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("a port is a number between 1 and 65535"))
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_port, container_port) = match parts.as_slice() {
        [container] => (None, number(container)?),
        [host, container] => (Some(number(host)?), number(container)?),
        [_, _, _] => return Err(bad("a host IP address is not supported")),
        _ => return Err(bad("too many ':'")),
    };
    Ok(Port {
        container_port,
        host_port,
        protocol: protocol.to_string(),
    })
}

pub(super) fn restart_kind(name: &str, field: &str) -> Result<RestartKind, SpecError> {
    match name {
        "never" | "no" => Ok(RestartKind::Never),
        "on-failure" => Ok(RestartKind::OnFailure),
        "always" | "unless-stopped" => Ok(RestartKind::Always),
        _ => Err(invalid(
            field,
            format!(
                "unknown {field} {name:?} (valid: never, no, on-failure, always, unless-stopped)"
            ),
        )),
    }
}

pub(super) fn restart_policy(v: &Json) -> Result<RestartPolicy, SpecError> {
    let fields = match v {
        Json::Str(name) => {
            return Ok(RestartPolicy::of(restart_kind(name, "restart_policy")?));
        }
        Json::Object(fields) => fields,
        other => {
            return Err(wrong(
                "restart_policy",
                "a policy name or an object with a \"policy\" field",
                other,
            ))
        }
    };
    let f = Fields::new("restart_policy", fields);
    f.deny_unknown(RESTART_FIELDS)?;
    let kind = f
        .str("policy")?
        .ok_or_else(|| SpecError::Missing(f.path("policy")))?;
    let mut policy = RestartPolicy::of(restart_kind(kind, "restart_policy.policy")?);
    policy.max_restarts = f
        .get("max_restarts")
        .map(|v| as_u32(v, "restart_policy.max_restarts"))
        .transpose()?;
    let backoff = f.duration_ms("backoff")?;
    let max_backoff = f.duration_ms("max_backoff")?;
    if let Some(ms) = backoff {
        policy.backoff_ms = ms;
    }
    match max_backoff {
        Some(ms) => policy.max_backoff_ms = ms,
        // A first delay longer than the default cap raises the cap with it: the user asked for that
        // delay and did not ask for a shorter one later.
        None => policy.max_backoff_ms = policy.max_backoff_ms.max(policy.backoff_ms),
    }
    if let Some(ms) = f.duration_ms("reset_after")? {
        policy.reset_after_ms = ms;
    }
    Ok(policy)
}

pub(super) fn health_check(v: &Json) -> Result<HealthCheck, SpecError> {
    let f = Fields::new("health_check", as_object(v, "health_check")?);
    f.deny_unknown(HEALTH_FIELDS)?;
    let kind = f.str("type")?.ok_or_else(|| {
        invalid(
            "health_check.type",
            "health_check.type is required (valid: http, tcp, exec)",
        )
    })?;
    // Fields that belong to another kind of check are refused rather than ignored, so that a check
    // never silently probes something other than what its author wrote.
    let only_for = |key: &str, kinds: &str| -> Result<(), SpecError> {
        match f.get(key) {
            Some(_) => Err(invalid(
                f.path(key),
                format!("{} is only for {kinds} checks, not {kind}", f.path(key)),
            )),
            None => Ok(()),
        }
    };
    let port = || -> Result<u16, SpecError> {
        let path = f.path("port");
        match f.get("port") {
            Some(v) => as_u16(v, &path, ""),
            None => Err(invalid(
                path.clone(),
                format!("{path} is required for {kind} checks"),
            )),
        }
    };
    let probe = match kind {
        "http" => {
            only_for("cmd", "exec")?;
            Probe::Http {
                port: port()?,
                path: f.str("path")?.unwrap_or("/").to_string(),
            }
        }
        "tcp" => {
            only_for("cmd", "exec")?;
            only_for("path", "http")?;
            Probe::Tcp { port: port()? }
        }
        "exec" => {
            only_for("port", "http and tcp")?;
            only_for("path", "http")?;
            let cmd = f
                .get("cmd")
                .map(|v| string_list(v, "health_check.cmd"))
                .transpose()?
                .unwrap_or_default();
            Probe::Exec { cmd }
        }
        other => {
            return Err(invalid(
                "health_check.type",
                format!("unknown health_check.type {other:?} (valid: http, tcp, exec)"),
            ))
        }
    };
    let mut hc = HealthCheck {
        probe,
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    };
    if let Some(ms) = f.duration_ms("interval")? {
        hc.interval_ms = ms;
    }
    if let Some(ms) = f.duration_ms("timeout")? {
        hc.timeout_ms = ms;
    }
    if let Some(v) = f.get("retries") {
        hc.retries = as_u32(v, "health_check.retries")?;
    }
    if let Some(ms) = f.duration_ms("start_period")? {
        hc.start_period_ms = ms;
    }
    Ok(hc)
}
