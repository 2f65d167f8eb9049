//! Unit tests: contract conformance of every sample, label consistency, and the scenario
//! figures that INCIDENTS.md asks for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use serde_json::Value;

use crate::model::{self, Trace};
use crate::traces;
use crate::{render_trace, trace_names, RenderedTrace};

/// Every trace rendered once (shared by the tests; rendering is the slow part).
fn rendered() -> &'static Vec<RenderedTrace> {
    static CELL: OnceLock<Vec<RenderedTrace>> = OnceLock::new();
    CELL.get_or_init(|| {
        trace_names()
            .into_iter()
            .map(|n| render_trace(n).unwrap())
            .collect()
    })
}

fn get(name: &str) -> &'static RenderedTrace {
    rendered().iter().find(|r| r.name == name).unwrap()
}

fn lines(r: &RenderedTrace) -> Vec<String> {
    let mut s = String::new();
    GzDecoder::new(&r.samples_jsonl_gz[..])
        .read_to_string(&mut s)
        .unwrap();
    s.lines().map(str::to_string).collect()
}

fn parsed(r: &RenderedTrace) -> Vec<Value> {
    lines(r)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ts_of(v: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v).unwrap().timestamp()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap()
}

#[test]
fn names_are_the_expected_eight() {
    assert_eq!(
        trace_names(),
        vec![
            "2026-02-12-routing-config-removed",
            "2026-02-04-db-replica-maintenance",
            "2024-11-08-lb-config-crash",
            "2024-01-29-release-breaks-routing",
            "2024-12-11-telemetry-control-plane",
            "clean-diurnal-24h",
            "clean-benign-changes",
            "clean-late-duplicate-1s",
        ]
    );
    assert!(matches!(
        render_trace("nope"),
        Err(crate::Error::UnknownTrace(_))
    ));
}

#[test]
fn generating_twice_gives_identical_bytes() {
    // Two traces regenerated from scratch (one 10 s incident, the 1 s arrival-order one); the
    // integration test compares the full written tree.
    for name in [
        "2026-02-04-db-replica-maintenance",
        "clean-late-duplicate-1s",
    ] {
        assert_eq!(&render_trace(name).unwrap(), get(name), "{name}");
    }
}

#[test]
fn gzip_header_is_deterministic() {
    for r in rendered() {
        let h = &r.samples_jsonl_gz;
        assert_eq!(&h[0..3], &[0x1f, 0x8b, 8]);
        assert_eq!(h[3], 0, "no FNAME/FCOMMENT/FEXTRA flags");
        assert_eq!(&h[4..8], &[0, 0, 0, 0], "mtime 0");
    }
}

#[test]
fn every_sample_satisfies_the_contract() {
    let allowed: BTreeSet<&str> = [
        "ts",
        "cluster",
        "service",
        "region",
        "interval_s",
        "requests",
        "errors",
        "retries",
        "latency_p50_ms",
        "latency_p99_ms",
        "db_pool_active",
        "db_pool_max",
        "db_pool_pending",
        "status",
    ]
    .into_iter()
    .collect();
    for r in rendered() {
        let trace = traces::build(&r.name).unwrap();
        let mut db_series: HashMap<(String, String), bool> = HashMap::new();
        for l in lines(r) {
            let v: Value = serde_json::from_str(&l).unwrap();
            let o = v.as_object().unwrap();
            for k in o.keys() {
                assert!(
                    allowed.contains(k.as_str()),
                    "{}: unknown field {k}",
                    r.name
                );
            }
            let ts = v["ts"].as_str().unwrap();
            assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
            let t = ts_of(ts);
            assert!(t > trace.start && t <= trace.end);
            assert_eq!((t - trace.start) % trace.interval, 0, "ts on the grid");
            let cluster = v["cluster"].as_str().unwrap();
            let service = v["service"].as_str().unwrap();
            assert!(!cluster.is_empty() && cluster.len() <= 128);
            assert!(!service.is_empty() && service.len() <= 128);
            assert!(!v["region"].as_str().unwrap().is_empty());
            assert_eq!(v["interval_s"].as_i64().unwrap(), trace.interval);
            let req = u(&v, "requests");
            let err = u(&v, "errors");
            let ret = u(&v, "retries");
            assert!(err <= req, "{}: errors > requests: {l}", r.name);
            assert!(ret <= req, "{}: retries > requests: {l}", r.name);
            if let Some(st) = v.get("status") {
                let sum: u64 = st
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|x| x.as_u64().unwrap())
                    .sum();
                assert_eq!(sum, err, "status sums to errors: {l}");
                assert!(err > 0, "status only with errors");
            } else {
                assert_eq!(err, 0, "errors without status: {l}");
            }
            match (v.get("latency_p50_ms"), v.get("latency_p99_ms")) {
                (Some(p50), Some(p99)) => {
                    let (p50, p99) = (p50.as_f64().unwrap(), p99.as_f64().unwrap());
                    assert!(p50.is_finite() && p50 > 0.0 && p99 >= p50, "{l}");
                }
                (None, None) => assert_eq!(req, 0, "latency omitted only without requests"),
                _ => panic!("p50 and p99 go together: {l}"),
            }
            let has_db = v.get("db_pool_max").is_some();
            let prev = db_series.insert((cluster.to_string(), service.to_string()), has_db);
            assert!(
                prev.is_none_or(|p| p == has_db),
                "db fields consistent per series"
            );
            if has_db {
                let (a, m) = (u(&v, "db_pool_active"), u(&v, "db_pool_max"));
                let _pending = u(&v, "db_pool_pending");
                assert!(m > 0 && a <= m, "{l}");
            } else {
                assert!(v.get("db_pool_active").is_none() && v.get("db_pool_pending").is_none());
            }
        }
        assert_eq!(
            db_series.len(),
            trace.series.len(),
            "{}: every series reports",
            r.name
        );
    }
}

