//! 2026-02-12: a routine rollout removes a routing resource; the clusters it reaches reject
//! conversation and codex requests until new instances come up.

use super::{ceil_to, find, seed_path};
use crate::model::{change, ramp, utc, window, Delivery, Effect, Series, Trace, Window};

pub(crate) const NAME: &str = "2026-02-12-routing-config-removed";

const INTERVAL: i64 = 10;
const ROUTING_CODES: &[(&str, f64)] = &[("503", 0.86), ("502", 0.14)];

const fn at(h: i64, m: i64, s: i64) -> i64 {
    utc(2026, 2, 12, h, m, s)
}

/// An affected cluster: failure start jitter after 21:20:00 (s), conversation error ratio,
/// recovery start and duration (new instances replacing the broken ones).
#[derive(Debug, Clone, Copy)]
struct Hit {
    cluster: &'static str,
    jitter: f64,
    err: f64,
    rec_start: i64,
    rec_dur: i64,
}

const HITS: [Hit; 7] = [
    Hit {
        cluster: "prod-use1-a",
        jitter: 0.0,
        err: 0.58,
        rec_start: at(21, 31, 40),
        rec_dur: 100,
    },
    Hit {
        cluster: "prod-use1-b",
        jitter: 1.5,
        err: 0.60,
        rec_start: at(21, 24, 50),
        rec_dur: 70,
    },
    Hit {
        cluster: "prod-use1-c",
        jitter: 0.5,
        err: 0.56,
        rec_start: at(21, 28, 10),
        rec_dur: 90,
    },
    Hit {
        cluster: "prod-use2-a",
        jitter: 3.0,
        err: 0.55,
        rec_start: at(21, 35, 30),
        rec_dur: 120,
    },
    Hit {
        cluster: "prod-usw2-a",
        jitter: 2.0,
        err: 0.59,
        rec_start: at(21, 26, 40),
        rec_dur: 80,
    },
    // The slow cluster: evacuated at 21:30, healthy again by 21:37, traffic back 21:38-21:39:30.
    Hit {
        cluster: "prod-usw2-b",
        jitter: 1.0,
        err: 0.57,
        rec_start: at(21, 36, 0),
        rec_dur: 60,
    },
    Hit {
        cluster: "prod-euw1-a",
        jitter: 4.0,
        err: 0.57,
        rec_start: at(21, 36, 40),
        rec_dur: 80,
    },
];

const SLOW: &str = "prod-usw2-b";
const EVAC_START: i64 = at(21, 30, 0);
const EVAC_RESTORE: i64 = at(21, 38, 0);
const FULL_RECOVERY: i64 = at(21, 40, 0);

/// (cluster, conversation req/s, codex req/s or 0).
const CLUSTERS: [(&str, f64, f64); 13] = [
    ("prod-use1-a", 420.0, 62.0),
    ("prod-use1-b", 380.0, 55.0),
    ("prod-use1-c", 300.0, 0.0),
    ("prod-use2-a", 260.0, 41.0),
    ("prod-usw2-a", 340.0, 50.0),
    ("prod-usw2-b", 220.0, 36.0),
    ("prod-euw1-a", 300.0, 45.0),
    ("prod-use1-d", 240.0, 30.0),
    ("prod-usw2-c", 250.0, 0.0),
    ("prod-euw1-b", 280.0, 34.0),
    ("prod-euc1-a", 250.0, 0.0),
    ("prod-apne1-a", 290.0, 28.0),
    ("prod-apse2-a", 210.0, 0.0),
];

#[derive(Debug, Clone)]
struct Role {
    hit: Option<Hit>,
    /// Healthy cluster that absorbs the evacuated traffic of its service.
    absorber: bool,
    /// Index of the slow cluster's series of the same service.
    slow: Option<usize>,
    /// Absorbing series of the same service.
    peers: Vec<usize>,
}

fn evac(t: f64) -> f64 {
    ramp(t, EVAC_START as f64, 90.0) * (1.0 - ramp(t, EVAC_RESTORE as f64, 90.0))
}

fn hit_of(cluster: &str) -> Option<Hit> {
    HITS.iter().copied().find(|h| h.cluster == cluster)
}

