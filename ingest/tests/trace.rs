//! Reading the trace layout: sample lines in every encoding, changes, labels, listing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::write::GzEncoder;
use flate2::Compression;
use ingest::trace::{
    list_traces, read_changes, read_changes_skipping_bad, read_labels, ChangeKind, SampleLines,
    TraceDir, TraceError,
};

/// A fresh, empty directory under cargo's per-target temp dir.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ingest-trace-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn collect(path: &Path) -> Vec<String> {
    SampleLines::open(path)
        .unwrap()
        .map(|l| String::from_utf8(l.unwrap()).unwrap())
        .collect()
}

const LINES: &str = "{\"a\":1}\n\n{\"b\":2}\r\n   \n{\"c\":3}";

#[test]
fn sample_lines_plain_gzip_and_multigzip() {
    let dir = scratch("lines");
    let want = ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"];

    let plain = dir.join("s.jsonl");
    fs::write(&plain, LINES).unwrap();
    assert_eq!(collect(&plain), want);

    let gz = dir.join("s.jsonl.gz");
    fs::write(&gz, gzip(LINES.as_bytes())).unwrap();
    assert_eq!(collect(&gz), want);

    // Two gzip members back to back (as `cat a.gz b.gz` makes) read as one stream.
    let multi = dir.join("multi.jsonl.gz");
    let mut bytes = gzip(b"{\"a\":1}\n");
    bytes.extend(gzip(b"{\"b\":2}\n{\"c\":3}\n"));
    fs::write(&multi, bytes).unwrap();
    assert_eq!(collect(&multi), want);

    // Gzip is found by content, whatever the name.
    let misnamed = dir.join("misnamed.jsonl");
    fs::write(&misnamed, gzip(LINES.as_bytes())).unwrap();
    assert_eq!(collect(&misnamed), want);

    let empty = dir.join("empty.jsonl");
    fs::write(&empty, "").unwrap();
    assert!(collect(&empty).is_empty());
}

#[test]
fn sample_lines_reused_buffer_and_line_numbers() {
    let dir = scratch("reuse");
    let path = dir.join("s.jsonl");
    fs::write(&path, LINES).unwrap();
    let mut lines = SampleLines::open(&path).unwrap();
    assert_eq!(lines.path(), path);
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    while lines.read_line(&mut buf).unwrap() {
        seen.push((lines.line_number(), String::from_utf8(buf.clone()).unwrap()));
    }
    assert_eq!(
        seen,
        [
            (1, "{\"a\":1}".to_owned()),
            (3, "{\"b\":2}".to_owned()),
            (5, "{\"c\":3}".to_owned())
        ]
    );
    assert!(buf.is_empty());
    assert!(!lines.read_line(&mut buf).unwrap());
}

#[test]
fn sample_lines_errors_name_the_path() {
    let dir = scratch("errors");
    let missing = dir.join("nope.jsonl");
    let err = SampleLines::open(&missing).unwrap_err();
    assert!(matches!(err, TraceError::Io { .. }));
    assert!(err.to_string().contains("nope.jsonl"), "{err}");

    let err = SampleLines::open(&dir).unwrap_err();
    assert!(matches!(err, TraceError::NoSamples { .. }), "{err}");

    let parquet = dir.join("samples.parquet");
    fs::write(&parquet, b"PAR1....").unwrap();
    let err = SampleLines::open(&dir).unwrap_err();
    assert!(matches!(err, TraceError::Parquet(_)), "{err}");
    assert!(err.to_string().contains("samples.parquet"), "{err}");

    // A gzip stream cut short: the good lines come out, then one error naming the file, then
    // nothing more.
    let data: String = (0..2000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let mut gz = gzip(data.as_bytes());
    gz.truncate(gz.len() / 2);
    let cut = dir.join("cut.jsonl.gz");
    fs::write(&cut, gz).unwrap();
    let items: Vec<_> = SampleLines::open(&cut).unwrap().collect();
    let errors: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("cut.jsonl.gz"));
    assert!(items.last().unwrap().is_err());
    assert!(items.len() > 1);
}

