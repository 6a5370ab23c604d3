//! The HTTP routes. Files are addressed by their index id, never by path, and
//! only files of the index's roots are ever read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Multipart, Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::batcher::{SubmitError, Work};
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, JobState, SearchData};

type AppStateRef = State<Arc<AppState>>;

pub async fn page() -> Html<&'static str> {
    Html(include_str!("../assets/index.html"))
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/app.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/style.css"),
    )
}

pub async fn healthz(State(state): AppStateRef) -> Json<Value> {
    let vectors = state
        .store()
        .ok()
        .and_then(|s| state.model_info(&s).ok())
        .map(|m| m.vectors)
        .unwrap_or(0);
    Json(json!({ "status": "ok", "model": state.clip.id, "vectors": vectors }))
}

pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

pub async fn metrics(State(state): AppStateRef) -> impl IntoResponse {
    let stats = &state.batcher.stats;
    let load =
        |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let gauges = [
        (
            "seer_queue_depth",
            "Items waiting for the model.",
            state.batcher.depth() as f64,
        ),
        (
            "seer_batches",
            "Model batches run since start.",
            load(&stats.batches),
        ),
        (
            "seer_batch_items",
            "Items embedded in those batches.",
            load(&stats.items),
        ),
        (
            "seer_queue_rejections",
            "Requests refused with 503 because the queue was full.",
            load(&stats.rejected),
        ),
    ];
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
}

// ---------------------------------------------------------------- embedding

async fn embed_text(state: &AppState, text: String) -> ApiResult<Vec<f32>> {
    wait(state.batcher.submit(Work::Text(text))).await
}

/// Decodes and preprocesses off the async threads, then joins a model batch.
async fn embed_image(state: &Arc<AppState>, bytes: Bytes, name: String) -> ApiResult<Vec<f32>> {
    let st = state.clone();
    let pixels = tokio::task::spawn_blocking(move || {
        let decoded = seer_image::decode_bytes_full(&bytes, &name, &st.limits)?;
        Ok::<_, seer_image::ImageError>(seer_image::preprocess_decoded(
            &decoded,
            &st.clip.preprocess,
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    wait(state.batcher.submit(Work::Pixels(pixels))).await
}

async fn wait(
    submitted: Result<tokio::sync::oneshot::Receiver<Result<Vec<f32>, String>>, SubmitError>,
) -> ApiResult<Vec<f32>> {
    let rx = submitted.map_err(|e| match e {
        SubmitError::Busy => ApiError::busy(),
        SubmitError::Stopped => ApiError::internal("the model thread stopped"),
    })?;
    rx.await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)
}

#[derive(Deserialize)]
pub struct EmbedRequest {
    #[serde(default)]
    texts: Vec<String>,
    /// Base64 of image files.
    #[serde(default)]
    images: Vec<String>,
}

pub async fn embed(
    State(state): AppStateRef,
    Json(req): Json<EmbedRequest>,
) -> ApiResult<Json<Value>> {
    if req.texts.is_empty() && req.images.is_empty() {
        return Err(ApiError::bad_request(
            "give \"texts\" and/or \"images\" (base64)",
        ));
    }
    const MAX_ITEMS: usize = 256;
    if req.texts.len() + req.images.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ITEMS} items per request"
        )));
    }
    let mut jobs = Vec::new();
    for t in req.texts {
        let st = state.clone();
        jobs.push((
            t.clone(),
            tokio::spawn(async move { embed_text(&st, t).await }),
        ));
    }
    for (i, b64) in req.images.into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ApiError::bad_request(format!("image {i}: not base64 ({e})")))?;
        let st = state.clone();
        let name = format!("image {i}");
        jobs.push((
            name.clone(),
            tokio::spawn(async move { embed_image(&st, Bytes::from(bytes), name).await }),
        ));
    }
    let mut out = Vec::new();
    for (input, job) in jobs {
        let embedding = job.await.map_err(ApiError::internal)??;
        out.push(json!({ "input": input, "embedding": embedding }));
    }
    Ok(Json(
        json!({ "model": state.clip.id, "dim": state.clip.model.embed_dim(), "embeddings": out }),
    ))
}

// ---------------------------------------------------------------- multipart

/// Text fields and the first uploaded file of a multipart form.
struct Form {
    fields: HashMap<String, String>,
    image: Option<(String, Bytes)>,
}

