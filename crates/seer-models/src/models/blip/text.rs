//! BLIP's text model (`BlipTextModel`, BERT with post-norm layers) and its
//! language-model head (`BlipTextLMHeadModel`).
//!
//! One stack serves three roles: the captioning and answer decoder (causal
//! self-attention with a KV cache, cross-attention to the image or question),
//! the question encoder of VQA and the text encoder of image–text matching
//! (bidirectional, cross-attention to the image), and the plain text encoder of
//! the contrastive head (no cross-attention).
//!
//! The matmuls go through [`Linear`] (seer's packed CPU kernels); attention is
//! written here over plain rows because decoding attends one new token at a
//! time to a growing cache, and each sequence's keys live in its own buffers
//! (beam search reorders them every step).

use candle_core::{Device, Module, Tensor};
use rayon::prelude::*;
use seer_kernels::ops::{attend_cached, CachedHead};

use super::config::BlipTextConfig;
use crate::error::{ModelError, Result};
use crate::io::weights::Weights;
use crate::nn::config::Activation;
use crate::nn::layers::{LayerNorm, Linear};

/// Attention's output projection plus the residual, then LayerNorm
/// (`BlipTextSelfOutput`).
#[derive(Clone, Debug)]
struct PostNormOutput {
    dense: Linear,
    norm: LayerNorm,
}

impl PostNormOutput {
    fn load(w: &Weights, in_dim: usize, out_dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            dense: Linear::load(&w.pp("dense"), in_dim, out_dim, true)?,
            norm: LayerNorm::load(&w.pp("LayerNorm"), out_dim, eps)?,
        })
    }

    /// `LayerNorm(dense(x) + residual)`.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        Ok(self.norm.forward(&self.dense.forward_plus(x, residual)?)?)
    }
}

/// Cross-attention: queries from the text, keys and values from what it reads.
#[derive(Clone, Debug)]
struct CrossAttention {
    query: Linear,
    /// key and value stacked: one matmul over the encoder states.
    key_value: Linear,
    output: PostNormOutput,
}

#[derive(Clone, Debug)]
struct TextLayer {
    /// query, key and value of the self-attention stacked.
    qkv: Linear,
    attention_output: PostNormOutput,
    cross: Option<CrossAttention>,
    intermediate: Linear,
    output: PostNormOutput,
}

/// The keys and values one layer attends to for one sequence: `len` rows of
/// `width` (all heads side by side, head-major within a row).
#[derive(Clone, Debug, Default)]
pub struct KeyValues {
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl KeyValues {
    fn len(&self, width: usize) -> usize {
        self.keys.len() / width
    }
}

/// What cross-attention reads for one input (an image, or a VQA question):
/// each layer's keys and values, computed once and shared by every row
/// (beam) generated for that input.
#[derive(Clone, Debug)]
pub struct EncoderContext {
    layers: Vec<KeyValues>,
}

/// One sequence being run: which input it reads and its self-attention cache.
#[derive(Clone, Debug)]
pub struct SequenceCache {
    /// Index of its [`EncoderContext`].
    pub item: usize,
    /// Per layer, the keys and values of every token so far.
    layers: Vec<KeyValues>,
}

impl SequenceCache {
    /// Tokens already in the cache.
    pub fn len(&self, width: usize) -> usize {
        self.layers.first().map_or(0, |l| l.len(width))
    }

    pub fn is_empty(&self) -> bool {
        self.layers.first().is_none_or(|l| l.keys.is_empty())
    }
}

/// How the self-attention of a run sees its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Each token sees itself and what came before (the decoder).
    Causal,
    /// Every token sees every token (the encoders).
    Bidirectional,
}

#[derive(Clone, Debug)]
pub struct BlipTextModel {
    cfg: BlipTextConfig,
    /// (vocab, hidden) and (positions, hidden), for lookups.
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<TextLayer>,
    device: Device,
}

