//! The worker keys for volumes and images: `host_volumes` (the host directories tasks may mount, by
//! name) and `registry_auth` (credentials sent with pulls from a registry).
//!
//! ```toml
//! [[worker]]
//! name = "w1"
//! host_volumes = { logs = "/var/log/app", scratch = "/srv/scratch" }
//! registry_auth = [
//!   { registry = "registry.example:5000", username = "deploy", password = "s3cret" },
//! ]
//! ```
//!
//! A password lives only here and in the worker's memory: [`RegistryAuth`]'s `Debug` prints `***`,
//! nothing serialises it, and the worker sends it only to its own Docker engine, as `X-Registry-Auth`
//! on pulls from that registry.

use std::collections::BTreeMap;

use poseidon_runtimes::registry::{normalize_registry, RegistryAuth};

use super::*;

const REGISTRY_AUTH_KEYS: &[&str] = &["registry", "username", "password"];

impl Cx<'_> {
    /// `host_volumes = { NAME = "/absolute/host/path", ... }`.
    pub(super) fn host_volumes(
        &self,
        t: &Table,
        p: &str,
    ) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
        let key = format!("{p}.host_volumes");
        let table = match t.get("host_volumes") {
            None => return Ok(BTreeMap::new()),
            Some(Value::Table(table)) => table,
            Some(other) => {
                return Err(self.invalid(
                    &key,
                    format!(
                        "must be a table such as {{ logs = \"/var/log/app\" }}, got {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let mut out = BTreeMap::new();
        for (name, value) in table {
            let path_key = format!("{key}.{name}");
            let name_ok = (1..=63).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !name_ok {
                return Err(self.invalid(
                    &path_key,
                    format!("invalid host volume name {name:?} (1 to 63 letters, digits, '_', '.' or '-')"),
                ));
            }
            let Value::String(path) = value else {
                return Err(self.invalid(
                    &path_key,
                    format!(
                        "must be an absolute host path string, got {}",
                        value.type_str()
                    ),
                ));
            };
            // Docker binds only absolute paths, and a relative one would depend on where the worker
            // was started.
            if !path.starts_with('/') || path.contains('\0') {
                return Err(
                    self.invalid(&path_key, format!("{path:?} is not an absolute host path"))
                );
            }
            out.insert(name.clone(), PathBuf::from(path));
        }
        Ok(out)
    }

    /// `registry_auth = [{ registry = "host[:port]", username = "...", password = "..." }, ...]`.
    pub(super) fn registry_auth(
        &self,
        t: &Table,
        p: &str,
    ) -> Result<Vec<RegistryAuth>, ConfigError> {
        let key = format!("{p}.registry_auth");
        let items = match t.get("registry_auth") {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(self.invalid(
                    &key,
                    format!(
                        "must be an array of tables such as [{{ registry = \"registry.example:5000\", username = \"deploy\", password = \"...\" }}], got {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let mut out: Vec<RegistryAuth> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let place = format!("{key}[{i}]");
            let Value::Table(entry) = item else {
                return Err(
                    self.invalid(&place, format!("must be a table, got {}", item.type_str()))
                );
            };
            self.deny_unknown(entry, &place, REGISTRY_AUTH_KEYS)?;
            let required = |field: &str| -> Result<String, ConfigError> {
                match self.string(entry, &place, field)? {
                    Some(s) if !s.is_empty() => Ok(s.to_string()),
                    // The message never quotes the value: it may be the password.
                    _ => Err(self.invalid(
                        &format!("{place}.{field}"),
                        "missing or empty (registry_auth needs registry, username and password)",
                    )),
                }
            };
            let registry = normalize_registry(&required("registry")?);
            if registry.is_empty()
                || registry.contains('/')
                || registry.contains(char::is_whitespace)
            {
                return Err(self.invalid(
                    &format!("{place}.registry"),
                    format!("{registry:?} is not a registry host[:port] (e.g. registry.example:5000, docker.io)"),
                ));
            }
            if let Some(j) = out.iter().position(|a| a.registry == registry) {
                return Err(self.invalid(
                    &format!("{place}.registry"),
                    format!("{registry:?} is also the registry of {key}[{j}]"),
                ));
            }
            out.push(RegistryAuth {
                registry,
                username: required("username")?,
                password: required("password")?,
            });
        }
        Ok(out)
    }
}
