//! 2026-02-04: a DB read replica goes away for maintenance; the auth/session path of one region
//! saturates its connection pools, fails with 403s and is amplified by retries.

use super::{find, seed_path};
use crate::model::{change, ramp, smooth, utc, window, Delivery, Effect, Series, Trace, Window};

pub(crate) const NAME: &str = "2026-02-04-db-replica-maintenance";

const INTERVAL: i64 = 10;
const AUTH_CODES: &[(&str, f64)] = &[("403", 0.93), ("503", 0.07)];
const WEB_CODES: &[(&str, f64)] = &[("403", 0.88), ("503", 0.08), ("504", 0.04)];

const fn at(h: i64, m: i64, s: i64) -> i64 {
    utc(2026, 2, 4, h, m, s)
}

const MAINTENANCE: i64 = at(17, 5, 0);
const ERRORS: i64 = at(17, 6, 0);
const MITIGATION: i64 = at(17, 40, 0);
const DIVERT: i64 = at(17, 41, 0);
const UNDIVERT: i64 = at(17, 53, 0);
const RECOVERED: i64 = at(17, 59, 0);
const POOL_BEFORE: u32 = 200;
const POOL_AFTER: u32 = 320;

/// An affected us-east-1 cluster.
#[derive(Debug, Clone, Copy)]
struct Hit {
    cluster: &'static str,
    /// Delay of the pool climb after 17:05:00 (s), its time constant (s) and the peak
    /// connection demand relative to normal.
    pool_jitter: f64,
    tau: f64,
    peak: f64,
    /// Delay of the first errors after 17:06:00 (s).
    err_jitter: f64,
    /// Peak extra failure ratio of auth, web and app.
    auth: f64,
    web: f64,
    app: f64,
    /// Share of web/app/auth traffic diverted to eu-west-1 during mitigation.
    divert: f64,
    /// Phase of the slow wobble of the error plateau.
    phase: f64,
}

const HITS: [Hit; 3] = [
    Hit {
        cluster: "prod-use1-a",
        pool_jitter: 0.0,
        tau: 150.0,
        peak: 2.6,
        err_jitter: 0.0,
        auth: 0.27,
        web: 0.41,
        app: 0.19,
        divert: 0.35,
        phase: 0.0,
    },
    Hit {
        cluster: "prod-use1-b",
        pool_jitter: 8.0,
        tau: 110.0,
        peak: 2.4,
        err_jitter: 3.0,
        auth: 0.20,
        web: 0.31,
        app: 0.14,
        divert: 0.20,
        phase: 2.1,
    },
    Hit {
        cluster: "prod-use1-c",
        pool_jitter: 15.0,
        tau: 80.0,
        peak: 2.2,
        err_jitter: 6.0,
        auth: 0.14,
        web: 0.22,
        app: 0.09,
        divert: 0.0,
        phase: 4.0,
    },
];

/// (cluster, web, app, auth, api req/s, auth pool util, api pool util).
const CLUSTERS: [(&str, f64, f64, f64, f64, f64, f64); 5] = [
    ("prod-use1-a", 420.0, 230.0, 380.0, 300.0, 0.44, 0.42),
    ("prod-use1-b", 360.0, 210.0, 330.0, 260.0, 0.43, 0.45),
    ("prod-use1-c", 300.0, 170.0, 280.0, 220.0, 0.46, 0.38),
    ("prod-euw1-a", 220.0, 120.0, 200.0, 180.0, 0.40, 0.40),
    ("prod-euw1-b", 190.0, 110.0, 170.0, 150.0, 0.41, 0.36),
];

fn hit_of(cluster: &str) -> Option<Hit> {
    HITS.iter().copied().find(|h| h.cluster == cluster)
}

