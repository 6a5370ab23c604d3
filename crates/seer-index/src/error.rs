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

    /// A file operation failed: `doing` (if any) says which, then the I/O error.
    #[error("{path}: {}{source}", .doing.map(|d| format!("{d}: ")).unwrap_or_default())]
    Io {
        path: PathBuf,
        doing: Option<&'static str>,
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
            doing: None,
            source,
        }
    }

    /// An I/O error while `doing` something ("cannot create the index folder").
    pub(crate) fn io_doing(
        path: impl Into<PathBuf>,
        doing: &'static str,
        source: std::io::Error,
    ) -> Self {
        IndexError::Io {
            path: path.into(),
            doing: Some(doing),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn io_errors_keep_their_source_and_read_as_before() {
        let cause = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = IndexError::io("/idx/x", cause());
        assert_eq!(e.to_string(), "/idx/x: denied");
        let e = IndexError::io_doing("/idx/.lock", "cannot use the lock file", cause());
        assert_eq!(
            e.to_string(),
            "/idx/.lock: cannot use the lock file: denied"
        );
        let source = e.source().expect("the io::Error is the source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }
}
