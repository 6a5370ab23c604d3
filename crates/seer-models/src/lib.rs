//! CLIP models in Rust: one description of the architecture ([`ClipConfig`]) read
//! from either the transformers or the open_clip checkpoint layout, the towers
//! (one file each), and [`ClipModel`] tying them together.
//!
//! Outputs match the reference implementations given the same weights: see the
//! parity tests in `tests/` and `scripts/make_model_fixtures.py`.

pub mod clip;
pub mod config;
pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda_ops;
pub mod error;
pub mod files;
pub mod layers;
pub mod models;
pub mod resnet;
pub mod safetensors;
pub mod text;
pub mod vit;
pub mod weights;

pub use candle_core::{DType, Device, Tensor};
pub use clip::ClipModel;
pub use config::{Activation, ClipConfig, Layout, VisionConfig};
pub use error::{ModelError, Result};
pub use files::ModelFiles;
pub use layers::l2_normalize;
pub use seer_kernels::Precision;
pub use text::{TextPadding, EOT_TOKEN};
pub use weights::{ParamSource, Weights};
