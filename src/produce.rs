//! `spikewatch produce`: writes a trace's samples and change events into Kafka, for demos, load
//! tests and the compose stack.
//!
//! - **Keys.** Every JSON sample is keyed `cluster/service`, so librdkafka's default partitioner
//!   (CRC-32 of the key modulo the partition count) keeps one series on one partition and its
//!   samples in order. An Arrow IPC message holds many series; its rows are grouped by that same
//!   partition function and each group is sent to its partition explicitly, so a series lands
//!   where its JSON samples would, whichever format carries it.
//! - **Pacing.** `--speed N` plays N event seconds per wall second from the first sample;
//!   `--max` sends as fast as the broker takes them. Samples later than the ones before them
//!   (a trace may be out of order within its lateness) go out at once. Event times stay those
//!   of the trace (shifted by `--loop`), however long ago they were.
//! - **Live (`--live-from SECONDS`).** Plays the trace as if it were happening now: every
//!   timestamp is shifted so that the sample SECONDS after the trace's first sample falls on the
//!   current wall-clock time. The shift is a whole number of the trace's intervals (whole seconds
//!   for intervals that are not), rounded down, so timestamps stay on the trace's boundaries and
//!   that sample lands at most one interval before now. Everything up to now goes out at once,
//!   as history a consumer catching up would read; each later sample or change event is sent
//!   when the wall clock reaches its (shifted) time, so event time never runs ahead of the wall
//!   clock and the consumer's event-time lag stays within an interval. With `--loop` event time
//!   follows the wall clock indefinitely. Not combinable with `--speed` or `--max`.
//! - **Changes.** Change events go to the changes topic interleaved with the samples by event
//!   time, each just before the first sample at or after its `ts`.
//! - **`--loop`.** Plays the trace again and again, every pass shifted forward by the trace's
//!   length plus one interval, so event time keeps moving (never backwards) and the detector
//!   sees new data, not duplicates. Runs until interrupted (Ctrl-C / SIGTERM end it, and a
//!   `--live-from` run, cleanly, with the summary).
//! - `--format prom` writes what Prometheus `remote_write` through prometheus-kafka-adapter
//!   would: one message per Prometheus sample, counters cumulative (keyed by series here).
//! - Lines that are not valid samples are sent unkeyed as they are in JSON mode (the consumer
//!   dead-letters them) and skipped in the other formats; all are counted.
//!
//! The summary goes to stderr; nothing is written to stdout.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ingest::json::{parse_sample, DecoderOptions, Sample};
use ingest::kafka::{KafkaProducer, DEFAULT_CHANGES_TOPIC, DEFAULT_METRICS_TOPIC};
use ingest::prom_adapter::PromEncoder;
use ingest::trace::{ChangeEvent, SampleLines};

/// Arrow rows per message, at most.
pub const DEFAULT_ARROW_ROWS: usize = 1024;

/// The command line of `spikewatch produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Trace directory (samples.jsonl.gz or samples.parquet, and changes.jsonl) or a samples
    /// file.
    pub trace: PathBuf,
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long)]
    pub brokers: String,
    /// Topic for the samples.
    #[arg(long, default_value = DEFAULT_METRICS_TOPIC)]
    pub topic: String,
    /// Topic for the change events; an empty string sends none.
    #[arg(long, default_value = DEFAULT_CHANGES_TOPIC)]
    pub changes_topic: String,
    /// Event seconds played per wall second (default 1: real time), with the trace's own
    /// timestamps (shifted only by --loop).
    #[arg(long, conflicts_with = "max")]
    pub speed: Option<f64>,
    /// Send as fast as possible, without pacing.
    #[arg(long)]
    pub max: bool,
    /// Play live: shift the trace so that the sample SECONDS after its first one is stamped
    /// with the current wall-clock time (rounded down to the trace's interval). Samples and
    /// change events up to now go out at once, as history; the rest are sent in real time, each
    /// when the wall clock reaches its timestamp. With --loop, event time keeps up with the
    /// wall clock indefinitely. Not combinable with --speed or --max.
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["speed", "max"])]
    pub live_from: Option<u64>,
    /// Message encoding of the samples.
    #[arg(long, value_enum, default_value_t = WireFormat::Json)]
    pub format: WireFormat,
    /// Play the trace over and over, shifted forward in time each pass, until interrupted.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Rows per Arrow IPC message, at most.
    #[arg(long, default_value_t = DEFAULT_ARROW_ROWS)]
    pub arrow_rows: usize,
    /// A librdkafka property for the producer, `KEY=VALUE` (repeatable), e.g.
    /// `-X security.protocol=SASL_SSL`.
    #[arg(short = 'X', long = "librdkafka", value_name = "KEY=VALUE")]
    pub librdkafka: Vec<String>,
}

/// How samples are encoded on the metrics topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireFormat {
    /// One native JSON sample per message (CONTRACT section 1).
    Json,
    /// Arrow IPC stream messages in the wire schema, many rows each.
    Arrow,
    /// prometheus-kafka-adapter JSON: one message per Prometheus sample, cumulative counters,
    /// with the metric names of the default `prom_adapter` mapping (docs/formats.md).
    Prom,
}

impl WireFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Arrow => "arrow",
            WireFormat::Prom => "prom",
        }
    }
}

/// How fast samples go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the sink takes them.
    Max,
    /// Event seconds per wall second.
    Speed(f64),
    /// Real time with the trace shifted to now: the sample `from_ms` after the trace's first
    /// one is stamped with the wall-clock time at the start (see the module docs).
    Live { from_ms: i64 },
}

