//! The unified decoder: Arrow IPC and prometheus-kafka-adapter messages into internal batches,
//! sharing one interner with native JSON, and every rejection with its reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use arrow_array::builder::UInt64Builder;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use common::{ms, samples_of, stored};
use ingest::format::{Accepted, Format, Ignored, MessageDecoder, MessageDecoderOptions};
use ingest::prom_adapter::{PromEncoder, PromMapping, PromMappingConfig};
use ingest::{arrow_ipc, DecoderOptions, RejectReason, Sample};

const NOW: i64 = 1_800_000_000_000;

fn decoder() -> MessageDecoder {
    MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            now_ms: Some(NOW),
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
    })
}

fn full_sample(ts: &str, cluster: &str) -> Sample {
    let mut s = Sample::new(ms(ts), cluster, "conversation", 12_000, 4_200);
    s.region = Some("us-east-1".into());
    s.retries = Some(1_800);
    s.latency_p50_ms = Some(85.0);
    s.latency_p99_ms = Some(950.5);
    s.db_pool_active = Some(180);
    s.db_pool_max = Some(200);
    s.db_pool_pending = Some(35);
    s
}

fn drain(dec: &mut MessageDecoder) -> Vec<Sample> {
    let batches: Vec<_> = dec.flush().into_iter().collect();
    samples_of(&batches, dec.interner())
}

#[test]
fn json_and_arrow_give_the_same_rows_and_share_series_ids() {
    let a = full_sample("2026-02-12T21:20:10Z", "prod-use1-a");
    let mut b = Sample::new(ms("2026-02-12T21:20:10Z"), "prod-use1-b", "codex", 50, 0);
    b.interval_ms = 1_500;
    let mut dec = decoder();
    dec.decode(&Format::Json, a.to_json_line().as_bytes())
        .unwrap();
    let ipc = arrow_ipc::encode(&[b.clone(), a.clone()]).unwrap();
    assert_eq!(dec.decode(&Format::ArrowIpc, &ipc), Ok(Accepted::Rows(2)));
    let rows = drain(&mut dec);
    assert_eq!(rows, vec![a.clone(), b, a]);
    // `a` arrived once as JSON and once as Arrow: one series, one id.
    assert_eq!(dec.interner().len(), 2);
}

#[test]
fn each_message_reports_the_event_time_span_it_added() {
    // The span of each message feeds the per-partition event-time frontier; a rejected
    // message adds no rows and so no span, and flushing does not lose a span not yet taken.
    let t = |s: &str| ms(&format!("2026-02-12T21:{s}Z"));
    let mut dec = decoder();
    assert_eq!(dec.take_span(), None);
    let one = full_sample("2026-02-12T21:20:10Z", "a");
    dec.decode(&Format::Json, one.to_json_line().as_bytes())
        .unwrap();
    assert_eq!(dec.take_span(), Some((t("20:10"), t("20:10"))));
    assert_eq!(dec.take_span(), None, "taken");
    let rows = [
        full_sample("2026-02-12T21:21:40Z", "a"),
        full_sample("2026-02-12T21:20:20Z", "b"),
        full_sample("2026-02-12T21:21:00Z", "c"),
    ];
    let ipc = arrow_ipc::encode(&rows).unwrap();
    dec.decode(&Format::ArrowIpc, &ipc).unwrap();
    assert!(dec.decode(&Format::Json, b"{\"ts\":oops}").is_err());
    assert!(dec.flush().is_some());
    assert_eq!(dec.take_span(), Some((t("20:20"), t("21:40"))));
}

