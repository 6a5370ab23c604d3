//! Building blocks shared by the towers: linear, LayerNorm, MLP, multi-head
//! attention and the pre-norm residual block both libraries use.

use std::sync::Arc;

use candle_core::{DType, Module, Tensor, D};
use rayon::prelude::*;
use seer_kernels::{Init, PackedWeights, Precision};

use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::config::{Activation, TransformerConfig};
use crate::nn::cpu::CpuBlock;
use crate::nn::gather_rows::gather_rows;

/// `y = x Wᵀ + b`. On the CPU for inference the weight is packed for seer's
/// kernels (and the checkpoint's copy dropped); elsewhere it is kept as the
/// checkpoint's `(out, in)` matrix, for seer's training kernels as it is and
/// for candle's matmul as a transposed view (in bf16 for GPU inference at
/// `--precision bf16`). Any leading dims are flattened into one matrix product.
#[derive(Clone, Debug)]
pub enum Linear {
    Tensor {
        /// `(out, in)`. (Kept transposed, the training kernels' gradient came
        /// back through two transposes, each a strided copy of the gradient.)
        weight: Tensor,
        bias: Option<Tensor>,
        /// Bias and activation in one fused CUDA pass (GPU inference; training
        /// needs candle's differentiable ops).
        fused_epilogue: bool,
    },
    Packed(Arc<PackedWeights>),
}

impl Linear {
    /// From an `(out, in)` weight, as `nn.Linear` stores it; packed when `w` runs
    /// on the CPU kernels.
    pub fn new(w: &Weights, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if w.packs_for_cpu() {
            let packed = crate::nn::cpu::pack(&weight, bias.as_ref(), w.precision())?;
            return Ok(Self::Packed(Arc::new(packed)));
        }
        refuse_int8(w)?;
        Ok(Self::Tensor {
            weight: stored_for_gpu(w, weight)?,
            bias,
            fused_epilogue: fuses_on_gpu(w),
        })
    }

    /// From an `(in, out)` matrix that multiplies on the right, as open_clip's `proj`.
    pub fn from_right_matrix(w: &Weights, matrix: Tensor) -> Result<Self> {
        if w.packs_for_cpu() {
            let (k, n) = matrix.dims2()?;
            let data = matrix.flatten_all()?.to_vec1::<f32>()?;
            return Ok(Self::Packed(Arc::new(PackedWeights::from_right_matrix(
                &data,
                k,
                n,
                w.precision(),
            ))));
        }
        refuse_int8(w)?;
        Ok(Self::Tensor {
            weight: stored_for_gpu(w, matrix.t()?)?,
            bias: None,
            fused_epilogue: fuses_on_gpu(w),
        })
    }

    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = w.get("weight", &[out_dim, in_dim])?;
        let bias = if bias {
            Some(w.get("bias", &[out_dim])?)
        } else {
            None
        };
        Self::new(w, weight, bias)
    }

    pub fn out_dim(&self) -> usize {
        match self {
            Self::Tensor { weight, .. } => weight.dims()[0],
            Self::Packed(p) => p.n(),
        }
    }
}

/// int8 exists only in the packed CPU kernels. Elsewhere (CUDA, training) the
/// weights would silently stay f32, so a request for int8 is refused instead.
fn refuse_int8(w: &Weights) -> Result<()> {
    if w.precision() != Precision::Int8 {
        return Ok(());
    }
    let place = if w.differentiable() {
        "for training"
    } else {
        "on a GPU"
    };
    Err(ModelError::Unsupported(format!(
        "int8 precision runs only on the CPU for inference, not {place}; use f32 or bf16"
    )))
}

fn fuses_on_gpu(w: &Weights) -> bool {
    cfg!(feature = "cuda") && w.device().is_cuda() && !w.differentiable()
}

/// The weight as a GPU inference layer keeps it: in bf16 when asked, so cuBLAS
/// runs the matmul on the tensor cores ([`matmul_rows`] casts the activations
/// to bf16 and has cuBLAS write the product in f32: norms, attention,
/// epilogues and the residual stream stay f32, as on the CPU, where only the
/// matmul inputs are bf16). Anything else keeps the checkpoint's f32.
fn stored_for_gpu(w: &Weights, weight: Tensor) -> Result<Tensor> {
    if w.precision() == Precision::Bf16 && fuses_on_gpu(w) {
        return Ok(weight.to_dtype(DType::BF16)?);
    }
    Ok(weight)
}

