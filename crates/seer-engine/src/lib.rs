//! seer's engine: turns a model spec into a loaded [`Clip`] and puts it to work
//! (embedding files and texts in batches, zero-shot classification, evaluation).
//! The command line is a thin layer over this crate.

pub mod dataset;
pub mod embed;
pub mod error;
pub mod eval;
pub mod loader;
pub mod prompts;
pub mod retrieval;
pub mod zeroshot;

pub use embed::{collect_image_paths, EmbedOptions, ImageEmbedding};
pub use error::{EngineError, Result};
pub use loader::{Clip, DeviceChoice, LoadOptions};
pub use seer_models::Precision;
pub use zeroshot::{Prediction, ZeroShotClassifier};
