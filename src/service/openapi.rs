//! The OpenAPI 3.0 description of the HTTP API, served at `/api/v1/openapi.json`. A test checks
//! that every route of the router is described here and every described path answers.

use serde_json::{json, Value};

fn param(name: &str, description: &str, schema: &Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn ok(description: &str, schema: &Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn error_ref() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

pub fn document() -> Value {
    let limit = param(
        "limit",
        "Items per page, 1 to 1000 (default 100).",
        &json!({"type": "integer", "minimum": 1, "maximum": 1000}),
    );
    let cursor = param(
        "cursor",
        "The `next_cursor` of the previous page.",
        &json!({"type": "string"}),
    );
    let kinds = json!({"type": "string", "enum": ["error_rate_spike", "success_drop", "retry_amplification", "db_pool_saturation", "latency_spike", "telemetry_absent"]});
    let time = json!({"type": "string", "description": "RFC 3339 time or epoch milliseconds"});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "spikewatch",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Alerts, series and fleet incidents from spikewatch's detector. Times are event time (the sample clock), RFC 3339 UTC. When a bearer token is configured, every /api path requires `Authorization: Bearer <token>`."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "enum": ["bad_parameter", "not_found", "unauthorized"]},
                    "parameter": {"type": "string", "description": "the offending query parameter"},
                    "message": {"type": "string"}}},
                "Alert": {"type": "object", "required": ["id", "kind", "state", "severity", "cluster", "service", "onset", "detected_at", "value", "baseline", "summary"], "properties": {
                    "id": {"type": "string"}, "kind": kinds, "state": {"type": "string", "enum": ["firing", "resolved"]},
                    "severity": {"type": "string", "enum": ["warning", "critical"]},
                    "cluster": {"type": "string"}, "service": {"type": "string"}, "region": {"type": "string", "nullable": true},
                    "onset": {"type": "string", "format": "date-time"}, "detected_at": {"type": "string", "format": "date-time"},
                    "resolved_at": {"type": "string", "format": "date-time", "nullable": true},
                    "value": {"type": "number"}, "baseline": {"type": "number"}, "summary": {"type": "string"},
                    "incident_id": {"type": "string", "nullable": true}}},
                "Series": {"type": "object", "properties": {
                    "cluster": {"type": "string"}, "service": {"type": "string"}, "region": {"type": "string", "nullable": true},
                    "last_sample_at": {"type": "string", "format": "date-time", "nullable": true},
                    "error_ratio": {"type": "number", "nullable": true}, "error_ratio_baseline": {"type": "number", "nullable": true},
                    "retry_ratio": {"type": "number", "nullable": true}, "retry_ratio_baseline": {"type": "number", "nullable": true},
                    "success_per_second": {"type": "number", "nullable": true}, "success_per_second_baseline": {"type": "number", "nullable": true},
                    "latency_p99_ms": {"type": "number", "nullable": true}, "latency_p99_baseline_ms": {"type": "number", "nullable": true},
                    "db_pool_utilisation": {"type": "number", "nullable": true}, "db_pool_utilisation_baseline": {"type": "number", "nullable": true},
                    "db_pool_pending": {"type": "number", "nullable": true},
                    "requests_total": {"type": "integer"}, "errors_total": {"type": "integer"}, "retries_total": {"type": "integer"},
                    "firing": {"type": "array", "items": kinds}}},
                "Incident": {"type": "object", "required": ["id", "state"], "additionalProperties": true, "properties": {
                    "id": {"type": "string"}, "state": {"type": "string", "enum": ["open", "resolved"]},
                    "onset": {"type": "string", "format": "date-time"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/alerts": {"get": {
                "summary": "Alerts, newest detection first, each in its latest state.",
                "parameters": [
                    param("state", "firing or resolved", &json!({"type": "string", "enum": ["firing", "resolved"]})),
                    param("kind", "alert kind", &kinds),
                    param("cluster", "exact cluster", &json!({"type": "string"})),
                    param("service", "exact service", &json!({"type": "string"})),
                    param("since", "detected at or after", &time),
                    param("until", "detected before", &time),
                    limit, cursor],
                "responses": {"200": ok("a page of alerts", &json!({"type": "object", "properties": {
                    "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                    "next_cursor": {"type": "string", "nullable": true}}})),
                    "400": error_ref(), "401": error_ref()}}},
            "/api/v1/alerts/stream": {"get": {
                "summary": "Server-sent events: an `alert` event (data: Alert JSON) per transition; a `lagged` event if the client fell behind.",
                "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "401": error_ref()}}},
            "/api/v1/alerts/{id}": {"get": {
                "summary": "One alert in its latest state.",
                "parameters": [path_param("id", "alert id")],
                "responses": {"200": ok("the alert", &json!({"$ref": "#/components/schemas/Alert"})), "404": error_ref(), "401": error_ref()}}},
            "/api/v1/series": {"get": {
                "summary": "Tracked series with their current ratios and baselines, by cluster then service.",
                "parameters": [
                    param("cluster", "exact cluster", &json!({"type": "string"})),
                    param("service", "exact service", &json!({"type": "string"})),
                    param("firing", "only series with (true) or without (false) firing alerts", &json!({"type": "boolean"})),
                    param("limit", "Items per page, 1 to 1000 (default 100).", &json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                    param("cursor", "The `next_cursor` of the previous page.", &json!({"type": "string"}))],
                "responses": {"200": ok("a page of series", &json!({"type": "object", "properties": {
                    "series": {"type": "array", "items": {"$ref": "#/components/schemas/Series"}},
                    "total": {"type": "integer"}, "next_cursor": {"type": "string", "nullable": true}}})),
                    "400": error_ref(), "401": error_ref()}}},
            "/api/v1/series/{cluster}/{service}": {"get": {
                "summary": "One series, with its recent alerts.",
                "parameters": [path_param("cluster", "cluster"), path_param("service", "service")],
                "responses": {"200": ok("the series", &json!({"$ref": "#/components/schemas/Series"})), "404": error_ref(), "401": error_ref()}}},
            "/api/v1/incidents": {"get": {
                "summary": "Fleet incidents, newest first.",
                "parameters": [
                    param("state", "open or resolved", &json!({"type": "string", "enum": ["open", "resolved"]})),
                    param("limit", "Items per page, 1 to 1000 (default 100).", &json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                    param("cursor", "The `next_cursor` of the previous page.", &json!({"type": "string"}))],
                "responses": {"200": ok("a page of incidents", &json!({"type": "object", "properties": {
                    "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}},
                    "next_cursor": {"type": "string", "nullable": true}}})),
                    "400": error_ref(), "401": error_ref()}}},
            "/api/v1/incidents/{id}": {"get": {
                "summary": "One incident.",
                "parameters": [path_param("id", "incident id")],
                "responses": {"200": ok("the incident", &json!({"$ref": "#/components/schemas/Incident"})), "404": error_ref(), "401": error_ref()}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3.0 document"}}}},
            "/healthz": {"get": {"summary": "The process is alive.", "security": [], "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "The source is connected and the detector keeps up.", "security": [],
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready; the body says why"}}}},
            "/metrics": {"get": {"summary": "Prometheus text exposition.", "security": [],
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
        }
    })
}
