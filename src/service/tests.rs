//! Router tests without a socket: every endpoint, filter and error case, driven with `oneshot`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use detector::{AlertEvent, AlertKind, AlertState, SeriesKey, SeriesTotals, SeriesView, Severity};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::api::{app, AppState};
use super::hub::{wall_ms, Hub};
use super::metrics::Metrics;

fn alert(n: u64, kind: AlertKind, state: AlertState, cluster: &str, detected_s: i64) -> AlertEvent {
    AlertEvent {
        id: format!("a-{n:016x}"),
        kind,
        state,
        severity: Severity::Critical,
        cluster: cluster.into(),
        service: "checkout".into(),
        region: None,
        onset: (detected_s - 10) * 1000,
        detected_at: detected_s * 1000,
        resolved_at: (state == AlertState::Resolved).then_some((detected_s + 300) * 1000),
        value: 0.4,
        baseline: 0.01,
        summary: "error ratio 40.0% vs baseline 1.0%".into(),
        incident_id: None,
    }
}

fn series(cluster: &str, service: &str, firing: Vec<AlertKind>) -> SeriesView {
    SeriesView {
        id: 0,
        key: SeriesKey {
            cluster: cluster.into(),
            service: service.into(),
            region: Some("eu-west-1".into()),
        },
        last_sample_ms: Some(1_700_000_000_000),
        error_ratio: 0.25,
        error_baseline: 0.01,
        retry_ratio: 0.05,
        retry_baseline: 0.02,
        success_rate: 900.0,
        success_baseline: 1000.0,
        latency_p99_ms: 250.0,
        latency_baseline_ms: 200.0,
        pool_utilisation: 0.5,
        pool_baseline: 0.4,
        pool_pending: f64::NAN,
        totals: SeriesTotals {
            requests: 1000,
            errors: 250,
            retries: 50,
        },
        firing,
    }
}

/// A hub with five alerts (detected at 100..500 s), three series and two incidents.
fn fixture(token: Option<&str>, series_limit: usize) -> (Router, Hub) {
    let hub = Hub::new(100);
    hub.publish(&[
        alert(1, AlertKind::ErrorRateSpike, AlertState::Firing, "a", 100),
        alert(
            2,
            AlertKind::RetryAmplification,
            AlertState::Firing,
            "a",
            200,
        ),
        alert(3, AlertKind::ErrorRateSpike, AlertState::Firing, "b", 300),
        alert(4, AlertKind::DbPoolSaturation, AlertState::Firing, "c", 400),
        alert(5, AlertKind::LatencySpike, AlertState::Firing, "c", 500),
    ]);
    hub.publish(&[alert(
        3,
        AlertKind::ErrorRateSpike,
        AlertState::Resolved,
        "b",
        300,
    )]);
    hub.set_series(vec![
        series("a", "checkout", vec![AlertKind::ErrorRateSpike]),
        series("b", "checkout", vec![]),
        series("c", "search", vec![AlertKind::DbPoolSaturation]),
    ]);
    hub.set_incidents(vec![
        json!({"id": "i-1", "state": "resolved", "onset": "2026-01-01T00:00:00Z", "clusters": ["a"], "affected_traffic_ratio": 0.1}),
        json!({"id": "i-2", "state": "open", "onset": "2026-01-02T00:00:00Z", "clusters": ["a", "c"], "affected_traffic_ratio": 0.6}),
    ]);
    hub.set_source_up(true);
    hub.heartbeat(wall_ms());
    let state = AppState {
        hub: hub.clone(),
        metrics: Metrics::new(series_limit),
        bearer_token: token.map(String::from),
        stall_after: Duration::from_secs(10),
    };
    (app(state, Duration::from_secs(5)), hub)
}

async fn call(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::builder().uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

async fn get_json(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, ctype, body) = call(app, uri, None).await;
    assert!(ctype.starts_with("application/json"), "{uri}: {ctype}");
    (status, serde_json::from_str(&body).unwrap())
}

