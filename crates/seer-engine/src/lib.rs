//! seer's engine: turns a model spec into a [`LoadedModel`] (through the family
//! [`registry`]) and puts it to work behind the task traits in [`tasks`]
//! (embedding files and texts in batches, zero-shot classification, evaluation).
//! The command line, the index and the server are thin layers over this crate.

pub mod automask;
pub mod blip;
pub mod caption_metrics;
pub mod coco_masks;
pub mod dataset;
pub mod describe;
pub mod detect;
pub mod dinov2;
pub mod embed;
pub mod error;
pub mod eval;
pub mod loader;
pub mod owlvit;
pub mod prompts;
pub mod registry;
pub mod retrieval;
pub mod sam;
pub mod segment;
pub mod segment_eval;
pub mod siglip;
pub mod tasks;
pub mod video;
pub mod zeroshot;

pub use embed::{collect_image_paths, EmbedOptions, ImageEmbedding};
pub use error::{EngineError, Result};
pub use loader::{Clip, DeviceChoice, LoadOptions};
pub use registry::{Family, FAMILIES};
pub use seer_models::Precision;
pub use tasks::{
    Captioner, GenerateOptions, Generated, ImageEncoder, ImageFeatures, ImageTextMatcher,
    LoadedModel, MatchScore, PixelInput, QuestionAnswerer, ScoreRule, TextEncoder,
};
pub use zeroshot::{Prediction, ZeroShotClassifier};
