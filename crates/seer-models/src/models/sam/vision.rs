//! SAM's image encoder (`SamVisionEncoder`): a ViT on 16-pixel patches of the
//! 1024×1024 input with an absolute position embedding, windowed attention in
//! most layers and global attention in a few, both with decomposed relative
//! position terms (MViTv2), then a neck of two convolutions with channel
//! LayerNorms. Run once per image: its output is what every prompt reuses.

use candle_core::{Module, Tensor, D};

use super::config::{SamActivation, SamVisionConfig};
use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::config::Activation;
use crate::nn::layers::{patchify, softmax_last_dim, LayerNorm, Linear};
use seer_kernels::ops::{attention, AttentionShape, DecomposedRelPos};

#[derive(Clone, Debug)]
struct VisionLayer {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    /// `(2·side − 1, head_dim)` tables, side = window (or the grid for global layers).
    rel_pos: Option<(Tensor, Tensor)>,
    ln2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    window: usize,
}

#[derive(Clone, Debug)]
pub struct SamVisionEncoder {
    cfg: SamVisionConfig,
    patch_embed: Linear,
    /// (1, grid, grid, width).
    pos_embed: Option<Tensor>,
    layers: Vec<VisionLayer>,
    neck_conv1: Linear,
    neck_ln1: LayerNorm,
    /// (out, out, 3, 3).
    neck_conv2: Tensor,
    neck_ln2: LayerNorm,
}

fn activation(a: SamActivation) -> Activation {
    match a {
        SamActivation::Gelu => Activation::Gelu,
        // Not used by any SAM vision tower; refused at load.
        SamActivation::Relu => Activation::Gelu,
    }
}

