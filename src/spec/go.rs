//! The Go original's TaskEvent (or bare Task): mapped onto a [`TaskSpec`], with notes for fields that are
//! accepted and ignored.
//!
//! Volumes and the pull policy are not part of this format: a Go spec mounts nothing and pulls only a
//! missing image. Docker-style `Volumes`, `Binds` or `Mounts` fields are ignored with a note saying
//! so (never mounted, so a host path there reaches nothing); Poseidon's JSON has `volumes`.

use super::*;

/// The Go Task's fields that Poseidon reads.
pub(super) const GO_TASK_FIELDS: &[&str] = &[
    "ID",
    "Name",
    "State",
    "Image",
    "Cpu",
    "Memory",
    "Disk",
    "ExposedPorts",
    "PortBindings",
    "RestartPolicy",
    "HealthCheck",
    "Cmd",
    "Env",
];
/// The Go Task's fields that describe a past run rather than a wish; they are accepted and ignored.
pub(super) const GO_OBSERVED_FIELDS: &[&str] = &[
    "ContainerID",
    "HostPorts",
    "StartTime",
    "FinishTime",
    "RestartCount",
];
pub(super) const GO_EVENT_FIELDS: &[&str] = &["ID", "State", "Timestamp", "Task"];

pub(super) fn go_submission(fields: &[(String, Json)]) -> Result<Submission, SpecError> {
    let top = Fields::new("", fields);
    let mut notes = Vec::new();
    if let Some(task) = top.get("Task") {
        refuse_mixed(&top)?;
        // The event's own fields are checked for type, as the Go decoder would, and otherwise ignored:
        // the event's ID names the event, not the task, and a submission always starts Pending.
        top.str("ID")?;
        top.str("Timestamp")?;
        go_state(&top)?;
        note_unknown(&top, GO_EVENT_FIELDS, &[], &mut notes);
        let task = Fields::new("Task", as_object(task, "Task")?);
        go_task(&task, notes)
    } else if top.fields.iter().any(|(k, _)| k == "Task") {
        Err(wrong("Task", "an object", &Json::Null))
    } else {
        go_task(&top, notes)
    }
}

/// Refuses a body that mixes the two formats, which is almost always a hand-edited file where one of
/// the two halves would otherwise be silently ignored.
pub(super) fn refuse_mixed(f: &Fields<'_>) -> Result<(), SpecError> {
    let Some((ours, _)) = f.fields.iter().find(|(k, _)| FIELDS.contains(&k.as_str())) else {
        return Ok(());
    };
    let theirs = f
        .fields
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
        .map_or_else(|| f.path("Task"), |k| f.path(k));
    Err(invalid(
        f.path(ours),
        format!(
            "{:?} is a Poseidon field but {theirs:?} is a Go TaskEvent field; write one format, not both",
            f.path(ours)
        ),
    ))
}

pub(super) fn note_unknown(
    f: &Fields<'_>,
    known: &[&str],
    observed: &[&str],
    notes: &mut Vec<String>,
) {
    for (k, _) in f.fields {
        if matches!(k.as_str(), "Volumes" | "Binds" | "Mounts") {
            notes.push(format!(
                "{:?} is ignored: volumes are not part of the Go TaskEvent format, so nothing is mounted (Poseidon's JSON has \"volumes\")",
                f.path(k)
            ));
        } else if !known.contains(&k.as_str()) && !observed.contains(&k.as_str()) {
            notes.push(format!("unknown Go field {:?} is ignored", f.path(k)));
        }
    }
}

pub(super) fn go_state(f: &Fields<'_>) -> Result<(), SpecError> {
    let Some(v) = f.get("State") else {
        return Ok(());
    };
    let path = f.path("State");
    let n = match v {
        Json::UInt(n) => Some(*n),
        Json::NegInt(_) | Json::Float(_) => None,
        other => return Err(wrong(&path, "a number", other)),
    };
    if n.is_some_and(|n| n <= 4) {
        Ok(())
    } else {
        Err(invalid(
            path.clone(),
            format!(
                "{path} must be between 0 and 4 (pending, scheduled, running, completed, failed), got {v}"
            ),
        ))
    }
}

