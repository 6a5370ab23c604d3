//! Reading BPE merges (and, where present, a vocabulary to check against)
//! from the three file formats CLIP tokenizers ship in.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::bpe::{Bpe, NUM_MERGES};
use crate::{TokenizerError, EOT, SOT, VOCAB_SIZE};

type Merges = Vec<(String, String)>;
type Vocab = HashMap<String, u32>;
/// A vocabulary to check, and the file it came from.
type FoundVocab = Option<(Vocab, PathBuf)>;

/// The most text a gzip'd merges file may inflate to. OpenAI's is 1.3 MiB; a
/// few kilobytes of damaged or hostile gzip could otherwise inflate to
/// gigabytes in memory.
const MAX_GZIP_TEXT: u64 = 64 << 20;

fn format_err(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, TokenizerError> {
    String::from_utf8(bytes).map_err(|e| format_err(path, format!("not UTF-8 text: {e}")))
}

/// Loads merges from `path`, recognising the format by content: gzip (OpenAI's
/// `bpe_simple_vocab_16e6.txt.gz`), JSON (a Hugging Face `tokenizer.json`),
/// or plain text (`merges.txt`). Any vocabulary found (inside the
/// `tokenizer.json`, or a `vocab.json` beside a `merges.txt`) is checked
/// against the one rebuilt from the merges.
pub(crate) fn bpe_from_file(path: &Path) -> Result<Bpe, TokenizerError> {
    let bytes = read(path)?;
    let (merges, vocab) = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        MultiGzDecoder::new(bytes.as_slice())
            .take(MAX_GZIP_TEXT + 1)
            .read_to_string(&mut text)
            .map_err(|e| format_err(path, format!("cannot decompress: {e}")))?;
        if text.len() as u64 > MAX_GZIP_TEXT {
            return Err(format_err(
                path,
                format!(
                    "decompresses to more than {} MiB; a merges file is about 1.3 MiB",
                    MAX_GZIP_TEXT >> 20
                ),
            ));
        }
        // OpenAI's loader drops the first line (a version header) unread.
        (parse_merges_txt(path, &text, true)?, None)
    } else if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        parse_tokenizer_json(path, &bytes)?
    } else {
        let text = utf8(path, bytes)?;
        let merges = parse_merges_txt(path, &text, false)?;
        let vocab_path = path.with_file_name("vocab.json");
        let vocab = if vocab_path.is_file() {
            Some((
                parse_vocab_json(&vocab_path, &read(&vocab_path)?)?,
                vocab_path,
            ))
        } else {
            None
        };
        (merges, vocab)
    };
    let bpe = Bpe::new(&merges).map_err(|m| format_err(path, m))?;
    if let Some((vocab, vocab_path)) = vocab {
        check_vocab(&vocab_path, &bpe, &vocab)?;
    }
    Ok(bpe)
}

/// One merge per line, `left right`. The first line is skipped when it is a
/// `#version` header (always, for OpenAI's gzip file). Only the lines the
/// vocabulary uses are read.
fn parse_merges_txt(path: &Path, text: &str, skip_first: bool) -> Result<Merges, TokenizerError> {
    let mut lines = text.split('\n').enumerate().peekable();
    if skip_first || lines.peek().is_some_and(|(_, l)| l.contains("#version")) {
        lines.next();
    }
    let mut merges = Vec::with_capacity(NUM_MERGES);
    for (i, line) in lines.take(NUM_MERGES) {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
            // A blank line ends the list; too short a list fails later.
            (None, ..) => break,
            _ => {
                return Err(format_err(
                    path,
                    format!(
                        "line {}: expected a merge `left right`, found {line:?}",
                        i + 1
                    ),
                ))
            }
        }
    }
    Ok(merges)
}

fn parse_json(path: &Path, bytes: &[u8]) -> Result<Value, TokenizerError> {
    serde_json::from_slice(bytes).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn vocab_from_value(path: &Path, v: &Value) -> Result<Vocab, TokenizerError> {
    let obj = v
        .as_object()
        .ok_or_else(|| format_err(path, "vocabulary is not a JSON object"))?;
    obj.iter()
        .map(|(k, id)| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(|id| (k.clone(), id))
                .ok_or_else(|| {
                    format_err(path, format!("vocabulary id of {k:?} is not an integer"))
                })
        })
        .collect()
}

