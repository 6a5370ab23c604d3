//! Promptable segmentation as the commands see it (SAM): an image is embedded
//! once, then each prompt (points, boxes, a previous mask) costs only the
//! prompt encoder and mask decoder.

use seer_image::DecodedImage;

use crate::automask::{AutoMask, AutoMaskOptions};
use crate::error::{EngineError, Result};

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

    /// Every object without a prompt (a grid of points, filtered and
    /// deduplicated): transformers' `mask-generation` pipeline. Best first.
    fn auto_masks(&self, image: &DecodedImage, options: &AutoMaskOptions) -> Result<Vec<AutoMask>> {
        self.auto_masks_until(image, options, &|| false)
    }

    /// [`Segmenter::auto_masks`] that gives up with [`EngineError::Stopped`]
    /// once `stop()` says so, asked before each image encoder run (one per
    /// crop) and each point's prompt: a 32 × 32 grid is a thousand prompts,
    /// tens of seconds on a CPU, which an interactive caller must be able to
    /// interrupt (Python's Ctrl-C).
    fn auto_masks_until(
        &self,
        image: &DecodedImage,
        options: &AutoMaskOptions,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<AutoMask>> {
        let _ = (image, options, stop);
        Err(EngineError::Invalid(
            "this model does not generate masks automatically".into(),
        ))
    }
}

/// COCO polygons of a row-major mask: the outer contour of each 4-connected
/// region (holes are not cut out), traced along pixel edges, clockwise on
/// screen, as `[x0, y0, x1, y1, …]` with a vertex at every corner. Regions
/// come in raster order of their top-left pixel.
pub fn outer_polygons(mask: &[bool], width: usize, height: usize) -> Vec<Vec<f64>> {
    let (w, h) = (width as i64, height as i64);
    if mask.len() != width * height {
        return Vec::new();
    }
    // 4-connected components.
    let mut label = vec![0u32; mask.len()];
    let mut starts = Vec::new();
    let mut stack = Vec::new();
    for i in 0..mask.len() {
        if !mask[i] || label[i] != 0 {
            continue;
        }
        let id = starts.len() as u32 + 1;
        starts.push(i);
        label[i] = id;
        stack.push(i);
        while let Some(j) = stack.pop() {
            let (x, y) = ((j % width) as i64, (j / width) as i64);
            for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] {
                if nx >= 0 && ny >= 0 && nx < w && ny < h {
                    let k = (ny * w + nx) as usize;
                    if mask[k] && label[k] == 0 {
                        label[k] = id;
                        stack.push(k);
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let id = n as u32 + 1;
        let inside = |x: i64, y: i64| {
            x >= 0 && y >= 0 && x < w && y < h && label[(y * w + x) as usize] == id
        };
        let start = ((s % width) as i64, (s / width) as i64);
        // At a corner moving along d with the region on the right: the pixel
        // ahead-right and ahead-left decide the turn (4-connectivity).
        let (mut p, mut d) = (start, (1i64, 0i64));
        let mut poly: Vec<f64> = Vec::new();
        loop {
            let r = (-d.1, d.0);
            let ar = (p.0 + (d.0 + r.0 - 1) / 2, p.1 + (d.1 + r.1 - 1) / 2);
            let al = (p.0 + (d.0 - r.0 - 1) / 2, p.1 + (d.1 - r.1 - 1) / 2);
            let next = if !inside(ar.0, ar.1) {
                r
            } else if inside(al.0, al.1) {
                (-r.0, -r.1)
            } else {
                d
            };
            if next != d || poly.is_empty() {
                poly.push(p.0 as f64);
                poly.push(p.1 as f64);
            }
            d = next;
            p = (p.0 + d.0, p.1 + d.1);
            if p == start {
                break;
            }
        }
        out.push(poly);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::outer_polygons;

    #[test]
    fn polygons_trace_outer_contours() {
        // One pixel: its four corners.
        assert_eq!(
            outer_polygons(&[false, true, false, false], 2, 2),
            vec![vec![1.0, 0.0, 2.0, 0.0, 2.0, 1.0, 1.0, 1.0]]
        );
        // An L and a separate pixel; a ring's hole is not cut out.
        #[rustfmt::skip]
        let m = [
            true,  false, false, true,
            true,  true,  false, false,
        ];
        let p = outer_polygons(&m, 4, 2);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 2.0, 1.0, 2.0, 2.0, 0.0, 2.0]
        );
        assert_eq!(p[1], vec![3.0, 0.0, 4.0, 0.0, 4.0, 1.0, 3.0, 1.0]);
        let mut ring = vec![true; 9];
        ring[4] = false;
        assert_eq!(
            outer_polygons(&ring, 3, 3),
            vec![vec![0.0, 0.0, 3.0, 0.0, 3.0, 3.0, 0.0, 3.0]]
        );
        // Diagonal neighbours are separate regions.
        assert_eq!(outer_polygons(&[true, false, false, true], 2, 2).len(), 2);
    }
}
