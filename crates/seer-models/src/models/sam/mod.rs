//! SAM (Kirillov et al., 2023) as transformers publishes it (`SamModel`):
//! sam-vit-base/large/huge and SlimSAM. The image encoder runs once per image;
//! each prompt (points, boxes, a previous mask) then costs only the prompt
//! encoder and the small mask decoder, which is what makes clicking fast.

pub mod config;
pub mod decoder;
pub mod model;
pub mod vision;

pub use config::{SamConfig, SamDecoderConfig, SamPromptConfig, SamVisionConfig};
pub use decoder::SamPrompt;
pub use model::{post_process_logits, post_process_mask, SamModel, SamPrediction};
