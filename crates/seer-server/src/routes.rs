//! The HTTP routes. Files are addressed by their index id, never by path, and
//! only indexed files really inside the index's roots are ever read (see `files`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Path as UrlPath, Query, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::Engine;
use seer_index::pathcodec::display_stored;
use seer_index::{Found, SearchMode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::batcher::{EmbedSlot, SubmitError, Work};
use crate::classifiers::PromptEmbedding;
use crate::error::{ApiError, ApiResult};
use crate::models::Served;
use crate::state::{AppState, JobState};
use crate::tasks::{Head, TaskOutput, TaskServer, TaskSlot, TaskWork};

type AppStateRef = State<Arc<AppState>>;

#[path = "vision_routes.rs"]
mod vision_routes;
pub use vision_routes::{detect, segment};

#[path = "duplicate_routes.rs"]
mod duplicate_routes;
pub use duplicate_routes::duplicates;

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
            .map(|s| f(s.batcher.depth(), s.batcher.stats()));
        let heads = state.tasks.all().map(|t| f(t.depth(), t.stats()));
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
            "Items waiting for the model (queued, or reserved by an admitted request still preparing them).",
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
            "Requests refused with 503 because the queue had no room for all their items.",
            sum(&|_, stats| load(&stats.rejected)) + gate_rejected,
        ),
        (
            "seer_classify_prompts_kept",
            "Zero-shot prompt embeddings kept for later classifications (all models).",
            state.models.all().iter().map(|s| s.prompts.len()).sum::<usize>() as f64,
        ),
    ];
    let mut text = state.metrics.render(&gauges);
    text.push_str(&state.vision.render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

// ---------------------------------------------------------------- embedding

/// A queue's refusal as the client gets it: 503 (retry) when it has no room
/// now, 400 when the request has more items than it ever holds. `what` names
/// what the request asked for (it is given the items and the capacity), and
/// the message goes on with the limit and, from `fix`, how to stay within it.
fn queue_error(
    e: SubmitError,
    what: impl FnOnce(usize) -> String,
    fix: impl FnOnce(usize) -> String,
) -> ApiError {
    match e {
        SubmitError::Busy => ApiError::busy(),
        SubmitError::TooMany { items, capacity } => ApiError::bad_request(format!(
            "{} are {items} model inputs, more than the {capacity} this server queues at a time (seer serve --queue): {}",
            what(items),
            fix(capacity)
        )),
        SubmitError::Stopped => ApiError::internal("the model thread stopped"),
    }
}

/// A refusal to queue an item in a reserved slot or a single item (which
/// always fits a queue when it has room): 503 or 500.
fn item_error(e: SubmitError) -> ApiError {
    queue_error(e, |_| String::new(), |_| String::new())
}

/// Room in `served`'s queue for all `n` items of a request, or none (see
/// [`crate::batcher::Queue::reserve`]); `what` and `fix` as [`queue_error`] takes them.
fn admit(
    served: &Served,
    n: usize,
    what: impl FnOnce(usize) -> String,
    fix: impl FnOnce(usize) -> String,
) -> ApiResult<std::vec::IntoIter<EmbedSlot>> {
    served
        .batcher
        .reserve(n)
        .map(Vec::into_iter)
        .map_err(|e| queue_error(e, what, fix))
}

/// Decodes and preprocesses an upload off the async threads, for `served`'s
/// image tower (400 when it has none, 422 when the bytes are no image).
async fn prepare_image(
    state: &Arc<AppState>,
    served: &Arc<Served>,
    bytes: Bytes,
    name: String,
) -> ApiResult<Vec<f32>> {
    served.model.image().map_err(ApiError::bad_request)?;
    let (st, sv) = (state.clone(), served.clone());
    tokio::task::spawn_blocking(move || {
        let decoded = seer_image::decode_bytes_full(&bytes, &name, &st.limits)?;
        let encoder = sv.model.image.as_deref().expect("checked above");
        Ok::<_, seer_image::ImageError>(encoder.preprocess(&decoded))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}

type Embedding = tokio::sync::oneshot::Receiver<Result<Vec<f32>, String>>;

/// Queues one item in a slot the request reserved; [`embedded`] awaits it.
fn queue(served: &Served, slot: EmbedSlot, work: Work) -> ApiResult<Embedding> {
    served.batcher.submit(slot, work).map_err(item_error)
}

async fn embedded(rx: Embedding) -> ApiResult<Vec<f32>> {
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

/// The most texts and images one `/v1/embed` request embeds (and at most
/// `--queue`: all of a request's items are queued at once).
const MAX_EMBED_ITEMS: usize = 256;

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
    let n = req.texts.len() + req.images.len();
    if n > MAX_EMBED_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_EMBED_ITEMS} items per request"
        )));
    }
    for (i, text) in req.texts.iter().enumerate() {
        check_length(&format!("texts[{i}]"), text)?;
    }
    if !req.texts.is_empty() {
        served.model.text().map_err(ApiError::bad_request)?;
    }
    if !req.images.is_empty() {
        served.model.image().map_err(ApiError::bad_request)?;
    }
    let mut uploads = Vec::with_capacity(req.images.len());
    for (i, b64) in req.images.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ApiError::bad_request(format!("image {i}: not base64 ({e})")))?;
        uploads.push((format!("image {i}"), Bytes::from(bytes)));
    }
    // Room for every item first (or a 503 before any work), then the images
    // decode side by side, then all are queued together.
    let mut slots = admit(
        &served,
        n,
        |_| {
            format!(
                "this request's {} texts and {} images",
                req.texts.len(),
                req.images.len()
            )
        },
        |capacity| format!("send at most {capacity} per request"),
    )?;
    let decoding: Vec<_> = uploads
        .iter()
        .map(|(name, bytes)| {
            let (st, sv, name, bytes) =
                (state.clone(), served.clone(), name.clone(), bytes.clone());
            tokio::spawn(async move { prepare_image(&st, &sv, bytes, name).await })
        })
        .collect();
    let mut pixels = Vec::with_capacity(decoding.len());
    for job in decoding {
        pixels.push(job.await.map_err(ApiError::internal)??);
    }
    let mut jobs = Vec::with_capacity(n);
    for t in req.texts {
        let slot = slots.next().expect("a slot per item");
        jobs.push((t.clone(), queue(&served, slot, Work::Text(t))?));
    }
    for ((name, _), p) in uploads.into_iter().zip(pixels) {
        let slot = slots.next().expect("a slot per item");
        jobs.push((name, queue(&served, slot, Work::Pixels(p))?));
    }
    let mut out = Vec::with_capacity(jobs.len());
    for (input, job) in jobs {
        let embedding = embedded(job).await?;
        out.push(json!({ "input": input, "embedding": embedding }));
    }
    Ok(Json(
        json!({ "model": served.model.id, "dim": served.model.embed_dim(), "embeddings": out }),
    ))
}

