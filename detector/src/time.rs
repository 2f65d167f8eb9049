//! RFC 3339 formatting of event times without a clock or a date crate.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // Both are small and positive by construction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (y, m as u32, d as u32)
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads back what [`write_rfc3339`] writes (`YYYY-MM-DDTHH:MM:SS[.mmm]Z`, UTC); `None` for
/// anything else. Not a general RFC 3339 parser: ingest has that, for input.
pub fn parse_own_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let milli = match b.len() {
        20 => 0,
        24 if b[19] == b'.' => num(20..23)?,
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + milli)
}

/// `2026-02-12T21:20:10Z`, with `.mmm` only when the time has milliseconds.
pub fn format_rfc3339(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, ms);
    out
}

/// Appends the RFC 3339 UTC form of `ms` (see [`format_rfc3339`]) to `out`. Years outside
/// 0000..=9999 are written as they come; callers that must stay within RFC 3339 check the range.
pub fn write_rfc3339(out: &mut String, ms: i64) {
    use std::fmt::Write as _;
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    // Writing to a String cannot fail.
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if milli != 0 {
        let _ = write!(out, ".{milli:03}");
    }
    out.push('Z');
}

pub(crate) struct Rfc3339;

impl Rfc3339 {
    pub fn serialize<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ms))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        parse_own_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a UTC RFC 3339 time")))
    }
}

pub(crate) struct Rfc3339Opt;

impl Rfc3339Opt {
    pub fn serialize<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            // `serialize_some`, not a bare string: binary formats tag the variant.
            Some(ms) => s.serialize_some(&format_rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = serde::Deserialize::deserialize(d)?;
        s.map(|s| {
            parse_own_rfc3339(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("`{s}` is not a UTC RFC 3339 time"))
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::{format_rfc3339, parse_own_rfc3339};

    #[test]
    fn reads_back_what_it_writes() {
        for ms in [
            0,
            1_770_931_210_000,
            1_709_251_199_999,
            -1_000,
            951_782_400_123,
            4_102_444_799_000,
        ] {
            assert_eq!(parse_own_rfc3339(&format_rfc3339(ms)), Some(ms), "{ms}");
        }
        for bad in [
            "",
            "2026-02-12 21:20:10Z",
            "2026-02-12T21:20:10",
            "2026-13-12T21:20:10Z",
            "2026-02-12T21:20:10.5Z",
            "2026-02-12T21:20:10+01:00",
        ] {
            assert_eq!(parse_own_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_770_931_210_000, "2026-02-12T21:20:10Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (-1_000, "1969-12-31T23:59:59Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_rfc3339(ms), want, "{ms}");
        }
    }
}
