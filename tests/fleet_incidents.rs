//! Fleet incidents on the seed traces (issue 6): the blast radius and the likely trigger that
//! spikewatch reports for each reconstructed postmortem, and silence on the clean traces.
//!
//! What is expected comes from the traces' own files and the postmortem figures
//! (`testdata/incidents/*/README.md`, INCIDENTS): the trigger is picked out of `changes.jsonl`
//! by its kind, service and time and checked against the `trigger` of `labels.json`; the
//! affected clusters are the clusters of the labelled windows. Nothing is taken from a previous
//! run of spikewatch.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use detector::incident::IncidentState;
use detector::{AlertKind, AlertState, DetectorConfig, Incident};
use ingest::trace::{ChangeEvent, ChangeKind, Labels};
use spikewatch::backtest::RECOVERY_GRACE_MS;
use spikewatch::pipeline::{self, ReplayResult};

const SEED_TRACES: [&str; 5] = [
    "2024-01-29-release-breaks-routing",
    "2024-11-08-lb-config-crash",
    "2024-12-11-telemetry-control-plane",
    "2026-02-04-db-replica-maintenance",
    "2026-02-12-routing-config-removed",
];

const CLEAN_TRACES: [&str; 3] = [
    "clean-benign-changes",
    "clean-diurnal-24h",
    "clean-late-duplicate-1s",
];

fn incidents_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/incidents")
}

fn ts(s: &str) -> i64 {
    ingest::time::parse_rfc3339_ms(s).unwrap_or_else(|| panic!("bad timestamp {s}"))
}

/// A trace's files and its replay through the library pipeline.
struct Trace {
    name: &'static str,
    labels: Labels,
    changes: Vec<ChangeEvent>,
    res: ReplayResult,
}

fn replay(dir: &Path, batch_size: usize) -> ReplayResult {
    pipeline::replay_with_incidents(dir, DetectorConfig::default(), batch_size, |_, _, _| {})
        .unwrap()
}

fn load(name: &'static str) -> Trace {
    let dir = incidents_dir().join(name);
    Trace {
        name,
        labels: ingest::trace::read_labels(&dir)
            .unwrap()
            .expect("labels.json"),
        changes: ingest::trace::read_changes(&dir).unwrap(),
        res: replay(&dir, 1024),
    }
}

impl Trace {
    /// The one change of `changes.jsonl` that `pick` selects; `what` names it in failures.
    fn change(&self, what: &str, pick: impl Fn(&ChangeEvent) -> bool) -> &ChangeEvent {
        let found: Vec<&ChangeEvent> = self.changes.iter().filter(|c| pick(c)).collect();
        assert_eq!(found.len(), 1, "{}: {what}: {found:?}", self.name);
        found[0]
    }

    /// The change the labels name as the trigger (every window of a seed trace names one).
    fn labelled_trigger(&self) -> &str {
        let triggers: BTreeSet<&str> = self
            .labels
            .windows
            .iter()
            .map(|w| w.trigger.as_deref().expect("window without trigger"))
            .collect();
        assert_eq!(triggers.len(), 1, "{}: {triggers:?}", self.name);
        triggers.into_iter().next().unwrap()
    }

    fn window_clusters(&self) -> BTreeSet<&str> {
        self.labels
            .windows
            .iter()
            .flat_map(|w| w.clusters.iter().map(String::as_str))
            .collect()
    }

    fn window_services(&self) -> BTreeSet<&str> {
        self.labels
            .windows
            .iter()
            .map(|w| w.service.as_str())
            .collect()
    }

    /// The incident holding the alerts fired on the labelled series during their windows;
    /// they must all be in that one incident.
    fn labelled_incident(&self) -> &Incident {
        let ids: BTreeSet<&str> = self
            .res
            .events
            .iter()
            .filter(|e| e.state == AlertState::Firing)
            .filter(|e| {
                self.labels.windows.iter().any(|w| {
                    w.service == e.service
                        && w.clusters.contains(&e.cluster)
                        && (w.onset..=w.end + RECOVERY_GRACE_MS).contains(&e.detected_at)
                })
            })
            .map(|e| e.incident_id.as_deref().expect("alert without incident"))
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{}: the labelled alerts should form one incident: {ids:?}",
            self.name
        );
        let id = ids.into_iter().next().unwrap();
        self.res
            .incidents
            .iter()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("{}: {id} not among the incidents", self.name))
    }

    /// What every seed trace must show: one incident, made of the labelled windows' alerts,
    /// on exactly the windows' clusters and services, with `trigger` (the change the caller
    /// picked by its properties, which must be the one the labels name) ranked first.
    fn check_incident(&self, trigger: &ChangeEvent) -> &Incident {
        assert_eq!(trigger.id, self.labelled_trigger(), "{}", self.name);
        assert_eq!(
            self.res.incidents.len(),
            1,
            "{}: one fleet incident: {:#?}",
            self.name,
            self.res.incidents
        );
        let inc = self.labelled_incident();
        let clusters: BTreeSet<&str> = inc.clusters.iter().map(String::as_str).collect();
        assert_eq!(clusters, self.window_clusters(), "{}: clusters", self.name);
        let services: BTreeSet<&str> = inc.services.iter().map(String::as_str).collect();
        assert_eq!(services, self.window_services(), "{}: services", self.name);
        assert_eq!(
            inc.likely_cause().map(|c| c.change_id.as_str()),
            Some(trigger.id.as_str()),
            "{}: candidates {:#?}",
            self.name,
            inc.candidates
        );
        let top = &inc.candidates[0];
        assert!(
            top.reason.starts_with(&trigger.id),
            "{}: {}",
            self.name,
            top.reason
        );
        inc
    }
}

