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
use seer_index::{Found, SearchMode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::batcher::{SubmitError, Work};
use crate::error::{ApiError, ApiResult};
use crate::models::Served;
use crate::state::{AppState, JobState};
use crate::tasks::{Head, TaskOutput, TaskWork};

type AppStateRef = State<Arc<AppState>>;

#[path = "vision_routes.rs"]
mod vision_routes;
pub use vision_routes::{detect, segment};

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
/// Also which language models the server holds (`tasks`: the caption, ask
/// and match models' ids, null when absent), so the page offers what works.
pub async fn models(State(state): AppStateRef) -> ApiResult<Json<Value>> {
    let st = state.clone();
    let mut described = tokio::task::spawn_blocking(move || st.models.describe(&st.store()?))
        .await
        .map_err(ApiError::internal)??;
    let id = |head| state.tasks.get(head).map(|t| t.model.id.clone());
    described["tasks"] = json!({
        "caption": id(Head::Caption),
        "ask": id(Head::Answer),
        "match": id(Head::Match),
        "segment": state.vision.segment.as_ref().map(|s| s.model.id.clone()),
        "detect": state.vision.detect.as_ref().map(|d| d.model.id.clone()),
    });
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
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed);
    // Every model thread: the embedding batchers and the language models'.
    let sum = |f: &dyn Fn(usize, &crate::batcher::BatchStats) -> usize| -> f64 {
        let embedders = state
            .models
            .all()
            .iter()
            .map(|s| f(s.batcher.depth(), &s.batcher.stats));
        let heads = state.tasks.all().map(|t| f(t.depth(), &t.stats));
        embedders.chain(heads).sum::<usize>() as f64
    };
    // The segmentation and detection models' gates.
    let gates = || {
        let v = &state.vision;
        let s = v.segment.as_ref().map(|s| &s.gate);
        s.into_iter().chain(v.detect.as_ref().map(|d| &d.gate))
    };
    let gate_depth = gates().map(|g| g.depth()).sum::<usize>() as f64;
    let gate_rejected = gates().map(|g| load(&g.rejected)).sum::<usize>() as f64;
    let gauges = [
        (
            "seer_queue_depth",
            "Items waiting for the model.",
            sum(&|depth, _| depth) + gate_depth,
        ),
        (
            "seer_batches",
            "Model batches run since start.",
            sum(&|_, stats| load(&stats.batches)),
        ),
        (
            "seer_batch_items",
            "Items embedded in those batches.",
            sum(&|_, stats| load(&stats.items)),
        ),
        (
            "seer_queue_rejections",
            "Requests refused with 503 because the queue was full.",
            sum(&|_, stats| load(&stats.rejected)) + gate_rejected,
        ),
    ];
    let mut text = state.metrics.render(&gauges);
    text.push_str(&state.vision.render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
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

/// Text fields (the last value of each, and every value in order) and the
/// last uploaded image of a multipart form.
struct Form {
    fields: HashMap<String, String>,
    all: Vec<(String, String)>,
    image: Option<(String, Bytes)>,
}

impl Form {
    /// Every value of a field given once or more (`-F text=a -F text=b`).
    fn values(&self, name: &str) -> Vec<&str> {
        self.all
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

async fn read_form(mut multipart: Multipart) -> ApiResult<Form> {
    let mut form = Form {
        fields: HashMap::new(),
        all: Vec::new(),
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
            form.all.push((name.clone(), text.clone()));
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

// ---------------------------------------------------------------- captions, answers, matches

/// The longest prompt, question or text a language route takes (their
/// tokenizers cut far shorter; this bounds the work before they do).
const MAX_TEXT_CHARS: usize = 1000;

/// The most texts one `/v1/match` request scores against its image.
const MAX_MATCH_TEXTS: usize = 32;

/// A text field's value: trimmed, at most [`MAX_TEXT_CHARS`]; `None` when
/// absent or blank.
fn text_field(form: &Form, name: &str) -> ApiResult<Option<String>> {
    let Some(value) = form
        .fields
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    check_length(name, value)?;
    Ok(Some(value.to_string()))
}

fn check_length(name: &str, value: &str) -> ApiResult<()> {
    match value.chars().count() > MAX_TEXT_CHARS {
        true => Err(ApiError::bad_request(format!(
            "\"{name}\" is longer than {MAX_TEXT_CHARS} characters"
        ))),
        false => Ok(()),
    }
}

/// The image of a language request, as `head`'s input: an upload (field
/// `image`) or an indexed image (field `id`), exactly one, read with the
/// image routes' checks (see `files`) and decoded within the server's limits.
/// Returns the pixels and the id when one was given.
async fn head_pixels(
    state: &Arc<AppState>,
    head: Head,
    form: &mut Form,
) -> ApiResult<(Vec<f32>, Option<i64>)> {
    let task = state.tasks.need(head)?;
    let id = match form
        .fields
        .get("id")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("'{raw}' is not an image id (ids are integers)"))
        })?),
        None => None,
    };
    enum Source {
        Upload(String, Bytes),
        Indexed(i64),
    }
    let source = match (form.image.take(), id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give an uploaded \"image\" or an indexed image's \"id\", not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "upload the image as field \"image\", or give an indexed image's \"id\"",
            ))
        }
        (Some((name, bytes)), None) => Source::Upload(name, bytes),
        (None, Some(id)) => Source::Indexed(id),
    };
    let (st, model) = (state.clone(), task.model.clone());
    let pixels = tokio::task::spawn_blocking(move || -> ApiResult<Vec<f32>> {
        let (name, bytes) = match source {
            Source::Upload(name, bytes) => (name, bytes.to_vec()),
            Source::Indexed(id) => {
                let file = open_indexed(&st, id)?;
                (format!("image {id}"), file.read_all()?)
            }
        };
        let decoded = seer_image::decode_bytes_full(&bytes, &name, &st.limits)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        head.preprocess(&model, &decoded)
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((pixels, id))
}

/// Runs one item on `head`'s model thread.
async fn run_head(state: &AppState, head: Head, work: TaskWork) -> ApiResult<TaskOutput> {
    let rx = state.tasks.need(head)?.submit(work).map_err(|e| match e {
        SubmitError::Busy => ApiError::busy(),
        SubmitError::Stopped => ApiError::internal("the model thread stopped"),
    })?;
    rx.await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)
}

