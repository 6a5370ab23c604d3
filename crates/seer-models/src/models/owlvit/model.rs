//! The detector: CLIP towers plus OWL's heads, split the way a detector is
//! used. Text queries are embedded once ([`OwlModel::embed_texts`]); each
//! photo then runs only the image side ([`OwlModel::image`]) and the light
//! heads ([`OwlModel::logits`], [`OwlImage::boxes`]).
//!
//! What transformers computes, reproduced here:
//! - image features: `post_layernorm` over every token, patch tokens times the
//!   class token, then the head's own `layer_norm`;
//! - boxes: a 3-layer GELU MLP plus a fixed bias from each patch's place on the
//!   grid (`compute_box_bias`), through a sigmoid, as (cx, cy, w, h) in [0, 1];
//! - logits: cosine of `dense0(features)` with the query, both divided by
//!   `norm + 1e-6`, then `(cos + shift) · (elu(scale) + 1)` with per-patch
//!   learnt shift and scale;
//! - text queries are `text_embeds`: the projected end-of-text token, L2
//!   normalised (`OwlViTModel.forward`);
//! - image queries (`embed_image_query`): OWL-ViT takes, among the boxes
//!   within 80% of the best IoU with the whole image, the one least similar to
//!   the mean embedding; OWLv2 the box with the highest objectness. The query
//!   is that box's `dense0` embedding, not normalised.

use std::path::Path;

use candle_core::{Module, Tensor, D};

use super::config::{OwlConfig, OwlVersion};
use crate::error::{ModelError, Result};
use crate::io::files::ModelFiles;
use crate::io::weights::Weights;
use crate::models::clip::config::Layout;
use crate::models::clip::text::{TextPadding, TextTransformer};
use crate::nn::config::Activation;
use crate::nn::layers::{l2_normalize, patchify, LayerNorm, Linear, Transformer};
use crate::{Device, Precision};

/// `dense0 → gelu → dense1 → gelu → dense2` (`OwlViTBoxPredictionHead`).
#[derive(Clone, Debug)]
struct Mlp3 {
    dense: [Linear; 3],
}

