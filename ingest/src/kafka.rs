//! The Kafka driver: the one module of spikewatch that uses rdkafka (librdkafka). Nothing of
//! rdkafka appears in its public types, so the rest of the service stays testable without a
//! broker and the client library can change without touching it.
//!
//! # Consuming, at least once
//!
//! [`KafkaSource`] is a consumer-group member for the metrics topics (each with its
//! [`Format`]) and the change-events topic, meant to be driven from one blocking thread:
//!
//! 1. [`KafkaSource::poll`] waits up to `max_wait` for a message and gathers it with whatever
//!    else is already fetched (up to `max_messages`) into a [`Delivery`]: owned copies of the
//!    messages plus an [`AckToken`].
//! 2. The caller decodes them ([`crate::format::MessageDecoder`]; `decode_owned` takes a payload
//!    over, so an Arrow IPC message is read where `poll` copied it, without a second copy),
//!    sends each rejected message to [`KafkaSource::dead_letter`], and runs the batches through
//!    the detector.
//! 3. Only then it calls [`KafkaSource::ack`], which stores the next offset (offset + 1) of every
//!    partition in the delivery, once the dead letters written before it are confirmed by the
//!    broker. Stored offsets are committed by librdkafka's auto-commit, on every rebalance
//!    (revoked partitions commit what was processed before they go) and on
//!    [`KafkaSource::close`].
//!
//! With [`KafkaSettings::commit_after_checkpoint`] the caller checkpoints its own state and
//! offsets must never run ahead of it: auto-commit is off, a revoke commits nothing and
//! `close` commits nothing; offsets are stored after processing as above but committed only
//! by [`KafkaSource::commit`], which the caller calls once its checkpoint is durable. What was
//! processed after the last checkpoint is read again after a restart or a rebalance, and the
//! restored detector's (series, ts) dedup absorbs what the checkpoint already covered.
//!
//! `enable.auto.offset.store` is always `false`: a message whose batch the detector has not
//! consumed is never committed, so after a crash it is read again. Redelivered samples are
//! duplicates of a (series, ts) the detector has already counted, and it counts them once.
//!
//! # Dead letters
//!
//! [`KafkaSource::dead_letter`] writes the original key and payload to the dead-letter topic with
//! headers [`HEADER_REASON`] (the stable reject reason), [`HEADER_DETAIL`], [`HEADER_TOPIC`],
//! [`HEADER_PARTITION`] and [`HEADER_OFFSET`] (decimal text). The partition moves on at once; the
//! poison message's offset is stored with the rest of its delivery.
//!
//! # Health
//!
//! [`KafkaSource::is_connected`] is true while some broker connection is up (librdkafka's
//! statistics, every `statistics.interval.ms`, default here 1 s; set false at once on "all
//! brokers down"). [`KafkaSource::lag`] is, per assigned partition, the high watermark minus
//! the committed offset, from the same statistics.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::format::{Format, FormatKind};
use crate::prom_adapter::{MappingError, PromMapping, PromMappingConfig};

/// Default topic of metric samples.
pub const DEFAULT_METRICS_TOPIC: &str = "spikewatch.metrics";
/// Default topic of change events.
pub const DEFAULT_CHANGES_TOPIC: &str = "spikewatch.changes";
/// Default dead-letter topic.
pub const DEFAULT_DEAD_LETTER_TOPIC: &str = "spikewatch.dlq";

/// Dead-letter header: the reject reason label (`malformed_json`, ...).
pub const HEADER_REASON: &str = "spikewatch.reason";
/// Dead-letter header: the human-readable detail of the rejection.
pub const HEADER_DETAIL: &str = "spikewatch.detail";
/// Dead-letter header: the topic the message was read from.
pub const HEADER_TOPIC: &str = "spikewatch.source.topic";
/// Dead-letter header: its partition, decimal.
pub const HEADER_PARTITION: &str = "spikewatch.source.partition";
/// Dead-letter header: its offset, decimal.
pub const HEADER_OFFSET: &str = "spikewatch.source.offset";

/// Settings the driver refuses to take from the passthrough map, because at-least-once
/// depends on them.
const RESERVED: [&str; 2] = ["enable.auto.offset.store", "group.id"];

/// Errors of the Kafka driver.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("invalid Kafka setting `{field}`: {reason}")]
    Setting { field: String, reason: String },
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// librdkafka refused or failed an operation; `detail` is its message.
    #[error("kafka: {context}: {detail}")]
    Client {
        context: &'static str,
        detail: String,
    },
    #[error("kafka: {what} timed out after {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
}

fn client_err(context: &'static str) -> impl FnOnce(RdError) -> KafkaError {
    move |e| KafkaError::Client {
        context,
        detail: e.to_string(),
    }
}

/// One metrics topic and its format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub topic: String,
    pub format: FormatKind,
}

