//! Table-driven tests of each detector kind, loud and quiet cases, on seeded synthetic series.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, UInt32Builder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array, UInt64Array};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Binomial, Distribution, Poisson};

use crate::schema::sample_schema;
use crate::{
    AlertEvent, AlertKind, AlertState, Detector, DetectorConfig, DetectorError, SeriesKey,
};

/// One synthetic sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct S {
    pub sid: u32,
    pub ts: i64,
    pub interval_ms: u32,
    pub req: u64,
    pub err: u64,
    pub retries: Option<u64>,
    pub p99: Option<f64>,
    /// `None`: a quarter of the p99.
    pub p50: Option<f64>,
    pub pool: Option<(u32, u32, u32)>,
}

pub(crate) fn batch(rows: &[S]) -> RecordBatch {
    let mut retries = UInt64Builder::new();
    let mut p50 = Float64Builder::new();
    let mut p99 = Float64Builder::new();
    let (mut pa, mut pm, mut pp) = (
        UInt32Builder::new(),
        UInt32Builder::new(),
        UInt32Builder::new(),
    );
    for r in rows {
        retries.append_option(r.retries);
        p50.append_option(r.p50.or(r.p99.map(|v| v / 4.0)));
        p99.append_option(r.p99);
        pa.append_option(r.pool.map(|p| p.0));
        pm.append_option(r.pool.map(|p| p.1));
        pp.append_option(r.pool.map(|p| p.2));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sid))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts))
                .with_timezone("UTC"),
        ),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.interval_ms),
        )),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.req))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.err))),
        Arc::new(retries.finish()),
        Arc::new(p50.finish()),
        Arc::new(p99.finish()),
        Arc::new(pa.finish()),
        Arc::new(pm.finish()),
        Arc::new(pp.finish()),
    ];
    RecordBatch::try_new(sample_schema(), cols).unwrap()
}

pub(crate) fn keys(n: u32, services: u32) -> Vec<SeriesKey> {
    (0..n)
        .map(|i| SeriesKey {
            cluster: format!("c{}", i / services),
            service: format!("svc{}", i % services),
            region: Some("r1".into()),
        })
        .collect()
}

/// Runs samples through a default detector in chunks of `chunk` rows.
pub(crate) fn run_with(
    cfg: DetectorConfig,
    keys: &[SeriesKey],
    rows: &[S],
    chunk: usize,
) -> Vec<AlertEvent> {
    let mut d = Detector::new(cfg).unwrap();
    let mut out = Vec::new();
    for c in rows.chunks(chunk.max(1)) {
        d.push_batch(&batch(c), keys, &mut out).unwrap();
    }
    d.finish(&mut out);
    out
}

pub(crate) fn run(keys: &[SeriesKey], rows: &[S]) -> Vec<AlertEvent> {
    run_with(DetectorConfig::default(), keys, rows, 512)
}

const T0: i64 = 1_770_000_000_000;
const STEP: i64 = 10_000;

/// What a synthetic series looks like at tick `t`: expected requests, error ratio, retry ratio,
/// p99 (ms), pool utilisation (None = not reported), whether it reports at all.
#[derive(Debug, Clone, Copy)]
struct Shape {
    req: f64,
    err: f64,
    retry: f64,
    p99: f64,
    pool: Option<f64>,
    present: bool,
    /// Overdispersed errors: each sample's error ratio drawn from a beta distribution with
    /// mean `err` and this concentration (alpha + beta); `None`: always `err`.
    err_concentration: Option<f64>,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            req: 1000.0,
            err: 0.002,
            retry: 0.01,
            p99: 300.0,
            pool: Some(0.45),
            present: true,
            err_concentration: None,
        }
    }
}

/// Generates `ticks` samples for each of `n` series from `shape(series, tick)`, with Poisson
/// requests, binomial errors/retries, lognormal-ish p99 noise and pool noise.
fn simulate(n: u32, ticks: i64, seed: u64, shape: impl Fn(u32, i64) -> Shape) -> Vec<S> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for t in 0..ticks {
        for sid in 0..n {
            let sh = shape(sid, t);
            if !sh.present {
                continue;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let req = if sh.req > 0.0 {
                Poisson::new(sh.req).unwrap().sample(&mut rng) as u64
            } else {
                0
            };
            let p_err = match sh.err_concentration {
                Some(k) => Beta::new(sh.err * k, (1.0 - sh.err) * k)
                    .unwrap()
                    .sample(&mut rng),
                None => sh.err,
            };
            let err = Binomial::new(req, p_err.clamp(0.0, 1.0))
                .unwrap()
                .sample(&mut rng);
            let retries = Binomial::new(req, sh.retry.clamp(0.0, 1.0))
                .unwrap()
                .sample(&mut rng);
            let noise: f64 = rng.random_range(-0.08..0.08);
            let pool = sh.pool.map(|u| {
                let jitter: f64 = rng.random_range(-0.04..0.04);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let active = ((u + jitter).clamp(0.0, 1.0) * 200.0).round() as u32;
                (active, 200, if u >= 0.97 { 12 } else { 0 })
            });
            rows.push(S {
                sid,
                ts: T0 + (t + 1) * STEP,
                interval_ms: 10_000,
                req,
                err,
                retries: Some(retries),
                p99: Some(sh.p99 * noise.exp()),
                p50: None,
                pool,
            });
        }
    }
    rows
}

/// A number in [0, 1) that looks random but is fixed by `(s, t)` (a shape has no generator).
fn unit_hash(s: u32, t: i64) -> f64 {
    let mut x = (u64::from(s) << 32) ^ t.cast_unsigned();
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    #[allow(clippy::cast_precision_loss)]
    let u = (x >> 11) as f64 / (1u64 << 53) as f64;
    u
}

fn firing(events: &[AlertEvent]) -> Vec<&AlertEvent> {
    events
        .iter()
        .filter(|e| e.state == AlertState::Firing)
        .collect()
}

/// Tick index (0-based, the sample covering [t, t+1)) of an event time.
fn tick_of(ms: i64) -> i64 {
    (ms - T0) / STEP - 1
}

struct Case {
    name: &'static str,
    shape: fn(u32, i64) -> Shape,
    /// (kind, first tick allowed, last tick allowed) that must fire on series 0.
    want: &'static [(AlertKind, i64, i64)],
    /// Kinds that must not fire on any series.
    quiet: &'static [AlertKind],
}

const ALL: &[AlertKind] = &AlertKind::ALL;
const ONSET: i64 = 300;

fn after(t: i64, a: Shape, b: Shape) -> Shape {
    if t >= ONSET {
        b
    } else {
        a
    }
}

#[test]
fn detector_kinds_table() {
    let cases = [
        Case {
            name: "steady traffic is quiet",
            shape: |_, _| Shape::default(),
            want: &[],
            quiet: ALL,
        },
        Case {
            name: "sharp error spike fires within 2 intervals",
            shape: |s, t| {
                after(
                    t,
                    Shape::default(),
                    if s == 0 {
                        Shape {
                            err: 0.4,
                            ..Shape::default()
                        }
                    } else {
                        Shape::default()
                    },
                )
            },
            want: &[(AlertKind::ErrorRateSpike, ONSET, ONSET + 1)],
            quiet: &[
                AlertKind::RetryAmplification,
                AlertKind::LatencySpike,
                AlertKind::DbPoolSaturation,
                AlertKind::TelemetryAbsent,
            ],
        },
        Case {
            name: "low-volume series with occasional single errors is quiet",
            shape: |_, t| Shape {
                req: 25.0,
                err: if t % 97 == 0 { 0.04 } else { 0.002 },
                ..Shape::default()
            },
            want: &[],
            quiet: ALL,
        },
        Case {
            name: "low-volume series: 15 errors in 50 requests fires",
            shape: |s, t| {
                after(
                    t,
                    Shape {
                        req: 50.0,
                        ..Shape::default()
                    },
                    Shape {
                        req: 50.0,
                        err: if s == 0 { 0.3 } else { 0.002 },
                        ..Shape::default()
                    },
                )
            },
            want: &[(AlertKind::ErrorRateSpike, ONSET, ONSET + 1)],
            quiet: &[
                AlertKind::RetryAmplification,
                AlertKind::DbPoolSaturation,
                AlertKind::TelemetryAbsent,
            ],
        },
        Case {
            name: "series with a high normal error ratio is quiet",
            shape: |_, _| Shape {
                err: 0.08,
                ..Shape::default()
            },
            want: &[],
            quiet: ALL,
        },
        Case {
            name: "high-baseline series fires when it rises well above it",
            shape: |s, t| {
                after(
                    t,
                    Shape {
                        err: 0.08,
                        ..Shape::default()
                    },
                    Shape {
                        err: if s == 0 { 0.35 } else { 0.08 },
                        ..Shape::default()
                    },
                )
            },
            want: &[(AlertKind::ErrorRateSpike, ONSET, ONSET + 1)],
            quiet: &[AlertKind::DbPoolSaturation, AlertKind::TelemetryAbsent],
        },
        Case {
            name: "errors settled a little under the practical floor do not page",
            // 0.8% against a 0.2% baseline: four times it, but under the floor of 1.2%. One
            // sample in ten is over the floor by noise alone; before each lone sample had to
            // be significantly over the floor too, those paged within four samples.
            shape: |s, t| Shape {
                err: if s == 0 && t >= ONSET { 0.008 } else { 0.002 },
                ..Shape::default()
            },
            want: &[],
            quiet: ALL,
        },
        Case {
            name: "overdispersed series is quiet",
            shape: |_, t| Shape {
                req: 5000.0,
                err: 0.003 * (1.0 + 0.6 * ((t * 7919 % 13) as f64 / 6.0 - 1.0)),
                ..Shape::default()
            },
            want: &[],
            quiet: ALL,
        },
        Case {
            name: "slow error ramp is caught early by accumulation",
            shape: |s, t| {
                let ramp = if s == 0 && t >= ONSET {
                    ((t - ONSET) as f64 / 90.0).min(1.0) * 0.6
                } else {
                    0.0
                };
                Shape {
                    err: 0.002 + ramp,
                    ..Shape::default()
                }
            },
            // The ratio reaches ~2% after 3 ticks; page before it reaches 10% (15 ticks).
            want: &[(AlertKind::ErrorRateSpike, ONSET, ONSET + 15)],
            quiet: &[AlertKind::DbPoolSaturation, AlertKind::TelemetryAbsent],
        },
        Case {
            name: "retry storm with few errors",
            shape: |s, t| {
                after(
                    t,
                    Shape::default(),
                    Shape {
                        retry: if s == 0 { 0.08 } else { 0.01 },
                        ..Shape::default()
                    },
                )
            },
            want: &[(AlertKind::RetryAmplification, ONSET, ONSET + 2)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::SuccessDrop,
                AlertKind::LatencySpike,
                AlertKind::DbPoolSaturation,
            ],
        },
        Case {
            name: "benign load surge x2 is quiet",
            shape: |_, t| Shape {
                req: if (ONSET..ONSET + 90).contains(&t) {
                    2000.0
                } else {
                    1000.0
                },
                ..Shape::default()
            },
            want: &[],
            quiet: ALL,
        },
        Case {
            name: "latency-only regression",
            shape: |s, t| {
                after(
                    t,
                    Shape::default(),
                    Shape {
                        p99: if s == 0 { 900.0 } else { 300.0 },
                        ..Shape::default()
                    },
                )
            },
            want: &[(AlertKind::LatencySpike, ONSET, ONSET + 1)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::SuccessDrop,
                AlertKind::RetryAmplification,
                AlertKind::DbPoolSaturation,
            ],
        },
        Case {
            name: "traffic lost on a single-cluster service",
            shape: |s, t| {
                after(
                    t,
                    Shape::default(),
                    Shape {
                        req: if s == 0 { 300.0 } else { 1000.0 },
                        ..Shape::default()
                    },
                )
            },
            want: &[(AlertKind::SuccessDrop, ONSET, ONSET + 2)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::DbPoolSaturation,
                AlertKind::TelemetryAbsent,
            ],
        },
        Case {
            name: "traffic lost on a quiet series (20 requests a sample)",
            shape: |s, t| Shape {
                req: if s == 0 && t >= ONSET { 4.0 } else { 20.0 },
                ..Shape::default()
            },
            // One sample 80% down is 3.6 deviations at this volume, two are 5.
            want: &[(AlertKind::SuccessDrop, ONSET, ONSET + 2)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::RetryAmplification,
                AlertKind::DbPoolSaturation,
                AlertKind::TelemetryAbsent,
            ],
        },
        Case {
            name: "pool climbing to full warns early",
            shape: |s, t| {
                let u = if s == 0 && t >= ONSET {
                    (0.45 + (t - ONSET) as f64 * 0.035).min(1.0)
                } else {
                    0.45
                };
                Shape {
                    pool: Some(u),
                    ..Shape::default()
                }
            },
            // Full at ONSET + 16; the warning must come well before.
            want: &[(AlertKind::DbPoolSaturation, ONSET + 1, ONSET + 9)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::SuccessDrop,
                AlertKind::TelemetryAbsent,
            ],
        },
        Case {
            name: "slow connection leak warns before the pool is full",
            shape: |s, t| {
                let u = if s == 0 && t >= ONSET {
                    (0.45 + (t - ONSET) as f64 * 0.003).min(1.0)
                } else {
                    0.45
                };
                Shape {
                    pool: Some(u),
                    ..Shape::default()
                }
            },
            // Full at ONSET + 183.
            want: &[(AlertKind::DbPoolSaturation, ONSET + 60, ONSET + 183)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::SuccessDrop,
                AlertKind::TelemetryAbsent,
            ],
        },
        Case {
            name: "silent series is reported absent within 3 intervals",
            shape: |s, t| Shape {
                present: !(s == 0 && (ONSET..ONSET + 60).contains(&t)),
                ..Shape::default()
            },
            want: &[(AlertKind::TelemetryAbsent, ONSET + 2, ONSET + 2)],
            quiet: &[
                AlertKind::ErrorRateSpike,
                AlertKind::RetryAmplification,
                AlertKind::LatencySpike,
            ],
        },
        Case {
            name: "an incident during warm-up does not page",
            shape: |s, t| Shape {
                err: if s == 0 && (20..40).contains(&t) {
                    0.5
                } else {
                    0.002
                },
                ..Shape::default()
            },
            want: &[],
            quiet: &[AlertKind::ErrorRateSpike],
        },
    ];
    for case in cases {
        let rows = simulate(4, ONSET + 400, 7, case.shape);
        let keys = keys(4, 4);
        let events = run(&keys, &rows);
        for &(kind, lo, hi) in case.want {
            let hit = firing(&events)
                .into_iter()
                .find(|e| e.kind == kind && e.cluster == "c0" && e.service == "svc0");
            let Some(hit) = hit else {
                panic!("{}: no {kind} on series 0; got {events:#?}", case.name)
            };
            let t = tick_of(hit.detected_at);
            assert!(
                (lo..=hi).contains(&t),
                "{}: {kind} at tick {t}, want {lo}..={hi}",
                case.name
            );
        }
        for e in firing(&events) {
            let wanted =
                case.want.iter().any(|w| w.0 == e.kind) && e.cluster == "c0" && e.service == "svc0";
            assert!(
                wanted || !case.quiet.contains(&e.kind),
                "{}: unexpected {} on {}/{} at tick {}: {}",
                case.name,
                e.kind,
                e.cluster,
                e.service,
                tick_of(e.detected_at),
                e.summary
            );
        }
    }
}

