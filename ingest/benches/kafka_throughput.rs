//! Kafka ingest throughput, one run, one table: per format, a topic per round, each read by
//!
//! - **consume-only**: a bare rdkafka `BaseConsumer` poll loop that touches each payload and does
//!   nothing else (the ceiling any consumer on this machine and broker can reach), and
//! - **full path**: spikewatch's ingest + detect path: [`KafkaSource`] (consumer group, owned
//!   messages, headers not read, as the service runs it), [`MessageDecoder`] into Arrow batches
//!   (as the service does: each payload moved into a shared [`Payload`] buffer, decoded with
//!   `decode_shared`, which reads an Arrow IPC message in place, and kept until the delivery
//!   is acknowledged, as the service keeps it for dead letters), the [`Detector`] on every
//!   batch with the watermark held for the partition furthest behind ([`Frontier`], as the
//!   service does, so no partition's samples are judged late), and the at-least-once
//!   acknowledgement of every delivery. One decoder, detector and frontier serve every round,
//!   as they serve a long-running service: each round's topic carries the fleet on in event
//!   time from the last, so from round 1 on the detector is past its warm-up, its baselines
//!   are learned and its buffers have grown. Round 0 (a fresh detector, most of its stretch in
//!   warm-up, where much of the per-sample work is skipped) is reported apart;
//!
//! and, per format, decoding alone (in memory, one thread): for JSON that is samples/s per core.
//! The full path's time is also split into its phases (source poll, decode, detector, ack), so
//! the table says where the gap to consume-only is.
//!
//! The broker is librdkafka's in-process mock cluster (one broker), so the figures measure the
//! client side, not a network. Both readers are timed from their first message to their last,
//! so connecting and joining the group are not counted. Each round reads its topic once with
//! each reader, one right after the other, so a burst of load on the shared machine hits both
//! alike; the table gives the median of rounds 1 on and the full/consume-only ratio's median
//! and range. The data are seeded: a steady fleet of `SERIES` series reporting every 10 s (see
//! [`Fleet`]), full samples (every optional field), keyed `cluster/service`; Arrow
//! messages carry `ARROW_ROWS` rows of one partition each. The table's notes give the alert
//! transitions the detector raised on this clean fleet (none expected).
//!
//! `cargo bench -p spikewatch-ingest --bench kafka_throughput`. Environment:
//! `SPIKEWATCH_BENCH_SAMPLES` (default 200000 for JSON, 640000 for Arrow: about what the mock
//! broker keeps per partition), `SPIKEWATCH_BENCH_ROUNDS` (default 5, after round 0),
//! `SPIKEWATCH_BENCH_FORMATS` (default `json,arrow`), `SPIKEWATCH_BENCH_INLINE=1` (decode every
//! delivery inline, as an A/B of decoding ahead).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use detector::{Detector, DetectorConfig, DetectorError};
use ingest::ahead::{decode_delivery, worth_overlapping, Cut, Decoding};
use ingest::format::{Format, MessageDecoder, MessageDecoderOptions, Payload};
use ingest::frontier::{Frontier, FrontierOptions};
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

/// A steady fleet, as production looks between incidents: each series keeps its own volume
/// (200-2200 requests a tick), error ratio (0.1-1%), retry ratio, latency and pool use, with
/// sampling noise around them, every series once per 10 s tick from `T0`. (Volumes drawn
/// afresh every tick across the whole range would make the detector's candidate pass, not
/// ingest, the measure.)
struct Fleet {
    rng: XorShift,
    /// Per series: volume, errors per 1000 requests, retries per 1000, p99 (ms), pool use.
    profile: Vec<(u64, u64, u64, u64, u64)>,
    /// Samples generated so far.
    next: usize,
}

impl Fleet {
    fn new() -> Self {
        let mut rng = XorShift(0x5eed_cafe_f00d_0001);
        let profile = (0..SERIES)
            .map(|_| {
                (
                    200 + rng.below(2_000),
                    1 + rng.below(10),
                    5 + rng.below(15),
                    60 + rng.below(340),
                    20 + rng.below(40),
                )
            })
            .collect();
        Fleet {
            rng,
            profile,
            next: 0,
        }
    }

    /// Uniform noise of mean 0 and about the given standard deviation.
    fn noise(&mut self, sd: u64) -> i64 {
        let width = 2 * sd * 173 / 100 + 1;
        i64::try_from(self.rng.below(width)).unwrap_or(0) - i64::try_from(width / 2).unwrap_or(0)
    }