/// Checked options of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceOptions {
    pub trace: PathBuf,
    pub brokers: String,
    pub topic: String,
    pub changes_topic: Option<String>,
    pub pace: Pace,
    pub format: WireFormat,
    pub repeat: bool,
    pub arrow_rows: usize,
    pub librdkafka: BTreeMap<String, String>,
}

impl ProduceArgs {
    /// Checks the arguments; errors name the flag.
    pub fn check(self) -> anyhow::Result<ProduceOptions> {
        if self.brokers.trim().is_empty() {
            bail!("--brokers is empty");
        }
        if self.topic.trim().is_empty() {
            bail!("--topic is empty");
        }
        let pace = match (self.live_from, self.max, self.speed) {
            (Some(_), true, _) => bail!(
                "--live-from cannot be combined with --max: a live play is paced by the wall clock"
            ),
            (Some(_), false, Some(_)) => bail!(
                "--live-from cannot be combined with --speed: a live play runs at real time \
                 (speed 1), or event time would run ahead of the wall clock"
            ),
            (Some(s), false, None) => {
                // Ten years of offset is far beyond any trace; beyond it the arithmetic could
                // overflow.
                const MAX_S: u64 = 10 * 366 * 86_400;
                if s > MAX_S {
                    bail!("--live-from {s}: at most {MAX_S} seconds");
                }
                Pace::Live {
                    from_ms: i64::try_from(s * 1000)?,
                }
            }
            (None, true, _) => Pace::Max,
            (None, false, None) => Pace::Speed(1.0),
            (None, false, Some(s)) if s.is_finite() && s > 0.0 => Pace::Speed(s),
            (None, false, Some(s)) => bail!("--speed {s}: must be a positive number"),
        };
        if self.arrow_rows == 0 {
            bail!("--arrow-rows must be at least 1");
        }
        let mut librdkafka = BTreeMap::new();
        for kv in &self.librdkafka {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--librdkafka {kv:?}: expected KEY=VALUE");
            };
            librdkafka.insert(k.trim().to_owned(), v.to_owned());
        }
        let changes_topic = Some(self.changes_topic).filter(|t| !t.trim().is_empty());
        Ok(ProduceOptions {
            trace: self.trace,
            brokers: self.brokers,
            topic: self.topic,
            changes_topic,
            pace,
            format: self.format,
            repeat: self.repeat,
            arrow_rows: self.arrow_rows,
            librdkafka,
        })
    }
}

/// Where messages go: the Kafka producer, or a recorder in tests.
pub trait Sink {
    /// Number of partitions of `topic`.
    fn partitions(&mut self, topic: &str) -> anyhow::Result<usize>;
    /// Queues one message; `partition: None` lets the client partition by key.
    fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        partition: Option<i32>,
        payload: &[u8],
    ) -> anyhow::Result<()>;
}

/// What a run sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub samples: u64,
    /// Messages on the metrics topic (one per sample in JSON, fewer in Arrow).
    pub messages: u64,
    pub bytes: u64,
    pub changes: u64,
    /// Lines that are not valid samples (sent unkeyed in JSON mode, skipped in Arrow mode).
    pub invalid: u64,
    /// Passes over the trace begun.
    pub passes: u64,
    pub elapsed: Duration,
    pub format: Option<WireFormat>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "produced {} samples in {} {} messages ({:.1} MB) and {} change events in {:.1} s ({:.0} samples/s), {} pass{}, {} invalid lines",
            self.samples,
            self.messages,
            self.format.map_or("", WireFormat::as_str),
            self.bytes as f64 / 1e6,
            self.changes,
            self.elapsed.as_secs_f64(),
            self.samples as f64 / secs,
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            self.invalid,
        )
    }
}

/// Standard CRC-32 (IEEE 802.3, reflected; zlib's and librdkafka's), bit by bit: keys are short.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The partition librdkafka's default (`consistent_random`) partitioner picks for a non-empty
/// key.
pub fn partition_for(key: &[u8], partitions: usize) -> i32 {
    let n = u32::try_from(partitions.max(1)).unwrap_or(u32::MAX);
    i32::try_from(crc32(key) % n).unwrap_or(0)
}

/// The message key of a series.
pub fn series_key(cluster: &str, service: &str) -> String {
    format!("{cluster}/{service}")
}

/// How long to wait before sending a sample with event time `ts_ms`, given the first sample's
/// event time and how long the run has been going. `None`: send now. Only `Pace::Speed` waits
/// here; live pacing is [`live_delay`].
pub fn pacing_delay(pace: Pace, first_ms: i64, ts_ms: i64, elapsed: Duration) -> Option<Duration> {
    let Pace::Speed(speed) = pace else {
        return None;
    };
    let due_s = (ts_ms - first_ms) as f64 / 1000.0 / speed;
    let wait = due_s - elapsed.as_secs_f64();
    (wait > 0.0005).then(|| Duration::from_secs_f64(wait))
}

/// The shift (ms) of a live play: stamps the sample `from_ms` after the trace's first one
/// (`first_ms`) with `now_ms`, rounded down to a whole number of `interval_ms` (or of whole
/// seconds when the interval is not a whole number of them), so shifted timestamps stay on the
/// trace's boundaries and that sample is at most one interval before now, never after it.
pub fn live_shift(first_ms: i64, from_ms: i64, interval_ms: i64, now_ms: i64) -> i64 {
    let unit = if interval_ms > 0 && interval_ms % 1000 == 0 {
        interval_ms
    } else {
        1000
    };
    let exact = now_ms.saturating_sub(first_ms.saturating_add(from_ms));
    exact.div_euclid(unit).saturating_mul(unit)
}

