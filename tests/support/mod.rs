//! Shared by the tests: [`procs`] for the end-to-end tests, and, for `tests/deploy.rs` and
//! `tests/e2e_stack.rs`, reading the Grafana dashboards
//! under `dashboards/` and listing every PromQL query they run, with the dashboard variables
//! substituted the way Grafana would.
#![allow(dead_code)]

pub mod procs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One dashboard file, parsed.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub file: String,
    pub json: Value,
}

impl Dashboard {
    pub fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }

    /// Every panel, rows' nested panels included, in file order.
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
            for p in list.as_array().into_iter().flatten() {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    /// The template variables (`templating.list`).
    pub fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }

    /// Annotation queries, without Grafana's built-in "Annotations & Alerts".
    pub fn annotations(&self) -> Vec<&Value> {
        self.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a.get("builtIn").and_then(Value::as_i64) != Some(1))
            .collect()
    }

    /// Every PromQL expression the dashboard runs: panel targets, annotations, and the queries
    /// behind its variables.
    pub fn queries(&self) -> Vec<Query> {
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        dashboard: self.uid().to_string(),
                        place: format!(
                            "panel {} \"{}\" target {}",
                            p["id"],
                            p["title"].as_str().unwrap_or(""),
                            t["refId"].as_str().unwrap_or("?")
                        ),
                        kind: QueryKind::Panel,
                        expr: expr.to_string(),
                    });
                }
            }
        }
        for a in self.annotations() {
            if let Some(expr) = a["expr"].as_str() {
                out.push(Query {
                    dashboard: self.uid().to_string(),
                    place: format!("annotation \"{}\"", a["name"].as_str().unwrap_or("")),
                    kind: QueryKind::Annotation,
                    expr: expr.to_string(),
                });
            }
        }
        for v in self.variables() {
            if v["type"] != "query" {
                continue;
            }
            let q = match &v["query"] {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("query").and_then(Value::as_str),
                _ => None,
            };
            if let Some(q) = q {
                out.push(Query {
                    dashboard: self.uid().to_string(),
                    place: format!("variable ${}", v["name"].as_str().unwrap_or("")),
                    kind: QueryKind::Variable,
                    expr: q.to_string(),
                });
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Panel,
    Annotation,
    /// A variable query such as `label_values(metric{...}, label)`: Grafana syntax, not PromQL.
    Variable,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    pub place: String,
    pub kind: QueryKind,
    pub expr: String,
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.dashboard, self.place)
    }
}

/// Reads every `dashboards/*.json`, sorted by file name.
pub fn load_dashboards() -> Vec<Dashboard> {
    let dir = repo_root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files.iter().map(|p| load_dashboard(p)).collect()
}

pub fn load_dashboard(path: &Path) -> Dashboard {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    Dashboard {
        file: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        json,
    }
}

/// Grafana's global variables that dashboards may use without defining them.
pub const GRAFANA_BUILTINS: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

/// The variable references (`$name`, `${name}`, `${name:format}`) in a query, in order.
pub fn variable_refs(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let braced = b.get(i + 1) == Some(&b'{');
        let start = if braced { i + 2 } else { i + 1 };
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if end > start {
            out.push(expr[start..end].to_string());
        }
        i = end.max(i + 1);
    }
    out
}

/// Replaces `$name`, `${name}` and `${name:format}` with `values[name]`; unknown names stay.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut end = start;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                end += 1;
            }
            let name = &expr[start..end];
            if let Some(v) = values.get(name) {
                let mut stop = end;
                if braced {
                    match expr[end..].find('}') {
                        Some(close) => stop = end + close + 1,
                        None => stop = end,
                    }
                }
                out.push_str(v);
                i = stop;
                continue;
            }
        }
        let ch = expr[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// `values` with Grafana's interval variables set to what a panel over the last hour with a
/// short scrape interval would get.
pub fn with_builtins(mut values: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (k, v) in [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__interval_ms", "15000"),
        ("__range", "1h"),
        ("__range_s", "3600"),
        ("__range_ms", "3600000"),
    ] {
        values.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    values
}

/// The `spikewatch_*` metric names a text mentions, in order of appearance.
pub fn metric_names(text: &str) -> Vec<String> {
    const PREFIX: &str = "spikewatch_";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(PREFIX) {
        let start = from + pos;
        let boundary = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - start);
        if boundary {
            out.push(text[start..end].to_string());
        }
        from = end.max(start + 1);
    }
    out
}

/// A Grafana `label_values(selector, label)` / `label_values(label)` variable query, split.
pub fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rfind(',') {
        Some(comma) => Some((
            Some(inner[..comma].trim().to_string()),
            inner[comma + 1..].trim().to_string(),
        )),
        None => Some((None, inner.trim().to_string())),
    }
}
