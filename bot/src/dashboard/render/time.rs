//! Times, money and durations as the pages print them. Times are rendered in UTC with the
//! Unix milliseconds beside them (`data-ts`), and the page's script shows local time.

/// `HH:MM:SS` (UTC) of a Unix-ms time.
pub fn hms(ts_ms: u64) -> String {
    let secs = ts_ms / 1000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix-ms time.
pub fn datetime(ts_ms: u64) -> String {
    let days = i64::try_from(ts_ms / 1000 / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {} UTC", hms(ts_ms))
}

/// "just now", "5 min ago", "3 h ago", "2 days ago"; "never" for 0.
pub fn ago(ts_ms: u64, now_ms: u64) -> String {
    if ts_ms == 0 {
        return "never".to_owned();
    }
    let s = now_ms.saturating_sub(ts_ms) / 1000;
    match s {
        0..=9 => "just now".to_owned(),
        10..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// `$0.0123`.
pub fn money(usd: f64) -> String {
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

/// `850 ms`, `3.2 s`, `4 min 5 s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// Howard Hinnant's days → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(hms(3_723_000), "01:02:03");
        assert_eq!(datetime(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(datetime(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(ago(0, 5), "never");
        assert_eq!(ago(1_000, 2_000), "just now");
        assert_eq!(ago(1, 120_001), "2 min ago");
        assert_eq!(money(0.5), "$0.5000");
        assert_eq!(money(12.345), "$12.35");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(61_000), "1 min 1 s");
    }
}
