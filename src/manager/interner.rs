//! One copy of each distinct spec body and history string in the manager's memory.
//!
//! A task's [`TaskSpec`] is its name and a shared [`SpecBody`] (everything else), and each event
//! of its history holds its reason and node as shared strings. Tasks decoded apart (submitted in
//! one request each, reported by workers, loaded from the store) hold equal values in separate
//! allocations; [`TaskInterner::share`] makes them point at the copy an earlier task already
//! holds. At a million tasks copied from a few specs this is about 300 bytes of `Task` and several
//! small allocations a task fewer (BENCHMARKS.md, "one copy of each spec").
//!
//! A table holds weak pointers, so it never keeps a value alive: a value is dropped when its last
//! task goes (a body's strings and vectors with it). The small allocation a dead entry points at
//! (the `Arc`'s header and inline fields) waits for the next sweep, which runs whenever the table
//! has doubled since the last one: O(1) amortized per insert, and at most about twice the live
//! entries plus 1,024 dead ones at any time.
//!
//! The spec hash reads the fields that usually differ (image, command, resources, environment,
//! labels, and how many ports, volumes and constraints); bodies that differ only elsewhere collide
//! and displace each other in the table, which loses sharing for them, never correctness, since a
//! hit is compared in full.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};

use crate::task::{SpecBody, Task, TaskSpec};

/// A table of shared values by a hash.
#[derive(Debug)]
pub struct Interner<T: ?Sized> {
    /// One value per hash. Two different values with the same hash keep only the later one here;
    /// the other is still correct, only not shared.
    table: HashMap<u64, Weak<T>>,
    /// The table's size after the last sweep.
    swept_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            table: HashMap::new(),
            swept_at: 0,
        }
    }
}

impl<T: ?Sized + PartialEq> Interner<T> {
    /// Points `value` (whose hash is `key`) at the table's equal copy, or makes it the copy.
    pub fn share(&mut self, key: u64, value: &mut Arc<T>) {
        if let Some(shared) = self.table.get(&key).and_then(Weak::upgrade) {
            if Arc::ptr_eq(&shared, value) {
                return;
            }
            if shared == *value {
                *value = shared;
                return;
            }
        }
        self.table.insert(key, Arc::downgrade(value));
        if self.table.len() > 2 * self.swept_at + 1024 {
            self.table.retain(|_, v| v.strong_count() > 0);
            self.swept_at = self.table.len();
        }
    }

    /// How many values the table points at (dead ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// A hash of the fields that tell spec bodies apart in practice (the equality check after a
/// lookup compares all of them).
fn body_key(body: &SpecBody) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.image.hash(&mut h);
    body.cmd.hash(&mut h);
    body.cpus.to_bits().hash(&mut h);
    body.memory.hash(&mut h);
    body.env.hash(&mut h);
    body.labels.hash(&mut h);
    body.ports.len().hash(&mut h);
    body.volumes.len().hash(&mut h);
    body.constraints.len().hash(&mut h);
    h.finish()
}

