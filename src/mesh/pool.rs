//! HTTP mode's keep-alive connections to one endpoint: idle ones wait in a stack (the most
//! recently used is taken first, so a light load keeps few connections warm), each driven by its
//! own task. A request takes an idle connection or opens one; the answer's body gives it back
//! when it has been read to its end (see `http::Answer`), and a connection whose answer was cut
//! short is dropped, which closes it. Idle connections older than [`IDLE_TIMEOUT`] are closed
//! when the pool is next used or swept.
//!
//! This replaces hyper-util's general client, whose pool costs a URI parse, a keyed lookup and a
//! spawned task per request; a pool here belongs to one endpoint of the table (reached without a
//! lookup) and survives table changes that keep the endpoint.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::http::RequestBody;
use super::CONNECT_TIMEOUT;

/// How long an idle connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most idle connections kept per endpoint; more are closed as their answers end.
pub const MAX_IDLE: usize = 256;

/// A connection to an endpoint, ready to carry requests.
pub(crate) type Sender = SendRequest<RequestBody>;

/// The idle connections of one endpoint.
pub struct Pool {
    addr: String,
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    /// An empty pool for the endpoint at `addr` (`host:port`).
    pub fn new(addr: &str) -> Pool {
        Pool {
            addr: addr.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Sender, Instant)>> {
        // Each section pushes or pops one entry, so a poisoned lock still holds whole data.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Idle connections now (for tests and `Debug`).
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// The most recently used idle connection that is still open and not too old.
    pub(crate) fn take(&self) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some((tx, since)) = idle.pop() {
            if !tx.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(tx);
            }
        }
        None
    }

    /// Gives back a connection whose last answer has been read to its end.
    pub(crate) fn put(&self, tx: Sender) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        // The oldest are at the bottom of the stack.
        let stale = idle
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push((tx, now));
        }
    }

    /// Closes the idle connections that are too old or already closed.
    pub(crate) fn sweep(&self) {
        self.lock()
            .retain(|(tx, since)| !tx.is_closed() && since.elapsed() < IDLE_TIMEOUT);
    }

    /// Opens a new connection to the endpoint; its task runs until the connection closes.
    pub(crate) async fn connect(&self) -> Result<Sender, String> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("connect: {e}")),
                Err(_) => return Err(format!("connect: timed out after {CONNECT_TIMEOUT:?}")),
            };
        // Small writes (requests) go out at once rather than waiting for Nagle.
        let _ = stream.set_nodelay(true);
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %addr, error = %e, "mesh: a connection to an endpoint ended with an error");
            }
        });
        Ok(tx)
    }
}
