//! Contrastive losses over a batch of normalised image and text embeddings, with
//! their gradients computed in closed form.
//!
//! The loss only sees the embeddings, so its gradient with respect to them is all
//! the towers need: [`crate::step`] backpropagates it through each micro-batch
//! (gradient caching). The B×B similarity matrix is small; its products run as
//! candle matmuls and the rest in f64.

use candle_core::Tensor;

use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// CLIP's symmetric cross-entropy over the similarity matrix (softmax).
    Clip,
    /// SigLIP's pairwise sigmoid loss with a learnable bias.
    Siglip,
}

/// Which (image, text) pairs of a batch count as matching.
#[derive(Clone, Debug)]
pub enum Positives {
    /// Only pair i with text i.
    Diagonal,
    /// Samples with the same group id (same caption or class) all match each other.
    Groups(Vec<usize>),
}

impl Positives {
    fn matches(&self, i: usize, j: usize) -> bool {
        match self {
            Self::Diagonal => i == j,
            Self::Groups(g) => g[i] == g[j],
        }
    }
}

#[derive(Debug)]
pub struct LossOutput {
    pub loss: f64,
    /// dLoss/dImageEmbeddings, (B, E) row-major.
    pub grad_images: Vec<f32>,
    /// dLoss/dTextEmbeddings, (B, E) row-major, one row per sample.
    pub grad_texts: Vec<f32>,
    /// dLoss/d`logit_scale` (the logarithm of the temperature factor).
    pub grad_logit_scale: f64,
    /// dLoss/d`logit_bias` (SigLIP only, 0 otherwise).
    pub grad_logit_bias: f64,
}

/// `images` and `texts`: (B, E) normalised, row i of each forming pair i.
pub fn contrastive_loss(
    kind: LossKind,
    images: &Tensor,
    texts: &Tensor,
    logit_scale: f32,
    logit_bias: f32,
    positives: &Positives,
) -> Result<LossOutput> {
    let (b, _) = images.dims2()?;
    let scale = (logit_scale as f64).exp();
    let sims: Vec<f32> = images.matmul(&texts.t()?)?.flatten_all()?.to_vec1()?;
    // logits[i*b + j] = scale * <image i, text j> (+ bias)
    let bias = if kind == LossKind::Siglip {
        logit_bias as f64
    } else {
        0.0
    };
    let logits: Vec<f64> = sims.iter().map(|&s| scale * s as f64 + bias).collect();
    let mut grad = vec![0f64; b * b];
    let loss = match kind {
        LossKind::Clip => clip_loss(&logits, b, positives, &mut grad),
        LossKind::Siglip => siglip_loss(&logits, b, positives, &mut grad),
    };
    let grad_logit_scale: f64 = grad.iter().zip(&logits).map(|(g, l)| g * (l - bias)).sum();
    let grad_logit_bias = if kind == LossKind::Siglip {
        grad.iter().sum()
    } else {
        0.0
    };
    // d/dI = scale * G T, d/dT = scale * Gᵀ I.
    let g = Tensor::from_vec(
        grad.iter()
            .map(|&v| (v * scale) as f32)
            .collect::<Vec<f32>>(),
        (b, b),
        images.device(),
    )?;
    let grad_images = g.matmul(texts)?.flatten_all()?.to_vec1()?;
    let grad_texts = g.t()?.matmul(images)?.flatten_all()?.to_vec1()?;
    Ok(LossOutput {
        loss,
        grad_images,
        grad_texts,
        grad_logit_scale,
        grad_logit_bias,
    })
}

/// Mean cross-entropy of rows (image→text) and of columns (text→image), halved;
/// targets spread evenly over the positives. Fills dLoss/dlogits.
fn clip_loss(logits: &[f64], b: usize, positives: &Positives, grad: &mut [f64]) -> f64 {
    let mut total = 0.0;
    for direction in 0..2 {
        // direction 0: row i holds logits[i][*]; direction 1: row i holds logits[*][i].
        let at = |i: usize, j: usize| if direction == 0 { i * b + j } else { j * b + i };
        for i in 0..b {
            let max = (0..b).map(|j| logits[at(i, j)]).fold(f64::MIN, f64::max);
            let sum: f64 = (0..b).map(|j| (logits[at(i, j)] - max).exp()).sum();
            let log_z = max + sum.ln();
            let count = (0..b).filter(|&j| positives.matches(i, j)).count() as f64;
            for j in 0..b {
                let k = at(i, j);
                let target = if positives.matches(i, j) {
                    1.0 / count
                } else {
                    0.0
                };
                total -= target * (logits[k] - log_z);
                let p = (logits[k] - log_z).exp();
                grad[k] += 0.5 * (p - target) / b as f64;
            }
        }
    }
    0.5 * total / b as f64
}

