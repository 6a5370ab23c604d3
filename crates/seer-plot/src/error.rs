use std::path::PathBuf;

/// Errors from reading metrics or writing the plot. File errors always name the file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The metrics file could not be read (missing, unreadable).
    #[error("{path}: cannot read metrics: {source}")]
    Read {
        /// The metrics file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The metrics file has no line with a usable train or eval record.
    #[error("{path}: no usable metrics lines ({skipped} lines skipped)")]
    NoData {
        /// The metrics file.
        path: PathBuf,
        /// How many lines were skipped as blank, not JSON or lacking a numeric `step`.
        skipped: usize,
    },

    /// The PNG could not be written.
    #[error("{path}: cannot write plot: {source}")]
    Write {
        /// The PNG being written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The PNG could not be encoded.
    #[error("{path}: cannot encode PNG: {source}")]
    Encode {
        /// The PNG being written.
        path: PathBuf,
        /// The underlying encoder error.
        source: image::ImageError,
    },
}