fn incident_rows() -> Vec<S> {
    // Two services x three clusters; cluster c0 fails on both services for 60 ticks, with
    // retries, latency and a pool climb; cluster c2 of svc1 goes silent for a while.
    simulate(6, ONSET + 200, 11, |s, t| {
        let hit = s / 2 == 0 && (ONSET..ONSET + 60).contains(&t);
        Shape {
            err: if hit { 0.45 } else { 0.002 },
            retry: if hit { 0.2 } else { 0.01 },
            p99: if hit { 1200.0 } else { 300.0 },
            pool: Some(if hit { 0.99 } else { 0.45 }),
            present: !(s == 5 && (ONSET + 20..ONSET + 50).contains(&t)),
            ..Shape::default()
        }
    })
}

#[test]
fn lifecycle_fires_once_and_resolves_with_the_same_id() {
    let keys = keys(6, 2);
    let events = run(&keys, &incident_rows());
    let fired: Vec<_> = firing(&events);
    assert!(!fired.is_empty());
    for f in &fired {
        let resolved: Vec<_> = events
            .iter()
            .filter(|e| e.id == f.id && e.state == AlertState::Resolved)
            .collect();
        assert_eq!(
            resolved.len(),
            1,
            "{} {} resolved {} times",
            f.kind,
            f.cluster,
            resolved.len()
        );
        let r = resolved[0];
        assert!(r.resolved_at.unwrap() > f.detected_at);
        assert_eq!(
            (r.onset, r.detected_at, &r.cluster, r.kind),
            (f.onset, f.detected_at, &f.cluster, f.kind)
        );
        assert!(f.onset <= f.detected_at);
        assert!(f.id.starts_with("a-") && f.id.len() == 18);
    }
    // One firing per (series, kind) for this single episode.
    let mut seen = std::collections::HashSet::new();
    for f in &fired {
        assert!(
            seen.insert((f.cluster.clone(), f.service.clone(), f.kind)),
            "duplicate {:?}",
            f
        );
    }
    // Event-time order.
    assert!(events
        .windows(2)
        .all(|w| w[0].resolved_at.unwrap_or(w[0].detected_at)
            <= w[1].resolved_at.unwrap_or(w[1].detected_at)));
    // What fired: c0 on both services for errors, retries, latency; silent series absent.
    for svc in ["svc0", "svc1"] {
        for kind in [
            AlertKind::ErrorRateSpike,
            AlertKind::RetryAmplification,
            AlertKind::LatencySpike,
            AlertKind::DbPoolSaturation,
        ] {
            assert!(
                fired
                    .iter()
                    .any(|e| e.cluster == "c0" && e.service == svc && e.kind == kind),
                "{kind} on c0/{svc}"
            );
        }
    }
    assert!(fired
        .iter()
        .any(|e| e.cluster == "c2" && e.service == "svc1" && e.kind == AlertKind::TelemetryAbsent));
    assert!(
        fired
            .iter()
            .all(|e| e.cluster == "c0" || e.kind == AlertKind::TelemetryAbsent),
        "{fired:#?}"
    );
}

#[test]
fn batch_size_does_not_change_alerts() {
    let keys = keys(6, 2);
    let rows = incident_rows();
    let want = run_with(DetectorConfig::default(), &keys, &rows, 1024);
    assert!(!want.is_empty());
    for chunk in [1, 7, 333] {
        assert_eq!(
            run_with(DetectorConfig::default(), &keys, &rows, chunk),
            want,
            "chunk {chunk}"
        );
    }
}

#[test]
fn kernels_agree_bit_for_bit_across_instruction_sets() {
    // The kernels run as AVX2 or AVX-512 copies where the CPU has them (crate::isa); every copy
    // must give the same alerts and leave exactly the same state, bit for bit.
    use crate::isa::{Isa, FORCE_MAX};
    let keys = keys(6, 2);
    let rows = incident_rows();
    let run_isa = |isa: Isa| {
        FORCE_MAX.with(|f| f.set(isa));
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in rows.chunks(97) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        let state = bincode::serialize(&d.snapshot()).unwrap();
        d.finish(&mut out);
        FORCE_MAX.with(|f| f.set(Isa::Avx512));
        (out, state)
    };
    let widest = crate::isa::detected();
    if widest < Isa::Avx512 {
        eprintln!("this CPU runs at most the {widest:?} kernels; the wider ones are not compared");
    }
    let (base_events, base_state) = run_isa(Isa::Baseline);
    assert!(!base_events.is_empty());
    for isa in [Isa::Avx2, Isa::Avx512] {
        let (events, state) = run_isa(isa);
        assert_eq!(events, base_events, "{isa:?}");
        assert!(state == base_state, "detector state differs under {isa:?}");
    }
}

#[test]
fn late_and_duplicated_delivery_gives_the_same_alerts() {
    let keys = keys(6, 2);
    let rows = incident_rows();
    let want = run(&keys, &rows);
    // Deliver series 3 six ticks (60 s) late, and every 5th row twice.
    let mut shuffled: Vec<(i64, usize, S)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let delay = if r.sid == 3 { 6 * STEP } else { 0 };
        shuffled.push((r.ts + delay, i, *r));
        if i % 5 == 0 {
            shuffled.push((r.ts + delay + 3 * STEP, i, *r));
        }
    }
    shuffled.sort_by_key(|x| (x.0, x.1));
    let delivered: Vec<S> = shuffled.into_iter().map(|x| x.2).collect();
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut got = Vec::new();
    for c in delivered.chunks(64) {
        d.push_batch(&batch(c), &keys, &mut got).unwrap();
    }
    d.finish(&mut got);
    assert_eq!(got, want);
    let stats = d.stats();
    assert_eq!(stats.processed as usize, rows.len());
    assert_eq!(stats.duplicates as usize, rows.len().div_ceil(5));
    assert_eq!(stats.too_late, 0);
}

#[test]
fn samples_beyond_the_allowed_lateness_are_counted_not_evaluated() {
    let keys = keys(1, 1);
    let mut rows = simulate(1, 100, 3, |_, _| Shape::default());
    let stale = S {
        ts: rows[10].ts,
        ..rows[10]
    };
    rows.push(stale);
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut out = Vec::new();
    d.push_batch(&batch(&rows), &keys, &mut out).unwrap();
    assert_eq!(d.stats().too_late, 1);
    // Every series of the previous tick reported, so each tick closed without waiting.
    assert_eq!(d.stats().processed, 100);
    d.finish(&mut out);
    assert_eq!(d.stats().processed, 100);
}

/// A 10 s sample of series `sid` for tick `tick`, `req` requests of which `err` failed.
fn at_tick(sid: u32, tick: i64, req: u64, err: u64) -> S {
    S {
        sid,
        ts: T0 + tick * STEP,
        interval_ms: 10_000,
        req,
        err,
        ..S::default()
    }
}

