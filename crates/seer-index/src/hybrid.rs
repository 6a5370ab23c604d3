//! Hybrid search: caption words and vector similarity in one ranking.
//!
//! A vector ranks photos by what they look like; a caption's words find what
//! the vector blurs (a named object, a colour, a word the query says exactly).
//! Their scores are not comparable (a cosine in [-1, 1], an unbounded BM25),
//! so they are fused by rank, not by score: reciprocal rank fusion (Cormack,
//! Clarke and Büttcher, 2009), `fused = Σ 1 / (RRF_K + rank)` over the lists a
//! photo is in, with `rank` from 1 and `RRF_K` = 60 as in the paper. Each list
//! holds the best [`FUSION_DEPTH`] photos (or as many as the page needs, if
//! more), so the ranking of a page never depends on which page it is.
//!
//! [`SearchMode::Auto`] fuses when the query has text and the index has
//! captions, and otherwise ranks by vectors alone, exactly as before captions
//! existed.

use crate::error::{IndexError, Result};
use crate::search::{clamp_cosine, compile_glob, Hit, KeepId, SearchOptions};
use crate::searcher::Searcher;
use crate::store::{ModelInfo, Store};
use crate::words::WordMatch;

/// The constant of reciprocal rank fusion: how much a first place outweighs a
/// tenth (1/61 against 1/70).
pub const RRF_K: f32 = 60.0;

/// How many of the best photos of each signal take part in the fusion.
pub const FUSION_DEPTH: usize = 1000;

/// How a search ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Hybrid when the query has text and the index has captions, else vector.
    #[default]
    Auto,
    /// Cosine similarity of the vectors only.
    Vector,
    /// Reciprocal rank fusion of the vector ranking and the words' BM25 ranking.
    Hybrid,
    /// Caption words only (BM25); needs no model.
    Words,
}

impl SearchMode {
    pub const NAMES: &'static str = "auto, vector, hybrid, words";

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "vector" => Some(Self::Vector),
            "hybrid" => Some(Self::Hybrid),
            "words" => Some(Self::Words),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Vector => "vector",
            Self::Hybrid => "hybrid",
            Self::Words => "words",
        }
    }

    /// The mode a search runs in: `Auto` decided, and the others checked.
    /// `words` is the query's FTS query (None without text, or when its text
    /// is only stop words); `others` whether it has an image or an indexed
    /// photo to search by.
    pub fn resolve(
        self,
        words: Option<&str>,
        others: bool,
        captions: bool,
        dir: &std::path::Path,
    ) -> Result<Self> {
        let no_captions = || IndexError::File {
            path: dir.to_path_buf(),
            message:
                "the index holds no captions; add them with `seer index --caption-model MODEL`"
                    .into(),
        };
        let no_words = |mode: &str| {
            IndexError::Invalid(format!(
                "{mode} search needs words to look for in captions (a text that is not only stop words like \"a\" or \"the\")"
            ))
        };
        match self {
            Self::Auto => Ok(match words.is_some() && captions {
                true => Self::Hybrid,
                false => Self::Vector,
            }),
            Self::Vector => Ok(Self::Vector),
            Self::Hybrid | Self::Words if !captions => Err(no_captions()),
            Self::Hybrid | Self::Words if words.is_none() => Err(no_words(self.name())),
            Self::Words if others => Err(IndexError::Invalid(
                "words search takes only text; an image or a similar photo needs vector or hybrid search".into(),
            )),
            mode => Ok(mode),
        }
    }
}

/// One result and the signals that ranked it.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub id: i64,
    pub path: String,
    /// Cosine similarity to the query vector (None in a words-only search).
    pub similarity: Option<f32>,
    /// BM25 of its caption's words (None when the words did not match).
    pub bm25: Option<f32>,
    /// The reciprocal rank fusion score (hybrid search only).
    pub fused: Option<f32>,
    /// Place in the vector ranking, from 1, when it is in the fused part.
    pub vector_rank: Option<usize>,
    /// Place in the words ranking, from 1.
    pub words_rank: Option<usize>,
    /// For a video: the time (seconds) of its best-matching frame.
    pub time: Option<f64>,
}