/// Kafka source settings (`[kafka]` in the service configuration).
///
/// ```toml
/// brokers = "kafka-1:9092,kafka-2:9092"
/// group_id = "spikewatch"
/// metrics_topics = [{ topic = "spikewatch.metrics", format = "json" },
///                   { topic = "prometheus", format = "prom_adapter" }]
/// changes_topic = "spikewatch.changes"
/// dead_letter_topic = "spikewatch.dlq"
/// [librdkafka]          # passed through as is
/// "security.protocol" = "SASL_PLAINTEXT"
/// "sasl.mechanism" = "PLAIN"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub group_id: String,
    pub metrics_topics: Vec<TopicSettings>,
    /// Change events (CONTRACT section 2, JSON); `None` to not consume any.
    pub changes_topic: Option<String>,
    /// Where rejected messages go; `None` to only count them.
    pub dead_letter_topic: Option<String>,
    /// The mapping of `prom_adapter` topics.
    pub prom_adapter: PromMappingConfig,
    /// librdkafka properties passed through as they are (security, timeouts, fetch sizes, ...),
    /// to the consumer and to the dead-letter producer. `enable.auto.offset.store` and
    /// `group.id` are refused here.
    pub librdkafka: BTreeMap<String, String>,
    /// Commit only when told to ([`KafkaSource::commit`], after the caller's checkpoint is on
    /// disk): `enable.auto.commit=false`, and neither a revoke nor `close` commits (see the
    /// module docs). Assumes this member is the group's only one.
    pub commit_after_checkpoint: bool,
    /// Copy each message's headers into [`KafkaMessage::headers`] (default true). Asking
    /// librdkafka for them makes it parse the record's header section, which costs about a
    /// quarter of [`KafkaSource::poll`]'s own work per message even when there are none; a
    /// consumer that never reads them (the service) turns this off and gets empty headers.
    pub read_headers: bool,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "spikewatch".into(),
            metrics_topics: vec![TopicSettings {
                topic: DEFAULT_METRICS_TOPIC.into(),
                format: FormatKind::Json,
            }],
            changes_topic: Some(DEFAULT_CHANGES_TOPIC.into()),
            dead_letter_topic: Some(DEFAULT_DEAD_LETTER_TOPIC.into()),
            prom_adapter: PromMappingConfig::default(),
            librdkafka: BTreeMap::new(),
            commit_after_checkpoint: false,
            read_headers: true,
        }
    }
}

impl KafkaSettings {
    /// Cross-field checks, and the format of every metrics topic.
    pub fn formats(&self) -> Result<HashMap<String, Format>, KafkaError> {
        let bad = |field: &str, reason: String| KafkaError::Setting {
            field: field.to_owned(),
            reason,
        };
        if self.brokers.trim().is_empty() {
            return Err(bad("brokers", "is empty".into()));
        }
        if self.group_id.trim().is_empty() {
            return Err(bad("group_id", "is empty".into()));
        }
        if self.metrics_topics.is_empty() {
            return Err(bad("metrics_topics", "names no topic".into()));
        }
        for key in RESERVED {
            if self.librdkafka.contains_key(key) {
                return Err(bad(
                    &format!("librdkafka.{key}"),
                    "is managed by spikewatch (at-least-once delivery depends on it)".into(),
                ));
            }
        }
        let mut mapping: Option<Arc<PromMapping>> = None;
        let mut out = HashMap::new();
        for (i, t) in self.metrics_topics.iter().enumerate() {
            if t.topic.is_empty() {
                return Err(bad(
                    &format!("metrics_topics[{i}].topic"),
                    "is empty".into(),
                ));
            }
            let format = match t.format {
                FormatKind::Json => Format::Json,
                FormatKind::ArrowIpc => Format::ArrowIpc,
                FormatKind::PromAdapter => {
                    let m = match &mapping {
                        Some(m) => m.clone(),
                        None => Arc::new(PromMapping::new(&self.prom_adapter)?),
                    };
                    mapping = Some(m.clone());
                    Format::PromAdapter(m)
                }
            };
            if out.insert(t.topic.clone(), format).is_some() {
                return Err(bad(
                    &format!("metrics_topics[{i}].topic"),
                    format!("{:?} is listed twice", t.topic),
                ));
            }
        }
        for (field, topic) in [
            ("changes_topic", &self.changes_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
        ] {
            if let Some(topic) = topic {
                if out.contains_key(topic) {
                    return Err(bad(field, format!("{topic:?} is also a metrics topic")));
                }
            }
        }
        Ok(out)
    }
}

/// One consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMessage {
    /// Shared by every message of the topic (one allocation per topic, not per message).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// Empty for a message without payload.
    pub payload: Vec<u8>,
    /// The message's timestamp (create or log-append time), epoch ms.
    pub timestamp_ms: Option<i64>,
    /// In the order they were sent; empty when the message has none, and always empty when
    /// [`KafkaSettings::read_headers`] is off.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaMessage {
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// What [`KafkaSource::ack`] stores: the next offset of every partition of a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckToken {
    /// (topic, partition) -> offset of the next message to read.
    next: BTreeMap<(Arc<str>, i32), i64>,
}

impl AckToken {
    /// (topic, partition, next offset) for every partition in the token.
    pub fn offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.next.iter().map(|((t, p), o)| (&**t, *p, *o))
    }

    /// Adds another delivery's offsets (acknowledge several deliveries at once).
    pub fn merge(&mut self, other: AckToken) {
        for (k, o) in other.next {
            let e = self.next.entry(k).or_insert(o);
            *e = (*e).max(o);
        }
    }

    /// Notes that `offset` of `(topic, partition)` was delivered.
    fn note(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let next = offset.saturating_add(1);
        let e = self.next.entry((topic.clone(), partition)).or_insert(next);
        *e = (*e).max(next);
    }
}

