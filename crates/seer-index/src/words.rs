//! Searching captions by their words (SQLite FTS5, BM25).
//!
//! A user's text is never handed to FTS5 as query syntax: a stray quote,
//! `NEAR(` or `-` would be a syntax error or change the meaning. It is split
//! into words (letters and digits, any script), stop words dropped, and each
//! word quoted; the words are joined with OR so that a caption matching more
//! (and rarer) words ranks higher, which is what BM25 weighs. The table's
//! tokenizer (see `store.rs`) stems and folds each quoted word as it did the
//! captions.

/// A file whose caption matched, and how well.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WordMatch {
    pub id: i64,
    pub path: String,
    /// BM25 of the match, positive: higher is better (FTS5's `bm25()` negated).
    pub bm25: f32,
}

/// Words that say nothing about a photo's content. Captioning models start
/// nearly every caption with some of them ("there is a picture of a dog on
/// the beach"), so they would match everything: BM25 gives them almost no
/// weight, but reciprocal rank fusion counts any match (see `hybrid`).
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "by",
    "for",
    "from",
    "has",
    "have",
    "in",
    "into",
    "is",
    "it",
    "its",
    "of",
    "on",
    "onto",
    "or",
    "that",
    "the",
    "their",
    "there",
    "this",
    "to",
    "was",
    "were",
    "with",
    "photo",
    "photograph",
    "picture",
    "image",
    "pic",
    "arafed",
    "araffe",
];

/// At most this many words of a query are searched (a pasted paragraph must
/// not become a query with thousands of terms).
pub const MAX_WORDS: usize = 32;

/// The words of `text` that a caption search looks for: lower-cased, stop
/// words and repeats dropped, at most [`MAX_WORDS`].
pub fn query_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if word.is_empty() || STOP_WORDS.contains(&word.as_str()) || words.contains(&word) {
            continue;
        }
        words.push(word);
        if words.len() == MAX_WORDS {
            break;
        }
    }
    words
}

/// The FTS5 query for `text`: its [`query_words`], each quoted, joined with
/// OR. None when no word is left (only stop words or punctuation).
pub fn fts_query(text: &str) -> Option<String> {
    let words = query_words(text);
    (!words.is_empty()).then(|| {
        words
            .iter()
            // A word holds only letters and digits, but quote-doubling keeps
            // this safe should that ever change.
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_becomes_quoted_words_without_stop_words() {
        assert_eq!(
            fts_query("A dog on the Beach!").as_deref(),
            Some("\"dog\" OR \"beach\"")
        );
        // FTS5 syntax in the text is only words: no operator survives.
        assert_eq!(
            fts_query("NEAR(\"cat\" -dog) OR *").as_deref(),
            Some("\"near\" OR \"cat\" OR \"dog\"")
        );
        assert_eq!(fts_query("a photo of the ..."), None);
        assert_eq!(fts_query(""), None);
        // Any script; repeats once.
        assert_eq!(query_words("Café café ЧАЙ 東京"), ["café", "чай", "東京"]);
        let long: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_words(&long).len(), MAX_WORDS);
    }
}
