//! The checks every policy shares, and the reasons a node is turned down.
//!
//! A node can take a task when it is up, the user left it eligible (not ineligible, not draining),
//! it satisfies every constraint of the task on its attributes, it holds no task of the same group
//! when the task asks for `distinct_hosts`, its CPU and memory reservations leave room for the
//! task's declared CPU and memory, and none of the host ports the task binds is taken there. Each
//! node that fails keeps the first check it failed, in that order, so that "no node can take this
//! task" can say which node failed which check. The rules the user wrote come before resources,
//! because a node that a rule excludes would not take the task however empty it was.
//!
//! [`fits`] answers the same question without building a reason, for the hot path of a pick that
//! only needs a yes or no for each node.

use std::fmt;

use crate::snapshot::{Constraint, Demand, Eligibility, NodeSnapshot, Operator};

/// How far past its CPU capacity a node's reservations may go, in cores.
///
/// Reservations are sums of floats such as 0.1 + 0.2, which land a few ulps away from the decimal the
/// user meant; without this slack a node with exactly enough room could be turned down. A billionth
/// of a core is far below anything a runtime can enforce, so it never lets a real overcommit through.
pub const CPU_EPSILON: f64 = 1e-9;

/// How many rejected nodes the [`NoFit`] message names before it only counts the rest, so that a
/// 10,000-node cluster does not produce a megabyte of error text.
pub const NAMED_REJECTIONS: usize = 16;

/// Why a node cannot take a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The node is down.
    Down,
    /// The user made the node ineligible for new tasks.
    Ineligible,
    /// The node is being drained.
    Draining,
    /// The node's attribute does not satisfy one of the task's constraints.
    Constraint {
        /// The attribute's full name (`node.labels.disk`).
        attribute: String,
        /// Its value on the node, `None` when the node does not have it.
        found: Option<String>,
        /// What the constraint wanted.
        wanted: Operator,
    },
    /// The task asks for `distinct_hosts` and the node already holds a task of its group.
    DistinctHosts,
    /// The node's CPU reservations leave fewer free cores than the task declares.
    InsufficientCpu {
        /// Cores the task declares.
        requested: f64,
        /// Cores the node has not reserved yet.
        free: f64,
    },
    /// The node's memory reservations leave fewer free bytes than the task declares.
    InsufficientMemory {
        /// Bytes the task declares.
        requested: u64,
        /// Bytes the node has not reserved yet.
        free: u64,
    },
    /// A host port the task binds is already taken on the node.
    PortInUse(u16),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Down => f.write_str("down"),
            Rejection::Ineligible => f.write_str("ineligible"),
            Rejection::Draining => f.write_str("draining"),
            Rejection::Constraint {
                attribute,
                found,
                wanted,
            } => {
                match found {
                    Some(value) => write!(f, "{attribute} is {value}, ")?,
                    None => write!(f, "{attribute} is not set, ")?,
                }
                match wanted {
                    Operator::Equal(v) => write!(f, "wanted = {v}"),
                    Operator::NotEqual(v) => write!(f, "wanted != {v}"),
                    Operator::In(vs) => write!(f, "wanted in [{}]", vs.join(", ")),
                }
            }
            Rejection::DistinctHosts => {
                f.write_str("already holds a task of the same group (distinct_hosts)")
            }
            Rejection::InsufficientCpu { requested, free } => {
                let unit = if *requested == 1.0 { "cpu" } else { "cpus" };
                write!(
                    f,
                    "needs {} {unit}, {} free",
                    Cores(*requested),
                    Cores(*free)
                )
            }
            Rejection::InsufficientMemory { requested, free } => {
                write!(
                    f,
                    "needs {} memory, {} free",
                    Bytes(*requested),
                    Bytes(*free)
                )
            }
            Rejection::PortInUse(port) => write!(f, "host port {port} already in use"),
        }
    }
}

impl Rejection {
    /// How the "and N more" summary of [`NoFit`] names each kind, in the order of
    /// [`Rejection::kind`].
    pub const KINDS: [&'static str; 8] = [
        "down",
        "ineligible",
        "draining",
        "failing a constraint",
        "holding a task of the same group",
        "short of cpu",
        "short of memory",
        "with a host port in use",
    ];