#[test]
fn arrow_columns_are_found_by_name_and_optional_ones_may_be_missing() {
    // Only the required columns, in another order, plus a column spikewatch does not know.
    let schema = Arc::new(Schema::new(vec![
        Field::new("errors", DataType::UInt64, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("extra", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("cluster", DataType::Utf8, false),
        Field::new("requests", DataType::UInt64, false),
    ]));
    let ts = ms("2026-02-12T21:20:10Z");
    let cols: Vec<ArrayRef> = vec![
        Arc::new(arrow_array::UInt64Array::from(vec![3])),
        Arc::new(arrow_array::StringArray::from(vec!["api"])),
        Arc::new(Int64Array::from(vec![7])),
        Arc::new(arrow_array::TimestampMillisecondArray::from(vec![ts])),
        Arc::new(arrow_array::StringArray::from(vec!["c1"])),
        Arc::new(arrow_array::UInt64Array::from(vec![30])),
    ];
    let batch = RecordBatch::try_new(schema, cols).unwrap();
    let mut dec = decoder();
    dec.decode(&Format::ArrowIpc, &arrow_ipc::batch_to_ipc(&batch).unwrap())
        .unwrap();
    assert_eq!(drain(&mut dec), vec![Sample::new(ts, "c1", "api", 30, 3)]);
}

/// A one-row wire batch with `requests` replaced by the given column.
fn with_requests(requests: ArrayRef) -> Vec<u8> {
    let good = arrow_ipc::samples_to_batch(&[Sample::new(NOW - 1000, "c", "s", 10, 1)]).unwrap();
    let schema = good.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols = good.columns().to_vec();
    let i = schema.index_of("requests").unwrap();
    fields[i] = Field::new("requests", requests.data_type().clone(), true);
    cols[i] = requests;
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    arrow_ipc::batch_to_ipc(&batch).unwrap()
}

fn without_column(name: &str) -> Vec<u8> {
    let good = arrow_ipc::samples_to_batch(&[Sample::new(NOW - 1000, "c", "s", 10, 1)]).unwrap();
    let i = good.schema().index_of(name).unwrap();
    let mut batch = good.clone();
    batch.remove_column(i);
    arrow_ipc::batch_to_ipc(&batch).unwrap()
}

#[test]
fn arrow_rejections() {
    let good = Sample::new(NOW - 1000, "c", "s", 10, 1);
    let valid_ipc = arrow_ipc::encode(std::slice::from_ref(&good)).unwrap();
    let mut null_requests = UInt64Builder::new();
    null_requests.append_null();
    let row = |f: &dyn Fn(&mut Sample)| {
        let mut s = good.clone();
        f(&mut s);
        // The bad row is the second of three: the whole message goes, naming row 1.
        arrow_ipc::encode(&[good.clone(), s, good.clone()]).unwrap()
    };
    // (name, message, reason, detail fragment)
    let cases: Vec<(&str, Vec<u8>, RejectReason, &str)> = vec![
        (
            "not IPC at all",
            b"{\"ts\":1}".to_vec(),
            RejectReason::MalformedArrow,
            "",
        ),
        (
            "empty message",
            Vec::new(),
            RejectReason::MalformedArrow,
            "schema",
        ),
        (
            "truncated stream",
            valid_ipc[..valid_ipc.len() - 20].to_vec(),
            RejectReason::MalformedArrow,
            "",
        ),
        (
            "missing required column",
            without_column("errors"),
            RejectReason::MissingField,
            "errors",
        ),
        (
            "wrong column type",
            with_requests(Arc::new(Int64Array::from(vec![10]))),
            RejectReason::WrongType,
            "requests must be UInt64",
        ),
        (
            "null in a required column",
            with_requests(Arc::new(null_requests.finish())),
            RejectReason::MissingField,
            "requests is null",
        ),
        (
            "errors exceed requests",
            row(&|s| s.errors = 11),
            RejectReason::ErrorsExceedRequests,
            "row 1: errors 11 > requests 10",
        ),
        (
            "retries exceed requests",
            row(&|s| s.retries = Some(11)),
            RejectReason::RetriesExceedRequests,
            "row 1",
        ),
        (
            "empty cluster",
            row(&|s| s.cluster.clear()),
            RejectReason::InvalidKey,
            "cluster is empty",
        ),
        (
            "service over 128 bytes",
            row(&|s| s.service = "s".repeat(129)),
            RejectReason::InvalidKey,
            "129 bytes",
        ),
        (
            "timestamp far in the future",
            row(&|s| s.ts_ms = NOW + 25 * 3_600_000),
            RejectReason::FutureTimestamp,
            "ahead of now",
        ),
        (
            "timestamp beyond year 9999",
            row(&|s| s.ts_ms = i64::MAX),
            RejectReason::InvalidTimestamp,
            "outside the years",
        ),
        (
            "zero interval",
            row(&|s| s.interval_ms = 0),
            RejectReason::InvalidInterval,
            "interval_ms",
        ),
        (
            "NaN latency",
            row(&|s| s.latency_p99_ms = Some(f64::NAN)),
            RejectReason::NotFinite,
            "latency_p99_ms",
        ),
        (
            "negative latency",
            row(&|s| s.latency_p50_ms = Some(-1.0)),
            RejectReason::InvalidValue,
            "negative",
        ),
    ];
    for (name, msg, reason, detail) in cases {
        let mut dec = decoder();
        let err = dec.decode(&Format::ArrowIpc, &msg).unwrap_err();
        assert_eq!(err.reason, reason, "case {name:?}: {err}");
        assert!(err.detail.contains(detail), "case {name:?}: {err}");
        assert!(dec.is_empty(), "case {name:?}: rows were appended");
        assert!(
            dec.interner().is_empty(),
            "case {name:?}: a series was interned"
        );
    }
}

#[test]
fn arrow_size_limit_is_its_own() {
    let msg = arrow_ipc::encode(&[Sample::new(NOW - 1000, "c", "s", 10, 1)]).unwrap();
    let mut dec = MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            now_ms: Some(NOW),
            // Smaller than the Arrow message: the JSON limit must not apply to Arrow.
            max_message_bytes: 16,
            ..DecoderOptions::default()
        },
        max_arrow_bytes: msg.len(),
    });
    assert_eq!(dec.decode(&Format::ArrowIpc, &msg), Ok(Accepted::Rows(1)));
    let mut bigger = msg.clone();
    bigger.extend_from_slice(&[0; 8]);
    assert_eq!(
        dec.decode(&Format::ArrowIpc, &bigger).unwrap_err().reason,
        RejectReason::TooLarge
    );
}

