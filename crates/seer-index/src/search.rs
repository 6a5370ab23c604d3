//! Queries: a text, an example image, an indexed file ("more like this"), or a
//! combination, added and subtracted as rclip does; ranked by cosine similarity.

use std::path::PathBuf;

use seer_engine::{EmbedOptions, LoadedModel};

use crate::error::{IndexError, Result};
use crate::store::{ModelInfo, Store, VectorSet};

/// One search's ingredients; the query vector is the normalised sum of the
/// positive parts minus the negative parts, each normalised first.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub texts: Vec<String>,
    pub images: Vec<PathBuf>,
    /// Paths of indexed files whose stored vectors join the query.
    pub like: Vec<String>,
    pub subtract_texts: Vec<String>,
    pub subtract_images: Vec<PathBuf>,
}

impl Query {
    pub fn needs_model(&self) -> bool {
        !(self.texts.is_empty()
            && self.images.is_empty()
            && self.subtract_texts.is_empty()
            && self.subtract_images.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        !self.needs_model() && self.like.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct SearchOptions {
    pub k: usize,
    pub min_score: Option<f32>,
    /// Only paths matching this glob (e.g. `**/2023/**`, `*.png`).
    pub path_glob: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Hit {
    pub path: String,
    pub score: f32,
    #[serde(skip)]
    pub id: i64,
    /// For a video: the time (seconds) of its frame that matched best, which
    /// gave the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

/// The query vector. `loaded` must be the model the index's vectors were made
/// with (the caller loads it by the model's name); only needed for texts (which
/// need its text tower) and images.
/// `options` gives the batch size and decoding limits for example images.
pub fn query_vector(
    store: &Store,
    model: &ModelInfo,
    loaded: Option<&LoadedModel>,
    query: &Query,
    options: &EmbedOptions,
) -> Result<Vec<f32>> {
    if query.is_empty() {
        return Err(IndexError::Invalid(
            "empty query: give a text, --image FILE or --like PATH".into(),
        ));
    }
    let mut combined = QueryCombiner::new(model.dim);
    let mut add = |v: &[f32], sign: f32| combined.add(v, sign);
    if query.needs_model() {
        let loaded = loaded.ok_or_else(|| {
            IndexError::Invalid("text and image queries need the model loaded".into())
        })?;
        if loaded.id != model.name || loaded.embed_dim() != model.dim {
            return Err(IndexError::ModelMismatch {
                index: store.dir().to_path_buf(),
                model: loaded.id.clone(),
                available: model.name.clone(),
            });
        }
        let options = EmbedOptions {
            normalize: true,
            ..options.clone()
        };
        if !(query.texts.is_empty() && query.subtract_texts.is_empty()) {
            let text = loaded.text()?;
            for (texts, sign) in [(&query.texts, 1.0), (&query.subtract_texts, -1.0)] {
                for v in text.embed_texts(texts, &options)? {
                    add(&v, sign);
                }
            }
        }
        for (images, sign) in [(&query.images, 1.0), (&query.subtract_images, -1.0)] {
            if images.is_empty() {
                continue;
            }
            let mut first_error = None;
            loaded
                .image()?
                .embed_image_files(images, &options, |o| match o.result {
                    Ok(v) => add(&v, sign),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                })?;
            if let Some(e) = first_error {
                return Err(e.into());
            }
        }
    }
    for path in &query.like {
        let Some(v) = store.vector_of(path, model)? else {
            let shown = crate::pathcodec::display_stored(path);
            // A file that failed is in the index with its cause: say it.
            return Err(IndexError::Invalid(match store.failure_of(path)? {
                Some(cause) => format!(
                    "{shown}: could not be indexed ({cause}), so it has no vector to search with"
                ),
                None => format!("{shown}: not in the index for model '{}'", model.name),
            }));
        };
        add(&v, 1.0);
    }
    combined.finish()
}

/// Adds and subtracts query parts (each normalised first, so a text and an image
/// weigh the same) into one unit query vector.
pub struct QueryCombiner {
    sum: Vec<f32>,
    parts: usize,
}

impl QueryCombiner {
    pub fn new(dim: usize) -> Self {
        Self {
            sum: vec![0.0; dim],
            parts: 0,
        }
    }

    pub fn add(&mut self, v: &[f32], sign: f32) {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        self.sum
            .iter_mut()
            .zip(v)
            .for_each(|(s, x)| *s += sign * x / n);
        self.parts += 1;
    }

    pub fn finish(self) -> Result<Vec<f32>> {
        if self.parts == 0 {
            return Err(IndexError::Invalid(
                "empty query: give a text, an image or an indexed image".into(),
            ));
        }
        let n = self.sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n < 1e-6 {
            return Err(IndexError::Invalid("the query's parts cancel out".into()));
        }
        Ok(self.sum.into_iter().map(|x| x / n).collect())
    }
}

/// Which files a search may return besides the path glob, by file id (a capture
/// date range, the query photo left out of its own "more like this").
pub type KeepId<'a> = &'a (dyn Fn(i64) -> bool + Sync);

/// Exact ranking over all vectors (SIMD dot products), returning only files
/// that `keep` (when given) accepts. Callers rank through [`crate::Searcher`],
/// which decides between this and the approximate index.
pub fn rank_exact_where(
    vectors: &VectorSet,
    query: &[f32],
    options: &SearchOptions,
    keep: Option<KeepId<'_>>,
) -> Result<Vec<Hit>> {
    let glob = compile_glob(options.path_glob.as_deref())?;
    let keep = |row: usize| {
        glob.as_ref()
            .is_none_or(|g| g.is_match(&vectors.paths[row]))
            && keep.is_none_or(|k| k(vectors.ids[row]))
    };
    let top = seer_ann::exact_top_k_filtered(&vectors.data, vectors.dim, query, options.k, keep);
    Ok(top
        .into_iter()
        .map(|(row, score)| (row, clamp_cosine(score)))
        .filter(|(_, score)| options.min_score.is_none_or(|m| *score >= m))
        .map(|(row, score)| Hit {
            path: vectors.paths[row].clone(),
            score,
            id: vectors.ids[row],
            time: None,
        })
        .collect())
}

/// A cosine similarity as reported: dot products of stored vectors (rounded to
/// f16 or int8, so not exactly unit length) can stray just outside [-1, 1].
pub fn clamp_cosine(score: f32) -> f32 {
    score.clamp(-1.0, 1.0)
}

pub fn compile_glob(glob: Option<&str>) -> Result<Option<globset::GlobMatcher>> {
    glob.map(|g| {
        // A bare pattern like `*.png` should match in any folder.
        let pattern = if g.starts_with('/') || g.starts_with("**") {
            g.to_string()
        } else {
            format!("**/{g}")
        };
        globset::Glob::new(&pattern)
            .map(|g| g.compile_matcher())
            .map_err(|e| IndexError::Invalid(format!("bad --path glob '{g}': {e}")))
    })
    .transpose()
}
