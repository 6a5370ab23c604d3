//! Evaluation during training: zero-shot accuracy on a labeled set and recall@K
//! on held-out image–caption pairs. Both sets are decoded once and kept in
//! memory, so each evaluation costs only the forward passes.

use std::collections::BTreeMap;
use std::sync::Arc;

use seer_engine::{Clip, ZeroShotClassifier};
use seer_models::ClipModel;
use seer_tokenizer::ClipTokenizer;

use crate::error::Result;

/// Images with class indices, preprocessed for evaluation.
pub struct LabeledSet {
    pub pixels: Vec<f32>,
    pub classes: Vec<usize>,
    pub class_names: Vec<String>,
    pub templates: Vec<String>,
}

/// Images with one caption each, preprocessed for evaluation.
pub struct PairSet {
    pub pixels: Vec<f32>,
    pub captions: Vec<String>,
    pub ks: Vec<usize>,
}

const EVAL_BATCH: usize = 256;

fn embed_all(clip: &Clip, pixels: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
    let per = pixels.len() / n.max(1);
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(EVAL_BATCH) {
        let m = EVAL_BATCH.min(n - start);
        let chunk = pixels[start * per..(start + m) * per].to_vec();
        out.extend(clip.embed_pixels(chunk, m, true)?);
    }
    Ok(out)
}

/// Top-1 and top-5 zero-shot accuracy with the prompt ensemble.
pub fn zeroshot_accuracy(clip: &Clip, set: &LabeledSet) -> Result<(f64, f64)> {
    let classifier = ZeroShotClassifier::new(clip, &set.class_names, &set.templates, 256)?;
    let n = set.classes.len();
    let images = embed_all(clip, &set.pixels, n)?;
    let (mut top1, mut top5) = (0usize, 0usize);
    for (e, &truth) in images.iter().zip(&set.classes) {
        let p = classifier.probabilities(e);
        let rank = p.iter().filter(|&&x| x > p[truth]).count();
        top1 += (rank == 0) as usize;
        top5 += (rank < 5) as usize;
    }
    let n = n.max(1) as f64;
    Ok((top1 as f64 / n, top5 as f64 / n))
}

/// Recall@K both ways (text→image and image→text), pair i being the match.
pub fn pair_recall(clip: &Clip, set: &PairSet) -> Result<BTreeMap<String, f64>> {
    let n = set.captions.len();
    let images = embed_all(clip, &set.pixels, n)?;
    let texts = clip.embed_texts(&set.captions, &Default::default())?;
    let dot = seer_engine::zeroshot::dot;
    let rank = |query: &[f32], keys: &[Vec<f32>], own: usize| {
        let target = dot(query, &keys[own]);
        keys.iter().filter(|k| dot(query, k) > target).count()
    };
    let t2i: Vec<usize> = (0..n).map(|i| rank(&texts[i], &images, i)).collect();
    let i2t: Vec<usize> = (0..n).map(|i| rank(&images[i], &texts, i)).collect();
    let mut out = BTreeMap::new();
    for &k in &set.ks {
        let recall =
            |ranks: &[usize]| ranks.iter().filter(|&&r| r < k).count() as f64 / n.max(1) as f64;
        out.insert(format!("text_to_image_r@{k}"), recall(&t2i));
        out.insert(format!("image_to_text_r@{k}"), recall(&i2t));
    }
    Ok(out)
}

/// A [`Clip`] around a snapshot of the model being trained.
pub fn snapshot_clip(
    model: ClipModel,
    tokenizer: &Arc<ClipTokenizer>,
    preprocess: &seer_image::PreprocessConfig,
) -> Clip {
    Clip {
        id: "training snapshot".into(),
        model,
        tokenizer: tokenizer.clone(),
        preprocess: preprocess.clone(),
    }
}
