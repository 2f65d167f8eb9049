//! The Kafka driver against librdkafka's in-process mock cluster (`rdkafka::mocking`): no broker
//! to install, but the real client code paths (consumer group, offset store and commit, producer
//! retries, reconnects).
//!
//! - The broker goes down mid-stream and comes back: no sample is lost, and once everything is
//!   acknowledged and committed a new member of the group gets none of it again.
//! - Unacknowledged messages are read again by the next member (at least once).
//! - With commits after checkpoints, nothing is committed until the caller's checkpoint is
//!   durable (not by auto-commit, a revoke or closing), and then exactly what was processed.
//! - A poison message goes to the dead-letter topic with its reason and source coordinates, and
//!   the messages after it on the same partition are processed.
//!
//! `MockCluster` is `!Send`, so every test drives everything from its own thread.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::samples_of;
use ingest::format::{Format, MessageDecoder, MessageDecoderOptions};
use ingest::kafka::{
    KafkaMessage, KafkaProducer, KafkaSettings, KafkaSource, TopicSettings, HEADER_DETAIL,
    HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC,
};
use ingest::{arrow_ipc, DecoderOptions, FormatKind, Sample};
use rdkafka::mocking::MockCluster;

const T0: i64 = 1_770_931_200_000;
const METRICS: &str = "metrics";
const CHANGES: &str = "changes";
const DLQ: &str = "dlq";

/// A mock cluster with the three topics (metrics with 3 partitions).
fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    c.create_topic(METRICS, 3, 1).unwrap();
    c.create_topic(CHANGES, 1, 1).unwrap();
    c.create_topic(DLQ, 1, 1).unwrap();
    c
}

fn settings(brokers: &str, group: &str, format: FormatKind) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_owned(),
        group_id: group.to_owned(),
        metrics_topics: vec![TopicSettings {
            topic: METRICS.into(),
            format,
        }],
        changes_topic: Some(CHANGES.into()),
        dead_letter_topic: Some(DLQ.into()),
        librdkafka: [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("auto.commit.interval.ms", "200"),
            ("reconnect.backoff.max.ms", "500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..KafkaSettings::default()
    }
}

fn producer(brokers: &str) -> KafkaProducer {
    KafkaProducer::new(brokers, &BTreeMap::new()).unwrap()
}

/// Sample `i` of a small fleet: 6 series, one tick every 6 samples; every sample unique.
fn sample(i: usize) -> Sample {
    let mut s = Sample::new(
        T0 + (i / 6) as i64 * 10_000,
        format!("prod-{}", i % 3),
        if i % 2 == 0 { "api" } else { "web" },
        1_000 + i as u64,
        i as u64 % 7,
    );
    s.retries = Some(i as u64 % 5);
    s
}

fn key(s: &Sample) -> Vec<u8> {
    format!("{}/{}", s.cluster, s.service).into_bytes()
}

fn produce_json(p: &KafkaProducer, range: std::ops::Range<usize>) {
    for i in range {
        let s = sample(i);
        p.send(METRICS, Some(&key(&s)), None, s.to_json_line().as_bytes())
            .unwrap();
    }
}

fn decoder() -> MessageDecoder {
    MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            now_ms: Some(T0 + 86_400_000),
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
    })
}

/// What a consuming loop saw.
#[derive(Debug, Default)]
struct Seen {
    samples: Vec<Sample>,
    messages: Vec<KafkaMessage>,
    rejected: Vec<(KafkaMessage, String)>,
}

/// A sample's (ts, cluster, service): what the sets below compare.
type SampleKey = (i64, String, String);

fn key_of(s: &Sample) -> SampleKey {
    (s.ts_ms, s.cluster.clone(), s.service.clone())
}

/// The keys of samples `range` (see [`sample`]).
fn produced(range: std::ops::Range<usize>) -> BTreeSet<SampleKey> {
    range.map(|i| key_of(&sample(i))).collect()
}

impl Seen {
    fn sample_set(&self) -> BTreeSet<SampleKey> {
        self.samples.iter().map(key_of).collect()
    }
}