/// `-Σ log σ(y·logit) / B` with y = +1 for positives and -1 otherwise.
fn siglip_loss(logits: &[f64], b: usize, positives: &Positives, grad: &mut [f64]) -> f64 {
    let mut total = 0.0;
    for i in 0..b {
        for j in 0..b {
            let k = i * b + j;
            let y = if positives.matches(i, j) { 1.0 } else { -1.0 };
            let z = y * logits[k];
            total -= log_sigmoid(z);
            // d/dz -log σ(z) = -σ(-z)
            grad[k] = -y * sigmoid(-z) / b as f64;
        }
    }
    total / b as f64
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn unit_rows(values: &[f32], b: usize, e: usize) -> Tensor {
        let t = Tensor::from_slice(values, (b, e), &Device::Cpu).unwrap();
        seer_models::l2_normalize(&t).unwrap()
    }

    fn sample(b: usize, e: usize, seed: u64) -> Tensor {
        let mut rng = seer_data::Rng::from_state(seed);
        let v: Vec<f32> = (0..b * e).map(|_| rng.normal() as f32).collect();
        unit_rows(&v, b, e)
    }

    /// Every analytic gradient against central finite differences of the loss.
    #[test]
    fn gradients_match_finite_differences() {
        let (b, e) = (5, 4);
        let images = sample(b, e, 1);
        let texts = sample(b, e, 2);
        for kind in [LossKind::Clip, LossKind::Siglip] {
            for positives in [Positives::Diagonal, Positives::Groups(vec![0, 1, 0, 2, 1])] {
                let out = contrastive_loss(kind, &images, &texts, 1.3, -2.0, &positives).unwrap();
                let loss_with = |img: &Tensor, txt: &Tensor, s: f32, bias: f32| {
                    contrastive_loss(kind, img, txt, s, bias, &positives)
                        .unwrap()
                        .loss
                };
                let h = 1e-3f32;
                let base_i: Vec<f32> = images.flatten_all().unwrap().to_vec1().unwrap();
                let base_t: Vec<f32> = texts.flatten_all().unwrap().to_vec1().unwrap();
                for k in [0, 3, 7, 19] {
                    let bump = |v: &[f32], d: f32| {
                        let mut v = v.to_vec();
                        v[k] += d;
                        Tensor::from_vec(v, (b, e), &Device::Cpu).unwrap()
                    };
                    let num_i = (loss_with(&bump(&base_i, h), &texts, 1.3, -2.0)
                        - loss_with(&bump(&base_i, -h), &texts, 1.3, -2.0))
                        / (2.0 * h as f64);
                    let num_t = (loss_with(&images, &bump(&base_t, h), 1.3, -2.0)
                        - loss_with(&images, &bump(&base_t, -h), 1.3, -2.0))
                        / (2.0 * h as f64);
                    assert!(
                        (num_i - out.grad_images[k] as f64).abs() < 1e-3,
                        "{kind:?} image {k}"
                    );
                    assert!(
                        (num_t - out.grad_texts[k] as f64).abs() < 1e-3,
                        "{kind:?} text {k}"
                    );
                }
                let num_s = (loss_with(&images, &texts, 1.3 + h, -2.0)
                    - loss_with(&images, &texts, 1.3 - h, -2.0))
                    / (2.0 * h as f64);
                assert!(
                    (num_s - out.grad_logit_scale).abs() < 1e-3,
                    "{kind:?} scale"
                );
                let num_b = (loss_with(&images, &texts, 1.3, -2.0 + h)
                    - loss_with(&images, &texts, 1.3, -2.0 - h))
                    / (2.0 * h as f64);
                assert!((num_b - out.grad_logit_bias).abs() < 1e-3, "{kind:?} bias");
            }
        }
    }

    /// Groups where every sample is alone are the plain diagonal loss.
    #[test]
    fn singleton_groups_equal_diagonal() {
        let images = sample(4, 3, 3);
        let texts = sample(4, 3, 4);
        let a = contrastive_loss(
            LossKind::Clip,
            &images,
            &texts,
            2.0,
            0.0,
            &Positives::Diagonal,
        )
        .unwrap();
        let b = contrastive_loss(
            LossKind::Clip,
            &images,
            &texts,
            2.0,
            0.0,
            &Positives::Groups(vec![7, 1, 2, 3]),
        )
        .unwrap();
        assert_eq!(a.loss, b.loss);
        assert_eq!(a.grad_images, b.grad_images);
    }
}
