//! Multi-head self-attention for training on the CPU, straight from the fused
//! q/k/v projection's output: one op forward, one backward.
//!
//! Composed from candle's ops, attention was a reshape and three copies to
//! split the heads, a scaling pass, two batched matmuls of tiny matrices (a
//! call per sequence and head), the mask add and a copy to merge the heads,
//! and about twice that again backward. Here each sequence is one task that
//! reads q, k and v where the projection wrote them. The probabilities are not
//! kept: the backward pass recomputes them (flash attention's trade), which for
//! the short sequences of CLIP costs less than storing them. The loops are
//! `seer_kernels::train`'s.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use seer_kernels::train::{self_attention, self_attention_backward, SelfAttention};

use crate::nn::train_ops::contiguous_f32;

/// Scaled dot-product attention of `qkv` (batch, tokens, 3·width): q, k and v
/// side by side, each `heads` heads wide. Returns (batch, tokens, width).
/// `causal`: token i attends to tokens 0..=i only. Differentiable in `qkv`.
pub fn attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    let (_, _, three_c) = qkv.dims3()?;
    if heads == 0 || !three_c.is_multiple_of(3 * heads) {
        bail!("attention: width {three_c} is not 3 × {heads} heads")
    }
    qkv.contiguous()?.apply_op1(Attention { heads, causal })
}

#[derive(Clone, Copy)]
struct Attention {
    heads: usize,
    causal: bool,
}

impl Attention {
    /// The kernels' view of a (batch, tokens, 3·width) layout, and the batch.
    fn shape(&self, l: &Layout) -> Result<(usize, SelfAttention)> {
        let (b, t, three_c) = l.shape().dims3()?;
        Ok((
            b,
            SelfAttention {
                tokens: t,
                width: three_c / 3,
                heads: self.heads,
                causal: self.causal,
            },
        ))
    }
}

/// The contiguous f32 values of a tensor.
fn values<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    contiguous_f32(s, l, "attention")
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "seer-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, shape) = self.shape(l)?;
        let ctx = if b * shape.tokens * shape.width == 0 {
            Vec::new()
        } else {
            self_attention(values(s, l)?, shape)
        };
        Ok((
            CpuStorage::F32(ctx),
            Shape::from((b, shape.tokens, shape.width)),
        ))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dqkv = qkv.apply_op2_no_bwd(&grad.contiguous()?, &AttentionGrad(*self))?;
        Ok(Some(dqkv))
    }
}

/// The gradient with respect to q/k/v, given the context's gradient, of the
/// forward op it holds.
struct AttentionGrad(Attention);

impl CustomOp2 for AttentionGrad {
    fn name(&self) -> &'static str {
        "seer-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, shape) = self.0.shape(l1)?;
        let (t, c) = (shape.tokens, shape.width);
        if l2.dims() != [b, t, c] {
            bail!(
                "attention: gradient {:?} for output ({b}, {t}, {c})",
                l2.dims()
            )
        }
        let dqkv = if b * t * c == 0 {
            Vec::new()
        } else {
            self_attention_backward(values(s1, l1)?, values(s2, l2)?, shape)
        };
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// candle's composite attention, as `layers::Attention` builds it.
    fn composite(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
        let (b, t, three_c) = qkv.dims3()?;
        let c = three_c / 3;
        let d = c / heads;
        let qkv = qkv.reshape((b, t, 3, heads, d))?.permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? / (d as f64).sqrt())?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let mut scores = q.matmul(&k.t()?)?;
        if causal {
            let mask: Vec<f32> = (0..t * t)
                .map(|x| {
                    if x % t > x / t {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            scores = scores.broadcast_add(&Tensor::from_vec(mask, (t, t), qkv.device())?)?;
        }
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))
    }

    #[test]
    fn attention_matches_candle_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        // CIFAR-demo and odd shapes; a head width past the 16 lanes; one token.
        for (b, t, c, heads, causal) in [
            (3, 17, 32, 4, false),
            (2, 9, 40, 2, true),
            (2, 5, 72, 2, false),
            (1, 1, 8, 1, true),
        ] {
            let qkv = Var::randn(0f32, 1.0, (b, t, 3 * c), &dev)?;
            let probe = Tensor::randn(0f32, 1.0, (b, t, c), &dev)?;
            let ours = attention(qkv.as_tensor(), heads, causal)?;
            let theirs = composite(qkv.as_tensor(), heads, causal)?;
            let diff = (&ours - &theirs)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "forward {b}×{t}×{c}, causal {causal}: {diff}");
            let g_ours = (ours * &probe)?.sum_all()?.backward()?;
            let g_theirs = (theirs * &probe)?.sum_all()?.backward()?;
            let (a, e) = (
                g_ours.get(qkv.as_tensor()).expect("gradient"),
                g_theirs.get(qkv.as_tensor()).expect("gradient"),
            );
            let diff = (a - e)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "gradient {b}×{t}×{c}, causal {causal}: {diff}");
        }
        Ok(())
    }
}
