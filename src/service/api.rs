//! The HTTP API (axum): alerts, the alert stream, series, incidents, health, `/metrics` and the
//! OpenAPI document. [`app`] builds the router from shared state, so tests drive it with
//! `oneshot` and no socket.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use detector::{AlertEvent, AlertKind, AlertState, SeriesView};
use futures_util::stream::Stream;
use serde_json::{json, Value};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::hub::{wall_ms, Hub};
use super::metrics::Metrics;

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Hub,
    pub metrics: Metrics,
    pub bearer_token: Option<String>,
    /// `/readyz` fails when the pipeline thread has not turned for this long.
    pub stall_after: Duration,
}

/// Every error the API returns: a status and a JSON body, never a stack trace.
#[derive(Debug)]
pub enum AppError {
    BadParameter {
        parameter: String,
        message: String,
    },
    NotFound(String),
    Unauthorized,
    /// Something on our side failed; the message is for logs and the client, no stack trace.
    Internal(String),
}

impl AppError {
    fn bad(parameter: &str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            parameter: parameter.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::BadParameter { parameter, message } => (
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_parameter", "parameter": parameter, "message": message}),
            ),
            AppError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": what}),
            ),
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": "a valid bearer token is required"}),
            ),
            AppError::Internal(what) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": what}),
            ),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The router. `/api/*` sits behind the bearer token when one is configured; health and
/// `/metrics` stay open for probes and scrapers.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/stream", get(alert_stream))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/series", get(list_series))
        .route("/api/v1/series/{cluster}/{service}", get(get_series))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(token) = &st.bearer_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Err(AppError::Unauthorized);
        }
    }
    Ok(next.run(req).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<AppState>) -> Response {
    let source_up = st.hub.source_up();
    let since = wall_ms() - st.hub.last_heartbeat_ms();
    #[allow(clippy::cast_possible_truncation)]
    let keeping_up = since <= st.stall_after.as_millis() as i64;
    let source = st.hub.read().counters.source.clone();
    let body = json!({
        "ready": source_up && keeping_up,
        "source": source,
        "source_up": source_up,
        "pipeline_keeping_up": keeping_up,
    });
    let status = if source_up && keeping_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let (text, content_type) = st.metrics.render(&st.hub);
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Query parameters checked against the ones an endpoint knows; unknown or repeated ones are
/// refused by name.
struct QueryArgs(Vec<(String, String)>);

impl QueryArgs {
    fn parse(q: Params, known: &[&str]) -> Result<Self, AppError> {
        let Query(pairs) = q.map_err(|e| AppError::bad("(query)", e.body_text()))?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                return Err(AppError::bad(
                    k,
                    format!(
                        "unknown parameter; this endpoint takes {}",
                        known.join(", ")
                    ),
                ));
            }
            if pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(AppError::bad(k, "given more than once"));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn limit(&self) -> Result<usize, AppError> {
        match self.get("limit") {
            None => Ok(100),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(AppError::bad(
                    "limit",
                    format!("`{v}` is not a whole number from 1 to 1000"),
                )),
            },
        }
    }

    fn time(&self, name: &str) -> Result<Option<i64>, AppError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        if let Ok(ms) = v.parse::<i64>() {
            return Ok(Some(ms));
        }
        ingest::time::parse_rfc3339_ms(v).map(Some).ok_or_else(|| {
            AppError::bad(
                name,
                format!("`{v}` is not an RFC 3339 time or epoch milliseconds"),
            )
        })
    }
}

/// Position in the newest-first alert order: (detected_at, seq), both descending.
fn alert_cursor(detected_at: i64, seq: u64) -> String {
    format!("{detected_at}.{seq}")
}

fn parse_alert_cursor(v: &str) -> Result<(i64, u64), AppError> {
    v.split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| AppError::bad("cursor", format!("`{v}` is not a cursor this API gave out")))
}