impl Linear {
    /// `act(x Wᵀ + b)`, with the activation fused into the matmul's epilogue
    /// where the layer runs on seer's CPU kernels or on CUDA for inference.
    pub fn forward_activated(
        &self,
        x: &Tensor,
        act: Option<Activation>,
    ) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let y = match self {
            Self::Tensor {
                weight,
                bias,
                fused_epilogue,
            } => {
                if !*fused_epilogue && crate::nn::train_linear::runs_on_kernels(x, weight) {
                    let y = match bias {
                        Some(b) => crate::nn::train_linear::linear(x, weight, b)?,
                        None => crate::nn::train_linear::linear_without_bias(x, weight)?,
                    };
                    return activate_opt(&y, act);
                }
                let y = matmul_rows(x, weight)?;
                match (bias, *fused_epilogue) {
                    #[cfg(feature = "cuda")]
                    (Some(b), true) => {
                        crate::nn::cuda_ops::bias_activation(&y, b, act)?;
                        y
                    }
                    (Some(b), _) => activate_opt(&y.broadcast_add(b)?, act)?,
                    (None, _) => activate_opt(&y, act)?,
                }
            }
            Self::Packed(p) => {
                let rows = x.elem_count() / dims[dims.len() - 1].max(1);
                let mut out = vec![0f32; rows * p.n()];
                crate::nn::cpu::with_f32(x, |a| {
                    seer_kernels::gemm(a, rows, p, &mut out, Init::Bias, act.map(Into::into))
                })?;
                Tensor::from_vec(out, (rows, p.n()), x.device())?
            }
        };
        y.reshape(self.out_dims(x))
    }

    /// `x`'s dims with the last one this layer's output width.
    fn out_dims(&self, x: &Tensor) -> Vec<usize> {
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = self.out_dim();
        dims
    }

    /// The weight and bias of a layer whose epilogues run fused on a GPU.
    #[cfg(feature = "cuda")]
    fn fused_on_gpu(&self) -> Option<(&Tensor, &Tensor)> {
        match self {
            Self::Tensor {
                weight,
                bias: Some(b),
                fused_epilogue: true,
            } => Some((weight, b)),
            _ => None,
        }
    }

    /// `act(x Wᵀ + b)` for a result that only feeds another linear: on GPU
    /// inference at bf16 the epilogue writes it in bf16, the next matmul's
    /// input type (no f32 copy, no cast pass). Otherwise [`Self::forward_activated`].
    pub fn forward_into_linear(
        &self,
        x: &Tensor,
        act: Option<Activation>,
    ) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some((weight, b)) = self.fused_on_gpu() {
            if weight.dtype() == DType::BF16 {
                let y =
                    crate::nn::cuda_ops::bias_activation_bf16(&matmul_rows(x, weight)?, b, act)?;
                return y.reshape(self.out_dims(x));
            }
        }
        self.forward_activated(x, act)
    }

    /// `residual + (x Wᵀ + b)`, in one pass after the matmul on CUDA inference.
    pub fn forward_plus(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some((weight, b)) = self.fused_on_gpu() {
            let y = matmul_rows(x, weight)?;
            crate::nn::cuda_ops::bias_residual(&y, b, &residual.contiguous()?)?;
            return y.reshape(residual.shape());
        }
        residual + self.forward(x)?
    }
}

/// `x` with its leading dims flattened into rows, times `weightᵀ` (`weight`
/// is `(out, in)`).
fn matmul_rows(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let in_dim = x.dim(D::Minus1)?;
    let rows = x.reshape((x.elem_count() / in_dim.max(1), in_dim))?;
    // Only GPU layers keep bf16 weights (`stored_for_gpu`).
    #[cfg(feature = "cuda")]
    if weight.dtype() == DType::BF16 {
        return crate::nn::cuda_ops::matmul_bf16_f32(&rows.to_dtype(DType::BF16)?, weight);
    }
    rows.matmul(&weight.t()?)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_activated(x, None)
    }
}

fn activate_opt(x: &Tensor, act: Option<Activation>) -> candle_core::Result<Tensor> {
    match act {
        Some(a) => activate(x, a),
        None => Ok(x.clone()),
    }
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
    differentiable: bool,
}

impl LayerNorm {
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[dim])?,
            bias: w.get("bias", &[dim])?,
            eps: eps as f32,
            differentiable: w.differentiable(),
        })
    }
}

impl LayerNorm {
    /// The norm of each `c`-wide row of `x` on seer's CPU kernel, for callers
    /// that hold plain rows (the weights are read in place).
    pub(crate) fn forward_rows(&self, x: &[f32], c: usize) -> candle_core::Result<Vec<f32>> {
        let mut out = vec![0f32; x.len()];
        crate::nn::cpu::try_with_f32(&self.weight, |g| {
            crate::nn::cpu::with_f32(&self.bias, |b| {
                seer_kernels::ops::layer_norm(x, c, g, b, self.eps, &mut out)
            })
        })?;
        Ok(out)
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.differentiable {
            // candle's fused kernel has no backward pass; this one has (the same
            // formula: biased variance, eps inside the root).
            crate::nn::train_ops::layer_norm(x, &self.weight, &self.bias, self.eps)
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
        }
    }
}

