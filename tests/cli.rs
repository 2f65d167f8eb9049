//! The commands other tools rely on (CONTRACT section 6), run as a user would.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spikewatch"))
}

fn incidents() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/incidents")
}

#[test]
fn replay_jsonl_prints_only_alert_events_in_event_time_order() {
    let out = bin()
        .args(["replay", "--format", "jsonl"])
        .arg(incidents().join("2024-11-08-lb-config-crash"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut last = String::new();
    let mut firing = 0;
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for f in [
            "id",
            "kind",
            "state",
            "severity",
            "cluster",
            "service",
            "onset",
            "detected_at",
            "resolved_at",
            "value",
            "baseline",
            "summary",
        ] {
            assert!(v.get(f).is_some(), "missing {f}: {line}");
        }
        let at = if v["state"] == "resolved" {
            v["resolved_at"].as_str()
        } else {
            v["detected_at"].as_str()
        };
        let at = at.unwrap().to_owned();
        assert!(at >= last, "out of order: {at} after {last}");
        last = at;
        firing += usize::from(v["state"] == "firing");
    }
    assert!(firing > 0, "no alerts");
}

#[test]
fn replay_reads_a_bare_samples_file_and_reports_bad_lines_on_stderr() {
    let dir = std::env::temp_dir().join(format!("spikewatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("samples.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"ts":"2026-02-12T21:20:10Z","cluster":"a","service":"s","requests":100,"errors":1}"#, "\n",
            r#"{"ts":"2026-02-12T21:20:20Z","cluster":"a","service":"s","requests":10,"errors":12}"#, "\n",
            "not json\n",
        ),
    )
    .unwrap();
    let out = bin()
        .args(["replay", "--format", "jsonl"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 rejected"), "{stderr}");
    assert!(stderr.contains("errors_exceed_requests"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_reads_a_parquet_samples_file_and_reports_bad_rows_by_number() {
    let dir = std::env::temp_dir().join(format!("spikewatch-cli-pq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("samples.parquet");
    let t0 = 1_770_931_210_000;
    let samples = vec![
        ingest::Sample::new(t0, "a", "s", 100, 1),
        ingest::Sample::new(t0 + 10_000, "a", "s", 10, 12),
        ingest::Sample::new(t0 + 20_000, "a", "s", 100, 0),
    ];
    ingest::parquet_samples::write_samples(&file, samples, 1024).unwrap();
    let out = bin()
        .args(["replay", "--format", "jsonl"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("3 samples"), "{stderr}");
    assert!(stderr.contains("1 rejected"), "{stderr}");
    assert!(stderr.contains("errors_exceed_requests"), "{stderr}");
    assert!(
        stderr.contains("message 2: errors_exceed_requests"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn backtest_scores_every_trace_and_passes() {
    let out = bin()
        .args(["backtest", "--format", "json", "--fail-on-false-positives"])
        .arg(incidents())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let scores = v.as_array().unwrap();
    assert!(scores.len() >= 8);
    for s in scores {
        assert_eq!(s["misses"], 0, "{s}");
        assert_eq!(s["hits"], s["required"]);
    }
}

#[test]
fn backtest_exits_nonzero_when_a_detection_is_missed() {
    // A config that cannot page on errors: the incident traces must then fail the backtest.
    let dir = std::env::temp_dir().join(format!("spikewatch-bt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("deaf.json");
    std::fs::write(&cfg, r#"{"error_rate":{"min_count":1e12},"retry":{"min_count":1e12},"success_drop":{"min_drop":0.99},"latency":{"min_factor":1000},"db_pool":{"saturated_utilisation":1.0,"warn_min_utilisation":1.0},"telemetry":{"absent_after_intervals":1e9}}"#).unwrap();
    let out = bin()
        .args(["backtest", "--config"])
        .arg(&cfg)
        .arg(incidents())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSED"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_config_is_refused_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("spikewatch-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.json");
    std::fs::write(&cfg, r#"{"error_rate":{"alpha":2.0}}"#).unwrap();
    let out = bin()
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg(incidents().join("clean-benign-changes"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error_rate.alpha"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn committed_traces_are_what_the_generator_writes() {
    let dir = std::env::temp_dir().join(format!("spikewatch-gen-{}", std::process::id()));
    let out = bin()
        .args(["gen-traces", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in tracegen::trace_names() {
        for file in ["samples.jsonl.gz", "changes.jsonl", "labels.json"] {
            let want = std::fs::read(incidents().join(name).join(file)).unwrap();
            let got = std::fs::read(dir.join(name).join(file)).unwrap();
            assert!(want == got, "{name}/{file} differs from a fresh generation");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn produce_refuses_live_play_with_speed_or_max_naming_the_flags() {
    let trace = incidents().join("2026-02-12-routing-config-removed");
    for other in [&["--speed", "30"][..], &["--max"][..]] {
        let out = bin()
            .arg("produce")
            .arg(&trace)
            .args(["--brokers", "127.0.0.1:1", "--live-from", "3420"])
            .args(other)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--live-from") && stderr.contains(other[0]),
            "{stderr}"
        );
    }
    let help = bin().args(["produce", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--live-from <SECONDS>"), "{help}");
}

#[test]
fn check_config_names_the_alerts_topic_of_a_kafka_source() {
    let dir = std::env::temp_dir().join(format!("spikewatch-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (extra, want) in [
        ("", "spikewatch.alerts"),
        ("alerts_topic = \"ops.alerts\"\n", "ops.alerts"),
        ("alerts_topic = \"\"\n", "off"),
    ] {
        let file = dir.join("spikewatch.toml");
        std::fs::write(
            &file,
            format!("[source.kafka]\nbrokers = \"127.0.0.1:9092\"\n{extra}"),
        )
        .unwrap();
        let out = bin().arg("check-config").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{extra:?}: {stdout}");
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("alerts topic"))
            .unwrap_or_else(|| panic!("{extra:?}: no alerts topic line in {stdout}"));
        assert_eq!(
            line.split_whitespace().last(),
            Some(want),
            "{extra:?}: {line}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
