//! Placement rules as users write them: a task's `constraints`, node labels, and the group a task
//! belongs to for `distinct_hosts`; and their translation into the scheduler crate's data.
//!
//! A constraint is stored in the task spec in its normalised JSON shape:
//!
//! ```json
//! {"operator": "=", "attribute": "node.labels.disk", "value": "ssd"}
//! {"operator": "!=", "attribute": "node.name", "value": "w2"}
//! {"operator": "in", "attribute": "node.labels.zone", "value": ["a", "b"]}
//! {"operator": "distinct_hosts"}
//! ```
//!
//! On input `in` also takes a comma-separated string (`"a, b"`, items trimmed); it is stored as the
//! array. The attributes a node has are `node.name` (its name) and `node.labels.KEY` for every label
//! of its worker's config; an attribute a node lacks fails `=` and `in` and passes `!=`. The
//! scheduler crate is told nothing of these strings' origin: the manager turns a spec's constraints
//! into [`poseidon_schedulers::Constraint`]s with [`scheduler_constraints`] and a node's labels into
//! attributes, so other attributes (a host volume a node offers) can be added later by filling the
//! snapshot's attribute map and accepting the name in [`check_attribute`].

use serde::{Deserialize, Serialize};

use poseidon_schedulers::{Constraint as Rule, LABEL_PREFIX, NODE_NAME};

use crate::task::Task;

/// The most constraints one task may carry.
pub const MAX_CONSTRAINTS: usize = 64;

/// The operators, as written in JSON, in the order error messages list them.
pub const OPERATORS: &[&str] = &["=", "!=", "in", "distinct_hosts"];

/// The longest label key, and the longest label or constraint value, in bytes.
pub const MAX_LABEL_KEY: usize = 63;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 255;

/// One rule on where a task may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operator")]
pub enum Constraint {
    /// The node's attribute is set and equals `value`.
    #[serde(rename = "=")]
    Equal {
        /// `node.name` or `node.labels.KEY`.
        attribute: String,
        /// The wanted value.
        value: String,
    },
    /// The node's attribute is not set or differs from `value`.
    #[serde(rename = "!=")]
    NotEqual {
        /// `node.name` or `node.labels.KEY`.
        attribute: String,
        /// The unwanted value.
        value: String,
    },
    /// The node's attribute is set and is one of `value`.
    #[serde(rename = "in")]
    In {
        /// `node.name` or `node.labels.KEY`.
        attribute: String,
        /// The wanted values, at least one.
        value: Vec<String>,
    },
    /// No two tasks of the same group ([`group_key`]) that ask for this run on one node.
    #[serde(rename = "distinct_hosts")]
    DistinctHosts,
}

/// Whether an attribute name is one constraints may test: `node.name`, or `node.labels.KEY` with a
/// valid label key. The error says what is valid.
pub fn check_attribute(attribute: &str) -> Result<(), String> {
    if attribute == NODE_NAME {
        return Ok(());
    }
    match attribute.strip_prefix(LABEL_PREFIX) {
        Some(key) => check_label_key(key)
            .map_err(|e| format!("unknown attribute {attribute:?}: the label key {e}")),
        None => Err(format!(
            "unknown attribute {attribute:?} (valid: {NODE_NAME}, {LABEL_PREFIX}KEY)"
        )),
    }
}

/// A node label key: 1 to 63 letters, digits, '_', '.' or '-'. The error is the rest of a sentence
/// that starts with the key's name.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let ok = (1..=MAX_LABEL_KEY).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not 1 to {MAX_LABEL_KEY} letters, digits, '_', '.' or '-'"
        ))
    }
}

/// A node label value (or a value a constraint compares with): 1 to 255 bytes without control
/// characters, so that "no node fits" messages stay on one readable line.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_LABEL_VALUE {
        Err(format!(
            "{value:?} must be 1 to {MAX_LABEL_VALUE} bytes long"
        ))
    } else if value.chars().any(char::is_control) {
        Err(format!("{value:?} must not contain control characters"))
    } else {
        Ok(())
    }
}

/// Whether any of `constraints` is `distinct_hosts`.
pub fn wants_distinct_hosts(constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .any(|c| matches!(c, Constraint::DistinctHosts))
}

/// The scheduler's form of a spec's attribute constraints (`distinct_hosts` is not among them: the
/// manager turns it into the set of nodes to avoid).
pub fn scheduler_constraints(constraints: &[Constraint]) -> Vec<Rule> {
    constraints
        .iter()
        .filter_map(|c| match c {
            Constraint::Equal { attribute, value } => Some(Rule::equal(attribute, value)),
            Constraint::NotEqual { attribute, value } => Some(Rule::not_equal(attribute, value)),
            Constraint::In { attribute, value } => Some(Rule::one_of(attribute, value)),
            Constraint::DistinctHosts => None,
        })
        .collect()
}

/// The service a task belongs to, if any.
///
/// Read only here, so that [`group_key`] and the drain answer's count of plain tasks agree.
pub fn service_of(task: &Task) -> Option<&str> {
    task.service.as_deref()
}

/// The group a task belongs to for `distinct_hosts`: tasks with the same key that ask for
/// `distinct_hosts` never share a node.
///
/// A service task groups by its service (`service:NAME`), a plain task by its name (`task:NAME`),
/// so a plain task and a service of the same name never collide. Compute keys only here, so the
/// manager's index and every caller agree.
pub fn group_key(task: &Task) -> String {
    match service_of(task) {
        Some(service) => format!("service:{service}"),
        None => format!("task:{}", task.spec.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_keep_their_json_shape_through_the_store() {
        let cases: Vec<(Constraint, &str)> = vec![
            (
                Constraint::Equal {
                    attribute: "node.labels.disk".into(),
                    value: "ssd".into(),
                },
                r#"{"operator":"=","attribute":"node.labels.disk","value":"ssd"}"#,
            ),
            (
                Constraint::NotEqual {
                    attribute: "node.name".into(),
                    value: "w2".into(),
                },
                r#"{"operator":"!=","attribute":"node.name","value":"w2"}"#,
            ),
            (
                Constraint::In {
                    attribute: "node.labels.zone".into(),
                    value: vec!["a".into(), "b".into()],
                },
                r#"{"operator":"in","attribute":"node.labels.zone","value":["a","b"]}"#,
            ),
            (
                Constraint::DistinctHosts,
                r#"{"operator":"distinct_hosts"}"#,
            ),
        ];
        for (constraint, text) in cases {
            let written = serde_json::to_string(&constraint).expect("encodes");
            assert_eq!(written, text);
            let read: Constraint = serde_json::from_str(text).expect("decodes");
            assert_eq!(read, constraint);
        }
    }

    #[test]
    fn only_node_name_and_valid_label_keys_are_attributes() {
        let cases: &[(&str, bool)] = &[
            ("node.name", true),
            ("node.labels.disk", true),
            ("node.labels.rack-1.row_2", true),
            ("node.labels.", false),
            ("node.labels.a b", false),
            ("node.cpus", false),
            ("labels.disk", false),
            ("", false),
        ];
        for (attribute, ok) in cases {
            assert_eq!(check_attribute(attribute).is_ok(), *ok, "{attribute:?}");
        }
    }
}
