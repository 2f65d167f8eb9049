//! 2024-11-08: a load-balancing config change activates a latent bug; workers crash and a large
//! part of chat and assistants traffic fails with 503 until the change is rolled back.

use super::seed_path;
use crate::model::{change, ramp, unit, utc, window, Delivery, Effect, Series, Trace, Window};

pub(crate) const NAME: &str = "2024-11-08-lb-config-crash";

const INTERVAL: i64 = 10;
const CRASH_CODES: &[(&str, f64)] = &[("503", 0.97), ("502", 0.03)];

const fn at(d: i64, h: i64, m: i64, s: i64) -> i64 {
    utc(2024, 11, d, h, m, s)
}

const CHANGE: i64 = at(9, 0, 5, 30);
const ONSET: i64 = at(9, 0, 6, 0);
const ROLLBACK: i64 = at(9, 0, 28, 0);
const NEARLY_GONE: i64 = at(9, 0, 32, 0);
const RECOVERED: i64 = at(9, 0, 41, 0);
const STRAGGLERS_DONE: i64 = at(9, 1, 0, 0);

const CHAT: [(&str, f64); 8] = [
    ("prod-use1-a", 500.0),
    ("prod-use1-b", 450.0),
    ("prod-use1-c", 380.0),
    ("prod-use2-a", 300.0),
    ("prod-usw2-a", 420.0),
    ("prod-usw2-b", 260.0),
    ("prod-euw1-a", 340.0),
    ("prod-apne1-a", 200.0),
];
const ASSISTANTS: [(&str, f64); 4] = [
    ("prod-use1-a", 90.0),
    ("prod-use1-b", 80.0),
    ("prod-usw2-a", 70.0),
    ("prod-euw1-a", 60.0),
];
const EMBEDDINGS: [(&str, f64); 3] = [
    ("prod-use1-a", 150.0),
    ("prod-usw2-a", 120.0),
    ("prod-euw1-a", 100.0),
];

/// Series that keep small elevated errors until 01:00: (cluster, service, residual error ratio).
const STRAGGLERS: [(&str, &str, f64); 3] = [
    ("prod-use2-a", "chat", 0.025),
    ("prod-apne1-a", "chat", 0.018),
    ("prod-euw1-a", "assistants", 0.03),
];

#[derive(Debug, Clone, Copy)]
struct Hit {
    jitter: f64,
    peak: f64,
    rollback_lag: f64,
    straggle: Option<f64>,
}

fn straggle(cluster: &str, service: &str) -> Option<f64> {
    STRAGGLERS
        .iter()
        .find(|(c, s, _)| *c == cluster && *s == service)
        .map(|x| x.2)
}

