//! UTC timestamps with millisecond precision, written and read as RFC 3339
//! (`2026-11-21T14:03:07.250Z`); `YYYY-MM-DD` is read as midnight UTC.
//! Civil-date arithmetic after Howard Hinnant's `days_from_civil`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeParseError {
    /// Not `YYYY-MM-DD` or RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`).
    #[error("invalid time {0:?}: expected RFC 3339 (2026-11-21T14:03:07Z) or a date (2026-11-21)")]
    Syntax(String),
    /// A field out of range (month 13, February 30, hour 24 ...).
    #[error("invalid time {0:?}: a field is out of range")]
    Range(String),
}

const MS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// Midnight UTC of a calendar date; `None` if the date does not exist.
    pub fn from_date(year: i64, month: u32, day: u32) -> Option<Timestamp> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        days_from_civil(year, month, day)
            .checked_mul(MS_PER_DAY)
            .map(Timestamp)
    }

    /// The time `d` later (saturating).
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Parses RFC 3339 (`T`, `t` or a space between date and time; any
    /// number of fraction digits, truncated to milliseconds; `Z` or a
    /// numeric offset) or a bare `YYYY-MM-DD` (midnight UTC).
    pub fn parse(text: &str) -> Result<Timestamp, TimeParseError> {
        let syntax = || TimeParseError::Syntax(text.to_string());
        let range = || TimeParseError::Range(text.to_string());
        let b = text.trim().as_bytes();
        let (year, month, day) = date_fields(b).ok_or_else(syntax)?;
        let date = Timestamp::from_date(year, month, day).ok_or_else(range)?;
        if b.len() == 10 {
            return Ok(date);
        }
        let rest = b.get(10..).ok_or_else(syntax)?;
        let (sep, rest) = rest.split_first().ok_or_else(syntax)?;
        if !matches!(sep, b'T' | b't' | b' ') || rest.len() < 8 {
            return Err(syntax());
        }
        let hour = number(rest, 0, 2).ok_or_else(syntax)?;
        let minute = number(rest, 3, 2).ok_or_else(syntax)?;
        let second = number(rest, 6, 2).ok_or_else(syntax)?;
        if rest.get(2) != Some(&b':') || rest.get(5) != Some(&b':') {
            return Err(syntax());
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(range());
        }
        let mut pos = 8;
        let mut millis = 0i64;
        if rest.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while rest.get(pos).is_some_and(u8::is_ascii_digit) {
                if pos - start < 3 {
                    millis = millis * 10 + i64::from(rest[pos] - b'0');
                }
                pos += 1;
            }
            let digits = pos - start;
            if digits == 0 {
                return Err(syntax());
            }
            for _ in digits..3 {
                millis *= 10;
            }
        }
        let offset_minutes = match rest.get(pos..).ok_or_else(syntax)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let oh = number(&[*h1, *h2], 0, 2).ok_or_else(syntax)?;
                let om = number(&[*m1, *m2], 0, 2).ok_or_else(syntax)?;
                if oh > 23 || om > 59 {
                    return Err(range());
                }
                let minutes = oh * 60 + om;
                if *sign == b'-' { -minutes } else { minutes }
            }
            _ => return Err(syntax()),
        };
        let ms = ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis;
        Ok(Timestamp(date.0.saturating_add(ms)))
    }

    /// The calendar fields in UTC: (year, month, day, hour, minute, second,
    /// millisecond).
    pub fn fields(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let days = self.0.div_euclid(MS_PER_DAY);
        let ms_of_day = self.0.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        // ms_of_day < 86_400_000, so every part fits in u32.
        let part = |v: i64| u32::try_from(v).unwrap_or(0);
        (
            year,
            month,
            day,
            part(ms_of_day / 3_600_000),
            part(ms_of_day / 60_000 % 60),
            part(ms_of_day / 1000 % 60),
            part(ms_of_day % 1000),
        )
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        let magnitude = Duration::from_millis(t.0.unsigned_abs());
        if t.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl fmt::Display for Timestamp {
    /// `2026-11-21T14:03:07.250Z` (always three fraction digits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s, ms) = self.fields();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimeParseError;
    fn from_str(s: &str) -> Result<Timestamp, TimeParseError> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `YYYY-MM-DD` at the start of `b`.
fn date_fields(b: &[u8]) -> Option<(i64, u32, u32)> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = number(b, 0, 4)?;
    let month = u32::try_from(number(b, 5, 2)?).ok()?;
    let day = u32::try_from(number(b, 8, 2)?).ok()?;
    Some((year, month, day))
}

/// The decimal number in `b[at..at + len]` (digits only).
fn number(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let digits = b.get(at..at + len)?;
    digits.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month in 1..=12 and day in 1..=31 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(ts("1970-01-01T00:00:00Z").unix_ms(), 0);
        assert_eq!(ts("1970-01-01").unix_ms(), 0);
        // `date -u -d 2026-11-21T14:03:07Z +%s` = 1795269787
        assert_eq!(ts("2026-11-21T14:03:07Z").unix_ms(), 1_795_269_787_000);
        assert_eq!(ts("2026-11-21T14:03:07.25Z").unix_ms(), 1_795_269_787_250);
        assert_eq!(
            ts("2026-11-21t14:03:07.250999z").unix_ms(),
            1_795_269_787_250
        );
        assert_eq!(
            ts("2026-11-21 15:03:07.250+01:00").unix_ms(),
            1_795_269_787_250
        );
        assert_eq!(ts("2026-11-21T09:33:07-04:30").unix_ms(), 1_795_269_787_000);
        assert_eq!(ts("2000-02-29").unix_ms(), 951_782_400_000);
        assert_eq!(ts("1969-12-31T23:59:59.999Z").unix_ms(), -1);
        assert_eq!(ts("  2026-11-21  ").unix_ms(), 1_795_219_200_000);
    }

    #[test]
    fn formats_rfc3339_with_milliseconds() {
        assert_eq!(
            Timestamp::from_unix_ms(1_795_269_787_250).to_string(),
            "2026-11-21T14:03:07.250Z"
        );
        assert_eq!(
            Timestamp::from_unix_ms(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_ms(-1).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            ts("2024-02-29T23:59:59.999Z").to_string(),
            "2024-02-29T23:59:59.999Z"
        );
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "2026",
            "2026-11",
            "2026/11/21",
            "2026-11-21T",
            "2026-11-21T14:03",
            "2026-11-21T14:03:07",
            "2026-11-21T14:03:07.Z",
            "2026-11-21T14:03:07+0100",
            "2026-11-21X14:03:07Z",
            "2026-11-21T14:03:07Zjunk",
            "2026-1a-21",
            "yesterday",
            "２０２６-11-21",
        ] {
            assert!(
                matches!(Timestamp::parse(bad), Err(TimeParseError::Syntax(_))),
                "{bad:?}: {:?}",
                Timestamp::parse(bad)
            );
        }
        for bad in [
            "2026-13-01",
            "2026-00-10",
            "2026-02-29",
            "2100-02-29",
            "2026-04-31",
            "2026-11-21T24:00:00Z",
            "2026-11-21T12:60:00Z",
            "2026-11-21T12:00:61Z",
            "2026-11-21T12:00:00+24:00",
        ] {
            assert!(
                matches!(Timestamp::parse(bad), Err(TimeParseError::Range(_))),
                "{bad:?}: {:?}",
                Timestamp::parse(bad)
            );
        }
    }

    #[test]
    fn system_time_round_trip() {
        let t = Timestamp::from_unix_ms(1_795_269_787_250);
        assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        let before = Timestamp::from_unix_ms(-5_000);
        assert_eq!(Timestamp::from(SystemTime::from(before)), before);
        assert_eq!(
            t.saturating_add(Duration::from_millis(750)).since(t),
            Duration::from_millis(750)
        );
        assert_eq!(
            t.since(t.saturating_add(Duration::from_secs(1))),
            Duration::ZERO
        );
    }

    #[test]
    fn serde_as_a_string() {
        let t = ts("2026-11-21T14:03:07.250Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-21T14:03:07.250Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"nonsense\"").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let t = Timestamp::from_unix_ms(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn dates_round_trip(days in -719_162i64..2_932_896i64) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            prop_assert!(d <= days_in_month(y, m));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Timestamp::parse(&text);
        }
    }
}
