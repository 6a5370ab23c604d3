//! SigLIP's text tower: token + position embeddings, a **bidirectional**
//! encoder, `final_layer_norm`, and the `head` Linear on the last position.

use candle_core::{Module, Tensor};

use super::config::SiglipTextConfig;
use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::gather_rows::gather_rows;
use crate::nn::layers::{LayerNorm, Linear, Transformer};

#[derive(Clone, Debug)]
pub struct SiglipTextTransformer {
    cfg: SiglipTextConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: Transformer,
    final_layer_norm: LayerNorm,
    head: Linear,
}

impl SiglipTextTransformer {
    /// `w` points at `text_model`.
    pub fn load(w: &Weights, cfg: &SiglipTextConfig) -> Result<Self> {
        let c = cfg.transformer.width;
        let e = w.pp("embeddings");
        Ok(Self {
            cfg: cfg.clone(),
            token_embedding: e.get("token_embedding.weight", &[cfg.vocab_size, c])?,
            position_embedding: e.get("position_embedding.weight", &[cfg.context_length, c])?,
            encoder: Transformer::load_transformers(&w.pp("encoder"), &cfg.transformer)?,
            final_layer_norm: LayerNorm::load(
                &w.pp("final_layer_norm"),
                c,
                cfg.transformer.layer_norm_eps,
            )?,
            head: Linear::load(&w.pp("head"), c, cfg.projection_size, true)?,
        })
    }

    pub fn config(&self) -> &SiglipTextConfig {
        &self.cfg
    }

    /// `ids`: equal-length rows (at most `context_length`). `mask`: transformers'
    /// `attention_mask` for right-padded rows (1s, then 0s for padding), or None
    /// to attend to every token as `get_text_features(input_ids=…)` does.
    ///
    /// Returns (batch, projection_size): `head(final_layer_norm(x)[:, -1])`. The
    /// reference pools the LAST position whatever token sits there (with
    /// `max_length` padding, a pad), so the padding length changes the result;
    /// the mask only hides padding keys, the pad queries still run.
    pub fn forward(&self, ids: &[Vec<u32>], mask: Option<&[Vec<u32>]>) -> Result<Tensor> {
        let b = ids.len();
        if b == 0 {
            return Ok(Tensor::zeros(
                (0, self.cfg.projection_size),
                candle_core::DType::F32,
                self.token_embedding.device(),
            )?);
        }
        let t = ids[0].len();
        let keys = self.check(ids, mask)?;
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let c = self.cfg.transformer.width;
        let x = gather_rows(&self.token_embedding, &flat)?
            .reshape((b, t, c))?
            .broadcast_add(&self.position_embedding.narrow(0, 0, t)?.unsqueeze(0)?)?;
        // The last token (a padding position where there is padding) is
        // pooled; LayerNorm acts per token: normalising only it is exact.
        let pooled = vec![t - 1; b];
        let last = match &keys {
            Some(keys) => self.encoder.forward_key_padded_pooled(&x, keys, &pooled)?,
            None => self.encoder.forward_pooled(&x, None, &pooled)?,
        };
        Ok(self.head.forward(&self.final_layer_norm.forward(&last)?)?)
    }

    /// Checks `ids` and `mask` as [`SiglipTextTransformer::forward`] takes them
    /// (errors describe the whole batch); the real key count per row where
    /// there is a mask.
    pub fn check(&self, ids: &[Vec<u32>], mask: Option<&[Vec<u32>]>) -> Result<Option<Vec<usize>>> {
        let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
        let ctx = self.cfg.context_length;
        if t == 0 || t > ctx || ids.iter().any(|r| r.len() != t) {
            return Err(ModelError::Input(format!(
                "token rows must share one length between 1 and {ctx}, got lengths {:?}",
                ids.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        if let Some(&bad) = ids
            .iter()
            .flatten()
            .find(|&&i| i as usize >= self.cfg.vocab_size)
        {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        mask.map(|m| real_key_counts(m, b, t)).transpose()
    }
}

/// The number of real tokens per row of a right-padded attention mask.
fn real_key_counts(mask: &[Vec<u32>], b: usize, t: usize) -> Result<Vec<usize>> {
    if mask.len() != b || mask.iter().any(|r| r.len() != t) {
        return Err(ModelError::Input(format!(
            "the attention mask must have the ids' shape ({b} × {t})"
        )));
    }
    mask.iter()
        .enumerate()
        .map(|(i, row)| {
            let real = row.iter().take_while(|&&m| m == 1).count();
            if real == 0 || row[real..].iter().any(|&m| m != 0) {
                return Err(ModelError::Input(format!(
                    "attention mask row {i} must be 1s followed by 0s (right padding) \
                     with at least one 1"
                )));
            }
            Ok(real)
        })
        .collect()
}
