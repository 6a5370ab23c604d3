use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] seer_models::ModelError),
    #[error(transparent)]
    Engine(#[from] seer_engine::EngineError),
    #[error(transparent)]
    Data(#[from] seer_data::DataError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A file operation failed; the message is the I/O error's.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn file_error(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
