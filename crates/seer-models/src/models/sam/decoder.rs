//! SAM's prompt encoder and mask decoder: what each click costs once the image
//! is embedded. Prompts become sparse tokens (random-Fourier positional
//! features of points and box corners plus learnt type embeddings) and a dense
//! map (a previous mask's logits, downscaled by convolutions); the two-way
//! transformer mixes them with the image embedding, and hypernetwork MLPs turn
//! the mask tokens into 256×256 mask logits, with an IoU head beside them.

use std::sync::{Arc, Mutex};

use candle_core::{Module, Tensor, TensorId};
use rayon::prelude::*;

use super::config::{SamActivation, SamDecoderConfig, SamPromptConfig};
use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::config::Activation;
use crate::nn::cpu::{try_with_f32, with_f32};
use crate::nn::layers::{patchify, softmax_last_dim, LayerNorm, Linear};

fn act(x: &Tensor, a: SamActivation) -> candle_core::Result<Tensor> {
    match a {
        SamActivation::Gelu => x.gelu_erf(),
        SamActivation::Relu => x.relu(),
    }
}

/// `SamPositionalEmbedding`: `[sin(2π c·G), cos(2π c·G)]` of coordinates in [0, 1].
#[derive(Clone, Debug)]
pub struct PositionalEmbedding {
    /// (2, feats), row-major.
    gaussian: Vec<f32>,
    feats: usize,
}

impl PositionalEmbedding {
    pub fn load(w: &Weights, feats: usize) -> Result<Self> {
        Ok(Self {
            gaussian: w.get_vec("positional_embedding", &[2, feats])?,
            feats,
        })
    }

    /// One embedding (2·feats) per point, coordinates already mapped to [-1, 1].
    fn embed(&self, coords: &[(f32, f32)]) -> Vec<f32> {
        let f = self.feats;
        let two_pi = (2.0 * std::f64::consts::PI) as f32;
        let mut out = Vec::with_capacity(coords.len() * 2 * f);
        for &(x, y) in coords {
            let v: Vec<f32> = (0..f)
                .map(|j| two_pi * (x * self.gaussian[j] + y * self.gaussian[f + j]))
                .collect();
            out.extend(v.iter().map(|a| a.sin()));
            out.extend(v.iter().map(|a| a.cos()));
        }
        out
    }

    /// `get_image_wide_positional_embeddings`, channels last: (side², 2·feats).
    pub fn image_wide(&self, side: usize, device: &candle_core::Device) -> Result<Tensor> {
        let s = side as f32;
        let coords: Vec<(f32, f32)> = (0..side)
            .flat_map(|i| (0..side).map(move |j| (j as f32 + 0.5, i as f32 + 0.5)))
            .map(|(x, y)| (2.0 * (x / s) - 1.0, 2.0 * (y / s) - 1.0))
            .collect();
        Ok(Tensor::from_vec(
            self.embed(&coords),
            (side * side, 2 * self.feats),
            device,
        )?)
    }

    /// Points in input pixels (f64, as the processor gives them), normalised by
    /// `input_size` the way `SamPositionalEmbedding` does before its f32 cast.
    fn points(&self, points: &[(f64, f64)], input_size: usize) -> Vec<f32> {
        let s = input_size as f64;
        let coords: Vec<(f32, f32)> = points
            .iter()
            .map(|&(x, y)| ((2.0 * (x / s) - 1.0) as f32, (2.0 * (y / s) - 1.0) as f32))
            .collect();
        self.embed(&coords)
    }
}