fn generated(output: TaskOutput) -> ApiResult<seer_engine::Generated> {
    match output {
        TaskOutput::Text(g) => Ok(g),
        TaskOutput::Scores(_) => Err(ApiError::internal("the model gave a score, not text")),
    }
}

/// `{"id": …}` when the request named an indexed image.
fn with_id(mut answer: Value, id: Option<i64>) -> Value {
    if let Some(id) = id {
        answer["id"] = json!(id);
    }
    answer
}

/// A caption of an uploaded or indexed image (multipart: `image` or `id`, and
/// `prompt` to start the caption with).
pub async fn caption(State(state): AppStateRef, multipart: Multipart) -> ApiResult<Json<Value>> {
    state.tasks.need(Head::Caption)?;
    let mut form = read_form(multipart).await?;
    let prompt = text_field(&form, "prompt")?;
    let (pixels, id) = head_pixels(&state, Head::Caption, &mut form).await?;
    let output = run_head(&state, Head::Caption, TaskWork::Caption { pixels, prompt }).await?;
    let caption = generated(output)?;
    let model = state.tasks.need(Head::Caption)?.model.id.clone();
    Ok(Json(with_id(
        json!({ "model": model, "caption": caption.text.trim() }),
        id,
    )))
}

/// The answer to a question about an uploaded or indexed image (multipart:
/// `image` or `id`, and `question`).
pub async fn ask(State(state): AppStateRef, multipart: Multipart) -> ApiResult<Json<Value>> {
    state.tasks.need(Head::Answer)?;
    let mut form = read_form(multipart).await?;
    let question = text_field(&form, "question")?
        .ok_or_else(|| ApiError::bad_request("give a \"question\" about the image"))?;
    let (pixels, id) = head_pixels(&state, Head::Answer, &mut form).await?;
    let work = TaskWork::Answer {
        pixels,
        question: question.clone(),
    };
    let answer = generated(run_head(&state, Head::Answer, work).await?)?;
    let model = state.tasks.need(Head::Answer)?.model.id.clone();
    Ok(Json(with_id(
        json!({ "model": model, "question": question, "answer": answer.text.trim() }),
        id,
    )))
}

