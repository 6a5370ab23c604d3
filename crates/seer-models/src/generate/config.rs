//! transformers' `GenerationConfig` as `generation_config.json` holds it: the
//! fields greedy and beam search read. Absent or `null` fields take the values
//! transformers falls back to (`GenerationConfig._get_default_generation_params`);
//! unknown fields are ignored, and so are the sampling knobs (`temperature`,
//! `top_k`, …), which greedy and beam search never read.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// When beam search stops: transformers' `early_stopping` (`true`, `false` or
/// `"never"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyStopping {
    /// As soon as `num_beams` hypotheses are finished.
    True,
    /// When no running beam can beat the worst finished hypothesis, judged at
    /// the current length (transformers' default).
    #[default]
    False,
    /// Like `False`, but a positive length penalty is judged at `max_length`:
    /// the canonical beam search.
    Never,
}

/// Generation settings. `Default` is transformers' `GenerationConfig()`.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// Total length limit, prompt included. `None` (nothing set it): 20 new
    /// tokens, capped by [`super::Decoder::max_positions`], as transformers does.
    pub max_length: Option<usize>,
    /// New tokens after the prompt; wins over `max_length` when both are set.
    pub max_new_tokens: Option<usize>,
    /// EOS is banned while the sequence (prompt included) is shorter.
    pub min_length: usize,
    /// EOS is banned before this many new tokens; wins over `min_length`.
    pub min_new_tokens: Option<usize>,
    /// 1: greedy search; more: beam search.
    pub num_beams: usize,
    /// Finished beam hypotheses score `sum of log-probs / new_tokens ^ length_penalty`.
    /// A double, as Python's float: the power is taken in double precision.
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    /// 1.0: off. Applied in f32 as torch does (the double rounded to f32).
    pub repetition_penalty: f64,
    /// 0: off.
    pub no_repeat_ngram_size: usize,
    /// Not read by [`super::generate`] (prompts are explicit); kept for callers
    /// that build prompts.
    pub bos_token_id: Option<u32>,
    /// Empty: no EOS, every sequence runs to the length limit.
    pub eos_token_ids: Vec<u32>,
    /// Only pads transformers' batched output, which [`super::generate`] does
    /// not return: it does not change any result.
    pub pad_token_id: Option<u32>,
    /// Sampling is not implemented: [`super::generate`] refuses `true`.
    pub do_sample: bool,
    /// [`super::generate`] returns one sequence per prompt: it refuses more.
    pub num_return_sequences: usize,
    /// Fields of the file set to values that change what transformers generates
    /// and that seer does not implement (`forced_eos_token_id`, `bad_words_ids`,
    /// …). [`super::generate`] refuses a config that names any.
    pub unsupported: Vec<String>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_length: None,
            max_new_tokens: None,
            min_length: 0,
            min_new_tokens: None,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            do_sample: false,
            num_return_sequences: 1,
            unsupported: Vec::new(),
        }
    }
}

/// Whether a field's value asks for something.
type IsSet = fn(&Value) -> bool;

/// Fields whose non-default values add logits processors or decoding modes
/// seer does not run, each with the test for "set".
const UNSUPPORTED: &[(&str, IsSet)] = &[
    ("forced_bos_token_id", is_set),
    ("forced_eos_token_id", is_set),
    ("bad_words_ids", is_set),
    ("suppress_tokens", is_set),
    ("begin_suppress_tokens", is_set),
    ("sequence_bias", is_set),
    ("exponential_decay_length_penalty", is_set),
    ("constraints", is_set),
    ("force_words_ids", is_set),
    ("stop_strings", is_set),
    ("max_time", is_set),
    ("watermarking_config", is_set),
    ("penalty_alpha", is_set),
    ("prompt_lookup_num_tokens", is_set),
    ("guidance_scale", |v| is_set(v) && v.as_f64() != Some(1.0)),
    ("encoder_repetition_penalty", |v| {
        is_set(v) && v.as_f64() != Some(1.0)
    }),
    ("encoder_no_repeat_ngram_size", |v| {
        is_set(v) && v.as_u64() != Some(0)
    }),
    ("num_beam_groups", |v| is_set(v) && v.as_u64() != Some(1)),
    ("diversity_penalty", |v| {
        is_set(v) && v.as_f64() != Some(0.0)
    }),
    ("renormalize_logits", is_true),
    ("remove_invalid_values", is_true),
    ("low_memory", is_true),
    ("token_healing", is_true),
];

