//! A service body (`POST /services`, `PUT /services/{name}`) to a validated [`ServiceSpec`].
//!
//! It is walked by hand like a task spec, so every error names its field (`count`,
//! `update.max_parallel`, `constraints[1].operator`, `task.image`), and its `task` goes through the
//! task spec parser itself, so a service's template is exactly what `POST /tasks` accepts.

use super::*;
use crate::service::{Constraint, Publish, ServiceSpec, UpdatePolicy, MAX_COUNT};

const SERVICE_FIELDS: &[&str] = &[
    "name",
    "count",
    "task",
    "update",
    "constraints",
    "publish",
];
const UPDATE_FIELDS: &[&str] = &[
    "max_parallel",
    "min_healthy",
    "healthy_deadline",
    "auto_revert",
];
const CONSTRAINT_FIELDS: &[&str] = &["attribute", "operator", "value"];
const PUBLISH_FIELDS: &[&str] = &["port", "target", "mode"];
const OPERATORS: &str = "=, !=, in, distinct_hosts";

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
    let constraints = match f.get("constraints") {
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, c)| constraint(c, &format!("constraints[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(wrong("constraints", "an array", other)),
        None => Vec::new(),
    };
    let publish = match f.get("publish") {
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| publish(p, &format!("publish[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(wrong("publish", "an array", other)),
        None => Vec::new(),
    };
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

fn constraint(v: &Json, place: &str) -> Result<Constraint, SpecError> {
    let f = Fields::new(place, as_object(v, place)?);
    f.deny_unknown(CONSTRAINT_FIELDS)?;
    let operator = f
        .str("operator")?
        .ok_or_else(|| SpecError::Missing(f.path("operator")))?
        .to_string();
    let attribute = f.str("attribute")?.map(str::to_string);
    let value = f.str("value")?.map(str::to_string);
    match operator.as_str() {
        "distinct_hosts" => {
            for (key, given) in [("attribute", &attribute), ("value", &value)] {
                if given.is_some() {
                    return Err(invalid(
                        f.path(key),
                        format!("{} is not used by distinct_hosts", f.path(key)),
                    ));
                }
            }
        }
        "=" | "!=" | "in" => {
            let attr = attribute
                .as_deref()
                .ok_or_else(|| SpecError::Missing(f.path("attribute")))?;
            let label = attr.strip_prefix("node.labels.");
            if attr != "node.name" && label.is_none_or(str::is_empty) {
                return Err(invalid(
                    f.path("attribute"),
                    format!(
                        "unknown {} {attr:?} (valid: node.name, node.labels.KEY)",
                        f.path("attribute")
                    ),
                ));
            }
            if value.is_none() {
                return Err(SpecError::Missing(f.path("value")));
            }
        }
        other => {
            return Err(invalid(
                f.path("operator"),
                format!(
                    "unknown {} {other:?} (valid: {OPERATORS})",
                    f.path("operator")
                ),
            ))
        }
    }
    Ok(Constraint {
        attribute,
        operator,
        value,
    })
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
    Ok(Publish { port, target, mode })
}
