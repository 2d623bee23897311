//! Node eligibility and drain: the user's decision whether new tasks may go to a node.
//!
//! Both are kept in the node's durable record (so a manager restart keeps them) and copied into its
//! scheduler snapshot, where feasibility turns the node down as `ineligible` or `draining`. A
//! heartbeat never changes them. Draining is ineligibility plus a promise: the service reconciler
//! reads [`Manager::draining_nodes`] and moves its tasks off those nodes, `max_parallel` at a time.
//! Plain tasks stay where they are; the drain answer counts them and says so.

use std::collections::BTreeSet;

use super::state::{holding, Batch};
use super::{lock, Manager, ManagerError, NodeView};
use crate::placement::service_of;
use crate::store::Op;
use crate::wire::DrainReply;

/// What the drain answer says about plain tasks.
pub const PLAIN_TASKS_NOTE: &str =
    "plain tasks are left to the user: stop them, or submit them again elsewhere";

impl Manager {
    /// Makes a node eligible for new tasks (which also ends a drain) or ineligible (a drain in
    /// progress stays one). Durable before it answers; a failed write changes nothing.
    pub async fn set_eligibility(
        &self,
        name: &str,
        eligible: bool,
    ) -> Result<NodeView, ManagerError> {
        let draining = if eligible {
            false
        } else {
            lock(&self.inner.state)
                .nodes
                .get(name)
                .is_some_and(|n| n.record.draining)
        };
        self.set_node_flags(name, eligible, draining).await?;
        tracing::info!(node = %name, eligible, "node eligibility set");
        self.nodes()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| ManagerError::UnknownNode(name.to_string()))
    }

    /// Drains a node: ineligible, and marked draining so that the service reconciler moves its
    /// service tasks off. Plain tasks stay; the answer counts both.
    pub async fn drain(&self, name: &str) -> Result<DrainReply, ManagerError> {
        self.set_node_flags(name, false, true).await?;
        let (service_tasks_left, plain_tasks_left) = {
            let st = lock(&self.inner.state);
            let mut counts = (0, 0);
            for id in st.by_node.get(name).into_iter().flatten() {
                let Some(task) = st.tasks.get(id) else {
                    continue;
                };
                if holding(task) != Some(name) {
                    continue;
                }
                if service_of(task).is_some() {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            counts
        };
        tracing::info!(node = %name, service_tasks_left, plain_tasks_left, "node draining");
        Ok(DrainReply {
            node: name.to_string(),
            eligible: false,
            draining: true,
            service_tasks_left,
            plain_tasks_left,
            note: PLAIN_TASKS_NOTE.to_string(),
        })
    }

    /// The nodes being drained, for the service reconciler: their service tasks should be moved
    /// off, `max_parallel` at a time, and nothing new lands on them.
    pub fn draining_nodes(&self) -> BTreeSet<String> {
        lock(&self.inner.state)
            .nodes
            .values()
            .filter(|n| n.record.draining)
            .map(|n| n.record.name.clone())
            .collect()
    }

    /// Writes a node's eligibility flags: memory and snapshot at once (so a heartbeat in between
    /// copies the new flags), the record durably; a failed write puts the old flags back.
    async fn set_node_flags(
        &self,
        name: &str,
        eligible: bool,
        draining: bool,
    ) -> Result<(), ManagerError> {
        let (old, record, staged) = {
            let mut st = lock(&self.inner.state);
            let node = st
                .nodes
                .get_mut(name)
                .ok_or_else(|| ManagerError::UnknownNode(name.to_string()))?;
            let old = (node.record.eligible, node.record.draining);
            node.record.eligible = eligible;
            node.record.draining = draining;
            let record = node.record.clone();
            if node.stored.as_ref() == Some(&record) {
                // Already so, and durably: nothing to write.
                return Ok(());
            }
            let mut batch = Batch::default();
            match Op::put_node(name, &record) {
                Ok(op) => batch.push(op),
                Err(e) => {
                    node.record.eligible = old.0;
                    node.record.draining = old.1;
                    return Err(e.into());
                }
            }
            st.sync_eligibility(name);
            if eligible {
                // New room: tasks that fit nowhere may fit here now.
                st.unblock(usize::MAX);
            }
            (old, record, st.stage(batch, self.inner.store.as_ref()))
        };
        let result = self.commit(staged).await;
        {
            let mut st = lock(&self.inner.state);
            if let Some(node) = st.nodes.get_mut(name) {
                match &result {
                    Ok(()) if node.record == record => node.stored = Some(record),
                    Ok(()) => {}
                    // Undo only what this call set; a later call's flags stand.
                    Err(_)
                        if (node.record.eligible, node.record.draining) == (eligible, draining) =>
                    {
                        node.record.eligible = old.0;
                        node.record.draining = old.1;
                    }
                    Err(_) => {}
                }
            }
            st.sync_eligibility(name);
        }
        if let Err(e) = result {
            tracing::warn!(node = %name, error = %e, "cannot store the node's eligibility; it is unchanged");
            return Err(e.into());
        }
        if eligible {
            self.inner.wake_dispatch.notify_one();
        }
        Ok(())
    }
}