/// Not null, and not an empty list (transformers treats `[]` as nothing to do).
fn is_set(v: &Value) -> bool {
    !(v.is_null() || v.as_array().is_some_and(Vec::is_empty))
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

impl GenerationConfig {
    /// Reads `generation_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            weights: false,
            source: e,
        })?;
        parse(&text, path)
    }

    /// Parses the text of a `generation_config.json`; errors name the file as
    /// `generation_config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        parse(text, &PathBuf::from("generation_config.json"))
    }
}

fn parse(text: &str, path: &Path) -> Result<GenerationConfig> {
    let error = |message: String| ModelError::Config {
        path: path.to_path_buf(),
        message,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| error(format!("invalid JSON: {e}")))?;
    let Some(fields) = value.as_object() else {
        return Err(error(
            "not a generation config: expected a JSON object".into(),
        ));
    };
    let f = Fields(fields);
    let d = GenerationConfig::default();
    let config = GenerationConfig {
        max_length: f.count("max_length").map_err(error)?,
        max_new_tokens: f.count("max_new_tokens").map_err(error)?,
        min_length: f
            .count("min_length")
            .map_err(error)?
            .unwrap_or(d.min_length),
        min_new_tokens: f.count("min_new_tokens").map_err(error)?,
        num_beams: f.count("num_beams").map_err(error)?.unwrap_or(d.num_beams),
        length_penalty: f
            .float("length_penalty")
            .map_err(error)?
            .unwrap_or(d.length_penalty),
        early_stopping: f
            .early_stopping()
            .map_err(error)?
            .unwrap_or(d.early_stopping),
        repetition_penalty: f
            .float("repetition_penalty")
            .map_err(error)?
            .unwrap_or(d.repetition_penalty),
        no_repeat_ngram_size: f
            .count("no_repeat_ngram_size")
            .map_err(error)?
            .unwrap_or(d.no_repeat_ngram_size),
        bos_token_id: f.token("bos_token_id").map_err(error)?,
        eos_token_ids: f.tokens("eos_token_id").map_err(error)?,
        pad_token_id: f.token("pad_token_id").map_err(error)?,
        do_sample: f.flag("do_sample").map_err(error)?.unwrap_or(d.do_sample),
        num_return_sequences: f
            .count("num_return_sequences")
            .map_err(error)?
            .unwrap_or(d.num_return_sequences),
        unsupported: UNSUPPORTED
            .iter()
            .filter(|(key, set)| fields.get(*key).is_some_and(set))
            .map(|(key, _)| key.to_string())
            .collect(),
    };
    Ok(config)
}

/// Typed reads of the object's fields; `Ok(None)` for absent or `null`.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn count(&self, key: &str) -> std::result::Result<Option<usize>, String> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| format!("{key}: expected a non-negative integer, found {v}"))
            })
            .transpose()
    }

    fn float(&self, key: &str) -> std::result::Result<Option<f64>, String> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| format!("{key}: expected a number, found {v}"))
            })
            .transpose()
    }

    fn flag(&self, key: &str) -> std::result::Result<Option<bool>, String> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| format!("{key}: expected true or false, found {v}"))
            })
            .transpose()
    }

    fn token(&self, key: &str) -> std::result::Result<Option<u32>, String> {
        self.get(key).map(|v| token_id(key, v)).transpose()
    }

    /// An id or a list of ids (`eos_token_id`).
    fn tokens(&self, key: &str) -> std::result::Result<Vec<u32>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(ids)) => ids.iter().map(|v| token_id(key, v)).collect(),
            Some(v) => Ok(vec![token_id(key, v)?]),
        }
    }

    fn early_stopping(&self) -> std::result::Result<Option<EarlyStopping>, String> {
        self.get("early_stopping")
            .map(|v| match v {
                Value::Bool(true) => Ok(EarlyStopping::True),
                Value::Bool(false) => Ok(EarlyStopping::False),
                Value::String(s) if s == "never" => Ok(EarlyStopping::Never),
                other => Err(format!(
                    "early_stopping: expected true, false or \"never\", found {other}"
                )),
            })
            .transpose()
    }
}

fn token_id(key: &str, v: &Value) -> std::result::Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{key}: expected token ids (non-negative integers), found {v}"))
}
