//! The worker's side of the conversation with the manager, and its watches: heartbeats, reports of
//! changed tasks, the engine watch, and the at-most-one disconnect guard.
//!
//! ## At-most-one timing
//!
//! A task with `stop_after_disconnect = D` must be gone by `D` after the last successful contact
//! with the manager, because the manager, counting the node down after its TTL, may place a
//! replacement then (the manager refuses a `D` that, plus a margin, is not below its TTL). So the
//! guard does not begin the stop at `D` with the worker's `stop_grace` (10 s by default, which a task
//! ignoring SIGTERM would use to the end): it uses the grace `G = min(stop_grace, D / 4)` and begins
//! at `D - G - GUARD_TICK`, so that SIGKILL lands by `D` at the latest. With the defaults and
//! `D = 4 s`: the stop begins at 2.9 s with a 1 s grace and the container is dead by 3.9 s. The stop
//! never begins before 1.5 heartbeat intervals of silence (a healthy link is silent for up to one
//! interval between beats), so only settings under about 1.5 intervals plus `G` and a tick (a few
//! hundred milliseconds with the defaults) can overrun `D`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use poseidon_runtimes::RuntimeError;
use tokio::time::Instant;

use super::{lock, Worker};
use crate::task::{Desired, TaskId};
use crate::wire::{Heartbeat, Report, TaskStatus};

/// One heartbeat in this many lists every task held (see [`Worker::heartbeat_once`]).
const FULL_EVERY: u64 = 10;

/// How often the disconnect guard looks at the silence.
pub const GUARD_TICK: Duration = Duration::from_millis(100);

/// For a task with `stop_after_disconnect = after`: the grace its stop uses, and how long after
/// the last contact the stop begins, so that it ends by `after` (see the module documentation).
///
/// The stop never begins before 1.5 heartbeat intervals of silence: sooner, a healthy link between
/// two beats would stop the task. A setting too short for that (under 1.5 intervals plus the grace
/// and a tick) is honoured late rather than early.
pub fn at_most_one_plan(
    after: Duration,
    stop_grace: Duration,
    heartbeat_interval: Duration,
) -> (Duration, Duration) {
    let grace = stop_grace.min(after / 4);
    let begin = after
        .saturating_sub(grace + GUARD_TICK)
        .max(heartbeat_interval.mul_f64(1.5));
    (grace, begin)
}

