//! `node` (the cluster's nodes as a table) and `version` (this binary's and the manager's).

use super::tasks::truncate;
use super::{manager_client, print_json, Failure, NodeCmd, VersionCmd, VERSION};
use crate::util::human_bytes;

pub(super) async fn node(c: NodeCmd) -> Result<(), Failure> {
    let nodes = manager_client(&c.manager).nodes().await?;
    if c.json {
        print_json(&nodes);
        return Ok(());
    }
    println!(
        "{:<12}  {:<9}  {:>5}  {:>9}  {:>10}  {:>11}  {:>5}  {:>6}  {:>8}  ADDRESS",
        "NAME", "STATE", "CPUS", "CPU RSVD", "MEMORY", "MEM RSVD", "TASKS", "CPU%", "LAST HB"
    );
    for n in nodes {
        println!(
            "{:<12}  {:<9}  {:>5.1}  {:>9.2}  {:>10}  {:>11}  {:>5}  {:>6.1}  {:>8}  {}",
            truncate(&n.name, 12),
            node_state(n.state),
            n.capacity.cpus,
            n.reserved_cpus,
            human_bytes(n.capacity.memory),
            human_bytes(n.reserved_memory),
            n.tasks,
            n.stats.cpu_percent,
            n.seconds_since_heartbeat
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "never".into()),
            n.address
        );
    }
    Ok(())
}

pub(super) fn node_state(s: crate::wire::NodeState) -> &'static str {
    use crate::wire::NodeState::*;
    match s {
        Waiting => "waiting",
        Up => "up",
        Unhealthy => "unhealthy",
        Down => "down",
    }
}

pub(super) async fn version(c: VersionCmd) -> Result<(), Failure> {
    let manager = manager_client(&c.manager);
    let health = manager.health().await;
    if c.json {
        print_json(&serde_json::json!({
            "client": VERSION,
            "manager": health.as_ref().ok().map(|h| h.version.clone()),
        }));
    } else {
        println!("client:  poseidon {VERSION}");
        if let Ok(h) = &health {
            println!("manager: poseidon {} at {}", h.version, manager.base());
        }
    }
    health
        .map(|_| ())
        .map_err(|e| Failure::op(format!("manager: {e}")))
}