/// Softmax over the last dimension (differentiable when training).
pub fn softmax_last_dim(x: &Tensor, differentiable: bool) -> candle_core::Result<Tensor> {
    if differentiable {
        crate::nn::train_ops::softmax_rows(x)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

pub fn activate(x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::QuickGelu => crate::nn::train_ops::quick_gelu(x),
        Activation::Gelu => x.gelu_erf(),
        // candle's `gelu` is the tanh approximation.
        Activation::GeluTanh => x.gelu(),
    }
}

#[derive(Clone, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
    /// SwiGLU (DINOv2 giant): fc1 yields `[gate | up]` and the hidden state is
    /// `silu(gate) ⊙ up`; `activation` is unused.
    swiglu: bool,
}

impl Mlp {
    /// transformers' `fc1` / `fc2` below `w` (`in_dim -> hidden -> in_dim`).
    pub fn load(w: &Weights, dim: usize, hidden: usize, activation: Activation) -> Result<Self> {
        Ok(Self {
            fc1: Linear::load(&w.pp("fc1"), dim, hidden, true)?,
            fc2: Linear::load(&w.pp("fc2"), hidden, dim, true)?,
            activation,
            swiglu: false,
        })
    }

    /// `act(fc1(x))` (or SwiGLU's gating), the input of fc2.
    fn hidden(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !self.swiglu {
            return self.fc1.forward_into_linear(x, Some(self.activation));
        }
        let x12 = self.fc1.forward(x)?;
        let hidden = x12.dim(D::Minus1)? / 2;
        let gate = x12.narrow(D::Minus1, 0, hidden)?;
        candle_nn::ops::silu(&gate)? * x12.narrow(D::Minus1, hidden, hidden)?
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.hidden(x)?)
    }
}

/// The q/k/v projection as one matrix product.
#[derive(Clone, Debug)]
enum QkvProjection {
    /// The parts stacked once at load (inference).
    Fused(Linear),
    /// The parts kept apart and stacked at each forward (training with
    /// separate q/k/v tensors): a stack made at load would be a copy, stale
    /// once the optimiser updates the parameters in place, and a trainer builds
    /// its model once.
    Stacked {
        weights: Vec<Tensor>,
        biases: Vec<Tensor>,
    },
}

impl QkvProjection {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Fused(linear) => linear.forward(x),
            Self::Stacked { weights, biases } => Linear::Tensor {
                weight: Tensor::cat(weights, 0)?,
                bias: Some(Tensor::cat(biases, 0)?),
                fused_epilogue: false,
            }
            .forward(x),
        }
    }
}

/// Multi-head self-attention with one fused q/k/v projection.
#[derive(Clone, Debug)]
pub struct Attention {
    qkv: QkvProjection,
    out: Linear,
    heads: usize,
    differentiable: bool,
    /// Attention as one CUDA kernel (GPU inference, short sequences).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fused_gpu: bool,
}

impl Attention {
    /// The heads' outputs side by side, before the output projection `out`.
    /// `x`: (batch, tokens, width); `mask`: the additive causal (tokens, tokens)
    /// mask of the text tower, a (batch, 1, 1, tokens) key-padding mask, or None.
    fn context(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        // Training on the CPU: one op per direction (no key-padding masks).
        if self.differentiable
            && crate::nn::train_ops::on_cpu_kernels(&qkv)
            && mask.is_none_or(|m| m.rank() == 2)
        {
            return crate::nn::train_attention::attention(&qkv, self.heads, mask.is_some());
        }
        // The fused kernel knows no mask but the causal one, which towers pass
        // as a (tokens, tokens) matrix; key-padding masks (rank 4) go the
        // generic way.
        #[cfg(feature = "cuda")]
        if self.fused_gpu
            && crate::nn::cuda_ops::attention_fits(t, c / self.heads)
            && mask.is_none_or(|m| m.rank() == 2)
        {
            return crate::nn::cuda_ops::attention(&qkv, self.heads, mask.is_some());
        }
        let [q, k, v] = self.heads_of(&qkv)?;
        let q = (q * self.scale(c))?;
        self.attend(&q, &k, &v, mask)?
            .transpose(1, 2)?
            .reshape((b, t, c))
    }

    /// q, k and v of `qkv` (batch, tokens, 3·width), each (batch, heads,
    /// tokens, head_dim), contiguous.
    fn heads_of(&self, qkv: &Tensor) -> candle_core::Result<[Tensor; 3]> {
        let (b, t, three_c) = qkv.dims3()?;
        let qkv = qkv
            .reshape((b, t, 3, self.heads, three_c / 3 / self.heads))?
            .permute((2, 0, 3, 1, 4))?;
        let part = |i: usize| qkv.get(i)?.contiguous();
        Ok([part(0)?, part(1)?, part(2)?])
    }

    /// 1/√head_dim for a model of `width`.
    fn scale(&self, width: usize) -> f64 {
        1.0 / ((width / self.heads) as f64).sqrt()
    }