pub(crate) fn build() -> Trace {
    let mut series = Vec::new();
    for (c, r) in CHAT {
        series.push(Series::new(c, "chat", r));
    }
    for (c, r) in ASSISTANTS {
        series.push(Series::new(c, "assistants", r).db(150, 0.45));
    }
    for (c, r) in EMBEDDINGS {
        series.push(Series::new(c, "embeddings", r));
    }
    // Per-series crash timing and depth, from a stable hash of the series key.
    let hits: Vec<Option<Hit>> = series
        .iter()
        .map(|s| {
            if s.service == "embeddings" {
                return None;
            }
            let key = format!("{NAME}/{}/{}", s.cluster, s.service);
            Some(Hit {
                jitter: 4.0 * unit(&key, 11),
                peak: 0.86 + 0.07 * unit(&key, 12),
                rollback_lag: 60.0 * unit(&key, 13),
                straggle: straggle(&s.cluster, &s.service),
            })
        })
        .collect();
    let hits_for_effect = hits.clone();

    let effect = Box::new(move |_series: &[Series], idx: usize, t: f64| -> Effect {
        let mut e = Effect::NORMAL;
        let Some(h) = hits_for_effect[idx] else {
            return e;
        };
        let crash = ONSET as f64 + h.jitter;
        if t < crash {
            return e;
        }
        // Workers fall over within ~8 s of the first crash.
        let on = ramp(t, crash, 8.0);
        let rb = ROLLBACK as f64 + 30.0 + h.rollback_lag;
        let fail = if t < rb {
            h.peak
        } else {
            let decay = h.peak * (-(t - rb) / 40.0).exp();
            let resid = match h.straggle {
                Some(level) => level * (1.0 - ramp(t, at(9, 0, 57, 0) as f64, 180.0)),
                None => 0.015 * (1.0 - ramp(t, NEARLY_GONE as f64, 540.0)),
            };
            decay.max(resid)
        } * on;
        let i = fail / h.peak;
        e.fail = fail;
        e.fail_codes = CRASH_CODES;
        e.retry_add = 0.15 * i;
        e.traffic = 1.0 + 0.15 * i;
        e.p50 = 1.0 - 0.4 * i;
        e.p99 = 1.0 + 1.5 * i;
        e.pool_demand = 1.0 - 0.6 * i;
        e
    });

    let trigger = Some("cfg-3107");
    let mut windows: Vec<Window> = Vec::new();
    for svc in ["chat", "assistants"] {
        let normal: Vec<&str> = series
            .iter()
            .filter(|s| s.service == svc && straggle(&s.cluster, svc).is_none())
            .map(|s| s.cluster.as_str())
            .collect();
        let slow: Vec<&str> = series
            .iter()
            .filter(|s| s.service == svc && straggle(&s.cluster, svc).is_some())
            .map(|s| s.cluster.as_str())
            .collect();
        windows.push(window(
            &["error_rate_spike"],
            svc,
            &normal,
            ONSET,
            RECOVERED,
            20,
            trigger,
        ));
        if !slow.is_empty() {
            windows.push(window(
                &["error_rate_spike"],
                svc,
                &slow,
                ONSET,
                STRAGGLERS_DONE,
                20,
                trigger,
            ));
        }
    }

    let assistants: Vec<&str> = ASSISTANTS.iter().map(|a| a.0).collect();
    let changes = vec![
        change(
            at(8, 23, 41, 0),
            "deploy",
            "assistants",
            &assistants,
            "deploy-2290",
            "assistants release (harmless)",
        ),
        change(
            CHANGE,
            "config",
            "inference-lb",
            &["*"],
            "cfg-3107",
            "load-balancing configuration change for a downstream service ChatGPT depends on",
        ),
        change(
            ROLLBACK,
            "config",
            "inference-lb",
            &["*"],
            "cfg-3107-rollback",
            "roll back load-balancing configuration cfg-3107",
        ),
    ];

    let readme = format!(
        "# {NAME}\n\n\
Reconstructs the ChatGPT outage of **8 November 2024, 16:06-16:41 PT (2024-11-09 00:06-00:41 UTC): \"ChatGPT \
currently unavailable\", a load-balancing configuration change that crashed every server worker**. Source \
postmortem: `{seed}`.\n\n\
## What happened\n\n\
A configuration change to the load balancing of a downstream service activated a latent bug in the code \
that applies the config; worker memory grew quickly until all workers crashed. A large portion of ChatGPT \
traffic (web, desktop and iOS clients) and the Assistants API failed with 503 from 16:06 PT. Rolling the \
change back fixed it: errors had almost subsided by 16:32 and service was fully recovered by 16:41, with a \
small number of customers seeing problems until 17:00.\n\n\
## How the trace models it\n\n\
- `chat` on 8 clusters, `assistants` on 4 (with a DB pool of 150) and an unaffected `embeddings` service on 3. \
Interval 10 s, 23:15 (Nov 8) to 01:40 (Nov 9) UTC.\n\
- `config` change `cfg-3107` (service `inference-lb`, all clusters) at 00:05:30. From 00:06:00 (per-series \
jitter 0-4 s) workers crash within ~8 s and 86-93% of chat and assistants requests fail with 503 on every \
cluster. Failing requests are fast (p50 -40%) but p99 rises to ~2.5x; clients retry (retry ratio ~15%, \
+15% volume); the assistants DB pool empties.\n\
- Rollback `cfg-3107-rollback` at 00:28:00; per series the errors decay from 00:28:30-00:29:30 with a \
40 s time constant, down to ~1.5% by 00:32 and back to baseline by 00:41.\n\
- Three series keep small elevated errors (1.8-3%) until 00:57 and are back to baseline at 01:00: chat on \
prod-use2-a and prod-apne1-a, assistants on prod-euw1-a.\n\
- A harmless assistants deploy at 23:41 is an unrelated earlier change.\n\n\
## What a good detector must report\n\n\
- `error_rate_spike` on every chat and assistants series within 2 intervals of 00:06:00 (a fleet-wide \
incident), tied to `cfg-3107`;\n\
- resolution after recovery (00:41, or 01:00 for the three stragglers);\n\
- nothing on `embeddings`.\n",
        seed = seed_path("002_3fd66a9a43ddfc31.txt"),
    );

    Trace {
        name: NAME,
        interval: INTERVAL,
        start: at(8, 23, 15, 0),
        end: at(9, 1, 40, 0),
        series,
        changes,
        windows,
        readme,
        effect,
        delivery: Delivery::InOrder,
    }
}