pub(super) fn go_task(f: &Fields<'_>, mut notes: Vec<String>) -> Result<Submission, SpecError> {
    refuse_mixed(f)?;
    note_unknown(f, GO_TASK_FIELDS, GO_OBSERVED_FIELDS, &mut notes);
    for key in ["ContainerID", "StartTime", "FinishTime"] {
        f.str(key)?;
    }
    f.u64("RestartCount")?;
    go_state(f)?;

    let id = match f.str("ID")? {
        // Go writes the zero UUID for a task whose ID was never set; that means "make one for me".
        Some(text) => match text.parse::<TaskId>() {
            Ok(id) if id.0.is_nil() => {
                notes.push(format!(
                    "{} is the nil UUID, so the server chose an id",
                    f.path("ID")
                ));
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                let path = f.path("ID");
                return Err(invalid(
                    path.clone(),
                    format!("invalid {path} {text:?} (expected a UUID such as 21b23589-5d2d-4731-b5c9-a97e9832d021)"),
                ));
            }
        },
        None => None,
    };

    let image = match f.str("Image")? {
        Some(image) if !image.is_empty() => check_image(image, &f.path("Image"))?,
        _ => return Err(SpecError::Missing(f.path("Image"))),
    };
    // Go writes "" for an unset name; like a missing name, it is derived from the image.
    let name = match f.str("Name")? {
        Some(name) if !name.is_empty() => {
            check_name(name, &f.path("Name"))?;
            name.to_string()
        }
        _ => name_from_image(&image),
    };

    let cpus = f.f64("Cpu")?.unwrap_or(0.0);
    check_cpus(cpus, &f.path("Cpu"))?;
    let memory = f.u64("Memory")?.unwrap_or(0);
    check_memory(memory, &f.path("Memory"))?;
    // Disk is an int64 in Go; it is type-checked like the rest, then ignored, because Docker has no
    // portable per-container disk limit. Go writes 0 when it is unset, which asks for nothing.
    if let Some(v) = f.get("Disk") {
        let disk = as_f64(v, &f.path("Disk"))?;
        if disk != 0.0 {
            notes.push("Disk is accepted and ignored".to_string());
        }
    }

    let cmd = f
        .get("Cmd")
        .map(|v| string_list(v, &f.path("Cmd")))
        .transpose()?
        .unwrap_or_default();
    let env = f
        .get("Env")
        .map(|v| string_map(v, &f.path("Env"), true))
        .transpose()?
        .unwrap_or_default();

    let ports = go_ports(f)?;
    let restart_policy = match f.str("RestartPolicy")? {
        None | Some("") | Some("no") => RestartPolicy::of(RestartKind::Never),
        Some("on-failure") => RestartPolicy::of(RestartKind::OnFailure),
        Some("always") | Some("unless-stopped") => RestartPolicy::of(RestartKind::Always),
        Some(other) => {
            let path = f.path("RestartPolicy");
            return Err(invalid(
                path.clone(),
                format!(
                    "unknown {path} {other:?} (valid: \"\", no, on-failure, always, unless-stopped)"
                ),
            ));
        }
    };
    let health_check = match f.str("HealthCheck")? {
        None | Some("") => None,
        Some(path) => Some(go_health_check(f, path, &ports)?),
    };

    let spec = TaskSpec::new(
        name,
        SpecBody {
            image,
            cmd,
            env,
            secrets: BTreeMap::new(),
            cpus,
            memory,
            ports,
            restart_policy,
            health_check: health_check.map(Box::new),
            labels: BTreeMap::new(),
            stop_after_disconnect_ms: None,
            volumes: Vec::new(),
            pull: PullPolicy::Missing,
            constraints: Vec::new(),
            ..SpecBody::default()
        },
    );
    validate(&spec)?;
    Ok(Submission { id, spec, notes })
}