/// A prompt in the model's input pixels (the 1024 side, after the processor's resize).
#[derive(Clone, Debug, Default)]
pub struct SamPrompt {
    /// `(x, y, label)`: 1 foreground, 0 background.
    pub points: Vec<(f64, f64, i64)>,
    pub bbox: Option<[f64; 4]>,
    /// Low-resolution logits of an earlier mask (4·embedding side squared).
    pub mask: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct PromptEncoder {
    cfg: SamPromptConfig,
    /// `point_embed.{0..3}`: background, foreground, box corner 1, box corner 2.
    point_embed: Vec<Vec<f32>>,
    not_a_point: Vec<f32>,
    no_mask: Tensor,
    conv1: Linear,
    ln1: LayerNorm,
    conv2: Linear,
    ln2: LayerNorm,
    conv3: Linear,
}

impl PromptEncoder {
    /// `w` points at `prompt_encoder`.
    pub fn load(w: &Weights, cfg: &SamPromptConfig) -> Result<Self> {
        let c = cfg.hidden_size;
        let (m4, m) = (cfg.mask_input_channels / 4, cfg.mask_input_channels);
        let e = w.pp("mask_embed");
        let conv = |name: &str, out: usize, inp: usize, k: usize| -> Result<Linear> {
            Linear::new(
                w,
                e.get(&format!("{name}.weight"), &[out, inp, k, k])?
                    .reshape((out, inp * k * k))?,
                Some(e.get(&format!("{name}.bias"), &[out])?),
            )
        };
        Ok(Self {
            cfg: cfg.clone(),
            point_embed: (0..4)
                .map(|i| w.get_vec(&format!("point_embed.{i}.weight"), &[1, c]))
                .collect::<Result<_>>()?,
            not_a_point: w.get_vec("not_a_point_embed.weight", &[1, c])?,
            no_mask: w.get("no_mask_embed.weight", &[1, c])?,
            conv1: conv("conv1", m4, 1, 2)?,
            ln1: LayerNorm::load(&e.pp("layer_norm1"), m4, cfg.layer_norm_eps)?,
            conv2: conv("conv2", m, m4, 2)?,
            ln2: LayerNorm::load(&e.pp("layer_norm2"), m, cfg.layer_norm_eps)?,
            conv3: conv("conv3", c, m, 1)?,
        })
    }

    /// Side of the mask logits a mask prompt must have.
    pub fn mask_side(&self) -> usize {
        4 * self.cfg.image_embedding_size
    }