/// Connection demand of the affected auth pool relative to normal.
fn pool_demand(h: &Hit, t: f64) -> f64 {
    let t0 = MAINTENANCE as f64 + h.pool_jitter;
    if t < t0 {
        return 1.0;
    }
    let climb = 1.0 + (h.peak - 1.0) * (1.0 - (-(t - t0) / h.tau).exp());
    let wobble = 1.0
        + 0.04
            * (2.0 * std::f64::consts::PI * (t - t0) / 420.0 + h.phase).sin()
            * ramp(t, t0, 300.0);
    let climb = climb * wobble;
    // After mitigation the retry storm and the queue drain: demand falls to ~1.1x, then 1.0.
    let d = smooth(t, MITIGATION as f64, 360.0);
    let settled = 1.0 + 0.1 * (1.0 - ramp(t, at(17, 50, 0) as f64, 540.0));
    climb * (1.0 - d) + settled * d
}

/// Error intensity (0..1 of the cluster's peak) for a service class.
fn intensity(h: &Hit, t: f64, downstream: bool) -> f64 {
    let e0 = ERRORS as f64 + h.err_jitter;
    if t < e0 {
        return 0.0;
    }
    let on = 1.0 - (-(t - e0) / 50.0).exp();
    let wobble = 1.0 + 0.08 * (2.0 * std::f64::consts::PI * (t - e0) / 600.0 + h.phase).sin();
    let m = MITIGATION as f64;
    let decay = if t < m {
        1.0
    } else if downstream {
        // Downstream services need a few minutes to scale back: a small tail until ~17:58.
        let tail = 0.08 * (1.0 - ramp(t, at(17, 50, 0) as f64, 480.0));
        (-(t - m) / 120.0).exp().max(tail)
    } else {
        let tail = 0.03 * (1.0 - ramp(t, at(17, 46, 0) as f64, 600.0));
        (-(t - m) / 100.0).exp().max(tail)
    };
    (on * wobble * decay).clamp(0.0, 1.0)
}

fn divert(t: f64) -> f64 {
    smooth(t, DIVERT as f64, 120.0) * (1.0 - smooth(t, UNDIVERT as f64, 240.0))
}

