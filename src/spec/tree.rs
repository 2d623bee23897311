//! The order-preserving JSON tree both formats are read into, and typed accessors whose errors name
//! the field and what it should have been.

use super::*;

/// A JSON value that keeps the order of object keys and refuses duplicate keys (serde_json's own
/// `Value` sorts keys and silently keeps the last of two).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
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
    pub(super) fn kind(&self) -> &'static str {
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

pub(super) struct JsonVisitor;

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

pub(super) fn read_json(body: &[u8]) -> Result<Json, SpecError> {
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
pub(super) struct Fields<'a> {
    pub(super) place: String,
    pub(super) fields: &'a [(String, Json)],
}

impl<'a> Fields<'a> {
    pub(super) fn new(place: impl Into<String>, fields: &'a [(String, Json)]) -> Self {
        Fields {
            place: place.into(),
            fields,
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.place.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.place)
        }
    }

    /// The value of `key`; an explicit `null` counts as absent, as serde's `Option` has it.
    pub(super) fn get(&self, key: &str) -> Option<&'a Json> {
        self.fields
            .iter()
            .find(|(k, v)| k == key && !matches!(v, Json::Null))
            .map(|(_, v)| v)
    }

    pub(super) fn deny_unknown(&self, valid: &[&str]) -> Result<(), SpecError> {
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

    pub(super) fn str(&self, key: &str) -> Result<Option<&'a str>, SpecError> {
        self.get(key)
            .map(|v| as_str(v, &self.path(key)))
            .transpose()
    }

    pub(super) fn u64(&self, key: &str) -> Result<Option<u64>, SpecError> {
        self.get(key)
            .map(|v| as_u64(v, &self.path(key)))
            .transpose()
    }

    pub(super) fn f64(&self, key: &str) -> Result<Option<f64>, SpecError> {
        self.get(key)
            .map(|v| as_f64(v, &self.path(key)))
            .transpose()
    }

    pub(super) fn duration_ms(&self, key: &str) -> Result<Option<u64>, SpecError> {
        self.get(key)
            .map(|v| duration_ms(v, &self.path(key)))
            .transpose()
    }
}

pub(super) fn wrong(field: &str, expected: &'static str, got: &Json) -> SpecError {
    SpecError::WrongType {
        field: field.to_string(),
        expected,
        got: got.kind(),
    }
}

pub(super) fn as_str<'a>(v: &'a Json, field: &str) -> Result<&'a str, SpecError> {
    match v {
        Json::Str(s) => Ok(s),
        other => Err(wrong(field, "a string", other)),
    }
}

pub(super) fn as_u64(v: &Json, field: &str) -> Result<u64, SpecError> {
    match v {
        Json::UInt(n) => Ok(*n),
        Json::NegInt(_) | Json::Float(_) => Err(invalid(
            field,
            format!("{field} must be a whole number of at least 0, got {v}"),
        )),
        other => Err(wrong(field, "a number", other)),
    }
}

pub(super) fn as_f64(v: &Json, field: &str) -> Result<f64, SpecError> {
    match v {
        Json::UInt(n) => Ok(*n as f64),
        Json::NegInt(n) => Ok(*n as f64),
        Json::Float(x) => Ok(*x),
        other => Err(wrong(field, "a number", other)),
    }
}

/// A port number; `hint` is added after the valid range (`" (omit it to let Docker choose)"`).
pub(super) fn as_u16(v: &Json, field: &str, hint: &str) -> Result<u16, SpecError> {
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

pub(super) fn as_u32(v: &Json, field: &str) -> Result<u32, SpecError> {
    let n = as_u64(v, field)?;
    u32::try_from(n).map_err(|_| {
        invalid(
            field,
            format!("{field} must be at most {}, got {n}", u32::MAX),
        )
    })
}

pub(super) fn as_object<'a>(v: &'a Json, field: &str) -> Result<&'a [(String, Json)], SpecError> {
    match v {
        Json::Object(fields) => Ok(fields),
        other => Err(wrong(field, "an object", other)),
    }
}

pub(super) fn duration_ms(v: &Json, field: &str) -> Result<u64, SpecError> {
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
pub(super) fn string_list(v: &Json, field: &str) -> Result<Vec<String>, SpecError> {
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
pub(super) fn string_map(
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
