//! CLIP's byte-pair-encoding tokenizer, giving the same ids as OpenAI's
//! `SimpleTokenizer` as shipped in `open_clip` (`open_clip.tokenize`).
//! SigLIP and SigLIP 2's SentencePiece tokenizers are in [`siglip`].
//!
//! ```no_run
//! # use seer_tokenizer::{ClipTokenizer, CONTEXT_LENGTH, SOT, EOT};
//! let tok = ClipTokenizer::from_file("bpe_simple_vocab_16e6.txt.gz".as_ref())?;
//! assert_eq!(tok.encode("Hello World!", CONTEXT_LENGTH), [SOT, 3306, 1002, 256, EOT]);
//! # Ok::<(), seer_tokenizer::TokenizerError>(())
//! ```
//!
//! # Pipeline (as in open_clip)
//! 1. `ftfy.fix_text`, minus mojibake repair (see below): HTML entities
//!    (ftfy's cautious rules), C1 controls read as Windows-1252, Latin
//!    ligatures split, fullwidth/halfwidth forms narrowed, curly quotes
//!    straightened, line breaks unified, terminal escapes and invisible
//!    control characters removed, NFC.
//! 2. Python's `html.unescape`, twice.
//! 3. Whitespace collapsed to single spaces (Python's notion of whitespace)
//!    and trimmed; lower-cased.
//! 4. Split with open_clip's regex
//!    `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (case-insensitive, which makes it skip U+0345 altogether); each piece is
//!    byte-level BPE encoded with `</w>` on its last symbol. The literal text
//!    `<start_of_text>` / `<end_of_text>` encodes to [`SOT`] / [`EOT`], as in
//!    open_clip.
//! 5. [`SOT`] + ids + [`EOT`], cut to the context length with [`EOT`] kept last.
//!
//! # Known differences
//! * ftfy's `fix_encoding` (mojibake repair, e.g. `sÃ³` -> `só`) is not
//!   implemented: such text is tokenized as written. Real prompts rarely
//!   contain mojibake.
//! * Unicode tables come from Rust (`regex`, `unicode-normalization`,
//!   `char::to_lowercase`), which may be newer than the reference Python's
//!   (3.11: Unicode 14). Code points assigned after Unicode 14 may be
//!   classified, lower-cased or composed differently; everything assigned in
//!   Unicode 14 is checked against the reference in the tests.
//! * ftfy repeats its fixes until the text stops changing, which for nested
//!   escapes (`&amp;amp;amp;...`) is one round per level. This crate stops
//!   after 64 Mi characters of such work per line, so only huge, deeply
//!   nested input (a 10 kB line nested thousands deep) can come out
//!   differently, instead of taking quadratic time.
//!
//! Hugging Face's `CLIPTokenizerFast` (`tokenizer.json`) differs from all of
//! the above: it has no ftfy or HTML unescaping step, collapses whitespace with
//! `\s+`, and matches `<|startoftext|>` rather than `<start_of_text>`, so it
//! gives different ids for text with entities, curly quotes, ligatures,
//! fullwidth forms, control characters and the like (about a sixth of this
//! crate's test corpus). This crate follows open_clip; it only borrows the
//! merges from a `tokenizer.json`.

mod bpe;
mod checks;
mod clean;
mod entities;
// Sees the fuzz harnesses' huge allocations.
#[cfg(test)]
#[global_allocator]
static GLOBAL: seer_testkit::fuzz::Tracking = seer_testkit::fuzz::Tracking;
#[cfg(test)]
mod fuzz_tests;
mod html;
mod load;
pub mod siglip;
mod spm;
pub mod wordpiece;

pub use siglip::{Encoded, SiglipFlavour, SiglipPadding, SiglipTokenizer};
pub use wordpiece::WordPieceTokenizer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use regex::Regex;

/// Id of the start-of-text token.
pub const SOT: u32 = 49406;
/// Id of the end-of-text token.
pub const EOT: u32 = 49407;
/// Context length of every released CLIP text encoder.
pub const CONTEXT_LENGTH: usize = 77;
/// Size of CLIP's vocabulary.
pub const VOCAB_SIZE: usize = 49408;

/// Words cached at most; the cache is emptied when it fills up.
const CACHE_CAPACITY: usize = 1 << 16;
/// Longer words are not cached (they are rare and would bloat the cache).
const CACHE_MAX_WORD: usize = 64;
/// Text cleaned at a time, in whole lines: more than any caption, so a
/// caption is cleaned in one go; a long document only until its first
/// tokens fill the context.
const PART_BYTES: usize = 16 * 1024;