    /// The sparse tokens (n, width) — None without points or box — and the
    /// dense map (side², width), channels last, or without a mask prompt the
    /// one row (1, width) every position gets.
    fn forward(
        &self,
        pe: &PositionalEmbedding,
        prompt: &SamPrompt,
        device: &candle_core::Device,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let c = self.cfg.hidden_size;
        let mut sparse: Vec<f32> = Vec::new();
        if !prompt.points.is_empty() {
            let mut pts: Vec<(f64, f64)> = prompt
                .points
                .iter()
                .map(|&(x, y, _)| (x + 0.5, y + 0.5))
                .collect();
            let mut labels: Vec<i64> = prompt.points.iter().map(|p| p.2).collect();
            if prompt.bbox.is_none() {
                pts.push((0.0, 0.0));
                labels.push(-1);
            }
            let emb = pe.points(&pts, self.cfg.image_size);
            for (i, &label) in labels.iter().enumerate() {
                let row = &emb[i * c..(i + 1) * c];
                let token: Vec<f32> = match label {
                    -1 => self.not_a_point.clone(),
                    -10 => vec![0.0; c],
                    0 | 1 => row
                        .iter()
                        .zip(&self.point_embed[label as usize])
                        .map(|(a, b)| a + b)
                        .collect(),
                    _ => row.to_vec(),
                };
                sparse.extend(token);
            }
        }
        if let Some([x0, y0, x1, y1]) = prompt.bbox {
            let corners = [(x0 + 0.5, y0 + 0.5), (x1 + 0.5, y1 + 0.5)];
            let emb = pe.points(&corners, self.cfg.image_size);
            for k in 0..2 {
                sparse.extend(
                    emb[k * c..(k + 1) * c]
                        .iter()
                        .zip(&self.point_embed[2 + k])
                        .map(|(a, b)| a + b),
                );
            }
        }
        let sparse = match sparse.is_empty() {
            true => None,
            false => {
                let n = sparse.len() / c;
                Some(Tensor::from_vec(sparse, (n, c), device)?)
            }
        };
        let side = self.cfg.image_embedding_size;
        let dense = match &prompt.mask {
            None => self.no_mask.clone(),
            Some(mask) => {
                let ms = self.mask_side();
                if mask.len() != ms * ms {
                    return Err(ModelError::Input(format!(
                        "a mask prompt must be {ms}×{ms} logits, got {} values",
                        mask.len()
                    )));
                }
                let m = Tensor::from_vec(mask.clone(), (1, 1, ms, ms), device)?;
                let h = self.conv1.forward(&patchify(&m, 2)?)?; // (1, (ms/2)², m4)
                let h = act(&self.ln1.forward(&h)?, self.cfg.activation)?;
                let half = ms / 2;
                let m4 = h.dim(2)?;
                let h = h
                    .reshape((1, half, half, m4))?
                    .permute((0, 3, 1, 2))?
                    .contiguous()?;
                let h = self.conv2.forward(&patchify(&h, 2)?)?; // (1, side², m)
                let h = act(&self.ln2.forward(&h)?, self.cfg.activation)?;
                self.conv3.forward(&h)?.reshape((side * side, c))?
            }
        };
        Ok((sparse, dense))
    }
}

/// `SamAttention`: projections to `internal` width, heads, softmax, back.
#[derive(Clone, Debug)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn load(w: &Weights, c: usize, heads: usize) -> Result<Self> {
        let internal = w.dims("q_proj.weight")?[0];
        if internal == 0 || !internal.is_multiple_of(heads) {
            return Err(ModelError::Input(format!(
                "{}: attention width {internal} is not divisible by {heads} heads",
                w.path().display()
            )));
        }
        Ok(Self {
            q: Linear::load(&w.pp("q_proj"), c, internal, true)?,
            k: Linear::load(&w.pp("k_proj"), c, internal, true)?,
            v: Linear::load(&w.pp("v_proj"), c, internal, true)?,
            out: Linear::load(&w.pp("out_proj"), internal, c, true)?,
            heads,
        })
    }

    /// `q`: (nq, c), `k` and `v`: (nk, c).
    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let keys = self.project_keys(k, v)?;
        self.attend(q, &keys)
    }

    /// The key and value projections, which [`Attention::attend`] takes: a
    /// click reuses the first block's, which depend on the image alone.
    fn project_keys(&self, k: &Tensor, v: &Tensor) -> Result<ProjectedKeys> {
        Ok(ProjectedKeys {
            k: self.k.forward(k)?,
            v: self.v.forward(v)?,
        })
    }

    /// `q`: (nq, c) against keys projected by [`Attention::project_keys`].
    fn attend(&self, q: &Tensor, keys: &ProjectedKeys) -> Result<Tensor> {
        if q.device().is_cpu() {
            let out = self.context(q, keys)?;
            let out = Tensor::from_vec(out, (q.dim(0)?, self.q.out_dim()), q.device())?;
            return Ok(self.out.forward(&out)?);
        }
        let q = self.q.forward(q)?;
        let (nq, width) = q.dims2()?;
        let hd = width / self.heads;
        let split = |x: &Tensor| -> candle_core::Result<Tensor> {
            let (n, d) = x.dims2()?;
            x.reshape((n, self.heads, d / self.heads))?
                .transpose(0, 1)?
                .contiguous()
        };
        let (q, k, v) = (split(&q)?, split(&keys.k)?, split(&keys.v)?);
        let scores = (q.matmul(&k.t()?)? * (hd as f64).powf(-0.5))?;
        let probs = softmax_last_dim(&scores, false)?;
        let out = probs
            .matmul(&v)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((nq, width))?;
        Ok(self.out.forward(&out)?)
    }
}

