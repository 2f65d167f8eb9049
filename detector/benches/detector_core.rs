//! Detector core throughput on 100k series, next to a read-only pass over the same Arrow
//! columns measured in the same run.
//!
//! Each iteration is one 10 s tick of 100k samples (one per series) with every detector kind
//! on; the detector is warmed up first so the candidate path is live. Data is seeded: a steady
//! fleet (the headline figure) and a volatile one whose noise keeps many rows in the candidate
//! pass (see [`Fleet`]). `detect_all_kinds_partition_bursts` delivers the steady fleet as a
//! consumer catching up on 16 Kafka partitions reads it (see [`partition_bursts`]);
//! `detect_all_kinds_phased` with its reporters at eight offsets within the interval (see
//! [`phased_batch`]).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{Float64Builder, UInt32Builder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use detector::{schema, Detector, DetectorConfig, SeriesKey};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, LogNormal, Poisson};

/// Series per tick: 100k, or `DETECTOR_BENCH_SERIES` (to see how the figures move as the state
/// outgrows the caches).
fn series() -> u32 {
    std::env::var("DETECTOR_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}
const STEP_MS: i64 = 10_000;
const T0: i64 = 1_770_000_000_000;
const VARIANTS: usize = 8;

fn keys() -> Vec<SeriesKey> {
    (0..series())
        .map(|i| SeriesKey {
            cluster: format!("cluster-{}", i / 8),
            service: format!("svc-{}", i % 8),
            region: None,
        })
        .collect()
}

/// A tick's worth of samples without the timestamp column (added per iteration).
struct Payload {
    cols: Vec<ArrayRef>,
}

/// The fleet the samples come from.
#[derive(Clone, Copy, Debug)]
enum Fleet {
    /// Every series keeps its own volume (200-2000 requests per tick), error and retry ratios,
    /// latency and pool use, and each tick draws around them: binomial errors, Poisson retries,
    /// log-normal p99 whose spread shrinks with volume. What a healthy fleet looks like, with
    /// candidates as rare as they are in service.
    Steady,
    /// Every tick draws each series' volume afresh across the whole 200-2000 range, with p99
    /// noise that does not shrink with volume: ten-fold swings the detectors' noise models do not
    /// expect, which keep about a tenth of the rows in the candidate pass (a worst case).
    Volatile,
}

/// Ticks of samples from `fleet`, the rows in series order or, `shuffled`, in a random order
/// that differs from tick to tick (as a source with several partitions interleaves them).
fn payloads(fleet: Fleet, shuffled: bool) -> Vec<Payload> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let n = series() as usize;
    // Per series: volume, error ratio, retry ratio, p99 (ms), pool use.
    let profile: Vec<(f64, f64, f64, f64, f64)> = (0..n)
        .map(|_| {
            (
                rng.random_range(200.0..2000.0),
                rng.random_range(0.0005..0.01),
                rng.random_range(0.005..0.02),
                rng.random_range(60.0..400.0),
                rng.random_range(0.2..0.6),
            )
        })
        .collect();
    (0..VARIANTS)
        .map(|_| {
            let mut order: Vec<u32> = (0..series()).collect();
            if shuffled {
                order.shuffle(&mut rng);
            }
            let mut req = UInt64Builder::with_capacity(n);
            let mut err = UInt64Builder::with_capacity(n);
            let mut retries = UInt64Builder::with_capacity(n);
            let mut p50 = Float64Builder::with_capacity(n);
            let mut p99 = Float64Builder::with_capacity(n);
            let (mut pa, mut pm, mut pp) = (
                UInt32Builder::new(),
                UInt32Builder::new(),
                UInt32Builder::new(),
            );
            for &s in &order {
                let (vol, er, rr, lat, pool) = profile[s as usize];
                match fleet {
                    Fleet::Steady => {
                        let r = Poisson::new(vol).expect("mean").sample(&mut rng) as u64;
                        req.append_value(r);
                        err.append_value(Binomial::new(r, er).expect("p").sample(&mut rng));
                        let mean_retries = (r as f64 * rr).max(0.1);
                        retries.append_value(
                            Poisson::new(mean_retries).expect("mean").sample(&mut rng) as u64,
                        );
                        let spread = 0.3 / (r.max(1) as f64).sqrt();
                        let p = lat * LogNormal::new(0.0, spread).expect("sd").sample(&mut rng);
                        p50.append_value(p / 4.0);
                        p99.append_value(p);
                    }
                    Fleet::Volatile => {
                        let r: u64 = rng.random_range(200..2000);
                        req.append_value(r);
                        err.append_value(
                            u64::from(rng.random_ratio(1, 2)) * rng.random_range(0..4),
                        );
                        retries.append_value(r / 100 + rng.random_range(0..3));
                        let p: f64 = rng.random_range(80.0..120.0);
                        p50.append_value(p);
                        p99.append_value(p * 4.0);
                    }
                }
                if s % 2 == 0 {
                    let max = 200u32;
                    let mean = f64::from(max) * pool;
                    let active = Poisson::new(mean).expect("mean").sample(&mut rng) as u32;
                    pa.append_value(active.min(max));
                    pm.append_value(max);
                    pp.append_value(0);
                } else {
                    pa.append_null();
                    pm.append_null();
                    pp.append_null();
                }
            }
            Payload {
                cols: vec![
                    Arc::new(UInt32Array::from(order)),
                    Arc::new(UInt32Array::from_iter_values(std::iter::repeat_n(
                        10_000,
                        series() as usize,
                    ))),
                    Arc::new(req.finish()),
                    Arc::new(err.finish()),
                    Arc::new(retries.finish()),
                    Arc::new(p50.finish()),
                    Arc::new(p99.finish()),
                    Arc::new(pa.finish()),
                    Arc::new(pm.finish()),
                    Arc::new(pp.finish()),
                ],
            }
        })
        .collect()
}

fn tick_batch(p: &Payload, tick: i64) -> RecordBatch {
    let ts = TimestampMillisecondArray::from_iter_values(std::iter::repeat_n(
        T0 + tick * STEP_MS,
        series() as usize,
    ))
    .with_timezone("UTC");
    let mut cols = p.cols.clone();
    cols.insert(1, Arc::new(ts));
    RecordBatch::try_new(schema::sample_schema(), cols).expect("schema")
}

/// The baseline: read every column the detector reads (values and validity) and fold them,
/// with the same lane-accumulator shape a well-written kernel would use.
fn read_only(batch: &RecordBatch) -> f64 {
    fn fold<T: Copy>(values: &[T], to_f64: impl Fn(T) -> f64) -> f64 {
        let mut lanes = [0.0f64; 8];
        let chunks = values.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += to_f64(v);
            }
        }
        lanes.iter().sum::<f64>() + rest.iter().map(|&v| to_f64(v)).sum::<f64>()
    }
    let col = |n: &str| batch.column_by_name(n).expect("column");
    let mut acc = 0.0;
    acc += fold(
        col(schema::SERIES_ID).as_primitive::<UInt32Type>().values(),
        f64::from,
    );
    #[allow(clippy::cast_precision_loss)]
    {
        acc += fold(
            col(schema::TS)
                .as_primitive::<TimestampMillisecondType>()
                .values(),
            |v| v as f64,
        );
    }
    acc += fold(
        col(schema::INTERVAL_MS)
            .as_primitive::<UInt32Type>()
            .values(),
        f64::from,
    );
    for n in [schema::REQUESTS, schema::ERRORS, schema::RETRIES] {
        let a = col(n).as_primitive::<UInt64Type>();
        #[allow(clippy::cast_precision_loss)]
        {
            acc += fold(a.values(), |v| v as f64) + a.null_count() as f64;
        }
    }
    let p99 = col(schema::LATENCY_P99_MS).as_primitive::<Float64Type>();
    acc += fold(p99.values(), |v| v);
    for n in [
        schema::DB_POOL_ACTIVE,
        schema::DB_POOL_MAX,
        schema::DB_POOL_PENDING,
    ] {
        let a = col(n).as_primitive::<UInt32Type>();
        #[allow(clippy::cast_precision_loss)]
        {
            acc += fold(a.values(), f64::from) + a.null_count() as f64;
        }
    }
    acc
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("detector_core_100k_series");
    group.throughput(Throughput::Elements(u64::from(series())));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));

    let steady = payloads(Fleet::Steady, false);
    let probe = tick_batch(&steady[0], 1);
    group.bench_function("read_only_baseline", |b| {
        b.iter(|| black_box(read_only(black_box(&probe))))
    });

    let shuffled = payloads(Fleet::Steady, true);
    let volatile = payloads(Fleet::Volatile, false);
    for (name, payloads) in [
        ("detect_all_kinds", &steady),
        ("detect_all_kinds_rows_shuffled", &shuffled),
        ("detect_all_kinds_volatile_fleet", &volatile),
    ] {
        group.bench_function(name, |b| {
            let cfg = DetectorConfig {
                allowed_lateness_s: 0.0,
                ..DetectorConfig::default()
            };
            bench_ticks(b, cfg, &keys, |tick| {
                tick_batch(&payloads[tick as usize % VARIANTS], tick)
            });
        });
    }

    // The steady fleet with its reporters at `PHASES` offsets within the interval (see
    // `phased_batch`): each tick holds one phase's series and closes once they have all
    // reported, judged against every series current.
    group.bench_function("detect_all_kinds_phased", |b| {
        bench_ticks(b, DetectorConfig::default(), &keys, |tick| {
            phased_batch(&steady[tick as usize % VARIANTS], tick)
        });
    });

    // A consumer catching up on a backlog of partitions (see `partition_bursts`): one
    // iteration is `BURST` ticks of every series, so its throughput counts `BURST` times as
    // many samples.
    group.throughput(Throughput::Elements(BURST as u64 * u64::from(series())));
    group.bench_function("detect_all_kinds_partition_bursts", |b| {
        let mut det = Detector::new(DetectorConfig::default()).expect("config");
        let mut out = Vec::new();
        let mut tick = 1;
        let round = |det: &mut Detector, tick: &mut i64, out: &mut Vec<_>| {
            let bursts = partition_bursts(&steady, *tick);
            let start = Instant::now();
            // Until the round's last partition is read, the oldest partition position is the
            // tick before the round: the hold the service's frontier would set.
            det.set_frontier(Some(T0 + (*tick - 1) * STEP_MS), out);
            for burst in &bursts {
                det.push_batch(black_box(burst), &keys, out).expect("push");
            }
            *tick += BURST as i64;
            det.set_frontier(Some(T0 + (*tick - 1) * STEP_MS), out);
            out.clear();
            start.elapsed()
        };
        // Warm up past the detector's warm-up period so the candidate path is live.
        while tick <= 100 {
            round(&mut det, &mut tick, &mut out);
        }
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| round(&mut det, &mut tick, &mut out))
                .sum()
        });
    });
    group.finish();
}

