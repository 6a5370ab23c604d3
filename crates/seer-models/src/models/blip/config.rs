//! `config.json` of a transformers BLIP checkpoint (`model_type: blip`):
//! `BlipForConditionalGeneration`, `BlipForImageTextRetrieval` or
//! `BlipForQuestionAnswering`.
//!
//! Absent fields take the defaults of transformers' `BlipVisionConfig` and
//! `BlipTextConfig`. Values seer cannot run are refused with the file named.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::nn::config::{check_eps, check_image_side, Activation, TransformerConfig};

/// Which head the checkpoint carries, from `architectures` (or, without it,
/// from which top-level modules its weights have).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlipHead {
    /// `BlipForConditionalGeneration`: vision tower + text decoder (captions).
    Captioning,
    /// `BlipForImageTextRetrieval`: vision tower + text encoder, ITM and ITC heads.
    Retrieval,
    /// `BlipForQuestionAnswering`: vision tower, text encoder and text decoder.
    QuestionAnswering,
}

impl BlipHead {
    fn from_architecture(name: &str) -> Option<Self> {
        match name {
            "BlipForConditionalGeneration" => Some(Self::Captioning),
            "BlipForImageTextRetrieval" => Some(Self::Retrieval),
            "BlipForQuestionAnswering" => Some(Self::QuestionAnswering),
            _ => None,
        }
    }

