//! SigLIP (`SiglipModel`) and SigLIP 2 (`Siglip2Model`, NaFlex) from
//! transformers checkpoints: a ViT image tower with a multi-head attention
//! pooling head, a bidirectional text tower pooled at its **last** position,
//! and sigmoid scores `σ(exp(s)·cos + b)` per image–text pair.
//!
//! Reference semantics (weight names, pooling, masks, NaFlex) are written up
//! in `fixtures/families/README.md`; `tests/siglip.rs` checks parity against
//! those fixtures. Tokenizers live in `seer-tokenizer` (`SiglipTokenizer`),
//! image processors in `seer-image`.

pub mod config;
pub mod model;
pub mod text;
pub mod vision;

pub use config::{SiglipConfig, SiglipTextConfig, SiglipVariant, SiglipVisionConfig};
pub use model::SiglipModel;
pub use text::SiglipTextTransformer;
pub use vision::{AttentionPoolingHead, PatchGrid, SiglipVisionTransformer};
