//! Text generation for every generative family: greedy and beam search over a
//! [`Decoder`], token for token what transformers' `GenerationMixin.generate`
//! returns with `do_sample=False` (transformers 5.24, `_sample` and
//! `_beam_search`).
//!
//! What is reproduced, and how:
//! - lengths: `max_new_tokens` wins over `max_length`; with neither set, 20 new
//!   tokens (capped by [`Decoder::max_positions`]); `min_new_tokens` wins over
//!   `min_length`; a prompt as long as the limit is refused, as transformers does.
//! - EOS: one id or several; without any, every sequence runs to the limit.
//! - processors in transformers' order (repetition penalty, no-repeat n-grams,
//!   minimum length, minimum new tokens), on the raw logits for greedy search
//!   and on the log-softmax for beam search.
//! - float arithmetic: f32 throughout as torch does it, Python-float constants
//!   rounded to f32 where torch rounds them, and the length penalty's power taken
//!   in double precision, as Python takes it.
//! - ties: greedy takes the first maximum (`torch.argmax`); beam search orders
//!   equal scores as `torch.topk` on the CPU does (see [`topk`]).
//! - beam search: `_beam_search`'s candidate count (`max(2, 1 + #EOS) * beams`),
//!   the `-1e9` masks, the length penalty `score / new_tokens ^ length_penalty`,
//!   and the early-stopping rules for `true`, `false` and `"never"`.
//!
//! The one difference: torch sums the softmax in f32 with its own vectorised
//! `exp`, seer in f64. The per-row shift can differ in the last bit, which only
//! matters when two beams' scores agree to about 1e-7.
//!
//! Output: per prompt, the sequence `generate` returns for that prompt run
//! alone: the prompt and the generated tokens, up to and including the EOS
//! token when one ended it. transformers' batched output pads sequences that
//! end early; the padding is not part of any sequence here (it is defined by
//! the generated length, never by token values, so a pad id that is also a
//! real token cannot cut a sequence short).

mod beam;
mod config;
mod greedy;
mod processors;
pub mod topk;

pub use config::{EarlyStopping, GenerationConfig};

use crate::error::{ModelError, Result};
use processors::Processors;

/// A model that extends token sequences: rows are sequences being generated.
pub trait Decoder {
    /// Per-row cache (KV cache etc.), opaque to the search.
    type State;

    fn vocab_size(&self) -> usize;

    /// The longest sequence the model takes (transformers'
    /// `max_position_embeddings`): only caps the default length limit, as in
    /// transformers. `None`: no cap.
    fn max_positions(&self) -> Option<usize> {
        None
    }

    /// Runs the prompts (one per row; all rows have the same length) and
    /// returns the state and the logits of the last position, `rows ×
    /// vocab_size` row-major. `items[r]` is the input (e.g. image) row r belongs
    /// to. [`generate`] starts one row per input (`items[r] == r`); beam search
    /// then grows each input to `num_beams` rows through
    /// [`select_rows`](Self::select_rows).
    fn start(&self, prompts: &[Vec<u32>], items: &[usize]) -> Result<(Self::State, Vec<f32>)>;

    /// Appends `tokens[r]` to row r and returns the next logits (`rows × vocab_size`).
    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<f32>>;

    /// Keeps rows: new row i is old row `rows[i]` (rows may repeat or be
    /// dropped). Beam search reorders and copies beams with it; both searches
    /// drop the rows of inputs that are done.
    fn select_rows(&self, state: &mut Self::State, rows: &[usize]) -> Result<()>;
}

/// Per input, the full sequence `generate` returns for that input alone:
/// prompt + generated tokens, ending at the EOS token when one was produced
/// (no padding).
pub fn generate<D: Decoder>(
    decoder: &D,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    let mut plan = Plan::new(decoder, prompts, config)?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if config.num_beams == 1 {
        greedy::run(decoder, prompts, &mut plan)
    } else {
        beam::run(decoder, prompts, &mut plan)
    }
}