    /// The kind of failure, as an index into [`Rejection::KINDS`] (one per variant).
    pub fn kind(&self) -> usize {
        match self {
            Rejection::Down => 0,
            Rejection::Ineligible => 1,
            Rejection::Draining => 2,
            Rejection::Constraint { .. } => 3,
            Rejection::DistinctHosts => 4,
            Rejection::InsufficientCpu { .. } => 5,
            Rejection::InsufficientMemory { .. } => 6,
            Rejection::PortInUse(_) => 7,
        }
    }
}

/// No node can take a task; every node is listed with the reason it was turned down.
///
/// The rejections are sorted by node id, so the message is the same whatever order the manager keeps
/// its nodes in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", Listing(.rejections))]
pub struct NoFit {
    /// Each node's id with the reason it was turned down.
    pub rejections: Vec<(String, Rejection)>,
}

impl NoFit {
    /// Builds the error from every node's rejection, sorted by node id.
    pub fn new(mut rejections: Vec<(String, Rejection)>) -> Self {
        // A stable sort keeps nodes that share an id in slice order, which keeps the message
        // deterministic even then.
        rejections.sort_by(|a, b| a.0.cmp(&b.0));
        Self { rejections }
    }

    /// Collects the reason of every node in `nodes` that cannot take `demand`.
    pub fn from_nodes(nodes: &[NodeSnapshot], demand: &Demand) -> Self {
        let rejections = nodes
            .iter()
            .filter_map(|node| match feasible(node, demand) {
                Ok(()) => None,
                Err(reason) => Some((node.id.clone(), reason)),
            })
            .collect();
        Self::new(rejections)
    }
}

/// The text of a [`NoFit`]: every rejection up to [`NAMED_REJECTIONS`], then counts by kind.
struct Listing<'a>(&'a [(String, Rejection)]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejections = self.0;
        if rejections.is_empty() {
            return f.write_str("no nodes are registered");
        }
        f.write_str("no node can take this task: ")?;
        for (i, (id, reason)) in rejections.iter().take(NAMED_REJECTIONS).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{id}: {reason}")?;
        }
        let rest = &rejections[rejections.len().min(NAMED_REJECTIONS)..];
        if !rest.is_empty() {
            // Past the named nodes only the kinds of failure are worth reading, so count them.
            let mut counts = [0usize; Rejection::KINDS.len()];
            for (_, reason) in rest {
                counts[reason.kind()] += 1;
            }
            write!(f, "; and {} more (", rest.len())?;
            let mut first = true;
            for (count, label) in counts.iter().zip(Rejection::KINDS) {
                if *count > 0 {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    write!(f, "{count} {label}")?;
                }
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The first check a node fails, borrowing what it can so that [`fits`] allocates nothing.
enum Failure<'a> {
    Down,
    Ineligible,
    Draining,
    Constraint(&'a Constraint, Option<&'a str>),
    DistinctHosts,
    Cpu,
    Memory,
    Port(u16),
}

/// Runs every check in order and stops at the first that fails.
fn check<'a>(node: &'a NodeSnapshot, demand: &'a Demand) -> Result<(), Failure<'a>> {
    if !node.up {
        return Err(Failure::Down);
    }
    match node.eligibility {
        Eligibility::Eligible => {}
        Eligibility::Ineligible => return Err(Failure::Ineligible),
        Eligibility::Draining => return Err(Failure::Draining),
    }
    for constraint in &demand.constraints {
        let value = node.attribute(&constraint.attribute);
        if !constraint.admits(value) {
            return Err(Failure::Constraint(constraint, value));
        }
    }
    if let Some(taken) = &demand.distinct_hosts {
        if taken.contains(&node.id) {
            return Err(Failure::DistinctHosts);
        }
    }
    if demand.declares_cpus() {
        // Written so that a NaN anywhere fails the check instead of passing it.
        let fits = node.cpus > 0.0 && node.reserved_cpus + demand.cpus <= node.cpus + CPU_EPSILON;
        if !fits {
            return Err(Failure::Cpu);
        }
    }
    if demand.memory > 0 {
        let fits = node
            .reserved_memory
            .checked_add(demand.memory)
            .is_some_and(|total| total <= node.memory);
        if !fits {
            return Err(Failure::Memory);
        }
    }
    for &port in &demand.host_ports {
        if port != 0 && node.ports_in_use.contains(&port) {
            return Err(Failure::Port(port));
        }
    }
    Ok(())
}

/// Whether `node` can take `demand`: [`feasible`] without the reason, and without allocating.
pub fn fits(node: &NodeSnapshot, demand: &Demand) -> bool {
    check(node, demand).is_ok()
}

/// Whether `node` can take `demand`, or the first check it fails: down, eligibility, constraints
/// (in the demand's order), `distinct_hosts`, CPU, memory, then host ports.
///
/// A constraint on an attribute the node does not have fails `=` and `in` and passes `!=` (see
/// [`Constraint::admits`]). CPU is checked only when the task declares CPU, with [`CPU_EPSILON`]
/// of slack; a node with no CPU capacity cannot take a task that declares any. Memory is checked
/// only when the task declares memory, against the reservations rather than observed usage,
/// because observed usage moves with load while reservations are what tasks were promised; a node
/// with no memory capacity cannot take a task that declares any. Port 0 is never checked, since
/// it asks for any free port.
pub fn feasible(node: &NodeSnapshot, demand: &Demand) -> Result<(), Rejection> {
    check(node, demand).map_err(|failure| match failure {
        Failure::Down => Rejection::Down,
        Failure::Ineligible => Rejection::Ineligible,
        Failure::Draining => Rejection::Draining,
        Failure::Constraint(constraint, found) => Rejection::Constraint {
            attribute: constraint.attribute.clone(),
            found: found.map(str::to_string),
            wanted: constraint.operator.clone(),
        },
        Failure::DistinctHosts => Rejection::DistinctHosts,
        Failure::Cpu => Rejection::InsufficientCpu {
            requested: demand.cpus,
            free: node.free_cpus(),
        },
        Failure::Memory => Rejection::InsufficientMemory {
            requested: demand.memory,
            free: node.free_memory(),
        },
        Failure::Port(port) => Rejection::PortInUse(port),
    })
}

/// The shared feasibility step: indices of the nodes that can take `demand`, and every other node's
/// index with its reason, both in slice order.
pub fn select(nodes: &[NodeSnapshot], demand: &Demand) -> (Vec<usize>, Vec<(usize, Rejection)>) {
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        match feasible(node, demand) {
            Ok(()) => candidates.push(i),
            Err(reason) => rejected.push((i, reason)),
        }
    }
    (candidates, rejected)
}

