//! The SigLIP family as the commands see it: both towers of a transformers
//! `SiglipModel` / `Siglip2Model`, its tokenizer and its image processor.
//!
//! What differs from CLIP (fixtures/families/README.md has the details):
//! - SigLIP squashes images to the exact input size (no shortest-edge resize,
//!   no crop) and SigLIP 2 NaFlex cuts them into a variable grid of patches;
//!   a [`PreprocessConfig`] can say neither, so `preprocess`, `preprocess_rgb`
//!   and `pixels_len` are overridden;
//! - texts are padded to `max_length` (64) on the right and the tower pools
//!   the last position, so the padding rule changes the embedding;
//! - zero-shot scores are a sigmoid per label ([`ScoreRule::Sigmoid`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use seer_image::{
    CropRounding, DecodedImage, ExactResizeConfig, NaflexConfig, NaflexPatches, PreprocessConfig,
    RgbConversion,
};
use seer_models::models::siglip::{PatchGrid, SiglipConfig, SiglipModel, SiglipVariant};
use seer_models::{l2_normalize, Layout, ModelError, ModelFiles, Tensor};
use seer_tokenizer::{SiglipFlavour, SiglipPadding, SiglipTokenizer};
use serde_json::Value;

use crate::error::{file_error, Result};
use crate::loader::LoadOptions;
use crate::tasks::{ImageEncoder, LoadedModel, ScoreRule, TextEncoder};

/// The image processor of the checkpoint's variant.
enum Processor {
    /// SigLIP: resized straight to the input size.
    Exact(ExactResizeConfig),
    /// SigLIP 2 NaFlex: `max_num_patches` patch rows, then the grid as two
    /// floats (rows, cols) so it travels with the pixels through the batching.
    Naflex(NaflexConfig),
}

pub struct Siglip {
    model: SiglipModel,
    tokenizer: SiglipTokenizer,
    processor: Processor,
    /// The processor as the trait's descriptive config (square input, same
    /// mean and std). Never used to preprocess: a shortest-edge resize plus
    /// crop is neither SigLIP's squash nor NaFlex.
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
        let device = options.device.device()?;
        let model = SiglipModel::load(&files, &device, options.precision)?;
        let variant = model.config().variant;
        let processor = read_processor(dir, model.config())?;
        let tokenizer = load_tokenizer(dir, options, variant, model.context_length())?;
        let (side, interpolation, mean, std, do_normalize) = match &processor {
            Processor::Exact(c) => (c.width, c.interpolation, c.mean, c.std, c.do_normalize),
            Processor::Naflex(c) => (
                c.max_num_patches.isqrt() * c.patch_size,
                c.interpolation,
                c.mean,
                c.std,
                c.do_normalize,
            ),
        };
        let described = PreprocessConfig {
            resize_to: side,
            crop_size: side,
            interpolation,
            crop_rounding: CropRounding::RoundHalfEven,
            mean,
            std,
            do_resize: true,
            do_normalize,
            rgb_conversion: RgbConversion::CompositeOnWhite,
        };
        Ok(Self {
            model,
            tokenizer,
            processor,
            described,
            device,
        })
    }

    pub fn into_loaded(self, id: String) -> LoadedModel {
        let siglip = Arc::new(self);
        LoadedModel::encoders(id, "siglip", Some(siglip.clone()), Some(siglip))
    }

    fn finish(features: Tensor, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let features = match normalize {
            true => l2_normalize(&features).map_err(ModelError::from)?,
            false => features,
        };
        Ok(features.to_vec2::<f32>().map_err(ModelError::from)?)
    }
}

