//! Byte-level BPE over CLIP's vocabulary.
//!
//! The vocabulary is rebuilt from the merges exactly as OpenAI's
//! `SimpleTokenizer` does: the 256 byte symbols, the same 256 with `</w>`,
//! one entry per merge (the two halves joined), then the two special tokens.
//! Symbols are handled as vocabulary ids throughout, so a word never becomes
//! a string of strings.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Number of merges OpenAI keeps: `49152 - 256 - 2`.
pub(crate) const NUM_MERGES: usize = 49152 - 256 - 2;
/// Spelling of the special tokens in open_clip's `SimpleTokenizer`
/// (OpenAI's original spells them `<|startoftext|>`; only the ids matter).
pub(crate) const SOT_TEXT: &str = "<start_of_text>";
pub(crate) const EOT_TEXT: &str = "<end_of_text>";
const END_OF_WORD: &str = "</w>";

/// OpenAI's `bytes_to_unicode`: printable Latin-1 bytes stand for
/// themselves, the rest are shifted to U+0100.. so no symbol is whitespace
/// or a control character. Returns, in vocabulary order, the byte each of
/// the first 256 vocabulary entries stands for, and the char it is spelled
/// with.
fn byte_alphabet() -> [(u8, char); 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut out = [(0u8, '\0'); 256];
    let mut i = 0;
    for b in 0..=255u8 {
        if printable(b) {
            out[i] = (b, char::from(b));
            i += 1;
        }
    }
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        if !printable(b) {
            out[i] = (b, char::from_u32(256 + shifted).expect("below U+0200"));
            shifted += 1;
            i += 1;
        }
    }
    out
}

/// One merge as the encoder uses it.
#[derive(Clone, Copy)]
struct Merge {
    left: u32,
    right: u32,
    merged: u32,
}

pub(crate) struct Bpe {
    /// Vocabulary strings by id (byte-level spelling).
    tokens: Vec<String>,
    /// Vocabulary id of each byte, without and with `</w>` (+256).
    byte_id: [u32; 256],
    /// Byte spelled by each char of the byte alphabet, for decoding.
    char_byte: HashMap<char, u8>,
    /// Rank of each mergeable pair of ids.
    ranks: HashMap<(u32, u32), u32>,
    /// Merges by rank; `None` where a later duplicate took the pair's rank or
    /// a half can never occur as a symbol.
    by_rank: Vec<Option<Merge>>,
}

impl Bpe {
    /// Builds the tokenizer from merges in file order (only the first
    /// [`NUM_MERGES`] are used). Fails if there are fewer.
    pub(crate) fn new<S: AsRef<str>>(merges: &[(S, S)]) -> Result<Self, String> {
        if merges.len() < NUM_MERGES {
            return Err(format!(
                "has {} merges; a CLIP vocabulary needs {NUM_MERGES}",
                merges.len()
            ));
        }
        let merges = &merges[..NUM_MERGES];
        let alphabet = byte_alphabet();
        let mut tokens: Vec<String> = Vec::with_capacity(512 + NUM_MERGES + 2);
        tokens.extend(alphabet.iter().map(|&(_, c)| c.to_string()));
        tokens.extend(alphabet.iter().map(|&(_, c)| format!("{c}{END_OF_WORD}")));
        tokens.extend(
            merges
                .iter()
                .map(|(a, b)| format!("{}{}", a.as_ref(), b.as_ref())),
        );
        tokens.push(SOT_TEXT.to_string());
        tokens.push(EOT_TEXT.to_string());

        // Python builds `dict(zip(vocab, range(...)))`: for a repeated
        // string the last id wins. Do the same.
        let mut encoder: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            encoder.insert(t.as_str(), id as u32);
        }

        let mut byte_id = [0u32; 256];
        for (id, &(b, _)) in alphabet.iter().enumerate() {
            byte_id[b as usize] = encoder[tokens[id].as_str()];
        }
        let char_byte = alphabet.iter().map(|&(b, c)| (c, b)).collect();

