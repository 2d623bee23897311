//! Turning user input into a [`TaskSpec`]: Poseidon's own JSON, or the Go original's TaskEvent.
//!
//! Both formats are first read into a small order-preserving JSON tree and then walked by hand, field by
//! field. Walking by hand (rather than deriving `Deserialize` on mirror structs) is what lets every error
//! name the field, the value and what would have been valid, lets a field take two shapes (`"cmd"` as an
//! array or a string) without serde's opaque "did not match any variant" message, and keeps the document
//! order of maps, which the Go format needs to find its "first" exposed port. Whatever the format, the
//! result goes through [`validate`], the one place that knows what a well-formed spec is.
//!
//! This file is the public API; the parts live beside it: `tree` (the JSON tree and typed accessors),
//! `json` (Poseidon's format), `go` (the Go TaskEvent), `checks` (validation shared by both),
//! `volumes` (volumes, the pull policy, and the node attributes host volumes require),
//! `constraints` (the `constraints` array, also [`parse_constraints`] for other objects) and `tests`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::task::{
    HealthCheck, Port, Probe, PullPolicy, RestartKind, RestartPolicy, SpecBody, TaskId, TaskSpec,
};
use crate::util::{parse_duration, parse_size, DURATION_EXAMPLES};

pub use constraints::parse_constraints;

use checks::*;
use go::*;
use json::*;
use tree::*;
use volumes::*;

pub use volumes::{
    host_volume_attribute, offered_node_attributes, required_node_attributes, MAX_TARGET,
    MAX_VOLUME_NAME,
};

/// The most task specs one request may carry.
pub const MAX_SUBMISSIONS: usize = 10_000;
/// The most CPU cores a task may ask for.
pub const MAX_CPUS: f64 = 1024.0;
/// The most memory a task may ask for: 1 TiB.
pub const MAX_MEMORY: u64 = 1 << 40;
/// The least non-zero memory limit: Docker refuses to create a container with less than 6 MiB, so a
/// smaller limit is refused here, at submission, rather than as a failed task later.
pub const MIN_MEMORY: u64 = 6 << 20;
/// Label keys with this prefix are written by Poseidon itself and may not be set by users.
pub const RESERVED_LABEL_PREFIX: &str = "io.poseidon.";
/// The shortest probe interval and timeout, and the shortest `stop_after_disconnect`, in milliseconds.
pub const MIN_INTERVAL_MS: u64 = 100;

const IMAGE_EXAMPLES: &str = "examples: busybox, nginx:1.27, ghcr.io/org/app:v2";
const SIZE_EXAMPLES: &str = "examples: 268435456, 256m, 1g";
const PORT_EXAMPLES: &str = "examples: \"8080:80\", \"80\", \"53/udp\"";
const NAME_RULE: &str = "1 to 63 letters, digits, '_', '.' or '-'";

/// A parsed submission: an optional client-chosen id, and the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The id the client chose (the Go TaskEvent always carries one); `None` lets the server make one.
    pub id: Option<TaskId>,
    /// What to run, validated and normalised (the image has a tag, the name is set).
    pub spec: TaskSpec,
    /// Things the user should know that are not errors, such as "Disk is accepted and ignored".
    pub notes: Vec<String>,
}

/// Why a submission was refused. Every message names the field and says what would have been valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The body is not JSON, or is cut short, or repeats a key.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A field that the format does not have.
    #[error("unknown field {field:?}{} (valid: {valid})", in_place(.place))]
    UnknownField {
        /// The field as written.
        field: String,
        /// Where it was (`health_check`, `ports[1]`), empty at the top level.
        place: String,
        /// The fields that are allowed there, comma-separated.
        valid: String,
    },
    /// A required field is absent (or null).
    #[error("{0} is required")]
    Missing(String),
    /// A field holds the wrong JSON type.
    #[error("{field} must be {expected}, got {got}")]
    WrongType {
        /// The field's path (`ports[0].container_port`, `Task.Memory`).
        field: String,
        /// What it should have been (`a number`).
        expected: &'static str,
        /// What it was (`a string`).
        got: &'static str,
    },
    /// A field has the right type but a value that is not allowed; the message says which and why.
    #[error("{message}")]
    Invalid {
        /// The field's path.
        field: String,
        /// The whole message, which names the field.
        message: String,
    },
    /// More specs than one request may carry.
    #[error("too many tasks in one request: {0} (at most {max})", max = MAX_SUBMISSIONS)]
    TooMany(usize),
    /// One item of an array of specs was refused.
    #[error("item {index}: {error}")]
    Item {
        /// Its position in the array, from 0.
        index: usize,
        /// Why it was refused.
        error: Box<SpecError>,
    },
}

