//! Automatic mask generation: every object in an image without a prompt,
//! exactly as transformers' `mask-generation` pipeline
//! (`MaskGenerationPipeline` with `SamImageProcessor`'s helpers) does it:
//!
//! 1. `generate_crop_boxes`: the whole image, plus `crop_n_layers` layers of
//!    `(2^(i+1))²` overlapping crops; each crop gets a regular grid of
//!    `points_per_side / downscale^layer` points per side (`_build_point_grid`),
//!    scaled to the crop's resized input (`_normalize_coordinates`);
//! 2. each crop is embedded once and every grid point prompts SAM on its own
//!    (three masks per point, a padding point as the processor adds);
//! 3. `filter_masks`: predicted IoU `> pred_iou_thresh`, stability score
//!    (`|logits > thr + offset| / |logits > thr − offset|` on the upscaled
//!    logits) `> stability_score_thresh`, the mask's box (`_batched_mask_to_box`,
//!    inclusive pixel corners), masks touching a crop edge that is not an
//!    image edge dropped (`_is_box_near_crop_edge`, 20 px), then padded back
//!    to the whole image;
//! 4. `post_process_for_mask_generation`: one box NMS over all masks (torchvision
//!    `batched_nms`, IoU `> crops_nms_thresh` suppressed), best predicted IoU first.

use seer_image::DecodedImage;

use crate::error::{EngineError, Result};
use crate::segment::SegmentMask;

/// The pipeline's settings, with its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoMaskOptions {
    /// Grid points per side of each layer-0 crop (`points_per_crop`, 32).
    pub points_per_side: usize,
    /// Keep masks whose predicted IoU is above this (0.88); 0 turns it off.
    pub pred_iou_thresh: f32,
    /// Keep masks whose stability score is above this (0.95); 0 turns it off.
    pub stability_score_thresh: f32,
    /// Shift of the cutoff for the stability score (1.0).
    pub stability_score_offset: f32,
    /// Logit threshold that binarises masks (0.0).
    pub mask_threshold: f32,
    /// Box IoU above which a mask is suppressed by a better one (`crops_nms_thresh`, 0.7).
    pub nms_thresh: f32,
    /// Layers of crops beyond the whole image (`crops_n_layers`, 0).
    pub crop_n_layers: usize,
    /// Overlap of first-layer crops as a fraction of the short side (512/1500).
    pub crop_overlap_ratio: f64,
    /// Layer `i` uses `points_per_side / factor^i` points per side (1).
    pub crop_n_points_downscale_factor: usize,
}

impl Default for AutoMaskOptions {
    fn default() -> Self {
        Self {
            points_per_side: 32,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            mask_threshold: 0.0,
            nms_thresh: 0.7,
            crop_n_layers: 0,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_n_points_downscale_factor: 1,
        }
    }
}

/// The most crop layers accepted (layer 4 alone is 256 crops).
pub const MAX_CROP_LAYERS: usize = 4;

impl AutoMaskOptions {
    /// Refuses settings that cannot mean anything.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Invalid(m));
        if self.points_per_side == 0 || self.points_per_side > 1024 {
            return bad(format!(
                "--points-per-side must be 1 to 1024, got {}",
                self.points_per_side
            ));
        }
        for (name, v) in [
            ("--pred-iou-thresh", self.pred_iou_thresh),
            ("--stability-score-thresh", self.stability_score_thresh),
            ("--stability-score-offset", self.stability_score_offset),
            ("--mask-threshold", self.mask_threshold),
        ] {
            if !v.is_finite() {
                return bad(format!("{name} must be a number, got {v}"));
            }
        }
        if !(self.nms_thresh > 0.0 && self.nms_thresh <= 1.0) {
            return bad(format!(
                "--box-nms-thresh must be an IoU in (0, 1], got {}",
                self.nms_thresh
            ));
        }
        if self.crop_n_layers > MAX_CROP_LAYERS {
            return bad(format!(
                "--crop-n-layers must be at most {MAX_CROP_LAYERS}, got {}",
                self.crop_n_layers
            ));
        }
        if !(self.crop_overlap_ratio >= 0.0 && self.crop_overlap_ratio < 1.0) {
            return bad(format!(
                "--crop-overlap-ratio must be in [0, 1), got {}",
                self.crop_overlap_ratio
            ));
        }
        if self.crop_n_points_downscale_factor == 0 {
            return bad("--crop-n-points-downscale-factor must be at least 1".into());
        }
        Ok(())
    }
}

