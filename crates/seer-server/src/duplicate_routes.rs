//! `GET /v1/duplicates`: the index's groups of near-duplicate files, as `seer
//! dupes` finds them (see [`seer_index::dupes`]), a page of groups at a time.
//!
//! The threshold is the request's, else the one measured before for the model,
//! else measured now with the served model on altered copies of indexed photos
//! and remembered in the index, as `seer dupes` does: only the first request
//! for a model (or one with `calibrate`) pays for it. The groups of the last
//! threshold asked for are kept until the index changes, so further pages
//! cost nothing more.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use seer_engine::EmbedOptions;
use seer_index::dupes::{measure_and_remember, stored_calibration, Calibration, Neighbours, Watch};
use seer_index::{ModelInfo, Store, VectorSet};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{described, flag, page_bounds, AppStateRef, Params};
use crate::error::{ApiError, ApiResult};
use crate::models::Served;
use crate::state::AppState;

/// Neighbours a file's duplicates are looked for among, at most.
const MAX_NEIGHBOURS: usize = 100;

/// Files of one group an answer lists, at most: a low threshold can chain a
/// whole library into one group, which no page could show.
const MAX_FILES_SHOWN: usize = 200;

/// Photos a threshold's measurement alters (as `seer dupes --sample`'s default).
const CALIBRATION_SAMPLE: usize = 100;

#[derive(Deserialize)]
pub struct DuplicatesParams {
    /// A served model (default: the server's default model).
    model: Option<String>,
    /// Cosine similarity at or above which two files are duplicates.
    threshold: Option<f32>,
    /// Measure the threshold again: true or false.
    calibrate: Option<String>,
    /// Nearest files examined for each file.
    neighbours: Option<usize>,
    /// Compare every file with every other even where the index has its
    /// graph: true or false.
    exact: Option<String>,
    /// Groups in this page, and groups skipped before it.
    k: Option<usize>,
    offset: Option<usize>,
}

pub async fn duplicates(
    State(state): AppStateRef,
    Params(params): Params<DuplicatesParams>,
) -> ApiResult<Json<Value>> {
    let (k, offset) = page_bounds(params.k, params.offset)?;
    if let Some(t) = params.threshold {
        if !(-1.0..=1.0).contains(&t) {
            return Err(ApiError::bad_request(format!(
                "threshold must be a cosine similarity, from -1 to 1, not {t}"
            )));
        }
    }
    let neighbours = params.neighbours.unwrap_or(10);
    if !(1..=MAX_NEIGHBOURS).contains(&neighbours) {
        return Err(ApiError::bad_request(format!(
            "neighbours must be 1 to {MAX_NEIGHBOURS}, not {neighbours}"
        )));
    }
    let calibrate = flag(params.calibrate.as_deref(), "calibrate")?;
    let exact = flag(params.exact.as_deref(), "exact")?;
    let served = state.models.pick(params.model.as_deref())?;
    let st = state.clone();
    let answer = tokio::task::spawn_blocking(move || -> ApiResult<Value> {
        let store = st.store()?;
        let data = served.search_data(&store, st.ann_threshold)?;
        let model = data.searcher.model();
        // The server's search data keeps the vectors in memory.
        let vectors = data
            .searcher
            .vectors()
            .ok_or_else(|| ApiError::internal("the search data holds no vectors"))?;
        let (threshold, calibration) = match params.threshold {
            Some(t) => (t, None),
            None => {
                let (c, measured) = threshold_of(&st, &served, &store, model, vectors, calibrate)?;
                (c.threshold, Some((c, measured)))
            }
        };
        let via = Neighbours::as_searched(&data.searcher, exact);
        let groups = data.duplicates(vectors, threshold, neighbours, via);
        let total = groups.len();
        let page = groups
            .iter()
            .skip(offset)
            .take(k)
            .map(|g| {
                let files = g
                    .ids
                    .iter()
                    .zip(&g.paths)
                    .zip(&g.scores)
                    .take(MAX_FILES_SHOWN)
                    .map(|((&id, path), &score)| {
                        let mut file = described(&store, id, path)?;
                        file["score"] = json!(score);
                        Ok(file)
                    })
                    .collect::<ApiResult<Vec<Value>>>()?;
                Ok(json!({ "size": g.ids.len(), "files": files }))
            })
            .collect::<ApiResult<Vec<Value>>>()?;
        let mut answer = json!({
            "model": model.name,
            "threshold": threshold,
            "neighbours": neighbours,
            "approximate": matches!(via, Neighbours::Graph(_)),
            "total": total,
            "offset": offset,
            "more": total > offset + page.len(),
            "groups": page,
        });
        if let Some((c, measured)) = calibration {
            answer["calibration"] = json!(c);
            answer["calibration"]["measured"] = json!(measured);
        }
        Ok(answer)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(answer))
}

/// The model's remembered threshold, unless `calibrate`; else measured with
/// the served model's image tower and remembered (a failure to remember is
/// logged: the groups still come, and the next request measures again); and
/// whether this request measured it. One request measures at a time: those
/// that come meanwhile take its threshold.
fn threshold_of(
    state: &Arc<AppState>,
    served: &Served,
    store: &Store,
    model: &ModelInfo,
    vectors: &VectorSet,
    calibrate: bool,
) -> ApiResult<(Calibration, bool)> {
    if !calibrate {
        if let Some(c) = stored_calibration(store, model)? {
            return Ok((c, false));
        }
    }
    let _one_at_a_time = served
        .measuring_threshold
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Measured by the request this one waited for: that threshold.
    if !calibrate {
        if let Some(c) = stored_calibration(store, model)? {
            return Ok((c, false));
        }
    }
    let encoder = served.model.image().map_err(ApiError::bad_request)?;
    let options = EmbedOptions {
        limits: state.limits,
        ..EmbedOptions::default()
    };
    let (c, not_remembered) = measure_and_remember(
        &state.index_dir,
        model,
        encoder,
        vectors,
        CALIBRATION_SAMPLE,
        &options,
        Watch::default(),
    )?;
    if let Some(e) = not_remembered {
        tracing::warn!(
            "{e}; the duplicate threshold of {} was not remembered and is measured again next time",
            model.name
        );
    }
    tracing::info!(
        "duplicate threshold of {} measured: {:.4} on {} photos",
        model.name,
        c.threshold,
        c.images
    );
    Ok((c, true))
}