    /// softmax(q·kᵀ + mask)·v per head: q (batch, heads, queries, head_dim)
    /// already scaled, k and v (batch, heads, tokens, head_dim).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        softmax_last_dim(&scores, self.differentiable)?.matmul(v)
    }

    /// [`Self::context`] at one query token per sequence only, every token a
    /// key: (batch, width). Composed from candle ops, so it trains and runs
    /// on any device; training on the CPU takes the fused attention op.
    fn pooled_context(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        pooled: &PooledTokens,
    ) -> candle_core::Result<Tensor> {
        let PooledTokens { rows, positions } = pooled;
        let (b, t, c) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        // Training on the CPU: every token's context by the fused attention
        // op (parallel, its own backward), then the pooled rows. The
        // one-query attention below takes the heads apart by views whose
        // backward builds a qkv-sized tensor of zeros around each gradient,
        // then copies and adds it, all on the calling thread: the CIFAR-10
        // config trained 8% faster without it (12 alternating pairs, Intel
        // Xeon of family 6 model 207, AVX-512), though every query is now
        // attended.
        if self.differentiable
            && crate::nn::train_ops::on_cpu_kernels(&qkv)
            && mask.is_none_or(|m| m.rank() == 2)
        {
            let context = crate::nn::train_attention::attention(&qkv, self.heads, mask.is_some())?;
            return gather_rows(&context.reshape((b * t, c))?, rows);
        }
        let q = gather_rows(&qkv.reshape((b * t, 3 * c))?, rows)?;
        let q = (q
            .narrow(1, 0, c)?
            .reshape((b, self.heads, 1, c / self.heads))?
            * self.scale(c))?;
        let [_, k, v] = self.heads_of(&qkv)?;
        // A (tokens, tokens) causal mask: each pooled token's own row of it; a
        // (batch, 1, 1, tokens) key-padding mask applies as it is.
        let mask = match mask {
            Some(m) if m.rank() == 2 => Some(
                m.contiguous()?
                    .index_select(positions, 0)?
                    .reshape((b, 1, 1, t))?,
            ),
            other => other.cloned(),
        };
        self.attend(&q, &k, &v, mask.as_ref())?.reshape((b, c))
    }
}

/// Pre-norm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`, with
/// open_clip's optional LayerScale on each branch.
#[derive(Clone, Debug)]
pub struct ResidualBlock {
    ln1: LayerNorm,
    attn: Attention,
    ls1: Option<Tensor>,
    ln2: LayerNorm,
    mlp: Mlp,
    ls2: Option<Tensor>,
}

/// One block's tensors under either library's names, before they become candle
/// layers or packed CPU kernels.
pub(crate) struct BlockTensors {
    pub ln1: (Tensor, Tensor),
    /// q, k and v projections, stacked along the output dimension: one part
    /// (open_clip's `in_proj`) or three (transformers' `q_proj`, `k_proj`, `v_proj`).
    pub qkv: Vec<(Tensor, Tensor)>,
    pub out: (Tensor, Tensor),
    pub ln2: (Tensor, Tensor),
    /// `(hidden, width)`, or `(2 * hidden, width)` holding gate then up with `swiglu`.
    pub fc1: (Tensor, Tensor),
    pub fc2: (Tensor, Tensor),
    pub swiglu: bool,
    pub ls1: Option<Tensor>,
    pub ls2: Option<Tensor>,
}

impl BlockTensors {
    /// open_clip / OpenAI naming: `ln_1`, `attn.in_proj_weight`, `mlp.c_fc`, ...
    fn load_open_clip(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let c = cfg.width;
        let pair = |name: &str, rows: usize, cols: usize| -> Result<(Tensor, Tensor)> {
            let shape: &[usize] = if cols == 0 { &[rows] } else { &[rows, cols] };
            Ok((
                w.get(&format!("{name}.weight"), shape)?,
                w.get(&format!("{name}.bias"), &[rows])?,
            ))
        };
        let layer_scale = |name: &str| -> Result<Option<Tensor>> {
            cfg.layer_scale.then(|| w.get(name, &[c])).transpose()
        };
        Ok(Self {
            ln1: pair("ln_1", c, 0)?,
            qkv: vec![(
                w.get("attn.in_proj_weight", &[3 * c, c])?,
                w.get("attn.in_proj_bias", &[3 * c])?,
            )],
            out: pair("attn.out_proj", c, c)?,
            ln2: pair("ln_2", c, 0)?,
            fc1: pair("mlp.c_fc", cfg.mlp_width, c)?,
            fc2: pair("mlp.c_proj", c, cfg.mlp_width)?,
            swiglu: false,
            ls1: layer_scale("ls_1.gamma")?,
            ls2: layer_scale("ls_2.gamma")?,
        })
    }