fn rank(inc: &Incident, change_id: &str) -> Option<usize> {
    inc.candidates
        .iter()
        .position(|c| c.change_id == change_id)
        .map(|i| i + 1)
}

fn has_kind(inc: &Incident, kind: AlertKind) -> bool {
    inc.kinds.contains(&kind)
}

#[test]
fn incident_2026_02_12_routing_config_removed() {
    let t = load("2026-02-12-routing-config-removed");
    // "A rollout starting 21:19:30 (change event) removes a routing resource".
    let rollout = t.change("the routing rollout", |c| {
        c.kind == ChangeKind::Deploy && c.ts == ts("2026-02-12T21:19:30Z")
    });
    let inc = t.check_incident(rollout);
    // The rollout's clusters "together serve ~60% of traffic".
    let share = inc.affected_traffic_ratio.expect("traffic share");
    assert!((0.5..=0.75).contains(&share), "affected traffic {share}");
    for c in &inc.clusters {
        assert!(
            rollout.touches(c),
            "{c} is affected but the rollout missed it"
        );
    }
    assert!(has_kind(inc, AlertKind::ErrorRateSpike));
    assert!(has_kind(inc, AlertKind::RetryAmplification));
    assert_eq!(inc.state, IncidentState::Resolved, "full recovery 21:40");
}

#[test]
fn incident_2024_01_29_release_breaks_routing() {
    let t = load("2024-01-29-release-breaks-routing");
    let frontend = t.change("the 00:17 chat frontend deploy", |c| {
        c.kind == ChangeKind::Deploy && c.service == "chat" && c.ts == ts("2024-01-30T00:17:00Z")
    });
    let backend = t.change("the 22:33 backend deploy", |c| {
        c.kind == ChangeKind::Deploy && c.ts == ts("2024-01-29T22:33:00Z")
    });
    let inc = t.check_incident(frontend);
    let backend_rank = rank(inc, &backend.id);
    assert!(
        backend_rank.is_some_and(|r| r > 1),
        "the latent backend deploy should be listed below the frontend deploy: {:#?}",
        inc.candidates
    );
    assert!(has_kind(inc, AlertKind::ErrorRateSpike));
    assert!(has_kind(inc, AlertKind::LatencySpike));
    assert!(!inc.services.iter().any(|s| s == "moderation"));
}

#[test]
fn incident_2024_11_08_lb_config_crash() {
    let t = load("2024-11-08-lb-config-crash");
    let lb_config = t.change("the 00:05:30 load-balancer config change", |c| {
        c.kind == ChangeKind::Config && c.ts == ts("2024-11-09T00:05:30Z")
    });
    let inc = t.check_incident(lb_config);
    // Rollback 00:28, errors nearly gone by 00:32: the incident resolves after that.
    assert_eq!(inc.state, IncidentState::Resolved);
    assert!(inc.resolved_at.unwrap() > ts("2024-11-09T00:32:00Z"));
}

#[test]
fn incident_2024_12_11_telemetry_control_plane() {
    let t = load("2024-12-11-telemetry-control-plane");
    let telemetry = t.change("the fleet-wide telemetry deploy", |c| {
        c.kind == ChangeKind::Deploy && c.is_fleet_wide() && c.ts == ts("2024-12-11T23:15:00Z")
    });
    let inc = t.check_incident(telemetry);
    // Every cluster's control plane was overloaded: (nearly) all traffic is affected.
    let share = inc.affected_traffic_ratio.expect("traffic share");
    assert!(share >= 0.9, "affected traffic {share}");
    assert!(has_kind(inc, AlertKind::ErrorRateSpike));
    assert!(has_kind(inc, AlertKind::TelemetryAbsent));
}