fn ids(v: &Value, list: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn health_and_readiness() {
    let (app, hub) = fixture(None, 100);
    let (s, v) = get_json(&app, "/healthz").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = get_json(&app, "/readyz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ready"], true);

    hub.set_source_up(false);
    let (s, v) = get_json(&app, "/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["source_up"], false);

    hub.set_source_up(true);
    hub.heartbeat(wall_ms() - 60_000);
    let (s, v) = get_json(&app, "/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["pipeline_keeping_up"], false);
}

#[tokio::test]
async fn alert_filters() {
    let (app, _) = fixture(None, 100);
    let all = |v: &[u64]| -> Vec<String> { v.iter().map(|n| format!("a-{n:016x}")).collect() };
    let cases: &[(&str, &str, Vec<String>)] = &[
        ("no filter: newest first", "", all(&[5, 4, 3, 2, 1])),
        ("firing", "state=firing", all(&[5, 4, 2, 1])),
        ("resolved", "state=resolved", all(&[3])),
        ("kind", "kind=error_rate_spike", all(&[3, 1])),
        ("cluster", "cluster=c", all(&[5, 4])),
        ("service none", "service=search", vec![]),
        ("since", "since=300000", all(&[5, 4, 3])),
        ("until", "until=1970-01-01T00:05:00Z", all(&[2, 1])),
        ("window", "since=200000&until=400000", all(&[3, 2])),
        (
            "combined",
            "cluster=a&kind=retry_amplification&state=firing",
            all(&[2]),
        ),
    ];
    for (name, q, want) in cases {
        let (s, v) = get_json(&app, &format!("/api/v1/alerts?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{name}");
        assert_eq!(&ids(&v, "alerts"), want, "{name}");
    }
}

#[tokio::test]
async fn alert_pages_cover_everything_once() {
    let (app, _) = fixture(None, 100);
    let mut seen = Vec::new();
    let mut uri = "/api/v1/alerts?limit=2".to_string();
    for _ in 0..10 {
        let (s, v) = get_json(&app, &uri).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["alerts"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&v, "alerts"));
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/alerts?limit=2&cursor={c}"),
            None => break,
        }
    }
    let want: Vec<String> = [5u64, 4, 3, 2, 1]
        .iter()
        .map(|n| format!("a-{n:016x}"))
        .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let (app, _) = fixture(None, 100);
    let cases = [
        ("/api/v1/alerts?state=burning", "state"),
        ("/api/v1/alerts?kind=explosion", "kind"),
        ("/api/v1/alerts?since=yesterday", "since"),
        ("/api/v1/alerts?until=2026-13-01T00:00:00Z", "until"),
        ("/api/v1/alerts?limit=0", "limit"),
        ("/api/v1/alerts?limit=1001", "limit"),
        ("/api/v1/alerts?limit=ten", "limit"),
        ("/api/v1/alerts?cursor=nonsense", "cursor"),
        ("/api/v1/alerts?colour=red", "colour"),
        ("/api/v1/alerts?state=firing&state=resolved", "state"),
        ("/api/v1/series?firing=maybe", "firing"),
        ("/api/v1/series?cursor=-1", "cursor"),
        ("/api/v1/series?region=x", "region"),
        ("/api/v1/incidents?state=closed", "state"),
        ("/api/v1/incidents?limit=-3", "limit"),
        ("/api/v1/alerts/stream?x=1", "x"),
    ];
    for (uri, param) in cases {
        let (s, v) = get_json(&app, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], "bad_parameter", "{uri}");
        assert_eq!(v["parameter"], param, "{uri}");
        assert!(!v["message"].as_str().unwrap().is_empty(), "{uri}");
    }
}

#[tokio::test]
async fn single_alert_and_not_found() {
    let (app, _) = fixture(None, 100);
    let (s, v) = get_json(&app, "/api/v1/alerts/a-0000000000000003").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "resolved");
    assert_eq!(v["kind"], "error_rate_spike");
    assert!(v["resolved_at"].is_string());
    assert!(v.get("incident_id").is_some(), "CONTRACT section 5 field");

    for uri in [
        "/api/v1/alerts/a-ffffffffffffffff",
        "/api/v1/incidents/i-404",
        "/api/v1/series/a/nothing",
        "/api/v2/alerts",
        "/nowhere",
    ] {
        let (s, v) = get_json(&app, uri).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(v["error"], "not_found", "{uri}");
    }
}

