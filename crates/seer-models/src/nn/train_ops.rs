//! Differentiable operations for training on the CPU: LayerNorm (with its
//! scale and shift), softmax and quick-GELU, each one fused pass forward and one
//! backward.
//! candle has fused forward kernels for both but no backward pass, so training
//! used to compose them from 6–9 elementwise and reduction ops, each a pass over
//! memory and an allocation, twice over for the gradient. On a GPU the same ops
//! run as CUDA kernels ([`crate::nn::train_cuda`]); other devices and dtypes
//! keep the composite form.

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use seer_kernels::alloc::filled_parallel;

/// Rows per rayon task: enough work to pay for the split at ViT widths.
const ROWS_PER_TASK: usize = 16;

/// Whether the training ops run on seer's CPU kernels for `t`: a CPU f32
/// tensor. Other devices and dtypes take candle's composite forms.
pub(crate) fn on_cpu_kernels(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Whether this module's fused ops take `t`: f32 on the CPU, or on a GPU of a
/// `--features cuda` build ([`crate::nn::train_cuda`]).
fn fused(t: &Tensor) -> bool {
    on_cpu_kernels(t) || cfg!(feature = "cuda") && t.device().is_cuda() && t.dtype() == DType::F32
}

/// `nn.LayerNorm` over the last dimension: `(x - mean) / sqrt(var + eps)`
/// (biased variance) times `gamma` plus `beta`, differentiable in all three.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
    if fused(x) {
        return x.contiguous()?.apply_op3(
            &gamma.contiguous()?,
            &beta.contiguous()?,
            LayerNorm { eps },
        );
    }
    let width = x.dim(D::Minus1)? as f64;
    let centred = x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / width)?)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / width)?;
    centred
        .broadcast_div(&(var + eps as f64)?.sqrt()?)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
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
    if fused(x) {
        return x.contiguous()?.apply_op1(QuickGelu);
    }
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

/// The f32 values of a contiguous tensor (the training ops' inputs).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("{op}: f32 only")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{op}: the input must be contiguous")
    };
    Ok(&data[start..end])
}

/// The f32 data of a contiguous tensor and its row width.
fn rows<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<(&'a [f32], usize)> {
    let width = l.dims().last().copied().unwrap_or(1).max(1);
    Ok((contiguous_f32(s, l, op)?, width))
}

/// Runs `f(input rows.., output row)` over every row, in parallel.
fn map_rows<const N: usize>(
    inputs: [&[f32]; N],
    width: usize,
    f: impl Fn([&[f32]; N], &mut [f32]) + Sync,
) -> Vec<f32> {
    filled_parallel(inputs[0].len(), ROWS_PER_TASK * width, |offset, out| {
        for (i, o) in out.chunks_exact_mut(width).enumerate() {
            let at = offset + i * width;
            f(inputs.map(|x| &x[at..at + width]), o);
        }
    })
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

/// A gradient op's inputs: the forward's saved tensor, the gradient of the
/// same size, and the row width.
fn saved_and_gradient<'a>(
    op: &str,
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
) -> Result<(&'a [f32], &'a [f32], usize)> {
    let (x, width) = rows(s1, l1, op)?;
    let (g, _) = rows(s2, l2, op)?;
    if x.len() != g.len() {
        bail!("{op}: {} values, {} gradients", x.len(), g.len())
    }
    Ok((x, g, width))
}

/// A gradient op's `cpu_fwd`: `f(saved row, gradient row, dx row)` over every
/// row of the forward's saved tensor (its input or output) and the gradient.
fn gradient_rows(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (x, g, width) = saved_and_gradient(op, (s1, l1), (s2, l2))?;
    let out = map_rows([x, g], width, |[x, g], dx| f(x, g, dx));
    Ok((CpuStorage::F32(out), l1.shape().clone()))
}

struct LayerNorm {
    eps: f32,
}

