//! The manager's event stream behind `GET /events`: every task and node change, numbered, kept in
//! a bounded history and fanned out to subscribers.
//!
//! Events are published by [`super::State`] in the same critical section as the change itself
//! (from [`super::State::apply`] for tasks), so the order of indexes is the order of changes, and a
//! subscription taken under the same lock sees neither a gap nor a duplicate between the history
//! it replays and the live events that follow.
//!
//! Cost when nobody listens: an index increment. The history is recorded only while someone is
//! subscribed, and for [`LINGER`] after the last subscriber left, so that a client that reconnects
//! quickly can resume with `?index=`. Outside that window the history is dropped and a resume from
//! an index it no longer covers is refused with [`Gone`] (the client resyncs with `GET /tasks`).
//!
//! A slow subscriber cannot slow the manager: live events go through a `tokio::sync::broadcast`
//! ring whose sender never waits; a subscriber more than [`BROADCAST_BUFFER`] events behind is
//! told it lagged, and the API ends its stream with an error line.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::util::now_ms;
use crate::wire::{Event, EventBody};

/// How many events the history keeps for `?index=` resumes.
pub const HISTORY: usize = 10_000;

/// How many live events a subscriber may be behind before it is dropped.
pub const BROADCAST_BUFFER: usize = 4_096;

/// How long the history keeps being recorded after the last subscriber left.
pub const LINGER: Duration = Duration::from_secs(60);

/// An event shared by the history and every subscriber, encoded once, by whoever needs it first.
#[derive(Debug)]
pub struct Shared {
    /// The event.
    pub event: Event,
    line: OnceLock<Bytes>,
}

impl Shared {
    /// The event as one JSON line with its `\n`, encoded on first use.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| {
                let mut v = serde_json::to_vec(&self.event).unwrap_or_else(|e| {
                    // An event holds only strings, numbers and enums; this cannot fail, but if it
                    // ever did the stream must stay line-delimited JSON.
                    format!(
                        r#"{{"index":{},"error":"cannot encode: {e}"}}"#,
                        self.event.index
                    )
                    .into_bytes()
                });
                v.push(b'\n');
                Bytes::from(v)
            })
            .clone()
    }
}

/// A resume from an index the history no longer holds (or never held).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "index {asked} is not in the event history (it holds {first} to {last}); \
     resync with GET /tasks and GET /nodes, then follow /events without an index"
)]
pub struct Gone {
    /// The index asked for.
    pub asked: u64,
    /// The oldest index the history can replay after.
    pub first: u64,
    /// The newest index published.
    pub last: u64,
}

/// A new subscription: the events to replay, then the live ones.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the index asked for, oldest first.
    pub replay: Vec<Arc<Shared>>,
    /// Live events from the next one on.
    pub live: broadcast::Receiver<Arc<Shared>>,
    /// The index of the last event published when the subscription was taken.
    pub last: u64,
}

/// The numbered event stream and its bounded history.
#[derive(Debug)]
pub struct EventLog {
    /// The index of the last event published (0: none yet).
    last: u64,
    /// The smallest `?index=` the history can resume after: events after it are all held.
    floor: u64,
    history: VecDeque<Arc<Shared>>,
    capacity: usize,
    tx: broadcast::Sender<Arc<Shared>>,
    /// Whether there was a subscriber at the last publish, to notice the last one leaving.
    had_subscribers: bool,
    /// Until when the history keeps being recorded without subscribers.
    linger_until: Option<Instant>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(HISTORY, BROADCAST_BUFFER)
    }
}

impl EventLog {
    /// A log keeping `history` events and letting subscribers lag by `buffer` events.
    pub fn new(history: usize, buffer: usize) -> EventLog {
        let (tx, _) = broadcast::channel(buffer.max(1));
        EventLog {
            last: 0,
            floor: 0,
            history: VecDeque::new(),
            capacity: history.max(1),
            tx,
            had_subscribers: false,
            linger_until: None,
        }
    }

