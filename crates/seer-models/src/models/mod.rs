//! The model families, one folder each with its config beside it.

pub mod blip;
pub mod clip;
pub mod dinov2;
pub mod owlvit;
pub mod sam;
pub mod siglip;
