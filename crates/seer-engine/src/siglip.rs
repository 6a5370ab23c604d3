//! The SigLIP family as the commands see it: both towers of a transformers
//! `SiglipModel`, its `SiglipTokenizer` and its `SiglipImageProcessor`.
//!
//! What differs from CLIP (fixtures/families/README.md has the details):
//! - images are squashed to the exact input size (no shortest-edge resize, no
//!   crop), which a [`PreprocessConfig`] cannot say, so `preprocess` and
//!   `preprocess_rgb` are overridden;
//! - texts are padded to `max_length` (64) with `</s>` and the tower pools the
//!   last position, so the padding rule changes the embedding;
//! - zero-shot scores are a sigmoid per label ([`ScoreRule::Sigmoid`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use seer_image::{CropRounding, DecodedImage, ExactResizeConfig, PreprocessConfig, RgbConversion};
use seer_models::models::siglip::{SiglipConfig, SiglipModel, SiglipVariant};
use seer_models::{l2_normalize, Layout, ModelError, ModelFiles, Tensor};
use seer_tokenizer::{SiglipFlavour, SiglipPadding, SiglipTokenizer};
use serde_json::Value;

use crate::error::{file_error, EngineError, Result};
use crate::loader::LoadOptions;
use crate::tasks::{ImageEncoder, LoadedModel, ScoreRule, TextEncoder};

pub struct Siglip {
    model: SiglipModel,
    tokenizer: SiglipTokenizer,
    resize: ExactResizeConfig,
    /// `resize` as the trait's descriptive config (square input, same mean and
    /// std). Never used to preprocess: a shortest-edge resize plus crop is not
    /// SigLIP's squash for non-square images.
    described: PreprocessConfig,
    device: seer_models::Device,
}

impl Siglip {
    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::from_dir(dir)?;
        if files.layout == Layout::OpenClip {
            return Err(file_error(
                &files.config,
                "open_clip SigLIP checkpoints are not supported yet; use the transformers checkpoint (e.g. google/siglip-base-patch16-224)",
            ));
        }
        // Checked before the weights load: NaFlex needs its own processor and
        // batching (SigLIP 2), which this type does not do.
        let config = SiglipConfig::from_file(&files.config)?;
        if config.variant != SiglipVariant::Siglip {
            return Err(EngineError::FamilyNotBuilt {
                path: files.config.clone(),
                model_type: "siglip2".into(),
                family: "siglip",
            });
        }
        let device = options.device.device()?;
        let model = SiglipModel::load(&files, &device, options.precision)?;
        let resize = read_processor(dir, model.image_size())?;
        let tokenizer = load_tokenizer(dir, options, model.context_length())?;
        let described = PreprocessConfig {
            resize_to: resize.width,
            crop_size: resize.width,
            interpolation: resize.interpolation,
            crop_rounding: CropRounding::RoundHalfEven,
            mean: resize.mean,
            std: resize.std,
            do_resize: true,
            do_normalize: resize.do_normalize,
            rgb_conversion: RgbConversion::CompositeOnWhite,
        };
        Ok(Self {
            model,
            tokenizer,
            resize,
            described,
            device,
        })
    }

    pub fn into_loaded(self, id: String) -> LoadedModel {
        let siglip = Arc::new(self);
        LoadedModel {
            id,
            family: "siglip",
            image: Some(siglip.clone()),
            text: Some(siglip),
        }
    }

    fn finish(features: Tensor, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let features = match normalize {
            true => l2_normalize(&features).map_err(ModelError::from)?,
            false => features,
        };
        Ok(features.to_vec2::<f32>().map_err(ModelError::from)?)
    }
}

/// `preprocessor_config.json` (`SiglipImageProcessor`); without one, the
/// class defaults at the model's input size, as transformers would use.
fn read_processor(dir: &Path, image_size: usize) -> Result<ExactResizeConfig> {
    let path = dir.join("preprocessor_config.json");
    let cfg = if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        ExactResizeConfig::from_siglip_preprocessor_config(&text)
            .map_err(|e| file_error(&path, e))?
    } else {
        let mut cfg = ExactResizeConfig::from_siglip_preprocessor_config("{}")?;
        (cfg.width, cfg.height) = (image_size as u32, image_size as u32);
        cfg
    };
    if (cfg.width as usize, cfg.height as usize) != (image_size, image_size) {
        return Err(file_error(
            &path,
            format!(
                "resizes to {}x{} px but the model expects {image_size}x{image_size} px",
                cfg.width, cfg.height
            ),
        ));
    }
    Ok(cfg)
}

