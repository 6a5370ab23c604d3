use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] seer_models::ModelError),

    #[error(transparent)]
    Image(#[from] seer_image::ImageError),

    #[error(transparent)]
    Tokenizer(#[from] seer_tokenizer::TokenizerError),

    #[error(transparent)]
    Hub(#[from] seer_hub::HubError),

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

    /// The caller asked a long task to stop (Python's Ctrl-C) before it
    /// finished: see [`crate::segment::Segmenter::auto_masks_until`].
    #[error("stopped before it finished")]
    Stopped,

    #[error("model '{model}' ({family}) embeds images only: text queries and zero-shot labels need a model with a text tower (CLIP, SigLIP); it still serves image queries and \"more like this\"")]
    NoTextTower { model: String, family: &'static str },

    #[error("model '{model}' ({family}) does not give {features}: patch features (--features mean, patch) need a model whose tokens are image patches, such as DINOv2")]
    FeaturesNotGiven {
        model: String,
        family: &'static str,
        features: &'static str,
    },

    #[error("{path}: unknown model_type '{model_type}' (seer reads: {known})")]
    UnknownFamily {
        path: PathBuf,
        model_type: String,
        known: String,
    },

    #[error("{path}: model_type '{model_type}' is a {family} model, which is not supported yet in this build")]
    FamilyNotBuilt {
        path: PathBuf,
        model_type: String,
        family: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn io_error(path: impl Into<PathBuf>, source: std::io::Error) -> EngineError {
    EngineError::Io {
        path: path.into(),
        source,
    }
}

pub(crate) fn file_error(path: impl Into<PathBuf>, message: impl ToString) -> EngineError {
    let path = path.into();
    let mut message = message.to_string();
    // Errors of crates that know only the file's name (the image crate's
    // "preprocessor_config.json: invalid …") start with it: the full path
    // said first is enough.
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        if let Some(rest) = message
            .strip_prefix(name)
            .and_then(|m| m.strip_prefix(": "))
        {
            message = rest.to_string();
        }
    }
    EngineError::File { path, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_starts_with_the_files_name_does_not_repeat_it() {
        let e = file_error(
            "/m/preprocessor_config.json",
            "preprocessor_config.json: invalid preprocessing config: crop_size 0",
        );
        assert_eq!(
            e.to_string(),
            "/m/preprocessor_config.json: invalid preprocessing config: crop_size 0"
        );
        // Another file's name, or the name inside the text, stays.
        let e = file_error("/m/config.json", "preprocessor_config.json: x");
        assert!(
            e.to_string().ends_with("preprocessor_config.json: x"),
            "{e}"
        );
    }
}
