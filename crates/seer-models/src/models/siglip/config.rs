//! `config.json` of a transformers `SiglipModel` / `Siglip2Model`.
//!
//! Absent fields take the defaults of transformers' `Siglip{Text,Vision}Config`
//! (and their SigLIP 2 counterparts). Values seer cannot run are refused with
//! the file named, rather than silently ignored.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::nn::config::{check_eps, check_image_side, Activation, TransformerConfig};

/// Which architecture the checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiglipVariant {
    /// `model_type: siglip`: fixed square input, conv patch embedding.
    Siglip,
    /// `model_type: siglip2`: NaFlex, variable patch grids with a padding mask,
    /// linear patch embedding over (y, x, channel) patches, resized position table.
    Siglip2,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SiglipVisionConfig {
    /// SigLIP: the square input side. SigLIP 2 has none (NaFlex): 0.
    pub image_size: usize,
    pub patch_size: usize,
    /// Rows of the position table: `(image_size / patch)²` (SigLIP) or
    /// `num_patches` (SigLIP 2, a square number).
    pub num_positions: usize,
    pub transformer: TransformerConfig,
}

impl SiglipVisionConfig {
    /// Side of the (square) position table in patches.
    pub fn position_grid(&self) -> usize {
        self.num_positions.isqrt()
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SiglipTextConfig {
    pub vocab_size: usize,
    /// `max_position_embeddings`: the longest token sequence.
    pub context_length: usize,
    pub transformer: TransformerConfig,
    /// Output size of the text `head` (must equal the vision width).
    pub projection_size: usize,
    pub pad_token_id: u32,
    pub eos_token_id: u32,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SiglipConfig {
    pub variant: SiglipVariant,
    pub vision: SiglipVisionConfig,
    pub text: SiglipTextConfig,
}

// The JSON as transformers writes it. Unknown keys are ignored (configs carry
// many training-only fields).
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    text_config: RawText,
    #[serde(default)]
    vision_config: RawVision,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    projection_size: Option<usize>,
    pad_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

impl Default for RawText {
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 64,
            hidden_act: "gelu_pytorch_tanh".into(),
            layer_norm_eps: 1e-6,
            projection_size: None,
            pad_token_id: None,
            eos_token_id: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawVision {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    num_patches: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    vision_use_head: bool,
}

impl Default for RawVision {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            num_patches: 256,
            hidden_act: "gelu_pytorch_tanh".into(),
            layer_norm_eps: 1e-6,
            vision_use_head: true,
        }
    }
}

fn error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl SiglipConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| error(path, e.to_string()))?;
        Self::from_json(&text, path)
    }

    /// Parses `config.json`; `path` only names the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| error(path, format!("not a SigLIP config: {e}")))?;
        let variant = match raw.model_type.as_deref() {
            Some("siglip") => SiglipVariant::Siglip,
            Some("siglip2") => SiglipVariant::Siglip2,
            Some(other) => {
                return Err(ModelError::Unsupported(format!(
                    "{}: model_type '{other}' (this loader reads 'siglip' and 'siglip2')",
                    path.display()
                )))
            }
            None => {
                return Err(error(
                    path,
                    "model_type is missing (expected 'siglip' or 'siglip2')",
                ))
            }
        };
        let (t, v) = (raw.text_config, raw.vision_config);
        let transformer = |section: &str,
                           width: usize,
                           layers: usize,
                           heads: usize,
                           mlp: usize,
                           act: &str,
                           eps: f64|
         -> Result<TransformerConfig> {
            if width == 0 || layers == 0 || mlp == 0 || heads == 0 || !width.is_multiple_of(heads) {
                return Err(error(
                    path,
                    format!(
                        "{section}: hidden_size {width} must be positive and divisible by \
                         num_attention_heads {heads}; layers and intermediate_size positive"
                    ),
                ));
            }
            check_eps(path, &format!("{section}.layer_norm_eps"), eps)?;
            Ok(TransformerConfig {
                width,
                layers,
                heads,
                mlp_width: mlp,
                activation: Activation::parse(act, path)?,
                layer_norm_eps: eps,
                layer_scale: false,
            })
        };
        let text = SiglipTextConfig {
            vocab_size: t.vocab_size,
            context_length: t.max_position_embeddings,
            transformer: transformer(
                "text_config",
                t.hidden_size,
                t.num_hidden_layers,
                t.num_attention_heads,
                t.intermediate_size,
                &t.hidden_act,
                t.layer_norm_eps,
            )?,
            projection_size: t.projection_size.unwrap_or(t.hidden_size),
            // transformers' defaults: SigLIP pads with </s> (1); Gemma's <pad> is 0.
            pad_token_id: t.pad_token_id.unwrap_or(match variant {
                SiglipVariant::Siglip => 1,
                SiglipVariant::Siglip2 => 0,
            }),
            eos_token_id: t.eos_token_id.unwrap_or(1),
        };
        if !v.vision_use_head {
            return Err(error(
                path,
                "vision_config.vision_use_head false: seer needs the attention-pooling head",
            ));
        }
        if v.num_channels != 3 {
            return Err(error(
                path,
                format!(
                    "vision_config.num_channels {} (only RGB, 3)",
                    v.num_channels
                ),
            ));
        }
        if v.patch_size == 0 {
            return Err(error(path, "vision_config.patch_size must be positive"));
        }
        let (image_size, num_positions) = match variant {
            SiglipVariant::Siglip => {
                if v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
                    return Err(error(
                        path,
                        format!(
                            "vision_config.image_size {} is not a multiple of patch_size {}",
                            v.image_size, v.patch_size
                        ),
                    ));
                }
                check_image_side(path, "vision_config.image_size", v.image_size)?;
                (v.image_size, (v.image_size / v.patch_size).pow(2))
            }
            SiglipVariant::Siglip2 => {
                let side = v.num_patches.isqrt();
                if v.num_patches == 0 || side * side != v.num_patches {
                    return Err(error(
                        path,
                        format!(
                            "vision_config.num_patches {} is not a square number",
                            v.num_patches
                        ),
                    ));
                }
                (0, v.num_patches)
            }
        };
        let vision = SiglipVisionConfig {
            image_size,
            patch_size: v.patch_size,
            num_positions,
            transformer: transformer(
                "vision_config",
                v.hidden_size,
                v.num_hidden_layers,
                v.num_attention_heads,
                v.intermediate_size,
                &v.hidden_act,
                v.layer_norm_eps,
            )?,
        };
        if text.projection_size != vision.transformer.width {
            return Err(error(
                path,
                format!(
                    "text_config.projection_size {} differs from vision_config.hidden_size {}: \
                     the embeddings could not be compared",
                    text.projection_size, vision.transformer.width
                ),
            ));
        }
        Ok(Self {
            variant,
            vision,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("config.json")
    }

    #[test]
    fn an_image_size_beyond_the_cap_is_refused_by_name() {
        let json =
            r#"{"model_type": "siglip", "vision_config": {"image_size": 65536, "patch_size": 16}}"#;
        let err = SiglipConfig::from_json(json, p()).unwrap_err().to_string();
        assert!(err.contains("vision_config.image_size 65536"), "{err}");
    }

    #[test]
    fn defaults_are_siglip_base_patch16_224() {
        let cfg = SiglipConfig::from_json(r#"{"model_type": "siglip"}"#, p()).unwrap();
        assert_eq!(cfg.variant, SiglipVariant::Siglip);
        assert_eq!(
            (
                cfg.vision.image_size,
                cfg.vision.patch_size,
                cfg.vision.num_positions
            ),
            (224, 16, 196)
        );
        assert_eq!(cfg.text.context_length, 64);
        assert_eq!(cfg.text.pad_token_id, 1);
        assert_eq!(cfg.vision.transformer.activation, Activation::GeluTanh);
    }

    #[test]
    fn bad_configs_name_the_file_and_the_cause() {
        for (json, needle) in [
            (r#"{"model_type": "clip"}"#, "model_type 'clip'"),
            (r#"{}"#, "model_type is missing"),
            ("[", "not a SigLIP config"),
            (
                r#"{"model_type": "siglip", "vision_config": {"hidden_act": "relu"}}"#,
                "unsupported activation 'relu'",
            ),
            (
                r#"{"model_type": "siglip", "vision_config": {"vision_use_head": false}}"#,
                "vision_use_head",
            ),
            (
                r#"{"model_type": "siglip", "vision_config": {"image_size": 100}}"#,
                "image_size 100",
            ),
            (
                r#"{"model_type": "siglip2", "vision_config": {"num_patches": 200}}"#,
                "num_patches 200",
            ),
            (
                r#"{"model_type": "siglip", "text_config": {"num_attention_heads": 5}}"#,
                "divisible",
            ),
            (
                r#"{"model_type": "siglip", "text_config": {"projection_size": 10}}"#,
                "projection_size 10",
            ),
        ] {
            let err = SiglipConfig::from_json(json, p()).unwrap_err().to_string();
            assert!(
                err.contains("config.json") && err.contains(needle),
                "{json}: {err}"
            );
        }
    }
}