/// Cores for people: at most three decimals, without trailing zeros, so 1.5 reads "1.5" and a sum
/// such as 0.1 + 0.2 reads "0.3".
struct Cores(f64);

impl fmt::Display for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_finite() {
            return write!(f, "{}", self.0);
        }
        let text = format!("{:.3}", self.0);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        // Rounding can turn a tiny negative into "-0".
        f.write_str(if text == "-0" { "0" } else { text })
    }
}

/// Bytes for people, in binary units: "512 MiB", "1.5 GiB", "100 B".
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut unit = 0;
        while unit + 1 < UNITS.len() && self.0 >> (10 * (unit + 1)) > 0 {
            unit += 1;
        }
        let scale = 1u64 << (10 * unit);
        // `scale` is a power of two, so the mask tests divisibility.
        if self.0 & (scale - 1) == 0 {
            return write!(f, "{} {}", self.0 / scale, UNITS[unit]);
        }
        let text = format!("{:.2}", self.0 as f64 / scale as f64);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        write!(f, "{text} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_in_the_largest_whole_binary_unit() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (100, "100 B"),
            (1024, "1 KiB"),
            (512 << 20, "512 MiB"),
            (3 << 29, "1.5 GiB"),
            ((100 << 20) + 1, "100 MiB"),
            (u64::MAX, "16 EiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(Bytes(*bytes).to_string(), *text, "{bytes} bytes");
        }
    }

    #[test]
    fn cores_read_with_at_most_three_decimals() {
        let cases: &[(f64, &str)] = &[
            (2.0, "2"),
            (1.5, "1.5"),
            (0.1 + 0.2, "0.3"),
            (0.0, "0"),
            (-1e-12, "0"),
            (0.125, "0.125"),
        ];
        for (cores, text) in cases {
            assert_eq!(Cores(*cores).to_string(), *text, "{cores} cores");
        }
    }
}