/// How well each text describes an uploaded or indexed image (multipart:
/// `image` or `id`, and `text` once per text, or `texts` one per line), in the
/// order given: the ITM head's probability and the contrastive similarity.
pub async fn match_texts(
    State(state): AppStateRef,
    multipart: Multipart,
) -> ApiResult<Json<Value>> {
    state.tasks.need(Head::Match)?;
    let mut form = read_form(multipart).await?;
    let mut texts: Vec<String> = Vec::new();
    for value in form
        .values("text")
        .into_iter()
        .chain(form.values("texts").into_iter().flat_map(|v| v.lines()))
    {
        let value = value.trim();
        if !value.is_empty() {
            check_length("text", value)?;
            texts.push(value.to_string());
        }
    }
    if texts.is_empty() || texts.len() > MAX_MATCH_TEXTS {
        return Err(ApiError::bad_request(format!(
            "give 1 to {MAX_MATCH_TEXTS} texts (\"text\" once per text, or \"texts\" one per line)"
        )));
    }
    let (pixels, id) = head_pixels(&state, Head::Match, &mut form).await?;
    let work = TaskWork::Match {
        pixels,
        texts: texts.clone(),
    };
    let scores = match run_head(&state, Head::Match, work).await? {
        TaskOutput::Scores(s) if s.len() == texts.len() => s,
        _ => return Err(ApiError::internal("the model gave no score for each text")),
    };
    let matches: Vec<Value> = texts
        .iter()
        .zip(scores)
        .map(|(text, s)| {
            json!({
                "text": text,
                "itm_probability": s.itm_probability,
                "similarity": s.similarity,
            })
        })
        .collect();
    let model = state.tasks.need(Head::Match)?.model.id.clone();
    Ok(Json(with_id(
        json!({ "model": model, "matches": matches }),
        id,
    )))
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
    /// How to rank (see [`SearchMode`]): auto, vector, hybrid or words.
    mode: Option<String>,
    /// Rerank the best hits with the server's matching model: true or false.
    rerank: Option<String>,
    /// How many of the best hits to rerank.
    rerank_depth: Option<usize>,
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
        mode: field("mode").cloned(),
        rerank: field("rerank").cloned(),
        rerank_depth: parsed(field("rerank_depth"), "rerank_depth must be a number")?,
    };
    run_search(&state, params, form.image).await
}

/// A yes/no parameter: true, false, 1, 0, yes, no, on or off (absent: no).
fn flag(value: Option<&str>, name: &str) -> ApiResult<bool> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not '{other}'"
        ))),
    }
}

