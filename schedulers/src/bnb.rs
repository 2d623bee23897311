//! The branch-and-bound search and leaf layout that E-PVM's index (`epvm_index`) and the fit
//! policies' index (`fit_index`) share.
//!
//! Both keep a complete binary tree over the nodes, implicit in a vector: `tree[1]` is the root,
//! box `k`'s children are `2k` and `2k + 1`, and leaf slot `s` is box `leaves + s`. A box knows a
//! lower bound on the cost of each feasible member (a policy where higher scores win searches
//! their negations, which order the other way bit for bit) and its member first in the tie order.
//! What a bound is, and why it holds for the floating-point numbers, is each index's business.

use std::cmp::Ordering;

use crate::snapshot::NodeSnapshot;

/// No node: an empty box's first member.
pub(crate) const NONE: u32 = u32::MAX;

/// A box: what an index knows of the nodes below a tree node.
pub(crate) trait Summary: Copy {
    /// The member first in the tie order, [`NONE`] when the box has no up member.
    fn first(&self) -> u32;
}

/// A complete binary tree of boxes over the nodes; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Tree<B> {
    /// Leaf slots: a power of two at least the node count.
    leaves: usize,
    boxes: Vec<B>,
    node_at: Vec<u32>,
    slot_of: Vec<u32>,
}

impl<B> Default for Tree<B> {
    fn default() -> Self {
        Self {
            leaves: 0,
            boxes: Vec::new(),
            node_at: Vec::new(),
            slot_of: Vec::new(),
        }
    }
}

impl<B: Summary> Tree<B> {
    /// Lays `len` nodes out again: `arrange` orders the node indices into the leaf slots, `leaf`
    /// makes node `i`'s box and `merge` two siblings' parent.
    pub(crate) fn build(
        &mut self,
        len: usize,
        empty: B,
        arrange: impl FnOnce(&mut [u32], usize),
        leaf: impl Fn(usize) -> B,
        merge: impl Fn(&B, &B) -> B,
    ) {
        self.leaves = len.next_power_of_two().max(1);
        let mut items: Vec<u32> = (0..len as u32).collect();
        arrange(&mut items, self.leaves);
        self.slot_of = vec![0; len];
        for (slot, &i) in items.iter().enumerate() {
            self.slot_of[i as usize] = slot as u32;
        }
        self.boxes = vec![empty; 2 * self.leaves];
        for (slot, &i) in items.iter().enumerate() {
            self.boxes[self.leaves + slot] = leaf(i as usize);
        }
        self.node_at = items;
        for k in (1..self.leaves).rev() {
            self.boxes[k] = merge(&self.boxes[2 * k], &self.boxes[2 * k + 1]);
        }
    }

    /// Gives node `i` the box `leaf` and recomputes the `log2 N` boxes above it.
    pub(crate) fn update(&mut self, i: usize, leaf: B, merge: impl Fn(&B, &B) -> B) {
        let mut k = self.leaves + self.slot_of[i] as usize;
        self.boxes[k] = leaf;
        while k > 1 {
            k /= 2;
            self.boxes[k] = merge(&self.boxes[2 * k], &self.boxes[2 * k + 1]);
        }
    }
}

/// How an index keeps one record per node up to date with the snapshots it is given.
pub(crate) trait Records {
    /// The number of records.
    fn len(&self) -> usize;
    /// Whether record `i` holds `node`'s inputs.
    fn matches(&self, i: usize, node: &NodeSnapshot) -> bool;
    /// Record `i` takes `node`'s inputs, and its box is marked for the next pick.
    fn change(&mut self, i: usize, node: &NodeSnapshot);
    /// Starts over for a cluster of another size.
    fn reset(&mut self, nodes: &[NodeSnapshot]);

    /// Brings every record up to date with `nodes`, reading every snapshot.
    fn sync(&mut self, nodes: &[NodeSnapshot]) {
        if nodes.len() != self.len() {
            self.reset(nodes);
            return;
        }
        for (i, node) in nodes.iter().enumerate() {
            if !self.matches(i, node) {
                self.change(i, node);
            }
        }
    }

    /// Brings the records of `changed` up to date, trusting that no other snapshot changed since
    /// the last call. Debug builds check that promise.
    fn sync_changed(&mut self, nodes: &[NodeSnapshot], changed: &[usize]) {
        if nodes.len() != self.len() {
            self.reset(nodes);
            return;
        }
        for &i in changed {
            if let Some(node) = nodes.get(i) {
                if !self.matches(i, node) {
                    self.change(i, node);
                }
            }
        }
        debug_assert!(
            nodes.iter().enumerate().all(|(i, n)| self.matches(i, n)),
            "a snapshot changed that `changed` does not list"
        );
    }
}

/// What [`search`] asks of an index for one decision.
pub(crate) trait Decide<B> {
    /// At most the cost of every feasible member of `b`, `-inf` when some member's cost no bound
    /// covers (the box is then never skipped); `None` when the box surely has no feasible member.
    fn bound(&mut self, b: &B) -> Option<f64>;
    /// Node `i`'s exact cost, the very bits of the exhaustive scan, or `None` when it cannot take
    /// the task.
    fn cost(&mut self, i: usize) -> Option<f64>;
    /// Whether node `a` comes before node `b` in the tie order: lower id, then lower index.
    fn before(&self, a: usize, b: usize) -> bool;
}

