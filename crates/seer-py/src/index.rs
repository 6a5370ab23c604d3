//! The native `Index`: an index folder that `seer index` made, searched as
//! `seer search` searches it ([`seer_index::find::Plan`]).
//!
//! Each search opens the index read-only afresh, so it sees the latest
//! finished `seer index` run and never blocks one; the model a text or image
//! query needs is loaded at the first such search and kept (the index records
//! which model made its vectors, so a search always uses that one).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use seer_engine::{EmbedOptions, ImageTextMatcher, LoadOptions, LoadedModel};
use seer_index::dupes::{
    group_watched, measure_and_remember, stored_calibration, Calibration, Neighbours, Watch,
};
use seer_index::find::Plan;
use seer_index::pathcodec::{indexed_key, to_path};
use seer_index::{Query, SearchMode, SearchOptions, Searcher, SearcherOptions, Store};

use crate::convert::{floats, pool_error, seer_error};
use crate::model::{decode_limits, load_model, load_options, Model};
use crate::pool;

/// One result as Python receives it: `(path, score, time, caption, bm25,
/// fused, matched, (rerank scores, rerank error))`; `score` is the cosine
/// similarity (BM25 in a words search); a reranked hit has its matching
/// scores `(itm probability, cosine)` or why it has none.
type FoundRow = (
    PathBuf,
    Option<f32>,
    Option<f64>,
    Option<String>,
    Option<f32>,
    Option<f32>,
    Vec<&'static str>,
    (Option<(f32, f32)>, Option<String>),
);

/// A duplicate threshold as Python receives it: `(threshold, photos used,
/// altered copies, their median similarity, pairs of different photos, how
/// many of them score above the threshold, the highest of them)`.
type Threshold = (f32, usize, usize, f32, usize, usize, f32);

/// Near-duplicate groups as Python receives them: each group's paths and
/// their similarities to its first.
type Groups = Vec<(Vec<PathBuf>, Vec<f32>)>;

/// How a search reranks its best hits: with this matching head (of the model
/// `model_id`, read with `options`' batch size and limits), the first `depth`
/// hits, videos' frames through `ffmpeg`.
struct Rerank<'a> {
    matcher: &'a dyn ImageTextMatcher,
    model_id: &'a str,
    options: &'a EmbedOptions,
    depth: usize,
    ffmpeg: Option<seer_video::Ffmpeg>,
}

#[pyclass(frozen, module = "seer._seer", name = "Index")]
pub struct Index {
    dir: PathBuf,
    /// The model whose vectors to search, as the index records names.
    model: Option<String>,
    load: LoadOptions,
    offline: bool,
    embed: EmbedOptions,
    ann_threshold: usize,
    /// The model loaded by the first search that needed one.
    loaded: Mutex<Option<LoadedModel>>,
}

#[pymethods]
impl Index {
    /// Opens the index folder `dir` (read-only, checked now so a wrong path
    /// fails here); `model` names which of its models' vectors to search.
    #[new]
    #[pyo3(signature = (dir, model, load, offline, batch_size, max_pixels))]
    fn new(
        dir: PathBuf,
        model: Option<String>,
        load: (String, String, Option<PathBuf>),
        offline: bool,
        batch_size: usize,
        max_pixels: Option<u64>,
    ) -> PyResult<Self> {
        let store = Store::open_read_only(&dir).map_err(seer_error)?;
        let model = model.as_deref().map(seer_hub::model_key);
        if let Some(name) = &model {
            store.choose_model(Some(name)).map_err(seer_error)?;
        }
        let (device, precision, tokenizer) = load;
        let what = format!("the model of index '{}'", dir.display());
        let load = load_options(&device, &precision, tokenizer, &what)?;
        Ok(Self {
            dir: store.dir().to_path_buf(),
            model,
            load,
            offline,
            embed: EmbedOptions {
                batch_size,
                normalize: true,
                limits: decode_limits(max_pixels),
            },
            ann_threshold: seer_index::ann::ANN_THRESHOLD,
            loaded: Mutex::new(None),
        })
    }

    #[getter]
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Files in the index.
    fn __len__(&self) -> PyResult<usize> {
        let store = Store::open_read_only(&self.dir).map_err(seer_error)?;
        store.file_count().map_err(seer_error)
    }

    /// The index's models as `(name, dim, vectors)`.
    fn models(&self) -> PyResult<Vec<(String, usize, usize)>> {
        let store = Store::open_read_only(&self.dir).map_err(seer_error)?;
        Ok(store
            .models()
            .map_err(seer_error)?
            .into_iter()
            .map(|m| (m.name, m.dim, m.vectors))
            .collect())
    }

