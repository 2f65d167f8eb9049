//! Kafka ingest throughput, one run, one table: per format, the same topic read twice, by
//!
//! - **consume-only**: a bare rdkafka `BaseConsumer` poll loop that touches each payload and does
//!   nothing else (the ceiling any consumer on this machine and broker can reach), and
//! - **full path**: spikewatch's ingest + detect path: [`KafkaSource`] (consumer group, owned
//!   messages), [`MessageDecoder`] into Arrow batches, the [`Detector`] on every batch, and the
//!   at-least-once acknowledgement of every delivery,
//!
//! and, per format, decoding alone (in memory, one thread): for JSON that is samples/s per core.
//!
//! The broker is librdkafka's in-process mock cluster (one broker), so the figures measure the
//! client side, not a network. Both readers are timed from their first message to their last,
//! so connecting and joining the group are not counted. The data are seeded: `SERIES` series
//! reporting every 10 s, full samples (every optional field), keyed `cluster/service`; Arrow
//! messages carry `ARROW_ROWS` rows of one partition each.
//!
//! `cargo bench -p spikewatch-ingest --bench kafka_throughput` (set `SPIKEWATCH_BENCH_SAMPLES`
//! to change the sample count, default 200000).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use detector::{Detector, DetectorConfig};
use ingest::format::{MessageDecoder, MessageDecoderOptions};
use ingest::json::{DecoderOptions, Sample};
use ingest::kafka::{KafkaProducer, KafkaSettings, KafkaSource, MockBroker, TopicSettings};
use ingest::FormatKind;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const SERIES: usize = 2_000;
const PARTITIONS: i32 = 16;
/// librdkafka's mock broker keeps at most 5 MB (and 100000 messages) per partition and drops the
/// oldest beyond that; the bench refuses sizes that would not fit rather than lose data.
const MOCK_PARTITION_BYTES: usize = 4_500_000;
const ARROW_ROWS: usize = 1_000;
const T0: i64 = 1_770_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(300);

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `n` samples, tick by tick: every series once per 10 s tick.
fn samples(n: usize) -> Vec<Sample> {
    let mut rng = XorShift(0x5eed_cafe_f00d_0001);
    (0..n)
        .map(|i| {
            let s = i % SERIES;
            let requests = 200 + rng.below(2_000);
            let mut x = Sample::new(
                T0 + (i / SERIES) as i64 * 10_000,
                format!("prod-{}", s / 50),
                format!("svc-{}", s % 50),
                requests,
                rng.below(requests / 100 + 1),
            );
            x.region = Some("us-east-1".into());
            x.retries = Some(rng.below(requests / 50 + 1));
            x.latency_p50_ms = Some(40.0 + rng.below(2_000) as f64 / 100.0);
            x.latency_p99_ms = Some(200.0 + rng.below(20_000) as f64 / 100.0);
            x.db_pool_active = Some(rng.below(60) as u32);
            x.db_pool_max = Some(100);
            x.db_pool_pending = Some(0);
            x
        })
        .collect()
}