/// The partitions of one delivery as it is gathered: (topic index, partition, highest offset),
/// in first-seen order. Consecutive messages mostly come from the same partition, so the last
/// one found is tried first and a delivery costs one map insert per partition, not per message.
#[derive(Debug, Default)]
struct Offsets {
    seen: Vec<(usize, i32, i64)>,
    last: usize,
}

impl Offsets {
    fn note(&mut self, topic: usize, partition: i32, offset: i64) {
        if let Some(e) = self.seen.get_mut(self.last) {
            if e.0 == topic && e.1 == partition {
                e.2 = e.2.max(offset);
                return;
            }
        }
        match self
            .seen
            .iter()
            .position(|e| e.0 == topic && e.1 == partition)
        {
            Some(i) => {
                self.last = i;
                self.seen[i].2 = self.seen[i].2.max(offset);
            }
            None => {
                self.last = self.seen.len();
                self.seen.push((topic, partition, offset));
            }
        }
    }
}

/// Messages from one [`KafkaSource::poll`].
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Messages of the metrics topics, in arrival order.
    pub metrics: Vec<KafkaMessage>,
    /// Messages of the change-events topic.
    pub changes: Vec<KafkaMessage>,
    /// Give it to [`KafkaSource::ack`] once the detector has consumed these messages.
    pub token: AckToken,
}

impl Delivery {
    pub fn len(&self) -> usize {
        self.metrics.len() + self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index in `topics` of a message's topic, and whether it is the changes topic. A topic not
/// subscribed by name (which librdkafka does not deliver) is added, as a metrics topic.
fn topic_index(topics: &mut Vec<(Arc<str>, bool)>, name: &str) -> (usize, bool) {
    match topics.iter().position(|(t, _)| &**t == name) {
        Some(i) => (i, topics[i].1),
        None => {
            topics.push((Arc::from(name), false));
            (topics.len() - 1, false)
        }
    }
}

/// Owned copies of a message's headers (a header without a value gets an empty one).
fn copy_headers<H: Headers>(hs: &H) -> Vec<(String, Vec<u8>)> {
    hs.iter()
        .map(|h| {
            (
                h.key.to_owned(),
                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
            )
        })
        .collect()
}

/// Lag of one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// High watermark minus committed offset (minus the low watermark when nothing is
    /// committed yet).
    pub lag: i64,
    pub high_watermark: i64,
    /// `None` while the group has no committed offset for the partition.
    pub committed: Option<i64>,
}

/// How many of a subscribed topic's partitions this member holds. spikewatch expects to be its
/// consumer group's only member: a second member (another replica started with the same
/// `group_id`) takes some of the partitions, and with them part of the fleet, which neither
/// instance then sees whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicCoverage {
    pub topic: String,
    /// Partitions the topic has, as the client's metadata knows them.
    pub partitions: usize,
    /// Of those, assigned to this member.
    pub assigned: usize,
}

/// Counters of the dead-letter producer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLetterStats {
    pub sent: u64,
    pub delivered: u64,
    /// Dead letters the broker did not take (after librdkafka's retries); their source offsets
    /// are stored all the same, so the partition never stalls.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Health {
    connected: bool,
    stats_seen: bool,
    last_error: Option<String>,
    lag: Vec<PartitionLag>,
    coverage: Vec<TopicCoverage>,
    assigned: BTreeSet<(String, i32)>,
    rebalances: u64,
}

#[derive(Debug, Default)]
struct Shared {
    health: Mutex<Health>,
    /// Highest offset stored per partition, so an old token never moves a partition back.
    stored: Mutex<HashMap<(String, i32), i64>>,
    /// Sequence numbers of dead letters not yet confirmed (or failed) by the broker.
    outstanding: Mutex<BTreeSet<usize>>,
    dead: Mutex<DeadLetterStats>,
}