/// Why a tokenizer file could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file was read but is not a CLIP merges/tokenizer file.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// The file's vocabulary disagrees with the one rebuilt from the merges.
    #[error("{}: vocabulary does not match the merges: {message}", path.display())]
    VocabMismatch { path: PathBuf, message: String },
    /// A text could not be encoded or ids decoded (the `tokenizers` crate's
    /// message).
    #[error("cannot tokenize: {0}")]
    Encode(String),
}

/// CLIP's BPE tokenizer. `Send + Sync`; share it with `Arc`.
pub struct ClipTokenizer {
    bpe: bpe::Bpe,
    /// Ids of recently seen words (after byte-level encoding is applied).
    cache: RwLock<HashMap<String, Box<[u32]>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.bpe.tokens().len())
            .finish_non_exhaustive()
    }
}

// open_clip's split pattern, by alternative. Matching is case-sensitive
// except for the literal alternatives: the text is already lower-case, and
// case-insensitive classes would differ between engines. Python's `regex`
// with IGNORECASE leaves `\p{L}` and `\p{N}` as they are but drops U+0345
// (which folds to a Greek letter) from `[^\s\p{L}\p{N}]`, so that one
// character matches no alternative and is skipped; Rust's `regex` would
// instead add it to `\p{L}`. Hence the explicit `\x{345}`.
const SPLIT_LITERALS: &str = r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)";
const SPLIT_LETTERS: &str = r"\p{L}+";
const SPLIT_NUMBER: &str = r"\p{N}";
const SPLIT_OTHER: &str = r"[^\s\p{L}\p{N}\x{345}]+";

fn splitter() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pattern = [SPLIT_LITERALS, SPLIT_LETTERS, SPLIT_NUMBER, SPLIT_OTHER].join("|");
        Regex::new(&pattern).expect("valid regex")
    })
}

