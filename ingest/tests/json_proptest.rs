//! Property tests of the native JSON decoder: valid samples round-trip exactly through
//! `Sample::to_json_line`, and no input, however mangled, panics it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use ingest::json::{DecoderOptions, JsonDecoder, RejectReason, Sample};
use ingest::time::{MAX_TS_MS, MIN_TS_MS};
use proptest::prelude::*;

fn decoder(batch_size: usize) -> JsonDecoder {
    JsonDecoder::new(DecoderOptions {
        batch_size,
        // Far enough ahead that every representable timestamp is "past".
        now_ms: Some(MAX_TS_MS),
        ..DecoderOptions::default()
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,20}",
        1 => "\\PC{1,16}".prop_filter("1..=128 bytes", |s| (1..=128).contains(&s.len())),
        1 => "[\"\\\\\n\t\u{1}é✓a]{1,8}",
    ]
}

fn latency() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        (0.0f64..1e6).prop_map(Some),
        (0u32..100_000).prop_map(|n| Some(f64::from(n))),
        Just(Some(0.0)),
        (0.0f64..f64::MAX).prop_map(Some),
    ]
}

fn sample() -> impl Strategy<Value = Sample> {
    let ids = (key(), key(), proptest::option::of(key()));
    let times = (
        prop_oneof![
            MIN_TS_MS..=MAX_TS_MS,
            1_700_000_000_000i64..1_800_000_000_000,
        ],
        prop_oneof![
            Just(10_000u32),
            1u32..=86_400_000,
            (1u32..=86_400).prop_map(|s| s * 1000)
        ],
    );
    let counts = (
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
    );
    let gauges = (
        latency(),
        latency(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::collection::btree_map("[1-5][0-9]{2}", any::<u64>(), 0..4),
    );
    (ids, times, counts, gauges).prop_map(
        |(
            (cluster, service, region),
            (ts_ms, interval_ms),
            (a, b, r),
            (p50, p99, pa, pm, pp, status),
        )| {
            let requests = a.max(b);
            Sample {
                ts_ms,
                cluster,
                service,
                region,
                interval_ms,
                requests,
                errors: a.min(b),
                retries: r.map(|r| r.min(requests)),
                latency_p50_ms: p50,
                latency_p99_ms: p99,
                db_pool_active: pa,
                db_pool_max: pm,
                db_pool_pending: pp,
                status: status as BTreeMap<String, u64>,
            }
        },
    )
}

/// Reads the rows of decoded batches back into `Sample`s (status is not stored).
fn samples_of(batches: &[RecordBatch], dec: &JsonDecoder) -> Vec<Sample> {
    let mut out = Vec::new();
    for b in batches {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let ids = col("series_id");
        let ids = ids.as_primitive::<UInt32Type>();
        let ts = col("ts");
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let [interval, active, max, pending] = [
            "interval_ms",
            "db_pool_active",
            "db_pool_max",
            "db_pool_pending",
        ]
        .map(&col);
        let [requests, errors, retries] = ["requests", "errors", "retries"].map(&col);
        let [p50, p99] = ["latency_p50_ms", "latency_p99_ms"].map(&col);
        let u32o = |a: &dyn Array, i: usize| {
            let a = a.as_primitive::<UInt32Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let f64o = |a: &dyn Array, i: usize| {
            let a = a.as_primitive::<Float64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        for i in 0..b.num_rows() {
            let key = dec.interner().key(ids.value(i)).unwrap();
            let retries = retries.as_primitive::<UInt64Type>();
            out.push(Sample {
                ts_ms: ts.value(i),
                cluster: key.cluster.clone(),
                service: key.service.clone(),
                region: key.region.clone(),
                interval_ms: interval.as_primitive::<UInt32Type>().value(i),
                requests: requests.as_primitive::<UInt64Type>().value(i),
                errors: errors.as_primitive::<UInt64Type>().value(i),
                retries: retries.is_valid(i).then(|| retries.value(i)),
                latency_p50_ms: f64o(&p50, i),
                latency_p99_ms: f64o(&p99, i),
                db_pool_active: u32o(&active, i),
                db_pool_max: u32o(&max, i),
                db_pool_pending: u32o(&pending, i),
                status: BTreeMap::new(),
            });
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_samples_round_trip(samples in proptest::collection::vec(sample(), 1..40), batch_size in 1usize..16) {
        let mut dec = decoder(batch_size);
        let mut batches = Vec::new();
        for s in &samples {
            let line = s.to_json_line();
            if let Err(e) = dec.decode(line.as_bytes()) {
                return Err(TestCaseError::fail(format!("rejected {line}: {e}")));
            }
            if dec.is_full() {
                batches.push(dec.flush().unwrap());
            }
        }
        batches.extend(dec.flush());
        for b in &batches {
            prop_assert_eq!(b.schema(), detector::schema::sample_schema());
            prop_assert!(b.num_rows() <= batch_size);
        }
        let got = samples_of(&batches, &dec);
        prop_assert_eq!(got.len(), samples.len());
        // Regions: the first non-empty region seen for a series wins, so compare separately.
        for (g, want) in got.iter().zip(&samples) {
            let want = Sample { status: BTreeMap::new(), region: g.region.clone(), ..want.clone() };
            prop_assert_eq!(g, &want);
        }
        for s in &samples {
            let first = samples.iter()
                .filter(|o| o.cluster == s.cluster && o.service == s.service)
                .find_map(|o| o.region.clone().filter(|r| !r.is_empty()));
            let id = got.iter().position(|g| g.cluster == s.cluster && g.service == s.service).unwrap();
            prop_assert_eq!(&got[id].region, &first);
        }
    }

    /// Series get their ids in first-seen order with their first non-empty region, whatever
    /// the pattern they arrive in: a producer's fixed order repeated, with series swapped,
    /// joining or leaving between rounds (the decoder guesses the next series from the order
    /// it saw last; a wrong guess must cost nothing but time).
    #[test]
    fn series_ids_follow_first_sight_in_any_arrival_order(
        n in 1usize..12,
        rounds in 1usize..6,
        swaps in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..8),
        drops in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        regions in proptest::collection::vec(proptest::option::of(prop::sample::select(vec!["", "eu", "us"])), 12),
    ) {
        let key = |i: usize| (format!("c{}", i % 3), format!("s{}", i / 3));
        let mut order: Vec<usize> = (0..n).collect();
        let mut arrivals = Vec::new();
        for round in 0..rounds {
            let mut this = order.clone();
            if let Some(d) = drops.get(round) {
                this.remove(d.index(this.len()));
            }
            arrivals.extend(this);
            if let Some((a, b)) = swaps.get(round) {
                let (a, b) = (a.index(n), b.index(n));
                order.swap(a, b);
            }
        }
        let mut dec = decoder(1 << 16);
        let mut plain = detector::SeriesInterner::new();
        let mut want_ids = Vec::new();
        for (k, &i) in arrivals.iter().enumerate() {
            let (c, s) = key(i);
            let region = regions[(i + k) % regions.len()];
            let mut sample = Sample::new(1_770_931_200_000 + k as i64, c.clone(), s.clone(), 10, 1);
            sample.region = region.map(str::to_owned);
            dec.decode(sample.to_json_line().as_bytes()).unwrap();
            want_ids.push(plain.intern(&c, &s, region).unwrap());
        }
        let ids: Vec<u32> = dec.flush().map_or_else(Vec::new, |b| {
            b.column_by_name("series_id").unwrap().as_primitive::<UInt32Type>().values().to_vec()
        });
        prop_assert_eq!(ids, want_ids);
        prop_assert_eq!(dec.interner().keys(), plain.keys());
    }

    #[test]
    fn arbitrary_bytes_never_panic(msg in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut dec = decoder(8);
        let before = dec.len();
        match dec.decode(&msg) {
            Ok(()) => prop_assert_eq!(dec.len(), before + 1),
            Err(e) => {
                prop_assert_eq!(dec.len(), before);
                prop_assert!(RejectReason::ALL.contains(&e.reason));
            }
        }
    }

    #[test]
    fn mangled_json_never_panics(
        s in sample(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop::sample::select(MANGLE.to_vec())), 1..6),
    ) {
        let mut line = s.to_json_line().into_bytes();
        for (at, op, piece) in edits {
            let i = at.index(line.len() + 1);
            match op {
                0 => { line.splice(i..i, piece.bytes()); }
                1 if i < line.len() => { line.remove(i); }
                2 if i < line.len() => { line.truncate(i); }
                _ => {
                    let end = (i + piece.len()).min(line.len());
                    line.splice(i..end, piece.bytes());
                }
            }
        }
        let mut dec = decoder(8);
        let ok = dec.decode(&line).is_ok();
        prop_assert_eq!(dec.len(), usize::from(ok));
        if ok {
            prop_assert_eq!(dec.flush().unwrap().num_rows(), 1);
        } else {
            prop_assert!(dec.interner().is_empty());
        }
    }

    #[test]
    fn field_swaps_never_panic(
        s in sample(),
        field in prop::sample::select(FIELDS.to_vec()),
        value in prop::sample::select(VALUES.to_vec()),
    ) {
        let line = s.to_json_line();
        // Replace (or add) one field with an odd value.
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line).unwrap();
        v.remove(field);
        let body = serde_json::to_string(&v).unwrap();
        let odd = format!("{{\"{field}\":{value},{}", &body[1..]);
        let mut dec = decoder(8);
        match dec.decode(odd.as_bytes()) {
            Ok(()) => prop_assert_eq!(dec.len(), 1),
            Err(e) => prop_assert!(!e.detail.is_empty(), "{}", e),
        }
    }
}

const MANGLE: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\\",
    "\\u",
    "\\ud800",
    "-",
    "1e999",
    "-1",
    "0.5",
    "null",
    "true",
    "NaN",
    "Infinity",
    "\u{0}",
    "é",
    "\"ts\":",
    "\"status\":{\"5\":",
    "99999999999999999999999",
];

const FIELDS: &[&str] = &[
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
    "unknown",
];

const VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-0",
    "-0.0",
    "1",
    "-1",
    "3.5",
    "1e999",
    "-1e999",
    "1e20",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "\"\"",
    "\"x\"",
    "\"NaN\"",
    "\"2026-02-12T21:20:10Z\"",
    "\"2026-02-12T21:20:10+05:00\"",
    "[]",
    "{}",
    "{\"503\":1}",
    "{\"503\":-1}",
    "[1,{\"a\":[null]}]",
];
