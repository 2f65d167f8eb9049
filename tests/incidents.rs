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

/// A fleet whose clusters report at offsets of their own within the interval (scrapes spread
/// over it, agents started at different times) is judged as an aligned one is: every seed trace
/// with each cluster's samples moved earlier by an offset of its own (a tenth of the interval
/// apart) raises the same alerts (series, kind, state) and scores clean. Each tick then holds a
/// few clusters; before ticks closed on per-series due times and the service totals took every
/// current cluster, the planned evacuation of `clean-benign-changes` paged three drops.
#[test]
fn every_trace_with_its_clusters_at_offsets_of_their_own_alerts_as_when_aligned() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("offset-traces-{}", std::process::id()));
    for t in ingest::trace::list_traces(trace_dir("..").join("incidents")).unwrap() {
        let lines: Vec<String> = t
            .sample_lines()
            .unwrap()
            .map(|l| String::from_utf8_lossy(&l.unwrap()).into_owned())
            .collect();
        let mut clusters: Vec<String> = Vec::new();
        let mut moved = String::new();
        for line in &lines {
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(line) else {
                moved.push_str(line); // a bad line stays as it is (and is rejected again)
                moved.push('\n');
                continue;
            };
            let cluster = v["cluster"].as_str().unwrap_or_default().to_string();
            let idx = clusters
                .iter()
                .position(|c| *c == cluster)
                .unwrap_or_else(|| {
                    clusters.push(cluster);
                    clusters.len() - 1
                });
            #[allow(clippy::cast_possible_truncation)]
            let interval_ms = (v["interval_s"].as_f64().unwrap_or(10.0) * 1000.0) as i64;
            let offset = (i64::try_from(idx).unwrap() * 3 + 1) * interval_ms / 10 % interval_ms;
            if let Some(ts) = v["ts"].as_str().and_then(ingest::time::parse_rfc3339_ms) {
                v["ts"] = ingest::time::format_rfc3339_ms(ts - offset).unwrap().into();
            }
            moved.push_str(&v.to_string());
            moved.push('\n');
        }
        let dir = out.join(&t.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("samples.jsonl"), moved).unwrap();
        for f in ["changes.jsonl", "labels.json"] {
            if t.path.join(f).is_file() {
                std::fs::copy(t.path.join(f), dir.join(f)).unwrap();
            }
        }
        let run = |path: &std::path::Path| {
            pipeline::replay(path, DetectorConfig::default(), 1024, |_, _| {})
                .unwrap()
                .events
        };
        let alerts = |events: &[AlertEvent]| {
            let mut a: Vec<_> = events
                .iter()
                .map(|e| (e.cluster.clone(), e.service.clone(), e.kind, e.state))
                .collect();
            a.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
            a
        };
        let (aligned, offset) = (run(&t.path), run(&dir));
        assert_eq!(alerts(&offset), alerts(&aligned), "{}", t.name);
        let labels = ingest::trace::read_labels(&dir)
            .unwrap()
            .expect("labels.json");
        let score = backtest::score(&labels, &offset);
        assert!(
            score.misses == 0 && score.false_positives.is_empty(),
            "{} at offsets:\n{}",
            t.name,
            spikewatch::report::scorecard(std::slice::from_ref(&score))
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