async fn read_form(mut multipart: Multipart) -> ApiResult<Form> {
    let mut form = Form {
        fields: HashMap::new(),
        image: None,
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("bad multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" {
            let file = field.file_name().unwrap_or("upload").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::bad_request(format!("image upload: {e}")))?;
            form.image = Some((file, bytes));
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::bad_request(format!("field {name}: {e}")))?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

// ---------------------------------------------------------------- classify

pub async fn classify(State(state): AppStateRef, multipart: Multipart) -> ApiResult<Json<Value>> {
    let form = read_form(multipart).await?;
    let (name, bytes) = form
        .image
        .ok_or_else(|| ApiError::bad_request("upload the image as field \"image\""))?;
    let labels: Vec<String> = form
        .fields
        .get("labels")
        .map(|l| {
            l.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if labels.is_empty() || labels.len() > 1000 {
        return Err(ApiError::bad_request(
            "give 1 to 1000 comma-separated \"labels\"",
        ));
    }
    let templates = match form
        .fields
        .get("templates")
        .map(String::as_str)
        .unwrap_or("default")
    {
        "default" => seer_engine::prompts::DEFAULT_TEMPLATES,
        "imagenet" => seer_engine::prompts::IMAGENET_TEMPLATES,
        other => {
            return Err(ApiError::bad_request(format!(
                "templates must be default or imagenet, not '{other}'"
            )))
        }
    };
    let image = embed_image(&state, bytes, name).await?;
    // Class embeddings: every prompt joins the shared batches like any text.
    let mut prompt_jobs = Vec::new();
    for label in &labels {
        for t in templates {
            let st = state.clone();
            let prompt = seer_engine::prompts::fill(t, label);
            prompt_jobs.push(tokio::spawn(async move { embed_text(&st, prompt).await }));
        }
    }
    let mut prompt_embeddings = Vec::with_capacity(prompt_jobs.len());
    for job in prompt_jobs {
        prompt_embeddings.push(job.await.map_err(ApiError::internal)??);
    }
    let classifier = seer_engine::ZeroShotClassifier::from_prompt_embeddings(
        &labels,
        &prompt_embeddings,
        templates.len(),
        state.clip.model.logit_scale(),
    );
    let probabilities = classifier.probabilities(&image);
    let predictions = classifier.top_k(&probabilities, labels.len());
    Ok(Json(json!({ "predictions": predictions })))
}

// ---------------------------------------------------------------- search

#[derive(Deserialize, Default)]
pub struct SearchParams {
    q: Option<String>,
    k: Option<usize>,
    /// Skip this many of the best results (the next page).
    offset: Option<usize>,
    min_score: Option<f32>,
    path: Option<String>,
    like: Option<i64>,
    /// EXIF capture date range (see [`seer_index::dates::CaptureRange`]).
    from: Option<String>,
    to: Option<String>,
}

/// The deepest result a search may page to (ranking cost grows with it).
const MAX_DEPTH: usize = 10_000;

pub async fn search_get(
    State(state): AppStateRef,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<Value>> {
    run_search(&state, params, None).await
}

pub async fn search_post(
    State(state): AppStateRef,
    multipart: Multipart,
) -> ApiResult<Json<Value>> {
    let form = read_form(multipart).await?;
    let field = |k: &str| form.fields.get(k).filter(|v| !v.is_empty());
    fn parsed<T: std::str::FromStr>(v: Option<&String>, what: &str) -> ApiResult<Option<T>> {
        v.map(|v| v.trim().parse())
            .transpose()
            .map_err(|_| ApiError::bad_request(what))
    }
    let params = SearchParams {
        q: field("q").cloned(),
        k: parsed(field("k"), "k must be a number")?,
        offset: parsed(field("offset"), "offset must be a number")?,
        min_score: parsed(field("min_score"), "min_score must be a number")?,
        path: field("path").cloned(),
        like: parsed(field("like"), "like must be an image id")?,
        from: field("from").cloned(),
        to: field("to").cloned(),
    };
    run_search(&state, params, form.image).await
}

async fn run_search(
    state: &Arc<AppState>,
    params: SearchParams,
    image: Option<(String, Bytes)>,
) -> ApiResult<Json<Value>> {
    let k = params.k.unwrap_or(20).clamp(1, 1000);
    let offset = params.offset.unwrap_or(0);
    if offset.saturating_add(k) > MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "offset + k must be at most {MAX_DEPTH}"
        )));
    }
    let dates =
        seer_index::dates::CaptureRange::parse(params.from.as_deref(), params.to.as_deref())?;
    let st = state.clone();
    let data = tokio::task::spawn_blocking(move || st.store().and_then(|s| st.search_data(&s)))
        .await
        .map_err(ApiError::internal)??;
    let mut query = seer_index::search::QueryCombiner::new(data.vectors.dim);
    if let Some(q) = params.q.as_ref().filter(|q| !q.trim().is_empty()) {
        query.add(&embed_text(state, q.clone()).await?, 1.0);
    }
    if let Some((name, bytes)) = image {
        query.add(&embed_image(state, bytes, name).await?, 1.0);
    }
    if let Some(id) = params.like {
        let row = data
            .vectors
            .ids
            .binary_search(&id)
            .map_err(|_| ApiError::not_found(format!("no indexed image {id}")))?;
        query.add(data.vectors.row(row), 1.0);
    }
    let query = query.finish().map_err(|_| {
        ApiError::bad_request("give q (text), an image upload, or like (an image id)")
    })?;
    // One more than the page, to tell whether another page follows.
    let options = seer_index::SearchOptions {
        k: offset + k + 1,
        min_score: params.min_score,
        path_glob: params.path,
    };
    // "More like this" never answers with the photo it started from.
    let keep = |id: i64| {
        Some(id) != params.like
            && dates
                .as_ref()
                .is_none_or(|d| d.contains(data.taken.get(&id).map(String::as_str)))
    };
    let filtered = params.like.is_some() || dates.is_some();
    let mut hits = rank_cached(&data, &query, &options, filtered.then_some(&keep))?;
    let more = hits.len() > offset + k;
    hits.truncate(offset + k);
    let page: Vec<_> = hits.into_iter().skip(offset).collect();
    let st = state.clone();
    let like = params.like;
    let (results, like) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let store = st.store()?;
        let results: Vec<Value> = page
            .iter()
            .map(|h| {
                let mut hit = described(&store, h.id, &h.path)?;
                hit["score"] = json!(h.score);
                Ok(hit)
            })
            .collect::<ApiResult<_>>()?;
        let like = like
            .map(|id| {
                let path = store.path_of(id)?.unwrap_or_default();
                described(&store, id, &path)
            })
            .transpose()?;
        Ok((results, like))
    })
    .await
    .map_err(ApiError::internal)??;
    let mut answer = json!({
        "model": data.model.name,
        "offset": offset,
        "more": more,
        "results": results,
    });
    if let Some(like) = like {
        answer["like"] = like;
    }
    Ok(Json(answer))
}