impl ClipTokenizer {
    /// Loads BPE merges from any of: a Hugging Face `tokenizer.json`
    /// (`model.merges` as `"a b"` strings or `[a, b]` pairs), a `merges.txt`,
    /// or OpenAI's `bpe_simple_vocab_16e6.txt.gz` (recognised by content, not
    /// name). The vocabulary is rebuilt from the merges as OpenAI does (byte
    /// alphabet, the same with `</w>`, the first 48,894 merges, the two
    /// special tokens); the vocabulary in a `tokenizer.json`, or a
    /// `vocab.json` next to a `merges.txt`, must agree with it.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        Ok(Self {
            bpe: load::bpe_from_file(path)?,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Looks in a model folder for `tokenizer.json`, then `merges.txt`
    /// (checked against the `vocab.json` beside it, if there is one), then
    /// `bpe_simple_vocab_16e6.txt.gz`, and loads the first found. `Ok(None)`
    /// if there is none of them; an error if the one found is unusable.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>, TokenizerError> {
        for name in [
            "tokenizer.json",
            "merges.txt",
            "bpe_simple_vocab_16e6.txt.gz",
        ] {
            let path = dir.join(name);
            if path.is_file() {
                return Self::from_file(&path).map(Some);
            }
        }
        Ok(None)
    }

    /// Token ids of `text`: [`SOT`], the text's tokens, [`EOT`]; if longer
    /// than `context_length`, cut to it with the last id replaced by [`EOT`]
    /// (as `open_clip.tokenize` does). Not padded. Never panics.
    pub fn encode(&self, text: &str, context_length: usize) -> Vec<u32> {
        self.encode_in_parts(text, context_length, PART_BYTES)
    }

    /// [`encode`](Self::encode), cleaning `text` in parts of whole lines of
    /// at least `part_bytes`, and stopping once the tokens fill the context:
    /// the rest of a long text is never cleaned (see [`clean::LineCleaner`]
    /// for why the tokens are those of the whole text). Within a part, BPE
    /// stops at a word boundary: a word's tokens depend on all of it.
    fn encode_in_parts(&self, text: &str, context_length: usize, part_bytes: usize) -> Vec<u32> {
        if context_length == 0 {
            return Vec::new();
        }
        let mut cleaner = clean::LineCleaner::new();
        let mut ids = vec![SOT];
        let mut rest = text;
        while !rest.is_empty() && ids.len() < context_length {
            // Up to the first line break at or after `part_bytes` (a `\n`
            // byte is never inside a multi-byte character).
            let from = part_bytes.min(rest.len());
            let end = rest.as_bytes()[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| from + i + 1);
            let (part, tail) = rest.split_at(end);
            rest = tail;
            let cleaned = cleaner.clean(part);
            for piece in splitter().find_iter(&cleaned) {
                // Tokens past the cut would be discarded; stop early.
                if ids.len() >= context_length {
                    break;
                }
                self.encode_piece(piece.as_str(), &mut ids);
            }
        }
        ids.push(EOT);
        if ids.len() > context_length {
            ids.truncate(context_length);
            ids[context_length - 1] = EOT;
        }
        ids
    }

    /// [`encode`](Self::encode), then padded with `pad_id` to exactly
    /// `context_length` ids. (open_clip pads with 0.)
    pub fn encode_padded(&self, text: &str, context_length: usize, pad_id: u32) -> Vec<u32> {
        let mut ids = self.encode(text, context_length);
        ids.resize(context_length, pad_id);
        ids
    }

    /// Text of `ids` as OpenAI's `decode` gives it: each word followed by a
    /// space, special tokens spelled out, invalid UTF-8 replaced, unknown ids
    /// skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.bpe.decode_bytes(ids)).into_owned()
    }

    /// Number of ids (49,408).
    pub fn vocab_size(&self) -> usize {
        self.bpe.tokens().len()
    }

    fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) {
        match piece {
            bpe::SOT_TEXT => return out.push(SOT),
            bpe::EOT_TEXT => return out.push(EOT),
            _ => {}
        }
        if piece.len() > CACHE_MAX_WORD {
            return self.bpe.encode_word(piece.as_bytes(), out);
        }
        // A poisoned lock only means another thread panicked mid-insert of a
        // plain map; the map itself is still valid.
        if let Some(ids) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(piece)
        {
            return out.extend_from_slice(ids);
        }
        let start = out.len();
        self.bpe.encode_word(piece.as_bytes(), out);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(piece.to_string(), out[start..].into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    fn openai() -> ClipTokenizer {
        ClipTokenizer::from_file(&seer_testkit::tokenizer_file()).unwrap()
    }

    /// The encoding before texts were cleaned in parts: the whole text
    /// cleaned, then split and encoded until the context is full.
    fn encode_whole(tok: &ClipTokenizer, text: &str, context_length: usize) -> Vec<u32> {
        let cleaned = clean::clean(text);
        let mut ids = vec![SOT];
        for piece in splitter().find_iter(&cleaned) {
            if ids.len() >= context_length {
                break;
            }
            tok.encode_piece(piece.as_str(), &mut ids);
        }
        ids.push(EOT);
        if ids.len() > context_length {
            ids.truncate(context_length);
            ids[context_length - 1] = EOT;
        }
        ids
    }

    /// Random texts of the pieces that act across lines if anything does:
    /// references (split, nested, made of other references, HTML ones that
    /// make line breaks), `<` (HTML mode for the lines after), line breaks of
    /// every kind, C1 controls, sigmas, combining marks, terminal escapes.
    fn random_text(seed: &mut u64, pieces: usize) -> String {
        const PARTS: &[&str] = &[
            "a",
            "Cat",
            "\u{3a3}",
            "\u{3c3}",
            "&",
            "amp;",
            "&amp;",
            "lt;",
            "&lt",
            "#",
            "&#",
            "x41;",
            "65",
            ";",
            "\n",
            "\r",
            "\r\n",
            " ",
            "\t",
            "<",
            ">",
            "\u{fb01}",
            "\u{93}",
            "\u{85}",
            "\x1b[31m",
            "\x1b[",
            "e\u{301}",
            "\u{301}",
            "'s",
            "'",
            "1",
            "!",
            "?",
            "<start_of_text>",
            "&NewLine;",
            "&Tab;",
            "&nbsp;",
            "\u{2028}",
            "\u{ff31}",
            "\u{37e}",
            "\u{a0}",
            "\x1c",
            "\u{1f600}",
            "\u{345}",
            "\u{130}",
            "abcdefghijkl",
        ];
        let mut out = String::new();
        for _ in 0..pieces {
            // xorshift64
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            out.push_str(PARTS[(*seed % PARTS.len() as u64) as usize]);
        }
        out
    }

    /// Cleaning in parts of whole lines gives the tokens of the whole text,
    /// for any part size, with the context cut short or not.
    #[test]
    fn texts_cleaned_in_parts_give_the_tokens_of_the_whole() {
        let tok = openai();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..3000 {
            let text = random_text(&mut seed, 1 + case % 120);
            for context in [2, 5, 77, 1_000_000] {
                let want = encode_whole(&tok, &text, context);
                for part in [0, 1, 7, 64] {
                    assert_eq!(
                        tok.encode_in_parts(&text, context, part),
                        want,
                        "{text:?}, context {context}, parts of {part} bytes"
                    );
                }
                assert_eq!(tok.encode(&text, context), want, "{text:?}");
            }
        }
    }

    /// Long texts, of many lines or one: the same tokens as the whole text
    /// cleaned and encoded.
    #[test]
    fn long_texts_give_the_tokens_of_the_whole() {
        let tok = openai();
        let lines = "&amp;lt;b&amp;gt; Fish &amp chips\r\nΣΑΣ\u{2028}ﬁne &#x93;quoted&#x94;\n"
            .repeat(20_000);
        let one_line = "word&amp;amp;".repeat(50_000);
        let html_late = format!(
            "{}<p>\n{}",
            "x &amp; y\n".repeat(5_000),
            "&amp; z\n".repeat(5_000)
        );
        for text in [&lines, &one_line, &html_late] {
            for context in [77, 100_000] {
                assert_eq!(
                    tok.encode(text, context),
                    encode_whole(&tok, text, context),
                    "{} bytes, context {context}",
                    text.len()
                );
            }
        }
    }

    #[test]
    fn tokenizer_is_send_sync() {
        assert_send_sync::<ClipTokenizer>();
    }

    #[test]
    fn splitter_pieces() {
        let pieces = |s: &str| -> Vec<String> {
            splitter()
                .find_iter(s)
                .map(|m| m.as_str().to_string())
                .collect()
        };
        assert_eq!(pieces("it's a cat!!"), ["it", "'s", "a", "cat", "!!"]);
        assert_eq!(pieces("abc123"), ["abc", "1", "2", "3"]);
        assert_eq!(pieces("a\u{345}b"), ["a", "b"]);
        assert_eq!(
            pieces("'ſt <ſtart_of_text>x"),
            ["'ſ", "t", "<ſtart_of_text>", "x"]
        );
        assert_eq!(pieces("é\u{301}"), ["é", "\u{301}"]);
    }

    /// Every code point Python's Unicode database (14.0) assigns is split,
    /// lower-cased and NFC-normalized as the reference does. The table is
    /// written by `scripts/make_tokenizer_fixtures.py`.
    #[test]
    fn unicode_tables_match_reference() {
        use unicode_normalization::UnicodeNormalization;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/tokenizer/unicode_tables.json"
        );
        let text = std::fs::read_to_string(path).expect("read unicode_tables.json");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cp = |v: &serde_json::Value| v.as_u64().unwrap() as u32;
        let map = |key: &str| -> HashMap<u32, String> {
            json[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (cp(&e[0]), e[1].as_str().unwrap().to_string()))
                .collect()
        };
        let (lower, nfc) = (map("lower"), map("nfc"));
        let mut class = HashMap::new();
        for run in json["split_class"].as_array().unwrap() {
            for c in cp(&run[0])..=cp(&run[1]) {
                class.insert(c, run[2].as_str().unwrap().chars().next().unwrap());
            }
        }
        let whole = |p: &str| Regex::new(&format!("^(?:{p})$")).unwrap();
        let (letters, number, other) = (
            whole(SPLIT_LETTERS),
            whole(SPLIT_NUMBER),
            whole(SPLIT_OTHER),
        );

        let mut bad = Vec::new();
        let mut checked = 0;
        for run in json["assigned"].as_array().unwrap() {
            for c in (cp(&run[0])..=cp(&run[1])).filter_map(char::from_u32) {
                checked += 1;
                let s = c.to_string();
                let got = if letters.is_match(&s) {
                    'L'
                } else if number.is_match(&s) {
                    'N'
                } else if other.is_match(&s) {
                    'O'
                } else {
                    '-'
                };
                if got != class[&(c as u32)] {
                    bad.push(format!(
                        "U+{:04X} split class {got}, want {}",
                        c as u32,
                        class[&(c as u32)]
                    ));
                }
                let want = lower.get(&(c as u32)).cloned().unwrap_or_else(|| s.clone());
                if s.to_lowercase() != want {
                    bad.push(format!(
                        "U+{:04X} lower {:?}, want {want:?}",
                        c as u32,
                        s.to_lowercase()
                    ));
                }
                let want = nfc.get(&(c as u32)).cloned().unwrap_or_else(|| s.clone());
                let got: String = s.nfc().collect();
                if got != want {
                    bad.push(format!("U+{:04X} nfc {got:?}, want {want:?}", c as u32));
                }
            }
        }
        assert!(checked > 280_000, "only {checked} code points");
        assert!(
            bad.is_empty(),
            "{} differences:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}
