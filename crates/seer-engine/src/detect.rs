//! Open-vocabulary detection as the commands see it (OWL-ViT, OWLv2): boxes
//! for text queries or for an example image, in the original image's pixels.
//!
//! The post-processing is written once here, on a family's raw outputs
//! ([`RawDetections`]), so that with NMS off it is exactly transformers':
//! - text queries (`post_process_object_detection`): each box takes its best
//!   query, score `sigmoid(logit)`, kept when `score > threshold`; then
//!   optional per-class NMS;
//! - image queries (`post_process_image_guided_detection`): NMS over all boxes
//!   (IoU on normalised boxes), scores below the threshold zeroed, and the
//!   reported score is transformers' display "alpha",
//!   `clip((s − 0.1·max) / (0.9·max), 0, 1)`, kept when above 0. The best box
//!   therefore scores 1.

use std::sync::Arc;

use seer_image::DecodedImage;

use crate::error::{EngineError, Result};
use crate::tasks::LoadedModel;

/// transformers' default threshold for text queries (`post_process_object_detection`).
pub const DEFAULT_TEXT_THRESHOLD: f32 = 0.1;
/// transformers' default threshold for image queries (`post_process_image_guided_detection`).
pub const DEFAULT_IMAGE_THRESHOLD: f32 = 0.0;
/// Default NMS IoU: transformers' image-guided default, used for both kinds.
pub const DEFAULT_NMS_IOU: f32 = 0.3;

/// What to look for.
#[derive(Clone, Debug)]
pub enum DetectQuery {
    /// One class per text ("a cat", "a dog").
    Texts(Vec<String>),
    /// One-shot: find more of what this image shows (OWL's image-conditioned
    /// detection).
    Image(DecodedImage),
}

impl DetectQuery {
    /// The reference's default score threshold for this kind of query.
    pub fn default_threshold(&self) -> f32 {
        match self {
            Self::Texts(_) => DEFAULT_TEXT_THRESHOLD,
            Self::Image(_) => DEFAULT_IMAGE_THRESHOLD,
        }
    }
}

/// Post-processing settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectOptions {
    /// Boxes scoring below this are dropped.
    pub threshold: f32,
    /// Per-class non-maximum suppression IoU; 1.0 turns it off (the
    /// reference's own post-processing).
    pub nms_iou: f32,
}

impl DetectOptions {
    /// Refuses settings that cannot mean anything.
    pub fn validate(&self) -> Result<()> {
        if !self.threshold.is_finite() {
            return Err(EngineError::Invalid(format!(
                "--threshold must be a number, got {}",
                self.threshold
            )));
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return Err(EngineError::Invalid(format!(
                "--nms must be an IoU in (0, 1] (1 turns NMS off), got {}",
                self.nms_iou
            )));
        }
        Ok(())
    }
}

/// One detected box.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Detection {
    /// The query text (or "image" for an image query).
    pub label: String,
    /// Index of the query.
    pub label_index: usize,
    pub score: f32,
    /// `[x0, y0, x1, y1]` in the original image's pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

/// Queries embedded once: the same labels over many photos reuse them.
pub struct PreparedQueries {
    pub labels: Vec<String>,
    /// Whether this is an image query (its post-processing differs).
    pub image_query: bool,
    /// Family-specific query embeddings.
    pub embeddings: Box<dyn std::any::Any + Send + Sync>,
}

/// A model that finds boxes for queries.
pub trait Detector: Send + Sync {
    /// Embeds the queries once (texts through the text tower, an image query
    /// through the image tower and its chosen box).
    fn prepare(&self, query: &DetectQuery) -> Result<PreparedQueries>;

    /// Detections in `image` for prepared queries, best first.
    fn detect(
        &self,
        image: &DecodedImage,
        queries: &PreparedQueries,
        options: &DetectOptions,
    ) -> Result<Vec<Detection>>;
}

/// The model's detector, or an error saying what the model is.
pub fn detector_of(model: &LoadedModel) -> Result<Arc<dyn Detector>> {
    model.detector.clone().ok_or_else(|| {
        EngineError::Invalid(format!(
            "model '{}' ({}) detects no objects: this needs an OWL-ViT or OWLv2 checkpoint \
             (OwlViTForObjectDetection, Owlv2ForObjectDetection, e.g. google/owlv2-base-patch16-ensemble)",
            model.id, model.family
        ))
    })
}

/// `run` over `items`, in order: on the CPU (`on_cpu`), the items cut into
/// one run per thread (`split_batch::per_thread`, as a CLIP batch is cut), each
/// run on a one-thread pool, so that each item's forward runs alone on its
/// thread; elsewhere (a GPU) one after another. A detector's threads sharing
/// one image's every product, attention and norm wait for each other dozens of
/// times a forward; an image alone on a thread does not. Each item's result
/// (its error too) stays with its item. Used by `seer detect` and the Python
/// package's `detect`, so both run an image the same way.
pub fn one_item_per_thread<I: Sync, T: Send>(
    on_cpu: bool,
    items: &[I],
    run: &(impl Fn(&I) -> T + Sync),
) -> Vec<T> {
    // The parts themselves cannot fail: each item's error is in its `T`.
    let Ok(parts) =
        seer_models::nn::split_batch::per_thread(on_cpu, &vec![1; items.len()], |part| {
            Ok::<_, std::convert::Infallible>(items[part].iter().map(run).collect::<Vec<_>>())
        });
    parts.into_iter().flatten().collect()
}

