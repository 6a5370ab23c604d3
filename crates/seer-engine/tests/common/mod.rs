//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use seer_engine::{Clip, LoadOptions};
use serde_json::Value;

pub const MODELS: &[&str] = &[
    "hf-vit-quickgelu",
    "hf-vit-gelu-bin",
    "openclip-vit",
    "openclip-vit-options-bin",
    "openclip-rn",
];

/// `../shared/data` beside the repository (or `$SEER_SHARED_DATA`).
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("SEER_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.is_dir(),
        "test data not found at {} (set SEER_SHARED_DATA)",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

pub fn tokenizer_file() -> PathBuf {
    shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz")
}

pub fn load(name: &str) -> Clip {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_file()),
        ..Default::default()
    };
    Clip::load_dir(&fixture(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn reference(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap())
        .unwrap()
}

pub fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row lengths differ");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}