/// Times a detector (configured by `cfg`) on one batch per tick, `batch_of(tick)`, after
/// warming it up past its warm-up period so the candidate path is live. Building the batch is
/// not timed.
fn bench_ticks(
    b: &mut criterion::Bencher<'_>,
    cfg: DetectorConfig,
    keys: &[SeriesKey],
    batch_of: impl Fn(i64) -> RecordBatch,
) {
    let mut det = Detector::new(cfg).expect("config");
    let mut out = Vec::new();
    let mut tick = 1;
    while tick <= 100 {
        det.push_batch(&batch_of(tick), keys, &mut out)
            .expect("push");
        tick += 1;
    }
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let batch = batch_of(tick);
            tick += 1;
            let start = Instant::now();
            det.push_batch(black_box(&batch), keys, &mut out)
                .expect("push");
            total += start.elapsed();
            out.clear();
        }
        total
    });
}

/// Offsets within the interval of the `phased` bench.
const PHASES: i64 = 8;

/// `tick_batch` with the series in `PHASES` blocks of consecutive ids (clusters whose
/// reporters do not share a clock), block `k` stamped `k * STEP_MS / PHASES` later.
fn phased_batch(p: &Payload, tick: i64) -> RecordBatch {
    let n = i64::from(series());
    let ts = TimestampMillisecondArray::from_iter_values(
        (0..n).map(|s| T0 + tick * STEP_MS + s * PHASES / n * (STEP_MS / PHASES)),
    )
    .with_timezone("UTC");
    let mut cols = p.cols.clone();
    cols.insert(1, Arc::new(ts));
    RecordBatch::try_new(schema::sample_schema(), cols).expect("schema")
}

