//! A hand-written Docker Engine API client.

use std::time::Duration;

use crate::RuntimeError;

/// Timeouts for the calls of [`DockerRuntime`].
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// The default for a call.
    pub call: Duration,
}

/// A [`crate::Runtime`] that speaks the Docker Engine API.
#[derive(Debug, Clone)]
pub struct DockerRuntime {}

impl DockerRuntime {
    /// Connects to `host`.
    pub fn new(_host: Option<&str>) -> Result<Self, RuntimeError> {
        Err(RuntimeError::Unreachable("not yet".into()))
    }
}
