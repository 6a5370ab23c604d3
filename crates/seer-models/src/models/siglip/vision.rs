//! SigLIP's image tower: patch embedding, position table, pre-norm encoder,
//! `post_layernorm` on every token, then the multi-head attention pooling head.
//! There is no class token and no projection: the embedding is the head's output.

use candle_core::{Module, Tensor};

use super::config::{SiglipVariant, SiglipVisionConfig};
use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::config::TransformerConfig;
use crate::nn::layers::{key_padding_mask, softmax_last_dim, LayerNorm, Linear, Mlp, Transformer};

/// transformers' `SiglipMultiheadAttentionPoolingHead` (MAP): the learned
/// `probe` attends over all tokens through an `nn.MultiheadAttention`, then
/// `x = attn + mlp(layernorm(attn))`.
#[derive(Clone, Debug)]
pub struct AttentionPoolingHead {
    /// The probe through the q projection and scaled by 1/√head_dim, as
    /// (1, heads, 1, head_dim): it does not depend on the image, so it is
    /// computed once at load.
    query: Tensor,
    /// k and v rows of `in_proj_weight` (q, k, v stacked in that order).
    kv: Linear,
    out: Linear,
    layernorm: LayerNorm,
    mlp: Mlp,
    heads: usize,
}

impl AttentionPoolingHead {
    /// `w` points at `vision_model.head`.
    pub fn load(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let c = cfg.width;
        let d = c / cfg.heads;
        let probe = w.get("probe", &[1, 1, c])?.reshape((1, c))?;
        let in_w = w.get("attention.in_proj_weight", &[3 * c, c])?;
        let in_b = w.get("attention.in_proj_bias", &[3 * c])?;
        let query = probe
            .matmul(&in_w.narrow(0, 0, c)?.t()?)?
            .broadcast_add(&in_b.narrow(0, 0, c)?)?;
        let query = (query * (1.0 / (d as f64).sqrt()))?.reshape((1, cfg.heads, 1, d))?;
        Ok(Self {
            query,
            kv: Linear::new(
                w,
                in_w.narrow(0, c, 2 * c)?.contiguous()?,
                Some(in_b.narrow(0, c, 2 * c)?.contiguous()?),
            )?,
            out: Linear::load(&w.pp("attention.out_proj"), c, c, true)?,
            layernorm: LayerNorm::load(&w.pp("layernorm"), c, cfg.layer_norm_eps)?,
            mlp: Mlp::load(&w.pp("mlp"), c, cfg.mlp_width, cfg.activation)?,
            heads: cfg.heads,
        })
    }

    /// `x`: (batch, tokens, width). `keys`: per image, how many leading tokens
    /// are real (NaFlex padding follows them), or None. Returns (batch, width).
    pub fn forward(&self, x: &Tensor, keys: Option<&[usize]>) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (h, d) = (self.heads, c / self.heads);
        let kv = self
            .kv
            .forward(x)?
            .reshape((b, t, 2, h, d))?
            .permute((2, 0, 3, 1, 4))?;
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let q = self.query.broadcast_as((b, h, 1, d))?.contiguous()?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(keys) = keys {
            scores = scores.broadcast_add(&key_padding_mask((b, t, c), keys, x.device())?)?;
        }
        let probs = softmax_last_dim(&scores, false)?;
        let context = probs.matmul(&v)?.reshape((b, c))?;
        let attn = self.out.forward(&context)?;
        Ok((&attn + self.mlp.forward(&self.layernorm.forward(&attn)?)?)?)
    }
}

/// One NaFlex image's patch grid (`spatial_shapes`): rows × columns of patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchGrid {
    pub rows: usize,
    pub cols: usize,
}

#[derive(Clone, Debug)]
pub struct SiglipVisionTransformer {
    cfg: SiglipVisionConfig,
    variant: SiglipVariant,
    /// SigLIP: the stride-p convolution as a matrix over (channel, y, x)
    /// patches; SigLIP 2: the checkpoint's own Linear over (y, x, channel).
    patch_embed: Linear,
    /// (num_positions, width), row-major over the square position grid.
    position_embedding: Tensor,
    encoder: Transformer,
    post_layernorm: LayerNorm,
    head: AttentionPoolingHead,
}