    /// The transformers class name, for messages.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Captioning => "BlipForConditionalGeneration",
            Self::Retrieval => "BlipForImageTextRetrieval",
            Self::QuestionAnswering => "BlipForQuestionAnswering",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BlipVisionConfig {
    /// The square input side (384 in the published checkpoints).
    pub image_size: usize,
    pub patch_size: usize,
    pub transformer: TransformerConfig,
}

impl BlipVisionConfig {
    /// Tokens the tower outputs: the class token plus one per patch.
    pub fn tokens(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// The BERT-style text model (`BlipTextModel`): post-norm layers, with
/// cross-attention to the image (or question) when `is_decoder`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BlipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of what the cross-attention reads (the vision tower's width).
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_positions: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// Whether each layer has a cross-attention block (transformers builds one
    /// when the config says `is_decoder`, its default, for the encoder too).
    pub cross_attention: bool,
    /// `[DEC]`: replaces `[CLS]` at the start of every generated text.
    pub bos_token_id: u32,
    /// `[SEP]`: generation stops at it.
    pub sep_token_id: u32,
    pub pad_token_id: u32,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BlipConfig {
    pub head: BlipHead,
    pub vision: BlipVisionConfig,
    pub text: BlipTextConfig,
    /// Width of the contrastive (ITC) features of the retrieval head.
    pub image_text_hidden_size: usize,
}

// The JSON as transformers writes it; unknown keys are ignored.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    text_config: RawText,
    #[serde(default)]
    vision_config: RawVision,
    image_text_hidden_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawText {
    vocab_size: usize,
    hidden_size: usize,
    encoder_hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    is_decoder: bool,
    bos_token_id: Option<u32>,
    sep_token_id: Option<u32>,
    pad_token_id: Option<u32>,
}

impl Default for RawText {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-12,
            is_decoder: true,
            bos_token_id: Some(30522),
            sep_token_id: Some(102),
            pad_token_id: Some(0),
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
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for RawVision {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

fn error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl BlipConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| error(path, e.to_string()))?;
        Self::from_json(&text, path, None)
    }

    /// Parses `config.json`; `path` only names the file in errors. `head` is
    /// the head the weights hold, for configs without `architectures`.
    pub fn from_json(text: &str, path: &Path, head: Option<BlipHead>) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| error(path, format!("not a BLIP config: {e}")))?;
        match raw.model_type.as_deref() {
            Some("blip") => {}
            Some(other) => {
                return Err(error(
                    path,
                    format!("model_type '{other}' is not a BLIP checkpoint ('blip')"),
                ))
            }
            None => return Err(error(path, "model_type is missing (expected 'blip')")),
        }
        let from_arch = raw
            .architectures
            .iter()
            .find_map(|a| BlipHead::from_architecture(a));
        let head = match (from_arch, head) {
            (Some(h), _) | (None, Some(h)) => h,
            (None, None) => {
                return Err(error(
                    path,
                    format!(
                        "architectures {:?} names no BLIP head seer runs \
                         (BlipForConditionalGeneration, BlipForImageTextRetrieval, \
                         BlipForQuestionAnswering)",
                        raw.architectures
                    ),
                ))
            }
        };
        let (t, v) = (raw.text_config, raw.vision_config);
        let positive = |section: &str, width: usize, heads: usize, layers: usize, mlp: usize| {
            if width == 0 || heads == 0 || layers == 0 || mlp == 0 || !width.is_multiple_of(heads) {
                return Err(error(
                    path,
                    format!(
                        "{section}: hidden_size {width} must be positive and divisible by \
                         num_attention_heads {heads}; layers and intermediate_size positive"
                    ),
                ));
            }
            Ok(())
        };
        positive(
            "vision_config",
            v.hidden_size,
            v.num_attention_heads,
            v.num_hidden_layers,
            v.intermediate_size,
        )?;
        positive(
            "text_config",
            t.hidden_size,
            t.num_attention_heads,
            t.num_hidden_layers,
            t.intermediate_size,
        )?;
        if v.patch_size == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(error(
                path,
                format!(
                    "vision_config: image_size {} must be a positive multiple of patch_size {}",
                    v.image_size, v.patch_size
                ),
            ));
        }
        check_image_side(path, "vision_config.image_size", v.image_size)?;
        check_eps(path, "text_config.layer_norm_eps", t.layer_norm_eps)?;
        check_eps(path, "vision_config.layer_norm_eps", v.layer_norm_eps)?;
        if t.vocab_size == 0 || t.max_position_embeddings == 0 {
            return Err(error(
                path,
                "text_config: vocab_size and max_position_embeddings must be positive",
            ));
        }
        let token = |name: &str, id: Option<u32>| -> Result<u32> {
            match id {
                Some(id) if (id as usize) < t.vocab_size => Ok(id),
                Some(id) => Err(error(
                    path,
                    format!(
                        "text_config: {name} {id} is outside the vocabulary ({})",
                        t.vocab_size
                    ),
                )),
                None => Err(error(path, format!("text_config: {name} is missing"))),
            }
        };
        let text = BlipTextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.hidden_size,
            encoder_hidden_size: t.encoder_hidden_size,
            intermediate_size: t.intermediate_size,
            layers: t.num_hidden_layers,
            heads: t.num_attention_heads,
            max_positions: t.max_position_embeddings,
            activation: Activation::parse(&t.hidden_act, path)?,
            layer_norm_eps: t.layer_norm_eps,
            cross_attention: t.is_decoder,
            bos_token_id: token("bos_token_id", t.bos_token_id)?,
            sep_token_id: token("sep_token_id", t.sep_token_id)?,
            pad_token_id: token("pad_token_id", t.pad_token_id)?,
        };
        if !text.cross_attention && head != BlipHead::Retrieval {
            return Err(error(
                path,
                "text_config.is_decoder is false: the text model has no cross-attention, \
                 which captioning and question answering need",
            ));
        }
        if text.encoder_hidden_size != v.hidden_size && head != BlipHead::QuestionAnswering {
            return Err(error(
                path,
                format!(
                    "text_config.encoder_hidden_size {} differs from vision_config.hidden_size {}",
                    text.encoder_hidden_size, v.hidden_size
                ),
            ));
        }
        Ok(Self {
            head,
            vision: BlipVisionConfig {
                image_size: v.image_size,
                patch_size: v.patch_size,
                transformer: TransformerConfig {
                    width: v.hidden_size,
                    layers: v.num_hidden_layers,
                    heads: v.num_attention_heads,
                    mlp_width: v.intermediate_size,
                    activation: Activation::parse(&v.hidden_act, path)?,
                    layer_norm_eps: v.layer_norm_eps,
                    layer_scale: false,
                },
            },
            text,
            image_text_hidden_size: raw.image_text_hidden_size.unwrap_or(256),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BlipConfig> {
        BlipConfig::from_json(json, Path::new("config.json"), None)
    }

    #[test]
    fn an_image_size_beyond_the_cap_is_refused_by_name() {
        // 2^63 wrapped the position count to one row before the cap.
        for size in [1u64 << 63, 65536] {
            let json = format!(
                r#"{{"model_type": "blip", "architectures": ["BlipForConditionalGeneration"], "text_config": {{}}, "vision_config": {{"image_size": {size}, "patch_size": 16}}}}"#
            );
            let err = parse(&json).unwrap_err().to_string();
            assert!(
                err.contains("config.json") && err.contains("vision_config.image_size"),
                "{err}"
            );
        }
    }

    #[test]
    fn defaults_are_transformers_defaults_and_the_head_comes_from_architectures() {
        let cfg = parse(
            r#"{"model_type": "blip", "architectures": ["BlipForQuestionAnswering"],
                "text_config": {}, "vision_config": {}}"#,
        )
        .unwrap();
        assert_eq!(cfg.head, BlipHead::QuestionAnswering);
        assert_eq!(cfg.vision.image_size, 384);
        assert_eq!(cfg.vision.tokens(), 577);
        assert_eq!(cfg.text.heads, 8);
        assert_eq!(cfg.text.bos_token_id, 30522);
        assert_eq!(cfg.text.sep_token_id, 102);
        assert!(cfg.text.cross_attention);
        assert_eq!(cfg.text.activation, Activation::Gelu);
        assert_eq!(cfg.image_text_hidden_size, 256);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        for (json, needle) in [
            (r#"{"model_type": "clip"}"#, "not a BLIP checkpoint"),
            (
                r#"{"architectures": ["BlipForConditionalGeneration"]}"#,
                "model_type is missing",
            ),
            (
                r#"{"model_type": "blip", "architectures": ["BlipModel"]}"#,
                "names no BLIP head",
            ),
            (
                r#"{"model_type": "blip", "architectures": ["BlipForConditionalGeneration"],
                    "vision_config": {"patch_size": 7}}"#,
                "multiple of patch_size",
            ),
            (
                r#"{"model_type": "blip", "architectures": ["BlipForConditionalGeneration"],
                    "text_config": {"vocab_size": 100}}"#,
                "outside the vocabulary",
            ),
            (
                r#"{"model_type": "blip", "architectures": ["BlipForConditionalGeneration"],
                    "text_config": {"num_attention_heads": 7}}"#,
                "divisible",
            ),
            ("[1, 2]", "not a BLIP config"),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("config.json"),
                "{json}: {err}"
            );
        }
    }
}
