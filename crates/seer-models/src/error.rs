use std::path::PathBuf;

/// Everything that can go wrong while reading or running a model. Variants that
/// concern a file name it, so a user knows which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: cannot read weights: {message}")]
    Weights { path: PathBuf, message: String },

    /// A model file could not be opened or read.
    #[error("{path}: {}{source}", .weights.then_some("cannot read weights: ").unwrap_or_default())]
    Io {
        path: PathBuf,
        /// Whether the file is a weights file (the message says so).
        weights: bool,
        #[source]
        source: std::io::Error,
    },

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn io_errors_keep_their_source_and_read_as_before() {
        let cause = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = ModelError::Io {
            path: "m/model.safetensors".into(),
            weights: true,
            source: cause(),
        };
        assert_eq!(
            e.to_string(),
            "m/model.safetensors: cannot read weights: no such file"
        );
        assert!(e.source().is_some_and(|s| s.is::<std::io::Error>()));
        let e = ModelError::Io {
            path: "m/config.json".into(),
            weights: false,
            source: cause(),
        };
        assert_eq!(e.to_string(), "m/config.json: no such file");
    }
}
