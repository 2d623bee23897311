//! Turning user input into a [`TaskSpec`]: Poseidon's own JSON, or the Go original's TaskEvent.
//!
//! Both formats are first read into a small order-preserving JSON tree and then walked by hand, field by
//! field. Walking by hand (rather than deriving `Deserialize` on mirror structs) is what lets every error
//! name the field, the value and what would have been valid, lets a field take two shapes (`"cmd"` as an
//! array or a string) without serde's opaque "did not match any variant" message, and keeps the document
//! order of maps, which the Go format needs to find its "first" exposed port. Whatever the format, the
//! result goes through [`validate`], the one place that knows what a well-formed spec is.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::task::{HealthCheck, Port, Probe, RestartKind, RestartPolicy, TaskId, TaskSpec};
use crate::util::{parse_duration, parse_size};

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
const DURATION_EXAMPLES: &str = "examples: 500ms, 5s, 2m, 1h";
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
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The JSON tree.
// ---------------------------------------------------------------------------------------------------

/// A JSON value that keeps the order of object keys and refuses duplicate keys (serde_json's own
/// `Value` sorts keys and silently keeps the last of two).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    UInt(u64),
    NegInt(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::UInt(_) | Json::NegInt(_) | Json::Float(_) => "a number",
            Json::Str(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl fmt::Display for Json {
    /// A short rendering of scalars for error messages (`-1`, `1.5`, `"abc"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::UInt(n) => write!(f, "{n}"),
            Json::NegInt(n) => write!(f, "{n}"),
            Json::Float(x) => write!(f, "{x}"),
            Json::Str(s) => write!(f, "{s:?}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(u64::try_from(v).map_or(Json::NegInt(v), Json::UInt))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields: Vec<(String, Json)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Json>()?;
            fields.push((key, value));
        }
        // Sorting a list of references finds a repeated key in n log n, even for a huge `env`.
        let mut keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(de::Error::custom(format!("duplicate field {:?}", pair[0])));
        }
        Ok(Json::Object(fields))
    }
}

fn read_json(body: &[u8]) -> Result<Json, SpecError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SpecError::Json(
            "the body is empty (expected a task spec object)".into(),
        ));
    }
    // serde_json's messages carry the line and column, and its recursion limit turns a deeply nested
    // body into an error rather than a stack overflow.
    serde_json::from_slice(body).map_err(|e| SpecError::Json(e.to_string()))
}

/// The fields of one JSON object, with the path used to name them in errors.
struct Fields<'a> {
    place: String,
    fields: &'a [(String, Json)],
}

impl<'a> Fields<'a> {
    fn new(place: impl Into<String>, fields: &'a [(String, Json)]) -> Self {
        Fields {
            place: place.into(),
            fields,
        }
    }

    fn path(&self, key: &str) -> String {
        if self.place.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.place)
        }
    }

    /// The value of `key`; an explicit `null` counts as absent, as serde's `Option` has it.
    fn get(&self, key: &str) -> Option<&'a Json> {
        self.fields
            .iter()
            .find(|(k, v)| k == key && !matches!(v, Json::Null))
            .map(|(_, v)| v)
    }

    fn deny_unknown(&self, valid: &[&str]) -> Result<(), SpecError> {
        match self
            .fields
            .iter()
            .find(|(k, _)| !valid.contains(&k.as_str()))
        {
            Some((k, _)) => Err(SpecError::UnknownField {
                field: k.clone(),
                place: self.place.clone(),
                valid: valid.join(", "),
            }),
            None => Ok(()),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, SpecError> {
        self.get(key)
            .map(|v| as_str(v, &self.path(key)))
            .transpose()
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, SpecError> {
        self.get(key)
            .map(|v| as_u64(v, &self.path(key)))
            .transpose()
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, SpecError> {
        self.get(key)
            .map(|v| as_f64(v, &self.path(key)))
            .transpose()
    }

    fn duration_ms(&self, key: &str) -> Result<Option<u64>, SpecError> {
        self.get(key)
            .map(|v| duration_ms(v, &self.path(key)))
            .transpose()
    }
}

fn wrong(field: &str, expected: &'static str, got: &Json) -> SpecError {
    SpecError::WrongType {
        field: field.to_string(),
        expected,
        got: got.kind(),
    }
}

fn as_str<'a>(v: &'a Json, field: &str) -> Result<&'a str, SpecError> {
    match v {
        Json::Str(s) => Ok(s),
        other => Err(wrong(field, "a string", other)),
    }
}

fn as_u64(v: &Json, field: &str) -> Result<u64, SpecError> {
    match v {
        Json::UInt(n) => Ok(*n),
        Json::NegInt(_) | Json::Float(_) => Err(invalid(
            field,
            format!("{field} must be a whole number of at least 0, got {v}"),
        )),
        other => Err(wrong(field, "a number", other)),
    }
}

fn as_f64(v: &Json, field: &str) -> Result<f64, SpecError> {
    match v {
        Json::UInt(n) => Ok(*n as f64),
        Json::NegInt(n) => Ok(*n as f64),
        Json::Float(x) => Ok(*x),
        other => Err(wrong(field, "a number", other)),
    }
}

/// A port number; `hint` is added after the valid range (`" (omit it to let Docker choose)"`).
fn as_u16(v: &Json, field: &str, hint: &str) -> Result<u16, SpecError> {
    let n = match v {
        Json::UInt(n) => Some(*n),
        Json::NegInt(_) | Json::Float(_) => None,
        other => return Err(wrong(field, "a number", other)),
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            invalid(
                field,
                format!("{field} must be between 1 and 65535{hint}, got {v}"),
            )
        })
}

fn as_u32(v: &Json, field: &str) -> Result<u32, SpecError> {
    let n = as_u64(v, field)?;
    u32::try_from(n).map_err(|_| {
        invalid(
            field,
            format!("{field} must be at most {}, got {n}", u32::MAX),
        )
    })
}

fn as_object<'a>(v: &'a Json, field: &str) -> Result<&'a [(String, Json)], SpecError> {
    match v {
        Json::Object(fields) => Ok(fields),
        other => Err(wrong(field, "an object", other)),
    }
}

fn duration_ms(v: &Json, field: &str) -> Result<u64, SpecError> {
    // A bare number is refused: "10" could mean seconds or milliseconds, and guessing wrong is worse
    // than asking for a unit.
    let text = match v {
        Json::Str(s) => s,
        other => return Err(wrong(field, "a duration string such as \"10s\"", other)),
    };
    let d = parse_duration(text).map_err(|_| {
        invalid(
            field,
            format!("invalid {field} {text:?} ({DURATION_EXAMPLES})"),
        )
    })?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A list of strings, written as a JSON array of strings or as one string split on whitespace.
fn string_list(v: &Json, field: &str) -> Result<Vec<String>, SpecError> {
    match v {
        Json::Str(s) => Ok(s.split_whitespace().map(str::to_string).collect()),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| as_str(item, &format!("{field}[{i}]")).map(str::to_string))
            .collect(),
        other => Err(wrong(field, "an array of strings or a string", other)),
    }
}

/// A string map, written as an object of strings or (when `pairs_allowed`) an array of `"K=V"`.
fn string_map(
    v: &Json,
    field: &str,
    pairs_allowed: bool,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut map = BTreeMap::new();
    match v {
        Json::Object(fields) => {
            for (k, val) in fields {
                let value = as_str(val, &format!("{field}.{k}"))?;
                map.insert(k.clone(), value.to_string());
            }
        }
        Json::Array(items) if pairs_allowed => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{field}[{i}]");
                let pair = as_str(item, &path)?;
                let Some((k, val)) = pair.split_once('=') else {
                    return Err(invalid(
                        path.clone(),
                        format!("{path} must be KEY=VALUE, got {pair:?}"),
                    ));
                };
                if map.insert(k.to_string(), val.to_string()).is_some() {
                    return Err(invalid(path, format!("{field} sets {k:?} twice")));
                }
            }
        }
        other => {
            let expected = if pairs_allowed {
                "an object or an array of \"KEY=VALUE\" strings"
            } else {
                "an object of strings"
            };
            return Err(wrong(field, expected, other));
        }
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------------
// Poseidon's format.
// ---------------------------------------------------------------------------------------------------

const FIELDS: &[&str] = &[
    "id",
    "name",
    "image",
    "cmd",
    "env",
    "cpus",
    "memory",
    "ports",
    "restart_policy",
    "health_check",
    "labels",
    "stop_after_disconnect",
];
const PORT_FIELDS: &[&str] = &["container_port", "host_port", "protocol"];
const RESTART_FIELDS: &[&str] = &[
    "policy",
    "max_restarts",
    "backoff",
    "max_backoff",
    "reset_after",
];
const HEALTH_FIELDS: &[&str] = &[
    "type",
    "port",
    "path",
    "cmd",
    "interval",
    "timeout",
    "retries",
    "start_period",
];

