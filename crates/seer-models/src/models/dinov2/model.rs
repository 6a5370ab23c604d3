//! The DINOv2 encoder: patch embedding, CLS (and register) tokens, position
//! embeddings resized to the input's grid, pre-norm blocks with LayerScale and a
//! final LayerNorm over every token.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use seer_kernels::Precision;

use super::config::{Dinov2Config, Dinov2Variant};
use super::interpolate::{resize_grid, PosResample};
use crate::error::{ModelError, Result};
use crate::io::files::ModelFiles;
use crate::io::weights::Weights;
use crate::nn::layers::{patchify, BlockTensors, LayerNorm, Linear, Transformer};
use crate::nn::split_batch;

/// The encoder's outputs for a batch. Tokens are laid out as the reference's
/// `last_hidden_state`: `[CLS, registers.., patches row-major]`.
#[derive(Clone, Debug)]
pub struct Dinov2Output {
    /// `(batch, 1 + registers + h·w, dim)`, after the final LayerNorm.
    pub last_hidden_state: Tensor,
    /// `(batch, dim)`: the CLS token after the final LayerNorm, transformers'
    /// `pooler_output` (no projection).
    pub pooler: Tensor,
    /// `(batch, h, w, dim)`: the patch tokens after the final LayerNorm, registers
    /// left out; `h × w` is the input's grid of patches.
    pub patch_tokens: Tensor,
    /// Register tokens per image (0 for `Dinov2Model`).
    pub num_registers: usize,
}

impl Dinov2Output {
    /// The outputs of consecutive parts of a batch as one.
    fn concat(mut parts: Vec<Dinov2Output>) -> Result<Self> {
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let cat = |field: fn(&Dinov2Output) -> &Tensor| {
            split_batch::cat_parts(parts.iter().map(|p| field(p).clone()).collect())
        };
        Ok(Self {
            last_hidden_state: cat(|p| &p.last_hidden_state)?,
            pooler: cat(|p| &p.pooler)?,
            patch_tokens: cat(|p| &p.patch_tokens)?,
            num_registers: parts[0].num_registers,
        })
    }

    /// `(batch, dim)`: the mean of the patch tokens (registers excluded), the
    /// half that `Dinov2ForImageClassification` concatenates with CLS.
    pub fn patch_mean(&self) -> Result<Tensor> {
        Ok(self.patch_tokens.flatten(1, 2)?.mean(1)?)
    }

    /// `(batch, registers, dim)`, after the final LayerNorm.
    pub fn register_tokens(&self) -> Result<Tensor> {
        Ok(self.last_hidden_state.narrow(1, 1, self.num_registers)?)
    }
}

#[derive(Clone, Debug)]
pub struct Dinov2Model {
    cfg: Dinov2Config,
    /// The stride-p patch convolution as a matmul over patchified pixels.
    patch_embed: Linear,
    cls_token: Tensor,
    /// `(1, registers, dim)`, when the model has any.
    register_tokens: Option<Tensor>,
    /// The trained `(1 + g·g, dim)` table, CLS row first: kept on the host for
    /// resizing, and as a `(1, 1 + g·g, dim)` tensor for the native size.
    position_table: Vec<f32>,
    position_embeddings: Tensor,
    encoder: Transformer,
    layernorm: LayerNorm,
    /// Whether batches run as one part per thread ([`split_batch::applies`]).
    split_batches: bool,
}

impl Dinov2Model {
    /// Loads the model in `dir` (`config.json` and `model.safetensors` or
    /// `pytorch_model.bin`).
    pub fn load_dir(dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        Self::load(&ModelFiles::from_dir(dir)?, device, precision)
    }

    pub fn load(files: &ModelFiles, device: &Device, precision: Precision) -> Result<Self> {
        let cfg = Dinov2Config::from_file(&files.config)?;
        let w = Weights::open(&files.weights, device)?.with_precision(precision);
        Self::from_weights(&cfg, &w)
    }

