//! OWL-ViT and OWLv2 (Minderer et al., 2022 and 2023) as transformers
//! publishes them (`OwlViTForObjectDetection`, `Owlv2ForObjectDetection`):
//! a CLIP image tower whose every patch token becomes a box, scored against
//! text (or image) query embeddings. One folder serves both: OWLv2 is the
//! same network plus an objectness head, at a larger resolution.

pub mod config;
pub mod model;

pub use config::{OwlConfig, OwlVersion};
pub use model::{ImageQuery, OwlImage, OwlModel};
