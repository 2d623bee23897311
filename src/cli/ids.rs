//! Turning what a user types for a task (a full id, a unique prefix of one, or a task name) into
//! the task's id, as docker and nomad do. Ambiguity is a usage error that lists the candidates, so
//! the user can pick one; nothing is guessed.

use crate::client::ManagerClient;
use crate::task::{Task, TaskId};

use super::Failure;

/// Why a reference did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Nothing matches it.
    NoMatch,
    /// Several tasks match: `id name state` for each, in id order.
    Ambiguous(Vec<String>),
}

/// Resolves `reference` against `tasks`: a full id is taken as it is; otherwise every task whose
/// id starts with it (hyphens optional, case ignored) or whose name equals it matches, and exactly
/// one must.
pub fn pick(reference: &str, tasks: &[Task]) -> Result<TaskId, Unresolved> {
    if let Ok(id) = reference.parse::<TaskId>() {
        return Ok(id);
    }
    let wanted: String = reference
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut matches: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            let by_name = t.spec.name == reference;
            let by_id = !wanted.is_empty()
                && wanted.chars().all(|c| c.is_ascii_hexdigit())
                && t.id.to_string().replace('-', "").starts_with(&wanted);
            by_name || by_id
        })
        .collect();
    matches.sort_by_key(|t| t.id.to_string());
    matches.dedup_by_key(|t| t.id);
    match matches.as_slice() {
        [] => Err(Unresolved::NoMatch),
        [one] => Ok(one.id),
        many => Err(Unresolved::Ambiguous(
            many.iter()
                .map(|t| format!("{} {} {}", t.id, t.spec.name, t.state.as_str()))
                .collect(),
        )),
    }
}

/// Resolves a task reference through the manager: a full id costs no request; a prefix or a name
/// lists the tasks once.
pub async fn resolve(manager: &ManagerClient, reference: &str) -> Result<TaskId, Failure> {
    if let Ok(id) = reference.parse::<TaskId>() {
        return Ok(id);
    }
    if reference.is_empty() {
        return Err(Failure::usage(
            "an empty task reference (give an id, a prefix or a name)",
        ));
    }
    let tasks = manager.tasks(None, None).await?;
    pick(reference, &tasks).map_err(|e| match e {
        Unresolved::NoMatch => Failure::op(format!(
            "no task has the id, id prefix or name {reference:?}"
        )),
        Unresolved::Ambiguous(list) => Failure::usage(format!(
            "{reference:?} matches {} tasks, give more of the id: {}",
            list.len(),
            list.join("; ")
        )),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::task::State;

    fn task(id: &str, name: &str) -> Task {
        let body = format!(r#"{{"name": "{name}", "image": "busybox"}}"#);
        let spec = crate::spec::parse_submissions(body.as_bytes()).unwrap()[0]
            .spec
            .clone();
        Task::new(id.parse().unwrap(), spec, State::Running)
    }

    #[test]
    fn a_reference_resolves_by_full_id_unique_prefix_or_name_and_refuses_ambiguity() {
        let tasks = vec![
            task("0a1b2c3d-0000-4000-8000-000000000001", "web"),
            task("0a1b2c3d-0000-4000-8000-000000000002", "db"),
            task("ffee0000-0000-4000-8000-000000000003", "web2"),
            task("12345678-0000-4000-8000-000000000004", "0a1b"),
        ];
        let id = |s: &str| s.parse::<TaskId>().unwrap();
        let amb = |v: &[&str]| {
            Err(Unresolved::Ambiguous(
                v.iter().map(|s| s.to_string()).collect(),
            ))
        };
        let table: Vec<(&str, Result<TaskId, Unresolved>)> = vec![
            // A full id is taken as is, even when no task has it (the manager then says 404).
            (
                "99999999-0000-4000-8000-000000000009",
                Ok(id("99999999-0000-4000-8000-000000000009")),
            ),
            ("ff", Ok(id("ffee0000-0000-4000-8000-000000000003"))),
            ("FFEE", Ok(id("ffee0000-0000-4000-8000-000000000003"))),
            ("web", Ok(id("0a1b2c3d-0000-4000-8000-000000000001"))),
            ("db", Ok(id("0a1b2c3d-0000-4000-8000-000000000002"))),
            (
                "0a1b2c3d-0000-4000-8000-00000000000",
                amb(&[
                    "0a1b2c3d-0000-4000-8000-000000000001 web running",
                    "0a1b2c3d-0000-4000-8000-000000000002 db running",
                ]),
            ),
            (
                "0a1b2c3d00004000800000000000000 2",
                Err(Unresolved::NoMatch),
            ),
            (
                "0a1b2c3d000040008000000000000002",
                Ok(id("0a1b2c3d-0000-4000-8000-000000000002")),
            ),
            // A name that is also a prefix of other ids matches all of them.
            (
                "0a1b",
                amb(&[
                    "0a1b2c3d-0000-4000-8000-000000000001 web running",
                    "0a1b2c3d-0000-4000-8000-000000000002 db running",
                    "12345678-0000-4000-8000-000000000004 0a1b running",
                ]),
            ),
            ("1234", Ok(id("12345678-0000-4000-8000-000000000004"))),
            ("nope", Err(Unresolved::NoMatch)),
            ("we", Err(Unresolved::NoMatch)),
        ];
        for (reference, want) in table {
            assert_eq!(pick(reference, &tasks), want, "reference {reference:?}");
        }
    }
}