fn submission(fields: &[(String, Json)]) -> Result<Submission, SpecError> {
    let is_go = fields
        .iter()
        .any(|(k, _)| k == "Task" || k.starts_with(|c: char| c.is_ascii_uppercase()));
    if is_go {
        go_submission(fields)
    } else {
        poseidon_submission(&Fields::new("", fields))
    }
}

fn poseidon_submission(f: &Fields<'_>) -> Result<Submission, SpecError> {
    f.deny_unknown(FIELDS)?;
    let id = f.str("id")?.map(parse_id).transpose()?;
    let image = f.str("image")?.ok_or(SpecError::Missing("image".into()))?;
    let image = check_image(image, "image")?;
    let name = match f.str("name")? {
        Some(name) => name.to_string(),
        None => name_from_image(&image),
    };
    let cmd = f
        .get("cmd")
        .map(|v| string_list(v, "cmd"))
        .transpose()?
        .unwrap_or_default();
    let env = f
        .get("env")
        .map(|v| string_map(v, "env", true))
        .transpose()?
        .unwrap_or_default();
    let labels = f
        .get("labels")
        .map(|v| string_map(v, "labels", false))
        .transpose()?
        .unwrap_or_default();
    let cpus = f.f64("cpus")?.unwrap_or(0.0);
    let memory = f.get("memory").map(memory).transpose()?.unwrap_or(0);
    let ports = f.get("ports").map(ports).transpose()?.unwrap_or_default();
    let restart_policy = f
        .get("restart_policy")
        .map(restart_policy)
        .transpose()?
        .unwrap_or_default();
    let health_check = f.get("health_check").map(health_check).transpose()?;
    let stop_after_disconnect_ms = f.duration_ms("stop_after_disconnect")?;
    let spec = TaskSpec {
        name,
        image,
        cmd,
        env,
        cpus,
        memory,
        ports,
        restart_policy,
        health_check,
        labels,
        stop_after_disconnect_ms,
    };
    validate(&spec)?;
    Ok(Submission {
        id,
        spec,
        notes: Vec::new(),
    })
}

fn parse_id(text: &str) -> Result<TaskId, SpecError> {
    text.parse().map_err(|_| {
        invalid(
            "id",
            format!(
                "invalid id {text:?} (expected a UUID such as 21b23589-5d2d-4731-b5c9-a97e9832d021)"
            ),
        )
    })
}

fn memory(v: &Json) -> Result<u64, SpecError> {
    match v {
        Json::UInt(n) => Ok(*n),
        Json::Str(text) => parse_size(text).map_err(|e| {
            if e.contains("out of range") {
                invalid(
                    "memory",
                    format!("memory must be at most 1t (1 TiB), got {text:?}"),
                )
            } else {
                invalid(
                    "memory",
                    format!("invalid memory {text:?} ({SIZE_EXAMPLES})"),
                )
            }
        }),
        Json::NegInt(_) | Json::Float(_) => Err(invalid(
            "memory",
            format!("invalid memory {v} (a whole number of bytes, or a string; {SIZE_EXAMPLES})"),
        )),
        other => Err(wrong("memory", "a number of bytes or a string", other)),
    }
}

fn ports(v: &Json) -> Result<Vec<Port>, SpecError> {
    let Json::Array(items) = v else {
        return Err(wrong("ports", "an array", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let place = format!("ports[{i}]");
            match item {
                Json::Str(text) => short_port(text, &place),
                Json::Object(fields) => {
                    let f = Fields::new(place.clone(), fields);
                    f.deny_unknown(PORT_FIELDS)?;
                    let container = f
                        .get("container_port")
                        .ok_or_else(|| SpecError::Missing(f.path("container_port")))?;
                    let path = f.path("container_port");
                    let container_port = as_u16(container, &path, "")?;
                    let host_port = f
                        .get("host_port")
                        .map(|v| {
                            let path = f.path("host_port");
                            as_u16(v, &path, " (omit it to let Docker choose)")
                        })
                        .transpose()?;
                    let protocol = f.str("protocol")?.unwrap_or("tcp").to_string();
                    Ok(Port {
                        container_port,
                        host_port,
                        protocol,
                    })
                }
                other => Err(wrong(
                    &place,
                    "an object or a string such as \"8080:80\"",
                    other,
                )),
            }
        })
        .collect()
}

/// Docker's short form: `80`, `8080:80`, `53/udp`, `8053:53/udp`.
fn short_port(text: &str, place: &str) -> Result<Port, SpecError> {
    let bad = |why: &str| {
        invalid(
            place,
            format!("invalid port {text:?} in {place}: {why} ({PORT_EXAMPLES})"),
        )
    };
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, proto)) => (ports, proto),
        None => (text, "tcp"),
    };
    let number = |s: &str| -> Result<u16, SpecError> {
        if s.contains('-') {
            return Err(bad("port ranges are not supported"));
        }
        s.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("a port is a number between 1 and 65535"))
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_port, container_port) = match parts.as_slice() {
        [container] => (None, number(container)?),
        [host, container] => (Some(number(host)?), number(container)?),
        [_, _, _] => return Err(bad("a host IP address is not supported")),
        _ => return Err(bad("too many ':'")),
    };
    Ok(Port {
        container_port,
        host_port,
        protocol: protocol.to_string(),
    })
}

fn restart_kind(name: &str, field: &str) -> Result<RestartKind, SpecError> {
    match name {
        "never" | "no" => Ok(RestartKind::Never),
        "on-failure" => Ok(RestartKind::OnFailure),
        "always" | "unless-stopped" => Ok(RestartKind::Always),
        _ => Err(invalid(
            field,
            format!(
                "unknown {field} {name:?} (valid: never, no, on-failure, always, unless-stopped)"
            ),
        )),
    }
}

fn restart_policy(v: &Json) -> Result<RestartPolicy, SpecError> {
    let fields = match v {
        Json::Str(name) => {
            return Ok(RestartPolicy::of(restart_kind(name, "restart_policy")?));
        }
        Json::Object(fields) => fields,
        other => {
            return Err(wrong(
                "restart_policy",
                "a policy name or an object with a \"policy\" field",
                other,
            ))
        }
    };
    let f = Fields::new("restart_policy", fields);
    f.deny_unknown(RESTART_FIELDS)?;
    let kind = f
        .str("policy")?
        .ok_or_else(|| SpecError::Missing(f.path("policy")))?;
    let mut policy = RestartPolicy::of(restart_kind(kind, "restart_policy.policy")?);
    policy.max_restarts = f
        .get("max_restarts")
        .map(|v| as_u32(v, "restart_policy.max_restarts"))
        .transpose()?;
    let backoff = f.duration_ms("backoff")?;
    let max_backoff = f.duration_ms("max_backoff")?;
    if let Some(ms) = backoff {
        policy.backoff_ms = ms;
    }
    match max_backoff {
        Some(ms) => policy.max_backoff_ms = ms,
        // A first delay longer than the default cap raises the cap with it: the user asked for that
        // delay and did not ask for a shorter one later.
        None => policy.max_backoff_ms = policy.max_backoff_ms.max(policy.backoff_ms),
    }
    if let Some(ms) = f.duration_ms("reset_after")? {
        policy.reset_after_ms = ms;
    }
    Ok(policy)
}

fn health_check(v: &Json) -> Result<HealthCheck, SpecError> {
    let f = Fields::new("health_check", as_object(v, "health_check")?);
    f.deny_unknown(HEALTH_FIELDS)?;
    let kind = f.str("type")?.ok_or_else(|| {
        invalid(
            "health_check.type",
            "health_check.type is required (valid: http, tcp, exec)",
        )
    })?;
    // Fields that belong to another kind of check are refused rather than ignored, so that a check
    // never silently probes something other than what its author wrote.
    let only_for = |key: &str, kinds: &str| -> Result<(), SpecError> {
        match f.get(key) {
            Some(_) => Err(invalid(
                f.path(key),
                format!("{} is only for {kinds} checks, not {kind}", f.path(key)),
            )),
            None => Ok(()),
        }
    };
    let port = || -> Result<u16, SpecError> {
        let path = f.path("port");
        match f.get("port") {
            Some(v) => as_u16(v, &path, ""),
            None => Err(invalid(
                path.clone(),
                format!("{path} is required for {kind} checks"),
            )),
        }
    };
    let probe = match kind {
        "http" => {
            only_for("cmd", "exec")?;
            Probe::Http {
                port: port()?,
                path: f.str("path")?.unwrap_or("/").to_string(),
            }
        }
        "tcp" => {
            only_for("cmd", "exec")?;
            only_for("path", "http")?;
            Probe::Tcp { port: port()? }
        }
        "exec" => {
            only_for("port", "http and tcp")?;
            only_for("path", "http")?;
            let cmd = f
                .get("cmd")
                .map(|v| string_list(v, "health_check.cmd"))
                .transpose()?
                .unwrap_or_default();
            Probe::Exec { cmd }
        }
        other => {
            return Err(invalid(
                "health_check.type",
                format!("unknown health_check.type {other:?} (valid: http, tcp, exec)"),
            ))
        }
    };
    let mut hc = HealthCheck {
        probe,
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    };
    if let Some(ms) = f.duration_ms("interval")? {
        hc.interval_ms = ms;
    }
    if let Some(ms) = f.duration_ms("timeout")? {
        hc.timeout_ms = ms;
    }
    if let Some(v) = f.get("retries") {
        hc.retries = as_u32(v, "health_check.retries")?;
    }
    if let Some(ms) = f.duration_ms("start_period")? {
        hc.start_period_ms = ms;
    }
    Ok(hc)
}