    /// transformers naming: `layer_norm1`, `self_attn.{q,k,v}_proj`, `mlp.fc1`, ...
    fn load_transformers(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let c = cfg.width;
        let pair = |name: &str, rows: usize, cols: usize| -> Result<(Tensor, Tensor)> {
            let shape: &[usize] = if cols == 0 { &[rows] } else { &[rows, cols] };
            Ok((
                w.get(&format!("{name}.weight"), shape)?,
                w.get(&format!("{name}.bias"), &[rows])?,
            ))
        };
        Ok(Self {
            ln1: pair("layer_norm1", c, 0)?,
            qkv: ["q", "k", "v"]
                .iter()
                .map(|p| pair(&format!("self_attn.{p}_proj"), c, c))
                .collect::<Result<_>>()?,
            out: pair("self_attn.out_proj", c, c)?,
            ln2: pair("layer_norm2", c, 0)?,
            fc1: pair("mlp.fc1", cfg.mlp_width, c)?,
            fc2: pair("mlp.fc2", c, cfg.mlp_width)?,
            swiglu: false,
            ls1: None,
            ls2: None,
        })
    }
}

impl ResidualBlock {
    fn from_tensors(w: &Weights, t: BlockTensors, cfg: &TransformerConfig) -> Result<Self> {
        let differentiable = w.differentiable();
        // One q/k/v matmul; a single part (open_clip's `in_proj`) is a view of
        // the parameter, so only several parts wait for the forward to be stacked.
        let (qkv_w, qkv_b): (Vec<Tensor>, Vec<Tensor>) = t.qkv.into_iter().unzip();
        let qkv = if differentiable && qkv_w.len() > 1 {
            QkvProjection::Stacked {
                weights: qkv_w,
                biases: qkv_b,
            }
        } else {
            let (qkv_w, qkv_b) = (Tensor::cat(&qkv_w, 0)?, Tensor::cat(&qkv_b, 0)?);
            QkvProjection::Fused(Linear::new(w, qkv_w, Some(qkv_b))?)
        };
        let norm = |(weight, bias): (Tensor, Tensor)| LayerNorm {
            weight,
            bias,
            eps: cfg.layer_norm_eps as f32,
            differentiable,
        };
        Ok(Self {
            ln1: norm(t.ln1),
            attn: Attention {
                qkv,
                out: Linear::new(w, t.out.0, Some(t.out.1))?,
                heads: cfg.heads,
                differentiable,
                fused_gpu: fuses_on_gpu(w),
            },
            ls1: t.ls1,
            ln2: norm(t.ln2),
            mlp: Mlp {
                fc1: Linear::new(w, t.fc1.0, Some(t.fc1.1))?,
                fc2: Linear::new(w, t.fc2.0, Some(t.fc2.1))?,
                activation: cfg.activation,
                swiglu: t.swiglu,
            },
            ls2: t.ls2,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let context = self.attn.context(&self.ln1.forward(x)?, mask)?;
        let x = block_residual(&self.attn.out, &context, x, &self.ls1)?;
        let hidden = self.mlp.hidden(&self.ln2.forward(&x)?)?;
        block_residual(&self.mlp.fc2, &hidden, &x, &self.ls2)
    }

    /// [`Self::forward`]'s output at one token per sequence: (batch, width).
    /// Only those rows get attention, projection and MLP.
    fn forward_pooled(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        pooled: &PooledTokens,
    ) -> candle_core::Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let context = self
            .attn
            .pooled_context(&self.ln1.forward(x)?, mask, pooled)?;
        let x = gather_rows(&x.reshape((b * t, c))?, &pooled.rows)?;
        let x = block_residual(&self.attn.out, &context, &x, &self.ls1)?;
        let hidden = self.mlp.hidden(&self.ln2.forward(&x)?)?;
        block_residual(&self.mlp.fc2, &hidden, &x, &self.ls2)
    }
}

/// `x + γ ⊙ (input Wᵀ + b)`; without LayerScale the add rides in the
/// projection's epilogue (one pass on CUDA).
fn block_residual(
    out: &Linear,
    input: &Tensor,
    x: &Tensor,
    gamma: &Option<Tensor>,
) -> candle_core::Result<Tensor> {
    match gamma {
        Some(g) => x + out.forward(input)?.broadcast_mul(g)?,
        None => out.forward_plus(input, x),
    }
}

/// A stack of residual blocks: candle layers, or packed CPU kernels for inference.
#[derive(Clone, Debug)]
pub enum Transformer {
    Candle(Vec<ResidualBlock>),
    Cpu(Vec<Arc<CpuBlock>>),
}

impl Transformer {
    /// open_clip: `<prefix>.resblocks.{i}`.
    pub fn load_open_clip(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        Self::load(w, cfg, |i| {
            BlockTensors::load_open_clip(&w.pp(format!("resblocks.{i}")), cfg)
        })
    }

    /// transformers: `<prefix>.layers.{i}`.
    pub fn load_transformers(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        Self::load(w, cfg, |i| {
            BlockTensors::load_transformers(&w.pp(format!("layers.{i}")), cfg)
        })
    }

