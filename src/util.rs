//! Small shared helpers: the wall clock, and parsing of durations and sizes as users write them.
//!
//! Durations are read by `humantime`; sizes keep Docker's meaning of `k`, `m`, `g` (powers of 1024),
//! which no general-purpose size crate shares, so that parser stays here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The examples every duration error shows.
pub const DURATION_EXAMPLES: &str = "examples: 500ms, 5s, 1m30s, 2h";

/// The longest duration accepted anywhere: ten years, far beyond any sensible timeout, and small
/// enough that adding it to an `Instant` cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses a duration as [`humantime`] reads it (`500ms`, `5s`, `2m`, `1m30s`, `1h 15m`), or a bare
/// number of seconds (`3`, `0.5`), which the files written before humantime used.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let parsed = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // humantime insists on a unit; a bare number has always meant seconds here.
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("invalid duration {text:?} ({DURATION_EXAMPLES})"))?;
        if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
            return Err(format!("invalid duration {text:?} (out of range)"));
        }
        Duration::from_secs_f64(secs)
    } else {
        humantime::parse_duration(t).map_err(|e| {
            format!(
                "invalid duration {text:?}: {} ({DURATION_EXAMPLES})",
                duration_problem(&e)
            )
        })?
    };
    if parsed > MAX_DURATION {
        return Err(format!("invalid duration {text:?} (out of range)"));
    }
    Ok(parsed)
}

/// humantime's own message for an unknown unit lists every spelling it knows over two lines; this says
/// the same in a few words.
fn duration_problem(e: &humantime::DurationError) -> String {
    match e {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a unit is needed".to_string()
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit {unit:?} (units: ms, s, m, h, d)")
        }
        humantime::DurationError::NumberOverflow => "out of range".to_string(),
        humantime::DurationError::Empty => "it is empty".to_string(),
        other => other.to_string(),
    }
}

/// Parses a size in bytes: a bare number, or Docker's suffixes `b`, `k`, `m`, `g`, `t` (powers of 1024;
/// `kb`, `mib` and the like are accepted too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?} (examples: 268435456, 256m, 1g)"))?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "invalid size {text:?} (examples: 268435456, 256m, 1g)"
            ))
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > 1u64.checked_shl(60).unwrap_or(u64::MAX) as f64
    {
        return Err(format!("invalid size {text:?} (out of range)"));
    }
    Ok(bytes as u64)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC (`2026-11-28T04:35:53.123Z`).
///
/// humantime formats instants up to the end of year 9999 only; a later one (a corrupt or hostile
/// timestamp) is shown as a plain count of milliseconds instead of panicking.
pub fn rfc3339(ms: u64) -> String {
    const END_OF_9999_MS: u64 = 253_402_300_799_999;
    if ms > END_OF_9999_MS {
        return format!("{ms} ms after the epoch");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Formats bytes for people (`512 MiB`, `1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 || i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Parses a `since` for logs: an RFC 3339 time (`2026-01-02T03:04:05Z`) or a duration ago
/// (`10m`, `90s`), into seconds since the epoch.
pub fn parse_since(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(t) {
        return at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .map_err(|_| format!("since {text:?} is before 1970"));
    }
    let ago = parse_duration(t).map_err(|_| {
        format!("since must be an RFC 3339 time (2026-01-02T03:04:05Z) or a duration ago (10m), got {text:?}")
    })?;
    Ok((now_ms() as f64 / 1000.0 - ago.as_secs_f64()).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_users_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 15m"), Ok(Duration::from_secs(4500)));
        assert_eq!(
            parse_duration("5 parsecs"),
            Err(
                "invalid duration \"5 parsecs\": unknown unit \"parsecs\" (units: ms, s, m, h, d) \
                 (examples: 500ms, 5s, 1m30s, 2h)"
                    .to_string()
            )
        );
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(
            parse_duration("1.2.3"),
            Err("invalid duration \"1.2.3\" (examples: 500ms, 5s, 1m30s, 2h)".to_string())
        );
        assert_eq!(
            parse_duration("999999999999"),
            Err("invalid duration \"999999999999\" (out of range)".to_string())
        );
        assert_eq!(
            parse_duration("99999y"),
            Err("invalid duration \"99999y\" (out of range)".to_string())
        );
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_follow_dockers_suffixes() {
        assert_eq!(parse_size("256m"), Ok(268_435_456));
        assert_eq!(parse_size("1g"), Ok(1_073_741_824));
        assert_eq!(parse_size("1.5G"), Ok(1_610_612_736));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999t").is_err());
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_840_553_123), "2026-11-28T04:35:53.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(u64::MAX), "18446744073709551615 ms after the epoch");
    }
}
