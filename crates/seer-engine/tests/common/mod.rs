//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use seer_engine::{Clip, DeviceChoice, LoadOptions};
pub use seer_testkit::*;

pub fn load(name: &str) -> Clip {
    load_with_precision(name, seer_engine::Precision::F32)
}

pub fn load_with_precision(name: &str, precision: seer_engine::Precision) -> Clip {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_file()),
        precision,
        device: test_device(),
        ..Default::default()
    };
    Clip::load_dir(&model_fixture(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `$SEER_TEST_DEVICE` (cpu, cuda, cuda:N; default cpu): the parity suite runs
/// unchanged on a GPU build with `SEER_TEST_DEVICE=cuda`.
pub fn test_device() -> DeviceChoice {
    std::env::var("SEER_TEST_DEVICE")
        .map(|s| DeviceChoice::parse(&s).unwrap_or_else(|e| panic!("SEER_TEST_DEVICE: {e}")))
        .unwrap_or_default()
}