pub(crate) fn build() -> Trace {
    let mut series = Vec::new();
    for (c, web, app, auth, api, auth_util, api_util) in CLUSTERS {
        series.push(Series::new(c, "web", web));
        series.push(Series::new(c, "app", app));
        series.push(Series::new(c, "auth", auth).db(POOL_BEFORE, auth_util));
        series.push(Series::new(c, "api", api).db(100, api_util));
    }
    let absorbers: Vec<Vec<usize>> = series
        .iter()
        .map(|s| {
            series
                .iter()
                .enumerate()
                .filter(|(_, p)| p.service == s.service && p.region == "eu-west-1")
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let donors: Vec<Vec<(usize, f64)>> = series
        .iter()
        .map(|s| {
            HITS.iter()
                .filter(|h| h.divert > 0.0)
                .filter_map(|h| find(&series, h.cluster, &s.service).map(|i| (i, h.divert)))
                .collect()
        })
        .collect();

    let effect = Box::new(move |series: &[Series], idx: usize, t: f64| -> Effect {
        let s = &series[idx];
        let mut e = Effect::NORMAL;
        if s.service == "api" {
            return e;
        }
        match hit_of(&s.cluster) {
            Some(h) => {
                // Dependent services' retries follow the failures within ~20 s.
                let retry_on = if t >= ERRORS as f64 {
                    1.0 - (-(t - ERRORS as f64) / 20.0).exp()
                } else {
                    0.0
                };
                match s.service.as_str() {
                    "auth" => {
                        let i = intensity(&h, t, false);
                        let m = pool_demand(&h, t);
                        e.pool_demand = m;
                        e.pool_max = Some(if t >= MITIGATION as f64 {
                            POOL_AFTER
                        } else {
                            POOL_BEFORE
                        });
                        let u = ((m - 1.0) / (h.peak - 1.0)).clamp(0.0, 1.0);
                        e.p50 = 1.0 + 1.0 * u;
                        e.p99 = 1.0 + 3.5 * u;
                        e.fail = h.auth * i;
                        e.fail_codes = AUTH_CODES;
                        let r = (1.4 * retry_on * intensity(&h, t, true)).min(1.0);
                        e.retry_mult = 1.0 + 2.0 * r;
                        e.traffic = 1.0 + 0.08 * r;
                    }
                    "web" => {
                        let i = intensity(&h, t, true);
                        e.fail = h.web * i;
                        e.fail_codes = WEB_CODES;
                        e.retry_mult = 1.0 + 2.0 * (1.4 * retry_on * i).min(1.0);
                        e.p50 = 1.0 + 0.4 * i;
                        e.p99 = 1.0 + 1.2 * i;
                    }
                    _ => {
                        let i = intensity(&h, t, true);
                        e.fail = h.app * i;
                        e.fail_codes = WEB_CODES;
                        e.retry_mult = 1.0 + 0.5 * (1.4 * retry_on * i).min(1.0);
                        e.p50 = 1.0 + 0.3 * i;
                        e.p99 = 1.0 + 0.8 * i;
                    }
                }
                e.traffic *= 1.0 - h.divert * divert(t);
            }
            None => {
                // eu-west-1 absorbs the diverted traffic: a healthy surge.
                let dv = divert(t);
                if dv > 0.0 {
                    let moved: f64 = donors[idx]
                        .iter()
                        .map(|&(i, f)| f * dv * series[i].mean_rate(t))
                        .sum();
                    let total: f64 = absorbers[idx].iter().map(|&i| series[i].mean_rate(t)).sum();
                    if total > 0.0 {
                        e.traffic = 1.0 + moved / total;
                    }
                }
            }
        }
        e
    });

    let trigger = Some("maint-5521");
    let affected: Vec<&str> = HITS.iter().map(|h| h.cluster).collect();
    let windows: Vec<Window> = vec![
        window(
            &["db_pool_saturation"],
            "auth",
            &affected,
            MAINTENANCE,
            RECOVERED,
            120,
            trigger,
        ),
        window(
            &["error_rate_spike"],
            "auth",
            &affected,
            ERRORS,
            RECOVERED,
            20,
            trigger,
        ),
        window(
            &["retry_amplification"],
            "auth",
            &affected,
            ERRORS,
            RECOVERED,
            // The retry ratio ramps to x3 over about two minutes as dependents back off
            // and retry; judge it over that ramp, not two intervals.
            120,
            trigger,
        ),
        window(
            &["error_rate_spike"],
            "web",
            &affected,
            ERRORS,
            RECOVERED,
            20,
            trigger,
        ),
        window(
            &["retry_amplification"],
            "web",
            &affected,
            ERRORS,
            RECOVERED,
            // The retry ratio ramps to x3 over about two minutes as dependents back off
            // and retry; judge it over that ramp, not two intervals.
            120,
            trigger,
        ),
        window(
            &["error_rate_spike"],
            "app",
            &affected,
            ERRORS,
            RECOVERED,
            20,
            trigger,
        ),
    ];

    let use1: Vec<&str> = CLUSTERS.iter().take(3).map(|c| c.0).collect();
    let diverted = ["prod-use1-a", "prod-use1-b"];
    let mut changes = vec![
        change(at(16, 32, 0), "deploy", "api", &use1, "deploy-6120", "api release 2026.02.04-1 (harmless)"),
        change(
            MAINTENANCE,
            "maintenance",
            "auth",
            &use1,
            "maint-5521",
            "cloud provider scheduled maintenance takes auth-db read replica 2 of 3 offline in us-east-1",
        ),
        change(
            MITIGATION,
            "config",
            "auth",
            &use1,
            "cfg-5530",
            "raise auth DB connection pool size 200 -> 320",
        ),
    ];
    for svc in ["web", "app", "auth"] {
        changes.push(change(
            DIVERT,
            "traffic",
            svc,
            &diverted,
            &format!("traffic-5531-{svc}"),
            "divert traffic away from the worst clusters (prod-use1-a 35%, prod-use1-b 20%) to eu-west-1",
        ));
        changes.push(change(
            UNDIVERT,
            "traffic",
            svc,
            &diverted,
            &format!("traffic-5531-{svc}-restore"),
            "return diverted traffic to prod-use1-a and prod-use1-b",
        ));
    }

    let readme = format!(
        "# {NAME}\n\n\
Reconstructs the ChatGPT incident of **4 February 2026, 09:06-09:59 PT (17:06-17:59 UTC): 403 errors after a \
database read replica was taken offline for cloud maintenance, with connection saturation and retry \
amplification**. Source postmortem: `{seed}`.\n\n\
## What happened\n\n\
The cloud provider took one of three read replicas behind the authentication/session path of one region \
offline for routine maintenance. The remaining replicas took its load; latency and connection pressure rose, \
the auth/session services failed requests (403 to users, web worst), and retries from dependent services \
amplified the load. Peak global error rate ~18%; the API was not affected. Mitigation scaled up database \
connections and diverted traffic away from the worst clusters; downstream services needed a few more \
minutes to scale back. Fully mitigated after 53 minutes.\n\n\
## How the trace models it\n\n\
- Two regions: us-east-1 (prod-use1-a/b/c, affected) and eu-west-1 (prod-euw1-a/b, healthy). Each cluster \
runs `web`, `app` (mobile clients), `auth` (session validation, DB pool of 200) and `api` (own DB pool of \
100). Interval 10 s, 16:10-18:40 UTC.\n\
- `maintenance` change `maint-5521` at 17:05:00. From 17:05:00 (+0/8/15 s per cluster) the auth connection \
demand climbs towards 2.2-2.6x normal: pool utilisation goes from ~50% to 100% in about 2.5 minutes \
(~76% at 17:06), then callers queue (`db_pool_pending` tens to hundreds) and auth p50/p99 rise (p99 up to \
~4.5x).\n\
- From 17:06:00 (+0/3/6 s) 403 errors (a few 503/504) rise within about a minute to their plateau: web \
41/31/22%, auth 27/20/14%, app 19/14/9% on prod-use1-a/b/c. User-facing (web+app) error ratio across both \
regions peaks around 18%. Retry ratio on auth and web rises to ~3x normal within a minute of 17:06 (app \
1.5x); auth volume +8% from retries. The plateau wobbles slowly (+/-8%).\n\
- 17:40:00 `cfg-5530` raises the auth pool to 320 (pending drains at once, utilisation falls to ~75% then \
~35%); 17:41 `traffic-5531-*` diverts 35% of prod-use1-a and 20% of prod-use1-b web/app/auth traffic to \
eu-west-1 (a healthy surge there, errors flat, pool below 70%). Auth errors decay within minutes; web/app \
keep a small tail (a few %) until ~17:58 while downstream services scale back. Traffic returns from 17:53 \
(restore changes). Everything is normal by 17:59; the pool stays at 320.\n\
- `api` in every cluster (same region included) is untouched, and so is eu-west-1 apart from the absorbed \
traffic. A harmless api deploy at 16:32 is an unrelated earlier change.\n\n\
## What a good detector must report\n\n\
- `db_pool_saturation` on the three us-east-1 auth series as an early warning (window 17:05, max delay \
120 s), before their first `error_rate_spike`;\n\
- `error_rate_spike` on auth, web and app of prod-use1-a/b/c within 2 intervals of 17:06;\n\
- `retry_amplification` on auth and web of prod-use1-a/b/c within 120 s of 17:06 (the retry ratio \
ramps to x3 over about two minutes, so this is judged over the ramp);\n\
- an incident tied to `maint-5521`; nothing on `api` and nothing on eu-west-1.\n",
        seed = seed_path("001_c297582e921e307b.txt"),
    );

    Trace {
        name: NAME,
        interval: INTERVAL,
        start: at(16, 10, 0),
        end: at(18, 40, 0),
        series,
        changes,
        windows,
        readme,
        effect,
        delivery: Delivery::InOrder,
    }
}
