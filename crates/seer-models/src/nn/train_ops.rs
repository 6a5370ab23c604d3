//! Differentiable operations for training on the CPU: LayerNorm's
//! normalisation, softmax and quick-GELU, each one fused pass forward and one
//! backward.
//! candle has fused forward kernels for both but no backward pass, so training
//! used to compose them from 6–9 elementwise and reduction ops, each a pass over
//! memory and an allocation, twice over for the gradient. Other devices and
//! dtypes keep the composite form.

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

/// Rows per rayon task: enough work to pay for the split at ViT widths.
const ROWS_PER_TASK: usize = 16;

/// `(x - mean) / sqrt(var + eps)` over the last dimension, with the biased
/// variance (as `nn.LayerNorm`), differentiable.
pub fn normalize_rows(x: &Tensor, eps: f32) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(Normalize { eps });
    }
    let width = x.dim(D::Minus1)? as f64;
    let centred = x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / width)?)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / width)?;
    centred.broadcast_div(&(var + eps as f64)?.sqrt()?)
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(Softmax);
    }
    // The row maximum is detached: softmax is shift-invariant, so its gradient
    // through the maximum is zero anyway.
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let num = shifted.exp()?;
    num.broadcast_div(&num.sum_keepdim(D::Minus1)?)
}

/// `x·σ(1.702x)` (OpenAI CLIP's quick-GELU), differentiable.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(QuickGelu);
    }
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

/// The f32 data of a contiguous tensor and its row width.
fn rows<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<(&'a [f32], usize)> {
    let CpuStorage::F32(data) = s else {
        bail!("{op}: f32 only")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{op}: the input must be contiguous")
    };
    let width = l.dims().last().copied().unwrap_or(1).max(1);
    Ok((&data[start..end], width))
}

/// Runs `f(input rows.., output row)` over every row, in parallel.
fn map_rows<const N: usize>(
    inputs: [&[f32]; N],
    width: usize,
    f: impl Fn([&[f32]; N], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; inputs[0].len()];
    out.par_chunks_mut(width)
        .with_min_len(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(i, o)| f(inputs.map(|x| &x[i * width..(i + 1) * width]), o));
    out
}

/// A forward op's `cpu_fwd`: `f(input row, output row)` over every row.
fn forward_rows(
    op: &str,
    s: &CpuStorage,
    l: &Layout,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (x, width) = rows(s, l, op)?;
    let out = map_rows([x], width, |[x], y| f(x, y));
    Ok((CpuStorage::F32(out), l.shape().clone()))
}

/// A gradient op's `cpu_fwd`: `f(saved row, gradient row, dx row)` over every
/// row of the forward's saved tensor (its input or output) and the gradient.
fn gradient_rows(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (x, width) = rows(s1, l1, op)?;
    let (g, _) = rows(s2, l2, op)?;
    if x.len() != g.len() {
        bail!("{op}: {} values, {} gradients", x.len(), g.len())
    }
    let out = map_rows([x, g], width, |[x, g], dx| f(x, g, dx));
    Ok((CpuStorage::F32(out), l1.shape().clone()))
}

fn mean(row: &[f32]) -> f32 {
    row.iter().sum::<f32>() / row.len() as f32
}

/// `1 / sqrt(var + eps)` and the mean of a row.
fn inv_std(row: &[f32], eps: f32) -> (f32, f32) {
    let mu = mean(row);
    let var = row.iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>() / row.len() as f32;
    (1.0 / (var + eps).sqrt(), mu)
}

struct Normalize {
    eps: f32,
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "seer-normalize-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        forward_rows(self.name(), s, l, |x, y| {
            let (inv, mu) = inv_std(x, self.eps);
            for (y, &v) in y.iter_mut().zip(x) {
                *y = (v - mu) * inv;
            }
        })
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(
            &grad,
            &NormalizeGrad { eps: self.eps },
        )?))
    }
}

/// `dx = (g - mean(g) - y·mean(g·y)) / σ` for `y = (x - μ)/σ`.
struct NormalizeGrad {
    eps: f32,
}

