//! `/v1/segment` and `/v1/detect`: an uploaded image (`image`) or an indexed
//! one (`id`), read with the image routes' checks (see `files`) and decoded
//! within the server's limits, as the language routes take theirs.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use seer_engine::detect::{DetectOptions, DetectQuery, DEFAULT_NMS_IOU};
use seer_engine::segment::{SegmentImage, SegmentPrompt};
use seer_image::DecodedImage;
use serde_json::{json, Value};

use super::{check_length, flag, open_indexed, read_form, with_id, AppStateRef, Form, FormData};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::vision::{area_and_box, engine_error, mask_png, StoredMask};

/// The most points one `/v1/segment` prompt holds.
pub const MAX_POINTS: usize = 64;
/// The most boxes (objects) one prompt holds: each runs the mask decoder.
pub const MAX_BOXES: usize = 16;
/// The most labels one `/v1/detect` request looks for.
pub const MAX_LABELS: usize = 32;
/// Mask PNGs are at most this many pixels on their longest side (area and
/// bbox are measured on the full-size mask).
pub const MASK_PNG_SIDE: u32 = 1024;

enum Source {
    Upload(String, Bytes),
    Indexed(i64),
}

fn id_field(form: &Form, name: &str) -> ApiResult<Option<i64>> {
    match form
        .fields
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(raw) => raw.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "{name}: '{raw}' is not an image id (ids are integers)"
            ))
        }),
        None => Ok(None),
    }
}

/// The request's image: an upload or an indexed image's id, exactly one.
fn source_of(form: &mut Form) -> ApiResult<Source> {
    let id = id_field(form, "id")?;
    match (form.image.take(), id) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give an uploaded \"image\" or an indexed image's \"id\", not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "upload the image as field \"image\", or give an indexed image's \"id\"",
        )),
        (Some((name, bytes)), None) => Ok(Source::Upload(name, bytes)),
        (None, Some(id)) => Ok(Source::Indexed(id)),
    }
}

fn decode(bytes: &[u8], name: &str, state: &AppState) -> ApiResult<DecodedImage> {
    seer_image::decode_bytes_full(bytes, name, &state.limits)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}

/// The image's bytes and name (blocking: call off the async threads).
fn read_source(state: &AppState, source: Source) -> ApiResult<(String, Vec<u8>)> {
    Ok(match source {
        Source::Upload(name, bytes) => (name, bytes.to_vec()),
        Source::Indexed(id) => (format!("image {id}"), open_indexed(state, id)?.read_all()?),
    })
}

fn source_id(source: &Source) -> Option<i64> {
    match source {
        Source::Indexed(id) => Some(*id),
        Source::Upload(..) => None,
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A number field: absent or blank is `None`; anything but a finite number
/// is refused, naming the field.
fn number(form: &Form, name: &str) -> ApiResult<Option<f32>> {
    let Some(raw) = form
        .fields
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    match raw.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a number, not '{raw}'"
        ))),
    }
}

// ---------------------------------------------------------------- segment

fn coordinate(v: &Value, what: &str) -> ApiResult<f32> {
    v.as_f64()
        .map(|x| x as f32)
        .filter(|x| x.is_finite())
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be a number, got {v}")))
}

/// `points`: JSON `[[x, y, label], …]` (label 1: on the object, 0: not on it;
/// default 1) or `[{"x": …, "y": …, "label": …}, …]`.
fn parse_points(raw: &str) -> ApiResult<Vec<(f32, f32, bool)>> {
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "points must be JSON like [[x, y, 1], [x, y, 0]] ({e})"
        ))
    })?;
    let list = value.as_array().ok_or_else(|| {
        ApiError::bad_request("points must be a JSON list like [[x, y, 1], [x, y, 0]]")
    })?;
    if list.len() > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_POINTS} points per prompt, got {}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let what = |c: &str| format!("point {i}: {c}");
            let (x, y, label) = match p {
                Value::Array(a) if a.len() == 2 || a.len() == 3 => (&a[0], &a[1], a.get(2)),
                Value::Object(o) => (
                    o.get("x").unwrap_or(&Value::Null),
                    o.get("y").unwrap_or(&Value::Null),
                    o.get("label"),
                ),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "point {i} must be [x, y] or [x, y, label], got {p}"
                    )))
                }
            };
            let label = match label {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(v) if v.as_f64() == Some(1.0) => true,
                Some(v) if v.as_f64() == Some(0.0) => false,
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "point {i}: label must be 1 (on the object) or 0 (not on it), got {v}"
                    )))
                }
            };
            Ok((
                coordinate(x, &what("x"))?,
                coordinate(y, &what("y"))?,
                label,
            ))
        })
        .collect()
}