impl SiglipVisionTransformer {
    /// `w` points at `vision_model`.
    pub fn load(w: &Weights, cfg: &SiglipVisionConfig, variant: SiglipVariant) -> Result<Self> {
        let c = cfg.transformer.width;
        let p = cfg.patch_size;
        let e = w.pp("embeddings");
        let weight = match variant {
            SiglipVariant::Siglip => e
                .get("patch_embedding.weight", &[c, 3, p, p])?
                .reshape((c, 3 * p * p))?,
            SiglipVariant::Siglip2 => e.get("patch_embedding.weight", &[c, 3 * p * p])?,
        };
        Ok(Self {
            cfg: cfg.clone(),
            variant,
            patch_embed: Linear::new(w, weight, Some(e.get("patch_embedding.bias", &[c])?))?,
            position_embedding: e.get("position_embedding.weight", &[cfg.num_positions, c])?,
            encoder: Transformer::load_transformers(&w.pp("encoder"), &cfg.transformer)?,
            post_layernorm: LayerNorm::load(
                &w.pp("post_layernorm"),
                c,
                cfg.transformer.layer_norm_eps,
            )?,
            head: AttentionPoolingHead::load(&w.pp("head"), &cfg.transformer)?,
        })
    }

    pub fn config(&self) -> &SiglipVisionConfig {
        &self.cfg
    }