#[test]
fn arrow_stream_without_rows_is_ignored_not_rejected() {
    let msg = arrow_ipc::encode(&[]).unwrap();
    let mut dec = decoder();
    assert_eq!(
        dec.decode(&Format::ArrowIpc, &msg),
        Ok(Accepted::Ignored(Ignored::Empty))
    );
}

// ---- prometheus-kafka-adapter ----

fn prom() -> Format {
    Format::PromAdapter(Arc::new(PromMapping::default()))
}

/// One adapter message.
fn pm(metric: &str, labels: &[(&str, &str)], ts: &str, value: &str) -> String {
    let mut l = serde_json::Map::new();
    l.insert("__name__".into(), metric.into());
    l.insert("cluster".into(), "prod-a".into());
    l.insert("service".into(), "api".into());
    for (k, v) in labels {
        l.insert((*k).into(), (*v).into());
    }
    serde_json::json!({"labels": l, "name": metric, "timestamp": ts, "value": value}).to_string()
}

fn feed(
    dec: &mut MessageDecoder,
    f: &Format,
    msgs: &[String],
) -> Vec<Result<Accepted, RejectReason>> {
    msgs.iter()
        .map(|m| dec.decode(f, m.as_bytes()).map_err(|e| e.reason))
        .collect()
}

/// A scrape of the `api` series: successes, 5xx and retries (cumulative).
fn scrape(ts: &str, ok: u64, err: Option<u64>, retries: u64) -> Vec<String> {
    let mut v = vec![pm(
        "http_requests_total",
        &[("code", "200")],
        ts,
        &ok.to_string(),
    )];
    if let Some(e) = err {
        v.push(pm(
            "http_requests_total",
            &[("code", "503")],
            ts,
            &e.to_string(),
        ));
    }
    v.push(pm(
        "envoy_cluster_upstream_rq_retry",
        &[],
        ts,
        &retries.to_string(),
    ));
    v
}

