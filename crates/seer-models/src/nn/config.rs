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
