//! Contrastive losses over a batch of normalised image and text embeddings, with
//! their gradients computed in closed form.
//!
//! The loss only sees the embeddings, so its gradient with respect to them is all
//! the towers need: [`crate::step`] backpropagates it through each micro-batch
//! (gradient caching). Its products with the embeddings run as candle matmuls
//! and the rest in f64: swept on the host in parallel for CPU embeddings, as
//! candle ops on the GPU for GPU ones (B² entries: a million at batch 1024, too
//! many to copy across each step).

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::error::{Result, TrainError};

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
    let b = images.dim(0)?;
    if b == 0 {
        return Err(TrainError::Invalid(
            "a contrastive loss needs at least one image-text pair".into(),
        ));
    }
    if let Positives::Groups(g) = positives {
        if g.len() != b {
            return Err(TrainError::Invalid(format!(
                "{} group ids for a batch of {b}",
                g.len()
            )));
        }
    }
    let scale = (logit_scale as f64).exp();
    let bias = if kind == LossKind::Siglip {
        logit_bias as f64
    } else {
        0.0
    };
    let sims = images.matmul(&texts.t()?)?;
    let Dlogits {
        loss,
        grad_logit_scale,
        grad_logit_bias,
        scaled: g,
    } = if images.device().is_cpu() {
        host_loss(kind, &sims, scale, bias, positives)?
    } else {
        device_loss(kind, &sims, scale, bias, positives)?
    };
    let grad_logit_bias = if kind == LossKind::Siglip {
        grad_logit_bias
    } else {
        0.0
    };
    // d/dI = scale * G T, d/dT = scale * Gᵀ I.
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

/// The loss over the B×B logits and its gradient G with respect to them.
struct Dlogits {
    loss: f64,
    /// `Σ G ⊙ (logits - bias)`: dLoss/d`logit_scale`.
    grad_logit_scale: f64,
    /// `Σ G`: dLoss/d`logit_bias` where the loss has one.
    grad_logit_bias: f64,
    /// `scale · G` in f32, on the embeddings' device.
    scaled: Tensor,
}

/// On the CPU: the logits in f64 swept in parallel by [`clip_loss`] or
/// [`siglip_loss`].
fn host_loss(
    kind: LossKind,
    sims: &Tensor,
    scale: f64,
    bias: f64,
    positives: &Positives,
) -> Result<Dlogits> {
    let (b, _) = sims.dims2()?;
    let device = sims.device();
    let sims: Vec<f32> = sims.flatten_all()?.to_vec1()?;
    // logits[i*b + j] = scale * <image i, text j> (+ bias)
    let logits: Vec<f64> = sims
        .par_iter()
        .with_min_len(ROWS_PER_TASK * b)
        .map(|&s| scale * s as f64 + bias)
        .collect();
    let mut grad = vec![0f64; b * b];
    let loss = match kind {
        LossKind::Clip => clip_loss(&logits, b, positives, &mut grad),
        LossKind::Siglip => siglip_loss(&logits, b, positives, &mut grad),
    };
    // The sums over G per row, added in row order.
    let mut scaled = vec![0f32; b * b];
    let row_sums: Vec<(f64, f64)> = scaled
        .par_chunks_mut(b)
        .zip(grad.par_chunks(b).zip(logits.par_chunks(b)))
        .with_min_len(ROWS_PER_TASK)
        .map(|(scaled, (grad, row))| {
            let (mut by_logit, mut total) = (0.0, 0.0);
            for ((s, &g), &l) in scaled.iter_mut().zip(grad).zip(row) {
                by_logit += g * (l - bias);
                total += g;
                *s = (g * scale) as f32;
            }
            (by_logit, total)
        })
        .collect();
    Ok(Dlogits {
        loss,
        grad_logit_scale: row_sums.iter().map(|s| s.0).sum(),
        grad_logit_bias: row_sums.iter().map(|s| s.1).sum(),
        scaled: Tensor::from_vec(scaled, (b, b), device)?,
    })
}