#[test]
fn prom_counters_become_deltas_and_close_after_the_next_scrapes() {
    let f = prom();
    let mut dec = decoder();
    let t = [
        "2026-02-12T21:20:00Z",
        "2026-02-12T21:20:10Z",
        "2026-02-12T21:20:20Z",
        "2026-02-12T21:20:30Z",
    ];
    // Priming scrape: no deltas, so no sample.
    feed(&mut dec, &f, &scrape(t[0], 1000, Some(5), 10));
    // Second scrape: +100 ok, +2 errors, +1 retry. ts0 closes only 15 s later (at ts2).
    let r = feed(&mut dec, &f, &scrape(t[1], 1100, Some(7), 11));
    assert!(r.iter().all(|r| *r == Ok(Accepted::Pending)), "{r:?}");
    assert_eq!(dec.prom_pending(), 2);
    feed(&mut dec, &f, &scrape(t[2], 1150, Some(7), 11));
    assert!(
        drain(&mut dec).is_empty(),
        "the priming scrape emits nothing"
    );
    assert_eq!(dec.prom_stats().priming, 1);
    // The 503 counter reset (pod restart): its delta is its new value.
    let r = feed(&mut dec, &f, &scrape(t[3], 1300, Some(4), 12));
    assert_eq!(r[0], Ok(Accepted::Rows(1)), "ts1 closes when ts3 arrives");
    dec.finish();
    let got = drain(&mut dec);
    let mut want = vec![
        Sample::new(ms(t[1]), "prod-a", "api", 102, 2),
        Sample::new(ms(t[2]), "prod-a", "api", 50, 0),
        Sample::new(ms(t[3]), "prod-a", "api", 154, 4),
    ];
    for (w, retries) in want.iter_mut().zip([1, 0, 1]) {
        w.retries = Some(retries);
    }
    assert_eq!(got, want);
}

#[test]
fn prom_error_series_appearing_later_counts_from_zero() {
    let f = prom();
    let mut dec = decoder();
    feed(&mut dec, &f, &scrape("2026-02-12T21:20:00Z", 1000, None, 0));
    feed(&mut dec, &f, &scrape("2026-02-12T21:20:10Z", 1100, None, 0));
    // The first 503s happen: a new time series, whose whole value is this interval's errors.
    feed(
        &mut dec,
        &f,
        &scrape("2026-02-12T21:20:20Z", 1150, Some(40), 0),
    );
    dec.finish();
    let got = drain(&mut dec);
    assert_eq!(
        got.iter()
            .map(|s| (s.requests, s.errors))
            .collect::<Vec<_>>(),
        vec![(100, 0), (90, 40)]
    );
}

#[test]
fn prom_redelivery_is_idempotent_and_late_points_are_ignored() {
    let f = prom();
    let mut once = decoder();
    let mut twice = decoder();
    let mut all = Vec::new();
    for (i, ts) in ["21:20:00", "21:20:10", "21:20:20", "21:20:30"]
        .iter()
        .enumerate()
    {
        let i = i as u64;
        all.extend(scrape(
            &format!("2026-02-12T{ts}Z"),
            1000 + 100 * i,
            Some(3 * i),
            i,
        ));
    }
    feed(&mut once, &f, &all);
    // Every message delivered twice (a consumer restart re-reading a batch).
    let doubled: Vec<String> = all.iter().flat_map(|m| [m.clone(), m.clone()]).collect();
    let r = feed(&mut twice, &f, &doubled);
    assert!(
        r.iter()
            .skip(1)
            .step_by(2)
            .all(|r| matches!(r, Ok(Accepted::Ignored(Ignored::Duplicate | Ignored::Late)))),
        "{r:?}"
    );
    once.finish();
    twice.finish();
    assert_eq!(drain(&mut once), drain(&mut twice));

    // A point for a sample already emitted is late; its increase moves to the next delta.
    let late = pm(
        "http_requests_total",
        &[("code", "200")],
        "2026-02-12T21:20:00Z",
        "5000",
    );
    assert_eq!(
        once.decode(&f, late.as_bytes()),
        Ok(Accepted::Ignored(Ignored::Late))
    );
}

