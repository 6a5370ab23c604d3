//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use seer_engine::{Clip, LoadOptions};
pub use seer_testkit::*;

pub fn load(name: &str) -> Clip {
    load_with_precision(name, seer_engine::Precision::F32)
}

pub fn load_with_precision(name: &str, precision: seer_engine::Precision) -> Clip {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_file()),
        precision,
        ..Default::default()
    };
    Clip::load_dir(&model_fixture(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"))
}
