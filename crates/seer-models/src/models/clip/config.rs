//! Model hyper-parameters, read from either checkpoint layout into one description.
//!
//! transformers keeps them in `config.json` (`text_config`/`vision_config`); open_clip
//! in `open_clip_config.json` (`model_cfg.vision_cfg`/`model_cfg.text_cfg`, with
//! `preprocess_cfg` beside it). Options of open_clip that seer does not implement are
//! refused by name rather than silently ignored.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::nn::config::{check_eps, check_image_side};
pub use crate::nn::config::{Activation, TransformerConfig};

/// Which library's naming and conventions a checkpoint follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Transformers,
    OpenClip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionPool {
    /// The class token.
    Token,
    /// Mean of the patch tokens.
    Mean,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub transformer: TransformerConfig,
    pub ln_pre: bool,
    pub pool: VisionPool,
    /// Only matters for mean pooling: LayerNorm after (true) or before averaging.
    pub final_ln_after_pool: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResNetConfig {
    pub image_size: usize,
    pub layers: [usize; 4],
    pub width: usize,
    pub heads: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VisionConfig {
    Vit(VitConfig),
    ResNet(ResNetConfig),
}

impl VisionConfig {
    pub fn image_size(&self) -> usize {
        match self {
            Self::Vit(c) => c.image_size,
            Self::ResNet(c) => c.image_size,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub context_length: usize,
    pub transformer: TransformerConfig,
    /// The text projection is an `nn.Linear` with a bias (open_clip `proj_bias`).
    pub proj_bias: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClipConfig {
    pub layout: Layout,
    pub embed_dim: usize,
    pub vision: VisionConfig,
    pub text: TextConfig,
    /// open_clip `CustomTextCLIP` keeps the text tower under `text.`.
    pub text_prefix: String,
}

fn config_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Typed look-ups in a JSON object, with defaults and errors naming the file and key.
struct Fields<'a> {
    value: Option<&'a Value>,
    path: &'a Path,
    section: &'a str,
}

impl<'a> Fields<'a> {
    fn new(value: Option<&'a Value>, path: &'a Path, section: &'a str) -> Self {
        Self {
            value,
            path,
            section,
        }
    }

    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.value.and_then(|v| v.get(key)).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, what: &str) -> ModelError {
        config_error(self.path, format!("{}{key} must be {what}", self.section))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(key, "a positive integer")),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(key, "a number")),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, "true or false")),
        }
    }

    fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.bad(key, "a string")),
        }
    }

    /// Refuses a feature seer does not implement, unless it is at its neutral value.
    fn refuse_if_set(&self, key: &str) -> Result<()> {
        let set = match self.raw(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => !s.is_empty() && s != "default" && s != "learnable",
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(_) => true,
        };
        if set {
            return Err(ModelError::Unsupported(format!(
                "{}: option {}{key} is not supported by seer",
                self.path.display(),
                self.section
            )));
        }
        Ok(())
    }
}

fn parse_json(text: &str, path: &Path) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| config_error(path, format!("invalid JSON: {e}")))
}

