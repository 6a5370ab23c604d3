//! The SAM family as the commands see it (`SamModel` checkpoints:
//! sam-vit-base/large/huge, SlimSAM): the image is embedded once through
//! [`Segmenter::embed`], then every prompt costs only the prompt encoder and
//! the mask decoder ([`Segmenter::segment`]).
//!
//! What `SamProcessor` adds around the model, reproduced here:
//! - the PIL image processor (longest side to 1024, bilinear; ImageNet
//!   normalisation; zero padding at the bottom right), see
//!   [`seer_image::SamProcessorConfig`];
//! - prompts are scaled from original pixels by `resized / original` per axis
//!   (f64), and a lone point prompt gets a padding point (label −1);
//! - `post_process_masks`: bilinear upscale to the padded input, crop to the
//!   resized image, bilinear resize to the original size, threshold at 0.

use std::path::Path;
use std::sync::Arc;

use seer_image::{DecodedImage, SamProcessorConfig};
use seer_models::models::sam::{post_process_mask, SamModel, SamPrompt};
use seer_models::{ModelFiles, Tensor};

use crate::automask::{self, AutoMask, AutoMaskOptions, Candidate};
use crate::error::{file_error, EngineError, Result};
use crate::loader::LoadOptions;
use crate::segment::{SegmentImage, SegmentMask, SegmentPrompt, Segmenter};
use crate::tasks::LoadedModel;

/// Threshold of `post_process_masks` (`mask_threshold`).
pub const MASK_THRESHOLD: f32 = 0.0;

pub struct Sam {
    model: SamModel,
    processor: SamProcessorConfig,
    device: seer_models::Device,
}

/// What [`Sam::embed`] keeps for the prompts.
struct SamEmbedding {
    /// (1, width, side, side).
    embedding: Tensor,
    /// `(height, width)`.
    original: (u32, u32),
    resized: (u32, u32),
}

