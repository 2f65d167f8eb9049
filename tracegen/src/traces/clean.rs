//! The clean traces: no label windows, every alert on them is a false positive.

use super::find;
use crate::model::{change, smooth, utc, Delivery, Effect, Series, Trace};

pub(crate) const DIURNAL: &str = "clean-diurnal-24h";
pub(crate) const BENIGN: &str = "clean-benign-changes";
pub(crate) const LATE_DUP: &str = "clean-late-duplicate-1s";

const EXPORT_CODES: &[(&str, f64)] = &[("500", 0.55), ("504", 0.45)];

const CLEAN_NOTE: &str =
    "This is a clean trace: `labels.json` has no windows, so every alert a detector raises \
on it is a false positive.";

// ---------------------------------------------------------------------------------------------
// clean-diurnal-24h
// ---------------------------------------------------------------------------------------------

pub(crate) fn diurnal() -> Trace {
    let series = vec![
        Series::new("prod-use1-a", "chat", 400.0),
        Series::new("prod-use1-b", "chat", 350.0),
        Series::new("prod-usw2-a", "chat", 300.0),
        Series::new("prod-euw1-a", "chat", 250.0),
        Series::new("prod-apne1-a", "chat", 120.0),
        Series::new("prod-use1-a", "api", 220.0),
        Series::new("prod-usw2-a", "api", 180.0),
        Series::new("prod-euw1-a", "api", 150.0),
        Series::new("prod-use1-a", "auth", 260.0).db(200, 0.45),
        Series::new("prod-euw1-a", "auth", 150.0).db(200, 0.38),
        Series::new("prod-use1-b", "search", 90.0),
        Series::new("prod-euc1-a", "search", 70.0),
        Series::new("prod-use1-a", "files", 60.0).db(100, 0.40),
        Series::new("prod-usw2-a", "files", 40.0).db(100, 0.35),
        Series::new("prod-use1-a", "billing", 25.0).db(100, 0.48),
        Series::new("prod-use1-a", "moderation", 200.0),
        // Overdispersed: the error ratio wanders slowly far more than binomial noise.
        Series::new("prod-usw2-a", "embeddings", 140.0)
            .err(0.003)
            .wander(0.45),
        // A service whose normal error ratio is high (~8%).
        Series::new("prod-use1-b", "legacy-export", 20.0)
            .err(0.08)
            .codes(EXPORT_CODES),
        // Low-volume, noisy: tens of requests per minute, an occasional single error.
        Series::new("prod-use1-a", "admin", 0.5).err(0.004).amp(0.5),
        Series::new("prod-euw1-a", "webhooks", 0.8)
            .err(0.003)
            .amp(0.45),
        Series::new("prod-apne1-a", "status-page", 0.35)
            .err(0.005)
            .amp(0.5),
        Series::new("prod-euc1-a", "sso-saml", 0.6)
            .err(0.004)
            .amp(0.55),
    ];
    let readme = format!(
        "# {DIURNAL}\n\n\
A full day of ordinary traffic, reconstructing no incident. {CLEAN_NOTE}\n\n\
## How the trace models it\n\n\
- 22 series over 6 clusters in 5 regions, interval 60 s, 2025-06-02 00:00 to 2025-06-03 00:00 UTC (1440 \
samples per series). No change events.\n\
- Every series follows its own diurnal sinusoid (amplitude 22-55%, peak at the local afternoon of its \
region +/- 1 h): traffic swings by up to 3x between night and day, latency and pool usage follow load a \
little.\n\
- Poisson request counts with a slow (5-minute memory) +/-3-4% traffic wander, binomial errors around \
0.05-0.5% baselines, ~1% retries, lognormal latency (p99 3-5x p50, noisier at low volume), DB pools 30-60% \
busy.\n\
- Hard cases for a detector, all normal: four low-volume series (admin, webhooks, status-page, sso-saml: \
10-80 requests a minute, an occasional single error that is a 2-10% ratio on its own); an overdispersed \
series (embeddings on prod-usw2-a: its error ratio wanders over a 30-minute memory by a factor of ~2.5 \
either way, far beyond binomial noise); a series whose normal error ratio is ~8% (legacy-export on \
prod-use1-b).\n\n\
## What a good detector must report\n\n\
Nothing.\n"
    );
    Trace {
        name: DIURNAL,
        interval: 60,
        start: utc(2025, 6, 2, 0, 0, 0) - 60,
        end: utc(2025, 6, 3, 0, 0, 0) - 60,
        series,
        changes: Vec::new(),
        windows: Vec::new(),
        readme,
        effect: Box::new(|_: &[Series], _: usize, _: f64| Effect::NORMAL),
        delivery: Delivery::InOrder,
    }
}

// ---------------------------------------------------------------------------------------------
// clean-benign-changes
// ---------------------------------------------------------------------------------------------