/// Consumes like the service does: decode every message of a delivery, dead-letter the
/// rejected ones, "process" the batch, then acknowledge (unless `ack` is false). Stops once
/// `until(&seen)` holds, or fails the test after `timeout`.
fn consume(
    source: &mut KafkaSource,
    ack: bool,
    timeout: Duration,
    until: impl Fn(&Seen) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let mut dec = decoder();
    let deadline = Instant::now() + timeout;
    while !until(&seen) {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {} samples, {} rejected, last error {:?}",
            seen.samples.len(),
            seen.rejected.len(),
            source.last_error()
        );
        let Some(d) = source.poll(500, Duration::from_millis(100)) else {
            continue;
        };
        for m in &d.metrics {
            let format = source.format_of(&m.topic).unwrap().clone();
            if let Err(r) = dec.decode(&format, &m.payload) {
                source.dead_letter(m, r.reason.as_str(), &r.detail).unwrap();
                seen.rejected
                    .push((m.clone(), r.reason.as_str().to_owned()));
            }
        }
        let batches: Vec<_> = dec.flush().into_iter().collect();
        seen.samples.extend(samples_of(&batches, dec.interner()));
        seen.messages.extend(d.metrics.iter().cloned());
        if ack {
            source.ack(d.token);
        }
    }
    seen
}