#[test]
fn changes_and_labels_are_well_formed() {
    for r in rendered() {
        let trace = traces::build(&r.name).unwrap();
        for l in r.changes_jsonl.lines() {
            let c: Value = serde_json::from_str(l).unwrap();
            ts_of(c["ts"].as_str().unwrap());
            assert!(["deploy", "config", "maintenance", "traffic"]
                .contains(&c["kind"].as_str().unwrap()));
            assert!(!c["id"].as_str().unwrap().is_empty());
            assert!(!c["service"].as_str().unwrap().is_empty());
            assert!(!c["clusters"].as_array().unwrap().is_empty());
        }
        let labels: Value = serde_json::from_str(&r.labels_json).unwrap();
        assert_eq!(labels["trace"].as_str().unwrap(), r.name);
        assert_eq!(labels["interval_s"].as_i64().unwrap(), trace.interval);
        let ids: BTreeSet<String> = r
            .changes_jsonl
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let kinds = [
            "error_rate_spike",
            "success_drop",
            "retry_amplification",
            "db_pool_saturation",
            "latency_spike",
            "telemetry_absent",
        ];
        for w in labels["windows"].as_array().unwrap() {
            let onset = ts_of(w["onset"].as_str().unwrap());
            let end = ts_of(w["end"].as_str().unwrap());
            assert!(onset < end);
            assert!(w["max_delay_s"].as_i64().unwrap() > 0);
            for k in w["kinds"].as_array().unwrap() {
                assert!(kinds.contains(&k.as_str().unwrap()));
            }
            if let Some(t) = w.get("trigger") {
                assert!(ids.contains(t.as_str().unwrap()), "trigger is a change id");
            }
        }
        assert!(r.readme_md.starts_with(&format!("# {}", r.name)));
        if !r.name.starts_with("clean-") {
            assert!(
                r.readme_md.contains("shared/seeds/00"),
                "README names its seed"
            );
        }
    }
}

