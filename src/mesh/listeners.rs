//! The listener supervisor: opens a listener on `ingress:port` for every port of the table and
//! closes the listeners of ports that left it (or changed mode). Each accepted connection runs
//! in its own task, so closing a listener drops no established connection. A port that cannot be
//! bound (taken by another program) is logged once and tried again at the next change or tick;
//! the worker's own API port is never opened and is logged as an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::table::{Mode, Table};
use super::Shared;
use crate::http::Shutdown;

/// How often ports that could not be bound are tried again without a table change.
const RETRY_BIND: Duration = Duration::from_secs(5);

/// One open listener.
struct Open {
    mode: Mode,
    task: JoinHandle<()>,
}

/// The open listeners, and the ports that could not be opened with why (logged once each).
#[derive(Default)]
pub(crate) struct Listeners {
    open: BTreeMap<u16, Open>,
    refused: BTreeMap<u16, String>,
}

/// What a sync did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Ports opened.
    pub opened: Vec<u16>,
    /// Ports closed.
    pub closed: Vec<u16>,
    /// Ports that could not be opened, with why.
    pub refused: Vec<(u16, String)>,
}

impl Listeners {
    /// Brings the open listeners in line with `table`.
    pub(crate) async fn sync(
        &mut self,
        shared: &Arc<Shared>,
        table: &Table,
        shutdown: &Shutdown,
    ) -> SyncReport {
        let mut report = SyncReport::default();
        let stale: Vec<u16> = self
            .open
            .iter()
            .filter(|&(port, o)| table.ports.get(port).is_none_or(|p| p.mode != o.mode))
            .map(|(port, _)| *port)
            .collect();
        for port in stale {
            if let Some(o) = self.open.remove(&port) {
                // Aborting the accept loop drops its listener; accepted connections live on.
                o.task.abort();
                report.closed.push(port);
            }
        }
        self.refused
            .retain(|port, _| table.ports.contains_key(port));
        for (&port, plan) in &table.ports {
            if self.open.contains_key(&port) {
                continue;
            }
            let why = if port == shared.opts.api_port {
                Err(format!(
                    "port {port} is this worker's API port; the mesh does not open it"
                ))
            } else {
                let addr = SocketAddr::new(shared.opts.ingress, port);
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))
            };
            match why {
                Ok(listener) => {
                    let task = tokio::spawn(accept_loop(
                        shared.clone(),
                        listener,
                        port,
                        plan.mode,
                        shutdown.clone(),
                    ));
                    self.open.insert(
                        port,
                        Open {
                            mode: plan.mode,
                            task,
                        },
                    );
                    self.refused.remove(&port);
                    report.opened.push(port);
                }
                Err(why) => {
                    if self.refused.get(&port) != Some(&why) {
                        let services: Vec<&str> =
                            plan.routes.iter().map(|r| r.service.as_str()).collect();
                        tracing::error!(node = %shared.opts.node, port, services = ?services, "routing mesh: {why}");
                    }
                    self.refused.insert(port, why.clone());
                    report.refused.push((port, why));
                }
            }
        }
        report
    }

    fn close_all(&mut self) {
        for (_, o) in std::mem::take(&mut self.open) {
            o.task.abort();
        }
    }
}

/// Accepts connections until aborted or shut down, each served in its own task.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    port: u16,
    mode: Mode,
    shutdown: Shutdown,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                match mode {
                    Mode::Tcp => tokio::spawn(super::tcp::serve(shared, stream, port)),
                    Mode::Http => tokio::spawn(super::http::serve(shared, stream, peer, port)),
                };
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(port, error = %e, "routing mesh: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The supervisor loop: syncs at every table change, and every [`RETRY_BIND`] while a port could
/// not be opened.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: Shutdown) {
    let mut listeners = Listeners::default();
    loop {
        let table = shared.table();
        let report = listeners.sync(&shared, &table, &shutdown).await;
        if !report.opened.is_empty() || !report.closed.is_empty() {
            tracing::info!(node = %shared.opts.node, ingress = %shared.opts.ingress, opened = ?report.opened, closed = ?report.closed, "routing mesh listeners changed");
        }
        let retry = !listeners.refused.is_empty();
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(RETRY_BIND), if retry => {}
        }
    }
    listeners.close_all();
}