#[test]
fn after_an_idle_spell_a_series_is_waited_for_until_it_reports_and_then_at_its_next_time() {
    // Tick 0 closes by the watermark, which then moves on without samples: every series was
    // due at tick 1, a time now behind the watermark (its sample would be refused as too late).
    // Back from the idle spell, ticks 14 and 15 wait for series 2 until it reports (tick 16):
    // it skipped them, so they close then, without it. Tick 16 still waits for series 1, due
    // then since its tick-15 sample.
    let keys = keys(3, 1);
    let at = |sid: u32, tick: i64| at_tick(sid, tick, 100, 1);
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut out = Vec::new();
    d.push_batch(&batch(&[at(0, 0), at(1, 0), at(2, 0)]), &keys, &mut out)
        .unwrap();
    d.advance_to(T0 + 13 * STEP, &mut out);
    assert_eq!(d.stats().ticks, 1, "tick 0 closed by the watermark");
    let waiting = [at(0, 14), at(1, 14), at(0, 15), at(1, 15), at(0, 16)];
    d.push_batch(&batch(&waiting), &keys, &mut out).unwrap();
    assert_eq!(d.stats().ticks, 1, "all three wait for series 2");
    d.push_batch(&batch(&[at(2, 16)]), &keys, &mut out).unwrap();
    assert_eq!(
        d.stats().ticks,
        3,
        "ticks 14 and 15 close once series 2 is past them"
    );
    d.push_batch(&batch(&[at(1, 16)]), &keys, &mut out).unwrap();
    assert_eq!(d.stats().ticks, 4, "tick 16 complete");
    assert_eq!((d.stats().folded_late, d.stats().too_late), (0, 0));
}

#[test]
fn a_stalled_series_flushing_its_backlog_out_of_order_is_waited_for() {
    // Series 2's collector stalls for six ticks while the others report, then flushes the
    // backlog newest first, within the allowed lateness. Each tick waits for it (it is due at
    // the first of them, and a newer sample does not mean it skipped the older ones), so every
    // sample is evaluated in its tick: none late, none taken for a duplicate, and no
    // telemetry_absent for a series that was only late. Cut into batches of any size.
    let keys = keys(3, 1);
    let at = |sid: u32, tick: i64| at_tick(sid, tick, 1000, 2);
    let mut rows = Vec::new();
    for t in 0..100 {
        rows.push(at(0, t));
        rows.push(at(1, t));
        if !(60..66).contains(&t) {
            rows.push(at(2, t));
        }
        if t == 67 {
            rows.extend((60..66).rev().map(|u| at(2, u)));
        }
    }
    for chunk in [1, 7, 1024] {
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in rows.chunks(chunk) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        d.finish(&mut out);
        let s = d.stats();
        assert_eq!(
            (s.processed, s.folded_late, s.duplicates, s.too_late),
            (300, 0, 0, 0),
            "batches of {chunk}: {s:?}"
        );
        assert_eq!(s.ticks, 100, "batches of {chunk}: {s:?}");
        assert!(out.is_empty(), "batches of {chunk}: {out:?}");
    }
}

#[test]
fn a_series_that_skipped_a_tick_is_waited_for_again_from_its_next_sample_on() {
    // Series 1 skips tick 5 (sends 6 instead) and then lags the other series. Tick 5 waits
    // for it up to the watermark (the sample it owes might still come), then closes without it.
    // From tick 6 on it is due again on its own schedule, so its lagging samples join their
    // ticks instead of arriving after them.
    let keys = keys(2, 1);
    let at = |sid: u32, tick: i64| at_tick(sid, tick, 1000, 2);
    let mut rows: Vec<S> = (0..5).flat_map(|t| [at(0, t), at(1, t)]).collect();
    rows.extend([at(0, 5), at(1, 6)]);
    rows.extend((6..=18).map(|t| at(0, t)));
    rows.extend((7..=18).map(|t| at(1, t)));
    for chunk in [1, 7, 1024] {
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in rows.chunks(chunk) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        let s = d.stats();
        assert_eq!(
            (s.folded_late, s.too_late, s.duplicates),
            (0, 0, 0),
            "batches of {chunk}: {s:?}"
        );
        // Everything up to tick 18 is closed: series 1 reported it, series 0 is due at 19.
        assert_eq!(
            (s.ticks, s.processed),
            (19, 37),
            "batches of {chunk}: {s:?}"
        );
    }
}

#[test]
fn a_fleet_reporting_at_several_phases_closes_each_tick_once_its_series_have_reported() {
    // Reporters that do not share a clock (scrapes spread over the interval, agents started
    // at different times) stamp their samples at different offsets. Each tick then holds
    // one phase's series, and closes as soon as they have all reported it, not two minutes
    // later at the watermark. Table: phase offsets in ms (one per series), interval.
    let cases: [(&[i64], u32); 3] = [
        (&[0, 0, 5_000, 5_000], 10_000),
        (&[0, 1_000, 2_000, 3_000, 7_000, 9_000], 10_000),
        (&[0, 250, 500, 750], 1_000),
    ];
    for (offsets, interval_ms) in cases {
        let n = u32::try_from(offsets.len()).unwrap();
        let keys = keys(n, 2);
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        let step = i64::from(interval_ms);
        // Three times the allowed lateness (120 s).
        let rounds = 360_000 / step;
        for t in 0..rounds {
            // One round in event-time order: every phase's sample of interval `t`.
            let rows: Vec<S> = (0..n)
                .map(|sid| S {
                    sid,
                    ts: T0 + t * step + offsets[sid as usize],
                    interval_ms,
                    req: 1000,
                    err: 2,
                    ..S::default()
                })
                .collect();
            for r in &rows {
                d.push_batch(&batch(std::slice::from_ref(r)), &keys, &mut out)
                    .unwrap();
            }
            // Once the first tick has closed (by the watermark: the fleet is not known
            // before), nothing waits.
            if d.stats().ticks > 0 {
                assert_eq!(d.open_samples(), 0, "offsets {offsets:?}, round {t}");
            }
        }
        assert!(d.stats().ticks > 0, "offsets {offsets:?}");
        let s = d.stats();
        assert_eq!(
            (s.folded_late, s.duplicates, s.too_late),
            (0, 0, 0),
            "{s:?}"
        );
    }
}

#[test]
fn a_batch_naming_an_unregistered_series_is_refused_naming_it() {
    let keys = keys(3, 1);
    let rows: Vec<S> = [0, 2, 7, 1, 9]
        .iter()
        .map(|&sid| S {
            sid,
            ts: T0,
            interval_ms: 10_000,
            req: 10,
            ..S::default()
        })
        .collect();
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let err = d
        .push_batch(&batch(&rows), &keys, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(err, DetectorError::UnknownSeries { id: 7, known: 3 }),
        "{err}"
    );
    assert_eq!(d.stats().samples, 0, "nothing of the batch is taken");
    d.push_batch(&batch(&rows[..2]), &keys, &mut Vec::new())
        .unwrap();
    assert_eq!(d.stats().samples, 2);
}

#[test]
fn a_tick_waits_for_a_missing_series_until_the_watermark_passes() {
    let keys = keys(2, 1);
    // Series 1 stops after tick 50; series 0 goes on.
    let rows = simulate(2, 100, 3, |s, t| Shape {
        present: s == 0 || t < 50,
        ..Shape::default()
    });
    let upto = |t: i64| rows.iter().filter(|r| r.ts <= T0 + (t + 1) * STEP).count();
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut out = Vec::new();
    // Up to tick 60: tick 50 (series 1 missing) is held, as everything after it.
    d.push_batch(&batch(&rows[..upto(60)]), &keys, &mut out)
        .unwrap();
    assert_eq!(d.stats().ticks, 50);
    // Tick 62 is exactly 120 s after tick 50: still allowed, tick 50 stays open.
    d.push_batch(&batch(&rows[upto(60)..upto(62)]), &keys, &mut out)
        .unwrap();
    assert_eq!(d.stats().ticks, 50);
    // Tick 63 moves the watermark past tick 50: it closes, series 1 is no longer waited for,
    // and the complete ticks after it close too.
    d.push_batch(&batch(&rows[upto(62)..upto(63)]), &keys, &mut out)
        .unwrap();
    assert_eq!(d.stats().ticks, 64);
}

/// Runs `rows` (one batch) through a default detector to the end; its alerts and counters.
fn run_to_end(keys: &[SeriesKey], rows: &[S]) -> (Vec<AlertEvent>, crate::DetectorStats) {
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut out = Vec::new();
    d.push_batch(&batch(rows), keys, &mut out).unwrap();
    d.finish(&mut out);
    (out, d.stats())
}

/// Cluster offsets (ms) of the phased tests: aligned, and two spreads over the interval.
const OFFSETS: [[i64; 3]; 3] = [[0, 0, 0], [0, 3_000, 7_000], [0, 9_000, 4_500]];

/// `rows` with each series' samples `offsets_ms[sid]` later, in event-time order: a fleet whose
/// reporters do not share a clock.
fn phased(mut rows: Vec<S>, offsets_ms: &[i64]) -> Vec<S> {
    for r in &mut rows {
        r.ts += offsets_ms[r.sid as usize];
    }
    rows.sort_by_key(|r| (r.ts, r.sid));
    rows
}

#[test]
fn traffic_moved_between_clusters_of_a_service_is_not_a_loss() {
    // svc0 runs on c0..c2; c0 is evacuated (requests ~0) and c1, c2 absorb its traffic. The
    // service's total is judged over every cluster, also when each reports at its own offset
    // within the interval (each tick then holds one cluster's sample).
    for offsets in OFFSETS {
        let keys = keys(3, 1);
        let rows = simulate(3, ONSET + 200, 5, |s, t| {
            let evac = (ONSET..ONSET + 100).contains(&t);
            let req = match (s, evac) {
                (0, true) => 0.0,
                (_, true) => 1500.0,
                _ => 1000.0,
            };
            Shape {
                req,
                ..Shape::default()
            }
        });
        let (out, stats) = run_to_end(&keys, &phased(rows, &offsets));
        assert!(out.is_empty(), "offsets {offsets:?}: {out:#?}");
        assert_eq!(
            stats.moves_suppressed, 1,
            "offsets {offsets:?}: one cluster evacuated once"
        );
    }
}

#[test]
fn a_cluster_losing_its_traffic_pages_whatever_the_offsets_its_siblings_report_at() {
    // The same fleet, but nobody absorbs c0's traffic: the service's total is short by a third,
    // so c0's loss pages within two samples.
    for offsets in OFFSETS {
        let keys = keys(3, 1);
        let rows = simulate(3, ONSET + 200, 5, |s, t| Shape {
            req: if s == 0 && (ONSET..ONSET + 100).contains(&t) {
                0.0
            } else {
                1000.0
            },
            ..Shape::default()
        });
        let (out, stats) = run_to_end(&keys, &phased(rows, &offsets));
        let case = format!("offsets {offsets:?}");
        assert_one_page(&out, (AlertKind::SuccessDrop, "c0"), ONSET, &case);
        assert_eq!(stats.moves_suppressed, 0, "offsets {offsets:?}");
    }
}

