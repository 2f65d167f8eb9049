//! The fast path: a hand-written scanner for the shape producers send, straight to a checked
//! [`Row`], with the general path (serde_json into [`super::raw`], then `validate`) as the
//! fallback.
//!
//! [`fast_row`] either returns the row the general path would return for the message, or gives
//! up (`None`) and lets the general path decide. It gives up on anything it does not handle:
//! a backslash or control character in a string, a negative number, an integer beyond `u64`, a
//! number overflowing `f64`, an array or object value (except a well-formed `status`), a
//! repeated known field, any syntax error, and every message that breaks a rule of the format.
//! So every rejection and its detail come from one place, and this module only has to be right
//! about what it accepts. Field values go through the general path's own checks (`key`,
//! `timestamp`, `interval`, `count`, `latency`), so the rules are written once; the property
//! test at the bottom checks both paths agree.
//!
//! Numbers are read as serde_json reads them: integers exactly, and numbers with a fraction or
//! exponent correctly rounded (exactly by Clinger's fast path when the digits fit 53 bits and
//! the power of ten is exact, else by Rust's parser; serde_json's `float_roundtrip` is
//! correctly rounded as well, so all give the same `f64`).

use std::borrow::Cow;

use super::raw::{FieldId, Raw};
use super::{count, count_u32, interval, key, latency, timestamp, Row};

/// The checked row of one message of the common shape, or `None` to let the general path
/// decide.
pub(crate) fn fast_row<'m>(
    text: &'m str,
    now_ms: i64,
    max_future_ms: i64,
    stamps: &mut StampCache,
) -> Option<Row<'m>> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        p: 0,
    };
    let mut row = crate::format::empty_row(Cow::Borrowed(""), Cow::Borrowed(""), 0);
    let mut seen: u16 = 0;
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        // No required field: the general path says which is missing.
        return None;
    }
    // The field expected next: producers write their fields in one order, nearly always the
    // contract's, which is `FieldId`'s.
    let mut expect = Some(FieldId::Ts);
    loop {
        let field = match expect.filter(|&f| s.key_is(f)) {
            Some(f) => Some(f),
            None => FieldId::from_key(s.string()?),
        };
        s.ws();
        s.eat(b':')?;
        s.ws();
        match field {
            None => {
                s.skip_scalar()?;
                expect = None;
            }
            Some(f) => {
                let bit = 1u16 << (f as u16);
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                s.field(f, &mut row, stamps)?;
                expect = f.next();
            }
        }
        s.ws();
        match s.next()? {
            b',' => s.ws(),
            b'}' => break,
            _ => return None,
        }
    }
    s.ws();
    if s.p != s.b.len() {
        return None;
    }
    const REQUIRED: u16 = 1 << FieldId::Ts as u16
        | 1 << FieldId::Cluster as u16
        | 1 << FieldId::Service as u16
        | 1 << FieldId::Requests as u16
        | 1 << FieldId::Errors as u16;
    let cross_checks = seen & REQUIRED == REQUIRED
        && row.ts_ms <= now_ms.saturating_add(max_future_ms)
        && row.errors <= row.requests
        && row.retries.is_none_or(|r| r <= row.requests);
    cross_checks.then_some(row)
}

/// The last RFC 3339 `ts` text read and its value: a producer stamps every series of an
/// interval alike, so most messages repeat the previous message's `ts` byte for byte.
#[derive(Debug, Default)]
pub(crate) struct StampCache {
    text: [u8; 32],
    len: usize,
    ms: i64,
}

impl StampCache {
    #[inline]
    fn get(&self, text: &str) -> Option<i64> {
        (self.len > 0 && self.text.get(..self.len) == Some(text.as_bytes())).then_some(self.ms)
    }

    #[inline]
    fn put(&mut self, text: &str, ms: i64) {
        if let Some(slot) = self.text.get_mut(..text.len()) {
            slot.copy_from_slice(text.as_bytes());
            self.len = text.len();
            self.ms = ms;
        }
    }
}

/// A number as JSON wrote it (small enough to travel in registers).
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(u64),
    Float(f64),
}

