//! Splitting image references into the repository and tag the engine's API wants.
//!
//! `POST /images/create` takes `fromImage` and `tag` apart, and an empty tag pulls every tag of the
//! repository, so the split must be right: a registry port (`host:5000/app`) is not a tag, and a
//! digest (`app@sha256:...`) is passed as the tag, which the engine accepts.

use std::fmt;

use crate::RuntimeError;

/// An image reference split into repository and tag (or digest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The repository, with its registry host and port if any (`localhost:5000/app`).
    pub repo: String,
    /// The tag (`latest` when the reference had none), or a digest (`sha256:...`).
    pub tag: String,
}

impl ImageRef {
    /// Parses `image`; a missing tag means `latest`.
    pub fn parse(image: &str) -> Result<ImageRef, RuntimeError> {
        let image = image.trim();
        if image.is_empty() {
            return Err(RuntimeError::Invalid("empty image reference".into()));
        }
        if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RuntimeError::Invalid(format!(
                "image reference {image:?} contains whitespace"
            )));
        }
        let (repo, tag) = if let Some((repo, digest)) = image.split_once('@') {
            (repo, digest)
        } else {
            // A colon is a tag separator only after the last slash; before it, it is a registry port.
            let last_slash = image.rfind('/').map_or(0, |i| i + 1);
            match image[last_slash..].rfind(':') {
                Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
                None => (image, "latest"),
            }
        };
        if repo.is_empty() || tag.is_empty() {
            return Err(RuntimeError::Invalid(format!(
                "image reference {image:?} has an empty repository or tag"
            )));
        }
        Ok(ImageRef {
            repo: repo.to_string(),
            tag: tag.to_string(),
        })
    }

    /// True when the tag is a content digest rather than a name.
    pub fn is_digest(&self) -> bool {
        self.tag.contains(':')
    }

    /// The normalised reference (`repo:tag` or `repo@digest`), as the engine names local images.
    pub fn normalized(image: &str) -> String {
        match ImageRef::parse(image) {
            Ok(r) => r.to_string(),
            Err(_) => image.to_string(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_digest() {
            write!(f, "{}@{}", self.repo, self.tag)
        } else {
            write!(f, "{}:{}", self.repo, self.tag)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repository_and_tag() {
        let cases = [
            ("busybox", "busybox", "latest"),
            ("busybox:1.36", "busybox", "1.36"),
            ("library/busybox:1", "library/busybox", "1"),
            ("localhost:5000/app", "localhost:5000/app", "latest"),
            ("localhost:5000/app:v2", "localhost:5000/app", "v2"),
            (
                "poseidon-test/busybox:latest",
                "poseidon-test/busybox",
                "latest",
            ),
            ("app@sha256:abcd", "app", "sha256:abcd"),
            ("host:5000/app@sha256:abcd", "host:5000/app", "sha256:abcd"),
        ];
        for (input, repo, tag) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((r.repo.as_str(), r.tag.as_str()), (repo, tag), "{input}");
        }
    }

    #[test]
    fn malformed_image_references_are_invalid() {
        for input in ["", "  ", "app:", ":tag", "app@", "a b"] {
            assert!(
                matches!(ImageRef::parse(input), Err(RuntimeError::Invalid(_))),
                "{input:?}"
            );
        }
    }

    #[test]
    fn normalized_references_add_latest_and_keep_digests() {
        assert_eq!(ImageRef::normalized("busybox"), "busybox:latest");
        assert_eq!(ImageRef::normalized("a:5000/b"), "a:5000/b:latest");
        assert_eq!(ImageRef::normalized("b@sha256:00"), "b@sha256:00");
    }
}