const CHANGES: &str = r#"{"ts":"2026-02-12T21:19:30Z","kind":"deploy","service":"routing-config","clusters":["prod-use1-a","prod-use1-b"],"id":"deploy-8812","description":"periodic rollout of the internal routing service"}
{"ts":1770930000000,"kind":"maintenance","service":"db","clusters":["*"],"id":"m-1","extra":"ignored"}

{"ts":"2026-02-12T22:00:00+01:00","kind":"traffic","service":"edge","clusters":[]}
"#;

const LABELS: &str = r#"{"trace":"2026-02-12-routing-config-removed","interval_s":10,
 "windows":[{"kinds":["error_rate_spike","retry_amplification"],"service":"conversation",
             "clusters":["prod-use1-a","prod-use1-b"],"onset":"2026-02-12T21:20:00Z",
             "end":"2026-02-12T21:40:00Z","max_delay_s":20,"trigger":"deploy-8812"}]}"#;

#[test]
fn changes_parse_sort_and_report_bad_lines() {
    let dir = scratch("changes");
    let path = dir.join("changes.jsonl");
    fs::write(&path, CHANGES).unwrap();
    let events = read_changes(&path).unwrap();
    assert_eq!(events.len(), 3);
    // Sorted by ts: maintenance (21:00Z), traffic (21:00Z, later in the file), deploy.
    assert_eq!(
        events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [
            ChangeKind::Maintenance,
            ChangeKind::Traffic,
            ChangeKind::Deploy
        ]
    );
    let deploy = &events[2];
    assert_eq!(deploy.ts, 1_770_931_170_000);
    assert_eq!(deploy.id, "deploy-8812");
    assert!(deploy.touches("prod-use1-b") && !deploy.touches("prod-usw2-a"));
    assert!(!deploy.is_fleet_wide());
    assert!(events[0].is_fleet_wide() && events[0].touches("anything"));
    assert_eq!(events[0].description, "");
    assert_eq!(events[1].ts, 1_770_930_000_000);

    // Round trip through serde (ts written back as RFC 3339).
    let json = serde_json::to_string(deploy).unwrap();
    assert!(json.contains(r#""ts":"2026-02-12T21:19:30Z""#), "{json}");
    assert!(json.contains(r#""kind":"deploy""#));
    assert_eq!(
        &serde_json::from_str::<ingest::ChangeEvent>(&json).unwrap(),
        deploy
    );

    // The directory works as well as the file; a missing file is no changes.
    assert_eq!(read_changes(&dir).unwrap(), events);
    assert!(read_changes(dir.join("none.jsonl")).unwrap().is_empty());
    assert!(read_changes(scratch("no-changes")).unwrap().is_empty());

    for (bad, what) in [
        (
            r#"{"ts":"2026-02-12T21:19:30Z","kind":"rollback","service":"x","clusters":[]}"#,
            "rollback",
        ),
        (
            r#"{"ts":"soon","kind":"deploy","service":"x","clusters":[]}"#,
            "soon",
        ),
        (r#"{"kind":"deploy","service":"x","clusters":[]}"#, "ts"),
        ("not json", ""),
    ] {
        fs::write(&path, format!("{CHANGES}{bad}\n")).unwrap();
        let err = read_changes(&path).unwrap_err();
        assert!(
            matches!(err, TraceError::BadChange { line: 5, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("changes.jsonl:5"), "{msg}");
        let full = format!("{msg}: {}", std::error::Error::source(&err).unwrap());
        assert!(full.contains(what), "{full}");
        // Skipping it instead keeps every good event and names the bad line.
        let read = read_changes_skipping_bad(&path).unwrap();
        assert_eq!(read.events, events, "{what}");
        assert_eq!(read.rejected.len(), 1);
        assert!(
            matches!(read.rejected[0], TraceError::BadChange { line: 5, .. }),
            "{}",
            read.rejected[0]
        );
    }
}

#[test]
fn labels_parse_and_validate() {
    let dir = scratch("labels");
    assert_eq!(read_labels(&dir).unwrap(), None);
    fs::write(dir.join("labels.json"), LABELS).unwrap();
    let labels = read_labels(&dir).unwrap().unwrap();
    assert_eq!(labels.trace, "2026-02-12-routing-config-removed");
    assert_eq!(labels.interval_s, 10.0);
    let w = &labels.windows[0];
    assert_eq!(w.kinds, ["error_rate_spike", "retry_amplification"]);
    assert_eq!(w.clusters, ["prod-use1-a", "prod-use1-b"]);
    assert_eq!(w.onset, 1_770_931_200_000);
    assert_eq!(w.end, 1_770_932_400_000);
    assert_eq!(w.max_delay_s, 20.0);
    assert_eq!(w.deadline_ms(), 1_770_931_220_000);
    assert_eq!(w.trigger.as_deref(), Some("deploy-8812"));

    let json = serde_json::to_string(&labels).unwrap();
    assert!(json.contains(r#""onset":"2026-02-12T21:20:00Z""#), "{json}");
    assert_eq!(
        serde_json::from_str::<ingest::Labels>(&json).unwrap(),
        labels
    );

    // Clean trace: no windows at all.
    fs::write(
        dir.join("labels.json"),
        r#"{"trace":"quiet","interval_s":10}"#,
    )
    .unwrap();
    assert!(read_labels(dir.join("labels.json"))
        .unwrap()
        .unwrap()
        .windows
        .is_empty());

    let bad = [
        (
            LABELS.replace("\"onset\":\"2026-02-12T21:20:00Z\"", "\"onset\":\"later\""),
            "bad labels",
        ),
        (
            LABELS.replace("\"max_delay_s\":20", "\"max_delay_s\":-1"),
            "max_delay_s",
        ),
        (
            LABELS.replace("21:40:00Z", "21:10:00Z"),
            "end is before onset",
        ),
        (
            LABELS.replace("\"interval_s\":10", "\"interval_s\":0"),
            "interval_s",
        ),
        ("[]".to_owned(), "bad labels"),
    ];
    for (text, what) in bad {
        fs::write(dir.join("labels.json"), &text).unwrap();
        let err = read_labels(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("labels.json") && msg.contains(what), "{msg}");
    }
}

fn make_trace(root: &Path, name: &str, gz: bool, changes: bool, labels: bool) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let samples = "{\"ts\":0}\n{\"ts\":1}\n";
    if gz {
        fs::write(dir.join("samples.jsonl.gz"), gzip(samples.as_bytes())).unwrap();
    } else {
        fs::write(dir.join("samples.jsonl"), samples).unwrap();
    }
    if changes {
        fs::write(dir.join("changes.jsonl"), CHANGES).unwrap();
    }
    if labels {
        fs::write(dir.join("labels.json"), LABELS).unwrap();
    }
    dir
}

#[test]
fn trace_dirs_open_and_list() {
    let root = scratch("traces");
    let b = make_trace(&root, "b-incident", true, true, true);
    make_trace(&root, "a-clean", false, false, false);
    make_trace(&root, "c-plain", false, true, false);
    fs::create_dir_all(root.join("d-not-a-trace")).unwrap();
    fs::write(root.join("d-not-a-trace/README.md"), "notes").unwrap();
    fs::write(root.join("README.md"), "top").unwrap();

    let t = TraceDir::open(&b).unwrap();
    assert_eq!(t.name, "b-incident");
    assert_eq!(t.path, b);
    assert_eq!(t.samples, b.join("samples.jsonl.gz"));
    assert_eq!(t.changes.len(), 3);
    assert!(t.labels.is_some());
    assert_eq!(t.sample_lines().unwrap().count(), 2);
    // The directory itself opens as a samples source too.
    assert_eq!(collect(&b), ["{\"ts\":0}", "{\"ts\":1}"]);

    let traces = list_traces(&root).unwrap();
    let names: Vec<&str> = traces.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a-clean", "b-incident", "c-plain"]);
    assert!(traces[0].changes.is_empty() && traces[0].labels.is_none());
    assert_eq!(traces[2].samples, root.join("c-plain/samples.jsonl"));

    let err = TraceDir::open(root.join("d-not-a-trace")).unwrap_err();
    assert!(matches!(err, TraceError::NoSamples { .. }), "{err}");
    let err = TraceDir::open(root.join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = list_traces(root.join("missing")).unwrap_err();
    assert!(matches!(err, TraceError::Io { .. }), "{err}");

    // A trace with a broken labels file fails the listing, naming the file.
    fs::write(b.join("labels.json"), "{").unwrap();
    let err = list_traces(&root).unwrap_err();
    assert!(err.to_string().contains("b-incident"), "{err}");
    fs::remove_file(b.join("labels.json")).unwrap();
    assert_eq!(list_traces(&root).unwrap().len(), 3);

    // So does a labelled directory without samples: its detections could not be scored.
    let e = root.join("e-labels-only");
    fs::create_dir_all(&e).unwrap();
    fs::write(e.join("labels.json"), r#"{"trace":"e","windows":[]}"#).unwrap();
    let err = list_traces(&root).unwrap_err();
    assert!(
        matches!(err, TraceError::NoSamples { ref dir } if *dir == e),
        "{err}"
    );
}

#[test]
fn a_parquet_trace_reads_as_sample_lines_numbered_by_row() {
    let root = scratch("parquet");
    let dir = root.join("pq");
    fs::create_dir_all(&dir).unwrap();
    let samples: Vec<ingest::Sample> = (0..20_000)
        .map(|i| ingest::Sample::new(1_770_000_000_000 + i * 10_000, "c", "s", 10, 1))
        .collect();
    ingest::parquet_samples::write_samples(&dir.join("samples.parquet"), samples.clone(), 7_000)
        .unwrap();
    fs::write(dir.join("changes.jsonl"), CHANGES).unwrap();
    let t = TraceDir::open(&dir).unwrap();
    assert_eq!(t.samples, dir.join("samples.parquet"));
    assert_eq!(t.changes.len(), 3);
    let mut lines = t.sample_lines().unwrap();
    let mut buf = Vec::new();
    let mut n = 0;
    while lines.read_line(&mut buf).unwrap() {
        let opts = ingest::DecoderOptions::default();
        assert_eq!(ingest::json::parse_sample(&buf, &opts).unwrap(), samples[n]);
        n += 1;
        assert_eq!(lines.line_number(), n as u64);
    }
    assert_eq!(n, samples.len());
    assert!(!lines.read_line(&mut buf).unwrap());
}

/// The samples of every trace shipped in the repository decode through the public API without
/// I/O errors (rejections are counted, not fatal).
#[test]
fn shipped_traces_read() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/incidents");
    if !root.is_dir() {
        return;
    }
    for trace in list_traces(&root).unwrap() {
        let mut dec = ingest::JsonDecoder::new(ingest::DecoderOptions::default());
        let mut lines = trace.sample_lines().unwrap();
        let mut buf = Vec::new();
        let (mut ok, mut rejected) = (0usize, 0usize);
        while lines.read_line(&mut buf).unwrap() {
            match dec.decode(&buf) {
                Ok(()) => ok += 1,
                Err(_) => rejected += 1,
            }
            if dec.is_full() {
                dec.flush();
            }
        }
        assert!(
            ok > 0,
            "{}: no sample decoded ({rejected} rejected)",
            trace.name
        );
    }
}