/// CRC-32 (zlib's), as librdkafka's default partitioner uses on keys.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Writes the samples to `topic` in `format`; returns the number of messages.
fn produce(brokers: &str, topic: &str, format: FormatKind, data: &[Sample]) -> usize {
    let p = KafkaProducer::new(brokers, &BTreeMap::new()).expect("producer");
    let parts = PARTITIONS as usize;
    // Per partition: (bytes, messages), to check the mock broker keeps them all.
    let mut load = vec![(0usize, 0usize); parts];
    let part_of = |s: &Sample| {
        let key = format!("{}/{}", s.cluster, s.service);
        (crc32(key.as_bytes()) % PARTITIONS as u32) as usize
    };
    match format {
        FormatKind::Json => {
            for s in data {
                let key = format!("{}/{}", s.cluster, s.service);
                let line = s.to_json_line();
                let l = &mut load[part_of(s)];
                *l = (l.0 + line.len() + key.len() + 64, l.1 + 1);
                p.send(topic, Some(key.as_bytes()), None, line.as_bytes())
                    .expect("send");
            }
        }
        FormatKind::ArrowIpc => {
            let mut rows: Vec<Vec<Sample>> = vec![Vec::new(); parts];
            let mut flush = |part: usize, rows: &mut Vec<Sample>| {
                let msg = ingest::arrow_ipc::encode(rows).expect("encode");
                let l = &mut load[part];
                *l = (l.0 + msg.len() + 64, l.1 + 1);
                p.send(topic, None, Some(part as i32), &msg).expect("send");
                rows.clear();
            };
            for s in data {
                let part = part_of(s);
                rows[part].push(s.clone());
                if rows[part].len() >= ARROW_ROWS {
                    flush(part, &mut rows[part]);
                }
            }
            for (part, r) in rows.iter_mut().enumerate() {
                if !r.is_empty() {
                    flush(part, r);
                }
            }
        }
        FormatKind::PromAdapter => unreachable!("not benchmarked"),
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    let worst = load.iter().copied().max().unwrap_or_default();
    assert!(
        worst.0 <= MOCK_PARTITION_BYTES && worst.1 < 100_000,
        "{topic}: {} bytes / {} messages in one partition, more than the mock broker keeps; \
         lower SPIKEWATCH_BENCH_SAMPLES or raise PARTITIONS",
        worst.0,
        worst.1
    );
    load.iter().map(|l| l.1).sum()
}

/// A bare poll loop over every partition from the beginning: messages/s.
fn consume_only(brokers: &str, topic: &str, messages: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-consume-only")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        // The same fetch settings as KafkaSource's defaults.
        .set("fetch.queue.backoff.ms", "50")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let (mut n, mut bytes, mut first) = (0usize, 0usize, None);
    let deadline = Instant::now() + TIMEOUT;
    while n < messages {
        assert!(Instant::now() < deadline, "consume-only: {n} of {messages}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += black_box(m.payload()).map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    black_box(bytes);
    let secs = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    n as f64 / secs
}

/// The at-least-once source, the decoder and the detector: (messages/s, samples/s).
fn full_path(brokers: &str, topic: &str, format: FormatKind, messages: usize) -> (f64, f64) {
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        group_id: format!("bench-full-{topic}"),
        metrics_topics: vec![TopicSettings {
            topic: topic.to_owned(),
            format,
        }],
        changes_topic: None,
        dead_letter_topic: None,
        ..KafkaSettings::default()
    };
    let mut src = KafkaSource::new(&settings).expect("source");
    let fmt = src.format_of(topic).cloned().expect("format");
    let mut dec = MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            now_ms: Some(T0 + 86_400_000),
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
    });
    let mut det = Detector::new(DetectorConfig::default()).expect("detector");
    let mut out = Vec::new();
    let (mut n, mut rows, mut first) = (0usize, 0usize, None);
    let mut run = |dec: &mut MessageDecoder, det: &mut Detector, rows: &mut usize| {
        if let Some(batch) = dec.flush() {
            *rows += batch.num_rows();
            det.push_batch(&batch, dec.interner().keys(), &mut out)
                .expect("detector");
        }
    };
    let deadline = Instant::now() + TIMEOUT;
    while n < messages {
        assert!(Instant::now() < deadline, "full path: {n} of {messages}");
        let Some(d) = src.poll(8192, Duration::from_millis(100)) else {
            continue;
        };
        first.get_or_insert_with(Instant::now);
        for m in &d.metrics {
            dec.decode(&fmt, &m.payload).expect("bench data is valid");
            if dec.is_full() {
                run(&mut dec, &mut det, &mut rows);
            }
        }
        run(&mut dec, &mut det, &mut rows);
        n += d.metrics.len();
        src.ack(d.token);
    }
    let secs = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    black_box(&out);
    let _ = src.close(Duration::from_secs(5));
    (n as f64 / secs, rows as f64 / secs)
}

/// Decoding alone, in memory, one thread, the same messages: samples/s (best of three passes,
/// the machine being shared).
fn decode_only(format: FormatKind, data: &[Sample]) -> f64 {
    let messages: Vec<Vec<u8>> = match format {
        FormatKind::Json => data.iter().map(|s| s.to_json_line().into_bytes()).collect(),
        _ => data
            .chunks(ARROW_ROWS)
            .map(|c| ingest::arrow_ipc::encode(c).expect("encode"))
            .collect(),
    };
    let fmt = match format {
        FormatKind::Json => ingest::format::Format::Json,
        _ => ingest::format::Format::ArrowIpc,
    };
    let mut best = 0.0f64;
    for _ in 0..3 {
        let mut dec = MessageDecoder::new(MessageDecoderOptions {
            decoder: DecoderOptions {
                now_ms: Some(T0 + 86_400_000),
                ..DecoderOptions::default()
            },
            ..MessageDecoderOptions::default()
        });
        let t = Instant::now();
        for m in &messages {
            dec.decode(&fmt, m).expect("valid");
            if dec.is_full() {
                black_box(dec.flush());
            }
        }
        black_box(dec.flush());
        best = best.max(data.len() as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, with a tiny size.
    let quick = std::env::args().all(|a| a != "--bench");
    let n: usize = std::env::var("SPIKEWATCH_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4_000 } else { 200_000 });
    let data = samples(n);
    let broker = MockBroker::new(1).expect("mock cluster");
    let brokers = broker.bootstrap_servers();

    println!(
        "kafka_throughput: {n} samples, {SERIES} series, {PARTITIONS} partitions, mock broker"
    );
    println!(
        "{:<6} {:>9} {:>18} {:>16} {:>16} {:>13} {:>18}",
        "format",
        "messages",
        "consume-only msg/s",
        "full path msg/s",
        "full samples/s",
        "full/consume",
        "decode samples/s"
    );
    let mut json_decode = 0.0;
    for (format, topic) in [
        (FormatKind::Json, "bench.json"),
        (FormatKind::ArrowIpc, "bench.arrow"),
    ] {
        broker.create_topic(topic, PARTITIONS).expect("topic");
        let messages = produce(&brokers, topic, format, &data);
        let raw = consume_only(&brokers, topic, messages);
        let (full_msgs, full_samples) = full_path(&brokers, topic, format, messages);
        let decode = decode_only(format, &data);
        if format == FormatKind::Json {
            json_decode = decode;
        }
        println!(
            "{:<6} {:>9} {:>18} {:>16} {:>16} {:>12.0}% {:>18}",
            match format {
                FormatKind::ArrowIpc => "arrow",
                _ => "json",
            },
            messages,
            human(raw),
            human(full_msgs),
            human(full_samples),
            100.0 * full_msgs / raw,
            human(decode)
        );
    }
    println!(
        "JSON decode alone: {} samples/s/core (one thread, in memory)",
        human(json_decode)
    );
    drop(broker);
}