    /// Ranks the indexed files for a query as `seer search` does: the texts
    /// and images (paths) added, the `subtract_*` ones subtracted, `like`
    /// the indexed files whose vectors join it; `mode` auto, vector, hybrid or
    /// words; the best `k`, best first.
    /// With `rerank` (a BLIP retrieval `Model`), the first `rerank_depth` hits
    /// are put in order of its image-text matching probability for the texts
    /// (as `seer search --rerank`); a video hit is read as its best frame,
    /// through `ffmpeg` (on PATH when None).
    #[pyo3(signature = (texts, images, like, subtract_texts, subtract_images, mode, k, min_score, path_glob, rerank, rerank_depth, ffmpeg))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        images: Vec<PathBuf>,
        like: Vec<PathBuf>,
        subtract_texts: Vec<String>,
        subtract_images: Vec<PathBuf>,
        mode: &str,
        k: usize,
        min_score: Option<f32>,
        path_glob: Option<String>,
        rerank: Option<PyRef<'_, Model>>,
        rerank_depth: usize,
        ffmpeg: Option<PathBuf>,
    ) -> PyResult<Vec<FoundRow>> {
        let rerank = match &rerank {
            None => None,
            Some(model) => {
                let (loaded, options) = model.loaded();
                let matcher = loaded.matcher().map_err(seer_error)?;
                if texts.is_empty() {
                    return Err(seer_error(
                        "rerank needs a text query: the matching model reads its words with each photo",
                    ));
                }
                // ffmpeg is needed only for video hits: looked for now, and
                // its absence is each video hit's reason (one given by name
                // must be there).
                let ffmpeg = match seer_video::Ffmpeg::find(ffmpeg.as_deref()) {
                    Ok(found) => Some(found),
                    Err(e) if ffmpeg.is_some() => return Err(seer_error(e)),
                    Err(_) => None,
                };
                Some(Rerank {
                    matcher,
                    model_id: &loaded.id,
                    options,
                    depth: rerank_depth,
                    ffmpeg,
                })
            }
        };
        let mode = SearchMode::parse(mode)
            .ok_or_else(|| seer_error(format!("unknown mode '{mode}' ({})", SearchMode::NAMES)))?;
        let query = Query {
            texts,
            images,
            like: like.iter().map(|p| indexed_key(p)).collect(),
            subtract_texts,
            subtract_images,
        };
        let options = SearchOptions {
            k: rerank.as_ref().map_or(k, |r| k.max(r.depth)),
            min_score,
            path_glob,
        };
        let words = query.texts.join(" ");
        let mut rows = py
            .detach(|| pool::run(|| self.find(&query, mode, &options, &words, rerank.as_ref())))
            .map_err(pool_error)??;
        rows.truncate(k);
        Ok(rows)
    }

    /// The files and their vectors as the index stores them (for the model
    /// chosen at opening): paths in the index's order, and the vectors as one
    /// row-major float32 matrix of `dim` columns.
    fn vectors<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Vec<PathBuf>, Bound<'py, PyByteArray>, usize)> {
        let (paths, data, dim) = py.detach(|| -> PyResult<_> {
            let (store, model) = self.open_model()?;
            let set = store.load_vectors(&model).map_err(seer_error)?;
            let paths: Vec<PathBuf> = set.paths.iter().map(|p| to_path(p)).collect();
            Ok((paths, set.data, set.dim))
        })?;
        let rows: Vec<Option<&[f32]>> = data.chunks_exact(dim.max(1)).map(Some).collect();
        Ok((paths, floats(py, &rows, dim)?, dim))
    }

    /// The cosine similarity at or above which two files are duplicates, as
    /// `seer dupes` chooses it: the one measured before for the model, else
    /// (or with `calibrate`) measured now on `sample` indexed photos and
    /// remembered; and why it could not be remembered, where it could not.
    fn duplicate_threshold(
        &self,
        py: Python<'_>,
        calibrate: bool,
        sample: usize,
    ) -> PyResult<(Threshold, Option<String>)> {
        pool::run_interruptible(py, |cancel| {
            let (store, model) = self.open_model()?;
            let vectors = store.load_vectors(&model).map_err(seer_error)?;
            let (c, not_remembered) =
                self.threshold_of(&store, &model, &vectors, calibrate, sample, cancel)?;
            Ok((
                (
                    c.threshold,
                    c.images,
                    c.duplicate_pairs,
                    c.duplicate_median,
                    c.distinct_pairs,
                    c.distinct_above,
                    c.distinct_max,
                ),
                not_remembered,
            ))
        })?
    }

    /// Groups of near-duplicate files as `seer dupes` finds them, at
    /// `threshold` or at [`Self::duplicate_threshold`]'s; each file's
    /// `neighbours` nearest are examined, through the index's graph where it
    /// has one unless `exact`. Also why a threshold measured now could not be
    /// remembered.
    #[pyo3(signature = (threshold, calibrate, sample, neighbours, exact))]
    fn duplicates(
        &self,
        py: Python<'_>,
        threshold: Option<f32>,
        calibrate: bool,
        sample: usize,
        neighbours: usize,
        exact: bool,
    ) -> PyResult<(Groups, Option<String>)> {
        pool::run_interruptible(py, |cancel| {
            let (store, model) = self.open_model()?;
            let options = SearcherOptions {
                ann_threshold: self.ann_threshold,
                resident: true,
            };
            let searcher = Searcher::open(&store, model, options).map_err(seer_error)?;
            let (model, vectors) = match searcher.vectors() {
                Some(vectors) => (searcher.model(), vectors),
                None => return Err(seer_error("internal error: the searcher holds no vectors")),
            };
            let (threshold, not_remembered) = match threshold {
                Some(t) => (t, None),
                None => {
                    let (c, not_remembered) =
                        self.threshold_of(&store, model, vectors, calibrate, sample, cancel)?;
                    (c.threshold, not_remembered)
                }
            };
            let via = Neighbours::as_searched(&searcher, exact);
            let watch = Watch {
                progress: None,
                stop: Some(cancel),
            };
            let groups = group_watched(vectors, threshold, neighbours, via, watch)
                .map_err(seer_error)?
                .into_iter()
                .map(|g| (g.paths.iter().map(|p| to_path(p)).collect(), g.scores))
                .collect();
            Ok((groups, not_remembered))
        })?
    }

    fn __repr__(&self) -> String {
        format!("seer.Index({:?})", self.dir)
    }
}