impl Found {
    /// A vector search's hit.
    pub fn from_hit(hit: Hit, rank: usize) -> Self {
        Self {
            id: hit.id,
            path: hit.path,
            similarity: Some(hit.score),
            bm25: None,
            fused: None,
            vector_rank: Some(rank),
            words_rank: None,
            time: hit.time,
        }
    }

    /// A words search's hit.
    pub fn from_words(m: WordMatch, rank: usize) -> Self {
        Self {
            id: m.id,
            path: m.path,
            similarity: None,
            bm25: Some(m.bm25),
            fused: None,
            vector_rank: None,
            words_rank: Some(rank),
            time: None,
        }
    }

    /// Which signals found it: "vector", "words" or both (results say so).
    pub fn matched(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.vector_rank.is_some() {
            out.push("vector");
        }
        if self.words_rank.is_some() {
            out.push("words");
        }
        out
    }
}

fn rrf(rank: usize) -> f32 {
    1.0 / (RRF_K + rank as f32)
}

/// Reciprocal rank fusion of a vector ranking and a words ranking (each best
/// first), best first; ties go to the higher similarity, then the lower id,
/// so the order is deterministic.
pub fn fuse(vector: Vec<Hit>, words: Vec<WordMatch>) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::with_capacity(vector.len() + words.len());
    let mut at: std::collections::HashMap<i64, usize> = Default::default();
    for (i, hit) in vector.into_iter().enumerate() {
        at.insert(hit.id, found.len());
        let mut f = Found::from_hit(hit, i + 1);
        f.fused = Some(rrf(i + 1));
        found.push(f);
    }
    for (i, m) in words.into_iter().enumerate() {
        let rank = i + 1;
        match at.get(&m.id) {
            Some(&j) => {
                let f = &mut found[j];
                f.bm25 = Some(m.bm25);
                f.words_rank = Some(rank);
                f.fused = Some(f.fused.unwrap_or(0.0) + rrf(rank));
            }
            None => {
                at.insert(m.id, found.len());
                let mut f = Found::from_words(m, rank);
                f.fused = Some(rrf(rank));
                found.push(f);
            }
        }
    }
    found.sort_by(|a, b| {
        let key = |f: &Found| (f.fused.unwrap_or(0.0), f.similarity.unwrap_or(-2.0));
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(a.id.cmp(&b.id))
    });
    found
}

impl Searcher {
    /// The hybrid ranking of `query` (a unit vector) and `fts` (an FTS5 query
    /// from [`crate::words::fts_query`]): the best `options.k` photos by
    /// reciprocal rank fusion, each with its cosine similarity (also for photos
    /// only their words found), filtered like [`Searcher::rank`]; the minimum
    /// score applies to the similarity.
    pub fn rank_hybrid(
        &self,
        store: &Store,
        query: &[f32],
        fts: &str,
        options: &SearchOptions,
        keep: Option<KeepId<'_>>,
    ) -> Result<Vec<Found>> {
        let depth = options.k.max(FUSION_DEPTH);
        let deep = SearchOptions {
            k: depth,
            ..options.clone()
        };
        let vector = self.rank(store, query, &deep, keep)?;
        let words = words_where(store, fts, Some(self.model()), options, keep, depth)?;
        let mut found = fuse(vector, words);
        // Photos only their words found get their similarity here: all of them
        // when a minimum applies, else only those shown.
        if options.min_score.is_none() {
            found.truncate(options.k);
        }
        for f in found.iter_mut().filter(|f| f.similarity.is_none()) {
            let owned;
            let vector = match self.vector_of_id(f.id) {
                Some(v) => v,
                None => {
                    owned = store.vector_of_id(f.id, self.model())?;
                    match &owned {
                        Some(v) => v.as_slice(),
                        None => continue,
                    }
                }
            };
            f.similarity = Some(clamp_cosine(seer_ann::simd::dot_f32(query, vector)));
        }
        if let Some(min) = options.min_score {
            found.retain(|f| f.similarity.is_some_and(|s| s >= min));
        }
        found.truncate(options.k);
        Ok(found)
    }
}

