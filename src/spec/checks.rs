//! Checks shared by both formats and by [`super::validate`]: names, resources, ports, probes, labels and
//! Docker's image reference grammar.

use super::*;

pub(super) fn check_name(name: &str, field: &str) -> Result<(), SpecError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("invalid {field} {name:?} ({NAME_RULE})"),
        ))
    }
}

pub(super) fn check_cpus(cpus: f64, field: &str) -> Result<(), SpecError> {
    if cpus.is_finite() && (0.0..=MAX_CPUS).contains(&cpus) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} must be between 0 and 1024, got {cpus}"),
        ))
    }
}

pub(super) fn check_memory(memory: u64, field: &str) -> Result<(), SpecError> {
    if memory > MAX_MEMORY {
        Err(invalid(
            field,
            format!("{field} must be at most 1 TiB ({MAX_MEMORY} bytes), got {memory}"),
        ))
    } else if memory != 0 && memory < MIN_MEMORY {
        Err(invalid(
            field,
            format!(
                "{field} must be 0 (no limit) or at least 6m ({MIN_MEMORY} bytes, Docker's minimum), got {memory}"
            ),
        ))
    } else {
        Ok(())
    }
}

pub(super) fn check_env_key(key: &str) -> Result<(), SpecError> {
    if key.is_empty() {
        Err(invalid("env", "env keys must not be empty"))
    } else if key.contains('=') {
        Err(invalid(
            "env",
            format!("invalid env key {key:?} (keys must not contain \"=\")"),
        ))
    } else {
        Ok(())
    }
}

pub(super) fn check_label_key(key: &str) -> Result<(), SpecError> {
    if key.is_empty() {
        Err(invalid("labels", "label keys must not be empty"))
    } else if key.starts_with(RESERVED_LABEL_PREFIX) {
        Err(invalid(
            "labels",
            format!("label key {key:?} is reserved (keys starting with {RESERVED_LABEL_PREFIX} belong to Poseidon)"),
        ))
    } else {
        Ok(())
    }
}

