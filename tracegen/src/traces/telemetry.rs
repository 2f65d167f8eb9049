//! 2024-12-11: a telemetry deploy overloads every cluster's Kubernetes API server; DNS-based
//! discovery fails as caches expire (a slow ramp to near-total failure), some clusters' telemetry
//! dies, and recovery is staggered over about four hours.

use super::{ceil_to, seed_path};
use crate::model::{change, smooth, utc, window, Delivery, Effect, Series, Trace, Window};

pub(crate) const NAME: &str = "2024-12-11-telemetry-control-plane";

const INTERVAL: i64 = 10;
const DNS_CODES: &[(&str, f64)] = &[("503", 0.7), ("502", 0.2), ("504", 0.1)];
const DEPLOY: i64 = utc(2024, 12, 11, 23, 15, 0);
/// Share of a broken cluster's traffic that global steering moves to recovered clusters.
const REDIRECT: f64 = 0.5;
/// A recovered cluster takes at most this multiple of its normal traffic.
const SURGE_CAP: f64 = 2.0;

const fn d11(h: i64, m: i64, s: i64) -> i64 {
    utc(2024, 12, 11, h, m, s)
}
const fn d12(h: i64, m: i64, s: i64) -> i64 {
    utc(2024, 12, 12, h, m, s)
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    name: &'static str,
    chat: f64,
    /// api req/s, 0 when the cluster has no api series.
    api: f64,
    ramp_start: i64,
    ramp_min: f64,
    peak: f64,
    /// Telemetry dies at this time and comes back at `resume` (None: it keeps reporting).
    silent: Option<(i64, i64)>,
    rec_start: i64,
    rec_dur: i64,
}

impl Cluster {
    const fn done(&self) -> i64 {
        self.rec_start + self.rec_dur
    }
}

const CLUSTERS: [Cluster; 10] = [
    Cluster {
        name: "prod-use1-a",
        chat: 450.0,
        api: 200.0,
        ramp_start: d11(23, 16, 40),
        ramp_min: 7.0,
        peak: 0.97,
        silent: None,
        rec_start: d12(1, 5, 0),
        rec_dur: 360,
    },
    Cluster {
        name: "prod-use1-b",
        chat: 400.0,
        api: 0.0,
        ramp_start: d11(23, 17, 30),
        ramp_min: 12.0,
        peak: 0.98,
        silent: None,
        rec_start: d12(2, 10, 0),
        rec_dur: 480,
    },
    Cluster {
        name: "prod-use1-c",
        chat: 320.0,
        api: 150.0,
        ramp_start: d11(23, 16, 10),
        ramp_min: 9.0,
        peak: 0.99,
        silent: Some((d11(23, 21, 45), d12(0, 41, 0))),
        rec_start: d12(0, 42, 0),
        rec_dur: 480,
    },
    Cluster {
        name: "prod-use2-a",
        chat: 300.0,
        api: 0.0,
        ramp_start: d11(23, 18, 20),
        ramp_min: 18.0,
        peak: 0.95,
        silent: None,
        rec_start: d12(3, 15, 0),
        rec_dur: 600,
    },
    Cluster {
        name: "prod-usw2-a",
        chat: 380.0,
        api: 160.0,
        ramp_start: d11(23, 16, 0),
        ramp_min: 5.0,
        peak: 0.98,
        silent: None,
        rec_start: d12(0, 20, 0),
        rec_dur: 300,
    },
    Cluster {
        name: "prod-usw2-b",
        chat: 260.0,
        api: 0.0,
        ramp_start: d11(23, 17, 0),
        ramp_min: 15.0,
        peak: 0.97,
        silent: Some((d11(23, 27, 35), d12(2, 40, 0))),
        rec_start: d12(2, 40, 30),
        rec_dur: 510,
    },
    Cluster {
        name: "prod-euw1-a",
        chat: 330.0,
        api: 140.0,
        ramp_start: d11(23, 19, 10),
        ramp_min: 20.0,
        peak: 0.96,
        silent: None,
        rec_start: d12(1, 40, 0),
        rec_dur: 420,
    },
    Cluster {
        name: "prod-euw1-b",
        chat: 280.0,
        api: 0.0,
        ramp_start: d11(23, 17, 50),
        ramp_min: 11.0,
        peak: 0.98,
        silent: None,
        rec_start: d12(0, 55, 0),
        rec_dur: 360,
    },
    Cluster {
        name: "prod-euc1-a",
        chat: 240.0,
        api: 0.0,
        ramp_start: d11(23, 18, 40),
        ramp_min: 14.0,
        peak: 0.97,
        silent: None,
        rec_start: d12(2, 30, 0),
        rec_dur: 540,
    },
    Cluster {
        name: "prod-apne1-a",
        chat: 220.0,
        api: 0.0,
        ramp_start: d11(23, 16, 30),
        ramp_min: 8.0,
        peak: 0.99,
        silent: Some((d11(23, 22, 15), d12(3, 1, 0))),
        rec_start: d12(3, 1, 30),
        rec_dur: 510,
    },
];