pub(crate) fn build() -> Trace {
    let mut series = Vec::new();
    for (c, conv, codex) in CLUSTERS {
        series.push(Series::new(c, "conversation", conv));
        if codex > 0.0 {
            series.push(Series::new(c, "codex", codex).db(100, 0.42));
        }
    }
    let roles: Vec<Role> = series
        .iter()
        .map(|s| {
            let hit = hit_of(&s.cluster);
            let peers = series
                .iter()
                .enumerate()
                .filter(|(_, p)| p.service == s.service && hit_of(&p.cluster).is_none())
                .map(|(i, _)| i)
                .collect();
            Role {
                hit,
                absorber: hit.is_none(),
                slow: find(&series, SLOW, &s.service),
                peers,
            }
        })
        .collect();

    let onset = at(21, 20, 0);
    let effect = Box::new(move |series: &[Series], idx: usize, t: f64| -> Effect {
        let s = &series[idx];
        let role = &roles[idx];
        let conv = s.service == "conversation";
        let mut e = Effect::NORMAL;
        if let Some(h) = role.hit {
            let fs = onset as f64 + h.jitter;
            let off = ramp(t, h.rec_start as f64, h.rec_dur as f64);
            let i = ramp(t, fs, 4.0) * (1.0 - off);
            // Client retries build up over ~40 s and fade with the errors.
            let r = ramp(t, fs, 40.0) * (1.0 - off);
            e.fail = if conv { h.err } else { h.err * 0.88 } * i;
            e.fail_codes = ROUTING_CODES;
            if conv {
                e.traffic = 1.0 + 0.30 * r;
                e.retry_add = 0.231 * r;
            } else {
                e.traffic = 1.0 + 0.08 * r;
                e.retry_add = 0.07 * r;
            }
            e.p99 = 1.0 + 0.45 * i;
            e.pool_demand = 1.0 - 0.5 * i;
            if h.cluster == SLOW {
                e.traffic *= 1.0 - 0.992 * evac(t);
            }
        } else if role.absorber {
            let ev = evac(t);
            if let (true, Some(slow)) = (ev > 0.0, role.slow) {
                let moved = 0.992 * ev * series[slow].mean_rate(t);
                let total: f64 = role.peers.iter().map(|&p| series[p].mean_rate(t)).sum();
                if total > 0.0 {
                    e.traffic = 1.0 + moved / total;
                }
            }
        }
        e
    });

    let affected: Vec<&str> = HITS.iter().map(|h| h.cluster).collect();
    let trigger = Some("deploy-8812");
    let mut windows: Vec<Window> = Vec::new();
    for h in HITS {
        let end = if h.cluster == SLOW {
            FULL_RECOVERY
        } else {
            ceil_to(h.rec_start + h.rec_dur, INTERVAL)
        };
        windows.push(window(
            &["error_rate_spike"],
            "conversation",
            &[h.cluster],
            onset,
            end,
            20,
            trigger,
        ));
        windows.push(window(
            &["retry_amplification"],
            "conversation",
            &[h.cluster],
            onset,
            end,
            60,
            trigger,
        ));
        if find(&series, h.cluster, "codex").is_some() {
            windows.push(window(
                &["error_rate_spike"],
                "codex",
                &[h.cluster],
                onset,
                end,
                20,
                trigger,
            ));
        }
    }

    let changes = vec![
        change(
            at(20, 41, 10),
            "config",
            "codex",
            &["prod-euw1-b"],
            "cfg-2231",
            "raise codex task queue concurrency limit (unrelated, harmless)",
        ),
        change(
            at(21, 19, 30),
            "deploy",
            "routing-config",
            &affected,
            "deploy-8812",
            "periodic rollout of the internal routing service used by conversation and codex",
        ),
        change(
            EVAC_START,
            "traffic",
            "conversation",
            &[SLOW],
            "evac-8815",
            "evacuate conversation traffic from slow-updating cluster prod-usw2-b",
        ),
        change(
            EVAC_START,
            "traffic",
            "codex",
            &[SLOW],
            "evac-8816",
            "evacuate codex traffic from prod-usw2-b",
        ),
        change(
            EVAC_RESTORE,
            "traffic",
            "conversation",
            &[SLOW],
            "evac-8815-restore",
            "restore conversation traffic to prod-usw2-b after its new instances came up",
        ),
        change(
            EVAC_RESTORE,
            "traffic",
            "codex",
            &[SLOW],
            "evac-8816-restore",
            "restore codex traffic to prod-usw2-b",
        ),
    ];

    let readme = format!(
        "# {NAME}\n\n\
Reconstructs the ChatGPT incident of **12 February 2026, 13:20-13:40 PST (21:20-21:40 UTC): \"elevated \
conversation error rates\" after a routine deployment removed a routing configuration resource**. Source \
postmortem: `{seed}`.\n\n\
## What happened\n\n\
A periodic rollout of an internal service that conversation requests (and some Codex operations) depend on \
deleted a configuration resource needed for request routing at the very start of the rollout. Existing \
instances in the clusters the rollout had reached could no longer serve, so those clusters (together the \
majority of traffic) rejected requests until new instances with the right configuration replaced them. \
Clients retried, inflating volume. One slow-updating cluster was evacuated to speed up recovery; the rest \
recovered on their own as the rollout completed. Full recovery at 21:40 UTC.\n\n\
## How the trace models it\n\n\
- 13 clusters run `conversation`; 9 of them also run `codex` (which reports a DB pool). Interval 10 s, \
20:20-22:20 UTC: an hour of normal traffic before the change, 40 minutes after recovery.\n\
- Change `deploy-8812` (service `routing-config`) at 21:19:30 lists the 7 clusters the rollout reached: \
prod-use1-a/b/c, prod-use2-a, prod-usw2-a/b, prod-euw1-a; at 21:20 they carry about 60% of conversation \
traffic.\n\
- From 21:20:00 (per-cluster jitter 0-4 s) those clusters reject 55-60% of conversation requests (503, some \
502); codex in the same clusters fails at ~90% of that. Client retries build up over ~40 s: conversation \
volume rises ~30% and the retry ratio goes from ~1% to ~24% (codex: +8% volume, retry ratio ~8%). p99 \
rises ~45% (timeouts among the rejects). Fleet-wide successful conversation requests fall by roughly 30% \
during 21:20-21:25 (the postmortem says ~35%; with 55-60% errors on 60% of the traffic and +30% retried \
volume the arithmetic gives a little less).\n\
- Staggered recovery as new instances come up: prod-use1-b 21:24:50-21:26:00, prod-usw2-a by 21:28, \
prod-use1-c by 21:29:40, prod-use1-a by 21:33:20, prod-use2-a by 21:37:30, prod-euw1-a by 21:38. Each \
cluster's errors and retries fade together over 1-2 minutes.\n\
- The slow cluster prod-usw2-b is evacuated (`traffic` changes evac-8815/8816 at 21:30): its requests drain \
to ~1% in 90 s and the six never-affected clusters of the same service absorb exactly that load (a healthy \
surge of ~15-20%, errors flat). Its new instances are healthy by 21:37 and traffic returns 21:38-21:39:30 \
(restore changes); full recovery 21:40.\n\
- A harmless codex config change (`cfg-2231`, 20:41:10, prod-euw1-b) is an unrelated earlier candidate.\n\n\
## What a good detector must report\n\n\
- `error_rate_spike` on every affected conversation and codex series within 2 intervals of 21:20:00;\n\
- `retry_amplification` on every affected conversation series within 60 s;\n\
- one fleet incident covering the 7 clusters (~60% of conversation traffic) tied to `deploy-8812`;\n\
- nothing on the 6 unaffected clusters, including while they absorb the evacuated traffic.\n\
Windows end when each cluster is back to normal (its own recovery; 21:40 for prod-usw2-b).\n",
        seed = seed_path("000_78010a9a1bd21c68.txt"),
    );

    Trace {
        name: NAME,
        interval: INTERVAL,
        start: at(20, 20, 0),
        end: at(22, 20, 0),
        series,
        changes,
        windows,
        readme,
        effect,
        delivery: Delivery::InOrder,
    }
}