impl Sam {
    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::from_dir(dir)?;
        let device = options.device.device()?;
        let model = SamModel::load(&files, &device, options.precision)?;
        let path = dir.join("preprocessor_config.json");
        let text = match path.is_file() {
            true => std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?,
            false => "{}".to_string(),
        };
        let processor = SamProcessorConfig::from_preprocessor_config(&text)
            .map_err(|e| file_error(&path, e))?;
        let side = model.config().vision.image_size as u32;
        if processor.longest_edge != side || processor.pad != (side, side) {
            return Err(file_error(
                &path,
                format!(
                    "resizes to {} and pads to {}×{}, but the model's image_size is {side}",
                    processor.longest_edge, processor.pad.0, processor.pad.1
                ),
            ));
        }
        Ok(Self {
            model,
            processor,
            device,
        })
    }

    pub fn into_loaded(self, id: String) -> LoadedModel {
        let mut loaded = LoadedModel::encoders(id, "sam", None, None);
        loaded.segmenter = Some(Arc::new(self));
        loaded
    }

    pub fn model(&self) -> &SamModel {
        &self.model
    }

    pub fn processor(&self) -> &SamProcessorConfig {
        &self.processor
    }

    /// The preprocessed pixels of an image (1, 3, S, S) and its two sizes.
    #[allow(clippy::type_complexity)] // (pixels, original size, resized size)
    pub fn pixels(&self, image: &DecodedImage) -> Result<(Tensor, (u32, u32), (u32, u32))> {
        let p = seer_image::preprocess_sam(image, &self.processor);
        let (h, w) = (self.processor.pad.0 as usize, self.processor.pad.1 as usize);
        let t = Tensor::from_vec(p.pixels, (1, 3, h, w), &self.device)
            .map_err(seer_models::ModelError::from)?;
        Ok((t, p.original, p.resized))
    }

    /// The raw answer to one object's prompt (already in input pixels): the
    /// IoU predictions and `pred_masks`.
    pub fn predict_raw(
        &self,
        image: &SegmentImage,
        prompt: &SamPrompt,
        multimask: bool,
    ) -> Result<seer_models::models::sam::SamPrediction> {
        let e = embedding_of(image)?;
        Ok(self.model.predict(&e.embedding, prompt, multimask)?)
    }

    /// A user's prompt checked against the image and mapped to the model's
    /// input pixels: one [`SamPrompt`] per object.
    pub fn input_prompts(
        &self,
        image: &SegmentImage,
        prompt: &SegmentPrompt,
    ) -> Result<Vec<SamPrompt>> {
        let e = embedding_of(image)?;
        let (oh, ow) = (e.original.0 as f64, e.original.1 as f64);
        let (sy, sx) = (e.resized.0 as f64 / oh, e.resized.1 as f64 / ow);
        let inside = |x: f32, y: f32| {
            x.is_finite()
                && y.is_finite()
                && x >= 0.0
                && y >= 0.0
                && x as f64 <= ow
                && y as f64 <= oh
        };
        for &(x, y, _) in &prompt.points {
            if !inside(x, y) {
                return Err(EngineError::Invalid(format!(
                    "point ({x}, {y}) is outside the {ow}×{oh} image"
                )));
            }
        }
        for b in &prompt.boxes {
            if !inside(b[0], b[1]) || !inside(b[2], b[3]) || b[2] < b[0] || b[3] < b[1] {
                return Err(EngineError::Invalid(format!(
                    "box {:?} is not x0,y0,x1,y1 with x0 <= x1 and y0 <= y1 inside the {ow}×{oh} image",
                    b
                )));
            }
        }
        let side = self.model.mask_side();
        if let Some(m) = &prompt.mask_logits {
            if m.len() != side * side {
                return Err(EngineError::Invalid(format!(
                    "a mask prompt must hold {side}×{side} logits, got {} values",
                    m.len()
                )));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(EngineError::Invalid(
                    "the mask prompt holds a non-finite value".into(),
                ));
            }
        }
        if prompt.points.is_empty() && prompt.boxes.is_empty() && prompt.mask_logits.is_none() {
            return Err(EngineError::Invalid(
                "the prompt is empty: give at least one point, box or mask".into(),
            ));
        }
        let points: Vec<(f64, f64, i64)> = prompt
            .points
            .iter()
            .map(|&(x, y, fg)| (x as f64 * sx, y as f64 * sy, fg as i64))
            .collect();
        let one = |bbox: Option<[f64; 4]>| SamPrompt {
            points: points.clone(),
            bbox,
            mask: prompt.mask_logits.clone(),
        };
        Ok(match prompt.boxes.is_empty() {
            true => vec![one(None)],
            false => prompt
                .boxes
                .iter()
                .map(|b| {
                    // The processor's boxes are f32 before the f64 scaling.
                    let b = b.map(|v| v as f64);
                    one(Some([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]))
                })
                .collect(),
        })
    }
}

fn embedding_of(image: &SegmentImage) -> Result<&SamEmbedding> {
    image
        .embedding
        .downcast_ref::<SamEmbedding>()
        .ok_or_else(|| EngineError::Invalid("the image was embedded by another model".into()))
}

impl Segmenter for Sam {
    fn embed(&self, image: &DecodedImage) -> Result<SegmentImage> {
        let (pixels, original, resized) = self.pixels(image)?;
        let embedding = self.model.embed(&pixels)?;
        Ok(SegmentImage {
            width: original.1,
            height: original.0,
            embedding: Box::new(SamEmbedding {
                embedding,
                original,
                resized,
            }),
        })
    }