/// A file as search answers name it: id, path, links, and what the index stores
/// about it (size, modification time, dimensions, EXIF capture time).
fn described(store: &seer_index::Store, id: i64, path: &str) -> ApiResult<Value> {
    let mut v = match store.file_meta(id)? {
        Some(meta) => serde_json::to_value(meta).map_err(ApiError::internal)?,
        None => json!({ "id": id, "path": path }),
    };
    v["url"] = json!(format!("/v1/images/{id}"));
    v["thumbnail"] = json!(format!("/v1/images/{id}/thumbnail"));
    Ok(v)
}

fn rank_cached(
    data: &SearchData,
    query: &[f32],
    options: &seer_index::SearchOptions,
    keep: Option<seer_index::search::KeepId<'_>>,
) -> ApiResult<Vec<seer_index::Hit>> {
    let v = &data.vectors;
    let hits = match &data.graph {
        None => seer_index::search::rank_exact_where(v, query, options, keep)?,
        Some(graph) => seer_index::ann::rank_graph_where(
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
        )?,
    };
    Ok(hits)
}

// ---------------------------------------------------------------- images

/// The path of an indexed file, only if it lies under one of the index's roots.
fn indexed_path(state: &AppState, id: i64) -> ApiResult<PathBuf> {
    let store = state.store()?;
    let path = store
        .path_of(id)?
        .ok_or_else(|| ApiError::not_found(format!("no indexed image {id}")))?;
    let roots = store.roots()?;
    let inside = roots
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{}/", r.trim_end_matches('/'))));
    if !inside || path.split('/').any(|c| c == "..") {
        return Err(ApiError::not_found(format!("no indexed image {id}")));
    }
    Ok(PathBuf::from(path))
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg" | "jpe" | "jfif") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        _ => "application/octet-stream",
    }
}