/// A ranked hit and, when reranked, its match with the query.
type Ranked = (Found, Option<seer_engine::MatchScore>);

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
    let requested_mode = match params
        .mode
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        None => SearchMode::Auto,
        Some(m) => SearchMode::parse(m).ok_or_else(|| {
            ApiError::bad_request(format!(
                "mode must be one of {}, not '{m}'",
                SearchMode::NAMES
            ))
        })?,
    };
    let q = params.q.clone().filter(|q| !q.trim().is_empty());
    let rerank = flag(params.rerank.as_deref(), "rerank")?;
    let rerank_depth = params
        .rerank_depth
        .unwrap_or(seer_index::rerank::DEFAULT_DEPTH);
    if rerank {
        state.tasks.need(Head::Match)?;
        if q.is_none() {
            return Err(ApiError::bad_request(
                "rerank needs q: the matching model reads its words with each photo",
            ));
        }
        if !(1..=seer_index::rerank::MAX_DEPTH).contains(&rerank_depth) {
            return Err(ApiError::bad_request(format!(
                "rerank_depth must be 1 to {}",
                seer_index::rerank::MAX_DEPTH
            )));
        }
    }
    let dates =
        seer_index::dates::CaptureRange::parse(params.from.as_deref(), params.to.as_deref())?;
    let served = state.models.pick(params.model.as_deref())?;
    let (st, sv) = (state.clone(), served.clone());
    let (data, captions) = tokio::task::spawn_blocking(move || {
        let store = st.store()?;
        let data = sv.search_data(&store, st.ann_threshold)?;
        Ok::<_, ApiError>((data, store.has_captions()?))
    })
    .await
    .map_err(ApiError::internal)??;
    let fts = q.as_deref().and_then(seer_index::words::fts_query);
    let others = image.is_some() || params.like.is_some();
    // A model without a text tower still finds photos by their captions.
    let mode = match requested_mode {
        SearchMode::Auto if served.model.text.is_none() && captions && fts.is_some() && !others => {
            SearchMode::Words
        }
        mode => mode
            .resolve(fts.as_deref(), others, captions, &state.index_dir)
            .map_err(ApiError::bad_request)?,
    };
    if mode == SearchMode::Words && params.min_score.is_some() {
        return Err(ApiError::bad_request(
            "min_score is a cosine similarity, which a words search has none of; use mode=hybrid",
        ));
    }
    let query = match mode {
        SearchMode::Words => Vec::new(),
        _ => {
            let mut query = seer_index::search::QueryCombiner::new(data.searcher.model().dim);
            if let Some(q) = &q {
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
            query.finish().map_err(|_| {
                ApiError::bad_request("give q (text), an image upload, or like (an image id)")
            })?
        }
    };
    // One more than the page, to tell whether another page follows; the
    // reranked hits when the page starts among them.
    let reranking = rerank && offset < rerank_depth;
    let wanted = offset + k + 1;
    let options = seer_index::SearchOptions {
        k: if reranking {
            wanted.max(rerank_depth)
        } else {
            wanted
        },
        min_score: params.min_score,
        path_glob: params.path,
    };
    let st = state.clone();
    let like = params.like;
    let searched = data.clone();
    let fts_query = fts.clone();
    let found = tokio::task::spawn_blocking(move || -> ApiResult<Vec<Found>> {
        let store = st.store()?;
        // "More like this" never answers with the photo it started from.
        let keep = |id: i64| {
            Some(id) != like
                && dates
                    .as_ref()
                    .is_none_or(|d| d.contains(searched.taken.get(&id).map(String::as_str)))
        };
        let filtered = like.is_some() || dates.is_some();
        let keep = filtered.then_some(&keep as seer_index::search::KeepId<'_>);
        let searcher = &searched.searcher;
        Ok(match (mode, fts_query.as_deref()) {
            (SearchMode::Words, Some(fts)) => {
                seer_index::hybrid::rank_words(&store, fts, Some(searcher.model()), &options, keep)?
            }
            (SearchMode::Hybrid, Some(fts)) => {
                searcher.rank_hybrid(&store, &query, fts, &options, keep)?
            }
            _ => searcher
                .rank(&store, &query, &options, keep)?
                .into_iter()
                .enumerate()
                .map(|(i, hit)| Found::from_hit(hit, i + 1))
                .collect(),
        })
    })
    .await
    .map_err(ApiError::internal)??;
    let mut ranked: Vec<Ranked> = found.into_iter().map(|f| (f, None)).collect();
    if reranking {
        let text = q.clone().unwrap_or_default();
        ranked = rerank_hits(state, &text, ranked, rerank_depth).await?;
    }
    let st = state.clone();
    let (results, like, more) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let store = st.store()?;
        let more = ranked.len() > offset + k;
        ranked.truncate(offset + k);
        let results: Vec<Value> = ranked
            .iter()
            .skip(offset)
            .map(|(f, itm)| {
                let mut hit = described(&store, f.id, &f.path)?;
                hit_fields(&mut hit, f, itm.as_ref(), mode);
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
    // Only what differs from a vector search is said, so an index without
    // captions answers as before they existed.
    if mode != SearchMode::Vector {
        answer["mode"] = json!(mode.name());
    }
    if reranking {
        answer["reranked"] = json!(rerank_depth);
    }
    if let Some(like) = like {
        answer["like"] = like;
    }
    Ok(Json(answer))
}

/// A hit's ranking fields: `score` (the cosine similarity; BM25 in a words
/// search), and in hybrid and words searches `matched` and what fused;
/// reranked hits their `itm_probability` and `itc_similarity`.
fn hit_fields(hit: &mut Value, f: &Found, itm: Option<&seer_engine::MatchScore>, mode: SearchMode) {
    hit["score"] = match mode {
        SearchMode::Words => json!(f.bm25),
        _ => json!(f.similarity),
    };
    if matches!(mode, SearchMode::Hybrid | SearchMode::Words) {
        hit["matched"] = json!(f.matched());
        if let Some(bm25) = f.bm25 {
            hit["bm25"] = json!(bm25);
        }
    }
    if mode == SearchMode::Hybrid {
        hit["fused"] = json!(f.fused);
    }
    if let Some(itm) = itm {
        hit["itm_probability"] = json!(itm.itm_probability);
        hit["itc_similarity"] = json!(itm.similarity);
    }
}

/// The first `depth` hits in order of the matching model's ITM probability
/// for `text` (see [`seer_index::rerank`]); a photo that cannot be read (or
/// changed since indexing) goes after the reranked ones, unscored.
async fn rerank_hits(
    state: &Arc<AppState>,
    text: &str,
    mut ranked: Vec<Ranked>,
    depth: usize,
) -> ApiResult<Vec<Ranked>> {
    let rest = ranked.split_off(depth.min(ranked.len()));
    let model = state.tasks.need(Head::Match)?.model.clone();
    // Every photo decodes on the blocking pool and joins the model's batches.
    let mut jobs = Vec::with_capacity(ranked.len());
    for (f, _) in &ranked {
        let (st, model, id, text) = (state.clone(), model.clone(), f.id, text.to_string());
        jobs.push(tokio::spawn(async move {
            let reader = st.clone();
            let pixels = tokio::task::spawn_blocking(move || -> ApiResult<Vec<f32>> {
                let bytes = open_indexed(&reader, id)?.read_all()?;
                let name = format!("image {id}");
                let decoded = seer_image::decode_bytes_full(&bytes, &name, &reader.limits)
                    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
                Head::Match
                    .preprocess(&model, &decoded)
                    .map_err(ApiError::internal)
            })
            .await
            .map_err(ApiError::internal)?;
            let pixels = match pixels {
                Ok(pixels) => pixels,
                Err(e) => {
                    tracing::warn!("image {id} not reranked: {}", e.message);
                    return Ok(None);
                }
            };
            let texts = vec![text];
            match run_head(&st, Head::Match, TaskWork::Match { pixels, texts }).await? {
                TaskOutput::Scores(s) => Ok(s.first().copied()),
                TaskOutput::Text(_) => Err(ApiError::internal("the model gave text, not a score")),
            }
        }));
    }
    let mut scores = Vec::with_capacity(jobs.len());
    for job in jobs {
        scores.push(job.await.map_err(ApiError::internal)??);
    }
    let probabilities: Vec<Option<f32>> = scores
        .iter()
        .map(|s| s.map(|s| s.itm_probability))
        .collect();
    let with_scores: Vec<Ranked> = ranked
        .into_iter()
        .zip(scores)
        .map(|((f, _), s)| (f, s))
        .collect();
    let mut out = seer_index::rerank::apply(with_scores, &probabilities);
    out.extend(rest);
    Ok(out)
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
    // Only on indexes with captions (the field is absent otherwise).
    if let Some(caption) = store.caption_of(id)? {
        v["caption"] = json!(caption.text);
    }
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
            captions: job.captions.clone(),
            ..Default::default()
        };
    }
    let st = state.clone();
    std::thread::spawn(move || {
        let result = run_index_job(&st);
        let mut job = st.job.lock().unwrap_or_else(|p| p.into_inner());
        job.running = false;
        match result {
            Ok((summary, captions)) => {
                job.last = Some(summary);
                job.captions = captions;
                job.error = None;
            }
            Err(e) => job.error = Some(e),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "started": true }))))
}