// ---------------------------------------------------------------- multipart

/// Text fields (the value of each, the last of a repeatable one, and every
/// value in order) and the uploaded image of a multipart form.
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

/// Query parameters, each name and value UTF-8 once percent-decoded (as form
/// fields must be): axum's `Query` puts U+FFFD in place of bad bytes, which
/// would answer 200 for a query the client never wrote. A parameter not
/// UTF-8 is 400 naming it; the rest as `Query` answers.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        check_query_utf8(parts.uri.query().unwrap_or_default()).map_err(|e| e.into_response())?;
        let Query(params) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| e.into_response())?;
        Ok(Params(params))
    }
}

/// Refuses a query string whose names or values are not UTF-8 once decoded
/// (`+` a space, `%XX` a byte; a `%` without two hex digits stays as it is,
/// as `Query` reads it).
fn check_query_utf8(query: &str) -> ApiResult<()> {
    let utf8 = |raw: &str| {
        let spaced = raw.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|text| text.into_owned())
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Ok(name) = utf8(name) else {
            return Err(ApiError::bad_request(
                "a query parameter's name is not UTF-8 text",
            ));
        };
        if utf8(value).is_err() {
            return Err(ApiError::bad_request(format!(
                "query parameter {name} is not UTF-8 text"
            )));
        }
    }
    Ok(())
}

