//! `config.json` of a transformers SAM checkpoint (`model_type: sam`, class
//! `SamModel`): facebook/sam-vit-{base,large,huge} and SlimSAM, whose pruned
//! widths are spelled out in the same fields (`hidden_size`, `mlp_dim`).
//!
//! Absent fields take the defaults of transformers' `SamVisionConfig`,
//! `SamPromptEncoderConfig` and `SamMaskDecoderConfig`. Values seer cannot run
//! are refused with the file named.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::nn::config::{check_eps, check_image_side};

/// The activations SAM's configs name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamActivation {
    /// `gelu`: the exact (erf) form.
    Gelu,
    Relu,
}

impl SamActivation {
    fn parse(name: &str, path: &Path, field: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "relu" => Ok(Self::Relu),
            other => Err(error(
                path,
                format!("{field}.hidden_act '{other}' is not supported (gelu, relu)"),
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SamVisionConfig {
    pub hidden_size: usize,
    pub output_channels: usize,
    pub layers: usize,
    pub heads: usize,
    /// The square input side (1024 in every published checkpoint).
    pub image_size: usize,
    pub patch_size: usize,
    pub mlp_dim: usize,
    pub activation: SamActivation,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    pub use_abs_pos: bool,
    pub use_rel_pos: bool,
    /// 0: every layer global.
    pub window_size: usize,
    pub global_attn_indexes: Vec<usize>,
    pub num_pos_feats: usize,
}

impl SamVisionConfig {
    /// Patches per side of the image embedding (64 for 1024 / 16).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The window of layer `i`; 0 for a global-attention layer.
    pub fn window_of(&self, i: usize) -> usize {
        if self.global_attn_indexes.contains(&i) {
            0
        } else {
            self.window_size
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SamPromptConfig {
    pub hidden_size: usize,
    /// The side prompts' coordinates are normalised by (the processor's 1024).
    pub image_size: usize,
    /// Side of the image embedding the dense prompts cover.
    pub image_embedding_size: usize,
    pub mask_input_channels: usize,
    pub activation: SamActivation,
    pub layer_norm_eps: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SamDecoderConfig {
    pub hidden_size: usize,
    pub activation: SamActivation,
    pub mlp_dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub attention_downsample_rate: usize,
    pub num_multimask_outputs: usize,
    pub iou_head_depth: usize,
    pub iou_head_hidden_dim: usize,
    pub layer_norm_eps: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SamConfig {
    pub vision: SamVisionConfig,
    pub prompt: SamPromptConfig,
    pub decoder: SamDecoderConfig,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    vision_config: RawVision,
    #[serde(default)]
    prompt_encoder_config: RawPrompt,
    #[serde(default)]
    mask_decoder_config: RawDecoder,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawVision {
    hidden_size: usize,
    output_channels: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    qkv_bias: bool,
    mlp_ratio: f64,
    mlp_dim: Option<usize>,
    use_abs_pos: bool,
    use_rel_pos: bool,
    window_size: usize,
    global_attn_indexes: Vec<usize>,
    num_pos_feats: usize,
}

impl Default for RawVision {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            output_channels: 256,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 1024,
            patch_size: 16,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            mlp_ratio: 4.0,
            mlp_dim: None,
            use_abs_pos: true,
            use_rel_pos: true,
            window_size: 14,
            global_attn_indexes: vec![2, 5, 8, 11],
            num_pos_feats: 128,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawPrompt {
    hidden_size: usize,
    image_size: usize,
    patch_size: usize,
    /// transformers takes a value written in the file over its own
    /// image_size // patch_size, and fails when it is not the vision grid.
    image_embedding_size: Option<usize>,
    mask_input_channels: usize,
    num_point_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for RawPrompt {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            image_size: 1024,
            patch_size: 16,
            image_embedding_size: None,
            mask_input_channels: 16,
            num_point_embeddings: 4,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-6,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawDecoder {
    hidden_size: usize,
    hidden_act: String,
    mlp_dim: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    attention_downsample_rate: usize,
    num_multimask_outputs: usize,
    iou_head_depth: usize,
    iou_head_hidden_dim: usize,
    layer_norm_eps: f64,
}

impl Default for RawDecoder {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            hidden_act: "relu".into(),
            mlp_dim: 2048,
            num_hidden_layers: 2,
            num_attention_heads: 8,
            attention_downsample_rate: 2,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            layer_norm_eps: 1e-6,
        }
    }
}

fn error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl SamConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| error(path, e.to_string()))?;
        Self::from_json(&text, path)
    }

    /// Parses `config.json`; `path` only names the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| error(path, format!("not a SAM config: {e}")))?;
        match raw.model_type.as_deref() {
            Some("sam") => {}
            Some(other) => {
                return Err(error(
                    path,
                    format!("model_type '{other}' is not a SAM checkpoint ('sam')"),
                ))
            }
            None => return Err(error(path, "model_type is missing (expected 'sam')")),
        }
        let (v, p, d) = (
            raw.vision_config,
            raw.prompt_encoder_config,
            raw.mask_decoder_config,
        );
        let check = |ok: bool, message: String| {
            if ok {
                Ok(())
            } else {
                Err(error(path, message))
            }
        };
        check(
            v.hidden_size > 0
                && v.num_attention_heads > 0
                && v.hidden_size.is_multiple_of(v.num_attention_heads)
                && v.num_hidden_layers > 0,
            format!(
                "vision_config: hidden_size {} must be positive and divisible by \
                 num_attention_heads {}, num_hidden_layers positive",
                v.hidden_size, v.num_attention_heads
            ),
        )?;
        check(
            v.patch_size > 0 && v.image_size > 0 && v.image_size.is_multiple_of(v.patch_size),
            format!(
                "vision_config: image_size {} must be a positive multiple of patch_size {}",
                v.image_size, v.patch_size
            ),
        )?;
        check_image_side(path, "vision_config.image_size", v.image_size)?;
        check_eps(path, "vision_config.layer_norm_eps", v.layer_norm_eps)?;
        check_eps(
            path,
            "prompt_encoder_config.layer_norm_eps",
            p.layer_norm_eps,
        )?;
        check_eps(path, "mask_decoder_config.layer_norm_eps", d.layer_norm_eps)?;
        check(
            v.num_channels == 3,
            format!(
                "vision_config: num_channels {} (only 3 is supported)",
                v.num_channels
            ),
        )?;
        let mlp_dim = v
            .mlp_dim
            .unwrap_or((v.hidden_size as f64 * v.mlp_ratio) as usize);
        check(
            mlp_dim > 0,
            "vision_config: mlp_dim must be positive".into(),
        )?;
        if let Some(i) = v
            .global_attn_indexes
            .iter()
            .find(|&&i| i >= v.num_hidden_layers)
        {
            return Err(error(
                path,
                format!(
                    "vision_config: global_attn_indexes names layer {i}, but there are {}",
                    v.num_hidden_layers
                ),
            ));
        }
        let grid = v.image_size / v.patch_size;
        let embedding = p.image_size.checked_div(p.patch_size).unwrap_or(0);
        check(
            embedding == grid && p.image_size == v.image_size,
            format!(
                "prompt_encoder_config: image_size {} / patch_size {} must match the vision \
                 encoder's {} / {}",
                p.image_size, p.patch_size, v.image_size, v.patch_size
            ),
        )?;
        if let Some(side) = p.image_embedding_size.filter(|&s| s != embedding) {
            return Err(error(
                path,
                format!(
                    "prompt_encoder_config: image_embedding_size {side} is not the vision \
                     encoder's grid of {embedding} (image_size / patch_size); seer runs SAM at \
                     the grid, where transformers fails"
                ),
            ));
        }
        check(
            p.hidden_size == 2 * v.num_pos_feats
                && p.hidden_size == d.hidden_size
                && v.output_channels == d.hidden_size,
            format!(
                "widths disagree: prompt_encoder_config.hidden_size {}, \
                 mask_decoder_config.hidden_size {}, vision_config.output_channels {} and \
                 2 × vision_config.num_pos_feats {} must be equal",
                p.hidden_size,
                d.hidden_size,
                v.output_channels,
                2 * v.num_pos_feats
            ),
        )?;
        check(
            p.num_point_embeddings == 4,
            format!(
                "prompt_encoder_config: num_point_embeddings {} (SAM has 4)",
                p.num_point_embeddings
            ),
        )?;
        check(
            p.mask_input_channels >= 4 && p.mask_input_channels.is_multiple_of(4),
            format!(
                "prompt_encoder_config: mask_input_channels {} must be a positive multiple of 4",
                p.mask_input_channels
            ),
        )?;
        check(
            d.hidden_size.is_multiple_of(8)
                && d.num_attention_heads > 0
                && d.attention_downsample_rate > 0
                && (d.hidden_size / d.attention_downsample_rate)
                    .is_multiple_of(d.num_attention_heads)
                && d.hidden_size.is_multiple_of(d.num_attention_heads),
            format!(
                "mask_decoder_config: hidden_size {} must be a multiple of 8, and of \
                 num_attention_heads {} after attention_downsample_rate {}",
                d.hidden_size, d.num_attention_heads, d.attention_downsample_rate
            ),
        )?;
        // The decoder's first block projects the image keys: zero blocks leave
        // nothing to run.
        check(
            d.num_hidden_layers > 0,
            "mask_decoder_config: num_hidden_layers must be positive".into(),
        )?;
        check(
            d.num_multimask_outputs > 0 && d.iou_head_depth >= 2,
            "mask_decoder_config: num_multimask_outputs must be positive, iou_head_depth at least 2"
                .into(),
        )?;
        Ok(Self {
            vision: SamVisionConfig {
                hidden_size: v.hidden_size,
                output_channels: v.output_channels,
                layers: v.num_hidden_layers,
                heads: v.num_attention_heads,
                image_size: v.image_size,
                patch_size: v.patch_size,
                mlp_dim,
                activation: SamActivation::parse(&v.hidden_act, path, "vision_config")?,
                layer_norm_eps: v.layer_norm_eps,
                qkv_bias: v.qkv_bias,
                use_abs_pos: v.use_abs_pos,
                use_rel_pos: v.use_rel_pos,
                window_size: v.window_size,
                global_attn_indexes: v.global_attn_indexes,
                num_pos_feats: v.num_pos_feats,
            },
            prompt: SamPromptConfig {
                hidden_size: p.hidden_size,
                image_size: p.image_size,
                image_embedding_size: embedding,
                mask_input_channels: p.mask_input_channels,
                activation: SamActivation::parse(&p.hidden_act, path, "prompt_encoder_config")?,
                layer_norm_eps: p.layer_norm_eps,
            },
            decoder: SamDecoderConfig {
                hidden_size: d.hidden_size,
                activation: SamActivation::parse(&d.hidden_act, path, "mask_decoder_config")?,
                mlp_dim: d.mlp_dim,
                layers: d.num_hidden_layers,
                heads: d.num_attention_heads,
                attention_downsample_rate: d.attention_downsample_rate,
                num_multimask_outputs: d.num_multimask_outputs,
                iou_head_depth: d.iou_head_depth,
                iou_head_hidden_dim: d.iou_head_hidden_dim,
                layer_norm_eps: d.layer_norm_eps,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SamConfig> {
        SamConfig::from_json(json, Path::new("config.json"))
    }

    #[test]
    fn defaults_are_sam_vit_huge_layout_defaults() {
        let cfg = parse(r#"{"model_type": "sam"}"#).unwrap();
        assert_eq!(cfg.vision.grid(), 64);
        assert_eq!(cfg.vision.mlp_dim, 3072);
        assert_eq!(cfg.vision.window_of(2), 0);
        assert_eq!(cfg.vision.window_of(3), 14);
        assert_eq!(cfg.prompt.image_embedding_size, 64);
        assert_eq!(cfg.decoder.activation, SamActivation::Relu);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        for (json, needle) in [
            (r#"{"model_type": "blip"}"#, "not a SAM checkpoint"),
            (r#"{}"#, "model_type is missing"),
            (
                r#"{"model_type": "sam", "vision_config": {"num_attention_heads": 7}}"#,
                "divisible",
            ),
            (
                r#"{"model_type": "sam", "vision_config": {"global_attn_indexes": [12]}}"#,
                "global_attn_indexes",
            ),
            (
                r#"{"model_type": "sam", "mask_decoder_config": {"hidden_size": 128}}"#,
                "widths disagree",
            ),
            (
                r#"{"model_type": "sam", "vision_config": {"hidden_act": "swish"}}"#,
                "not supported",
            ),
            (
                r#"{"model_type": "sam", "mask_decoder_config": {"num_hidden_layers": 0}}"#,
                "mask_decoder_config: num_hidden_layers must be positive",
            ),
            (
                r#"{"model_type": "sam", "prompt_encoder_config": {"layer_norm_eps": -1e-6}}"#,
                "prompt_encoder_config.layer_norm_eps -0.000001 must be a positive number",
            ),
            (
                r#"{"model_type": "sam", "prompt_encoder_config": {"image_embedding_size": 32}}"#,
                "prompt_encoder_config: image_embedding_size 32 is not the vision encoder's grid of 64",
            ),
            ("[1]", "not a SAM config"),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("config.json"),
                "{json}: {err}"
            );
        }
    }
}