const fn b_at(h: i64, m: i64, s: i64) -> i64 {
    utc(2025, 9, 16, h, m, s)
}

const EVACUATED: &str = "prod-usw2-a";
const EVAC: i64 = b_at(14, 30, 0);
const RESTORE: i64 = b_at(15, 5, 0);
const API_DEPLOY: i64 = b_at(13, 48, 20);
const POOL_CHANGE: i64 = b_at(14, 10, 0);
const WEB_DEPLOY: i64 = b_at(15, 12, 40);
const SURGE: i64 = b_at(15, 29, 0);
const SURGE_END: i64 = b_at(15, 45, 0);

fn evacuation(t: f64) -> f64 {
    smooth(t, EVAC as f64, 120.0) * (1.0 - smooth(t, RESTORE as f64, 180.0))
}

pub(crate) fn benign() -> Trace {
    let series = vec![
        Series::new("prod-use1-a", "web", 320.0),
        Series::new("prod-use1-b", "web", 280.0),
        Series::new("prod-usw2-a", "web", 240.0),
        Series::new("prod-usw2-b", "web", 200.0),
        Series::new("prod-use1-a", "api", 200.0),
        Series::new("prod-usw2-a", "api", 150.0),
        Series::new("prod-euw1-a", "api", 120.0),
        Series::new("prod-use1-a", "auth", 260.0).db(150, 0.42),
        Series::new("prod-use1-b", "auth", 220.0).db(150, 0.40),
        Series::new("prod-usw2-a", "auth", 180.0).db(150, 0.44),
        Series::new("prod-use1-b", "search", 80.0),
        Series::new("prod-euw1-a", "search", 60.0),
    ];
    let evac_idx: Vec<Option<usize>> = series
        .iter()
        .map(|s| find(&series, EVACUATED, &s.service))
        .collect();

    let effect = Box::new(move |series: &[Series], idx: usize, t: f64| -> Effect {
        let s = &series[idx];
        let mut e = Effect::NORMAL;
        match s.service.as_str() {
            // Rolling api deploy: the new version is ~4% faster at the median.
            "api" => e.p50 = 1.0 - 0.04 * smooth(t, API_DEPLOY as f64, 180.0),
            // Pool size raised 150 -> 200.
            "auth" if t >= POOL_CHANGE as f64 => e.pool_max = Some(200),
            // Organic demand surge: 2x for 15 minutes, errors and retries flat.
            "web" => {
                e.traffic = 1.0
                    + smooth(t, SURGE as f64, 120.0) * (1.0 - smooth(t, SURGE_END as f64, 120.0));
                e.p50 = 1.0 + 0.03 * (e.traffic - 1.0);
            }
            _ => {}
        }
        // Planned evacuation of prod-usw2-a: its siblings of the same service absorb exactly the
        // traffic it loses, so the service total is conserved.
        let ev = evacuation(t);
        if ev > 0.0 {
            if let Some(ei) = evac_idx[idx] {
                if ei == idx {
                    e.traffic *= 1.0 - 0.997 * ev;
                } else {
                    let moved = 0.997 * ev * series[ei].mean_rate(t);
                    let siblings: f64 = series
                        .iter()
                        .enumerate()
                        .filter(|(j, p)| p.service == s.service && *j != ei)
                        .map(|(_, p)| p.mean_rate(t))
                        .sum();
                    if siblings > 0.0 {
                        e.traffic *= 1.0 + moved / siblings;
                    }
                }
            }
        }
        e
    });

    let api: Vec<&str> = series
        .iter()
        .filter(|s| s.service == "api")
        .map(|s| s.cluster.as_str())
        .collect();
    let auth: Vec<&str> = series
        .iter()
        .filter(|s| s.service == "auth")
        .map(|s| s.cluster.as_str())
        .collect();
    let web: Vec<&str> = series
        .iter()
        .filter(|s| s.service == "web")
        .map(|s| s.cluster.as_str())
        .collect();
    let mut changes = vec![
        change(
            API_DEPLOY,
            "deploy",
            "api",
            &api,
            "deploy-7702",
            "api release 2025.09.16-2 (rolling)",
        ),
        change(
            POOL_CHANGE,
            "config",
            "auth",
            &auth,
            "cfg-3310",
            "raise auth DB connection pool size 150 -> 200",
        ),
        change(
            WEB_DEPLOY,
            "deploy",
            "web",
            &web,
            "deploy-5120",
            "web frontend release (rolling)",
        ),
    ];
    for svc in ["web", "api", "auth"] {
        changes.push(change(
            EVAC,
            "traffic",
            svc,
            &[EVACUATED],
            &format!("evac-2291-{svc}"),
            "planned evacuation of prod-usw2-a for node pool upgrade; siblings take its traffic",
        ));
        changes.push(change(
            RESTORE,
            "traffic",
            svc,
            &[EVACUATED],
            &format!("evac-2291-{svc}-restore"),
            "return traffic to prod-usw2-a after the node pool upgrade",
        ));
    }

    let readme = format!(
        "# {BENIGN}\n\n\
Operational changes that cause no harm, reconstructing no incident. {CLEAN_NOTE}\n\n\
## How the trace models it\n\n\
- 12 series (web, api, auth with DB pool, search) over 5 clusters, interval 10 s, 2025-09-16 13:00-16:10 UTC.\n\
- 13:48:20 `deploy-7702`: rolling api release; afterwards api p50 is ~4% lower.\n\
- 14:10:00 `cfg-3310`: auth DB pool raised 150 -> 200 (`db_pool_max` changes, utilisation drops).\n\
- 14:30:00 planned evacuation of prod-usw2-a (`traffic` changes evac-2291-web/api/auth): within 2 minutes \
its web, api and auth requests fall to ~0.3% (a trickle of health checks), and the other clusters of the \
same service absorb exactly that load, so each service's total is conserved. Traffic returns from 15:05:00 \
over 3 minutes (restore changes).\n\
- 15:12:40 `deploy-5120`: rolling web release with no visible effect.\n\
- 15:29-15:47: an organic demand surge (no change event): web requests double for 15 minutes on every \
web cluster (2-minute ramps), with error and retry ratios flat and p50 +3%.\n\n\
## What a good detector must report\n\n\
Nothing: not the deploys, not the pool change, not the evacuated cluster's near-zero traffic (it comes \
with a `traffic` change), not its siblings' extra load, not the surge.\n"
    );

    Trace {
        name: BENIGN,
        interval: 10,
        start: b_at(13, 0, 0),
        end: b_at(16, 10, 0),
        series,
        changes,
        windows: Vec::new(),
        readme,
        effect,
        delivery: Delivery::InOrder,
    }
}

