//! Placement policies for Poseidon: given node snapshots and a task's demand, decide where it runs.
//!
//! The crate does no I/O and is deterministic: the same snapshots and demand give the same pick, and
//! the only state a policy keeps (the round-robin cursor, the indices of E-PVM, BinPack and Spread) is explicit and
//! never changes an answer. It owns its input types, so the manager converts its own node records
//! into [`NodeSnapshot`]s and a task's spec into a [`Demand`].
//!
//! The parts:
//! - [`snapshot`]: [`NodeSnapshot`] and [`Demand`], with [`NodeSnapshot::place`] and
//!   [`NodeSnapshot::release`] to keep snapshots up to date incrementally; a node's
//!   [`Eligibility`] and attributes, and a demand's [`Constraint`]s and `distinct_hosts` set.
//! - [`feasibility`]: the checks every policy shares (node up, eligible, constraints,
//!   `distinct_hosts`, CPU, memory, host ports), the [`Rejection`] reason kept for every node that
//!   fails, and the [`NoFit`] error.
//! - [`scheduler`]: the [`Scheduler`] trait, in three steps: select, score, pick.
//! - [`round_robin`]: [`RoundRobin`], the next feasible node after the last one placed on.
//! - [`epvm`]: [`Epvm`], the opportunity-cost policy of Amir et al. (IEEE TPDS 11(7), 2000), and
//!   `epvm_index`, the exact branch-and-bound index that lets it score only the nodes that could win.
//! - [`fit`]: [`BinPack`] and [`Spread`], Nomad's `ScoreFitBinPack` and `ScoreFitSpread`, and
//!   `fit_index`, their exact index: E-PVM's tree with boxes that bound the fit scores.
//! - `bnb`: the branch-and-bound search and the leaf layout both indices share.
//! - [`registry`]: [`by_name`] and [`NAMES`], how the config chooses a policy.
//!
//! Ties between equally good nodes always go to the lowest node id in byte order (so `w10` sorts
//! before `w2`; zero-pad ids if natural order matters), then to the lowest index in the slice.

mod bnb;
pub mod epvm;
mod epvm_index;
pub mod feasibility;
pub mod fit;
mod fit_index;
pub mod registry;
pub mod round_robin;
pub mod scheduler;
pub mod snapshot;

pub use epvm::Epvm;
pub use feasibility::{feasible, fits, NoFit, Rejection};
pub use fit::{BinPack, Spread};
pub use registry::{by_name, UnknownScheduler, NAMES};
pub use round_robin::RoundRobin;
pub use scheduler::{Scheduler, ScoreOrder};
pub use snapshot::{
    Constraint, Demand, Eligibility, NodeSnapshot, Operator, LABEL_PREFIX, NODE_NAME,
};