impl Attention {
    /// `ln(residual + attention(q, k, v))` for the image-to-token attention,
    /// whose queries are the image positions (`q` and `residual`: (side²,
    /// c)). On the CPU the output projection adds into a copy of the residual
    /// and the norm runs on seer's kernel: two passes over the image instead
    /// of four (matmul, add, norm, each into a fresh tensor).
    fn residual_norm(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        residual: &Tensor,
        ln: &LayerNorm,
    ) -> Result<Tensor> {
        let (Linear::Packed(out_proj), true) = (&self.out, q.device().is_cpu()) else {
            return Ok(ln.forward(&(residual + self.forward(q, k, v)?)?)?);
        };
        let keys = self.project_keys(k, v)?;
        let context = self.context(q, &keys)?;
        let (rows, c) = residual.dims2()?;
        let mut sum = with_f32(residual, <[f32]>::to_vec)?;
        seer_kernels::gemm(
            &context,
            rows,
            out_proj,
            &mut sum,
            seer_kernels::Init::AddToOutput,
            None,
        );
        let normed = ln.forward_rows(&sum, c)?;
        Ok(Tensor::from_vec(normed, (rows, c), q.device())?)
    }

    /// The CPU attention before the output projection: (nq, internal width).
    fn context(&self, q: &Tensor, keys: &ProjectedKeys) -> Result<Vec<f32>> {
        let q = self.q.forward(q)?;
        let (nq, width) = q.dims2()?;
        let hd = width / self.heads;
        // On the rows in place: no head split, transposes or batched
        // matmuls of 7-wide matrices.
        let mut out = vec![0f32; nq * width];
        let scale = (hd as f32).powf(-0.5);
        try_with_f32(&q, |q| {
            try_with_f32(&keys.k, |k| {
                with_f32(&keys.v, |v| {
                    seer_kernels::ops::cross_attention(q, k, v, width, self.heads, scale, &mut out)
                })
            })
        })?;
        Ok(out)
    }
}

/// An attention's projected keys and values, (nk, internal width) each.
#[derive(Clone, Debug)]
struct ProjectedKeys {
    k: Tensor,
    v: Tensor,
}

#[derive(Clone, Debug)]
struct TwoWayBlock {
    self_attn: Attention,
    ln1: LayerNorm,
    cross_t2i: Attention,
    ln2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    ln3: LayerNorm,
    ln4: LayerNorm,
    cross_i2t: Attention,
    skip_first_layer_pe: bool,
}

/// `SamFeedForward`: ReLU MLP of `depth` linear layers.
#[derive(Clone, Debug)]
struct FeedForward(Vec<Linear>);

