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

/// A failed `candle_core::safetensors::save` of `path`: an I/O failure (a
/// full disk) keeps its `io::Error` as the source, anything else its words.
pub(crate) fn save_error(path: &Path, e: candle_core::Error) -> TrainError {
    if let candle_core::Error::Io(source) = e {
        return io_error(path, source);
    }
    // safetensors wraps the io::Error in its own, which cannot be taken apart
    // here: the operating system's error is made again from its number.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(n) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            return io_error(path, std::io::Error::from_raw_os_error(n));
        }
        cause = c.source();
    }
    file_error(path, e)
}

impl TrainError {
    /// This error with a path inside the temporary folder `staging` told as
    /// the same path inside `dest`, where the folder was to be renamed: the
    /// temporary is gone once the write failed, so a message naming it would
    /// name nothing the user can find.
    pub(crate) fn staged_in(self, staging: &Path, dest: &Path) -> TrainError {
        let moved = |path: PathBuf| match path.strip_prefix(staging) {
            Ok(rest) => dest.join(rest),
            Err(_) => path,
        };
        match self {
            TrainError::File { path, message } => TrainError::File {
                path: moved(path),
                message,
            },
            TrainError::Io { path, source } => TrainError::Io {
                path: moved(path),
                source,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_a_staging_folder_name_the_destination() {
        let full = || std::io::Error::from_raw_os_error(28);
        let staging = Path::new("/run/checkpoints/.step-00000003.aB3dEf.tmp");
        let dest = Path::new("/run/checkpoints/step-00000003");
        let e = io_error(&staging.join("optimizer.safetensors"), full()).staged_in(staging, dest);
        assert!(
            e.to_string()
                .starts_with("/run/checkpoints/step-00000003/optimizer.safetensors: "),
            "{e}"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the io::Error is kept"
        );
        // A path elsewhere (a file read from) is left as it is.
        let e = io_error(Path::new("/data/vocab.txt"), full()).staged_in(staging, dest);
        assert!(e.to_string().starts_with("/data/vocab.txt: "), "{e}");
        let e = save_error(
            &staging.join("model.safetensors"),
            candle_core::Error::Io(full()),
        );
        assert!(matches!(e, TrainError::Io { .. }), "{e:?}");
    }
}