async fn list_alerts(State(st): State<AppState>, q: Params) -> Result<Response, AppError> {
    let q = QueryArgs::parse(
        q,
        &[
            "state", "kind", "cluster", "service", "since", "until", "limit", "cursor",
        ],
    )?;
    let state = match q.get("state") {
        None => None,
        Some("firing") => Some(AlertState::Firing),
        Some("resolved") => Some(AlertState::Resolved),
        Some(v) => {
            return Err(AppError::bad(
                "state",
                format!("`{v}` is not a state; expected firing or resolved"),
            ))
        }
    };
    let kind = match q.get("kind") {
        None => None,
        Some(v) => Some(AlertKind::parse(v).ok_or_else(|| {
            let kinds: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
            AppError::bad(
                "kind",
                format!(
                    "`{v}` is not an alert kind; expected one of {}",
                    kinds.join(", ")
                ),
            )
        })?),
    };
    let (since, until) = (q.time("since")?, q.time("until")?);
    let limit = q.limit()?;
    let cursor = q.get("cursor").map(parse_alert_cursor).transpose()?;
    let (cluster, service) = (q.get("cluster"), q.get("service"));

    let hub = st.hub.read();
    let mut hits: Vec<(i64, u64, &AlertEvent)> = hub
        .alerts()
        .iter()
        .filter(|a| {
            let e = &a.event;
            state.is_none_or(|s| e.state == s)
                && kind.is_none_or(|k| e.kind == k)
                && cluster.is_none_or(|c| e.cluster == c)
                && service.is_none_or(|s| e.service == s)
                && since.is_none_or(|t| e.detected_at >= t)
                && until.is_none_or(|t| e.detected_at < t)
        })
        .map(|a| (a.event.detected_at, a.seq, &a.event))
        .filter(|(d, s, _)| cursor.is_none_or(|c| (*d, *s) < c))
        .collect();
    // Newest first. Only the page is sorted: a linear selection finds it among all hits.
    let newest_first = |h: &(i64, u64, &AlertEvent)| std::cmp::Reverse((h.0, h.1));
    let more = hits.len() > limit;
    if more {
        hits.select_nth_unstable_by_key(limit, newest_first);
        hits.truncate(limit);
    }
    hits.sort_unstable_by_key(newest_first);
    let next = if more {
        hits.last().map(|(d, s, _)| alert_cursor(*d, *s))
    } else {
        None
    };
    // Serialized straight from the stored alerts, while the hub is read-locked.
    #[derive(serde::Serialize)]
    struct Page<'a> {
        alerts: Vec<&'a AlertEvent>,
        next_cursor: Option<String>,
    }
    let page = Page {
        alerts: hits.into_iter().map(|(_, _, e)| e).collect(),
        next_cursor: next,
    };
    let body = serde_json::to_vec(&page)
        .map_err(|e| AppError::Internal(format!("encoding alerts: {e}")))?;
    drop(hub);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

