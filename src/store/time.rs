//! The store's timestamps (Unix seconds, UTC) as people read and write them:
//! `YYYY-MM-DD HH:MM:SS` on the pages and in the CLI, and a calendar date with
//! an optional time of day as a search bound (an HTML date or datetime-local
//! input, or `--since`/`--until`).
//!
//! The calendar is the `time` crate's (already in the tree through rcgen and
//! x509-parser): it refuses dates that do not exist (`2026-02-30`), which the
//! two hand-written conversions this replaces accepted and rolled into March.
//! Must never: guess a time zone (everything is UTC) or panic on any input.

use time::{Date, Month, OffsetDateTime, Time};

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds, in UTC (`?` for a time `time`
/// cannot represent, far outside what the store holds).
pub(crate) fn format(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("? (Unix time {unix})"),
    }
}

/// `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM` or
/// `HH:MM:SS`, optionally ending in `Z`; read as UTC. `None` for anything
/// else, or for a date or time that does not exist.
pub(crate) fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, clock) = match text.split_once(['T', ' ']) {
        Some((d, rest)) => (d, Some(rest.strip_suffix('Z').unwrap_or(rest))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    let time = match clock {
        None => Time::MIDNIGHT,
        Some(clock) => {
            let mut hms = clock.split(':');
            let (Some(h), Some(min), s, None) = (hms.next(), hms.next(), hms.next(), hms.next()) else {
                return None;
            };
            let s = match s {
                Some(s) => s.parse().ok()?,
                None => 0,
            };
            Time::from_hms(h.parse().ok()?, min.parse().ok()?, s).ok()?
        }
    };
    Some(date.with_time(time).assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        assert_eq!(format(0), "1970-01-01 00:00:00");
        assert_eq!(format(1_796_456_460), "2026-12-05 07:41:00");
        assert_eq!(format(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format(-1), "1969-12-31 23:59:59");
        assert!(format(i64::MAX).starts_with('?'));
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("2026-12-05T07:41"), Some(1_796_456_460));
        assert_eq!(parse("2026-12-05 07:41:00Z"), Some(1_796_456_460));
        assert_eq!(parse(" 2000-02-29 "), Some(951_782_400));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in [
            "2026-02-30",
            "2026-13-01",
            "2026-12-05T24:00",
            "2026-12-05T10",
            "2026-12-05T10:00:00:00",
            "2026-12",
            "2026-12-05-01",
            "yesterday",
            "",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