        let mut ranks = HashMap::with_capacity(NUM_MERGES);
        let mut by_rank = vec![None; NUM_MERGES];
        for (rank, (a, b)) in merges.iter().enumerate() {
            let (a, b) = (a.as_ref(), b.as_ref());
            // A pair whose halves are not vocabulary strings can never be
            // adjacent symbols, so it can never apply; Python keeps it in
            // `bpe_ranks` to no effect.
            let (Some(&left), Some(&right)) = (encoder.get(a), encoder.get(b)) else {
                continue;
            };
            let merged = encoder[format!("{a}{b}").as_str()];
            // Later duplicates overwrite, as in `dict(zip(merges, range))`.
            if let Some(old) = ranks.insert((left, right), rank as u32) {
                by_rank[old as usize] = None;
            }
            by_rank[rank] = Some(Merge {
                left,
                right,
                merged,
            });
        }
        Ok(Self {
            tokens,
            byte_id,
            char_byte,
            ranks,
            by_rank,
        })
    }

    pub(crate) fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Appends the ids of one pre-tokenized word (raw UTF-8 bytes) to `out`.
    ///
    /// Same result as OpenAI's loop (take the lowest-ranked adjacent pair,
    /// merge every occurrence left to right, repeat), but with a heap so a
    /// pathological 100 kB "word" costs O(n log n), not O(n²).
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        let n = word.len();
        if n == 0 {
            return;
        }
        let mut sym: Vec<u32> = word.iter().map(|&b| self.byte_id[b as usize]).collect();
        sym[n - 1] += 256; // the `</w>` variant of the last byte
        if n == 1 {
            out.push(sym[0]);
            return;
        }
        const NONE: usize = usize::MAX;
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        let mut alive = vec![true; n];

        // Min-heap of (rank, position of the left symbol). Entries go stale
        // when a symbol changes; they are checked when popped.
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some(&r) = self.ranks.get(&(sym[i], sym[i + 1])) {
                heap.push(Reverse((r, i)));
            }
        }
        let mut batch: Vec<usize> = Vec::new();
        while let Some(Reverse((rank, first))) = heap.pop() {
            // One pass of OpenAI's loop: every occurrence of this pair, left
            // to right. Gather them before merging so that pairs the merges
            // create (possibly of lower rank) wait for the next pass.
            batch.clear();
            batch.push(first);
            while let Some(&Reverse((r, p))) = heap.peek() {
                if r != rank {
                    break;
                }
                batch.push(p);
                heap.pop();
            }
            let Some(m) = self.by_rank[rank as usize] else {
                continue;
            };
            for &p in &batch {
                // Stale if either symbol changed or was merged away; symbols
                // only ever grow, so a stale entry cannot become valid again.
                if !alive[p] || sym[p] != m.left {
                    continue;
                }
                let q = next[p];
                if q == NONE || sym[q] != m.right {
                    continue;
                }
                sym[p] = m.merged;
                alive[q] = false;
                next[p] = next[q];
                if next[q] != NONE {
                    prev[next[q]] = p;
                }
                if prev[p] != NONE {
                    if let Some(&r) = self.ranks.get(&(sym[prev[p]], sym[p])) {
                        heap.push(Reverse((r, prev[p])));
                    }
                }
                if next[p] != NONE {
                    if let Some(&r) = self.ranks.get(&(sym[p], sym[next[p]])) {
                        heap.push(Reverse((r, p)));
                    }
                }
            }
        }
        let mut p = 0;
        while p != NONE {
            out.push(sym[p]);
            p = next[p];
        }
    }

    /// Bytes spelled by `ids`, with each `</w>` turned into a space, as
    /// OpenAI's `decode` does. Unknown ids are skipped.
    pub(crate) fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            let Some(tok) = self.tokens.get(id as usize) else {
                continue;
            };
            let (body, eow) = match tok.strip_suffix(END_OF_WORD) {
                Some(body) => (body, true),
                None => (tok.as_str(), false),
            };
            for c in body.chars() {
                // Special tokens are plain ASCII, which maps to itself.
                out.push(self.char_byte.get(&c).copied().unwrap_or(b'?'));
            }
            if eow {
                out.push(b' ');
            }
        }
        out
    }

    /// The reference algorithm, transliterated, to check the heap version.
    #[cfg(test)]
    pub(crate) fn encode_word_naive(&self, word: &[u8]) -> Vec<u32> {
        let mut sym: Vec<u32> = word.iter().map(|&b| self.byte_id[b as usize]).collect();
        if let Some(last) = sym.last_mut() {
            *last += 256;
        }
        loop {
            let best = sym
                .windows(2)
                .filter_map(|w| self.ranks.get(&(w[0], w[1])).copied())
                .min();
            let Some(rank) = best else { break };
            let m = self.by_rank[rank as usize].expect("ranked pair has a merge");
            let mut merged = Vec::with_capacity(sym.len());
            let mut i = 0;
            while i < sym.len() {
                if i + 1 < sym.len() && sym[i] == m.left && sym[i + 1] == m.right {
                    merged.push(m.merged);
                    i += 2;
                } else {
                    merged.push(sym[i]);
                    i += 1;
                }
            }
            sym = merged;
        }
        sym
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_openai() {
        let a = byte_alphabet();
        assert_eq!(a[0], (b'!', '!'));
        assert_eq!(a[93], (b'~', '~'));
        assert_eq!(a[94], (0xA1, '\u{a1}'));
        // First non-printable byte is 0x00, spelled U+0100; space is U+0120.
        assert_eq!(a[188], (0x00, '\u{100}'));
        assert!(a.contains(&(b' ', '\u{120}')));
        let mut seen: Vec<u8> = a.iter().map(|x| x.0).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    fn toy() -> Bpe {
        // Tiny merge list padded with pairs that can never apply.
        let mut merges: Vec<(String, String)> = vec![
            ("a".into(), "a".into()),
            ("a".into(), "a</w>".into()),
            ("b".into(), "aa</w>".into()),
            ("aa".into(), "aa".into()),
        ];
        while merges.len() < NUM_MERGES {
            merges.push(("\u{3000}".into(), format!("{}", merges.len())));
        }
        Bpe::new(&merges).unwrap()
    }

    #[test]
    fn heap_agrees_with_naive() {
        let bpe = toy();
        for w in [
            "a",
            "aa",
            "aaa",
            "aaaa",
            "aaaaa",
            "baaa",
            "abab",
            "aaaaaaaaa",
            "xaay",
        ] {
            let mut got = Vec::new();
            bpe.encode_word(w.as_bytes(), &mut got);
            assert_eq!(got, bpe.encode_word_naive(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn too_few_merges_is_an_error() {
        let merges = vec![("a", "b")];
        assert!(Bpe::new(&merges).is_err());
    }
}
