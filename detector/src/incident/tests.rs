//! Table-driven tests of incident grouping, blast radius and change ranking, on hand-made alerts
//! and samples (no traces).

use std::collections::HashMap;

use super::*;
use crate::alert::alert_id;
use crate::tests::{batch, S};

/// Minute-aligned event time origin.
const T0: i64 = 1_770_000_000_000;

fn at(s: i64) -> i64 {
    T0 + s * 1000
}

fn fire(cluster: &str, service: &str, kind: AlertKind, onset_s: i64) -> AlertEvent {
    AlertEvent {
        id: alert_id(cluster, service, kind, at(onset_s)),
        kind,
        state: AlertState::Firing,
        severity: Severity::Critical,
        cluster: cluster.into(),
        service: service.into(),
        region: None,
        onset: at(onset_s),
        detected_at: at(onset_s + 10),
        resolved_at: None,
        value: 0.4,
        baseline: 0.001,
        summary: String::new(),
        incident_id: None,
    }
}

fn resolution(f: &AlertEvent, at_s: i64) -> AlertEvent {
    AlertEvent {
        state: AlertState::Resolved,
        resolved_at: Some(at(at_s)),
        incident_id: None,
        ..f.clone()
    }
}

fn tracker() -> IncidentTracker {
    IncidentTracker::new(IncidentConfig::default()).unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// cluster, service, onset (s), expected group label.
    Fire(&'static str, &'static str, i64, &'static str),
    /// Resolve the n-th fired alert at (s).
    Resolve(usize, i64),
}

use Step::{Fire, Resolve};

/// Runs steps one alert at a time; returns the incident id given to each fired alert.
fn run_steps(t: &mut IncidentTracker, steps: &[Step]) -> Vec<String> {
    let mut fired: Vec<AlertEvent> = Vec::new();
    let mut ids = Vec::new();
    for step in steps {
        match *step {
            Fire(c, s, onset, _) => {
                let mut ev = [fire(c, s, AlertKind::ErrorRateSpike, onset)];
                t.on_alerts(&mut ev);
                let id = ev[0]
                    .incident_id
                    .clone()
                    .expect("firing alert without incident");
                ids.push(id);
                fired.push(ev[0].clone());
            }
            Resolve(n, at_s) => {
                let mut ev = [resolution(&fired[n], at_s)];
                t.on_alerts(&mut ev);
                assert_eq!(
                    ev[0].incident_id.as_ref(),
                    Some(&ids[n]),
                    "resolution's incident"
                );
            }
        }
    }
    ids
}

#[test]
fn grouping_rules() {
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "same service on other clusters, close onsets: one incident",
            vec![
                Fire("c1", "web", 0, "A"),
                Fire("c2", "web", 20, "A"),
                Fire("c3", "web", 40, "A"),
            ],
        ),
        (
            "other services of the same cluster, close onsets: one incident",
            vec![Fire("c1", "web", 0, "A"), Fire("c1", "auth", 30, "A")],
        ),
        (
            "different cluster and different service at the same time: two incidents",
            vec![Fire("c1", "web", 0, "A"), Fire("c2", "auth", 0, "B")],
        ),
        (
            "related but starting far apart: two incidents",
            vec![Fire("c1", "web", 0, "A"), Fire("c2", "web", 900, "B")],
        ),
        (
            "a spreading failure chains within the window at each step",
            vec![
                Fire("c1", "web", 0, "A"),
                Fire("c2", "web", 240, "A"),
                Fire("c3", "web", 480, "A"),
                Fire("c3", "api", 700, "A"),
            ],
        ),
        (
            "a later symptom of a series already in an open incident joins it",
            vec![Fire("c1", "web", 0, "A"), Fire("c1", "web", 3600, "A")],
        ),
        (
            "once resolved, a new alert on the same series opens a new incident",
            vec![
                Fire("c1", "web", 0, "A"),
                Resolve(0, 600),
                Fire("c1", "web", 620, "B"),
            ],
        ),
        (
            "related to two open incidents: joins the one with the closest onset",
            vec![
                Fire("c1", "web", 0, "A"),
                Fire("c2", "auth", 200, "B"),
                Fire("c2", "web", 190, "B"),
            ],
        ),
        (
            "a resolved incident takes no related alerts",
            vec![
                Fire("c1", "web", 0, "A"),
                Resolve(0, 60),
                Fire("c2", "web", 30, "B"),
            ],
        ),
    ];
    for (name, steps) in cases {
        let mut t = tracker();
        let ids = run_steps(&mut t, &steps);
        let labels: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Fire(_, _, _, l) => Some(*l),
                Resolve(..) => None,
            })
            .collect();
        let mut by_label: HashMap<&str, &String> = HashMap::new();
        for (label, id) in labels.iter().zip(&ids) {
            let first = by_label.entry(label).or_insert(id);
            assert_eq!(*first, id, "{name}: alerts labelled {label} split");
        }
        let distinct: std::collections::HashSet<&&String> = by_label.values().collect();
        assert_eq!(
            distinct.len(),
            by_label.len(),
            "{name}: groups merged: {ids:?}"
        );
        assert_eq!(t.incidents().count(), by_label.len(), "{name}");
    }
}

