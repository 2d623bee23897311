//! Registry credentials for image pulls, sent as Docker's `X-Registry-Auth` header.
//!
//! The Engine API takes credentials for `POST /images/create` in the `X-Registry-Auth` header: a
//! base64url-encoded JSON `AuthConfig` (`{"username", "password", "serveraddress"}`). A worker holds a
//! list of [`RegistryAuth`] from its config and sends the one whose registry hosts the image; images
//! of other registries are pulled anonymously. The password never leaves this crate by any other
//! way: [`RegistryAuth`] is not serialisable and its `Debug` prints `***` for it, so neither logs nor
//! API answers can carry it by accident.

use std::fmt;

/// The registry an image without a registry host comes from, as Docker names it.
pub const DOCKER_HUB: &str = "docker.io";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry's `host[:port]` as it appears in image references (`registry.example:5000`);
    /// `docker.io` for Docker Hub.
    pub registry: String,
    /// The user name.
    pub username: String,
    /// The password or access token; never printed.
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl RegistryAuth {
    /// The value of the `X-Registry-Auth` header for these credentials: the JSON `AuthConfig`,
    /// base64url-encoded with padding, as the docker CLI sends it.
    pub fn header_value(&self) -> String {
        let config = serde_json::json!({
            "username": self.username,
            "password": self.password,
            "serveraddress": self.registry,
        });
        base64url(config.to_string().as_bytes())
    }
}

/// The registry host of an image reference, by Docker's rule: the first path component is a
/// registry when more components follow and it holds a `.` or a `:`, or is `localhost`; otherwise the
/// image comes from Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => DOCKER_HUB,
    }
}

/// Docker Hub goes by several names in configs; they all mean the same registry.
pub fn normalize_registry(registry: &str) -> String {
    let trimmed = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

/// The credentials in `list` for the registry that hosts `image`, if any.
pub fn auth_for<'a>(list: &'a [RegistryAuth], image: &str) -> Option<&'a RegistryAuth> {
    let wanted = registry_of(image);
    list.iter()
        .find(|a| normalize_registry(&a.registry) == wanted)
}

/// Base64 with the URL-safe alphabet (`-` and `_`) and `=` padding (Go's `base64.URLEncoding`,
/// which the docker CLI uses for this header).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*s as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_4648_vectors_and_uses_the_url_alphabet() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            // 0xfb 0xff encodes to "+/8=" in the standard alphabet.
            ("\u{fb}", "w7s="),
        ];
        for (input, want) in cases {
            assert_eq!(base64url(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
    }

    #[test]
    fn the_registry_of_an_image_follows_dockers_rule() {
        let cases = [
            ("busybox:latest", "docker.io"),
            ("library/busybox:1", "docker.io"),
            ("org/app:v1", "docker.io"),
            ("registry.example:5000/app:v1", "registry.example:5000"),
            ("ghcr.io/org/app:v2", "ghcr.io"),
            ("localhost/app:1", "localhost"),
            ("localhost:5000/app:1", "localhost:5000"),
        ];
        for (image, want) in cases {
            assert_eq!(registry_of(image), want, "{image}");
        }
    }

    #[test]
    fn credentials_are_chosen_by_the_images_registry() {
        let list = vec![
            RegistryAuth {
                registry: "https://index.docker.io/v1/".into(),
                username: "hub".into(),
                password: "p1".into(),
            },
            RegistryAuth {
                registry: "registry.example:5000".into(),
                username: "me".into(),
                password: "p2".into(),
            },
        ];
        assert_eq!(auth_for(&list, "busybox:latest").unwrap().username, "hub");
        assert_eq!(
            auth_for(&list, "registry.example:5000/app:v1")
                .unwrap()
                .username,
            "me"
        );
        assert!(auth_for(&list, "registry.example/app:v1").is_none());
        assert!(auth_for(&list, "ghcr.io/org/app:v1").is_none());
    }

    #[test]
    fn the_header_decodes_to_dockers_auth_config_and_debug_hides_the_password() {
        let auth = RegistryAuth {
            registry: "registry.example:5000".into(),
            username: "me".into(),
            password: "s3cret".into(),
        };
        // {"password":"s3cret","serveraddress":"registry.example:5000","username":"me"}
        assert_eq!(
            auth.header_value(),
            "eyJwYXNzd29yZCI6InMzY3JldCIsInNlcnZlcmFkZHJlc3MiOiJyZWdpc3RyeS5leGFtcGxlOjUwMDAiLCJ1c2VybmFtZSI6Im1lIn0="
        );
        let shown = format!("{auth:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}
