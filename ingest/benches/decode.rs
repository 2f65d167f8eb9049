//! JSON sample decode throughput, per input shape, in samples and bytes per second.
//!
//! Inputs are generated from a fixed seed (a small xorshift, so the bench needs no RNG crate);
//! each iteration decodes every line once into a decoder with the default batch size,
//! flushing when full, so builder and batch costs are included.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest::json::{DecoderOptions, JsonDecoder, Sample};

const LINES: usize = 20_000;
const T0: i64 = 1_770_000_000_000;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn full_sample(rng: &mut XorShift, i: usize, series: usize) -> Sample {
    let s = i % series;
    let requests = 200 + rng.below(2000);
    let mut sample = Sample::new(
        T0 + (i / series) as i64 * 10_000,
        format!("prod-use{}-{}", s / 64, s % 8),
        format!("service-{}", s % 64),
        requests,
        rng.below(requests / 10),
    );
    sample.region = Some("us-east-1".into());
    sample.retries = Some(rng.below(requests / 20));
    sample.latency_p50_ms = Some(80.0 + rng.below(4000) as f64 / 100.0);
    sample.latency_p99_ms = Some(400.0 + rng.below(60000) as f64 / 100.0);
    sample.db_pool_active = Some(rng.below(200) as u32);
    sample.db_pool_max = Some(200);
    sample.db_pool_pending = Some(rng.below(5) as u32);
    sample.status = [("503".to_owned(), sample.errors)].into();
    sample
}

fn shapes() -> Vec<(&'static str, Vec<String>)> {
    let mut rng = XorShift(0x5eed_5eed_5eed_5eed);
    let full: Vec<String> = (0..LINES)
        .map(|i| full_sample(&mut rng, i, 1000).to_json_line())
        .collect();
    let minimal: Vec<String> = (0..LINES)
        .map(|i| {
            let s = full_sample(&mut rng, i, 1000);
            Sample::new(s.ts_ms, s.cluster, s.service, s.requests, s.errors).to_json_line()
        })
        .collect();
    let many_series: Vec<String> = (0..LINES)
        .map(|i| full_sample(&mut rng, i, LINES).to_json_line())
        .collect();
    let int_ts: Vec<String> = full
        .iter()
        .map(|l| {
            let ts_end = l.find("Z\"").unwrap_or(0);
            let ms = ingest::time::parse_rfc3339_ms(&l[7..=ts_end]).unwrap_or(T0);
            format!("{{\"ts\":{ms}{}", &l[ts_end + 2..])
        })
        .collect();
    let offset_ts: Vec<String> = full
        .iter()
        .map(|l| l.replacen("Z\"", "+00:00\"", 1))
        .collect();
    vec![
        ("full", full),
        ("minimal", minimal),
        ("full_20k_series", many_series),
        ("full_int_ts", int_ts),
        ("full_offset_ts", offset_ts),
    ]
}

fn options() -> DecoderOptions {
    DecoderOptions {
        now_ms: Some(T0 + 1_000_000_000),
        ..DecoderOptions::default()
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_decode");
    for (name, lines) in shapes() {
        let bytes: usize = lines.iter().map(String::len).sum();
        // Measure the accept path: every generated line must decode.
        let mut check = JsonDecoder::new(options());
        for line in &lines {
            if let Err(e) = check.decode(line.as_bytes()) {
                panic!("{name}: generated line rejected ({e}): {line}");
            }
        }
        for (unit, throughput) in [
            ("samples", Throughput::Elements(lines.len() as u64)),
            ("bytes", Throughput::Bytes(bytes as u64)),
        ] {
            group.throughput(throughput);
            group.bench_with_input(BenchmarkId::new(name, unit), &lines, |b, lines| {
                let mut dec = JsonDecoder::new(options());
                b.iter(|| {
                    for line in lines {
                        let _ = black_box(dec.decode(line.as_bytes()));
                        if dec.is_full() {
                            black_box(dec.flush());
                        }
                    }
                    black_box(dec.flush())
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
