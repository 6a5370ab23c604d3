//! What every request can reach: the model, the batcher, the index, the running
//! index job, metrics and the current generation's [`Searcher`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use seer_engine::LoadedModel;
use seer_image::DecodeLimits;
use seer_index::{IndexSummary, ModelInfo, Searcher, SearcherOptions, Store};

use crate::batcher::Batcher;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct AppState {
    pub model: LoadedModel,
    pub batcher: Batcher,
    pub index_dir: PathBuf,
    pub token: Option<String>,
    pub limits: DecodeLimits,
    pub metrics: Metrics,
    pub job: Mutex<JobState>,
    pub ann_threshold: usize,
    pub cache: Mutex<Option<Arc<SearchData>>>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobState {
    pub running: bool,
    pub planned: usize,
    pub done: usize,
    pub last: Option<IndexSummary>,
    pub error: Option<String>,
}

/// What searches need as of one database generation: the served model's
/// [`Searcher`] (vectors resident, for "more like this" by id) and the capture
/// times the date filters read.
pub struct SearchData {
    pub searcher: Searcher,
    /// EXIF capture times by file id (files without one are absent), for date filters.
    pub taken: HashMap<i64, String>,
}

impl AppState {
    /// Whether a request may use the protected routes: no token is configured,
    /// or it carries `Authorization: Bearer TOKEN` (the scheme in any case).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credentials)| credentials.trim());
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
    }

    /// A read-only connection for this request (SQLite connections are not shared
    /// across threads; opening one costs well under a millisecond).
    pub fn store(&self) -> ApiResult<Store> {
        Store::open_read_only(&self.index_dir).map_err(ApiError::from)
    }

    /// The model whose vectors this server searches: the one it embeds with.
    pub fn model_info(&self, store: &Store) -> ApiResult<ModelInfo> {
        store
            .choose_model(Some(&self.model.id))
            .map_err(|e| ApiError::new(axum::http::StatusCode::CONFLICT, e))
    }

    /// Search data for the current database generation, reloaded only when the
    /// index changed since the last request.
    pub fn search_data(&self, store: &Store) -> ApiResult<Arc<SearchData>> {
        let generation = store.generation()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(data) = cache
            .as_ref()
            .filter(|d| d.searcher.generation() == generation)
        {
            return Ok(data.clone());
        }
        let model = self.model_info(store)?;
        let options = SearcherOptions {
            ann_threshold: self.ann_threshold,
            resident: true,
        };
        let searcher = Searcher::open(store, model, options)?;
        let taken = store.capture_times()?;
        let data = Arc::new(SearchData { searcher, taken });
        *cache = Some(data.clone());
        Ok(data)
    }
}