/// On a GPU: the same formulas as tensor ops in f64 where the embeddings are,
/// so that only three numbers cross to the host. (Copying the B² logits out
/// and G back, with the sweep between, took 260 ms of a 280 ms step at batch
/// 4096 on an H200 with 16 host cores.)
fn device_loss(
    kind: LossKind,
    sims: &Tensor,
    scale: f64,
    bias: f64,
    positives: &Positives,
) -> Result<Dlogits> {
    let (b, _) = sims.dims2()?;
    let device = sims.device();
    let logits = sims.to_dtype(DType::F64)?.affine(scale, bias)?;
    // 1 where (image i, text j) match, 0 elsewhere; symmetric.
    let matches = match positives {
        Positives::Diagonal => Tensor::eye(b, DType::F64, device)?,
        Positives::Groups(g) => {
            // Dense ids (a group's first sample): any usize ids fit in u32.
            let mut first: HashMap<usize, u32> = HashMap::new();
            let g: Vec<u32> = (0..b as u32)
                .map(|i| *first.entry(g[i as usize]).or_insert(i))
                .collect();
            let g = Tensor::from_vec(g, b, device)?;
            g.unsqueeze(1)?
                .broadcast_eq(&g.unsqueeze(0)?)?
                .to_dtype(DType::F64)?
        }
    };
    let mean = 1.0 / b as f64;
    let (loss, grad) = match kind {
        LossKind::Clip => {
            // Row i's targets spread over its positives, and column j's over its.
            let counts = matches.sum_keepdim(1)?;
            let row_targets = matches.broadcast_div(&counts)?;
            let column_targets = matches.broadcast_div(&counts.t()?)?;
            let row_log_p = logits.broadcast_sub(&log_sum_exp(&logits, 1)?)?;
            let column_log_p = logits.broadcast_sub(&log_sum_exp(&logits, 0)?)?;
            let loss = ((&row_targets * &row_log_p)? + (&column_targets * &column_log_p)?)?
                .sum_all()?
                .affine(-0.5 * mean, 0.0)?;
            let grad = ((row_log_p.exp()? - row_targets)?
                + (column_log_p.exp()? - column_targets)?)?
                .affine(0.5 * mean, 0.0)?;
            (loss, grad)
        }
        LossKind::Siglip => {
            // y = ±1; log σ(z) = min(z, 0) - ln(1 + e^-|z|), σ(-z) = e^-max(z, 0) / (1 + e^-|z|).
            let y = matches.affine(2.0, -1.0)?;
            let z = (&y * &logits)?;
            let e = z.abs()?.neg()?.exp()?;
            let one_plus_e = e.affine(1.0, 1.0)?;
            let log_sigmoid = ((&z - z.relu()?)? - one_plus_e.log()?)?;
            let loss = log_sigmoid.sum_all()?.affine(-mean, 0.0)?;
            let sigmoid_neg = (z.relu()?.neg()?.exp()? / one_plus_e)?;
            let grad = (y * sigmoid_neg)?.affine(-mean, 0.0)?;
            (loss, grad)
        }
    };
    let by_logit = (&grad * logits.affine(1.0, -bias)?)?.sum_all()?;
    let sums: Vec<f64> = Tensor::stack(&[loss, by_logit, grad.sum_all()?], 0)?.to_vec1()?;
    Ok(Dlogits {
        loss: sums[0],
        grad_logit_scale: sums[1],
        grad_logit_bias: sums[2],
        scaled: grad.affine(scale, 0.0)?.to_dtype(DType::F32)?,
    })
}

/// `log Σ exp` along `dim`, kept as a size-1 dimension.
fn log_sum_exp(x: &Tensor, dim: usize) -> Result<Tensor> {
    let max = x.max_keepdim(dim)?;
    Ok((x.broadcast_sub(&max)?.exp()?.sum_keepdim(dim)?.log()? + max)?)
}

/// Rows of the B×B logits handed to one rayon task: enough work per task to
/// outweigh its cost, and fixed, so the per-row partial sums (added up in row
/// order afterwards) make the loss the same on every run and thread count.
const ROWS_PER_TASK: usize = 16;

/// For each sample, how many samples of the batch match it (itself included).
fn positive_counts(positives: &Positives, b: usize) -> Vec<f64> {
    match positives {
        Positives::Diagonal => vec![1.0; b],
        Positives::Groups(g) => {
            let mut size: HashMap<usize, usize> = HashMap::new();
            for &id in g {
                *size.entry(id).or_default() += 1;
            }
            g.iter().map(|id| size[id] as f64).collect()
        }
    }
}

