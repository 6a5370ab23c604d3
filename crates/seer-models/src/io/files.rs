//! Which files in a model folder make up a model, and in which layout.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use crate::models::clip::config::{ClipConfig, Layout};

/// The files of one model in a local folder.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub layout: Layout,
    pub config: PathBuf,
    pub weights: PathBuf,
    /// transformers' `preprocessor_config.json`, when present.
    pub preprocessor_config: Option<PathBuf>,
}

/// Candidate files per layout, in order of preference (safetensors first: they
/// are memory-mapped and cannot carry code).
pub const TRANSFORMERS_FILES: (&str, &[&str]) =
    ("config.json", &["model.safetensors", "pytorch_model.bin"]);
pub const OPEN_CLIP_FILES: (&str, &[&str]) = (
    "open_clip_config.json",
    &["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
);

impl ModelFiles {
    /// Finds a model in `dir`. When a folder holds both layouts (as many LAION
    /// repositories do) the transformers one is used.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::Config {
                path: dir.to_path_buf(),
                message: "not a folder".into(),
            });
        }
        let find = |(config, weights): (&str, &[&str])| -> Option<(PathBuf, PathBuf)> {
            let config = dir.join(config);
            let weights = weights.iter().map(|w| dir.join(w)).find(|p| p.is_file())?;
            config.is_file().then_some((config, weights))
        };
        let (layout, (config, weights)) = if let Some(found) = find(TRANSFORMERS_FILES) {
            (Layout::Transformers, found)
        } else if let Some(found) = find(OPEN_CLIP_FILES) {
            (Layout::OpenClip, found)
        } else {
            return Err(ModelError::NoModelFiles {
                dir: dir.to_path_buf(),
            });
        };
        let preprocessor = dir.join("preprocessor_config.json");
        Ok(Self {
            dir: dir.to_path_buf(),
            layout,
            config,
            weights,
            preprocessor_config: (layout == Layout::Transformers && preprocessor.is_file())
                .then_some(preprocessor),
        })
    }

    pub fn read_config(&self) -> Result<ClipConfig> {
        let text = std::fs::read_to_string(&self.config).map_err(|source| ModelError::Io {
            path: self.config.clone(),
            weights: false,
            source,
        })?;
        match self.layout {
            Layout::Transformers => ClipConfig::from_transformers_json(&text, &self.config),
            Layout::OpenClip => ClipConfig::from_open_clip_json(&text, &self.config),
        }
    }

    /// open_clip's `preprocess_cfg`, when the config has one.
    pub fn open_clip_preprocess_cfg(&self) -> Option<serde_json::Value> {
        if self.layout != Layout::OpenClip {
            return None;
        }
        let text = std::fs::read_to_string(&self.config).ok()?;
        let root: serde_json::Value = serde_json::from_str(&text).ok()?;
        root.get("preprocess_cfg").cloned()
    }
}