pub async fn image(State(state): AppStateRef, UrlPath(id): UrlPath<i64>) -> ApiResult<Response> {
    let st = state.clone();
    let (path, bytes) = tokio::task::spawn_blocking(move || {
        let path = indexed_path(&st, id)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| ApiError::not_found(format!("image {id} cannot be read: {e}")))?;
        Ok::<_, ApiError>((path, bytes))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response())
}

/// A PNG at most 256 px on its longest side, made on first request and kept in
/// `<index>/thumbnails/` (ids change when content changes, so the cache is never stale).
pub async fn thumbnail(
    State(state): AppStateRef,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<Response> {
    let st = state.clone();
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let cached = st.index_dir.join("thumbnails").join(format!("{id}.png"));
        if let Ok(bytes) = std::fs::read(&cached) {
            return Ok(bytes);
        }
        let path = indexed_path(&st, id)?;
        let img = seer_image::decode_file(&path, &st.limits)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let scale = (256.0 / img.width().max(img.height()) as f32).min(1.0);
        let size = |side: u32| ((side as f32 * scale).round() as u32).max(1);
        let thumb =
            seer_image::image::imageops::thumbnail(&img, size(img.width()), size(img.height()));
        let mut png = Vec::new();
        thumb
            .write_to(
                &mut std::io::Cursor::new(&mut png),
                seer_image::image::ImageFormat::Png,
            )
            .map_err(ApiError::internal)?;
        if std::fs::create_dir_all(cached.parent().expect("has a parent")).is_ok() {
            let tmp = cached.with_extension("tmp~");
            if std::fs::write(&tmp, &png).is_ok() {
                let _ = std::fs::rename(&tmp, &cached);
            }
        }
        Ok(png)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        bytes,
    )
        .into_response())
}

// ---------------------------------------------------------------- indexing

pub async fn start_index(State(state): AppStateRef) -> ApiResult<(StatusCode, Json<Value>)> {
    {
        let mut job = state.job.lock().unwrap_or_else(|p| p.into_inner());
        if job.running {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "an index job is already running",
            ));
        }
        *job = JobState {
            running: true,
            last: job.last.clone(),
            ..Default::default()
        };
    }
    let st = state.clone();
    std::thread::spawn(move || {
        let result = run_index_job(&st);
        let mut job = st.job.lock().unwrap_or_else(|p| p.into_inner());
        job.running = false;
        match result {
            Ok(summary) => {
                job.last = Some(summary);
                job.error = None;
            }
            Err(e) => job.error = Some(e),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "started": true }))))
}

fn run_index_job(state: &AppState) -> Result<seer_index::IndexSummary, String> {
    let mut store = seer_index::Store::open(&state.index_dir).map_err(|e| e.to_string())?;
    let roots: Vec<PathBuf> = store
        .roots()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    if roots.is_empty() {
        return Err("the index has no folders yet; add them with `seer index PATH`".into());
    }
    let options = seer_index::IndexOptions {
        roots,
        include_hidden: false,
        encoding: seer_index::Encoding::F16,
        embed: seer_engine::EmbedOptions {
            batch_size: 16,
            normalize: true,
            limits: state.limits,
        },
    };
    let summary = seer_index::index(&mut store, &state.clip, &options, &mut |event| {
        let mut job = state.job.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            seer_index::Progress::Planned(n) => job.planned = n,
            seer_index::Progress::Embedded => job.done += 1,
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(model) = store
        .models()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|m| m.name == state.clip.id)
    {
        seer_index::ann::sync(&store, &model, seer_index::ann::threshold())
            .map_err(|e| e.to_string())?;
    }
    Ok(summary)
}

pub async fn index_status(State(state): AppStateRef) -> ApiResult<Json<Value>> {
    let job = state.job.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let st = state.clone();
    let (files, vectors, failures) = tokio::task::spawn_blocking(move || {
        let store = st.store()?;
        let vectors = st.model_info(&store).map(|m| m.vectors).unwrap_or(0);
        Ok::<_, ApiError>((store.file_count()?, vectors, store.failures()?))
    })
    .await
    .map_err(ApiError::internal)??;
    let failure_list: Vec<Value> = failures
        .iter()
        .take(100)
        .map(|(p, e)| json!({ "path": p, "error": e }))
        .collect();
    Ok(Json(json!({
        "running": job.running,
        "planned": job.planned,
        "done": job.done,
        "files": files,
        "vectors": vectors,
        "failures": failures.len(),
        "failure_list": failure_list,
        "last": job.last,
        "error": job.error,
    })))
}