impl CustomOp2 for NormalizeGrad {
    fn name(&self) -> &'static str {
        "seer-normalize-rows-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gradient_rows(self.name(), (s1, l1), (s2, l2), |x, g, dx| {
            let (inv, mu) = inv_std(x, self.eps);
            let n = x.len() as f32;
            let (mut g_sum, mut gy_sum) = (0f32, 0f32);
            for (&v, &gv) in x.iter().zip(g) {
                g_sum += gv;
                gy_sum += gv * (v - mu) * inv;
            }
            let (g_mean, gy_mean) = (g_sum / n, gy_sum / n);
            for ((d, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
                *d = (gv - g_mean - (v - mu) * inv * gy_mean) * inv;
            }
        })
    }
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "seer-softmax-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        forward_rows(self.name(), s, l, |x, y| {
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for (y, &v) in y.iter_mut().zip(x) {
                *y = (v - max).exp();
            }
            let inv = 1.0 / y.iter().sum::<f32>();
            for y in y.iter_mut() {
                *y *= inv;
            }
        })
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(
            res.contiguous()?.apply_op2_no_bwd(&grad, &SoftmaxGrad)?,
        ))
    }
}

/// `dx = y ⊙ (g - Σ g·y)` for `y = softmax(x)`.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "seer-softmax-rows-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gradient_rows(self.name(), (s1, l1), (s2, l2), |y, g, dx| {
            let dot: f32 = y.iter().zip(g).map(|(&a, &b)| a * b).sum();
            for ((d, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
                *d = yv * (gv - dot);
            }
        })
    }
}

fn quick_gelu_sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-1.702 * x).exp())
}

struct QuickGelu;

impl CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "seer-quick-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        forward_rows(self.name(), s, l, |x, y| {
            for (y, &v) in y.iter_mut().zip(x) {
                *y = v * quick_gelu_sigmoid(v);
            }
        })
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &QuickGeluGrad)?))
    }
}

/// `dx = g·(s + 1.702·x·s·(1 - s))` for `s = σ(1.702x)`.
struct QuickGeluGrad;

impl CustomOp2 for QuickGeluGrad {
    fn name(&self) -> &'static str {
        "seer-quick-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gradient_rows(self.name(), (s1, l1), (s2, l2), |x, g, dx| {
            for ((d, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
                let s = quick_gelu_sigmoid(v);
                *d = gv * (s + 1.702 * v * s * (1.0 - s));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Each fused op against the composite one, values and gradients, on a
    /// loss that weights every output differently.
    fn check(
        fused: impl Fn(&Tensor) -> Result<Tensor>,
        composite: impl Fn(&Tensor) -> Result<Tensor>,
    ) {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..6 * 37)
            .map(|i| ((i * 7919 % 211) as f32 - 100.0) / 37.0)
            .collect();
        let weights: Vec<f32> = (0..6 * 37)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let weights = Tensor::from_vec(weights, (2, 3, 37), &dev).unwrap();
        let run = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
            let x = Var::from_tensor(&Tensor::from_vec(data.clone(), (2, 3, 37), &dev).unwrap())
                .unwrap();
            let y = f(x.as_tensor()).unwrap();
            let loss = (&y * &weights).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
        };
        let (y1, g1) = run(&fused);
        let (y2, g2) = run(&composite);
        for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn fused_normalisation_matches_the_composite_form() {
        check(
            |x| normalize_rows(x, 1e-5),
            |x| {
                let ones = Tensor::ones(37, DType::F32, x.device())?;
                let zeros = Tensor::zeros(37, DType::F32, x.device())?;
                candle_nn::ops::layer_norm_slow(x, &ones, &zeros, 1e-5)
            },
        );
    }

    #[test]
    fn fused_softmax_matches_the_composite_form() {
        check(softmax_rows, |x| {
            let num = x.exp()?;
            num.broadcast_div(&num.sum_keepdim(D::Minus1)?)
        });
    }

    #[test]
    fn fused_quick_gelu_matches_the_composite_form() {
        check(quick_gelu, |x| x * candle_nn::ops::sigmoid(&(x * 1.702)?)?);
    }
}