/// Photos ranked by their captions' words alone (BM25), best first, filtered
/// by the path glob and `keep`; only photos with a vector of `model` when one
/// is given (a server answers only with files it serves).
pub fn rank_words(
    store: &Store,
    fts: &str,
    model: Option<&ModelInfo>,
    options: &SearchOptions,
    keep: Option<KeepId<'_>>,
) -> Result<Vec<Found>> {
    let words = words_where(store, fts, model, options, keep, options.k)?;
    Ok(words
        .into_iter()
        .enumerate()
        .map(|(i, m)| Found::from_words(m, i + 1))
        .collect())
}

fn words_where(
    store: &Store,
    fts: &str,
    model: Option<&ModelInfo>,
    options: &SearchOptions,
    keep: Option<KeepId<'_>>,
    limit: usize,
) -> Result<Vec<WordMatch>> {
    let glob = compile_glob(options.path_glob.as_deref())?;
    store.word_matches(
        fts,
        model.map(|m| m.id),
        |id, path| glob.as_ref().is_none_or(|g| g.is_match(path)) && keep.is_none_or(|k| k(id)),
        limit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: i64, score: f32) -> Hit {
        Hit {
            path: format!("/p/{id}.jpg"),
            score,
            id,
            time: None,
        }
    }

    fn word(id: i64, bm25: f32) -> WordMatch {
        WordMatch {
            id,
            path: format!("/p/{id}.jpg"),
            bm25,
        }
    }

    #[test]
    fn reciprocal_rank_fusion_adds_the_ranks_of_both_lists() {
        // Vector: 1, 2, 3, 4. Words: 3, 5.
        let fused = fuse(
            vec![hit(1, 0.9), hit(2, 0.8), hit(3, 0.7), hit(4, 0.6)],
            vec![word(3, 5.0), word(5, 2.0)],
        );
        let ids: Vec<i64> = fused.iter().map(|f| f.id).collect();
        // 3: 1/63 + 1/61; 1: 1/61; 2: 1/62; 5: 1/62 (only words, no similarity
        // yet: after 2 by the tie rule); 4: 1/64.
        assert_eq!(ids, [3, 1, 2, 5, 4]);
        let three = &fused[0];
        assert!((three.fused.unwrap() - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!((three.vector_rank, three.words_rank), (Some(3), Some(1)));
        assert_eq!(three.matched(), ["vector", "words"]);
        assert_eq!(three.bm25, Some(5.0));
        let five = fused.iter().find(|f| f.id == 5).unwrap();
        assert_eq!(five.matched(), ["words"]);
        assert_eq!(five.similarity, None);
        assert_eq!(fused[1].matched(), ["vector"]);
    }

    #[test]
    fn the_mode_is_decided_by_the_query_and_the_index() {
        let dir = std::path::Path::new("/idx");
        let auto = SearchMode::Auto;
        assert_eq!(
            auto.resolve(Some("\"dog\""), false, true, dir).unwrap(),
            SearchMode::Hybrid
        );
        // No captions, or no words: vectors alone, as before captions.
        assert_eq!(
            auto.resolve(Some("\"dog\""), false, false, dir).unwrap(),
            SearchMode::Vector
        );
        assert_eq!(
            auto.resolve(None, true, true, dir).unwrap(),
            SearchMode::Vector
        );
        let e = SearchMode::Hybrid
            .resolve(Some("\"dog\""), false, false, dir)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no captions") && e.contains("--caption-model"),
            "{e}"
        );
        let e = SearchMode::Words
            .resolve(None, false, true, dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stop words"), "{e}");
        assert!(SearchMode::Words
            .resolve(Some("\"dog\""), true, true, dir)
            .is_err());
        assert_eq!(SearchMode::parse(" Hybrid "), Some(SearchMode::Hybrid));
        assert_eq!(SearchMode::parse("bm25"), None);
    }
}