/// `boxes`: JSON `[[x0, y0, x1, y1], …]` (one box alone may be given flat).
fn parse_boxes(raw: &str) -> ApiResult<Vec<[f32; 4]>> {
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!("boxes must be JSON like [[x0, y0, x1, y1]] ({e})"))
    })?;
    let list = match &value {
        Value::Array(a) if a.len() == 4 && a.iter().all(Value::is_number) => vec![value.clone()],
        Value::Array(a) => a.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "boxes must be a JSON list like [[x0, y0, x1, y1]]",
            ))
        }
    };
    if list.len() > MAX_BOXES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BOXES} boxes per prompt, got {}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, b)| match b.as_array() {
            Some(a) if a.len() == 4 => {
                let mut out = [0.0; 4];
                for (k, v) in a.iter().enumerate() {
                    out[k] = coordinate(v, &format!("box {i}"))?;
                }
                Ok(out)
            }
            _ => Err(ApiError::bad_request(format!(
                "box {i} must be [x0, y0, x1, y1], got {b}"
            ))),
        })
        .collect()
}

/// What the embedding cache had for the image.
enum Embedded {
    Hit(Arc<SegmentImage>),
    Miss(DecodedImage),
}

/// Masks for a prompt on an uploaded or indexed image (multipart: `image` or
/// `id`; `points`, `boxes` as JSON; `mask_id` of an earlier answer to refine;
/// `multimask`; `normalized` for coordinates as fractions of the size).
pub async fn segment(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    state.vision.segmentation()?;
    let mut form = read_form(multipart, &[]).await?;
    let field = |name: &str| {
        form.fields
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut points = match field("points") {
        Some(raw) => parse_points(&raw)?,
        None => Vec::new(),
    };
    let mut boxes = match field("boxes") {
        Some(raw) => parse_boxes(&raw)?,
        None => Vec::new(),
    };
    let mask_id = field("mask_id");
    if points.is_empty() && boxes.is_empty() && mask_id.is_none() {
        return Err(ApiError::bad_request(
            "give \"points\" ([[x, y, 1], …]), \"boxes\" ([[x0, y0, x1, y1], …]) and/or a \"mask_id\" to refine",
        ));
    }
    let normalized = flag(field("normalized").as_deref(), "normalized")?;
    // SAM's advice: three masks for an ambiguous single click, one otherwise.
    let multimask = match field("multimask") {
        Some(v) => flag(Some(&v), "multimask")?,
        None => points.len() == 1 && boxes.is_empty() && mask_id.is_none(),
    };
    if normalized {
        let outside = points
            .iter()
            .flat_map(|p| [p.0, p.1])
            .chain(boxes.iter().flatten().copied())
            .any(|v| !(0.0..=1.0).contains(&v));
        if outside {
            return Err(ApiError::bad_request(
                "with normalized=true every coordinate is a fraction from 0 to 1",
            ));
        }
    }
    let source = source_of(&mut form)?;
    let id = source_id(&source);
    // The mask to refine, checked before any model runs.
    let refined = match &mask_id {
        None => None,
        Some(m) => Some(state.vision.segmentation()?.mask(m).ok_or_else(|| {
            ApiError::bad_request(format!(
                "mask_id '{m}' is unknown or expired (the server keeps the last {} masks); segment again without it",
                crate::vision::MASK_CACHE
            ))
        })?),
    };
    let of_image = refined.as_ref().map(|r| r.image);
    let another = format!(
        "mask_id '{}' is a mask of another image",
        mask_id.as_deref().unwrap_or_default()
    );

    // The embedding: from the cache when this image was embedded lately.
    let st = state.clone();
    let (key, embedded) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let seg = st.vision.segmentation()?;
        let hit = |key: [u8; 32]| -> ApiResult<Option<_>> {
            if of_image.is_some_and(|k| k != key) {
                return Err(ApiError::bad_request(&another));
            }
            Ok(seg.cached(&key).map(|h| (key, Embedded::Hit(h))))
        };
        let (name, bytes) = match source {
            Source::Upload(name, bytes) => (name, bytes.to_vec()),
            Source::Indexed(id) => {
                let file = open_indexed(&st, id)?;
                // What the index recorded of the checked file: its content hash.
                if let Some(found) = file.record.hash.map(hit).transpose()?.flatten() {
                    return Ok(found);
                }
                (format!("image {id}"), file.read_all()?)
            }
        };
        let key = *blake3::hash(&bytes).as_bytes();
        if let Some(found) = hit(key)? {
            return Ok(found);
        }
        Ok((key, Embedded::Miss(decode(&bytes, &name, &st)?)))
    })
    .await
    .map_err(ApiError::internal)??;
    let seg = state.vision.segmentation()?;
    let stats = &state.vision.stats;
    let count = |a: &std::sync::atomic::AtomicU64, n: u64| {
        a.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    let (image, cached, embed_ms) = match embedded {
        Embedded::Hit(image) => {
            count(&stats.embedding_hits, 1);
            (image, true, None)
        }
        Embedded::Miss(decoded) => {
            let segmenter = seg.segmenter.clone();
            let t = Instant::now();
            let image = seg
                .gate
                .run(move || segmenter.embed(&decoded))
                .await?
                .map_err(engine_error)?;
            let image = Arc::new(image);
            seg.keep(key, image.clone());
            count(&stats.embeddings, 1);
            (image, false, Some(millis(t.elapsed())))
        }
    };
    let (width, height) = (image.width, image.height);
    if normalized {
        let (w, h) = (width as f32, height as f32);
        for p in &mut points {
            (p.0, p.1) = (p.0 * w, p.1 * h);
        }
        for b in &mut boxes {
            *b = [b[0] * w, b[1] * h, b[2] * w, b[3] * h];
        }
    }
    let mask_logits = refined.map(|r| r.logits.clone());
    let prompt = SegmentPrompt {
        points,
        boxes,
        mask_logits,
    };

    // The prompt encoder and mask decoder only.
    let segmenter = seg.segmenter.clone();
    let prompted = image.clone();
    let (masks, decoder) = seg
        .gate
        .run(move || {
            let t = Instant::now();
            let masks = segmenter.segment(&prompted, &prompt, multimask);
            (masks, t.elapsed())
        })
        .await?;
    let masks = masks.map_err(engine_error)?;
    count(&stats.decoder_runs, 1);
    count(&stats.decoder_micros, decoder.as_micros() as u64);

    let drawn = tokio::task::spawn_blocking(move || {
        masks
            .into_iter()
            .map(|m| {
                let (area, bbox) = area_and_box(&m.mask, m.width);
                let png = mask_png(&m.mask, m.width, m.height, MASK_PNG_SIDE);
                (m, area, bbox, png)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(drawn.len());
    for (m, area, bbox, png) in drawn {
        let (png, pw, ph) = png.map_err(ApiError::internal)?;
        let mask_id = seg.keep_mask(StoredMask {
            image: key,
            logits: m.low_res_logits,
        });
        out.push(json!({
            "object": m.object,
            "iou": m.iou,
            "area": area,
            "bbox": bbox,
            "mask_id": mask_id,
            "png": format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&png)
            ),
            "png_width": pw,
            "png_height": ph,
        }));
    }
    Ok(Json(with_id(
        json!({
            "model": seg.model.id,
            "width": width,
            "height": height,
            "multimask": multimask,
            "cached": cached,
            "masks": out,
            "timing": {
                "embed_ms": embed_ms,
                "decoder_ms": millis(decoder),
                "total_ms": millis(started.elapsed()),
            },
        }),
        id,
    )))
}

// ---------------------------------------------------------------- detect

/// Boxes for labels (or for what an indexed photo shows) in an uploaded or
/// indexed image (multipart: `image` or `id`; `labels` comma-separated and/or
/// `label` once per label, or `query_id`; `threshold`; `nms`).
pub async fn detect(State(state): AppStateRef, multipart: FormData) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    state.vision.detection()?;
    let mut form = read_form(multipart, &["label", "labels"]).await?;
    let mut labels: Vec<String> = Vec::new();
    let given = form
        .values("label")
        .into_iter()
        .map(str::to_string)
        .chain(
            form.values("labels")
                .into_iter()
                .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>()),
        )
        .collect::<Vec<_>>();
    for label in given {
        let label = label.trim();
        if label.is_empty() {
            continue;
        }
        check_length("label", label)?;
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_string());
        }
    }
    let query_id = id_field(&form, "query_id")?;
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LABELS} labels per request, got {}",
            labels.len()
        )));
    }
    let text_query = match (labels.is_empty(), query_id) {
        (false, Some(_)) => {
            return Err(ApiError::bad_request(
                "give \"labels\" or a \"query_id\" (an indexed photo of the thing to find), not both",
            ))
        }
        (true, None) => {
            return Err(ApiError::bad_request(
                "give \"labels\" (comma-separated, e.g. cat, dog) or a \"query_id\" (an indexed photo of the thing to find)",
            ))
        }
        (false, None) => true,
        (true, Some(_)) => false,
    };
    let threshold = number(&form, "threshold")?;
    if let Some(t) = threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(ApiError::bad_request(format!(
            "threshold must be a score from 0 to 1, not {t}"
        )));
    }
    let nms = number(&form, "nms")?.unwrap_or(DEFAULT_NMS_IOU);
    if !(nms > 0.0 && nms <= 1.0) {
        return Err(ApiError::bad_request(format!(
            "nms must be an IoU above 0 and at most 1 (1 turns it off), not {nms}"
        )));
    }
    let source = source_of(&mut form)?;
    let id = source_id(&source);
    let det = state.vision.detection()?;
    let stats = &state.vision.stats;
    let count = |a: &std::sync::atomic::AtomicU64, n: u64| {
        a.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };

    // The queries: text queries from the cache when asked for lately.
    let cached_prepared = match text_query {
        true => det.cached(&labels),
        false => None,
    };
    let cached_queries = cached_prepared.is_some();
    let (queries, prepare_ms) = match cached_prepared {
        Some(q) => {
            count(&stats.query_hits, 1);
            (q, None)
        }
        None => {
            let query = match query_id {
                None => DetectQuery::Texts(labels.clone()),
                Some(qid) => {
                    let st = state.clone();
                    let decoded = tokio::task::spawn_blocking(move || -> ApiResult<_> {
                        let (name, bytes) = read_source(&st, Source::Indexed(qid))?;
                        decode(&bytes, &name, &st)
                    })
                    .await
                    .map_err(ApiError::internal)??;
                    DetectQuery::Image(decoded)
                }
            };
            let detector = det.detector.clone();
            let t = Instant::now();
            let prepared = Arc::new(
                det.gate
                    .run(move || detector.prepare(&query))
                    .await?
                    .map_err(engine_error)?,
            );
            if text_query {
                det.keep(labels.clone(), prepared.clone());
            }
            (prepared, Some(millis(t.elapsed())))
        }
    };
    let options = DetectOptions {
        threshold: threshold.unwrap_or(match text_query {
            true => seer_engine::detect::DEFAULT_TEXT_THRESHOLD,
            false => seer_engine::detect::DEFAULT_IMAGE_THRESHOLD,
        }),
        nms_iou: nms,
    };
    let st = state.clone();
    let decoded = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let (name, bytes) = read_source(&st, source)?;
        decode(&bytes, &name, &st)
    })
    .await
    .map_err(ApiError::internal)??;
    let (width, height) = (decoded.width(), decoded.height());
    let detector = det.detector.clone();
    let (found, took) = det
        .gate
        .run(move || {
            let t = Instant::now();
            let found = detector.detect(&decoded, &queries, &options);
            (found, t.elapsed())
        })
        .await?;
    let found = found.map_err(engine_error)?;
    count(&stats.detections, 1);
    count(&stats.detect_micros, took.as_micros() as u64);
    let detections: Vec<Value> = found
        .iter()
        .map(|d| json!({ "label": d.label, "score": d.score, "box": d.bbox }))
        .collect();
    let mut answer = json!({
        "model": det.model.id,
        "width": width,
        "height": height,
        "threshold": options.threshold,
        "nms": options.nms_iou,
        "cached_queries": cached_queries,
        "detections": detections,
        "timing": {
            "prepare_ms": prepare_ms,
            "detect_ms": millis(took),
            "total_ms": millis(started.elapsed()),
        },
    });
    if let Some(q) = query_id {
        answer["query_id"] = json!(q);
    } else {
        answer["labels"] = json!(labels);
    }
    Ok(Json(with_id(answer, id)))
}