#[test]
fn every_window_series_exists_in_the_samples() {
    for r in rendered() {
        let present: BTreeSet<(String, String)> = parsed(r)
            .iter()
            .map(|v| {
                (
                    v["cluster"].as_str().unwrap().to_string(),
                    v["service"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let labels: Value = serde_json::from_str(&r.labels_json).unwrap();
        for w in labels["windows"].as_array().unwrap() {
            let svc = w["service"].as_str().unwrap();
            let clusters = w["clusters"].as_array().unwrap();
            assert!(!clusters.is_empty());
            for c in clusters {
                let key = (c.as_str().unwrap().to_string(), svc.to_string());
                assert!(
                    present.contains(&key),
                    "{}: window series {key:?} has no samples",
                    r.name
                );
            }
        }
        let clean = r.name.starts_with("clean-");
        assert_eq!(
            labels["windows"].as_array().unwrap().is_empty(),
            clean,
            "{}",
            r.name
        );
    }
}

/// Per series, the label windows that cover it.
fn windows_of(trace: &Trace) -> HashMap<usize, Vec<&model::Window>> {
    let mut m: HashMap<usize, Vec<&model::Window>> = HashMap::new();
    for (i, s) in trace.series.iter().enumerate() {
        for w in &trace.windows {
            if w.service == s.service && w.clusters.contains(&s.cluster) {
                m.entry(i).or_default().push(w);
            }
        }
    }
    m
}

#[test]
fn abnormal_behaviour_is_covered_by_windows_and_windows_by_behaviour() {
    for name in trace_names() {
        let trace = traces::build(name).unwrap();
        let wins = windows_of(&trace);
        for (i, s) in trace.series.iter().enumerate() {
            let mine = wins.get(&i).cloned().unwrap_or_default();
            let evacuations: Vec<i64> = trace
                .changes
                .iter()
                .filter(|c| {
                    c.kind == "traffic" && c.service == s.service && c.clusters.contains(&s.cluster)
                })
                .map(|c| c.ts)
                .collect();
            let mut t = trace.start;
            while t <= trace.end {
                let e = (trace.effect)(&trace.series, i, t as f64);
                if e.is_abnormal() {
                    let covered = mine.iter().any(|w| t >= w.onset && t <= w.end + 600);
                    let planned = !evacuations.is_empty()
                        && evacuations[0] <= t
                        && e.fail < 0.003
                        && e.p99 <= 1.25
                        && !e.silent;
                    assert!(
                        covered || (planned && mine.is_empty()),
                        "{name}: {}/{} abnormal at {} outside every window: {e:?}",
                        s.cluster,
                        s.service,
                        model::rfc3339(t).unwrap()
                    );
                    // Abnormality never precedes the earliest window of its series.
                    if let Some(first) = mine.iter().map(|w| w.onset).min() {
                        assert!(
                            t >= first,
                            "{name}: {}/{} abnormal before its window",
                            s.cluster,
                            s.service
                        );
                    }
                }
                t += trace.interval;
            }
            // Each window has something to detect right after its onset, and the series is back
            // to normal at its end.
            for w in &mine {
                let probe = (w.onset..=w.onset + w.max_delay_s.max(trace.interval))
                    .any(|t| (trace.effect)(&trace.series, i, t as f64).is_abnormal());
                assert!(
                    probe,
                    "{name}: window {:?} on {}/{} has nothing at onset",
                    w.kinds, s.cluster, s.service
                );
                let end_e = (trace.effect)(&trace.series, i, (w.end + trace.interval) as f64);
                assert!(
                    !end_e.is_abnormal() || end_e.traffic > 1.0 && end_e.fail < 0.003,
                    "{name}: {}/{} still abnormal after its window end: {end_e:?}",
                    s.cluster,
                    s.service
                );
            }
        }
    }
}

#[test]
fn incidents_have_45_minutes_of_normal_traffic_and_run_past_recovery() {
    for name in trace_names()
        .into_iter()
        .filter(|n| !n.starts_with("clean-"))
    {
        let trace = traces::build(name).unwrap();
        let first_onset = trace.windows.iter().map(|w| w.onset).min().unwrap();
        let last_end = trace.windows.iter().map(|w| w.end).max().unwrap();
        assert!(
            first_onset - trace.start >= 45 * 60,
            "{name}: baseline too short"
        );
        assert!(
            trace.end >= last_end + 10 * 60,
            "{name}: must run past recovery"
        );
    }
}

/// Sum of a field per (ts) over the samples matching a predicate.
fn sums_by_ts(v: &[Value], pred: impl Fn(&Value) -> bool, field: &str) -> BTreeMap<i64, u64> {
    let mut m = BTreeMap::new();
    for x in v.iter().filter(|x| pred(x)) {
        *m.entry(ts_of(x["ts"].as_str().unwrap())).or_insert(0) += u(x, field);
    }
    m
}

#[test]
fn routing_config_figures() {
    let r = get("2026-02-12-routing-config-removed");
    let v = parsed(r);
    let trace = traces::build(&r.name).unwrap();
    let affected: BTreeSet<String> = trace
        .windows
        .iter()
        .flat_map(|w| w.clusters.clone())
        .collect();
    assert_eq!(affected.len(), 7);
    // Affected clusters carry ~60% of conversation traffic just before onset.
    let onset = model::utc(2026, 2, 12, 21, 20, 0) as f64;
    let conv: Vec<&model::Series> = trace
        .series
        .iter()
        .filter(|s| s.service == "conversation")
        .collect();
    let total: f64 = conv.iter().map(|s| s.mean_rate(onset)).sum();
    let hit: f64 = conv
        .iter()
        .filter(|s| affected.contains(&s.cluster))
        .map(|s| s.mean_rate(onset))
        .sum();
    let share = hit / total;
    assert!((0.55..0.66).contains(&share), "affected share {share}");
    // Error ratio of an affected conversation series at 21:22 is 55-60%; retries ~24%.
    let at = |c: &str, svc: &str, t: i64| {
        v.iter()
            .find(|x| {
                x["cluster"] == c && x["service"] == svc && ts_of(x["ts"].as_str().unwrap()) == t
            })
            .unwrap()
            .clone()
    };
    let x = at(
        "prod-use1-a",
        "conversation",
        model::utc(2026, 2, 12, 21, 22, 0),
    );
    let ratio = u(&x, "errors") as f64 / u(&x, "requests") as f64;
    assert!((0.52..0.63).contains(&ratio), "{ratio}");
    let rr = u(&x, "retries") as f64 / u(&x, "requests") as f64;
    assert!((0.18..0.30).contains(&rr), "{rr}");
    // The evacuated cluster's requests fall to ~0.
    let x = at(
        "prod-usw2-b",
        "conversation",
        model::utc(2026, 2, 12, 21, 34, 0),
    );
    assert!(u(&x, "requests") < 60, "{x}");
    // Fleet-wide successful conversation requests drop by roughly a third at peak.
    let succ = |t: i64| -> u64 {
        v.iter()
            .filter(|x| x["service"] == "conversation" && ts_of(x["ts"].as_str().unwrap()) == t)
            .map(|x| u(x, "requests") - u(x, "errors"))
            .sum()
    };
    let before = succ(model::utc(2026, 2, 12, 21, 18, 0)) as f64;
    let during = succ(model::utc(2026, 2, 12, 21, 23, 0)) as f64;
    let drop = 1.0 - during / before;
    assert!((0.22..0.40).contains(&drop), "success drop {drop}");
}

#[test]
fn db_replica_figures() {
    let r = get("2026-02-04-db-replica-maintenance");
    let v = parsed(r);
    let user = |x: &Value| x["service"] == "web" || x["service"] == "app";
    let req = sums_by_ts(&v, user, "requests");
    let err = sums_by_ts(&v, user, "errors");
    let peak = req
        .iter()
        .map(|(t, n)| err[t] as f64 / *n as f64)
        .fold(0.0, f64::max);
    assert!(
        (0.15..0.22).contains(&peak),
        "peak user-facing error ratio {peak}"
    );
    let api_errors: u64 = v
        .iter()
        .filter(|x| x["service"] == "api")
        .map(|x| u(x, "errors"))
        .sum();
    let api_reqs: u64 = v
        .iter()
        .filter(|x| x["service"] == "api")
        .map(|x| u(x, "requests"))
        .sum();
    assert!((api_errors as f64 / api_reqs as f64) < 0.006);
    // Pool: ~50% before, saturated with waiters during the incident.
    let (mut during, mut waiting) = (0, 0);
    for x in v
        .iter()
        .filter(|x| x["service"] == "auth" && x["region"] == "us-east-1")
    {
        let t = ts_of(x["ts"].as_str().unwrap());
        let util = u(x, "db_pool_active") as f64 / u(x, "db_pool_max") as f64;
        if t < model::utc(2026, 2, 4, 17, 5, 0) {
            assert!((0.25..0.7).contains(&util), "{util}");
            assert_eq!(u(x, "db_pool_pending"), 0);
        }
        if (model::utc(2026, 2, 4, 17, 9, 0)..model::utc(2026, 2, 4, 17, 39, 0)).contains(&t) {
            assert!(util >= 0.95, "{util}");
            during += 1;
            if util == 1.0 && u(x, "db_pool_pending") > 0 {
                waiting += 1;
            }
        }
    }
    assert!(
        waiting * 10 >= during * 8,
        "{waiting} of {during} saturated with waiters"
    );
}

#[test]
fn telemetry_silences_match_labels() {
    let r = get("2024-12-11-telemetry-control-plane");
    let v = parsed(r);
    let labels: Value = serde_json::from_str(&r.labels_json).unwrap();
    let absent: Vec<&Value> = labels["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kinds"][0] == "telemetry_absent")
        .collect();
    assert_eq!(absent.len(), 4);
    for w in absent {
        let c = w["clusters"][0].as_str().unwrap();
        let svc = w["service"].as_str().unwrap();
        let onset = ts_of(w["onset"].as_str().unwrap());
        let end = ts_of(w["end"].as_str().unwrap());
        let ts: Vec<i64> = v
            .iter()
            .filter(|x| x["cluster"] == c && x["service"] == svc)
            .map(|x| ts_of(x["ts"].as_str().unwrap()))
            .collect();
        assert!(ts.contains(&onset), "onset is a sample");
        let next = ts.iter().copied().find(|t| *t > onset).unwrap();
        assert!(next - onset > 3600, "a long gap follows the last sample");
        assert!(next < end, "reporting resumes before the window ends");
    }
}

#[test]
fn benign_evacuation_conserves_service_totals() {
    let trace = traces::build("clean-benign-changes").unwrap();
    let t = model::utc(2025, 9, 16, 14, 40, 0) as f64;
    for svc in ["web", "api", "auth"] {
        let (mut plain, mut with) = (0.0, 0.0);
        for (i, s) in trace
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.service == svc)
        {
            plain += s.mean_rate(t);
            with += s.mean_rate(t) * (trace.effect)(&trace.series, i, t).traffic;
        }
        assert!(
            (with / plain - 1.0).abs() < 1e-9,
            "{svc}: {with} vs {plain}"
        );
    }
}

#[test]
fn late_duplicate_trace_is_out_of_order_with_exact_duplicates() {
    let r = get("clean-late-duplicate-1s");
    let ls = lines(r);
    let mut seen = BTreeSet::new();
    let mut dups = 0;
    let mut max_back = 0;
    let mut newest = i64::MIN;
    for l in &ls {
        if !seen.insert(l.clone()) {
            dups += 1;
        }
        let v: Value = serde_json::from_str(l).unwrap();
        let t = ts_of(v["ts"].as_str().unwrap());
        newest = newest.max(t);
        max_back = max_back.max(newest - t);
    }
    assert!(dups >= 20, "{dups} duplicates");
    assert!(max_back > 20 && max_back <= 60, "lateness {max_back}");
    let distinct: BTreeSet<(String, String, String)> = ls
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["ts"].to_string(),
                v["cluster"].to_string(),
                v["service"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        distinct.len(),
        3600 * 10,
        "every series has every second exactly once"
    );
    assert_eq!(distinct.len() + dups, ls.len());
}

#[test]
fn clean_diurnal_has_the_hard_series() {
    let r = get("clean-diurnal-24h");
    let v = parsed(r);
    let mut per: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for x in &v {
        let e = per
            .entry(format!("{}/{}", x["cluster"], x["service"]))
            .or_default();
        e.0 += u(x, "requests");
        e.1 += u(x, "errors");
        e.2 += 1;
    }
    assert!(per.len() >= 20);
    let low = per
        .values()
        .filter(|(r, _, n)| (*r as f64 / *n as f64) < 80.0)
        .count();
    assert!((3..=4).contains(&low), "{low} low-volume series");
    let high = per
        .values()
        .filter(|(r, e, _)| *e as f64 / *r as f64 > 0.06)
        .count();
    assert_eq!(high, 1);
}

#[test]
fn civil_time_matches_chrono() {
    for (s, t) in [
        ("2026-02-12T21:19:30Z", model::utc(2026, 2, 12, 21, 19, 30)),
        ("2024-02-29T00:00:00Z", model::utc(2024, 2, 29, 0, 0, 0)),
        ("2024-12-31T23:59:59Z", model::utc(2024, 12, 31, 23, 59, 59)),
        ("1970-01-01T00:00:00Z", 0),
    ] {
        assert_eq!(ts_of(s), t);
        assert_eq!(model::rfc3339(t).unwrap(), s);
    }
}

#[test]
fn seeds_are_stable() {
    // FNV-1a reference values: changing the hash would silently change every trace.
    assert_eq!(model::fnv1a64(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(model::fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
    assert_ne!(
        model::trace_seed("clean-diurnal-24h"),
        model::trace_seed("clean-benign-changes")
    );
}
