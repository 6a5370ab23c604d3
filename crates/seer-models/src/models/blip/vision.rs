//! BLIP's image tower (`BlipVisionModel`): a ViT without a pre-norm, whose
//! `post_layernorm` output over every token (class token first) is what the
//! text models cross-attend to.

use candle_core::{Module, Tensor};

use super::config::BlipVisionConfig;
use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::layers::{patchify, BlockTensors, LayerNorm, Linear, Transformer};

#[derive(Clone, Debug)]
pub struct BlipVisionModel {
    cfg: BlipVisionConfig,
    /// The stride-p convolution as a matrix over (channel, y, x) patches.
    patch_embed: Linear,
    /// (1, 1, width).
    class_embedding: Tensor,
    /// (1, tokens, width).
    position_embedding: Tensor,
    encoder: Transformer,
    post_layernorm: LayerNorm,
}

impl BlipVisionModel {
    /// `w` points at `vision_model`.
    pub fn load(w: &Weights, cfg: &BlipVisionConfig) -> Result<Self> {
        let t = &cfg.transformer;
        let (c, p, tokens) = (t.width, cfg.patch_size, cfg.tokens());
        let e = w.pp("embeddings");
        let encoder = w.pp("encoder");
        let encoder = Transformer::load(w, t, |i| {
            let l = encoder.pp(format!("layers.{i}"));
            let pair = |name: &str, rows: usize, cols: usize| -> Result<(Tensor, Tensor)> {
                let shape: &[usize] = if cols == 0 { &[rows] } else { &[rows, cols] };
                Ok((
                    l.get(&format!("{name}.weight"), shape)?,
                    l.get(&format!("{name}.bias"), &[rows])?,
                ))
            };
            Ok(BlockTensors {
                ln1: pair("layer_norm1", c, 0)?,
                // One fused q/k/v projection, stacked q, k, v like open_clip's.
                qkv: vec![pair("self_attn.qkv", 3 * c, c)?],
                out: pair("self_attn.projection", c, c)?,
                ln2: pair("layer_norm2", c, 0)?,
                fc1: pair("mlp.fc1", t.mlp_width, c)?,
                fc2: pair("mlp.fc2", c, t.mlp_width)?,
                swiglu: false,
                ls1: None,
                ls2: None,
            })
        })?;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: Linear::new(
                w,
                e.get("patch_embedding.weight", &[c, 3, p, p])?
                    .reshape((c, 3 * p * p))?,
                Some(e.get("patch_embedding.bias", &[c])?),
            )?,
            class_embedding: e.get("class_embedding", &[1, 1, c])?,
            position_embedding: e.get("position_embedding", &[1, tokens, c])?,
            encoder,
            post_layernorm: LayerNorm::load(&w.pp("post_layernorm"), c, t.layer_norm_eps)?,
        })
    }

    pub fn config(&self) -> &BlipVisionConfig {
        &self.cfg
    }

    /// `pixels`: (batch, 3, S, S) normalised. Returns `last_hidden_state`
    /// (batch, tokens, width): every token after `post_layernorm`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = pixels.dims4()?;
        let size = self.cfg.image_size;
        if ch != 3 || h != size || w != size {
            return Err(ModelError::Input(format!(
                "expected BLIP images of shape (N, 3, {size}, {size}), got {:?}",
                pixels.dims()
            )));
        }
        let c = self.cfg.transformer.width;
        let x = self
            .patch_embed
            .forward(&patchify(pixels, self.cfg.patch_size)?)?;
        let cls = self.class_embedding.broadcast_as((b, 1, c))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.position_embedding)?;
        let x = self.encoder.forward(&x, None)?;
        Ok(self.post_layernorm.forward(&x)?)
    }
}