/// The settings resolved against the prompts: transformers'
/// `_prepare_generated_length`, `_prepare_special_tokens` and
/// `_get_logits_processor`.
pub(crate) struct Plan {
    vocab: usize,
    prompt_len: usize,
    /// Total length limit, prompt included; above `prompt_len`.
    max_length: usize,
    eos: Vec<u32>,
    processors: Processors,
    num_beams: usize,
    length_penalty: f64,
    early_stopping: EarlyStopping,
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Input(format!("generate: {}", message.into()))
}

impl Plan {
    fn new<D: Decoder>(decoder: &D, prompts: &[Vec<u32>], c: &GenerationConfig) -> Result<Self> {
        if c.do_sample {
            return Err(ModelError::Unsupported(
                "sampling (do_sample=true) is not supported: seer generates with greedy or \
                 beam search (do_sample=false)"
                    .into(),
            ));
        }
        if !c.unsupported.is_empty() {
            return Err(ModelError::Unsupported(format!(
                "the generation config sets {}, which seer's generate does not implement",
                c.unsupported.join(", ")
            )));
        }
        if c.num_beams == 0 {
            return Err(invalid("num_beams must be at least 1"));
        }
        if c.num_return_sequences != 1 {
            return Err(ModelError::Unsupported(format!(
                "num_return_sequences={}: generate returns one sequence per prompt",
                c.num_return_sequences
            )));
        }
        if c.max_new_tokens == Some(0) {
            return Err(invalid("max_new_tokens must be greater than 0"));
        }
        if !(c.repetition_penalty.is_finite() && c.repetition_penalty > 0.0) {
            return Err(invalid(format!(
                "repetition_penalty has to be a strictly positive number, not {}",
                c.repetition_penalty
            )));
        }
        if !c.length_penalty.is_finite() {
            return Err(invalid(format!(
                "length_penalty must be finite, not {}",
                c.length_penalty
            )));
        }
        let vocab = decoder.vocab_size();
        if vocab == 0 {
            return Err(invalid("the decoder has an empty vocabulary"));
        }
        let prompt_len = prompts.first().map_or(0, Vec::len);
        if prompts.iter().any(|p| p.len() != prompt_len) {
            let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
            return Err(invalid(format!(
                "prompts must all have the same length, got lengths {lengths:?}"
            )));
        }
        if !prompts.is_empty() && prompt_len == 0 {
            return Err(invalid(
                "prompts must not be empty (start them with the model's BOS token)",
            ));
        }
        let max_length = match (c.max_new_tokens, c.max_length) {
            (Some(new), _) => prompt_len.saturating_add(new),
            (None, Some(total)) => total,
            // transformers: "by default let's always generate 20 new tokens".
            (None, None) => {
                let total = prompt_len.saturating_add(20);
                decoder.max_positions().map_or(total, |p| total.min(p))
            }
        };
        if !prompts.is_empty() && prompt_len >= max_length {
            return Err(invalid(format!(
                "the prompt length is {prompt_len}, but max_length is {max_length}: \
                 increase max_length or set max_new_tokens"
            )));
        }
        let min_length = match c.min_new_tokens {
            Some(new) => prompt_len.saturating_add(new),
            None => c.min_length,
        };
        let eos = c.eos_token_ids.clone();
        Ok(Self {
            vocab,
            prompt_len,
            max_length,
            processors: Processors::new(
                c.repetition_penalty,
                c.no_repeat_ngram_size,
                min_length,
                &eos,
            ),
            eos,
            num_beams: c.num_beams,
            length_penalty: c.length_penalty,
            early_stopping: c.early_stopping,
        })
    }

    fn is_eos(&self, token: u32) -> bool {
        self.eos.contains(&token)
    }
}

/// The decoder's logits must be `rows × vocab`.
fn check_logits(logits: &[f32], rows: usize, vocab: usize) -> Result<()> {
    let expected = rows.checked_mul(vocab);
    if expected != Some(logits.len()) {
        return Err(invalid(format!(
            "the decoder returned {} logits for {rows} rows of vocabulary {vocab}",
            logits.len(),
        )));
    }
    Ok(())
}
