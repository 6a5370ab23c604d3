//! `config.json` of a transformers OWL-ViT (`model_type: owlvit`) or OWLv2
//! (`owlv2`) checkpoint. Absent fields take the defaults of transformers'
//! `OwlViTTextConfig` / `OwlViTVisionConfig` (OWLv2: 960 px, patch 16).

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::models::clip::config::TextConfig;
use crate::nn::config::{check_eps, check_image_side, Activation, TransformerConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwlVersion {
    /// `OwlViTForObjectDetection` (`owlvit.` weights).
    V1,
    /// `Owlv2ForObjectDetection` (`owlv2.` weights, an objectness head).
    V2,
}

impl OwlVersion {
    /// The checkpoint's top-level module name.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::V1 => "owlvit",
            Self::V2 => "owlv2",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OwlConfig {
    pub version: OwlVersion,
    pub text: TextConfig,
    pub image_size: usize,
    pub patch_size: usize,
    pub vision: TransformerConfig,
    pub projection_dim: usize,
}

impl OwlConfig {
    /// Patches per side: one box per patch.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    #[serde(default)]
    text_config: RawTower,
    #[serde(default)]
    vision_config: RawTower,
    projection_dim: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawTower {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    vocab_size: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    num_channels: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
}

fn error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl OwlConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| error(path, e.to_string()))?;
        Self::from_json(&text, path)
    }

    /// Parses `config.json`; `path` only names the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| error(path, format!("not an OWL-ViT config: {e}")))?;
        let version = match raw.model_type.as_deref() {
            Some("owlvit") => OwlVersion::V1,
            Some("owlv2") => OwlVersion::V2,
            other => {
                return Err(error(
                    path,
                    format!(
                        "model_type {other:?} is not an OWL-ViT checkpoint ('owlvit' or 'owlv2')"
                    ),
                ))
            }
        };
        let tower = |t: &RawTower,
                     what: &str,
                     width,
                     mlp,
                     layers,
                     heads|
         -> Result<TransformerConfig> {
            let width = t.hidden_size.unwrap_or(width);
            let heads = t.num_attention_heads.unwrap_or(heads);
            if width == 0 || heads == 0 || !width.is_multiple_of(heads) {
                return Err(error(
                    path,
                    format!("{what}.hidden_size {width} is not a multiple of num_attention_heads {heads}"),
                ));
            }
            let eps = t.layer_norm_eps.unwrap_or(1e-5);
            check_eps(path, &format!("{what}.layer_norm_eps"), eps)?;
            Ok(TransformerConfig {
                width,
                layers: t.num_hidden_layers.unwrap_or(layers),
                heads,
                mlp_width: t.intermediate_size.unwrap_or(mlp),
                activation: Activation::parse(
                    t.hidden_act.as_deref().unwrap_or("quick_gelu"),
                    path,
                )?,
                layer_norm_eps: eps,
                layer_scale: false,
            })
        };
        let text_tower = tower(&raw.text_config, "text_config", 512, 2048, 12, 8)?;
        let vision = tower(&raw.vision_config, "vision_config", 768, 3072, 12, 12)?;
        let (default_size, default_patch) = match version {
            OwlVersion::V1 => (768, 32),
            OwlVersion::V2 => (960, 16),
        };
        let image_size = raw.vision_config.image_size.unwrap_or(default_size);
        let patch_size = raw.vision_config.patch_size.unwrap_or(default_patch);
        if patch_size == 0 || !image_size.is_multiple_of(patch_size) {
            return Err(error(
                path,
                format!("vision_config.image_size {image_size} is not a multiple of patch_size {patch_size}"),
            ));
        }
        // Also refuses 0, a multiple of every patch size (no boxes at all).
        check_image_side(path, "vision_config.image_size", image_size)?;
        // The processors give RGB; transformers sizes the patch convolution
        // by num_channels, so other values fail its load or its forward.
        if let Some(n) = raw.vision_config.num_channels.filter(|&n| n != 3) {
            return Err(error(
                path,
                format!("vision_config.num_channels {n} is not supported (images are RGB: 3)"),
            ));
        }
        let projection_dim = raw.projection_dim.unwrap_or(512);
        // The class head compares its image embeddings (text width) with the
        // projected queries: transformers needs them equal, so does seer.
        if projection_dim != text_tower.width {
            return Err(error(
                path,
                format!(
                    "projection_dim {projection_dim} differs from text_config.hidden_size {}; OWL's class head needs them equal",
                    text_tower.width
                ),
            ));
        }
        Ok(Self {
            version,
            text: TextConfig {
                vocab_size: raw.text_config.vocab_size.unwrap_or(49408),
                context_length: raw.text_config.max_position_embeddings.unwrap_or(16),
                transformer: text_tower,
                proj_bias: false,
            },
            image_size,
            patch_size,
            vision,
            projection_dim,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_of_zero_or_beyond_the_cap_are_refused_by_name() {
        // 0 is a multiple of every patch size (no boxes at all); 2^63 wrapped
        // the position count and panicked building the box bias.
        for size in ["0", "9223372036854775808", "65536"] {
            let json = format!(
                r#"{{"model_type": "owlv2", "projection_dim": 512,
                    "vision_config": {{"image_size": {size}, "patch_size": 16}}}}"#
            );
            let err = OwlConfig::from_json(&json, Path::new("config.json"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("config.json")
                    && err.contains(&format!("vision_config.image_size {size}")),
                "{err}"
            );
        }
    }

    #[test]
    fn channels_other_than_rgb_are_refused_by_name() {
        let parse = |n: &str| {
            let json = format!(
                r#"{{"model_type": "owlv2", "projection_dim": 512,
                    "vision_config": {{"num_channels": {n}}}}}"#
            );
            OwlConfig::from_json(&json, Path::new("config.json"))
        };
        parse("3").unwrap();
        for n in ["1", "4", "0"] {
            let err = parse(n).unwrap_err().to_string();
            assert!(
                err.contains("config.json")
                    && err.contains(&format!("vision_config.num_channels {n} is not supported")),
                "{err}"
            );
        }
    }
}
