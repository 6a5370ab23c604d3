//! Building blocks shared by the towers: linear, LayerNorm, MLP, multi-head
//! attention and the pre-norm residual block both libraries use.

use candle_core::{Module, Tensor, D};

use crate::config::{Activation, TransformerConfig};
use crate::error::Result;
use crate::weights::Weights;

/// `y = x Wᵀ + b`. The weight is kept as a transposed view of the checkpoint's
/// `(out, in)` matrix, so loading copies nothing and any leading dims are flattened
/// into one matrix product.
#[derive(Clone, Debug)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From an `(out, in)` weight, as `nn.Linear` stores it.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight_t: weight.t()?,
            bias,
        })
    }

    /// From an `(in, out)` matrix that multiplies on the right, as open_clip's `proj`.
    pub fn from_right_matrix(matrix: Tensor) -> Self {
        Self {
            weight_t: matrix,
            bias: None,
        }
    }

    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = w.get("weight", &[out_dim, in_dim])?;
        let bias = if bias {
            Some(w.get("bias", &[out_dim])?)
        } else {
            None
        };
        Self::new(weight, bias)
    }

    pub fn out_dim(&self) -> usize {
        self.weight_t.dims()[1]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.out_dim();
        y.reshape(out_dims)
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

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.differentiable {
            // candle's fused kernel has no backward pass; this is the same formula
            // (biased variance, eps inside the root) from differentiable ops.
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
        }
    }
}

/// Softmax over the last dimension. The differentiable form subtracts a detached
/// row maximum: softmax is shift-invariant, so the gradient through it is zero
/// anyway and skipping it saves a pass.
pub fn softmax_last_dim(x: &Tensor, differentiable: bool) -> candle_core::Result<Tensor> {
    if differentiable {
        let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
        let num = shifted.exp()?;
        num.broadcast_div(&num.sum_keepdim(D::Minus1)?)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

pub fn activate(x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        Activation::Gelu => x.gelu_erf(),
    }
}

#[derive(Clone, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2
            .forward(&activate(&self.fc1.forward(x)?, self.activation)?)
    }
}

/// Multi-head self-attention with one fused q/k/v projection.
#[derive(Clone, Debug)]
pub struct Attention {
    qkv: Linear,
    out: Linear,
    heads: usize,
    differentiable: bool,
}

impl Attention {
    /// `x`: (batch, tokens, width); `mask`: additive (tokens, tokens) or None.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let head_dim = c / self.heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, t, 3, self.heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = (qkv.get(0)?.contiguous()? * scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = softmax_last_dim(&scores, self.differentiable)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
        self.out.forward(&context)
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

impl ResidualBlock {
    /// open_clip / OpenAI naming: `ln_1`, `attn.in_proj_weight`, `mlp.c_fc`, ...
    pub fn load_open_clip(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let c = cfg.width;
        let qkv = Linear::new(
            w.get("attn.in_proj_weight", &[3 * c, c])?,
            Some(w.get("attn.in_proj_bias", &[3 * c])?),
        )?;
        let layer_scale = |name: &str| -> Result<Option<Tensor>> {
            if cfg.layer_scale {
                Ok(Some(w.get(name, &[c])?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            ln1: LayerNorm::load(&w.pp("ln_1"), c, cfg.layer_norm_eps)?,
            attn: Attention {
                qkv,
                out: Linear::load(&w.pp("attn.out_proj"), c, c, true)?,
                heads: cfg.heads,
                differentiable: w.differentiable(),
            },
            ls1: layer_scale("ls_1.gamma")?,
            ln2: LayerNorm::load(&w.pp("ln_2"), c, cfg.layer_norm_eps)?,
            mlp: Mlp {
                fc1: Linear::load(&w.pp("mlp.c_fc"), c, cfg.mlp_width, true)?,
                fc2: Linear::load(&w.pp("mlp.c_proj"), cfg.mlp_width, c, true)?,
                activation: cfg.activation,
            },
            ls2: layer_scale("ls_2.gamma")?,
        })
    }

    /// transformers naming: `layer_norm1`, `self_attn.{q,k,v}_proj`, `mlp.fc1`, ...
    /// q, k and v are concatenated once here so inference runs one matmul.
    pub fn load_transformers(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let c = cfg.width;
        let part = |name: &str| -> Result<(Tensor, Tensor)> {
            let a = w.pp(format!("self_attn.{name}"));
            Ok((a.get("weight", &[c, c])?, a.get("bias", &[c])?))
        };
        let (qw, qb) = part("q_proj")?;
        let (kw, kb) = part("k_proj")?;
        let (vw, vb) = part("v_proj")?;
        let qkv = Linear::new(
            Tensor::cat(&[qw, kw, vw], 0)?,
            Some(Tensor::cat(&[qb, kb, vb], 0)?),
        )?;
        Ok(Self {
            ln1: LayerNorm::load(&w.pp("layer_norm1"), c, cfg.layer_norm_eps)?,
            attn: Attention {
                qkv,
                out: Linear::load(&w.pp("self_attn.out_proj"), c, c, true)?,
                heads: cfg.heads,
                differentiable: w.differentiable(),
            },
            ls1: None,
            ln2: LayerNorm::load(&w.pp("layer_norm2"), c, cfg.layer_norm_eps)?,
            mlp: Mlp {
                fc1: Linear::load(&w.pp("mlp.fc1"), c, cfg.mlp_width, true)?,
                fc2: Linear::load(&w.pp("mlp.fc2"), cfg.mlp_width, c, true)?,
                activation: cfg.activation,
            },
            ls2: None,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let scaled = |y: Tensor, gamma: &Option<Tensor>| match gamma {
            Some(g) => y.broadcast_mul(g),
            None => Ok(y),
        };
        let x = (x + scaled(self.attn.forward(&self.ln1.forward(x)?, mask)?, &self.ls1)?)?;
        let y = scaled(self.mlp.forward(&self.ln2.forward(&x)?)?, &self.ls2)?;
        x + y
    }
}

/// A stack of residual blocks.
#[derive(Clone, Debug)]
pub struct Transformer {
    blocks: Vec<ResidualBlock>,
}

impl Transformer {
    /// open_clip: `<prefix>.resblocks.{i}`.
    pub fn load_open_clip(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let blocks = (0..cfg.layers)
            .map(|i| ResidualBlock::load_open_clip(&w.pp(format!("resblocks.{i}")), cfg))
            .collect::<Result<_>>()?;
        Ok(Self { blocks })
    }

    /// transformers: `<prefix>.layers.{i}`.
    pub fn load_transformers(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let blocks = (0..cfg.layers)
            .map(|i| ResidualBlock::load_transformers(&w.pp(format!("layers.{i}")), cfg))
            .collect::<Result<_>>()?;
        Ok(Self { blocks })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        self.blocks
            .iter()
            .try_fold(x.clone(), |x, block| block.forward(&x, mask))
    }
}

/// L2-normalises each row (the embeddings users compare with cosine similarity).
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    // Clamp like F.normalize so an all-zero row stays zero instead of NaN.
    x.broadcast_div(&norm.clamp(1e-12, f64::INFINITY)?)
}
