//! Box-prompted segmentation on COCO instances (`seer eval segment`): every
//! object's ground-truth box prompts the segmenter, and the answer is scored by
//! its IoU with the object's COCO mask ([`crate::coco_masks`], decoded as
//! pycocotools' `annToMask` decodes it).
//!
//! Conventions, as SAM's box-prompt evaluations use them:
//! - the box is COCO's `[x, y, w, h]` as `[x, y, x + w, y + h]` in the
//!   original image's pixels, clamped to the image;
//! - one mask per box (`multimask_output=False`: a box is not ambiguous, and
//!   SAM's single-mask head is the one trained for it), thresholded at 0 after
//!   `post_process_masks`, at the image's original size;
//! - crowd regions (`iscrowd: 1`) are skipped by default: they are one RLE
//!   over many objects, and a box around a crowd has no single answer;
//! - an object whose COCO mask is empty is skipped (counted): its IoU means
//!   nothing.
//!
//! mIoU is the mean over objects; `category_miou` the mean over categories of
//! each category's mean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::coco_masks::{annotation_mask, intersection_union};
use crate::error::{file_error, EngineError, Result};
use crate::segment::{SegmentPrompt, Segmenter};

/// One object to segment.
#[derive(Clone, Debug)]
pub struct CocoObject {
    pub annotation_id: u64,
    pub category_id: u64,
    pub iscrowd: bool,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    pub segmentation: Value,
}

/// One image with its objects.
#[derive(Clone, Debug)]
pub struct CocoImage {
    pub path: PathBuf,
    pub image_id: u64,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<CocoObject>,
}

/// COCO instances: images (sorted by split, then file name) and category names.
#[derive(Clone, Debug, Default)]
pub struct CocoInstances {
    pub images: Vec<CocoImage>,
    pub categories: BTreeMap<u64, String>,
}

#[derive(Deserialize)]
struct InstancesFile {
    images: Vec<ImageEntry>,
    #[serde(default)]
    annotations: Vec<AnnotationEntry>,
    #[serde(default)]
    categories: Vec<CategoryEntry>,
}

#[derive(Deserialize)]
struct ImageEntry {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct AnnotationEntry {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    iscrowd: Value,
    segmentation: Value,
}

#[derive(Deserialize)]
struct CategoryEntry {
    id: u64,
    name: String,
}

/// Reads COCO instances from `data`: a folder with
/// `annotations/instances_<split>.json` and images in `images/<split>/` (or
/// `<split>/`, or `images/`), as COCO and coco-mini lay them out; or one
/// instances JSON file, whose images are looked for in `images` (default: the
/// same places beside its `annotations/` folder). `split` keeps one split
/// (`val2017`).
pub fn read_coco_instances(
    data: &Path,
    images: Option<&Path>,
    split: Option<&str>,
) -> Result<CocoInstances> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if data.is_file() {
        files.push((split_of(data).unwrap_or_default(), data.to_path_buf()));
    } else if data.is_dir() {
        let dir = data.join("annotations");
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            file_error(
                &dir,
                format!("{e} (expected COCO's annotations/instances_<split>.json)"),
            )
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(s) = split_of(&path) {
                files.push((s, path));
            }
        }
        if files.is_empty() {
            return Err(file_error(&dir, "holds no instances_<split>.json"));
        }
    } else {
        return Err(file_error(data, "no such file or folder"));
    }
    if let Some(want) = split {
        files.retain(|(s, _)| s == want);
        if files.is_empty() {
            return Err(file_error(data, format!("has no instances_{want}.json")));
        }
    }
    files.sort();
    let mut out = CocoInstances::default();
    for (split, path) in files {
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        let parsed: InstancesFile = serde_json::from_str(&text)
            .map_err(|e| file_error(&path, format!("not COCO instances JSON: {e}")))?;
        let root = match images {
            Some(dir) => dir.to_path_buf(),
            None => {
                let base = match data.is_dir() {
                    true => data.to_path_buf(),
                    false => path
                        .parent()
                        .and_then(Path::parent)
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                };
                [base.join("images").join(&split), base.join(&split)]
                    .into_iter()
                    .find(|d| !split.is_empty() && d.is_dir())
                    .unwrap_or_else(|| base.join("images"))
            }
        };
        for c in parsed.categories {
            out.categories.entry(c.id).or_insert(c.name);
        }
        let mut by_image: BTreeMap<u64, Vec<CocoObject>> = BTreeMap::new();
        for a in parsed.annotations {
            let iscrowd = match &a.iscrowd {
                Value::Null => false,
                Value::Bool(b) => *b,
                v => v.as_u64().map(|n| n != 0).ok_or_else(|| {
                    file_error(&path, format!("annotation {}: iscrowd is {v}", a.id))
                })?,
            };
            by_image.entry(a.image_id).or_default().push(CocoObject {
                annotation_id: a.id,
                category_id: a.category_id,
                iscrowd,
                bbox: a.bbox,
                segmentation: a.segmentation,
            });
        }
        let mut imgs: Vec<CocoImage> = parsed
            .images
            .into_iter()
            .map(|i| CocoImage {
                path: root.join(&i.file_name),
                image_id: i.id,
                width: i.width,
                height: i.height,
                objects: by_image.remove(&i.id).unwrap_or_default(),
            })
            .collect();
        imgs.sort_by(|a, b| a.path.cmp(&b.path));
        out.images.extend(imgs);
    }
    Ok(out)
}

