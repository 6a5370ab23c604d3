//! The models a server serves. Each is loaded once at start and has its own
//! batching thread (a batch runs one model) and its own search data (one
//! [`Searcher`] per index generation). A request names one with `model`; without
//! it, the default model answers: the first one given to [`crate::app`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use seer_engine::LoadedModel;
use seer_index::dupes::{group_via, DupeGroup, Neighbours};
use seer_index::{ModelInfo, Searcher, SearcherOptions, Store, VectorSet};
use serde_json::{json, Value};

use crate::batcher::Batcher;
use crate::classifiers::PromptCache;
use crate::error::{ApiError, ApiResult};

/// What searches need as of one database generation: the model's [`Searcher`]
/// (vectors resident, for "more like this" by id) and the capture times the
/// date filters read.
pub struct SearchData {
    pub searcher: Searcher,
    /// EXIF capture times by file id (files without one are absent), for date filters.
    pub taken: HashMap<i64, String>,
    /// The last duplicate groups asked for, so the next page of them is not
    /// computed again (every file against every other).
    duplicates: Mutex<Option<DuplicateGroups>>,
}

/// Duplicate groups at a threshold, with so many neighbours examined, found
/// through the graph or not.
struct DuplicateGroups {
    threshold: f32,
    neighbours: usize,
    approximate: bool,
    groups: Arc<Vec<DupeGroup>>,
}

impl SearchData {
    /// The groups of `vectors` (this generation's) at `threshold` among
    /// `neighbours` neighbours found `via` the graph or the exact scan: the
    /// last ones asked for again, or computed.
    pub fn duplicates(
        &self,
        vectors: &VectorSet,
        threshold: f32,
        neighbours: usize,
        via: Neighbours<'_>,
    ) -> Arc<Vec<DupeGroup>> {
        let approximate = matches!(via, Neighbours::Graph(_));
        let mut last = self.duplicates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = last.as_ref().filter(|d| {
            (d.threshold, d.neighbours, d.approximate) == (threshold, neighbours, approximate)
        }) {
            return kept.groups.clone();
        }
        let groups = Arc::new(group_via(vectors, threshold, neighbours, via));
        *last = Some(DuplicateGroups {
            threshold,
            neighbours,
            approximate,
            groups: groups.clone(),
        });
        groups
    }
}

/// One served model with its batcher and its cached search data.
pub struct Served {
    pub model: LoadedModel,
    pub batcher: Batcher,
    /// Embeddings of recent `/v1/classify` prompts.
    pub prompts: PromptCache,
    /// Held while this model's duplicate threshold is measured: requests
    /// that arrive meanwhile wait for that threshold instead of measuring
    /// it again (hundreds of embeddings each).
    pub measuring_threshold: Mutex<()>,
    cache: Mutex<Option<Arc<SearchData>>>,
}

impl Served {
    /// This model's vectors in the index (409 when it holds none).
    pub fn info(&self, store: &Store) -> ApiResult<ModelInfo> {
        store
            .choose_model(Some(&self.model.id))
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))
    }

    /// Search data for the current database generation, reloaded only when the
    /// index changed since this model's last search.
    pub fn search_data(&self, store: &Store, ann_threshold: usize) -> ApiResult<Arc<SearchData>> {
        let stamp = store.generation_stamp()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(data) = cache.as_ref().filter(|d| d.searcher.stamp() == stamp) {
            return Ok(data.clone());
        }
        let info = self.info(store)?;
        let options = SearcherOptions {
            ann_threshold,
            resident: true,
        };
        let searcher = Searcher::open(store, info, options)?;
        let taken = store.capture_times()?;
        let data = Arc::new(SearchData {
            searcher,
            taken,
            duplicates: Mutex::new(None),
        });
        *cache = Some(data.clone());
        Ok(data)
    }
}

/// Batching settings shared by every model's batcher.
#[derive(Clone, Copy, Debug)]
pub struct BatchSettings {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue_capacity: usize,
}

/// Every served model, the default first.
pub struct ServedModels {
    list: Vec<Arc<Served>>,
}

impl ServedModels {
    /// Starts one batcher per model. `models` must not be empty; the first is
    /// the default.
    pub fn start(models: Vec<LoadedModel>, batching: BatchSettings) -> Self {
        assert!(!models.is_empty(), "a server needs at least one model");
        let list = models
            .into_iter()
            .map(|model| {
                let batcher = Batcher::start(
                    model.clone(),
                    batching.max_batch,
                    batching.max_wait,
                    batching.queue_capacity,
                );
                Arc::new(Served {
                    model,
                    batcher,
                    prompts: PromptCache::default(),
                    measuring_threshold: Mutex::new(()),
                    cache: Mutex::new(None),
                })
            })
            .collect();
        Self { list }
    }

    pub fn default_model(&self) -> &Arc<Served> {
        &self.list[0]
    }

    pub fn all(&self) -> &[Arc<Served>] {
        &self.list
    }

    /// The model a request names, or the default without one. A name is the id
    /// the index records (`openai/clip-vit-base-patch32`, a folder's real path),
    /// an alias of it (`ViT-B-32`), or a folder's last component when only one
    /// served model ends so. Anything else is 400 with the served models listed.
    pub fn pick(&self, requested: Option<&str>) -> ApiResult<Arc<Served>> {
        let Some(name) = requested.map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(self.default_model().clone());
        };
        if let Some(exact) = self.list.iter().find(|s| s.model.id == name) {
            return Ok(exact.clone());
        }
        let alias = seer_hub::resolve_alias(name);
        let loose: Vec<&Arc<Served>> = self
            .list
            .iter()
            .filter(|s| {
                let id = s.model.id.as_str();
                id == alias || Path::new(id).file_name().is_some_and(|f| f == name)
            })
            .collect();
        match loose.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ApiError::bad_request(format!(
                "this server does not serve model '{name}'; it serves {}",
                self.names()
            ))),
            _ => Err(ApiError::bad_request(format!(
                "'{name}' names more than one served model; give the full id: {}",
                self.names()
            ))),
        }
    }

    /// The served ids, the default marked, for error messages.
    fn names(&self) -> String {
        self.list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    format!("{} (default)", s.model.id)
                } else {
                    s.model.id.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The index ids of the served models that the index holds (for the image
    /// routes: a file indexed under any of them may be served).
    pub fn index_ids(&self, store: &Store) -> ApiResult<Vec<i64>> {
        let held = store.models()?;
        Ok(self
            .list
            .iter()
            .filter_map(|s| held.iter().find(|m| m.name == s.model.id).map(|m| m.id))
            .collect())
    }

    /// What `/v1/models` answers: each served model, what it can do and how many
    /// vectors of it the index holds.
    pub fn describe(&self, store: &Store) -> ApiResult<Value> {
        let held = store.models()?;
        let models: Vec<Value> = self
            .list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let m = &s.model;
                let vectors = held
                    .iter()
                    .find(|h| h.name == m.id)
                    .map_or(0, |h| h.vectors);
                json!({
                    "id": m.id,
                    "family": m.family,
                    "dim": m.embed_dim(),
                    "text_tower": m.text.is_some(),
                    "image_tower": m.image.is_some(),
                    "score_rule": m.score_rule().ok(),
                    "vectors": vectors,
                    "default": i == 0,
                })
            })
            .collect();
        Ok(json!({ "default": self.default_model().model.id, "models": models }))
    }
}