/// How long a live play waits before sending something stamped `ts_ms` (already shifted) when
/// the wall clock reads `now_ms`: until the clock reaches it. `None`: due, send now.
pub fn live_delay(ts_ms: i64, now_ms: i64) -> Option<Duration> {
    let wait = ts_ms.saturating_sub(now_ms);
    (wait > 0).then(|| Duration::from_millis(wait.unsigned_abs()))
}

/// The wall clock and the pacing wait, as [`produce_with_clock`] sees them: the system clock
/// outside tests, a fake one in them.
pub trait Clock {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> i64;
    /// The pacing wait.
    fn sleep(&mut self, d: Duration);
}

/// The system's wall clock, with a given wait.
struct SystemClock<'a> {
    sleep: &'a mut dyn FnMut(Duration),
}

impl Clock for SystemClock<'_> {
    fn now_ms(&mut self) -> i64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
    fn sleep(&mut self, d: Duration) {
        (self.sleep)(d);
    }
}

/// Plays the trace into `sink` (see the module docs) until it ends, or with `repeat` until
/// `stop` is set. `sleep` is the pacing wait (`std::thread::sleep` outside tests); a live play
/// reads the system clock.
pub fn produce(
    opts: &ProduceOptions,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
    sleep: &mut dyn FnMut(Duration),
) -> anyhow::Result<Summary> {
    produce_with_clock(opts, sink, stop, &mut SystemClock { sleep })
}

/// [`produce`] with the wall clock and the wait given.
pub fn produce_with_clock(
    opts: &ProduceOptions,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
    clock: &mut dyn Clock,
) -> anyhow::Result<Summary> {
    let changes = if opts.trace.is_dir() {
        ingest::trace::read_changes(&opts.trace)
            .with_context(|| format!("reading changes of {}", opts.trace.display()))?
    } else {
        Vec::new()
    };
    let partitions = match opts.format {
        WireFormat::Json | WireFormat::Prom => 1,
        WireFormat::Arrow => sink
            .partitions(&opts.topic)
            .with_context(|| format!("reading the partitions of topic {}", opts.topic))?,
    };
    let mut run = Run {
        opts,
        sink,
        clock,
        started: Instant::now(),
        first_ms: None,
        summary: Summary {
            format: Some(opts.format),
            ..Summary::default()
        },
        arrow: vec![Vec::new(); partitions.max(1)],
        prom: PromEncoder::new(),
    };
    let parse_opts = DecoderOptions {
        // The consumer judges timestamps against its own clock; here anything representable goes.
        now_ms: Some(ingest::time::MAX_TS_MS),
        ..DecoderOptions::default()
    };
    let live_from = match opts.pace {
        Pace::Live { from_ms } => Some(from_ms),
        _ => None,
    };
    // Live: set on the first valid sample, from the clock read then.
    let mut anchored = live_from.is_none();
    let mut shift = 0i64;
    loop {
        run.summary.passes += 1;
        let mut lines = SampleLines::open(&opts.trace)
            .with_context(|| format!("opening samples of {}", opts.trace.display()))?;
        let mut pending_changes = changes.iter().peekable();
        let (mut lo, mut hi, mut step) = (i64::MAX, i64::MIN, 0i64);
        let mut line = Vec::new();
        'lines: while lines
            .read_line(&mut line)
            .with_context(|| format!("reading {}", lines.path().display()))?
        {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut sample) = parse_sample(&line, &parse_opts) else {
                run.summary.invalid += 1;
                if opts.format == WireFormat::Json {
                    run.send_metrics(None, None, &line, 0)?;
                }
                continue;
            };
            lo = lo.min(sample.ts_ms);
            hi = hi.max(sample.ts_ms);
            step = step.max(i64::from(sample.interval_ms));
            if !anchored {
                anchored = true;
                let now = run.clock.now_ms();
                let from = live_from.unwrap_or(0);
                shift = live_shift(sample.ts_ms, from, i64::from(sample.interval_ms), now);
            }
            sample.ts_ms += shift;
            while let Some(c) = pending_changes.next_if(|c| c.ts + shift <= sample.ts_ms) {
                if !run.pace_change(c.ts + shift, stop)? {
                    break 'lines;
                }
                run.send_change(c, shift)?;
            }
            run.pace(sample.ts_ms)?;
            if stop.load(Ordering::Relaxed) {
                // Interrupted while waiting: what was due later stays unsent.
                break;
            }
            match opts.format {
                WireFormat::Json => {
                    let payload = if shift == 0 {
                        line.clone()
                    } else {
                        shifted_line(&line, sample.ts_ms)?
                    };
                    let key = series_key(&sample.cluster, &sample.service);
                    run.send_metrics(Some(key.as_bytes()), None, &payload, 1)?;
                }
                WireFormat::Prom => {
                    // The adapter itself sends unkeyed; keyed here, a series' counters stay in
                    // order on one partition.
                    let key = series_key(&sample.cluster, &sample.service);
                    let msgs = run.prom.encode(&sample);
                    let n = msgs.len();
                    for (i, m) in msgs.into_iter().enumerate() {
                        // The sample counts once, with its last message.
                        let counted = u64::from(i + 1 == n);
                        run.send_metrics(Some(key.as_bytes()), None, m.as_bytes(), counted)?;
                    }
                }
                WireFormat::Arrow => {
                    let key = series_key(&sample.cluster, &sample.service);
                    let p = partition_for(key.as_bytes(), run.arrow.len());
                    let buf = &mut run.arrow[usize::try_from(p).unwrap_or(0)];
                    buf.push(sample);
                    if buf.len() >= opts.arrow_rows {
                        run.flush_arrow(Some(p))?;
                    }
                }
            }
        }
        run.flush_arrow(None)?;
        // The trace's remaining changes, unless interrupted (they lie in the future).
        if !stop.load(Ordering::Relaxed) {
            for c in pending_changes {
                if !run.pace_change(c.ts + shift, stop)? {
                    break;
                }
                run.send_change(c, shift)?;
            }
        }
        if !opts.repeat || stop.load(Ordering::Relaxed) || hi < lo {
            break;
        }
        shift += hi - lo + step.max(1);
    }
    run.summary.elapsed = run.started.elapsed();
    Ok(run.summary)
}

