//! Settings of the shared layers, whatever family's config they were read from.

use std::path::Path;

use crate::error::{ModelError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI's original approximation.
    QuickGelu,
    /// The exact erf GELU.
    Gelu,
    /// GELU's tanh approximation (`gelu_pytorch_tanh`: SigLIP).
    GeluTanh,
}

impl From<Activation> for seer_kernels::Activation {
    fn from(a: Activation) -> Self {
        match a {
            Activation::QuickGelu => Self::QuickGelu,
            Activation::Gelu => Self::Gelu,
            Activation::GeluTanh => Self::GeluTanh,
        }
    }
}

impl Activation {
    /// A transformers `hidden_act` name.
    pub(crate) fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            "gelu_pytorch_tanh" | "gelu_new" => Ok(Self::GeluTanh),
            other => Err(ModelError::Config {
                path: path.to_path_buf(),
                message: format!("unsupported activation '{other}'"),
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TransformerConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// open_clip's LayerScale (`ls_1.gamma`, `ls_2.gamma`).
    pub layer_scale: bool,
}

/// The largest image side (px) a config may set. Hub checkpoints stay at or
/// below 1024 (SAM); the preprocessed image is a side² × 3 f32 buffer sized
/// from the config alone, so a damaged value must be refused before it asks
/// for gigabytes (65536 px: 51 GB), and the patch-grid arithmetic stays far
/// from overflow.
pub const MAX_IMAGE_SIDE: usize = 8192;

/// Refuses an image side of zero or above [`MAX_IMAGE_SIDE`]; `key` names the
/// config field in the message.
pub fn check_image_side(path: &Path, key: &str, side: usize) -> Result<()> {
    if side == 0 || side > MAX_IMAGE_SIDE {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            message: format!("{key} {side} is out of range (1 to {MAX_IMAGE_SIDE} px)"),
        });
    }
    Ok(())
}

/// Refuses a LayerNorm epsilon that is not a positive number: a negative one
/// turns every output into NaN (written as `null` in JSON) without an error.
pub fn check_eps(path: &Path, key: &str, eps: f64) -> Result<()> {
    if !(eps.is_finite() && eps > 0.0) {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            message: format!("{key} {eps} must be a positive number"),
        });
    }
    Ok(())
}
