//! Promptable segmentation as the commands see it (SAM): an image is embedded
//! once, then each prompt (points, boxes, a previous mask) costs only the
//! prompt encoder and mask decoder.

use seer_image::DecodedImage;

use crate::error::Result;

/// A prompt in the original image's pixels. Each box is one object (SAM's
/// point batch): it gets its own masks, with every point added to it; without
/// boxes the points describe one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SegmentPrompt {
    /// `(x, y, foreground)`.
    pub points: Vec<(f32, f32, bool)>,
    /// `[x0, y0, x1, y1]`.
    pub boxes: Vec<[f32; 4]>,
    /// Low-resolution mask logits of an earlier answer (`256 × 256`).
    pub mask_logits: Option<Vec<f32>>,
}

/// One predicted mask at the original image's size.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentMask {
    /// Which object of the prompt (the box's index; 0 without boxes).
    pub object: usize,
    /// The model's predicted IoU.
    pub iou: f32,
    pub width: u32,
    pub height: u32,
    /// Row-major, `width × height`, thresholded as the reference does.
    pub mask: Vec<bool>,
    /// The low-resolution logits (`256 × 256`), the reference's `pred_masks`.
    pub low_res_logits: Vec<f32>,
}

/// An image as the mask decoder reads it: embedded once, prompted many times.
pub struct SegmentImage {
    pub width: u32,
    pub height: u32,
    /// Family-specific embedding (and whatever else prompts need).
    pub embedding: Box<dyn std::any::Any + Send + Sync>,
}

/// A model that cuts objects out of images.
pub trait Segmenter: Send + Sync {
    /// Runs the image encoder once.
    fn embed(&self, image: &DecodedImage) -> Result<SegmentImage>;

    /// Masks for one prompt: three with `multimask`, else one, per object
    /// (object by object).
    fn segment(
        &self,
        image: &SegmentImage,
        prompt: &SegmentPrompt,
        multimask: bool,
    ) -> Result<Vec<SegmentMask>>;
}
