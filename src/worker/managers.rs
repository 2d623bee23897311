//! The managers a worker talks to: one, or several in high availability (`managers = [...]`).
//!
//! Calls go to the current one; the HTTP client follows a follower's `307` to the leader by itself.
//! When the current manager cannot be reached (or answers 5xx, as a manager without a leader does),
//! the next call goes to the next manager of the list, round and round. A worker that reaches none
//! keeps its tasks running, as with one manager.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::client::ManagerClient;
use crate::http::ClientError;

/// The list, and which one is tried now.
#[derive(Debug)]
pub(crate) struct Managers {
    clients: Vec<ManagerClient>,
    current: AtomicUsize,
}

impl Managers {
    /// The managers in the order to try them.
    pub(crate) fn new(clients: Vec<ManagerClient>) -> Self {
        Managers {
            clients,
            current: AtomicUsize::new(0),
        }
    }

    /// The manager to call now.
    pub(crate) fn current(&self) -> Option<ManagerClient> {
        if self.clients.is_empty() {
            return None;
        }
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        self.clients.get(i).cloned()
    }

    /// Notes how a call to `used` went: a manager out of reach, or one without a leader, gives way
    /// to the next one (unless another call has already moved on).
    pub(crate) fn after(&self, used: &ManagerClient, e: &ClientError) {
        let give_up = match e {
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } => true,
            ClientError::Status { status, .. } => *status >= 500,
            ClientError::Decode { .. } => false,
        };
        if !give_up || self.clients.len() < 2 {
            return;
        }
        let i = self.current.load(Ordering::Relaxed);
        if self.clients[i % self.clients.len()].base() == used.base() {
            let next = (i + 1) % self.clients.len();
            if self
                .current
                .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::info!(from = %used.base(), to = %self.clients[next].base(), error = %e, "trying the next manager");
            }
        }
    }
}
