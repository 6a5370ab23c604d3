use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },
    /// A file operation on a data source failed; the message is the I/O error's.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the loader thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn source_error(path: &std::path::Path, message: impl std::fmt::Display) -> DataError {
    DataError::Source {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
