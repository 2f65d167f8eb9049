//! Decode throughput of both message decoders, per input shape, in samples (and, for JSON,
//! bytes) per second, in one run.
//!
//! - `json_decode/*`: native JSON, one sample per message, through [`JsonDecoder`].
//! - `arrow_ipc_decode/*`: Arrow IPC stream messages of `ARROW_ROWS` rows each, through
//!   [`MessageDecoder`] (`Format::ArrowIpc`); `full_owned` hands the messages over
//!   ([`MessageDecoder::decode_owned`]) instead of lending them.
//!
//! Inputs are generated from a fixed seed (a small xorshift, so the bench needs no RNG crate);
//! each iteration decodes every message once into a decoder with the default batch size,
//! flushing when full, so column and batch costs are included. Throughput in "elements" is
//! samples (rows), whatever the format.
//!
//! One-pass mode, for instruction counts: with `SPIKEWATCH_DECODE_ONCE=<shape>` (a shape name
//! such as `json/full`, `arrow/full` or `arrow_owned/full`) the binary decodes that shape's messages exactly once
//! (after one warm-up pass that interns every series) inside `measured_pass` and exits, so
//!
//! ```sh
//! SPIKEWATCH_DECODE_ONCE=json/full valgrind --tool=callgrind \
//!     --collect-atstart=no --toggle-collect='*measured_pass*' target/release/deps/decode-*
//! ```
//!
//! counts only the decoding.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use ingest::format::{Format, MessageDecoder, MessageDecoderOptions};
use ingest::json::{DecoderOptions, JsonDecoder, Sample};

const LINES: usize = 20_000;
const ARROW_ROWS: usize = 1_000;
const ARROW_MESSAGES: usize = 100;
/// Series of the `full_misaligned` Arrow shape (does not divide `ARROW_ROWS`).
const MISALIGNED_SERIES: usize = 130;
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

fn minimal(s: Sample) -> Sample {
    Sample::new(s.ts_ms, s.cluster, s.service, s.requests, s.errors)
}

fn json_shapes() -> Vec<(&'static str, Vec<String>)> {
    let mut rng = XorShift(0x5eed_5eed_5eed_5eed);
    let full: Vec<String> = (0..LINES)
        .map(|i| full_sample(&mut rng, i, 1000).to_json_line())
        .collect();
    let minimal: Vec<String> = (0..LINES)
        .map(|i| minimal(full_sample(&mut rng, i, 1000)).to_json_line())
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

/// Arrow IPC messages of `ARROW_ROWS` rows, as a producer batching one tick of its series
/// would send them.
fn arrow_shapes() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rng = XorShift(0xa770_5eed_a770_5eed);
    let rows = ARROW_ROWS * ARROW_MESSAGES;
    let messages = |samples: Vec<Sample>| -> Vec<Vec<u8>> {
        samples
            .chunks(ARROW_ROWS)
            .map(|c| ingest::arrow_ipc::encode(c).expect("encode"))
            .collect()
    };
    // 1000 series, the same order in every message.
    let full: Vec<Sample> = (0..rows)
        .map(|i| full_sample(&mut rng, i, ARROW_ROWS))
        .collect();
    let minimal_rows: Vec<Sample> = full.iter().cloned().map(minimal).collect();
    // 1000 series, each message in its own order.
    let mut shuffled = full.clone();
    for chunk in shuffled.chunks_mut(ARROW_ROWS) {
        for i in (1..chunk.len()).rev() {
            chunk.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    // 20000 series: a series comes back every 20 messages.
    let many: Vec<Sample> = (0..rows)
        .map(|i| full_sample(&mut rng, i, 20_000))
        .collect();
    // 130 series in a fixed order, cut into messages wherever 1000 rows are reached: one
    // partition of a topic keyed by series, whose series count does not divide the message
    // size, so no two consecutive messages have the same key columns.
    let misaligned: Vec<Sample> = (0..rows)
        .map(|i| full_sample(&mut rng, i, MISALIGNED_SERIES))
        .collect();
    vec![
        ("full", messages(full)),
        ("minimal", messages(minimal_rows)),
        ("full_shuffled", messages(shuffled)),
        ("full_20k_series", messages(many)),
        ("full_misaligned", messages(misaligned)),
    ]
}

fn options() -> DecoderOptions {
    DecoderOptions {
        now_ms: Some(T0 + 1_000_000_000),
        ..DecoderOptions::default()
    }
}

fn message_decoder() -> MessageDecoder {
    MessageDecoder::new(MessageDecoderOptions {
        decoder: options(),
        ..MessageDecoderOptions::default()
    })
}

fn json_pass(dec: &mut JsonDecoder, lines: &[String]) {
    for line in lines {
        let _ = black_box(dec.decode(line.as_bytes()));
        if dec.is_full() {
            black_box(dec.flush());
        }
    }
    black_box(dec.flush());
}

fn arrow_pass(dec: &mut MessageDecoder, messages: &[Vec<u8>]) {
    for m in messages {
        let _ = black_box(dec.decode(&Format::ArrowIpc, m));
        if dec.is_full() {
            black_box(dec.flush());
        }
    }
    black_box(dec.flush());
}

/// [`arrow_pass`] with messages the decoder may keep ([`MessageDecoder::decode_owned`]), as a
/// consumer that owns its payloads can hand them over.
fn arrow_owned_pass(dec: &mut MessageDecoder, messages: Vec<Vec<u8>>) {
    for m in messages {
        let _ = black_box(dec.decode_owned(&Format::ArrowIpc, m));
        if dec.is_full() {
            black_box(dec.flush());
        }
    }
    black_box(dec.flush());
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_decode");
    for (name, lines) in json_shapes() {
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
                b.iter(|| json_pass(&mut dec, lines));
            });
        }
    }
    group.finish();
}

