//! Adoption after a restart: the worker lists the containers labelled with its node name, keeps the
//! one of each task's current generation, removes the rest (orphans: unknown tasks, stale
//! generations, duplicates), and starts a supervisor for every task still to act on.
//!
//! A killed worker so starts no duplicate and leaves no orphan. Containers labelled with another
//! node's name are never listed, so never touched.

use std::collections::HashMap;
use std::time::Duration;

use poseidon_runtimes::{labels, ContainerSummary, RuntimeError};

use super::supervisor::{self, Origin};
use super::{lock, Entry, Worker};
use crate::task::TaskId;

/// Adopts once; if the engine is down, keeps trying in the background (the API serves what the
/// store holds meanwhile, and assignments wait for adoption to finish).
pub(super) async fn adopt_or_retry(worker: &Worker) {
    match adopt(worker).await {
        Ok(()) => worker.set_ready(),
        Err(e) => {
            tracing::warn!(node = %worker.name(), error = %e, "adoption failed; retrying in the background");
            worker.engine_failed(&e);
            let w = worker.clone();
            tokio::spawn(async move {
                let mut delay = Duration::from_millis(200);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = w.inner.shutdown.wait() => return,
                    }
                    match adopt(&w).await {
                        Ok(()) => {
                            w.set_ready();
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(node = %w.name(), error = %e, "adoption failed again");
                            w.engine_failed(&e);
                        }
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            });
        }
    }
}

/// Which containers to keep (one per task) and which to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// The container adopted for each task.
    pub keep: HashMap<TaskId, String>,
    /// Containers nobody owns any more.
    pub remove: Vec<String>,
}

/// Sorts this node's containers into kept and removed, given the tasks held. Pure.
pub(super) fn plan(containers: &[ContainerSummary], tasks: &HashMap<TaskId, Box<Entry>>) -> Plan {
    let mut plan = Plan::default();
    for c in containers {
        let task_id = c
            .labels
            .get(labels::TASK)
            .and_then(|t| t.parse::<TaskId>().ok());
        let generation = c
            .labels
            .get(labels::GENERATION)
            .and_then(|g| g.parse::<u64>().ok());
        let owned = match (task_id, generation) {
            (Some(id), Some(g)) => tasks.get(&id).and_then(|e| {
                let t = &e.task;
                let current = t.container_id.as_deref() == Some(c.id.as_str());
                // A finished task keeps its last container (for its logs); an active task adopts
                // the container of its generation, even one created just before a crash whose id
                // never reached the store.
                let wanted = t.generation == g
                    && if t.is_finished() {
                        current
                    } else {
                        !plan.keep.contains_key(&id) || current
                    };
                wanted.then_some(id)
            }),
            _ => None,
        };
        match owned {
            Some(id) => {
                if let Some(previous) = plan.keep.insert(id, c.id.clone()) {
                    plan.remove.push(previous);
                }
            }
            None => plan.remove.push(c.id.clone()),
        }
    }
    plan
}

/// Reconciles the store with the engine once: adopts our containers, removes the ones we do not
/// own any more, and starts a supervisor for every task that should be acted on.
async fn adopt(w: &Worker) -> Result<(), RuntimeError> {
    let label = format!("{}={}", labels::NODE, w.inner.opts.name);
    let containers = w.inner.runtime.list(&label).await?;
    w.engine_answered();
    let plan = plan(&containers, &lock(&w.inner.tasks));
    for cid in plan.remove {
        match w.inner.runtime.remove(&cid, true).await {
            Ok(()) => {
                tracing::info!(node = %w.name(), container = %cid, "removed a container no task owns")
            }
            Err(RuntimeError::NoSuchContainer(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let ids: Vec<TaskId> = lock(&w.inner.tasks).keys().copied().collect();
    for id in ids {
        let adopted = plan.keep.get(&id).cloned();
        let spawn = {
            let mut tasks = lock(&w.inner.tasks);
            match tasks.get_mut(&id) {
                Some(e) if !e.supervised && !e.task.is_finished() => {
                    e.supervised = true;
                    true
                }
                _ => false,
            }
        };
        if spawn {
            if let Some(cid) = &adopted {
                tracing::info!(task = %id, node = %w.name(), container = %cid, "adopting a container");
            }
            supervisor::spawn(w.clone(), id, Origin::Resumed(adopted));
        }
    }
    Ok(())
}