// ---------------------------------------------------------------------------------------------------
// The Go original's format.
// ---------------------------------------------------------------------------------------------------

/// The Go Task's fields that Poseidon reads.
const GO_TASK_FIELDS: &[&str] = &[
    "ID",
    "Name",
    "State",
    "Image",
    "Cpu",
    "Memory",
    "Disk",
    "ExposedPorts",
    "PortBindings",
    "RestartPolicy",
    "HealthCheck",
    "Cmd",
    "Env",
];
/// The Go Task's fields that describe a past run rather than a wish; they are accepted and ignored.
const GO_OBSERVED_FIELDS: &[&str] = &[
    "ContainerID",
    "HostPorts",
    "StartTime",
    "FinishTime",
    "RestartCount",
];
const GO_EVENT_FIELDS: &[&str] = &["ID", "State", "Timestamp", "Task"];

fn go_submission(fields: &[(String, Json)]) -> Result<Submission, SpecError> {
    let top = Fields::new("", fields);
    let mut notes = Vec::new();
    if let Some(task) = top.get("Task") {
        refuse_mixed(&top)?;
        // The event's own fields are checked for type, as the Go decoder would, and otherwise ignored:
        // the event's ID names the event, not the task, and a submission always starts Pending.
        top.str("ID")?;
        top.str("Timestamp")?;
        go_state(&top)?;
        note_unknown(&top, GO_EVENT_FIELDS, &[], &mut notes);
        let task = Fields::new("Task", as_object(task, "Task")?);
        go_task(&task, notes)
    } else if top.fields.iter().any(|(k, _)| k == "Task") {
        Err(wrong("Task", "an object", &Json::Null))
    } else {
        go_task(&top, notes)
    }
}

/// Refuses a body that mixes the two formats, which is almost always a hand-edited file where one of
/// the two halves would otherwise be silently ignored.
fn refuse_mixed(f: &Fields<'_>) -> Result<(), SpecError> {
    let Some((ours, _)) = f.fields.iter().find(|(k, _)| FIELDS.contains(&k.as_str())) else {
        return Ok(());
    };
    let theirs = f
        .fields
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
        .map_or_else(|| f.path("Task"), |k| f.path(k));
    Err(invalid(
        f.path(ours),
        format!(
            "{:?} is a Poseidon field but {theirs:?} is a Go TaskEvent field; write one format, not both",
            f.path(ours)
        ),
    ))
}

fn note_unknown(f: &Fields<'_>, known: &[&str], observed: &[&str], notes: &mut Vec<String>) {
    for (k, _) in f.fields {
        if !known.contains(&k.as_str()) && !observed.contains(&k.as_str()) {
            notes.push(format!("unknown Go field {:?} is ignored", f.path(k)));
        }
    }
}

fn go_state(f: &Fields<'_>) -> Result<(), SpecError> {
    let Some(v) = f.get("State") else {
        return Ok(());
    };
    let path = f.path("State");
    let n = match v {
        Json::UInt(n) => Some(*n),
        Json::NegInt(_) | Json::Float(_) => None,
        other => return Err(wrong(&path, "a number", other)),
    };
    if n.is_some_and(|n| n <= 4) {
        Ok(())
    } else {
        Err(invalid(
            path.clone(),
            format!(
                "{path} must be between 0 and 4 (pending, scheduled, running, completed, failed), got {v}"
            ),
        ))
    }
}

fn go_task(f: &Fields<'_>, mut notes: Vec<String>) -> Result<Submission, SpecError> {
    refuse_mixed(f)?;
    note_unknown(f, GO_TASK_FIELDS, GO_OBSERVED_FIELDS, &mut notes);
    for key in ["ContainerID", "StartTime", "FinishTime"] {
        f.str(key)?;
    }
    f.u64("RestartCount")?;
    go_state(f)?;

    let id = match f.str("ID")? {
        // Go writes the zero UUID for a task whose ID was never set; that means "make one for me".
        Some(text) => match text.parse::<TaskId>() {
            Ok(id) if id.0.is_nil() => {
                notes.push(format!(
                    "{} is the nil UUID, so the server chose an id",
                    f.path("ID")
                ));
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                let path = f.path("ID");
                return Err(invalid(
                    path.clone(),
                    format!("invalid {path} {text:?} (expected a UUID such as 21b23589-5d2d-4731-b5c9-a97e9832d021)"),
                ));
            }
        },
        None => None,
    };

    let image = match f.str("Image")? {
        Some(image) if !image.is_empty() => check_image(image, &f.path("Image"))?,
        _ => return Err(SpecError::Missing(f.path("Image"))),
    };
    // Go writes "" for an unset name; like a missing name, it is derived from the image.
    let name = match f.str("Name")? {
        Some(name) if !name.is_empty() => {
            check_name(name, &f.path("Name"))?;
            name.to_string()
        }
        _ => name_from_image(&image),
    };

    let cpus = f.f64("Cpu")?.unwrap_or(0.0);
    check_cpus(cpus, &f.path("Cpu"))?;
    let memory = f.u64("Memory")?.unwrap_or(0);
    check_memory(memory, &f.path("Memory"))?;
    // Disk is an int64 in Go; it is type-checked like the rest, then ignored, because Docker has no
    // portable per-container disk limit. Go writes 0 when it is unset, which asks for nothing.
    if let Some(v) = f.get("Disk") {
        let disk = as_f64(v, &f.path("Disk"))?;
        if disk != 0.0 {
            notes.push("Disk is accepted and ignored".to_string());
        }
    }

    let cmd = f
        .get("Cmd")
        .map(|v| string_list(v, &f.path("Cmd")))
        .transpose()?
        .unwrap_or_default();
    let env = f
        .get("Env")
        .map(|v| string_map(v, &f.path("Env"), true))
        .transpose()?
        .unwrap_or_default();

    let ports = go_ports(f)?;
    let restart_policy = match f.str("RestartPolicy")? {
        None | Some("") | Some("no") => RestartPolicy::of(RestartKind::Never),
        Some("on-failure") => RestartPolicy::of(RestartKind::OnFailure),
        Some("always") | Some("unless-stopped") => RestartPolicy::of(RestartKind::Always),
        Some(other) => {
            let path = f.path("RestartPolicy");
            return Err(invalid(
                path.clone(),
                format!(
                    "unknown {path} {other:?} (valid: \"\", no, on-failure, always, unless-stopped)"
                ),
            ));
        }
    };
    let health_check = match f.str("HealthCheck")? {
        None | Some("") => None,
        Some(path) => Some(go_health_check(f, path, &ports)?),
    };

    let spec = TaskSpec {
        name,
        image,
        cmd,
        env,
        cpus,
        memory,
        ports,
        restart_policy,
        health_check,
        labels: BTreeMap::new(),
        stop_after_disconnect_ms: None,
    };
    validate(&spec)?;
    Ok(Submission { id, spec, notes })
}

/// `ExposedPorts` (`{"80/tcp": {}}`) and `PortBindings` (`{"80/tcp": "8080"}`): every exposed port is
/// published, on the bound host port if there is one and on a port Docker chooses if not; a binding of a
/// port that is not exposed publishes it too, as Docker does. Exposed ports come first, in the order
/// written.
fn go_ports(f: &Fields<'_>) -> Result<Vec<Port>, SpecError> {
    let exposed_path = f.path("ExposedPorts");
    let bindings_path = f.path("PortBindings");
    let exposed = match f.get("ExposedPorts") {
        Some(v) => as_object(v, &exposed_path)?,
        None => &[],
    };
    let bindings = match f.get("PortBindings") {
        Some(v) => as_object(v, &bindings_path)?,
        None => &[],
    };
    let mut ports: Vec<Port> = Vec::new();
    for (key, value) in exposed {
        // nat.PortSet's values are empty structs.
        if !matches!(value, Json::Object(_) | Json::Null) {
            return Err(wrong(
                &format!("{exposed_path}[{key:?}]"),
                "an empty object",
                value,
            ));
        }
        let (container_port, protocol) = go_port_key(key, &exposed_path)?;
        if ports
            .iter()
            .any(|p| p.container_port == container_port && p.protocol == protocol)
        {
            return Err(invalid(
                exposed_path.clone(),
                format!("{exposed_path} lists {container_port}/{protocol} twice"),
            ));
        }
        ports.push(Port {
            container_port,
            host_port: None,
            protocol,
        });
    }
    for (key, value) in bindings {
        let (container_port, protocol) = go_port_key(key, &bindings_path)?;
        let path = format!("{bindings_path}[{key:?}]");
        let text = as_str(value, &path)?;
        let host_port = if text.is_empty() {
            None
        } else {
            Some(
                text.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        invalid(
                            path.clone(),
                            format!("{path} must be a host port between 1 and 65535 such as \"8080\", or \"\" to let Docker choose, got {text:?}"),
                        )
                    })?,
            )
        };
        match ports
            .iter_mut()
            .find(|p| p.container_port == container_port && p.protocol == protocol)
        {
            Some(port) if port.host_port.is_none() => port.host_port = host_port,
            Some(_) => {
                return Err(invalid(
                    bindings_path.clone(),
                    format!("{bindings_path} binds {container_port}/{protocol} twice"),
                ))
            }
            None => ports.push(Port {
                container_port,
                host_port,
                protocol,
            }),
        }
    }
    Ok(ports)
}

