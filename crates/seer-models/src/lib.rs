//! The models seer runs, in Rust: shared layers ([`nn`]), weight I/O ([`io`]) and
//! one folder per family ([`models`]: CLIP, DINOv2, SigLIP), each with its config
//! beside it.
//!
//! Outputs match the reference implementations given the same weights: see the
//! parity tests in `tests/`, `scripts/make_model_fixtures.py` and
//! `scripts/make_family_fixtures.py`.

pub mod error;
// Sees the fuzz harnesses' huge allocations.
#[cfg(test)]
#[global_allocator]
static GLOBAL: seer_testkit::fuzz::Tracking = seer_testkit::fuzz::Tracking;
pub mod generate;
pub mod io;
pub mod models;
pub mod nn;

pub use candle_core::{DType, Device, Tensor};
pub use error::{ModelError, Result};
pub use io::files::ModelFiles;
pub use io::weights::{ParamSource, Weights};
pub use models::clip::config::{Activation, ClipConfig, Layout, VisionConfig};
pub use models::clip::model::ClipModel;
pub use models::clip::text::{TextPadding, EOT_TOKEN};
pub use nn::layers::l2_normalize;
pub use seer_kernels::Precision;