/// `instances_val2017.json` → `val2017`.
fn split_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let split = name.strip_prefix("instances_")?.strip_suffix(".json")?;
    Some(split.to_string())
}

/// What to score.
#[derive(Clone, Debug, Default)]
pub struct SegmentEvalOptions {
    /// Score crowd regions too (skipped by default).
    pub include_crowd: bool,
    /// Decoding limits for the image files.
    pub limits: seer_image::DecodeLimits,
}

/// One scored object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ObjectScore {
    pub image_id: u64,
    pub annotation_id: u64,
    pub category_id: u64,
    /// The prompt, `[x0, y0, x1, y1]` in original pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub iou: f64,
    /// The model's own IoU estimate.
    pub predicted_iou: f32,
    pub intersection: u64,
    pub union: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CategoryScore {
    pub id: u64,
    pub name: String,
    pub instances: usize,
    pub miou: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Failure {
    pub file: String,
    /// The annotation, when one object failed rather than the whole image.
    pub annotation_id: Option<u64>,
    pub error: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SegmentEvalReport {
    /// Images embedded and scored.
    pub images: usize,
    /// Objects scored.
    pub instances: usize,
    /// Mean IoU over objects (0 when none).
    pub miou: f64,
    /// Mean over categories of the per-category mIoU.
    pub category_miou: f64,
    pub per_category: Vec<CategoryScore>,
    /// Crowd annotations left out (0 with `include_crowd`).
    pub skipped_crowd: usize,
    /// Objects whose COCO mask is empty.
    pub skipped_empty: usize,
    /// Images with no object to score (not embedded).
    pub images_without_objects: usize,
    pub multimask: bool,
    pub failed: Vec<Failure>,
    pub per_instance: Vec<ObjectScore>,
}

/// COCO `[x, y, w, h]` as `[x0, y0, x1, y1]` clamped to the image.
pub fn box_prompt(bbox: [f64; 4], width: u32, height: u32) -> [f32; 4] {
    let (w, h) = (width as f64, height as f64);
    let clamp = |v: f64, hi: f64| if v.is_finite() { v.clamp(0.0, hi) } else { 0.0 };
    let (x0, y0) = (clamp(bbox[0], w), clamp(bbox[1], h));
    let (x1, y1) = (
        clamp(bbox[0] + bbox[2], w).max(x0),
        clamp(bbox[1] + bbox[3], h).max(y0),
    );
    [x0 as f32, y0 as f32, x1 as f32, y1 as f32]
}

/// Segments every object of `data` from its box and scores it. `on_image` is
/// called once per image, with the error when the image failed (the run goes
/// on).
pub fn evaluate_segmentation(
    segmenter: &dyn Segmenter,
    data: &CocoInstances,
    options: &SegmentEvalOptions,
    mut on_image: impl FnMut(&Path, std::result::Result<(), &EngineError>),
) -> SegmentEvalReport {
    let mut report = SegmentEvalReport {
        images: 0,
        instances: 0,
        miou: 0.0,
        category_miou: 0.0,
        per_category: Vec::new(),
        skipped_crowd: 0,
        skipped_empty: 0,
        images_without_objects: 0,
        multimask: false,
        failed: Vec::new(),
        per_instance: Vec::new(),
    };
    for image in &data.images {
        let result = score_image(segmenter, image, options, &mut report);
        if let Err(e) = &result {
            let file = image.path.display().to_string();
            // `file` says which image; the cause need not say it again.
            let error = e.to_string();
            let prefix = format!("{file}: ");
            let mut cause = error.as_str();
            while let Some(rest) = cause.strip_prefix(&prefix) {
                cause = rest;
            }
            let error = cause.to_string();
            report.failed.push(Failure {
                file,
                annotation_id: None,
                error,
            });
        }
        on_image(&image.path, result.as_ref().map(|_| ()));
    }
    let mut by_category: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
    for s in &report.per_instance {
        let e = by_category.entry(s.category_id).or_default();
        e.0 += 1;
        e.1 += s.iou;
    }
    report.instances = report.per_instance.len();
    if report.instances > 0 {
        report.miou =
            report.per_instance.iter().map(|s| s.iou).sum::<f64>() / report.instances as f64;
    }
    report.per_category = by_category
        .into_iter()
        .map(|(id, (n, sum))| CategoryScore {
            id,
            name: data
                .categories
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("category {id}")),
            instances: n,
            miou: sum / n as f64,
        })
        .collect();
    if !report.per_category.is_empty() {
        report.category_miou = report.per_category.iter().map(|c| c.miou).sum::<f64>()
            / report.per_category.len() as f64;
    }
    report
}

fn score_image(
    segmenter: &dyn Segmenter,
    image: &CocoImage,
    options: &SegmentEvalOptions,
    report: &mut SegmentEvalReport,
) -> Result<()> {
    let (w, h) = (image.width as usize, image.height as usize);
    // The masks are made at the size the JSON says, before the image is
    // decoded: hold that size to the decode budget, or a few bytes of JSON
    // ask for gigabytes of masks.
    let pixels = u64::from(image.width) * u64::from(image.height);
    if pixels > options.limits.max_pixels {
        return Err(file_error(
            &image.path,
            format!(
                "the annotations say {}×{} = {pixels} pixels, over the budget of {} pixels",
                image.width, image.height, options.limits.max_pixels
            ),
        ));
    }
    // Ground truth first: an unreadable annotation fails alone, not the image.
    let mut targets = Vec::new();
    for o in &image.objects {
        if o.iscrowd && !options.include_crowd {
            report.skipped_crowd += 1;
            continue;
        }
        match annotation_mask(&o.segmentation, h, w) {
            Ok(mask) if mask.area() == 0 => report.skipped_empty += 1,
            Ok(mask) => targets.push((o, mask)),
            Err(e) => report.failed.push(Failure {
                file: image.path.display().to_string(),
                annotation_id: Some(o.annotation_id),
                error: format!("annotation {}: {e}", o.annotation_id),
            }),
        }
    }
    if targets.is_empty() {
        report.images_without_objects += 1;
        return Ok(());
    }
    // The stored pixels: COCO's annotations and pycocotools ignore the EXIF
    // orientation (some COCO photos carry one).
    let decoded = seer_image::decode_file_stored(&image.path, &options.limits)
        .map_err(|e| file_error(&image.path, e))?;
    if (decoded.width(), decoded.height()) != (image.width, image.height) {
        return Err(file_error(
            &image.path,
            format!(
                "is {}×{}, but the annotations say {}×{}",
                decoded.width(),
                decoded.height(),
                image.width,
                image.height
            ),
        ));
    }
    let embedded = segmenter.embed(&decoded)?;
    let boxes: Vec<[f32; 4]> = targets
        .iter()
        .map(|(o, _)| box_prompt(o.bbox, image.width, image.height))
        .collect();
    let prompt = SegmentPrompt {
        boxes: boxes.clone(),
        ..Default::default()
    };
    let masks = segmenter.segment(&embedded, &prompt, false)?;
    if masks.len() != targets.len() {
        return Err(EngineError::Invalid(format!(
            "the segmenter answered {} masks for {} boxes",
            masks.len(),
            targets.len()
        )));
    }
    if let Some(m) = masks
        .iter()
        .find(|m| (m.width as usize, m.height as usize) != (w, h) || m.mask.len() != w * h)
    {
        return Err(EngineError::Invalid(format!(
            "the segmenter's mask is {}×{}, the image {w}×{h}",
            m.width, m.height
        )));
    }
    report.images += 1;
    for (((o, truth), m), b) in targets.iter().zip(&masks).zip(boxes) {
        let (i, u) = intersection_union(&m.mask, &truth.data);
        report.per_instance.push(ObjectScore {
            image_id: image.image_id,
            annotation_id: o.annotation_id,
            category_id: o.category_id,
            bbox: b,
            iou: i as f64 / u as f64,
            predicted_iou: m.iou,
            intersection: i,
            union: u,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{SegmentImage, SegmentMask};
    use seer_image::DecodedImage;

    /// Never reached: the image fails before anything is segmented.
    struct Unused;
    impl Segmenter for Unused {
        fn embed(&self, _: &DecodedImage) -> Result<SegmentImage> {
            unreachable!("nothing is embedded")
        }
        fn segment(
            &self,
            _: &SegmentImage,
            _: &SegmentPrompt,
            _: bool,
        ) -> Result<Vec<SegmentMask>> {
            unreachable!("nothing is segmented")
        }
    }

    /// A few bytes of JSON saying 60000×60000 made a 3.6 GB mask per object
    /// before the image was even opened; the size is held to the decode
    /// budget first, and the image fails by name.
    #[test]
    fn an_annotated_size_over_the_pixel_budget_fails_before_any_mask() {
        let data = CocoInstances {
            images: vec![CocoImage {
                path: PathBuf::from("huge.jpg"),
                image_id: 1,
                width: 60_000,
                height: 60_000,
                objects: vec![CocoObject {
                    annotation_id: 7,
                    category_id: 1,
                    iscrowd: false,
                    bbox: [0.0, 0.0, 1.0, 1.0],
                    segmentation: serde_json::json!({"size": [60000, 60000], "counts": [3_600_000_000u64]}),
                }],
            }],
            categories: BTreeMap::new(),
        };
        let options = SegmentEvalOptions {
            include_crowd: false,
            limits: seer_image::DecodeLimits::default(),
        };
        let report = evaluate_segmentation(&Unused, &data, &options, |_, _| {});
        assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
        let f = &report.failed[0];
        assert_eq!((f.file.as_str(), f.annotation_id), ("huge.jpg", None));
        assert!(f.error.contains("over the budget"), "{}", f.error);
    }
}