struct Run<'a> {
    opts: &'a ProduceOptions,
    sink: &'a mut dyn Sink,
    clock: &'a mut dyn Clock,
    started: Instant,
    first_ms: Option<i64>,
    summary: Summary,
    /// Arrow rows waiting, per partition.
    arrow: Vec<Vec<Sample>>,
    /// Cumulative counters of the Prometheus format, per series.
    prom: PromEncoder,
}

impl Run<'_> {
    /// Waits until the sample stamped `ts_ms` (shifted) is due.
    fn pace(&mut self, ts_ms: i64) -> anyhow::Result<()> {
        let wait = match self.opts.pace {
            Pace::Live { .. } => live_delay(ts_ms, self.clock.now_ms()),
            pace => {
                let first = *self.first_ms.get_or_insert(ts_ms);
                pacing_delay(pace, first, ts_ms, self.started.elapsed())
            }
        };
        if let Some(wait) = wait {
            // Rows waiting for a full Arrow message go out before the pause, on time.
            self.flush_arrow(None)?;
            self.clock.sleep(wait);
        }
        Ok(())
    }

    /// A live play waits until the change event stamped `ts_ms` (shifted) is due; the other
    /// paces send it with the sample it precedes. False: interrupted while waiting, do not send.
    fn pace_change(&mut self, ts_ms: i64, stop: &AtomicBool) -> anyhow::Result<bool> {
        if matches!(self.opts.pace, Pace::Live { .. }) {
            if let Some(wait) = live_delay(ts_ms, self.clock.now_ms()) {
                self.flush_arrow(None)?;
                self.clock.sleep(wait);
                return Ok(!stop.load(Ordering::Relaxed));
            }
        }
        Ok(true)
    }

    fn send_metrics(
        &mut self,
        key: Option<&[u8]>,
        partition: Option<i32>,
        payload: &[u8],
        samples: u64,
    ) -> anyhow::Result<()> {
        self.sink
            .send(&self.opts.topic, key, partition, payload)
            .with_context(|| format!("sending to {}", self.opts.topic))?;
        self.summary.messages += 1;
        self.summary.samples += samples;
        self.summary.bytes += payload.len() as u64;
        Ok(())
    }

    /// Sends the Arrow rows waiting for one partition, or for all.
    fn flush_arrow(&mut self, only: Option<i32>) -> anyhow::Result<()> {
        for p in 0..self.arrow.len() {
            let pid = i32::try_from(p).unwrap_or(i32::MAX);
            if only.is_some_and(|o| o != pid) || self.arrow[p].is_empty() {
                continue;
            }
            let rows = std::mem::take(&mut self.arrow[p]);
            let msg = ingest::arrow_ipc::encode(&rows).context("encoding Arrow IPC")?;
            self.send_metrics(None, Some(pid), &msg, rows.len() as u64)?;
        }
        Ok(())
    }

    fn send_change(&mut self, c: &ChangeEvent, shift: i64) -> anyhow::Result<()> {
        let Some(topic) = &self.opts.changes_topic else {
            return Ok(());
        };
        let mut c = c.clone();
        c.ts += shift;
        let payload = serde_json::to_vec(&c).context("encoding a change event")?;
        let key = c.service.clone();
        self.sink
            .send(topic, Some(key.as_bytes()), None, &payload)
            .with_context(|| format!("sending to {topic}"))?;
        self.summary.changes += 1;
        Ok(())
    }
}

/// The JSON line with `ts` replaced, every other field kept as it was.
fn shifted_line(line: &[u8], ts_ms: i64) -> anyhow::Result<Vec<u8>> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(line).context("re-reading a sample to shift its time")?;
    let ts = ingest::time::format_rfc3339_ms(ts_ms)
        .with_context(|| format!("shifted ts {ts_ms} is out of range"))?;
    v.insert("ts".into(), ts.into());
    Ok(serde_json::to_vec(&v)?)
}

/// The Kafka producer as a [`Sink`].
#[derive(Debug)]
pub struct KafkaSink {
    producer: KafkaProducer,
}

impl KafkaSink {
    pub fn new(brokers: &str, librdkafka: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        Ok(Self {
            producer: KafkaProducer::new(brokers, librdkafka)?,
        })
    }