/// `preprocessor_config.json` (`SiglipImageProcessor` or, for SigLIP 2,
/// `Siglip2ImageProcessor`); without one, the class defaults (SigLIP: at the
/// model's input size), as transformers would use.
fn read_processor(dir: &Path, config: &SiglipConfig) -> Result<Processor> {
    let path = dir.join("preprocessor_config.json");
    let text = match path.is_file() {
        true => std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?,
        false => "{}".to_string(),
    };
    let patch = config.vision.patch_size;
    if config.variant == SiglipVariant::Siglip2 {
        let cfg = NaflexConfig::from_siglip2_preprocessor_config(&text)
            .map_err(|e| file_error(&path, e))?;
        if cfg.patch_size as usize != patch {
            return Err(file_error(
                &path,
                format!(
                    "cuts {} px patches but the model's are {patch} px",
                    cfg.patch_size
                ),
            ));
        }
        // Every image is padded to max_num_patches patches before the model
        // sees it: bound it by the area of the largest image side seer takes,
        // so a damaged value cannot size a buffer of many gigabytes.
        let max_side = seer_models::nn::config::MAX_IMAGE_SIDE / patch.max(1);
        let limit = max_side * max_side;
        if cfg.max_num_patches as usize > limit {
            return Err(file_error(
                &path,
                format!(
                    "max_num_patches {} is out of range (1 to {limit} for {patch} px patches)",
                    cfg.max_num_patches
                ),
            ));
        }
        return Ok(Processor::Naflex(cfg));
    }
    let image_size = config.vision.image_size;
    let mut cfg = ExactResizeConfig::from_siglip_preprocessor_config(&text)
        .map_err(|e| file_error(&path, e))?;
    if !path.is_file() {
        (cfg.width, cfg.height) = (image_size as u32, image_size as u32);
    }
    if (cfg.width as usize, cfg.height as usize) != (image_size, image_size) {
        return Err(file_error(
            &path,
            format!(
                "resizes to {}x{} px but the model expects {image_size}x{image_size} px",
                cfg.width, cfg.height
            ),
        ));
    }
    Ok(Processor::Exact(cfg))
}

/// The folder's `tokenizer.json`, else its `spiece.model` (what the
/// google/siglip-* repositories ship), else `--tokenizer`. The folder wins:
/// `$SEER_TOKENIZER` usually names CLIP's BPE file, which is no SigLIP
/// tokenizer. Texts are cut to `tokenizer_config.json`'s `model_max_length`
/// when that is shorter than the text tower's positions.
fn load_tokenizer(
    dir: &Path,
    options: &LoadOptions,
    variant: SiglipVariant,
    positions: usize,
) -> Result<SiglipTokenizer> {
    let config = TokenizerConfig::read(dir)?;
    let max_length = config.max_length(positions)?;
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
    // transformers 5 builds Siglip2Tokenizer (lowercasing, `<pad>` padding)
    // for model_type siglip2 whatever tokenizer_config.json names; for
    // model_type siglip it builds the class the config names, and SigLIP 2
    // FixRes folders name GemmaTokenizer (no lowercasing).
    let flavour = match variant {
        SiglipVariant::Siglip2 => SiglipFlavour::Siglip2,
        SiglipVariant::Siglip if config.names_gemma() => SiglipFlavour::Gemma,
        SiglipVariant::Siglip => SiglipFlavour::Siglip,
    };
    Ok(match is_spm {
        true => SiglipTokenizer::from_spiece_model(&path, max_length)?,
        false => SiglipTokenizer::from_file(&path, flavour, max_length)?,
    })
}

/// The folder's `tokenizer_config.json`, read once (absent: every default).
struct TokenizerConfig {
    path: PathBuf,
    root: Option<Value>,
}

impl TokenizerConfig {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let root = if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| file_error(&path, format!("invalid JSON: {e}")))?,
            )
        } else {
            None
        };
        Ok(Self { path, root })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.root.as_ref()?.get(key)
    }

    /// Whether it names a Gemma tokenizer class.
    fn names_gemma(&self) -> bool {
        self.get("tokenizer_class")
            .and_then(Value::as_str)
            .is_some_and(|c| c.starts_with("GemmaTokenizer"))
    }

    /// The padded length: `model_max_length` when set below the position
    /// table, else the table's length. Left padding is refused.
    fn max_length(&self, positions: usize) -> Result<usize> {
        // The tower pools the last position of a right-padded row; left padding
        // would pool a real token instead and silently change every embedding.
        if self.get("padding_side").and_then(Value::as_str) == Some("left") {
            return Err(file_error(
                &self.path,
                "padding_side \"left\" is not supported for SigLIP (seer pads on the right, as the HF SigLIP and SigLIP 2 checkpoints are used)",
            ));
        }
        // transformers writes a huge number when no length is set.
        Ok(match self.get("model_max_length").and_then(Value::as_u64) {
            Some(n) if n >= 2 && (n as usize) < positions => n as usize,
            _ => positions,
        })
    }
}

