//! Property tests of the other wire formats (native JSON has its own, `json_proptest.rs`):
//! generated samples round-trip through Arrow IPC and through prometheus-kafka-adapter messages,
//! and no input, however mangled, panics a decoder of any format or leaves it unusable.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{samples_of, stored};
use ingest::format::{Accepted, Format, MessageDecoder, MessageDecoderOptions};
use ingest::prom_adapter::{PromEncoder, PromMapping};
use ingest::time::{MAX_TS_MS, MIN_TS_MS};
use ingest::{arrow_ipc, DecoderOptions, RejectReason, Sample};
use proptest::prelude::*;

fn decoder(batch_size: usize) -> MessageDecoder {
    MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            batch_size,
            // Far enough ahead that every representable timestamp is "past".
            now_ms: Some(MAX_TS_MS),
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
    })
}

fn formats() -> Vec<Format> {
    vec![
        Format::Json,
        Format::ArrowIpc,
        Format::PromAdapter(Arc::new(PromMapping::default())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,20}",
        1 => "\\PC{1,16}".prop_filter("1..=128 bytes", |s| (1..=128).contains(&s.len())),
    ]
}

fn latency() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        (0.0f64..1e6).prop_map(Some),
        (0.0f64..f64::MAX).prop_map(Some),
    ]
}

/// Any valid sample (no status: no decoder stores it).
fn sample() -> impl Strategy<Value = Sample> {
    let ids = (key(), key(), proptest::option::of(key()));
    let times = (MIN_TS_MS..=MAX_TS_MS, 1u32..=86_400_000);
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
    );
    (ids, times, counts, gauges).prop_map(
        |((cluster, service, region), (ts_ms, interval_ms), (a, b, r), (p50, p99, pa, pm, pp))| {
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
                status: Default::default(),
            }
        },
    )
}

/// One scrape of one series for the Prometheus round trip: counts small enough that the
/// cumulative counters stay exact in an f64.
#[derive(Debug, Clone)]
struct Scrape {
    requests: u64,
    errors: u64,
    retries: Option<u64>,
    p50: Option<f64>,
    p99: Option<f64>,
    pool: Option<(u32, u32, u32)>,
}

fn scrape() -> impl Strategy<Value = Scrape> {
    (
        0u64..1_000_000,
        0u64..1_000_000,
        proptest::option::of(0u64..1_000_000),
        proptest::option::of(0.0f64..60_000.0),
        proptest::option::of(0.0f64..60_000.0),
        proptest::option::of((0u32..10_000, 0u32..10_000, 0u32..10_000)),
    )
        .prop_map(|(a, b, r, p50, p99, pool)| {
            let requests = a.max(b);
            Scrape {
                requests,
                errors: a.min(b),
                retries: r.map(|r| r.min(requests)),
                p50,
                p99,
                pool,
            }
        })
}

/// Latencies travel in seconds as decimal text: equal to within float rounding.
fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        _ => false,
    }
}

/// A valid encoding of `s` in `format` (for Prometheus: a fresh encoder's first scrape).
fn encode(format: &Format, s: &Sample) -> Vec<Vec<u8>> {
    match format {
        Format::Json => vec![s.to_json_line().into_bytes()],
        Format::ArrowIpc => vec![arrow_ipc::encode(std::slice::from_ref(s)).unwrap()],
        Format::PromAdapter(_) => PromEncoder::new()
            .encode(s)
            .into_iter()
            .map(String::into_bytes)
            .collect(),
    }
}

/// Decodes `msg`; the decoder must stay consistent whatever happens.
fn check_decode(
    dec: &mut MessageDecoder,
    format: &Format,
    msg: &[u8],
) -> Result<(), TestCaseError> {
    let before = dec.len();
    let interned = dec.interner().len();
    match dec.decode(format, msg) {
        Ok(Accepted::Rows(n)) => prop_assert_eq!(dec.len(), before + n),
        Ok(_) => prop_assert_eq!(dec.len(), before),
        Err(e) => {
            prop_assert!(RejectReason::ALL.contains(&e.reason));
            prop_assert!(!e.detail.is_empty(), "{}", e);
            prop_assert_eq!(dec.len(), before, "a rejected message appended rows");
            prop_assert_eq!(
                dec.interner().len(),
                interned,
                "a rejected message interned"
            );
        }
    }
    Ok(())
}