/// A `multipart/form-data` body. Any other content type (JSON, urlencoded,
/// none) is 415 naming the one expected; a multipart body that cannot be read
/// (no boundary, a malformed part) stays 400.
pub struct FormData(Multipart);

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let given = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let essence = given
            .as_deref()
            .and_then(|g| g.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase());
        if essence.as_deref() != Some("multipart/form-data") {
            let what = match &given {
                Some(g) => format!("not {g}"),
                None => "and the request has no Content-Type".to_string(),
            };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{} {} takes a multipart/form-data body (form fields, e.g. curl -F image=@photo.jpg), {what}",
                    req.method(),
                    req.uri().path()
                ),
            ));
        }
        Multipart::from_request(req, state)
            .await
            .map(FormData)
            .map_err(|e| {
                ApiError::new(e.status(), format!("bad multipart body: {}", e.body_text()))
            })
    }
}

/// Reads a form. A field may be given more than once only when `repeatable`
/// names it; any other given twice is 400, as a repeated query parameter is
/// (taking the first or the last value would answer for a request the client
/// may not have meant).
async fn read_form(FormData(mut multipart): FormData, repeatable: &[&str]) -> ApiResult<Form> {
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
        let seen = form.image.is_some() && name == "image" || form.fields.contains_key(&name);
        if seen && !name.is_empty() && !repeatable.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "bad multipart body: duplicate field `{name}` (it takes one value)"
            )));
        }
        if name == "image" {
            let file = field.file_name().unwrap_or("upload").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| error("image upload".into(), e))?;
            form.image = Some((file, bytes));
        } else {
            // UTF-8 as given: not decoded by a byte-order mark or a part's
            // charset, nor with bad bytes replaced, which would answer 200
            // for a label or query the client never wrote.
            let bytes = field
                .bytes()
                .await
                .map_err(|e| error(format!("field {name}"), e))?;
            let text = String::from_utf8(bytes.into())
                .map_err(|_| ApiError::bad_request(format!("field {name} is not UTF-8 text")))?;
            form.all.push((name.clone(), text.clone()));
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

// ---------------------------------------------------------------- classify

pub async fn classify(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    let form = read_form(multipart, &[]).await?;
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
    for (i, label) in labels.iter().enumerate() {
        check_length(&format!("labels[{i}]"), label)?;
    }
    let template_set = form
        .fields
        .get("templates")
        .map(String::as_str)
        .unwrap_or("default");
    let templates = match template_set {
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
    served.model.image().map_err(ApiError::bad_request)?;
    let prompts: Vec<String> = labels
        .iter()
        .flat_map(|label| {
            templates
                .iter()
                .map(|t| seer_engine::prompts::fill(t, label))
        })
        .collect();
    // Only the prompts not embedded recently are queued (each once).
    let kept = served.prompts.get(&prompts);
    let mut seen = std::collections::HashSet::new();
    let missing: Vec<String> = prompts
        .iter()
        .zip(&kept)
        .filter(|(p, k)| k.is_none() && seen.insert(p.as_str()))
        .map(|(p, _)| p.clone())
        .collect();
    // The image and the prompts are queued together when the queue has room
    // for all of them (a 503 before any work when it has not now). More
    // prompts than the queue holds go in parts of half of it: the first with
    // the image, all or none like any request, the others as room frees.
    let capacity = served.batcher.capacity();
    let part = if missing.len() < capacity {
        missing.len()
    } else {
        (capacity / 2).max(1)
    };
    let first = part.min(capacity - 1);
    let mut slots = admit(&served, 1 + first, |_| String::new(), |_| String::new())?;
    let pixels = prepare_image(&state, &served, bytes, name).await?;
    let slot = slots.next().expect("a slot per item");
    let image = queue(&served, slot, Work::Pixels(pixels))?;
    let computed: HashMap<String, PromptEmbedding> =
        embed_in_parts(&served, slots, missing, first, part)
            .await?
            .into_iter()
            .collect();
    let embeddings: Vec<Vec<f32>> = prompts
        .iter()
        .zip(kept)
        .map(|(p, k)| {
            k.or_else(|| computed.get(p).cloned())
                .map(|e| e.as_ref().clone())
                .ok_or_else(|| ApiError::internal(format!("no embedding for prompt '{p}'")))
        })
        .collect::<ApiResult<_>>()?;
    let classifier = seer_engine::ZeroShotClassifier::from_prompt_embeddings(
        &labels,
        &embeddings,
        templates.len(),
        rule,
    );
    let image = embedded(image).await?;
    let probabilities = classifier.probabilities(&image);
    let predictions = classifier.top_k(&probabilities, labels.len());
    Ok(Json(json!({ "predictions": predictions })))
}

/// Embeddings of `texts`: the first `first` in `slots` (reserved already), the
/// rest `part` at a time as the queue has room, the next part queued while the
/// one before is computed. Each part's embeddings are kept in `served`'s
/// prompt cache as soon as it is done, by a task of its own (see [`keep_part`]),
/// so the work outlives this request: a part queued before a timeout is kept
/// even though the request is dropped.
async fn embed_in_parts(
    served: &Arc<Served>,
    mut slots: std::vec::IntoIter<EmbedSlot>,
    texts: Vec<String>,
    first: usize,
    part: usize,
) -> ApiResult<Vec<(String, PromptEmbedding)>> {
    let mut embeddings = Vec::with_capacity(texts.len());
    let mut texts = texts.into_iter();
    let mut queued = std::collections::VecDeque::new();
    let mut jobs = Vec::with_capacity(first);
    for text in texts.by_ref().take(first) {
        let slot = slots.next().expect("a slot per item");
        jobs.push((text.clone(), queue(served, slot, Work::Text(text))?));
    }
    queued.push_back(keep_part(served, jobs));
    loop {
        let next: Vec<String> = texts.by_ref().take(part).collect();
        if !next.is_empty() {
            let slots = served
                .batcher
                .reserve_waiting(next.len())
                .await
                .map_err(item_error)?;
            let jobs = slots
                .into_iter()
                .zip(next)
                .map(|(slot, text)| Ok((text.clone(), queue(served, slot, Work::Text(text))?)))
                .collect::<ApiResult<Vec<_>>>()?;
            queued.push_back(keep_part(served, jobs));
        }
        let Some(done) = queued.pop_front() else {
            return Ok(embeddings);
        };
        // A join error is a task cancelled by the runtime's shutdown.
        let done = done
            .await
            .map_err(|e| ApiError::internal(format!("embedding the prompts stopped: {e}")))??;
        embeddings.extend(done);
    }
}

/// Awaits a queued part's embeddings and keeps them in `served`'s prompt cache,
/// in a task of its own: it goes on when the request is dropped (a timeout, a
/// client gone), so what the model computes for it is not lost. The task holds
/// the model weakly: an unloaded model's part is not kept. A part that fails
/// keeps nothing.
fn keep_part(
    served: &Arc<Served>,
    jobs: Vec<(String, Embedding)>,
) -> tokio::task::JoinHandle<ApiResult<Vec<(String, PromptEmbedding)>>> {
    let served = Arc::downgrade(served);
    tokio::spawn(async move {
        let mut embeddings = Vec::with_capacity(jobs.len());
        for (text, job) in jobs {
            embeddings.push((text, Arc::new(embedded(job).await?)));
        }
        if let Some(served) = served.upgrade() {
            served.prompts.insert(embeddings.iter().cloned());
        }
        Ok(embeddings)
    })
}

// ---------------------------------------------------------------- captions, answers, matches

/// The longest text any route takes: a prompt, question or text to match, a
/// search's `q`, a label to classify by, a text to embed. The tokenizers cut
/// far shorter, but only after reading the whole text, and they read one long
/// word slowly (a 4 MB one held a model's queue, and every search waiting in
/// it, for seconds); this bounds that work before it is queued.
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
    let task = state.tasks.need(head)?;
    let slot = task
        .reserve(1)
        .map_err(item_error)?
        .pop()
        .expect("one slot");
    run_head_in(task, slot, work).await
}

/// Runs one item on a head's model thread, in a slot the request reserved.
async fn run_head_in(task: &TaskServer, slot: TaskSlot, work: TaskWork) -> ApiResult<TaskOutput> {
    let rx = task.submit(slot, work).map_err(item_error)?;
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
pub async fn caption(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    state.tasks.need(Head::Caption)?;
    let mut form = read_form(multipart, &[]).await?;
    let prompt = text_field(&form, "prompt")?;
    state
        .tasks
        .check_text(Head::Caption, prompt.as_deref(), "prompt")?;
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
pub async fn ask(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    state.tasks.need(Head::Answer)?;
    let mut form = read_form(multipart, &[]).await?;
    let question = text_field(&form, "question")?
        .ok_or_else(|| ApiError::bad_request("give a \"question\" about the image"))?;
    state
        .tasks
        .check_text(Head::Answer, Some(&question), "question")?;
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
pub async fn match_texts(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    state.tasks.need(Head::Match)?;
    let mut form = read_form(multipart, &["text", "texts"]).await?;
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
    for (i, text) in texts.iter().enumerate() {
        let what = match texts.len() {
            1 => "text".to_string(),
            _ => format!("text {}", i + 1),
        };
        state.tasks.check_text(Head::Match, Some(text), &what)?;
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

/// The most results one page of a search holds.
const MAX_K: usize = 1000;

/// `k` and `offset` as given: k from 1 to [`MAX_K`], and offset + k at most
/// [`MAX_DEPTH`] (nothing is clamped: a page never silently differs from the
/// one asked for).
fn page_bounds(k: Option<usize>, offset: Option<usize>) -> ApiResult<(usize, usize)> {
    let k = k.unwrap_or(20);
    if !(1..=MAX_K).contains(&k) {
        return Err(ApiError::bad_request(format!(
            "k must be 1 to {MAX_K}, not {k}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset.saturating_add(k) > MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "offset + k must be at most {MAX_DEPTH} (offset {offset}, k {k})"
        )));
    }
    Ok((k, offset))
}

/// A cosine similarity to keep results at or above: -1 to 1 (a bound past 1,
/// NaN or infinite would quietly keep nothing, or everything).
fn min_score(value: Option<f32>) -> ApiResult<Option<f32>> {
    match value {
        Some(m) if !(-1.0..=1.0).contains(&m) => Err(ApiError::bad_request(format!(
            "min_score must be a cosine similarity, from -1 to 1, not {m}"
        ))),
        other => Ok(other),
    }
}

pub async fn search_get(
    State(state): AppStateRef,
    Params(params): Params<SearchParams>,
) -> ApiResult<Json<Value>> {
    run_search(&state, params, None).await
}

pub async fn search_post(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    let form = read_form(multipart, &[]).await?;
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

/// A `path` glob that cannot be compiled is a 400 naming the parameter (the
/// index's own message names the command line's `--path`).
fn check_path_glob(glob: Option<&str>) -> ApiResult<()> {
    let Some(glob) = glob else { return Ok(()) };
    match seer_index::search::compile_glob(Some(glob)) {
        Ok(_) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            let cause = message
                .split_once(&format!("glob '{glob}': "))
                .map_or(message.as_str(), |(_, cause)| cause);
            Err(ApiError::bad_request(format!(
                "path must be a glob (e.g. *.jpg or **/2024/*), not '{glob}': {cause}"
            )))
        }
    }
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
    let (k, offset) = page_bounds(params.k, params.offset)?;
    let min_score = min_score(params.min_score)?;
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
    if let Some(q) = &q {
        check_length("q", q)?;
    }
    check_path_glob(params.path.as_deref())?;
    let rerank = flag(params.rerank.as_deref(), "rerank")?;
    let rerank_depth = params
        .rerank_depth
        .unwrap_or(seer_index::rerank::DEFAULT_DEPTH);
    if rerank {
        let Some(query) = q.as_deref() else {
            state.tasks.need(Head::Match)?;
            return Err(ApiError::bad_request(
                "rerank needs q: the matching model reads its words with each photo",
            ));
        };
        state.tasks.check_text(Head::Match, Some(query), "q")?;
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
    if mode == SearchMode::Words && min_score.is_some() {
        return Err(ApiError::bad_request(
            "min_score is a cosine similarity, which a words search has none of; use mode=hybrid",
        ));
    }
    let query = match mode {
        SearchMode::Words => Vec::new(),
        _ => {
            let mut query = seer_index::search::QueryCombiner::new(data.searcher.model().dim);
            if q.is_some() {
                served.model.text().map_err(ApiError::bad_request)?;
            }
            // The text and the upload are queued together (room for both, or a 503).
            let n = usize::from(q.is_some()) + usize::from(image.is_some());
            let mut slots = admit(
                &served,
                n,
                |_| "a text and an image query".to_string(),
                |_| "search by one of them, or start the server with a larger --queue".to_string(),
            )?;
            let pixels = match image {
                Some((name, bytes)) => Some(prepare_image(state, &served, bytes, name).await?),
                None => None,
            };
            let text = match &q {
                Some(q) => Some(queue(
                    &served,
                    slots.next().expect("a slot per item"),
                    Work::Text(q.clone()),
                )?),
                None => None,
            };
            let upload = match pixels {
                Some(p) => Some(queue(
                    &served,
                    slots.next().expect("a slot per item"),
                    Work::Pixels(p),
                )?),
                None => None,
            };
            for rx in text.into_iter().chain(upload) {
                query.add(&embedded(rx).await?, 1.0);
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
        min_score,
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
    // A video hit: the time of its best frame, and that frame as its thumbnail.
    if let Some(time) = f.time {
        hit["time"] = json!(time);
        hit["thumbnail"] = json!(format!("/v1/images/{}/thumbnail?t={time}", f.id));
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
    let task = state.tasks.need(Head::Match)?;
    let model = task.model.clone();
    // Room for a match of every photo, or none (a 503 before any work).
    let slots = task.reserve(ranked.len()).map_err(|e| {
        queue_error(
            e,
            |items| format!("the {items} hits to rerank"),
            |capacity| format!("use rerank_depth at most {capacity}"),
        )
    })?;
    // Every photo decodes on the blocking pool and joins the model's batches.
    let mut jobs = Vec::with_capacity(ranked.len());
    for ((f, _), slot) in ranked.iter().zip(slots) {
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
            let task = st.tasks.need(Head::Match)?;
            match run_head_in(task, slot, TaskWork::Match { pixels, texts }).await? {
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
        Some("mp4" | "m4v") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("mkv") => "video/x-matroska",
        Some("webm") => "video/webm",
        Some("ogv") => "video/ogg",
        Some("avi") => "video/x-msvideo",
        Some("wmv") => "video/x-ms-wmv",
        Some("mpg" | "mpeg") => "video/mpeg",
        Some("3gp") => "video/3gpp",
        Some("ts" | "mts" | "m2ts") => "video/mp2t",
        Some("flv") => "video/x-flv",
        _ => "application/octet-stream",
    }
}

/// The original file. A video streams, in the byte range asked for (`Range`,
/// unless an `If-Range` comes with it), so that a `<video>` element can seek
/// in it; a photo comes whole.
pub async fn image(
    State(state): AppStateRef,
    ImageId(id): ImageId,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let st = state.clone();
    // The server sends no validator (ETag, Last-Modified), so an If-Range can
    // never match the file's current one: its Range is ignored and the whole
    // file sent (RFC 9110 §13.1.5), never a part of what may be another file.
    let range = headers
        .get(header::RANGE)
        .filter(|_| !headers.contains_key(header::IF_RANGE))
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    tokio::task::spawn_blocking(move || {
        let file = open_indexed(&st, id)?;
        let path = file.path();
        let kind = content_type(&path);
        if crate::video::is_video(&path) {
            return Ok(crate::video::original(
                file,
                range.as_deref(),
                kind,
                st.request_timeout,
            ));
        }
        Ok::<_, ApiError>(([(header::CONTENT_TYPE, kind)], file.read_all()?).into_response())
    })
    .await
    .map_err(ApiError::internal)?
}

/// What a file's detail view shows: what search answers say of it, and of a
/// video `"video": {"frames": [seconds...]}`, the times of its sampled frames.
pub async fn image_info(State(state): AppStateRef, ImageId(id): ImageId) -> ApiResult<Json<Value>> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let store = st.store()?;
        let mut indexed = false;
        for model in st.models.index_ids(&store)? {
            indexed |= store
                .file_by_id(id, model)?
                .is_some_and(|r| r.error.is_none() && r.embedded);
        }
        let path = store
            .path_of(id)?
            .filter(|_| indexed)
            .ok_or_else(|| ApiError::not_found(format!("no indexed image {id}")))?;
        let mut v = described(&store, id, &path)?;
        let frames = crate::video::frame_times(&st, &store, id)?;
        if !frames.is_empty() {
            v["video"] = json!({ "frames": frames });
        }
        Ok(Json(v))
    })
    .await
    .map_err(ApiError::internal)?
}

#[derive(Deserialize)]
pub struct ThumbnailParams {
    t: Option<String>,
}

/// A PNG at most 256 px on its longest side, made from the checked file on first
/// request and cached by content (see `thumbnails`). Of a video: its frame at
/// `t` seconds (see [`crate::video::thumbnail`]); a photo ignores a valid `t`.
pub async fn thumbnail(
    State(state): AppStateRef,
    ImageId(id): ImageId,
    Params(params): Params<ThumbnailParams>,
) -> ApiResult<Response> {
    let t = crate::video::parse_time(params.t.as_deref())?;
    let st = state.clone();
    // Dropped with this future (a request timeout, a gone client): the
    // blocking decode then stops rather than hold a video slot for nobody.
    let cancel = seer_video::Cancel::new();
    let _cancel_on_drop = cancel.on_drop();
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let file = open_indexed(&st, id)?;
        if crate::video::is_video(&file.path()) {
            return crate::video::thumbnail(&st, &file, t, &cancel);
        }
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
        // As a bare `seer index`: the sampling the index was given last.
        videos: Some(seer_index::VideoOptions {
            ffmpeg: state.ffmpeg.clone(),
            // The server's --max-pixels guards video frames as it does photos.
            sampling: seer_video::Sampling {
                limits: seer_video::FrameLimits {
                    max_pixels: state.limits.max_pixels,
                    ..Default::default()
                },
                ..seer_index::video::sampling_for_run(&mut store, None, None)
                    .map_err(|e| e.to_string())?
                    .0
            },
        }),
    };
    let progress = |before: usize| {
        move |event: seer_index::Progress| {
            let mut job = state.job.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                seer_index::Progress::Planned(n) => job.planned = before + n,
                seer_index::Progress::Embedded => job.done += 1,
                // Counted per file, as the page's bar is.
                seer_index::Progress::VideoFrames { .. } => {}
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
                ffmpeg: state.ffmpeg.clone(),
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
    let (files, vectors, (videos, frames), failures) = tokio::task::spawn_blocking(move || {
        // No index yet: nothing indexed, nothing failed (the page shows how
        // to start), not an error.
        let store = match seer_index::Store::open_read_only(&st.index_dir) {
            Err(seer_index::IndexError::NoIndexYet { .. }) => {
                return Ok((0, 0, (0, 0), Vec::new()))
            }
            opened => opened?,
        };
        let info = st.models.default_model().info(&store);
        let vectors = info.as_ref().map(|m| m.vectors).unwrap_or(0);
        let videos = match &info {
            Ok(m) => store.video_counts(m)?,
            Err(_) => (0, 0),
        };
        let mut failures = store.failures()?;
        failures.extend(store.walk_errors()?);
        Ok::<_, ApiError>((store.file_count()?, vectors, videos, failures))
    })
    .await
    .map_err(ApiError::internal)??;
    let failure_list: Vec<Value> = failures
        .iter()
        .take(100)
        .map(|(p, e)| json!({ "path": display_stored(p), "error": seer_index::pathcodec::failure_cause(p, e) }))
        .collect();
    let mut answer = json!({
        "running": job.running,
        "planned": job.planned,
        "done": job.done,
        "files": files,
        "vectors": vectors,
        "videos": videos,
        "frames": frames,
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