/// A `nat.Port` key: `80/tcp`, `53/udp`, or a bare `80` meaning tcp.
fn go_port_key(key: &str, place: &str) -> Result<(u16, String), SpecError> {
    let (number, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
    let port = number.parse::<u16>().ok().filter(|n| *n > 0);
    match (port, protocol) {
        (Some(port), "tcp" | "udp") => Ok((port, protocol.to_string())),
        _ => Err(invalid(
            place,
            format!("invalid port {key:?} in {place} (examples: \"80/tcp\", \"53/udp\")"),
        )),
    }
}

/// The original probed `HealthCheck` over HTTP on the task's published port; Poseidon does the same on
/// the first exposed tcp port.
fn go_health_check(f: &Fields<'_>, path: &str, ports: &[Port]) -> Result<HealthCheck, SpecError> {
    let field = f.path("HealthCheck");
    if !path.starts_with('/') {
        return Err(invalid(
            field.clone(),
            format!("{field} must be a path starting with \"/\", got {path:?}"),
        ));
    }
    let port = ports.iter().find(|p| p.protocol == "tcp").ok_or_else(|| {
        invalid(
            field.clone(),
            format!(
                "{field} needs a tcp port to probe; add one to {}",
                f.path("ExposedPorts")
            ),
        )
    })?;
    Ok(HealthCheck {
        probe: Probe::Http {
            port: port.container_port,
            path: path.to_string(),
        },
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    })
}

// ---------------------------------------------------------------------------------------------------
// Checks shared by both formats and by `validate`.
// ---------------------------------------------------------------------------------------------------

fn check_name(name: &str, field: &str) -> Result<(), SpecError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("invalid {field} {name:?} ({NAME_RULE})"),
        ))
    }
}

fn check_cpus(cpus: f64, field: &str) -> Result<(), SpecError> {
    if cpus.is_finite() && (0.0..=MAX_CPUS).contains(&cpus) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} must be between 0 and 1024, got {cpus}"),
        ))
    }
}

fn check_memory(memory: u64, field: &str) -> Result<(), SpecError> {
    if memory > MAX_MEMORY {
        Err(invalid(
            field,
            format!("{field} must be at most 1 TiB ({MAX_MEMORY} bytes), got {memory}"),
        ))
    } else if memory != 0 && memory < MIN_MEMORY {
        Err(invalid(
            field,
            format!(
                "{field} must be 0 (no limit) or at least 6m ({MIN_MEMORY} bytes, Docker's minimum), got {memory}"
            ),
        ))
    } else {
        Ok(())
    }
}

fn check_env_key(key: &str) -> Result<(), SpecError> {
    if key.is_empty() {
        Err(invalid("env", "env keys must not be empty"))
    } else if key.contains('=') {
        Err(invalid(
            "env",
            format!("invalid env key {key:?} (keys must not contain \"=\")"),
        ))
    } else {
        Ok(())
    }
}

fn check_label_key(key: &str) -> Result<(), SpecError> {
    if key.is_empty() {
        Err(invalid("labels", "label keys must not be empty"))
    } else if key.starts_with(RESERVED_LABEL_PREFIX) {
        Err(invalid(
            "labels",
            format!("label key {key:?} is reserved (keys starting with {RESERVED_LABEL_PREFIX} belong to Poseidon)"),
        ))
    } else {
        Ok(())
    }
}

fn check_ports(ports: &[Port]) -> Result<(), SpecError> {
    for (i, p) in ports.iter().enumerate() {
        let place = format!("ports[{i}]");
        if p.container_port == 0 {
            return Err(invalid(
                place.clone(),
                format!("{place}.container_port must be between 1 and 65535, got 0"),
            ));
        }
        if p.host_port == Some(0) {
            return Err(invalid(
                place.clone(),
                format!("{place}.host_port must be between 1 and 65535 (omit it to let Docker choose), got 0"),
            ));
        }
        if p.protocol != "tcp" && p.protocol != "udp" {
            return Err(invalid(
                place.clone(),
                format!(
                    "{place}.protocol must be \"tcp\" or \"udp\", got {:?}",
                    p.protocol
                ),
            ));
        }
        if let Some(j) = ports[..i].iter().position(|q| *q == *p) {
            return Err(invalid(
                place.clone(),
                format!("{place} repeats ports[{j}]"),
            ));
        }
        if let Some(host) = p.host_port {
            if let Some(j) = ports[..i]
                .iter()
                .position(|q| q.host_port == Some(host) && q.protocol == p.protocol)
            {
                return Err(invalid(
                    place.clone(),
                    format!(
                        "host port {host}/{} is published twice (ports[{j}] and {place})",
                        p.protocol
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_restart(policy: &RestartPolicy) -> Result<(), SpecError> {
    if policy.max_restarts.is_some() && policy.policy != RestartKind::OnFailure {
        return Err(invalid(
            "restart_policy.max_restarts",
            "restart_policy.max_restarts is only for the on-failure policy",
        ));
    }
    if policy.max_backoff_ms < policy.backoff_ms {
        return Err(invalid(
            "restart_policy.max_backoff",
            format!(
                "restart_policy.max_backoff ({}) must not be shorter than restart_policy.backoff ({})",
                human_ms(policy.max_backoff_ms),
                human_ms(policy.backoff_ms)
            ),
        ));
    }
    Ok(())
}

fn check_health(hc: &HealthCheck, ports: &[Port]) -> Result<(), SpecError> {
    at_least_ms(hc.interval_ms, "health_check.interval")?;
    at_least_ms(hc.timeout_ms, "health_check.timeout")?;
    if hc.retries < 1 {
        return Err(invalid(
            "health_check.retries",
            "health_check.retries must be at least 1, got 0",
        ));
    }
    let port = match &hc.probe {
        Probe::Exec { cmd } => {
            if cmd.is_empty() {
                return Err(invalid(
                    "health_check.cmd",
                    "health_check.cmd must not be empty for exec checks",
                ));
            }
            return Ok(());
        }
        Probe::Http { port, path } => {
            if !path.starts_with('/') {
                return Err(invalid(
                    "health_check.path",
                    format!("health_check.path must start with \"/\", got {path:?}"),
                ));
            }
            *port
        }
        Probe::Tcp { port } => *port,
    };
    // A check reaches the container through one of its published ports, so a check on a port that is
    // not published could never succeed, and the task would be killed as unhealthy for a typo.
    if ports
        .iter()
        .any(|p| p.container_port == port && p.protocol == "tcp")
    {
        return Ok(());
    }
    let published: Vec<String> = ports
        .iter()
        .map(|p| format!("{}/{}", p.container_port, p.protocol))
        .collect();
    let published = if published.is_empty() {
        "none".to_string()
    } else {
        published.join(", ")
    };
    Err(invalid(
        "health_check.port",
        format!(
            "health_check.port {port} is not a published tcp container port (published: {published}); checks reach the container through a published port"
        ),
    ))
}

fn at_least_ms(ms: u64, field: &str) -> Result<(), SpecError> {
    if ms >= MIN_INTERVAL_MS {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} must be at least 100ms, got {}", human_ms(ms)),
        ))
    }
}

fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The default name: the image's last path component, without its tag or digest.
fn name_from_image(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo = last.split(':').next().unwrap_or(last);
    repo.chars().take(63).collect()
}

/// Checks an image reference against Docker's grammar and returns it with `:latest` appended when it
/// has neither tag nor digest, so that what is stored is what runs.
fn check_image(image: &str, field: &str) -> Result<String, SpecError> {
    image_reference(image).map_err(|why| {
        invalid(
            field,
            format!("invalid {field} {image:?}: {why} ({IMAGE_EXAMPLES})"),
        )
    })
}

fn image_reference(image: &str) -> Result<String, String> {
    if image.is_empty() {
        return Err("it is empty".into());
    }
    if image.len() > 255 {
        return Err(format!(
            "it is {} characters long (at most 255)",
            image.len()
        ));
    }
    // Upper-case letters are let through here because a tag (and a registry host) may hold them;
    // the repository path is checked for lower case below.
    if let Some(c) = image
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return Err(format!(
            "{c:?} is not allowed (only lower-case letters, digits and . _ - / : @)"
        ));
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A colon is a tag separator only after the last slash; before it, it is a registry's port.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    check_repository(name)?;
    Ok(if digest.is_some() || tag.is_some() {
        image.to_string()
    } else {
        format!("{image}:latest")
    })
}

fn check_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("a digest is sha256: followed by 64 hex digits".into()),
    };
    if hex.len() == want && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "a {algorithm} digest is {want} lower-case hex digits"
        ))
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let first_ok = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err("a tag is 1 to 128 letters, digits, _ . - and does not start with . or -".into())
    }
}

