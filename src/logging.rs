//! Structured logs for the `poseidon` binary: `tracing` events written to stderr by
//! `tracing-subscriber`, filtered by `RUST_LOG` (default `info`), as text or as one JSON object per line.
//!
//! Libraries in this crate only emit events (`tracing::info!` and friends, with fields such as
//! `task = %id, node = %name`); only the binary installs a subscriber, so tests and embedders choose
//! their own.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event: time, level, target, message, then `key=value` fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target` and `fields` (with `message`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (valid: text, json)")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// The filter when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the process-wide subscriber. Call once, before anything logs.
///
/// A `RUST_LOG` that does not parse is reported (as a warning, in the chosen format) and replaced by
/// [`DEFAULT_FILTER`], rather than silently logging nothing.
pub fn init(format: LogFormat) {
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some((text, e.to_string()))),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        // Colour codes only for a person at a terminal; a pipe or a file gets plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        // Only a second call can fail; the first subscriber stays and keeps logging.
        tracing::warn!(error = %e, "a log subscriber was already installed");
    }
    if let Some((text, error)) = bad {
        tracing::warn!(rust_log = %text, %error, default = DEFAULT_FILTER, "RUST_LOG does not parse; using the default filter");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_by_name_and_refuse_others() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(
            "yaml".parse::<LogFormat>(),
            Err("unknown log format \"yaml\" (valid: text, json)".to_string())
        );
    }
}