    /// Blocks are converted one at a time, so only one block's checkpoint tensors
    /// are alive beside the packed model. `block(i)` reads block `i` under the
    /// family's own names.
    pub(crate) fn load(
        w: &Weights,
        cfg: &TransformerConfig,
        block: impl Fn(usize) -> Result<BlockTensors> + Sync,
    ) -> Result<Self> {
        if w.packs_for_cpu() {
            // Blocks load in parallel: reading and first-touching the packed
            // buffers is most of start-up, and it scales with the cores.
            let blocks = (0..cfg.layers)
                .into_par_iter()
                .map(|i| Ok(Arc::new(CpuBlock::new(block(i)?, cfg, w.precision())?)))
                .collect::<Result<_>>()?;
            return Ok(Self::Cpu(blocks));
        }
        let blocks = (0..cfg.layers)
            .map(|i| ResidualBlock::from_tensors(w, block(i)?, cfg))
            .collect::<Result<_>>()?;
        Ok(Self::Candle(blocks))
    }

    /// `x`: (batch, tokens, width). `mask`: the additive causal mask of text
    /// towers, or None; the CPU kernels apply the causal pattern directly.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(blocks) => blocks
                .iter()
                .try_fold(x.clone(), |x, block| block.forward(&x, mask)),
            Self::Cpu(blocks) => crate::nn::cpu::forward(blocks, x, mask.is_some(), None),
        }
    }

    /// Bidirectional forward over `x` (batch, tokens, width) where only the
    /// first `keys[i]` tokens of sequence i are attended to: transformers'
    /// key-padding mask for right-padded batches. Every token's output is still
    /// computed (SigLIP pools a padding position).
    pub fn forward_key_padded(&self, x: &Tensor, keys: &[usize]) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(blocks) => {
                let mask = key_padding_mask(x.dims3()?, keys, x.device())?;
                blocks
                    .iter()
                    .try_fold(x.clone(), |x, block| block.forward(&x, Some(&mask)))
            }
            Self::Cpu(blocks) => crate::nn::cpu::forward(blocks, x, false, Some(keys)),
        }
    }

    /// The final hidden state at one token per sequence, `pooled[i]` of
    /// sequence i: (batch, width), what [`Self::forward`] gives at those
    /// tokens. The last block computes only those rows (a tower pooling one
    /// token needs no other row of it).
    pub fn forward_pooled(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        pooled: &[usize],
    ) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(blocks) => candle_pooled(blocks, x, mask, pooled),
            Self::Cpu(blocks) => cpu_pooled(blocks, x, mask.is_some(), None, pooled),
        }
    }

    /// [`Self::forward_key_padded`] at one token per sequence, as
    /// [`Self::forward_pooled`].
    pub fn forward_key_padded_pooled(
        &self,
        x: &Tensor,
        keys: &[usize],
        pooled: &[usize],
    ) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(blocks) => {
                let mask = key_padding_mask(x.dims3()?, keys, x.device())?;
                candle_pooled(blocks, x, Some(&mask), pooled)
            }
            Self::Cpu(blocks) => cpu_pooled(blocks, x, false, Some(keys), pooled),
        }
    }

    /// Causal forward over `x` (rows, width) holding `sequences` (first row,
    /// length) back to back, without padding, to the final hidden state at
    /// one token per sequence (`pooled[i]` of sequence i): (sequences, width).
    /// Only the CPU kernels support this; candle layers return None and
    /// callers pad instead.
    pub fn forward_causal_packed_pooled(
        &self,
        x: &Tensor,
        sequences: &[(usize, usize)],
        pooled: &[usize],
    ) -> Option<candle_core::Result<Tensor>> {
        match self {
            Self::Candle(_) => None,
            Self::Cpu(blocks) => Some(
                check_pooled(sequences.iter().map(|&(_, len)| len), pooled).and_then(|()| {
                    crate::nn::cpu::forward_packed_pooled(blocks, x, sequences, true, None, pooled)
                }),
            ),
        }
    }
}

/// One pooled token per sequence, inside it (`lengths`: the sequences').
fn check_pooled(
    lengths: impl ExactSizeIterator<Item = usize>,
    pooled: &[usize],
) -> candle_core::Result<()> {
    let sequences = lengths.len();
    if pooled.len() != sequences {
        candle_core::bail!("{} pooled tokens for {sequences} sequences", pooled.len());
    }
    if let Some((len, p)) = lengths.zip(pooled).find(|&(len, &p)| p >= len) {
        candle_core::bail!("pooled token {p} is outside its sequence of {len}");
    }
    Ok(())
}

