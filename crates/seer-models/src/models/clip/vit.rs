//! Vision Transformer image tower (CLIP ViT-B/32, B/16, L/14, L/14-336, ...).

use candle_core::{Module, Tensor};

use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::models::clip::config::{Layout, VisionPool, VitConfig};
use crate::nn::layers::{patchify, LayerNorm, Linear, Transformer};

#[derive(Clone, Debug)]
pub struct VisionTransformer {
    cfg: VitConfig,
    /// The patch-embedding convolution as a matrix: its stride equals its kernel, so
    /// it is exactly a matmul over non-overlapping patches.
    patch_embed: Linear,
    class_embedding: Tensor,
    position_embedding: Tensor,
    ln_pre: Option<LayerNorm>,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Linear,
}

impl VisionTransformer {
    /// `w` points at the tower (`visual` or `vision_model`); `root` at the checkpoint
    /// root, where transformers keeps `visual_projection`.
    pub fn load(
        w: &Weights,
        root: &Weights,
        cfg: &VitConfig,
        layout: Layout,
        embed_dim: usize,
    ) -> Result<Self> {
        let c = cfg.transformer.width;
        let p = cfg.patch_size;
        let tokens = (cfg.image_size / p).pow(2) + 1;
        let eps = cfg.transformer.layer_norm_eps;
        let (conv, class_embedding, position_embedding, ln_pre, transformer, ln_post, proj) =
            match layout {
                Layout::OpenClip => (
                    w.get("conv1.weight", &[c, 3, p, p])?,
                    w.get("class_embedding", &[c])?,
                    w.get("positional_embedding", &[tokens, c])?,
                    if cfg.ln_pre {
                        Some(LayerNorm::load(&w.pp("ln_pre"), c, eps)?)
                    } else {
                        None
                    },
                    Transformer::load_open_clip(&w.pp("transformer"), &cfg.transformer)?,
                    LayerNorm::load(&w.pp("ln_post"), c, eps)?,
                    Linear::from_right_matrix(w, w.get("proj", &[c, embed_dim])?)?,
                ),
                Layout::Transformers => {
                    let e = w.pp("embeddings");
                    (
                        e.get("patch_embedding.weight", &[c, 3, p, p])?,
                        e.get("class_embedding", &[c])?,
                        e.get("position_embedding.weight", &[tokens, c])?,
                        Some(LayerNorm::load(&w.pp("pre_layrnorm"), c, eps)?),
                        Transformer::load_transformers(&w.pp("encoder"), &cfg.transformer)?,
                        LayerNorm::load(&w.pp("post_layernorm"), c, eps)?,
                        Linear::load(&root.pp("visual_projection"), c, embed_dim, false)?,
                    )
                }
            };
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: Linear::new(w, conv.reshape((c, 3 * p * p))?, None)?,
            class_embedding: class_embedding.reshape((1, 1, c))?,
            position_embedding: position_embedding.unsqueeze(0)?,
            ln_pre,
            transformer,
            ln_post,
            proj,
        })
    }

    /// `pixels`: (batch, 3, H, W) normalised. Returns projected features (batch, embed).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = pixels.dims4()?;
        let size = self.cfg.image_size;
        if ch != 3 || h != size || w != size {
            return Err(ModelError::Input(format!(
                "expected images of shape (N, 3, {size}, {size}), got {:?}",
                pixels.dims()
            )));
        }
        let p = self.cfg.patch_size;
        let g = size / p;
        let c = self.cfg.transformer.width;
        let x = self.patch_embed.forward(&patchify(pixels, p)?)?;
        let cls = self.class_embedding.broadcast_as((b, 1, c))?;
        let mut x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.position_embedding)?;
        if let Some(ln) = &self.ln_pre {
            x = ln.forward(&x)?;
        }
        // LayerNorm acts per token, so for the class token pooling first is exact and
        // cheaper; a mean of normalised tokens is not the normalised mean, so open_clip's
        // `final_ln_after_pool` decides the order there.
        let pooled = match self.cfg.pool {
            VisionPool::Token => {
                let x = self.transformer.forward_pooled(&x, None, &vec![0; b])?;
                self.ln_post.forward(&x)?
            }
            VisionPool::Mean => {
                let patches = self.transformer.forward(&x, None)?.narrow(1, 1, g * g)?;
                if self.cfg.final_ln_after_pool {
                    self.ln_post.forward(&patches.mean(1)?)?
                } else {
                    self.ln_post.forward(&patches)?.mean(1)?
                }
            }
        };
        Ok(self.proj.forward(&pooled)?)
    }
}