impl Index {
    /// [`Self::search`]'s work, on the shared pool.
    fn find(
        &self,
        query: &Query,
        mode: SearchMode,
        options: &SearchOptions,
        words: &str,
        rerank: Option<&Rerank>,
    ) -> PyResult<Vec<FoundRow>> {
        let store = Store::open_read_only(&self.dir).map_err(seer_error)?;
        let plan = Plan::new(&store, query, mode, self.model.as_deref()).map_err(seer_error)?;
        if plan.mode == SearchMode::Words && options.min_score.is_some() {
            return Err(seer_error(
                "min_score is a cosine similarity, which a words search has none of; use mode=\"hybrid\"",
            ));
        }
        let loaded = match plan.model_to_load(query) {
            Some(name) => Some(self.model_named(name)?),
            None => None,
        };
        let found = plan
            .run(
                &store,
                query,
                loaded.as_ref(),
                &self.embed,
                options,
                self.ann_threshold,
            )
            .map_err(seer_error)?;
        let ranked = match rerank {
            None => found.into_iter().map(|f| (f, None)).collect(),
            Some(r) => seer_index::rerank::rerank_found(
                &store,
                r.matcher,
                words,
                found,
                r.depth,
                r.ffmpeg.as_ref(),
                &r.options.limits,
                r.options.batch_size,
            )
            .map_err(|e| seer_error(format!("reranking with '{}': {e}", r.model_id)))?,
        };
        ranked
            .into_iter()
            .map(|(f, scored)| {
                let caption = store.caption_of(f.id).map_err(seer_error)?.map(|c| c.text);
                let score = match plan.mode {
                    SearchMode::Words => f.bm25,
                    _ => f.similarity,
                };
                let matched = f.matched();
                Ok((
                    to_path(&f.path),
                    score,
                    f.time,
                    caption,
                    f.bm25,
                    f.fused,
                    matched,
                    match scored {
                        Some(Ok(s)) => (Some((s.itm_probability, s.similarity)), None),
                        Some(Err(cause)) => (None, Some(cause)),
                        None => (None, None),
                    },
                ))
            })
            .collect()
    }

    /// The index, opened read-only afresh, and the model whose vectors it
    /// searches.
    fn open_model(&self) -> PyResult<(Store, seer_index::ModelInfo)> {
        let store = Store::open_read_only(&self.dir).map_err(seer_error)?;
        let model = store
            .choose_model(self.model.as_deref())
            .map_err(seer_error)?;
        Ok((store, model))
    }

    /// The duplicate threshold stored for `model`, unless `calibrate`; else
    /// measured with the model on `sample` of `vectors`' photos and
    /// remembered (see [`measure_and_remember`]).
    fn threshold_of(
        &self,
        store: &Store,
        model: &seer_index::ModelInfo,
        vectors: &seer_index::VectorSet,
        calibrate: bool,
        sample: usize,
        cancel: &AtomicBool,
    ) -> PyResult<(Calibration, Option<String>)> {
        if !calibrate {
            if let Some(c) = stored_calibration(store, model).map_err(seer_error)? {
                return Ok((c, None));
            }
        }
        let loaded = self.model_named(&model.name)?;
        let encoder = loaded.image().map_err(seer_error)?;
        let watch = Watch {
            progress: None,
            stop: Some(cancel),
        };
        let (c, not_remembered) = measure_and_remember(
            &self.dir,
            model,
            encoder,
            vectors,
            sample,
            &self.embed,
            watch,
        )
        .map_err(seer_error)?;
        Ok((c, not_remembered.map(|e| e.to_string())))
    }

    /// The model named `name` (as the index recorded it), loaded once.
    fn model_named(&self, name: &str) -> PyResult<LoadedModel> {
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| seer_error("internal error: a search panicked while loading the model"))?;
        if let Some(model) = loaded.as_ref().filter(|m| m.id == name) {
            return Ok(model.clone());
        }
        seer_hub::set_offline(self.offline);
        let (model, _) = load_model(std::path::Path::new(name), &self.load)
            .map_err(|e| seer_error(format!("cannot load model '{name}': {e}")))?;
        *loaded = Some(model.clone());
        Ok(model)
    }
}
