//! The response body of every route: a whole body (`Full`), or a stream of chunks fed by a task
//! through a bounded channel (`Stream`), sent with chunked transfer encoding.
//!
//! A streaming route (`logs?follow=true`, `/events`) hands the server a [`Body::channel`] receiver
//! and keeps the [`BodySender`] in the task that produces the chunks. When the client goes away,
//! hyper drops the body, which drops the receiver; the producer sees [`BodySender::closed`] resolve
//! (or its next send fail) and stops, so nothing upstream (a Docker log stream, an event
//! subscription) outlives its reader.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// A response body: whole, or streamed from a channel.
#[derive(Debug)]
pub enum Body {
    /// The whole body at once (`None` once it has been sent).
    Full(Option<Bytes>),
    /// Chunks as a producer sends them; the body ends when every sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

/// The producing end of a streamed body.
#[derive(Debug, Clone)]
pub struct BodySender {
    tx: mpsc::Sender<Bytes>,
}

impl BodySender {
    /// Sends a chunk, waiting while the client reads slower than we write (the channel is
    /// bounded); false once the client is gone.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> bool {
        self.tx.send(chunk.into()).await.is_ok()
    }

    /// Sends a chunk like [`BodySender::send`], but always leaves one slot of the buffer free, so
    /// that a final chunk sent with [`BodySender::try_send`] (an error line ending a stream) has
    /// room even when the client has stopped reading.
    pub async fn send_keeping_one(&self, chunk: impl Into<Bytes>) -> bool {
        if self.tx.max_capacity() < 2 {
            return self.send(chunk).await;
        }
        match self.tx.reserve_many(2).await {
            Ok(mut permits) => match permits.next() {
                Some(p) => {
                    p.send(chunk.into());
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// Sends a chunk only if there is room at once; false if the client is gone or behind.
    pub fn try_send(&self, chunk: impl Into<Bytes>) -> bool {
        self.tx.try_send(chunk.into()).is_ok()
    }

    /// How many chunks fit in the buffer now.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// Resolves once the client is gone (the body was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// True once the client is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Body {
    /// A whole body.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }

    /// A streamed body holding at most `buffer` unsent chunks, and the sender that feeds it.
    pub fn channel(buffer: usize) -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        (BodySender { tx }, Body::Stream(rx))
    }

    /// The whole body of a `Full` response (tests and in-process callers); `None` for a stream.
    pub fn as_full(&self) -> Option<&Bytes> {
        match self {
            Body::Full(b) => b.as_ref(),
            Body::Stream(_) => None,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // An exact hint makes hyper send Content-Length instead of chunked encoding.
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}