fn in_place(place: &str) -> String {
    if place.is_empty() {
        String::new()
    } else {
        format!(" in {place}")
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses one submission, in Poseidon's JSON or the Go original's TaskEvent (or a bare Go Task).
///
/// The Go format is recognised by a top-level `"Task"` key or by any top-level key that starts with a
/// capital letter, since every Go field does and no Poseidon field does.
pub fn parse_submission(body: &[u8]) -> Result<Submission, SpecError> {
    match read_json(body)? {
        Json::Object(fields) => submission(&fields),
        other => Err(SpecError::WrongType {
            field: "the body".into(),
            expected: "a JSON object (POST an array to /tasks to submit several)",
            got: other.kind(),
        }),
    }
}

/// Parses a single submission object or a JSON array of them (at most [`MAX_SUBMISSIONS`]).
///
/// An error in an item is reported as [`SpecError::Item`] with its index; two items may not carry the
/// same id.
pub fn parse_submissions(body: &[u8]) -> Result<Vec<Submission>, SpecError> {
    match read_json(body)? {
        Json::Object(fields) => Ok(vec![submission(&fields)?]),
        Json::Array(items) => {
            if items.is_empty() {
                return Err(invalid(
                    "the body",
                    "the array is empty (expected at least one task spec)",
                ));
            }
            if items.len() > MAX_SUBMISSIONS {
                return Err(SpecError::TooMany(items.len()));
            }
            let mut out: Vec<Submission> = Vec::with_capacity(items.len());
            let mut seen: BTreeMap<TaskId, usize> = BTreeMap::new();
            for (index, item) in items.iter().enumerate() {
                let wrap = |error: SpecError| SpecError::Item {
                    index,
                    error: Box::new(error),
                };
                let sub = match item {
                    Json::Object(fields) => submission(fields).map_err(wrap)?,
                    other => {
                        return Err(wrap(SpecError::WrongType {
                            field: "each item".into(),
                            expected: "a JSON object",
                            got: other.kind(),
                        }))
                    }
                };
                if let Some(id) = sub.id {
                    if let Some(first) = seen.insert(id, index) {
                        return Err(wrap(invalid(
                            "id",
                            format!("id {id} is also the id of item {first}"),
                        )));
                    }
                }
                out.push(sub);
            }
            Ok(out)
        }
        other => Err(SpecError::WrongType {
            field: "the body".into(),
            expected: "a task spec object or an array of them",
            got: other.kind(),
        }),
    }
}

/// Checks everything a well-formed spec must satisfy, whatever built it; [`parse_submission`] calls it,
/// and code that builds a [`TaskSpec`] by hand (the CLI, tests) can call it too.
///
/// Messages use the names of Poseidon's JSON fields (`health_check.interval`, not `interval_ms`).
pub fn validate(spec: &TaskSpec) -> Result<(), SpecError> {
    check_name(&spec.name, "name")?;
    check_image(&spec.image, "image")?;
    check_cpus(spec.cpus, "cpus")?;
    check_memory(spec.memory, "memory")?;
    for key in spec.env.keys() {
        check_env_key(key)?;
    }
    for key in spec.secrets.keys() {
        check_env_key(key)?;
        if spec.env.contains_key(key) {
            return Err(invalid(
                "secrets",
                format!("{key:?} is both in env and in secrets; keep it in secrets only"),
            ));
        }
    }
    for key in spec.labels.keys() {
        check_label_key(key)?;
    }
    check_ports(&spec.ports)?;
    check_restart(&spec.restart_policy)?;
    if let Some(hc) = &spec.health_check {
        check_health(hc, &spec.ports)?;
    }
    if let Some(ms) = spec.stop_after_disconnect_ms {
        at_least_ms(ms, "stop_after_disconnect")?;
    }
    check_volumes(&spec.volumes)?;
    constraints::check_constraints(&spec.constraints)?;
    Ok(())
}

mod checks;
mod constraints;
mod go;
mod json;
mod service;
mod tree;
mod volumes;

pub use service::{check_service_name, parse_service, service_body};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