impl ClipConfig {
    /// Parses a transformers `CLIPModel` `config.json`; absent fields take the
    /// defaults of transformers' `CLIPTextConfig`/`CLIPVisionConfig`.
    pub fn from_transformers_json(text: &str, path: &Path) -> Result<Self> {
        let root = parse_json(text, path)?;
        if let Some(kind) = root.get("model_type").and_then(Value::as_str) {
            if kind != "clip" {
                return Err(ModelError::Unsupported(format!(
                    "{}: model_type '{kind}' (seer reads model_type 'clip')",
                    path.display()
                )));
            }
        }
        let top = Fields::new(Some(&root), path, "");
        let t = Fields::new(root.get("text_config"), path, "text_config.");
        let v = Fields::new(root.get("vision_config"), path, "vision_config.");

        let text_width = t.usize_or("hidden_size", 512)?;
        let text = TextConfig {
            vocab_size: t.usize_or("vocab_size", 49408)?,
            context_length: t.usize_or("max_position_embeddings", 77)?,
            transformer: TransformerConfig {
                width: text_width,
                layers: t.usize_or("num_hidden_layers", 12)?,
                heads: t.usize_or("num_attention_heads", 8)?,
                mlp_width: t.usize_or("intermediate_size", 2048)?,
                activation: Activation::parse(t.str_or("hidden_act", "quick_gelu")?, path)?,
                layer_norm_eps: t.f64_or("layer_norm_eps", 1e-5)?,
                layer_scale: false,
            },
            proj_bias: false,
        };
        let vision = VitConfig {
            image_size: v.usize_or("image_size", 224)?,
            patch_size: v.usize_or("patch_size", 32)?,
            transformer: TransformerConfig {
                width: v.usize_or("hidden_size", 768)?,
                layers: v.usize_or("num_hidden_layers", 12)?,
                heads: v.usize_or("num_attention_heads", 12)?,
                mlp_width: v.usize_or("intermediate_size", 3072)?,
                activation: Activation::parse(v.str_or("hidden_act", "quick_gelu")?, path)?,
                layer_norm_eps: v.f64_or("layer_norm_eps", 1e-5)?,
                layer_scale: false,
            },
            ln_pre: true,
            pool: VisionPool::Token,
            final_ln_after_pool: false,
        };
        let cfg = Self {
            layout: Layout::Transformers,
            embed_dim: top.usize_or("projection_dim", 512)?,
            vision: VisionConfig::Vit(vision),
            text,
            text_prefix: "text_model".into(),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Parses open_clip's `open_clip_config.json` (`{"model_cfg": ..}`) or a bare
    /// open_clip model config (`{"embed_dim": .., "vision_cfg": .., "text_cfg": ..}`).
    pub fn from_open_clip_json(text: &str, path: &Path) -> Result<Self> {
        let root = parse_json(text, path)?;
        let model = root.get("model_cfg").unwrap_or(&root);
        let top = Fields::new(Some(model), path, "");
        let v = Fields::new(model.get("vision_cfg"), path, "vision_cfg.");
        let t = Fields::new(model.get("text_cfg"), path, "text_cfg.");
        if model.get("vision_cfg").is_none() || model.get("text_cfg").is_none() {
            return Err(config_error(path, "expected vision_cfg and text_cfg"));
        }
        for key in [
            "timm_model_name",
            "attentional_pool",
            "qk_norm",
            "scaled_cosine_attn",
        ] {
            v.refuse_if_set(key)?;
        }
        for key in [
            "scale_heads",
            "scale_attn_inner",
            "scale_attn",
            "scale_fc",
            "patch_dropout",
        ] {
            // patch_dropout only acts in training, but the others change inference.
            if key != "patch_dropout" {
                v.refuse_if_set(key)?;
                t.refuse_if_set(key)?;
            }
        }
        v.refuse_if_set("pos_embed_type")?;
        for key in [
            "hf_model_name",
            "embed_cls",
            "no_causal_mask",
            "qk_norm",
            "scaled_cosine_attn",
        ] {
            t.refuse_if_set(key)?;
        }
        let text_pool = t.str_or("pool_type", "argmax")?;
        if text_pool != "argmax" && text_pool != "eos" {
            return Err(ModelError::Unsupported(format!(
                "{}: text_cfg.pool_type '{text_pool}' (seer pools at the end-of-text token)",
                path.display()
            )));
        }
        if t.str_or("proj_type", "linear")? != "linear" {
            return Err(ModelError::Unsupported(format!(
                "{}: text_cfg.proj_type other than 'linear'",
                path.display()
            )));
        }

        let activation = if top.bool_or("quick_gelu", false)? {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        let eps = |f: &Fields| -> Result<f64> {
            let norm = f.raw("norm_kwargs");
            Ok(norm
                .and_then(|n| n.get("eps"))
                .and_then(Value::as_f64)
                .unwrap_or(1e-5))
        };

        let text_width = t.usize_or("width", 512)?;
        let text = TextConfig {
            vocab_size: t.usize_or("vocab_size", 49408)?,
            context_length: t.usize_or("context_length", 77)?,
            transformer: TransformerConfig {
                width: text_width,
                layers: t.usize_or("layers", 12)?,
                heads: t.usize_or("heads", 8)?,
                mlp_width: (text_width as f64 * t.f64_or("mlp_ratio", 4.0)?) as usize,
                activation,
                layer_norm_eps: eps(&t)?,
                layer_scale: t.raw("ls_init_value").is_some(),
            },
            proj_bias: t.bool_or("proj_bias", false)?,
        };

        let image_size = match v.raw("image_size") {
            Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => {
                a[0].as_u64().unwrap_or(0) as usize
            }
            Some(Value::Array(_)) => {
                return Err(ModelError::Unsupported(format!(
                    "{}: non-square vision_cfg.image_size",
                    path.display()
                )))
            }
            _ => v.usize_or("image_size", 224)?,
        };
        let width = v.usize_or("width", 768)?;
        let head_width = v.usize_or("head_width", 64)?;
        let vision = match v.raw("layers") {
            Some(Value::Array(layers)) => {
                let layers: Vec<usize> = layers
                    .iter()
                    .map(|l| l.as_u64().map(|n| n as usize))
                    .collect::<Option<_>>()
                    .filter(|l: &Vec<usize>| l.len() == 4)
                    .ok_or_else(|| v.bad("layers", "an integer or a list of 4 integers"))?;
                VisionConfig::ResNet(ResNetConfig {
                    image_size,
                    layers: [layers[0], layers[1], layers[2], layers[3]],
                    width,
                    heads: width * 32 / head_width,
                })
            }
            _ => {
                let pool = match v.str_or("pool_type", "tok")? {
                    "tok" => VisionPool::Token,
                    "avg" => VisionPool::Mean,
                    other => {
                        return Err(ModelError::Unsupported(format!(
                            "{}: vision_cfg.pool_type '{other}'",
                            path.display()
                        )))
                    }
                };
                VisionConfig::Vit(VitConfig {
                    image_size,
                    patch_size: v.usize_or("patch_size", 16)?,
                    transformer: TransformerConfig {
                        width,
                        layers: v.usize_or("layers", 12)?,
                        heads: width / head_width,
                        mlp_width: (width as f64 * v.f64_or("mlp_ratio", 4.0)?) as usize,
                        activation,
                        layer_norm_eps: eps(&v)?,
                        layer_scale: v.raw("ls_init_value").is_some(),
                    },
                    ln_pre: !v.bool_or("no_ln_pre", false)?,
                    pool,
                    final_ln_after_pool: v.bool_or("final_ln_after_pool", false)?,
                })
            }
        };
        let custom_text = top.bool_or("custom_text", false)?;
        let cfg = Self {
            layout: Layout::OpenClip,
            embed_dim: top.usize_or("embed_dim", 512)?,
            vision,
            text,
            text_prefix: if custom_text {
                "text".into()
            } else {
                String::new()
            },
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let check_heads = |name: &str, t: &TransformerConfig| {
            if t.heads == 0 || !t.width.is_multiple_of(t.heads) {
                return Err(config_error(
                    path,
                    format!(
                        "{name} width {} is not divisible by {} heads",
                        t.width, t.heads
                    ),
                ));
            }
            Ok(())
        };
        check_heads("text", &self.text.transformer)?;
        let (text_key, vision_key) = match self.layout {
            Layout::Transformers => ("text_config.layer_norm_eps", "vision_config.layer_norm_eps"),
            Layout::OpenClip => ("text_cfg.norm_kwargs.eps", "vision_cfg.norm_kwargs.eps"),
        };
        check_eps(path, text_key, self.text.transformer.layer_norm_eps)?;
        if let VisionConfig::Vit(v) = &self.vision {
            check_eps(path, vision_key, v.transformer.layer_norm_eps)?;
        }
        let size_key = match self.layout {
            Layout::Transformers => "vision_config.image_size",
            Layout::OpenClip => "vision_cfg.image_size",
        };
        check_image_side(path, size_key, self.vision.image_size())?;
        match &self.vision {
            VisionConfig::Vit(v) => {
                check_heads("vision", &v.transformer)?;
                if !v.image_size.is_multiple_of(v.patch_size) {
                    return Err(config_error(
                        path,
                        format!(
                            "image size {} is not a multiple of patch size {}",
                            v.image_size, v.patch_size
                        ),
                    ));
                }
            }
            VisionConfig::ResNet(r) => {
                // A stage without blocks has no downsampling: the attention
                // pool's position table would not match the grid.
                if r.layers.contains(&0) {
                    return Err(config_error(
                        path,
                        format!("vision_cfg.layers {:?} must all be positive", r.layers),
                    ));
                }
                if !r.image_size.is_multiple_of(32)
                    || r.heads == 0
                    || !(r.width * 32).is_multiple_of(r.heads)
                {
                    return Err(config_error(path, "ResNet image size must be a multiple of 32 and its width divisible by the heads"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.json")
    }

    #[test]
    fn transformers_defaults_are_vit_b_32() {
        let cfg = ClipConfig::from_transformers_json("{}", p()).unwrap();
        let VisionConfig::Vit(v) = &cfg.vision else {
            panic!("not a ViT")
        };
        assert_eq!(
            (
                v.image_size,
                v.patch_size,
                v.transformer.width,
                v.transformer.layers,
                v.transformer.heads
            ),
            (224, 32, 768, 12, 12)
        );
        assert_eq!(
            (
                cfg.text.transformer.width,
                cfg.text.transformer.layers,
                cfg.text.context_length
            ),
            (512, 12, 77)
        );
        assert_eq!(cfg.embed_dim, 512);
        assert_eq!(v.transformer.activation, Activation::QuickGelu);
    }

    #[test]
    fn open_clip_vit_l_14_and_rn50() {
        let vit = r#"{"model_cfg": {"embed_dim": 768, "vision_cfg": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}, "preprocess_cfg": {}}"#;
        let cfg = ClipConfig::from_open_clip_json(vit, p()).unwrap();
        let VisionConfig::Vit(v) = &cfg.vision else {
            panic!("not a ViT")
        };
        assert_eq!(
            (
                v.image_size,
                v.patch_size,
                v.transformer.heads,
                v.transformer.mlp_width
            ),
            (336, 14, 16, 4096)
        );
        assert_eq!(v.transformer.activation, Activation::Gelu);

        let rn = r#"{"embed_dim": 1024, "quick_gelu": true, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#;
        let cfg = ClipConfig::from_open_clip_json(rn, p()).unwrap();
        assert_eq!(
            cfg.vision,
            VisionConfig::ResNet(ResNetConfig {
                image_size: 224,
                layers: [3, 4, 6, 3],
                width: 64,
                heads: 32
            })
        );
        assert_eq!(cfg.text.transformer.activation, Activation::QuickGelu);
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        for (section, option) in [
            ("vision_cfg", r#""timm_model_name": "vit_so400m""#),
            ("vision_cfg", r#""attentional_pool": true"#),
            ("text_cfg", r#""hf_model_name": "xlm-roberta-large""#),
            ("text_cfg", r#""pool_type": "last""#),
        ] {
            let (v, t) = if section == "vision_cfg" {
                (option, "")
            } else {
                ("", option)
            };
            let json = format!(
                r#"{{"vision_cfg": {{"width": 64, "layers": 1 {} {v}}}, "text_cfg": {{"width": 64, "heads": 1 {} {t}}}}}"#,
                if v.is_empty() { "" } else { "," },
                if t.is_empty() { "" } else { "," }
            );
            let err = ClipConfig::from_open_clip_json(&json, p())
                .unwrap_err()
                .to_string();
            let key = option.split('"').nth(1).unwrap();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn malformed_configs_are_errors() {
        for bad in [
            "",
            "[",
            r#"{"model_type": "siglip"}"#,
            r#"{"vision_config": {"hidden_size": -1}}"#,
            r#"{"vision_config": {"hidden_size": 100, "num_attention_heads": 3}}"#,
            r#"{"vision_config": {"image_size": 100, "patch_size": 32}}"#,
        ] {
            assert!(
                ClipConfig::from_transformers_json(bad, p()).is_err(),
                "{bad}"
            );
        }
        assert!(ClipConfig::from_open_clip_json(r#"{"embed_dim": 4}"#, p()).is_err());
    }

    #[test]
    fn out_of_range_sizes_epsilons_and_empty_resnet_stages_are_refused_by_name() {
        // 2^63 px wrapped the position count to one row; 65536 px would size a
        // 51 GB image buffer from a small file.
        for size in ["9223372036854775808", "65536"] {
            let json = format!(r#"{{"vision_config": {{"image_size": {size}}}}}"#);
            let err = ClipConfig::from_transformers_json(&json, p())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("test.json") && err.contains("vision_config.image_size"),
                "{err}"
            );
        }
        let square_zero = r#"{"vision_cfg": {"image_size": [0, 0], "width": 64, "head_width": 64},
            "text_cfg": {"width": 64, "heads": 1}}"#;
        let err = ClipConfig::from_open_clip_json(square_zero, p())
            .unwrap_err()
            .to_string();
        assert!(err.contains("vision_cfg.image_size 0"), "{err}");
        // A negative epsilon made every embedding NaN (null in JSON), silently.
        let err =
            ClipConfig::from_transformers_json(r#"{"text_config": {"layer_norm_eps": -1}}"#, p())
                .unwrap_err()
                .to_string();
        assert!(err.contains("text_config.layer_norm_eps -1"), "{err}");
        let rn = r#"{"vision_cfg": {"image_size": 224, "layers": [1, 2, 1, 0], "width": 64},
            "text_cfg": {"width": 64, "heads": 1}}"#;
        let err = ClipConfig::from_open_clip_json(rn, p())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.json") && err.contains("vision_cfg.layers [1, 2, 1, 0]"),
            "{err}"
        );
    }
}