fn str_key(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The manager's tables: spec bodies, and the strings of task histories (reasons, node names).
#[derive(Debug, Default)]
pub struct TaskInterner {
    /// Spec bodies.
    pub bodies: Interner<SpecBody>,
    /// Event reasons and node names.
    pub strings: Interner<str>,
}

impl TaskInterner {
    /// Points `task`'s spec body and the strings of its new events at shared copies. `old` is the
    /// same task's previous value: a spec equal to its spec takes its body without a lookup (a
    /// change that kept the spec, the common case), and only the events after its last one are
    /// looked at, so a change costs O(new events), not O(history).
    pub fn share(&mut self, task: &mut Task, old: Option<&Task>) {
        self.share_spec(&mut task.spec, old.map(|o| &o.spec));
        let fresh = match old.and_then(|o| o.events.back()) {
            Some(last) => task
                .events
                .iter()
                .rev()
                .position(|e| Arc::ptr_eq(&e.reason, &last.reason) && e.at_ms == last.at_ms)
                .unwrap_or(task.events.len()),
            None => task.events.len(),
        };
        let from = task.events.len() - fresh;
        for e in task.events.range_mut(from..) {
            self.strings.share(str_key(&e.reason), &mut e.reason);
            if let Some(node) = &mut e.node {
                self.strings.share(str_key(node), node);
            }
        }
    }

    /// Points `spec` at the shared copy of its body: `old`'s when equal, else the table's.
    pub fn share_spec(&mut self, spec: &mut TaskSpec, old: Option<&TaskSpec>) {
        if let Some(old) = old {
            if Arc::ptr_eq(&old.body, &spec.body) {
                return;
            }
            if old.body == spec.body {
                spec.body = old.body.clone();
                return;
            }
        }
        self.bodies.share(body_key(&spec.body), &mut spec.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, image: &str, cmd: &[&str]) -> TaskSpec {
        TaskSpec::new(
            name,
            SpecBody {
                image: image.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                ..SpecBody::default()
            },
        )
    }

    #[test]
    fn equal_bodies_share_one_copy_and_names_stay_apart() {
        let mut specs = TaskInterner::default();
        let mut a = spec("job-1", "busybox:latest", &["sleep", "60"]);
        let mut b = spec("job-2", "busybox:latest", &["sleep", "60"]);
        let mut c = spec("job-3", "busybox:latest", &["sleep", "61"]);
        assert!(!Arc::ptr_eq(&a.body, &b.body));
        specs.share_spec(&mut a, None);
        specs.share_spec(&mut b, None);
        specs.share_spec(&mut c, None);
        assert!(Arc::ptr_eq(&a.body, &b.body));
        assert!(!Arc::ptr_eq(&a.body, &c.body));
        assert_eq!((a.name.as_str(), b.name.as_str()), ("job-1", "job-2"));
        assert_eq!(c.cmd, vec!["sleep".to_string(), "61".to_string()]);
    }

    #[test]
    fn a_change_that_keeps_the_body_takes_the_old_copy() {
        let mut specs = TaskInterner::default();
        let old = spec("web", "nginx:1", &[]);
        let mut new = spec("web", "nginx:1", &[]);
        specs.share_spec(&mut new, Some(&old));
        assert!(Arc::ptr_eq(&old.body, &new.body));
        assert!(
            specs.bodies.is_empty(),
            "the old task's copy needs no table entry"
        );
    }

    #[test]
    fn writing_a_field_of_a_shared_body_copies_it_first() {
        let mut specs = TaskInterner::default();
        let mut a = spec("a", "busybox:latest", &[]);
        let mut b = spec("b", "busybox:latest", &[]);
        specs.share_spec(&mut a, None);
        specs.share_spec(&mut b, None);
        b.memory = 1 << 20;
        assert_eq!(a.memory, 0);
        assert!(!Arc::ptr_eq(&a.body, &b.body));
    }

    #[test]
    fn the_table_never_keeps_a_body_alive_and_sweeps_dead_entries() {
        let mut specs = TaskInterner::default();
        for i in 0..5_000 {
            // Each body dies at the end of its iteration.
            let mut s = spec("t", &format!("image-{i}"), &[]);
            specs.share_spec(&mut s, None);
        }
        assert!(
            specs.bodies.len() < 3_000,
            "{} entries after 5,000 dead bodies",
            specs.bodies.len()
        );
        let mut kept = spec("t", "image-0", &[]);
        specs.share_spec(&mut kept, None);
        assert_eq!(
            Arc::strong_count(&kept.body),
            1,
            "a dead entry was not revived"
        );
    }

    #[test]
    fn the_json_is_the_flat_object_it_was() {
        let s = spec("job-1", "busybox:latest", &["sleep", "60"]);
        let json = serde_json::to_value(&s).expect("encodes");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "job-1",
                "image": "busybox:latest",
                "cmd": ["sleep", "60"],
                "cpus": 0.0,
                "memory": 0,
                "restart_policy": {
                    "policy": "never",
                    "backoff_ms": 10_000,
                    "max_backoff_ms": 300_000,
                    "reset_after_ms": 600_000
                }
            })
        );
        let back: TaskSpec = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, s);
        assert!(back.body.decoded_name.is_empty());
        let nameless = serde_json::json!({"image": "busybox:latest"});
        assert!(serde_json::from_value::<TaskSpec>(nameless).is_err());
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;
    use crate::task::{State, TaskId};

    fn placed(name: &str, node: &str) -> Task {
        let spec: TaskSpec =
            serde_json::from_str(&format!(r#"{{"name":"{name}","image":"busybox:latest"}}"#))
                .expect("a spec");
        let mut t = Task::new(TaskId::new(), spec, State::Pending);
        t.node = Some(node.to_string());
        t.set_state(State::Scheduled, &format!("placed on {node}"))
            .expect("pending to scheduled");
        t
    }

    #[test]
    fn tasks_on_one_node_share_their_history_strings_and_only_new_events_are_looked_at() {
        let mut interner = TaskInterner::default();
        let mut a = placed("a", "n1");
        let mut b = placed("b", "n1");
        let mut c = placed("c", "n2");
        interner.share(&mut a, None);
        interner.share(&mut b, None);
        interner.share(&mut c, None);
        let ea = a.events.back().expect("an event");
        let eb = b.events.back().expect("an event");
        let ec = c.events.back().expect("an event");
        assert!(Arc::ptr_eq(&ea.reason, &eb.reason));
        assert!(Arc::ptr_eq(
            ea.node.as_ref().expect("a node"),
            eb.node.as_ref().expect("a node")
        ));
        assert!(!Arc::ptr_eq(&ea.reason, &ec.reason));
        assert_eq!(&*ec.reason, "placed on n2");
        assert!(Arc::ptr_eq(&a.spec.body, &c.spec.body));

        // A later change: the old events keep their pointers, the new one is shared.
        let mut a2 = a.clone();
        a2.set_state(State::Running, "running")
            .expect("scheduled to running");
        let mut b2 = b.clone();
        b2.set_state(State::Running, "running")
            .expect("scheduled to running");
        interner.share(&mut a2, Some(&a));
        interner.share(&mut b2, Some(&b));
        let (ra, rb) = (
            a2.events.back().expect("an event"),
            b2.events.back().expect("an event"),
        );
        assert!(Arc::ptr_eq(&ra.reason, &rb.reason));
        assert_eq!(a2.events.len(), a.events.len() + 1);
        assert!(a2
            .events
            .iter()
            .zip(a.events.iter())
            .all(|(x, y)| Arc::ptr_eq(&x.reason, &y.reason)));
    }
}