/// A poisoned lock only means another thread panicked mid-update of plain counters; the data is
/// still usable, and health reporting must not take the service down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// librdkafka callbacks of the consumer.
struct SourceContext {
    shared: Arc<Shared>,
    /// False when commits follow the caller's checkpoints (a revoke then commits nothing).
    commit_on_revoke: bool,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && (b.source == "learned" || b.source == "configured"));
        let mut h = lock(&self.shared.health);
        h.stats_seen = true;
        h.connected = up;
        let assigned = h.assigned.clone();
        h.lag = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values().map(move |p| (t.topic.as_str(), p)))
            .filter(|(t, p)| p.partition >= 0 && assigned.contains(&((*t).to_owned(), p.partition)))
            .filter(|(_, p)| p.hi_offset >= 0)
            .map(|(t, p)| {
                let committed = (p.committed_offset >= 0).then_some(p.committed_offset);
                let base = committed.unwrap_or(p.lo_offset.max(0));
                PartitionLag {
                    topic: t.to_owned(),
                    partition: p.partition,
                    lag: (p.hi_offset - base).max(0),
                    high_watermark: p.hi_offset,
                    committed,
                }
            })
            .collect();
        h.lag
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        // The statistics list every partition of each topic the consumer knows (partition -1
        // is librdkafka's internal "unassigned" queue, not a partition).
        h.coverage = stats
            .topics
            .values()
            .map(|t| {
                let ids = t
                    .partitions
                    .values()
                    .map(|p| p.partition)
                    .filter(|&p| p >= 0);
                TopicCoverage {
                    topic: t.topic.clone(),
                    partitions: ids.clone().count(),
                    assigned: ids
                        .filter(|&p| assigned.contains(&(t.topic.clone(), p)))
                        .count(),
                }
            })
            .filter(|c| c.partitions > 0)
            .collect();
        h.coverage.sort_by(|a, b| a.topic.cmp(&b.topic));
    }

    fn error(&self, error: RdError, reason: &str) {
        let mut h = lock(&self.shared.health);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            h.connected = false;
        }
        h.last_error = Some(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Revoke(_), true) = (rebalance, self.commit_on_revoke) {
            // Commit what was processed before the partitions go to another member. Nothing
            // stored yet is not an error worth reporting.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                if e.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset) {
                    lock(&self.shared.health).last_error = Some(format!("commit on revoke: {e}"));
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut h = lock(&self.shared.health);
        h.rebalances += 1;
        let mut stored = lock(&self.shared.stored);
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    let key = (e.topic().to_owned(), e.partition());
                    stored.remove(&key);
                    h.assigned.insert(key);
                }
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    let key = (e.topic().to_owned(), e.partition());
                    stored.remove(&key);
                    h.assigned.remove(&key);
                }
            }
            Rebalance::Error(e) => h.last_error = Some(format!("rebalance: {e}")),
        }
    }
}

/// Delivery reports of the dead-letter producer.
struct DeadLetterContext {
    shared: Arc<Shared>,
}

impl ClientContext for DeadLetterContext {}

impl ProducerContext for DeadLetterContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        lock(&self.shared.outstanding).remove(&seq);
        let mut d = lock(&self.shared.dead);
        match result {
            Ok(_) => d.delivered += 1,
            Err((e, _)) => {
                d.failed += 1;
                drop(d);
                lock(&self.shared.health).last_error =
                    Some(format!("dead letter not delivered: {e}"));
            }
        }
    }
}

/// A token waiting for the dead letters written before its ack.
#[derive(Debug)]
struct Deferred {
    token: AckToken,
    /// Highest dead-letter sequence number issued when the token was acknowledged.
    dead_letters_upto: Option<usize>,
}

/// The at-least-once consumer (see the module docs).
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    dead_letters: Option<(ThreadedProducer<DeadLetterContext>, String)>,
    shared: Arc<Shared>,
    formats: HashMap<String, Format>,
    changes_topic: Option<String>,
    /// Every subscribed topic, once, and whether it is the changes topic: messages share these
    /// names ([`KafkaMessage::topic`]) instead of each copying its own.
    topics: Vec<(Arc<str>, bool)>,
    /// Messages in the previous delivery, to size the next one's vectors.
    last_len: usize,
    read_headers: bool,
    next_seq: usize,
    deferred: VecDeque<Deferred>,
    /// False when commits follow the caller's checkpoints.
    commit_on_close: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.formats.keys().collect::<Vec<_>>())
            .field("changes_topic", &self.changes_topic)
            .field("deferred", &self.deferred.len())
            .finish_non_exhaustive()
    }
}

fn base_config(brokers: &str, passthrough: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    for (k, v) in passthrough {
        cfg.set(k, v);
    }
    cfg
}

impl KafkaSource {
    /// Creates the consumer (and the dead-letter producer) and subscribes. Connecting happens
    /// in the background; see [`is_connected`](Self::is_connected).
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let formats = settings.formats()?;
        let shared = Arc::new(Shared::default());

        // Defaults first, so the passthrough map can override them; then the settings that
        // at-least-once depends on, which it cannot.
        let mut defaults = BTreeMap::new();
        defaults.insert("auto.offset.reset".to_owned(), "earliest".to_owned());
        defaults.insert("enable.auto.commit".to_owned(), "true".to_owned());
        defaults.insert("statistics.interval.ms".to_owned(), "1000".to_owned());
        defaults.insert("fetch.wait.max.ms".to_owned(), "50".to_owned());
        defaults.insert("enable.partition.eof".to_owned(), "false".to_owned());
        // When the local queue is full (the detector is behind), librdkafka postpones fetching
        // by this much; its default of 1 s stalls a consumer that is only briefly behind.
        defaults.insert("fetch.queue.backoff.ms".to_owned(), "50".to_owned());
        defaults.extend(settings.librdkafka.clone());
        let mut cfg = base_config(&settings.brokers, &defaults);
        cfg.set("group.id", &settings.group_id);
        cfg.set("enable.auto.offset.store", "false");
        if settings.commit_after_checkpoint {
            cfg.set("enable.auto.commit", "false");
        }
        let consumer: BaseConsumer<SourceContext> = cfg
            .create_with_context(SourceContext {
                shared: shared.clone(),
                commit_on_revoke: !settings.commit_after_checkpoint,
            })
            .map_err(client_err("creating the consumer"))?;