/// Failure intensity (0..1) of a cluster: a convex ramp as DNS caches expire, held, then a smooth
/// recovery.
fn intensity(c: &Cluster, t: f64) -> f64 {
    let x = ((t - c.ramp_start as f64) / (c.ramp_min * 60.0)).clamp(0.0, 1.0);
    x.powf(1.5) * (1.0 - smooth(t, c.rec_start as f64, c.rec_dur as f64))
}

/// How healthy a recovered cluster is for traffic steering (0 until it is done, 1 three minutes
/// later).
fn healthy(c: &Cluster, t: f64) -> f64 {
    smooth(t, c.done() as f64, 180.0)
}

pub(crate) fn build() -> Trace {
    let mut series = Vec::new();
    let mut owner = Vec::new();
    for (ci, c) in CLUSTERS.iter().enumerate() {
        series.push(Series::new(c.name, "chat", c.chat));
        owner.push(ci);
        if c.api > 0.0 {
            series.push(Series::new(c.name, "api", c.api).db(100, 0.40));
            owner.push(ci);
        }
    }
    let owner_e = owner.clone();

    let effect = Box::new(move |series: &[Series], idx: usize, t: f64| -> Effect {
        let s = &series[idx];
        let c = &CLUSTERS[owner_e[idx]];
        let mut e = Effect::NORMAL;
        if let Some((from, to)) = c.silent {
            if t >= from as f64 && t < to as f64 {
                e.silent = true;
            }
        }
        let i = intensity(c, t);
        e.fail = c.peak * i;
        e.fail_codes = DNS_CODES;
        e.retry_add = 0.2 * i;
        e.p50 = 1.0 + 1.5 * i;
        e.p99 = 1.0 + 4.0 * i;
        // Global traffic steering: once some clusters are healthy again, half of the traffic of
        // the still-broken clusters is sent to them, proportionally to their size (capped).
        let mut healthy_rate = 0.0;
        let mut broken_rate = 0.0;
        let mut total_rate = 0.0;
        for (j, p) in series.iter().enumerate() {
            if p.service != s.service {
                continue;
            }
            let pc = &CLUSTERS[owner_e[j]];
            let r = p.mean_rate(t);
            let h = healthy(pc, t);
            total_rate += r;
            healthy_rate += h * r;
            broken_rate += (1.0 - h) * r;
        }
        let steer = if total_rate > 0.0 {
            (healthy_rate / (0.15 * total_rate)).min(1.0)
        } else {
            0.0
        };
        let h = healthy(c, t);
        // Steering stops sending traffic away from a cluster as it recovers.
        let broken = 1.0 - smooth(t, c.rec_start as f64, c.rec_dur as f64);
        let mut traffic = 1.0 + 0.2 * i;
        traffic *= 1.0 - REDIRECT * steer * broken;
        if h > 0.0 && healthy_rate > 0.0 {
            let moved = REDIRECT * steer * broken_rate;
            traffic += (h * moved / healthy_rate).min(SURGE_CAP - 1.0);
        }
        e.traffic = traffic;
        e
    });

    let trigger = Some("deploy-9120");
    let mut windows: Vec<Window> = Vec::new();
    for c in &CLUSTERS {
        let end = ceil_to(c.done(), INTERVAL);
        let services: &[&str] = if c.api > 0.0 {
            &["chat", "api"]
        } else {
            &["chat"]
        };
        for svc in services {
            windows.push(window(
                &["error_rate_spike"],
                svc,
                &[c.name],
                c.ramp_start,
                end,
                600,
                trigger,
            ));
            if let Some((from, _)) = c.silent {
                // The last sample is the one whose ts is the last grid point before telemetry died.
                let last = (from - 1).div_euclid(INTERVAL) * INTERVAL;
                windows.push(window(
                    &["telemetry_absent"],
                    svc,
                    &[c.name],
                    last,
                    end,
                    3 * INTERVAL,
                    trigger,
                ));
            }
        }
    }

    let changes = vec![
        change(
            DEPLOY,
            "deploy",
            "telemetry-collector",
            &["*"],
            "deploy-9120",
            "deploy new telemetry service collecting Kubernetes control-plane metrics (runs on every node)",
        ),
        change(
            d12(0, 25, 0),
            "traffic",
            "chat",
            &["*"],
            "traffic-9131",
            "global traffic steering: send traffic of broken clusters to recovered clusters",
        ),
    ];

    let readme = format!(
        "# {NAME}\n\n\
Reconstructs the outage of ChatGPT and related services on **11 December 2024 (about 4 h 10 min; modelled \
from 23:15 UTC): a new telemetry service overloaded the Kubernetes control plane of every cluster**. Source: `{seed}` (a news \
summary of the official postmortem).\n\n\
## What happened\n\n\
A new telemetry service meant to collect Kubernetes control-plane metrics was deployed with a configuration \
that ran expensive API operations on every node of every cluster at once. The API servers fell over. The \
data plane kept running for a while, but DNS-based service discovery depends on the control plane, so as \
DNS caches expired services could no longer find each other and requests failed. Engineers were locked out \
of the control plane, so the rollback took a long time: clusters were scaled down, API access blocked and \
API servers given more resources, cluster by cluster; traffic was steered to the clusters that had \
recovered, and some clusters took much longer than others.\n\n\
## How the trace models it\n\n\
- `chat` on 10 clusters, `api` (DB pool of 100) on 4 of them. Interval 10 s, 22:25 (Dec 11) to 04:10 (Dec 12) \
UTC: 50 minutes of normal traffic before the deploy, 45 minutes after the last cluster recovers.\n\
- `deploy` change `deploy-9120` (service `telemetry-collector`, clusters `*`) at 23:15:00.\n\
- Per cluster, errors (503, some 502/504) start between 23:16:00 and 23:19:10 and ramp convexly \
(intensity x^1.5) over 5 to 20 minutes to 95-99% failure: a slow onset that fixed thresholds catch late \
and accumulating detectors catch early. Retries (+20%) and latency (p50 up to 2.5x, p99 up to 5x) follow \
the same ramp.\n\
- Three clusters' telemetry dies partway through their ramp, with 50-60% of requests failing: prod-use1-c \
(last sample 23:21:40), prod-apne1-a (23:22:10) and prod-usw2-b (23:27:30); both chat and api stop for \
prod-use1-c. They resume reporting, still failing, when their control plane is back.\n\
- Recovery is staggered over ~4 h 10 min (each cluster's errors fade over 5-10 min): prod-usw2-a 00:25, \
prod-use1-c 00:50, prod-euw1-b 01:01, prod-use1-a 01:11, prod-euw1-a 01:47, prod-use1-b 02:18, prod-euc1-a \
02:39, prod-usw2-b 02:49, prod-apne1-a 03:10, prod-use2-a 03:25.\n\
- Traffic steering (`traffic-9131`, 00:25): once a cluster is healthy (3 minutes after its recovery) it takes \
a share of the traffic of the still-broken clusters, up to 2x its normal load, while the broken clusters \
lose up to half of theirs. This surge is healthy: error and retry ratios stay at baseline.\n\n\
## What a good detector must report\n\n\
- `error_rate_spike` on every series during its ramp (window onset = ramp start, max delay 600 s);\n\
- `telemetry_absent` for the four silent series within 3 intervals of their last sample;\n\
- one fleet incident tied to `deploy-9120`;\n\
- no alerts on recovered clusters while they absorb redirected traffic (beyond the 10 minutes after each \
window's end).\n",
        seed = seed_path("004_d6cc8db2e46cf977.txt"),
    );

    Trace {
        name: NAME,
        interval: INTERVAL,
        start: d11(22, 25, 0),
        end: d12(4, 10, 0),
        series,
        changes,
        windows,
        readme,
        effect,
        delivery: Delivery::InOrder,
    }
}