/// After any input, a valid message still decodes.
fn still_usable(dec: &mut MessageDecoder, format: &Format) -> Result<(), TestCaseError> {
    if matches!(format, Format::PromAdapter(_)) {
        // The assembler keeps state by design; its own tests cover what follows.
        return Ok(());
    }
    let good = Sample::new(1_770_931_210_000, "c", "s", 10, 1);
    for m in encode(format, &good) {
        prop_assert!(dec.decode(format, &m).is_ok());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arrow_round_trips_generated_samples(
        samples in proptest::collection::vec(sample(), 0..40),
        split in 1usize..8,
        batch_size in 1usize..64,
    ) {
        let mut dec = decoder(batch_size);
        let mut batches = Vec::new();
        // Several messages of `split` rows (one message may exceed the batch size: rows of one
        // message are never split from each other, the batch just grows).
        for chunk in samples.chunks(split) {
            let msg = arrow_ipc::encode(chunk).unwrap();
            match dec.decode(&Format::ArrowIpc, &msg) {
                Ok(Accepted::Rows(n)) => prop_assert_eq!(n, chunk.len()),
                other => return Err(TestCaseError::fail(format!("{other:?} for {chunk:?}"))),
            }
            if dec.is_full() {
                batches.extend(dec.flush());
            }
        }
        batches.extend(dec.flush());
        let got = samples_of(&batches, dec.interner());
        prop_assert_eq!(got.len(), samples.len());
        // The interner keeps a series' first region; compare it separately.
        for (g, want) in got.iter().zip(&samples) {
            let first = samples
                .iter()
                .find(|o| o.cluster == want.cluster && o.service == want.service)
                .and_then(|o| o.region.clone().filter(|r| !r.is_empty()));
            let mut want = stored(want);
            want.region = first.clone();
            let mut g = g.clone();
            if g.region.as_deref() == Some("") {
                g.region = None;
            }
            prop_assert_eq!(g, want);
        }
        // And the same rows come back through the tool-side reader, without the interner.
        for chunk in samples.chunks(split) {
            let msg = arrow_ipc::encode(chunk).unwrap();
            let back = arrow_ipc::decode_samples(&msg).unwrap();
            prop_assert_eq!(back, chunk.iter().map(stored).collect::<Vec<_>>());
        }
    }

    /// A message handed over ([`MessageDecoder::decode_owned`]) decodes exactly as a lent
    /// one, valid or mangled, in any format.
    #[test]
    fn owned_messages_decode_like_lent_ones(
        samples in proptest::collection::vec(sample(), 0..20),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        for f in formats() {
            let (mut lent, mut owned) = (decoder(8), decoder(8));
            for s in &samples {
                for mut msg in encode(&f, s) {
                    for (at, byte) in &edits {
                        let i = at.index(msg.len());
                        msg[i] ^= byte;
                    }
                    let a = lent.decode(&f, &msg);
                    prop_assert_eq!(a, owned.decode_owned(&f, msg));
                    if lent.is_full() {
                        prop_assert_eq!(lent.flush(), owned.flush());
                    }
                }
            }
            prop_assert_eq!(lent.flush(), owned.flush());
            prop_assert_eq!(lent.interner().keys(), owned.interner().keys());
        }
    }

    #[test]
    fn prom_adapter_round_trips_generated_scrapes(
        series in proptest::collection::vec((key(), key(), proptest::option::of(key())), 1..4),
        scrapes in proptest::collection::vec(scrape(), 2..12),
    ) {
        let f = Format::PromAdapter(Arc::new(PromMapping::default()));
        let mut enc = PromEncoder::new();
        let mut dec = decoder(1024);
        let mut want = Vec::new();
        let t0 = 1_770_931_200_000i64;
        let mut series = series;
        series.sort();
        series.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        // Scrape i of series j is scrape (i + j) of the generated list, so series differ.
        for i in 0..scrapes.len() {
            for (j, (cluster, service, region)) in series.iter().enumerate() {
                let sc = &scrapes[(i + j) % scrapes.len()];
                let mut s = Sample::new(t0 + i as i64 * 10_000, cluster, service, sc.requests, sc.errors);
                s.region = region.clone();
                s.retries = sc.retries;
                s.latency_p50_ms = sc.p50;
                s.latency_p99_ms = sc.p99;
                if let Some((a, m, p)) = sc.pool {
                    s.db_pool_active = Some(a);
                    s.db_pool_max = Some(m);
                    s.db_pool_pending = Some(p);
                }
                for m in enc.encode(&s) {
                    check_decode(&mut dec, &f, m.as_bytes())?;
                }
                // The first scrape of a series only primes its counters.
                if i > 0 {
                    want.push(s);
                }
            }
        }
        dec.finish();
        let batches: Vec<_> = dec.flush().into_iter().collect();
        let mut got = samples_of(&batches, dec.interner());
        let order = |s: &Sample| (s.ts_ms, s.cluster.clone(), s.service.clone());
        got.sort_by_key(order);
        want.sort_by_key(order);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            let exact = |s: &Sample| Sample {
                latency_p50_ms: None,
                latency_p99_ms: None,
                region: s.region.clone().filter(|r| !r.is_empty()),
                ..s.clone()
            };
            prop_assert_eq!(exact(g), exact(w));
            prop_assert!(close(g.latency_p50_ms, w.latency_p50_ms), "p50 {:?} vs {:?}", g, w);
            prop_assert!(close(g.latency_p99_ms, w.latency_p99_ms), "p99 {:?} vs {:?}", g, w);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_format(msg in proptest::collection::vec(any::<u8>(), 0..400)) {
        for f in formats() {
            let mut dec = decoder(8);
            check_decode(&mut dec, &f, &msg)?;
            dec.finish();
            still_usable(&mut dec, &f)?;
        }
    }

    #[test]
    fn mangled_valid_messages_never_panic_any_format(
        s in sample(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..8),
    ) {
        for f in formats() {
            let mut dec = decoder(8);
            for mut msg in encode(&f, &s) {
                for (at, op, byte) in &edits {
                    let i = at.index(msg.len() + 1);
                    match op {
                        0 => msg.insert(i, *byte),
                        1 if i < msg.len() => { msg.remove(i); }
                        2 if i < msg.len() => msg.truncate(i),
                        _ if i < msg.len() => msg[i] ^= byte | 1,
                        _ => msg.push(*byte),
                    }
                }
                check_decode(&mut dec, &f, &msg)?;
            }
            dec.finish();
            still_usable(&mut dec, &f)?;
        }
    }
}