/// `ExposedPorts` (`{"80/tcp": {}}`) and `PortBindings` (`{"80/tcp": "8080"}`): every exposed port is
/// published, on the bound host port if there is one and on a port Docker chooses if not; a binding of a
/// port that is not exposed publishes it too, as Docker does. Exposed ports come first, in the order
/// written.
pub(super) fn go_ports(f: &Fields<'_>) -> Result<Vec<Port>, SpecError> {
    let exposed_path = f.path("ExposedPorts");
    let bindings_path = f.path("PortBindings");
    let exposed = match f.get("ExposedPorts") {
        Some(v) => as_object(v, &exposed_path)?,
        None => &[],
    };
    let bindings = match f.get("PortBindings") {
        Some(v) => as_object(v, &bindings_path)?,
        None => &[],
    };
    let mut ports: Vec<Port> = Vec::new();
    for (key, value) in exposed {
        // nat.PortSet's values are empty structs.
        if !matches!(value, Json::Object(_) | Json::Null) {
            return Err(wrong(
                &format!("{exposed_path}[{key:?}]"),
                "an empty object",
                value,
            ));
        }
        let (container_port, protocol) = go_port_key(key, &exposed_path)?;
        if ports
            .iter()
            .any(|p| p.container_port == container_port && p.protocol == protocol)
        {
            return Err(invalid(
                exposed_path.clone(),
                format!("{exposed_path} lists {container_port}/{protocol} twice"),
            ));
        }
        ports.push(Port {
            container_port,
            host_port: None,
            protocol,
        });
    }
    for (key, value) in bindings {
        let (container_port, protocol) = go_port_key(key, &bindings_path)?;
        let path = format!("{bindings_path}[{key:?}]");
        let text = as_str(value, &path)?;
        let host_port = if text.is_empty() {
            None
        } else {
            Some(
                text.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        invalid(
                            path.clone(),
                            format!("{path} must be a host port between 1 and 65535 such as \"8080\", or \"\" to let Docker choose, got {text:?}"),
                        )
                    })?,
            )
        };
        match ports
            .iter_mut()
            .find(|p| p.container_port == container_port && p.protocol == protocol)
        {
            Some(port) if port.host_port.is_none() => port.host_port = host_port,
            Some(_) => {
                return Err(invalid(
                    bindings_path.clone(),
                    format!("{bindings_path} binds {container_port}/{protocol} twice"),
                ))
            }
            None => ports.push(Port {
                container_port,
                host_port,
                protocol,
            }),
        }
    }
    Ok(ports)
}

/// A `nat.Port` key: `80/tcp`, `53/udp`, or a bare `80` meaning tcp.
pub(super) fn go_port_key(key: &str, place: &str) -> Result<(u16, String), SpecError> {
    let (number, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
    let port = number.parse::<u16>().ok().filter(|n| *n > 0);
    match (port, protocol) {
        (Some(port), "tcp" | "udp") => Ok((port, protocol.to_string())),
        _ => Err(invalid(
            place,
            format!("invalid port {key:?} in {place} (examples: \"80/tcp\", \"53/udp\")"),
        )),
    }
}

/// The original probed `HealthCheck` over HTTP on the task's published port; Poseidon does the same on
/// the first exposed tcp port.
pub(super) fn go_health_check(
    f: &Fields<'_>,
    path: &str,
    ports: &[Port],
) -> Result<HealthCheck, SpecError> {
    let field = f.path("HealthCheck");
    if !path.starts_with('/') {
        return Err(invalid(
            field.clone(),
            format!("{field} must be a path starting with \"/\", got {path:?}"),
        ));
    }
    let port = ports.iter().find(|p| p.protocol == "tcp").ok_or_else(|| {
        invalid(
            field.clone(),
            format!(
                "{field} needs a tcp port to probe; add one to {}",
                f.path("ExposedPorts")
            ),
        )
    })?;
    Ok(HealthCheck {
        probe: Probe::Http {
            port: port.container_port,
            path: path.to_string(),
        },
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    })
}