fn parse_vocab_json(path: &Path, bytes: &[u8]) -> Result<Vocab, TokenizerError> {
    vocab_from_value(path, &parse_json(path, bytes)?)
}

/// `model.merges` (either `"a b"` strings or `["a", "b"]` pairs) and
/// `model.vocab` of a Hugging Face `tokenizer.json`.
fn parse_tokenizer_json(path: &Path, bytes: &[u8]) -> Result<(Merges, FoundVocab), TokenizerError> {
    let json = parse_json(path, bytes)?;
    let model = json
        .get("model")
        .ok_or_else(|| format_err(path, "no `model` (is this a tokenizer.json?)"))?;
    if let Some(kind) = model.get("type").and_then(Value::as_str) {
        if kind != "BPE" {
            return Err(format_err(path, format!("model type is {kind:?}, not BPE")));
        }
    }
    let list = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| format_err(path, "no `model.merges` list"))?;
    let mut merges = Vec::with_capacity(NUM_MERGES.min(list.len()));
    for (i, m) in list.iter().take(NUM_MERGES).enumerate() {
        let pair = match m {
            Value::String(s) => {
                let mut parts = s.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => Some((a, b)),
                    _ => None,
                }
            }
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.as_str(), b.as_str())),
                _ => None,
            },
            _ => None,
        };
        let (a, b) =
            pair.ok_or_else(|| format_err(path, format!("model.merges[{i}] is not a pair: {m}")))?;
        merges.push((a.to_string(), b.to_string()));
    }
    let vocab = match model.get("vocab") {
        Some(v) => Some((vocab_from_value(path, v)?, path.to_path_buf())),
        None => None,
    };
    Ok((merges, vocab))
}

/// The shipped vocabulary must give every ordinary token the id the merges
/// give it, and have the two special ids (their spelling varies:
/// `<|startoftext|>` on the Hub, `<start_of_text>` in open_clip).
fn check_vocab(path: &Path, bpe: &Bpe, vocab: &Vocab) -> Result<(), TokenizerError> {
    let mismatch = |message: String| TokenizerError::VocabMismatch {
        path: path.to_path_buf(),
        message,
    };
    if vocab.len() != VOCAB_SIZE {
        return Err(mismatch(format!(
            "has {} entries, the merges give {VOCAB_SIZE}",
            vocab.len()
        )));
    }
    let tokens = bpe.tokens();
    let mut specials = Vec::new();
    for (token, &id) in vocab {
        if id == SOT || id == EOT {
            specials.push(id);
            continue;
        }
        match tokens.get(id as usize) {
            Some(t) if t == token => {}
            Some(t) => {
                return Err(mismatch(format!(
                    "id {id} is {token:?} there but {t:?} from the merges"
                )))
            }
            None => return Err(mismatch(format!("id {id} ({token:?}) is out of range"))),
        }
    }
    specials.sort_unstable();
    if specials != [SOT, EOT] {
        return Err(mismatch(format!(
            "expected one token each with ids {SOT} and {EOT}, found {specials:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;

    use super::*;

    #[test]
    fn a_gzip_that_inflates_past_the_limit_is_refused_before_it_is_read_whole() {
        // 40 KB of gzip that inflates to 65 MiB: one line, no merges.
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![b'a'; 1 << 20];
        for _ in 0..=(MAX_GZIP_TEXT >> 20) {
            gz.write_all(&block).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpe_simple_vocab_16e6.txt.gz");
        fs::write(&path, gz.finish().unwrap()).unwrap();
        let Err(err) = bpe_from_file(&path) else {
            panic!("a 65 MiB line was read as merges")
        };
        let err = err.to_string();
        assert!(
            err.contains("bpe_simple_vocab_16e6.txt.gz")
                && err.contains("decompresses to more than"),
            "{err}"
        );
    }
}