        let mut topics: Vec<&str> = formats.keys().map(String::as_str).collect();
        topics.sort_unstable();
        if let Some(c) = &settings.changes_topic {
            topics.push(c);
        }
        consumer
            .subscribe(&topics)
            .map_err(client_err("subscribing"))?;

        let dead_letters = match &settings.dead_letter_topic {
            None => None,
            Some(topic) => {
                // Only the properties a producer understands matter; librdkafka warns about and
                // ignores consumer-only ones.
                let mut pcfg = base_config(&settings.brokers, &settings.librdkafka);
                for key in [
                    "auto.offset.reset",
                    "enable.auto.commit",
                    "fetch.wait.max.ms",
                    "fetch.queue.backoff.ms",
                    "queued.min.messages",
                    "queued.max.messages.kbytes",
                    "enable.partition.eof",
                    "session.timeout.ms",
                    "max.poll.interval.ms",
                    "auto.commit.interval.ms",
                    "heartbeat.interval.ms",
                    "partition.assignment.strategy",
                    "fetch.min.bytes",
                    "fetch.max.bytes",
                    "max.partition.fetch.bytes",
                    "group.instance.id",
                    "isolation.level",
                ] {
                    pcfg.remove(key);
                }
                let producer: ThreadedProducer<DeadLetterContext> = pcfg
                    .create_with_context(DeadLetterContext {
                        shared: shared.clone(),
                    })
                    .map_err(client_err("creating the dead-letter producer"))?;
                Some((producer, topic.clone()))
            }
        };