/// Polls for `quiet` and fails if any metrics message arrives.
fn assert_nothing_more(source: &mut KafkaSource, quiet: Duration, what: &str) {
    let end = Instant::now() + quiet;
    while Instant::now() < end {
        if let Some(d) = source.poll(100, Duration::from_millis(100)) {
            let offsets: Vec<_> = d.metrics.iter().map(|m| (m.partition, m.offset)).collect();
            assert!(d.metrics.is_empty(), "{what}: re-delivered {offsets:?}");
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn broker_down_and_up_mid_stream_loses_nothing_and_acked_is_not_redelivered() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let p = producer(&brokers);
    const FIRST: usize = 300;
    const TOTAL: usize = 600;
    produce_json(&p, 0..FIRST);
    p.flush(Duration::from_secs(10)).unwrap();

    let mut source = KafkaSource::new(&settings(&brokers, "g-outage", FormatKind::Json)).unwrap();
    // Consume part of the first half, then take the broker away.
    let mut seen = consume(&mut source, true, Duration::from_secs(30), |s| {
        s.samples.len() >= FIRST / 2
    });
    wait_for(
        "the consumer to report a connection",
        Duration::from_secs(10),
        || source.is_connected(),
    );
    c.broker_down(-1).unwrap();
    // The second half is produced while the broker is down: the producer holds it and retries.
    produce_json(&p, FIRST..TOTAL);
    wait_for(
        "the consumer to notice the outage",
        Duration::from_secs(15),
        || {
            // Polling serves librdkafka's callbacks (errors, statistics).
            if let Some(d) = source.poll(500, Duration::from_millis(50)) {
                // Messages fetched before the outage may still be in the local queue.
                let mut dec = decoder();
                for m in &d.metrics {
                    dec.decode(&Format::Json, &m.payload).unwrap();
                }
                let batches: Vec<_> = dec.flush().into_iter().collect();
                seen.samples.extend(samples_of(&batches, dec.interner()));
                source.ack(d.token);
            }
            !source.is_connected()
        },
    );
    c.broker_up(-1).unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(
        p.failed().0,
        0,
        "producer lost messages: {:?}",
        p.failed().1
    );

    let already = seen.sample_set();
    let rest = consume(&mut source, true, Duration::from_secs(60), |s| {
        let mut all = already.clone();
        all.extend(s.sample_set());
        all.len() >= TOTAL
    });
    // Health follows: connected again within a statistics interval or two.
    wait_for("the consumer to reconnect", Duration::from_secs(10), || {
        let d = source.poll(100, Duration::from_millis(50));
        assert!(
            d.is_none_or(|d| d.metrics.is_empty()),
            "nothing left to read"
        );
        source.is_connected()
    });
    seen.samples.extend(rest.samples);
    let want = produced(0..TOTAL);
    assert_eq!(
        seen.sample_set(),
        want,
        "every produced sample was consumed"
    );
    // The values came through untouched, not just the keys.
    let by_key: BTreeMap<_, _> = seen
        .samples
        .iter()
        .map(|s| (key_of(s), s.clone()))
        .collect();
    for i in [0, FIRST - 1, FIRST, TOTAL - 1] {
        let s = sample(i);
        assert_eq!(by_key[&key_of(&s)], s);
    }

    // Everything was acknowledged: closing commits it, and the next member of the group starts
    // after it. Only what is produced from now on arrives.
    source.close(Duration::from_secs(10)).unwrap();
    let s = settings(&brokers, "g-outage", FormatKind::Json);
    let mut next = new_member_gets_only(
        &p,
        &s,
        TOTAL..TOTAL + 12,
        "no acknowledged sample came back",
    );
    assert_nothing_more(&mut next, Duration::from_secs(2), "after the commit");
    next.close(Duration::from_secs(10)).unwrap();
}

/// Produces samples `range`, starts a new member of `s`'s group and asserts that it reads
/// exactly those samples, each once (`why` names what must not come back). Returns the member.
fn new_member_gets_only(
    p: &KafkaProducer,
    s: &KafkaSettings,
    range: std::ops::Range<usize>,
    why: &str,
) -> KafkaSource {
    produce_json(p, range.clone());
    p.flush(Duration::from_secs(10)).unwrap();
    let mut member = KafkaSource::new(s).unwrap();
    let fresh = consume(&mut member, true, Duration::from_secs(30), |got| {
        got.samples.len() >= range.len()
    });
    assert_eq!(fresh.sample_set(), produced(range.clone()));
    assert_eq!(fresh.samples.len(), range.len(), "{why}");
    member
}

#[test]
fn unacknowledged_messages_are_read_again_by_the_next_member() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let p = producer(&brokers);
    produce_json(&p, 0..40);
    p.flush(Duration::from_secs(10)).unwrap();

    // A member that reads everything and acknowledges nothing, then goes away (as if the
    // detector never consumed the batch: a crash between poll and ack).
    let s = settings(&brokers, "g-crash", FormatKind::Json);
    let mut first = KafkaSource::new(&s).unwrap();
    let read = consume(&mut first, false, Duration::from_secs(30), |s| {
        s.samples.len() >= 40
    });
    assert_eq!(read.samples.len(), 40);
    first.close(Duration::from_secs(10)).unwrap();

    let mut second = KafkaSource::new(&s).unwrap();
    let again = consume(&mut second, true, Duration::from_secs(30), |s| {
        s.samples.len() >= 40
    });
    assert_eq!(again.sample_set(), read.sample_set());
    second.close(Duration::from_secs(10)).unwrap();
}

/// The group's committed offsets of `source`'s partitions of the metrics topic, by partition
/// (`None`: nothing committed).
fn committed_metrics(source: &KafkaSource) -> BTreeMap<i32, Option<i64>> {
    source
        .committed(Duration::from_secs(10))
        .unwrap()
        .into_iter()
        .filter(|(topic, _, _)| topic == METRICS)
        .map(|(_, partition, offset)| (partition, offset))
        .collect()
}

#[test]
fn after_a_checkpoint_only_the_checkpoint_commits() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let p = producer(&brokers);
    produce_json(&p, 0..40);
    p.flush(Duration::from_secs(10)).unwrap();
    let s = KafkaSettings {
        commit_after_checkpoint: true,
        ..settings(&brokers, "g-checkpoint", FormatKind::Json)
    };

    // A member that processes and acknowledges everything but never checkpoints, for several
    // auto-commit intervals (200 ms here), then leaves: nothing may be committed, by the
    // interval, the revoke of its partitions or `close`.
    let mut first = KafkaSource::new(&s).unwrap();
    let read = consume(&mut first, true, Duration::from_secs(30), |s| {
        s.samples.len() >= 40
    });
    assert_eq!(read.samples.len(), 40);
    assert_nothing_more(&mut first, Duration::from_secs(1), "before any commit");
    let committed = committed_metrics(&first);
    assert_eq!(
        committed.len(),
        3,
        "all three partitions assigned: {committed:?}"
    );
    assert!(
        committed.values().all(Option::is_none),
        "committed before a checkpoint: {committed:?}"
    );
    first.close(Duration::from_secs(10)).unwrap();

    // The next member reads it all again (the restored checkpoint's dedup absorbs that), and
    // once its checkpoint is durable it commits what it processed: the end of every partition.
    let mut second = KafkaSource::new(&s).unwrap();
    let again = consume(&mut second, true, Duration::from_secs(30), |s| {
        s.samples.len() >= 40
    });
    assert_eq!(again.sample_set(), read.sample_set());
    let ends: BTreeMap<i32, i64> = again.messages.iter().fold(BTreeMap::new(), |mut m, msg| {
        let e = m.entry(msg.partition).or_insert(0);
        *e = (*e).max(msg.offset + 1);
        m
    });
    second.commit().unwrap();
    let committed = committed_metrics(&second);
    let want: BTreeMap<i32, Option<i64>> = ends.iter().map(|(&p, &o)| (p, Some(o))).collect();
    assert_eq!(committed, want, "the commit covers what was processed");
    second.close(Duration::from_secs(10)).unwrap();

    // A third member starts after the commit: only what is produced from now on arrives.
    let third = new_member_gets_only(&p, &s, 40..52, "nothing committed came back");
    third.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn poison_message_goes_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let p = producer(&brokers);
    // Everything on partition 1, so "the messages after it" is well defined.
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("good before", sample(0).to_json_line().into_bytes(), None),
        ("not JSON", b"{\"ts\":".to_vec(), Some("malformed_json")),
        ("good after 1", sample(1).to_json_line().into_bytes(), None),
        (
            "errors over requests",
            Sample::new(T0, "prod-0", "api", 5, 9)
                .to_json_line()
                .into_bytes(),
            Some("errors_exceed_requests"),
        ),
        ("not UTF-8", vec![0xff, 0xfe, b'{'], Some("not_utf8")),
        ("good after 2", sample(2).to_json_line().into_bytes(), None),
    ];
    for (_, payload, _) in &cases {
        p.send(METRICS, Some(b"poison/test"), Some(1), payload)
            .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();

    let s = settings(&brokers, "g-poison", FormatKind::Json);
    let mut source = KafkaSource::new(&s).unwrap();
    let seen = consume(&mut source, true, Duration::from_secs(30), |s| {
        s.messages.len() >= cases.len()
    });
    let offsets: BTreeMap<_, _> = seen
        .messages
        .iter()
        .map(|m| (m.payload.clone(), m.offset))
        .collect();
    assert_eq!(
        seen.samples,
        vec![sample(0), sample(1), sample(2)],
        "the good messages around the poison ones are processed, in order"
    );
    let rejected: Vec<_> = seen.rejected.iter().map(|(_, r)| r.as_str()).collect();
    let want_rejected: Vec<_> = cases.iter().filter_map(|(_, _, r)| *r).collect();
    assert_eq!(rejected, want_rejected);
    // The partition is not stalled: closing commits past the last message.
    source.close(Duration::from_secs(10)).unwrap();

    // Read the dead-letter topic back with a plain member of another group.
    let dlq = KafkaSettings {
        metrics_topics: vec![TopicSettings {
            topic: DLQ.into(),
            format: FormatKind::Json,
        }],
        changes_topic: None,
        dead_letter_topic: None,
        ..settings(&brokers, "g-dlq-reader", FormatKind::Json)
    };
    let mut reader = KafkaSource::new(&dlq).unwrap();
    let mut letters: Vec<KafkaMessage> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while letters.len() < want_rejected.len() {
        assert!(Instant::now() < deadline, "dead letters: {letters:?}");
        if let Some(d) = reader.poll(100, Duration::from_millis(100)) {
            letters.extend(d.metrics);
        }
    }
    for ((name, payload, reason), letter) in
        cases.iter().filter(|(_, _, r)| r.is_some()).zip(&letters)
    {
        let header =
            |h: &str| String::from_utf8(letter.header(h).unwrap_or_default().to_vec()).unwrap();
        assert_eq!(&letter.payload, payload, "case {name}: original payload");
        assert_eq!(
            letter.key.as_deref(),
            Some(&b"poison/test"[..]),
            "case {name}"
        );
        assert_eq!(Some(header(HEADER_REASON).as_str()), *reason, "case {name}");
        assert_eq!(header(HEADER_TOPIC), METRICS, "case {name}");
        assert_eq!(header(HEADER_PARTITION), "1", "case {name}");
        assert_eq!(
            header(HEADER_OFFSET),
            offsets[payload].to_string(),
            "case {name}: source offset"
        );
        assert!(!header(HEADER_DETAIL).is_empty(), "case {name}: detail");
    }
    assert_nothing_more(&mut reader, Duration::from_millis(500), "dead-letter topic");
    reader.close(Duration::from_secs(10)).unwrap();

    // The group's offset on partition 1 is past the last message: a restart reads nothing.
    let mut again = KafkaSource::new(&s).unwrap();
    assert_nothing_more(&mut again, Duration::from_secs(3), "after the poison run");
    again.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn arrow_messages_and_change_events_arrive_on_their_topics() {
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let p = producer(&brokers);
    let rows: Vec<Sample> = (0..30).map(sample).collect();
    for chunk in rows.chunks(10) {
        let msg = arrow_ipc::encode(chunk).unwrap();
        p.send(METRICS, Some(b"batch"), None, &msg).unwrap();
    }
    let change = r#"{"ts":"2026-02-12T21:19:30Z","kind":"deploy","service":"routing","clusters":["*"],"id":"d-1"}"#;
    p.send(CHANGES, None, None, change.as_bytes()).unwrap();
    p.flush(Duration::from_secs(10)).unwrap();

    let mut source =
        KafkaSource::new(&settings(&brokers, "g-arrow", FormatKind::ArrowIpc)).unwrap();
    let mut changes = Vec::new();
    let mut dec = decoder();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < rows.len() || changes.is_empty() {
        assert!(Instant::now() < deadline, "{} rows, {changes:?}", got.len());
        let Some(d) = source.poll(100, Duration::from_millis(100)) else {
            continue;
        };
        for m in &d.metrics {
            assert!(matches!(source.format_of(&m.topic), Some(Format::ArrowIpc)));
            dec.decode(&Format::ArrowIpc, &m.payload).unwrap();
        }
        changes.extend(d.changes.iter().map(|m| m.payload.clone()));
        let batches: Vec<_> = dec.flush().into_iter().collect();
        got.extend(samples_of(&batches, dec.interner()));
        source.ack(d.token);
    }
    got.sort_by_key(key_of);
    let mut want = rows.clone();
    want.sort_by_key(key_of);
    assert_eq!(got, want);
    assert_eq!(changes, vec![change.as_bytes().to_vec()]);
    source.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_second_member_of_the_group_shows_as_partitions_not_held() {
    // spikewatch expects to be its group's only member; a second one (a replica started with
    // the same group id) takes some of the partitions, and `coverage` is how it shows.
    let c = cluster();
    let brokers = c.bootstrap_servers();
    let s = settings(&brokers, "g-two", FormatKind::Json);
    let metrics_coverage = |m: &KafkaSource| {
        m.coverage()
            .into_iter()
            .find(|c| c.topic == METRICS)
            .map(|c| (c.partitions, c.assigned))
    };
    let mut first = KafkaSource::new(&s).unwrap();
    wait_for(
        "the first member to hold every partition",
        Duration::from_secs(30),
        || {
            let _ = first.poll(100, Duration::from_millis(50));
            metrics_coverage(&first) == Some((3, 3))
        },
    );
    let mut second = KafkaSource::new(&s).unwrap();
    wait_for(
        "the two members to share the partitions",
        Duration::from_secs(60),
        || {
            let _ = first.poll(100, Duration::from_millis(50));
            let _ = second.poll(100, Duration::from_millis(50));
            match (metrics_coverage(&first), metrics_coverage(&second)) {
                (Some((3, a)), Some((3, b))) => a > 0 && b > 0 && a + b == 3,
                _ => false,
            }
        },
    );
    // The second member leaves: the first holds the whole topic again.
    second.close(Duration::from_secs(10)).unwrap();
    wait_for(
        "the first member to take every partition back",
        Duration::from_secs(60),
        || {
            let _ = first.poll(100, Duration::from_millis(50));
            metrics_coverage(&first) == Some((3, 3))
        },
    );
    first.close(Duration::from_secs(10)).unwrap();
}
