//! DINOv2 hyper-parameters from transformers' `config.json` (`Dinov2Config` and
//! `Dinov2WithRegistersConfig`). Absent fields take those classes' defaults;
//! values seer does not implement are refused with the file's name.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::nn::config::{check_image_side, Activation, TransformerConfig};

/// Which reference class the checkpoint is. Besides the register tokens the two
/// differ in how they resize the position table (see [`super::interpolate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dinov2Variant {
    /// `model_type: dinov2` (`Dinov2Model`).
    Dinov2,
    /// `model_type: dinov2_with_registers` (`Dinov2WithRegistersModel`).
    WithRegisters,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Dinov2Config {
    pub variant: Dinov2Variant,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub mlp_ratio: f64,
    /// Side of the square input the position table was trained for (518 for the
    /// hub checkpoints: a 37×37 grid of 14-pixel patches).
    pub image_size: usize,
    pub patch_size: usize,
    pub layer_norm_eps: f64,
    /// Activation of the plain MLP; SwiGLU always gates with SiLU.
    pub hidden_act: Activation,
    pub qkv_bias: bool,
    pub use_swiglu_ffn: bool,
    /// 0 for `Dinov2Model`.
    pub num_register_tokens: usize,
}

/// `config.json` as written by `save_pretrained`; unknown keys are ignored.
#[derive(Deserialize)]
#[serde(default)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    mlp_ratio: f64,
    image_size: usize,
    patch_size: Option<usize>,
    num_channels: usize,
    layer_norm_eps: f64,
    hidden_act: String,
    qkv_bias: bool,
    use_swiglu_ffn: bool,
    num_register_tokens: Option<usize>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            model_type: None,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            mlp_ratio: 4.0,
            image_size: 224,
            patch_size: None,
            num_channels: 3,
            layer_norm_eps: 1e-6,
            hidden_act: "gelu".into(),
            qkv_bias: true,
            use_swiglu_ffn: false,
            num_register_tokens: None,
        }
    }
}