/// [`Transformer::forward_pooled`] on the CPU kernels, over `x` (batch,
/// tokens, width): causal, key-padded (`keys`) or neither.
fn cpu_pooled(
    blocks: &[Arc<CpuBlock>],
    x: &Tensor,
    causal: bool,
    keys: Option<&[usize]>,
    pooled: &[usize],
) -> candle_core::Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    check_pooled(std::iter::repeat_n(t, b), pooled)?;
    let sequences: Vec<(usize, usize)> = (0..b).map(|i| (i * t, t)).collect();
    let x = x.reshape((b * t, c))?;
    crate::nn::cpu::forward_packed_pooled(blocks, &x, &sequences, causal, keys, pooled)
}

/// The candle blocks over `x` (batch, tokens, width) to the output at token
/// `pooled[i]` of each sequence i: (batch, width), the last block on those
/// rows alone.
fn candle_pooled(
    blocks: &[ResidualBlock],
    x: &Tensor,
    mask: Option<&Tensor>,
    pooled: &[usize],
) -> candle_core::Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    check_pooled(std::iter::repeat_n(t, b), pooled)?;
    let rows: Vec<u32> = (0..b).map(|i| (i * t + pooled[i]) as u32).collect();
    let Some((last, rest)) = blocks.split_last() else {
        return gather_rows(&x.reshape((b * t, c))?, &rows);
    };
    let positions: Vec<u32> = pooled.iter().map(|&p| p as u32).collect();
    let positions = Tensor::from_vec(positions, b, x.device())?;
    let x = rest
        .iter()
        .try_fold(x.clone(), |x, block| block.forward(&x, mask))?;
    last.forward_pooled(&x, mask, &PooledTokens { rows, positions })
}

/// One token per sequence of a (batch, tokens, width) input: `rows`, the flat
/// row `i·tokens + p` of sequence i's token p (for [`gather_rows`]);
/// `positions`, the p (an index tensor for the mask's rows).
struct PooledTokens {
    rows: Vec<u32>,
    positions: Tensor,
}

/// `(batch, 3, gh·p, gw·p)` pixels as `(batch, gh·gw, 3·p·p)` rows, one per
/// patch in row-major order, each in a `Conv2d(kernel = stride = p)` weight's
/// `(channel, y, x)` order: such a convolution is exactly a matmul over these rows.
pub fn patchify(pixels: &Tensor, p: usize) -> candle_core::Result<Tensor> {
    let (b, ch, h, w) = pixels.dims4()?;
    let (gh, gw) = (h / p, w / p);
    pixels
        .reshape((b, ch, gh, p, gw, p))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b, gh * gw, ch * p * p))
}

/// The additive (batch, 1, 1, tokens) mask hiding keys past `keys[i]` in row
/// i: large negative rather than -inf, as transformers' `finfo.min`, so a row
/// with no real key stays finite.
pub fn key_padding_mask(
    (b, t, _): (usize, usize, usize),
    keys: &[usize],
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    if keys.len() != b {
        candle_core::bail!("{} key counts for a batch of {b}", keys.len());
    }
    let mask: Vec<f32> = keys
        .iter()
        .flat_map(|&k| (0..t).map(move |j| if j < k { 0.0 } else { f32::MIN }))
        .collect();
    Tensor::from_vec(mask, (b, 1, 1, t), device)
}

