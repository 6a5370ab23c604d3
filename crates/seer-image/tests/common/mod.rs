#![allow(dead_code)]
use std::path::PathBuf;

/// Repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$SEER_SHARED_DATA`, else `<repo root>/../shared/data`.
pub fn shared_data() -> PathBuf {
    let p = match std::env::var_os("SEER_SHARED_DATA") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("../shared/data"),
    };
    assert!(
        p.join("smoke").is_dir(),
        "shared test data not found at {} (set SEER_SHARED_DATA to the folder holding smoke/)",
        p.display()
    );
    p
}

pub fn fixtures() -> PathBuf {
    repo_root().join("fixtures/preprocess")
}

pub fn manifest() -> serde_json::Value {
    let p = fixtures().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Resolve a manifest (root, path) pair.
pub fn source_path(entry: &serde_json::Value) -> PathBuf {
    let rel = entry["path"].as_str().unwrap();
    match entry["root"].as_str().unwrap() {
        "shared" => shared_data().join(rel),
        _ => fixtures().join(rel),
    }
}
