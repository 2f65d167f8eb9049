//! Timestamps as spikewatch exchanges them: RFC 3339 strings on the wire, `i64` milliseconds
//! since the Unix epoch (UTC) everywhere inside.
//!
//! Only the years 0000 to 9999 are representable in RFC 3339, so [`MIN_TS_MS`]..=[`MAX_TS_MS`]
//! is the range every parser here accepts and every formatter can write.
//!
//! Parsing has a hand-written fast path for the shape producers nearly always send,
//! `YYYY-MM-DDTHH:MM:SS[.fff…]Z`, and falls back to chrono for everything else RFC 3339
//! allows (numeric offsets, lower-case `t`/`z`, a space separator, leap seconds). Fractions
//! finer than a millisecond are truncated toward the past on both paths.

/// `0000-01-01T00:00:00Z` in epoch milliseconds: the earliest representable timestamp.
pub const MIN_TS_MS: i64 = -62_167_219_200_000;
/// `9999-12-31T23:59:59.999Z` in epoch milliseconds: the latest representable timestamp.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;

const MS_PER_DAY: i64 = 86_400_000;

/// Parses an RFC 3339 timestamp (any offset) to UTC epoch milliseconds.
///
/// Returns `None` if `s` is not RFC 3339 or lies outside [`MIN_TS_MS`]..=[`MAX_TS_MS`] once
/// converted to UTC.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    match parse_fast(s.as_bytes()) {
        Some(ms) => Some(ms),
        None => parse_slow(s),
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC: `YYYY-MM-DDTHH:MM:SSZ`, or with `.fff` when the
/// timestamp is not on a whole second. `None` outside [`MIN_TS_MS`]..=[`MAX_TS_MS`].
pub fn format_rfc3339_ms(ms: i64) -> Option<String> {
    let mut out = String::with_capacity(24);
    write_rfc3339_ms(&mut out, ms).then_some(out)
}

/// Appends the RFC 3339 form of `ms` (see [`format_rfc3339_ms`]) to `out`. Returns `false`, and
/// appends nothing, when `ms` is out of range.
pub fn write_rfc3339_ms(out: &mut String, ms: i64) -> bool {
    if !(MIN_TS_MS..=MAX_TS_MS).contains(&ms) {
        return false;
    }
    detector::time::write_rfc3339(out, ms);
    true
}

/// The general path: whatever chrono's RFC 3339 parser accepts, range-checked after conversion.
fn parse_slow(s: &str) -> Option<i64> {
    let ms = chrono::DateTime::parse_from_rfc3339(s)
        .ok()?
        .timestamp_millis();
    (MIN_TS_MS..=MAX_TS_MS).contains(&ms).then_some(ms)
}

/// `YYYY-MM-DDTHH:MM:SS[.f+]Z` exactly; anything else returns `None` and goes to chrono.
fn parse_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let year = i64::from(digits2(b, 0)?) * 100 + i64::from(digits2(b, 2)?);
    let month = digits2(b, 5)?;
    let day = digits2(b, 8)?;
    let hour = digits2(b, 11)?;
    let minute = digits2(b, 14)?;
    let second = digits2(b, 17)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Leap seconds (60) are left to chrono.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let frac_ms = match &b[19..] {
        [b'Z'] => 0,
        [b'.', rest @ .., b'Z'] => {
            // More than nine digits is legal but rare enough to leave to chrono.
            if rest.is_empty() || rest.len() > 9 || !rest.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let mut ms = 0i64;
            for i in 0..3 {
                ms = ms * 10 + rest.get(i).map_or(0, |d| i64::from(d - b'0'));
            }
            ms
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some(days * MS_PER_DAY + secs * 1000 + frac_ms)
}

fn digits2(b: &[u8], at: usize) -> Option<u32> {
    let (hi, lo) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    (hi < 10 && lo < 10).then(|| u32::from(hi) * 10 + u32::from(lo))
}

fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap_year(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2026-02-12T21:20:10Z", Some(1_770_931_210_000)),
            ("2026-02-12T21:20:10.5Z", Some(1_770_931_210_500)),
            ("2026-02-12T21:20:10.123456789Z", Some(1_770_931_210_123)),
            ("2026-02-12T21:20:10.1234567891Z", Some(1_770_931_210_123)),
            ("2026-02-12T23:20:10+02:00", Some(1_770_931_210_000)),
            ("2026-02-12t21:20:10z", Some(1_770_931_210_000)),
            ("2026-02-12 21:20:10Z", Some(1_770_931_210_000)),
            ("1969-12-31T23:59:59.999Z", Some(-1)),
            ("0000-01-01T00:00:00Z", Some(MIN_TS_MS)),
            ("9999-12-31T23:59:59.999Z", Some(MAX_TS_MS)),
            ("0000-01-01T00:00:00+00:01", None),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2023-02-29T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-02-12T24:00:00Z", None),
            ("2026-02-12T21:20:10", None),
            ("2026-02-12T21:20:10.Z", None),
            ("2026-02-12", None),
            ("", None),
            ("yesterday", None),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_rfc3339_ms(s), want, "{s}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            format_rfc3339_ms(0).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            format_rfc3339_ms(-1).as_deref(),
            Some("1969-12-31T23:59:59.999Z")
        );
        assert_eq!(
            format_rfc3339_ms(1_770_931_210_050).as_deref(),
            Some("2026-02-12T21:20:10.050Z")
        );
        assert_eq!(format_rfc3339_ms(MAX_TS_MS + 1), None);
        assert_eq!(format_rfc3339_ms(MIN_TS_MS - 1), None);
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(ms in MIN_TS_MS..=MAX_TS_MS) {
            let s = format_rfc3339_ms(ms).unwrap();
            prop_assert_eq!(parse_fast(s.as_bytes()), Some(ms));
            prop_assert_eq!(parse_slow(&s), Some(ms));
        }

        #[test]
        fn fast_path_agrees_with_chrono(
            ms in MIN_TS_MS..=MAX_TS_MS,
            sub in 0u32..1_000_000,
            digits in 1usize..=9,
        ) {
            let base = format_rfc3339_ms(ms - ms.rem_euclid(1000)).unwrap();
            let frac = format!("{:03}{sub:06}", ms.rem_euclid(1000));
            let s = format!("{}.{}Z", &base[..19], &frac[..digits]);
            prop_assert_eq!(parse_fast(s.as_bytes()), parse_slow(&s), "{}", s);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let fast = parse_fast(s.as_bytes());
            if let Some(ms) = fast {
                prop_assert_eq!(Some(ms), parse_slow(&s));
            }
            let _ = parse_rfc3339_ms(&s);
        }

        #[test]
        fn shaped_garbage_agrees(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33,
            h in 0u32..26, mi in 0u32..62, s in 0u32..62,
        ) {
            let t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
            if let Some(ms) = parse_fast(t.as_bytes()) {
                prop_assert_eq!(Some(ms), parse_slow(&t), "{}", t);
            } else if s < 60 {
                prop_assert_eq!(parse_slow(&t), None, "{}", t);
            }
        }
    }
}
