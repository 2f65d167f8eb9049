#![cfg_attr(test, allow(clippy::unwrap_used))]
//! Deterministic generator of the spikewatch replay traces.
//!
//! Five traces reconstruct the public postmortems in `shared/seeds/` (figures from
//! `shared/INCIDENTS.md`) and three are clean traces (no labels: every alert on them is a false
//! positive). Every trace is a directory in the layout of CONTRACT.md section 3:
//! `samples.jsonl.gz`, `changes.jsonl`, `labels.json` and `README.md`.
//!
//! Output is byte-for-byte reproducible: every random stream is a `ChaCha8Rng` seeded from a
//! stable FNV-1a hash of the trace name (and of the series key), and the gzip stream is written
//! with mtime 0 and no file name.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};

mod model;
mod traces;

/// Everything that can go wrong while generating or writing traces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is not one of [`trace_names`].
    #[error("unknown trace {0:?} (known: {known})", known = trace_names().join(", "))]
    UnknownTrace(String),
    /// Creating a directory or writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Gzip compression failed.
    #[error("gzip compression failed: {0}")]
    Gzip(#[source] std::io::Error),
    /// JSON encoding failed.
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
    /// A sampler was given an invalid parameter (a bug in a scenario).
    #[error("invalid distribution parameter: {0}")]
    Distribution(String),
    /// A timestamp outside what chrono can represent.
    #[error("timestamp out of range: {0}")]
    Time(i64),
}

/// The files of one trace, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTrace {
    /// Trace (directory) name.
    pub name: String,
    /// Gzip of the JSONL samples (deterministic bytes).
    pub samples_jsonl_gz: Vec<u8>,
    /// Change events, one JSON object a line (may be empty).
    pub changes_jsonl: String,
    /// Pretty-printed labels.
    pub labels_json: String,
    /// Human description.
    pub readme_md: String,
}

/// Names of every trace, in generation order.
pub fn trace_names() -> Vec<&'static str> {
    traces::NAMES.to_vec()
}

/// Generate one trace in memory.
pub fn render_trace(name: &str) -> Result<RenderedTrace, Error> {
    let trace = traces::build(name).ok_or_else(|| Error::UnknownTrace(name.to_string()))?;
    let lines = model::generate(&trace)?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    for line in &lines {
        gz.write_all(line.as_bytes()).map_err(Error::Gzip)?;
        gz.write_all(b"\n").map_err(Error::Gzip)?;
    }
    let samples_jsonl_gz = gz.finish().map_err(Error::Gzip)?;
    let mut changes_jsonl = String::new();
    let mut changes = trace.changes.clone();
    changes.sort_by_key(|c| c.ts);
    for c in &changes {
        changes_jsonl.push_str(&c.to_json()?);
        changes_jsonl.push('\n');
    }
    let labels_json = model::labels_json(trace.name, trace.interval, &trace.windows)?;
    let readme_md = readme(&trace, lines.len())?;
    Ok(RenderedTrace {
        name: trace.name.to_string(),
        samples_jsonl_gz,
        changes_jsonl,
        labels_json,
        readme_md,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Generate one trace into `out_dir/<name>/`.
pub fn write_trace(name: &str, out_dir: &Path) -> Result<(), Error> {
    let r = render_trace(name)?;
    let dir = out_dir.join(&r.name);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    write_file(&dir.join("samples.jsonl.gz"), &r.samples_jsonl_gz)?;
    write_file(&dir.join("changes.jsonl"), r.changes_jsonl.as_bytes())?;
    write_file(&dir.join("labels.json"), r.labels_json.as_bytes())?;
    write_file(&dir.join("README.md"), r.readme_md.as_bytes())?;
    Ok(())
}

/// Generate every trace into `out_dir/<name>/`; returns the trace names.
pub fn write_all(out_dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for name in trace_names() {
        write_trace(name, out_dir)?;
        names.push(name.to_string());
    }
    Ok(names)
}

/// README: the trace's own prose followed by generated tables of series, changes and windows.
fn readme(trace: &model::Trace, n_samples: usize) -> Result<String, Error> {
    let mut s = trace.readme.trim_end().to_string();
    s.push_str("\n\n## Layout\n\n");
    let _ = writeln!(
        s,
        "- `samples.jsonl.gz`: {n_samples} samples ({} series, interval {} s), ts from {} to {} \
         (ts is the END of each interval).",
        trace.series.len(),
        trace.interval,
        model::rfc3339(trace.start + trace.interval)?,
        model::rfc3339(trace.end)?,
    );
    let _ = writeln!(
        s,
        "- `changes.jsonl`: {} change event(s).\n- `labels.json`: {} window(s){}.",
        trace.changes.len(),
        trace.windows.len(),
        if trace.windows.is_empty() {
            " (a clean trace: every alert on it is a false positive)"
        } else {
            ""
        }
    );
    s.push_str(
        "- Regenerate with `spikewatch gen-traces --out testdata/incidents` (crate `tracegen`); the \
         output is byte-for-byte deterministic.\n",
    );
    s.push_str("\n## Series\n\n| cluster | service | region | mean req/s | baseline error ratio | DB pool |\n|---|---|---|---|---|---|\n");
    for x in &trace.series {
        let db = x.db.map_or_else(
            || "-".to_string(),
            |(m, u)| format!("max {m}, ~{:.0}% busy", u * 100.0),
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.2}%{} | {} |",
            x.cluster,
            x.service,
            x.region,
            x.rate,
            x.err * 100.0,
            if x.wander > 0.0 { " (wandering)" } else { "" },
            db
        );
    }
    if !trace.changes.is_empty() {
        s.push_str("\n## Change events\n\n| ts | kind | id | service | clusters | description |\n|---|---|---|---|---|---|\n");
        let mut changes = trace.changes.clone();
        changes.sort_by_key(|c| c.ts);
        for c in &changes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                model::rfc3339(c.ts)?,
                c.kind,
                c.id,
                c.service,
                c.clusters.join(", "),
                c.description
            );
        }
    }
    if !trace.windows.is_empty() {
        s.push_str(
            "\n## Label windows\n\nFor each listed series an alert of one of the kinds must fire with `detected_at` in \
             [onset, onset + max_delay_s]; windows are extended by 10 minutes after `end`.\n\n\
             | kinds | service | clusters | onset | end | max_delay_s | trigger |\n|---|---|---|---|---|---|---|\n",
        );
        for w in &trace.windows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                w.kinds.join(", "),
                w.service,
                w.clusters.join(", "),
                model::rfc3339(w.onset)?,
                model::rfc3339(w.end)?,
                w.max_delay_s,
                w.trigger.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