#[test]
fn a_move_between_clusters_is_counted_once_per_run_however_its_depth_varies() {
    // svc0 on c0..c2. c0 sheds traffic to its siblings (the service's total is conserved, so no
    // page) in `runs` separate spells of low samples; within a spell its share may swing
    // between deep and shallow drops (all below the 60% a low sample is). On a bursty series
    // (c0's volume swinging by `burst` either way, uniformly) that moves the run's pooled
    // significance back and forth. Each spell is one move, counted once.
    struct Case {
        name: &'static str,
        burst: f64,
        depth: fn(i64) -> Option<f64>,
        runs: u64,
    }
    let cases = [
        Case {
            name: "one steady evacuation",
            burst: 0.0,
            depth: |t| (ONSET..ONSET + 100).contains(&t).then_some(0.0),
            runs: 1,
        },
        Case {
            name: "one spell swinging between 0% and 45% every 5 samples",
            burst: 0.0,
            depth: |t| {
                (ONSET..ONSET + 120)
                    .contains(&t)
                    .then_some(if (t - ONSET) / 5 % 2 == 0 { 0.0 } else { 0.45 })
            },
            runs: 1,
        },
        Case {
            name: "a bursty cluster: deep, shallow for long, deep again",
            burst: 0.25,
            depth: |t| match t - ONSET {
                0..3 => Some(0.0),
                3..25 => Some(0.45),
                25..80 => Some(0.0),
                _ => None,
            },
            runs: 1,
        },
        Case {
            name: "two spells with a normal sample between",
            burst: 0.0,
            // (sample 20 back at full volume ends the first spell)
            depth: |t| {
                let i = t - ONSET;
                ((0..40).contains(&i) && i != 20).then_some(0.1)
            },
            runs: 2,
        },
    ];
    for case in cases {
        let (depth, burst) = (case.depth, case.burst);
        let rows = simulate(3, ONSET + 200, 11, |s, t| {
            let share = depth(t);
            let req = match (s, share) {
                (0, f) => 1000.0 * (1.0 + burst * (2.0 * unit_hash(s, t) - 1.0)) * f.unwrap_or(1.0),
                (_, Some(f)) => 1000.0 + 500.0 * (1.0 - f),
                _ => 1000.0,
            };
            Shape {
                req,
                ..Shape::default()
            }
        });
        let (mut out, stats) = run_to_end(&keys(3, 1), &rows);
        assert!(out.is_empty(), "{}: {out:#?}", case.name);
        assert_eq!(stats.moves_suppressed, case.runs, "{}", case.name);
        // Restored from a snapshot in the middle of the (first) move: still counted once.
        let split = 3 * usize::try_from(ONSET + 10).unwrap();
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        d.push_batch(&batch(&rows[..split]), &keys(3, 1), &mut out)
            .unwrap();
        let mut d = Detector::from_snapshot(DetectorConfig::default(), d.snapshot()).unwrap();
        d.push_batch(&batch(&rows[split..]), &keys(3, 1), &mut out)
            .unwrap();
        d.finish(&mut out);
        assert_eq!(
            d.stats().moves_suppressed,
            case.runs,
            "{}, restored mid-move",
            case.name
        );
    }
}

#[test]
fn a_cluster_drained_earlier_still_pages_when_it_later_loses_its_traffic() {
    // svc0 on c0..c2. c0 is drained for `drain` samples (its siblings absorb the traffic: a
    // move, no page), comes back for `gap` samples, then loses its traffic for good while the
    // siblings do not take it over (the service's total falls by a third): a loss, to be
    // paged on c0 within a few samples whatever the drain before it.
    for (drain, gap) in [(10, 30), (100, 30), (360, 30), (100, 5)] {
        let lost = ONSET + drain + gap;
        let rows = simulate(3, lost + 30, 13, |s, t| {
            let drained = (ONSET..ONSET + drain).contains(&t);
            let req = match (s, drained, t >= lost) {
                (0, true, _) | (0, _, true) => 0.0,
                (_, true, _) => 1500.0,
                _ => 1000.0,
            };
            Shape {
                req,
                ..Shape::default()
            }
        });
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        d.push_batch(&batch(&rows), &keys(3, 1), &mut out).unwrap();
        d.finish(&mut out);
        let case = format!("drained for {drain} samples, back for {gap}");
        assert_eq!(d.stats().moves_suppressed, 1, "{case}: the drain is a move");
        assert_one_page(&out, (AlertKind::SuccessDrop, "c0"), lost, &case);
    }
}

/// Asserts that `events` page exactly once, `want` (kind, cluster), within two samples of
/// tick `at`.
fn assert_one_page(events: &[AlertEvent], want: (AlertKind, &str), at: i64, case: &str) {
    let fired: Vec<_> = firing(events)
        .into_iter()
        .map(|e| (e.kind, e.cluster.as_str(), tick_of(e.detected_at) - at))
        .collect();
    assert_eq!(fired.len(), 1, "{case}: {fired:?}");
    let (kind, cluster, delay) = fired[0];
    assert_eq!((kind, cluster), want, "{case}");
    assert!(
        (0..=2).contains(&delay),
        "{case}: paged {delay} samples after tick {at}"
    );
}

#[test]
fn an_error_spike_after_an_hour_of_slightly_raised_errors_still_pages() {
    // c0's errors rise from 0.2% to 0.8% for an hour (below the practical floor of 1.2%),
    // then, straight after or 5 minutes later, jump to 3%.
    // The hour must not have taught the detector that c0 is that noisy: the 3% pages within
    // two samples.
    for gap in [0, 30] {
        let (raised, spike) = (ONSET..ONSET + 360, ONSET + 360 + gap);
        let rows = simulate(4, spike + 30, 21, |s, t| Shape {
            err: match (s, t) {
                (0, t) if t >= spike => 0.03,
                (0, t) if raised.contains(&t) => 0.008,
                _ => 0.002,
            },
            ..Shape::default()
        });
        let events = run(&keys(4, 1), &rows);
        // An error_rate_spike on c0 open two samples into the spike (fired then or before, not
        // resolved by then), and no other alert.
        let by = spike + 2;
        let open = firing(&events).into_iter().any(|f| {
            f.cluster == "c0"
                && f.kind == AlertKind::ErrorRateSpike
                && tick_of(f.detected_at) <= by
                && !events
                    .iter()
                    .any(|r| r.id == f.id && r.resolved_at.is_some_and(|at| tick_of(at) <= by))
        });
        let elsewhere: Vec<_> = events.iter().filter(|e| e.cluster != "c0").collect();
        assert!(elsewhere.is_empty(), "{elsewhere:#?}");
        assert!(
            open,
            "{gap} samples between the raised hour and the spike: {events:#?}"
        );
    }
}

#[test]
fn a_cluster_losing_all_its_traffic_after_an_hour_a_third_down_pages() {
    // c0's traffic falls by 30% for an hour (under the 40% that makes a sample low: not a loss,
    // and its siblings do not take it over, but the service's total stays within tolerance),
    // then, straight after or 10 minutes back at full volume, c0 loses all of it. The hour a
    // third down is a shift, not noise: the loss pages within two samples.
    for back in [0, 60] {
        let (down, lost) = (ONSET..ONSET + 360, ONSET + 360 + back);
        let rows = simulate(4, lost + 30, 23, |s, t| Shape {
            req: match (s, t) {
                (0, t) if t >= lost => 0.0,
                (0, t) if down.contains(&t) => 700.0,
                _ => 1000.0,
            },
            ..Shape::default()
        });
        let case = format!("back for {back} samples");
        assert_one_page(
            &run(&keys(4, 1), &rows),
            (AlertKind::SuccessDrop, "c0"),
            lost,
            &case,
        );
    }
}

#[test]
fn traffic_that_dips_on_a_schedule_does_not_page() {
    // Eight busy series, each its own service (so nothing is conserved), whose traffic dips
    // every 80 s: two samples at 30% or at nothing, three at half, or every other sample at
    // 40% of the mean. Dips that come back are the series' noise, however deep, and a level
    // shift they are not: six hours, no page.
    let patterns: [(&str, [f64; 8]); 4] = [
        ("2 of 8 at 30%", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3]),
        ("3 of 8 at 50%", [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5]),
        (
            "every other at 40%",
            [1.6, 0.4, 1.6, 0.4, 1.6, 0.4, 1.6, 0.4],
        ),
        (
            "2 of 8 at nothing",
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
        ),
    ];
    for (name, pattern) in patterns {
        let rows = simulate(8, 2_160, 41, |s, t| Shape {
            req: 1000.0 * pattern[((t + i64::from(s)) % 8) as usize],
            ..Shape::default()
        });
        let events = run(&keys(8, 8), &rows);
        let pages: Vec<_> = firing(&events)
            .into_iter()
            .map(|e| (e.kind, e.cluster.clone(), tick_of(e.detected_at)))
            .collect();
        assert!(pages.is_empty(), "{name}: {pages:?}");
    }
}

#[test]
fn state_fits_the_memory_budget() {
    assert!(
        Detector::state_bytes_per_series() <= 1024,
        "{}",
        Detector::state_bytes_per_series()
    );
}