pub(super) fn check_ports(ports: &[Port]) -> Result<(), SpecError> {
    for (i, p) in ports.iter().enumerate() {
        let place = format!("ports[{i}]");
        if p.container_port == 0 {
            return Err(invalid(
                place.clone(),
                format!("{place}.container_port must be between 1 and 65535, got 0"),
            ));
        }
        if p.host_port == Some(0) {
            return Err(invalid(
                place.clone(),
                format!("{place}.host_port must be between 1 and 65535 (omit it to let Docker choose), got 0"),
            ));
        }
        if p.protocol != "tcp" && p.protocol != "udp" {
            return Err(invalid(
                place.clone(),
                format!(
                    "{place}.protocol must be \"tcp\" or \"udp\", got {:?}",
                    p.protocol
                ),
            ));
        }
        if let Some(j) = ports[..i].iter().position(|q| *q == *p) {
            return Err(invalid(
                place.clone(),
                format!("{place} repeats ports[{j}]"),
            ));
        }
        if let Some(host) = p.host_port {
            if let Some(j) = ports[..i]
                .iter()
                .position(|q| q.host_port == Some(host) && q.protocol == p.protocol)
            {
                return Err(invalid(
                    place.clone(),
                    format!(
                        "host port {host}/{} is published twice (ports[{j}] and {place})",
                        p.protocol
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn check_restart(policy: &RestartPolicy) -> Result<(), SpecError> {
    if policy.max_restarts.is_some() && policy.policy != RestartKind::OnFailure {
        return Err(invalid(
            "restart_policy.max_restarts",
            "restart_policy.max_restarts is only for the on-failure policy",
        ));
    }
    if policy.max_backoff_ms < policy.backoff_ms {
        return Err(invalid(
            "restart_policy.max_backoff",
            format!(
                "restart_policy.max_backoff ({}) must not be shorter than restart_policy.backoff ({})",
                human_ms(policy.max_backoff_ms),
                human_ms(policy.backoff_ms)
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_health(hc: &HealthCheck, ports: &[Port]) -> Result<(), SpecError> {
    at_least_ms(hc.interval_ms, "health_check.interval")?;
    at_least_ms(hc.timeout_ms, "health_check.timeout")?;
    if hc.retries < 1 {
        return Err(invalid(
            "health_check.retries",
            "health_check.retries must be at least 1, got 0",
        ));
    }
    let port = match &hc.probe {
        Probe::Exec { cmd } => {
            if cmd.is_empty() {
                return Err(invalid(
                    "health_check.cmd",
                    "health_check.cmd must not be empty for exec checks",
                ));
            }
            return Ok(());
        }
        Probe::Http { port, path } => {
            if !path.starts_with('/') {
                return Err(invalid(
                    "health_check.path",
                    format!("health_check.path must start with \"/\", got {path:?}"),
                ));
            }
            *port
        }
        Probe::Tcp { port } => *port,
    };
    // A check reaches the container through one of its published ports, so a check on a port that is
    // not published could never succeed, and the task would be killed as unhealthy for a typo.
    if ports
        .iter()
        .any(|p| p.container_port == port && p.protocol == "tcp")
    {
        return Ok(());
    }
    let published: Vec<String> = ports
        .iter()
        .map(|p| format!("{}/{}", p.container_port, p.protocol))
        .collect();
    let published = if published.is_empty() {
        "none".to_string()
    } else {
        published.join(", ")
    };
    Err(invalid(
        "health_check.port",
        format!(
            "health_check.port {port} is not a published tcp container port (published: {published}); checks reach the container through a published port"
        ),
    ))
}

pub(super) fn at_least_ms(ms: u64, field: &str) -> Result<(), SpecError> {
    if ms >= MIN_INTERVAL_MS {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} must be at least 100ms, got {}", human_ms(ms)),
        ))
    }
}

pub(super) fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The default name: the image's last path component, without its tag or digest.
pub(super) fn name_from_image(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo = last.split(':').next().unwrap_or(last);
    repo.chars().take(63).collect()
}

/// Checks an image reference against Docker's grammar and returns it with `:latest` appended when it
/// has neither tag nor digest, so that what is stored is what runs.
pub(super) fn check_image(image: &str, field: &str) -> Result<String, SpecError> {
    image_reference(image).map_err(|why| {
        invalid(
            field,
            format!("invalid {field} {image:?}: {why} ({IMAGE_EXAMPLES})"),
        )
    })
}

pub(super) fn image_reference(image: &str) -> Result<String, String> {
    if image.is_empty() {
        return Err("it is empty".into());
    }
    if image.len() > 255 {
        return Err(format!(
            "it is {} characters long (at most 255)",
            image.len()
        ));
    }
    // Upper-case letters are let through here because a tag (and a registry host) may hold them;
    // the repository path is checked for lower case below.
    if let Some(c) = image
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return Err(format!(
            "{c:?} is not allowed (only lower-case letters, digits and . _ - / : @)"
        ));
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A colon is a tag separator only after the last slash; before it, it is a registry's port.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    check_repository(name)?;
    Ok(if digest.is_some() || tag.is_some() {
        image.to_string()
    } else {
        format!("{image}:latest")
    })
}

pub(super) fn check_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("a digest is sha256: followed by 64 hex digits".into()),
    };
    if hex.len() == want && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "a {algorithm} digest is {want} lower-case hex digits"
        ))
    }
}

pub(super) fn check_tag(tag: &str) -> Result<(), String> {
    let first_ok = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err("a tag is 1 to 128 letters, digits, _ . - and does not start with . or -".into())
    }
}

pub(super) fn check_repository(name: &str) -> Result<(), String> {
    let components: Vec<&str> = name.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err("it has an empty path component (a leading, trailing or doubled /)".into());
    }
    // Docker's rule: the first component is a registry host when more follow and it has a dot or a
    // port, or is `localhost`.
    let path = match components.as_slice() {
        [host, rest @ ..]
            if !rest.is_empty()
                && (host.contains('.') || host.contains(':') || *host == "localhost") =>
        {
            check_registry(host)?;
            rest
        }
        all => all,
    };
    for component in path {
        check_path_component(component)?;
    }
    Ok(())
}

pub(super) fn check_registry(host: &str) -> Result<(), String> {
    let (hostname, port) = match host.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    let labels_ok = hostname.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    if labels_ok && port_ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not a valid registry host[:port]"))
    }
}

/// A path component is lower-case letters and digits, separated by one `.`, one or two `_`, or any
/// number of `-`, and it starts and ends with a letter or digit.
pub(super) fn check_path_component(component: &str) -> Result<(), String> {
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lower-case".into());
    }
    if component.contains(':') {
        return Err(format!("{component:?} holds a ':' outside the tag"));
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut ok =
        bytes.first().is_some_and(|b| alnum(*b)) && bytes.last().is_some_and(|b| alnum(*b));
    let mut i = 0;
    while ok && i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{component:?} is not a valid path component (letters and digits joined by one '.', one or two '_', or '-')"
        ))
    }
}
