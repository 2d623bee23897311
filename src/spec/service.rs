//! A service body (`POST /services`, `PUT /services/{name}`) to a validated [`ServiceSpec`].
//!
//! It is walked by hand like a task spec, so every error names its field (`count`,
//! `update.max_parallel`, `constraints[1].operator`, `task.image`), and its `task` goes through the
//! task spec parser itself, so a service's template is exactly what `POST /tasks` accepts.

use super::*;
use crate::service::{Publish, ServiceSpec, UpdatePolicy, MAX_COUNT};

const SERVICE_FIELDS: &[&str] = &["name", "count", "task", "update", "constraints", "publish"];
const UPDATE_FIELDS: &[&str] = &[
    "max_parallel",
    "min_healthy",
    "healthy_deadline",
    "auto_revert",
];
const PUBLISH_FIELDS: &[&str] = &["port", "target", "mode", "hosts", "balance"];

/// Parses a service body. `path_name` is the name in the URL of a `PUT`: the body's `name` may
/// then be left out, and must match when given.
pub fn parse_service(body: &[u8], path_name: Option<&str>) -> Result<ServiceSpec, SpecError> {
    let fields = match read_json(body)? {
        Json::Object(fields) => fields,
        other => {
            return Err(SpecError::WrongType {
                field: "the body".into(),
                expected: "a service object",
                got: other.kind(),
            })
        }
    };
    let f = Fields::new("", &fields);
    f.deny_unknown(SERVICE_FIELDS)?;
    let name = match (f.str("name")?, path_name) {
        (Some(n), Some(p)) if n != p => {
            return Err(invalid(
                "name",
                format!("name {n:?} differs from the service in the URL, {p:?}"),
            ))
        }
        (Some(n), _) => n.to_string(),
        (None, Some(p)) => p.to_string(),
        (None, None) => return Err(SpecError::Missing("name".into())),
    };
    check_service_name(&name)?;
    let count = match f.get("count") {
        Some(v) => as_u64(v, "count")?,
        None => return Err(SpecError::Missing("count".into())),
    };
    if count > u64::from(MAX_COUNT) {
        return Err(invalid(
            "count",
            format!("count must be at most {MAX_COUNT}, got {count}"),
        ));
    }
    let task = match f.get("task") {
        Some(v) => template(v, &name)?,
        None => return Err(SpecError::Missing("task".into())),
    };
    let update = f.get("update").map(update).transpose()?.unwrap_or_default();
    // The same rules and messages as a task's `constraints`; each of the service's tasks gets
    // them added to its own.
    let constraints = f
        .get("constraints")
        .map(super::constraints::constraints)
        .transpose()?
        .unwrap_or_default();
    let publish = match f.get("publish") {
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| publish(p, &format!("publish[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(wrong("publish", "an array", other)),
        None => Vec::new(),
    };
    // One worker port carries one entry of a service: two would have to share its listener.
    for (i, p) in publish.iter().enumerate() {
        if let Some(j) = publish[..i].iter().position(|q| q.port == p.port) {
            return Err(invalid(
                format!("publish[{i}].port"),
                format!(
                    "publish[{i}].port {} is already published by publish[{j}]",
                    p.port
                ),
            ));
        }
    }
    Ok(ServiceSpec {
        name,
        // Checked against MAX_COUNT above, so it fits.
        count: u32::try_from(count).unwrap_or(MAX_COUNT),
        task,
        update,
        constraints,
        publish,
    })
}

/// A DNS label (RFC 1123): discovery answers `NAME.service.poseidon.`, so the name must be one.
pub fn check_service_name(name: &str) -> Result<(), SpecError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "invalid service name {name:?} (a DNS label: 1 to 63 lower-case letters, digits \
                 or '-', not starting or ending with '-')"
            ),
        ))
    }
}