/// L2-normalises each row (the embeddings users compare with cosine similarity).
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    // Clamp like F.normalize so an all-zero row stays zero instead of NaN.
    x.broadcast_div(&norm.clamp(1e-12, f64::INFINITY)?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn int8_is_refused_off_the_packed_cpu_path() {
        let weight = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        let tensors = HashMap::from([("weight".to_string(), weight)]);
        let training =
            Weights::trainable(tensors.clone(), &Device::Cpu).with_precision(Precision::Int8);
        let err = Linear::load(&training, 4, 3, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("int8") && err.contains("training"), "{err}");
        // CPU inference packs it.
        let inference =
            Weights::from_tensors(tensors, &Device::Cpu).with_precision(Precision::Int8);
        let linear = Linear::load(&inference, 4, 3, false).unwrap();
        assert!(matches!(linear, Linear::Packed(p) if p.precision() == Precision::Int8));
    }

    /// Deterministic open_clip block tensors (`resblocks.{i}.…`) for `cfg`:
    /// `Weights::random`'s values, LayerNorm weights around 1.
    fn open_clip_blocks(cfg: &TransformerConfig) -> HashMap<String, Tensor> {
        let (c, h) = (cfg.width, cfg.mlp_width);
        let random = Weights::random(&Device::Cpu);
        let mut tensors = HashMap::new();
        for i in 0..cfg.layers {
            for (name, shape) in [
                ("ln_1.weight", vec![c]),
                ("ln_1.bias", vec![c]),
                ("attn.in_proj_weight", vec![3 * c, c]),
                ("attn.in_proj_bias", vec![3 * c]),
                ("attn.out_proj.weight", vec![c, c]),
                ("attn.out_proj.bias", vec![c]),
                ("ln_2.weight", vec![c]),
                ("ln_2.bias", vec![c]),
                ("mlp.c_fc.weight", vec![h, c]),
                ("mlp.c_fc.bias", vec![h]),
                ("mlp.c_proj.weight", vec![c, h]),
                ("mlp.c_proj.bias", vec![c]),
                ("ls_1.gamma", vec![c]),
                ("ls_2.gamma", vec![c]),
            ] {
                let name = format!("resblocks.{i}.{name}");
                let mut t = (random.get(&name, &shape).unwrap() * 5.0).unwrap();
                if name.ends_with("ln_1.weight") || name.ends_with("ln_2.weight") {
                    t = (t + 1.0).unwrap();
                }
                tensors.insert(name, t);
            }
        }
        tensors
    }

    /// The pooled forwards (only the pooled rows through the last block)
    /// against the full forward's rows: causal, key-padded and
    /// bidirectional, with and without LayerScale, on the CPU kernels in each
    /// precision and on candle's layers (training). bf16 and int8 run the full
    /// block's attention in bf16, the pooled rows' in f32: a looser bound.
    #[test]
    fn pooled_forwards_match_the_full_forward_at_the_pooled_rows() {
        let (b, t, width) = (3, 7, 64);
        let x = Tensor::randn(0f32, 1.0, (b, t, width), &Device::Cpu).unwrap();
        // Cut from a longer causal mask, as the text tower does: not contiguous.
        let n = t + 2;
        let causal: Vec<f32> = (0..n * n)
            .map(|i| {
                if i % n > i / n {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(causal, (n, n), &Device::Cpu)
            .and_then(|m| m.narrow(0, 0, t)?.narrow(1, 0, t))
            .unwrap();
        let pooled = [0, 6, 3];
        let keys = [7, 4, 5];
        for layer_scale in [false, true] {
            let cfg = TransformerConfig {
                width,
                layers: 2,
                heads: 4,
                mlp_width: 4 * width,
                activation: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
                layer_scale,
            };
            let tensors = open_clip_blocks(&cfg);
            let candle = Weights::trainable(tensors.clone(), &Device::Cpu);
            let towers = [Precision::F32, Precision::Bf16, Precision::Int8]
                .map(|p| Weights::from_tensors(tensors.clone(), &Device::Cpu).with_precision(p))
                .into_iter()
                .chain([candle]);
            for w in towers {
                let tower = Transformer::load_open_clip(&w, &cfg).unwrap();
                let kind = match &tower {
                    Transformer::Cpu(_) => format!("{:?} kernels", w.precision()),
                    Transformer::Candle(_) => "candle".to_string(),
                };
                let bound = if w.precision() == Precision::F32 {
                    1e-5
                } else {
                    2e-2
                };
                let runs = [
                    (
                        tower.forward(&x, Some(&mask)).unwrap(),
                        tower.forward_pooled(&x, Some(&mask), &pooled).unwrap(),
                    ),
                    (
                        tower.forward(&x, None).unwrap(),
                        tower.forward_pooled(&x, None, &pooled).unwrap(),
                    ),
                    (
                        tower.forward_key_padded(&x, &keys).unwrap(),
                        tower.forward_key_padded_pooled(&x, &keys, &pooled).unwrap(),
                    ),
                ];
                for (run, (full, got)) in runs.iter().enumerate() {
                    let want = pick_rows(full, &pooled);
                    let scale = want.abs().unwrap().max_all().unwrap();
                    let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
                    let diff = diff.to_scalar::<f32>().unwrap();
                    let scale = scale.to_scalar::<f32>().unwrap();
                    assert!(
                        diff <= bound * scale.max(1.0),
                        "{kind}, layer scale {layer_scale}, run {run}: {diff} (scale {scale})"
                    );
                }
            }
        }
        let cfg = TransformerConfig {
            width,
            layers: 1,
            heads: 4,
            mlp_width: width,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            layer_scale: false,
        };
        let tower = Transformer::load_open_clip(&Weights::random(&Device::Cpu), &cfg).unwrap();
        let err = tower.forward_pooled(&x, None, &[0, 7, 1]).unwrap_err();
        assert!(err.to_string().contains("pooled"), "{err}");
        // An empty batch pools nothing.
        let none = tower
            .forward_pooled(&x.narrow(0, 0, 0).unwrap(), None, &[])
            .unwrap();
        assert_eq!(none.dims(), &[0, width]);
    }

    /// Row `pooled[i]` of each sequence i of `y` (batch, tokens, width): (batch, width).
    fn pick_rows(y: &Tensor, pooled: &[usize]) -> Tensor {
        let (b, t, c) = y.dims3().unwrap();
        let rows: Vec<u32> = (0..b).map(|i| (i * t + pooled[i]) as u32).collect();
        let rows = Tensor::from_vec(rows, b, y.device()).unwrap();
        y.reshape((b * t, c))
            .unwrap()
            .index_select(&rows, 0)
            .unwrap()
    }
}