// ---------------------------------------------------------------------------------------------
// clean-late-duplicate-1s
// ---------------------------------------------------------------------------------------------

const LATE_CLUSTER: &str = "prod-euw1-b";

pub(crate) fn late_duplicate() -> Trace {
    let series = vec![
        Series::new("prod-use1-a", "chat", 180.0),
        Series::new("prod-use1-b", "chat", 150.0),
        Series::new("prod-usw2-a", "chat", 120.0),
        Series::new(LATE_CLUSTER, "chat", 90.0),
        Series::new("prod-use1-a", "api", 110.0),
        Series::new("prod-usw2-a", "api", 80.0),
        Series::new(LATE_CLUSTER, "api", 60.0).db(100, 0.38),
        Series::new("prod-use1-a", "auth", 140.0).db(200, 0.45),
        Series::new(LATE_CLUSTER, "auth", 70.0).db(100, 0.42),
        Series::new("prod-use1-b", "search", 50.0),
    ];
    let readme = format!(
        "# {LATE_DUP}\n\n\
Counter and delivery noise at 1 s resolution, reconstructing no incident. {CLEAN_NOTE}\n\n\
## How the trace models it\n\n\
- 10 series over 4 clusters, **interval 1 s**, 2025-04-22 09:00-10:00 UTC, ordinary traffic (diurnal slope, \
Poisson counts, binomial errors, ~1% retries, lognormal latency, DB pools 30-60% busy). No change events.\n\
- Lines are in **arrival order**, not ts order. Most series arrive 0.2-0.9 s after their ts, so they stay \
in order. The collector of prod-euw1-b (chat, api, auth) usually lags 1-4 s and every 2-9 minutes stalls \
for 8-58 s: everything produced during a stall is flushed, shuffled, when it ends, so those samples arrive \
up to 60 s late and out of order even within one series.\n\
- About 1.2% of prod-use1-b samples and 0.6% of prod-euw1-b samples are written twice (exact duplicate \
lines, the copy arriving 0.5-20 s after the original).\n\n\
## What a good detector must report\n\n\
Nothing: late samples must be placed at their event time, duplicates must not be counted twice, and \
neither may produce alerts (no `telemetry_absent` for a stalled collector that catches up within 60 s).\n"
    );
    Trace {
        name: LATE_DUP,
        interval: 1,
        start: utc(2025, 4, 22, 9, 0, 0),
        end: utc(2025, 4, 22, 10, 0, 0),
        series,
        changes: Vec::new(),
        windows: Vec::new(),
        readme,
        effect: Box::new(|_: &[Series], _: usize, _: f64| Effect::NORMAL),
        delivery: Delivery::LateAndDuplicate {
            late_cluster: LATE_CLUSTER,
            max_late_s: 60.0,
            dup_clusters: &[("prod-use1-b", 0.012), (LATE_CLUSTER, 0.006)],
        },
    }
}