    /// The fleet's next `n` samples, tick by tick, carrying on from the last call.
    fn take(&mut self, n: usize) -> Vec<Sample> {
        let isqrt = |x: u64| (x as f64).sqrt() as u64;
        let start = self.next;
        self.next += n;
        (start..start + n)
            .map(|i| {
                let s = i % SERIES;
                let (vol, err_pm, retry_pm, p99, pool) = self.profile[s];
                let requests = vol.saturating_add_signed(self.noise(isqrt(vol)));
                let mean_err = requests * err_pm / 1000;
                let errors = mean_err.saturating_add_signed(self.noise(isqrt(mean_err)));
                let mean_retries = requests * retry_pm / 1000;
                let mut x = Sample::new(
                    T0 + (i / SERIES) as i64 * 10_000,
                    format!("prod-{}", s / 50),
                    format!("svc-{}", s % 50),
                    requests,
                    errors.min(requests),
                );
                x.region = Some("us-east-1".into());
                let retry_noise = self.noise(isqrt(mean_retries));
                x.retries = Some(mean_retries.saturating_add_signed(retry_noise));
                let p99 = (p99 as f64) * (1.0 + self.noise(30) as f64 / 1000.0);
                x.latency_p50_ms = Some(p99 / 4.0);
                x.latency_p99_ms = Some(p99);
                x.db_pool_active = Some(pool.saturating_add_signed(self.noise(3)) as u32);
                x.db_pool_max = Some(100);
                x.db_pool_pending = Some(0);
                x
            })
            .collect()
    }
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

/// The partition librdkafka's default partitioner gives a sample's key (`cluster/service`).
fn partition_of(s: &Sample) -> usize {
    let key = format!("{}/{}", s.cluster, s.service);
    (crc32(key.as_bytes()) % PARTITIONS as u32) as usize
}

/// The samples as Arrow IPC messages per partition, in order, as [`produce`] writes them
/// (`ARROW_ROWS` rows each).
fn arrow_by_partition(data: &[Sample]) -> Vec<Vec<Payload>> {
    let parts = PARTITIONS as usize;
    let mut rows: Vec<Vec<Sample>> = vec![Vec::new(); parts];
    let mut out: Vec<Vec<Payload>> = vec![Vec::new(); parts];
    let encode = |r: &[Sample]| Payload::from_vec(ingest::arrow_ipc::encode(r).expect("encode"));
    for s in data {
        let p = partition_of(s);
        rows[p].push(s.clone());
        if rows[p].len() >= ARROW_ROWS {
            out[p].push(encode(&rows[p]));
            rows[p].clear();
        }
    }
    for (p, r) in rows.iter().enumerate() {
        if !r.is_empty() {
            out[p].push(encode(r));
        }
    }
    out
}

/// Writes the samples to `topic` in `format`; returns the number of messages and their payload
/// bytes.
fn produce(brokers: &str, topic: &str, format: FormatKind, data: &[Sample]) -> (usize, usize) {
    let p = KafkaProducer::new(brokers, &BTreeMap::new()).expect("producer");
    let parts = PARTITIONS as usize;
    // Per partition: (bytes, messages), to check the mock broker keeps them all.
    let mut load = vec![(0usize, 0usize); parts];
    let mut payload_bytes = 0usize;
    match format {
        FormatKind::Json => {
            for s in data {
                let key = format!("{}/{}", s.cluster, s.service);
                let line = s.to_json_line();
                let l = &mut load[partition_of(s)];
                *l = (l.0 + line.len() + key.len() + 64, l.1 + 1);
                payload_bytes += line.len();
                p.send(topic, Some(key.as_bytes()), None, line.as_bytes())
                    .expect("send");
            }
        }
        FormatKind::ArrowIpc => {
            for (part, msgs) in arrow_by_partition(data).iter().enumerate() {
                for msg in msgs {
                    let l = &mut load[part];
                    *l = (l.0 + msg.len() + 64, l.1 + 1);
                    payload_bytes += msg.len();
                    p.send(topic, None, Some(part as i32), msg).expect("send");
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
    (load.iter().map(|l| l.1).sum(), payload_bytes)
}

/// CPU time, in seconds, the threads of this process now alive have run (from the kernel's
/// per-thread scheduler statistics; 0 where they cannot be read).
fn cpu_of_live_threads() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// One consume-only read: messages/s, and the cores its threads (the poll loop, librdkafka's
/// and the in-process broker's) kept busy on average.
struct ConsumeRun {
    msgs_per_s: f64,
    cores: f64,
}

/// A bare poll loop over every partition from the beginning. (Not inlined, here and in
/// [`full_path`], so profiles and callgrind's `--toggle-collect` can single it out.)
#[inline(never)]
fn consume_only(brokers: &str, topic: &str, messages: usize) -> ConsumeRun {
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
    let mut cpu0 = 0.0;
    let deadline = Instant::now() + TIMEOUT;
    while n < messages {
        assert!(Instant::now() < deadline, "consume-only: {n} of {messages}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if first.is_none() {
                cpu0 = cpu_of_live_threads();
                first = Some(Instant::now());
            }
            bytes += black_box(m.payload()).map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    black_box(bytes);
    let secs = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    ConsumeRun {
        msgs_per_s: n as f64 / secs,
        cores: (cpu_of_live_threads() - cpu0) / secs,
    }
}

/// Where the full path's time went, from its first message on.
#[derive(Debug, Clone, Copy, Default)]
struct Phases {
    /// In [`KafkaSource::poll`], including waiting for the broker to have more (but not the
    /// wait for the very first message).
    poll: Duration,
    /// Decoding and detecting a delivery, from the poll's return to the acknowledgement: the
    /// two overlap for a large delivery (decoding runs ahead on a second thread).
    process: Duration,
    /// Of which the detector was busy (on the polling thread).
    detect: Duration,
    /// In [`KafkaSource::ack`] and dropping the kept payloads.
    ack: Duration,
    /// From the first message to the last acknowledgement.
    total: Duration,
}

impl Phases {
    fn add(&mut self, o: &Phases) {
        self.poll += o.poll;
        self.process += o.process;
        self.detect += o.detect;
        self.ack += o.ack;
        self.total += o.total;
    }

    fn shares(&self) -> String {
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / self.total.as_secs_f64();
        let other = self
            .total
            .saturating_sub(self.poll + self.process + self.ack);
        format!(
            "poll {:.0}%, decode and detect {:.0}% (detector busy {:.0}%), ack {:.0}%, \
             other {:.0}%",
            pct(self.poll),
            pct(self.process),
            pct(self.detect),
            pct(self.ack),
            pct(other)
        )
    }
}

/// One full-path read of the topic.
struct FullRun {
    msgs_per_s: f64,
    samples_per_s: f64,
    phases: Phases,
    /// Alert transitions (the fleet is clean: ideally none).
    alerts: usize,
}

/// What the service keeps from one delivery to the next: the decoder (with its mirror of the
/// interned keys), the detector and the watermark frontier. The full path's rounds share one,
/// as a long-running service does: each round's topic carries on in event time from the last.
struct Pipeline {
    dec: MessageDecoder,
    det: Detector,
    frontier: Frontier,
    /// The frontier's wall clock (it times idle partitions).
    clock: Instant,
}

impl Pipeline {
    fn new() -> Self {
        Pipeline {
            dec: decoder(),
            det: Detector::new(DetectorConfig::default()).expect("detector"),
            // As the service does: each partition's event-time position holds the detector's
            // watermark, so the partitions read behind the others are not judged late.
            frontier: Frontier::new(FrontierOptions::default()),
            clock: Instant::now(),
        }
    }
}

/// The at-least-once source, the decoder and the detector, in a consumer group of its own.
#[inline(never)]
fn full_path(
    brokers: &str,
    topic: &str,
    format: FormatKind,
    group: &str,
    messages: usize,
    pipe: &mut Pipeline,
) -> FullRun {
    let inline = env_or("SPIKEWATCH_BENCH_INLINE", 0u8) == 1;
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        group_id: group.to_owned(),
        metrics_topics: vec![TopicSettings {
            topic: topic.to_owned(),
            format,
        }],
        changes_topic: None,
        dead_letter_topic: None,
        // As the service runs it: nothing downstream reads a sample's headers.
        read_headers: false,
        ..KafkaSettings::default()
    };
    let mut src = KafkaSource::new(&settings).expect("source");
    let fmt = src.format_of(topic).cloned().expect("format");
    let Pipeline {
        dec,
        det,
        frontier,
        clock,
    } = pipe;
    let clock = *clock;
    let late_before = det.stats();
    let now_ms = move || i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
    // A new consumer: as after a rebalance that revoked every partition, the lanes start
    // afresh and hold the watermark until they deliver. (Kept from the last round, they would
    // have gone idle in the seconds between rounds, and the first partitions to deliver would
    // carry the watermark past the others.)
    frontier.assign(&[], now_ms());
    let mut out = Vec::new();
    let (mut n, mut rows, mut first) = (0usize, 0usize, None);
    let mut ph = Phases::default();
    let deadline = Instant::now() + TIMEOUT;
    while n < messages {
        assert!(Instant::now() < deadline, "full path: {n} of {messages}");
        let t_poll = Instant::now();
        let polled = src.poll(8192, Duration::from_millis(100));
        let t_got = Instant::now();
        // Polls that found nothing count too: the path was then waiting for the broker.
        if first.is_some() {
            ph.poll += t_got - t_poll;
        }
        let Some(d) = polled else {
            continue;
        };
        first.get_or_insert(t_got);
        n += d.metrics.len();
        let assigned: Vec<u32> = src
            .assignment()
            .iter()
            .filter(|(t, _)| t == topic)
            .filter_map(|(_, p)| u32::try_from(*p).ok())
            .collect();
        frontier.assign(&assigned, now_ms());
        let lanes: Vec<u32> = d
            .metrics
            .iter()
            .map(|m| u32::try_from(m.partition).unwrap_or(0))
            .collect();
        // Kept until the acknowledgement, as the service keeps them for dead letters.
        let kept: Vec<Payload> = d
            .metrics
            .into_iter()
            .map(|m| Payload::from_vec(m.payload))
            .collect();
        // `SPIKEWATCH_BENCH_INLINE=1` decodes every delivery inline (an A/B of the overlap).
        let overlap = worth_overlapping(&fmt, &kept) && !inline;
        let mut detect = Duration::ZERO;
        let known_keys = det.series_count();
        decode_delivery(
            Decoding {
                decoder: dec,
                frontier,
                lanes: Some(&lanes),
                known_keys,
                now_ms: &now_ms,
            },
            &fmt,
            &kept,
            overlap,
            &mut |_, outcome| {
                assert!(outcome.is_ok(), "bench data is valid: {outcome:?}");
            },
            &mut |cut: Cut| -> Result<(), DetectorError> {
                let t = Instant::now();
                rows += cut.batch.num_rows();
                det.add_series(&cut.new_keys);
                det.set_frontier(cut.before, &mut out);
                det.push_registered(&cut.batch, &mut out)?;
                det.set_frontier(cut.after, &mut out);
                detect += t.elapsed();
                Ok(())
            },
        )
        .expect("detector");
        ph.process += t_got.elapsed();
        ph.detect += detect;
        let t_ack = Instant::now();
        src.ack(d.token);
        drop(kept);
        ph.ack += t_ack.elapsed();
    }
    ph.total = first.map_or(Duration::ZERO, |t| t.elapsed());
    let secs = ph.total.as_secs_f64();
    black_box(&out);
    let stats = det.stats();
    assert!(
        stats.too_late == late_before.too_late && stats.folded_late == late_before.folded_late,
        "every sample judged in its tick: {stats:?}"
    );
    let _ = src.close(Duration::from_secs(5));
    FullRun {
        msgs_per_s: n as f64 / secs,
        samples_per_s: rows as f64 / secs,
        phases: ph,
        alerts: out.len(),
    }
}

/// The decoder every reader here uses (its clock a day past the data, so no sample is "in
/// the future").
fn decoder() -> MessageDecoder {
    MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            now_ms: Some(T0 + 86_400_000),
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
    })
}

/// The samples as messages in `format` (Arrow IPC: `ARROW_ROWS` rows each), for the in-memory
/// measures.
fn wire(format: FormatKind, data: &[Sample]) -> (Vec<Payload>, Format) {
    match format {
        FormatKind::Json => (
            data.iter()
                .map(|s| Payload::from_vec(s.to_json_line().into_bytes()))
                .collect(),
            Format::Json,
        ),
        _ => (
            data.chunks(ARROW_ROWS)
                .map(|c| Payload::from_vec(ingest::arrow_ipc::encode(c).expect("encode")))
                .collect(),
            Format::ArrowIpc,
        ),
    }
}

/// Decoding alone, in memory, one thread, the same messages: samples/s (best of three passes,
/// the machine being shared).
fn decode_only(format: FormatKind, data: &[Sample]) -> f64 {
    let (messages, fmt) = wire(format, data);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let mut dec = decoder();
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

/// Decoding and detecting the same messages in memory (no broker), in deliveries of 8192
/// messages or 16 MB as the source gives them, decoding inline or ahead on a second thread:
/// samples/s (best of three), what the overlap gives when a core is free for it.
fn in_memory(format: FormatKind, data: &[Sample], overlap: bool) -> f64 {
    let (messages, fmt) = wire(format, data);
    let per_delivery = match format {
        FormatKind::Json => 8192,
        _ => 160,
    };
    let deliveries: Vec<_> = messages
        .chunks(per_delivery)
        .map(|c| (c.to_vec(), None))
        .collect();
    decode_and_detect(&fmt, &deliveries, data.len(), overlap)
}

/// Decoding and detecting the Arrow messages as the topic holds them (per partition, see
/// [`arrow_by_partition`]) in deliveries as a fetch gives them: the next messages of every
/// partition in turn, as many of each as `max.partition.fetch.bytes` (1 MiB) holds, each
/// partition a lane of the watermark as in the full path. Samples/s, best of three, decoding
/// inline: what the detector makes of the partitions' bursts, without a broker.
fn in_memory_partitioned(data: &[Sample]) -> f64 {
    let by_part = arrow_by_partition(data);
    let biggest = by_part
        .iter()
        .flatten()
        .map(Payload::len)
        .max()
        .unwrap_or(1);
    let per_fetch = ((1 << 20) / biggest.max(1)).max(1);
    let mut deliveries = Vec::new();
    let mut at = vec![0usize; by_part.len()];
    loop {
        let (mut msgs, mut lanes) = (Vec::new(), Vec::new());
        for (p, q) in by_part.iter().enumerate() {
            let end = (at[p] + per_fetch).min(q.len());
            msgs.extend(q[at[p]..end].iter().cloned());
            lanes.extend(std::iter::repeat_n(p as u32, end - at[p]));
            at[p] = end;
        }
        if msgs.is_empty() {
            break;
        }
        deliveries.push((msgs, Some(lanes)));
    }
    decode_and_detect(&Format::ArrowIpc, &deliveries, data.len(), false)
}

/// Runs `deliveries` (messages, and each message's lane when they come from partitions, every
/// partition then assigned) through a fresh decoder, watermark frontier and detector, three
/// times: the best samples/s over `samples` samples. Asserts no sample was judged too late.
fn decode_and_detect(
    fmt: &Format,
    deliveries: &[(Vec<Payload>, Option<Vec<u32>>)],
    samples: usize,
    overlap: bool,
) -> f64 {
    let partitioned = deliveries.iter().any(|d| d.1.is_some());
    let mut best = 0.0f64;
    for _ in 0..3 {
        let mut dec = decoder();
        let mut det = Detector::new(DetectorConfig::default()).expect("detector");
        let mut frontier = Frontier::new(FrontierOptions::default());
        if partitioned {
            let assigned: Vec<u32> = (0..PARTITIONS as u32).collect();
            frontier.assign(&assigned, 0);
        }
        let mut out = Vec::new();
        let t = Instant::now();
        for (msgs, lanes) in deliveries {
            let known_keys = det.series_count();
            decode_delivery(
                Decoding {
                    decoder: &mut dec,
                    frontier: &mut frontier,
                    lanes: lanes.as_deref(),
                    known_keys,
                    now_ms: &|| 0,
                },
                fmt,
                msgs,
                overlap,
                &mut |_, _| {},
                &mut |cut: Cut| -> Result<(), DetectorError> {
                    det.add_series(&cut.new_keys);
                    det.set_frontier(cut.before, &mut out);
                    det.push_registered(&cut.batch, &mut out)?;
                    det.set_frontier(cut.after, &mut out);
                    Ok(())
                },
            )
            .expect("detector");
        }
        black_box(&out);
        let stats = det.stats();
        assert!(
            stats.too_late == 0,
            "every sample judged in its tick: {stats:?}"
        );
        best = best.max(samples as f64 / t.elapsed().as_secs_f64());
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

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, with a tiny size.
    let quick = std::env::args().all(|a| a != "--bench");
    // Per format, as many samples as the mock broker keeps: an Arrow topic of 200 messages
    // was read in a few fetches, too few for a steady consume-only figure.
    let size = |format: FormatKind| -> usize {
        let default = match (quick, format) {
            (true, _) => 4_000,
            (false, FormatKind::ArrowIpc) => 640_000,
            (false, _) => 200_000,
        };
        env_or("SPIKEWATCH_BENCH_SAMPLES", default)
    };
    let rounds: usize = env_or("SPIKEWATCH_BENCH_ROUNDS", if quick { 1 } else { 5 }).max(1);
    let wanted: String = env_or("SPIKEWATCH_BENCH_FORMATS", "json,arrow".to_owned());
    let formats: Vec<(FormatKind, &str, &str)> = [
        (FormatKind::Json, "json", "bench.json"),
        (FormatKind::ArrowIpc, "arrow", "bench.arrow"),
    ]
    .into_iter()
    .filter(|(_, name, _)| wanted.split(',').any(|w| w.trim() == *name))
    .collect();
    let broker = MockBroker::new(1).expect("mock cluster");
    let brokers = broker.bootstrap_servers();

    println!(
        "kafka_throughput: {SERIES} series, {PARTITIONS} partitions, mock broker, {rounds} \
         rounds (medians)"
    );
    println!(
        "{:<6} {:>9} {:>18} {:>16} {:>16} {:>22} {:>18}",
        "format",
        "messages",
        "consume-only msg/s",
        "full path msg/s",
        "full samples/s",
        "full/consume (range)",
        "decode samples/s"
    );
    let mut notes = Vec::new();
    for (format, name, topic) in formats {
        // Round 0 reads the fleet's first stretch with a fresh detector (its tick buffers still
        // growing, its baselines in warm-up); each later round reads the next stretch in event
        // time, from a topic of its own, with the same detector, as a long-running service
        // would. The table gives rounds 1 on; round 0 is in the notes.
        let mut fleet = Fleet::new();
        let mut pipe = Pipeline::new();
        let data = fleet.take(size(format));
        let (mut raw, mut full, mut samples_s, mut ratio) = (vec![], vec![], vec![], vec![]);
        let mut cores = vec![];
        let mut phases = Phases::default();
        let (mut alerts, mut messages, mut bytes, mut cold) = (0, 0, 0, f64::NAN);
        for round in 0..=rounds {
            let topic = format!("{topic}.{round}");
            broker.create_topic(&topic, PARTITIONS).expect("topic");
            let stretch = if round == 0 {
                None
            } else {
                Some(fleet.take(data.len()))
            };
            (messages, bytes) =
                produce(&brokers, &topic, format, stretch.as_ref().unwrap_or(&data));
            drop(stretch);
            let r = consume_only(&brokers, &topic, messages);
            let f = full_path(
                &brokers,
                &topic,
                format,
                &format!("bench-{name}-{round}"),
                messages,
                &mut pipe,
            );
            alerts += f.alerts;
            if round == 0 {
                cold = f.msgs_per_s / r.msgs_per_s;
                continue;
            }
            ratio.push(f.msgs_per_s / r.msgs_per_s);
            raw.push(r.msgs_per_s);
            cores.push(r.cores);
            full.push(f.msgs_per_s);
            samples_s.push(f.samples_per_s);
            phases.add(&f.phases);
        }
        let decode = decode_only(format, &data);
        let (inline, ahead) = (
            in_memory(format, &data, false),
            in_memory(format, &data, true),
        );
        let partitioned = match format {
            FormatKind::ArrowIpc => format!(
                ", as the topic holds them (each partition's messages in turn) {}",
                human(in_memory_partitioned(&data))
            ),
            _ => String::new(),
        };
        let lo = ratio.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratio.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<6} {:>9} {:>18} {:>16} {:>16} {:>22} {:>18}",
            name,
            messages,
            human(median(&mut raw)),
            human(median(&mut full)),
            human(median(&mut samples_s)),
            format!(
                "{:.0}% ({:.0}-{:.0}%)",
                100.0 * median(&mut ratio),
                100.0 * lo,
                100.0 * hi
            ),
            human(decode)
        );
        notes.push(format!(
            "{name}: {} samples, {:.1} MB of payload a round; round 0 (fresh detector): full \
             path {:.0}% of consume-only; consume-only kept {:.2} cores busy; full path time: \
             {}; {alerts} alert transitions; decode+detect in memory, in sample order: inline \
             {}, decoding ahead {}{partitioned} samples/s",
            data.len(),
            bytes as f64 / 1e6,
            100.0 * cold,
            median(&mut cores),
            phases.shares(),
            human(inline),
            human(ahead)
        ));
    }
    for note in notes {
        println!("{note}");
    }
    drop(broker);
}
