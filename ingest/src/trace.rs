//! Reading incident traces from disk.
//!
//! # Layout
//!
//! A trace is a directory:
//!
//! ```text
//! <name>/
//!   samples.jsonl.gz | samples.jsonl | samples.parquet   samples: native JSON, one per line, or Parquet
//!   changes.jsonl                                        change events, one per line (optional)
//!   labels.json                                          what a detector must find (optional)
//!   README.md                                            provenance, for people
//! ```
//!
//! Samples are read as raw lines by [`SampleLines`] and handed to a decoder
//! ([`crate::json::JsonDecoder`]) one by one, so a bad line costs one rejection and nothing
//! else. Gzip is recognised by its magic bytes, not the file name, and concatenated gzip
//! members are read through. A Parquet file (recognised by its magic bytes or its `.parquet`
//! name) is read a row at a time, each row written out as the JSON sample line it stands for
//! ([`crate::parquet_samples`]), so every consumer of sample lines reads Parquet traces too.
//!
//! A change event (`changes.jsonl`) is a deploy, config push, maintenance or traffic shift:
//! `{"ts", "kind", "service", "clusters", "id", "description"}`, where `clusters` may be
//! `["*"]` for the whole fleet. Unlike samples, change files are small and curated, so a bad
//! line fails the whole read with its line number.
//!
//! `labels.json` lists the windows in which a good detector must alert:
//! `{"trace", "interval_s", "windows": [{"kinds", "service", "clusters", "onset", "end",
//! "max_delay_s", "trigger"?}]}`. An alert of one of `kinds` on each listed series must come
//! within `[onset, onset + max_delay_s]`; no windows means a clean trace.
//!
//! Timestamps in both files are RFC 3339 strings (integer epoch ms are accepted too) and are
//! held as UTC epoch milliseconds; see [`rfc3339_ms`]. Unknown fields are ignored.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Samples file names looked for in a trace directory, in order of preference.
pub const SAMPLE_FILES: [&str; 3] = ["samples.jsonl.gz", "samples.jsonl", "samples.parquet"];
/// Change events file name in a trace directory.
pub const CHANGES_FILE: &str = "changes.jsonl";
/// Labels file name in a trace directory.
pub const LABELS_FILE: &str = "labels.json";

