//! BERT's WordPiece tokenizer as BLIP uses it (`BertTokenizerFast`): the
//! checkpoint's `tokenizer.json` run by the `tokenizers` crate, the library
//! transformers' fast tokenizers are, so ids are the reference's by
//! construction. Folders with only `vocab.txt` get the pipeline transformers
//! builds from it (BERT normaliser, lowercasing unless `tokenizer_config.json`
//! says `do_lower_case: false`, BERT pre-tokeniser, `[CLS] $A [SEP]`).

use std::path::Path;

use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

use crate::TokenizerError;

/// Send + Sync; share it with `Arc`.
pub struct WordPieceTokenizer {
    inner: Tokenizer,
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

impl WordPieceTokenizer {
    /// The tokenizer of a model folder: `tokenizer.json`, else `vocab.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(&json);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            return Self::from_vocab(&vocab, lowercase_setting(dir)?);
        }
        Err(TokenizerError::Io {
            path: json,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no tokenizer.json or vocab.txt in the model folder",
            ),
        })
    }

    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = read(path)?;
        crate::checks::check_tokenizer_json(&bytes).map_err(|e| format_error(path, e))?;
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| format_error(path, format!("not a tokenizers tokenizer.json: {e}")))?;
        Ok(Self { inner })
    }

    /// BERT's pipeline over a `vocab.txt` (one piece per line, id = line).
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<Self, TokenizerError> {
        let format = |message: String| format_error(path, message);
        let text =
            String::from_utf8(read(path)?).map_err(|_| format("vocab.txt is not UTF-8".into()))?;
        let mut vocab = Map::new();
        for (id, piece) in text.lines().enumerate() {
            vocab.entry(piece.to_string()).or_insert(json!(id));
        }
        for needed in ["[CLS]", "[SEP]", "[UNK]"] {
            if !vocab.contains_key(needed) {
                return Err(format(format!("the vocabulary has no {needed}")));
            }
        }
        let special = |name: &str| json!({"id": name, "ids": [vocab[name]], "tokens": [name]});
        let added: Vec<Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter(|t| vocab.contains_key(**t))
            .map(|t| {
                json!({"id": vocab[*t], "content": t, "single_word": false, "lstrip": false,
                            "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let spec = json!({
            "version": "1.0",
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": true, "strip_accents": null,
                           "lowercase": lowercase},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                "special_tokens": {"[CLS]": special("[CLS]"), "[SEP]": special("[SEP]")}},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                      "vocab": vocab},
        });
        let inner = Tokenizer::from_bytes(spec.to_string().as_bytes())
            .map_err(|e| format(format!("cannot build a WordPiece tokenizer: {e}")))?;
        Ok(Self { inner })
    }

    /// Ids of `text` with the file's special tokens (`[CLS] … [SEP]`), as the
    /// processor gives them (no truncation, no padding).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// The id of a token in the vocabulary (e.g. `[SEP]`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// `do_lower_case` from `tokenizer_config.json` (BERT's default: true).
fn lowercase_setting(dir: &Path) -> Result<bool, TokenizerError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(true);
    }
    let v: Value =
        serde_json::from_slice(&read(&path)?).map_err(|source| TokenizerError::Json {
            path: path.clone(),
            source,
        })?;
    Ok(v.get("do_lower_case")
        .and_then(Value::as_bool)
        .unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vocab_file_gives_berts_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\npicture\nof\ndog\n##s\n.\n";
        std::fs::write(dir.path().join("vocab.txt"), vocab).unwrap();
        let t = WordPieceTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(
            t.encode("A picture of DOGS.").unwrap(),
            [2, 5, 6, 7, 8, 9, 10, 3]
        );
        assert_eq!(t.encode("a cat").unwrap(), [2, 5, 1, 3], "unknown word");
        assert_eq!(
            t.decode(&[2, 5, 6, 7, 8, 9, 10, 3]).unwrap(),
            "a picture of dogs."
        );
        assert_eq!(t.token_id("[SEP]"), Some(3));
    }

    #[test]
    fn missing_and_broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = WordPieceTokenizer::from_dir(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("vocab.txt"),
            "{err}"
        );
        std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
        let err = WordPieceTokenizer::from_dir(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        std::fs::write(dir.path().join("vocab.txt"), "a\nb\n").unwrap();
        let err = WordPieceTokenizer::from_dir(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("[CLS]") && err.contains("vocab.txt"), "{err}");
    }
}