    /// SigLIP: `pixels` (batch, 3, S, S) normalised, S = `image_size`.
    /// Returns the pooled features (batch, width), as `get_image_features`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, ch, h, w) = pixels.dims4()?;
        let size = self.cfg.image_size;
        if ch != 3 || h != size || w != size {
            return Err(ModelError::Input(format!(
                "expected SigLIP images of shape (N, 3, {size}, {size}), got {:?} \
                 (other sizes need the interpolated position table)",
                pixels.dims()
            )));
        }
        self.forward_conv(pixels, self.position_embedding.clone())
    }

    /// SigLIP at another input size (`interpolate_pos_encoding=True`): `pixels`
    /// (batch, 3, H, W) with H and W multiples of the patch size; the position
    /// table is resized to the (H/p, W/p) grid with PyTorch's plain bicubic.
    pub fn forward_interpolated(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, ch, h, w) = pixels.dims4()?;
        let p = self.cfg.patch_size;
        if ch != 3 || h % p != 0 || w % p != 0 || h == 0 || w == 0 {
            return Err(ModelError::Input(format!(
                "expected images of shape (N, 3, H, W) with H and W multiples of {p}, got {:?}",
                pixels.dims()
            )));
        }
        let grid = PatchGrid {
            rows: h / p,
            cols: w / p,
        };
        let side = self.cfg.position_grid();
        // transformers keeps the table as it is for the native square grid.
        let positions = if grid.rows == side && grid.cols == side {
            self.position_embedding.clone()
        } else {
            self.resize_positions(grid, plain_bicubic_weights)?
        };
        self.forward_conv(pixels, positions)
    }

    /// The conv-embedding path: patches, `positions` (grid tokens, width) added,
    /// encoder, post-LayerNorm, head.
    fn forward_conv(&self, pixels: &Tensor, positions: Tensor) -> Result<Tensor> {
        let (b, _, h, w) = pixels.dims4()?;
        if self.variant != SiglipVariant::Siglip {
            return Err(ModelError::Input(
                "SigLIP 2 NaFlex models take patches, not images".into(),
            ));
        }
        let p = self.cfg.patch_size;
        let (gh, gw) = (h / p, w / p);
        // (B,3,gh,p,gw,p) -> (B,gh,gw,3,p,p): each row is one patch in the conv weight's order.
        let patches = pixels
            .reshape((b, 3, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, gh * gw, 3 * p * p))?;
        let x = self
            .patch_embed
            .forward(&patches)?
            .broadcast_add(&positions.unsqueeze(0)?)?;
        let x = self.encoder.forward(&x, None)?;
        let x = self.post_layernorm.forward(&x)?;
        self.head.forward(&x, None)
    }

    /// SigLIP 2 NaFlex: `patches` (batch, max_patches, 3·p·p), each image's
    /// `rows × cols` real patches first (row-major, (y, x, channel) within a
    /// patch), zero padding after. The padding is masked as keys in every layer
    /// and in the head. Returns (batch, width).
    pub fn forward_naflex(&self, patches: &Tensor, grids: &[PatchGrid]) -> Result<Tensor> {
        let (b, n, k) = patches.dims3()?;
        let p = self.cfg.patch_size;
        if self.variant != SiglipVariant::Siglip2 || k != 3 * p * p || grids.len() != b {
            return Err(ModelError::Input(format!(
                "expected NaFlex patches (N, max_patches, {}) with one grid per image, \
                 got {:?} and {} grids",
                3 * p * p,
                patches.dims(),
                grids.len()
            )));
        }
        let keys: Vec<usize> = grids.iter().map(|g| g.rows * g.cols).collect();
        if let Some(g) = grids
            .iter()
            .find(|g| g.rows * g.cols == 0 || g.rows * g.cols > n)
        {
            return Err(ModelError::Input(format!(
                "patch grid {}×{} does not fit {n} patches",
                g.rows, g.cols
            )));
        }
        let c = self.cfg.transformer.width;
        // Each image's table resized to its grid, zeros over the padding (its
        // outputs are never read, and no real token attends to it).
        let positions = grids
            .iter()
            .map(|g| {
                let table = self.resized_positions(*g)?;
                let pad = n - g.rows * g.cols;
                if pad == 0 {
                    return Ok(table);
                }
                let zeros = Tensor::zeros((pad, c), table.dtype(), table.device())?;
                Ok(Tensor::cat(&[&table, &zeros], 0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let x = (self.patch_embed.forward(patches)? + Tensor::stack(&positions, 0)?)?;
        let x = self.encoder.forward_key_padded(&x, &keys)?;
        let x = self.post_layernorm.forward(&x)?;
        self.head.forward(&x, Some(&keys))
    }

    /// SigLIP 2: the square position table resized to `grid` (rows·cols,
    /// width) with `F.interpolate(mode="bilinear", antialias=True,
    /// align_corners=False)`, which transformers' `resize_positional_embeddings`
    /// reproduces.
    pub fn resized_positions(&self, grid: PatchGrid) -> Result<Tensor> {
        self.resize_positions(grid, antialiased_bilinear_weights)
    }

    /// The square position table resized separably to `grid`, `weights(in,
    /// out)` giving each axis's (out × in) interpolation matrix.
    fn resize_positions(
        &self,
        grid: PatchGrid,
        weights: fn(usize, usize) -> Vec<f32>,
    ) -> Result<Tensor> {
        let side = self.cfg.position_grid();
        let c = self.cfg.transformer.width;
        let device = self.position_embedding.device();
        let matrix = |out: usize| -> Result<Tensor> {
            Ok(Tensor::from_vec(weights(side, out), (out, side), device)?)
        };
        // Rows first: (rows, side) · (side, side·c), then columns per row.
        let rows = matrix(grid.rows)?
            .matmul(&self.position_embedding.reshape((side, side * c))?)?
            .reshape((grid.rows, side, c))?;
        let cols = matrix(grid.cols)?
            .unsqueeze(0)?
            .broadcast_as((grid.rows, grid.cols, side))?
            .contiguous()?;
        Ok(cols.matmul(&rows)?.reshape((grid.rows * grid.cols, c))?)
    }
}

/// Row-major (out × input) weights of PyTorch's plain bicubic resize
/// (`mode="bicubic"`, `align_corners=False`, no antialias) along one axis:
/// Keys' cubic with A = −0.75 at `src = (i + 0.5)·in/out − 0.5`, four taps
/// `⌊src⌋−1 ..= ⌊src⌋+2` clamped to the input (so edge taps accumulate).
fn plain_bicubic_weights(input: usize, out: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = input as f64 / out as f64;
    let mut w = vec![0f32; out * input];
    for (i, row) in w.chunks_mut(input).enumerate() {
        let src = (i as f64 + 0.5) * scale - 0.5;
        let x0 = src.floor();
        let t = src - x0;
        let taps = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, tap) in taps.iter().enumerate() {
            let j = (x0 as i64 - 1 + k as i64).clamp(0, input as i64 - 1) as usize;
            row[j] += *tap as f32;
        }
    }
    w
}

/// Row-major (out × input) weights of PyTorch's antialiased bilinear resize
/// along one axis: a triangle widened by the downscale factor, centred at
/// `(i + 0.5)·scale − 0.5`, each row normalised to sum 1.
fn antialiased_bilinear_weights(input: usize, out: usize) -> Vec<f32> {
    let scale = input as f64 / out as f64;
    let support = scale.max(1.0);
    let mut w = vec![0f32; out * input];
    for (i, row) in w.chunks_mut(input).enumerate() {
        let center = (i as f64 + 0.5) * scale - 0.5;
        let taps: Vec<f64> = (0..input)
            .map(|j| (1.0 - (j as f64 - center).abs() / support).max(0.0))
            .collect();
        let total: f64 = taps.iter().sum();
        for (o, t) in row.iter_mut().zip(&taps) {
            *o = (t / total) as f32;
        }
    }
    w
}