fn config_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Dinov2Config {
    /// Parses `config.json`; `path` names the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| config_error(path, format!("invalid JSON: {e}")))?;
        let raw: RawConfig = serde_json::from_value(value.clone()).map_err(|e| {
            // serde names the expected type but not the key: find the key that
            // fails on its own.
            let key = value.as_object().and_then(|fields| {
                fields.iter().find_map(|(k, v)| {
                    let alone = serde_json::json!({ k.as_str(): v });
                    serde_json::from_value::<RawConfig>(alone)
                        .is_err()
                        .then_some(k)
                })
            });
            match key {
                Some(key) => config_error(path, format!("{key}: {e}")),
                None => config_error(path, format!("not a DINOv2 config: {e}")),
            }
        })?;
        let variant = match raw.model_type.as_deref() {
            Some("dinov2") => Dinov2Variant::Dinov2,
            Some("dinov2_with_registers") => Dinov2Variant::WithRegisters,
            Some(other) => {
                return Err(config_error(
                    path,
                    format!("model_type '{other}' is not DINOv2 (expected 'dinov2' or 'dinov2_with_registers')"),
                ))
            }
            None => return Err(config_error(path, "model_type is missing")),
        };
        // The two config classes differ in their defaults (patch 14 against 16,
        // no registers against 4).
        let (patch_default, registers_default) = match variant {
            Dinov2Variant::Dinov2 => (14, 0),
            Dinov2Variant::WithRegisters => (16, 4),
        };
        let num_register_tokens = match variant {
            Dinov2Variant::Dinov2 => 0,
            Dinov2Variant::WithRegisters => raw.num_register_tokens.unwrap_or(registers_default),
        };
        let hidden_act = match raw.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "quick_gelu" => Activation::QuickGelu,
            // SwiGLU ignores hidden_act (transformers gates with SiLU whatever it says).
            _ if raw.use_swiglu_ffn => Activation::Gelu,
            other => {
                return Err(config_error(
                    path,
                    format!("hidden_act '{other}' is not supported (gelu, quick_gelu)"),
                ))
            }
        };
        let cfg = Self {
            variant,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            mlp_ratio: raw.mlp_ratio,
            image_size: raw.image_size,
            patch_size: raw.patch_size.unwrap_or(patch_default),
            layer_norm_eps: raw.layer_norm_eps,
            hidden_act,
            qkv_bias: raw.qkv_bias,
            use_swiglu_ffn: raw.use_swiglu_ffn,
            num_register_tokens,
        };
        if raw.num_channels != 3 {
            return Err(config_error(
                path,
                format!(
                    "num_channels {} is not supported (RGB only)",
                    raw.num_channels
                ),
            ));
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads and parses a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e.to_string()))?;
        Self::from_json(&text, path)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(config_error(path, format!("{key} must be positive")));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(config_error(
                path,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) || self.mlp_hidden() == 0 {
            return Err(config_error(path, "mlp_ratio must be positive"));
        }
        check_image_side(path, "image_size", self.image_size)?;
        if self.image_size < self.patch_size {
            return Err(config_error(path, "image_size is smaller than patch_size"));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(config_error(path, "layer_norm_eps must be positive"));
        }
        Ok(())
    }

    /// The feed-forward layer's hidden width: `int(D · mlp_ratio)`, and for
    /// SwiGLU two thirds of that rounded up to a multiple of 8, as transformers'
    /// `Dinov2SwiGLUFFN` sizes it (`(int(h · 2/3) + 7) // 8 * 8`).
    pub fn mlp_hidden(&self) -> usize {
        let hidden = (self.hidden_size as f64 * self.mlp_ratio) as usize;
        if self.use_swiglu_ffn {
            ((hidden as f64 * 2.0 / 3.0) as usize).div_ceil(8) * 8
        } else {
            hidden
        }
    }

    /// Side of the trained position grid (37 for 518-pixel checkpoints).
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The encoder's shape for the shared transformer layers.
    pub(crate) fn transformer(&self) -> TransformerConfig {
        TransformerConfig {
            width: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            mlp_width: self.mlp_hidden(),
            activation: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            layer_scale: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Dinov2Config> {
        Dinov2Config::from_json(json, Path::new("dir/config.json"))
    }

    #[test]
    fn an_image_size_beyond_the_cap_is_refused_by_name() {
        let err = parse(r#"{"model_type": "dinov2", "image_size": 65534}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dir/config.json") && err.contains("image_size 65534"),
            "{err}"
        );
    }

    #[test]
    fn defaults_follow_each_config_class() {
        let c = parse(r#"{"model_type": "dinov2"}"#).unwrap();
        assert_eq!(
            (c.patch_size, c.num_register_tokens, c.mlp_hidden()),
            (14, 0, 3072)
        );
        let c = parse(r#"{"model_type": "dinov2_with_registers"}"#).unwrap();
        assert_eq!((c.patch_size, c.num_register_tokens), (16, 4));
        assert_eq!(c.variant, Dinov2Variant::WithRegisters);
    }

    #[test]
    fn swiglu_hidden_size_is_rounded_as_the_reference() {
        // facebook/dinov2-giant: 1536 · 4 = 6144 -> 4096; the fixture: 160 -> 106 -> 112.
        let giant = parse(r#"{"model_type": "dinov2", "hidden_size": 1536, "num_attention_heads": 24, "use_swiglu_ffn": true}"#).unwrap();
        assert_eq!(giant.mlp_hidden(), 4096);
        let tiny = parse(r#"{"model_type": "dinov2", "hidden_size": 40, "num_attention_heads": 4, "use_swiglu_ffn": true, "hidden_act": "silu"}"#).unwrap();
        assert_eq!(tiny.mlp_hidden(), 112);
    }

    #[test]
    fn bad_configs_name_the_file_and_the_cause() {
        for (json, cause) in [
            (r#"{"model_type": "clip"}"#, "model_type 'clip'"),
            (r#"{"hidden_size": 40}"#, "model_type is missing"),
            (
                r#"{"model_type": "dinov2", "hidden_act": "relu"}"#,
                "hidden_act 'relu'",
            ),
            (
                r#"{"model_type": "dinov2", "hidden_size": 50}"#,
                "multiple of num_attention_heads",
            ),
            (
                r#"{"model_type": "dinov2", "num_channels": 1}"#,
                "num_channels 1",
            ),
            (
                r#"{"model_type": "dinov2", "image_size": [224, 224]}"#,
                "image_size: invalid type",
            ),
            (
                r#"{"model_type": "dinov2", "use_swiglu_ffn": "yes"}"#,
                "use_swiglu_ffn: invalid type",
            ),
            ("[1, 2]", "not a DINOv2 config"),
            (
                r#"{"model_type": "dinov2", "patch_size": 0}"#,
                "patch_size must be positive",
            ),
            ("not json", "invalid JSON"),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(
                e.contains("dir/config.json") && e.contains(cause),
                "{json}: {e}"
            );
        }
    }
}
