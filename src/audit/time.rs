//! RFC 3339 timestamps in UTC with microseconds (`2025-03-01T12:34:56.123456Z`), without a
//! date-time dependency: the records need exactly one format, `audit show --since` parses it.

use std::time::{SystemTime, UNIX_EPOCH};

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

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits, always `Z`).
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }

    /// Parses RFC 3339 (`T` or space between date and time, optional fraction of any length,
    /// `Z` or a `+HH:MM`/`-HH:MM` offset). A bare date `YYYY-MM-DD` means its midnight UTC.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let bad = || format!("not an RFC 3339 time: {s:?} (expected e.g. 2025-03-01T12:00:00Z)");
        let b = s.trim().as_bytes();
        let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
            let part = b.get(r).ok_or_else(bad)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            Ok(part
                .iter()
                .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
        };
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
            return Err(bad());
        }
        let day_micros = days_from_civil(y, mo, d) * 86_400 * 1_000_000;
        if b.len() == 10 {
            return Ok(Timestamp(day_micros));
        }
        if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let mut i = 19;
        let mut micros = 0i64;
        if b[i] == b'.' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
            let frac = &b[start..i.min(start + 6)];
            micros = frac
                .iter()
                .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'))
                * 10i64.pow(6 - frac.len() as u32);
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'-' { -o } else { o }
            }
            _ => return Err(bad()),
        };
        let secs = h * 3600 + mi * 60 + sec.min(59) - offset_secs;
        Ok(Timestamp(day_micros + secs * 1_000_000 + micros))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
}
