//! Model families beyond CLIP, one folder each with its config beside it.

pub mod dinov2;
pub mod siglip;
