//! Choosing an endpoint: round-robin or least-connections, skipping the endpoints a request has
//! already failed on. Pure, so the choice is table tested without sockets.

use std::fmt;

/// How a `publish` entry spreads its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each new connection (or request) goes to the next endpoint in turn.
    RoundRobin,
    /// Each goes to the endpoint with the fewest open connections (or requests in flight); ties
    /// go in turn.
    LeastConn,
}

impl Balance {
    /// The balancing named `s` (`round_robin`, `least_conn`); round-robin for anything else,
    /// since the manager has validated the name already.
    pub fn parse(s: &str) -> Balance {
        match s {
            "least_conn" => Balance::LeastConn,
            _ => Balance::RoundRobin,
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
        })
    }
}

/// Picks one of `n` endpoints, or `None` when every one is skipped. `turn` is the route's counter
/// (raised by the caller for every pick), `active(i)` the open connections of endpoint `i`, and
/// `skip(i)` true for an endpoint this request has already failed on.
pub fn pick(
    balance: Balance,
    n: usize,
    turn: usize,
    active: impl Fn(usize) -> u64,
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    // Both policies walk the endpoints from the turn's position, so that round-robin takes the
    // first one not skipped and least-connections breaks ties in turn rather than always
    // favouring the first endpoint of the list.
    let order = (0..n).map(|k| (turn + k) % n).filter(|&i| !skip(i));
    match balance {
        Balance::RoundRobin => order.into_iter().next(),
        Balance::LeastConn => {
            let mut best: Option<(u64, usize)> = None;
            for i in order {
                let a = active(i);
                if best.is_none_or(|(b, _)| a < b) {
                    best = Some((a, i));
                }
            }
            best.map(|(_, i)| i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_endpoints_in_turn_and_skips_the_failed_ones() {
        // (n, turn, skipped, expected)
        let rows: &[(usize, usize, &[usize], Option<usize>)] = &[
            (3, 0, &[], Some(0)),
            (3, 1, &[], Some(1)),
            (3, 2, &[], Some(2)),
            (3, 3, &[], Some(0)),
            (3, 7, &[], Some(1)),
            (3, 1, &[1], Some(2)),
            (3, 2, &[2], Some(0)),
            (3, 0, &[0, 1], Some(2)),
            (3, 0, &[0, 1, 2], None),
            (0, 5, &[], None),
            (1, 9, &[], Some(0)),
        ];
        for (n, turn, skipped, want) in rows {
            let got = pick(
                Balance::RoundRobin,
                *n,
                *turn,
                |_| 0,
                |i| skipped.contains(&i),
            );
            assert_eq!(got, *want, "n={n} turn={turn} skipped={skipped:?}");
        }
    }

    #[test]
    fn least_conn_takes_the_fewest_open_and_breaks_ties_in_turn() {
        // (active per endpoint, turn, skipped, expected)
        type Row = (&'static [u64], usize, &'static [usize], Option<usize>);
        let rows: &[Row] = &[
            (&[3, 1, 2], 0, &[], Some(1)),
            (&[3, 1, 2], 2, &[], Some(1)),
            (&[3, 1, 2], 0, &[1], Some(2)),
            (&[0, 0, 0], 0, &[], Some(0)),
            (&[0, 0, 0], 1, &[], Some(1)),
            (&[0, 0, 0], 2, &[], Some(2)),
            (&[5, 0, 0], 0, &[], Some(1)),
            (&[5, 0, 0], 2, &[], Some(2)),
            (&[1, 1], 0, &[0, 1], None),
        ];
        for (active, turn, skipped, want) in rows {
            let got = pick(
                Balance::LeastConn,
                active.len(),
                *turn,
                |i| active[i],
                |i| skipped.contains(&i),
            );
            assert_eq!(
                got, *want,
                "active={active:?} turn={turn} skipped={skipped:?}"
            );
        }
    }

    #[test]
    fn a_turn_counter_spreads_round_robin_evenly() {
        let mut hits = [0u32; 3];
        for turn in 0..300 {
            let i = pick(Balance::RoundRobin, 3, turn, |_| 0, |_| false).expect("an endpoint");
            hits[i] += 1;
        }
        assert_eq!(hits, [100, 100, 100]);
    }
}
