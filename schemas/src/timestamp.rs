//! Timestamps as epilot writes them: RFC 3339 in UTC with milliseconds
//! (`2024-01-15T10:30:00.000Z`).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Now, in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    millis_of(OffsetDateTime::now_utc())
}

/// Milliseconds since the Unix epoch of a date-time.
pub fn millis_of(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(millis: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format_utc(at)
}

/// Formats a date-time in UTC as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_utc(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Now, formatted as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_rfc3339() -> String {
    format_utc(OffsetDateTime::now_utc())
}

/// Parses an RFC 3339 date-time (`2024-01-15T10:35:00Z`, `…+01:00`, with or without fraction).
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        let at = parse_rfc3339("2024-01-15T11:35:00.5+01:00").expect("valid");
        assert_eq!(format_utc(at), "2024-01-15T10:35:00.500Z");
        assert_eq!(millis_of(at), 1_705_314_900_500);
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "2024-01-15",
            "15.01.2024",
            "2024-01-15 10:35:00",
            "",
            "yesterday",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }
}