    fn segment(
        &self,
        image: &SegmentImage,
        prompt: &SegmentPrompt,
        multimask: bool,
    ) -> Result<Vec<SegmentMask>> {
        let prompts = self.input_prompts(image, prompt)?;
        let e = embedding_of(image)?;
        let pad = (self.processor.pad.0 as usize, self.processor.pad.1 as usize);
        let resized = (e.resized.0 as usize, e.resized.1 as usize);
        let original = (e.original.0 as usize, e.original.1 as usize);
        let mut out = Vec::new();
        for (object, p) in prompts.iter().enumerate() {
            let pred = self.model.predict(&e.embedding, p, multimask)?;
            let plane = pred.side * pred.side;
            for (k, &iou) in pred.iou.iter().enumerate() {
                let logits = &pred.logits[k * plane..(k + 1) * plane];
                out.push(SegmentMask {
                    object,
                    iou,
                    width: image.width,
                    height: image.height,
                    mask: post_process_mask(
                        logits,
                        pred.side,
                        pad,
                        resized,
                        original,
                        MASK_THRESHOLD,
                    ),
                    low_res_logits: logits.to_vec(),
                });
            }
        }
        Ok(out)
    }

    fn auto_masks_until(
        &self,
        image: &DecodedImage,
        options: &AutoMaskOptions,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<AutoMask>> {
        options.validate()?;
        let stopped = || {
            if stop() {
                Err(EngineError::Stopped)
            } else {
                Ok(())
            }
        };
        let size = (image.height(), image.width());
        let target = self.processor.longest_edge as f64;
        let pad = (self.processor.pad.0 as usize, self.processor.pad.1 as usize);
        let mut candidates: Vec<Candidate> = Vec::new();
        for (crop, layer) in
            automask::crop_boxes(options.crop_n_layers, options.crop_overlap_ratio, size)
        {
            let (cw, ch) = (crop[2] - crop[0], crop[3] - crop[1]);
            if cw == 0 || ch == 0 {
                continue;
            }
            let n = automask::points_for_layer(
                options.points_per_side,
                options.crop_n_points_downscale_factor,
                layer,
            );
            if n == 0 {
                continue;
            }
            stopped()?;
            let embedded = match layer {
                0 => self.embed(image)?,
                _ => self.embed(&automask::crop_image(image, crop)?)?,
            };
            let e = embedding_of(&embedded)?;
            let resized = (e.resized.0 as usize, e.resized.1 as usize);
            let original = (e.original.0 as usize, e.original.1 as usize);
            // `_normalize_coordinates`: the crop's points in its resized input.
            let (old_h, old_w) = (ch as f64, cw as f64);
            let scale = target / old_h.max(old_w);
            let new_w = ((old_w * scale + 0.5) as i64) as f64;
            let new_h = ((old_h * scale + 0.5) as i64) as f64;
            for (object, (gx, gy)) in automask::point_grid(n).into_iter().enumerate() {
                stopped()?;
                let (px, py) = (gx * old_w, gy * old_h);
                let prompt = SamPrompt {
                    points: vec![(px * (new_w / old_w), py * (new_h / old_h), 1)],
                    bbox: None,
                    mask: None,
                };
                let pred = self.model.predict(&e.embedding, &prompt, true)?;
                let plane = pred.side * pred.side;
                for (k, &iou) in pred.iou.iter().enumerate() {
                    let above = iou.partial_cmp(&options.pred_iou_thresh)
                        == Some(std::cmp::Ordering::Greater);
                    if options.pred_iou_thresh > 0.0 && !above {
                        continue;
                    }
                    let low = &pred.logits[k * plane..(k + 1) * plane];
                    let up = seer_models::models::sam::post_process_logits(
                        low, pred.side, pad, resized, original,
                    );
                    let Some((stability, box_xyxy, mask)) =
                        automask::filter_one(options, iou, &up, crop, size)
                    else {
                        continue;
                    };
                    let full = automask::pad_mask(&mask, crop, size);
                    candidates.push(Candidate {
                        iou,
                        stability,
                        box_xyxy,
                        crop,
                        object,
                        point: (px + crop[0] as f64, py + crop[1] as f64),
                        rle: automask::rle_counts(&full, size.1 as usize, size.0 as usize),
                        low_res: Vec::new(),
                    });
                }
            }
        }
        Ok(automask::finish(candidates, options, size))
    }
}
