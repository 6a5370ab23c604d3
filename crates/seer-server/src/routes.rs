//! The HTTP routes. Files are addressed by their index id, never by path, and
//! only indexed files really inside the index's roots are ever read (see `files`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Multipart, Path as UrlPath, Query, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::Engine;
use seer_index::pathcodec::display_stored;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::batcher::{SubmitError, Work};
use crate::error::{ApiError, ApiResult};
use crate::models::Served;
use crate::state::{AppState, JobState};

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

/// Liveness for anyone; the default model (possibly a local path) and its
/// vector count only for callers who may use the API.
pub async fn healthz(State(state): AppStateRef, headers: HeaderMap) -> Json<Value> {
    if !state.authorized(&headers) {
        return Json(json!({ "status": "ok" }));
    }
    let served = state.models.default_model().clone();
    let st = state.clone();
    let id = served.model.id.clone();
    let vectors = tokio::task::spawn_blocking(move || {
        st.store()
            .ok()
            .and_then(|s| served.info(&s).ok())
            .map(|m| m.vectors)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(0);
    Json(json!({ "status": "ok", "model": id, "vectors": vectors }))
}

/// The served models: what each can do and how many vectors the index holds.
pub async fn models(State(state): AppStateRef) -> ApiResult<Json<Value>> {
    let st = state.clone();
    let described = tokio::task::spawn_blocking(move || st.models.describe(&st.store()?))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(described))
}

/// Unknown routes answer like every other error.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// The batchers' gauges are summed over the served models.
pub async fn metrics(State(state): AppStateRef) -> impl IntoResponse {
    let sum = |f: &dyn Fn(&Served) -> usize| -> f64 {
        state.models.all().iter().map(|s| f(s)).sum::<usize>() as f64
    };
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed);
    let gauges = [
        (
            "seer_queue_depth",
            "Items waiting for the model.",
            sum(&|s| s.batcher.depth()),
        ),
        (
            "seer_batches",
            "Model batches run since start.",
            sum(&|s| load(&s.batcher.stats.batches)),
        ),
        (
            "seer_batch_items",
            "Items embedded in those batches.",
            sum(&|s| load(&s.batcher.stats.items)),
        ),
        (
            "seer_queue_rejections",
            "Requests refused with 503 because the queue was full.",
            sum(&|s| load(&s.batcher.stats.rejected)),
        ),
    ];
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
}

// ---------------------------------------------------------------- embedding

/// Refused at once (400) when the model has no text tower.
async fn embed_text(served: &Served, text: String) -> ApiResult<Vec<f32>> {
    served.model.text().map_err(ApiError::bad_request)?;
    wait(served.batcher.submit(Work::Text(text))).await
}