/// The node of least cost (ties to the first in the tie order), or `None` when no node fits.
///
/// Depth first, the child with the lower bound first. Every feasible leaf reached is offered to
/// the running best under the scan's order: lower cost (`total_cmp`), then the tie order. A box is
/// skipped only when no member can beat the best: its bound exceeds the best cost, or equals it
/// while its first member comes after the best (members then cost at least as much and lose the
/// tie). Every node that could win is so scored, and the winner is the exhaustive scan's.
pub(crate) fn search<B: Summary>(
    tree: &Tree<B>,
    decide: &mut impl Decide<B>,
    stack: &mut Vec<(usize, f64)>,
) -> Option<usize> {
    let leaves = tree.leaves;
    let boxes = &tree.boxes;
    let mut best: Option<(usize, f64)> = None;
    stack.clear();
    if boxes[1].first() == NONE {
        return None;
    }
    stack.push((1, decide.bound(&boxes[1])?));
    while let Some((k, bound)) = stack.pop() {
        if hopeless(boxes, decide, k, bound, best) {
            continue;
        }
        if k >= leaves {
            let i = tree.node_at[k - leaves] as usize;
            let Some(cost) = decide.cost(i) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((b, best_cost)) => match cost.total_cmp(&best_cost) {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => decide.before(i, b),
                },
            };
            if better {
                best = Some((i, cost));
            }
            continue;
        }
        let (left, right) = (2 * k, 2 * k + 1);
        let (lf, rf) = (boxes[left].first(), boxes[right].first());
        // A box with no member, or none that could take the task, is never pushed.
        let l = (lf != NONE).then(|| decide.bound(&boxes[left])).flatten();
        let r = (rf != NONE).then(|| decide.bound(&boxes[right])).flatten();
        // The more promising child goes on top of the stack: lower bound, then lower first
        // member, so ties among identical nodes find the lowest id at once.
        let (first, second) = match (l, r) {
            (None, None) => continue,
            (Some(l), None) => ((left, l), None),
            (None, Some(r)) => ((right, r), None),
            (Some(l), Some(r)) => {
                let left_first = match l.total_cmp(&r) {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => decide.before(lf as usize, rf as usize),
                };
                if left_first {
                    ((left, l), Some((right, r)))
                } else {
                    ((right, r), Some((left, l)))
                }
            }
        };
        if let Some((k, bound)) = second {
            if !hopeless(boxes, decide, k, bound, best) {
                stack.push((k, bound));
            }
        }
        if !hopeless(boxes, decide, first.0, first.1, best) {
            stack.push(first);
        }
    }
    best.map(|(index, _)| index)
}

/// Whether box `k`, whose bound is `bound`, can hold no node that beats `best`.
#[inline]
fn hopeless<B: Summary>(
    boxes: &[B],
    decide: &impl Decide<B>,
    k: usize,
    bound: f64,
    best: Option<(usize, f64)>,
) -> bool {
    let first = boxes[k].first();
    if first == NONE {
        return true;
    }
    match best {
        None => false,
        Some((index, cost)) => {
            bound > cost || (bound >= cost && decide.before(index, first as usize))
        }
    }
}

/// Orders `items` (node indices) into a segment of `size` leaves so that nearby leaves hold
/// similar nodes: the first `size / 2` go to the left half, chosen by `shape` if the items mix
/// shapes, else by the coordinate whose spread is largest, equals in the tie order (`tie`), so
/// that nodes alike in every input sit in the order the picks take them, and the ones already
/// taken stay together rather than scattered through boxes of untaken ones. (The split by shape
/// leaves equals where they fall: ordering them too made BinPack's picks on the heterogeneous
/// bench cluster 1.4-1.6x slower.) The layout only makes the boxes tight; any layout gives the
/// same picks.
pub(crate) fn arrange<S: Ord, const D: usize>(
    items: &mut [u32],
    size: usize,
    shape: &impl Fn(u32) -> S,
    coordinates: &impl Fn(u32) -> [f64; D],
    tie: &impl Fn(u32, u32) -> Ordering,
) {
    if size <= 1 || items.len() <= 1 {
        return;
    }
    let half = size / 2;
    if items.len() <= half {
        arrange(items, half, shape, coordinates, tie);
        return;
    }
    let first_shape = shape(items[0]);
    let mixed = items.iter().any(|&i| shape(i) != first_shape);
    if mixed {
        items.select_nth_unstable_by_key(half, |&i| shape(i));
    } else {
        let mut low = [f64::INFINITY; D];
        let mut high = [f64::NEG_INFINITY; D];
        for &i in items.iter() {
            for (d, value) in coordinates(i).into_iter().enumerate() {
                low[d] = low[d].min(value);
                high[d] = high[d].max(value);
            }
        }
        let spread = |d: usize| high[d] - low[d];
        let mut axis = 0;
        for d in 1..D {
            if spread(d) > spread(axis) {
                axis = d;
            }
        }
        items.select_nth_unstable_by(half, |&a, &b| {
            coordinates(a)[axis]
                .total_cmp(&coordinates(b)[axis])
                .then_with(|| tie(a, b))
        });
    }
    let (left, right) = items.split_at_mut(half);
    arrange(left, half, shape, coordinates, tie);
    arrange(right, half, shape, coordinates, tie);
}