        let changes = settings.changes_topic.as_deref();
        let topics = topics
            .iter()
            .map(|&t| (Arc::from(t), Some(t) == changes))
            .collect();
        Ok(Self {
            consumer,
            dead_letters,
            shared,
            formats,
            changes_topic: settings.changes_topic.clone(),
            topics,
            last_len: 0,
            read_headers: settings.read_headers,
            next_seq: 0,
            deferred: VecDeque::new(),
            commit_on_close: !settings.commit_after_checkpoint,
        })
    }

    /// The format of a metrics topic (`None` for the changes topic or an unknown one).
    pub fn format_of(&self, topic: &str) -> Option<&Format> {
        self.formats.get(topic)
    }

    /// Waits up to `max_wait` for a message, then takes whatever else librdkafka has already
    /// fetched, without waiting, up to `max_messages` (at least 1) in all; `None` if nothing
    /// arrived. A delivery is never held back to fill up: under load deliveries are full, when
    /// idle each message goes on at once.
    pub fn poll(&mut self, max_messages: usize, max_wait: Duration) -> Option<Delivery> {
        /// Once a message is in, the clock is read only every this many polls: it only bounds
        /// how long a delivery drains what is already fetched.
        const CLOCK_EVERY: usize = 64;
        // Tokens held back for dead letters may be storable now.
        self.store_ready();
        let max_messages = max_messages.max(1);
        let mut now = Instant::now();
        let deadline = now + max_wait;
        let hint = self.last_len.min(max_messages);
        let mut metrics = Vec::with_capacity(hint);
        let mut changes = Vec::new();
        let mut offsets = Offsets::default();
        let mut polls = 0usize;
        let mut len = 0usize;
        while len < max_messages {
            let wait = if len == 0 {
                deadline.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            let Some(res) = self.consumer.poll(wait) else {
                break;
            };
            polls += 1;
            match res {
                Ok(m) => {
                    let (topic, is_changes) = topic_index(&mut self.topics, m.topic());
                    let msg = KafkaMessage {
                        topic: self.topics[topic].0.clone(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        timestamp_ms: m.timestamp().to_millis(),
                        headers: if self.read_headers {
                            m.headers().map(copy_headers).unwrap_or_default()
                        } else {
                            Vec::new()
                        },
                    };
                    offsets.note(topic, msg.partition, msg.offset);
                    if is_changes {
                        changes.push(msg);
                    } else {
                        metrics.push(msg);
                    }
                    len += 1;
                }
                Err(e) => {
                    lock(&self.shared.health).last_error = Some(format!("consume: {e}"));
                }
            }
            if len == 0 || polls % CLOCK_EVERY == 0 {
                now = Instant::now();
                if now >= deadline {
                    break;
                }
            }
        }
        if len == 0 {
            return None;
        }
        self.last_len = len;
        let mut token = AckToken::default();
        for (topic, partition, offset) in offsets.seen {
            token.note(&self.topics[topic].0, partition, offset);
        }
        Some(Delivery {
            metrics,
            changes,
            token,
        })
    }

    /// Writes a rejected message to the dead-letter topic (see the module docs). Does not wait
    /// for the broker; [`ack`](Self::ack) does, before storing the message's offset.
    pub fn dead_letter(
        &mut self,
        msg: &KafkaMessage,
        reason: &str,
        detail: &str,
    ) -> Result<(), KafkaError> {
        let Some((producer, topic)) = &self.dead_letters else {
            return Ok(());
        };
        let partition = msg.partition.to_string();
        let offset = msg.offset.to_string();
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: HEADER_REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: HEADER_DETAIL,
                value: Some(detail),
            })
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(&*msg.topic),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(offset.as_str()),
            });
        let seq = self.next_seq;
        self.next_seq += 1;
        lock(&self.shared.outstanding).insert(seq);
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, seq)
            .payload(msg.payload.as_slice())
            .headers(headers);
        if let Some(k) = &msg.key {
            record = record.key(k.as_slice());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && Instant::now() < deadline =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    lock(&self.shared.outstanding).remove(&seq);
                    return Err(client_err("writing a dead letter")(e));
                }
            }
        }
        lock(&self.shared.dead).sent += 1;
        Ok(())
    }

    /// Acknowledges a delivery: its offsets (offset + 1 per partition) are stored, for the next
    /// commit, once every dead letter written before this call is confirmed; until then the
    /// token waits (checked again on every `ack` and `poll`). Never moves a partition back.
    pub fn ack(&mut self, token: AckToken) {
        self.deferred.push_back(Deferred {
            token,
            dead_letters_upto: self.next_seq.checked_sub(1),
        });
        self.store_ready();
    }

    /// Acknowledgements still waiting for dead letters.
    pub fn pending_acks(&self) -> usize {
        self.deferred.len()
    }

    fn store_ready(&mut self) {
        let oldest_outstanding = lock(&self.shared.outstanding).first().copied();
        while let Some(front) = self.deferred.front() {
            let blocked = matches!(
                (oldest_outstanding, front.dead_letters_upto),
                (Some(oldest), Some(upto)) if oldest <= upto
            );
            if blocked {
                break;
            }
            if let Some(d) = self.deferred.pop_front() {
                self.store(&d.token);
            }
        }
    }

    fn store(&self, token: &AckToken) {
        let mut stored = lock(&self.shared.stored);
        for (topic, partition, next) in token.offsets() {
            let key = (topic.to_owned(), partition);
            if stored.get(&key).is_some_and(|&s| s >= next) {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(topic, partition, Offset::Offset(next))
                .is_err()
            {
                continue;
            }
            match self.consumer.store_offsets(&tpl) {
                Ok(()) => {
                    stored.insert(key, next);
                }
                // The partition was revoked since: its new owner reads it from the last commit,
                // which is at-least-once, so there is nothing to do.
                Err(e) => {
                    lock(&self.shared.health).last_error =
                        Some(format!("storing offset {next} of {topic}/{partition}: {e}"));
                }
            }
        }
    }

    /// Commits the stored offsets now and waits for the broker (also done by auto-commit, on
    /// rebalances and on [`close`](Self::close)).
    pub fn commit(&self) -> Result<(), KafkaError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => Ok(()),
            Err(e) => Err(client_err("committing offsets")(e)),
        }
    }

    /// Waits up to `timeout` for outstanding dead letters, stores what can be stored, commits
    /// (unless commits follow checkpoints), and leaves the group.
    pub fn close(mut self, timeout: Duration) -> Result<(), KafkaError> {
        if let Some((p, _)) = &self.dead_letters {
            // Failures are counted by the delivery callback; storing proceeds either way.
            let _ = p.flush(timeout);
        }
        self.store_ready();
        let res = if self.commit_on_close {
            self.commit()
        } else {
            Ok(())
        };
        self.consumer.unsubscribe();
        res
    }

    /// True while a broker connection is up (see the module docs).
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.health).connected
    }

    /// Lag of every assigned partition, from the latest statistics.
    pub fn lag(&self) -> Vec<PartitionLag> {
        lock(&self.shared.health).lag.clone()
    }

    /// Per subscribed topic, its partitions and how many this member holds, from the latest
    /// statistics.
    pub fn coverage(&self) -> Vec<TopicCoverage> {
        lock(&self.shared.health).coverage.clone()
    }

    /// Partitions currently assigned to this member.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        lock(&self.shared.health).assigned.iter().cloned().collect()
    }

    /// The most recent client error, for logs and health pages.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.health).last_error.clone()
    }

    pub fn dead_letter_stats(&self) -> DeadLetterStats {
        *lock(&self.shared.dead)
    }

    /// The group's committed offsets of the assigned partitions, asked of the broker.
    pub fn committed(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(String, i32, Option<i64>)>, KafkaError> {
        let tpl = self
            .consumer
            .committed(timeout)
            .map_err(client_err("reading committed offsets"))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.topic().to_owned(), e.partition(), o)
            })
            .collect())
    }
}

/// Delivery counters of a [`KafkaProducer`].
#[derive(Debug, Default)]
struct ProducerShared {
    delivered: Mutex<u64>,
    failed: Mutex<(u64, Option<String>)>,
}

struct ProducerCtx {
    shared: Arc<ProducerShared>,
}

impl ClientContext for ProducerCtx {}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => *lock(&self.shared.delivered) += 1,
            Err((e, _)) => {
                let mut f = lock(&self.shared.failed);
                f.0 += 1;
                f.1 = Some(e.to_string());
            }
        }
    }
}