#[test]
fn alert_json_has_the_contract_fields() {
    let keys = keys(6, 2);
    let events = run(&keys, &incident_rows());
    let v = serde_json::to_value(&events[0]).unwrap();
    for f in [
        "id",
        "kind",
        "state",
        "severity",
        "cluster",
        "service",
        "region",
        "onset",
        "detected_at",
        "resolved_at",
        "value",
        "baseline",
        "summary",
        "incident_id",
    ] {
        assert!(v.get(f).is_some(), "missing {f} in {v}");
    }
    assert!(v["onset"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["state"], "firing");
}

/// Detector and incident tracker run together over `rows` in chunks of 97 rows; at every chunk
/// boundary in `split_at_rows`, both are snapshotted, encoded, decoded and replaced by their
/// restored copies.
fn run_with_restarts(
    keys: &[SeriesKey],
    rows: &[S],
    split_at_rows: &[usize],
) -> (Vec<AlertEvent>, Vec<crate::Incident>) {
    use crate::{DetectorSnapshot, IncidentConfig, IncidentSnapshot, IncidentTracker};
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut t = IncidentTracker::new(IncidentConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut done = 0;
    for c in rows.chunks(97) {
        if split_at_rows
            .iter()
            .any(|&s| s > done && s <= done + c.len())
        {
            let bytes = bincode::serialize(&(d.snapshot(), t.snapshot())).unwrap();
            let (ds, ts): (DetectorSnapshot, IncidentSnapshot) =
                bincode::deserialize(&bytes).unwrap();
            d = Detector::from_snapshot(DetectorConfig::default(), ds).unwrap();
            t = IncidentTracker::from_snapshot(IncidentConfig::default(), ts).unwrap();
        }
        let b = batch(c);
        t.observe_batch(&b, keys).unwrap();
        let start = out.len();
        d.push_batch(&b, keys, &mut out).unwrap();
        t.on_alerts(&mut out[start..]);
        done += c.len();
    }
    let start = out.len();
    d.finish(&mut out);
    t.on_alerts(&mut out[start..]);
    t.finish();
    let incidents = t.incidents().cloned().collect();
    (out, incidents)
}

#[test]
fn restoring_a_snapshot_carries_on_as_if_nothing_stopped() {
    let keys = keys(6, 2);
    let rows = incident_rows();
    let (want, want_incidents) = run_with_restarts(&keys, &rows, &[]);
    assert!(firing(&want).len() >= 3, "{want:#?}");
    assert!(!want_incidents.is_empty());
    // Rows are emitted tick by tick, 6 series per tick: split in the warm-up, just before the
    // onset, while alerts are firing, and at several points at once.
    let per_tick = 6;
    let onset_row = usize::try_from(ONSET).unwrap() * per_tick;
    let cases: [(&str, Vec<usize>); 4] = [
        ("warm-up", vec![per_tick * 20]),
        ("before onset", vec![onset_row - per_tick]),
        ("while firing", vec![onset_row + per_tick * 10]),
        (
            "repeatedly",
            vec![
                per_tick * 50,
                onset_row + 3,
                onset_row + per_tick * 30,
                rows.len() - 5,
            ],
        ),
    ];
    for (name, splits) in cases {
        let (got, got_incidents) = run_with_restarts(&keys, &rows, &splits);
        assert_eq!(got, want, "{name}");
        assert_eq!(got_incidents, want_incidents, "{name}");
    }
}

#[test]
fn a_damaged_snapshot_is_refused() {
    let keys = keys(6, 2);
    let rows = incident_rows();
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut out = Vec::new();
    d.push_batch(&batch(&rows[..400]), &keys, &mut out).unwrap();
    assert!(Detector::from_snapshot(DetectorConfig::default(), d.snapshot()).is_ok());
    let mut snap = d.snapshot();
    assert_eq!(snap.series_count(), 6);
    snap.newest_buffered_truncate_for_test();
    assert!(Detector::from_snapshot(DetectorConfig::default(), snap).is_err());
}

#[test]
fn row_order_within_a_tick_and_block_edges_do_not_change_alerts_or_state() {
    // More series than one kernel block, failures on both sides of a block edge, and a series
    // that goes silent (its ticks are not a contiguous run of ids). Delivered in series order,
    // then with every tick's rows reversed, as a source with several partitions might.
    let n = 4500;
    let failing = [2047, 2048, 4100];
    let rows = simulate(n, ONSET + 60, 5, |s, t| {
        let hit = failing.contains(&s) && t >= ONSET;
        Shape {
            err: if hit { 0.4 } else { 0.002 },
            present: !(s == 3000 && t >= ONSET + 10),
            ..Shape::default()
        }
    });
    let keys = keys(n, 4);
    let mut reversed = Vec::with_capacity(rows.len());
    for tick in rows.chunk_by(|a, b| a.ts == b.ts) {
        reversed.extend(tick.iter().rev().copied());
    }
    let run_rows = |rows: &[S]| {
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in rows.chunks(4096) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        d.finish(&mut out);
        let views: Vec<_> = (0..n).map(|s| d.series_view(s)).collect();
        (out, views)
    };
    let (want, want_views) = run_rows(&rows);
    let mut spikes: Vec<u32> = firing(&want)
        .iter()
        .filter(|e| e.kind == AlertKind::ErrorRateSpike)
        .map(|e| {
            keys.iter()
                .position(|k| k.cluster == e.cluster && k.service == e.service)
        })
        .map(|p| u32::try_from(p.unwrap()).unwrap())
        .collect();
    spikes.sort_unstable();
    assert_eq!(spikes, failing);
    assert!(firing(&want)
        .iter()
        .any(|e| e.kind == AlertKind::TelemetryAbsent && e.cluster == keys[3000].cluster));
    let (got, got_views) = run_rows(&reversed);
    assert_eq!(got, want);
    assert!(got_views == want_views, "series state differs");
}

#[test]
fn samples_from_lagging_partitions_give_the_same_alerts_in_any_batch_size() {
    // Three "partitions" of series read in bursts of 20 ticks each, as a consumer catching up
    // reads them: ticks close on the series that reported, and the other partitions' samples
    // arrive after their tick closed (folded in late, a run at a time in big batches). Every
    // 7th sample is delivered twice. Batches of 1 evaluate each late sample alone; larger
    // batches must give the same alerts and counters.
    let n = 30;
    let rows = simulate(n, ONSET + 60, 9, |s, t| {
        let hit = (s == 4 || s == 25) && t >= ONSET;
        Shape {
            err: if hit { 0.4 } else { 0.002 },
            ..Shape::default()
        }
    });
    let keys = keys(n, 3);
    let burst = 20 * STEP;
    let mut delivered: Vec<(i64, u32, usize, S)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let part = r.sid % 3;
        let round = (r.ts - T0) / burst;
        delivered.push((round, part, i, *r));
        if i % 7 == 0 {
            delivered.push((round, part, i, *r));
        }
    }
    delivered.sort_by_key(|d| (d.0, d.1, d.2));
    let delivered: Vec<S> = delivered.into_iter().map(|d| d.3).collect();
    let run_chunks = |chunk: usize| {
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in delivered.chunks(chunk) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        d.finish(&mut out);
        (out, d.stats())
    };
    let (want, want_stats) = run_chunks(1);
    assert!(want_stats.folded_late > 1000, "{want_stats:?}");
    assert!(want_stats.duplicates > 0, "{want_stats:?}");
    let fired: Vec<&str> = firing(&want)
        .iter()
        .filter(|e| e.kind == AlertKind::ErrorRateSpike)
        .map(|e| e.cluster.as_str())
        .collect();
    assert!(fired.contains(&keys[4].cluster.as_str()), "{fired:?}");
    assert!(fired.contains(&keys[25].cluster.as_str()), "{fired:?}");
    for chunk in [7, 97, 4096] {
        let (got, stats) = run_chunks(chunk);
        assert_eq!(got, want, "chunk {chunk}");
        assert_eq!(stats, want_stats, "chunk {chunk}");
    }
}

#[test]
fn a_frontier_holds_ticks_for_partitions_read_behind_the_others() {
    // Four "partitions" of series, read as a consumer catching up on a backlog reads them:
    // 30 ticks (5 minutes, more than the 2 minutes of allowed lateness) of one partition,
    // then 30 of the next. Told how far every partition has delivered, the detector must give
    // exactly the alerts and counters of the same samples in event-time order. Without the
    // frontier, the partitions read behind are too late: the hold is what makes the difference.
    let n = 40;
    let rows = simulate(n, ONSET + 60, 11, |s, t| {
        let hit = (s == 6 || s == 33) && t >= ONSET;
        Shape {
            err: if hit { 0.4 } else { 0.002 },
            ..Shape::default()
        }
    });
    let keys = keys(n, 4);
    let parts = 4;
    let burst = 30 * STEP;
    let mut skewed = rows.clone();
    skewed.sort_by_key(|r| ((r.ts - T0) / burst, r.sid % parts, r.ts, r.sid));

    let in_order = {
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in rows.chunks(64) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        d.finish(&mut out);
        (out, d.stats())
    };
    assert!(
        firing(&in_order.0)
            .iter()
            .any(|e| e.kind == AlertKind::ErrorRateSpike),
        "the trace has an incident"
    );

    let run = |with_frontier: bool, chunk: usize| {
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        // Newest event time delivered per partition; a partition not heard from yet could
        // still deliver anything.
        let mut newest = vec![i64::MIN; parts as usize];
        for c in skewed.chunks(chunk) {
            if with_frontier {
                // Before the chunk: no partition is further than its oldest row in the chunk.
                let mut oldest = vec![i64::MAX; parts as usize];
                for r in c {
                    let p = (r.sid % parts) as usize;
                    oldest[p] = oldest[p].min(r.ts);
                }
                let upto = newest.iter().zip(&oldest).map(|(&n, &o)| match (n, o) {
                    (i64::MIN, i64::MAX) => i64::MIN,
                    (i64::MIN, o) => o,
                    (n, o) => n.min(o),
                });
                d.set_frontier(upto.min(), &mut out);
            }
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
            for r in c {
                let p = (r.sid % parts) as usize;
                newest[p] = newest[p].max(r.ts);
            }
            if with_frontier {
                d.set_frontier(newest.iter().min().copied(), &mut out);
            }
        }
        d.finish(&mut out);
        (out, d.stats())
    };
    let unheld = run(false, 256);
    assert!(unheld.1.too_late > 1000, "{:?}", unheld.1);
    for chunk in [1, 50, 256, 5000] {
        let (got, stats) = run(true, chunk);
        assert_eq!(stats.too_late, 0, "chunk {chunk}: {stats:?}");
        assert_eq!(stats.folded_late, 0, "chunk {chunk}: {stats:?}");
        assert_eq!(stats, in_order.1, "chunk {chunk}");
        assert_eq!(got, in_order.0, "chunk {chunk}");
    }
}

#[test]
fn a_frontier_that_never_moves_holds_no_more_than_max_held_samples() {
    // An input that never delivers would hold every tick open for ever: the detector closes
    // the oldest open tick anyway once more than `max_held_samples` are buffered. Series `s`
    // reports the ticks before `s` and then stops, so from tick 1 on each tick waits for the
    // series that has just stopped (and tick 0 for the watermark): none is ever complete and
    // only the limit closes ticks.
    let n = 210;
    let rows: Vec<S> = simulate(n, 200, 5, |_, _| Shape::default())
        .into_iter()
        .filter(|r| i64::from(r.sid) > (r.ts - T0) / STEP)
        .collect();
    let per_tick = u64::from(n);
    let keys = keys(n, 2);
    for limit in [u64::MAX, 1_000, 50] {
        let mut d = Detector::new(DetectorConfig {
            max_held_samples: limit,
            ..DetectorConfig::default()
        })
        .unwrap();
        let mut out = Vec::new();
        d.set_frontier(Some(i64::MIN), &mut out);
        for c in rows.chunks(100) {
            d.push_batch(&batch(c), &keys, &mut out).unwrap();
        }
        let s = d.stats();
        let open = s.samples - s.processed;
        assert_eq!(s.too_late, 0, "limit {limit}: {s:?}");
        if limit == u64::MAX {
            assert_eq!(s.ticks, 0, "held for ever: {s:?}");
        } else {
            assert!(s.ticks > 100, "limit {limit}: {s:?}");
            assert!(open <= limit + per_tick, "limit {limit}: {s:?}");
            assert!(open + per_tick > limit, "closed no more than needed: {s:?}");
        }
        // Only the limit closed ticks, and each is counted.
        assert_eq!(s.forced_closes, s.ticks, "limit {limit}: {s:?}");
        // The frontier lifted, the watermark closes what lateness allows.
        d.set_frontier(None, &mut out);
        assert!(d.stats().ticks >= 200 - 13, "{:?}", d.stats());
    }
}

#[test]
fn a_flapping_config_pages_once_and_resolves_after_it_settles() {
    // A config pushed and rolled back over and over: series 0 fails for `bad` ticks of every
    // `period`, for 120 ticks (20 minutes). One alert, firing from the first failing tick,
    // and resolved only once the flapping has stopped: not a page per flap.
    let flapping = ONSET..ONSET + 120;
    for (bad, period) in [(1, 3), (2, 6), (3, 12), (6, 30)] {
        let rows = simulate(4, ONSET + 400, 7, move |s, t| Shape {
            err: if s == 0 && (ONSET..ONSET + 120).contains(&t) && (t - ONSET) % period < bad {
                0.3
            } else {
                0.002
            },
            ..Shape::default()
        });
        let events = run(&keys(4, 4), &rows);
        let name = format!("{bad} bad ticks of every {period}");
        assert_eq!(events.len(), 2, "{name}: {events:#?}");
        let (fire, resolve) = (&events[0], &events[1]);
        assert_eq!(
            (fire.kind, fire.state, fire.cluster.as_str()),
            (AlertKind::ErrorRateSpike, AlertState::Firing, "c0"),
            "{name}"
        );
        assert!(
            (ONSET..=ONSET + 1).contains(&tick_of(fire.detected_at)),
            "{name}"
        );
        assert_eq!(
            (resolve.id.as_str(), resolve.state),
            (fire.id.as_str(), AlertState::Resolved),
            "{name}"
        );
        let resolved = tick_of(resolve.resolved_at.unwrap_or(i64::MIN));
        assert!(
            resolved >= flapping.end,
            "{name}: resolved at tick {resolved}"
        );
    }
}

#[test]
fn a_region_going_dark_is_reported_on_each_of_its_series_and_nowhere_else() {
    // Two regions of two clusters, three services each. At ONSET region r2 goes dark for 60
    // ticks, in one of four ways.
    let keys: Vec<SeriesKey> = (0..12u32)
        .map(|i| SeriesKey {
            cluster: format!("c{}", i / 3),
            service: format!("svc{}", i % 3),
            region: Some(if i < 6 { "r1" } else { "r2" }.into()),
        })
        .collect();
    let dark = |s: u32, t: i64| s >= 6 && (ONSET..ONSET + 60).contains(&t);
    struct Way {
        name: &'static str,
        shape: Box<dyn Fn(u32, i64) -> Shape>,
        /// The kinds every r2 series must fire, by tick ONSET + 2 at the latest.
        want: &'static [AlertKind],
    }
    let ways = [
        Way {
            name: "its telemetry stops",
            shape: Box::new(move |s, t| Shape {
                present: !dark(s, t),
                ..Shape::default()
            }),
            want: &[AlertKind::TelemetryAbsent],
        },
        Way {
            name: "it reports no traffic, and no other region takes it",
            shape: Box::new(move |s, t| Shape {
                req: if dark(s, t) { 0.0 } else { 1000.0 },
                ..Shape::default()
            }),
            want: &[AlertKind::SuccessDrop],
        },
        Way {
            name: "every request in it fails",
            shape: Box::new(move |s, t| Shape {
                err: if dark(s, t) { 1.0 } else { 0.002 },
                ..Shape::default()
            }),
            want: &[AlertKind::ErrorRateSpike, AlertKind::SuccessDrop],
        },
        Way {
            name: "drained: r1 serves its traffic (a move, not a loss)",
            shape: Box::new(move |s, t| Shape {
                req: if dark(s, t) {
                    0.0
                } else if (ONSET..ONSET + 60).contains(&t) {
                    2000.0
                } else {
                    1000.0
                },
                ..Shape::default()
            }),
            want: &[],
        },
    ];
    for way in ways {
        let rows = simulate(12, ONSET + 200, 9, &way.shape);
        let events = run(&keys, &rows);
        let fired = firing(&events);
        for k in &keys[6..] {
            for &kind in way.want {
                let hit = fired
                    .iter()
                    .find(|e| e.kind == kind && e.cluster == k.cluster && e.service == k.service);
                let Some(hit) = hit else {
                    panic!("{}: no {kind} on {k:?}: {events:#?}", way.name)
                };
                let t = tick_of(hit.detected_at);
                assert!(
                    (ONSET..=ONSET + 2).contains(&t),
                    "{}: {kind} at {t}",
                    way.name
                );
            }
        }
        for e in &fired {
            assert!(
                e.region.as_deref() == Some("r2") && way.want.contains(&e.kind),
                "{}: unexpected {} on {}/{}",
                way.name,
                e.kind,
                e.cluster,
                e.service
            );
        }
    }
}

#[test]
fn a_connection_leak_warns_before_the_pool_is_full_at_any_sampling_interval() {
    // One series of four leaks connections from ONSET on: utilisation climbs from 0.45 to
    // full over 15 minutes. Sampled every 10 s that is 90 samples, every minute only 15, and
    // the baseline must not learn the climb as normal while it has so few samples to see it
    // in. (It did at one-minute sampling: the pool filled with no warning.)
    const MIN: i64 = 60_000;
    for interval_ms in [10_000i64, 60_000] {
        let per_min = MIN / interval_ms;
        let onset = 60 * per_min; // an hour of normal use first
        let full = onset + 15 * per_min;
        let rows: Vec<S> = simulate(4, onset + 25 * per_min, 21, |s, t| {
            let climb = (t - onset) as f64 / (full - onset) as f64;
            Shape {
                pool: Some(if s == 0 && t >= onset {
                    (0.45 + 0.55 * climb).min(1.0)
                } else {
                    0.45
                }),
                ..Shape::default()
            }
        })
        .into_iter()
        .map(|r| {
            let t = (r.ts - T0) / STEP;
            S {
                ts: T0 + t * interval_ms,
                interval_ms: u32::try_from(interval_ms).unwrap(),
                ..r
            }
        })
        .collect();
        let events = run(&keys(4, 1), &rows);
        let warned = firing(&events)
            .into_iter()
            .find(|e| e.kind == AlertKind::DbPoolSaturation && e.cluster == "c0")
            .map(|e| (e.detected_at - T0) / interval_ms - 1);
        assert!(
            warned.is_some_and(|t| t > onset && t < full),
            "every {} s: warned at tick {warned:?}, onset {onset}, full {full}",
            interval_ms / 1000
        );
        for e in firing(&events) {
            assert!(
                e.cluster == "c0",
                "every {} s: {} on {}",
                interval_ms / 1000,
                e.kind,
                e.cluster
            );
        }
    }
}

/// Error pages in `events`: (cluster, tick detected).
fn error_pages(events: &[AlertEvent]) -> Vec<(String, i64)> {
    firing(events)
        .into_iter()
        .filter(|e| e.kind == AlertKind::ErrorRateSpike)
        .map(|e| (e.cluster.clone(), tick_of(e.detected_at)))
        .collect()
}

#[test]
fn bursty_series_do_not_page_on_their_own_swings_from_the_first_hour() {
    // Eight series per fleet, each sample's error ratio drawn afresh from a beta around the
    // fleet's mean (the lower the concentration, the wilder the swings: at 100 and 1%, the
    // standard deviation equals the mean), for six hours from a cold start. The quasi-binomial
    // test and a dispersion estimate learning at the slow rate from its start paged 7 to 63
    // times per fleet here, most of them in the first two hours after warm-up.
    let fleets: [(f64, f64, f64); 7] = [
        // (concentration, requests a sample, mean error ratio)
        (30.0, 1_000.0, 0.01),
        (50.0, 1_000.0, 0.01),
        (100.0, 3_000.0, 0.01),
        (300.0, 3_000.0, 0.01),
        (100.0, 30_000.0, 0.002),
        (1_000.0, 300.0, 0.05),
        (20.0, 200.0, 0.02),
    ];
    for (conc, req, err) in fleets {
        let rows = simulate(8, 2_160, 31, |_, _| Shape {
            req,
            err,
            err_concentration: Some(conc),
            ..Shape::default()
        });
        let pages = error_pages(&run(&keys(8, 1), &rows));
        assert!(
            pages.len() <= 1,
            "concentration {conc}, {req} requests at {err}: {pages:?}"
        );
    }
}

#[test]
fn a_sustained_rise_on_a_bursty_series_still_pages_within_seconds() {
    // One series of eight rises from 1% to a level well outside its swings, at tick ONSET; the
    // dispersion must not make it unpageable. Bound: samples after onset.
    let cases: [(f64, f64, i64); 4] = [
        // (concentration, new error ratio, max delay)
        (100.0, 0.20, 2),
        (100.0, 0.08, 4),
        (300.0, 0.05, 4),
        (50.0, 0.10, 8),
    ];
    for (conc, to, max_delay) in cases {
        let rows = simulate(8, 600, 7, move |s, t| Shape {
            req: 3_000.0,
            err: if s == 0 && t >= ONSET { to } else { 0.01 },
            err_concentration: Some(conc),
            ..Shape::default()
        });
        let pages = error_pages(&run(&keys(8, 1), &rows));
        let case = format!("concentration {conc}, 1% -> {to}");
        assert_eq!(pages.len(), 1, "{case}: {pages:?}");
        let (cluster, at) = &pages[0];
        assert_eq!(cluster, "c0", "{case}");
        assert!((0..=max_delay).contains(&(at - ONSET)), "{case}: {pages:?}");
    }
}

#[test]
fn an_incident_during_warm_up_does_not_blind_the_series_to_the_next() {
    // A series at 10% errors for part of its warm-up (the young baseline follows it, and would
    // teach the dispersion that it is noise), back to 0.2%, then 10% again later. Learning the
    // dispersion as a plain mean from the start, whatever the fast level, delayed the second
    // incident by 5 to 13 samples.
    for (first, second) in [
        ((20, 60), 300),
        ((20, 60), 200),
        ((0, 80), 400),
        ((50, 89), 250),
    ] {
        let rows = simulate(8, 600, 3, move |s, t| Shape {
            err: if s == 0
                && ((first.0..first.1).contains(&t) || (second..second + 60).contains(&t))
            {
                0.10
            } else {
                0.002
            },
            ..Shape::default()
        });
        let pages = error_pages(&run(&keys(8, 1), &rows));
        let case = format!("10% over ticks {first:?} of warm-up, again from {second}");
        assert_eq!(pages.len(), 1, "{case}: {pages:?}");
        assert!(
            (0..=6).contains(&(pages[0].1 - second)),
            "{case}: {pages:?}"
        );
    }
}

#[test]
fn an_error_ratio_wandering_slowly_about_its_mean_does_not_page() {
    // The ratio swings hourly (or over a few hours) between a fraction of its mean and nearly
    // twice it, on busy series. A dispersion measured around the fast-moving level instead of
    // the baseline would leave these swings out, and paged 34 times on them; the quasi-binomial
    // test paged twice.
    for (amp, period, req) in [
        (0.5, 720.0, 5_000.0),
        (0.7, 360.0, 20_000.0),
        (0.4, 180.0, 20_000.0),
        (0.8, 1_440.0, 2_000.0),
    ] {
        let rows = simulate(8, 2_160, 11, move |s, t| Shape {
            req,
            err: 0.01
                * (1.0
                    + amp
                        * (std::f64::consts::TAU * (t as f64 + 37.0 * f64::from(s)) / period)
                            .sin()),
            ..Shape::default()
        });
        let events = run(&keys(8, 1), &rows);
        let pages: Vec<_> = firing(&events).into_iter().map(|e| e.kind).collect();
        assert!(
            pages.is_empty(),
            "amplitude {amp}, period {period}: {pages:?}"
        );
    }
}

#[test]
fn quiet_series_through_steep_daily_swings_or_bursty_traffic_do_not_report_a_loss() {
    // Twenty series of 2 or 20 requests a sample for 6 hours, each either following a day of
    // +-50% around its mean (steeper than real traffic; each series at its own phase, so every
    // part of the decline is covered, where the level lags the traffic by a third) or drawing
    // its volume afresh every sample anywhere from 30% to 170% of its mean. Judged on runs of
    // low samples, a level that does not learn from every sample, or a Poisson variance taken
    // at the (lagging) level rather than from the count, paged several times here.
    fn day(mean: f64) -> impl Fn(u32, i64) -> Shape {
        move |s, t| Shape {
            req: mean
                * (1.0
                    + 0.5
                        * (std::f64::consts::TAU * (t + 108 * i64::from(s)) as f64 / 2160.0).cos()),
            ..Shape::default()
        }
    }
    fn bursty(mean: f64) -> impl Fn(u32, i64) -> Shape {
        move |s, t| Shape {
            req: mean * (0.3 + 1.4 * unit_hash(s, t)),
            ..Shape::default()
        }
    }
    type Fleet = (&'static str, Box<dyn Fn(u32, i64) -> Shape>);
    let fleets: [Fleet; 4] = [
        ("daily swing, 2 a sample", Box::new(day(2.0))),
        ("daily swing, 20 a sample", Box::new(day(20.0))),
        ("bursty, 2 a sample", Box::new(bursty(2.0))),
        ("bursty, 20 a sample", Box::new(bursty(20.0))),
    ];
    for (name, shape) in fleets {
        let rows = simulate(20, 2_160, 17, shape);
        let events = run(&keys(20, 20), &rows);
        let pages: Vec<String> = firing(&events)
            .into_iter()
            .filter(|e| e.kind == AlertKind::SuccessDrop)
            .map(|e| {
                format!(
                    "{} at tick {}: {}",
                    e.cluster,
                    tick_of(e.detected_at),
                    e.summary
                )
            })
            .collect();
        assert!(pages.is_empty(), "{name}: {pages:#?}");
    }
}

#[test]
fn a_series_whose_clock_runs_ahead_does_not_blind_the_detector_to_the_others() {
    // Series 4's producer stamps its samples 5 minutes (30 ticks) fast. The fleet's alerts
    // (c0 failing, series 5 going silent) must be those of the same samples delivered in
    // event-time order, with nothing judged too late and no one else reported absent.
    let keys = keys(6, 2);
    let skew = 30 * STEP;
    let rows: Vec<S> = incident_rows()
        .into_iter()
        .map(|r| S {
            ts: r.ts + if r.sid == 4 { skew } else { 0 },
            ..r
        })
        .collect();
    let mut in_order = rows.clone();
    in_order.sort_by_key(|r| r.ts);
    // As delivered: each sample when it was taken, whatever its stamp says.
    let arrival = |r: &S| r.ts - if r.sid == 4 { skew } else { 0 };
    let mut delivered = rows.clone();
    delivered.sort_by_key(arrival);

    let want = run(&keys, &in_order);
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut got = Vec::new();
    for c in delivered.chunks(64) {
        d.push_batch(&batch(c), &keys, &mut got).unwrap();
    }
    d.finish(&mut got);
    let stats = d.stats();
    assert_eq!(stats.too_late, 0);
    assert_eq!(stats.processed as usize, rows.len());
    // In event-time order, the last 30 ticks hold series 4 alone, and the others are
    // reported absent then: only the fast series says time went on, so that is not compared.
    let others_end = rows
        .iter()
        .filter(|r| r.sid != 4)
        .map(|r| r.ts)
        .max()
        .unwrap();
    let want: Vec<AlertEvent> = want
        .into_iter()
        .filter(|e| e.detected_at <= others_end)
        .collect();
    assert!(firing(&want)
        .iter()
        .any(|e| e.kind == AlertKind::ErrorRateSpike));
    assert_eq!(got, want);
}

#[test]
fn a_fleet_all_but_gone_dark_is_still_reported_absent() {
    // Six series (quorum 2): at ONSET all but series 0 stop reporting for good. The one left
    // moves the clock once the quorum has stood still for the stall time, so the five are
    // reported absent, that much later than a third of the fleet going dark would be.
    let keys = keys(6, 2);
    let rows = simulate(6, ONSET + 200, 5, |s, t| Shape {
        present: s == 0 || t < ONSET,
        ..Shape::default()
    });
    let events = run(&keys, &rows);
    let fired = firing(&events);
    let stall_ticks = crate::clock::STALL_MS / STEP;
    for (s, k) in keys.iter().enumerate().skip(1) {
        let hit = fired
            .iter()
            .find(|e| e.cluster == k.cluster && e.service == k.service)
            .unwrap_or_else(|| panic!("series {s} not reported: {events:#?}"));
        assert_eq!(hit.kind, AlertKind::TelemetryAbsent);
        let t = tick_of(hit.detected_at);
        assert!(
            (ONSET..=ONSET + stall_ticks + 3).contains(&t),
            "series {s} at {t}"
        );
    }
    assert_eq!(fired.len(), 5, "{events:#?}");
}

/// Samples whose p50 and p99 come from each request's latency, as a service's histogram would
/// give them: about 300 requests a sample (10 s), each `median * factor(series, tick)` times a
/// log-normal spread (sigma 0.6), and one request in 200 ten times slower (a cache miss, a GC
/// pause). The p99 (the third slowest of 300) then jumps two- to fivefold whenever three or more
/// requests of a sample are slow: about one sample in six.
fn per_request_latency(n: u32, ticks: i64, seed: u64, factor: impl Fn(u32, i64) -> f64) -> Vec<S> {
    per_request_latency_at(300.0, n, ticks, seed, factor)
}

fn per_request_latency_at(
    volume: f64,
    n: u32,
    ticks: i64,
    seed: u64,
    factor: impl Fn(u32, i64) -> f64,
) -> Vec<S> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let spread = rand_distr::LogNormal::new(0.0, 0.6).unwrap();
    let mut lat = Vec::new();
    let mut rows = Vec::new();
    for t in 0..ticks {
        for sid in 0..n {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let req = (Poisson::new(volume).unwrap().sample(&mut rng) as usize).max(1);
            let median = 40.0 * factor(sid, t);
            lat.clear();
            lat.extend((0..req).map(|_| {
                let slow = if rng.random_ratio(1, 200) { 10.0 } else { 1.0 };
                median * slow * spread.sample(&mut rng)
            }));
            lat.sort_by(f64::total_cmp);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rank = |q: f64| ((q * req as f64).ceil() as usize).clamp(1, req) - 1;
            rows.push(S {
                sid,
                ts: T0 + (t + 1) * STEP,
                interval_ms: 10_000,
                req: req as u64,
                err: 0,
                retries: None,
                p99: Some(lat[rank(0.99)]),
                p50: Some(lat[rank(0.5)]),
                pool: None,
            });
        }
    }
    rows
}

#[test]
fn a_p99_with_a_heavy_tail_does_not_page_but_the_whole_distribution_slowing_does() {
    let keys = keys(6, 2);
    // Twelve hours of six healthy series: their p99 leaps several-fold many times an hour.
    let clean = run(&keys, &per_request_latency(6, 4320, 21, |_, _| 1.0));
    assert!(clean.is_empty(), "{clean:#?}");
    // Every request three times slower on series 0 and 1 for 60 ticks (p50 and p99 alike).
    let onset = 3000;
    let rows = per_request_latency(6, onset + 200, 22, |s, t| {
        if s < 2 && (onset..onset + 60).contains(&t) {
            3.0
        } else {
            1.0
        }
    });
    let events = run(&keys, &rows);
    let fired = firing(&events);
    for (s, k) in keys.iter().enumerate().take(2) {
        let hit = fired
            .iter()
            .find(|e| e.cluster == k.cluster && e.service == k.service)
            .unwrap_or_else(|| panic!("series {s} not reported: {events:#?}"));
        assert_eq!(hit.kind, AlertKind::LatencySpike);
        let t = tick_of(hit.detected_at);
        assert!((onset..onset + 8).contains(&t), "series {s} at tick {t}");
    }
    assert_eq!(fired.len(), 2, "{events:#?}");
}

#[test]
fn a_latency_regression_on_a_quiet_series_is_judged_on_its_p50() {
    let keys = keys(6, 2);
    // 20 and 5 requests a sample: the p99 is the slowest call or two (and under
    // `latency.min_requests`, so never judged), the p50 still a fair median.
    for (volume, within) in [(20.0, 4), (5.0, 8)] {
        // Twelve quiet hours, twice: nothing.
        for seed in [31, 32] {
            let clean = run(
                &keys,
                &per_request_latency_at(volume, 6, 4320, seed, |_, _| 1.0),
            );
            assert!(firing(&clean).is_empty(), "{volume} requests: {clean:#?}");
        }
        // Every request three times slower on series 0 and 1 for 60 ticks.
        let onset = 3000;
        let rows = per_request_latency_at(volume, 6, onset + 200, 33, |s, t| {
            if s < 2 && (onset..onset + 60).contains(&t) {
                3.0
            } else {
                1.0
            }
        });
        let events = run(&keys, &rows);
        for (s, k) in keys.iter().enumerate().take(2) {
            let of_series: Vec<_> = events
                .iter()
                .filter(|e| e.cluster == k.cluster && e.service == k.service)
                .collect();
            let hit = of_series
                .iter()
                .find(|e| e.state == AlertState::Firing)
                .unwrap_or_else(|| {
                    panic!("{volume} requests: series {s} not reported: {events:#?}")
                });
            assert_eq!(hit.kind, AlertKind::LatencySpike);
            assert!(hit.summary.starts_with("p50 latency"), "{}", hit.summary);
            assert!(hit.value >= 2.0 * hit.baseline, "{hit:?}");
            let t = tick_of(hit.detected_at);
            assert!(
                (onset..onset + within).contains(&t),
                "{volume}: series {s} at tick {t}"
            );
            // ... and resolved once the regression is over, under the same id.
            let done = of_series
                .iter()
                .find(|e| e.state == AlertState::Resolved)
                .unwrap_or_else(|| panic!("{volume}: series {s} never resolved: {events:#?}"));
            assert_eq!(done.id, hit.id);
            let t = tick_of(done.resolved_at.unwrap_or_default());
            assert!(
                (onset + 60..onset + 90).contains(&t),
                "{volume}: resolved at tick {t}"
            );
        }
        assert_eq!(firing(&events).len(), 2, "{volume}: {events:#?}");
    }
}

#[test]
fn a_pool_that_steps_up_and_stays_there_resolves_and_a_leak_pages_once() {
    // c0's pool steps from its usual level to a higher one and stays there (a smaller pool, or
    // traffic moved onto it). The step itself projects saturation and warns; before, the
    // baseline learned only while calm and calm was what resolution waited for, so the alert
    // stayed open for good. It resolves once the pool has held its level for 30 minutes, and
    // does not come back.
    for (from, to, resolved_by) in [(0.3, 0.7, 300), (0.45, 0.75, 300), (0.45, 0.9, 300)] {
        let rows = simulate(4, ONSET + 900, 13, move |s, t| Shape {
            pool: Some(if s == 0 && t >= ONSET { to } else { from }),
            ..Shape::default()
        });
        let events = run(&keys(4, 1), &rows);
        let pool: Vec<_> = events
            .iter()
            .filter(|e| e.kind == AlertKind::DbPoolSaturation)
            .map(|e| {
                (
                    e.state,
                    e.cluster.as_str(),
                    tick_of(e.resolved_at.unwrap_or(e.detected_at)) - ONSET,
                )
            })
            .collect();
        let case = format!("pool {from} -> {to}");
        assert_eq!(pool.len(), 2, "{case}: {pool:?}");
        assert_eq!((pool[0].0, pool[0].1), (AlertState::Firing, "c0"), "{case}");
        assert!(pool[0].2 <= 4, "{case}: {pool:?}");
        assert_eq!(pool[1].0, AlertState::Resolved, "{case}");
        assert!(pool[1].2 <= resolved_by, "{case}: {pool:?}");
    }
    // A leak from 45% at 0.5 or 1 point a minute still warns once, well ahead of full, and
    // stays open: it never holds a level long enough to count as settled.
    for (per_tick, full_at) in [(0.001, 550), (0.0005, 1100)] {
        let rows = simulate(4, ONSET + full_at + 100, 13, move |s, t| Shape {
            pool: Some(if s == 0 && t >= ONSET {
                (0.45 + per_tick * (t - ONSET) as f64).min(1.0)
            } else {
                0.45
            }),
            ..Shape::default()
        });
        let events = run(&keys(4, 1), &rows);
        let pool: Vec<_> = events
            .iter()
            .filter(|e| e.kind == AlertKind::DbPoolSaturation)
            .map(|e| (e.state, tick_of(e.detected_at) - ONSET))
            .collect();
        let case = format!("leak of {per_tick} a sample");
        assert_eq!(pool.len(), 1, "{case}: {pool:?}");
        assert_eq!(pool[0].0, AlertState::Firing, "{case}");
        assert!(pool[0].1 <= full_at - 150, "{case}: {pool:?}");
    }
}

#[test]
fn a_series_whose_clock_lags_from_its_first_sample_is_reported_absent() {
    // c0's samples all carry times `lag` samples behind the fleet's (a skewed clock, or a
    // pipeline that delays it), from its very first sample or from tick `from` on. More than
    // the allowed lateness (2 minutes = 12 samples) behind, none can be evaluated; a series
    // that was never evaluated was never warm, and absence used to be judged on warm series
    // only, so it went unreported while every one of its samples was dropped. Within the
    // lateness, or late only for a while at the start, it is judged as usual: no alert.
    // (lag in samples, from tick, until tick, reported at about this tick or not at all)
    let cases: [(i64, i64, i64, Option<i64>); 5] = [
        (15, 0, i64::MAX, Some(90)),
        (30, 0, i64::MAX, Some(90)),
        (15, 200, i64::MAX, Some(202)),
        (8, 0, i64::MAX, None),
        (20, 0, 30, None),
    ];
    for (lag, from, until, want) in cases {
        let mut rows = simulate(4, 600, 5, |_, _| Shape::default());
        for r in &mut rows {
            if r.sid == 0 && (from..until).contains(&tick_of(r.ts)) {
                r.ts -= lag * STEP;
            }
        }
        let mut d = Detector::new(DetectorConfig::default()).unwrap();
        let mut out = Vec::new();
        for c in rows.chunks(4) {
            d.push_batch(&batch(c), &keys(4, 1), &mut out).unwrap();
        }
        let case = format!("lag {lag} over ticks {from}..{until}");
        let fired: Vec<_> = firing(&out)
            .into_iter()
            .map(|e| (e.kind, e.cluster.as_str(), tick_of(e.detected_at)))
            .collect();
        match want {
            Some(at) => {
                assert_eq!(fired.len(), 1, "{case}: {fired:?}");
                assert_eq!(
                    (fired[0].0, fired[0].1),
                    (AlertKind::TelemetryAbsent, "c0"),
                    "{case}"
                );
                assert!(
                    (at..=at + lag + 3).contains(&fired[0].2),
                    "{case}: {fired:?}"
                );
            }
            None => assert!(fired.is_empty(), "{case}: {fired:?}"),
        }
    }
}

#[test]
fn the_end_of_a_stream_reports_no_series_absent_that_was_only_running_late() {
    // c0's samples carry times `lag` samples behind the others' (40 to 110 s: within the
    // 2 minutes allowed), to the end of the stream. Closing the last open ticks at the end,
    // before the watermark reached them, used to report c0 absent there, on every finished
    // stream with such a series.
    for lag in [4i64, 8, 11] {
        let mut rows = simulate(4, 600, 5, |_, _| Shape::default());
        for r in &mut rows {
            if r.sid == 0 {
                r.ts -= lag * STEP;
            }
        }
        let events = run(&keys(4, 1), &rows);
        assert!(firing(&events).is_empty(), "lag {lag}: {events:#?}");
    }
    // Two series going dark 20 or 50 samples before the end are still reported (the ticks
    // the watermark closes find them missing); ten samples before, the stream ends within the
    // allowed lateness of their last sample, and nothing can tell them from late ones.
    for (dark, reported) in [(550, true), (580, true), (590, false)] {
        let rows = simulate(4, 600, 5, move |s, t| Shape {
            present: !(s < 2 && t >= dark),
            ..Shape::default()
        });
        let events = run(&keys(4, 1), &rows);
        let absent: Vec<_> = firing(&events)
            .into_iter()
            .map(|e| (e.kind, e.cluster.as_str(), tick_of(e.detected_at)))
            .collect();
        let want: Vec<_> = if reported {
            vec![
                (AlertKind::TelemetryAbsent, "c0", dark + 2),
                (AlertKind::TelemetryAbsent, "c1", dark + 2),
            ]
        } else {
            vec![]
        };
        assert_eq!(absent, want, "dark from {dark}");
    }
}

#[test]
fn a_config_flapping_on_and_off_is_one_alert_that_resolves_once_it_stops() {
    // c0's errors go to 20% for `on` samples and back to 0.2% for `off`, for 100 minutes, then
    // stay at 0.2%. With off-spells longer than the two minutes an alert needs clear to
    // resolve, it resolved and paged again every cycle (20 transitions for 5 minutes on,
    // 5 off). Each time it fires again within 30 minutes of resolving it now needs twice as
    // long clear: it pages at most twice and resolves within 32 minutes after the last spell.
    for (on, off) in [(30, 30), (12, 18), (6, 30)] {
        let end = ONSET + 600;
        let rows = simulate(4, end + 400, 5, move |s, t| Shape {
            err: if s == 0 && (ONSET..end).contains(&t) && (t - ONSET) % (on + off) < on {
                0.2
            } else {
                0.002
            },
            ..Shape::default()
        });
        let events = run(&keys(4, 1), &rows);
        let case = format!("{on} samples on, {off} off");
        let fired = firing(&events);
        assert!(
            (1..=2).contains(&fired.len()),
            "{case}: {} pages",
            fired.len()
        );
        assert_eq!(tick_of(fired[0].detected_at), ONSET, "{case}");
        let last_spell_end = ONSET + (600 - 1) / (on + off) * (on + off) + on;
        let resolved: Vec<_> = events
            .iter()
            .filter_map(|e| e.resolved_at.map(tick_of))
            .collect();
        let last = resolved.last().copied();
        assert!(
            last.is_some_and(|r| r > last_spell_end && r <= last_spell_end + 200),
            "{case}: resolved at {resolved:?}, last spell ended at {last_spell_end}"
        );
        assert!(events.iter().all(|e| e.cluster == "c0"), "{case}");
    }
}

#[test]
fn a_quiet_series_that_errs_often_as_a_matter_of_course_does_not_page_on_it() {
    // Eight series of a few requests a sample whose normal error ratio is high (a quiet
    // admin or webhook endpoint), for six hours. The beta prior (500 requests at 0.2%) used
    // to outweigh the 30-minute window of such a series and hold its baseline near 0.2%: it
    // paged on its ordinary errors. The prior now weighs at most a tenth of the series' own
    // requests. A real jump on such a series still pages.
    // (requests a sample, error ratio, samples the jump to four times it may take to page:
    // a few requests a sample carry little evidence each; the old, too low baseline took 4 to
    // 27 samples here too)
    for (req, err, max_delay) in [
        (2.0, 0.2, 25),
        (5.0, 0.1, 20),
        (10.0, 0.05, 30),
        (3.0, 0.3, 10),
    ] {
        let rows = simulate(8, 2_160, 23, |_, _| Shape {
            req,
            err,
            ..Shape::default()
        });
        let pages = error_pages(&run(&keys(8, 1), &rows));
        assert!(
            pages.is_empty(),
            "{req} requests a sample at {err}: {pages:?}"
        );
        let to = (err * 4.0).min(0.9);
        let rows = simulate(8, ONSET + 60, 23, move |s, t| Shape {
            req,
            err: if s == 0 && t >= ONSET { to } else { err },
            ..Shape::default()
        });
        let pages = error_pages(&run(&keys(8, 1), &rows));
        assert_eq!(
            pages.len(),
            1,
            "{req} requests a sample, {err} -> {to}: {pages:?}"
        );
        assert_eq!(pages[0].0, "c0");
        assert!(
            (0..=max_delay).contains(&(pages[0].1 - ONSET)),
            "{req} requests, {err} -> {to}: {pages:?}"
        );
    }
}

#[test]
fn flap_history_is_forgotten_once_it_can_no_longer_matter() {
    // Twenty series page once each (errors at 20% for ten samples) and recover. Their flap
    // history is kept while a second page could still count as a flap, and forgotten once
    // they have been resolved longer than the flap window, so a long-running detector does
    // not keep an entry for every alert that ever resolved.
    let n = 20;
    let rows = simulate(n, ONSET + 700, 9, |s, t| Shape {
        err: if (ONSET + i64::from(s)..ONSET + i64::from(s) + 10).contains(&t) {
            0.2
        } else {
            0.002
        },
        ..Shape::default()
    });
    let keys = keys(n, 1);
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    let mut out = Vec::new();
    // Up to an hour after the spikes: all resolved, within two windows of resolving.
    let split = rows.partition_point(|r| tick_of(r.ts + STEP) < ONSET + 60);
    d.push_batch(&batch(&rows[..split]), &keys, &mut out)
        .unwrap();
    let resolved = out.iter().filter(|e| e.resolved_at.is_some()).count();
    assert_eq!(firing(&out).len(), n as usize, "one page per series");
    assert_eq!(resolved, n as usize, "every page resolved");
    assert_eq!(
        d.flap_history_len(),
        n as usize,
        "history kept after resolving"
    );
    d.push_batch(&batch(&rows[split..]), &keys, &mut out)
        .unwrap();
    assert_eq!(
        firing(&out).len(),
        n as usize,
        "no page on the clean remainder"
    );
    assert_eq!(d.flap_history_len(), 0, "history forgotten once stale");
}

#[test]
fn a_drop_that_holds_for_an_hour_resolves_and_a_near_total_loss_stays_paged() {
    // One of four busy services (so nothing is conserved) loses part of its traffic at ONSET and stays
    // there: to 50% or 30% (an evening fall steeper than the level follows, or traffic shed
    // for good), or to 2% (the cluster all but dark). Each pages at once. Before, none ever
    // resolved: the level does not learn while paged. Now a partial drop that has held for an
    // hour after its page has settled and resolves, and the level is where the series now is,
    // so losing the rest an hour later pages again. The near-total loss stays paged.
    let (hour, end) = (360, ONSET + 3 * 360);
    for (share, settles) in [(0.5, true), (0.3, true), (0.02, false)] {
        let rest_lost = ONSET + 2 * hour;
        let rows = simulate(4, end, 31, |s, t| Shape {
            req: match (s, t) {
                (0, t) if settles && t >= rest_lost => 0.0,
                (0, t) if t >= ONSET => 1000.0 * share,
                _ => 1000.0,
            },
            ..Shape::default()
        });
        let events = run(&keys(4, 4), &rows);
        let case = format!("down to {share}");
        assert!(
            events
                .iter()
                .all(|e| e.kind == AlertKind::SuccessDrop && e.service == "svc0"),
            "{case}: {events:?}"
        );
        let fired: Vec<i64> = firing(&events)
            .iter()
            .map(|e| tick_of(e.detected_at))
            .collect();
        let resolved: Vec<i64> = events
            .iter()
            .filter_map(|e| e.resolved_at.map(tick_of))
            .collect();
        assert!((ONSET..ONSET + 3).contains(&fired[0]), "{case}: {fired:?}");
        if settles {
            assert_eq!(fired.len(), 2, "{case}: {fired:?}");
            assert!(
                resolved[0] >= fired[0] + hour && resolved[0] <= fired[0] + hour + 30,
                "{case}: paged at {}, resolved at {resolved:?}",
                fired[0]
            );
            assert!(
                (rest_lost..rest_lost + 3).contains(&fired[1]),
                "{case}: {fired:?}"
            );
        } else {
            assert_eq!(fired.len(), 1, "{case}: {fired:?}");
            assert!(resolved.is_empty(), "{case}: resolved at {resolved:?}");
        }
    }
}