/// The task template: a task spec as `POST /tasks` takes it, without an `id` (each copy gets its
/// own), named after the service. Errors are prefixed with `task`.
fn template(v: &Json, service: &str) -> Result<TaskSpec, SpecError> {
    let fields = as_object(v, "task")?;
    if fields.iter().any(|(k, _)| k == "id") {
        return Err(invalid(
            "task.id",
            "task.id is not allowed: every copy of a service gets its own id",
        ));
    }
    let sub = poseidon_submission(&Fields::new("task", fields)).map_err(|e| match e {
        // Already says "in task".
        e @ SpecError::UnknownField { .. } => e,
        e => {
            let field = match &e {
                SpecError::Invalid { field, .. } | SpecError::WrongType { field, .. } => {
                    field.clone()
                }
                SpecError::Missing(field) => field.clone(),
                _ => String::new(),
            };
            invalid(format!("task.{field}"), format!("task: {e}"))
        }
    })?;
    let mut spec = sub.spec;
    spec.name = service.to_string();
    Ok(spec)
}

fn update(v: &Json) -> Result<UpdatePolicy, SpecError> {
    let f = Fields::new("update", as_object(v, "update")?);
    f.deny_unknown(UPDATE_FIELDS)?;
    let mut u = UpdatePolicy::default();
    if let Some(v) = f.get("max_parallel") {
        let n = as_u32(v, "update.max_parallel")?;
        if n == 0 || n > MAX_COUNT {
            return Err(invalid(
                "update.max_parallel",
                format!("update.max_parallel must be between 1 and {MAX_COUNT}, got {n}"),
            ));
        }
        u.max_parallel = n;
    }
    if let Some(ms) = f.duration_ms("min_healthy")? {
        u.min_healthy_ms = ms;
    }
    if let Some(ms) = f.duration_ms("healthy_deadline")? {
        at_least_ms(ms, "update.healthy_deadline")?;
        u.healthy_deadline_ms = ms;
    }
    if u.healthy_deadline_ms <= u.min_healthy_ms {
        return Err(invalid(
            "update.healthy_deadline",
            format!(
                "update.healthy_deadline ({}) must be longer than update.min_healthy ({}), or no \
                 task could ever count as healthy in time",
                human_ms(u.healthy_deadline_ms),
                human_ms(u.min_healthy_ms)
            ),
        ));
    }
    if let Some(v) = f.get("auto_revert") {
        u.auto_revert = match v {
            Json::Bool(b) => *b,
            other => return Err(wrong("update.auto_revert", "true or false", other)),
        };
    }
    Ok(u)
}

fn publish(v: &Json, place: &str) -> Result<Publish, SpecError> {
    let f = Fields::new(place, as_object(v, place)?);
    f.deny_unknown(PUBLISH_FIELDS)?;
    let port_of = |key: &str| -> Result<u16, SpecError> {
        let path = f.path(key);
        match f.get(key) {
            Some(v) => as_u16(v, &path, ""),
            None => Err(SpecError::Missing(path)),
        }
    };
    let port = port_of("port")?;
    let target = port_of("target")?;
    let mode = f.str("mode")?.unwrap_or("tcp").to_string();
    if mode != "tcp" && mode != "http" {
        return Err(invalid(
            f.path("mode"),
            format!("unknown {} {mode:?} (valid: tcp, http)", f.path("mode")),
        ));
    }
    let hosts = match f.get("hosts") {
        None => Vec::new(),
        Some(Json::Array(items)) => {
            let mut hosts = Vec::new();
            for (i, h) in items.iter().enumerate() {
                let path = format!("{}[{i}]", f.path("hosts"));
                let Json::Str(h) = h else {
                    return Err(wrong(&path, "a host name", h));
                };
                let h = h.to_ascii_lowercase();
                if !is_host_name(&h) {
                    return Err(invalid(
                        &path,
                        format!("{path} must be a host name such as web.example, got {h:?}"),
                    ));
                }
                hosts.push(h);
            }
            hosts
        }
        Some(other) => return Err(wrong(&f.path("hosts"), "an array of host names", other)),
    };
    if !hosts.is_empty() && mode != "http" {
        return Err(invalid(
            f.path("hosts"),
            format!(
                "{} route by the Host header, so they need mode \"http\"",
                f.path("hosts")
            ),
        ));
    }
    let balance = f
        .str("balance")?
        .unwrap_or(crate::service::DEFAULT_BALANCE)
        .to_string();
    if balance != "round_robin" && balance != "least_conn" {
        return Err(invalid(
            f.path("balance"),
            format!(
                "unknown {} {balance:?} (valid: round_robin, least_conn)",
                f.path("balance")
            ),
        ));
    }
    Ok(Publish {
        port,
        target,
        mode,
        hosts,
        balance,
    })
}