impl FeedForward {
    fn load(w: &Weights, input: usize, hidden: usize, output: usize, depth: usize) -> Result<Self> {
        let mut layers = vec![Linear::load(&w.pp("proj_in"), input, hidden, true)?];
        for i in 0..depth.saturating_sub(2) {
            layers.push(Linear::load(
                &w.pp(format!("layers.{i}")),
                hidden,
                hidden,
                true,
            )?);
        }
        layers.push(Linear::load(&w.pp("proj_out"), hidden, output, true)?);
        Ok(Self(layers))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.0.len() - 1;
        let mut x = x.clone();
        for (i, l) in self.0.iter().enumerate() {
            x = l.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

#[derive(Clone, Debug)]
pub struct MaskDecoder {
    cfg: SamDecoderConfig,
    /// iou token then the mask tokens: (1 + masks, width).
    output_tokens: Tensor,
    blocks: Vec<TwoWayBlock>,
    final_attn: Attention,
    ln_final: LayerNorm,
    /// ConvTranspose2d(k=2, s=2) as linear layers from width to 4 · width/4
    /// and from width/4 to 4 · width/8 outputs (dy, dx, channel), the bias
    /// repeated per (dy, dx) (see [`conv_transpose_2x`]).
    up1: Linear,
    up_ln: LayerNorm,
    up2: Linear,
    hypernetworks: Vec<FeedForward>,
    iou_head: FeedForward,
}

impl MaskDecoder {
    /// `w` points at `mask_decoder`.
    pub fn load(w: &Weights, cfg: &SamDecoderConfig) -> Result<Self> {
        let c = cfg.hidden_size;
        let tokens = cfg.num_multimask_outputs + 1;
        let eps = cfg.layer_norm_eps;
        let t = w.pp("transformer");
        let blocks = (0..cfg.layers)
            .map(|i| {
                let l = t.pp(format!("layers.{i}"));
                Ok(TwoWayBlock {
                    self_attn: Attention::load(&l.pp("self_attn"), c, cfg.heads)?,
                    ln1: LayerNorm::load(&l.pp("layer_norm1"), c, eps)?,
                    cross_t2i: Attention::load(&l.pp("cross_attn_token_to_image"), c, cfg.heads)?,
                    ln2: LayerNorm::load(&l.pp("layer_norm2"), c, eps)?,
                    lin1: Linear::load(&l.pp("mlp.lin1"), c, cfg.mlp_dim, true)?,
                    lin2: Linear::load(&l.pp("mlp.lin2"), cfg.mlp_dim, c, true)?,
                    ln3: LayerNorm::load(&l.pp("layer_norm3"), c, eps)?,
                    ln4: LayerNorm::load(&l.pp("layer_norm4"), c, eps)?,
                    cross_i2t: Attention::load(&l.pp("cross_attn_image_to_token"), c, cfg.heads)?,
                    skip_first_layer_pe: i == 0,
                })
            })
            .collect::<Result<_>>()?;
        let (c4, c8) = (c / 4, c / 8);
        Ok(Self {
            cfg: cfg.clone(),
            output_tokens: Tensor::cat(
                &[
                    w.get("iou_token.weight", &[1, c])?,
                    w.get("mask_tokens.weight", &[tokens, c])?,
                ],
                0,
            )?,
            blocks,
            final_attn: Attention::load(&t.pp("final_attn_token_to_image"), c, cfg.heads)?,
            // nn.LayerNorm's default eps.
            ln_final: LayerNorm::load(&t.pp("layer_norm_final_attn"), c, 1e-5)?,
            up1: conv_transpose_2x(w, "upscale_conv1", c, c4)?,
            up_ln: LayerNorm::load(&w.pp("upscale_layer_norm"), c4, 1e-6)?,
            up2: conv_transpose_2x(w, "upscale_conv2", c4, c8)?,
            hypernetworks: (0..tokens)
                .map(|i| {
                    FeedForward::load(&w.pp(format!("output_hypernetworks_mlps.{i}")), c, c, c8, 3)
                })
                .collect::<Result<_>>()?,
            iou_head: FeedForward::load(
                &w.pp("iou_prediction_head"),
                c,
                cfg.iou_head_hidden_dim,
                tokens,
                cfg.iou_head_depth,
            )?,
        })
    }

    /// The first block's token-to-image keys and values: they depend on
    /// `image` (as [`MaskDecoder::forward`] takes it) alone.
    fn first_keys(&self, image: &Tensor, image_pe: &Tensor) -> Result<ProjectedKeys> {
        self.blocks[0]
            .cross_t2i
            .project_keys(&(image + image_pe)?, image)
    }

    /// `image`: (side², width) channels last (the embedding plus the dense
    /// prompt); `image_pe`: the same shape; `first_keys`: what
    /// [`MaskDecoder::first_keys`] gives for `image`, when the caller kept it.
    /// Returns the IoU predictions and the mask logits (masks, 4·side,
    /// 4·side) of the selected outputs.
    fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        first_keys: Option<&ProjectedKeys>,
        sparse: Option<&Tensor>,
        side: usize,
        multimask: bool,
    ) -> Result<(Vec<f32>, Tensor)> {
        let tokens = match sparse {
            Some(s) => Tensor::cat(&[&self.output_tokens, s], 0)?,
            None => self.output_tokens.clone(),
        };
        let (mut queries, mut keys) = (tokens.clone(), image.clone());
        for (i, b) in self.blocks.iter().enumerate() {
            queries = if b.skip_first_layer_pe {
                b.self_attn.forward(&queries, &queries, &queries)?
            } else {
                let q = (&queries + &tokens)?;
                (&queries + b.self_attn.forward(&q, &q, &queries)?)?
            };
            queries = b.ln1.forward(&queries)?;
            let q = (&queries + &tokens)?;
            // The keys change only at the end of the block.
            let k = add(&keys, image_pe)?;
            let projected = match first_keys {
                Some(kept) if i == 0 => kept.clone(),
                _ => b.cross_t2i.project_keys(&k, &keys)?,
            };
            queries = b
                .ln2
                .forward(&(&queries + b.cross_t2i.attend(&q, &projected)?)?)?;
            let hidden = act(&b.lin1.forward(&queries)?, self.cfg.activation)?;
            queries = b.ln3.forward(&(&queries + b.lin2.forward(&hidden)?)?)?;
            let q = (&queries + &tokens)?;
            keys = b.cross_i2t.residual_norm(&k, &q, &queries, &keys, &b.ln4)?;
        }
        let q = (&queries + &tokens)?;
        let k = add(&keys, image_pe)?;
        queries = self
            .ln_final
            .forward(&(&queries + self.final_attn.forward(&q, &k, &keys)?)?)?;

        let n_masks = self.cfg.num_multimask_outputs + 1;
        let hyper = (0..n_masks)
            .map(|i| self.hypernetworks[i].forward(&queries.narrow(0, 1 + i, 1)?))
            .collect::<Result<Vec<_>>>()?;
        let hyper = Tensor::cat(&hyper, 0)?; // (n_masks, c/8)
        let masks = match keys.device().is_cpu() {
            true => self.masks_cpu(&keys, &hyper, side)?,
            false => self.masks_candle(&keys, &hyper, side)?,
        };
        let iou = self
            .iou_head
            .forward(&queries.narrow(0, 0, 1)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (start, len) = if multimask { (1, n_masks - 1) } else { (0, 1) };
        Ok((
            iou[start..start + len].to_vec(),
            masks.narrow(0, start, len)?,
        ))
    }
}

impl MaskDecoder {
    /// The mask logits (masks, 4·side, 4·side): the keys (side², width)
    /// upscaled twice by the transposed convolutions (LayerNorm and GELU after
    /// the first, GELU after the second), then each pixel's channels times
    /// each mask's hypernetwork output (`hyper`: (masks, width/8)).
    fn masks_candle(&self, keys: &Tensor, hyper: &Tensor, side: usize) -> Result<Tensor> {
        // Rows (y, x) with columns (dy, dx, channel) to the 2s × 2s grid.
        let shuffle = |x: &Tensor, s: usize| -> candle_core::Result<Tensor> {
            let o = x.dim(1)? / 4;
            x.reshape((s, s, 2, 2, o))?
                .permute((0, 2, 1, 3, 4))?
                .contiguous()?
                .reshape((4 * s * s, o))
        };
        let u = shuffle(&self.up1.forward(keys)?, side)?;
        let u = self.up_ln.forward(&u)?.gelu_erf()?;
        let u = self.up2.forward_activated(&u, Some(Activation::Gelu))?;
        let u = shuffle(&u, 2 * side)?; // ((4s)², c/8)
        let out = 4 * side;
        Ok(hyper.matmul(&u.t()?)?.reshape((hyper.dim(0)?, out, out))?)
    }

    /// [`MaskDecoder::masks_candle`] without moving a pixel until the end.
    /// The layers are per pixel, so the pixels need not be in raster order:
    /// the first upscaling's rows (y, x) of (dy, dx, channel) columns are read
    /// as rows (y, x, dy, dx) of channels, the second's likewise, and the mask
    /// products run on those rows; only the logits are put in place. The two
    /// pixel shuffles (3 M values scattered) and a transposed matmul go.
    fn masks_cpu(&self, keys: &Tensor, hyper: &Tensor, side: usize) -> Result<Tensor> {
        let device = keys.device();
        let u = self.up1.forward(keys)?;
        let c4 = u.dim(1)? / 4;
        let rows = 4 * side * side;
        let mut normed = try_with_f32(&u, |u| self.up_ln.forward_rows(u, c4))?;
        normed
            .par_chunks_mut(1 << 14)
            .for_each(|c| seer_kernels::ops::apply_activation(c, seer_kernels::Activation::Gelu));
        let u = self.up2.forward_activated(
            &Tensor::from_vec(normed, (rows, c4), device)?,
            Some(Activation::Gelu),
        )?;
        let (n_masks, c8) = hyper.dims2()?;
        let pixels = 16 * side * side;
        let hyper = with_f32(hyper, |h| {
            seer_kernels::PackedWeights::from_rows(
                h,
                n_masks,
                c8,
                None,
                seer_kernels::Precision::F32,
            )
        })?;
        let mut logits = vec![0f32; pixels * n_masks];
        with_f32(&u, |u| {
            seer_kernels::gemm(
                u,
                pixels,
                &hyper,
                &mut logits,
                seer_kernels::Init::Bias,
                None,
            )
        })?;
        // Row r = (((y·s + x)·2 + dy1)·2 + dx1)·4 + dy2·2 + dx2 is pixel
        // (4y + 2dy1 + dy2, 4x + 2dx1 + dx2).
        let out = 4 * side;
        let mut masks = vec![0f32; n_masks * out * out];
        for (r, values) in logits.chunks_exact(n_masks).enumerate() {
            let (dx2, dy2, dx1, dy1) = (r & 1, (r >> 1) & 1, (r >> 2) & 1, (r >> 3) & 1);
            let cell = r >> 4;
            let (y, x) = (cell / side, cell % side);
            let at = (4 * y + 2 * dy1 + dy2) * out + 4 * x + 2 * dx1 + dx2;
            for (m, &v) in values.iter().enumerate() {
                masks[m * out * out + at] = v;
            }
        }
        Ok(Tensor::from_vec(masks, (n_masks, out, out), device)?)
    }
}

/// `upscale_conv{1,2}` (ConvTranspose2d, kernel 2, stride 2, weight `(inp,
/// out, 2, 2)`) as a linear layer to `4 · out` columns ordered (dy, dx,
/// channel): each input pixel's four output pixels side by side, so the
/// output read as rows of `out` holds one pixel per row. On the CPU it runs
/// on seer's packed kernels, bias included.
fn conv_transpose_2x(w: &Weights, name: &str, inp: usize, out: usize) -> Result<Linear> {
    let weight = w
        .get(&format!("{name}.weight"), &[inp, out, 2, 2])?
        .permute((0, 2, 3, 1))?
        .reshape((inp, 4 * out))?
        .t()?
        .contiguous()?;
    let bias = w
        .get(&format!("{name}.bias"), &[out])?
        .reshape((1, out))?
        .broadcast_as((4, out))?
        .contiguous()?
        .reshape(4 * out)?;
    Linear::new(w, weight, Some(bias))
}

/// `(c, n)` to `(n, c)`; on the CPU by seer's tiled transpose (candle's
/// strided copy goes one element at a time).
fn channels_last(x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() {
        return x.t()?.contiguous();
    }
    let (c, n) = x.dims2()?;
    let dst = with_f32(x, |src| seer_kernels::ops::transpose(src, c, n))?;
    Tensor::from_vec(dst, (n, c), x.device())
}

/// `a + b` of equal shapes; on the CPU split across rayon's threads (candle's
/// own pool hands each op over to its threads and back).
fn add(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if !a.device().is_cpu() || a.shape() != b.shape() {
        return a + b;
    }
    let mut out = vec![0f32; a.elem_count()];
    try_with_f32(a, |a| {
        with_f32(b, |b| {
            out.par_chunks_mut(1 << 14)
                .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
                .for_each(|(o, (a, b))| {
                    for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                        *o = x + y;
                    }
                })
        })
    })?;
    Tensor::from_vec(out, a.shape(), a.device())
}

/// The prompt encoder and mask decoder together, with the image-wide
/// positional embedding computed once.
#[derive(Clone, Debug)]
pub struct PromptDecoder {
    pub(crate) pe: PositionalEmbedding,
    pub(crate) image_pe: Tensor,
    pub(crate) prompt: PromptEncoder,
    pub(crate) decoder: MaskDecoder,
    pub(crate) side: usize,
    /// What the last image's clicks without a mask prompt share.
    pub(crate) kept: Arc<Mutex<Option<KeptImage>>>,
}

/// The part of a click that depends on the image alone (when no mask is
/// prompted): the decoder's channels-last input and its first block's keys.
/// About a fifth of a click on SAM-B; the next click on the same embedding
/// (the same tensor, by id) reuses it.
#[derive(Debug)]
pub(crate) struct KeptImage {
    embedding: TensorId,
    image: Tensor,
    first_keys: ProjectedKeys,
}

impl PromptDecoder {
    /// `embedding`: (1, width, side, side). Returns (IoU predictions, mask
    /// logits (masks, 4·side, 4·side)).
    pub fn predict(
        &self,
        embedding: &Tensor,
        prompt: &SamPrompt,
        multimask: bool,
    ) -> Result<(Vec<f32>, Tensor)> {
        let device = embedding.device();
        let (_, c, h, w) = embedding.dims4()?;
        if h != self.side || w != self.side {
            return Err(ModelError::Input(format!(
                "image embedding of {h}×{w}, the decoder expects {0}×{0}",
                self.side
            )));
        }
        let (sparse, dense) = self.prompt.forward(&self.pe, prompt, device)?;
        let decoder_input = || -> Result<Tensor> {
            Ok(channels_last(&embedding.reshape((c, h * w))?)?.broadcast_add(&dense)?)
        };
        if prompt.mask.is_some() {
            let image = decoder_input()?;
            return self.decoder.forward(
                &image,
                &self.image_pe,
                None,
                sparse.as_ref(),
                self.side,
                multimask,
            );
        }
        let (image, first_keys) = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match kept.as_ref() {
                Some(k) if k.embedding == embedding.id() => (k.image.clone(), k.first_keys.clone()),
                _ => {
                    let image = decoder_input()?;
                    let first_keys = self.decoder.first_keys(&image, &self.image_pe)?;
                    *kept = Some(KeptImage {
                        embedding: embedding.id(),
                        image: image.clone(),
                        first_keys: first_keys.clone(),
                    });
                    (image, first_keys)
                }
            }
        };
        self.decoder.forward(
            &image,
            &self.image_pe,
            Some(&first_keys),
            sparse.as_ref(),
            self.side,
            multimask,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::sam::config::SamConfig;
    use candle_core::Device;

    /// The CPU's shuffle-free upscaling gives what the plain (GPU) order of
    /// operations gives: both run here on the same packed weights.
    #[test]
    fn masks_without_shuffles_match_the_shuffled_upscaling() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sam/sam-tiny");
        let cfg = SamConfig::from_file(&dir.join("config.json")).unwrap();
        let w = Weights::open(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let decoder = MaskDecoder::load(&w.pp("mask_decoder"), &cfg.decoder).unwrap();
        let (side, c) = (5, cfg.decoder.hidden_size);
        let keys = Tensor::randn(0f32, 1.0, (side * side, c), &Device::Cpu).unwrap();
        let hyper = Tensor::randn(0f32, 1.0, (4, c / 8), &Device::Cpu).unwrap();
        let fast = decoder.masks_cpu(&keys, &hyper, side).unwrap();
        let plain = decoder.masks_candle(&keys, &hyper, side).unwrap();
        assert_eq!(fast.dims(), &[4, 4 * side, 4 * side]);
        let (fast, plain) = (
            fast.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let worst = fast
            .iter()
            .zip(&plain)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = plain.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(
            scale > 0.0 && worst <= 1e-4 * scale,
            "{worst} (largest {scale})"
        );
    }
}