/// One generated mask, at the whole image's size.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoMask {
    /// `object` is the grid point's index within its crop.
    pub mask: SegmentMask,
    /// The mask's box `[x0, y0, x1, y1]`, inclusive pixel corners (the
    /// reference's `bounding_boxes`).
    pub box_xyxy: [u32; 4],
    /// The crop it came from, `[x0, y0, x1, y1]` (exclusive right/bottom).
    pub crop_box: [u32; 4],
    /// The stability score (NaN when the filter was off and never computed).
    pub stability_score: f32,
    /// The grid point that prompted it, in the image's pixels.
    pub point: (f64, f64),
}

/// `_generate_per_layer_crops`: crop boxes `[x0, y0, x1, y1]` and their layers.
pub fn crop_boxes(
    crop_n_layers: usize,
    overlap_ratio: f64,
    (height, width): (u32, u32),
) -> Vec<([u32; 4], usize)> {
    let (h, w) = (height as i64, width as i64);
    let short = h.min(w) as f64;
    let mut out = vec![([0, 0, width, height], 0)];
    for layer in 0..crop_n_layers {
        let n = 1i64 << (layer + 1);
        let overlap = (overlap_ratio * short * (2.0 / n as f64)) as i64;
        let cw = (((overlap * (n - 1) + w) as f64) / n as f64).ceil() as i64;
        let ch = (((overlap * (n - 1) + h) as f64) / n as f64).ceil() as i64;
        let x0: Vec<i64> = (0..n).map(|i| (cw - overlap) * i).collect();
        let y0: Vec<i64> = (0..n).map(|i| (ch - overlap) * i).collect();
        for &left in &x0 {
            for &top in &y0 {
                let b = [left, top, (left + cw).min(w), (top + ch).min(h)];
                out.push((b.map(|v| v.clamp(0, u32::MAX as i64) as u32), layer + 1));
            }
        }
    }
    out
}

/// `np.linspace(start, stop, n)` as numpy computes it.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// `_build_point_grid`: `(x, y)` in `[0, 1]²`, row by row.
pub fn point_grid(n_per_side: usize) -> Vec<(f64, f64)> {
    if n_per_side == 0 {
        return Vec::new();
    }
    let offset = 1.0 / (2.0 * n_per_side as f64);
    let side = linspace(offset, 1.0 - offset, n_per_side);
    side.iter()
        .flat_map(|&y| side.iter().map(move |&x| (x, y)))
        .collect()
}

/// Points per side of a crop layer: `int(points_per_side / factor**layer)`.
pub fn points_for_layer(points_per_side: usize, factor: usize, layer: usize) -> usize {
    (points_per_side as f64 / (factor as f64).powi(layer as i32)) as usize
}

/// `_compute_stability_score` of one mask's logits.
pub fn stability_score(logits: &[f32], mask_threshold: f32, offset: f32) -> f32 {
    let hi = mask_threshold + offset;
    let lo = mask_threshold - offset;
    let inter = logits.iter().filter(|&&v| v > hi).count() as i32;
    let union = logits.iter().filter(|&&v| v > lo).count() as i32;
    inter as f32 / union as f32
}

/// `_batched_mask_to_box` of one row-major mask: `[x0, y0, x1, y1]` inclusive,
/// zeros when empty.
pub fn mask_to_box(mask: &[bool], width: usize, height: usize) -> [u32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (width, height, 0usize, 0usize);
    let mut any = false;
    for y in 0..height {
        let row = &mask[y * width..(y + 1) * width];
        if let Some(first) = row.iter().position(|&b| b) {
            let last = row.iter().rposition(|&b| b).unwrap_or(first);
            any = true;
            y0 = y0.min(y);
            y1 = y;
            x0 = x0.min(first);
            x1 = x1.max(last);
        }
    }
    match any {
        true => [x0 as u32, y0 as u32, x1 as u32, y1 as u32],
        false => [0; 4],
    }
}

/// `_is_box_near_crop_edge` for a box already in the image's pixels.
pub fn near_crop_edge(b: [u32; 4], crop: [u32; 4], (height, width): (u32, u32)) -> bool {
    let image = [0.0f32, 0.0, width as f32, height as f32];
    (0..4).any(|k| {
        let v = b[k] as f32;
        let near_crop = (v - crop[k] as f32).abs() <= 20.0;
        let near_image = (v - image[k]).abs() <= 20.0;
        near_crop && !near_image
    })
}

