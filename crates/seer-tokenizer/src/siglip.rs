//! SigLIP and SigLIP 2 tokenizers: a SentencePiece pipeline read from a
//! `tokenizer.json` (through the `tokenizers` crate), plus the rules the
//! Python classes add on top of the file, so ids equal the reference's.
//!
//! * SigLIP (`SiglipTokenizer`): the file must carry the whole pipeline
//!   (canonicalisation, NFKC charsmap, Unigram, `$A </s>`), as the fixture's
//!   `tokenizer.fast-equivalent.json` does. Padding uses `</s>` (id 1).
//! * SigLIP 2 (`Siglip2Tokenizer` in transformers 5): the hub's Gemma
//!   `tokenizer.json` **without** lowercasing; transformers puts `Lowercase`
//!   in front of the file's normalizer, and so does this module. Padding uses
//!   `<pad>` (id 0), on the right.
//! * SigLIP 2 FixRes (`model_type: siglip` with the same Gemma files):
//!   transformers loads the class the files name, `GemmaTokenizer`, which does
//!   not lowercase; otherwise as SigLIP 2.
//!
//! Both truncate to the maximum length with the end-of-sequence id kept last
//! (the template's `</s>`/`<eos>` is reserved before truncating).

use std::path::{Path, PathBuf};

use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Sequence};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use serde_json::json;

use crate::spm::{base64, check_precompiled_charsmap, SpmModel, PIECE_UNKNOWN};
use crate::TokenizerError;

/// Python's `string.punctuation` as a character class: what
/// `SiglipTokenizer.canonicalize_text` deletes (ASCII only).
const ASCII_PUNCTUATION: &str = r#"[!"\#\$%\&'\(\)\*\+,\-\./:;<=>\?@\[\\\]\^_`\{\|\}\~]"#;

/// Which Python tokenizer class to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiglipFlavour {
    /// `SiglipTokenizer` (SentencePiece Unigram; pad = `</s>`).
    Siglip,
    /// transformers 5's `Siglip2Tokenizer` (Gemma BPE, lowercased; pad = `<pad>`).
    Siglip2,
    /// `GemmaTokenizer` as SigLIP 2 FixRes checkpoints load it: the Gemma file
    /// as written (no lowercasing); pad = `<pad>`.
    Gemma,
}

/// How a batch is padded (right side, with the flavour's pad token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiglipPadding {
    /// `padding="max_length"`: every row has the maximum length. This is how
    /// SigLIP was trained and what the model card prescribes; the text tower
    /// pools the last position, so other paddings give other embeddings.
    MaxLength,
    /// `padding="longest"`: rows padded to the batch's longest.
    Longest,
}

/// Token ids and `attention_mask` (1 real, 0 padding), one row per text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<u32>>,
}

pub struct SiglipTokenizer {
    inner: Tokenizer,
    flavour: SiglipFlavour,
    max_length: usize,
    pad_id: u32,
    path: PathBuf,
}

