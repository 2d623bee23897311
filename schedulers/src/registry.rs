//! From a policy's name, as the config spells it, to a scheduler.

use crate::epvm::Epvm;
use crate::fit::{BinPack, Spread};
use crate::round_robin::RoundRobin;
use crate::scheduler::Scheduler;

/// Every valid scheduler name, in the order error messages list them.
pub const NAMES: &[&str] = &["round-robin", "epvm", "binpack", "spread"];

/// The config named a scheduler that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler {name:?} (valid: {})", NAMES.join(", "))]
pub struct UnknownScheduler {
    /// The name as given.
    pub name: String,
}

/// A fresh scheduler for one of [`NAMES`]; names are matched exactly, so a typo is reported rather
/// than silently falling back to a default.
pub fn by_name(name: &str) -> Result<Box<dyn Scheduler>, UnknownScheduler> {
    match name {
        "round-robin" => Ok(Box::new(RoundRobin::new())),
        "epvm" => Ok(Box::new(Epvm::new())),
        "binpack" => Ok(Box::new(BinPack::new())),
        "spread" => Ok(Box::new(Spread::new())),
        _ => Err(UnknownScheduler {
            name: name.to_owned(),
        }),
    }
}