/// A DNS host name: dot-separated labels of letters, digits and `-`, at most 253 characters.
fn is_host_name(h: &str) -> bool {
    (1..=253).contains(&h.len())
        && h.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The body that [`parse_service`] reads back into `spec`: what the CLI sends to change one
/// field of a stored service (`poseidon service scale`), since the stored form (`interval_ms`)
/// is not the input form (`interval`).
pub fn service_body(spec: &ServiceSpec) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let ms = |n: u64| Value::from(format!("{n}ms"));
    let t = &spec.task;
    let mut task = Map::new();
    task.insert("image".into(), Value::from(t.image.clone()));
    if !t.cmd.is_empty() {
        task.insert("cmd".into(), Value::from(t.cmd.clone()));
    }
    if !t.env.is_empty() {
        task.insert("env".into(), json!(t.env));
    }
    if t.cpus != 0.0 {
        task.insert("cpus".into(), Value::from(t.cpus));
    }
    if t.memory != 0 {
        task.insert("memory".into(), Value::from(t.memory));
    }
    if !t.ports.is_empty() {
        let ports: Vec<Value> = t
            .ports
            .iter()
            .map(|p| {
                let mut o = json!({"container_port": p.container_port, "protocol": p.protocol});
                if let Some(h) = p.host_port {
                    o["host_port"] = Value::from(h);
                }
                o
            })
            .collect();
        task.insert("ports".into(), Value::from(ports));
    }
    let r = &t.restart_policy;
    let mut restart = json!({
        "policy": match r.policy {
            RestartKind::Never => "never",
            RestartKind::OnFailure => "on-failure",
            RestartKind::Always => "always",
        },
        "backoff": ms(r.backoff_ms),
        "max_backoff": ms(r.max_backoff_ms),
        "reset_after": ms(r.reset_after_ms),
    });
    if let Some(n) = r.max_restarts {
        restart["max_restarts"] = Value::from(n);
    }
    task.insert("restart_policy".into(), restart);
    if let Some(hc) = &t.health_check {
        let mut h = match &hc.probe {
            Probe::Http { port, path } => json!({"type": "http", "port": port, "path": path}),
            Probe::Tcp { port } => json!({"type": "tcp", "port": port}),
            Probe::Exec { cmd } => json!({"type": "exec", "cmd": cmd}),
        };
        h["interval"] = ms(hc.interval_ms);
        h["timeout"] = ms(hc.timeout_ms);
        h["retries"] = Value::from(hc.retries);
        h["start_period"] = ms(hc.start_period_ms);
        task.insert("health_check".into(), h);
    }
    if !t.labels.is_empty() {
        task.insert("labels".into(), json!(t.labels));
    }
    if let Some(n) = t.stop_after_disconnect_ms {
        task.insert("stop_after_disconnect".into(), ms(n));
    }
    if !t.constraints.is_empty() {
        task.insert("constraints".into(), json!(t.constraints));
    }
    if !t.secrets.is_empty() {
        // Sealed values: the manager recognises them and keeps them as they are.
        task.insert("secrets".into(), json!(t.secrets));
    }
    if !t.volumes.is_empty() {
        task.insert("volumes".into(), json!(t.volumes));
    }
    if t.pull != crate::task::PullPolicy::Missing {
        task.insert("pull".into(), json!(t.pull));
    }
    let u = &spec.update;
    json!({
        "name": spec.name,
        "count": spec.count,
        "task": task,
        "update": {
            "max_parallel": u.max_parallel,
            "min_healthy": ms(u.min_healthy_ms),
            "healthy_deadline": ms(u.healthy_deadline_ms),
            "auto_revert": u.auto_revert,
        },
        "constraints": spec.constraints,
        "publish": spec.publish,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_service_written_back_as_a_body_parses_to_the_same_spec() {
        let body = br#"{"name": "web", "count": 3,
            "task": {"image": "nginx:1.27", "cmd": "nginx -g x", "env": {"A": "1"}, "cpus": 0.5,
                     "memory": "64m", "ports": ["8080:80", "53/udp"], "labels": {"k": "v"},
                     "restart_policy": {"policy": "on-failure", "max_restarts": 3, "backoff": "1s"},
                     "health_check": {"type": "http", "port": 80, "path": "/ok", "interval": "2s"},
                     "stop_after_disconnect": "500ms"},
            "update": {"max_parallel": 2, "min_healthy": "1s", "healthy_deadline": "30s", "auto_revert": true},
            "constraints": [{"attribute": "node.labels.disk", "operator": "=", "value": "ssd"},
                            {"operator": "distinct_hosts"}],
            "publish": [{"port": 8080, "target": 80, "mode": "http"}]}"#;
        let spec = parse_service(body, None).expect("parses");
        let again = serde_json::to_vec(&service_body(&spec)).expect("encodes");
        assert_eq!(parse_service(&again, Some("web")), Ok(spec));
    }

    #[test]
    fn bad_publish_entries_are_refused_naming_the_field() {
        // (publish array, the field named by the error)
        let rows: &[(&str, &str)] = &[
            (r#"[{"port": 0, "target": 80}]"#, "publish[0].port"),
            (r#"[{"port": 65536, "target": 80}]"#, "publish[0].port"),
            (r#"[{"port": 80, "target": 0}]"#, "publish[0].target"),
            (
                r#"[{"port": 80, "target": 80, "mode": "udp"}]"#,
                "publish[0].mode",
            ),
            (
                r#"[{"port": 80, "target": 80, "balance": "random"}]"#,
                "publish[0].balance",
            ),
            (
                r#"[{"port": 80, "target": 80, "hosts": ["a.example"]}]"#,
                "publish[0].hosts",
            ),
            (
                r#"[{"port": 80, "target": 80, "mode": "http", "hosts": ["bad host"]}]"#,
                "publish[0].hosts[0]",
            ),
            (
                r#"[{"port": 80, "target": 80, "mode": "http", "hosts": [7]}]"#,
                "publish[0].hosts[0]",
            ),
            (
                r#"[{"port": 80, "target": 80}, {"port": 80, "target": 81}]"#,
                "publish[1].port",
            ),
            (
                r#"[{"port": 80, "target": 80, "weight": 2}]"#,
                "\"weight\" in publish[0]",
            ),
        ];
        for (publish, field) in rows {
            let body = format!(
                r#"{{"name": "web", "count": 1, "task": {{"image": "a"}}, "publish": {publish}}}"#
            );
            let e = parse_service(body.as_bytes(), None).expect_err(publish);
            assert!(e.to_string().contains(field), "{publish}: {e}");
        }
        let ok = br#"{"name": "web", "count": 1, "task": {"image": "a"},
            "publish": [{"port": 80, "target": 8080, "mode": "http", "hosts": ["Web.Example"],
                         "balance": "least_conn"}, {"port": 81, "target": 8080}]}"#;
        let spec = parse_service(ok, None).expect("parses");
        assert_eq!(spec.publish[0].hosts, vec!["web.example".to_string()]);
        assert_eq!(spec.publish[0].balance, "least_conn");
        assert_eq!(
            (
                spec.publish[1].mode.as_str(),
                spec.publish[1].balance.as_str()
            ),
            ("tcp", "round_robin")
        );
        // A body stored before `hosts` and `balance` existed still reads.
        let old: crate::service::Publish =
            serde_json::from_str(r#"{"port": 80, "target": 80, "mode": "tcp"}"#).expect("old JSON");
        assert_eq!((old.hosts.len(), old.balance.as_str()), (0, "round_robin"));
    }
}
