//! Helpers for seer's tests (a dev-dependency only): locating the repository's
//! fixtures and the shared test data, and comparing reference numbers.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub mod fuzz;
pub mod fuzz_mutator;

/// Writes `text` as an executable script at `path`, ready to run at once.
///
/// A file this process writes can be held open for writing, for a moment, by
/// a child that another test thread is forking at the time (it inherits the
/// descriptor until it execs), and running the file then fails with "Text
/// file busy" (ETXTBSY). So the text goes to a side file, and `install`, a
/// process of its own, copies it into place: no descriptor of `path` ever
/// exists in this process.
pub fn write_script(path: &Path, text: &str) {
    let side = path.with_extension("script-text");
    std::fs::write(&side, text).unwrap();
    let status = std::process::Command::new("install")
        .args(["-m", "755"])
        .arg(&side)
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "install {} failed", path.display());
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$SEER_SHARED_DATA`, else `../shared/data` beside the repository (CI has it).
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("SEER_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    assert!(
        dir.join("smoke").is_dir(),
        "shared test data not found at {} (set SEER_SHARED_DATA to the folder holding smoke/)",
        dir.display()
    );
    dir
}

/// A tiny reference model made by scripts/make_model_fixtures.py.
pub fn model_fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/models").join(name)
}

/// The five fixture models: both layouts, both activations, ViT and ResNet,
/// safetensors and PyTorch files.
pub const MODEL_FIXTURES: &[&str] = &[
    "hf-vit-quickgelu",
    "hf-vit-gelu-bin",
    "openclip-vit",
    "openclip-vit-options-bin",
    "openclip-rn",
];

/// OpenAI's BPE merges from the shared data.
pub fn tokenizer_file() -> PathBuf {
    shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A model fixture's `reference.json`.
pub fn model_reference(name: &str) -> Value {
    read_json(&model_fixture(name).join("reference.json"))
}

pub fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("a list of rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("a row")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect()
}

pub fn token_lists(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .expect("a list of token lists")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("a token list")
                .iter()
                .map(|t| t.as_u64().expect("a token id") as u32)
                .collect()
        })
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list of strings")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// The largest absolute difference between two equally shaped matrices.
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

/// The device `$SEER_TEST_DEVICE` names (cpu, cuda or cuda:N; default cpu):
/// tests that compare an op across devices run it there, so a `--features
/// cuda` build checks its GPU side with `SEER_TEST_DEVICE=cuda`.
pub fn test_device() -> candle_core::Device {
    let name = std::env::var("SEER_TEST_DEVICE").unwrap_or_default();
    let gpu = match name.as_str() {
        "" | "cpu" => return candle_core::Device::Cpu,
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("SEER_TEST_DEVICE={other}: cpu, cuda or cuda:N")),
    };
    candle_core::Device::new_cuda(gpu)
        .unwrap_or_else(|e| panic!("SEER_TEST_DEVICE={name}: no GPU {gpu}: {e}"))
}
