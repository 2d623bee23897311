//! Volumes and the pull policy of Poseidon's JSON: reading them, and the checks [`super::validate`]
//! applies (Docker's volume-name grammar, absolute targets, no repeated target, no host paths).
//!
//! A spec never holds a host path. A host directory is reached only through a name the worker's
//! config lists (`host_volumes = { logs = "/var/log/app" }`), so that whoever may submit tasks cannot
//! mount `/` or the Docker socket into a container. A path-like value where a name belongs is
//! refused with a message that says so.

use super::*;
use crate::task::{PullPolicy, Volume, VolumeSource};

pub(super) const VOLUME_FIELDS: &[&str] = &["source", "host_volume", "target", "read_only"];
const VOLUME_EXAMPLES: &str = "examples: {\"source\": \"data\", \"target\": \"/data\"}, {\"host_volume\": \"logs\", \"target\": \"/var/log/app\", \"read_only\": true}, \"data:/data:ro\"";

/// The longest volume name: the local driver makes a directory of it, and file names stop at 255.
pub const MAX_VOLUME_NAME: usize = 255;
/// The longest container path a volume may be mounted at.
pub const MAX_TARGET: usize = 4096;

/// The node attribute a worker offering host volume `name` carries (`node.host_volume.logs`).
pub fn host_volume_attribute(name: &str) -> String {
    format!("node.host_volume.{name}")
}

/// The node attributes a spec requires: one per host volume it mounts, in spec order, without
/// repeats. A node may run the task only when it carries each of them (the worker advertises its
/// host volumes in its heartbeat; see `wire::Heartbeat::host_volumes`). Named volumes require
/// nothing, since the engine creates them on first use.
pub fn required_node_attributes(spec: &TaskSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in spec.host_volumes() {
        let attr = host_volume_attribute(name);
        if !out.contains(&attr) {
            out.push(attr);
        }
    }
    out
}

/// The attributes a node offering these host volumes carries: each
/// [`host_volume_attribute`] with the value `"true"`.
pub fn offered_node_attributes<'a>(
    host_volumes: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, String> {
    host_volumes
        .into_iter()
        .map(|name| (host_volume_attribute(name), "true".to_string()))
        .collect()
}

/// Reads `pull`: `"missing"` (the default) or `"always"`.
pub(super) fn pull(v: &Json) -> Result<PullPolicy, SpecError> {
    match v {
        Json::Str(s) if s == "missing" => Ok(PullPolicy::Missing),
        Json::Str(s) if s == "always" => Ok(PullPolicy::Always),
        Json::Str(s) => Err(invalid(
            "pull",
            format!("unknown pull {s:?} (valid: missing, always)"),
        )),
        other => Err(wrong("pull", "\"missing\" or \"always\"", other)),
    }
}

/// Reads `volumes`: an array of objects, or of Docker's short form `NAME:/target[:ro|:rw]` for named
/// volumes.
pub(super) fn volumes(v: &Json) -> Result<Vec<Volume>, SpecError> {
    let Json::Array(items) = v else {
        return Err(wrong("volumes", "an array", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let place = format!("volumes[{i}]");
            match item {
                Json::Str(text) => short_volume(text, &place),
                Json::Object(fields) => object_volume(&Fields::new(place, fields)),
                other => Err(wrong(
                    &place,
                    "an object or a string such as \"data:/data\"",
                    other,
                )),
            }
        })
        .collect()
}

fn object_volume(f: &Fields<'_>) -> Result<Volume, SpecError> {
    f.deny_unknown(VOLUME_FIELDS)?;
    let source = match (f.str("source")?, f.str("host_volume")?) {
        (Some(name), None) => VolumeSource::Named(name.to_string()),
        (None, Some(name)) => VolumeSource::HostVolume(name.to_string()),
        (Some(_), Some(_)) => {
            return Err(invalid(
                f.path("host_volume"),
                format!(
                    "{} takes either source (a named volume) or host_volume (a host volume the worker allows), not both",
                    f.place
                ),
            ))
        }
        (None, None) => {
            return Err(invalid(
                f.path("source"),
                format!(
                    "{} needs source (a named volume) or host_volume (a host volume the worker allows) ({VOLUME_EXAMPLES})",
                    f.place
                ),
            ))
        }
    };
    let target = f
        .str("target")?
        .ok_or_else(|| SpecError::Missing(f.path("target")))?
        .to_string();
    let read_only = match f.get("read_only") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(other) => return Err(wrong(&f.path("read_only"), "a boolean", other)),
    };
    Ok(Volume {
        source,
        target,
        read_only,
    })
}