/// A producer for `spikewatch produce`, tests and demos. Messages are keyed by the caller
/// (spikewatch uses `cluster/service`, so librdkafka's key hash keeps one series on one
/// partition) or sent to an explicit partition.
pub struct KafkaProducer {
    inner: ThreadedProducer<ProducerCtx>,
    shared: Arc<ProducerShared>,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("delivered", &self.delivered())
            .finish_non_exhaustive()
    }
}

impl KafkaProducer {
    /// A producer for `brokers` with librdkafka properties passed through (`linger.ms` defaults
    /// to 5, `compression.type` to `lz4`... only if not given).
    pub fn new(brokers: &str, passthrough: &BTreeMap<String, String>) -> Result<Self, KafkaError> {
        let mut props = BTreeMap::new();
        props.insert("linger.ms".to_owned(), "5".to_owned());
        props.insert(
            "queue.buffering.max.messages".to_owned(),
            "200000".to_owned(),
        );
        props.extend(passthrough.clone());
        let shared = Arc::new(ProducerShared::default());
        let inner = base_config(brokers, &props)
            .create_with_context(ProducerCtx {
                shared: shared.clone(),
            })
            .map_err(client_err("creating the producer"))?;
        Ok(Self { inner, shared })
    }

    /// Queues one message, waiting while librdkafka's queue is full (up to 60 s).
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        partition: Option<i32>,
        payload: &[u8],
    ) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((e, back))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && Instant::now() < deadline =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(client_err("producing")(e)),
            }
        }
    }

    /// Number of partitions of a topic (asks the broker; creates the topic if the broker
    /// auto-creates topics).
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> Result<usize, KafkaError> {
        let md = self
            .inner
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(client_err("reading topic metadata"))?;
        let t = md.topics().iter().find(|t| t.name() == topic);
        match t {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len())
            }
            Some(t) => Err(KafkaError::Client {
                context: "reading topic metadata",
                detail: format!("topic {topic}: {:?}", t.error()),
            }),
            None => Err(KafkaError::Client {
                context: "reading topic metadata",
                detail: format!("no topic {topic}"),
            }),
        }
    }

    /// Waits until every queued message is delivered (or failed), up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner
            .flush(timeout)
            .map_err(|e| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut) => KafkaError::Timeout {
                    what: "flushing the producer",
                    timeout,
                },
                _ => client_err("flushing the producer")(e),
            })
    }

    /// Messages the broker confirmed.
    pub fn delivered(&self) -> u64 {
        *lock(&self.shared.delivered)
    }

    /// Messages that failed, and the last failure.
    pub fn failed(&self) -> (u64, Option<String>) {
        lock(&self.shared.failed).clone()
    }
}

/// An in-process Kafka cluster (librdkafka's mock brokers, `rdkafka::mocking`) for tests,
/// benchmarks and demos without a broker. Brokers listen on 127.0.0.1; topics are created
/// explicitly or on first use. Not `Send`: keep it on the thread that made it, and keep it alive
/// while clients use it.
pub struct MockBroker {
    cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl std::fmt::Debug for MockBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBroker")
            .field("bootstrap_servers", &self.cluster.bootstrap_servers())
            .finish()
    }
}

impl MockBroker {
    /// A cluster of `brokers` brokers (ids 1..=brokers).
    pub fn new(brokers: i32) -> Result<Self, KafkaError> {
        let cluster = rdkafka::mocking::MockCluster::new(brokers)
            .map_err(client_err("starting the mock cluster"))?;
        Ok(Self { cluster })
    }

