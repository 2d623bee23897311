//! TCP mode, and the connect-with-retry both modes share: a client connection is joined to one
//! endpoint and bytes are copied both ways until both sides have closed. A half-close (one side
//! shutting down its writes) is passed on as a shutdown of the other connection's writes, and the
//! other direction goes on until it closes too.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::balance;
use super::metrics::{ActiveGuard, EndpointStats};
use super::table::{Backend, Route};
use super::{Shared, CONNECT_TIMEOUT};

/// Picks an endpoint of `route` not in `tried` (and adds it there), by the route's balancing.
pub(crate) fn next_backend<'r>(route: &'r Route, tried: &mut Vec<usize>) -> Option<&'r Backend> {
    let turn = route.turn.fetch_add(1, Ordering::Relaxed);
    let i = balance::pick(
        route.balance,
        route.backends.len(),
        turn,
        |i| route.backends[i].stats.active.load(Ordering::Relaxed),
        |i| tried.contains(&i),
    )?;
    tried.push(i);
    Some(&route.backends[i])
}

/// Connects to an endpoint of `route`, trying the next one after a refused or timed-out
/// connect, until one answers or every one has failed. Each failure is counted on its endpoint.
pub(crate) async fn connect(route: &Route) -> Option<(TcpStream, Arc<EndpointStats>, String)> {
    let mut tried = Vec::new();
    while let Some(b) = next_backend(route, &mut tried) {
        let stats = b.stats.clone();
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&b.addr)).await {
            Ok(Ok(s)) => {
                // Small writes (requests, answers) go out at once rather than waiting for Nagle.
                let _ = s.set_nodelay(true);
                return Some((s, stats, b.addr.clone()));
            }
            Ok(Err(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %route.service, endpoint = %b.addr, error = %e, "mesh: connect failed, trying the next endpoint");
            }
            Err(_) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %route.service, endpoint = %b.addr, "mesh: connect timed out, trying the next endpoint");
            }
        }
    }
    None
}

/// Proxies one accepted TCP connection for the service on `port`.
pub(crate) async fn serve(shared: Arc<Shared>, mut client: TcpStream, port: u16) {
    let table = shared.table();
    let Some(route) = table.ports.get(&port).and_then(|p| p.routes.first()) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let Some((mut upstream, stats, addr)) = connect(route).await else {
        // Nothing to reach: the client sees its connection closed.
        shared
            .metrics
            .endpoint(&route.service, "none")
            .failures
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let _open = ActiveGuard::new(stats.clone());
    // copy_bidirectional shuts down each side's writes when the other side's reads end (the
    // half-close), and returns once both directions are done.
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_endpoint, to_client)) => {
            stats.bytes_in.fetch_add(to_endpoint, Ordering::Relaxed);
            stats.bytes_out.fetch_add(to_client, Ordering::Relaxed);
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(service = %route.service, endpoint = %addr, error = %e, "mesh: a proxied connection failed");
        }
    }
}
