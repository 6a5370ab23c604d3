//! SAM against transformers (fixtures/sam, made by scripts/make_sam_fixtures.py;
//! `sam-tiny`, and `slimsam-tiny` with SlimSAM's odd encoder widths):
//! the PIL image processor, the image embedding, and for points, boxes, both,
//! two boxes, a single-mask answer and a previous mask fed back: the IoU
//! predictions, the low-resolution logits (`pred_masks`) and the masks of
//! `post_process_masks`; then the engine's refusals.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::*;
use seer_engine::sam::Sam;
use seer_engine::segment::{SegmentMask, SegmentPrompt, Segmenter};
use seer_engine::{LoadOptions, LoadedModel};
use serde_json::Value;

fn fixture() -> PathBuf {
    repo_root().join("fixtures/sam/sam-tiny")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Largest difference between `ours` and the reference's sampled values, and
/// the relative difference of the sums.
fn sampled_diff(ours: &[f32], reference: &Value) -> (f64, f64) {
    let shape: usize = reference["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .product();
    assert_eq!(ours.len(), shape, "element count");
    let idx = reference["indices"].as_array().unwrap();
    let vals = floats(&reference["values"]);
    let max = idx
        .iter()
        .zip(&vals)
        .map(|(i, v)| (ours[i.as_u64().unwrap() as usize] as f64 - v).abs())
        .fold(0.0, f64::max);
    let sum: f64 = ours.iter().map(|&v| v as f64).sum();
    let abs_sum = reference["abs_sum"].as_f64().unwrap();
    let rel = (sum - reference["sum"].as_f64().unwrap()).abs() / abs_sum.max(1.0);
    (max, rel)
}

/// COCO uncompressed RLE (column-major, 0s first) to a row-major mask.
fn decode_rle(rle: &Value) -> (usize, usize, Vec<bool>) {
    let size = rle["size"].as_array().unwrap();
    let (h, w) = (
        size[0].as_u64().unwrap() as usize,
        size[1].as_u64().unwrap() as usize,
    );
    let mut col_major = Vec::with_capacity(h * w);
    for (i, c) in rle["counts"].as_array().unwrap().iter().enumerate() {
        col_major.extend(std::iter::repeat_n(
            i % 2 == 1,
            c.as_u64().unwrap() as usize,
        ));
    }
    assert_eq!(col_major.len(), h * w);
    let mut mask = vec![false; h * w];
    for x in 0..w {
        for y in 0..h {
            mask[y * w + x] = col_major[x * h + y];
        }
    }
    (h, w, mask)
}

fn prompt_of(p: &Value) -> SegmentPrompt {
    let labels = floats(&p["labels"]);
    SegmentPrompt {
        points: p["points"]
            .as_array()
            .unwrap()
            .iter()
            .zip(labels)
            .map(|(xy, l)| {
                let xy = floats(xy);
                (xy[0] as f32, xy[1] as f32, l == 1.0)
            })
            .collect(),
        boxes: p["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let b = floats(b);
                [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]
            })
            .collect(),
        mask_logits: None,
    }
}

#[test]
fn sam_matches_transformers_on_points_boxes_and_mask_prompts() {
    matches_transformers(&fixture());
}

/// SlimSAM's pruned encoder widths (head width 14, MLP 44) through the same
/// checks: a `SamModel` whose widths are no multiple of the kernels' tiles.
#[test]
fn slimsam_widths_match_transformers() {
    matches_transformers(&repo_root().join("fixtures/sam/slimsam-tiny"));
}

fn matches_transformers(dir: &std::path::Path) {
    let sam = Sam::load_dir(dir, &LoadOptions::default()).unwrap();
    let reference = read_json(&dir.join("reference.json"));
    let (mut worst_pixel, mut worst_embed, mut worst_iou, mut worst_logit) =
        (0f64, 0f64, 0f64, 0f64);
    let (mut differing, mut total) = (0usize, 0usize);
    let mut worst_agreement = 1f64;
    let mut clicks = Vec::new();
    for case in reference["cases"].as_array().unwrap() {
        let path = shared_data().join(case["image"].as_str().unwrap());
        let decoded = seer_image::decode_file_full(&path, &Default::default()).unwrap();
        let (pixels, original, resized) = sam.pixels(&decoded).unwrap();
        let size = |v: &Value| {
            let f = floats(v);
            (f[0] as u32, f[1] as u32)
        };
        assert_eq!(original, size(&case["original_size"]), "{path:?}");
        assert_eq!(resized, size(&case["reshaped_input_size"]), "{path:?}");
        let px = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (d, rel) = sampled_diff(&px, &case["pixel_values"]);
        assert!(
            d < 1e-5 && rel < 1e-6,
            "{path:?}: pixel values differ by {d} (sum {rel})"
        );
        worst_pixel = worst_pixel.max(d);

        let image = sam.embed(&decoded).unwrap();
        let emb = sam
            .model()
            .embed(&pixels)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (d, rel) = sampled_diff(&emb, &case["image_embeddings"]);
        assert!(
            d < 1e-3 && rel < 1e-4,
            "{path:?}: image embeddings differ by {d} (sum {rel})"
        );
        worst_embed = worst_embed.max(d);

        let mut previous: Vec<(String, Vec<SegmentMask>)> = Vec::new();
        for p in case["prompts"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let mut prompt = prompt_of(p);
            if let Some(from) = p.get("mask_from").and_then(Value::as_str) {
                let (_, masks) = previous.iter().find(|(n, _)| n == from).unwrap();
                let best = p["mask_from_best"].as_u64().unwrap() as usize;
                prompt.mask_logits = Some(masks[best].low_res_logits.clone());
            }
            let multimask = p["multimask"].as_bool().unwrap();
            let start = Instant::now();
            let masks = sam.segment(&image, &prompt, multimask).unwrap();
            clicks.push(start.elapsed().as_secs_f64());
            let iou: Vec<f64> = p["iou_scores"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(floats)
                .collect();
            assert_eq!(masks.len(), iou.len(), "{name}");
            for (m, r) in masks.iter().zip(&iou) {
                let d = (m.iou as f64 - r).abs();
                assert!(d < 1e-3, "{path:?} {name}: iou {} vs {r}", m.iou);
                worst_iou = worst_iou.max(d);
            }
            let logits: Vec<f32> = masks
                .iter()
                .flat_map(|m| m.low_res_logits.iter().copied())
                .collect();
            let (d, rel) = sampled_diff(&logits, &p["pred_masks"]);
            assert!(
                d < 1e-3 && rel < 1e-4,
                "{path:?} {name}: logits differ by {d} (sum {rel})"
            );
            worst_logit = worst_logit.max(d);
            let rles: Vec<&Value> = p["masks"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|o| o.as_array().unwrap())
                .collect();
            for (k, (m, rle)) in masks.iter().zip(rles).enumerate() {
                let (h, w, expected) = decode_rle(rle);
                assert_eq!((m.height as usize, m.width as usize), (h, w));
                let diff = m.mask.iter().zip(&expected).filter(|(a, b)| a != b).count();
                let agreement = 1.0 - diff as f64 / (h * w) as f64;
                assert!(
                    agreement >= 0.999,
                    "{path:?} {name} mask {k}: {diff} of {} pixels differ",
                    h * w
                );
                worst_agreement = worst_agreement.min(agreement);
                differing += diff;
                total += h * w;
            }
            previous.push((name.to_string(), masks));
        }
    }
    clicks.sort_by(f64::total_cmp);
    eprintln!(
        "sam parity ({}): pixels {worst_pixel:.2e}, embeddings {worst_embed:.2e}, iou {worst_iou:.2e}, \
         logits {worst_logit:.2e}; masks: {differing} of {total} pixels differ \
         (worst mask {:.5}% agree); decoder per click: median {:.1} ms over {} prompts",
        dir.display(),
        worst_agreement * 100.0,
        clicks[clicks.len() / 2] * 1e3,
        clicks.len()
    );
}

#[test]
fn the_registry_loads_sam_as_a_segmenter_and_bad_prompts_are_refused() {
    let model = LoadedModel::load_dir(&fixture(), &LoadOptions::default()).unwrap();
    assert_eq!(model.family, "sam");
    assert!(model.image.is_none() && model.text.is_none() && model.captioner.is_none());
    let seg = model.segmenter.clone().expect("a segmenter");
    let path = shared_data().join("smoke/skimage/camera.png");
    let decoded = seer_image::decode_file_full(&path, &Default::default()).unwrap();
    let image = seg.embed(&decoded).unwrap();
    let ok = seg
        .segment(
            &image,
            &SegmentPrompt {
                points: vec![(10.0, 20.0, true)],
                ..Default::default()
            },
            true,
        )
        .unwrap();
    assert_eq!(ok.len(), 3);
    assert!(ok
        .iter()
        .all(|m| m.mask.len() == 512 * 512 && m.low_res_logits.len() == 256 * 256));
    let single = seg
        .segment(
            &image,
            &SegmentPrompt {
                boxes: vec![[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 500.0, 500.0]],
                ..Default::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(single.iter().map(|m| m.object).collect::<Vec<_>>(), [0, 1]);
    for (prompt, needle) in [
        (SegmentPrompt::default(), "empty"),
        (
            SegmentPrompt {
                points: vec![(600.0, 20.0, true)],
                ..Default::default()
            },
            "outside",
        ),
        (
            SegmentPrompt {
                points: vec![(f32::NAN, 20.0, true)],
                ..Default::default()
            },
            "outside",
        ),
        (
            SegmentPrompt {
                boxes: vec![[30.0, 2.0, 10.0, 40.0]],
                ..Default::default()
            },
            "x0 <= x1",
        ),
        (
            SegmentPrompt {
                mask_logits: Some(vec![0.0; 100]),
                ..Default::default()
            },
            "256×256",
        ),
    ] {
        let err = seg.segment(&image, &prompt, true).unwrap_err().to_string();
        assert!(err.contains(needle), "{prompt:?}: {err}");
    }
    // Models of other families have no segmenter.
    let clip = LoadedModel::load_dir(
        &repo_root().join("fixtures/blip/caption-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(clip.segmenter.is_none());
}
