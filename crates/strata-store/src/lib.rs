//! The data root of strata: the metadata database, the content store, leases, and the
//! error kinds every module maps its errors to.

mod content;
mod db;
mod digest;
mod error;
pub mod fsutil;
#[doc(hidden)]
pub mod testutil;
mod kind;
mod lease;
mod root;

pub use content::{ContentStore, Info, Writer};
pub use db::{find_by_id_or_name, Db};
pub use digest::{Algorithm, Digest, DigestError, Hasher, HashingReader};
pub use error::{Result, StoreError};
pub use kind::{Classify, ErrorKind};
pub use lease::{Lease, Sweep};
pub use root::DataRoot;

/// Random lowercase hex from the OS generator (ids, temp names).
/// An OS error as Go (and so docker) prints it: "no space left on device", not
/// "No space left on device (os error 28)". Other errors print as they are.
pub fn os_text(e: &std::io::Error) -> String {
    let t = e.to_string();
    if e.raw_os_error().is_none() {
        return t;
    }
    let t = t.split(" (os error ").next().unwrap_or(&t);
    let mut c = t.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random generator is available");
    hex::encode(buf)
}

/// RFC 3339 with nanoseconds in UTC, as Go's `time.RFC3339Nano` prints it.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format_rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats a UNIX time as Go's RFC3339Nano (trailing zeros of the fraction trimmed).
pub fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Unix seconds of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `…+02:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let v = rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60;
            if rest.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    // Days from civil (proleptic Gregorian).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::format_rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_rfc3339(1_700_000_000, 120_000_000), "2023-11-14T22:13:20.12Z");
        assert_eq!(super::parse_rfc3339("2023-11-14T22:13:20.12Z"), Some(1_700_000_000));
        assert_eq!(super::parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(1_700_000_000));
    }
}