/// torchvision's `nms` (f32 boxes, stable best-first order, suppress IoU >
/// `thresh`): the kept indices, best first.
pub fn box_nms(boxes: &[[u32; 4]], scores: &[f32], thresh: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let f: Vec<[f32; 4]> = boxes.iter().map(|b| b.map(|v| v as f32)).collect();
    let area: Vec<f32> = f.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let w = (f[i][2].min(f[j][2]) - f[i][0].max(f[j][0])).max(0.0);
            let h = (f[i][3].min(f[j][3]) - f[i][1].max(f[j][1])).max(0.0);
            let inter = w * h;
            let iou = inter / (area[i] + area[j] - inter);
            if iou > thresh {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// COCO uncompressed RLE of a row-major mask (column-major runs, 0s first).
pub fn rle_counts(mask: &[bool], width: usize, height: usize) -> Vec<u32> {
    let mut counts = Vec::new();
    let (mut current, mut run) = (false, 0u32);
    for x in 0..width {
        for y in 0..height {
            let v = mask[y * width + x];
            if v != current {
                counts.push(run);
                current = v;
                run = 0;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// A row-major mask from COCO uncompressed RLE counts.
pub fn rle_decode(counts: &[u32], width: usize, height: usize) -> Vec<bool> {
    let mut out = vec![false; width * height];
    let mut idx = 0usize;
    for (k, &c) in counts.iter().enumerate() {
        let on = k % 2 == 1;
        for i in idx..(idx + c as usize).min(width * height) {
            if on {
                out[(i % height) * width + i / height] = true;
            }
        }
        idx += c as usize;
    }
    out
}

/// A mask before NMS: kept compactly as RLE at the whole image's size.
pub(crate) struct Candidate {
    pub iou: f32,
    pub stability: f32,
    pub box_xyxy: [u32; 4],
    pub crop: [u32; 4],
    pub object: usize,
    pub point: (f64, f64),
    pub rle: Vec<u32>,
    pub low_res: Vec<f32>,
}

/// `filter_masks` for one crop's candidate masks, given the upscaled logits
/// of one mask (crop size): the kept candidate, or None.
#[allow(clippy::too_many_arguments)]
pub(crate) fn filter_one(
    options: &AutoMaskOptions,
    iou: f32,
    logits_at_crop: &[f32],
    crop: [u32; 4],
    image: (u32, u32),
) -> Option<(f32, [u32; 4], Vec<bool>)> {
    let (cw, chh) = ((crop[2] - crop[0]) as usize, (crop[3] - crop[1]) as usize);
    let mut stability = f32::NAN;
    if options.stability_score_thresh > 0.0 {
        stability = stability_score(
            logits_at_crop,
            options.mask_threshold,
            options.stability_score_offset,
        );
        // Kept only above the threshold: a NaN score is dropped too.
        if stability.partial_cmp(&options.stability_score_thresh)
            != Some(std::cmp::Ordering::Greater)
        {
            return None;
        }
    }
    let _ = iou;
    let mask: Vec<bool> = logits_at_crop
        .iter()
        .map(|&v| v > options.mask_threshold)
        .collect();
    let b = mask_to_box(&mask, cw, chh);
    let moved = [
        b[0] + crop[0],
        b[1] + crop[1],
        b[2] + crop[0],
        b[3] + crop[1],
    ];
    if near_crop_edge(moved, crop, image) {
        return None;
    }
    Some((stability, moved, mask))
}

/// `_pad_masks`: a crop's mask placed in the whole image.
pub(crate) fn pad_mask(mask: &[bool], crop: [u32; 4], (height, width): (u32, u32)) -> Vec<bool> {
    let (w, h) = (width as usize, height as usize);
    let (cx, cy) = (crop[0] as usize, crop[1] as usize);
    let cw = (crop[2] - crop[0]) as usize;
    if cx == 0 && cy == 0 && cw == w && (crop[3] - crop[1]) as usize == h {
        return mask.to_vec();
    }
    let mut out = vec![false; w * h];
    for (y, row) in mask.chunks_exact(cw.max(1)).enumerate() {
        let start = (cy + y) * w + cx;
        out[start..start + cw].copy_from_slice(row);
    }
    out
}

/// The crop of a decoded image as its own image (RGB, composited on white as
/// the processor sees it), through a lossless PNG round trip.
pub(crate) fn crop_image(image: &DecodedImage, crop: [u32; 4]) -> Result<DecodedImage> {
    let rgb = image.composite_on_white();
    let sub = seer_image::image::imageops::crop_imm(
        &rgb,
        crop[0],
        crop[1],
        crop[2] - crop[0],
        crop[3] - crop[1],
    )
    .to_image();
    let mut bytes = std::io::Cursor::new(Vec::new());
    sub.write_to(&mut bytes, seer_image::image::ImageFormat::Png)
        .map_err(|e| EngineError::Invalid(format!("cannot cut crop {crop:?}: {e}")))?;
    Ok(seer_image::decode_bytes_full(
        bytes.get_ref(),
        "crop",
        &seer_image::DecodeLimits::default(),
    )?)
}

/// `post_process_for_mask_generation`: NMS over every crop's candidates, the
/// kept ones decoded at the whole image's size, best first.
pub(crate) fn finish(
    candidates: Vec<Candidate>,
    options: &AutoMaskOptions,
    (height, width): (u32, u32),
) -> Vec<AutoMask> {
    let boxes: Vec<[u32; 4]> = candidates.iter().map(|c| c.box_xyxy).collect();
    let scores: Vec<f32> = candidates.iter().map(|c| c.iou).collect();
    let keep = box_nms(&boxes, &scores, options.nms_thresh);
    let mut slots: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    keep.into_iter()
        .filter_map(|i| slots[i].take())
        .map(|c| AutoMask {
            mask: SegmentMask {
                object: c.object,
                iou: c.iou,
                width,
                height,
                mask: rle_decode(&c.rle, width as usize, height as usize),
                low_res_logits: c.low_res,
            },
            box_xyxy: c.box_xyxy,
            crop_box: c.crop,
            stability_score: c.stability,
            point: c.point,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_crops_follow_the_reference() {
        assert_eq!(point_grid(1), vec![(0.5, 0.5)]);
        let g = point_grid(4);
        assert_eq!(g.len(), 16);
        assert_eq!(g[0], (0.125, 0.125));
        assert_eq!(g[1].1, 0.125);
        assert_eq!(g[15], (0.875, 0.875));
        // transformers' _generate_per_layer_crops((1), 512/1500, (640, 424)).
        let c = crop_boxes(1, 512.0 / 1500.0, (640, 424));
        assert_eq!(c.len(), 5);
        assert_eq!(c[0].0, [0, 0, 424, 640]);
        // overlap int(0.3413·424) = 144; crop 284×392; x0 0, 140; y0 0, 248.
        assert_eq!(c[1].0, [0, 0, 284, 392]);
        assert_eq!(c[2].0, [0, 248, 284, 640]);
        assert_eq!(c[3].0, [140, 0, 424, 392]);
        assert_eq!(points_for_layer(32, 2, 3), 4);
    }

    #[test]
    fn boxes_nms_and_rle() {
        let mut m = vec![false; 6 * 4];
        m[6 + 2] = true;
        m[2 * 6 + 4] = true;
        assert_eq!(mask_to_box(&m, 6, 4), [2, 1, 4, 2]);
        assert_eq!(mask_to_box(&[false; 4], 2, 2), [0; 4]);
        let rle = rle_counts(&m, 6, 4);
        assert_eq!(rle_decode(&rle, 6, 4), m);
        let keep = box_nms(
            &[
                [0, 0, 10, 10],
                [1, 1, 10, 10],
                [20, 20, 30, 30],
                [0, 0, 0, 0],
            ],
            &[0.5, 0.9, 0.1, 0.7],
            0.7,
        );
        assert_eq!(keep, vec![1, 3, 2]);
        assert!(near_crop_edge(
            [0, 0, 100, 100],
            [0, 0, 110, 500],
            (500, 500)
        ));
        assert!(!near_crop_edge(
            [0, 0, 50, 100],
            [0, 0, 110, 500],
            (500, 500)
        ));
        assert_eq!(
            stability_score(&[2.0, 0.5, -0.5, -2.0], 0.0, 1.0),
            1.0 / 3.0
        );
    }
}
