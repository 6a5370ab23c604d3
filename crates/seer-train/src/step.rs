//! One batch's loss and parameter gradients, with gradient caching.
//!
//! Contrastive losses couple every sample of a batch, so a large batch cannot be
//! split into independent micro-batches. Gradient caching (Gao et al., 2021)
//! splits it anyway: (1) embed every micro-batch without keeping its graph,
//! (2) compute the full-batch loss and its gradient with respect to the
//! embeddings in closed form, (3) re-run each micro-batch with its graph and
//! backpropagate `<embedding, cached gradient>`. Peak memory is one micro-batch's
//! activations, and the summed gradients equal those of one big batch.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{DType, Tensor};
use seer_models::{l2_normalize, ClipModel, TextPadding};

use crate::error::Result;
use crate::loss::{contrastive_loss, LossKind, Positives};
use crate::params::{ParamStore, Tower};

/// A batch ready for the model.
pub struct TrainBatch {
    /// (B, 3, S, S) normalised pixels.
    pub pixels: Tensor,
    /// The distinct captions of the batch, tokenized (each text tower pass embeds
    /// a caption once however many samples share it).
    pub texts: Vec<Vec<u32>>,
    /// For each sample, its caption's index in `texts`.
    pub text_of: Vec<usize>,
    pub positives: Positives,
}

impl TrainBatch {
    /// Tokenized captions per sample, deduplicated.
    pub fn new(pixels: Tensor, tokens: Vec<Vec<u32>>, positives: Positives) -> Self {
        let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
        let mut texts = Vec::new();
        let text_of = tokens
            .into_iter()
            .map(|t| {
                *index.entry(t.clone()).or_insert_with(|| {
                    texts.push(t);
                    texts.len() - 1
                })
            })
            .collect();
        Self {
            pixels,
            texts,
            text_of,
            positives,
        }
    }

    pub fn len(&self) -> usize {
        self.text_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text_of.is_empty()
    }
}

pub struct StepResult {
    pub loss: f64,
    /// Gradient of each trainable parameter, by name.
    pub grads: HashMap<String, Tensor>,
}

fn chunks(n: usize, size: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(size.max(1))
        .map(|s| s..(s + size).min(n))
        .collect()
}

fn embed_images(model: &ClipModel, pixels: &Tensor, r: &Range<usize>) -> Result<Tensor> {
    let x = pixels.narrow(0, r.start, r.len())?;
    Ok(l2_normalize(&model.encode_images(&x)?)?)
}

fn embed_texts(model: &ClipModel, texts: &[Vec<u32>], r: &Range<usize>) -> Result<Tensor> {
    let f = model.encode_texts(&texts[r.clone()], TextPadding::Longest)?;
    Ok(l2_normalize(&f)?)
}

/// Loss and gradients of `batch`, embedding at most `micro` samples (and `micro`
/// distinct captions) per forward pass.
pub fn compute_gradients(
    store: &ParamStore,
    batch: &TrainBatch,
    kind: LossKind,
    micro: usize,
) -> Result<StepResult> {
    let model = store.training_model()?;
    let b = batch.len();
    let image_chunks = chunks(b, micro);
    let text_chunks = chunks(batch.texts.len(), micro);
    let train_image = store.tower_trainable(Tower::Image);
    let train_text = store.tower_trainable(Tower::Text);
    // With one micro-batch per tower the first pass keeps its graph: no re-run.
    let single = image_chunks.len() == 1 && text_chunks.len() == 1;

    let mut kept: Vec<(Tower, usize, Tensor)> = Vec::new();
    let mut image_parts = Vec::new();
    for (k, r) in image_chunks.iter().enumerate() {
        let e = embed_images(model, &batch.pixels, r)?;
        image_parts.push(e.detach());
        if single && train_image {
            kept.push((Tower::Image, k, e));
        }
    }
    let mut text_parts = Vec::new();
    for (k, r) in text_chunks.iter().enumerate() {
        let e = embed_texts(model, &batch.texts, r)?;
        text_parts.push(e.detach());
        if single && train_text {
            kept.push((Tower::Text, k, e));
        }
    }
    let images = Tensor::cat(&image_parts, 0)?;
    let unique_texts = Tensor::cat(&text_parts, 0)?;
    let index: Vec<u32> = batch.text_of.iter().map(|&i| i as u32).collect();
    let texts = unique_texts.index_select(&Tensor::new(index.as_slice(), images.device())?, 0)?;

    let scale = store.scalar("logit_scale")?.unwrap_or((1.0f32 / 0.07).ln());
    let bias = store.scalar("logit_bias")?.unwrap_or(0.0);
    let out = contrastive_loss(kind, &images, &texts, scale, bias, &batch.positives)?;

    let e = images.dim(1)?;
    let grad_images = Tensor::from_vec(out.grad_images, (b, e), images.device())?;
    // Samples sharing a caption share its embedding: their gradients add up.
    let mut grad_unique = vec![0f32; batch.texts.len() * e];
    for (sample, &t) in batch.text_of.iter().enumerate() {
        for d in 0..e {
            grad_unique[t * e + d] += out.grad_texts[sample * e + d];
        }
    }
    let grad_texts = Tensor::from_vec(grad_unique, (batch.texts.len(), e), images.device())?;

    let mut grads: HashMap<String, Tensor> = HashMap::new();
    let cached = |tower: Tower, k: usize| -> Result<Tensor> {
        Ok(match tower {
            Tower::Image => {
                let r = &image_chunks[k];
                grad_images.narrow(0, r.start, r.len())?
            }
            _ => {
                let r = &text_chunks[k];
                grad_texts.narrow(0, r.start, r.len())?
            }
        })
    };
    if single {
        let mut surrogate: Option<Tensor> = None;
        for (tower, k, e) in &kept {
            let term = (e * cached(*tower, *k)?)?.sum_all()?;
            surrogate = Some(match surrogate {
                Some(s) => (s + term)?,
                None => term,
            });
        }
        if let Some(s) = surrogate {
            accumulate(store, &s, &mut grads)?;
        }
    } else {
        if train_image {
            for (k, r) in image_chunks.iter().enumerate() {
                let e = embed_images(model, &batch.pixels, r)?;
                accumulate(
                    store,
                    &(e * cached(Tower::Image, k)?)?.sum_all()?,
                    &mut grads,
                )?;
            }
        }
        if train_text {
            for (k, r) in text_chunks.iter().enumerate() {
                let e = embed_texts(model, &batch.texts, r)?;
                accumulate(
                    store,
                    &(e * cached(Tower::Text, k)?)?.sum_all()?,
                    &mut grads,
                )?;
            }
        }
    }
    let device = store.device();
    grads.insert(
        "logit_scale".into(),
        Tensor::new(out.grad_logit_scale as f32, device)?,
    );
    if store.get("logit_bias").is_some() {
        grads.insert(
            "logit_bias".into(),
            Tensor::new(out.grad_logit_bias as f32, device)?,
        );
    }
    Ok(StepResult {
        loss: out.loss,
        grads,
    })
}

/// Backpropagates `surrogate` and adds each trainable parameter's gradient to `grads`.
fn accumulate(
    store: &ParamStore,
    surrogate: &Tensor,
    grads: &mut HashMap<String, Tensor>,
) -> Result<()> {
    let store_grads = surrogate.backward()?;
    for p in store.params().iter().filter(|p| p.trainable()) {
        if let Some(g) = store_grads.get(p.var().as_tensor()) {
            let g = g.to_dtype(DType::F32)?;
            let sum = match grads.remove(&p.name) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            grads.insert(p.name.clone(), sum);
        }
    }
    Ok(())
}