#[test]
fn incident_2026_02_04_db_replica_maintenance() {
    let t = load("2026-02-04-db-replica-maintenance");
    let maintenance = t.change("the 17:05 replica maintenance", |c| {
        c.kind == ChangeKind::Maintenance && c.ts == ts("2026-02-04T17:05:00Z")
    });
    let inc = t.check_incident(maintenance);
    assert!(
        !inc.services.iter().any(|s| s == "api"),
        "api is unaffected"
    );
    assert!(has_kind(inc, AlertKind::DbPoolSaturation));
    assert_eq!(inc.state, IncidentState::Resolved, "recovered 17:59");
}

#[test]
fn every_alert_of_every_seed_trace_names_one_of_its_incidents() {
    for name in SEED_TRACES {
        let res = replay(&incidents_dir().join(name), 1024);
        let ids: BTreeSet<&str> = res.incidents.iter().map(|i| i.id.as_str()).collect();
        assert!(!res.events.is_empty(), "{name}: no alerts");
        for e in &res.events {
            let id = e.incident_id.as_deref();
            assert!(
                id.is_some_and(|id| ids.contains(id)),
                "{name}: {} {} {}/{} carries {id:?}, incidents {ids:?}",
                e.state.as_str(),
                e.kind.as_str(),
                e.cluster,
                e.service
            );
        }
        // And each incident lists exactly the firing alerts that name it.
        for inc in &res.incidents {
            let named: BTreeSet<&str> = res
                .events
                .iter()
                .filter(|e| e.state == AlertState::Firing)
                .filter(|e| e.incident_id.as_deref() == Some(inc.id.as_str()))
                .map(|e| e.id.as_str())
                .collect();
            let listed: BTreeSet<&str> = inc.alert_ids.iter().map(String::as_str).collect();
            assert_eq!(named, listed, "{name}: {}", inc.id);
        }
    }
}

#[test]
fn benign_changes_and_clean_traffic_open_no_incident() {
    for name in CLEAN_TRACES {
        let dir = incidents_dir().join(name);
        let changes = ingest::trace::read_changes(&dir).unwrap();
        let res = replay(&dir, 1024);
        assert_eq!(res.changes, changes.len(), "{name}: changes loaded");
        assert!(res.incidents.is_empty(), "{name}: {:#?}", res.incidents);
        assert!(
            res.events.is_empty(),
            "{name}: {} alert events",
            res.events.len()
        );
    }
    // The benign-changes trace does have deploys, a config push and a planned evacuation.
    let changes =
        ingest::trace::read_changes(incidents_dir().join("clean-benign-changes")).unwrap();
    for kind in [ChangeKind::Deploy, ChangeKind::Config, ChangeKind::Traffic] {
        assert!(changes.iter().any(|c| c.kind == kind), "no {kind} change");
    }
}