/// Checks that alerts with equal labels share an incident id and different labels do not.
fn assert_partition(name: &str, labels: &[&str], ids: &[String]) {
    let mut by_label: HashMap<&str, &String> = HashMap::new();
    for (label, id) in labels.iter().zip(ids) {
        let first = by_label.entry(label).or_insert(id);
        assert_eq!(*first, id, "{name}: alerts labelled {label} split: {ids:?}");
    }
    let distinct: std::collections::HashSet<&&String> = by_label.values().collect();
    assert_eq!(
        distinct.len(),
        by_label.len(),
        "{name}: groups merged: {ids:?}"
    );
}

#[test]
fn grouping_within_one_tick() {
    // (name, alerts fired earlier one by one, alerts of one tick detected together);
    // each alert: cluster, service, onset (s), expected group label.
    type A = (&'static str, &'static str, i64, &'static str);
    let cases: Vec<(&str, Vec<A>, Vec<A>)> =
        vec![
        (
            "related only through a third alert of the same tick: one incident",
            vec![],
            vec![("c1", "web", 0, "A"), ("c2", "api", 0, "A"), ("c1", "api", 0, "A")],
        ),
        (
            "unrelated alerts of one tick: two incidents",
            vec![],
            vec![("c1", "web", 0, "A"), ("c2", "api", 0, "B")],
        ),
        (
            "a tick that links to an open incident joins it as a whole",
            vec![("c1", "web", -60, "A")],
            vec![("c2", "api", 0, "A"), ("c2", "web", 0, "A")],
        ),
        (
            "alerts with their own open incident stay there; the rest follow the strongest claim",
            vec![("c1", "web", -60, "A"), ("c9", "db", -600, "B")],
            vec![("c9", "db", 0, "B"), ("c1", "api", 0, "A"), ("c9", "api", 0, "B")],
        ),
    ];
    for (name, before, tick) in cases {
        for reverse in [false, true] {
            let mut t = tracker();
            let mut ids = Vec::new();
            for &(c, s, onset, _) in &before {
                let mut ev = [fire(c, s, AlertKind::ErrorRateSpike, onset)];
                t.on_alerts(&mut ev);
                ids.push(ev[0].incident_id.clone().unwrap());
            }
            let mut order: Vec<&A> = tick.iter().collect();
            if reverse {
                order.reverse();
            }
            let mut evs: Vec<AlertEvent> = order
                .iter()
                .map(|&&(c, s, onset, _)| {
                    let mut e = fire(c, s, AlertKind::ErrorRateSpike, onset);
                    e.detected_at = at(30);
                    e
                })
                .collect();
            t.on_alerts(&mut evs);
            ids.extend(evs.iter().map(|e| e.incident_id.clone().unwrap()));
            let labels: Vec<&str> = before
                .iter()
                .chain(order.iter().copied())
                .map(|a| a.3)
                .collect();
            assert_partition(&format!("{name} (reversed: {reverse})"), &labels, &ids);
        }
    }
}

#[test]
fn incident_resolves_when_its_last_alert_does() {
    let mut t = tracker();
    let a = fire("c1", "web", AlertKind::ErrorRateSpike, 0);
    let b = fire("c2", "web", AlertKind::LatencySpike, 10);
    let c = fire("c2", "web", AlertKind::RetryAmplification, 20);
    let mut evs = [a.clone(), b.clone(), c.clone()];
    t.on_alerts(&mut evs);
    let id = evs[0].incident_id.clone().unwrap();
    let steps: [(&AlertEvent, i64, IncidentState, usize); 3] = [
        (&b, 300, IncidentState::Open, 2),
        (&a, 400, IncidentState::Open, 1),
        (&c, 500, IncidentState::Resolved, 0),
    ];
    for (alert, at_s, state, firing) in steps {
        let mut ev = [resolution(alert, at_s)];
        t.on_alerts(&mut ev);
        assert_eq!(ev[0].incident_id.as_deref(), Some(id.as_str()));
        let inc = t.get(&id).unwrap();
        assert_eq!(inc.state, state, "after resolving at {at_s}");
        assert_eq!(inc.alerts_firing, firing);
    }
    let inc = t.get(&id).unwrap();
    assert_eq!(inc.resolved_at, Some(at(500)));
    assert_eq!(inc.onset, at(0));
    assert_eq!(inc.clusters, ["c1", "c2"]);
    assert_eq!(inc.services, ["web"]);
    assert_eq!(inc.series, 2);
    assert_eq!(
        inc.kinds,
        [
            AlertKind::ErrorRateSpike,
            AlertKind::RetryAmplification,
            AlertKind::LatencySpike
        ]
    );
    assert_eq!(inc.alert_ids, [a.id, b.id, c.id]);
    assert_eq!(t.open_count(), 0);
}

#[test]
fn ids_are_stable_and_shaped() {
    let run = || {
        let mut t = tracker();
        run_steps(
            &mut t,
            &[Fire("c1", "web", 0, "A"), Fire("c9", "db", 0, "B")],
        )
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    for id in &a {
        assert!(id.starts_with("i-") && id.len() == 18, "{id}");
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(a[0], a[1]);
}

fn change(id: &str, kind: ChangeKind, service: &str, clusters: &[&str], ts_s: i64) -> Change {
    Change {
        id: id.into(),
        kind,
        service: service.into(),
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
        ts: at(ts_s),
        description: String::new(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn ranking_rules() {
    use ChangeKind::{Config, Deploy, Maintenance, Traffic};
    let p = IncidentConfig::default().check().unwrap();
    // Onset at t = 0 (s); 10 clusters in the fleet.
    struct Case {
        name: &'static str,
        clusters: Vec<&'static str>,
        services: Vec<&'static str>,
        changes: Vec<Change>,
        want: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            name: "targeted to exactly the affected clusters beats fleet-wide at the same time",
            clusters: vec!["a", "b", "c"],
            services: vec!["web"],
            changes: vec![
                change("fleet", Config, "lb", &["*"], -60),
                change("targeted", Deploy, "routing", &["a", "b", "c"], -60),
            ],
            want: vec!["targeted", "fleet"],
        },
        Case {
            name: "fleet-wide just before a fleet-wide incident beats an older partial deploy",
            clusters: vec!["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
            services: vec!["chat", "assistants"],
            changes: vec![
                change(
                    "old-partial",
                    Deploy,
                    "assistants",
                    &["a", "b", "c", "d"],
                    -1500,
                ),
                change("fleet", Config, "lb", &["*"], -30),
            ],
            want: vec!["fleet", "old-partial"],
        },
        Case {
            name: "equal overlap: the closer change ranks first",
            clusters: vec!["a", "b"],
            services: vec!["web"],
            changes: vec![
                change("near", Deploy, "web", &["a", "b"], -60),
                change("far", Deploy, "web", &["a", "b"], -1800),
            ],
            want: vec!["near", "far"],
        },
        Case {
            name: "same overlap and time: changing an affected service ranks first",
            clusters: vec!["a", "b"],
            services: vec!["web"],
            changes: vec![
                change("other-svc", Maintenance, "db", &["a", "b"], -120),
                change("same-svc", Maintenance, "web", &["a", "b"], -120),
            ],
            want: vec!["same-svc", "other-svc"],
        },
        Case {
            name: "an affected service changed elsewhere is listed, below a matching change",
            clusters: vec!["a", "b"],
            services: vec!["web"],
            changes: vec![
                change("elsewhere", Config, "web", &["z"], -600),
                change("match", Deploy, "routing", &["a", "b"], -30),
            ],
            want: vec!["match", "elsewhere"],
        },
        Case {
            name: "no overlap in clusters or service: not a candidate",
            clusters: vec!["a"],
            services: vec!["web"],
            changes: vec![change("unrelated", Deploy, "batch", &["q", "r"], -10)],
            want: vec![],
        },
        Case {
            name: "after the onset: only within the tolerance, and below an earlier equal change",
            clusters: vec!["a"],
            services: vec!["web"],
            changes: vec![
                change("rollback", Deploy, "web", &["a"], 600),
                change("just-after", Deploy, "web", &["a"], 30),
                change("just-before", Deploy, "web", &["a"], -30),
            ],
            want: vec!["just-before", "just-after"],
        },
        Case {
            name: "latent changes within the lookback stay listed, older ones do not",
            clusters: vec!["a", "b"],
            services: vec!["chat"],
            changes: vec![
                change("ancient", Deploy, "chat-backend", &["*"], -7 * 3600),
                change("latent", Deploy, "chat-backend", &["*"], -6360),
                change("recent", Deploy, "chat", &["a", "b"], -120),
            ],
            want: vec!["recent", "latent"],
        },
        Case {
            name: "traffic moves are judged by the same rules",
            clusters: vec!["a"],
            services: vec!["web"],
            changes: vec![change("evac", Traffic, "web", &["a"], -60)],
            want: vec!["evac"],
        },
    ];
    for c in cases {
        let clusters = strings(&c.clusters);
        let services = {
            let mut s = strings(&c.services);
            s.sort();
            s
        };
        let r = BlastRadius {
            onset: at(0),
            clusters: &clusters,
            services: &services,
            fleet_clusters: 10,
        };
        let got = rank_changes(&c.changes, &r, &p);
        let ids: Vec<&str> = got.iter().map(|c| c.change_id.as_str()).collect();
        assert_eq!(ids, c.want, "{}: {got:#?}", c.name);
        for w in got.windows(2) {
            assert!(w[0].score >= w[1].score, "{}: not sorted", c.name);
        }
        for cand in &got {
            assert!((0.0..=1.0).contains(&cand.score), "{}: {cand:?}", c.name);
        }
    }
}

#[test]
fn after_onset_penalty_orders_changes_around_the_onset() {
    // Two changes equal in everything but side of the onset, 30 s before and 30 s after.
    let clusters = strings(&["a"]);
    let services = strings(&["web"]);
    let r = BlastRadius {
        onset: at(0),
        clusters: &clusters,
        services: &services,
        fleet_clusters: 10,
    };
    let changes = [
        change("before", ChangeKind::Deploy, "web", &["a"], -30),
        change("after", ChangeKind::Deploy, "web", &["a"], 30),
    ];
    // (name, penalty, expected order, scores equal)
    let cases = [
        (
            "default: the change after the onset ranks below",
            2.0,
            ["before", "after"],
            false,
        ),
        (
            "no penalty: equal scores, the later change first",
            1.0,
            ["after", "before"],
            true,
        ),
    ];
    for (name, penalty, want, equal) in cases {
        let p = IncidentConfig {
            after_onset_penalty: penalty,
            ..IncidentConfig::default()
        }
        .check()
        .unwrap();
        let got = rank_changes(&changes, &r, &p);
        let ids: Vec<&str> = got.iter().map(|c| c.change_id.as_str()).collect();
        assert_eq!(ids, want, "{name}");
        assert_eq!(got[0].score == got[1].score, equal, "{name}: {got:?}");
    }
}

#[test]
fn changes_and_traffic_without_alerts_open_no_incident() {
    // A deploy, a config push and a traffic move on a busy, healthy fleet: no alert fires, so
    // nothing may open an incident, however well the changes would match one.
    let keys = keys(&[("a", "web"), ("b", "web")]);
    let rows = samples(&[&|_| (1000, 1), &|_| (1000, 2)], 30);
    let mut t = tracker();
    t.push_changes(&[
        change("deploy", ChangeKind::Deploy, "web", &["a", "b"], 300),
        change("cfg", ChangeKind::Config, "web", &["*"], 600),
        change("evac", ChangeKind::Traffic, "web", &["a"], 900),
    ]);
    for chunk in rows.chunks(16) {
        t.observe_batch(&batch(chunk), &keys).unwrap();
        t.on_alerts(&mut []);
    }
    t.finish();
    assert_eq!(t.incidents().count(), 0);
    assert_eq!(t.open_count(), 0);
    assert!(t.take_updates().is_empty());
    assert_eq!(t.changes().len(), 3, "changes are kept for later incidents");
}

#[test]
fn reasons_say_reach_overlap_and_timing() {
    let p = IncidentConfig::default().check().unwrap();
    let clusters = strings(&["a", "b", "c", "d", "e", "f", "g"]);
    let services = strings(&["conversation"]);
    let r = BlastRadius {
        onset: at(0),
        clusters: &clusters,
        services: &services,
        fleet_clusters: 12,
    };
    let cases = [
        (
            change("deploy-1", ChangeKind::Deploy, "routing", &["a", "b", "c", "d", "e", "f", "x"], -30),
            "deploy-1 (deploy of routing) to 6 of the 7 affected clusters (and 1 unaffected), 30 s before onset",
        ),
        (
            change("cfg-2", ChangeKind::Config, "conversation", &["z"], -2330),
            "cfg-2 (config of conversation, an affected service) to 1 unaffected cluster, 38 min 50 s before onset",
        ),
        (
            change("deploy-3", ChangeKind::Deploy, "backend", &["*"], -6360),
            "deploy-3 (deploy of backend) fleet-wide, 1 h 46 min before onset",
        ),
        (
            change("maint-4", ChangeKind::Maintenance, "conversation", &["a"], 0),
            "maint-4 (maintenance of conversation, an affected service) to 1 of the 7 affected clusters, at onset",
        ),
        (
            change("cfg-5", ChangeKind::Config, "lb", &["a"], 20),
            "cfg-5 (config of lb) to 1 of the 7 affected clusters, 20 s after the estimated onset",
        ),
    ];
    for (c, want) in cases {
        let got = rank_changes(std::slice::from_ref(&c), &r, &p);
        assert_eq!(got.len(), 1, "{}", c.id);
        assert_eq!(got[0].reason, want);
    }
}

#[test]
fn candidates_are_capped_and_follow_late_changes() {
    let cfg = IncidentConfig {
        max_candidates: 2,
        ..IncidentConfig::default()
    };
    let mut t = IncidentTracker::new(cfg).unwrap();
    let mut ev = [fire("a", "web", AlertKind::ErrorRateSpike, 0)];
    t.on_alerts(&mut ev);
    let id = ev[0].incident_id.clone().unwrap();
    assert!(t.get(&id).unwrap().candidates.is_empty());
    t.take_updates();
    // The change feed lags: the cause arrives after the incident opened.
    t.push_changes(&[
        change("d1", ChangeKind::Deploy, "web", &["a"], -900),
        change("d2", ChangeKind::Deploy, "web", &["a"], -60),
        change("d3", ChangeKind::Deploy, "web", &["a"], -1800),
    ]);
    let inc = t.get(&id).unwrap().clone();
    let ids: Vec<&str> = inc
        .candidates
        .iter()
        .map(|c| c.change_id.as_str())
        .collect();
    assert_eq!(ids, ["d2", "d1"]);
    let updates = t.take_updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].candidates, inc.candidates);
    // A change the incident cannot explain changes nothing.
    t.push_changes(&[change("far", ChangeKind::Deploy, "db", &["q"], -60)]);
    assert!(t.take_updates().is_empty());
}

#[test]
fn updates_name_each_changed_incident_once() {
    let mut t = tracker();
    let ids = run_steps(
        &mut t,
        &[
            Fire("c1", "web", 0, "A"),
            Fire("c2", "web", 10, "A"),
            Fire("c9", "db", 0, "B"),
        ],
    );
    let got: Vec<String> = t.take_updates().into_iter().map(|i| i.id).collect();
    assert_eq!(got, [ids[0].clone(), ids[2].clone()]);
    assert!(t.take_updates().is_empty(), "drained");
    let newest: Vec<&str> = t.incidents().map(|i| i.id.as_str()).collect();
    assert_eq!(newest, [ids[2].as_str(), ids[0].as_str()], "newest first");
}

#[test]
fn resolved_incidents_beyond_the_cap_are_dropped_oldest_first() {
    let cfg = IncidentConfig {
        max_resolved: 1,
        ..IncidentConfig::default()
    };
    let mut t = IncidentTracker::new(cfg).unwrap();
    let ids = run_steps(
        &mut t,
        &[
            Fire("c1", "web", 0, "A"),
            Resolve(0, 100),
            Fire("c2", "db", 200, "B"),
            Resolve(1, 300),
            Fire("c3", "api", 400, "C"),
        ],
    );
    assert!(t.get(&ids[0]).is_none());
    assert!(t.get(&ids[1]).is_some());
    assert!(t.get(&ids[2]).is_some());
    // The dropped incident's last change is still reported once.
    let updated: Vec<String> = t.take_updates().into_iter().map(|i| i.id).collect();
    assert_eq!(updated, ids);
}

/// Samples every 10 s for `minutes`, per series: (requests, errors) per sample by minute.
fn samples(per_series: &[&dyn Fn(i64) -> (u64, u64)], minutes: i64) -> Vec<S> {
    let mut rows = Vec::new();
    for m in 0..minutes {
        for k in 0..6 {
            for (sid, f) in per_series.iter().enumerate() {
                let (req, err) = f(m);
                rows.push(S {
                    sid: u32::try_from(sid).unwrap(),
                    ts: T0 + m * 60_000 + (k + 1) * 10_000,
                    interval_ms: 10_000,
                    req,
                    err,
                    ..S::default()
                });
            }
        }
    }
    rows
}

fn keys(pairs: &[(&str, &str)]) -> Vec<SeriesKey> {
    pairs
        .iter()
        .map(|(c, s)| SeriesKey {
            cluster: (*c).into(),
            service: (*s).into(),
            region: None,
        })
        .collect()
}

#[test]
fn traffic_share_and_peak_error_ratio() {
    // Four series; from minute 30 the two on cluster a fail (half their requests), and their
    // retries double their volume; the rest of the fleet is healthy.
    let onset_min = 30;
    let healthy = |_| (1000, 0);
    let failing_big = move |m: i64| {
        if m < onset_min {
            (3000, 0)
        } else {
            (6000, 3000)
        }
    };
    let failing_small = move |m: i64| {
        if m < onset_min {
            (1000, 0)
        } else {
            (2000, 1000)
        }
    };
    let keys = keys(&[("a", "web"), ("a", "api"), ("b", "web"), ("c", "web")]);
    let rows = samples(&[&failing_big, &failing_small, &healthy, &healthy], 45);
    struct Case {
        name: &'static str,
        chunk: usize,
    }
    let cases = [
        Case {
            name: "one batch per sample",
            chunk: 1,
        },
        Case {
            name: "odd batches",
            chunk: 7,
        },
        Case {
            name: "one batch",
            chunk: rows.len(),
        },
    ];
    let mut seen: Option<Incident> = None;
    for c in cases {
        let mut t = tracker();
        let onset_s = onset_min * 60;
        let mut pending = vec![
            fire("a", "web", AlertKind::ErrorRateSpike, onset_s),
            fire("a", "api", AlertKind::ErrorRateSpike, onset_s),
        ];
        let mut fired = false;
        for chunk in rows.chunks(c.chunk) {
            t.observe_batch(&batch(chunk), &keys).unwrap();
            // The detector would page once the failing samples have been seen.
            if !fired && chunk.iter().any(|r| r.ts > at(onset_s + 10)) {
                t.on_alerts(&mut pending);
                fired = true;
            }
        }
        let inc = t.incidents().next().cloned().unwrap();
        // Before onset: a has 3000 + 1000 of 6000 requests per sample.
        let share = inc.affected_traffic_ratio.unwrap();
        assert!(
            (share - 4000.0 / 6000.0).abs() < 1e-6,
            "{}: {share}",
            c.name
        );
        // During: 4000 errors of 10000 requests per sample, once buckets have settled.
        let peak = inc.peak_error_ratio.unwrap();
        assert!((peak - 0.4).abs() < 1e-6, "{}: {peak}", c.name);
        if let Some(prev) = &seen {
            assert_eq!(prev, &inc, "{}: differs from the previous batching", c.name);
        }
        seen = Some(inc);
    }
}

#[test]
fn no_traffic_data_leaves_ratios_unknown() {
    let mut t = tracker();
    let mut ev = [fire("a", "web", AlertKind::TelemetryAbsent, 0)];
    t.on_alerts(&mut ev);
    let inc = t.incidents().next().unwrap();
    assert_eq!(inc.affected_traffic_ratio, None);
    assert_eq!(inc.peak_error_ratio, None);
    let json = serde_json::to_value(inc).unwrap();
    for field in [
        "id",
        "state",
        "severity",
        "onset",
        "detected_at",
        "resolved_at",
        "updated_at",
        "kinds",
        "clusters",
        "services",
        "series",
        "alerts_firing",
        "affected_traffic_ratio",
        "peak_error_ratio",
        "alert_ids",
        "candidates",
    ] {
        assert!(json.get(field).is_some(), "missing {field}: {json}");
    }
    assert_eq!(json["state"], "open");
    assert_eq!(json["kinds"][0], "telemetry_absent");
    assert_eq!(json["onset"], "2026-02-02T02:40:00Z");
}

#[test]
fn config_defaults_are_valid() {
    assert!(IncidentConfig::default().check().is_ok());
}

#[test]
fn bad_config_fields_are_named() {
    type Mutation = Box<dyn Fn(&mut IncidentConfig)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "incidents.group_window_s",
            Box::new(|c| c.group_window_s = -1.0),
        ),
        (
            "incidents.closeness_half_s",
            Box::new(|c| c.closeness_half_s = 0.0),
        ),
        (
            "incidents.after_onset_penalty",
            Box::new(|c| c.after_onset_penalty = 0.5),
        ),
        (
            "incidents.cluster_weight",
            Box::new(|c| c.cluster_weight = f64::NAN),
        ),
        (
            "incidents.service_weight",
            Box::new(|c| {
                c.cluster_weight = 0.0;
                c.service_weight = 0.0;
            }),
        ),
        (
            "incidents.max_candidates",
            Box::new(|c| c.max_candidates = 0),
        ),
        ("incidents.bucket_s", Box::new(|c| c.bucket_s = 0.5)),
        (
            "incidents.volume_window_s",
            Box::new(|c| c.volume_window_s = 10.0),
        ),
        ("incidents.history_s", Box::new(|c| c.history_s = 60.0)),
        (
            "incidents.settle_s",
            Box::new(|c| c.settle_s = f64::INFINITY),
        ),
    ];
    for (field, mutate) in cases {
        let mut c = IncidentConfig::default();
        mutate(&mut c);
        let err = c.check().expect_err(field);
        assert_eq!(err.field, field);
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn unknown_config_fields_are_refused() {
    let err = serde_json::from_str::<IncidentConfig>(r#"{"group_window_s": 60, "bogus": 1}"#)
        .expect_err("unknown field");
    assert!(err.to_string().contains("bogus"), "{err}");
}
