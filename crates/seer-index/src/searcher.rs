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
use crate::search::{clamp_cosine, compile_glob, rank_exact_where, Hit, KeepId, SearchOptions};
use crate::store::{FrameSet, GenerationStamp, ModelInfo, Store, VectorSet};

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
    stamp: GenerationStamp,
    model: ModelInfo,
    backend: Backend,
    /// The videos' frames, always in memory and ranked exactly: a video is
    /// ranked by its best frame, not by the mean vector its file row holds.
    frames: FrameSet,
}

enum Backend {
    /// Every vector in memory, ranked exactly (SIMD dot products).
    Exact(VectorSet),
    /// The HNSW graph; the vectors too when resident.
    Graph {
        graph: Box<Hnsw>,
        vectors: Option<VectorSet>,
    },
}

impl Searcher {
    /// Opens `model`'s vectors as of the database's current generation: the
    /// approximate index when the model has at least `ann_threshold` vectors and
    /// a graph that reflects this generation, exact search otherwise (always
    /// correct; the next `seer index` repairs a stale graph).
    pub fn open(store: &Store, model: ModelInfo, options: SearcherOptions) -> Result<Self> {
        let stamp = store.generation_stamp()?;
        let graph = if model.vectors >= options.ann_threshold {
            crate::ann::load_current(store, &model, stamp)
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
                Backend::Graph {
                    graph: Box::new(graph),
                    vectors,
                }
            }
            None => {
                tracing::debug!("searching {} vectors exactly", model.vectors);
                Backend::Exact(store.load_vectors(&model)?)
            }
        };
        let frames = store.load_frames(&model)?;
        Ok(Self {
            stamp,
            model,
            backend,
            frames,
        })
    }

    /// The videos' frames (empty when the index holds no videos).
    pub fn frames(&self) -> &FrameSet {
        &self.frames
    }

    /// The database generation this searcher reflects.
    pub fn generation(&self) -> u64 {
        self.stamp.counter
    }

    /// The database generation this searcher reflects, with its commit's
    /// token: what a cache of searchers compares (a counter can repeat when
    /// a power cut undid commits, or a database is put in place of another).
    pub fn stamp(&self) -> GenerationStamp {
        self.stamp
    }

    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    pub fn is_approximate(&self) -> bool {
        matches!(self.backend, Backend::Graph { .. })
    }

    /// The HNSW graph it searches with, when it has one.
    pub fn graph(&self) -> Option<&Hnsw> {
        match &self.backend {
            Backend::Exact(_) => None,
            Backend::Graph { graph, .. } => Some(graph),
        }
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
    /// was opened on. A video is ranked by its best frame, whose time its hit
    /// carries.
    pub fn rank(
        &self,
        store: &Store,
        query: &[f32],
        options: &SearchOptions,
        keep: Option<KeepId<'_>>,
    ) -> Result<Vec<Hit>> {
        if self.frames.is_empty() {
            return self.rank_files(store, query, options, keep);
        }
        // Videos' file vectors (their frames' mean) are left out: the frames
        // stand for them.
        let frames = &self.frames;
        let not_video = |id: i64| !frames.is_video(id) && keep.is_none_or(|k| k(id));
        let mut hits = self.rank_files(store, query, options, Some(&not_video))?;
        hits.extend(self.rank_videos(query, options, keep)?);
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits.truncate(options.k);
        Ok(hits)
    }

    /// The `options.k` best videos by their best frame, as [`Searcher::rank`]
    /// filters them.
    fn rank_videos(
        &self,
        query: &[f32],
        options: &SearchOptions,
        keep: Option<KeepId<'_>>,
    ) -> Result<Vec<Hit>> {
        let glob = compile_glob(options.path_glob.as_deref())?;
        let frames = &self.frames;
        let mut best: Vec<Hit> = frames
            .best_frames(query)
            .into_iter()
            .map(|(video, score, time)| Hit {
                path: frames.paths[video].clone(),
                score: clamp_cosine(score),
                id: frames.videos[video],
                time: Some(time),
            })
            .filter(|h| {
                options.min_score.is_none_or(|m| h.score >= m)
                    && glob.as_ref().is_none_or(|g| g.is_match(&h.path))
                    && keep.is_none_or(|k| k(h.id))
            })
            .collect();
        best.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        best.truncate(options.k);
        Ok(best)
    }

    /// [`Searcher::rank`] over the files' own vectors.
    fn rank_files(
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
    /// a "more like this" query starts from, which would otherwise come first),
    /// through the same keep filter the server's filters use.
    pub fn rank_excluding(
        &self,
        store: &Store,
        query: &[f32],
        options: &SearchOptions,
        exclude: &[String],
    ) -> Result<Vec<Hit>> {
        let mut ids = Vec::with_capacity(exclude.len());
        for path in exclude {
            ids.extend(store.id_of(path)?);
        }
        let keep = |id: i64| !ids.contains(&id);
        self.rank(store, query, options, (!ids.is_empty()).then_some(&keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::write;
    use crate::test_index::store_with_vectors;

    fn options(ann_threshold: usize, resident: bool) -> SearcherOptions {
        SearcherOptions {
            ann_threshold,
            resident,
        }
    }

    /// The graph is filled a few vectors at a time (an import's peak memory):
    /// every vector is in it, and each finds itself first.
    #[test]
    fn a_graph_synced_in_chunks_holds_every_vector() {
        let dir = tempfile::tempdir().unwrap();
        let (store, model) = store_with_vectors(dir.path());
        let synced = crate::ann::sync_in_chunks(&store, &model, 10, 7)
            .unwrap()
            .unwrap();
        assert_eq!((synced.inserted, synced.removed, synced.total), (40, 0, 40));
        let approx = Searcher::open(&store, model.clone(), options(10, true)).unwrap();
        assert!(approx.is_approximate());
        let search = SearchOptions {
            k: 1,
            ..Default::default()
        };
        for id in 1..=40 {
            // (Vectors 23 apart are equal: the hit is the vector or its twin;
            // scores come from the graph's f16 copy.)
            let query = approx.vector_of_id(id).unwrap().to_vec();
            let hit = &approx.rank(&store, &query, &search, None).unwrap()[0];
            assert!(hit.score > 0.999, "{id}: {} {}", hit.id, hit.score);
        }
        // Nothing new: nothing inserted again.
        let again = crate::ann::sync_in_chunks(&store, &model, 10, 3)
            .unwrap()
            .unwrap();
        assert_eq!((again.inserted, again.total), (0, 40));
    }

    #[test]
    fn the_threshold_and_the_graphs_generation_decide_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, model) = store_with_vectors(dir.path());
        crate::ann::sync(&store, &model, 10).unwrap();

        let exact = Searcher::open(&store, model.clone(), options(1000, false)).unwrap();
        assert!(!exact.is_approximate());
        let query = exact.vector_of_id(1).unwrap().to_vec();
        let search = SearchOptions {
            k: 5,
            ..Default::default()
        };
        let want = exact.rank(&store, &query, &search, None).unwrap();
        assert_eq!(want.len(), 5);
        assert_eq!(want[0].path, "/p/0.jpg");
        for resident in [false, true] {
            let approx = Searcher::open(&store, model.clone(), options(10, resident)).unwrap();
            assert!(approx.is_approximate());
            assert_eq!(approx.vectors().is_some(), resident);
            let got = approx.rank(&store, &query, &search, None).unwrap();
            let paths = |h: &[Hit]| h.iter().map(|h| h.path.clone()).collect::<Vec<_>>();
            assert_eq!(paths(&got), paths(&want), "resident {resident}");
            // The one filtered ranking: the keep filter and the exclusion agree.
            let keep = |id: i64| id != want[0].id;
            let kept = approx.rank(&store, &query, &search, Some(&keep)).unwrap();
            let excluded = approx
                .rank_excluding(&store, &query, &search, &[want[0].path.clone()])
                .unwrap();
            assert_eq!(kept.len(), 5);
            assert_eq!(paths(&kept[..4]), paths(&want[1..]));
            assert_eq!(paths(&kept), paths(&excluded));
        }

        // A commit the graph has not seen: exact search until the next sync.
        let tx = store.transaction().unwrap();
        write::bump_generation(&tx).unwrap();
        tx.commit().unwrap();
        let stale = Searcher::open(&store, model, options(10, false)).unwrap();
        assert!(!stale.is_approximate());
        assert_eq!(stale.generation(), store.generation().unwrap());
    }
}