#[test]
fn incidents_do_not_depend_on_batch_size() {
    let dir = incidents_dir().join("2026-02-12-routing-config-removed");
    let reference = replay(&dir, 1024).incidents;
    assert!(!reference.is_empty());
    for batch_size in [1, 7] {
        let got = replay(&dir, batch_size).incidents;
        assert_eq!(got, reference, "batch size {batch_size}");
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spikewatch"))
}

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("spikewatch-fleet-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn is_rfc3339(v: &serde_json::Value) -> bool {
    v.as_str()
        .is_some_and(|s| ingest::time::parse_rfc3339_ms(s).is_some())
}

/// Checks one incident record of `--incidents-out` against the documented shape.
fn check_record(v: &serde_json::Value) {
    let id = v["id"].as_str().unwrap();
    assert!(
        id.len() == 18 && id.starts_with("i-") && id[2..].chars().all(|c| c.is_ascii_hexdigit()),
        "id {id}"
    );
    let state = v["state"].as_str().unwrap();
    assert!(["open", "resolved"].contains(&state), "state {state}");
    assert!(
        ["warning", "critical"].contains(&v["severity"].as_str().unwrap()),
        "{v}"
    );
    for f in ["onset", "detected_at", "updated_at"] {
        assert!(is_rfc3339(&v[f]), "{f}: {v}");
    }
    if state == "resolved" {
        assert!(is_rfc3339(&v["resolved_at"]), "{v}");
    } else {
        assert!(v["resolved_at"].is_null(), "{v}");
    }
    let kinds = v["kinds"].as_array().unwrap();
    assert!(!kinds.is_empty());
    for k in kinds {
        let k = k.as_str().unwrap();
        assert!(
            [
                "error_rate_spike",
                "success_drop",
                "retry_amplification",
                "db_pool_saturation",
                "latency_spike",
                "telemetry_absent"
            ]
            .contains(&k),
            "kind {k}"
        );
    }
    for f in ["clusters", "services"] {
        let names: Vec<&str> = v[f]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(!names.is_empty(), "{f}: {v}");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{f} sorted: {v}");
    }
    let series = v["series"].as_u64().unwrap();
    assert!(series >= 1);
    let firing = v["alerts_firing"].as_u64().unwrap();
    assert_eq!(firing == 0, state == "resolved", "{v}");
    for f in ["affected_traffic_ratio", "peak_error_ratio"] {
        let r = v[f].as_f64().unwrap_or_else(|| panic!("{f}: {v}"));
        assert!((0.0..=1.0).contains(&r), "{f}: {v}");
    }
    let alert_ids = v["alert_ids"].as_array().unwrap();
    assert!(alert_ids.len() as u64 >= series);
    for c in v["candidates"].as_array().unwrap() {
        let change = c["change_id"].as_str().unwrap();
        assert!(
            ["deploy", "config", "maintenance", "traffic"].contains(&c["kind"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["service"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
        assert!(is_rfc3339(&c["ts"]), "{c}");
        let score = c["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{c}");
        assert!(c["reason"].as_str().unwrap().starts_with(change), "{c}");
    }
}

#[test]
fn replay_incidents_out_writes_one_json_record_per_incident() {
    // (trace, incidents expected: the postmortem's one fleet incident, or none)
    let cases = [
        ("2026-02-12-routing-config-removed", 1),
        ("2024-01-29-release-breaks-routing", 1),
        ("clean-benign-changes", 0),
    ];
    let scratch = Scratch::new("out");
    for (name, want) in cases {
        let file = scratch.0.join(format!("{name}.jsonl"));
        let dir = incidents_dir().join(name);
        let out = bin()
            .args(["replay", "--format", "jsonl", "--incidents-out"])
            .arg(&file)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{name}: {} not written: {e}", file.display()));
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        assert_eq!(records.len(), want, "{name}: {text}");
        for r in &records {
            check_record(r);
        }
        let record_ids: BTreeSet<&str> =
            records.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(record_ids.len(), records.len(), "{name}: ids repeat");

        // stdout stays alert events only, each naming a record; each record's alerts fired.
        let stdout = String::from_utf8(out.stdout).unwrap();
        let alerts: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        let mut fired = BTreeSet::new();
        for a in &alerts {
            assert!(a.get("kind").is_some(), "{name}: not an alert event: {a}");
            let id = a["incident_id"].as_str();
            assert!(
                id.is_some_and(|id| record_ids.contains(id)),
                "{name}: alert names {id:?}, records {record_ids:?}"
            );
            if a["state"] == "firing" {
                fired.insert(a["id"].as_str().unwrap().to_owned());
            }
        }
        for r in &records {
            for id in r["alert_ids"].as_array().unwrap() {
                assert!(
                    fired.contains(id.as_str().unwrap()),
                    "{name}: {id} never fired"
                );
            }
        }
        // The same trace's trigger tops the candidates of its record.
        if want > 0 {
            let labels = ingest::trace::read_labels(&dir).unwrap().unwrap();
            let trigger = labels.windows[0].trigger.as_deref().unwrap();
            assert_eq!(records[0]["candidates"][0]["change_id"], trigger, "{name}");
        }
    }
}

#[test]
fn backtest_json_scores_the_labelled_triggers() {
    let out = bin()
        .args(["backtest", "--format", "json"])
        .arg(incidents_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scores: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let mut seen = BTreeSet::new();
    for sc in &scores {
        let name = sc["trace"].as_str().unwrap();
        seen.insert(name.to_owned());
        let labels = ingest::trace::read_labels(incidents_dir().join(name))
            .unwrap()
            .unwrap();
        let mut wanted: Vec<&str> = Vec::new();
        for w in &labels.windows {
            if let Some(t) = w.trigger.as_deref() {
                if !wanted.contains(&t) {
                    wanted.push(t);
                }
            }
        }
        let triggers = sc["triggers"].as_array().unwrap();
        let got: Vec<&str> = triggers
            .iter()
            .map(|t| t["trigger"].as_str().unwrap())
            .collect();
        assert_eq!(got, wanted, "{name}: {sc}");
        if wanted.is_empty() {
            assert_eq!(sc["incidents"], 0, "{name}");
        } else {
            assert!(sc["incidents"].as_u64().unwrap() >= 1, "{name}");
        }
        for t in triggers {
            assert!(
                t["incident_id"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("i-")),
                "{name}: {t}"
            );
            assert_eq!(t["rank"], 1, "{name}: {t}");
            assert_eq!(t["top"], t["trigger"], "{name}: {t}");
            let jaccard = t["cluster_jaccard"].as_f64().unwrap();
            assert!((jaccard - 1.0).abs() < 1e-9, "{name}: {t}");
        }
    }
    for name in SEED_TRACES.iter().chain(&CLEAN_TRACES) {
        assert!(seen.contains(*name), "{name} not scored");
    }
}
