//! 2024-01-29: a chat frontend release triggers a latent backend bug in request routing to a
//! downstream service; ~40% of chat and API requests fail and p99 triples. 1 s resolution.

use super::seed_path;
use crate::model::{change, ramp, utc, window, Delivery, Effect, Series, Trace};

pub(crate) const NAME: &str = "2024-01-29-release-breaks-routing";

const INTERVAL: i64 = 1;
const ROUTING_CODES: &[(&str, f64)] = &[("502", 0.7), ("503", 0.2), ("504", 0.1)];

const BACKEND_DEPLOY: i64 = utc(2024, 1, 29, 22, 33, 0);
const CHAT_DEPLOY: i64 = utc(2024, 1, 30, 0, 17, 0);
const ONSET: i64 = utc(2024, 1, 30, 0, 19, 0);
const ROLLBACK: i64 = utc(2024, 1, 30, 0, 28, 0);
const RECOVERED: i64 = utc(2024, 1, 30, 0, 34, 0);

/// (cluster, service, req/s, onset jitter s, failure ratio, p99 multiplier, rollback done at).
const SERIES: [(&str, &str, f64, f64, f64, f64, i64); 8] = [
    (
        "prod-use1-a",
        "chat",
        260.0,
        0.2,
        0.42,
        3.1,
        utc(2024, 1, 30, 0, 31, 10),
    ),
    (
        "prod-use1-b",
        "chat",
        220.0,
        0.5,
        0.39,
        3.0,
        utc(2024, 1, 30, 0, 29, 40),
    ),
    (
        "prod-usw2-a",
        "chat",
        200.0,
        0.1,
        0.44,
        3.3,
        utc(2024, 1, 30, 0, 33, 30),
    ),
    (
        "prod-euw1-a",
        "chat",
        120.0,
        0.6,
        0.38,
        2.9,
        utc(2024, 1, 30, 0, 32, 20),
    ),
    (
        "prod-use1-a",
        "api",
        180.0,
        0.3,
        0.37,
        3.0,
        utc(2024, 1, 30, 0, 31, 40),
    ),
    (
        "prod-usw2-a",
        "api",
        150.0,
        0.4,
        0.41,
        3.2,
        utc(2024, 1, 30, 0, 33, 0),
    ),
    (
        "prod-euw1-a",
        "api",
        90.0,
        0.7,
        0.35,
        2.9,
        utc(2024, 1, 30, 0, 30, 50),
    ),
    ("prod-use1-a", "moderation", 80.0, 0.0, 0.0, 1.0, 0),
];

pub(crate) fn build() -> Trace {
    let series: Vec<Series> = SERIES
        .iter()
        .map(|&(c, svc, rate, ..)| {
            let s = Series::new(c, svc, rate);
            if svc == "api" {
                s.db(100, 0.40)
            } else {
                s
            }
        })
        .collect();

    let effect = Box::new(move |_series: &[Series], idx: usize, t: f64| -> Effect {
        let mut e = Effect::NORMAL;
        let (_, svc, _, jitter, fail, p99, done) = SERIES[idx];
        if svc == "moderation" {
            return e;
        }
        let on = ramp(t, ONSET as f64 + jitter, 0.3);
        // Each cluster's rollback completes at `done`; errors fade over the 30 s before.
        let off = ramp(t, done as f64 - 30.0, 30.0);
        let i = on * (1.0 - off);
        e.fail = fail * i;
        e.fail_codes = ROUTING_CODES;
        e.p50 = 1.0 + 0.5 * i;
        e.p99 = 1.0 + (p99 - 1.0) * i;
        e.retry_add = 0.06 * i;
        e.traffic = 1.0 + 0.05 * i;
        e
    });

    let chat: Vec<&str> = SERIES
        .iter()
        .filter(|s| s.1 == "chat")
        .map(|s| s.0)
        .collect();
    let api: Vec<&str> = SERIES
        .iter()
        .filter(|s| s.1 == "api")
        .map(|s| s.0)
        .collect();
    let trigger = Some("deploy-4417");
    let windows = vec![
        window(
            &["error_rate_spike"],
            "chat",
            &chat,
            ONSET,
            RECOVERED,
            2,
            trigger,
        ),
        window(
            &["latency_spike"],
            "chat",
            &chat,
            ONSET,
            RECOVERED,
            2,
            trigger,
        ),
        window(
            &["error_rate_spike"],
            "api",
            &api,
            ONSET,
            RECOVERED,
            2,
            trigger,
        ),
        window(
            &["latency_spike"],
            "api",
            &api,
            ONSET,
            RECOVERED,
            2,
            trigger,
        ),
    ];
    let changes = vec![
        change(
            BACKEND_DEPLOY,
            "deploy",
            "chat-backend",
            &["*"],
            "deploy-4402",
            "backend release containing the culprit PR (latent until the chat deploy)",
        ),
        change(
            CHAT_DEPLOY,
            "deploy",
            "chat",
            &chat,
            "deploy-4417",
            "ChatGPT frontend release",
        ),
        change(
            ROLLBACK,
            "deploy",
            "chat",
            &chat,
            "deploy-4421",
            "rollback of chat and chat-backend to the previous stable versions",
        ),
    ];

    let readme = format!(
        "# {NAME}\n\n\
Reconstructs the OpenAI incident of **29 January 2024, 16:19-16:34 PT (2024-01-30 00:19-00:34 UTC): \"Elevated \
errors affecting API and ChatGPT\", a release that broke request routing to a downstream service**. Source \
postmortem: `{seed}`.\n\n\
## What happened\n\n\
A backend change deployed at 14:33 PT was harmless on its own; the ChatGPT deployment at 16:17 PT triggered \
it, breaking routing to a downstream service. From 16:19 a significant portion of requests failed and \
latency rose; alerts fired at 16:19, the root cause was found at 16:22, rollback of both services started at \
16:28 and traffic was fully recovered at 16:34.\n\n\
## How the trace models it\n\n\
- **1 s resolution.** `chat` on 4 clusters, `api` on 3 (DB pool of 100) and an unaffected `moderation` \
series. Samples from 23:30:01 to 00:50:00 UTC (49 minutes of normal traffic before onset; the 22:33 change \
precedes the samples).\n\
- Changes: `deploy-4402` (chat-backend, 22:33, latent, no effect), `deploy-4417` (chat, 00:17), \
`deploy-4421` (rollback, 00:28).\n\
- From 00:19:00 (+0.0-0.7 s per series, switching on within 0.3 s) 35-44% of chat and api requests fail \
(mostly 502, some 503/504), p99 rises 2.9-3.3x and p50 1.5x; retries add ~6%.\n\
- Rollback completes per series between 00:29:40 and 00:33:30 (errors and latency fade over the last 30 s); \
all normal by 00:34:00.\n\n\
## What a good detector must report\n\n\
- `error_rate_spike` AND `latency_spike` on every chat and api series within 2 s of 00:19:00 (the real \
responders were paged at 00:19);\n\
- one incident tied to `deploy-4417`, with the 22:33 `deploy-4402` listed as an earlier candidate;\n\
- nothing on `moderation`.\n",
        seed = seed_path("003_3082ce6765819b71.txt"),
    );

    Trace {
        name: NAME,
        interval: INTERVAL,
        start: utc(2024, 1, 29, 23, 30, 0),
        end: utc(2024, 1, 30, 0, 50, 0),
        series,
        changes,
        windows,
        readme,
        effect,
        delivery: Delivery::InOrder,
    }
}
