//! Causal text transformer with end-of-text pooling.

use candle_core::{Device, Module, Tensor};

use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::models::clip::config::{Layout, TextConfig};
use crate::nn::gather_rows::gather_rows;
use crate::nn::layers::{LayerNorm, Linear, Transformer};

/// The CLIP end-of-text token; features are pooled at its first occurrence.
pub const EOT_TOKEN: u32 = 49407;

/// How a batch of token sequences is padded before the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextPadding {
    /// To the longest sequence of the batch. Exact: attention is causal, so tokens
    /// after the end-of-text token never influence the pooled feature.
    Longest,
    /// To the full context length, as the reference implementations run.
    Context,
}

#[derive(Clone, Debug)]
pub struct TextTransformer {
    cfg: TextConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    proj: Linear,
    causal_mask: Tensor,
}

impl TextTransformer {
    /// `w` points at the text tower (checkpoint root, `text` or `text_model`); `root`
    /// at the checkpoint root, where transformers keeps `text_projection`.
    pub fn load(
        w: &Weights,
        root: &Weights,
        cfg: &TextConfig,
        layout: Layout,
        embed_dim: usize,
    ) -> Result<Self> {
        let c = cfg.transformer.width;
        let eps = cfg.transformer.layer_norm_eps;
        let (token_embedding, position_embedding, transformer, ln_final, proj) = match layout {
            Layout::OpenClip => (
                w.get("token_embedding.weight", &[cfg.vocab_size, c])?,
                w.get("positional_embedding", &[cfg.context_length, c])?,
                Transformer::load_open_clip(&w.pp("transformer"), &cfg.transformer)?,
                LayerNorm::load(&w.pp("ln_final"), c, eps)?,
                if cfg.proj_bias {
                    Linear::load(&w.pp("text_projection"), c, embed_dim, true)?
                } else {
                    Linear::from_right_matrix(w, w.get("text_projection", &[c, embed_dim])?)?
                },
            ),
            Layout::Transformers => {
                let e = w.pp("embeddings");
                (
                    e.get("token_embedding.weight", &[cfg.vocab_size, c])?,
                    e.get("position_embedding.weight", &[cfg.context_length, c])?,
                    Transformer::load_transformers(&w.pp("encoder"), &cfg.transformer)?,
                    LayerNorm::load(&w.pp("final_layer_norm"), c, eps)?,
                    Linear::load(&root.pp("text_projection"), c, embed_dim, false)?,
                )
            }
        };
        let device = token_embedding.device().clone();
        Ok(Self {
            cfg: cfg.clone(),
            token_embedding,
            position_embedding,
            transformer,
            ln_final,
            proj,
            causal_mask: causal_mask(cfg.context_length, &device)?,
        })
    }

    pub fn context_length(&self) -> usize {
        self.cfg.context_length
    }

    /// Each sequence's end-of-text position, checking the sequences against
    /// the context length and vocabulary (errors name the sequence's index).
    pub fn eot_positions(&self, sequences: &[Vec<u32>]) -> Result<Vec<usize>> {
        let ctx = self.cfg.context_length;
        let mut eot_positions = Vec::with_capacity(sequences.len());
        for (i, seq) in sequences.iter().enumerate() {
            if seq.len() > ctx {
                return Err(ModelError::Input(format!(
                    "sequence {i} has {} tokens, the context length is {ctx}",
                    seq.len()
                )));
            }
            if let Some(&bad) = seq.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
                return Err(ModelError::Input(format!(
                    "token id {bad} is outside the vocabulary"
                )));
            }
            let eot = seq.iter().position(|&t| t == EOT_TOKEN).ok_or_else(|| {
                ModelError::Input(format!("sequence {i} has no end-of-text token"))
            })?;
            eot_positions.push(eot);
        }
        Ok(eot_positions)
    }

    /// Each sequence must contain the end-of-text token (the tokenizer puts it last).
    /// Returns projected features (batch, embed).
    pub fn forward(&self, sequences: &[Vec<u32>], padding: TextPadding) -> Result<Tensor> {
        let eot_positions = self.eot_positions(sequences)?;
        let b = sequences.len();
        if b == 0 {
            return Ok(Tensor::zeros(
                (0, self.proj.out_dim()),
                candle_core::DType::F32,
                self.token_embedding.device(),
            )?);
        }
        if padding == TextPadding::Longest {
            if let Some(features) = self.forward_unpadded(sequences, &eot_positions)? {
                return Ok(features);
            }
        }
        let t = match padding {
            TextPadding::Longest => sequences.iter().map(Vec::len).max().unwrap_or(1),
            TextPadding::Context => self.cfg.context_length,
        };
        let mut ids = vec![0u32; b * t];
        for (row, seq) in ids.chunks_mut(t).zip(sequences) {
            row[..seq.len()].copy_from_slice(seq);
        }
        let c = self.cfg.transformer.width;
        let x = gather_rows(&self.token_embedding, &ids)?
            .reshape((b, t, c))?
            .broadcast_add(&self.position_embedding.narrow(0, 0, t)?.unsqueeze(0)?)?;
        let mask = self.causal_mask.narrow(0, 0, t)?.narrow(1, 0, t)?;
        // The end-of-text rows, then LayerNorm only those (it acts per token).
        let pooled = self
            .transformer
            .forward_pooled(&x, Some(&mask), &eot_positions)?;
        Ok(self.proj.forward(&self.ln_final.forward(&pooled)?)?)
    }
}

impl TextTransformer {
    /// The sequences back to back with no padding at all (CPU kernels only):
    /// attention stays within each sequence and is causal, so this equals any
    /// padded run, while a batch of short prompts costs only its real tokens.
    fn forward_unpadded(
        &self,
        sequences: &[Vec<u32>],
        eot_positions: &[usize],
    ) -> Result<Option<Tensor>> {
        let device = self.token_embedding.device();
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(sequences.len());
        for seq in sequences {
            spans.push((ids.len(), seq.len()));
            ids.extend_from_slice(seq);
            positions.extend(0..seq.len() as u32);
        }
        let rows = ids.len();
        let ids = Tensor::from_vec(ids, rows, device)?;
        let positions = Tensor::from_vec(positions, rows, device)?;
        let x = (self.token_embedding.index_select(&ids, 0)?
            + self.position_embedding.index_select(&positions, 0)?)?;
        let Some(pooled) = self
            .transformer
            .forward_causal_packed_pooled(&x, &spans, eot_positions)
        else {
            return Ok(None);
        };
        Ok(Some(self.proj.forward(&self.ln_final.forward(&pooled?)?)?))
    }
}

fn causal_mask(n: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (n, n), device)?)
}