/// A family's raw outputs for one image.
pub struct RawDetections<'a> {
    /// (boxes × queries) logits, row-major by box.
    pub logits: &'a [f32],
    pub queries: usize,
    /// (cx, cy, w, h) in [0, 1] of `frame`.
    pub boxes: &'a [[f32; 4]],
    /// `(width, height)` in pixels that a normalised coordinate of 1 means.
    pub frame: (u32, u32),
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn corners(b: [f32; 4]) -> [f32; 4] {
    [
        b[0] - 0.5 * b[2],
        b[1] - 0.5 * b[3],
        b[0] + 0.5 * b[2],
        b[1] + 0.5 * b[3],
    ]
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |x: &[f32; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

fn iou64(a: &[f32; 4], b: &[f32; 4]) -> f64 {
    let a = a.map(f64::from);
    let b = b.map(f64::from);
    let area = |x: &[f64; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area(&a) + area(&b) - inter)
}

fn scale(b: [f32; 4], (w, h): (u32, u32)) -> [f32; 4] {
    let (w, h) = (w as f32, h as f32);
    [b[0] * w, b[1] * h, b[2] * w, b[3] * h]
}

fn best_first(mut d: Vec<Detection>) -> Vec<Detection> {
    d.sort_by(|a, b| b.score.total_cmp(&a.score));
    d
}

/// Text queries: `post_process_object_detection`, then per-class NMS.
pub fn text_detections(
    raw: &RawDetections,
    labels: &[String],
    options: &DetectOptions,
) -> Vec<Detection> {
    let q = raw.queries.max(1);
    let mut kept: Vec<Detection> = raw
        .logits
        .chunks(q)
        .zip(raw.boxes)
        .filter_map(|(row, b)| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            let score = sigmoid(row[best]);
            (score > options.threshold).then(|| Detection {
                label: labels.get(best).cloned().unwrap_or_default(),
                label_index: best,
                score,
                bbox: scale(corners(*b), raw.frame),
            })
        })
        .collect();
    kept = best_first(kept);
    if options.nms_iou >= 1.0 {
        return kept;
    }
    let mut out: Vec<Detection> = Vec::with_capacity(kept.len());
    for d in kept {
        let suppressed = out.iter().any(|k| {
            k.label_index == d.label_index && iou64(&k.bbox, &d.bbox) > options.nms_iou as f64
        });
        if !suppressed {
            out.push(d);
        }
    }
    out
}

/// Image queries: `post_process_image_guided_detection` (one query).
pub fn image_guided_detections(
    raw: &RawDetections,
    label: &str,
    options: &DetectOptions,
) -> Vec<Detection> {
    let q = raw.queries.max(1);
    let mut scores: Vec<f32> = raw
        .logits
        .chunks(q)
        .map(|row| sigmoid(row.iter().copied().fold(f32::NEG_INFINITY, f32::max)))
        .collect();
    let boxes: Vec<[f32; 4]> = raw.boxes.iter().map(|b| corners(*b)).collect();
    if options.nms_iou < 1.0 {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        for i in order {
            if scores[i] == 0.0 {
                continue;
            }
            for j in 0..boxes.len() {
                if j != i && iou(&boxes[i], &boxes[j]) > options.nms_iou {
                    scores[j] = 0.0;
                }
            }
        }
    }
    if scores.iter().all(|&s| s == 0.0) {
        return Vec::new();
    }
    for s in scores.iter_mut() {
        if *s < options.threshold {
            *s = 0.0;
        }
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) + 1e-6;
    let out = scores
        .iter()
        .zip(&boxes)
        .filter_map(|(&s, b)| {
            let alpha = ((s - max * 0.1) / (max * 0.9)).clamp(0.0, 1.0);
            (alpha > 0.0).then(|| Detection {
                label: label.to_string(),
                label_index: 0,
                score: alpha,
                bbox: scale(*b, raw.frame),
            })
        })
        .collect();
    best_first(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_is_per_class_and_one_turns_it_off() {
        // Two overlapping boxes of class 0, one of class 1 on top of them.
        let boxes = [
            [0.5, 0.5, 0.5, 0.5],
            [0.5625, 0.5, 0.5, 0.5],
            [0.5, 0.5, 0.5, 0.5],
        ];
        let logits = [2.0, -9.0, 1.0, -9.0, -9.0, 0.5];
        let raw = RawDetections {
            logits: &logits,
            queries: 2,
            boxes: &boxes,
            frame: (100, 50),
        };
        let labels = vec!["a".to_string(), "b".to_string()];
        let on = DetectOptions {
            threshold: 0.1,
            nms_iou: 0.5,
        };
        let got = text_detections(&raw, &labels, &on);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].label.as_str(), got[1].label.as_str()), ("a", "b"));
        assert_eq!(got[0].bbox, [25.0, 12.5, 75.0, 37.5]);
        let off = DetectOptions { nms_iou: 1.0, ..on };
        assert_eq!(text_detections(&raw, &labels, &off).len(), 3);
        assert!(DetectOptions { nms_iou: 0.0, ..on }.validate().is_err());
        assert!(DetectOptions {
            threshold: f32::NAN,
            ..on
        }
        .validate()
        .is_err());
    }
}
