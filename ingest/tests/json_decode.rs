//! Table-driven tests of the native JSON decoder: one row per rejection reason and input
//! shape, and the guarantees around rejections (no lost rows, no interned series).
#![allow(clippy::unwrap_used)]

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use ingest::json::{DecoderOptions, JsonDecoder, RejectReason, Rejection};

/// 2026-02-12T21:20:10Z, the decoder's "now" in these tests.
const NOW: i64 = 1_770_931_210_000;

fn decoder() -> JsonDecoder {
    JsonDecoder::new(DecoderOptions {
        now_ms: Some(NOW),
        ..DecoderOptions::default()
    })
}

/// A valid sample with `extra` spliced in as further fields (later keys are unknown or
/// replace nothing; use [`without`] to drop a field first).
const BASE: &str = r#""ts":"2026-02-12T21:20:00Z","cluster":"prod-use1-a","service":"conversation","requests":100,"errors":5"#;

fn with(extra: &str) -> String {
    if extra.is_empty() {
        format!("{{{BASE}}}")
    } else {
        format!("{{{BASE},{extra}}}")
    }
}

/// BASE minus the field `name`, plus `extra`.
fn without(name: &str, extra: &str) -> String {
    let fields: Vec<&str> = BASE
        .split(',')
        .filter(|f| !f.starts_with(&format!("\"{name}\":")))
        .collect();
    let mut s = format!("{{{}", fields.join(","));
    if !extra.is_empty() {
        s.push(',');
        s.push_str(extra);
    }
    s.push('}');
    s
}

fn reject(msg: &[u8]) -> Rejection {
    let mut dec = decoder();
    let err = dec
        .decode(msg)
        .expect_err(&format!("accepted: {}", String::from_utf8_lossy(msg)));
    assert!(dec.is_empty());
    assert!(
        dec.interner().is_empty(),
        "a rejected message interned a series"
    );
    err
}