impl Worker {
    /// Builds a full heartbeat: capacity, stats, health, and the status of every task held.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat_of(true)
    }

    /// Builds a heartbeat; a partial one carries no task statuses (changes go in reports).
    fn heartbeat_of(&self, full: bool) -> Heartbeat {
        let tasks: Vec<TaskStatus> = if full {
            lock(&self.inner.tasks)
                .values()
                .map(|e| TaskStatus::of(&e.task))
                .collect()
        } else {
            Vec::new()
        };
        let mut stats = self.inner.sys.sample();
        stats.tasks = tasks.len();
        Heartbeat {
            name: self.inner.opts.name.clone(),
            address: self.inner.opts.advertise.clone(),
            capacity: self.inner.opts.capacity,
            stats,
            healthy: self.engine_ok(),
            problem: lock(&self.inner.engine_problem).clone(),
            tasks,
            full,
            host_volumes: self.inner.opts.host_volumes.keys().cloned().collect(),
            labels: self.inner.opts.labels.clone(),
            endpoint_address: self.inner.opts.endpoint_address.map(|a| a.to_string()),
        }
    }

    /// Records a successful exchange with the manager; logs the return after failures.
    fn contact(&self) {
        *lock(&self.inner.last_contact) = Instant::now();
        if !self.inner.contact_ok.swap(true, Ordering::SeqCst) {
            tracing::info!(node = %self.name(), "the manager answers again");
        }
    }

    /// Sends one heartbeat and applies the reply; returns whether the manager answered.
    pub async fn heartbeat_once(&self) -> bool {
        let Some(manager) = self.inner.managers.current() else {
            return false;
        };
        // The engine's health comes from `engine_watch_loop`, never from a ping made here: a hung
        // engine must make the node unhealthy, not late with its heartbeats (and so counted down).
        // Every task's status in every beat would make a beat cost what the node holds (the
        // submission benchmark's p99 rose by a third with 40,000 tasks on three workers). Changes
        // travel in reports at once; a full beat, which lets the manager re-send what a worker
        // lacks and stop stale copies, goes first, every FULL_EVERY beats, after any failed
        // beat, and when the manager asks.
        let n = self.inner.beats.fetch_add(1, Ordering::SeqCst);
        let full =
            self.inner.need_full.swap(false, Ordering::SeqCst) || n.is_multiple_of(FULL_EVERY);
        // A full beat's statuses are taken and answered in turn with reports (see `speaking`).
        // A beat never waits for a report, so liveness never waits on one: while a report is on
        // its way, this beat goes partial and the next one is full.
        let turn = if full {
            let turn = self.inner.speaking.try_lock().ok();
            if turn.is_none() {
                self.inner.need_full.store(true, Ordering::SeqCst);
            }
            turn
        } else {
            None
        };
        let mut hb = self.heartbeat_of(false);
        if turn.is_some() {
            // Deferred changes are written before their statuses leave (see `report_once`). The
            // beat does not wait on the disk for long, since liveness never waits: a write not
            // synced within half an interval, or failed, sends this beat partial and the next one
            // full, and the write's outcome is settled in the background.
            let (tasks, staged) = self.stage_statuses(None);
            let stored = match staged {
                None => true,
                Some(staged) => {
                    let w = self.clone();
                    let settle = tokio::spawn(async move { w.settle_deferred(staged).await });
                    let bound = self.inner.opts.heartbeat_interval / 2;
                    matches!(tokio::time::timeout(bound, settle).await, Ok(Ok(true)))
                }
            };
            if stored {
                hb.stats.tasks = tasks.len();
                hb.tasks = tasks;
                hb.full = true;
            } else {
                self.inner.need_full.store(true, Ordering::SeqCst);
            }
        }
        match manager.heartbeat(&hb).await {
            Ok(reply) => {
                self.contact();
                if let Some(ms) = reply.heartbeat_interval_ms {
                    self.inner.told_interval_ms.store(ms, Ordering::SeqCst);
                }
                if reply.want_full {
                    self.inner.need_full.store(true, Ordering::SeqCst);
                }
                // Accepting waits for adoption (and so for the engine): never hold the beat for it.
                for a in reply.assign {
                    let w = self.clone();
                    tokio::spawn(async move {
                        let (id, generation) = (a.id, a.generation);
                        if let Err(e) = w.accept(a).await {
                            tracing::warn!(task = %id, node = %w.name(), generation, error = %e, "cannot accept a re-sent assignment");
                        }
                    });
                }
                for order in reply.stop {
                    let w = self.clone();
                    tokio::spawn(async move { w.obey(order).await });
                }
                true
            }
            Err(e) => {
                self.inner.managers.after(&manager, &e);
                self.inner.need_full.store(true, Ordering::SeqCst);
                // Logged on the change only: a manager away for an hour must not fill the log.
                if self.inner.contact_ok.swap(false, Ordering::SeqCst) {
                    tracing::warn!(node = %self.name(), manager = %manager.base(), error = %e, "heartbeat failed; the manager is out of reach");
                }
                false
            }
        }
    }

    /// Pings the engine every heartbeat interval (each ping bounded), so that the node's health
    /// is known even when no task is starting, and recovers by itself when the engine returns.
    pub(super) async fn engine_watch_loop(self) {
        loop {
            let timeout = self
                .inner
                .opts
                .heartbeat_interval
                .clamp(Duration::from_millis(500), Duration::from_secs(3));
            match tokio::time::timeout(timeout, self.inner.runtime.ping()).await {
                Ok(Ok(())) => self.engine_answered(),
                Ok(Err(e)) => self.engine_failed(&e),
                Err(_) => self.engine_failed(&RuntimeError::Timeout(format!(
                    "ping did not answer within {} ms",
                    timeout.as_millis()
                ))),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.opts.heartbeat_interval) => {}
                _ = self.inner.shutdown.wait() => return,
            }
        }
    }

    pub(super) async fn heartbeat_loop(self) {
        let own = self.inner.opts.heartbeat_interval;
        loop {
            self.heartbeat_once().await;
            let spread = (crate::util::now_ms() % 100) as f64 / 100.0;
            let due = Instant::now() + self.next_beat(spread);
            // Wake at least every own interval while waiting a longer told one: a task with
            // `stop_after_disconnect` taken meanwhile brings the beats back to the own interval at
            // once (its guard counts silence in own intervals and must not see a told one's).
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.min(Instant::now() + own)) => {}
                    _ = self.inner.shutdown.wait() => return,
                }
                if Instant::now() >= due || self.next_beat(spread) <= own {
                    break;
                }
            }
        }
    }

    /// How long to wait before the next heartbeat, `spread` in `[0, 1)` spreading many workers'
    /// beats. The longer of the worker's own interval and the one the manager told it; a little
    /// jitter, taken off the own interval (so the TTL keeps its margin) or added to the told one
    /// (so the manager's rate limit holds). A worker holding a task with `stop_after_disconnect`
    /// keeps its own interval: its disconnect guard counts silence in those intervals.
    pub fn next_beat(&self, spread: f64) -> Duration {
        let own = self.inner.opts.heartbeat_interval;
        let told = Duration::from_millis(self.inner.told_interval_ms.load(Ordering::SeqCst));
        let guarded = told > own
            && lock(&self.inner.tasks)
                .values()
                .any(|e| e.task.spec.stop_after_disconnect_ms.is_some() && !e.task.is_finished());
        if told > own && !guarded {
            told + told.mul_f64(0.1 * spread)
        } else {
            own - own.mul_f64(0.1 * spread)
        }
    }

    /// Writes the deferred changes, then sends the status of every changed task to the manager;
    /// returns whether that was done (for a worker used alone, which reports to nobody, whether
    /// the changes were written).
    pub async fn report_once(&self) -> bool {
        // Statuses are taken and answered in turn with full heartbeats (see `speaking`).
        let _turn = self.inner.speaking.lock().await;
        let ids: Vec<TaskId> = lock(&self.inner.dirty).drain().collect();
        if ids.is_empty() {
            return true;
        }
        // Deferred changes are written first: the manager hears only of what is on disk.
        let Some(tasks) = self.stored_statuses(Some(&ids)).await else {
            lock(&self.inner.dirty).extend(ids);
            return false;
        };
        let manager = match &self.inner.opts.manager {
            Some(_) => self.inner.managers.current(),
            None => None,
        };
        let Some(manager) = manager else {
            return true;
        };
        match manager
            .report(&self.inner.opts.name, &Report { tasks })
            .await
        {
            Ok(reply) => {
                self.contact();
                // A report can learn that a copy is stale as well as a heartbeat can.
                for order in reply.stop {
                    let w = self.clone();
                    tokio::spawn(async move { w.obey(order).await });
                }
                true
            }
            Err(e) => {
                self.inner.managers.after(&manager, &e);
                tracing::debug!(node = %self.name(), error = %e, "report failed; kept for the next one");
                // Put them back; the next report or heartbeat carries them.
                lock(&self.inner.dirty).extend(ids);
                false
            }
        }
    }

    pub(super) async fn report_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.report_now.notified() => {}
                _ = self.inner.shutdown.wait() => return,
            }
            if !self.report_once().await {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = self.inner.shutdown.wait() => return,
                }
                self.inner.report_now.notify_one();
            }
        }
    }

    /// Stops tasks that opted in to at-most-one semantics early enough, with a short enough grace,
    /// that they are gone by `stop_after_disconnect` after the last contact (see the module docs).
    pub(super) async fn disconnect_guard(self) {
        if self.inner.opts.manager.is_none() {
            return;
        }
        let stop_grace = self.inner.opts.stop_grace;
        let interval = self.inner.opts.heartbeat_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(GUARD_TICK) => {}
                _ = self.inner.shutdown.wait() => return,
            }
            let silent = lock(&self.inner.last_contact).elapsed();
            // No stop begins before 1.5 intervals of silence (`at_most_one_plan`): while the
            // manager is heard, the tasks are not looked at (a scan of every task under the lock,
            // ten times a second, was a good part of a busy worker's work; issue 17).
            if silent < interval.mul_f64(1.5) {
                continue;
            }
            let due: Vec<(TaskId, Duration)> = {
                let mut tasks = lock(&self.inner.tasks);
                tasks
                    .values_mut()
                    .filter(|e| e.task.desired == Desired::Run && !e.task.is_finished())
                    .filter_map(|e| {
                        let after = Duration::from_millis(e.task.spec.stop_after_disconnect_ms?);
                        let (grace, begin) = at_most_one_plan(after, stop_grace, interval);
                        if silent < begin {
                            return None;
                        }
                        e.stop_grace = Some(grace);
                        Some((e.task.id, grace))
                    })
                    .collect()
            };
            for (id, grace) in due {
                tracing::warn!(task = %id, node = %self.name(), silent_ms = silent.as_millis() as u64, grace_ms = grace.as_millis() as u64, "at-most-one: stopping a task after losing the manager");
                let w = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = w.stop(id, "lost contact with the manager").await {
                        tracing::warn!(task = %id, node = %w.name(), error = %e, "at-most-one stop failed");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_at_most_one_stop_ends_by_its_deadline_for_every_setting() {
        // (stop_after_disconnect ms, stop_grace ms) -> (grace ms, begin ms), written out, with
        // heartbeats every 200 ms.
        let rows: [(u64, u64, u64, u64); 6] = [
            (4_000, 10_000, 1_000, 2_900),
            (3_000, 10_000, 750, 2_150),
            (60_000, 10_000, 10_000, 49_900),
            (1_000, 200, 200, 700),
            // Too short for the heartbeat interval: begun after 1.5 intervals, so late.
            (500, 10_000, 125, 300),
            (100, 10_000, 25, 300),
        ];
        for (after, stop_grace, grace, begin) in rows {
            let got = at_most_one_plan(
                Duration::from_millis(after),
                Duration::from_millis(stop_grace),
                Duration::from_millis(200),
            );
            assert_eq!(
                got,
                (Duration::from_millis(grace), Duration::from_millis(begin)),
                "{after} ms"
            );
            // Begun at the latest one tick after `begin`, the stop ends by `after` for every
            // setting of at least 1.5 intervals plus the grace and a tick.
            let end = begin + GUARD_TICK.as_millis() as u64 + grace;
            assert_eq!(end <= after, after >= 1_000, "{after} ms");
        }
    }
}
