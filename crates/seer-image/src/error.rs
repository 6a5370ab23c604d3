//! The crate's single error type. Every variant names its input: a file path,
//! the `name` given to [`crate::decode_bytes`] (`"<bytes>"` by convention), or
//! for configuration errors the config being parsed.

/// Everything that can go wrong while decoding or configuring preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read file: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Zero-byte input.
    #[error("{path}: file is empty (0 bytes)")]
    Empty { path: String },
    /// Input larger than [`crate::DecodeLimits::max_file_bytes`].
    #[error("{path}: file is {size} bytes, over the limit of {limit} bytes")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    /// Not an image, or an image format seer does not decode (e.g. JPEG 2000).
    #[error("{path}: unsupported or unrecognised image format: {detail}")]
    UnsupportedFormat { path: String, detail: String },
    /// Header dimensions exceed [`crate::DecodeLimits::max_pixels`]; nothing was allocated.
    #[error(
        "{path}: image is {width}x{height} = {pixels} pixels, over the budget of {limit} pixels \
         (possible decompression bomb; raise --max-pixels if this is intended)"
    )]
    TooManyPixels {
        path: String,
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    /// The format was recognised but the data is corrupt, truncated or uses an
    /// unsupported feature of that format.
    #[error("{path}: cannot decode {format} data: {detail}")]
    Decode {
        path: String,
        format: &'static str,
        detail: String,
    },
    /// A preprocessing config (HF `preprocessor_config.json` or open_clip
    /// `preprocess_cfg`) is malformed or asks for something not supported.
    /// `config` is the file's base name until [`ImageError::in_file`] gives
    /// the path it was read from.
    #[error("{config}: invalid preprocessing config: {detail}")]
    Config {
        config: std::borrow::Cow<'static, str>,
        detail: String,
    },
}

impl ImageError {
    /// The error of a config read from `path`: it names that path (once) in
    /// place of the base name the parser assumed, which may not even be the
    /// file's (OWLv2 folders keep the processor in `processor_config.json`).
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            ImageError::Config { detail, .. } => ImageError::Config {
                config: path.display().to_string().into(),
                detail,
            },
            other => other,
        }
    }

    pub(crate) fn decode(path: &str, format: &'static str, detail: impl std::fmt::Display) -> Self {
        ImageError::Decode {
            path: path.to_string(),
            format,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_error_in_a_file_names_its_path_once() {
        let e = ImageError::Config {
            config: "preprocessor_config.json".into(),
            detail: "crop_size 0".into(),
        }
        .in_file(std::path::Path::new("/m/processor_config.json"));
        assert_eq!(
            e.to_string(),
            "/m/processor_config.json: invalid preprocessing config: crop_size 0"
        );
    }
}