/// `f(i, row i of grad, row i of logits)` for every row of the B×B matrices,
/// in parallel; returns the sum of `f`'s results, added in row order.
fn sweep_rows(
    grad: &mut [f64],
    logits: &[f64],
    b: usize,
    f: impl Fn(usize, &mut [f64], &[f64]) -> f64 + Sync,
) -> f64 {
    let per_row: Vec<f64> = grad
        .par_chunks_mut(b)
        .zip(logits.par_chunks(b))
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .map(|(i, (grad, row))| f(i, grad, row))
        .collect();
    per_row.iter().sum()
}

/// Mean cross-entropy of rows (image→text) and of columns (text→image), halved;
/// targets spread evenly over the positives. Adds dLoss/dlogits into `grad`
/// (zeros from the caller).
///
/// The matrix is B² (a million entries at B = 1024, on the host even when the
/// model runs on a GPU), so it is swept row by row in parallel: softmax over
/// rows, then each column's max and log-sum-exp gathered a block of columns per
/// task, then the column softmax's gradient added row by row.
fn clip_loss(logits: &[f64], b: usize, positives: &Positives, grad: &mut [f64]) -> f64 {
    let counts = positive_counts(positives, b);
    let half_mean = 0.5 / b as f64;
    // Image→text: each row's softmax. The row's loss terms come back in order.
    let row_losses = sweep_rows(grad, logits, b, |i, grad, row| {
        let max = row.iter().copied().fold(f64::MIN, f64::max);
        let sum: f64 = row.iter().map(|&l| (l - max).exp()).sum();
        let log_z = max + sum.ln();
        softmax_terms(i, row, grad, positives, counts[i], half_mean, |_| log_z)
    });
    // Text→image: each column's log-sum-exp, a block of columns per task.
    let columns: Vec<Range<usize>> = (0..b)
        .step_by(ROWS_PER_TASK)
        .map(|c| c..(c + ROWS_PER_TASK).min(b))
        .collect();
    let log_z_columns: Vec<f64> = columns
        .par_iter()
        .flat_map_iter(|cols| {
            let mut max = vec![f64::MIN; cols.len()];
            for row in logits.chunks(b) {
                for (m, &l) in max.iter_mut().zip(&row[cols.clone()]) {
                    *m = m.max(l);
                }
            }
            let mut sum = vec![0.0; cols.len()];
            for row in logits.chunks(b) {
                for ((s, &l), &m) in sum.iter_mut().zip(&row[cols.clone()]).zip(&max) {
                    *s += (l - m).exp();
                }
            }
            max.into_iter().zip(sum).map(|(m, s)| m + s.ln())
        })
        .collect();
    let column_losses = sweep_rows(grad, logits, b, |i, grad, row| {
        softmax_terms(i, row, grad, positives, counts[i], half_mean, |j| {
            log_z_columns[j]
        })
    });
    0.5 * (row_losses + column_losses) / b as f64
}

/// Row i's share of one direction of [`clip_loss`], its entries normalised
/// by `log_z(j)` (the row's log-partition, or each column's): adds
/// `half_mean·(p - target)` to each gradient entry and returns `-Σ target·log p`.
/// Targets spread 1 over the positives; matching is symmetric, so entry (i, j)
/// of a positive pair has the same `count` in its row and its column.
fn softmax_terms(
    i: usize,
    row: &[f64],
    grad: &mut [f64],
    positives: &Positives,
    count: f64,
    half_mean: f64,
    log_z: impl Fn(usize) -> f64,
) -> f64 {
    let mut loss = 0.0;
    for (j, (g, &l)) in grad.iter_mut().zip(row).enumerate() {
        let log_p = l - log_z(j);
        let target = if positives.matches(i, j) {
            loss -= log_p / count;
            1.0 / count
        } else {
            0.0
        };
        *g += half_mean * (log_p.exp() - target);
    }
    loss
}

