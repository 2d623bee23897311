//! The Engine's answers read into domain types: inspect and list documents, event lines, one-shot
//! stats. Pure functions of the JSON, so the client (`docker.rs`) holds only the talking.

use std::collections::BTreeMap;

use serde_json::Value;

use super::bad_answer;
use crate::{
    ContainerInfo, ContainerStatus, ContainerSummary, PortBinding, RuntimeError, RuntimeEvent,
    StatsSample,
};

/// Reads a container's inspect document.
pub fn parse_inspect(v: &Value) -> Result<ContainerInfo, RuntimeError> {
    let id = v["Id"]
        .as_str()
        .ok_or_else(|| bad_answer("inspect", "no Id"))?
        .to_string();
    let state = &v["State"];
    let status = parse_status(state["Status"].as_str().unwrap_or(""));
    let exit_code = match status {
        ContainerStatus::Exited | ContainerStatus::Dead => state["ExitCode"].as_i64(),
        ContainerStatus::Created | ContainerStatus::Running => None,
    };
    let mut ports = Vec::new();
    if let Some(map) = v["NetworkSettings"]["Ports"].as_object() {
        for (key, bound) in map {
            let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(container_port) = port.parse::<u16>() else {
                continue;
            };
            // An exposed port that is not published maps to null.
            for b in bound.as_array().into_iter().flatten() {
                let Some(host_port) = b["HostPort"].as_str().and_then(|p| p.parse::<u16>().ok())
                else {
                    continue;
                };
                ports.push(PortBinding {
                    container_port,
                    protocol: protocol.to_string(),
                    host_ip: b["HostIp"].as_str().unwrap_or("").to_string(),
                    host_port,
                });
            }
        }
    }
    let ip_address = non_empty(&v["NetworkSettings"]["IPAddress"]).or_else(|| {
        v["NetworkSettings"]["Networks"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .find_map(|n| non_empty(&n["IPAddress"]))
    });
    Ok(ContainerInfo {
        id,
        name: v["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string(),
        image: v["Config"]["Image"]
            .as_str()
            .or_else(|| v["Image"].as_str())
            .unwrap_or("")
            .to_string(),
        status,
        exit_code,
        started_at: timestamp(&state["StartedAt"]),
        finished_at: timestamp(&state["FinishedAt"]),
        error: non_empty(&state["Error"]),
        oom_killed: state["OOMKilled"].as_bool().unwrap_or(false),
        ports,
        health: non_empty(&state["Health"]["Status"]),
        ip_address,
        labels: string_map(&v["Config"]["Labels"]),
    })
}

pub(super) fn parse_summary(v: &Value) -> Result<ContainerSummary, RuntimeError> {
    Ok(ContainerSummary {
        id: v["Id"]
            .as_str()
            .ok_or_else(|| bad_answer("list", "an entry has no Id"))?
            .to_string(),
        name: v["Names"][0]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string(),
        image: v["Image"].as_str().unwrap_or("").to_string(),
        status: parse_status(v["State"].as_str().unwrap_or("")),
        labels: string_map(&v["Labels"]),
    })
}

/// Maps Docker's state names onto the four Poseidon cares about.
pub(super) fn parse_status(s: &str) -> ContainerStatus {
    match s {
        "created" => ContainerStatus::Created,
        "running" | "paused" | "restarting" => ContainerStatus::Running,
        "exited" => ContainerStatus::Exited,
        _ => ContainerStatus::Dead,
    }
}

/// Reads one event line; `None` for lines that are not a container start or die.
pub(super) fn parse_event(v: &Value) -> Option<RuntimeEvent> {
    let action = v["Action"].as_str().or_else(|| v["status"].as_str())?;
    let id = v["Actor"]["ID"]
        .as_str()
        .or_else(|| v["id"].as_str())?
        .to_string();
    let attributes = &v["Actor"]["Attributes"];
    // The daemon mixes the container's labels with its own attributes; these keys are its own.
    let mut labels = string_map(attributes);
    for own in ["image", "name", "exitCode", "signal"] {
        labels.remove(own);
    }
    match action {
        "start" => Some(RuntimeEvent::Started { id, labels }),
        "die" => Some(RuntimeEvent::Died {
            id,
            exit_code: attributes["exitCode"].as_str().and_then(|c| c.parse().ok()),
            labels,
        }),
        _ => None,
    }
}

/// Computes the CPU rate and memory use from a one-shot stats document.
pub fn parse_stats(v: &Value) -> StatsSample {
    let cpu = &v["cpu_stats"];
    let pre = &v["precpu_stats"];
    let u = |x: &Value| x.as_u64().unwrap_or(0);
    let cpu_delta =
        u(&cpu["cpu_usage"]["total_usage"]).saturating_sub(u(&pre["cpu_usage"]["total_usage"]));
    let system_delta = u(&cpu["system_cpu_usage"]).saturating_sub(u(&pre["system_cpu_usage"]));
    let online = cpu["online_cpus"]
        .as_u64()
        .filter(|n| *n > 0)
        .or_else(|| {
            cpu["cpu_usage"]["percpu_usage"]
                .as_array()
                .map(|a| a.len() as u64)
        })
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let cpu_cores = if system_delta > 0 {
        cpu_delta as f64 / system_delta as f64 * online as f64
    } else {
        0.0
    };
    let mem = &v["memory_stats"];
    // Page cache is reclaimable, so it does not count as use: cgroup v2 reports `inactive_file`,
    // v1 `total_inactive_file`, and older daemons only `cache` (the docker CLI does the same).
    let stats = &mem["stats"];
    let cache = stats["inactive_file"]
        .as_u64()
        .or_else(|| stats["total_inactive_file"].as_u64())
        .or_else(|| stats["cache"].as_u64())
        .unwrap_or(0);
    StatsSample {
        cpu_cores,
        memory_bytes: u(&mem["usage"]).saturating_sub(cache),
        memory_limit_bytes: u(&mem["limit"]),
    }
}

/// A string field that is present and not empty.
pub(super) fn non_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// A timestamp field; Docker writes the zero time for "never".
fn timestamp(v: &Value) -> Option<String> {
    non_empty(v).filter(|s| !s.starts_with("0001-01-01"))
}

/// A JSON object of strings as a map (null or missing is empty).
fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stats_give_cores_from_deltas_and_memory_without_cache() {
        let v = json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000u64}, "system_cpu_usage": 20_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000u64}, "system_cpu_usage": 16_000_000_000u64},
            "memory_stats": {"usage": 10_000_000u64, "limit": 1_000_000_000u64, "stats": {"inactive_file": 4_000_000u64}}
        });
        let s = parse_stats(&v);
        assert!((s.cpu_cores - 0.5).abs() < 1e-9, "{}", s.cpu_cores);
        assert_eq!(s.memory_bytes, 6_000_000);
        assert_eq!(s.memory_limit_bytes, 1_000_000_000);
        // A first sample with nothing before it is zero, not a division by zero.
        assert_eq!(parse_stats(&json!({})).cpu_cores, 0.0);
    }

    #[test]
    fn event_lines_become_runtime_events_with_labels_apart_from_attributes() {
        let v = json!({
            "Type": "container", "Action": "die",
            "Actor": {"ID": "abc", "Attributes": {"exitCode": "3", "image": "img", "name": "n", "io.poseidon.task": "t1"}}
        });
        assert_eq!(
            parse_event(&v),
            Some(RuntimeEvent::Died {
                id: "abc".into(),
                exit_code: Some(3),
                labels: BTreeMap::from([("io.poseidon.task".to_string(), "t1".to_string())]),
            })
        );
        assert_eq!(
            parse_event(&json!({"Action": "attach", "Actor": {"ID": "x"}})),
            None
        );
    }
}