#[test]
fn prom_gauges_latency_and_staleness() {
    let f = prom();
    let mut dec = decoder();
    let region = [("region", "us-east-1")];
    for (ts, ok) in [("2026-02-12T21:20:00Z", 10), ("2026-02-12T21:20:10Z", 20)] {
        feed(
            &mut dec,
            &f,
            &[pm("http_requests_total", &region, ts, &ok.to_string())],
        );
    }
    let ts = "2026-02-12T21:20:10Z";
    let msgs = [
        // Two pools: gauges are summed.
        pm("hikaricp_connections_active", &[("pool", "a")], ts, "30"),
        pm("hikaricp_connections_active", &[("pool", "b")], ts, "12"),
        pm("hikaricp_connections_max", &[("pool", "a")], ts, "50"),
        // Two summaries: the worst p99 wins; seconds become milliseconds.
        pm(
            "http_server_requests_seconds",
            &[("quantile", "0.99"), ("uri", "/a")],
            ts,
            "0.25",
        ),
        pm(
            "http_server_requests_seconds",
            &[("quantile", "0.99"), ("uri", "/b")],
            ts,
            "0.5",
        ),
        // A stale gauge leaves its field absent.
        pm("hikaricp_connections_pending", &[("pool", "a")], ts, "NaN"),
        // Unmapped metrics are ignored.
        pm("process_cpu_seconds_total", &[], ts, "12.5"),
    ];
    let r = feed(&mut dec, &f, &msgs);
    assert_eq!(r[5], Ok(Accepted::Ignored(Ignored::Stale)));
    assert_eq!(r[6], Ok(Accepted::Ignored(Ignored::Unmapped)));
    dec.finish();
    let got = drain(&mut dec);
    assert_eq!(got.len(), 1);
    let s = &got[0];
    assert_eq!((s.requests, s.errors, s.retries), (10, 0, None));
    assert_eq!(s.region.as_deref(), Some("us-east-1"));
    assert_eq!(s.interval_ms, 10_000);
    assert_eq!(
        (s.db_pool_active, s.db_pool_max, s.db_pool_pending),
        (Some(42), Some(50), None)
    );
    assert_eq!(s.latency_p99_ms, Some(500.0));
    assert_eq!(s.latency_p50_ms, None);
}

#[test]
fn prom_stale_counter_restarts_from_zero() {
    let f = prom();
    let mut dec = decoder();
    feed(&mut dec, &f, &scrape("2026-02-12T21:20:00Z", 1000, None, 0));
    feed(&mut dec, &f, &scrape("2026-02-12T21:20:10Z", 1100, None, 0));
    // The target went away (staleness marker) and came back with a fresh counter.
    let stale = pm(
        "http_requests_total",
        &[("code", "200")],
        "2026-02-12T21:20:15Z",
        "NaN",
    );
    assert_eq!(
        dec.decode(&f, stale.as_bytes()),
        Ok(Accepted::Ignored(Ignored::Stale))
    );
    feed(&mut dec, &f, &scrape("2026-02-12T21:20:20Z", 70, None, 0));
    dec.finish();
    let got: Vec<u64> = drain(&mut dec).iter().map(|s| s.requests).collect();
    assert_eq!(got, vec![100, 70]);
}

#[test]
fn prom_errors_over_requests_are_clamped_and_counted() {
    let cfg = PromMappingConfig {
        // Errors from a separate counter that may run ahead of the requests counter.
        errors: vec!["app_failures_total".into()],
        ..PromMappingConfig::default()
    };
    let f = Format::PromAdapter(Arc::new(PromMapping::new(&cfg).unwrap()));
    let mut dec = decoder();
    for (ts, req, fail) in [
        ("2026-02-12T21:20:00Z", 100, 0),
        ("2026-02-12T21:20:10Z", 110, 30),
    ] {
        feed(
            &mut dec,
            &f,
            &[
                pm("http_requests_total", &[], ts, &req.to_string()),
                pm("app_failures_total", &[], ts, &fail.to_string()),
            ],
        );
    }
    dec.finish();
    let got = drain(&mut dec);
    assert_eq!((got[0].requests, got[0].errors), (10, 10));
    assert_eq!(dec.prom_stats().clamped, 1);
}

