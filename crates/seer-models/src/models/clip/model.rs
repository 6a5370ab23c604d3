//! A complete CLIP model: image tower, text tower and the learned temperature.

use candle_core::{Device, Tensor};
use seer_kernels::Precision;

use crate::error::Result;
use crate::io::files::ModelFiles;
use crate::io::weights::Weights;
use crate::models::clip::config::{ClipConfig, Layout, VisionConfig, VisionPool};
use crate::models::clip::resnet::ModifiedResNet;
use crate::models::clip::text::{TextPadding, TextTransformer};
use crate::models::clip::vit::VisionTransformer;
use crate::nn::split_batch;

#[derive(Clone, Debug)]
enum VisionTower {
    Vit(VisionTransformer),
    ResNet(ModifiedResNet),
}

#[derive(Clone, Debug)]
pub struct ClipModel {
    config: ClipConfig,
    vision: VisionTower,
    text: TextTransformer,
    logit_scale: f32,
    device: Device,
    /// Whether batches run as one part per thread ([`split_batch::applies`]).
    split_batches: bool,
}

impl ClipModel {
    /// `precision` sets how CPU matmul weights are stored (ignored elsewhere).
    pub fn load(files: &ModelFiles, device: &Device, precision: Precision) -> Result<Self> {
        let config = files.read_config()?;
        let root = Weights::open(&files.weights, device)?.with_precision(precision);
        Self::from_weights(config, &root)
    }

    pub fn from_weights(config: ClipConfig, root: &Weights) -> Result<Self> {
        let embed = config.embed_dim;
        let vision_w = root.pp(match config.layout {
            Layout::OpenClip => "visual",
            Layout::Transformers => "vision_model",
        });
        let text_w = if config.text_prefix.is_empty() {
            root.clone()
        } else {
            root.pp(&config.text_prefix)
        };
        // The towers are independent: load them side by side.
        let (vision, text) = rayon::join(
            || Self::load_vision(&config, &vision_w, root, embed),
            || TextTransformer::load(&text_w, root, &config.text, config.layout, embed),
        );
        let (vision, text) = (vision?, text?);
        // The checkpoint stores log(scale); a model without one gets CLIP's initial 1/0.07.
        let logit_scale = if root.contains("logit_scale") {
            root.get_scalar("logit_scale")?.exp()
        } else {
            1.0 / 0.07
        };
        Ok(Self {
            config,
            vision,
            text,
            logit_scale,
            device: root.device().clone(),
            split_batches: split_batch::applies(root),
        })
    }

    fn load_vision(
        config: &ClipConfig,
        w: &Weights,
        root: &Weights,
        embed: usize,
    ) -> Result<VisionTower> {
        Ok(match &config.vision {
            VisionConfig::Vit(cfg) => {
                VisionTower::Vit(VisionTransformer::load(w, root, cfg, config.layout, embed)?)
            }
            VisionConfig::ResNet(cfg) => VisionTower::ResNet(ModifiedResNet::load(w, cfg, embed)?),
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn image_size(&self) -> usize {
        self.config.vision.image_size()
    }

    pub fn context_length(&self) -> usize {
        self.text.context_length()
    }

    pub fn embed_dim(&self) -> usize {
        self.config.embed_dim
    }

    /// Floating-point operations (multiply and add counted apart) of one image
    /// through a ViT image tower as seer computes it: with class-token
    /// pooling the last block's attention, projection and MLP run for that
    /// token alone (see `Transformer::forward_pooled`). None for ResNet towers.
    pub fn image_flops(&self) -> Option<f64> {
        let VisionConfig::Vit(cfg) = &self.config.vision else {
            return None;
        };
        let t = &cfg.transformer;
        let (c, m) = (t.width as f64, t.mlp_width as f64);
        let patches = ((cfg.image_size / cfg.patch_size) as f64).powi(2);
        let tokens = patches + 1.0;
        let patch_embed = 2.0 * patches * 3.0 * (cfg.patch_size as f64).powi(2) * c;
        // q/k/v of every token, then attention, projection and MLP for `rows`.
        let layer = |rows: f64| {
            2.0 * tokens * 3.0 * c * c
                + 4.0 * rows * tokens * c
                + 2.0 * rows * (c * c + 2.0 * c * m)
        };
        let last = match cfg.pool {
            VisionPool::Token => layer(1.0),
            VisionPool::Mean => layer(tokens),
        };
        let proj = 2.0 * c * self.config.embed_dim as f64;
        Some(patch_embed + (t.layers as f64 - 1.0).max(0.0) * layer(tokens) + last + proj)
    }

    /// `exp(logit_scale)`, the factor applied to cosine similarities before softmax.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Projected image features (not normalised), as `get_image_features`.
    pub fn encode_images(&self, pixels: &Tensor) -> Result<Tensor> {
        let forward = |pixels: &Tensor| match &self.vision {
            VisionTower::Vit(v) => v.forward(pixels),
            VisionTower::ResNet(r) => r.forward(pixels),
        };
        split_batch::cat_parts(split_batch::per_image(self.split_batches, pixels, forward)?)
    }

    /// Projected text features (not normalised), as `get_text_features`.
    pub fn encode_texts(&self, tokens: &[Vec<u32>], padding: TextPadding) -> Result<Tensor> {
        // Checked whole first: an error names the sequence's index in `tokens`.
        self.text.eot_positions(tokens)?;
        let costs: Vec<usize> = match padding {
            TextPadding::Longest => tokens.iter().map(Vec::len).collect(),
            TextPadding::Context => vec![1; tokens.len()],
        };
        split_batch::per_thread_cat(self.split_batches, &costs, |part| {
            self.text.forward(&tokens[part], padding)
        })
    }
}
