//! DINOv2 (`facebook/dinov2-*`) and DINOv2 with registers
//! (`facebook/dinov2-with-registers-*`) image encoders, as transformers'
//! `Dinov2Model` / `Dinov2WithRegistersModel` compute them.
//!
//! - [`config`]: `config.json` into [`Dinov2Config`].
//! - [`interpolate`]: the position-table resize each class applies at other sizes.
//! - [`model`]: embeddings, the shared pre-norm encoder with LayerScale (plain
//!   GELU MLP or SwiGLU), final LayerNorm; [`Dinov2Output`].
//!
//! Parity against the references: `tests/dinov2.rs` with the fixtures in
//! `fixtures/families/dinov2-*` (see that folder's README).

pub mod config;
pub mod interpolate;
pub mod model;

pub use config::{Dinov2Config, Dinov2Variant};
pub use interpolate::PosResample;
pub use model::{Dinov2Model, Dinov2Output};
