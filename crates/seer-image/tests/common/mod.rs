#![allow(dead_code)]
use std::path::PathBuf;

pub use seer_testkit::{repo_root, shared_data};

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