impl BlipTextModel {
    /// `w` points at the BERT module (`text_encoder`, or `text_decoder.bert`).
    pub fn load(w: &Weights, cfg: &BlipTextConfig) -> Result<Self> {
        let (c, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let e = w.pp("embeddings");
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = w.pp(format!("encoder.layer.{i}"));
                let stacked = |w: &Weights, names: &[&str], in_dim: usize| -> Result<Linear> {
                    let (ws, bs): (Vec<Tensor>, Vec<Tensor>) = names
                        .iter()
                        .map(|n| {
                            Ok((
                                w.get(&format!("{n}.weight"), &[c, in_dim])?,
                                w.get(&format!("{n}.bias"), &[c])?,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()?
                        .into_iter()
                        .unzip();
                    Linear::new(w, Tensor::cat(&ws, 0)?, Some(Tensor::cat(&bs, 0)?))
                };
                let s = l.pp("attention.self");
                let cross = match cfg.cross_attention {
                    true => {
                        let x = l.pp("crossattention.self");
                        Some(CrossAttention {
                            query: Linear::load(&x.pp("query"), c, c, true)?,
                            key_value: stacked(&x, &["key", "value"], cfg.encoder_hidden_size)?,
                            output: PostNormOutput::load(
                                &l.pp("crossattention.output"),
                                c,
                                c,
                                eps,
                            )?,
                        })
                    }
                    false => None,
                };
                Ok(TextLayer {
                    qkv: stacked(&s, &["query", "key", "value"], c)?,
                    attention_output: PostNormOutput::load(&l.pp("attention.output"), c, c, eps)?,
                    cross,
                    intermediate: Linear::load(
                        &l.pp("intermediate.dense"),
                        c,
                        cfg.intermediate_size,
                        true,
                    )?,
                    output: PostNormOutput::load(&l.pp("output"), cfg.intermediate_size, c, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            word_embeddings: e.get_vec("word_embeddings.weight", &[cfg.vocab_size, c])?,
            position_embeddings: e
                .get_vec("position_embeddings.weight", &[cfg.max_positions, c])?,
            embedding_norm: LayerNorm::load(&e.pp("LayerNorm"), c, eps)?,
            layers,
            device: w.device().clone(),
        })
    }

    pub fn config(&self) -> &BlipTextConfig {
        &self.cfg
    }

    /// Cross-attention keys and values of `states` (tokens, encoder width),
    /// what an input contributes to every later step.
    pub fn encoder_context(&self, states: &Tensor) -> Result<EncoderContext> {
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                let cross = layer.cross.as_ref().ok_or_else(|| {
                    ModelError::Unsupported("this BLIP text model has no cross-attention".into())
                })?;
                let kv = rows_of(&cross.key_value.forward(states)?)?;
                let c = self.cfg.hidden_size;
                let mut out = KeyValues {
                    keys: Vec::with_capacity(kv.len() / 2),
                    values: Vec::with_capacity(kv.len() / 2),
                };
                for row in kv.chunks_exact(2 * c) {
                    out.keys.extend_from_slice(&row[..c]);
                    out.values.extend_from_slice(&row[c..]);
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        Ok(EncoderContext { layers })
    }

    /// An empty cache for a sequence reading `contexts[item]`.
    pub fn new_sequence(&self, item: usize) -> SequenceCache {
        SequenceCache {
            item,
            layers: vec![KeyValues::default(); self.layers.len()],
        }
    }

    /// Bidirectional encoder over one text (`BlipTextModel(is_decoder=False)`):
    /// `ids` → `last_hidden_state` (tokens, hidden), cross-attending to
    /// `context` when given (ITM, VQA's question), else text alone (ITC).
    pub fn encode(&self, ids: &[u32], context: Option<&EncoderContext>) -> Result<Tensor> {
        let mut seq = [self.new_sequence(0)];
        let contexts = context.map(std::slice::from_ref);
        self.run(&[ids], &mut seq, contexts, Direction::Bidirectional)
    }

    /// Causal decoder step: appends `tokens[r]` to sequence `r` (its cache
    /// grows) and returns every new token's hidden state, sequence-major.
    pub fn decode(
        &self,
        tokens: &[&[u32]],
        sequences: &mut [SequenceCache],
        contexts: &[EncoderContext],
    ) -> Result<Tensor> {
        self.run(tokens, sequences, Some(contexts), Direction::Causal)
    }

    fn run(
        &self,
        tokens: &[&[u32]],
        sequences: &mut [SequenceCache],
        contexts: Option<&[EncoderContext]>,
        direction: Direction,
    ) -> Result<Tensor> {
        let c = self.cfg.hidden_size;
        if tokens.len() != sequences.len() {
            return Err(ModelError::Input(format!(
                "{} token lists for {} sequences",
                tokens.len(),
                sequences.len()
            )));
        }
        if let Some(ctx) = contexts {
            if let Some(s) = sequences.iter().find(|s| s.item >= ctx.len()) {
                return Err(ModelError::Input(format!(
                    "sequence reads input {} of {}",
                    s.item,
                    ctx.len()
                )));
            }
        }
        let pasts: Vec<usize> = sequences.iter().map(|s| s.len(c)).collect();
        let mut x = self.embed(tokens, &pasts)?;
        for (l, layer) in self.layers.iter().enumerate() {
            // Self-attention over the cache plus the new tokens.
            let qkv = rows_of(&layer.qkv.forward(&x)?)?;
            let mut context = vec![0f32; qkv.len() / 3];
            let mut offset = 0;
            let mut jobs = Vec::with_capacity(sequences.len());
            for (seq, toks) in sequences.iter_mut().zip(tokens) {
                let n = toks.len();
                let cache = &mut seq.layers[l];
                for row in qkv[offset * 3 * c..(offset + n) * 3 * c].chunks_exact(3 * c) {
                    cache.keys.extend_from_slice(&row[c..2 * c]);
                    cache.values.extend_from_slice(&row[2 * c..]);
                }
                jobs.push((offset, n, &*cache));
                offset += n;
            }
            self.attend_all(&qkv, 3 * c, &jobs, &mut context, direction);
            let context = Tensor::from_vec(context, (offset, c), &self.device)?;
            let mut h = layer.attention_output.forward(&context, &x)?;

            if let (Some(cross), Some(ctx)) = (&layer.cross, contexts) {
                let q = rows_of(&cross.query.forward(&h)?)?;
                let mut context = vec![0f32; q.len()];
                let mut offset = 0;
                let jobs: Vec<_> = sequences
                    .iter()
                    .zip(tokens)
                    .map(|(seq, toks)| {
                        let job = (offset, toks.len(), &ctx[seq.item].layers[l]);
                        offset += toks.len();
                        job
                    })
                    .collect();
                self.attend_all(&q, c, &jobs, &mut context, Direction::Bidirectional);
                let context = Tensor::from_vec(context, (offset, c), &self.device)?;
                h = cross.output.forward(&context, &h)?;
            }
            let inner = layer
                .intermediate
                .forward_activated(&h, Some(self.cfg.activation))?;
            x = layer.output.forward(&inner, &h)?;
        }
        Ok(x)
    }

    /// Word plus position embeddings, then LayerNorm. Sequence `r`'s tokens
    /// take positions `pasts[r]..`.
    fn embed(&self, tokens: &[&[u32]], pasts: &[usize]) -> Result<Tensor> {
        let c = self.cfg.hidden_size;
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        let mut x = Vec::with_capacity(total * c);
        for (toks, &past) in tokens.iter().zip(pasts) {
            for (j, &id) in toks.iter().enumerate() {
                let pos = past + j;
                if id as usize >= self.cfg.vocab_size {
                    return Err(ModelError::Input(format!(
                        "token id {id} is outside the vocabulary ({})",
                        self.cfg.vocab_size
                    )));
                }
                if pos >= self.cfg.max_positions {
                    return Err(ModelError::Input(format!(
                        "text of {} tokens is longer than the model's {} positions",
                        pos + 1,
                        self.cfg.max_positions
                    )));
                }
                let word = &self.word_embeddings[id as usize * c..][..c];
                let position = &self.position_embeddings[pos * c..][..c];
                x.extend(word.iter().zip(position).map(|(w, p)| w + p));
            }
        }
        let x = Tensor::from_vec(x, (total, c), &self.device)?;
        Ok(self.embedding_norm.forward(&x)?)
    }

    /// Multi-head attention for every job `(first row, rows, keys/values)`:
    /// queries are the first `width` floats of each `stride`-long row of `q`,
    /// starting at row `first`; results go to the same rows of `out` (width `c`).
    /// Causal jobs' new rows are the last of their keys.
    fn attend_all(
        &self,
        q: &[f32],
        stride: usize,
        jobs: &[(usize, usize, &KeyValues)],
        out: &mut [f32],
        direction: Direction,
    ) {
        let c = self.cfg.hidden_size;
        let heads = self.cfg.heads;
        let d = c / heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Per output row: how many keys it sees, and whose.
        let mut rows: Vec<Option<(usize, &KeyValues)>> = vec![None; out.len() / c];
        for &(first, n, kv) in jobs {
            let keys = kv.len(c);
            for j in 0..n {
                let visible = match direction {
                    Direction::Causal => keys - n + j + 1,
                    Direction::Bidirectional => keys,
                };
                rows[first + j] = Some((visible, kv));
            }
        }
        // Every (row, head) is independent, and is `d` consecutive floats of
        // `out`: one task each, so even one decoded row uses every thread.
        out.par_chunks_mut(d)
            .enumerate()
            .for_each_init(Vec::new, |scores, (i, out)| {
                let (row, h) = (i / heads, i % heads);
                let Some((visible, kv)) = rows[row] else {
                    return;
                };
                let query = &q[row * stride + h * d..][..d];
                let cache = CachedHead {
                    keys: &kv.keys,
                    values: &kv.values,
                    stride: c,
                    offset: h * d,
                };
                attend_cached(query, cache, visible, scale, scores, out);
            });
    }
}

/// A (rows, cols) f32 tensor's data, row-major.
fn rows_of(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// `BlipTextOnlyMLMHead`: dense + activation + LayerNorm, then the vocabulary
/// projection, whose weight is the word-embedding table (tied).
#[derive(Clone, Debug)]
pub struct LmHead {
    transform: Linear,
    activation: Activation,
    norm: LayerNorm,
    decoder: Linear,
}

impl LmHead {
    /// `w` points at `cls.predictions`; `bert` is the model whose word
    /// embeddings the decoder weight is tied to when the checkpoint omits it.
    pub fn load(w: &Weights, bert: &Weights, cfg: &BlipTextConfig) -> Result<Self> {
        let (c, v) = (cfg.hidden_size, cfg.vocab_size);
        let weight = match w.contains("decoder.weight") {
            true => w.get("decoder.weight", &[v, c])?,
            false => bert.get("embeddings.word_embeddings.weight", &[v, c])?,
        };
        let bias = match w.contains("decoder.bias") {
            true => w.get("decoder.bias", &[v])?,
            false => w.get("bias", &[v])?,
        };
        Ok(Self {
            transform: Linear::load(&w.pp("transform.dense"), c, c, true)?,
            activation: cfg.activation,
            norm: LayerNorm::load(&w.pp("transform.LayerNorm"), c, cfg.layer_norm_eps)?,
            decoder: Linear::new(w, weight, Some(bias))?,
        })
    }

    /// Logits (rows, vocab) of hidden states (rows, hidden).
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = self
            .transform
            .forward_activated(hidden, Some(self.activation))?;
        Ok(self.decoder.forward(&self.norm.forward(&h)?)?)
    }
}

/// Keeps sequences: new `i` is old `rows[i]`. A row kept once is moved, a
/// repeated one cloned (beam search keeps a few beams several times).
pub fn select_sequences(sequences: &mut Vec<SequenceCache>, rows: &[usize]) -> Result<()> {
    if let Some(&bad) = rows.iter().find(|&&r| r >= sequences.len()) {
        return Err(ModelError::Input(format!(
            "row {bad} selected from {} sequences",
            sequences.len()
        )));
    }
    let mut uses = vec![0usize; sequences.len()];
    rows.iter().for_each(|&r| uses[r] += 1);
    let mut old: Vec<Option<SequenceCache>> = sequences.drain(..).map(Some).collect();
    for &r in rows {
        uses[r] -= 1;
        let seq = match uses[r] {
            0 => old[r].take().expect("taken only at its last use"),
            _ => old[r].clone().expect("not yet taken"),
        };
        sequences.push(seq);
    }
    Ok(())
}