/// Decodes and preprocesses off the async threads, then joins a batch of `served`.
async fn embed_image(
    state: &Arc<AppState>,
    served: &Arc<Served>,
    bytes: Bytes,
    name: String,
) -> ApiResult<Vec<f32>> {
    served.model.image().map_err(ApiError::bad_request)?;
    let (st, sv) = (state.clone(), served.clone());
    let pixels = tokio::task::spawn_blocking(move || {
        let decoded = seer_image::decode_bytes_full(&bytes, &name, &st.limits)?;
        let encoder = sv.model.image.as_deref().expect("checked above");
        Ok::<_, seer_image::ImageError>(encoder.preprocess(&decoded))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    wait(served.batcher.submit(Work::Pixels(pixels))).await
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
    /// A served model (default: the server's default model).
    model: Option<String>,
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
    let served = state.models.pick(req.model.as_deref())?;
    const MAX_ITEMS: usize = 256;
    if req.texts.len() + req.images.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ITEMS} items per request"
        )));
    }
    let mut jobs = Vec::new();
    for t in req.texts {
        let sv = served.clone();
        jobs.push((
            t.clone(),
            tokio::spawn(async move { embed_text(&sv, t).await }),
        ));
    }
    for (i, b64) in req.images.into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ApiError::bad_request(format!("image {i}: not base64 ({e})")))?;
        let (st, sv) = (state.clone(), served.clone());
        let name = format!("image {i}");
        jobs.push((
            name.clone(),
            tokio::spawn(async move { embed_image(&st, &sv, Bytes::from(bytes), name).await }),
        ));
    }
    let mut out = Vec::new();
    for (input, job) in jobs {
        let embedding = job.await.map_err(ApiError::internal)??;
        out.push(json!({ "input": input, "embedding": embedding }));
    }
    Ok(Json(
        json!({ "model": served.model.id, "dim": served.model.embed_dim(), "embeddings": out }),
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
    // A body over --max-body is 413 like any other, not a "bad" body.
    let error = |what: String, e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), format!("{what}: {}", e.body_text()))
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| error("bad multipart body".into(), e))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" {
            let file = field.file_name().unwrap_or("upload").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| error("image upload".into(), e))?;
            form.image = Some((file, bytes));
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| error(format!("field {name}"), e))?;
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
    // The model's own rule (CLIP: softmax; SigLIP: sigmoid per label); none
    // without a text tower.
    let served = state
        .models
        .pick(form.fields.get("model").map(String::as_str))?;
    let rule = served.model.score_rule().map_err(ApiError::bad_request)?;
    let image = embed_image(&state, &served, bytes, name).await?;
    // Class embeddings: every prompt joins the shared batches like any text.
    let mut prompt_jobs = Vec::new();
    for label in &labels {
        for t in templates {
            let sv = served.clone();
            let prompt = seer_engine::prompts::fill(t, label);
            prompt_jobs.push(tokio::spawn(async move { embed_text(&sv, prompt).await }));
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
        rule,
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
    /// A served model (default: the server's default model).
    model: Option<String>,
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
        model: field("model").cloned(),
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
    let served = state.models.pick(params.model.as_deref())?;
    let (st, sv) = (state.clone(), served.clone());
    let data = tokio::task::spawn_blocking(move || {
        st.store()
            .and_then(|s| sv.search_data(&s, st.ann_threshold))
    })
    .await
    .map_err(ApiError::internal)??;
    let mut query = seer_index::search::QueryCombiner::new(data.searcher.model().dim);
    if let Some(q) = params.q.as_ref().filter(|q| !q.trim().is_empty()) {
        query.add(&embed_text(&served, q.clone()).await?, 1.0);
    }
    if let Some((name, bytes)) = image {
        query.add(&embed_image(state, &served, bytes, name).await?, 1.0);
    }
    if let Some(id) = params.like {
        let v = data
            .searcher
            .vector_of_id(id)
            .ok_or_else(|| ApiError::not_found(format!("no indexed image {id}")))?;
        query.add(v, 1.0);
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
    let st = state.clone();
    let like = params.like;
    let searched = data.clone();
    let (results, like, more) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let store = st.store()?;
        // "More like this" never answers with the photo it started from.
        let keep = |id: i64| {
            Some(id) != like
                && dates
                    .as_ref()
                    .is_none_or(|d| d.contains(searched.taken.get(&id).map(String::as_str)))
        };
        let filtered = like.is_some() || dates.is_some();
        let mut hits =
            searched
                .searcher
                .rank(&store, &query, &options, filtered.then_some(&keep))?;
        let more = hits.len() > offset + k;
        hits.truncate(offset + k);
        let results: Vec<Value> = hits
            .iter()
            .skip(offset)
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
        Ok((results, like, more))
    })
    .await
    .map_err(ApiError::internal)??;
    let mut answer = json!({
        "model": data.searcher.model().name,
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
        None => json!({ "id": id }),
    };
    // Paths as people see them: names that are not UTF-8 come escaped (`\xNN`).
    v["path"] = json!(display_stored(path));
    v["url"] = json!(format!("/v1/images/{id}"));
    v["thumbnail"] = json!(format!("/v1/images/{id}/thumbnail"));
    Ok(v)
}

// ---------------------------------------------------------------- images

/// An image id from the URL, with a JSON error that says what an id is.
pub struct ImageId(i64);

impl<S: Send + Sync> FromRequestParts<S> for ImageId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let UrlPath(raw) = UrlPath::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        raw.parse().map(ImageId).map_err(|_| {
            ApiError::bad_request(format!("'{raw}' is not an image id (ids are integers)"))
        })
    }
}