impl SamVisionEncoder {
    /// `w` points at `vision_encoder`.
    pub fn load(w: &Weights, cfg: &SamVisionConfig) -> Result<Self> {
        if cfg.activation != SamActivation::Gelu {
            return Err(ModelError::Unsupported(
                "the SAM vision encoder runs only with hidden_act 'gelu'".into(),
            ));
        }
        let (c, p, g) = (cfg.hidden_size, cfg.patch_size, cfg.grid());
        let head_dim = c / cfg.heads;
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = w.pp(format!("layers.{i}"));
                let window = cfg.window_of(i);
                let side = if window == 0 { g } else { window };
                let qkv_bias = if cfg.qkv_bias {
                    Some(l.get("attn.qkv.bias", &[3 * c])?)
                } else {
                    None
                };
                Ok(VisionLayer {
                    ln1: LayerNorm::load(&l.pp("layer_norm1"), c, cfg.layer_norm_eps)?,
                    qkv: Linear::new(&l, l.get("attn.qkv.weight", &[3 * c, c])?, qkv_bias)?,
                    proj: Linear::load(&l.pp("attn.proj"), c, c, true)?,
                    rel_pos: if cfg.use_rel_pos {
                        Some((
                            l.get("attn.rel_pos_h", &[2 * side - 1, head_dim])?,
                            l.get("attn.rel_pos_w", &[2 * side - 1, head_dim])?,
                        ))
                    } else {
                        None
                    },
                    ln2: LayerNorm::load(&l.pp("layer_norm2"), c, cfg.layer_norm_eps)?,
                    lin1: Linear::load(&l.pp("mlp.lin1"), c, cfg.mlp_dim, true)?,
                    lin2: Linear::load(&l.pp("mlp.lin2"), cfg.mlp_dim, c, true)?,
                    window,
                })
            })
            .collect::<Result<_>>()?;
        let o = cfg.output_channels;
        let neck = w.pp("neck");
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: Linear::new(
                w,
                w.get("patch_embed.projection.weight", &[c, 3, p, p])?
                    .reshape((c, 3 * p * p))?,
                Some(w.get("patch_embed.projection.bias", &[c])?),
            )?,
            pos_embed: if cfg.use_abs_pos {
                Some(w.get("pos_embed", &[1, g, g, c])?)
            } else {
                None
            },
            layers,
            neck_conv1: Linear::new(
                w,
                neck.get("conv1.weight", &[o, c, 1, 1])?.reshape((o, c))?,
                None,
            )?,
            // SamLayerNorm's own default eps, not the config's.
            neck_ln1: LayerNorm::load(&neck.pp("layer_norm1"), o, 1e-6)?,
            neck_conv2: neck.get("conv2.weight", &[o, o, 3, 3])?,
            neck_ln2: LayerNorm::load(&neck.pp("layer_norm2"), o, 1e-6)?,
        })
    }

    pub fn config(&self) -> &SamVisionConfig {
        &self.cfg
    }

    /// `pixels`: (batch, 3, S, S) normalised. Returns the image embeddings
    /// (batch, output_channels, grid, grid).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = pixels.dims4()?;
        let s = self.cfg.image_size;
        if ch != 3 || h != s || w != s {
            return Err(ModelError::Input(format!(
                "expected SAM images of shape (N, 3, {s}, {s}), got {:?}",
                pixels.dims()
            )));
        }
        let (c, g) = (self.cfg.hidden_size, self.cfg.grid());
        let mut x = self
            .patch_embed
            .forward(&patchify(pixels, self.cfg.patch_size)?)?
            .reshape((b, g, g, c))?;
        if let Some(pos) = &self.pos_embed {
            x = x.broadcast_add(pos)?;
        }
        for layer in &self.layers {
            x = self.layer_forward(layer, &x)?;
        }
        let x = self.neck_ln1.forward(&self.neck_conv1.forward(&x)?)?;
        let x = x.permute((0, 3, 1, 2))?.contiguous()?;
        let x = x.conv2d(&self.neck_conv2, 1, 1, 1, 1)?;
        let x = self
            .neck_ln2
            .forward(&x.permute((0, 2, 3, 1))?.contiguous()?)?;
        Ok(x.permute((0, 3, 1, 2))?.contiguous()?)
    }

    fn layer_forward(&self, l: &VisionLayer, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let normed = l.ln1.forward(x)?;
        let attended = if l.window > 0 {
            let ws = l.window;
            let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
            let padded = normed.pad_with_zeros(1, 0, ph)?.pad_with_zeros(2, 0, pw)?;
            let (hp, wp) = (h + ph, w + pw);
            let windows = padded
                .reshape((b, hp / ws, ws, wp / ws, ws, c))?
                .permute((0, 1, 3, 2, 4, 5))?
                .contiguous()?
                .reshape((b * (hp / ws) * (wp / ws), ws, ws, c))?;
            let out = self.attention(l, &windows)?;
            out.reshape((b, hp / ws, wp / ws, ws, ws, c))?
                .permute((0, 1, 3, 2, 4, 5))?
                .contiguous()?
                .reshape((b, hp, wp, c))?
                .narrow(1, 0, h)?
                .narrow(2, 0, w)?
                .contiguous()?
        } else {
            self.attention(l, &normed)?
        };
        let x = (x + attended)?;
        let hidden = l
            .lin1
            .forward_activated(&l.ln2.forward(&x)?, Some(activation(self.cfg.activation)))?;
        Ok((&x + l.lin2.forward(&hidden)?)?)
    }

    /// `SamVisionAttention` over `x` (n, h, w, width): on the CPU through
    /// seer's fused attention (query tiles against all keys, the relative
    /// position terms added per tile; the full 4096² scores of a global layer
    /// are never formed), elsewhere through candle's matmuls.
    fn attention(&self, l: &VisionLayer, x: &Tensor) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let heads = self.cfg.heads;
        let hd = c / heads;
        let qkv = l.qkv.forward(x)?;
        let rel = match &l.rel_pos {
            Some((rel_h, rel_w)) => {
                let q = qkv
                    .reshape((n, h * w, 3, heads, hd))?
                    .narrow(2, 0, 1)?
                    .squeeze(2)?
                    .permute((0, 2, 1, 3))?
                    .contiguous()?
                    .reshape((n * heads, h * w, hd))?;
                Some(rel_terms(&q, rel_h, rel_w, h, w)?)
            }
            None => None,
        };
        let scale = (hd as f64).powf(-0.5);
        let out = if x.device().is_cpu() {
            let mut data = qkv.flatten_all()?.to_vec1::<f32>()?;
            // The kernel takes queries already scaled; the relative terms
            // use them unscaled, as the reference does.
            for row in data.chunks_exact_mut(3 * c) {
                row[..c].iter_mut().for_each(|v| *v *= scale as f32);
            }
            let terms = match &rel {
                Some((th, tw)) => Some((
                    th.flatten_all()?.to_vec1::<f32>()?,
                    tw.flatten_all()?.to_vec1::<f32>()?,
                )),
                None => None,
            };
            let sequences: Vec<(usize, usize)> = (0..n).map(|i| (i * h * w, h * w)).collect();
            let shape = AttentionShape {
                sequences: &sequences,
                width: c,
                heads,
                causal: false,
                keys: None,
                rel_pos: terms.as_ref().map(|(th, tw)| DecomposedRelPos {
                    term_h: th,
                    term_w: tw,
                    rows: h,
                    cols: w,
                }),
            };
            let mut out = vec![0f32; n * h * w * c];
            attention(&data, shape, &mut out);
            Tensor::from_vec(out, (n, h, w, c), x.device())?
        } else {
            let bh = n * heads;
            let qkv = qkv
                .reshape((n, h * w, 3, heads, hd))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?
                .reshape((3, bh, h * w, hd))?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let mut scores = (&q * scale)?.matmul(&k.t()?)?;
            if let Some((term_h, term_w)) = &rel {
                let bias = term_h
                    .unsqueeze(4)?
                    .broadcast_add(&term_w.unsqueeze(3)?)?
                    .reshape((bh, h * w, h * w))?;
                scores = (scores + bias)?;
            }
            softmax_last_dim(&scores, false)?
                .matmul(&v.contiguous()?)?
                .reshape((n, heads, h, w, hd))?
                .permute((0, 2, 3, 1, 4))?
                .contiguous()?
                .reshape((n, h, w, c))?
        };
        Ok(l.proj.forward(&out)?)
    }
}

