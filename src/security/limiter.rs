//! Failed authentications counted per peer address: after [`FailureLimiter::max`] failures within
//! one window, the address is answered 429 without any token check until the window ends, so
//! guessing tokens costs a stranger the window's length every few tries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many addresses are remembered at most; beyond it, expired entries are dropped, and if none
/// has expired, the table is cleared (a flood of addresses must not grow memory without bound).
const MAX_PEERS: usize = 65_536;

/// Counts failed authentications per address in fixed windows.
#[derive(Debug)]
pub struct FailureLimiter {
    max: u32,
    window: Duration,
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Default for FailureLimiter {
    /// 20 failures per address per 10 s.
    fn default() -> Self {
        Self::new(20, Duration::from_secs(10))
    }
}

impl FailureLimiter {
    /// At most `max` failures per address per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        FailureLimiter {
            max,
            window,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// The failures allowed per window.
    pub fn max(&self) -> u32 {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `peer` has used up its failures in the current window (checked at `now`).
    pub fn blocked(&self, peer: IpAddr, now: Instant) -> bool {
        match self.lock().get(&peer) {
            Some((n, start)) => now.duration_since(*start) < self.window && *n >= self.max,
            None => false,
        }
    }

    /// Counts one failure of `peer` at `now`.
    pub fn fail(&self, peer: IpAddr, now: Instant) {
        let mut peers = self.lock();
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            let window = self.window;
            peers.retain(|_, (_, start)| now.duration_since(*start) < window);
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
        let entry = peers.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_max_failures_until_its_window_ends() {
        let l = FailureLimiter::new(3, Duration::from_secs(10));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..2 {
            l.fail(a, t0);
        }
        assert!(!l.blocked(a, t0));
        l.fail(a, t0);
        assert!(l.blocked(a, t0));
        assert!(!l.blocked(b, t0), "another address is not blocked");
        assert!(l.blocked(a, t0 + Duration::from_secs(9)));
        assert!(!l.blocked(a, t0 + Duration::from_secs(10)));
        l.fail(a, t0 + Duration::from_secs(10));
        assert!(!l.blocked(a, t0 + Duration::from_secs(10)), "a new window");
    }
}
