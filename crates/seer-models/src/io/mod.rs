//! Reading weights: model folders ([`files`]), safetensors and PyTorch `.bin`
//! checkpoints ([`safetensors`], without running pickle code) and the
//! [`weights::Weights`] view the families load from.

pub mod files;
pub mod safetensors;
pub mod weights;
