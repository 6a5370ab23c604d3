use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: index database error: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    /// A file operation failed; the message is the I/O error's.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the index at {index} has no vectors for model '{model}' (it has: {available}); index with that model first, or pass --model with one of those")]
    ModelMismatch {
        index: PathBuf,
        model: String,
        available: String,
    },

    #[error("the index at {0} holds vectors of several models ({1}); choose one with --model")]
    AmbiguousModel(PathBuf, String),

    #[error("{0}")]
    Invalid(String),

    #[error("the index at {} is being updated by {}; wait for it to finish (or pass --wait), or stop it", index.display(), holder.as_ref().map_or_else(|| "another process".to_string(), |h| h.to_string()))]
    Busy {
        index: PathBuf,
        holder: Option<crate::lock::Holder>,
    },

    #[error("{}: holds {found}-d vectors, but model '{model}' makes {expected}-d vectors; import them with the model that made them", path.display())]
    DimensionMismatch {
        path: PathBuf,
        model: String,
        expected: usize,
        found: usize,
    },

    #[error(transparent)]
    Engine(#[from] seer_engine::EngineError),

    #[error(transparent)]
    Ann(#[from] seer_ann::AnnError),
}

pub type Result<T> = std::result::Result<T, IndexError>;

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }
}