impl ImageEncoder for Siglip {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.described
    }

    fn pixels_len(&self) -> usize {
        match &self.processor {
            Processor::Exact(c) => 3 * c.width as usize * c.height as usize,
            Processor::Naflex(c) => patch_floats(c) + 2,
        }
    }

    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        match &self.processor {
            Processor::Exact(c) => seer_image::preprocess_exact(image, c),
            Processor::Naflex(c) => with_grid(seer_image::preprocess_naflex(image, c)),
        }
    }

    fn preprocess_rgb(&self, image: &seer_image::image::RgbImage) -> Vec<f32> {
        match &self.processor {
            Processor::Exact(c) => seer_image::preprocess_exact_rgb(image, c),
            Processor::Naflex(c) => with_grid(seer_image::preprocess_naflex_rgb(image, c)),
        }
    }

    /// `normalize: false` is `get_image_features(...).pooler_output` exactly.
    fn embed_pixels(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let features = match &self.processor {
            Processor::Exact(c) => {
                let (h, w) = (c.height as usize, c.width as usize);
                let batch = Tensor::from_vec(pixels, (n, 3, h, w), &self.device)
                    .map_err(ModelError::from)?;
                self.model.image_features(&batch)?
            }
            Processor::Naflex(c) => {
                let floats = patch_floats(c);
                let mut patches = Vec::with_capacity(n * floats);
                let mut grids = Vec::with_capacity(n);
                for image in pixels.chunks_exact(floats + 2) {
                    patches.extend_from_slice(&image[..floats]);
                    grids.push(PatchGrid {
                        rows: image[floats] as usize,
                        cols: image[floats + 1] as usize,
                    });
                }
                let row = 3 * (c.patch_size as usize).pow(2);
                let batch = Tensor::from_vec(patches, (n, floats / row, row), &self.device)
                    .map_err(ModelError::from)?;
                self.model.image_features_naflex(&batch, &grids)?
            }
        };
        Self::finish(features, normalize)
    }
}

/// Floats in one image's padded NaFlex patches.
fn patch_floats(c: &NaflexConfig) -> usize {
    c.max_num_patches as usize * 3 * (c.patch_size as usize).pow(2)
}

/// The patches with their grid appended (exact in f32: at most `max_num_patches`).
fn with_grid(p: NaflexPatches) -> Vec<f32> {
    let mut out = p.patches;
    out.extend([p.rows as f32, p.cols as f32]);
    out
}

impl TextEncoder for Siglip {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    /// Ids with the end-of-sequence token last, unpadded. An encoding failure (which the
    /// tokenizers crate reports only for broken pipelines) gives no ids and a
    /// warning; [`TextEncoder::embed_text_batch`] reports it as an error.
    fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text).unwrap_or_else(|e| {
            tracing::warn!("cannot tokenize {text:?}: {e}");
            Vec::new()
        })
    }

    /// Padded to `max_length` on the right with the attention mask, as SigLIP
    /// was trained and as `SiglipModel(**tokenizer(..., padding="max_length"))`
    /// runs (SigLIP pads with `</s>`, SigLIP 2 with `<pad>`).
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

    /// The padded length a folder's `tokenizer_config.json` gives.
    fn max_length(dir: &Path, positions: usize) -> Result<usize> {
        TokenizerConfig::read(dir)?.max_length(positions)
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
        let err = load_tokenizer(
            dir.path(),
            &LoadOptions::default(),
            SiglipVariant::Siglip,
            64,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("spiece.model") && err.contains("--tokenizer"),
            "{err}"
        );
    }
}