#[test]
fn every_reject_reason() {
    let huge_unknown = with(&format!(r#""pad":"{}""#, "x".repeat(70 * 1024)));
    let mut not_utf8 = with("").into_bytes();
    not_utf8[40] = 0xff;
    let long_key = "k".repeat(129);
    let future = NOW + 24 * 3600 * 1000 + 1;

    let cases: Vec<(&str, Vec<u8>, RejectReason, &str)> = vec![
        (
            "invalid utf-8 byte",
            not_utf8,
            RejectReason::NotUtf8,
            "byte 40",
        ),
        (
            "over 64 KiB",
            huge_unknown.into(),
            RejectReason::TooLarge,
            "exceeds",
        ),
        (
            "empty message",
            b"".to_vec(),
            RejectReason::MalformedJson,
            "",
        ),
        (
            "not json",
            b"hello".to_vec(),
            RejectReason::MalformedJson,
            "",
        ),
        ("array", b"[1,2]".to_vec(), RejectReason::MalformedJson, ""),
        ("number", b"42".to_vec(), RejectReason::MalformedJson, ""),
        ("string", b"\"x\"".to_vec(), RejectReason::MalformedJson, ""),
        ("null", b"null".to_vec(), RejectReason::MalformedJson, ""),
        (
            "overflowing number, not an object",
            b"1e999".to_vec(),
            RejectReason::MalformedJson,
            "",
        ),
        (
            "truncated",
            with("")[..30].into(),
            RejectReason::MalformedJson,
            "",
        ),
        (
            "trailing data",
            format!("{} {{}}", with("")).into(),
            RejectReason::MalformedJson,
            "trailing",
        ),
        (
            "trailing comma",
            format!("{{{BASE},}}").into(),
            RejectReason::MalformedJson,
            "",
        ),
        (
            "two objects",
            format!("{}{}", with(""), with("")).into(),
            RejectReason::MalformedJson,
            "",
        ),
        (
            "deep nesting, unclosed",
            with(&format!(r#""x":{}"#, "[".repeat(10_000))).into(),
            RejectReason::MalformedJson,
            "expected value",
        ),
        (
            "deep nesting in a known field",
            with(&format!(
                r#""region":{}{}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            ))
            .into(),
            RejectReason::WrongType,
            "region must be a string, found an array",
        ),
        (
            "two byte order marks",
            format!("\u{feff}\u{feff}{}", with("")).into(),
            RejectReason::MalformedJson,
            "",
        ),
        (
            "duplicate known field",
            with(r#""errors":6"#).into(),
            RejectReason::MalformedJson,
            "duplicate field `errors`",
        ),
        (
            "missing ts",
            without("ts", "").into(),
            RejectReason::MissingField,
            "`ts`",
        ),
        (
            "missing cluster",
            without("cluster", "").into(),
            RejectReason::MissingField,
            "`cluster`",
        ),
        (
            "missing service",
            without("service", "").into(),
            RejectReason::MissingField,
            "`service`",
        ),
        (
            "missing requests",
            without("requests", "").into(),
            RejectReason::MissingField,
            "`requests`",
        ),
        (
            "missing errors",
            without("errors", "").into(),
            RejectReason::MissingField,
            "`errors`",
        ),
        (
            "empty object",
            b"{}".to_vec(),
            RejectReason::MissingField,
            "`ts`",
        ),
        (
            "ts bool",
            without("ts", r#""ts":true"#).into(),
            RejectReason::WrongType,
            "ts must be",
        ),
        (
            "ts object",
            without("ts", r#""ts":{}"#).into(),
            RejectReason::WrongType,
            "ts must be",
        ),
        (
            "cluster number",
            without("cluster", r#""cluster":5"#).into(),
            RejectReason::WrongType,
            "cluster must be a string",
        ),
        (
            "service null",
            without("service", r#""service":null"#).into(),
            RejectReason::WrongType,
            "service must be a string, found null",
        ),
        (
            "requests string",
            without("requests", r#""requests":"100""#).into(),
            RejectReason::WrongType,
            "requests must be a non-negative integer",
        ),
        (
            "errors array",
            without("errors", r#""errors":[5]"#).into(),
            RejectReason::WrongType,
            "errors must be",
        ),
        (
            "errors null",
            without("errors", r#""errors":null"#).into(),
            RejectReason::WrongType,
            "errors must be",
        ),
        (
            "retries object",
            with(r#""retries":{}"#).into(),
            RejectReason::WrongType,
            "retries",
        ),
        (
            "region number",
            with(r#""region":5"#).into(),
            RejectReason::WrongType,
            "region must be a string",
        ),
        (
            "interval string",
            with(r#""interval_s":"10""#).into(),
            RejectReason::WrongType,
            "interval_s",
        ),
        (
            "latency NaN string",
            with(r#""latency_p99_ms":"NaN""#).into(),
            RejectReason::WrongType,
            "latency_p99_ms",
        ),
        (
            "pool bool",
            with(r#""db_pool_max":true"#).into(),
            RejectReason::WrongType,
            "db_pool_max",
        ),
        (
            "empty cluster",
            without("cluster", r#""cluster":"""#).into(),
            RejectReason::InvalidKey,
            "cluster is empty",
        ),
        (
            "empty service",
            without("service", r#""service":"""#).into(),
            RejectReason::InvalidKey,
            "service is empty",
        ),
        (
            "129-byte service",
            without("service", &format!(r#""service":"{long_key}""#)).into(),
            RejectReason::InvalidKey,
            "129 bytes",
        ),
        (
            "ts words",
            without("ts", r#""ts":"yesterday""#).into(),
            RejectReason::InvalidTimestamp,
            "yesterday",
        ),
        (
            "ts no offset",
            without("ts", r#""ts":"2026-02-12T21:20:00""#).into(),
            RejectReason::InvalidTimestamp,
            "RFC 3339",
        ),
        (
            "ts feb 30",
            without("ts", r#""ts":"2026-02-30T21:20:00Z""#).into(),
            RejectReason::InvalidTimestamp,
            "",
        ),
        (
            "ts fractional ms",
            without("ts", r#""ts":1770931200000.5"#).into(),
            RejectReason::InvalidTimestamp,
            "whole",
        ),
        (
            "ts beyond year 9999",
            without("ts", r#""ts":1e20"#).into(),
            RejectReason::InvalidTimestamp,
            "outside",
        ),
        (
            "ts beyond u64",
            without("ts", r#""ts":99999999999999999999999"#).into(),
            RejectReason::InvalidTimestamp,
            "outside",
        ),
        (
            "ts before year 0",
            without("ts", r#""ts":-100000000000000"#).into(),
            RejectReason::InvalidTimestamp,
            "outside",
        ),
        (
            "ts 25 h ahead",
            without("ts", &format!(r#""ts":{future}"#)).into(),
            RejectReason::FutureTimestamp,
            "ahead of now",
        ),
        (
            "ts far future string",
            without("ts", r#""ts":"2030-01-01T00:00:00Z""#).into(),
            RejectReason::FutureTimestamp,
            "2030-01-01T00:00:00Z",
        ),
        (
            "negative requests",
            without("requests", r#""requests":-1"#).into(),
            RejectReason::NegativeCount,
            "requests is negative: -1",
        ),
        (
            "negative errors",
            without("errors", r#""errors":-5"#).into(),
            RejectReason::NegativeCount,
            "errors",
        ),
        (
            "negative retries",
            with(r#""retries":-3"#).into(),
            RejectReason::NegativeCount,
            "retries",
        ),
        (
            "negative fractional count",
            without("requests", r#""requests":-1.5"#).into(),
            RejectReason::NegativeCount,
            "requests",
        ),
        (
            "negative pool",
            with(r#""db_pool_pending":-1"#).into(),
            RejectReason::NegativeCount,
            "db_pool_pending",
        ),
        (
            "errors > requests",
            without("errors", r#""errors":101"#).into(),
            RejectReason::ErrorsExceedRequests,
            "errors 101 > requests 100",
        ),
        (
            "retries > requests",
            with(r#""retries":101"#).into(),
            RejectReason::RetriesExceedRequests,
            "retries 101 > requests 100",
        ),
        (
            "requests overflow",
            without("requests", r#""requests":1e999"#).into(),
            RejectReason::NotFinite,
            "requests",
        ),
        (
            "latency overflow",
            with(r#""latency_p99_ms":1e999"#).into(),
            RejectReason::NotFinite,
            "latency_p99_ms",
        ),
        (
            "negative overflow",
            with(r#""latency_p50_ms":-1e999"#).into(),
            RejectReason::NotFinite,
            "latency_p50_ms",
        ),
        (
            "interval overflow",
            with(r#""interval_s":1e400"#).into(),
            RejectReason::NotFinite,
            "interval_s",
        ),
        (
            "ts overflow",
            without("ts", r#""ts":1e999"#).into(),
            RejectReason::NotFinite,
            "ts",
        ),
        (
            "status count overflow",
            with(r#""status":{"503":1e999}"#).into(),
            RejectReason::NotFinite,
            "status",
        ),
        (
            "interval zero",
            with(r#""interval_s":0"#).into(),
            RejectReason::InvalidInterval,
            "interval_s",
        ),
        (
            "interval negative",
            with(r#""interval_s":-10"#).into(),
            RejectReason::InvalidInterval,
            "-10",
        ),
        (
            "interval negative float",
            with(r#""interval_s":-0.5"#).into(),
            RejectReason::InvalidInterval,
            "",
        ),
        (
            "interval over a day",
            with(r#""interval_s":86401"#).into(),
            RejectReason::InvalidInterval,
            "86401",
        ),
        (
            "interval under a ms",
            with(r#""interval_s":0.0004"#).into(),
            RejectReason::InvalidInterval,
            "",
        ),
        (
            "interval absurd",
            with(r#""interval_s":1e300"#).into(),
            RejectReason::InvalidInterval,
            "1e300",
        ),
        (
            "fractional count",
            without("requests", r#""requests":3.5"#).into(),
            RejectReason::InvalidValue,
            "requests must be an integer, found 3.5",
        ),
        (
            "count beyond u64",
            without("requests", r#""requests":1e20"#).into(),
            RejectReason::InvalidValue,
            "64 bits",
        ),
        (
            "negative latency",
            with(r#""latency_p99_ms":-1"#).into(),
            RejectReason::InvalidValue,
            "latency_p99_ms is negative",
        ),
        (
            "negative float latency",
            with(r#""latency_p50_ms":-0.5"#).into(),
            RejectReason::InvalidValue,
            "latency_p50_ms",
        ),
        (
            "pool beyond u32",
            with(r#""db_pool_max":4294967296"#).into(),
            RejectReason::InvalidValue,
            "db_pool_max 4294967296",
        ),
        (
            "fractional pool",
            with(r#""db_pool_active":1.5"#).into(),
            RejectReason::InvalidValue,
            "db_pool_active",
        ),
        (
            "status string",
            with(r#""status":"503""#).into(),
            RejectReason::InvalidValue,
            "status must be an object",
        ),
        (
            "status array",
            with(r#""status":[503]"#).into(),
            RejectReason::InvalidValue,
            "status must be an object",
        ),
        (
            "status number",
            with(r#""status":503"#).into(),
            RejectReason::InvalidValue,
            "status",
        ),
        (
            "status negative count",
            with(r#""status":{"503":-1}"#).into(),
            RejectReason::InvalidValue,
            "status[503]",
        ),
        (
            "status string count",
            with(r#""status":{"503":"7"}"#).into(),
            RejectReason::InvalidValue,
            "status[503]",
        ),
        (
            "status fractional count",
            with(r#""status":{"503":1.5}"#).into(),
            RejectReason::InvalidValue,
            "status[503]",
        ),
        (
            "status nested",
            with(r#""status":{"503":{"a":1}}"#).into(),
            RejectReason::InvalidValue,
            "status[503]",
        ),
        (
            "status empty code",
            with(r#""status":{"":1}"#).into(),
            RejectReason::InvalidValue,
            "empty code",
        ),
    ];

    let mut covered = std::collections::HashSet::new();
    for (name, msg, want, detail) in cases {
        let got = reject(&msg);
        assert_eq!(got.reason, want, "case {name:?}: {got}");
        assert!(
            got.detail.contains(detail),
            "case {name:?}: detail {:?} lacks {detail:?}",
            got.detail
        );
        assert!(got.detail.len() < 400, "case {name:?}: detail too long");
        assert_eq!(
            got.to_string(),
            format!("{}: {}", want.as_str(), got.detail)
        );
        covered.insert(want);
    }
    // `malformed_arrow` belongs to the Arrow IPC decoder (tested in tests/formats.rs).
    for r in RejectReason::ALL
        .into_iter()
        .filter(|r| *r != RejectReason::MalformedArrow)
    {
        assert!(covered.contains(&r), "no test case for {r}");
    }
}

#[test]
fn max_message_bytes_is_inclusive() {
    let msg = with("");
    let mut dec = JsonDecoder::new(DecoderOptions {
        max_message_bytes: msg.len(),
        now_ms: Some(NOW),
        ..DecoderOptions::default()
    });
    dec.decode(msg.as_bytes()).unwrap();
    let longer = format!("{msg} ");
    assert_eq!(
        dec.decode(longer.as_bytes()).unwrap_err().reason,
        RejectReason::TooLarge
    );
}

#[test]
fn future_limit_follows_now_and_option() {
    let at =
        |ts: i64| format!(r#"{{"ts":{ts},"cluster":"c","service":"s","requests":1,"errors":0}}"#);
    let day = 24 * 3600 * 1000;
    let mut dec = decoder();
    dec.decode(at(NOW + day).as_bytes()).unwrap();
    assert_eq!(
        dec.decode(at(NOW + day + 1).as_bytes()).unwrap_err().reason,
        RejectReason::FutureTimestamp
    );
    dec.set_now_ms(NOW + 1000);
    assert_eq!(dec.now_ms(), NOW + 1000);
    dec.decode(at(NOW + day + 1).as_bytes()).unwrap();

    let mut strict = JsonDecoder::new(DecoderOptions {
        now_ms: Some(NOW),
        max_future_ms: 0,
        ..DecoderOptions::default()
    });
    strict.decode(at(NOW).as_bytes()).unwrap();
    assert!(strict.decode(at(NOW + 1).as_bytes()).is_err());

    // The default reads the system clock: a sample from "now" is fine, one from 2200 is not.
    let mut live = JsonDecoder::new(DecoderOptions::default());
    assert!(live.now_ms() > NOW);
    live.decode(at(live.now_ms()).as_bytes()).unwrap();
    assert!(live.decode(at(7_258_118_400_000).as_bytes()).is_err());
}

/// The stored values of one row, nulls as `None`.
#[derive(Debug, PartialEq)]
struct RowView {
    series_id: u32,
    ts: i64,
    interval_ms: u32,
    requests: u64,
    errors: u64,
    retries: Option<u64>,
    p50: Option<f64>,
    p99: Option<f64>,
    active: Option<u32>,
    max: Option<u32>,
    pending: Option<u32>,
}

fn rows(batch: &RecordBatch) -> Vec<RowView> {
    fn opt<T: arrow_array::ArrowPrimitiveType>(
        a: &arrow_array::PrimitiveArray<T>,
        i: usize,
    ) -> Option<T::Native> {
        a.is_valid(i).then(|| a.value(i))
    }
    let u32c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt32Type>()
    };
    let u64c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<UInt64Type>()
    };
    let f64c = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_primitive::<Float64Type>()
    };
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    (0..batch.num_rows())
        .map(|i| RowView {
            series_id: u32c("series_id").value(i),
            ts: ts.value(i),
            interval_ms: u32c("interval_ms").value(i),
            requests: u64c("requests").value(i),
            errors: u64c("errors").value(i),
            retries: opt(u64c("retries"), i),
            p50: opt(f64c("latency_p50_ms"), i),
            p99: opt(f64c("latency_p99_ms"), i),
            active: opt(u32c("db_pool_active"), i),
            max: opt(u32c("db_pool_max"), i),
            pending: opt(u32c("db_pool_pending"), i),
        })
        .collect()
}

fn accept(msg: &str) -> RowView {
    let mut dec = decoder();
    dec.decode(msg.as_bytes())
        .unwrap_or_else(|e| panic!("rejected {msg}: {e}"));
    let batch = dec.flush().unwrap();
    assert_eq!(batch.schema(), detector::schema::sample_schema());
    rows(&batch).remove(0)
}

#[test]
fn accepted_variants() {
    const T: i64 = 1_770_931_200_000; // 2026-02-12T21:20:00Z
    let plain = RowView {
        series_id: 0,
        ts: T,
        interval_ms: 10_000,
        requests: 100,
        errors: 5,
        retries: None,
        p50: None,
        p99: None,
        active: None,
        max: None,
        pending: None,
    };
    let full = RowView {
        retries: Some(7),
        p50: Some(85.0),
        p99: Some(950.5),
        active: Some(180),
        max: Some(200),
        pending: Some(35),
        ..plain
    };
    let cases: Vec<(&str, String, RowView)> = vec![
        ("defaults", with(""), RowView { ..plain }),
        ("integer ts", without("ts", &format!(r#""ts":{T}"#)), RowView { ..plain }),
        ("whole float ts", without("ts", r#""ts":1.7709312e12"#), RowView { ..plain }),
        ("offset ts", without("ts", r#""ts":"2026-02-12T16:20:00-05:00""#), RowView { ..plain }),
        ("positive offset ts", without("ts", r#""ts":"2026-02-13T03:50:00.250+06:30""#), RowView { ts: T + 250, ..plain }),
        ("fractional ts", without("ts", r#""ts":"2026-02-12T21:20:00.123456Z""#), RowView { ts: T + 123, ..plain }),
        ("lower-case ts", without("ts", r#""ts":"2026-02-12t21:20:00z""#), RowView { ..plain }),
        ("ts exactly 24 h ahead", without("ts", &format!(r#""ts":{}"#, NOW + 86_400_000)), RowView { ts: NOW + 86_400_000, ..plain }),
        ("all optional fields", with(r#""region":"us-east-1","interval_s":10,"retries":7,"latency_p50_ms":85,"latency_p99_ms":950.5,"db_pool_active":180,"db_pool_max":200,"db_pool_pending":35,"status":{"503":4,"403":1}"#), RowView { ..full }),
        ("nulls", with(r#""region":null,"interval_s":null,"retries":null,"latency_p50_ms":null,"latency_p99_ms":null,"db_pool_active":null,"db_pool_max":null,"db_pool_pending":null,"status":null"#), RowView { ..plain }),
        ("unknown fields", with(r#""version":"spikewatch.v1","tags":{"a":[1,2,{"b":null}]},"huge":1e999,"neg":-1,"x":"\u00e9""#), RowView { ..plain }),
        ("fractional interval", with(r#""interval_s":0.5"#), RowView { interval_ms: 500, ..plain }),
        ("float interval", with(r#""interval_s":15.0"#), RowView { interval_ms: 15_000, ..plain }),
        ("one-day interval", with(r#""interval_s":86400"#), RowView { interval_ms: 86_400_000, ..plain }),
        ("one-ms interval", with(r#""interval_s":0.001"#), RowView { interval_ms: 1, ..plain }),
        ("whole float counts", without("requests", r#""requests":100.0,"retries":1e1"#), RowView { retries: Some(10), ..plain }),
        ("zero counts", without("requests", r#""requests":0"#).replace(r#""errors":5"#, r#""errors":0"#), RowView { requests: 0, errors: 0, ..plain }),
        ("errors == requests", without("errors", r#""errors":100,"retries":100"#), RowView { errors: 100, retries: Some(100), ..plain }),
        ("u32 max pool", with(r#""db_pool_max":4294967295"#), RowView { max: Some(u32::MAX), ..plain }),
        ("u64 max requests", without("requests", r#""requests":18446744073709551615"#), RowView { requests: u64::MAX, ..plain }),
        ("zero latency", with(r#""latency_p50_ms":0,"latency_p99_ms":0.0"#), RowView { p50: Some(0.0), p99: Some(0.0), ..plain }),
        ("empty status", with(r#""status":{}"#), RowView { ..plain }),
        ("escaped key chars", without("cluster", r#""cluster":"prod\u002duse1\"a""#), RowView { ..plain }),
        ("escaped field name", without("requests", r#""requ\u0065sts":100"#), RowView { ..plain }),
        ("128-byte key", without("service", &format!(r#""service":"{}""#, "s".repeat(128))), RowView { ..plain }),
        ("deeply nested unknown field", with(&format!(r#""x":{}{}"#, "[".repeat(10_000), "]".repeat(10_000))), RowView { ..plain }),
        ("byte order mark", format!("\u{feff}{}", with("")), RowView { ..plain }),
        ("whitespace and CRLF", format!(" \t{}\r\n", with("")), RowView { ..plain }),
        ("reordered fields", r#"{"errors":5,"requests":100,"service":"conversation","cluster":"prod-use1-a","ts":"2026-02-12T21:20:00Z"}"#.into(), RowView { ..plain }),
    ];
    for (name, msg, want) in cases {
        let got = accept(&msg);
        assert_eq!(got, want, "case {name:?}: {msg}");
    }
}

#[test]
fn series_are_interned_with_region() {
    let mut dec = decoder();
    let line = |c: &str, s: &str, region: &str| {
        format!(r#"{{"ts":0,"cluster":"{c}","service":"{s}","requests":1,"errors":0{region}}}"#)
    };
    dec.decode(line("a", "x", "").as_bytes()).unwrap();
    dec.decode(line("b", "x", r#","region":"eu""#).as_bytes())
        .unwrap();
    dec.decode(line("a", "x", r#","region":"us""#).as_bytes())
        .unwrap();
    dec.decode(line("a", "y", "").as_bytes()).unwrap();
    let batch = dec.flush().unwrap();
    let ids: Vec<u32> = rows(&batch).iter().map(|r| r.series_id).collect();
    assert_eq!(ids, [0, 1, 0, 2]);
    let keys = dec.interner().keys();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        (keys[0].cluster.as_str(), keys[0].service.as_str()),
        ("a", "x")
    );
    assert_eq!(keys[0].region.as_deref(), Some("us"));
    assert_eq!(keys[1].region.as_deref(), Some("eu"));
    assert_eq!(keys[2].region, None);

    let interner = dec.into_interner();
    let mut dec2 = JsonDecoder::with_interner(
        DecoderOptions {
            now_ms: Some(NOW),
            ..DecoderOptions::default()
        },
        interner,
    );
    dec2.decode(line("a", "y", "").as_bytes()).unwrap();
    assert_eq!(rows(&dec2.flush().unwrap())[0].series_id, 2);
}

#[test]
fn a_bad_line_loses_no_good_rows() {
    let good = |i: u64| {
        format!(
            r#"{{"ts":{},"cluster":"c{}","service":"s","requests":{},"errors":{}}}"#,
            1_770_931_200_000 + i as i64 * 10_000,
            i % 3,
            100 + i,
            i
        )
    };
    let bad: Vec<Vec<u8>> = vec![
        b"{\"ts\":".to_vec(),
        with(r#""retries":1000"#).into_bytes(),
        vec![0xff, 0xfe],
        without("errors", "").into_bytes(),
        br#"{"ts":0,"cluster":"c9","service":"s","requests":1,"errors":2}"#.to_vec(),
    ];
    let mut dec = JsonDecoder::new(DecoderOptions {
        batch_size: 4,
        now_ms: Some(NOW),
        ..DecoderOptions::default()
    });
    let mut batches = Vec::new();
    let mut rejected = Vec::new();
    for i in 0..10u64 {
        dec.decode(good(i).as_bytes()).unwrap();
        if dec.is_full() {
            batches.push(dec.flush().unwrap());
        }
        if let Some(b) = bad.get(i as usize) {
            rejected.push(dec.decode(b).unwrap_err().reason);
        }
    }
    batches.extend(dec.flush());
    assert!(dec.flush().is_none());
    assert_eq!(
        batches
            .iter()
            .map(RecordBatch::num_rows)
            .collect::<Vec<_>>(),
        [4, 4, 2]
    );
    let all: Vec<RowView> = batches.iter().flat_map(rows).collect();
    assert_eq!(
        all.iter().map(|r| r.requests).collect::<Vec<_>>(),
        (100..110).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter().map(|r| r.errors).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter().map(|r| r.series_id).collect::<Vec<_>>(),
        [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    );
    assert_eq!(
        rejected,
        [
            RejectReason::MalformedJson,
            RejectReason::RetriesExceedRequests,
            RejectReason::NotUtf8,
            RejectReason::MissingField,
            RejectReason::ErrorsExceedRequests,
        ]
    );
    // The rejected messages' series (prod-use1-a, c9) were never interned.
    assert_eq!(dec.interner().len(), 3);
}

#[test]
fn len_full_and_flush() {
    let mut dec = JsonDecoder::new(DecoderOptions {
        batch_size: 2,
        now_ms: Some(NOW),
        ..DecoderOptions::default()
    });
    assert!(dec.flush().is_none());
    assert!(dec.is_empty() && !dec.is_full());
    dec.decode(with("").as_bytes()).unwrap();
    assert_eq!(dec.len(), 1);
    assert!(!dec.is_full());
    dec.decode(with("").as_bytes()).unwrap();
    assert!(dec.is_full());
    // Nothing stops a caller from going past batch_size; the batch just gets bigger.
    dec.decode(with("").as_bytes()).unwrap();
    assert_eq!(dec.flush().unwrap().num_rows(), 3);
    assert_eq!(dec.len(), 0);
    dec.decode(with("").as_bytes()).unwrap();
    assert_eq!(dec.flush().unwrap().num_rows(), 1);
}

#[test]
fn options_defaults() {
    let o = DecoderOptions::default();
    assert_eq!(o.batch_size, 8192);
    assert_eq!(o.max_message_bytes, 65_536);
    assert_eq!(o.max_future_ms, 86_400_000);
    assert_eq!(o.now_ms, None);
}

/// The decoder reads the common shape with a hand-written scanner and everything else with
/// the general parser: a message forced onto the general path (an escaped character in a field
/// nobody reads) must give exactly the row of the same message on the fast path.
#[test]
fn fast_and_general_paths_store_the_same_row() {
    // (name, message on the fast path)
    let cases: Vec<(&str, String)> = vec![
        ("minimal", with("")),
        (
            "every field, contract order",
            with(r#""region":"us-east-1","interval_s":10,"retries":7,"latency_p50_ms":85.25,"latency_p99_ms":950.5,"db_pool_active":180,"db_pool_max":200,"db_pool_pending":35,"status":{"503":4,"403":1}"#),
        ),
        (
            "fields in another order",
            r#"{"errors":5,"latency_p99_ms":12.5,"requests":100,"service":"conversation","region":"eu","cluster":"prod-use1-a","ts":"2026-02-12T21:20:00Z"}"#.to_owned(),
        ),
        ("integer ts", without("ts", &format!(r#""ts":{}"#, NOW - 10_000))),
        ("fractional interval", with(r#""interval_s":2.5"#)),
        ("whole float counts", with(r#""retries":7.0,"db_pool_max":2e2"#)),
        ("long fractions", with(r#""latency_p50_ms":0.30000000000000004,"latency_p99_ms":123456.78901234567"#)),
        ("short fractions", with(r#""latency_p50_ms":0.1,"latency_p99_ms":99999999.99999"#)),
        ("exponents", with(r#""latency_p50_ms":1.5e2,"latency_p99_ms":2E-3"#)),
        ("largest numbers", without("requests", r#""requests":18446744073709551615,"db_pool_max":4294967295"#)),
        ("non-ASCII keys", without("cluster", r#""cluster":"zürich-ä1""#)),
        ("spaces", format!(" {} ", with(r#" "region" : "eu" , "retries" : 3 "#))),
        ("unknown scalars", with(r#""host":"h1","shard":3,"canary":false,"note":null"#)),
    ];
    for (name, fast) in cases {
        // The same message with one more unknown field the scanner leaves to serde.
        let body = fast.trim().strip_suffix('}').unwrap();
        let general = format!("{body},\"x\":\"\\u0041\"}}");
        let (a, b) = (accept(&fast), accept(&general));
        assert_eq!(a, b, "case {name:?}: {fast}");
    }
}
