//! `node` (the cluster's nodes as a table), `node drain NAME`, `node eligibility NAME
//! --enable|--disable`, and `version` (this binary's and the manager's).

use argh::FromArgs;

use super::tasks::truncate;
use super::{manager_client, print_json, Failure, NodeCmd, VersionCmd, VERSION};
use crate::util::human_bytes;

/// What `poseidon node` does besides listing.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum NodeAction {
    /// Drain a node.
    Drain(DrainCmd),
    /// Let new tasks go to a node, or not.
    Eligibility(EligibilityCmd),
}

/// Drain a node: nothing new is placed on it, its service tasks are moved off, and plain tasks
/// stay (the answer counts them).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "drain")]
pub struct DrainCmd {
    /// the node's name
    #[argh(positional)]
    pub name: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Make a node eligible for new tasks (--enable, which also ends a drain) or not (--disable).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "eligibility")]
pub struct EligibilityCmd {
    /// the node's name
    #[argh(positional)]
    pub name: String,
    /// let new tasks go to the node
    #[argh(switch)]
    pub enable: bool,
    /// place nothing new on the node
    #[argh(switch)]
    pub disable: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

pub(super) async fn node(c: NodeCmd) -> Result<(), Failure> {
    match c.action {
        Some(NodeAction::Drain(d)) => return drain(d, c.json, c.manager).await,
        Some(NodeAction::Eligibility(e)) => return eligibility(e, c.json, c.manager).await,
        None => {}
    }
    let nodes = manager_client(&c.manager).nodes().await?;
    if c.json {
        print_json(&nodes);
        return Ok(());
    }
    println!(
        "{:<12}  {:<9}  {:<10}  {:>5}  {:>9}  {:>10}  {:>11}  {:>5}  {:>6}  {:>8}  {:<24}  ADDRESS",
        "NAME",
        "STATE",
        "ELIGIBLE",
        "CPUS",
        "CPU RSVD",
        "MEMORY",
        "MEM RSVD",
        "TASKS",
        "CPU%",
        "LAST HB",
        "LABELS"
    );
    for n in nodes {
        let eligibility = if n.draining {
            "draining"
        } else if n.eligible {
            "yes"
        } else {
            "no"
        };
        let labels = if n.labels.is_empty() {
            "-".to_string()
        } else {
            n.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{:<12}  {:<9}  {:<10}  {:>5.1}  {:>9.2}  {:>10}  {:>11}  {:>5}  {:>6.1}  {:>8}  {:<24}  {}",
            truncate(&n.name, 12),
            node_state(n.state),
            eligibility,
            n.capacity.cpus,
            n.reserved_cpus,
            human_bytes(n.capacity.memory),
            human_bytes(n.reserved_memory),
            n.tasks,
            n.stats.cpu_percent,
            n.seconds_since_heartbeat
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "never".into()),
            labels,
            n.address
        );
    }
    managers(&c.manager).await;
    Ok(())
}

/// With several managers (high availability), each one's role as it says itself, or that it does
/// not answer.
async fn managers(flag: &Option<String>) {
    let Ok(health) = manager_client(flag).health().await else {
        return;
    };
    let Some(ha) = health.ha else { return };
    println!();
    println!("{:<40}  ROLE", "MANAGER");
    for url in &ha.managers {
        // The same CA as the first manager's client (over TLS every manager is `https://` and
        // signed by the cluster CA); no token, as `GET /health` needs none and the list came
        // from an answer anyone may give.
        let client = super::client_at(url, std::time::Duration::from_secs(1)).with_token(None);
        let role = match client.health().await {
            Ok(h) => h.ha.map(|x| x.role).unwrap_or_else(|| "single".into()),
            Err(_) => "unreachable".into(),
        };
        println!("{url:<40}  {role}");
    }
}

/// `node drain NAME`; `--json` and `--manager` may come before or after `drain`.
async fn drain(d: DrainCmd, json: bool, manager: Option<String>) -> Result<(), Failure> {
    let reply = manager_client(&d.manager.or(manager))
        .drain(&d.name)
        .await?;
    if d.json || json {
        print_json(&reply);
    } else {
        println!(
            "node {} is draining: nothing new is placed on it; {} service task(s) to move off",
            reply.node, reply.service_tasks_left
        );
        println!(
            "{} plain task(s) left: {}",
            reply.plain_tasks_left, reply.note
        );
    }
    Ok(())
}

/// `node eligibility NAME --enable|--disable`.
async fn eligibility(
    e: EligibilityCmd,
    json: bool,
    manager: Option<String>,
) -> Result<(), Failure> {
    let eligible = match (e.enable, e.disable) {
        (true, false) => true,
        (false, true) => false,
        _ => return Err(Failure::usage("give exactly one of --enable and --disable")),
    };
    let view = manager_client(&e.manager.or(manager))
        .set_eligibility(&e.name, eligible)
        .await?;
    if e.json || json {
        print_json(&view);
    } else if view.eligible {
        println!(
            "node {} is eligible: new tasks may be placed on it",
            view.name
        );
    } else if view.draining {
        println!("node {} is ineligible and still draining", view.name);
    } else {
        println!(
            "node {} is ineligible: nothing new is placed on it",
            view.name
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