/// Docker's short form for a named volume: `data:/data`, `data:/data:ro`.
fn short_volume(text: &str, place: &str) -> Result<Volume, SpecError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (name, target, read_only) = match parts.as_slice() {
        [name, target] => (*name, *target, false),
        [name, target, "ro"] => (*name, *target, true),
        [name, target, "rw"] => (*name, *target, false),
        _ => {
            return Err(invalid(
                place,
                format!("invalid volume {text:?} in {place} (NAME:/target, optionally :ro or :rw; {VOLUME_EXAMPLES})"),
            ))
        }
    };
    Ok(Volume {
        source: VolumeSource::Named(name.to_string()),
        target: target.to_string(),
        read_only,
    })
}

/// True when `value` looks like a host path rather than a name: what a user who meant a bind
/// mount would write.
fn looks_like_path(value: &str) -> bool {
    value.contains('/') || value.starts_with('.') || value.starts_with('~')
}

/// The checks of every volume, whatever built the spec.
pub(super) fn check_volumes(volumes: &[Volume]) -> Result<(), SpecError> {
    for (i, v) in volumes.iter().enumerate() {
        let place = format!("volumes[{i}]");
        match &v.source {
            VolumeSource::Named(name) => check_volume_name(name, &format!("{place}.source"))?,
            VolumeSource::HostVolume(name) => {
                let field = format!("{place}.host_volume");
                if looks_like_path(name) {
                    return Err(host_path(&field, name));
                }
                check_name(name, &field)?;
            }
        }
        let target = normal_target(&v.target, &format!("{place}.target"))?;
        if let Some(j) = volumes[..i].iter().position(|o| {
            normal_target(&o.target, "")
                .map(|t| t == target)
                .unwrap_or(false)
        }) {
            return Err(invalid(
                format!("{place}.target"),
                format!("{place}.target {:?} is also the target of volumes[{j}]; each container path takes one volume", v.target),
            ));
        }
    }
    Ok(())
}

fn host_path(field: &str, value: &str) -> SpecError {
    invalid(
        field,
        format!(
            "{field} {value:?} is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {{\"host_volume\": \"logs\", ...}}, or a named volume)"
        ),
    )
}

/// Docker's rule for volume names (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so at least two characters).
pub(super) fn check_volume_name(name: &str, field: &str) -> Result<(), SpecError> {
    if looks_like_path(name) {
        return Err(host_path(field, name));
    }
    let bytes = name.as_bytes();
    let ok = bytes.len() >= 2
        && bytes.len() <= MAX_VOLUME_NAME
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("invalid volume name {name:?} in {field} (Docker's rule: 2 to 255 characters, a letter or digit, then letters, digits, '_', '.' or '-')"),
        ))
    }
}

/// The target in a normal form (no repeated or trailing `/`, no `.`), once checked: absolute, not `/`, no `..`, no NUL.
fn normal_target(target: &str, field: &str) -> Result<String, SpecError> {
    let bad = |why: &str| invalid(field, format!("{field} {target:?} {why}"));
    if !target.starts_with('/') {
        return Err(bad(
            "must be an absolute path inside the container (starting with /)",
        ));
    }
    if target.len() > MAX_TARGET {
        return Err(bad("is longer than 4096 bytes"));
    }
    if target.contains('\0') {
        return Err(bad("holds a NUL byte"));
    }
    if target.split('/').any(|c| c == "..") {
        return Err(bad("must not contain a \"..\" component"));
    }
    // `/data`, `/data/` and `//data/.` are one place; compare them as one.
    let components: Vec<&str> = target
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if components.is_empty() {
        return Err(bad("is the container's root; mount a volume below it"));
    }
    Ok(format!("/{}", components.join("/")))
}
