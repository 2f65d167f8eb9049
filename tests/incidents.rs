//! One regression test per incident trace in `testdata/incidents/`, named after it: replay the
//! trace through the full pipeline (JSON decoder -> Arrow -> detector) and score it against its
//! labels. Every required detection must fire within its window and nothing may fire outside.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use detector::{AlertEvent, AlertKind, AlertState, DetectorConfig};
use spikewatch::{backtest, pipeline};

fn trace_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/incidents")
        .join(name)
}

fn replay(name: &str, batch_size: usize) -> Vec<AlertEvent> {
    pipeline::replay(
        &trace_dir(name),
        DetectorConfig::default(),
        batch_size,
        |_, _| {},
    )
    .unwrap()
    .events
}

/// Replays and scores a trace; panics with the scorecard on any miss or false positive.
fn check(name: &str) -> Vec<AlertEvent> {
    let labels = ingest::trace::read_labels(trace_dir(name))
        .unwrap()
        .expect("labels.json");
    let events = replay(name, 1024);
    let score = backtest::score(&labels, &events);
    assert!(
        score.misses == 0 && score.false_positives.is_empty(),
        "{name}:\n{}",
        spikewatch::report::scorecard(std::slice::from_ref(&score))
    );
    events
}

fn firing(events: &[AlertEvent]) -> impl Iterator<Item = &AlertEvent> {
    events.iter().filter(|e| e.state == AlertState::Firing)
}

#[test]
fn incident_2026_02_12_routing_config_removed() {
    let events = check("2026-02-12-routing-config-removed");
    // Every alert resolves after recovery.
    for f in firing(&events) {
        assert!(
            events
                .iter()
                .any(|e| e.id == f.id && e.state == AlertState::Resolved),
            "{} on {}/{} never resolved",
            f.kind,
            f.cluster,
            f.service
        );
    }
}

#[test]
fn incident_2026_02_04_db_replica_maintenance() {
    let events = check("2026-02-04-db-replica-maintenance");
    // On every series with both, the pool warning comes strictly before the first error alert.
    let mut checked = 0;
    for err in firing(&events).filter(|e| e.kind == AlertKind::ErrorRateSpike) {
        let pool = firing(&events)
            .filter(|e| {
                e.kind == AlertKind::DbPoolSaturation
                    && e.cluster == err.cluster
                    && e.service == err.service
            })
            .map(|e| e.detected_at)
            .min();
        if let Some(pool) = pool {
            assert!(
                pool < err.detected_at,
                "{}/{}: pool warning not before errors",
                err.cluster,
                err.service
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no series had both a pool warning and an error alert"
    );
    assert!(
        firing(&events).all(|e| e.service != "api"),
        "alert on the unaffected api service"
    );
}

#[test]
fn incident_2024_11_08_lb_config_crash() {
    let events = check("2024-11-08-lb-config-crash");
    for f in firing(&events).filter(|e| e.kind == AlertKind::ErrorRateSpike) {
        assert!(
            events
                .iter()
                .any(|e| e.id == f.id && e.state == AlertState::Resolved),
            "{} not resolved",
            f.cluster
        );
    }
}

#[test]
fn incident_2024_01_29_release_breaks_routing() {
    check("2024-01-29-release-breaks-routing");
}

#[test]
fn incident_2024_12_11_telemetry_control_plane() {
    let events = check("2024-12-11-telemetry-control-plane");
    assert!(firing(&events).any(|e| e.kind == AlertKind::TelemetryAbsent));
}

#[test]
fn clean_diurnal_24h() {
    let events = check("clean-diurnal-24h");
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn clean_benign_changes() {
    let events = check("clean-benign-changes");
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn clean_late_duplicate_1s() {
    let events = check("clean-late-duplicate-1s");
    assert!(events.is_empty(), "{events:#?}");
}

#[test]
fn every_trace_has_a_regression_test() {
    let src = include_str!("incidents.rs");
    for t in ingest::trace::list_traces(trace_dir("..").join("incidents")).unwrap() {
        let test_name = t.name.replace('-', "_");
        assert!(
            src.contains(&format!("fn {test_name}()"))
                || src.contains(&format!("fn incident_{test_name}()")),
            "no test for {}",
            t.name
        );
    }
}

#[test]
fn batch_size_does_not_change_alerts_on_a_trace() {
    let name = "2026-02-04-db-replica-maintenance";
    let want = replay(name, 1024);
    assert!(!want.is_empty());
    for size in [1, 7] {
        assert_eq!(replay(name, size), want, "batch size {size}");
    }
}

/// The same trace as `samples.parquet` (CONTRACT section 3 allows either) gives the same
/// alerts and fleet incidents as its `samples.jsonl.gz`: every seed trace is converted and
/// replayed both ways.
#[test]
fn every_trace_as_parquet_replays_like_its_json() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("parquet-traces-{}", std::process::id()));
    let opts = ingest::DecoderOptions::default();
    for t in ingest::trace::list_traces(trace_dir("..").join("incidents")).unwrap() {
        let dir = out.join(&t.name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["changes.jsonl", "labels.json"] {
            if t.path.join(f).is_file() {
                std::fs::copy(t.path.join(f), dir.join(f)).unwrap();
            }
        }
        // Lines the decoder rejects have no Sample to convert; they show in the counts below.
        let samples: Vec<ingest::Sample> = t
            .sample_lines()
            .unwrap()
            .filter_map(|l| ingest::json::parse_sample(&l.unwrap(), &opts).ok())
            .collect();
        ingest::parquet_samples::write_samples(&dir.join("samples.parquet"), samples, 50_000)
            .unwrap();
        let run = |path: &std::path::Path| {
            pipeline::replay_with_incidents(path, DetectorConfig::default(), 1024, |_, _, _| {})
                .unwrap()
        };
        let (json, parquet) = (run(&t.path), run(&dir));
        assert!(!parquet.events.is_empty() || json.events.is_empty());
        assert_eq!(parquet.events, json.events, "{}", t.name);
        let as_json = |r: &pipeline::ReplayResult| serde_json::to_value(&r.incidents).unwrap();
        assert_eq!(as_json(&parquet), as_json(&json), "{}", t.name);
        assert_eq!(parquet.changes, json.changes, "{}", t.name);
        assert_eq!(parquet.rejections.total(), 0, "{}", t.name);
        assert_eq!(
            parquet.messages,
            json.messages - json.rejections.total(),
            "{}",
            t.name
        );
    }
}