#[tokio::test]
async fn series_list_filters_and_detail() {
    let (app, _) = fixture(None, 100);
    let names = |v: &Value| -> Vec<String> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["cluster"].as_str().unwrap(),
                    s["service"].as_str().unwrap()
                )
            })
            .collect()
    };
    let cases: &[(&str, &[&str])] = &[
        ("", &["a/checkout", "b/checkout", "c/search"]),
        ("service=checkout", &["a/checkout", "b/checkout"]),
        ("cluster=c", &["c/search"]),
        ("firing=true", &["a/checkout", "c/search"]),
        ("firing=false", &["b/checkout"]),
    ];
    for (q, want) in cases {
        let (s, v) = get_json(&app, &format!("/api/v1/series?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}");
        assert_eq!(&names(&v), want, "{q}");
        assert_eq!(v["total"], 3);
    }
    // Paging.
    let (_, v) = get_json(&app, "/api/v1/series?limit=2").await;
    assert_eq!(names(&v), ["a/checkout", "b/checkout"]);
    let c = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = get_json(&app, &format!("/api/v1/series?limit=2&cursor={c}")).await;
    assert_eq!(names(&v), ["c/search"]);
    assert!(v["next_cursor"].is_null());

    let (s, v) = get_json(&app, "/api/v1/series/a/checkout").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["error_ratio"], 0.25);
    assert_eq!(v["error_ratio_baseline"], 0.01);
    assert_eq!(v["retry_ratio"], 0.05);
    assert_eq!(v["db_pool_utilisation"], 0.5);
    assert!(v["db_pool_pending"].is_null(), "not reported -> null");
    assert_eq!(v["last_sample_at"], "2023-11-14T22:13:20Z");
    assert_eq!(v["firing"], json!(["error_rate_spike"]));
    assert_eq!(
        ids(&v, "recent_alerts"),
        ["a-0000000000000002", "a-0000000000000001"]
    );
}