    /// Builds the model from `w` (a checkpoint, or [`Weights::random`] for
    /// benchmarks). Checkpoints saved from a task model (`Dinov2ForImageClassification`)
    /// keep the encoder under `dinov2.`; that prefix is followed when present.
    pub fn from_weights(cfg: &Dinov2Config, w: &Weights) -> Result<Self> {
        let w = if !w.contains("embeddings.cls_token") && w.contains("dinov2.embeddings.cls_token")
        {
            w.pp("dinov2")
        } else {
            w.clone()
        };
        let c = cfg.hidden_size;
        let p = cfg.patch_size;
        let positions = 1 + cfg.grid_size().pow(2);
        let e = w.pp("embeddings");
        let conv = e.get("patch_embeddings.projection.weight", &[c, 3, p, p])?;
        let conv_bias = e.get("patch_embeddings.projection.bias", &[c])?;
        let register_tokens = match cfg.num_register_tokens {
            // Weights with registers under a config without them would run
            // without them: refused, as transformers refuses the size mismatch.
            0 if e.contains("register_tokens") => {
                e.get("register_tokens", &[1, 0, c])?;
                None
            }
            0 => None,
            r => Some(e.get("register_tokens", &[1, r, c])?),
        };
        let position_embeddings = e.get("position_embeddings", &[1, positions, c])?;
        let transformer_cfg = cfg.transformer();
        let encoder = Transformer::load(&w, &transformer_cfg, |i| {
            block_tensors(&w.pp(format!("encoder.layer.{i}")), cfg)
        })?;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: Linear::new(&w, conv.reshape((c, 3 * p * p))?, Some(conv_bias))?,
            cls_token: e.get("cls_token", &[1, 1, c])?,
            register_tokens,
            position_table: position_embeddings.flatten_all()?.to_vec1::<f32>()?,
            position_embeddings,
            encoder,
            layernorm: LayerNorm::load(&w.pp("layernorm"), c, cfg.layer_norm_eps)?,
            split_batches: split_batch::applies(&w),
        })
    }

    pub fn config(&self) -> &Dinov2Config {
        &self.cfg
    }

    /// The position embeddings added for an input of `height × width` pixels:
    /// `(1, 1 + h·w, dim)` with `h = height / patch`, `w = width / patch`, CLS row
    /// first. As `interpolate_pos_encoding`, the trained table is used as is only
    /// when the grid has as many cells as the table and the input is square.
    pub fn position_embeddings(&self, height: usize, width: usize) -> Result<Tensor> {
        let p = self.cfg.patch_size;
        let (gh, gw) = (height / p, width / p);
        let g = self.cfg.grid_size();
        if gh * gw == g * g && height == width {
            return Ok(self.position_embeddings.clone());
        }
        let mode = match self.cfg.variant {
            Dinov2Variant::Dinov2 => PosResample::Bicubic,
            Dinov2Variant::WithRegisters => PosResample::BicubicAntialias,
        };
        let c = self.cfg.hidden_size;
        let mut table = self.position_table[..c].to_vec();
        table.extend(resize_grid(
            &self.position_table[c..],
            (g, g),
            c,
            (gh, gw),
            mode,
        ));
        Ok(Tensor::from_vec(
            table,
            (1, 1 + gh * gw, c),
            self.position_embeddings.device(),
        )?)
    }

    /// `pixels`: `(batch, 3, H, W)` normalised images, any size of at least one
    /// patch; rows and columns past the last whole patch are ignored, as the
    /// reference's strided convolution does.
    pub fn forward(&self, pixels: &Tensor) -> Result<Dinov2Output> {
        Dinov2Output::concat(split_batch::per_image(
            self.split_batches,
            pixels,
            |pixels| self.forward_whole(pixels),
        )?)
    }

    /// [`Dinov2Model::forward`] of the whole batch on the current threads.
    fn forward_whole(&self, pixels: &Tensor) -> Result<Dinov2Output> {
        let (b, ch, h, w) = pixels.dims4()?;
        let p = self.cfg.patch_size;
        if ch != 3 || h < p || w < p {
            return Err(ModelError::Input(format!(
                "expected images of shape (N, 3, H, W) with H, W >= {p}, got {:?}",
                pixels.dims()
            )));
        }
        if pixels.dtype() != DType::F32 {
            return Err(ModelError::Input(format!(
                "expected f32 pixels, got {:?}",
                pixels.dtype()
            )));
        }
        let (gh, gw) = (h / p, w / p);
        let pixels = pixels.narrow(2, 0, gh * p)?.narrow(3, 0, gw * p)?;
        let c = self.cfg.hidden_size;
        let patches = self.patch_embed.forward(&patchify(&pixels, p)?)?;
        let cls = self.cls_token.broadcast_as((b, 1, c))?;
        let x =
            Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position_embeddings(h, w)?)?;
        // Registers join after the position embeddings, so they get none.
        let r = self.cfg.num_register_tokens;
        let x = match &self.register_tokens {
            Some(reg) => Tensor::cat(
                &[
                    &x.narrow(1, 0, 1)?,
                    &reg.broadcast_as((b, r, c))?,
                    &x.narrow(1, 1, gh * gw)?,
                ],
                1,
            )?,
            None => x,
        };
        let x = self.encoder.forward(&x.contiguous()?, None)?;
        let last_hidden_state = self.layernorm.forward(&x)?;
        Ok(Dinov2Output {
            pooler: last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?,
            patch_tokens: last_hidden_state
                .narrow(1, 1 + r, gh * gw)?
                .reshape((b, gh, gw, c))?,
            last_hidden_state,
            num_registers: r,
        })
    }
}