fn arrow(c: &mut Criterion) {
    let mut group = c.benchmark_group("arrow_ipc_decode");
    for (name, messages) in arrow_shapes() {
        let mut check = message_decoder();
        for m in &messages {
            if let Err(e) = check.decode(&Format::ArrowIpc, m) {
                panic!("{name}: generated message rejected ({e})");
            }
        }
        let rows = check.len() as u64;
        assert_eq!(rows as usize, ARROW_ROWS * ARROW_MESSAGES);
        group.throughput(Throughput::Elements(rows));
        group.bench_with_input(
            BenchmarkId::new(name, "samples"),
            &messages,
            |b, messages| {
                let mut dec = message_decoder();
                b.iter(|| arrow_pass(&mut dec, messages));
            },
        );
        if name == "full" {
            // The copy of the messages is made outside the timing.
            group.bench_with_input(
                BenchmarkId::new("full_owned", "samples"),
                &messages,
                |b, messages| {
                    let mut dec = message_decoder();
                    b.iter_batched(
                        || messages.clone(),
                        |owned| arrow_owned_pass(&mut dec, owned),
                        BatchSize::LargeInput,
                    );
                },
            );
        }
    }
    group.finish();
}

/// One pass over one shape, for instruction counting (see the module docs).
fn once(shape: &str) {
    #[inline(never)]
    fn measured_pass<T>(f: impl FnOnce() -> T) -> T {
        f()
    }
    let (format, name) = shape.split_once('/').unwrap_or(("json", shape));
    match format {
        "json" => {
            let (_, lines) = json_shapes()
                .into_iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no JSON shape {name}"));
            let mut dec = JsonDecoder::new(options());
            json_pass(&mut dec, &lines);
            measured_pass(|| json_pass(&mut dec, &lines));
            println!("json/{name}: {} samples", lines.len());
        }
        "arrow" | "arrow_owned" => {
            let (_, messages) = arrow_shapes()
                .into_iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no Arrow shape {name}"));
            let mut dec = message_decoder();
            arrow_pass(&mut dec, &messages);
            if format == "arrow" {
                measured_pass(|| arrow_pass(&mut dec, &messages));
            } else {
                let owned = messages.clone();
                measured_pass(|| arrow_owned_pass(&mut dec, owned));
            }
            println!("{format}/{name}: {} samples", ARROW_ROWS * messages.len());
        }
        other => panic!("unknown format {other}: json, arrow or arrow_owned"),
    }
}

fn main() {
    if let Ok(shape) = std::env::var("SPIKEWATCH_DECODE_ONCE") {
        once(&shape);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    json(&mut c);
    arrow(&mut c);
    c.final_summary();
}