/// SAM's `rel_h` and `rel_w` for unscaled queries `q` (n·heads, h·w, hd):
/// `(n·heads, h, w, h)` with `[b, y, x, ky] = Σ_c q[b, y, x, c] · Rh[y, ky, c]`
/// and `(n·heads, h, w, w)` with `[b, y, x, kx] = Σ_c q[b, y, x, c] · Rw[x, kx, c]`.
fn rel_terms(
    q: &Tensor,
    rel_h: &Tensor,
    rel_w: &Tensor,
    h: usize,
    w: usize,
) -> Result<(Tensor, Tensor)> {
    let (bh, _, hd) = q.dims3()?;
    let rh = rel_table(rel_h, h)?; // (h, h, hd)
    let rw = rel_table(rel_w, w)?; // (w, w, hd)
    let q4 = q.reshape((bh, h, w, hd))?;
    let term_h = q4
        .permute((1, 0, 2, 3))?
        .contiguous()?
        .reshape((h, bh * w, hd))?
        .matmul(&rh.t()?)?
        .reshape((h, bh, w, h))?
        .permute((1, 0, 2, 3))?
        .contiguous()?;
    let term_w = q4
        .permute((2, 0, 1, 3))?
        .contiguous()?
        .reshape((w, bh * h, hd))?
        .matmul(&rw.t()?)?
        .reshape((w, bh, h, w))?
        .permute((1, 2, 0, 3))?
        .contiguous()?;
    Ok((term_h, term_w))
}

/// `get_rel_pos` for equal query and key sides: `R[q, k] = table[q − k + side − 1]`
/// (the table already has `2·side − 1` rows, so transformers' resize is the identity).
fn rel_table(table: &Tensor, side: usize) -> Result<Tensor> {
    let rows = table.dim(0)?;
    if rows != 2 * side - 1 {
        return Err(ModelError::Input(format!(
            "relative position table of {rows} rows for an attention side of {side}"
        )));
    }
    let idx: Vec<u32> = (0..side)
        .flat_map(|q| (0..side).map(move |k| (q + side - 1 - k) as u32))
        .collect();
    let idx = Tensor::from_vec(idx, side * side, table.device())?;
    let hd = table.dim(D::Minus1)?;
    Ok(table.index_select(&idx, 0)?.reshape((side, side, hd))?)
}
