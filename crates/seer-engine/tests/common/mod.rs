//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use seer_engine::{Clip, LoadOptions};
pub use seer_testkit::*;

pub fn load(name: &str) -> Clip {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_file()),
        ..Default::default()
    };
    Clip::load_dir(&model_fixture(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"))
}