#[tokio::test]
async fn incidents_newest_first_with_state_filter() {
    let (app, _) = fixture(None, 100);
    let (_, v) = get_json(&app, "/api/v1/incidents").await;
    assert_eq!(ids(&v, "incidents"), ["i-2", "i-1"]);
    let (_, v) = get_json(&app, "/api/v1/incidents?state=open").await;
    assert_eq!(ids(&v, "incidents"), ["i-2"]);
    let (_, v) = get_json(&app, "/api/v1/incidents?limit=1").await;
    assert_eq!(ids(&v, "incidents"), ["i-2"]);
    let c = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = get_json(&app, &format!("/api/v1/incidents?limit=1&cursor={c}")).await;
    assert_eq!(ids(&v, "incidents"), ["i-1"]);
    let (s, v) = get_json(&app, "/api/v1/incidents/i-1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "resolved");
}

#[tokio::test]
async fn bearer_token_guards_the_api_only() {
    let (app, _) = fixture(Some("s3cret"), 100);
    let (s, _, body) = call(&app, "/api/v1/alerts", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("unauthorized"));
    let (s, _, _) = call(&app, "/api/v1/alerts", Some("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(&app, "/api/v1/alerts", Some("s3cret")).await;
    assert_eq!(s, StatusCode::OK);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let (s, _, _) = call(&app, open, None).await;
        assert_eq!(s, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn metrics_expose_alerts_series_and_incidents() {
    let (app, _) = fixture(None, 100);
    let (s, ctype, text) = call(&app, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(ctype.contains("version=0.0.4"), "{ctype}");
    for want in [
        "spikewatch_alerts_active{cluster=\"a\",kind=\"error_rate_spike\",service=\"checkout\",severity=\"critical\"} 1",
        "spikewatch_series_error_ratio{cluster=\"a\",service=\"checkout\"} 0.25",
        "spikewatch_series_error_ratio_baseline{cluster=\"c\",service=\"search\"} 0.01",
        "spikewatch_series_requests_total{cluster=\"b\",service=\"checkout\"} 1000",
        "spikewatch_series_latency_p99_seconds{cluster=\"a\",service=\"checkout\"} 0.25",
        "spikewatch_fleet_requests_total 3000",
        "spikewatch_fleet_errors_total 750",
        "spikewatch_incidents_open 1",
        "spikewatch_incident_affected_traffic_ratio 0.6",
        "spikewatch_incident_affected_clusters 2",
        "spikewatch_tracked_series 3",
        "spikewatch_detector_open_samples 0",
        "spikewatch_detector_forced_tick_closes_total 0",
        "spikewatch_source_up 1",
        "# TYPE spikewatch_series_requests_total counter",
        "# TYPE spikewatch_batch_processing_seconds histogram",
        "spikewatch_samples_rejected_total{reason=\"malformed_json\"} 0",
    ] {
        assert!(text.contains(want), "missing `{want}` in\n{text}");
    }
    // The resolved alert is not active; an unreported pool pending gauge is left out.
    assert!(!text.contains("cluster=\"b\",kind=\"error_rate_spike\""));
    assert!(!text.contains("spikewatch_series_db_pool_pending{"));
}

#[tokio::test]
async fn per_series_gauges_are_capped() {
    let (app, _) = fixture(None, 2);
    let (_, _, text) = call(&app, "/metrics", None).await;
    assert_eq!(text.matches("spikewatch_series_error_ratio{").count(), 2);
    assert!(text.contains("spikewatch_series_dropped 1"), "{text}");
    // Fleet totals still count every series.
    assert!(text.contains("spikewatch_fleet_requests_total 3000"));
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let (app, _) = fixture(None, 100);
    let (s, doc) = get_json(&app, "/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/api/v1/alerts",
        "/api/v1/alerts/stream",
        "/api/v1/alerts/{id}",
        "/api/v1/series",
        "/api/v1/series/{cluster}/{service}",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(route), "{route} not documented");
    }
    // Every documented path answers (templated ones with a real id from the fixture).
    for p in paths.keys() {
        if p.ends_with("/stream") {
            continue;
        }
        let uri = p
            .replace(
                "{id}",
                if p.contains("incidents") {
                    "i-1"
                } else {
                    "a-0000000000000001"
                },
            )
            .replace("{cluster}", "a")
            .replace("{service}", "checkout");
        let (s, _, _) = call(&app, &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn stream_sends_each_new_transition() {
    let (app, hub) = fixture(None, 100);
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v1/alerts/stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();
    // A repeat of a stored transition is not news; a new one is.
    hub.publish(&[alert(
        1,
        AlertKind::ErrorRateSpike,
        AlertState::Firing,
        "a",
        100,
    )]);
    hub.publish(&[alert(
        9,
        AlertKind::SuccessDrop,
        AlertState::Firing,
        "z",
        900,
    )]);
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.contains("event: alert"), "{text}");
    assert!(text.contains("id: a-0000000000000009:firing"), "{text}");
    assert!(text.contains("\"kind\":\"success_drop\""), "{text}");
}

#[tokio::test]
async fn incident_updates_land_in_the_api_in_their_final_state() {
    // Every group of incident updates a real replay hands out, fed to the hub as the pipeline
    // thread does: each incident is counted as new once and served in its final state.
    let trace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/incidents/2026-02-12-routing-config-removed");
    let hub = Hub::new(100);
    let mut opened = 0;
    let res = crate::pipeline::replay_with_incidents(
        &trace,
        detector::DetectorConfig::default(),
        1024,
        |events, updates, _| {
            opened += hub.upsert_incidents(updates);
            hub.publish(events);
        },
    )
    .unwrap();
    assert!(!res.incidents.is_empty());
    assert_eq!(opened, res.incidents.len());
    let state = AppState {
        hub: hub.clone(),
        metrics: Metrics::new(100),
        bearer_token: None,
        stall_after: Duration::from_secs(10),
    };
    let app = app(state, Duration::from_secs(5));
    for inc in &res.incidents {
        let (s, v) = get_json(&app, &format!("/api/v1/incidents/{}", inc.id)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, serde_json::to_value(inc).unwrap());
    }
    // Every alert the API serves names an incident the API knows.
    let (_, v) = get_json(&app, "/api/v1/alerts?limit=1000").await;
    for a in v["alerts"].as_array().unwrap() {
        let id = a["incident_id"].as_str().unwrap();
        let (s, _) = get_json(&app, &format!("/api/v1/incidents/{id}")).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "alert {} names unknown incident {id}",
            a["id"]
        );
    }
}