fn format_error(path: &Path, message: String) -> TokenizerError {
    TokenizerError::Format {
        path: path.to_path_buf(),
        message,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl SiglipTokenizer {
    /// Reads `path` (a `tokenizer.json`). `max_length`: the text tower's
    /// `max_position_embeddings` (64 for every released SigLIP).
    pub fn from_file(
        path: &Path,
        flavour: SiglipFlavour,
        max_length: usize,
    ) -> Result<Self, TokenizerError> {
        let format = |message: String| format_error(path, message);
        let bytes = read(path)?;
        crate::checks::check_tokenizer_json(&bytes).map_err(format)?;
        let inner = Tokenizer::from_bytes(&bytes)
            .map_err(|e| format(format!("not a tokenizers tokenizer.json: {e}")))?;
        Self::configure(inner, flavour, max_length, path)
    }

    /// SigLIP from its `spiece.model` alone, as the hub checkpoints ship it
    /// (transformers has no SigLIP slow→fast converter). Builds the pipeline
    /// equivalent to the slow `SiglipTokenizer`: `canonicalize_text`
    /// (lowercase, ASCII punctuation deleted, whitespace collapsed, stripped),
    /// the model's NFKC charsmap, the dummy-prefix `▁`, Unigram, `$A </s>`.
    pub fn from_spiece_model(path: &Path, max_length: usize) -> Result<Self, TokenizerError> {
        let format = |message: String| format_error(path, message);
        let bytes = read(path)?;
        let spm = SpmModel::parse(&bytes)
            .map_err(|e| format(format!("not a SentencePiece model: {e}")))?;
        if spm.model_type != 1 {
            return Err(format(format!(
                "SentencePiece model type {} (SigLIP's spiece.model is unigram, type 1)",
                spm.model_type
            )));
        }
        if !spm.add_dummy_prefix || !spm.remove_extra_whitespaces {
            return Err(format(
                "normaliser without dummy prefix or whitespace removal (not SigLIP's)".into(),
            ));
        }
        let eos = spm
            .pieces
            .iter()
            .position(|(p, _, _)| p == "</s>")
            .ok_or_else(|| format("the model has no </s> piece".into()))?;
        let unk = spm
            .pieces
            .iter()
            .position(|&(_, _, kind)| kind == PIECE_UNKNOWN)
            .ok_or_else(|| format("the model has no unknown piece".into()))?;
        let replace = |pattern: &str, content: &str| json!({"type": "Replace", "pattern": {"Regex": pattern}, "content": content});
        let mut normalizers = vec![
            json!({"type": "Lowercase"}),
            replace(ASCII_PUNCTUATION, ""),
            replace(r"\s+", " "),
            json!({"type": "Strip", "strip_left": true, "strip_right": true}),
        ];
        if !spm.precompiled_charsmap.is_empty() {
            check_precompiled_charsmap(&spm.precompiled_charsmap)
                .map_err(|e| format(format!("not a SentencePiece model: {e}")))?;
            normalizers.push(json!({
                "type": "Precompiled",
                "precompiled_charsmap": base64(&spm.precompiled_charsmap),
            }));
        }
        // The charsmap can turn characters into spaces; SentencePiece then
        // removes the extra whitespace.
        normalizers.push(replace(" {2,}", " "));
        let special = |id: usize| {
            json!({"id": id, "content": spm.pieces[id].0, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        };
        let eos_piece = &spm.pieces[eos].0;
        let a = json!({"Sequence": {"id": "A", "type_id": 0}});
        let b = json!({"Sequence": {"id": "B", "type_id": 0}});
        let end = json!({"SpecialToken": {"id": eos_piece, "type_id": 0}});
        let vocab: Vec<_> = spm
            .pieces
            .iter()
            .map(|(p, score, _)| json!([p, score]))
            .collect();
        let tokenizer = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [special(eos), special(unk)],
            "normalizer": {"type": "Sequence", "normalizers": normalizers},
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}",
                              "prepend_scheme": "always", "split": true},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [a, end],
                "pair": [a, end, b, end],
                "special_tokens": {eos_piece: {"id": eos_piece, "ids": [eos], "tokens": [eos_piece]}},
            },
            "decoder": null,
            "model": {"type": "Unigram", "unk_id": unk, "byte_fallback": false, "vocab": vocab},
        });
        let inner = Tokenizer::from_bytes(tokenizer.to_string().as_bytes())
            .map_err(|e| format(format!("cannot build the tokenizer: {e}")))?;
        Self::configure(inner, SiglipFlavour::Siglip, max_length, path)
    }

    /// The flavour's rules on top of a loaded pipeline.
    fn configure(
        mut inner: Tokenizer,
        flavour: SiglipFlavour,
        max_length: usize,
        path: &Path,
    ) -> Result<Self, TokenizerError> {
        let format = |message: String| format_error(path, message);
        if flavour == SiglipFlavour::Siglip2 {
            // transformers 5 builds Siglip2Tokenizer for model_type siglip2,
            // which lowercases before the file's own normalizer.
            let mut steps = vec![NormalizerWrapper::Lowercase(Lowercase)];
            steps.extend(inner.get_normalizer().cloned());
            inner
                .with_normalizer(Some(Sequence::new(steps)))
                .map_err(|e| format(e.to_string()))?;
        }
        let (pad_token, eos_token) = match flavour {
            SiglipFlavour::Siglip => ("</s>", "</s>"),
            SiglipFlavour::Siglip2 | SiglipFlavour::Gemma => ("<pad>", "<eos>"),
        };
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| format(format!("the vocabulary has no {token} token")))
        };
        let pad_id = id(pad_token)?;
        let eos_id = id(eos_token)?;
        // The end-of-sequence token must come from the template, or truncation
        // could cut it off.
        let probe = inner
            .encode("a", true)
            .map_err(|e| format(format!("cannot encode: {e}")))?;
        if probe.get_ids().last() != Some(&eos_id) {
            return Err(format(format!(
                "the post-processor does not append {eos_token} (expected the template \"$A {eos_token}\")"
            )));
        }
        if max_length < 2 {
            return Err(format(format!("max_length {max_length} is too short")));
        }
        // The crate reserves the template's tokens before truncating, so the
        // end-of-sequence id stays last.
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| format(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            flavour,
            max_length,
            pad_id,
            path: path.to_path_buf(),
        })
    }

    pub fn flavour(&self) -> SiglipFlavour {
        self.flavour
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Ids without padding, truncated with the end-of-sequence id kept last.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut batch = self.encode_batch(&[text], SiglipPadding::Longest)?;
        Ok(batch.ids.pop().unwrap_or_default())
    }

    /// Ids and attention masks, padded on the right as `padding` says.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        padding: SiglipPadding,
    ) -> Result<Encoded, TokenizerError> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| self.error(e))?;
        let width = match padding {
            SiglipPadding::MaxLength => self.max_length,
            SiglipPadding::Longest => encodings.iter().map(|e| e.len()).max().unwrap_or(0),
        };
        let mut out = Encoded {
            ids: Vec::with_capacity(texts.len()),
            mask: Vec::with_capacity(texts.len()),
        };
        for e in &encodings {
            let mut ids = e.get_ids().to_vec();
            let mut mask = vec![1u32; ids.len()];
            ids.resize(width, self.pad_id);
            mask.resize(width, 0);
            out.ids.push(ids);
            out.mask.push(mask);
        }
        Ok(out)
    }

    fn error(&self, e: impl std::fmt::Display) -> TokenizerError {
        format_error(&self.path, e.to_string())
    }
}