    /// The `bootstrap.servers` of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        self.cluster
            .create_topic(topic, partitions, 1)
            .map_err(client_err("creating a mock topic"))
    }

    /// Takes every broker down (connections dropped and refused) or brings them back up.
    pub fn set_up(&self, up: bool) -> Result<(), KafkaError> {
        if up {
            self.cluster
                .broker_up(-1)
                .map_err(client_err("mock brokers up"))
        } else {
            self.cluster
                .broker_down(-1)
                .map_err(client_err("mock brokers down"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::BaseProducer;

    /// (topic, partition, offset) of a delivered message.
    type Coord<'a> = (&'a str, i32, i64);

    /// What a token must hold for these messages: offset + 1 of the newest message of each
    /// (topic, partition).
    fn want_offsets(msgs: &[Coord<'_>]) -> BTreeMap<(String, i32), i64> {
        let mut want = BTreeMap::new();
        for &(t, p, o) in msgs {
            let e = want.entry((t.to_owned(), p)).or_insert(o + 1);
            *e = (*e).max(o + 1);
        }
        want
    }

    fn token_offsets(token: &AckToken) -> BTreeMap<(String, i32), i64> {
        token
            .offsets()
            .map(|(t, p, o)| ((t.to_owned(), p), o))
            .collect()
    }

    #[test]
    fn a_delivery_token_holds_the_next_offset_of_every_partition_it_delivered() {
        let cases: [(&str, &[Coord<'_>]); 5] = [
            ("one message", &[("m", 0, 7)]),
            (
                "one partition in order",
                &[("m", 2, 4), ("m", 2, 5), ("m", 2, 6)],
            ),
            (
                "partitions interleaved",
                &[
                    ("m", 0, 10),
                    ("m", 1, 3),
                    ("m", 0, 11),
                    ("m", 1, 4),
                    ("m", 2, 0),
                    ("m", 0, 12),
                ],
            ),
            (
                "same partition number on two topics",
                &[("m", 0, 100), ("c", 0, 2), ("m", 0, 101), ("c", 0, 3)],
            ),
            // Never sent by librdkafka within a partition, but the token must not go back.
            (
                "an older offset after a newer one",
                &[("m", 1, 9), ("m", 1, 8)],
            ),
        ];
        for (name, msgs) in cases {
            let mut topics: Vec<(Arc<str>, bool)> = vec![(Arc::from("m"), false)];
            let mut offsets = Offsets::default();
            for &(t, p, o) in msgs {
                let (i, _) = topic_index(&mut topics, t);
                offsets.note(i, p, o);
            }
            let mut token = AckToken::default();
            for (i, p, o) in offsets.seen {
                token.note(&topics[i].0, p, o);
            }
            assert_eq!(token_offsets(&token), want_offsets(msgs), "case {name}");
        }
    }

    #[test]
    fn merged_tokens_keep_the_furthest_offset_of_each_partition() {
        let topic: Arc<str> = Arc::from("m");
        let mut a = AckToken::default();
        a.note(&topic, 0, 10);
        a.note(&topic, 1, 3);
        let mut b = AckToken::default();
        b.note(&topic, 0, 4);
        b.note(&topic, 2, 8);
        a.merge(b);
        assert_eq!(
            token_offsets(&a),
            want_offsets(&[("m", 0, 10), ("m", 0, 4), ("m", 1, 3), ("m", 2, 8)])
        );
    }

    /// Produces `n` keyed messages with a header to `topic` partition `partition`.
    fn produce_with_headers(brokers: &str, topic: &str, partition: i32, n: usize) {
        let p: BaseProducer = base_config(brokers, &BTreeMap::new())
            .create()
            .expect("producer");
        for i in 0..n {
            let key = format!("k{i}");
            let payload = format!("{topic} {i}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "trace-id",
                value: Some(key.as_str()),
            });
            p.send(
                BaseRecord::<'_, str, str>::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        }
        p.flush(Duration::from_secs(10)).expect("flush");
    }

    /// Polls `source` in deliveries of at most `max` until `n` messages arrived.
    fn drain(source: &mut KafkaSource, max: usize, n: usize) -> Vec<Delivery> {
        let mut out: Vec<Delivery> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.iter().map(Delivery::len).sum::<usize>() < n {
            assert!(
                Instant::now() < deadline,
                "timed out: {:?}",
                source.last_error()
            );
            if let Some(d) = source.poll(max, Duration::from_millis(100)) {
                assert!(d.len() <= max, "a delivery of {} > {max}", d.len());
                out.push(d);
            }
        }
        out
    }

    #[test]
    fn poll_sorts_topics_copies_headers_only_when_asked_and_tokens_cover_each_delivery() {
        let broker = MockBroker::new(1).expect("mock cluster");
        let brokers = broker.bootstrap_servers();
        broker.create_topic("metrics", 2).expect("topic");
        broker.create_topic("changes", 1).expect("topic");
        produce_with_headers(&brokers, "metrics", 0, 7);
        produce_with_headers(&brokers, "metrics", 1, 5);
        produce_with_headers(&brokers, "changes", 0, 2);
        for read_headers in [true, false] {
            let settings = KafkaSettings {
                brokers: brokers.clone(),
                group_id: format!("g-headers-{read_headers}"),
                metrics_topics: vec![TopicSettings {
                    topic: "metrics".into(),
                    format: FormatKind::Json,
                }],
                changes_topic: Some("changes".into()),
                dead_letter_topic: None,
                read_headers,
                librdkafka: [("session.timeout.ms", "6000")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ..KafkaSettings::default()
            };
            let mut source = KafkaSource::new(&settings).expect("source");
            let deliveries = drain(&mut source, 3, 14);
            let mut metrics = 0;
            for d in &deliveries {
                let coords: Vec<Coord<'_>> = d
                    .metrics
                    .iter()
                    .chain(&d.changes)
                    .map(|m| (&*m.topic, m.partition, m.offset))
                    .collect();
                assert_eq!(
                    token_offsets(&d.token),
                    want_offsets(&coords),
                    "read_headers {read_headers}: token of {coords:?}"
                );
                metrics += d.metrics.len();
                for (m, want_topic) in d
                    .metrics
                    .iter()
                    .map(|m| (m, "metrics"))
                    .chain(d.changes.iter().map(|m| (m, "changes")))
                {
                    assert_eq!(&*m.topic, want_topic);
                    let i = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default())
                        .trim_start_matches('k')
                        .to_owned();
                    assert_eq!(m.payload, format!("{want_topic} {i}").into_bytes());
                    let header = m.header("trace-id").map(<[u8]>::to_vec);
                    let want = read_headers.then(|| format!("k{i}").into_bytes());
                    assert_eq!(header, want, "read_headers {read_headers}");
                }
            }
            assert_eq!(metrics, 12, "read_headers {read_headers}");
            source.close(Duration::from_secs(5)).expect("close");
        }
    }
}
