//! RFC 3339 timestamps in UTC with microseconds (`2025-03-01T12:34:56.123456Z`), the one
//! time format of the audit records; `audit show --since` parses it. Formatting and parsing
//! go through the `time` crate; this module owns only the microsecond representation and the
//! exact shape written (six fraction digits, always `Z`).

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// The written form: always six fraction digits and `Z`.
const WRITTEN: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
/// A bare date, meaning its midnight UTC.
const DATE_ONLY: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// The instants `to_rfc3339` can write with a four-digit year: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999Z, in microseconds since the epoch.
const FIRST_WRITABLE: i64 = -62_135_596_800_000_000;
const LAST_WRITABLE: i64 = 253_402_300_799_999_999;

/// Microseconds since the Unix epoch (negative before 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_micros().min(i64::MAX as u128) as i64),
            Err(e) => Timestamp(-(e.duration().as_micros().min(i64::MAX as u128) as i64)),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits, always `Z`). Instants outside
    /// years 1..=9999 are written as the nearest one inside.
    pub fn to_rfc3339(self) -> String {
        let micros = self.0.clamp(FIRST_WRITABLE, LAST_WRITABLE);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .ok()
            .and_then(|t| t.format(WRITTEN).ok())
            // Unreachable within the clamped range; kept total rather than panicking.
            .unwrap_or_else(|| "1970-01-01T00:00:00.000000Z".to_string())
    }

    /// Parses RFC 3339 (`T` or space between date and time, optional fraction of any length,
    /// `Z` or a `+HH:MM`/`-HH:MM` offset). A bare date `YYYY-MM-DD` means its midnight UTC.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let bad = || format!("not an RFC 3339 time: {s:?} (expected e.g. 2025-03-01T12:00:00Z)");
        let s = s.trim();
        if s.len() == 10 {
            let date = Date::parse(s, DATE_ONLY).map_err(|_| bad())?;
            let t = date.midnight().assume_utc();
            return Ok(Timestamp(t.unix_timestamp() * 1_000_000));
        }
        // The `time` crate takes any separator byte; RFC 3339 names `T` (and allows a space).
        if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
            return Err(bad());
        }
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| bad())?;
        let micros = t.unix_timestamp_nanos().div_euclid(1000);
        i64::try_from(micros).map(Timestamp).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp(951_782_400_000_001).to_rfc3339(),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            Timestamp(1_740_832_496_123_456).to_rfc3339(),
            "2025-03-01T12:34:56.123456Z"
        );
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for t in [
            0i64,
            951_782_400_000_001,
            1_740_832_496_123_456,
            4_102_444_799_999_999,
        ] {
            assert_eq!(
                Timestamp::parse_rfc3339(&Timestamp(t).to_rfc3339()).unwrap(),
                Timestamp(t)
            );
        }
        let z = Timestamp::parse_rfc3339("2025-03-01T12:34:56Z").unwrap();
        assert_eq!(
            Timestamp::parse_rfc3339("2025-03-01T14:34:56+02:00").unwrap(),
            z
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2025-03-01 07:04:56.0-05:30").unwrap(),
            z
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2025-03-01").unwrap(),
            Timestamp::parse_rfc3339("2025-03-01T00:00:00Z").unwrap()
        );
        for bad in [
            "",
            "2025-02-30T00:00:00Z",
            "2025-03-01T12:34:56",
            "2025-03-01T25:00:00Z",
            "yesterday",
            "2025-03-01T12:34:56.Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_instants_outside_four_digit_years_as_the_nearest_inside() {
        assert_eq!(
            Timestamp(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Timestamp(i64::MIN).to_rfc3339(),
            "0001-01-01T00:00:00.000000Z"
        );
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59.9999999Z").unwrap(),
            Timestamp(-1)
        );
    }
}