#[test]
fn prom_rejections() {
    let f = prom();
    let ts = "2026-02-12T21:20:00Z";
    let no_cluster =
        serde_json::json!({"labels": {"__name__": "http_requests_total", "service": "api"},
        "name": "http_requests_total", "timestamp": ts, "value": "1"})
        .to_string();
    let cases: Vec<(&str, String, RejectReason)> = vec![
        ("not JSON", "labels=1".into(), RejectReason::MalformedJson),
        (
            "no value",
            r#"{"labels":{},"timestamp":"2026-02-12T21:20:00Z"}"#.into(),
            RejectReason::MissingField,
        ),
        (
            "value not a string",
            r#"{"labels":{},"timestamp":"2026-02-12T21:20:00Z","value":1}"#.into(),
            RejectReason::WrongType,
        ),
        (
            "no metric name",
            r#"{"labels":{},"timestamp":"2026-02-12T21:20:00Z","value":"1"}"#.into(),
            RejectReason::MissingField,
        ),
        ("no cluster label", no_cluster, RejectReason::MissingField),
        (
            "bad timestamp",
            pm("http_requests_total", &[], "yesterday", "1"),
            RejectReason::InvalidTimestamp,
        ),
        (
            "future timestamp",
            pm("http_requests_total", &[], "2030-01-01T00:00:00Z", "1"),
            RejectReason::FutureTimestamp,
        ),
        (
            "value not a number",
            pm("http_requests_total", &[], ts, "lots"),
            RejectReason::InvalidValue,
        ),
        (
            "infinite counter",
            pm("http_requests_total", &[], ts, "+Inf"),
            RejectReason::NotFinite,
        ),
        (
            "negative counter",
            pm("http_requests_total", &[], ts, "-3"),
            RejectReason::NegativeCount,
        ),
        (
            "cluster over 128 bytes",
            pm(
                "http_requests_total",
                &[("cluster", &"c".repeat(129))],
                ts,
                "1",
            ),
            RejectReason::InvalidKey,
        ),
    ];
    for (name, msg, reason) in cases {
        let mut dec = decoder();
        let got = dec.decode(&f, msg.as_bytes());
        assert_eq!(got.map_err(|e| e.reason), Err(reason), "case {name:?}");
        assert_eq!(dec.prom_pending(), 0, "case {name:?}");
    }
    let mut dec = decoder();
    assert_eq!(
        dec.decode(&f, b"\xff\xfe").unwrap_err().reason,
        RejectReason::NotUtf8
    );
}

