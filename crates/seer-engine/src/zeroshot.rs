//! Zero-shot classification with prompt ensembles, as in the CLIP paper: each class
//! is the renormalised mean of its normalised template embeddings, and an image's
//! class probabilities follow the model's [`ScoreRule`] (CLIP: softmax of the
//! scaled cosine similarities; SigLIP: a sigmoid per label).

use crate::embed::EmbedOptions;
use crate::error::{EngineError, Result};
use crate::prompts::fill;
use crate::tasks::{ScoreRule, TextEncoder};

pub struct ZeroShotClassifier {
    pub labels: Vec<String>,
    /// One unit vector per class.
    class_embeddings: Vec<Vec<f32>>,
    rule: ScoreRule,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub probability: f32,
}

impl ZeroShotClassifier {
    pub fn new(
        text: &dyn TextEncoder,
        labels: &[String],
        templates: &[String],
        batch_size: usize,
    ) -> Result<Self> {
        if labels.is_empty() || templates.is_empty() {
            return Err(EngineError::Invalid(
                "zero-shot classification needs at least one label and one template".into(),
            ));
        }
        let options = EmbedOptions {
            batch_size,
            normalize: true,
            ..Default::default()
        };
        let prompts: Vec<String> = labels
            .iter()
            .flat_map(|l| templates.iter().map(move |t| fill(t, l)))
            .collect();
        let embedded = text.embed_texts(&prompts, &options)?;
        Ok(Self::from_prompt_embeddings(
            labels,
            &embedded,
            templates.len(),
            text.score_rule(),
        ))
    }

    /// From normalised prompt embeddings, `templates` per label in label order
    /// (for callers that embed the prompts themselves, e.g. in shared batches).
    pub fn from_prompt_embeddings(
        labels: &[String],
        embedded: &[Vec<f32>],
        templates: usize,
        rule: ScoreRule,
    ) -> Self {
        let class_embeddings = embedded
            .chunks(templates.max(1))
            .map(|per_class| {
                let mut mean = vec![0f32; per_class[0].len()];
                for e in per_class {
                    mean.iter_mut()
                        .zip(e)
                        .for_each(|(m, x)| *m += x / per_class.len() as f32);
                }
                normalize(mean)
            })
            .collect();
        Self {
            labels: labels.to_vec(),
            class_embeddings,
            rule,
        }
    }

    /// Class probabilities for one L2-normalised image embedding.
    pub fn probabilities(&self, image: &[f32]) -> Vec<f32> {
        let cosines: Vec<f32> = self
            .class_embeddings
            .iter()
            .map(|c| dot(c, image))
            .collect();
        self.rule.probabilities(&cosines)
    }

    /// The `k` most probable classes, best first.
    pub fn top_k(&self, probabilities: &[f32], k: usize) -> Vec<Prediction> {
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        order
            .into_iter()
            .take(k)
            .map(|i| Prediction {
                label: self.labels[i].clone(),
                index: i,
                probability: probabilities[i],
            })
            .collect()
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}
