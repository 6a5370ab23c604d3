//! The embeddings of a served model's recent `/v1/classify` prompts.
//!
//! A classification costs its prompts (labels × templates text encodings) far
//! more than its one image, and a client classifying many photos sends the same
//! labels each time: 1,000 labels with the 7 imagenet templates are 7,000 texts
//! for one image. Each prompt's embedding is kept as soon as the part of the
//! request that computed it is done, by a task of the part's own rather than by
//! the request, so:
//! - the same labels again embed only the image (in any order, or sharing some
//!   labels with another set);
//! - a first classification that outlasts the request timeout (the client gets
//!   a 504) leaves what it computed, the parts it had queued or in the model
//!   when it was dropped included, and a retry goes on from there instead of
//!   starting over and timing out again. (A part whose model is gone, or whose
//!   task the runtime's shutdown cancels, is not kept.)
//!
//! Bounded by count: past [`MAX_PROMPTS`] the least recently used quarter goes
//! (16,384 prompts of 768 floats are 50 MB).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// At most this many prompts are kept per served model.
pub const MAX_PROMPTS: usize = 16_384;

/// A prompt's text embedding, shared between the cache and requests.
pub type PromptEmbedding = Arc<Vec<f32>>;

/// Recently used prompt embeddings.
#[derive(Default)]
pub struct PromptCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each prompt's embedding and when it was last used.
    kept: HashMap<String, (PromptEmbedding, u64)>,
    clock: u64,
}

impl PromptCache {
    /// The kept embedding of each of `prompts` (None where there is none);
    /// those found become the most recently used.
    pub fn get(&self, prompts: &[String]) -> Vec<Option<PromptEmbedding>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        prompts
            .iter()
            .map(|p| {
                inner.kept.get_mut(p).map(|(embedding, used)| {
                    *used = now;
                    embedding.clone()
                })
            })
            .collect()
    }

    /// Keeps `embedded` (prompt, embedding) pairs, dropping the least recently
    /// used quarter of the cache whenever it passes [`MAX_PROMPTS`].
    pub fn insert(&self, embedded: impl IntoIterator<Item = (String, PromptEmbedding)>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        for (prompt, embedding) in embedded {
            inner.kept.insert(prompt, (embedding, now));
        }
        if inner.kept.len() > MAX_PROMPTS {
            let keep = MAX_PROMPTS * 3 / 4;
            let mut ages: Vec<u64> = inner.kept.values().map(|(_, used)| *used).collect();
            let cut = ages.len() - keep;
            // The `cut`-th oldest use: what is older or as old goes (ties may
            // take a few more than a quarter).
            let (_, oldest_kept, _) = ages.select_nth_unstable(cut);
            let oldest_kept = *oldest_kept;
            inner.kept.retain(|_, (_, used)| *used > oldest_kept);
        }
    }

    /// How many prompts are kept.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding(x: f32) -> PromptEmbedding {
        Arc::new(vec![x, 1.0])
    }

    #[test]
    fn prompts_are_found_by_their_text() {
        let cache = PromptCache::default();
        cache.insert([
            ("a photo of a cat.".to_string(), embedding(1.0)),
            ("a photo of a dog.".to_string(), embedding(2.0)),
        ]);
        let got = cache.get(&[
            "a photo of a dog.".to_string(),
            "a photo of a bird.".to_string(),
        ]);
        assert_eq!(got[0].as_deref(), Some(&vec![2.0, 1.0]));
        assert!(got[1].is_none());
    }

    #[test]
    fn the_least_recently_used_go_first_past_the_bound() {
        let cache = PromptCache::default();
        let name = |i: usize| format!("prompt {i}");
        // One at a time, the first used again after each insert: it stays.
        for i in 0..=MAX_PROMPTS {
            cache.insert([(name(i), embedding(i as f32))]);
            assert!(cache.get(&[name(0)])[0].is_some(), "{i}");
        }
        // Past the bound, a quarter went: the oldest ones.
        assert!(cache.len() <= MAX_PROMPTS * 3 / 4 + 1, "{}", cache.len());
        assert!(cache.get(&[name(1)])[0].is_none());
        assert!(cache.get(&[name(MAX_PROMPTS)])[0].is_some());
    }
}
