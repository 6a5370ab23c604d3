//! A complete SigLIP model: both towers plus the learned scale and bias of
//! the sigmoid loss.

use std::path::Path;

use candle_core::{Device, Tensor};
use seer_kernels::Precision;

use super::config::{SiglipConfig, SiglipVariant};
use super::text::SiglipTextTransformer;
use super::vision::{PatchGrid, SiglipVisionTransformer};
use crate::error::{ModelError, Result};
use crate::io::files::ModelFiles;
use crate::io::weights::Weights;
use crate::nn::layers::l2_normalize;
use crate::nn::split_batch;

#[derive(Clone, Debug)]
pub struct SiglipModel {
    config: SiglipConfig,
    vision: SiglipVisionTransformer,
    text: SiglipTextTransformer,
    logit_scale: f32,
    logit_bias: f32,
    /// Whether batches run as one part per thread ([`split_batch::applies`]).
    split_batches: bool,
}

impl SiglipModel {
    /// Loads `config.json` and the weights of a transformers checkpoint folder.
    /// `precision` sets how CPU matmul weights are stored (ignored elsewhere).
    pub fn load_dir(dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        Self::load(&ModelFiles::from_dir(dir)?, device, precision)
    }

    pub fn load(files: &ModelFiles, device: &Device, precision: Precision) -> Result<Self> {
        let config = SiglipConfig::from_file(&files.config)?;
        let root = Weights::open(&files.weights, device)?.with_precision(precision);
        Self::from_weights(config, &root)
    }

    pub fn from_weights(config: SiglipConfig, root: &Weights) -> Result<Self> {
        // The towers are independent: load them side by side.
        let (vision, text) = rayon::join(
            || {
                SiglipVisionTransformer::load(
                    &root.pp("vision_model"),
                    &config.vision,
                    config.variant,
                )
            },
            || SiglipTextTransformer::load(&root.pp("text_model"), &config.text),
        );
        let scalar = |name: &str| -> Result<f32> { Ok(root.get(name, &[1])?.to_vec1::<f32>()?[0]) };
        Ok(Self {
            vision: vision?,
            text: text?,
            logit_scale: scalar("logit_scale")?.exp(),
            logit_bias: scalar("logit_bias")?,
            split_batches: split_batch::applies(root),
            config,
        })
    }

    pub fn config(&self) -> &SiglipConfig {
        &self.config
    }

    /// Width of the image and text embeddings.
    pub fn embed_dim(&self) -> usize {
        self.config.vision.transformer.width
    }

    /// SigLIP's square input side (0 for SigLIP 2, whose inputs are NaFlex patches).
    pub fn image_size(&self) -> usize {
        self.config.vision.image_size
    }

    pub fn context_length(&self) -> usize {
        self.config.text.context_length
    }

    /// `exp(logit_scale)`: the factor on cosine similarities.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Added to the scaled cosine before the sigmoid.
    pub fn logit_bias(&self) -> f32 {
        self.logit_bias
    }

    /// SigLIP (`model_type: siglip`): `pixels` (batch, 3, S, S) normalised.
    /// Image features (not normalised), as `get_image_features(...).pooler_output`.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let parts = split_batch::per_image(self.split_batches, pixels, |pixels| {
            self.vision.forward(pixels)
        })?;
        split_batch::cat_parts(parts)
    }

    /// SigLIP at another input size (`interpolate_pos_encoding=True`): `pixels`
    /// (batch, 3, H, W), H and W multiples of the patch size; the position
    /// table is resized with PyTorch's plain bicubic.
    pub fn image_features_interpolated(&self, pixels: &Tensor) -> Result<Tensor> {
        let parts = split_batch::per_image(self.split_batches, pixels, |pixels| {
            self.vision.forward_interpolated(pixels)
        })?;
        split_batch::cat_parts(parts)
    }

    /// SigLIP 2 NaFlex: `patches` (batch, max_patches, 3·p·p) in (y, x, channel)
    /// order, each image's real patches first, and their grids (`spatial_shapes`).
    pub fn image_features_naflex(&self, patches: &Tensor, grids: &[PatchGrid]) -> Result<Tensor> {
        if self.config.variant != SiglipVariant::Siglip2 {
            return Err(ModelError::Input(
                "NaFlex patches need a SigLIP 2 (model_type 'siglip2') checkpoint".into(),
            ));
        }
        // Every image runs `max_patches` rows (padding masked as keys only):
        // each costs the same. Parts only where the whole batch's shapes
        // agree, so that an error describes the whole batch.
        if patches.dims().first() != Some(&grids.len()) {
            return self.vision.forward_naflex(patches, grids);
        }
        split_batch::per_thread_cat(self.split_batches, &vec![1; grids.len()], |part| {
            let patches = patches.narrow(0, part.start, part.len())?;
            self.vision.forward_naflex(&patches, &grids[part])
        })
    }

    /// Text features (not normalised), as `get_text_features(input_ids, attention_mask)`.
    /// See [`SiglipTextTransformer::forward`] for the ids, mask and pooling rules.
    pub fn text_features(&self, ids: &[Vec<u32>], mask: Option<&[Vec<u32>]>) -> Result<Tensor> {
        if ids.is_empty() {
            return self.text.forward(ids, mask);
        }
        // Checked whole first: an error describes the whole batch, not a part.
        self.text.check(ids, mask)?;
        split_batch::per_thread_cat(self.split_batches, &vec![1; ids.len()], |part| {
            self.text
                .forward(&ids[part.clone()], mask.map(|m| &m[part]))
        })
    }

    /// `exp(s) · cos(image, text) + b` for every pair: (images, texts). Inputs
    /// are features or embeddings (they are normalised here).
    pub fn logits(&self, image: &Tensor, text: &Tensor) -> Result<Tensor> {
        let cos = l2_normalize(image)?.matmul(&l2_normalize(text)?.t()?)?;
        Ok(((cos * self.logit_scale as f64)? + self.logit_bias as f64)?)
    }

    /// `σ(logits)`: each pair's own match probability (sigmoid, not a softmax
    /// over texts: the probabilities of one image need not sum to 1).
    pub fn probabilities(&self, image: &Tensor, text: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.logits(image, text)?)?)
    }
}