/// The contiguous f32 values of a `width`-wide parameter.
fn parameter<'a>(s: &'a CpuStorage, l: &Layout, width: usize, op: &str) -> Result<&'a [f32]> {
    let (values, _) = rows(s, l, op)?;
    if values.len() != width {
        bail!("{op}: {} parameters for rows of {width}", values.len())
    }
    Ok(values)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "seer-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, width) = rows(s1, l1, self.name())?;
        let gamma = parameter(s2, l2, width, self.name())?;
        let beta = parameter(s3, l3, width, self.name())?;
        let y = filled_parallel(x.len(), ROWS_PER_TASK * width, |offset, y| {
            let x = &x[offset..offset + y.len()];
            seer_kernels::ops::layer_norm(x, width, gamma, beta, self.eps, y)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::train_cuda::layer_norm((s1, l1), (s2, l2), (s3, l3), self.eps)
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // One pass yields all three: dx's rows, then dγ and dβ as two more rows.
        let width = x.dim(D::Minus1)?;
        let rows = x.elem_count() / width.max(1);
        let all =
            x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let dx = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = all.narrow(0, rows, 1)?.reshape(width)?;
        let dbeta = all.narrow(0, rows + 1, 1)?.reshape(width)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// For `y = x̂·γ + β` with `x̂ = (x - μ)/σ`: `dx = (ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) / σ`
/// with `ĝ = g·γ`, `dγ = Σ g·x̂` and `dβ = Σ g` over rows. Output: `(rows + 2, width)`.
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "seer-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g, width) = saved_and_gradient(self.name(), (s1, l1), (s3, l3))?;
        let gamma = parameter(s2, l2, width, self.name())?;
        let n = x.len() / width;
        let out = seer_kernels::train::layer_norm_backward(x, g, gamma, self.eps);
        Ok((CpuStorage::F32(out), Shape::from((n + 2, width))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::train_cuda::layer_norm_grad((s1, l1), (s2, l2), (s3, l3), self.eps)
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

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::train_cuda::softmax_rows(s, l)
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

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::train_cuda::softmax_rows_grad((s1, l1), (s2, l2))
    }
}

struct QuickGelu;

impl CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "seer-quick-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        Ok((
            CpuStorage::F32(seer_kernels::train::quick_gelu(x)),
            l.shape().clone(),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::train_cuda::quick_gelu((s, l), None)
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
        let (x, g, _) = saved_and_gradient(self.name(), (s1, l1), (s2, l2))?;
        let dx = seer_kernels::train::quick_gelu_backward(x, g);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::train_cuda::quick_gelu((s1, l1), Some((s2, l2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use seer_testkit::test_device;

    /// Each fused op (on the test device) against the composite one (on the
    /// CPU), values and gradients, on a loss that weights every output
    /// differently. The fused op gets its parameters moved to its device.
    fn check(
        fused: impl Fn(&Tensor, &Device) -> Result<Tensor>,
        composite: impl Fn(&Tensor) -> Result<Tensor>,
    ) {
        let data: Vec<f32> = (0..6 * 37)
            .map(|i| ((i * 7919 % 211) as f32 - 100.0) / 37.0)
            .collect();
        let weights: Vec<f32> = (0..6 * 37)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let run = |dev: &Device, f: &dyn Fn(&Tensor) -> Result<Tensor>| {
            let weights = Tensor::from_vec(weights.clone(), (2, 3, 37), dev).unwrap();
            let x = Var::from_tensor(&Tensor::from_vec(data.clone(), (2, 3, 37), dev).unwrap())
                .unwrap();
            let y = f(x.as_tensor()).unwrap();
            let loss = (&y * &weights).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let on_host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (on_host(&y), on_host(grads.get(x.as_tensor()).unwrap()))
        };
        let dev = test_device();
        let (y1, g1) = run(&dev, &|x| fused(x, &dev));
        let (y2, g2) = run(&Device::Cpu, &composite);
        for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn fused_layer_norm_matches_the_composite_form() {
        let dev = candle_core::Device::Cpu;
        let gamma =
            Tensor::from_vec((0..37).map(|i| 0.5 + i as f32 / 20.0).collect(), 37, &dev).unwrap();
        let beta =
            Tensor::from_vec((0..37).map(|i| i as f32 / 10.0 - 1.0).collect(), 37, &dev).unwrap();
        check(
            |x, dev| layer_norm(x, &gamma.to_device(dev)?, &beta.to_device(dev)?, 1e-5),
            |x| candle_nn::ops::layer_norm_slow(x, &gamma, &beta, 1e-5),
        );
    }

    #[test]
    fn layer_norm_parameter_gradients_match_the_composite_form() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (3, 200, 37), &dev)?;
        let probe = Tensor::randn(0f32, 1.0, (3, 200, 37), &dev)?;
        let run = |dev: &Device,
                   f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>|
         -> Result<Vec<Vec<f32>>> {
            let gamma = Var::from_vec((0..37).map(|i| 1.0 + i as f32 / 50.0).collect(), 37, dev)?;
            let beta = Var::zeros(37, DType::F32, dev)?;
            let (x, probe) = (x.to_device(dev)?, probe.to_device(dev)?);
            let grads = (f(&x, gamma.as_tensor(), beta.as_tensor())? * &probe)?
                .sum_all()?
                .backward()?;
            [gamma.as_tensor(), beta.as_tensor()]
                .iter()
                .map(|v| grads.get(v).expect("gradient").to_vec1::<f32>())
                .collect()
        };
        let ours = run(&test_device(), &|x, g, b| layer_norm(x, g, b, 1e-5))?;
        let theirs = run(&dev, &|x, g, b| {
            candle_nn::ops::layer_norm_slow(x, g, b, 1e-5)
        })?;
        for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn fused_softmax_matches_the_composite_form() {
        check(
            |x, _| softmax_rows(x),
            |x| {
                let num = x.exp()?;
                num.broadcast_div(&num.sum_keepdim(D::Minus1)?)
            },
        );
    }

    #[test]
    fn fused_quick_gelu_matches_the_composite_form() {
        check(
            |x, _| quick_gelu(x),
            |x| x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        );
    }
}
