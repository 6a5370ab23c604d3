//! Shared helpers: where the shared data and the fixtures live.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use seer_tokenizer::ClipTokenizer;

#[allow(unused_imports)]
pub use seer_testkit::{repo_root, shared_data};

pub fn openai_gz() -> PathBuf {
    shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz")
}

pub fn hf_dir() -> PathBuf {
    shared_data().join("clip-tokenizer/hf-clip-vit-base-patch32")
}

pub fn hf_tokenizer_json() -> PathBuf {
    hf_dir().join("tokenizer.json")
}

/// Tokenizer from OpenAI's merges, loaded once per test binary.
pub fn openai() -> &'static ClipTokenizer {
    static TOK: OnceLock<ClipTokenizer> = OnceLock::new();
    TOK.get_or_init(|| ClipTokenizer::from_file(&openai_gz()).expect("load OpenAI merges"))
}

/// Tokenizer from the Hugging Face tokenizer.json, loaded once per test binary.
pub fn hf() -> &'static ClipTokenizer {
    static TOK: OnceLock<ClipTokenizer> = OnceLock::new();
    TOK.get_or_init(|| ClipTokenizer::from_file(&hf_tokenizer_json()).expect("load tokenizer.json"))
}

/// A scratch directory for one test, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a scratch directory")
}
