//! One [`Searcher`] per index generation (as tantivy hands out one per commit):
//! a model's vectors, or its approximate index, as the database was when it was
//! opened. `seer search` opens one per query; `seer serve` keeps one and opens a
//! new one when the generation changes. The exact-vs-approximate decision is
//! made here and nowhere else ([`Searcher::open`]), and every ranking, filtered
//! or not, goes through [`Searcher::rank`].

use std::borrow::Cow;

use seer_ann::Hnsw;

use crate::ann::ANN_THRESHOLD;
use crate::error::Result;
use crate::search::{rank_exact_where, Hit, KeepId, SearchOptions};
use crate::store::{ModelInfo, Store, VectorSet};

#[derive(Clone, Copy, Debug)]
pub struct SearcherOptions {
    /// Models with at least this many vectors are searched with their
    /// approximate index, when it is current ([`ANN_THRESHOLD`] by default; the
    /// CLI's hidden `--ann-threshold`, or `$SEER_ANN_THRESHOLD`, sets another).
    pub ann_threshold: usize,
    /// Keep every vector in memory even when the approximate index answers: for
    /// a long-lived searcher (the server) that looks vectors up by file id and
    /// names hits without a database query. A one-off search leaves them on disk.
    pub resident: bool,
}

impl Default for SearcherOptions {
    fn default() -> Self {
        Self {
            ann_threshold: ANN_THRESHOLD,
            resident: false,
        }
    }
}

pub struct Searcher {
    generation: u64,
    model: ModelInfo,
    backend: Backend,
}

enum Backend {
    /// Every vector in memory, ranked exactly (SIMD dot products).
    Exact(VectorSet),
    /// The HNSW graph; the vectors too when resident.
    Graph {
        graph: Hnsw,
        vectors: Option<VectorSet>,
    },
}

impl Searcher {
    /// Opens `model`'s vectors as of the database's current generation: the
    /// approximate index when the model has at least `ann_threshold` vectors and
    /// a graph that reflects this generation, exact search otherwise (always
    /// correct; the next `seer index` repairs a stale graph).
    pub fn open(store: &Store, model: ModelInfo, options: SearcherOptions) -> Result<Self> {
        let generation = store.generation()?;
        let graph = if model.vectors >= options.ann_threshold {
            crate::ann::load_current(store, &model, generation)
        } else {
            None
        };
        let backend = match graph {
            Some(graph) => {
                tracing::debug!(
                    "searching {} vectors with the approximate index",
                    model.vectors
                );
                let vectors = match options.resident {
                    true => Some(store.load_vectors(&model)?),
                    false => None,
                };
                Backend::Graph { graph, vectors }
            }
            None => {
                tracing::debug!("searching {} vectors exactly", model.vectors);
                Backend::Exact(store.load_vectors(&model)?)
            }
        };
        Ok(Self {
            generation,
            model,
            backend,
        })
    }

    /// The database generation this searcher reflects.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    pub fn is_approximate(&self) -> bool {
        matches!(self.backend, Backend::Graph { .. })
    }

    /// The vectors, when they are in memory (exact search, or resident).
    pub fn vectors(&self) -> Option<&VectorSet> {
        match &self.backend {
            Backend::Exact(v) => Some(v),
            Backend::Graph { vectors, .. } => vectors.as_ref(),
        }
    }

    /// The stored vector of file `id`, when the vectors are in memory.
    pub fn vector_of_id(&self, id: i64) -> Option<&[f32]> {
        let v = self.vectors()?;
        v.ids.binary_search(&id).ok().map(|row| v.row(row))
    }

    /// The `options.k` best files for `query` (a unit vector) that match the
    /// path glob and that `keep` (when given) accepts. `store` names the hits
    /// when the vectors are not in memory; it must be the index this searcher
    /// was opened on.
    pub fn rank(
        &self,
        store: &Store,
        query: &[f32],
        options: &SearchOptions,
        keep: Option<KeepId<'_>>,
    ) -> Result<Vec<Hit>> {
        match &self.backend {
            Backend::Exact(v) => rank_exact_where(v, query, options, keep),
            Backend::Graph {
                graph,
                vectors: Some(v),
            } => crate::ann::rank_graph_where(
                graph,
                query,
                options,
                || Ok((Cow::Borrowed(&v.ids[..]), Cow::Borrowed(&v.paths[..]))),
                |id| {
                    Ok(v.ids
                        .binary_search(&id)
                        .ok()
                        .map(|row| v.paths[row].clone()))
                },
                keep,
            ),
            // Hits are named by looking up only their paths; a path filter
            // needs every path, so it loads the id -> path map (no vectors).
            Backend::Graph {
                graph,
                vectors: None,
            } => crate::ann::rank_graph_where(
                graph,
                query,
                options,
                || {
                    store
                        .ids_and_paths(&self.model)
                        .map(|(ids, paths)| (Cow::Owned(ids), Cow::Owned(paths)))
                },
                |id| store.path_of(id),
                keep,
            ),
        }
    }

    /// [`Searcher::rank`] without the files at `exclude` (e.g. the indexed photos
    /// a "more like this" query starts from, which would otherwise come first).
    /// Asking for `exclude.len()` more hits keeps the top `k` of the rest exact.
    pub fn rank_excluding(
        &self,
        store: &Store,
        query: &[f32],
        options: &SearchOptions,
        exclude: &[String],
    ) -> Result<Vec<Hit>> {
        let wider = SearchOptions {
            k: options.k.saturating_add(exclude.len()),
            ..options.clone()
        };
        let mut hits = self.rank(store, query, &wider, None)?;
        hits.retain(|h| !exclude.contains(&h.path));
        hits.truncate(options.k);
        Ok(hits)
    }
}
