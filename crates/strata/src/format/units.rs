//! Ports of `github.com/docker/go-units` (sizes, durations) and Go's
//! `time.Time.String()`, as docker prints them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::gofmt::format_g;

const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn size_and_unit(mut size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// go-units `HumanSizeWithPrecision(size, precision)`: decimal units,
/// `%.*g` formatting (`4.26MB`, `999B`, `1e+03kB`).
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let (size, unit) = size_and_unit(size, 1000.0, &DECIMAL_ABBRS);
    format!("{}{}", format_g(size, Some(precision)), unit)
}

/// The size docker shows for images and containers:
/// `HumanSizeWithPrecision(size, 3)`.
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 3)
}

/// go-units `BytesSize`: binary units, `%.4g` (`1.5GiB`, `1.177MiB`).
pub fn bytes_size(size: f64) -> String {
    let (size, unit) = size_and_unit(size, 1024.0, &BINARY_ABBRS);
    format!("{}{}", format_g(size, Some(4)), unit)
}

/// Go's `Duration.Hours()`/`Minutes()`/`Seconds()` for a nanosecond count.
fn go_units(ns: i128, unit: i128) -> f64 {
    (ns / unit) as f64 + (ns % unit) as f64 / unit as f64
}

/// go-units `HumanDuration` on a signed nanosecond count (Go's
/// `time.Duration`); negative durations are "Less than a second".
pub fn human_duration_nanos(ns: i128) -> String {
    const SEC: i128 = 1_000_000_000;
    let seconds = go_units(ns, SEC) as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = go_units(ns, 60 * SEC) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (go_units(ns, 3600 * SEC) + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", go_units(ns, 3600 * SEC) as i64 / 24 / 365)
}

/// go-units `HumanDuration`: "Less than a second", "1 second", "N seconds",
/// "About a minute", "N minutes", "About an hour", "N hours", "N days",
/// "N weeks", "N months", "N years".
pub fn human_duration(d: Duration) -> String {
    human_duration_nanos(d.as_nanos() as i128)
}

/// docker's "created since" text: `HumanDuration(now - created) + " ago"`,
/// both Unix times in seconds (`2 weeks ago`; a future time gives
/// `Less than a second ago`).
pub fn ago(created_unix_secs: i64, now_unix_secs: i64) -> String {
    human_duration_nanos(
        (i128::from(now_unix_secs) - i128::from(created_unix_secs)) * 1_000_000_000,
    ) + " ago"
}

/// [`ago`] at the current time.
pub fn ago_now(created_unix_secs: i64) -> String {
    let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    ago(created_unix_secs, now)
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's `time.Time.String()` of a UTC time:
/// `2024-01-02 15:04:05 +0000 UTC`, with `.123456789`-style fractional
/// seconds (trailing zeros dropped) when `nanos` is not zero.
pub fn go_time(unix_secs: i64, nanos: u32) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    let mut frac = String::new();
    if nanos != 0 {
        frac = format!(".{:09}", nanos.min(999_999_999));
        while frac.ends_with('0') {
            frac.pop();
        }
    }
    format!(
        "{year}-{m:02}-{d:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_size_matches_go_units() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(1024.0), "1.02kB");
        assert_eq!(human_size(4_257_224.0), "4.26MB");
        assert_eq!(human_size(1_500_000.0), "1.5MB");
        assert_eq!(human_size(7_800_000.0), "7.8MB");
        assert_eq!(human_size(999_999.0), "1e+03kB");
        assert_eq!(human_size(123_456_789.0), "123MB");
        assert_eq!(human_size(1_234_567_890.0), "1.23GB");
        assert_eq!(human_size(1e15), "1PB");
        assert_eq!(human_size(1e27), "1e+03YB");
        assert_eq!(human_size_with_precision(1_234_567.0, 4), "1.235MB");
        assert_eq!(human_size_with_precision(3.0, 4), "3B");
    }

    #[test]
    fn bytes_size_matches_go_units() {
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1023.0), "1023B");
        assert_eq!(bytes_size(1024.0), "1KiB");
        assert_eq!(bytes_size(1_610_612_736.0), "1.5GiB");
        assert_eq!(bytes_size(1_234_567.0), "1.177MiB");
        assert_eq!(bytes_size(1024.0 * 1024.0 * 1024.0 * 1024.0 * 5.0), "5TiB");
    }

    #[test]
    fn human_duration_matches_go_units_tests() {
        let s = |n: u64| Duration::from_secs(n);
        let (min, hour, day) = (60, 3600, 86_400);
        let (week, month, year) = (7 * day, 30 * day, 365 * day);
        assert_eq!(
            human_duration(Duration::from_millis(450)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(45)), "45 seconds");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(3 * min)), "3 minutes");
        assert_eq!(human_duration(s(35 * min + 40)), "35 minutes");
        assert_eq!(human_duration(s(59 * min)), "59 minutes");
        assert_eq!(human_duration(s(hour)), "About an hour");
        assert_eq!(human_duration(s(hour + 29 * min)), "About an hour");
        assert_eq!(human_duration(s(hour + 31 * min)), "2 hours");
        assert_eq!(human_duration(s(hour + 59 * min)), "2 hours");
        assert_eq!(human_duration(s(3 * hour + 29 * min)), "3 hours");
        assert_eq!(human_duration(s(3 * hour + 31 * min)), "4 hours");
        assert_eq!(human_duration(s(24 * hour)), "24 hours");
        assert_eq!(human_duration(s(day + 12 * hour)), "36 hours");
        assert_eq!(human_duration(s(2 * day)), "2 days");
        assert_eq!(human_duration(s(7 * day)), "7 days");
        assert_eq!(human_duration(s(13 * day + 5 * hour)), "13 days");
        assert_eq!(human_duration(s(2 * week)), "2 weeks");
        assert_eq!(human_duration(s(2 * week + 4 * day)), "2 weeks");
        assert_eq!(human_duration(s(4 * week + 3 * day)), "4 weeks");
        assert_eq!(human_duration(s(month)), "4 weeks");
        assert_eq!(human_duration(s(month + 2 * week)), "6 weeks");
        assert_eq!(human_duration(s(2 * month)), "2 months");
        assert_eq!(human_duration(s(5 * month + 2 * week)), "5 months");
        assert_eq!(human_duration(s(24 * month)), "24 months");
        assert_eq!(human_duration(s(24 * month + 2 * week)), "2 years");
        assert_eq!(human_duration(s(3 * year + 2 * month)), "3 years");
    }

    #[test]
    fn ago_text() {
        let now = 1_700_000_000;
        assert_eq!(ago(now - 3 * 3600, now), "3 hours ago");
        assert_eq!(ago(now + 50, now), "Less than a second ago");
        assert_eq!(ago(now - 14 * 86_400, now), "2 weeks ago");
        assert_eq!(ago(now - 1, now), "1 second ago");
        assert!(ago_now(0).ends_with(" years ago"));
    }

    #[test]
    fn go_time_string() {
        assert_eq!(go_time(0, 0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time(1_704_207_845, 0), "2024-01-02 15:04:05 +0000 UTC");
        assert_eq!(
            go_time(1_704_207_845, 120_000_000),
            "2024-01-02 15:04:05.12 +0000 UTC"
        );
        assert_eq!(
            go_time(951_782_400, 1),
            "2000-02-29 00:00:00.000000001 +0000 UTC"
        );
        assert_eq!(go_time(-1, 0), "1969-12-31 23:59:59 +0000 UTC");
        assert_eq!(
            go_time(253_402_300_800, 0),
            "10000-01-01 00:00:00 +0000 UTC"
        );
    }
}
