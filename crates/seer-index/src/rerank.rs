//! Reranking a search's best hits with an image–text matching head (BLIP's
//! ITM), which reads the query and the photo together.
//!
//! A cosine compares two summaries made apart, so "a horse riding an
//! astronaut" and "an astronaut riding a horse" score nearly the same; the
//! matching head attends from every word to the image and tells them apart,
//! at the cost of one model run per photo. So only the first `depth` hits of
//! the ranking are scored and put in order of their ITM probability; the hits
//! below keep their order. The depth does not depend on the page asked for,
//! so pages fit together (and a page below the depth needs no model run).

use std::path::PathBuf;

use seer_engine::{ImageTextMatcher, MatchScore};
use seer_image::DecodeLimits;

use crate::error::{IndexError, Result};

/// Hits reranked when the caller does not say.
pub const DEFAULT_DEPTH: usize = 20;

/// The most hits one search may rerank (each costs a model run).
pub const MAX_DEPTH: usize = 100;

/// The new order of hits scored `scores` (best ITM probability first); hits
/// whose image could not be scored (None) follow the scored ones in their old
/// order. Equal probabilities keep their old order.
pub fn order(scores: &[Option<f32>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| match (scores[a], scores[b]) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    idx
}

/// Puts `items` in the order [`order`] gives for `scores` (one per item).
pub fn apply<T>(items: Vec<T>, scores: &[Option<f32>]) -> Vec<T> {
    assert_eq!(items.len(), scores.len(), "one score per item");
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order(scores)
        .into_iter()
        .map(|i| slots[i].take().expect("a permutation"))
        .collect()
}

/// Scores the indexed files at `paths` (stored form) against `text`, in model
/// batches of `batch_size`: each file is read only when it lies under `roots`
/// (canonical), and decoded within `limits`. A file that cannot be read or
/// decoded gets its error, never stops the others; a model error stops all.
pub fn score_files(
    matcher: &dyn ImageTextMatcher,
    text: &str,
    paths: &[String],
    roots: &[PathBuf],
    limits: &DecodeLimits,
    batch_size: usize,
) -> Result<Vec<std::result::Result<MatchScore, String>>> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let prepared: Vec<std::result::Result<Vec<f32>, String>> = chunk
            .par_iter()
            .map(|p| {
                crate::captions::decode_indexed(p, roots, limits)
                    .map(|image| matcher.preprocess(&image))
                    .map_err(|e| e.to_string())
            })
            .collect();
        let ok = prepared.iter().filter(|p| p.is_ok()).count();
        let pixels: Vec<f32> = prepared.iter().flatten().flatten().copied().collect();
        let scores = match ok {
            0 => Vec::new(),
            n => matcher.match_texts(pixels, n, &vec![text.to_string(); n])?,
        };
        if scores.len() != ok {
            return Err(IndexError::Invalid(format!(
                "the matching model gave {} scores for {ok} images",
                scores.len()
            )));
        }
        let mut scores = scores.into_iter();
        for p in prepared {
            out.push(p.map(|_| scores.next().expect("one score per image")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reranking_orders_by_probability_and_keeps_unscored_hits_behind() {
        let scores = [Some(0.2), None, Some(0.9), Some(0.2), None, Some(0.5)];
        assert_eq!(order(&scores), [2, 5, 0, 3, 1, 4]);
        assert_eq!(
            apply(vec!['a', 'b', 'c', 'd', 'e', 'f'], &scores),
            ['c', 'f', 'a', 'd', 'b', 'e']
        );
        assert!(order(&[]).is_empty());
    }
}