const READ_BUFFER: usize = 1 << 16;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// Errors reading traces. Every variant names the file; the underlying cause, if any, is the
/// error's `source()` (print the chain, e.g. anyhow's `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no samples file (looked for {})", dir.display(), SAMPLE_FILES.join(", "))]
    NoSamples { dir: PathBuf },
    /// A Parquet samples file that cannot be read, or whose columns cannot carry samples.
    #[error(transparent)]
    Parquet(#[from] crate::parquet_samples::ParquetSamplesError),
    #[error("{}:{line}: bad change event", path.display())]
    BadChange {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: bad labels", path.display())]
    BadLabels {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: invalid labels: {detail}", path.display())]
    InvalidLabels { path: PathBuf, detail: String },
}

/// An error's message followed by its cause's, if any.
pub fn with_cause(e: &TraceError) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TraceError + '_ {
    move |source| TraceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The samples file of a trace directory, whichever of [`SAMPLE_FILES`] exists first.
pub fn find_samples(dir: &Path) -> Option<PathBuf> {
    SAMPLE_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// The lines of a samples file: plain or gzip (possibly multi-member) JSON lines.
///
/// Yields each non-blank line without its line terminator (`\n` or `\r\n`). Either iterate
/// (one `Vec<u8>` per line) or call [`read_line`](Self::read_line) with a reused buffer. After
/// an I/O error (a truncated gzip stream, say) the reader is finished.
pub struct SampleLines {
    path: PathBuf,
    reader: Reader,
    line: u64,
    done: bool,
}

/// Where the lines come from.
enum Reader {
    /// JSON lines, plain or through gzip.
    Text(Box<dyn BufRead + Send>),
    /// Parquet rows, each written out as a JSON line.
    Parquet(Box<crate::parquet_samples::ParquetSamples>),
}

impl fmt::Debug for SampleLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleLines")
            .field("path", &self.path)
            .field("line", &self.line)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl SampleLines {
    /// Opens a `.jsonl`, `.jsonl.gz` or `.parquet` file, or a trace directory (its samples
    /// file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let file_path = if meta.is_dir() {
            find_samples(path).ok_or_else(|| TraceError::NoSamples {
                dir: path.to_owned(),
            })?
        } else {
            path.to_owned()
        };
        let file = File::open(&file_path).map_err(io_err(&file_path))?;
        let mut raw = BufReader::with_capacity(READ_BUFFER, file);
        let head = raw.fill_buf().map_err(io_err(&file_path))?;
        let is_parquet = head.starts_with(PARQUET_MAGIC)
            || file_path.extension().is_some_and(|e| e == "parquet");
        let reader = if is_parquet {
            drop(raw);
            Reader::Parquet(Box::new(crate::parquet_samples::ParquetSamples::open(
                &file_path,
            )?))
        } else if head.starts_with(&GZIP_MAGIC) {
            Reader::Text(Box::new(BufReader::with_capacity(
                READ_BUFFER,
                flate2::bufread::MultiGzDecoder::new(raw),
            )))
        } else {
            Reader::Text(Box::new(raw))
        };
        Ok(Self {
            path: file_path,
            reader,
            line: 0,
            done: false,
        })
    }

    /// The file being read (the samples file inside, when opened on a directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the line last returned (0 before the first); for Parquet, of the row.
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// Reads the next non-blank line into `buf` (cleared first, terminator stripped).
    /// `Ok(false)` at the end of the file.
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, TraceError> {
        loop {
            buf.clear();
            if self.done {
                return Ok(false);
            }
            let reader = match &mut self.reader {
                Reader::Text(r) => r,
                Reader::Parquet(p) => {
                    return match p.read_line(buf) {
                        Ok(true) => {
                            self.line += 1;
                            Ok(true)
                        }
                        Ok(false) => {
                            self.done = true;
                            Ok(false)
                        }
                        Err(e) => {
                            self.done = true;
                            Err(e.into())
                        }
                    };
                }
            };
            match reader.read_until(b'\n', buf) {
                Ok(0) => {
                    self.done = true;
                    return Ok(false);
                }
                Ok(_) => {
                    self.line += 1;
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                    }
                    if !buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    self.done = true;
                    return Err(TraceError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }
}

impl Iterator for SampleLines {
    type Item = Result<Vec<u8>, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        match self.read_line(&mut buf) {
            Ok(true) => Some(Ok(buf)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// What kind of change a [`ChangeEvent`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Deploy,
    Config,
    Maintenance,
    Traffic,
}

impl ChangeKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "deploy",
            ChangeKind::Config => "config",
            ChangeKind::Maintenance => "maintenance",
            ChangeKind::Traffic => "traffic",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deploy, config push, maintenance or traffic change (CONTRACT section 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// When the change happened, epoch ms UTC.
    #[serde(with = "rfc3339_ms")]
    pub ts: i64,
    pub kind: ChangeKind,
    /// The service that was changed (not necessarily the one that breaks).
    pub service: String,
    /// Clusters the change reached; `["*"]` means the whole fleet.
    pub clusters: Vec<String>,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub description: String,
}

impl ChangeEvent {
    /// Whether the change reached every cluster (`"*"` among `clusters`).
    pub fn is_fleet_wide(&self) -> bool {
        self.clusters.iter().any(|c| c == "*")
    }

    /// Whether the change reached `cluster`.
    pub fn touches(&self, cluster: &str) -> bool {
        self.clusters.iter().any(|c| c == "*" || c == cluster)
    }
}

/// The detector's own change type, which incident correlation ranks.
impl From<ChangeEvent> for detector::incident::Change {
    fn from(e: ChangeEvent) -> Self {
        use detector::incident::ChangeKind as K;
        Self {
            id: e.id,
            kind: match e.kind {
                ChangeKind::Deploy => K::Deploy,
                ChangeKind::Config => K::Config,
                ChangeKind::Maintenance => K::Maintenance,
                ChangeKind::Traffic => K::Traffic,
            },
            service: e.service,
            clusters: e.clusters,
            ts: e.ts,
            description: e.description,
        }
    }
}

/// Reads change events from a `changes.jsonl` file, or from a trace directory's.
///
/// A missing file means no changes. Blank lines are skipped; any other line that is not a
/// valid change event fails the read, naming the line. Events are returned sorted by `ts`
/// (stable, so equal times keep file order). [`read_changes_skipping_bad`] keeps going
/// instead.
pub fn read_changes(path: impl AsRef<Path>) -> Result<Vec<ChangeEvent>, TraceError> {
    let read = read_changes_skipping_bad(path)?;
    match read.rejected.into_iter().next() {
        Some(bad) => Err(bad),
        None => Ok(read.events),
    }
}

/// Change events read from a file, and the lines that were not change events.
#[derive(Debug, Default)]
pub struct ChangesRead {
    /// Sorted by `ts` (stable).
    pub events: Vec<ChangeEvent>,
    /// One [`TraceError::BadChange`] per line that is not a valid change event, in file order.
    pub rejected: Vec<TraceError>,
}

/// [`read_changes`], skipping the lines that are not valid change events (each is returned as
/// a [`TraceError::BadChange`] naming its line) so that one bad event loses nothing else, as a
/// bad sample does not. Fails only when the file cannot be read.
pub fn read_changes_skipping_bad(path: impl AsRef<Path>) -> Result<ChangesRead, TraceError> {
    let path = path.as_ref();
    let path = if path.is_dir() {
        path.join(CHANGES_FILE)
    } else {
        path.to_owned()
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ChangesRead::default()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io_err(&path))? == 0 {
            break;
        }
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(event) => events.push(event),
            Err(source) => rejected.push(TraceError::BadChange {
                path: path.clone(),
                line: n,
                source,
            }),
        }
    }
    events.sort_by_key(|e: &ChangeEvent| e.ts);
    Ok(ChangesRead { events, rejected })
}

/// The expected detections of a trace (`labels.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    /// The trace's name.
    pub trace: String,
    /// The sampling interval of the trace, in seconds.
    pub interval_s: f64,
    /// Empty for a clean trace.
    #[serde(default)]
    pub windows: Vec<Window>,
}

/// One expected detection: series, alert kinds, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Alert kinds any one of which satisfies the window (CONTRACT section 4 names).
    pub kinds: Vec<String>,
    pub service: String,
    pub clusters: Vec<String>,
    /// When the anomaly starts, epoch ms UTC.
    #[serde(with = "rfc3339_ms")]
    pub onset: i64,
    /// When the anomaly ends, epoch ms UTC.
    #[serde(with = "rfc3339_ms")]
    pub end: i64,
    /// An alert must come by `onset + max_delay_s`.
    pub max_delay_s: f64,
    /// The id of the change event that caused it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

impl Window {
    /// The latest on-time detection, epoch ms.
    pub fn deadline_ms(&self) -> i64 {
        self.onset
            .saturating_add((self.max_delay_s * 1000.0).round() as i64)
    }
}

/// Reads `labels.json` from a trace directory (or the file itself). `Ok(None)` when there is
/// none. Checks that `interval_s > 0` and, per window, `onset <= end` and `max_delay_s >= 0`.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Option<Labels>, TraceError> {
    let path = path.as_ref();
    let path = if path.is_dir() {
        path.join(LABELS_FILE)
    } else {
        path.to_owned()
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let labels: Labels = serde_json::from_str(&text).map_err(|source| TraceError::BadLabels {
        path: path.clone(),
        source,
    })?;
    let invalid = |detail: String| TraceError::InvalidLabels {
        path: path.clone(),
        detail,
    };
    if !(labels.interval_s.is_finite() && labels.interval_s > 0.0) {
        return Err(invalid(format!(
            "interval_s must be > 0, found {}",
            labels.interval_s
        )));
    }
    for (i, w) in labels.windows.iter().enumerate() {
        if w.end < w.onset {
            return Err(invalid(format!("window {i}: end is before onset")));
        }
        if !(w.max_delay_s.is_finite() && w.max_delay_s >= 0.0) {
            return Err(invalid(format!(
                "window {i}: max_delay_s must be >= 0, found {}",
                w.max_delay_s
            )));
        }
    }
    Ok(Some(labels))
}

/// One trace directory, its change events and labels loaded; samples are opened on demand.
#[derive(Debug, Clone)]
pub struct TraceDir {
    /// The directory.
    pub path: PathBuf,
    /// The directory's name, which is the trace's name.
    pub name: String,
    /// The samples file inside.
    pub samples: PathBuf,
    /// The valid change events of `changes.jsonl`, sorted by `ts`.
    pub changes: Vec<ChangeEvent>,
    /// Its lines that are not valid change events, skipped (see [`read_changes_skipping_bad`]):
    /// each as the error's message and cause, e.g. `…/changes.jsonl:5: bad change event:
    /// unknown variant ...`.
    pub rejected_changes: Vec<String>,
    pub labels: Option<Labels>,
}

impl TraceDir {
    /// Opens a trace directory: finds its samples file and reads changes and labels.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let path = path.as_ref();
        std::fs::metadata(path).map_err(io_err(path))?;
        let samples = find_samples(path).ok_or_else(|| TraceError::NoSamples {
            dir: path.to_owned(),
        })?;
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned();
        let changes = read_changes_skipping_bad(path.join(CHANGES_FILE))?;
        Ok(Self {
            path: path.to_owned(),
            name,
            samples,
            changes: changes.events,
            rejected_changes: changes.rejected.iter().map(with_cause).collect(),
            labels: read_labels(path.join(LABELS_FILE))?,
        })
    }

    /// The sample lines of the trace.
    pub fn sample_lines(&self) -> Result<SampleLines, TraceError> {
        SampleLines::open(&self.samples)
    }
}

/// The traces under `dir`: every subdirectory holding a samples file or a labels file, sorted
/// by name. Other subdirectories are skipped. A labelled directory without samples, or a trace
/// with unreadable labels or an unreadable changes file, fails the listing: its detections
/// could not be scored. (Bad lines in a changes file are skipped and kept in
/// [`TraceDir::rejected_changes`].)
pub fn list_traces(dir: impl AsRef<Path>) -> Result<Vec<TraceDir>, TraceError> {
    let dir = dir.as_ref();
    let mut traces = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if path.is_dir() && (find_samples(&path).is_some() || path.join(LABELS_FILE).is_file()) {
            traces.push(TraceDir::open(&path)?);
        }
    }
    traces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(traces)
}

/// Serde for an epoch-millisecond `i64` as an RFC 3339 string.
///
/// Deserializes an RFC 3339 string with any offset, or an integer of epoch milliseconds;
/// serializes as RFC 3339 UTC (`…Z`). Use with `#[serde(with = "ingest::trace::rfc3339_ms")]`.
pub mod rfc3339_ms {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::time::{format_rfc3339_ms, parse_rfc3339_ms, MAX_TS_MS, MIN_TS_MS};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        match format_rfc3339_ms(*ms) {
            Some(text) => s.serialize_str(&text),
            None => s.serialize_i64(*ms),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(TsVisitor)
    }

    struct TsVisitor;

    impl Visitor<'_> for TsVisitor {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp or integer epoch milliseconds")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            parse_rfc3339_ms(v)
                .ok_or_else(|| E::custom(format!("{v:?} is not an RFC 3339 timestamp")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            if (MIN_TS_MS..=MAX_TS_MS).contains(&v) {
                Ok(v)
            } else {
                Err(E::custom(format!("epoch milliseconds {v} out of range")))
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            let v = i64::try_from(v)
                .map_err(|_| E::custom(format!("epoch milliseconds {v} out of range")))?;
            self.visit_i64(v)
        }
    }
}
