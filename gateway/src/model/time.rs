//! Time as the gateway records it: milliseconds since the Unix epoch, and RFC 3339
//! with milliseconds in UTC (the audit log's timestamps).

/// Milliseconds since the epoch, by the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the epoch, by the system clock (certificate windows, time-stamps).
pub fn now_s() -> i64 {
    now_ms() / 1000
}

/// Now, RFC 3339 with milliseconds.
pub fn rfc3339_now() -> String {
    rfc3339_ms(now_ms())
}

/// A Unix time in milliseconds as RFC 3339 with milliseconds (UTC).
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