#[test]
fn prom_mapping_config_refuses_unknown_fields_and_keeps_defaults() {
    let cfg: PromMappingConfig =
        serde_json::from_str(r#"{"errors": ["http_requests_total{code=~\"5..|403\"}"]}"#).unwrap();
    assert_eq!(cfg.requests, PromMappingConfig::default().requests);
    assert_eq!(cfg.errors.len(), 1);
    PromMapping::new(&cfg).unwrap();
    let err = serde_json::from_str::<PromMappingConfig>(r#"{"error": []}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `error`"), "{err}");
}

#[test]
fn prom_encoder_output_decodes_to_the_samples() {
    // The first sample of a series only primes its counters; every later one comes back.
    let mut enc = PromEncoder::new();
    let f = prom();
    let mut dec = decoder();
    let mut want = Vec::new();
    for i in 0..6i64 {
        let mut s = full_sample("2026-02-12T21:20:00Z", "prod-a");
        s.ts_ms += i * 10_000;
        s.requests = 1000 + 10 * i as u64;
        s.errors = 3 * i as u64;
        // A valid sample: retries within requests (the decoder clamps them otherwise).
        s.retries = Some(20 + i as u64);
        // Binary fractions of a second, so ms -> s -> ms is exact.
        s.latency_p99_ms = Some(125.0 * (i + 1) as f64);
        s.latency_p50_ms = Some(62.5);
        for m in enc.encode(&s) {
            dec.decode(&f, m.as_bytes()).unwrap();
        }
        if i > 0 {
            want.push(stored(&s));
        }
    }
    dec.finish();
    assert_eq!(drain(&mut dec), want);
}

#[test]
fn parse_sample_agrees_with_the_decoder() {
    let good = full_sample("2026-02-12T21:20:10Z", "prod-use1-a");
    let opts = DecoderOptions {
        now_ms: Some(NOW),
        ..DecoderOptions::default()
    };
    // (name, message)
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("valid", good.to_json_line().into_bytes()),
        ("malformed", b"{\"ts\":".to_vec()),
        (
            "errors over requests",
            Sample::new(NOW, "c", "s", 1, 2).to_json_line().into_bytes(),
        ),
        (
            "future",
            Sample::new(NOW + 25 * 3_600_000, "c", "s", 1, 0)
                .to_json_line()
                .into_bytes(),
        ),
    ];
    for (name, msg) in cases {
        let mut dec = ingest::JsonDecoder::new(opts);
        let decoded = dec.decode(&msg).map(|()| {
            let batches: Vec<_> = dec.flush().into_iter().collect();
            samples_of(&batches, dec.interner()).remove(0)
        });
        assert_eq!(
            ingest::json::parse_sample(&msg, &opts),
            decoded,
            "case {name:?}"
        );
    }
}

/// A wire batch of `n` good rows (two series) whose column `name` is replaced by `column(n)`.
fn with_column(n: usize, name: &str, column: &dyn Fn(usize) -> ArrayRef) -> Vec<u8> {
    let rows: Vec<Sample> = (0..n)
        .map(|i| {
            let mut s = full_sample("2026-02-12T21:20:10Z", if i % 2 == 0 { "a" } else { "b" });
            s.ts_ms += i as i64;
            s
        })
        .collect();
    let good = arrow_ipc::samples_to_batch(&rows).unwrap();
    let schema = good.schema();
    let i = schema.index_of(name).unwrap();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols = good.columns().to_vec();
    cols[i] = column(n);
    fields[i] = Field::new(name, cols[i].data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    arrow_ipc::batch_to_ipc(&batch).unwrap()
}

#[test]
fn arrow_nulls_in_required_columns_are_named_at_their_row() {
    use arrow_array::{StringArray, TimestampMillisecondArray, UInt64Array};
    // (column, a column of n values with nulls at `at`)
    type Column = fn(usize, &[usize]) -> ArrayRef;
    let columns: Vec<(&str, Column)> = vec![
        ("cluster", |n, at| {
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (!at.contains(&i)).then_some("a")),
            ))
        }),
        ("service", |n, at| {
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (!at.contains(&i)).then_some("s")),
            ))
        }),
        ("ts", |n, at| {
            let ts = ms("2026-02-12T21:20:10Z");
            Arc::new(TimestampMillisecondArray::from_iter(
                (0..n).map(|i| (!at.contains(&i)).then_some(ts)),
            ))
        }),
        ("requests", |n, at| {
            Arc::new(UInt64Array::from_iter(
                (0..n).map(|i| (!at.contains(&i)).then_some(10_000)),
            ))
        }),
        ("errors", |n, at| {
            Arc::new(UInt64Array::from_iter(
                (0..n).map(|i| (!at.contains(&i)).then_some(1)),
            ))
        }),
    ];
    // (where, rows, null rows): the first null is named.
    let places: Vec<(&str, usize, Vec<usize>)> = vec![
        ("first row", 5, vec![0]),
        ("middle row", 5, vec![2]),
        ("last row", 5, vec![4]),
        ("only row", 1, vec![0]),
        ("past the first 64-row block", 200, vec![130, 131]),
        ("last of a long message", 200, vec![199]),
    ];
    for (name, column) in &columns {
        for (place, n, at) in &places {
            let msg = with_column(*n, name, &|n| column(n, at));
            let mut dec = decoder();
            let err = dec.decode(&Format::ArrowIpc, &msg).unwrap_err();
            assert_eq!(
                err.reason,
                RejectReason::MissingField,
                "{name} at {place}: {err}"
            );
            assert_eq!(
                err.detail,
                format!("row {}: {name} is null", at[0]),
                "{name} at {place}"
            );
            assert!(
                dec.is_empty() && dec.interner().is_empty(),
                "{name} at {place}"
            );
        }
    }
}

#[test]
fn arrow_optional_nulls_and_defaults() {
    use arrow_array::{Float64Array, UInt32Array};
    let n = 130;
    // (name, column, replacement, what each row must hold)
    type Check = fn(usize, &Sample) -> bool;
    let cases: Vec<(&str, &str, ArrayRef, Check)> = vec![
        (
            "null interval means the default",
            "interval_ms",
            Arc::new(UInt32Array::from_iter(
                (0..n).map(|i| (i % 3 != 0).then_some(1_000)),
            )),
            |i, s| s.interval_ms == if i % 3 == 0 { 10_000 } else { 1_000 },
        ),
        (
            "null latencies, one block and a bit",
            "latency_p99_ms",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i >= 64).then_some(i as f64)),
            )),
            |i, s| s.latency_p99_ms == (i >= 64).then_some(i as f64),
        ),
        (
            "an all-null pool column",
            "db_pool_max",
            Arc::new(UInt32Array::from(vec![None; n])),
            |_, s| s.db_pool_max.is_none(),
        ),
    ];
    for (name, column, array, check) in cases {
        let msg = with_column(n, column, &|_| array.clone());
        let mut dec = decoder();
        assert_eq!(
            dec.decode(&Format::ArrowIpc, &msg),
            Ok(Accepted::Rows(n)),
            "case {name:?}"
        );
        let rows = drain(&mut dec);
        for (i, s) in rows.iter().enumerate() {
            assert!(check(i, s), "case {name:?}: row {i} is {s:?}");
        }
    }
}