    /// True when events are being recorded: a subscriber is listening, or one left recently.
    /// Callers skip building an event when this is false.
    pub fn recording(&mut self) -> bool {
        let listening = self.tx.receiver_count() > 0;
        if listening {
            self.had_subscribers = true;
            self.linger_until = None;
            return true;
        }
        if self.had_subscribers {
            self.had_subscribers = false;
            self.linger_until = Some(Instant::now() + LINGER);
        }
        match self.linger_until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                self.linger_until = None;
                false
            }
            None => false,
        }
    }

    /// Publishes an event built by `make`, or only counts it when nobody listens (then the
    /// history is dropped: it would have a gap).
    pub fn publish(&mut self, make: impl FnOnce() -> EventBody) {
        self.last += 1;
        if !self.recording() {
            if !self.history.is_empty() {
                self.history.clear();
            }
            self.floor = self.last;
            return;
        }
        let shared = Arc::new(Shared {
            event: Event {
                index: self.last,
                at_ms: now_ms(),
                body: make(),
            },
            line: OnceLock::new(),
        });
        if self.history.len() == self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.event.index;
            }
        }
        self.history.push_back(shared.clone());
        // Fails only when nobody is subscribed (lingering), which is fine: the history has it.
        if self.tx.send(shared).is_err() {
            tracing::trace!(index = self.last, "event recorded with no subscriber");
        }
    }

    /// Subscribes: with `after = Some(n)`, replays the events after index `n` first (refused when
    /// the history no longer holds them all); with `None`, starts with the next event.
    pub fn subscribe(&mut self, after: Option<u64>) -> Result<Subscription, Gone> {
        let replay = match after {
            None => Vec::new(),
            Some(n) if n < self.floor || n > self.last => {
                return Err(Gone {
                    asked: n,
                    first: self.floor,
                    last: self.last,
                })
            }
            Some(n) => self
                .history
                .iter()
                .filter(|e| e.event.index > n)
                .cloned()
                .collect(),
        };
        let live = self.tx.subscribe();
        self.had_subscribers = true;
        self.linger_until = None;
        Ok(Subscription {
            replay,
            live,
            last: self.last,
        })
    }

    /// The index of the last event published.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// How many events the history holds.
    pub fn held(&self) -> usize {
        self.history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> EventBody {
        EventBody::Node {
            name: name.into(),
            state: crate::wire::NodeState::Up,
            problem: None,
        }
    }

    fn indexes(events: &[Arc<Shared>]) -> Vec<u64> {
        events.iter().map(|e| e.event.index).collect()
    }

    /// Publishes `n` events.
    fn publish(log: &mut EventLog, n: usize) {
        for _ in 0..n {
            log.publish(|| node("n"));
        }
    }

    #[test]
    fn resuming_replays_exactly_the_events_after_the_index_asked_or_answers_gone() {
        // A history of 5 with one subscriber listening all along, 8 events published: the
        // history holds 4..=8, so a resume after 3 (or later) works and after 2 does not.
        // (after, expected replay or Err((first, last)))
        type Expected = Result<&'static [u64], (u64, u64)>;
        let cases: &[(Option<u64>, Expected)] = &[
            (None, Ok(&[])),
            (Some(8), Ok(&[])),
            (Some(7), Ok(&[8])),
            (Some(3), Ok(&[4, 5, 6, 7, 8])),
            (Some(5), Ok(&[6, 7, 8])),
            (Some(2), Err((3, 8))),
            (Some(0), Err((3, 8))),
            (Some(9), Err((3, 8))),
            (Some(u64::MAX), Err((3, 8))),
        ];
        let mut log = EventLog::new(5, 16);
        let _listener = log.subscribe(None).expect("from now");
        publish(&mut log, 8);
        for (after, expected) in cases {
            match (log.subscribe(*after), expected) {
                (Ok(s), Ok(want)) => {
                    assert_eq!(indexes(&s.replay), *want, "after {after:?}");
                    assert_eq!(s.last, 8);
                }
                (Err(g), Err((first, last))) => {
                    assert_eq!((g.first, g.last), (*first, *last), "after {after:?}");
                    assert_eq!(Some(g.asked), *after);
                }
                (got, want) => panic!("after {after:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_fresh_log_resumes_from_zero_with_everything() {
        let mut log = EventLog::new(5, 16);
        let _listener = log.subscribe(None).expect("from now");
        publish(&mut log, 3);
        let s = log.subscribe(Some(0)).expect("the history holds 1..=3");
        assert_eq!(indexes(&s.replay), vec![1, 2, 3]);
    }

    #[test]
    fn with_nobody_listening_events_are_only_counted() {
        let mut log = EventLog::new(5, 16);
        publish(&mut log, 4);
        assert_eq!(log.last(), 4);
        assert_eq!(log.held(), 0);
        // Nothing before 4 can be replayed; from 4 on nothing was missed.
        assert_eq!(
            log.subscribe(Some(2)).map(|s| s.replay.len()),
            Err(Gone {
                asked: 2,
                first: 4,
                last: 4
            })
        );
        let s = log.subscribe(Some(4)).expect("nothing missed");
        assert!(s.replay.is_empty());
    }

    #[test]
    fn live_events_follow_the_replay_without_gap_or_duplicate() {
        let mut log = EventLog::new(10, 16);
        let _first = log.subscribe(None).expect("from now");
        publish(&mut log, 3);
        let mut s = log.subscribe(Some(1)).expect("held");
        publish(&mut log, 2);
        let mut seen = indexes(&s.replay);
        while let Ok(e) = s.live.try_recv() {
            seen.push(e.event.index);
        }
        assert_eq!(seen, vec![2, 3, 4, 5]);
    }

    #[test]
    fn the_history_lingers_after_the_last_subscriber_leaves() {
        let mut log = EventLog::new(10, 16);
        let s = log.subscribe(None).expect("from now");
        publish(&mut log, 2);
        drop(s);
        // Within the linger the history keeps recording, so a quick reconnect resumes.
        publish(&mut log, 2);
        let again = log.subscribe(Some(2)).expect("recorded while lingering");
        assert_eq!(indexes(&again.replay), vec![3, 4]);
    }

    #[test]
    fn a_subscriber_behind_by_more_than_the_buffer_is_told_it_lagged() {
        let mut log = EventLog::new(10, 4);
        let mut s = log.subscribe(None).expect("from now");
        publish(&mut log, 6);
        assert!(matches!(
            s.live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(2))
        ));
    }

    #[test]
    fn an_event_is_one_json_line_with_its_kind() {
        let mut log = EventLog::new(10, 4);
        let mut s = log.subscribe(None).expect("from now");
        log.publish(|| node("w1"));
        let e = s.live.try_recv().expect("published");
        let line = e.line();
        assert!(line.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(v["index"], 1);
        assert_eq!(v["kind"], "node");
        assert_eq!(v["name"], "w1");
        assert_eq!(v["state"], "up");
        let back: Event = serde_json::from_slice(&line).expect("decodes back");
        assert_eq!(back, e.event);
    }
}
