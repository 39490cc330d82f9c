//! Unix seconds to and from the UTC calendar, for the search form's dates and
//! the pages' timestamps. Kept here (a few lines of Howard Hinnant's
//! `days_from_civil`) rather than pulling a date crate for two conversions.

/// "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM" (an HTML date or datetime-local input), as UTC.
pub(crate) fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86400;
    if let Some(t) = time {
        let mut hm = t.split(':');
        let h: i64 = hm.next()?.parse().ok()?;
        let min: i64 = hm.next()?.parse().ok()?;
        if !(0..24).contains(&h) || !(0..60).contains(&min) {
            return None;
        }
        secs += h * 3600 + min * 60;
    }
    Some(secs)
}

/// "YYYY-MM-DD HH:MM:SS" in UTC.
pub(crate) fn format(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("2026-12-05T07:41"), Some(1_796_456_460));
        assert_eq!(format(1_796_456_460), "2026-12-05 07:41:00");
        assert_eq!(format(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(parse("2000-02-29"), Some(951_782_400));
        assert_eq!(parse("2026-13-01"), None);
        assert_eq!(parse("yesterday"), None);
    }
}