/// Brings every served model's vectors up to date, one model after another (as
/// a bare `seer index` does for the models an index holds), then captions the
/// photos without a caption by the server's caption model, when it has one;
/// all under one hold of the index's lock. `last` is the last model's summary,
/// `planned` and `done` count over all of them.
fn run_index_job(
    state: &AppState,
) -> Result<(seer_index::IndexSummary, Option<seer_index::CaptionSummary>), String> {
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
    let lock = seer_index::IndexLock::try_acquire(&state.index_dir).map_err(|e| e.to_string())?;
    let options = seer_index::IndexOptions {
        roots: roots.clone(),
        include_hidden: false,
        encoding: seer_index::Encoding::F16,
        embed: seer_engine::EmbedOptions {
            batch_size: 16,
            normalize: true,
            limits: state.limits,
        },
        ann_threshold: state.ann_threshold,
    };
    let progress = |before: usize| {
        move |event: seer_index::Progress| {
            let mut job = state.job.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                seer_index::Progress::Planned(n) => job.planned = before + n,
                seer_index::Progress::Embedded => job.done += 1,
            }
        }
    };
    let planned = || state.job.lock().unwrap_or_else(|p| p.into_inner()).planned;
    let mut last = None;
    for served in state.models.all() {
        let summary = seer_index::index_locked(
            &mut store,
            &lock,
            &served.model,
            &options,
            &mut progress(planned()),
        )
        .map_err(|e| e.to_string())?;
        last = Some(summary);
    }
    let captions = match &state.tasks.caption {
        Some(task) => {
            let options = seer_index::CaptionOptions {
                roots,
                batch_size: 8,
                limits: state.limits,
                generate: Default::default(),
            };
            let summary = seer_index::caption_locked(
                &mut store,
                &lock,
                &task.model,
                &options,
                &mut progress(planned()),
            )
            .map_err(|e| e.to_string())?;
            Some(summary)
        }
        None => None,
    };
    let last = last.ok_or("the server serves no model")?;
    Ok((last, captions))
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
    let mut answer = json!({
        "running": job.running,
        "planned": job.planned,
        "done": job.done,
        "files": files,
        "vectors": vectors,
        "failures": failures.len(),
        "failure_list": failure_list,
        "last": job.last,
        "error": job.error,
    });
    // The caption run's summary, when the server captions.
    if let Some(captions) = job.captions {
        answer["captions"] = json!(captions);
    }
    Ok(Json(answer))
}