/// Partitions of the `partition_bursts` bench, and the ticks each partition's burst covers.
const PARTITIONS: u32 = 16;
const BURST: usize = 8;

/// `BURST` ticks from `tick` on, as a consumer catching up on `PARTITIONS` partitions reads
/// them: one batch per partition (the series `s` with `s % PARTITIONS == p`), holding that
/// partition's `BURST` ticks, the partitions in turn.
fn partition_bursts(payloads: &[Payload], tick: i64) -> Vec<RecordBatch> {
    let ticks: Vec<RecordBatch> = (0..BURST as i64)
        .map(|k| tick_batch(&payloads[(tick + k) as usize % VARIANTS], tick + k))
        .collect();
    (0..PARTITIONS)
        .map(|p| {
            let rows = UInt32Array::from_iter_values((p..series()).step_by(PARTITIONS as usize));
            let parts: Vec<RecordBatch> = ticks
                .iter()
                .map(|b| {
                    let cols = b
                        .columns()
                        .iter()
                        .map(|c| arrow_select::take::take(c.as_ref(), &rows, None))
                        .collect::<Result<Vec<_>, _>>()
                        .expect("take");
                    RecordBatch::try_new(b.schema(), cols).expect("schema")
                })
                .collect();
            arrow_select::concat::concat_batches(&schema::sample_schema(), &parts).expect("concat")
        })
        .collect()
}

criterion_group!(benches, bench);
criterion_main!(benches);
