//! `GET /events`: task and node changes as newline-delimited JSON, from `?index=N` (the events
//! after N) or from now; 410 when the history no longer holds the events after N.
//!
//! Each subscriber gets its own task that copies events to its response. That task never makes
//! the manager wait: live events come from a broadcast ring the manager writes without waiting,
//! and a subscriber that falls [`crate::manager::events::BROADCAST_BUFFER`] events behind (a
//! client that reads too slowly, or not at all) gets one final `{"error", "last_index"}` line and
//! its stream ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

use super::not_allowed;
use crate::http::{self, ApiError, BodySender, Req, Resp, Shutdown};
use crate::manager::events::{Shared, Subscription, BROADCAST_BUFFER};
use crate::manager::Manager;
use crate::wire::EventStreamEnd;

/// Chunks a subscriber's response may hold unsent before its task waits on the client.
const BODY_BUFFER: usize = 64;

/// Routes `/events`.
pub(super) fn route(m: &Manager, req: &Req, meth: &str, path: &[&str]) -> Result<Resp, ApiError> {
    if meth != "GET" {
        return Err(not_allowed(meth, path));
    }
    let after = req
        .param("index")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("index must be a whole number, got {v:?}"))
            })
        })
        .transpose()?;
    let sub = m
        .subscribe(after)
        .map_err(|g| ApiError::new(410, g.to_string()))?;
    let (tx, resp) = http::stream("application/x-ndjson", BODY_BUFFER);
    tokio::spawn(forward(sub, tx, m.shutdown_signal().clone()));
    Ok(resp)
}

/// Why a subscriber's stream ends.
enum End {
    /// The client went away: nothing to say.
    Gone,
    /// The stream ends with an error line.
    Error(String),
}

/// The most bytes of events gathered into one chunk: under load a subscriber gets one write per
/// burst instead of one per event.
const CHUNK: usize = 64 << 10;

/// Copies the replay, then live events, to one subscriber until it leaves, lags or the manager
/// shuts down.
async fn forward(sub: Subscription, tx: BodySender, shutdown: Shutdown) {
    let Subscription {
        replay, mut live, ..
    } = sub;
    let mut last = None;
    let end = 'run: {
        for e in replay {
            match send(&tx, &live, e.line()).await {
                Ok(()) => last = Some(e.event.index),
                Err(end) => break 'run end,
            }
        }
        loop {
            let e = tokio::select! {
                _ = tx.closed() => break 'run End::Gone,
                _ = shutdown.wait() => break 'run End::Error("the manager is shutting down".into()),
                r = live.recv() => r,
            };
            let first = match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => break 'run lagged(n),
                Err(RecvError::Closed) => break 'run End::Error("the event stream closed".into()),
            };
            // Whatever else is already waiting goes in the same chunk.
            let mut index = first.event.index;
            let mut chunk = first.line().to_vec();
            while chunk.len() < CHUNK {
                match live.try_recv() {
                    Ok(e) => {
                        index = e.event.index;
                        chunk.extend_from_slice(&e.line());
                    }
                    Err(TryRecvError::Lagged(n)) => break 'run lagged(n),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => break,
                }
            }
            match send(&tx, &live, chunk.into()).await {
                Ok(()) => last = Some(index),
                Err(end) => break 'run end,
            }
        }
    };
    if let End::Error(error) = end {
        tracing::info!(last_index = ?last, %error, "an event subscriber's stream ends");
        let line = EventStreamEnd {
            error,
            last_index: last,
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        // Events are sent keeping one slot free, so this fits even if the client reads nothing.
        if !tx.try_send(bytes) {
            tracing::debug!("an event subscriber left before its final line");
        }
    }
}

fn lagged(n: u64) -> End {
    End::Error(format!(
        "this subscriber fell more than {BROADCAST_BUFFER} events behind ({n} missed); \
         resync with GET /tasks and GET /nodes, then follow /events again"
    ))
}

/// Sends a chunk of events, giving up when the client leaves or when it is so slow that the live
/// events it has not taken yet fill its share of the broadcast ring.
async fn send(tx: &BodySender, live: &Receiver<Arc<Shared>>, chunk: Bytes) -> Result<(), End> {
    // The common case, a client keeping up: room now, no timer needed.
    if tx.room() >= 2 {
        return if tx.send_keeping_one(chunk).await {
            Ok(())
        } else {
            Err(End::Gone)
        };
    }
    tokio::select! {
        ok = tx.send_keeping_one(chunk) => if ok { Ok(()) } else { Err(End::Gone) },
        n = behind(live) => Err(lagged(n)),
    }
}

/// Resolves once `live` holds a full ring of unread events (checked every 50 ms).
async fn behind(live: &Receiver<Arc<Shared>>) -> u64 {
    loop {
        let n = live.len();
        if n >= BROADCAST_BUFFER {
            return n as u64;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