fn check_repository(name: &str) -> Result<(), String> {
    let components: Vec<&str> = name.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err("it has an empty path component (a leading, trailing or doubled /)".into());
    }
    // Docker's rule: the first component is a registry host when more follow and it has a dot or a
    // port, or is `localhost`.
    let path = match components.as_slice() {
        [host, rest @ ..]
            if !rest.is_empty()
                && (host.contains('.') || host.contains(':') || *host == "localhost") =>
        {
            check_registry(host)?;
            rest
        }
        all => all,
    };
    for component in path {
        check_path_component(component)?;
    }
    Ok(())
}

fn check_registry(host: &str) -> Result<(), String> {
    let (hostname, port) = match host.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    let labels_ok = hostname.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    if labels_ok && port_ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not a valid registry host[:port]"))
    }
}

/// A path component is lower-case letters and digits, separated by one `.`, one or two `_`, or any
/// number of `-`, and it starts and ends with a letter or digit.
fn check_path_component(component: &str) -> Result<(), String> {
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lower-case".into());
    }
    if component.contains(':') {
        return Err(format!("{component:?} holds a ':' outside the tag"));
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut ok =
        bytes.first().is_some_and(|b| alnum(*b)) && bytes.last().is_some_and(|b| alnum(*b));
    let mut i = 0;
    while ok && i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{component:?} is not a valid path component (letters and digits joined by one '.', one or two '_', or '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, image: &str) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            image: image.into(),
            cmd: vec![],
            env: BTreeMap::new(),
            cpus: 0.0,
            memory: 0,
            ports: vec![],
            restart_policy: RestartPolicy::default(),
            health_check: None,
            labels: BTreeMap::new(),
            stop_after_disconnect_ms: None,
        }
    }

    fn port(container_port: u16, host_port: Option<u16>, protocol: &str) -> Port {
        Port {
            container_port,
            host_port,
            protocol: protocol.into(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(body: &str) -> Submission {
        parse_submission(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn error(body: &str) -> String {
        match parse_submission(body.as_bytes()) {
            Ok(sub) => panic!("{body} was accepted as {sub:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The seed's Go TaskEvent, verbatim.
    const SEED_TASK1: &str = r#"{
   "ID": "6be4cb6b-61d1-40cb-bc7b-9cacefefa60c",
   "State": 2,
   "Task": {
       "State": 1,
       "ID": "21b23589-5d2d-4731-b5c9-a97e9832d021",
       "Name": "test-chapter-5",
       "Image": "strm/helloworld-http"
   }
}"#;

    #[test]
    fn good_poseidon_specs_map_to_the_expected_task_spec() {
        let full = r#"{
            "id": "21b23589-5d2d-4731-b5c9-a97e9832d021",
            "name": "web",
            "image": "nginx:1.27",
            "cmd": ["nginx", "-g", "daemon off;"],
            "env": {"A": "1", "B": "x=y"},
            "cpus": 0.5,
            "memory": "256m",
            "ports": [{"container_port": 80, "host_port": 8080}, "53/udp"],
            "restart_policy": {"policy": "on-failure", "max_restarts": 3, "backoff": "1s",
                               "max_backoff": "1m", "reset_after": "10m"},
            "health_check": {"type": "http", "port": 80, "path": "/healthz", "interval": "5s",
                             "timeout": "500ms", "retries": 2, "start_period": "30s"},
            "labels": {"team": "a"},
            "stop_after_disconnect": "3s"
        }"#;
        let mut full_spec = spec("web", "nginx:1.27");
        full_spec.cmd = vec!["nginx".into(), "-g".into(), "daemon off;".into()];
        full_spec.env = map(&[("A", "1"), ("B", "x=y")]);
        full_spec.cpus = 0.5;
        full_spec.memory = 268_435_456;
        full_spec.ports = vec![port(80, Some(8080), "tcp"), port(53, None, "udp")];
        full_spec.restart_policy = RestartPolicy {
            policy: RestartKind::OnFailure,
            max_restarts: Some(3),
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            reset_after_ms: 600_000,
        };
        full_spec.health_check = Some(HealthCheck {
            probe: Probe::Http {
                port: 80,
                path: "/healthz".into(),
            },
            interval_ms: 5_000,
            timeout_ms: 500,
            retries: 2,
            start_period_ms: 30_000,
        });
        full_spec.labels = map(&[("team", "a")]);
        full_spec.stop_after_disconnect_ms = Some(3_000);

        let mut short_forms = spec("busybox", "busybox:latest");
        short_forms.cmd = vec!["sleep".into(), "60".into()];
        short_forms.env = map(&[("A", "1"), ("EMPTY", "")]);
        short_forms.memory = 1_073_741_824;
        short_forms.cpus = 2.0;
        short_forms.ports = vec![
            port(80, Some(8080), "tcp"),
            port(80, None, "tcp"),
            port(53, None, "udp"),
            port(53, Some(8053), "udp"),
        ];
        short_forms.restart_policy = RestartPolicy::of(RestartKind::Always);

        let mut tcp_check = spec("app", "localhost:5000/team/app:latest");
        tcp_check.ports = vec![port(9000, None, "tcp")];
        tcp_check.health_check = Some(HealthCheck {
            probe: Probe::Tcp { port: 9000 },
            interval_ms: 10_000,
            timeout_ms: 1_000,
            retries: 3,
            start_period_ms: 0,
        });
        tcp_check.restart_policy = RestartPolicy::of(RestartKind::Never);

        let digest = format!("app@sha256:{}", "a".repeat(64));
        let mut exec_check = spec("app", &digest);
        exec_check.memory = 104_857_600;
        exec_check.health_check = Some(HealthCheck {
            probe: Probe::Exec {
                cmd: vec!["cat".into(), "/tmp/ok".into()],
            },
            interval_ms: 10_000,
            timeout_ms: 1_000,
            retries: 3,
            start_period_ms: 0,
        });
        exec_check.restart_policy = RestartPolicy {
            backoff_ms: 600_000,
            max_backoff_ms: 600_000,
            ..RestartPolicy::of(RestartKind::Always)
        };

        let cases: Vec<(String, Option<&str>, TaskSpec)> = vec![
            (
                full.to_string(),
                Some("21b23589-5d2d-4731-b5c9-a97e9832d021"),
                full_spec,
            ),
            (
                r#"{"image": "busybox"}"#.to_string(),
                None,
                spec("busybox", "busybox:latest"),
            ),
            (
                r#"{"image": "busybox", "cmd": "sleep   60", "env": ["A=1", "EMPTY="],
                    "memory": 1073741824, "cpus": 2,
                    "ports": ["8080:80", "80", "53/udp", "8053:53/udp"],
                    "restart_policy": "unless-stopped", "name": null}"#
                    .to_string(),
                None,
                short_forms,
            ),
            (
                r#"{"image": "localhost:5000/team/app", "ports": [9000], "restart_policy": "no",
                    "health_check": {"type": "tcp", "port": 9000}}"#
                    .replace("[9000]", r#"[{"container_port": 9000}]"#),
                None,
                tcp_check,
            ),
            (
                format!(
                    r#"{{"image": "{digest}", "memory": "100m",
                        "health_check": {{"type": "exec", "cmd": "cat /tmp/ok"}},
                        "restart_policy": {{"policy": "always", "backoff": "10m"}}}}"#
                ),
                None,
                exec_check,
            ),
        ];
        for (body, id, expected) in cases {
            let sub = parse(&body);
            assert_eq!(sub.spec, expected, "{body}");
            assert_eq!(sub.id.map(|id| id.to_string()).as_deref(), id, "{body}");
            assert!(sub.notes.is_empty(), "{body}: {:?}", sub.notes);
        }
    }

    #[test]
    fn images_are_normalised_and_names_derived_from_them() {
        let sha = "b".repeat(64);
        let digest = format!("app@sha256:{sha}");
        let tagged_digest = format!("host:5000/app:1@sha256:{sha}");
        let cases: [(&str, &str, &str); 11] = [
            ("busybox", "busybox:latest", "busybox"),
            ("busybox:1.36", "busybox:1.36", "busybox"),
            ("library/busybox", "library/busybox:latest", "busybox"),
            (
                "strm/helloworld-http",
                "strm/helloworld-http:latest",
                "helloworld-http",
            ),
            ("localhost:5000/app", "localhost:5000/app:latest", "app"),
            ("host:5000/repo", "host:5000/repo:latest", "repo"),
            ("host:5000/repo:v2", "host:5000/repo:v2", "repo"),
            ("ghcr.io/org/app:V2_rc", "ghcr.io/org/app:V2_rc", "app"),
            ("a__b.c-d--e", "a__b.c-d--e:latest", "a__b.c-d--e"),
            (&digest, &digest, "app"),
            (&tagged_digest, &tagged_digest, "app"),
        ];
        for (image, normalised, name) in cases {
            let sub = parse(&format!(r#"{{"image": "{image}"}}"#));
            assert_eq!(sub.spec.image, normalised, "{image}");
            assert_eq!(sub.spec.name, name, "{image}");
        }
    }

    #[test]
    fn bad_poseidon_specs_are_refused_with_a_clear_message() {
        let long_image = format!(r#"{{"image": "{}"}}"#, "a".repeat(256));
        let long_name = format!(r#"{{"image": "busybox", "name": "{}"}}"#, "n".repeat(64));
        let cases: Vec<(&str, &str)> = vec![
            ("", "malformed JSON: the body is empty"),
            (r#"{"image": "busybox""#, "malformed JSON: EOF while parsing an object"),
            (r#"{"image": "busybox"} x"#, "malformed JSON: trailing characters"),
            (r#"{"image": "a", "image": "b"}"#, "malformed JSON: duplicate field \"image\""),
            ("[1]", "the body must be a JSON object"),
            ("42", "the body must be a JSON object (POST an array to /tasks to submit several), got a number"),
            (r#"{"imgae": "busybox"}"#, "unknown field \"imgae\" (valid: id, name, image, cmd, env, cpus, memory, ports, restart_policy, health_check, labels, stop_after_disconnect)"),
            (r#"{"name": "x"}"#, "image is required"),
            (r#"{"image": null}"#, "image is required"),
            (r#"{"image": 7}"#, "image must be a string, got a number"),
            (r#"{"image": ""}"#, "invalid image \"\": it is empty (examples: busybox, nginx:1.27, ghcr.io/org/app:v2)"),
            (r#"{"image": "Busybox"}"#, "invalid image \"Busybox\": repository names must be lower-case"),
            (r#"{"image": "busy box"}"#, "invalid image \"busy box\": ' ' is not allowed"),
            (r#"{"image": "/busybox"}"#, "empty path component"),
            (r#"{"image": "busybox/"}"#, "empty path component"),
            (r#"{"image": "-busybox"}"#, "is not a valid path component"),
            (r#"{"image": "busy..box"}"#, "is not a valid path component"),
            (r#"{"image": "busybox:"}"#, "a tag is 1 to 128"),
            (r#"{"image": "busybox:.x"}"#, "a tag is 1 to 128"),
            (r#"{"image": "app@sha256:abcd"}"#, "a sha256 digest is 64 lower-case hex digits"),
            (r#"{"image": "app@md5:abcd"}"#, "a digest is sha256: followed by 64 hex digits"),
            (r#"{"image": "host:99999/app"}"#, "\"host:99999\" is not a valid registry host[:port]"),
            (long_image.as_str(), "it is 256 characters long (at most 255)"),
            (r#"{"image": "busybox", "id": "nope"}"#, "invalid id \"nope\" (expected a UUID"),
            (r#"{"image": "busybox", "name": ""}"#, "invalid name \"\" (1 to 63 letters, digits, '_', '.' or '-')"),
            (r#"{"image": "busybox", "name": "my app"}"#, "invalid name \"my app\""),
            (long_name.as_str(), "invalid name \"nnnn"),
            (r#"{"image": "busybox", "cpus": -1}"#, "cpus must be between 0 and 1024, got -1"),
            (r#"{"image": "busybox", "cpus": 1025}"#, "cpus must be between 0 and 1024, got 1025"),
            (r#"{"image": "busybox", "cpus": "2"}"#, "cpus must be a number, got a string"),
            (r#"{"image": "busybox", "memory": "lots"}"#, "invalid memory \"lots\" (examples: 268435456, 256m, 1g)"),
            (r#"{"image": "busybox", "memory": -5}"#, "invalid memory -5 (a whole number of bytes"),
            (r#"{"image": "busybox", "memory": 1.5}"#, "invalid memory 1.5"),
            (r#"{"image": "busybox", "memory": "2t"}"#, "memory must be at most 1 TiB (1099511627776 bytes), got 2199023255552"),
            (r#"{"image": "busybox", "memory": "99999999t"}"#, "memory must be at most 1t (1 TiB), got \"99999999t\""),
            (r#"{"image": "busybox", "memory": "1m"}"#, "memory must be 0 (no limit) or at least 6m (6291456 bytes, Docker's minimum), got 1048576"),
            (r#"{"image": "busybox", "memory": true}"#, "memory must be a number of bytes or a string, got a boolean"),
            (r#"{"image": "busybox", "cmd": 5}"#, "cmd must be an array of strings or a string, got a number"),
            (r#"{"image": "busybox", "cmd": ["a", 1]}"#, "cmd[1] must be a string, got a number"),
            (r#"{"image": "busybox", "env": {"A": 1}}"#, "env.A must be a string, got a number"),
            (r#"{"image": "busybox", "env": {"": "x"}}"#, "env keys must not be empty"),
            (r#"{"image": "busybox", "env": ["NOVALUE"]}"#, "env[0] must be KEY=VALUE, got \"NOVALUE\""),
            (r#"{"image": "busybox", "env": ["=x"]}"#, "env keys must not be empty"),
            (r#"{"image": "busybox", "env": ["A=1", "A=2"]}"#, "env sets \"A\" twice"),
            (r#"{"image": "busybox", "env": "A=1"}"#, "env must be an object or an array of \"KEY=VALUE\" strings, got a string"),
            (r#"{"image": "busybox", "labels": {"": "x"}}"#, "label keys must not be empty"),
            (r#"{"image": "busybox", "labels": {"io.poseidon.task": "x"}}"#, "label key \"io.poseidon.task\" is reserved (keys starting with io.poseidon. belong to Poseidon)"),
            (r#"{"image": "busybox", "labels": ["a=b"]}"#, "labels must be an object of strings, got an array"),
            (r#"{"image": "busybox", "ports": {"80": 80}}"#, "ports must be an array, got an object"),
            (r#"{"image": "busybox", "ports": [{"container_port": 0}]}"#, "ports[0].container_port must be between 1 and 65535, got 0"),
            (r#"{"image": "busybox", "ports": [{"container_port": 70000}]}"#, "ports[0].container_port must be between 1 and 65535, got 70000"),
            (r#"{"image": "busybox", "ports": [{"container_port": "80"}]}"#, "ports[0].container_port must be a number, got a string"),
            (r#"{"image": "busybox", "ports": [{"host_port": 80}]}"#, "ports[0].container_port is required"),
            (r#"{"image": "busybox", "ports": [{"container_port": 80, "host_port": 0}]}"#, "ports[0].host_port must be between 1 and 65535 (omit it to let Docker choose), got 0"),
            (r#"{"image": "busybox", "ports": [{"container_port": 80, "proto": "tcp"}]}"#, "unknown field \"proto\" in ports[0] (valid: container_port, host_port, protocol)"),
            (r#"{"image": "busybox", "ports": [{"container_port": 80, "protocol": "sctp"}]}"#, "ports[0].protocol must be \"tcp\" or \"udp\", got \"sctp\""),
            (r#"{"image": "busybox", "ports": ["80/sctp"]}"#, "ports[0].protocol must be \"tcp\" or \"udp\", got \"sctp\""),
            (r#"{"image": "busybox", "ports": ["8080:80", "8080:81"]}"#, "host port 8080/tcp is published twice (ports[0] and ports[1])"),
            (r#"{"image": "busybox", "ports": ["80", "80"]}"#, "ports[1] repeats ports[0]"),
            (r#"{"image": "busybox", "ports": ["abc"]}"#, "invalid port \"abc\" in ports[0]: a port is a number between 1 and 65535 (examples: \"8080:80\", \"80\", \"53/udp\")"),
            (r#"{"image": "busybox", "ports": ["8000-8010:80"]}"#, "port ranges are not supported"),
            (r#"{"image": "busybox", "ports": ["127.0.0.1:8080:80"]}"#, "a host IP address is not supported"),
            (r#"{"image": "busybox", "ports": [true]}"#, "ports[0] must be an object or a string such as \"8080:80\", got a boolean"),
            (r#"{"image": "busybox", "restart_policy": "sometimes"}"#, "unknown restart_policy \"sometimes\" (valid: never, no, on-failure, always, unless-stopped)"),
            (r#"{"image": "busybox", "restart_policy": {"policy": "nope"}}"#, "unknown restart_policy.policy \"nope\""),
            (r#"{"image": "busybox", "restart_policy": {"max_restarts": 3}}"#, "restart_policy.policy is required"),
            (r#"{"image": "busybox", "restart_policy": {"policy": "always", "max_restarts": 3}}"#, "restart_policy.max_restarts is only for the on-failure policy"),
            (r#"{"image": "busybox", "restart_policy": {"policy": "on-failure", "max_restarts": -1}}"#, "restart_policy.max_restarts must be a whole number of at least 0, got -1"),
            (r#"{"image": "busybox", "restart_policy": {"policy": "always", "backoff": "1m", "max_backoff": "1s"}}"#, "restart_policy.max_backoff (1s) must not be shorter than restart_policy.backoff (60s)"),
            (r#"{"image": "busybox", "restart_policy": {"policy": "always", "backoff": 10}}"#, "restart_policy.backoff must be a duration string such as \"10s\", got a number"),
            (r#"{"image": "busybox", "restart_policy": {"policy": "always", "backof": "1s"}}"#, "unknown field \"backof\" in restart_policy (valid: policy, max_restarts, backoff, max_backoff, reset_after)"),
            (r#"{"image": "busybox", "restart_policy": 3}"#, "restart_policy must be a policy name or an object with a \"policy\" field, got a number"),
            (r#"{"image": "busybox", "health_check": "/health"}"#, "health_check must be an object, got a string"),
            (r#"{"image": "busybox", "health_check": {"port": 80}}"#, "health_check.type is required (valid: http, tcp, exec)"),
            (r#"{"image": "busybox", "health_check": {"type": "grpc"}}"#, "unknown health_check.type \"grpc\" (valid: http, tcp, exec)"),
            (r#"{"image": "busybox", "health_check": {"type": "http"}}"#, "health_check.port is required for http checks"),
            (r#"{"image": "busybox", "health_check": {"type": "tcp"}}"#, "health_check.port is required for tcp checks"),
            (r#"{"image": "busybox", "health_check": {"type": "exec"}}"#, "health_check.cmd must not be empty for exec checks"),
            (r#"{"image": "busybox", "health_check": {"type": "exec", "cmd": []}}"#, "health_check.cmd must not be empty for exec checks"),
            (r#"{"image": "busybox", "health_check": {"type": "exec", "cmd": "true", "port": 80}}"#, "health_check.port is only for http and tcp checks, not exec"),
            (r#"{"image": "busybox", "health_check": {"type": "tcp", "port": 80, "path": "/"}}"#, "health_check.path is only for http checks, not tcp"),
            (r#"{"image": "busybox", "health_check": {"type": "http", "port": 80, "cmd": "x"}}"#, "health_check.cmd is only for exec checks, not http"),
            (r#"{"image": "busybox", "health_check": {"type": "http", "port": 80}}"#, "health_check.port 80 is not a published tcp container port (published: none); checks reach the container through a published port"),
            (r#"{"image": "busybox", "ports": ["53/udp"], "health_check": {"type": "tcp", "port": 53}}"#, "health_check.port 53 is not a published tcp container port (published: 53/udp)"),
            (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "path": "health"}}"#, "health_check.path must start with \"/\", got \"health\""),
            (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "interval": "50ms"}}"#, "health_check.interval must be at least 100ms, got 50ms"),
            (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "timeout": "0s"}}"#, "health_check.timeout must be at least 100ms, got 0s"),
            (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "retries": 0}}"#, "health_check.retries must be at least 1, got 0"),
            (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "interval": "ten"}}"#, "invalid health_check.interval \"ten\" (examples: 500ms, 5s, 2m, 1h)"),
            (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "every": "1s"}}"#, "unknown field \"every\" in health_check (valid: type, port, path, cmd, interval, timeout, retries, start_period)"),
            (r#"{"image": "busybox", "stop_after_disconnect": "10ms"}"#, "stop_after_disconnect must be at least 100ms, got 10ms"),
            (r#"{"image": "busybox", "stop_after_disconnect": "soon"}"#, "invalid stop_after_disconnect \"soon\""),
        ];
        for (body, fragment) in cases {
            let message = error(body);
            assert!(
                message.contains(fragment),
                "{body}\n  gave: {message}\n  want: {fragment}"
            );
            assert!(!message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn the_seed_go_task_event_becomes_a_pending_submission_with_the_tasks_id() {
        let sub = parse(SEED_TASK1);
        assert_eq!(
            sub.id.map(|id| id.to_string()).as_deref(),
            Some("21b23589-5d2d-4731-b5c9-a97e9832d021")
        );
        assert_eq!(
            sub.spec,
            spec("test-chapter-5", "strm/helloworld-http:latest")
        );
        assert!(sub.notes.is_empty(), "{:?}", sub.notes);
    }

    #[test]
    fn good_go_task_events_map_to_the_expected_task_spec() {
        // The shape of the original's data/task3.json, plus every other field the Go Task had.
        let full = r#"{
            "ID": "6be4cb6b-61d1-40cb-bc7b-9cacefefa60c",
            "State": 2,
            "Timestamp": "2024-01-01T00:00:00Z",
            "Task": {
                "ID": "21b23589-5d2d-4731-b5c9-a97e9832d021",
                "ContainerID": "",
                "State": 0,
                "Image": "timboring/echo-server:latest",
                "Cpu": 0.25,
                "Memory": 67108864,
                "Disk": 1073741824,
                "ExposedPorts": {"7777/tcp": {}, "53/udp": {}, "9000/tcp": {}},
                "PortBindings": {"7777/tcp": "7777", "9000/tcp": "", "8125/udp": "8125"},
                "RestartPolicy": "unless-stopped",
                "HealthCheck": "/healthfail",
                "StartTime": "0001-01-01T00:00:00Z",
                "FinishTime": "0001-01-01T00:00:00Z",
                "HostPorts": null,
                "RestartCount": 0
            }
        }"#;
        let mut full_spec = spec("echo-server", "timboring/echo-server:latest");
        full_spec.cpus = 0.25;
        full_spec.memory = 67_108_864;
        full_spec.ports = vec![
            port(7777, Some(7777), "tcp"),
            port(53, None, "udp"),
            port(9000, None, "tcp"),
            port(8125, Some(8125), "udp"),
        ];
        full_spec.restart_policy = RestartPolicy::of(RestartKind::Always);
        full_spec.health_check = Some(HealthCheck {
            probe: Probe::Http {
                port: 7777,
                path: "/healthfail".into(),
            },
            interval_ms: 10_000,
            timeout_ms: 1_000,
            retries: 3,
            start_period_ms: 0,
        });

        // A bare Go Task (not wrapped in an event), with the zero values Go writes for unset fields.
        let bare = r#"{"ID": "00000000-0000-0000-0000-000000000000", "Name": "", "Image": "busybox",
                       "Cpu": 0, "Memory": 0, "Disk": 0, "ExposedPorts": null, "PortBindings": null,
                       "RestartPolicy": "", "HealthCheck": "", "Cmd": ["sleep", "5"],
                       "Env": ["A=1"], "Replicas": 3}"#;
        let mut bare_spec = spec("busybox", "busybox:latest");
        bare_spec.cmd = vec!["sleep".into(), "5".into()];
        bare_spec.env = map(&[("A", "1")]);

        let mut on_failure = spec("x", "busybox:latest");
        on_failure.restart_policy = RestartPolicy::of(RestartKind::OnFailure);
        on_failure.ports = vec![port(80, Some(8080), "tcp")];

        let cases: Vec<(&str, Option<&str>, TaskSpec, Vec<&str>)> = vec![
            (
                full,
                Some("21b23589-5d2d-4731-b5c9-a97e9832d021"),
                full_spec,
                vec!["Disk is accepted and ignored"],
            ),
            (
                bare,
                None,
                bare_spec,
                vec![
                    "unknown Go field \"Replicas\" is ignored",
                    "ID is the nil UUID, so the server chose an id",
                ],
            ),
            (
                r#"{"Task": {"Name": "x", "Image": "busybox", "RestartPolicy": "on-failure",
                             "PortBindings": {"80": "8080"}}}"#,
                None,
                on_failure,
                vec![],
            ),
            (
                r#"{"Task": {"Image": "busybox", "RestartPolicy": "no"}, "Extra": 1}"#,
                None,
                spec("busybox", "busybox:latest"),
                vec!["unknown Go field \"Extra\" is ignored"],
            ),
        ];
        for (body, id, expected, notes) in cases {
            let sub = parse(body);
            assert_eq!(sub.spec, expected, "{body}");
            assert_eq!(sub.id.map(|id| id.to_string()).as_deref(), id, "{body}");
            assert_eq!(sub.notes, notes, "{body}");
        }
    }

    #[test]
    fn bad_go_task_events_are_refused_with_a_clear_message() {
        let cases: Vec<(&str, &str)> = vec![
            (r#"{"Task": "busybox"}"#, "Task must be an object, got a string"),
            (r#"{"Task": null}"#, "Task must be an object, got null"),
            (r#"{"Task": {"Name": "x"}}"#, "Task.Image is required"),
            (r#"{"Task": {"Image": ""}}"#, "Task.Image is required"),
            (r#"{"Task": {"Image": 3}}"#, "Task.Image must be a string, got a number"),
            (r#"{"Task": {"Image": "Busybox"}}"#, "invalid Task.Image \"Busybox\": repository names must be lower-case"),
            (r#"{"Task": {"Image": "busybox", "Name": "a b"}}"#, "invalid Task.Name \"a b\""),
            (r#"{"Task": {"Image": "busybox", "ID": "x"}}"#, "invalid Task.ID \"x\" (expected a UUID"),
            (r#"{"Task": {"Image": "busybox", "State": 5}}"#, "Task.State must be between 0 and 4 (pending, scheduled, running, completed, failed), got 5"),
            (r#"{"Task": {"Image": "busybox", "State": -1}}"#, "Task.State must be between 0 and 4"),
            (r#"{"State": "running", "Task": {"Image": "busybox"}}"#, "State must be a number, got a string"),
            (r#"{"State": 9, "Task": {"Image": "busybox"}}"#, "State must be between 0 and 4"),
            (r#"{"Task": {"Image": "busybox", "Cpu": "1"}}"#, "Task.Cpu must be a number, got a string"),
            (r#"{"Task": {"Image": "busybox", "Cpu": -0.5}}"#, "Task.Cpu must be between 0 and 1024, got -0.5"),
            (r#"{"Task": {"Image": "busybox", "Memory": "1g"}}"#, "Task.Memory must be a number, got a string"),
            (r#"{"Task": {"Image": "busybox", "Memory": -1}}"#, "Task.Memory must be a whole number of at least 0, got -1"),
            (r#"{"Task": {"Image": "busybox", "Memory": 1024}}"#, "Task.Memory must be 0 (no limit) or at least 6m"),
            (r#"{"Task": {"Image": "busybox", "Disk": "big"}}"#, "Task.Disk must be a number, got a string"),
            (r#"{"Task": {"Image": "busybox", "ExposedPorts": ["80/tcp"]}}"#, "Task.ExposedPorts must be an object, got an array"),
            (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"80/tcp": 1}}}"#, "Task.ExposedPorts[\"80/tcp\"] must be an empty object, got a number"),
            (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"80/sctp": {}}}}"#, "invalid port \"80/sctp\" in Task.ExposedPorts (examples: \"80/tcp\", \"53/udp\")"),
            (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"http": {}}}}"#, "invalid port \"http\" in Task.ExposedPorts"),
            (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"80": {}, "80/tcp": {}}}}"#, "Task.ExposedPorts lists 80/tcp twice"),
            (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": 8080}}}"#, "Task.PortBindings[\"80/tcp\"] must be a string, got a number"),
            (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": "x"}}}"#, "Task.PortBindings[\"80/tcp\"] must be a host port between 1 and 65535 such as \"8080\", or \"\" to let Docker choose, got \"x\""),
            (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": "1", "80": "2"}}}"#, "Task.PortBindings binds 80/tcp twice"),
            (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": "8080", "81/tcp": "8080"}}}"#, "host port 8080/tcp is published twice (ports[0] and ports[1])"),
            (r#"{"Task": {"Image": "busybox", "RestartPolicy": "sometimes"}}"#, "unknown Task.RestartPolicy \"sometimes\" (valid: \"\", no, on-failure, always, unless-stopped)"),
            (r#"{"Task": {"Image": "busybox", "RestartPolicy": 1}}"#, "Task.RestartPolicy must be a string, got a number"),
            (r#"{"Task": {"Image": "busybox", "HealthCheck": "/health"}}"#, "Task.HealthCheck needs a tcp port to probe; add one to Task.ExposedPorts"),
            (r#"{"Task": {"Image": "busybox", "HealthCheck": "/h", "ExposedPorts": {"53/udp": {}}}}"#, "Task.HealthCheck needs a tcp port to probe"),
            (r#"{"Task": {"Image": "busybox", "HealthCheck": "health", "ExposedPorts": {"80/tcp": {}}}}"#, "Task.HealthCheck must be a path starting with \"/\", got \"health\""),
            (r#"{"Task": {"Image": "busybox", "HealthCheck": true}}"#, "Task.HealthCheck must be a string, got a boolean"),
            (r#"{"Task": {"Image": "busybox", "StartTime": 5}}"#, "Task.StartTime must be a string, got a number"),
            (r#"{"Task": {"Image": "busybox", "image": "x"}}"#, "\"Task.image\" is a Poseidon field but \"Task.Image\" is a Go TaskEvent field; write one format, not both"),
            (r#"{"Image": "busybox", "cmd": ["x"]}"#, "\"cmd\" is a Poseidon field but \"Image\" is a Go TaskEvent field"),
            (r#"{"Task": {"Image": "busybox"}, "labels": {}}"#, "\"labels\" is a Poseidon field but \"Task\" is a Go TaskEvent field"),
        ];
        for (body, fragment) in cases {
            let message = error(body);
            assert!(
                message.contains(fragment),
                "{body}\n  gave: {message}\n  want: {fragment}"
            );
        }
    }

    #[test]
    fn an_array_of_submissions_is_parsed_in_order_and_errors_name_the_item() {
        let body =
            format!(r#"[{{"image": "busybox"}}, {SEED_TASK1}, {{"image": "nginx", "name": "b"}}]"#);
        let subs = parse_submissions(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = subs.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, ["busybox", "test-chapter-5", "b"]);

        let one = parse_submissions(br#"{"image": "busybox"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one.len(), 1);

        let cases: Vec<(String, &str)> = vec![
            (
                "[]".into(),
                "the array is empty (expected at least one task spec)",
            ),
            (
                r#"[{"image": "busybox"}, {"image": ""}]"#.into(),
                "item 1: invalid image \"\"",
            ),
            (
                r#"[{"image": "busybox"}, "nginx"]"#.into(),
                "item 1: each item must be a JSON object, got a string",
            ),
            (
                format!("[{SEED_TASK1}, {SEED_TASK1}]"),
                "item 1: id 21b23589-5d2d-4731-b5c9-a97e9832d021 is also the id of item 0",
            ),
            (
                "\"busybox\"".into(),
                "the body must be a task spec object or an array of them, got a string",
            ),
            (
                r#"[{"image": "busybox"}"#.into(),
                "malformed JSON: EOF while parsing a list",
            ),
        ];
        for (body, fragment) in cases {
            match parse_submissions(body.as_bytes()) {
                Ok(subs) => panic!("{body} was accepted as {subs:?}"),
                Err(e) => assert!(
                    e.to_string().contains(fragment),
                    "{body}\n  gave: {e}\n  want: {fragment}"
                ),
            }
        }
    }

    #[test]
    fn more_than_ten_thousand_submissions_are_refused_before_any_is_parsed() {
        let body = format!("[{}{{}}]", "{},".repeat(MAX_SUBMISSIONS));
        match parse_submissions(body.as_bytes()) {
            Err(SpecError::TooMany(n)) => assert_eq!(n, MAX_SUBMISSIONS + 1),
            other => panic!("{other:?}"),
        }
        let body = format!(
            "[{}]",
            vec![r#"{"image":"busybox"}"#; MAX_SUBMISSIONS].join(",")
        );
        let subs = parse_submissions(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subs.len(), MAX_SUBMISSIONS);
    }

    #[test]
    fn hostile_bodies_are_errors_and_never_panics() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let bodies: Vec<Vec<u8>> = vec![
            deep.into_bytes(),
            b"\xff\xfe".to_vec(),
            b"{\"image\": \"\xff\"}".to_vec(),
            b"{\"image\": \"busybox\", \"cpus\": 1e400}".to_vec(),
            b"{\"image\": \"busybox\", \"memory\": 18446744073709551616}".to_vec(),
            b"null".to_vec(),
            b"{\"Task\": {\"Image\": \"busybox\", \"Cpu\": 1e308}}".to_vec(),
        ];
        for body in bodies {
            assert!(parse_submission(&body).is_err());
            assert!(parse_submissions(&body).is_err());
        }
        // Every prefix of a good body is either an error or (for the whole body) the spec itself.
        let body = br#"{"image": "busybox", "ports": ["8080:80"], "env": {"A": "1"}}"#;
        for end in 0..body.len() {
            assert!(
                parse_submission(&body[..end]).is_err(),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn validate_accepts_what_parsing_produces_and_refuses_hand_built_mistakes() {
        let sub = parse(
            r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "tcp", "port": 80}}"#,
        );
        assert_eq!(validate(&sub.spec), Ok(()));

        let mut bad = spec("ok", "busybox");
        bad.ports = vec![port(80, None, "icmp")];
        assert_eq!(
            validate(&bad).map_err(|e| e.to_string()),
            Err("ports[0].protocol must be \"tcp\" or \"udp\", got \"icmp\"".to_string())
        );
        let mut bad = spec("ok", "busybox");
        bad.stop_after_disconnect_ms = Some(5);
        assert_eq!(
            validate(&bad).map_err(|e| e.to_string()),
            Err("stop_after_disconnect must be at least 100ms, got 5ms".to_string())
        );
    }

    #[test]
    fn error_messages_are_lower_case_and_have_no_trailing_period() {
        let bodies = [
            "",
            "{}",
            r#"{"x": 1}"#,
            r#"{"image": "busybox", "cpus": -1}"#,
            r#"{"Task": {}}"#,
        ];
        for body in bodies {
            let message = error(body);
            assert!(
                !message.starts_with(|c: char| c.is_ascii_uppercase())
                    || message.starts_with("Task"),
                "{message}"
            );
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
