//! The public API writes every trace, and writing twice gives identical bytes.

use std::path::{Path, PathBuf};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracegen-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read(dir: &Path, name: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(name).join(file)).unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
}

#[test]
fn write_all_then_rewrite_is_byte_identical() {
    let (a, b) = (scratch("a"), scratch("b"));
    let names = tracegen::write_all(&a).expect("write_all");
    assert_eq!(names, tracegen::trace_names());
    for name in &names {
        for file in [
            "samples.jsonl.gz",
            "changes.jsonl",
            "labels.json",
            "README.md",
        ] {
            assert!(a.join(name).join(file).is_file(), "{name}/{file} missing");
        }
    }
    // Regenerate a 10 s incident, the 1 s incident and the arrival-order trace from scratch
    // (the unit tests cover the rest in memory) and compare every byte.
    let again = [
        "2026-02-12-routing-config-removed",
        "2024-01-29-release-breaks-routing",
        "clean-late-duplicate-1s",
    ];
    for name in again {
        tracegen::write_trace(name, &b).expect("write_trace");
        for file in [
            "samples.jsonl.gz",
            "changes.jsonl",
            "labels.json",
            "README.md",
        ] {
            assert!(
                read(&a, name, file) == read(&b, name, file),
                "{name}/{file} differs"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn write_trace_rejects_unknown_names() {
    let dir = scratch("unknown");
    assert!(tracegen::write_trace("no-such-trace", &dir).is_err());
    assert!(!dir.exists());
}