impl Num {
    /// What the general parser makes of the same number.
    #[inline]
    fn raw(self) -> Raw<'static> {
        match self {
            Num::Int(n) => Raw::U64(n),
            Num::Float(x) => Raw::F64(x),
        }
    }

    // The field rules, integers inline (every `u64` is a count, a latency; `1..=86400` is an
    // interval in whole seconds), anything else through the general path's own check.

    #[inline]
    fn count(self, f: FieldId) -> Option<u64> {
        match self {
            Num::Int(n) => Some(n),
            Num::Float(_) => count(&self.raw(), f).ok(),
        }
    }

    #[inline]
    fn count_u32(self, f: FieldId) -> Option<u32> {
        match self {
            Num::Int(n) => u32::try_from(n).ok(),
            Num::Float(_) => count_u32(&self.raw(), f).ok(),
        }
    }

    #[inline]
    fn latency(self, f: FieldId) -> Option<f64> {
        match self {
            Num::Int(n) => Some(n as f64),
            Num::Float(_) => latency(&self.raw(), f).ok(),
        }
    }

    #[inline]
    fn interval_ms(self) -> Option<u32> {
        match self {
            Num::Int(n @ 1..=86_400) => u32::try_from(n * 1000).ok(),
            _ => interval(&self.raw()).ok(),
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    p: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.p).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.p += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON whitespace: space, tab, line feed, carriage return.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.p += 1;
        }
    }

    /// A string without escapes or control characters, borrowed from the message.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.p;
        let end = string_end(self.b, start)?;
        self.p = end + 1;
        // Both ends sit next to an ASCII quote, so they are character boundaries.
        self.text.get(start..end)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.p + word.len();
        (self.b.get(self.p..end)? == word).then(|| self.p = end)
    }

    /// If the next bytes are the key of `f` (quotes included), skips them.
    #[inline]
    fn key_is(&mut self, f: FieldId) -> bool {
        // One literal per arm, so each comparison has a constant length and compiles to a
        // few word compares instead of a `memcmp` call.
        match f {
            FieldId::Ts => self.lit(b"\"ts\""),
            FieldId::Cluster => self.lit(b"\"cluster\""),
            FieldId::Service => self.lit(b"\"service\""),
            FieldId::Region => self.lit(b"\"region\""),
            FieldId::IntervalS => self.lit(b"\"interval_s\""),
            FieldId::Requests => self.lit(b"\"requests\""),
            FieldId::Errors => self.lit(b"\"errors\""),
            FieldId::Retries => self.lit(b"\"retries\""),
            FieldId::LatencyP50 => self.lit(b"\"latency_p50_ms\""),
            FieldId::LatencyP99 => self.lit(b"\"latency_p99_ms\""),
            FieldId::PoolActive => self.lit(b"\"db_pool_active\""),
            FieldId::PoolMax => self.lit(b"\"db_pool_max\""),
            FieldId::PoolPending => self.lit(b"\"db_pool_pending\""),
            FieldId::Status => self.lit(b"\"status\""),
        }
    }

    /// If the next bytes are `word`, skips them.
    #[inline(always)]
    fn lit<const N: usize>(&mut self, word: &[u8; N]) -> bool {
        let hit = self.b.get(self.p..self.p + N) == Some(word.as_slice());
        if hit {
            self.p += N;
        }
        hit
    }

    /// Skips ASCII digits, folding them into a decimal value (wrapping: callers count the
    /// digits to know when it may have). Returns the value and the number of digits.
    #[inline]
    fn digits(&mut self) -> (u64, usize) {
        let (b, start) = (self.b, self.p);
        let mut p = start;
        let mut n = 0u64;
        while let Some(&c) = b.get(p) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
            p += 1;
        }
        self.p = p;
        (n, p - start)
    }

    /// A non-negative JSON number: `Int` when integral and within `u64`, `Float` when written
    /// with a fraction or exponent and finite.
    #[inline]
    fn number(&mut self) -> Option<Num> {
        let start = self.p;
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        let (int, int_len) = self.digits();
        if int_len > 1 && self.b.get(start) == Some(&b'0') {
            return None;
        }
        match self.peek() {
            Some(b'.' | b'e' | b'E') => {}
            // Up to 19 digits always fit; more may not (beyond u64 the general path reads a
            // float, so those go there).
            _ if int_len <= 19 => return Some(Num::Int(int)),
            _ => {
                let digits = self.b.get(start..self.p)?;
                return digits
                    .iter()
                    .try_fold(0u64, |n, &d| {
                        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                    })
                    .map(Num::Int);
            }
        }
        let (mut frac, mut frac_len) = (0, 0);
        if self.peek() == Some(b'.') {
            self.p += 1;
            (frac, frac_len) = self.digits();
            if frac_len == 0 {
                return None;
            }
        }
        let mut plain = true;
        if let Some(b'e' | b'E') = self.peek() {
            self.p += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.p += 1;
            }
            if self.digits().1 == 0 {
                return None;
            }
            plain = false;
        }
        if plain && int_len + frac_len <= 15 {
            // At most 15 digits: below 2^53, exact; so is 10^k for k <= 15: one correctly
            // rounded division of exact values (Clinger's fast path).
            let m = int * POW10_U64[frac_len] + frac;
            return Some(Num::Float(m as f64 / POW10[frac_len]));
        }
        let x: f64 = self.text.get(start..self.p)?.parse().ok()?;
        x.is_finite().then_some(Num::Float(x))
    }

    /// Skips any scalar value (an unknown field's): checked for syntax, not kept.
    #[inline]
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'0'..=b'9' => self.number().map(drop),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            _ => None,
        }
    }

    /// Skips a `null`: `Some(true)`; `Some(false)` when the value is something else.
    #[inline]
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null").map(|()| true)
    }

    /// An optional field's value: `None` for `null`, else the number through `check`.
    #[inline]
    fn optional<T>(&mut self, read: impl Fn(Num) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            return Some(None);
        }
        let n = self.number()?;
        Some(Some(read(n)?))
    }

    /// Reads the value of a known field into `row`, through the general path's checks (or
    /// their obvious integer cases). Only values of the right JSON type are read; any other
    /// goes to the general path, which names the problem.
    #[inline]
    fn field(&mut self, f: FieldId, row: &mut Row<'a>, stamps: &mut StampCache) -> Option<()> {
        use FieldId as F;
        let str_raw = |s: &'a str| Raw::Str(Cow::Borrowed(s));
        match f {
            F::Ts if self.peek()? == b'"' => {
                let text = self.string()?;
                row.ts_ms = match stamps.get(text) {
                    Some(ms) => ms,
                    None => {
                        let ms = timestamp(&str_raw(text)).ok()?;
                        stamps.put(text, ms);
                        ms
                    }
                };
            }
            F::Ts => row.ts_ms = timestamp(&self.number()?.raw()).ok()?,
            F::Cluster => row.cluster = key(str_raw(self.string()?), f).ok()?,
            F::Service => row.service = key(str_raw(self.string()?), f).ok()?,
            F::Region => {
                if !self.null()? {
                    row.region = Some(Cow::Borrowed(self.string()?));
                }
            }
            F::IntervalS => {
                if let Some(ms) = self.optional(Num::interval_ms)? {
                    row.interval_ms = ms;
                }
            }
            F::Requests => row.requests = self.number()?.count(f)?,
            F::Errors => row.errors = self.number()?.count(f)?,
            F::Retries => row.retries = self.optional(|n| n.count(f))?,
            F::LatencyP50 => row.latency_p50_ms = self.optional(|n| n.latency(f))?,
            F::LatencyP99 => row.latency_p99_ms = self.optional(|n| n.latency(f))?,
            F::PoolActive => row.db_pool_active = self.optional(|n| n.count_u32(f))?,
            F::PoolMax => row.db_pool_max = self.optional(|n| n.count_u32(f))?,
            F::PoolPending => row.db_pool_pending = self.optional(|n| n.count_u32(f))?,
            F::Status => self.status()?,
        }
        Some(())
    }

    /// `status`: `null`, or an object whose every entry is a non-empty code and a
    /// non-negative integer (any other `status` is left to the general path, which explains
    /// what is wrong with it).
    fn status(&mut self) -> Option<()> {
        if self.peek()? == b'n' {
            return self.literal(b"null");
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.p += 1;
            return Some(());
        }
        loop {
            if self.string()?.is_empty() {
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            let Num::Int(_) = self.number()? else {
                return None;
            };
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
const POW10_U64: [u64; 16] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
];

/// Index of the quote closing a string whose text starts at `p`, or `None` at a backslash, a
/// control character or the end of the message.
///
/// Eight bytes at a time: each lane of a `u64` is tested for quotes, backslashes and bytes
/// below 0x20 with the classic "has a zero byte" bit trick, whose lowest flagged lane is always
/// exact.
#[inline]
fn string_end(b: &[u8], mut p: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_lanes = |x: u64, below: u64| x.wrapping_sub(ONES * below) & !x & HIGH;
    while let Some(chunk) = b.get(p..p + 8) {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(chunk);
        let w = u64::from_le_bytes(lanes);
        let special = zero_lanes(w ^ (ONES * u64::from(b'"')), 1)
            | zero_lanes(w ^ (ONES * u64::from(b'\\')), 1)
            | zero_lanes(w, 0x20);
        if special != 0 {
            let at = p + (special.trailing_zeros() / 8) as usize;
            return (b.get(at) == Some(&b'"')).then_some(at);
        }
        p += 8;
    }
    loop {
        match *b.get(p)? {
            b'"' => return Some(p),
            b'\\' | 0..=0x1f => return None,
            _ => p += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{parse, validate, Rejection, Sample};
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;
    const FUTURE: i64 = 24 * 3_600_000;

    /// What the general path makes of the same text.
    fn general(text: &str) -> Result<Row<'_>, Rejection> {
        validate(parse(text)?, NOW, FUTURE)
    }

    #[test]
    fn takes_the_common_shapes_like_the_general_path() {
        // (name, message)
        let cases: &[(&str, &str)] = &[
            (
                "contract example",
                r#"{"ts":"2026-02-12T21:20:10Z","cluster":"prod-use1-a","service":"conversation","region":"us-east-1","interval_s":10,"requests":12000,"errors":4200,"retries":1800,"latency_p50_ms":85.0,"latency_p99_ms":950.0,"db_pool_active":180,"db_pool_max":200,"db_pool_pending":35,"status":{"403":200,"503":4000}}"#,
            ),
            (
                "integer ts",
                r#"{"ts":1770931210000,"cluster":"c","service":"s","requests":1,"errors":0}"#,
            ),
            (
                "offset ts",
                r#"{"ts":"2026-02-12T23:20:10.5+02:00","cluster":"c","service":"s","requests":1,"errors":0}"#,
            ),
            (
                "whitespace everywhere",
                " {\t\"ts\" : 1 ,\n\"cluster\":\"c\"\r, \"service\" :\"s\" ,\"requests\": 3 , \"errors\" :0 } \n",
            ),
            (
                "nulls",
                r#"{"ts":1,"cluster":"c","service":"s","requests":1,"errors":0,"region":null,"interval_s":null,"retries":null,"status":null,"latency_p99_ms":null,"db_pool_max":null}"#,
            ),
            (
                "unknown scalars",
                r#"{"host":"h1","v":2,"ok":true,"no":false,"x":null,"f":1.5e3,"ts":1,"cluster":"c","service":"s","requests":1,"errors":0}"#,
            ),
            (
                "fractions and exponents",
                r#"{"ts":1.0e3,"cluster":"c","service":"s","interval_s":1.5,"requests":1e3,"errors":0.0,"latency_p50_ms":0.1,"latency_p99_ms":1E-400}"#,
            ),
            (
                "long fractions",
                r#"{"ts":1,"cluster":"c","service":"s","requests":1,"errors":0,"latency_p50_ms":0.30000000000000004,"latency_p99_ms":123456789.123456789}"#,
            ),
            (
                "largest values",
                r#"{"ts":1,"cluster":"c","service":"s","requests":18446744073709551615,"errors":0,"db_pool_max":4294967295,"interval_s":86400}"#,
            ),
            (
                "empty status",
                r#"{"ts":1,"cluster":"c","service":"s","requests":1,"errors":0,"status":{}}"#,
            ),
            (
                "non-ASCII strings",
                r#"{"ts":1,"cluster":"zürich-1","service":"サービス","region":"","requests":1,"errors":0}"#,
            ),
        ];
        for (name, text) in cases {
            let fast = fast_row(text, NOW, FUTURE, &mut StampCache::default());
            assert!(fast.is_some(), "case {name:?}: not taken");
            assert_eq!(fast.ok_or(()), general(text).map_err(drop), "case {name:?}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_general_path() {
        // (name, message): the fast path must give up; the general path decides (a few of
        // these are valid, most are not).
        let ok = r#""ts":1,"cluster":"c","service":"s","requests":10,"errors":1"#;
        let with = |extra: &str| format!("{{{ok},{extra}}}");
        let cases: Vec<(&str, String)> = vec![
            ("escaped string", with(r#""region":"a\"b""#)),
            ("escaped key", with(r#""\u0074x":1"#)),
            ("control character", with("\"region\":\"a\u{1}b\"")),
            ("negative count", with(r#""retries":-1"#)),
            ("negative zero", with(r#""latency_p50_ms":-0.0"#)),
            ("beyond u64", with(r#""db_pool_max":18446744073709551616"#)),
            ("overflows f64", with(r#""latency_p99_ms":1e999"#)),
            ("leading zero", with(r#""retries":012"#)),
            ("bare fraction point", with(r#""retries":1."#)),
            ("bare exponent", with(r#""retries":1e"#)),
            ("duplicate field", with(r#""requests":2"#)),
            ("array value", with(r#""retries":[1]"#)),
            ("object value", with(r#""region":{}"#)),
            ("nested unknown", with(r#""meta":{"a":1}"#)),
            ("status with empty code", with(r#""status":{"":1}"#)),
            (
                "status with fractional count",
                with(r#""status":{"503":1.5}"#),
            ),
            ("status not an object", with(r#""status":3"#)),
            ("trailing comma", format!("{{{ok},}}")),
            ("trailing data", format!("{{{ok}}} x")),
            ("two objects", format!("{{{ok}}}{{}}")),
            ("missing colon", with(r#""retries" 1"#)),
            ("truncated", format!("{{{ok}")),
            ("not an object", "[]".to_owned()),
            ("empty object", "{}".to_owned()),
            ("bad literal", with(r#""region":nul"#)),
            (
                "missing required field",
                r#"{"ts":1,"cluster":"c","service":"s","requests":1}"#.to_owned(),
            ),
            (
                "required null",
                r#"{"ts":null,"cluster":"c","service":"s","requests":1,"errors":0}"#.to_owned(),
            ),
            (
                "count as string",
                r#"{"ts":1,"cluster":"c","service":"s","requests":"1","errors":0}"#.to_owned(),
            ),
            ("region not a string", with(r#""region":true"#)),
            (
                "empty cluster",
                r#"{"ts":1,"cluster":"","service":"s","requests":1,"errors":0}"#.to_owned(),
            ),
            (
                "long service",
                format!(
                    r#"{{"ts":1,"cluster":"c","service":"{}","requests":1,"errors":0}}"#,
                    "s".repeat(129)
                ),
            ),
            (
                "bad timestamp",
                r#"{"ts":"yesterday","cluster":"c","service":"s","requests":1,"errors":0}"#
                    .to_owned(),
            ),
            (
                "future timestamp",
                format!(
                    r#"{{"ts":{},"cluster":"c","service":"s","requests":1,"errors":0}}"#,
                    NOW + FUTURE + 1
                ),
            ),
            ("zero interval", with(r#""interval_s":0"#)),
            ("fractional count", with(r#""retries":1.5"#)),
            (
                "errors over requests",
                r#"{"ts":1,"cluster":"c","service":"s","requests":1,"errors":2}"#.to_owned(),
            ),
            ("retries over requests", with(r#""retries":11"#)),
            ("pool over u32", with(r#""db_pool_active":4294967296"#)),
        ];
        for (name, text) in &cases {
            assert!(
                fast_row(text, NOW, FUTURE, &mut StampCache::default()).is_none(),
                "case {name:?}: taken"
            );
        }
    }

    #[test]
    fn string_end_finds_the_first_special_byte_in_any_lane() {
        for len in 0..20 {
            for (name, special, want_end) in [
                ("quote", b'"', true),
                ("backslash", b'\\', false),
                ("control", 0x1f, false),
                ("nul", 0, false),
            ] {
                // Plain bytes (ASCII and UTF-8 lead bytes), then the special byte, then a quote
                // that must not be reached first.
                let mut b: Vec<u8> = (0..len)
                    .map(|i| {
                        if i % 3 == 0 {
                            0xC3
                        } else {
                            b'a' + (i % 26) as u8
                        }
                    })
                    .collect();
                b.push(special);
                b.extend_from_slice(b"xx\"");
                let want = want_end.then_some(len);
                assert_eq!(string_end(&b, 0), want, "case {name:?} after {len} bytes");
            }
        }
        assert_eq!(string_end(b"abc", 0), None, "unterminated");
        assert_eq!(
            string_end(b"\x7f \"", 0),
            Some(2),
            "DEL and space are plain"
        );
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("\"2026-02-12T21:20:10Z\"".to_owned()),
            "\"[a-z\\-é]{0,6}\"",
            (0u64..100).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| format!("{x:?}")),
            any::<f64>().prop_map(|x| format!("{x:e}")),
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
            "(0|[1-9][0-9]{0,7})\\.[0-9]{1,9}",
            Just("{\"503\":4}".to_owned()),
            Just("[1]".to_owned()),
        ]
    }

    fn name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "ts",
            "cluster",
            "service",
            "region",
            "interval_s",
            "requests",
            "errors",
            "retries",
            "latency_p50_ms",
            "latency_p99_ms",
            "db_pool_active",
            "db_pool_max",
            "db_pool_pending",
            "status",
            "other",
        ])
    }

    proptest! {
        /// Whatever the fast path takes, the general path takes as the same row.
        #[test]
        fn agrees_with_the_general_path(
            fields in prop::collection::vec((name(), value()), 0..8),
            ws in "[ \t\n]{0,2}",
            cut in any::<prop::sample::Index>(),
            mangle in any::<bool>(),
        ) {
            // The required fields first (valid), so that many messages are accepted and the
            // other fields' values decide.
            let mut body = vec![
                r#""ts":1,"cluster":"c","service":"s","requests":18446744073709551615,"errors":0"#.to_owned(),
            ];
            body.extend(fields.iter().map(|(k, v)| format!("\"{k}\"{ws}:{ws}{v}")));
            let mut text = format!("{ws}{{{}}}{ws}", body.join(","));
            if mangle {
                // Drop one byte (on a character boundary) to exercise syntax errors.
                let mut at = cut.index(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.remove(at);
            }
            if let Some(fast) = fast_row(&text, NOW, FUTURE, &mut StampCache::default()) {
                prop_assert_eq!(Ok(fast), general(&text).map_err(drop), "{}", text);
            }
        }

        /// Numbers read by the fast path are the numbers Rust's (correctly rounded) parser reads,
        /// on both sides of the 15-digit limit of the exact division.
        #[test]
        fn numbers_are_read_exactly(text in "(0|[1-9][0-9]{0,12})(\\.[0-9]{1,12})?") {
            let mut s = Scanner { text: &text, b: text.as_bytes(), p: 0 };
            let want: f64 = text.parse().unwrap();
            match s.number() {
                Some(Num::Int(n)) => prop_assert_eq!(n as f64, want),
                Some(Num::Float(x)) => prop_assert_eq!(x.to_bits(), want.to_bits(), "{}", text),
                None => prop_assert!(false, "not read: {}", text),
            }
            prop_assert_eq!(s.p, text.len());
        }

        /// Every valid sample our own encoder writes with plain keys takes the fast path.
        #[test]
        fn takes_what_the_encoder_writes(
            cluster in "[a-z0-9-]{1,20}",
            ts in -62_167_219_200_000i64..NOW,
            interval_ms in 1u32..=86_400_000,
            requests in any::<u64>(),
            errors in any::<u64>(),
            p99 in proptest::option::of(0.0f64..1e300),
            pool in proptest::option::of(any::<u32>()),
        ) {
            let mut s = Sample::new(ts, cluster, "svc", requests.max(errors), requests.min(errors));
            s.interval_ms = interval_ms;
            s.latency_p99_ms = p99;
            s.db_pool_max = pool;
            s.status = [("503".to_owned(), errors)].into();
            let line = s.to_json_line();
            let fast = fast_row(&line, NOW, FUTURE, &mut StampCache::default());
            prop_assert!(fast.is_some(), "{}", line);
            prop_assert_eq!(fast.ok_or(()), general(&line).map_err(drop));
        }
    }
}
