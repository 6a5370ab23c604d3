//! `x Wᵀ + b` for training on the CPU: forward and backward on seer's packed
//! matmul kernels.
//!
//! candle's CPU matmul (the `gemm` crate's AVX2 kernel) was a quarter of a
//! training step, and its bias add and bias gradient were further passes over
//! the activations. Weights change every step, so each call packs what it
//! multiplies on the right: a copy of one operand, small beside the product.
//! Other devices and dtypes keep candle's ops.

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use seer_kernels::ops::column_sums;
use seer_kernels::train::weight_gradient;
use seer_kernels::{gemm_new, PackedWeights, Precision};

use crate::nn::train_ops::{contiguous_f32, on_cpu_kernels};

/// Whether [`linear`] runs on seer's kernels for these tensors.
pub fn runs_on_kernels(x: &Tensor, weight: &Tensor) -> bool {
    on_cpu_kernels(x) && on_cpu_kernels(weight)
}

/// `x · weightᵀ + bias` over the last dimension of `x`, differentiable in all
/// three; `weight` is `(out, in)`, as `nn.Linear` stores it. CPU f32 only (see
/// [`runs_on_kernels`]).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear)
}

/// `x · weightᵀ` (a layer without a bias: CLIP's projections and patch
/// embedding), as [`linear`].
pub fn linear_without_bias(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, LinearWithoutBias)
}

/// The f32 values of a contiguous tensor.
/// (`what` names the operand in an error; nothing is formatted otherwise.)
fn values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    contiguous_f32(s, l, "linear").map_err(|e| e.context(what.to_string()))
}

/// `dims` with the last one replaced by `last`.
fn with_last(dims: &[usize], last: usize) -> Shape {
    let mut d = dims.to_vec();
    match d.last_mut() {
        Some(x) => *x = last,
        None => d.push(last),
    }
    Shape::from(d)
}

/// Rows of a tensor whose last dimension must be `width`.
fn rows_of(l: &Layout, width: usize, what: &str) -> Result<usize> {
    let last = l.dims().last().copied().unwrap_or(1);
    if last != width {
        bail!("linear: {what} has {last} columns, expected {width}")
    }
    Ok(l.shape().elem_count() / width.max(1))
}

/// `x · Wᵀ (+ bias)` for `x` (…, in) and `W` (out, in).
fn forward(
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    bias: Option<Vec<f32>>,
) -> Result<(CpuStorage, Shape)> {
    let (n, k) = l2.shape().dims2()?;
    let x = values(s1, l1, "the input")?;
    let m = rows_of(l1, k, "the input")?;
    if k == 0 {
        bail!("linear: a layer of no inputs")
    }
    let w = values(s2, l2, "the weight")?;
    let packed = PackedWeights::from_rows(w, n, k, bias, Precision::F32);
    let y = gemm_new(x, m, &packed, None);
    Ok((CpuStorage::F32(y), with_last(l1.dims(), n)))
}

/// `dx` and `dW` of `x · Wᵀ` for the output gradient `dy`.
fn input_and_weight_gradients(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let dx = dy.apply_op2_no_bwd(weight, &InputGradient)?;
    let dw = dy.apply_op2_no_bwd(x, &WeightGradient)?;
    Ok((dx, dw))
}

struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "seer-linear"
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
        let n = l2.dims().first().copied().unwrap_or(0);
        let bias = values(s3, l3, "the bias")?;
        if bias.len() != n {
            bail!("linear: {} bias values for {n} outputs", bias.len())
        }
        forward((s1, l1), (s2, l2), Some(bias.to_vec()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (dx, dw) = input_and_weight_gradients(x, weight, &dy)?;
        let db = dy.apply_op1_no_bwd(&BiasGradient)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// [`Linear`] without the bias: through candle's matmul instead, CLIP's
/// patch embedding and projections were 2–3% of a training step.
struct LinearWithoutBias;

impl CustomOp2 for LinearWithoutBias {
    fn name(&self) -> &'static str {
        "seer-linear-without-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = input_and_weight_gradients(x, weight, &dy.contiguous()?)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `dx = dy · W`: `dy` (…, out) and `W` (out, in).
struct InputGradient;

impl CustomOp2 for InputGradient {
    fn name(&self) -> &'static str {
        "seer-linear-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = l2.shape().dims2()?;
        let dy = values(s1, l1, "the output gradient")?;
        let m = rows_of(l1, n, "the output gradient")?;
        let w = values(s2, l2, "the weight")?;
        let packed = PackedWeights::from_right_matrix(w, n, k, Precision::F32);
        let dx = gemm_new(dy, m, &packed, None);
        Ok((CpuStorage::F32(dx), with_last(l1.dims(), k)))
    }
}

/// `dW = dyᵀ · x`: `dy` (…, out) and `x` (…, in), summed over all rows.
struct WeightGradient;

impl CustomOp2 for WeightGradient {
    fn name(&self) -> &'static str {
        "seer-linear-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = l1.dims().last().copied().unwrap_or(1);
        let k = l2.dims().last().copied().unwrap_or(1);
        let m = rows_of(l1, n, "the output gradient")?;
        if rows_of(l2, k, "the input")? != m {
            bail!("linear: gradient and input rows differ")
        }
        let dy = values(s1, l1, "the output gradient")?;
        let x = values(s2, l2, "the input")?;
        let mut dw = vec![0f32; n * k];
        weight_gradient(dy, n, x, k, m, &mut dw);
        Ok((CpuStorage::F32(dw), Shape::from((n, k))))
    }
}

/// `db`: the column sums of `dy` (…, out).
struct BiasGradient;

impl CustomOp1 for BiasGradient {
    fn name(&self) -> &'static str {
        "seer-linear-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l.dims().last().copied().unwrap_or(1);
        let dy = values(s, l, "the output gradient")?;
        let db = if dy.is_empty() {
            vec![0f32; n]
        } else {
            column_sums(dy, n)
        };
        Ok((CpuStorage::F32(db), Shape::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The op's value and gradients against candle's matmul + broadcast add,
    /// with and without a bias, at shapes with partial tiles and panels and
    /// both weight-gradient orders.
    #[test]
    fn linear_matches_candle_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
        };
        for (batch, rows, k, n) in [
            (2, 7, 40, 70),
            (3, 50, 96, 33),
            (1, 1, 5, 3),
            (1, 33, 192, 128),
        ] {
            for with_bias in [true, false] {
                let x = Var::randn(0f32, 1.0, (batch, rows, k), &dev)?;
                let w = Var::randn(0f32, 0.2, (n, k), &dev)?;
                let b = Var::randn(0f32, 0.5, n, &dev)?;
                let probe = Tensor::randn(0f32, 1.0, (batch, rows, n), &dev)?;
                let product = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
                let (ours, theirs) = if with_bias {
                    let ours = linear(x.as_tensor(), w.as_tensor(), b.as_tensor())?;
                    (ours, product.broadcast_add(b.as_tensor())?)
                } else {
                    (linear_without_bias(x.as_tensor(), w.as_tensor())?, product)
                };
                assert!(max_diff(&ours, &theirs)? < 1e-4, "forward {k}×{n}");
                let g_ours = (ours * &probe)?.sum_all()?.backward()?;
                let g_theirs = (theirs * &probe)?.sum_all()?.backward()?;
                let params: &[&Var] = if with_bias { &[&x, &w, &b] } else { &[&x, &w] };
                for v in params {
                    let (a, b) = (
                        g_ours.get(v.as_tensor()).expect("gradient"),
                        g_theirs.get(v.as_tensor()).expect("gradient"),
                    );
                    let d = max_diff(a, b)?;
                    assert!(
                        d < 1e-3,
                        "gradient of {:?} ({k}×{n}, bias {with_bias}) differs by {d}",
                        v.dims()
                    );
                }
            }
        }
        Ok(())
    }
}
