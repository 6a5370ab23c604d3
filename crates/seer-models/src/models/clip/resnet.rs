//! OpenAI's ModifiedResNet image tower (RN50, RN101, RN50x4, ...): a three-conv stem,
//! anti-aliased bottlenecks (average pooling before strided convolutions) and
//! attention pooling instead of global average pooling.

use candle_core::{Module, Tensor};

use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::models::clip::config::ResNetConfig;
use crate::nn::layers::Linear;

/// A bias-free convolution followed by inference-mode BatchNorm, folded into a
/// per-channel scale and shift at load time.
#[derive(Clone, Debug)]
struct ConvBn {
    weight: Tensor,
    scale: Tensor,
    shift: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvBn {
    fn load(
        conv: &Weights,
        bn: &Weights,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        let weight = conv.get("weight", &[cout, cin, k, k])?;
        let gamma = bn.get("weight", &[cout])?;
        let beta = bn.get("bias", &[cout])?;
        let mean = bn.get("running_mean", &[cout])?;
        let var = bn.get("running_var", &[cout])?;
        let scale = (gamma / (var + 1e-5)?.sqrt()?)?;
        let shift = (beta - (&mean * &scale)?)?;
        Ok(Self {
            weight,
            scale: scale.reshape((1, cout, 1, 1))?,
            shift: shift.reshape((1, cout, 1, 1))?,
            stride,
            padding: k / 2,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
            .broadcast_mul(&self.scale)?
            .broadcast_add(&self.shift)
    }
}

#[derive(Clone, Debug)]
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    stride: usize,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    const EXPANSION: usize = 4;

    fn load(w: &Weights, inplanes: usize, planes: usize, stride: usize) -> Result<Self> {
        let out = planes * Self::EXPANSION;
        let downsample = if stride > 1 || inplanes != out {
            Some(ConvBn::load(
                &w.pp("downsample.0"),
                &w.pp("downsample.1"),
                inplanes,
                out,
                1,
                1,
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1: ConvBn::load(&w.pp("conv1"), &w.pp("bn1"), inplanes, planes, 1, 1)?,
            conv2: ConvBn::load(&w.pp("conv2"), &w.pp("bn2"), planes, planes, 3, 1)?,
            conv3: ConvBn::load(&w.pp("conv3"), &w.pp("bn3"), planes, out, 1, 1)?,
            stride,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = self.conv1.forward(x)?.relu()?;
        out = self.conv2.forward(&out)?.relu()?;
        if self.stride > 1 {
            out = out.avg_pool2d(self.stride)?;
        }
        out = self.conv3.forward(&out)?;
        let identity = match &self.downsample {
            Some(ds) => {
                let pooled = if self.stride > 1 {
                    x.avg_pool2d(self.stride)?
                } else {
                    x.clone()
                };
                ds.forward(&pooled)?
            }
            None => x.clone(),
        };
        (out + identity)?.relu()
    }
}

/// Multi-head attention of the mean token over all spatial tokens.
#[derive(Clone, Debug)]
struct AttentionPool {
    position_embedding: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    c: Linear,
    heads: usize,
}

impl AttentionPool {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, ch, h, w) = x.dims4()?;
        let tokens = x.reshape((b, ch, h * w))?.transpose(1, 2)?; // (B, HW, C)
        let mean = tokens.mean_keepdim(1)?;
        let x = Tensor::cat(&[&mean, &tokens], 1)?.broadcast_add(&self.position_embedding)?;
        let t = h * w + 1;
        let d = ch / self.heads;
        // Only the mean token's output is kept, so only it is used as a query.
        let q = (self.q.forward(&x.narrow(1, 0, 1)?)? * (1.0 / (d as f64).sqrt()))?
            .reshape((b, 1, self.heads, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let split = |l: &Linear| -> candle_core::Result<Tensor> {
            l.forward(&x)?
                .reshape((b, t, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (k, v) = (split(&self.k)?, split(&self.v)?);
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, ch))?;
        self.c.forward(&context)
    }
}

#[derive(Clone, Debug)]
pub struct ModifiedResNet {
    cfg: ResNetConfig,
    stem: [ConvBn; 3],
    layers: Vec<Bottleneck>,
    attnpool: AttentionPool,
}

impl ModifiedResNet {
    /// `w` points at open_clip's `visual`.
    pub fn load(w: &Weights, cfg: &ResNetConfig, embed_dim: usize) -> Result<Self> {
        let width = cfg.width;
        let half = width / 2;
        let stem = [
            ConvBn::load(&w.pp("conv1"), &w.pp("bn1"), 3, half, 3, 2)?,
            ConvBn::load(&w.pp("conv2"), &w.pp("bn2"), half, half, 3, 1)?,
            ConvBn::load(&w.pp("conv3"), &w.pp("bn3"), half, width, 3, 1)?,
        ];
        let mut layers = Vec::new();
        let mut inplanes = width;
        for (stage, &blocks) in cfg.layers.iter().enumerate() {
            let planes = width << stage;
            for i in 0..blocks {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let block_w = w.pp(format!("layer{}.{i}", stage + 1));
                layers.push(Bottleneck::load(&block_w, inplanes, planes, stride)?);
                inplanes = planes * Bottleneck::EXPANSION;
            }
        }
        let channels = width * 32;
        let spatial = cfg.image_size / 32;
        let a = w.pp("attnpool");
        let attnpool = AttentionPool {
            position_embedding: a
                .get("positional_embedding", &[spatial * spatial + 1, channels])?
                .unsqueeze(0)?,
            q: Linear::load(&a.pp("q_proj"), channels, channels, true)?,
            k: Linear::load(&a.pp("k_proj"), channels, channels, true)?,
            v: Linear::load(&a.pp("v_proj"), channels, channels, true)?,
            c: Linear::load(&a.pp("c_proj"), channels, embed_dim, true)?,
            heads: cfg.heads,
        };
        Ok(Self {
            cfg: cfg.clone(),
            stem,
            layers,
            attnpool,
        })
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, ch, h, w) = pixels.dims4()?;
        let size = self.cfg.image_size;
        if ch != 3 || h != size || w != size {
            return Err(ModelError::Input(format!(
                "expected images of shape (N, 3, {size}, {size}), got {:?}",
                pixels.dims()
            )));
        }
        let mut x = pixels.clone();
        for conv in &self.stem {
            x = conv.forward(&x)?.relu()?;
        }
        x = x.avg_pool2d(2)?;
        for block in &self.layers {
            x = block.forward(&x)?;
        }
        Ok(self.attnpool.forward(&x)?)
    }
}