/// `-Σ log σ(y·logit) / B` with y = +1 for positives and -1 otherwise.
fn siglip_loss(logits: &[f64], b: usize, positives: &Positives, grad: &mut [f64]) -> f64 {
    let row_losses = sweep_rows(grad, logits, b, |i, grad, row| {
        let mut loss = 0.0;
        for (j, (g, &l)) in grad.iter_mut().zip(row).enumerate() {
            let y = if positives.matches(i, j) { 1.0 } else { -1.0 };
            let z = y * l;
            loss -= log_sigmoid(z);
            // d/dz -log σ(z) = -σ(-z)
            *g = -y * sigmoid(-z) / b as f64;
        }
        loss
    });
    row_losses / b as f64
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
    use seer_testkit::test_device;

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

    /// The row-parallel sweeps against the textbook loops, on a batch that spans
    /// several tasks and column blocks with a partial last one.
    #[test]
    fn parallel_sweeps_match_the_plain_loops() {
        let b = 2 * ROWS_PER_TASK + 5;
        let groups: Vec<usize> = (0..b).map(|i| (i * 7) % 11).collect();
        let mut rng = seer_data::Rng::from_state(5);
        let logits: Vec<f64> = (0..b * b).map(|_| 3.0 * rng.normal()).collect();
        for positives in [Positives::Diagonal, Positives::Groups(groups)] {
            let mut want = vec![0f64; b * b];
            let mut want_loss = 0.0;
            for direction in 0..2 {
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
                        want_loss -= 0.5 * target * (logits[k] - log_z) / b as f64;
                        want[k] += 0.5 * ((logits[k] - log_z).exp() - target) / b as f64;
                    }
                }
            }
            let mut got = vec![0f64; b * b];
            let loss = clip_loss(&logits, b, &positives, &mut got);
            assert!(
                (loss - want_loss).abs() < 1e-12,
                "{positives:?}: {loss} vs {want_loss}"
            );
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-14, "{positives:?} [{k}]: {g} vs {w}");
            }

            let mut got = vec![0f64; b * b];
            let loss = siglip_loss(&logits, b, &positives, &mut got);
            let mut want_loss = 0.0;
            for k in 0..b * b {
                let y = if positives.matches(k / b, k % b) {
                    1.0
                } else {
                    -1.0
                };
                want_loss -= (1.0 / (1.0 + (-y * logits[k]).exp())).ln() / b as f64;
                let want = -y / (1.0 + (y * logits[k]).exp()) / b as f64;
                assert!((got[k] - want).abs() < 1e-14, "siglip [{k}]");
            }
            assert!(
                (loss - want_loss).abs() < 1e-10,
                "siglip: {loss} vs {want_loss}"
            );
        }
    }

    /// The GPU's tensor-op loss against the host sweep (run on the CPU where
    /// no GPU is given): the same f64 formulas, so equal to rounding.
    #[test]
    fn tensor_ops_match_the_host_sweep() {
        let b = 2 * ROWS_PER_TASK + 5;
        let groups: Vec<usize> = (0..b).map(|i| (i * 7) % 11).collect();
        let sims = sample(b, 8, 6)
            .matmul(&sample(b, 8, 7).t().unwrap())
            .unwrap();
        let on_device = sims.to_device(&test_device()).unwrap();
        for kind in [LossKind::Clip, LossKind::Siglip] {
            for positives in [Positives::Diagonal, Positives::Groups(groups.clone())] {
                let want = host_loss(kind, &sims, 14.3, -3.0, &positives).unwrap();
                let got = device_loss(kind, &on_device, 14.3, -3.0, &positives).unwrap();
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
                let what = format!("{kind:?} {positives:?}");
                assert!(
                    close(got.loss, want.loss),
                    "{what}: {} vs {}",
                    got.loss,
                    want.loss
                );
                assert!(
                    close(got.grad_logit_scale, want.grad_logit_scale),
                    "{what} scale"
                );
                assert!(
                    close(got.grad_logit_bias, want.grad_logit_bias),
                    "{what} bias"
                );
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (k, (g, w)) in flat(&got.scaled).iter().zip(flat(&want.scaled)).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1e-3),
                        "{what} [{k}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_empty_batch_or_a_wrong_group_count_is_an_error() {
        let none = sample(0, 4, 1);
        let err = contrastive_loss(LossKind::Clip, &none, &none, 1.0, 0.0, &Positives::Diagonal)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one"), "{err}");
        let two = sample(2, 4, 1);
        let groups = Positives::Groups(vec![0, 1, 1]);
        let err = contrastive_loss(LossKind::Siglip, &two, &two, 1.0, 0.0, &groups)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 group ids for a batch of 2"), "{err}");
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
