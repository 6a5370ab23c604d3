use std::path::PathBuf;

/// Errors from the ANN index. File errors always name the file involved.
#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error("vector has dimension {got}, index expects {expected}")]
    DimMismatch { expected: usize, got: usize },

    #[error("vector for id {id} has a non-finite component (or one outside the f16 range ±65504)")]
    NonFinite { id: u64 },

    #[error("invalid parameter: {0}")]
    InvalidParams(String),

    #[error("{path}: I/O error: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: not a usable seer ANN index: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "{path}: unsupported index format version {found} (this build reads version {supported})"
    )]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

impl AnnError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AnnError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        AnnError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