/// The indexed file of `id`, open and checked (blocking: call off the async
/// threads). A file indexed under any served model may be served: each model's
/// search can answer with it.
fn open_indexed(state: &AppState, id: i64) -> ApiResult<crate::files::IndexedFile> {
    let store = state.store()?;
    let models = state.models.index_ids(&store)?;
    Ok(crate::files::open_indexed(&store, &models, id)?)
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

pub async fn image(State(state): AppStateRef, ImageId(id): ImageId) -> ApiResult<Response> {
    let st = state.clone();
    let (kind, bytes) = tokio::task::spawn_blocking(move || {
        let file = open_indexed(&st, id)?;
        let kind = content_type(&file.path());
        Ok::<_, ApiError>((kind, file.read_all()?))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

/// A PNG at most 256 px on its longest side, made from the checked file on first
/// request and cached by content (see `thumbnails`).
pub async fn thumbnail(State(state): AppStateRef, ImageId(id): ImageId) -> ApiResult<Response> {
    let st = state.clone();
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let file = open_indexed(&st, id)?;
        let cache = crate::thumbnails::Cache::new(&st.index_dir);
        let hash = file.record.hash;
        if let Some(png) = hash.as_ref().and_then(|h| cache.get(h)) {
            return Ok(png);
        }
        let name = file.record.path.clone();
        let png =
            crate::thumbnails::make(&file.read_all()?, &name, &st.limits).map_err(|e| match e {
                crate::thumbnails::MakeError::Decode(_) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e)
                }
                crate::thumbnails::MakeError::Encode(_) => ApiError::internal(e),
            })?;
        if let Some(h) = &hash {
            cache.put(h, &png);
        }
        Ok(png)
    })
    .await
    .map_err(ApiError::internal)??;
    // Private: the bytes are the user's photos, behind a token when there is one.
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
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

/// Brings every served model's vectors up to date, one model after another (as
/// a bare `seer index` does for the models an index holds); `last` is the last
/// model's summary, `planned` and `done` count over all of them.
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
        ann_threshold: state.ann_threshold,
    };
    let mut last = None;
    for served in state.models.all() {
        let before = state.job.lock().unwrap_or_else(|p| p.into_inner()).planned;
        let summary = seer_index::index(&mut store, &served.model, &options, &mut |event| {
            let mut job = state.job.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                seer_index::Progress::Planned(n) => job.planned = before + n,
                seer_index::Progress::Embedded => job.done += 1,
            }
        })
        .map_err(|e| e.to_string())?;
        last = Some(summary);
    }
    Ok(last.expect("a server serves at least one model"))
}

pub async fn index_status(State(state): AppStateRef) -> ApiResult<Json<Value>> {
    let job = state.job.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let st = state.clone();
    let (files, vectors, failures) = tokio::task::spawn_blocking(move || {
        let store = st.store()?;
        let vectors = st
            .models
            .default_model()
            .info(&store)
            .map(|m| m.vectors)
            .unwrap_or(0);
        let mut failures = store.failures()?;
        failures.extend(store.walk_errors()?);
        Ok::<_, ApiError>((store.file_count()?, vectors, failures))
    })
    .await
    .map_err(ApiError::internal)??;
    let failure_list: Vec<Value> = failures
        .iter()
        .take(100)
        .map(|(p, e)| json!({ "path": display_stored(p), "error": e }))
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