/// One encoder layer's tensors under the hub's names (`norm1`,
/// `attention.attention.query`, `mlp.fc1` or `mlp.weights_in`, `layer_scale1.lambda1`, ...).
fn block_tensors(w: &Weights, cfg: &Dinov2Config) -> Result<BlockTensors> {
    let c = cfg.hidden_size;
    let hidden = cfg.mlp_hidden();
    let linear = |name: &str, rows: usize, cols: usize, bias: bool| -> Result<(Tensor, Tensor)> {
        let weight = w.get(&format!("{name}.weight"), &[rows, cols])?;
        let bias = if bias {
            w.get(&format!("{name}.bias"), &[rows])?
        } else {
            // qkv_bias=false: the shared attention always adds a bias.
            Tensor::zeros(rows, DType::F32, w.device())?
        };
        Ok((weight, bias))
    };
    let norm = |name: &str| -> Result<(Tensor, Tensor)> {
        Ok((
            w.get(&format!("{name}.weight"), &[c])?,
            w.get(&format!("{name}.bias"), &[c])?,
        ))
    };
    let (fc1, fc2) = if cfg.use_swiglu_ffn {
        // weights_in stacks the gate's rows, then the up projection's.
        (
            linear("mlp.weights_in", 2 * hidden, c, true)?,
            linear("mlp.weights_out", c, hidden, true)?,
        )
    } else {
        (
            linear("mlp.fc1", hidden, c, true)?,
            linear("mlp.fc2", c, hidden, true)?,
        )
    };
    Ok(BlockTensors {
        ln1: norm("norm1")?,
        qkv: ["query", "key", "value"]
            .iter()
            .map(|part| linear(&format!("attention.attention.{part}"), c, c, cfg.qkv_bias))
            .collect::<Result<_>>()?,
        out: linear("attention.output.dense", c, c, true)?,
        ln2: norm("norm2")?,
        fc1,
        fc2,
        swiglu: cfg.use_swiglu_ffn,
        ls1: Some(w.get("layer_scale1.lambda1", &[c])?),
        ls2: Some(w.get("layer_scale2.lambda1", &[c])?),
    })
}