/// The folder's `tokenizer.json`, else its `spiece.model` (what the
/// google/siglip-* repositories ship), else `--tokenizer`. The folder wins:
/// `$SEER_TOKENIZER` usually names CLIP's BPE file, which is no SigLIP
/// tokenizer. Texts are cut to `tokenizer_config.json`'s `model_max_length`
/// when that is shorter than the text tower's positions.
fn load_tokenizer(dir: &Path, options: &LoadOptions, positions: usize) -> Result<SiglipTokenizer> {
    let max_length = max_length(dir, positions)?;
    let path = ["tokenizer.json", "spiece.model"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .or_else(|| options.tokenizer.clone())
        .ok_or_else(|| {
            file_error(
                dir,
                "the folder has no SigLIP tokenizer (tokenizer.json or spiece.model); pass --tokenizer FILE",
            )
        })?;
    let is_spm = path.extension().is_some_and(|e| e == "model");
    Ok(match is_spm {
        true => SiglipTokenizer::from_spiece_model(&path, max_length)?,
        false => SiglipTokenizer::from_file(&path, SiglipFlavour::Siglip, max_length)?,
    })
}

fn max_length(dir: &Path, positions: usize) -> Result<usize> {
    let path: PathBuf = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(positions);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
    let root: Value =
        serde_json::from_str(&text).map_err(|e| file_error(&path, format!("invalid JSON: {e}")))?;
    // The tower pools the last position of a right-padded row; left padding
    // would pool a real token instead and silently change every embedding.
    if root.get("padding_side").and_then(Value::as_str) == Some("left") {
        return Err(file_error(
            &path,
            "padding_side \"left\" is not supported for SigLIP (it pads on the right)",
        ));
    }
    // transformers writes a huge number when no length is set.
    Ok(match root.get("model_max_length").and_then(Value::as_u64) {
        Some(n) if n >= 2 && (n as usize) < positions => n as usize,
        _ => positions,
    })
}

impl ImageEncoder for Siglip {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.described
    }

    fn pixels_len(&self) -> usize {
        3 * self.resize.width as usize * self.resize.height as usize
    }

    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        seer_image::preprocess_exact(image, &self.resize)
    }

    fn preprocess_rgb(&self, image: &seer_image::image::RgbImage) -> Vec<f32> {
        seer_image::preprocess_exact_rgb(image, &self.resize)
    }

    /// `normalize: false` is `get_image_features(...).pooler_output` exactly.
    fn embed_pixels(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let (h, w) = (self.resize.height as usize, self.resize.width as usize);
        let batch =
            Tensor::from_vec(pixels, (n, 3, h, w), &self.device).map_err(ModelError::from)?;
        Self::finish(self.model.image_features(&batch)?, normalize)
    }
}

impl TextEncoder for Siglip {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    /// Ids with `</s>` last, unpadded. An encoding failure (which the
    /// tokenizers crate reports only for broken pipelines) gives no ids and a
    /// warning; [`TextEncoder::embed_text_batch`] reports it as an error.
    fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text).unwrap_or_else(|e| {
            tracing::warn!("cannot tokenize {text:?}: {e}");
            Vec::new()
        })
    }

    /// Padded to `max_length` with the attention mask, as SigLIP was trained
    /// and as `SiglipModel(**tokenizer(..., padding="max_length"))` runs.
    fn embed_text_batch(&self, texts: &[String], normalize: bool) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encoded = self
            .tokenizer
            .encode_batch(&texts, SiglipPadding::MaxLength)?;
        let features = self
            .model
            .text_features(&encoded.ids, Some(&encoded.mask))?;
        Self::finish(features, normalize)
    }

    fn score_rule(&self) -> ScoreRule {
        ScoreRule::Sigmoid {
            scale: self.model.logit_scale(),
            bias: self.model.logit_bias(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn text_length_follows_tokenizer_config_within_the_tower() {
        let cases = [
            (r#"{"model_max_length": 16}"#, 16),
            (
                r#"{"model_max_length": 1000000000000000019884624838656}"#,
                64,
            ),
            (r#"{"model_max_length": 128}"#, 64),
            ("{}", 64),
        ];
        for (json, want) in cases {
            let dir = folder(&[("tokenizer_config.json", json)]);
            assert_eq!(max_length(dir.path(), 64).unwrap(), want, "{json}");
        }
        assert_eq!(max_length(folder(&[]).path(), 64).unwrap(), 64);
        let dir = folder(&[("tokenizer_config.json", r#"{"padding_side": "left"}"#)]);
        let err = max_length(dir.path(), 64).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("left"),
            "{err}"
        );
    }

    #[test]
    fn open_clip_siglip_and_missing_tokenizers_are_clear_errors() {
        let dir = folder(&[
            (
                "open_clip_config.json",
                r#"{"model_cfg": {"init_logit_bias": -10}}"#,
            ),
            ("open_clip_model.safetensors", ""),
        ]);
        let err = crate::LoadedModel::load_dir(dir.path(), &LoadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("open_clip") && err.contains("not supported yet"),
            "{err}"
        );

        let dir = folder(&[]);
        let err = load_tokenizer(dir.path(), &LoadOptions::default(), 64)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("spiece.model") && err.contains("--tokenizer"),
            "{err}"
        );
    }
}