async fn get_alert(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AlertEvent>, AppError> {
    st.hub
        .read()
        .alert(&id)
        .map(|a| Json(a.event.clone()))
        .ok_or_else(|| AppError::NotFound(format!("no alert with id `{id}`")))
}

/// Server-sent events: one `alert` event per transition, JSON as in CONTRACT section 5.
async fn alert_stream(
    State(st): State<AppState>,
    q: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    QueryArgs::parse(q, &[])?;
    let rx = st.hub.subscribe();
    let stream = BroadcastStream::new(rx).map(|item| {
        Ok(match item {
            Ok(ev) => Event::default()
                .event("alert")
                .id(format!("{}:{}", ev.id, ev.state.as_str()))
                .json_data(&ev)
                .unwrap_or_else(|_| Event::default().comment("unserialisable alert")),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default().event("lagged").data(
                format!("{n} transitions were skipped; re-read /api/v1/alerts"),
            ),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn series_json(v: &SeriesView) -> Value {
    json!({
        "cluster": v.key.cluster,
        "service": v.key.service,
        "region": v.key.region,
        "last_sample_at": v.last_sample_ms.map(detector::time::format_rfc3339),
        "error_ratio": finite(v.error_ratio),
        "error_ratio_baseline": finite(v.error_baseline),
        "retry_ratio": finite(v.retry_ratio),
        "retry_ratio_baseline": finite(v.retry_baseline),
        "success_per_second": finite(v.success_rate),
        "success_per_second_baseline": finite(v.success_baseline),
        "latency_p99_ms": finite(v.latency_p99_ms),
        "latency_p99_baseline_ms": finite(v.latency_baseline_ms),
        "db_pool_utilisation": finite(v.pool_utilisation),
        "db_pool_utilisation_baseline": finite(v.pool_baseline),
        "db_pool_pending": finite(v.pool_pending),
        "requests_total": v.totals.requests,
        "errors_total": v.totals.errors,
        "retries_total": v.totals.retries,
        "firing": v.firing.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
    })
}

async fn list_series(State(st): State<AppState>, q: Params) -> Result<Json<Value>, AppError> {
    let q = QueryArgs::parse(q, &["cluster", "service", "firing", "limit", "cursor"])?;
    let limit = q.limit()?;
    let firing = match q.get("firing") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => {
            return Err(AppError::bad(
                "firing",
                format!("`{v}` is not true or false"),
            ))
        }
    };
    let start = match q.get("cursor") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            AppError::bad("cursor", format!("`{v}` is not a cursor this API gave out"))
        })?,
    };
    let (cluster, service) = (q.get("cluster"), q.get("service"));
    let series = st.hub.read().series.clone();
    let matching: Vec<(usize, &SeriesView)> = series
        .iter()
        .enumerate()
        .filter(|(_, v)| {
            cluster.is_none_or(|c| v.key.cluster == c)
                && service.is_none_or(|s| v.key.service == s)
                && firing.is_none_or(|f| f != v.firing.is_empty())
        })
        .filter(|(i, _)| *i >= start)
        .take(limit + 1)
        .collect();
    let next = (matching.len() > limit).then(|| matching[limit].0.to_string());
    let items: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|(_, v)| series_json(v))
        .collect();
    Ok(Json(
        json!({"series": items, "total": series.len(), "next_cursor": next}),
    ))
}

async fn get_series(
    State(st): State<AppState>,
    Path((cluster, service)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let series = st.hub.read().series.clone();
    let found = series
        .iter()
        .find(|v| v.key.cluster == cluster && v.key.service == service)
        .ok_or_else(|| AppError::NotFound(format!("no series {cluster}/{service}")))?;
    let mut v = series_json(found);
    let alerts: Vec<AlertEvent> = st
        .hub
        .read()
        .alerts()
        .iter()
        .filter(|a| a.event.cluster == cluster && a.event.service == service)
        .rev()
        .take(20)
        .map(|a| a.event.clone())
        .collect();
    v["recent_alerts"] = json!(alerts);
    Ok(Json(v))
}

async fn list_incidents(State(st): State<AppState>, q: Params) -> Result<Json<Value>, AppError> {
    let q = QueryArgs::parse(q, &["state", "limit", "cursor"])?;
    let limit = q.limit()?;
    if let Some(v) = q.get("state") {
        if v != "open" && v != "resolved" {
            return Err(AppError::bad(
                "state",
                format!("`{v}` is not a state; expected open or resolved"),
            ));
        }
    }
    let start = match q.get("cursor") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            AppError::bad("cursor", format!("`{v}` is not a cursor this API gave out"))
        })?,
    };
    let hub = st.hub.read();
    // Newest first: the hub keeps incidents in the order they opened.
    let matching: Vec<(usize, &Value)> = hub
        .incidents
        .iter()
        .rev()
        .enumerate()
        .filter(|(_, i)| {
            q.get("state")
                .is_none_or(|s| i.get("state").and_then(Value::as_str) == Some(s))
        })
        .filter(|(i, _)| *i >= start)
        .take(limit + 1)
        .collect();
    let next = (matching.len() > limit).then(|| matching[limit].0.to_string());
    let items: Vec<&Value> = matching.iter().take(limit).map(|(_, v)| *v).collect();
    Ok(Json(json!({"incidents": items, "next_cursor": next})))
}

async fn get_incident(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    st.hub
        .read()
        .incidents
        .iter()
        .find(|i| i.get("id").and_then(Value::as_str) == Some(id.as_str()))
        .cloned()
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no incident with id `{id}`")))
}