    /// Waits for every message to be delivered; fails if any was not.
    pub fn finish(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer.flush(timeout)?;
        let (failed, last) = self.producer.failed();
        if failed > 0 {
            bail!(
                "{failed} messages were not delivered (last error: {})",
                last.unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn partitions(&mut self, topic: &str) -> anyhow::Result<usize> {
        Ok(self
            .producer
            .partition_count(topic, Duration::from_secs(15))?)
    }

    fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        partition: Option<i32>,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        Ok(self.producer.send(topic, key, partition, payload)?)
    }
}

/// Sets `stop` on Ctrl-C or SIGTERM (a thread with a small runtime waiting for either).
fn stop_on_signal(stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("produce-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let Ok(mut term) = signal(SignalKind::terminate()) else {
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                }
            });
            stop.store(true, Ordering::Relaxed);
        });
    // Without the thread, Ctrl-C still ends the process (without the summary).
    drop(spawned);
}

/// `spikewatch produce`: plays the trace into Kafka and prints the summary on stderr.
pub fn main(args: ProduceArgs) -> anyhow::Result<()> {
    let opts = args.check()?;
    let mut sink = KafkaSink::new(&opts.brokers, &opts.librdkafka)?;
    let stop = Arc::new(AtomicBool::new(false));
    // A loop, or a live play's hour of real time, ends on a signal with the summary.
    if opts.repeat || matches!(opts.pace, Pace::Live { .. }) {
        stop_on_signal(stop.clone());
    }
    let started = Instant::now();
    // Pacing sleeps in short slices, so Ctrl-C ends a slow replay at once.
    let mut sleep = |d: Duration| {
        let until = Instant::now() + d;
        while !stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    };
    let mut summary = produce(&opts, &mut sink, &stop, &mut sleep)?;
    sink.finish(Duration::from_secs(60))
        .context("waiting for the broker to take every message")?;
    // Until the broker confirmed the last message.
    summary.elapsed = started.elapsed();
    eprintln!(
        "spikewatch: {summary} to {} at {}",
        match &opts.changes_topic {
            Some(c) => format!("{} / {c}", opts.topic),
            None => opts.topic.clone(),
        },
        opts.brokers
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// (topic, key, partition, payload)
    type Sent = (String, Option<Vec<u8>>, Option<i32>, Vec<u8>);

    /// Records every message.
    #[derive(Default)]
    struct Recorder {
        partitions: usize,
        sent: Vec<Sent>,
    }

    impl Sink for Recorder {
        fn partitions(&mut self, _: &str) -> anyhow::Result<usize> {
            Ok(self.partitions)
        }
        fn send(
            &mut self,
            topic: &str,
            key: Option<&[u8]>,
            partition: Option<i32>,
            payload: &[u8],
        ) -> anyhow::Result<()> {
            self.sent.push((
                topic.to_owned(),
                key.map(<[u8]>::to_vec),
                partition,
                payload.to_vec(),
            ));
            Ok(())
        }
    }

    const T0: i64 = 1_770_931_200_000;

    /// A trace directory: 3 ticks of 4 series, one change between ticks 1 and 2, one bad line.
    fn trace_dir() -> tempdir::Dir {
        let dir = tempdir::Dir::new("produce");
        let mut lines = String::new();
        for tick in 0..3i64 {
            for (c, s) in [("a", "api"), ("a", "web"), ("b", "api"), ("b", "web")] {
                let mut sample = Sample::new(T0 + tick * 10_000, c, s, 100, tick as u64);
                sample.status = [("503".to_owned(), tick as u64)].into();
                lines.push_str(&sample.to_json_line());
                lines.push('\n');
            }
            if tick == 1 {
                lines.push_str("{\"not\":\"a sample\"}\n");
            }
        }
        std::fs::write(dir.path().join("samples.jsonl"), lines).unwrap();
        let mut f = std::fs::File::create(dir.path().join("changes.jsonl")).unwrap();
        writeln!(
            f,
            r#"{{"ts":"2026-02-12T21:20:15Z","kind":"deploy","service":"api","clusters":["a"],"id":"d-1"}}"#
        )
        .unwrap();
        dir
    }

    /// Minimal self-cleaning temporary directory (no extra crate for one test module).
    mod tempdir {
        use std::path::{Path, PathBuf};

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new(prefix: &str) -> Self {
                let n = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let p = std::env::temp_dir()
                    .join(format!("spikewatch-{prefix}-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn opts(trace: &std::path::Path, format: WireFormat) -> ProduceOptions {
        ProduceOptions {
            trace: trace.to_owned(),
            brokers: "unused:9092".into(),
            topic: "m".into(),
            changes_topic: Some("c".into()),
            pace: Pace::Max,
            format,
            repeat: false,
            arrow_rows: 1024,
            librdkafka: BTreeMap::new(),
        }
    }

    fn run(o: &ProduceOptions, partitions: usize) -> (Summary, Recorder) {
        let mut rec = Recorder {
            partitions,
            ..Recorder::default()
        };
        let stop = AtomicBool::new(false);
        let s = produce(o, &mut rec, &stop, &mut |_| {}).unwrap();
        (s, rec)
    }

    #[test]
    fn crc32_is_the_standard_one() {
        // The CRC-32 check value, and zlib's value of a short text.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
    }

    #[test]
    fn json_lines_go_out_untouched_keyed_by_series_with_changes_in_event_order() {
        let dir = trace_dir();
        let (s, rec) = run(&opts(dir.path(), WireFormat::Json), 1);
        assert_eq!((s.samples, s.invalid, s.changes, s.passes), (12, 1, 1, 1));
        let original = std::fs::read_to_string(dir.path().join("samples.jsonl")).unwrap();
        let metrics: Vec<_> = rec.sent.iter().filter(|m| m.0 == "m").collect();
        // Every line, the bad one too (unkeyed, for the consumer to dead-letter), in file order.
        let payloads: Vec<String> = metrics
            .iter()
            .map(|m| String::from_utf8(m.3.clone()).unwrap())
            .collect();
        assert_eq!(payloads, original.lines().collect::<Vec<_>>());
        for m in &metrics {
            let v: serde_json::Value = serde_json::from_slice(&m.3).unwrap();
            let want = v
                .get("cluster")
                .map(|c| format!("{}/{}", c.as_str().unwrap(), v["service"].as_str().unwrap()));
            assert_eq!(m.1.clone().map(|k| String::from_utf8(k).unwrap()), want);
            assert_eq!(m.2, None, "JSON leaves partitioning to the client");
        }
        // The change (21:20:15) goes out after the tick at 21:20:10 and before 21:20:20.
        let pos = rec.sent.iter().position(|m| m.0 == "c").unwrap();
        let keyed = |m: &&Sent| m.1.is_some();
        let before = rec.sent[..pos].iter().rev().find(keyed).unwrap();
        let after = rec.sent[pos + 1..].iter().find(keyed).unwrap();
        let before: serde_json::Value = serde_json::from_slice(&before.3).unwrap();
        let after: serde_json::Value = serde_json::from_slice(&after.3).unwrap();
        assert_eq!(before["ts"], "2026-02-12T21:20:10Z");
        assert_eq!(after["ts"], "2026-02-12T21:20:20Z");
        let change: ChangeEvent = serde_json::from_slice(&rec.sent[pos].3).unwrap();
        assert_eq!(change.id, "d-1");
    }

    #[test]
    fn arrow_rows_go_to_the_partition_of_their_series_key() {
        let dir = trace_dir();
        let mut o = opts(dir.path(), WireFormat::Arrow);
        o.arrow_rows = 2;
        let (s, rec) = run(&o, 3);
        assert_eq!((s.samples, s.invalid), (12, 1));
        let mut rows = 0;
        for (_, key, partition, payload) in rec.sent.iter().filter(|m| m.0 == "m") {
            assert_eq!(*key, None);
            let samples = ingest::arrow_ipc::decode_samples(payload).unwrap();
            assert!(!samples.is_empty() && samples.len() <= 2);
            for smp in &samples {
                let k = series_key(&smp.cluster, &smp.service);
                assert_eq!(*partition, Some(partition_for(k.as_bytes(), 3)), "{k}");
            }
            rows += samples.len();
        }
        assert_eq!(rows, 12);
        assert_eq!(
            s.messages as usize,
            rec.sent.iter().filter(|m| m.0 == "m").count()
        );
    }

    #[test]
    fn prom_messages_decode_back_to_the_samples_after_the_priming_scrape() {
        use ingest::format::{Format, MessageDecoder, MessageDecoderOptions};
        let dir = trace_dir();
        let (s, rec) = run(&opts(dir.path(), WireFormat::Prom), 1);
        assert_eq!((s.samples, s.invalid), (12, 1));
        let f = Format::PromAdapter(std::sync::Arc::new(Default::default()));
        let mut dec = MessageDecoder::new(MessageDecoderOptions::default());
        for (_, key, _, payload) in rec.sent.iter().filter(|m| m.0 == "m") {
            assert!(key.is_some(), "keyed by series");
            dec.decode(&f, payload).unwrap();
        }
        dec.finish();
        let batch = dec.flush().unwrap();
        // The first scrape of each of the 4 series only primes its counters.
        assert_eq!(batch.num_rows(), 8);
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::UInt64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert!(col("requests").iter().all(|&r| r == 100));
        let mut errors = col("errors");
        errors.sort_unstable();
        assert_eq!(errors, vec![1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn loop_shifts_each_pass_forward_by_the_trace_length() {
        let dir = trace_dir();
        let mut o = opts(dir.path(), WireFormat::Json);
        o.repeat = true;
        let mut rec = Recorder::default();
        let stop = AtomicBool::new(false);
        // Stop during the third pass.
        let mut sleeps = 0;
        let mut sink = StopAfter {
            inner: &mut rec,
            stop: &stop,
            // A pass is 12 samples, 1 invalid line and 1 change.
            left: 14 + 14 + 5,
        };
        let s = produce(&o, &mut sink, &stop, &mut |_| sleeps += 1).unwrap();
        assert_eq!(s.passes, 3);
        let ts_of = |m: &Sent| {
            let v: serde_json::Value = serde_json::from_slice(&m.3).ok()?;
            ingest::time::parse_rfc3339_ms(v.get("ts")?.as_str()?)
        };
        let sample_ts: Vec<i64> = rec
            .sent
            .iter()
            .filter(|m| m.0 == "m" && m.1.is_some())
            .filter_map(ts_of)
            .collect();
        // 3 ticks of 10 s: each pass is 30 s later than the one before, never overlapping.
        assert_eq!(&sample_ts[..4], &[T0; 4]);
        assert_eq!(&sample_ts[12..16], &[T0 + 30_000; 4]);
        assert!(sample_ts.windows(2).all(|w| w[0] <= w[1]), "{sample_ts:?}");
        // Shifted lines keep every other field (status included).
        let shifted: serde_json::Value = serde_json::from_slice(
            &rec.sent
                .iter()
                .filter(|m| m.0 == "m" && m.1.is_some())
                .nth(12)
                .unwrap()
                .3,
        )
        .unwrap();
        assert_eq!(shifted["status"]["503"], 0);
        assert_eq!(shifted["requests"], 100);
        let changes: Vec<i64> = rec
            .sent
            .iter()
            .filter(|m| m.0 == "c")
            .filter_map(ts_of)
            .collect();
        assert_eq!(changes[1] - changes[0], 30_000);
        assert_eq!(sleeps, 0, "--max never sleeps");
    }

    struct StopAfter<'a> {
        inner: &'a mut Recorder,
        stop: &'a AtomicBool,
        left: usize,
    }

    impl Sink for StopAfter<'_> {
        fn partitions(&mut self, t: &str) -> anyhow::Result<usize> {
            self.inner.partitions(t)
        }
        fn send(
            &mut self,
            topic: &str,
            key: Option<&[u8]>,
            partition: Option<i32>,
            payload: &[u8],
        ) -> anyhow::Result<()> {
            self.left = self.left.saturating_sub(1);
            if self.left == 0 {
                self.stop.store(true, Ordering::Relaxed);
            }
            self.inner.send(topic, key, partition, payload)
        }
    }

    #[test]
    fn pacing() {
        let sp = Pace::Speed(10.0);
        // (name, pace, event offset ms, elapsed ms, expected wait ms)
        let cases = [
            ("max never waits", Pace::Max, 60_000, 0, None),
            ("first sample goes at once", sp, 0, 0, None),
            (
                "10 s of event time at x10 is due at 1 s",
                sp,
                10_000,
                400,
                Some(600),
            ),
            ("already late goes at once", sp, 10_000, 1_500, None),
            ("out-of-order sample goes at once", sp, -5_000, 100, None),
        ];
        for (name, pace, offset, elapsed, want) in cases {
            let got = pacing_delay(pace, T0, T0 + offset, Duration::from_millis(elapsed));
            let got = got.map(|d| (d.as_secs_f64() * 1000.0).round() as u64);
            assert_eq!(got, want, "{name}");
        }
    }

    /// Valid arguments of a paced JSON run, for the checks to vary.
    fn args() -> ProduceArgs {
        ProduceArgs {
            trace: "t".into(),
            brokers: "k:9092".into(),
            topic: "m".into(),
            changes_topic: String::new(),
            speed: None,
            max: false,
            live_from: None,
            format: WireFormat::Json,
            repeat: false,
            arrow_rows: 10,
            librdkafka: vec!["linger.ms=20".into()],
        }
    }

    #[test]
    fn arguments_are_checked() {
        let base = args();
        let ok = base.clone().check().unwrap();
        assert_eq!(ok.pace, Pace::Speed(1.0));
        assert_eq!(ok.changes_topic, None, "an empty changes topic sends none");
        assert_eq!(ok.librdkafka["linger.ms"], "20");
        let cases: [(&str, ProduceArgs, &str); 4] = [
            (
                "empty brokers",
                ProduceArgs {
                    brokers: " ".into(),
                    ..base.clone()
                },
                "--brokers",
            ),
            (
                "zero speed",
                ProduceArgs {
                    speed: Some(0.0),
                    ..base.clone()
                },
                "--speed",
            ),
            (
                "zero arrow rows",
                ProduceArgs {
                    arrow_rows: 0,
                    ..base.clone()
                },
                "--arrow-rows",
            ),
            (
                "property without =",
                ProduceArgs {
                    librdkafka: vec!["linger.ms".into()],
                    ..base.clone()
                },
                "--librdkafka",
            ),
        ];
        for (name, args, flag) in cases {
            let err = args.check().unwrap_err().to_string();
            assert!(err.contains(flag), "{name}: {err}");
        }
    }

    #[test]
    fn live_play_is_refused_with_speed_or_max_naming_both_flags() {
        let base = ProduceArgs {
            live_from: Some(3420),
            repeat: true,
            ..args()
        };
        assert_eq!(
            base.clone().check().unwrap().pace,
            Pace::Live { from_ms: 3_420_000 }
        );
        let with_speed = ProduceArgs {
            speed: Some(1.0),
            ..base.clone()
        };
        let with_max = ProduceArgs {
            max: true,
            ..base.clone()
        };
        for (args, other) in [(with_speed, "--speed"), (with_max, "--max")] {
            let err = args.check().unwrap_err().to_string();
            assert!(err.contains("--live-from") && err.contains(other), "{err}");
        }
    }

    #[test]
    fn live_shift_puts_the_chosen_sample_on_the_last_interval_boundary_before_now() {
        let now = NOW;
        // (name, first sample, offset, interval, expected time of the sample at the offset)
        let cases = [
            (
                "rounded down to 10 s",
                T0,
                60_000,
                10_000,
                1_780_315_200_000,
            ),
            ("whole intervals from now already", T0, 64_500, 10_000, now),
            (
                "sub-second interval: whole seconds",
                T0,
                0,
                500,
                1_780_315_204_000,
            ),
            (
                "a trace in the future moves back, still rounded down",
                1_780_315_203_000 + 86_400_000,
                0,
                10_000,
                1_780_315_203_000,
            ),
        ];
        for (name, first, from, interval, want) in cases {
            let shift = live_shift(first, from, interval, now);
            assert_eq!(first + from + shift, want, "{name}");
            // Whole intervals: every timestamp of the trace keeps its place on the grid.
            assert_eq!(shift % interval.max(1000), 0, "{name}");
        }
    }

    /// A wall clock standing still except while `produce` waits, and a sink noting the clock's
    /// time of every message.
    #[derive(Clone, Default)]
    struct FakeClock {
        now: std::rc::Rc<std::cell::Cell<i64>>,
        sleeps: std::rc::Rc<std::cell::RefCell<Vec<Duration>>>,
    }

    impl Clock for FakeClock {
        fn now_ms(&mut self) -> i64 {
            self.now.get()
        }
        fn sleep(&mut self, d: Duration) {
            self.sleeps.borrow_mut().push(d);
            self.now
                .set(self.now.get() + i64::try_from(d.as_millis()).unwrap());
        }
    }

    struct TimedSink {
        clock: FakeClock,
        /// (wall time when sent, topic, event time in the payload)
        sent: Vec<(i64, String, i64)>,
        stop: Arc<AtomicBool>,
        stop_after: usize,
    }

    impl Sink for TimedSink {
        fn partitions(&mut self, _: &str) -> anyhow::Result<usize> {
            Ok(1)
        }
        fn send(
            &mut self,
            topic: &str,
            key: Option<&[u8]>,
            _: Option<i32>,
            payload: &[u8],
        ) -> anyhow::Result<()> {
            if key.is_some() {
                let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
                let ts = ingest::time::parse_rfc3339_ms(v["ts"].as_str().unwrap()).unwrap();
                self.sent.push((self.clock.now.get(), topic.to_owned(), ts));
            }
            if self.sent.len() >= self.stop_after {
                self.stop.store(true, Ordering::Relaxed);
            }
            Ok(())
        }
    }

    /// 2026-06-01T12:00:04.5Z, the injected "now" of the live tests.
    const NOW: i64 = 1_780_315_204_500;

    fn live(trace: &std::path::Path, from_ms: i64, repeat: bool, stop_after: usize) -> TimedSink {
        let mut o = opts(trace, WireFormat::Json);
        o.pace = Pace::Live { from_ms };
        o.repeat = repeat;
        let stop = Arc::new(AtomicBool::new(false));
        let mut clock = FakeClock::default();
        clock.now.set(NOW);
        let mut sink = TimedSink {
            clock: clock.clone(),
            sent: Vec::new(),
            stop: stop.clone(),
            stop_after,
        };
        produce_with_clock(&o, &mut sink, &stop, &mut clock).unwrap();
        sink
    }

    #[test]
    fn live_play_stamps_the_offset_sample_now_sends_history_at_once_and_the_rest_in_real_time() {
        let dir = trace_dir();
        // The tick 10 s into the trace is the one stamped now (12:00:04.5, on the 10 s grid:
        // 12:00:00); the deploy at +15 s and the tick at +20 s are still to come.
        let sink = live(dir.path(), 10_000, false, usize::MAX);
        let at = |h: &str| ingest::time::parse_rfc3339_ms(&format!("2026-06-01T{h}Z")).unwrap();
        let samples: Vec<_> = sink.sent.iter().filter(|m| m.1 == "m").collect();
        let stamps: Vec<i64> = samples.iter().map(|m| m.2).collect();
        let want: Vec<i64> = ["11:59:50", "12:00:00", "12:00:10"]
            .iter()
            .flat_map(|h| [at(h); 4])
            .collect();
        assert_eq!(stamps, want);
        // The change event is shifted as the samples are: 21:20:15 on the trace's clock.
        let changes: Vec<_> = sink.sent.iter().filter(|m| m.1 == "c").collect();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].2, at("12:00:05"));
        // History (up to now) went out at once; each later message when the wall clock
        // reached its timestamp, never before.
        for (sent_at, topic, ts) in &sink.sent {
            assert_eq!(*sent_at, (*ts).max(NOW), "{topic} stamped {ts}");
        }
        // So the waits were from now to the change, then from it to the last tick.
        assert_eq!(
            *sink.clock.sleeps.borrow(),
            [Duration::from_millis(500), Duration::from_secs(5)]
        );
    }

    #[test]
    fn live_loop_keeps_event_time_with_the_wall_clock_pass_after_pass() {
        let dir = trace_dir();
        // Four passes of 3 ticks of 4 samples, and their change events.
        let sink = live(dir.path(), 0, true, 4 * 13);
        let samples: Vec<i64> = sink
            .sent
            .iter()
            .filter(|m| m.1 == "m")
            .map(|m| m.2)
            .collect();
        assert_eq!(samples.len(), 4 * 12);
        assert!(samples.windows(2).all(|w| w[0] <= w[1]), "{samples:?}");
        // Tick after tick, 10 s apart, across the passes: no gap, no overlap.
        let mut ticks = samples.clone();
        ticks.dedup();
        let first = ingest::time::parse_rfc3339_ms("2026-06-01T12:00:00Z").unwrap();
        let want: Vec<i64> = (0..12).map(|i| first + i * 10_000).collect();
        assert_eq!(ticks, want);
        let changes: Vec<i64> = sink
            .sent
            .iter()
            .filter(|m| m.1 == "c")
            .map(|m| m.2)
            .collect();
        assert_eq!(changes.len(), 4);
        assert!(
            changes.windows(2).all(|w| w[1] - w[0] == 30_000),
            "{changes:?}"
        );
        // History at once, the rest when the wall clock reached its timestamp, never before.
        for (sent_at, topic, ts) in &sink.sent {
            assert_eq!(*sent_at, (*ts).max(NOW), "{topic} stamped {ts}");
        }
        // Real time: every pause is the time to the next change or tick, nothing sped up.
        let slept: Duration = sink.clock.sleeps.borrow().iter().sum();
        assert_eq!(i64::try_from(slept.as_millis()).unwrap(), want[11] - NOW);
    }
}
