//! Open-vocabulary detection as the commands see it (OWL-ViT, OWLv2): boxes
//! for text queries or for an example image, in the original image's pixels.

use seer_image::DecodedImage;

use crate::error::Result;

/// What to look for.
#[derive(Clone, Debug)]
pub enum DetectQuery {
    /// One class per text ("a cat", "a dog").
    Texts(Vec<String>),
    /// One-shot: find more of what this image shows (OWL's image-conditioned
    /// detection).
    Image(DecodedImage),
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

/// Text queries embedded once: the same labels over many photos reuse them.
pub struct PreparedQueries {
    pub labels: Vec<String>,
    /// Family-specific query embeddings.
    pub embeddings: Box<dyn std::any::Any + Send + Sync>,
}

/// A model that finds boxes for queries.
pub trait Detector: Send + Sync {
    /// Embeds the queries once (texts through the text tower, an image query
    /// through the image tower and its best box).
    fn prepare(&self, query: &DetectQuery) -> Result<PreparedQueries>;

    /// Detections in `image` for prepared queries, best first.
    fn detect(
        &self,
        image: &DecodedImage,
        queries: &PreparedQueries,
        options: &DetectOptions,
    ) -> Result<Vec<Detection>>;
}
