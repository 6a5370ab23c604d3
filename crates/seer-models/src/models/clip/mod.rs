//! CLIP: one description of the architecture ([`config::ClipConfig`]) read from
//! either the transformers or the open_clip checkpoint layout, the towers (one
//! file each) and [`model::ClipModel`] tying them together.

pub mod config;
pub mod model;
pub mod resnet;
pub mod text;
pub mod vit;