#[test]
fn arrow_producers_repeating_their_series_keep_their_ids() {
    // One producer's interval after interval (the same key columns each time), then a second
    // producer interleaved, a region arriving late, and an order change.
    let tick = |t: i64, clusters: &[&str], region: Option<&str>| {
        let rows: Vec<Sample> = clusters
            .iter()
            .map(|c| {
                let mut s = Sample::new(ms("2026-02-12T21:20:00Z") + t * 10_000, *c, "api", 10, 1);
                s.region = region.map(str::to_owned);
                s
            })
            .collect();
        (arrow_ipc::encode(&rows).unwrap(), rows)
    };
    let a = ["a1", "a2", "a3"];
    let b = ["b1", "b2"];
    let messages = vec![
        tick(0, &a, None),
        tick(1, &a, None),
        tick(1, &b, Some("eu")),
        tick(2, &a, Some("us")),
        tick(2, &b, Some("eu")),
        tick(3, &["a3", "a1", "a2"], Some("us")),
        tick(4, &a, None),
    ];
    let mut dec = decoder();
    let mut want = Vec::new();
    for (msg, rows) in &messages {
        assert_eq!(
            dec.decode(&Format::ArrowIpc, msg),
            Ok(Accepted::Rows(rows.len()))
        );
        want.extend(rows.iter().cloned());
    }
    let got = drain(&mut dec);
    let keys: Vec<(String, Option<String>)> = dec
        .interner()
        .keys()
        .iter()
        .map(|k| (k.cluster.clone(), k.region.clone()))
        .collect();
    let expected: Vec<(String, Option<String>)> = [
        ("a1", Some("us")),
        ("a2", Some("us")),
        ("a3", Some("us")),
        ("b1", Some("eu")),
        ("b2", Some("eu")),
    ]
    .iter()
    .map(|(c, r)| (c.to_string(), r.map(str::to_owned)))
    .collect();
    assert_eq!(keys, expected);
    // Every row kept its series (and so its key) whatever the region it arrived with.
    let strip = |s: &Sample| (s.ts_ms, s.cluster.clone());
    assert_eq!(
        got.iter().map(strip).collect::<Vec<_>>(),
        want.iter().map(strip).collect::<Vec<_>>()
    );
}

#[test]
fn owned_and_lent_messages_decode_alike() {
    let good = arrow_ipc::encode(&[
        full_sample("2026-02-12T21:20:10Z", "a"),
        full_sample("2026-02-12T21:20:10Z", "b"),
    ])
    .unwrap();
    let mut bad_row = full_sample("2026-02-12T21:20:10Z", "c");
    bad_row.errors = bad_row.requests + 1;
    // (name, format, message)
    let cases: Vec<(&str, Format, Vec<u8>)> = vec![
        ("arrow", Format::ArrowIpc, good.clone()),
        (
            "arrow, bad row",
            Format::ArrowIpc,
            arrow_ipc::encode(&[bad_row]).unwrap(),
        ),
        (
            "arrow, truncated",
            Format::ArrowIpc,
            good[..good.len() / 2].to_vec(),
        ),
        (
            "arrow, empty",
            Format::ArrowIpc,
            arrow_ipc::encode(&[]).unwrap(),
        ),
        (
            "json",
            Format::Json,
            full_sample("2026-02-12T21:20:10Z", "a")
                .to_json_line()
                .into_bytes(),
        ),
        ("json, bad", Format::Json, b"{\"ts\":1}".to_vec()),
    ];
    for (name, format, msg) in cases {
        let (mut lent, mut owned) = (decoder(), decoder());
        let a = lent.decode(&format, &msg);
        let b = owned.decode_owned(&format, msg);
        assert_eq!(a, b, "case {name:?}");
        assert_eq!(lent.flush(), owned.flush(), "case {name:?}");
    }
}
