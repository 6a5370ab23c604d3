//! The DINOv2 family as the commands see it: an image-only model (no text
//! tower) whose embedding is `pooler_output`, the CLS token after the final
//! LayerNorm, preprocessed by the checkpoint's `BitImageProcessor`.

use std::path::Path;
use std::sync::Arc;

use seer_image::PreprocessConfig;
use seer_models::models::dinov2::Dinov2Model;
use seer_models::{l2_normalize, ModelError, Tensor};

use crate::error::{file_error, Result};
use crate::loader::LoadOptions;
use crate::tasks::{ImageEncoder, ImageFeatures, LoadedModel};

pub struct Dinov2 {
    model: Dinov2Model,
    preprocess: PreprocessConfig,
    device: seer_models::Device,
}

impl Dinov2 {
    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let device = options.device.device()?;
        let model = Dinov2Model::load_dir(dir, &device, options.precision)?;
        let path = dir.join("preprocessor_config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        let preprocess = PreprocessConfig::from_bit_preprocessor_config(&text)
            .map_err(|e| file_error(&path, e))?;
        let patch = model.config().patch_size;
        // DINOv2 interpolates its position table to any crop, so the model's
        // own image_size does not bound it: a damaged crop_size would size the
        // image buffer (side² × 3 f32) on its own.
        let side = preprocess.crop_size as usize;
        if side > seer_models::nn::config::MAX_IMAGE_SIDE {
            return Err(file_error(
                &path,
                format!(
                    "crop_size {side} is out of range (1 to {} px)",
                    seer_models::nn::config::MAX_IMAGE_SIDE
                ),
            ));
        }
        if !(preprocess.crop_size as usize).is_multiple_of(patch) {
            return Err(file_error(
                &path,
                format!(
                    "crops to {} px, which is not a whole number of {patch}-pixel patches",
                    preprocess.crop_size
                ),
            ));
        }
        Ok(Self {
            model,
            preprocess,
            device,
        })
    }

    pub fn into_loaded(self, id: String) -> LoadedModel {
        LoadedModel::encoders(id, "dinov2", Some(Arc::new(self)), None)
    }
}

impl ImageEncoder for Dinov2 {
    fn embed_dim(&self) -> usize {
        self.model.config().hidden_size
    }

    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// `normalize: false` is `pooler_output` exactly.
    fn embed_pixels(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Result<Vec<Vec<f32>>> {
        self.embed_pixels_as(pixels, n, ImageFeatures::Embedding, normalize)
    }

    fn extra_features(&self) -> &'static [ImageFeatures] {
        &[ImageFeatures::PatchMean, ImageFeatures::PatchGrid]
    }

    /// Every image is cropped to the same square, so every grid is the same.
    fn patch_grid(&self) -> Option<(usize, usize)> {
        let g = self.preprocess.crop_size as usize / self.model.config().patch_size;
        Some((g, g))
    }

    /// One forward pass gives all three: the CLS token, the mean of the patch
    /// tokens (registers left out, as the reference slices them) and the grid.
    fn embed_pixels_as(
        &self,
        pixels: Vec<f32>,
        n: usize,
        features: ImageFeatures,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let s = self.preprocess.crop_size as usize;
        let batch =
            Tensor::from_vec(pixels, (n, 3, s, s), &self.device).map_err(ModelError::from)?;
        let output = self.model.forward(&batch)?;
        let vectors = match features {
            ImageFeatures::Embedding => output.pooler,
            ImageFeatures::PatchMean => output.patch_mean()?,
            // The grid is raw: normalising each patch token is the caller's choice.
            ImageFeatures::PatchGrid => {
                return Ok(output
                    .patch_tokens
                    .flatten_from(1)
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(ModelError::from)?)
            }
        };
        let vectors = match normalize {
            true => l2_normalize(&vectors).map_err(ModelError::from)?,
            false => vectors,
        };
        Ok(vectors.to_vec2::<f32>().map_err(ModelError::from)?)
    }
}