impl Mlp3 {
    fn load(w: &Weights, width: usize, out: usize) -> Result<Self> {
        Ok(Self {
            dense: [
                Linear::load(&w.pp("dense0"), width, width, true)?,
                Linear::load(&w.pp("dense1"), width, width, true)?,
                Linear::load(&w.pp("dense2"), width, out, true)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.dense[0].forward_activated(x, Some(Activation::Gelu))?;
        let x = self.dense[1].forward_activated(&x, Some(Activation::Gelu))?;
        self.dense[2].forward(&x)
    }
}

#[derive(Clone, Debug)]
pub struct OwlModel {
    cfg: OwlConfig,
    text: TextTransformer,
    patch_embed: Linear,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layernorm: LayerNorm,
    encoder: Transformer,
    post_layernorm: LayerNorm,
    layer_norm: LayerNorm,
    class_dense0: Linear,
    logit_shift: Linear,
    logit_scale: Linear,
    box_head: Mlp3,
    objectness_head: Option<Mlp3>,
    /// (patches, 4) logit-space bias, row-major over the patch grid.
    box_bias: Vec<f32>,
    device: Device,
}

/// One image through the image side: its patch features and boxes.
#[derive(Clone, Debug)]
pub struct OwlImage {
    /// (patches, width) after the head's `layer_norm` (`image_feats`).
    pub features: Tensor,
    /// (cx, cy, w, h) in [0, 1] per patch (`pred_boxes`).
    pub boxes: Vec<[f32; 4]>,
}

/// An image query: the chosen box's class embedding.
#[derive(Clone, Debug)]
pub struct ImageQuery {
    /// (1, projection) `dense0` embedding of the chosen box.
    pub embedding: Tensor,
    /// Which patch's box was chosen.
    pub box_index: usize,
}

impl OwlModel {
    pub fn load_dir(dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        let files = ModelFiles::from_dir(dir)?;
        let config = OwlConfig::from_file(&files.config)?;
        let root = Weights::open(&files.weights, device)?.with_precision(precision);
        Self::from_weights(config, &root)
    }

    pub fn from_weights(cfg: OwlConfig, root: &Weights) -> Result<Self> {
        let base = root.pp(cfg.version.prefix());
        let text = TextTransformer::load(
            &base.pp("text_model"),
            &base,
            &cfg.text,
            Layout::Transformers,
            cfg.projection_dim,
        )?;
        let v = base.pp("vision_model");
        let e = v.pp("embeddings");
        let (c, p, g) = (cfg.vision.width, cfg.patch_size, cfg.grid());
        let eps = cfg.vision.layer_norm_eps;
        let d = cfg.projection_dim;
        Ok(Self {
            text,
            patch_embed: Linear::new(
                root,
                e.get("patch_embedding.weight", &[c, 3, p, p])?
                    .reshape((c, 3 * p * p))?,
                None,
            )?,
            class_embedding: e.get("class_embedding", &[c])?.reshape((1, 1, c))?,
            position_embedding: e
                .get("position_embedding.weight", &[g * g + 1, c])?
                .unsqueeze(0)?,
            pre_layernorm: LayerNorm::load(&v.pp("pre_layernorm"), c, eps)?,
            encoder: Transformer::load_transformers(&v.pp("encoder"), &cfg.vision)?,
            post_layernorm: LayerNorm::load(&v.pp("post_layernorm"), c, eps)?,
            layer_norm: LayerNorm::load(&root.pp("layer_norm"), c, eps)?,
            class_dense0: Linear::load(&root.pp("class_head.dense0"), c, d, true)?,
            logit_shift: Linear::load(&root.pp("class_head.logit_shift"), c, 1, true)?,
            logit_scale: Linear::load(&root.pp("class_head.logit_scale"), c, 1, true)?,
            box_head: Mlp3::load(&root.pp("box_head"), c, 4)?,
            objectness_head: match cfg.version {
                OwlVersion::V1 => None,
                OwlVersion::V2 => Some(Mlp3::load(&root.pp("objectness_head"), c, 1)?),
            },
            box_bias: box_bias(g, g),
            device: root.device().clone(),
            cfg,
        })
    }

    pub fn config(&self) -> &OwlConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn context_length(&self) -> usize {
        self.text.context_length()
    }

    /// `text_embeds` (queries, projection): each sequence `[SOT] … [EOT]`,
    /// unpadded; L2 normalised as `OwlViTModel` returns them.
    pub fn embed_texts(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let x = self.text.forward(ids, TextPadding::Longest)?;
        Ok(l2_normalize(&x)?)
    }

    /// `pixels`: (1, 3, S, S). The image side of the detector.
    pub fn image(&self, pixels: &Tensor) -> Result<OwlImage> {
        let (b, ch, h, w) = pixels.dims4()?;
        let s = self.cfg.image_size;
        if b != 1 || ch != 3 || h != s || w != s {
            return Err(ModelError::Input(format!(
                "expected one OWL image of shape (1, 3, {s}, {s}), got {:?}",
                pixels.dims()
            )));
        }
        let c = self.cfg.vision.width;
        let n = self.cfg.grid().pow(2);
        let x = self
            .patch_embed
            .forward(&patchify(pixels, self.cfg.patch_size)?)?;
        let x = Tensor::cat(&[&self.class_embedding, &x], 1)?
            .broadcast_add(&self.position_embedding)?;
        let x = self.pre_layernorm.forward(&x)?;
        let x = self.encoder.forward(&x, None)?;
        let x = self.post_layernorm.forward(&x)?.squeeze(0)?;
        let class_token = x.narrow(0, 0, 1)?;
        let features = x.narrow(0, 1, n)?.broadcast_mul(&class_token)?;
        let features = self.layer_norm.forward(&features)?;
        debug_assert_eq!(features.dims(), &[n, c]);
        let raw = self
            .box_head
            .forward(&features)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let boxes = raw
            .chunks_exact(4)
            .zip(self.box_bias.chunks_exact(4))
            .map(|(r, b)| std::array::from_fn(|k| sigmoid(r[k] + b[k])))
            .collect();
        Ok(OwlImage { features, boxes })
    }

    /// `class_embeds`: (patches, projection) `dense0` of the features.
    pub fn class_embeds(&self, image: &OwlImage) -> Result<Tensor> {
        Ok(self.class_dense0.forward(&image.features)?)
    }

    /// (patches × queries) logits, row-major by patch, for `queries`
    /// (queries, projection): text embeddings or image-query embeddings.
    pub fn logits(&self, image: &OwlImage, queries: &Tensor) -> Result<Vec<f32>> {
        let embeds = normalize_eps(&self.class_embeds(image)?)?;
        let queries = normalize_eps(queries)?;
        let cos = embeds.matmul(&queries.t()?)?;
        let q = queries.dim(0)?;
        let cos = cos.flatten_all()?.to_vec1::<f32>()?;
        let shift = self
            .logit_shift
            .forward(&image.features)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let scale = self
            .logit_scale
            .forward(&image.features)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(cos
            .chunks(q.max(1))
            .zip(shift.iter().zip(&scale))
            .flat_map(|(row, (&s, &k))| {
                let k = elu(k) + 1.0;
                row.iter().map(move |&x| (x + s) * k)
            })
            .collect())
    }

    /// OWLv2's objectness logit per patch; None for OWL-ViT.
    pub fn objectness(&self, image: &OwlImage) -> Result<Option<Vec<f32>>> {
        match &self.objectness_head {
            None => Ok(None),
            Some(head) => Ok(Some(
                head.forward(&image.features)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            )),
        }
    }

    /// `embed_image_query` for one query image.
    pub fn image_query(&self, image: &OwlImage) -> Result<ImageQuery> {
        let embeds = self.class_embeds(image)?;
        let box_index = match self.objectness(image)? {
            Some(objectness) => argmax(&objectness),
            None => least_typical_whole_image_box(&embeds, &image.boxes)?,
        };
        Ok(ImageQuery {
            embedding: embeds.narrow(0, box_index, 1)?,
            box_index,
        })
    }
}

/// OWL-ViT's choice: boxes within 80% of the best IoU with `[0, 0, 1, 1]`
/// (generalised IoU if none overlaps), then the one whose embedding is least
/// similar to the mean embedding.
fn least_typical_whole_image_box(embeds: &Tensor, boxes: &[[f32; 4]]) -> Result<usize> {
    let corners: Vec<[f32; 4]> = boxes.iter().map(|b| center_to_corners(*b)).collect();
    let whole = [0.0f32, 0.0, 1.0, 1.0];
    let mut ious: Vec<f32> = corners.iter().map(|b| iou(&whole, b).0).collect();
    if ious.iter().all(|&x| x == 0.0) {
        ious = corners
            .iter()
            .map(|b| {
                let (iou, union) = iou(&whole, b);
                let w = (whole[2].max(b[2]) - whole[0].min(b[0])).max(0.0);
                let h = (whole[3].max(b[3]) - whole[1].min(b[1])).max(0.0);
                let area = w * h;
                iou - (area - union) / area
            })
            .collect();
    }
    let best = ious.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let threshold = best * 0.8;
    let selected: Vec<usize> = (0..ious.len()).filter(|&i| ious[i] >= threshold).collect();
    if selected.is_empty() {
        return Err(ModelError::Input(
            "the query image gave no box to take as the query".into(),
        ));
    }
    let mean = embeds.mean(0)?.unsqueeze(1)?;
    let sims = embeds.matmul(&mean)?.flatten_all()?.to_vec1::<f32>()?;
    let mut pick = selected[0];
    for &i in &selected[1..] {
        if sims[i] < sims[pick] {
            pick = i;
        }
    }
    Ok(pick)
}

/// `x / (‖x‖ + 1e-6)` per row, as the class head normalises.
fn normalize_eps(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&(norm + 1e-6)?)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn elu(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        x.exp_m1()
    }
}

/// The first index of the largest value.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// (cx, cy, w, h) → (x0, y0, x1, y1).
pub fn center_to_corners(b: [f32; 4]) -> [f32; 4] {
    [
        b[0] - 0.5 * b[2],
        b[1] - 0.5 * b[3],
        b[0] + 0.5 * b[2],
        b[1] + 0.5 * b[3],
    ]
}

/// IoU and union of two corner boxes, as transformers' `box_iou`.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> (f32, f32) {
    let area = |x: &[f32; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    (inter / union, union)
}

/// `compute_box_bias` for a `rows × cols` grid, in f32 as torch computes it.
fn box_bias(rows: usize, cols: usize) -> Vec<f32> {
    let logit = |x: f32| (x + 1e-4).ln() - (-x + 1e-4).ln_1p();
    let size_x = logit(1.0 / cols as f32);
    let size_y = logit(1.0 / rows as f32);
    (0..rows)
        .flat_map(|i| {
            (0..cols).flat_map(move |j| {
                let x = ((j + 1) as f32 / cols as f32).clamp(0.0, 1.0);
                let y = ((i + 1) as f32 / rows as f32).clamp(0.0, 1.0);
                [logit(x), logit(y), size_x, size_y]
            })
        })
        .collect()
}
