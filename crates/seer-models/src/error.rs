use std::path::PathBuf;

/// Everything that can go wrong while reading or running a model. Variants that
/// concern a file name it, so a user knows which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: cannot read weights: {message}")]
    Weights { path: PathBuf, message: String },

    #[error(
        "{path}: missing tensor '{name}' (is this a checkpoint of the expected family and layout?)"
    )]
    MissingTensor { path: PathBuf, name: String },

    #[error("{path}: tensor '{name}' has shape {found:?}, the config implies {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{dir}: no CLIP model files found (expected config.json with model.safetensors or pytorch_model.bin, or open_clip_config.json with open_clip_model.safetensors or open_clip_pytorch_model.bin)")]
    NoModelFiles { dir: PathBuf },

    #[error("unsupported model: {0}")]
    Unsupported(String),

    #[error("invalid input: {0}")]
    Input(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;
