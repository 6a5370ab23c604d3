//! Automatic mask generation against transformers' `mask-generation` pipeline
//! (fixtures/sam/sam-tiny/automask.json, made by scripts/make_sam_fixtures.py):
//! the same masks in the same order, with their predicted IoU, box and area, on
//! a grid with both filters on, and on a crop layer with the filters off.

mod common;

use common::*;
use seer_engine::automask::AutoMaskOptions;
use seer_engine::coco_masks::Rle;
use seer_engine::sam::Sam;
use seer_engine::segment::Segmenter;
use seer_engine::LoadOptions;
use serde_json::Value;

fn options(o: &Value) -> AutoMaskOptions {
    let mut opts = AutoMaskOptions::default();
    let f = |k: &str| o.get(k).and_then(Value::as_f64);
    if let Some(v) = f("points_per_crop") {
        opts.points_per_side = v as usize;
    }
    if let Some(v) = f("crops_n_layers") {
        opts.crop_n_layers = v as usize;
    }
    if let Some(v) = f("pred_iou_thresh") {
        opts.pred_iou_thresh = v as f32;
    }
    if let Some(v) = f("stability_score_thresh") {
        opts.stability_score_thresh = v as f32;
    }
    if let Some(v) = f("stability_score_offset") {
        opts.stability_score_offset = v as f32;
    }
    opts
}

#[test]
fn auto_masks_match_the_mask_generation_pipeline() {
    let reference = read_json(&repo_root().join("fixtures/sam/sam-tiny/automask.json"));
    let sam = Sam::load_dir(
        &repo_root().join("fixtures/sam/sam-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let decoded =
            seer_image::decode_file_full(&shared_data().join(name), &Default::default()).unwrap();
        let masks = sam
            .auto_masks(&decoded, &options(&case["options"]))
            .unwrap();
        let want = case["masks"].as_array().unwrap();
        assert!(!want.is_empty(), "{name}: the reference kept no mask");
        assert_eq!(masks.len(), want.len(), "{name}: mask count");
        for (k, (m, w)) in masks.iter().zip(want).enumerate() {
            let ds = (m.mask.iou as f64 - w["score"].as_f64().unwrap()).abs();
            assert!(ds < 1e-4, "{name} mask {k}: IoU off by {ds}");
            let b: Vec<u64> = w["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let db = (0..4)
                .map(|i| (m.box_xyxy[i] as i64 - b[i] as i64).abs())
                .max()
                .unwrap();
            assert!(db <= 1, "{name} mask {k}: box {:?} vs {b:?}", m.box_xyxy);
            let size = w["size"].as_array().unwrap();
            let (h, wd) = (
                size[0].as_u64().unwrap() as usize,
                size[1].as_u64().unwrap() as usize,
            );
            assert_eq!((m.mask.height as usize, m.mask.width as usize), (h, wd));
            let theirs = Rle::from_string(w["counts"].as_str().unwrap(), h, wd)
                .unwrap()
                .decode()
                .unwrap();
            assert_eq!(theirs.area(), w["area"].as_u64().unwrap());
            let diff = m
                .mask
                .mask
                .iter()
                .zip(&theirs.data)
                .filter(|(a, b)| a != b)
                .count();
            assert!(
                diff * 1000 <= h * wd,
                "{name} mask {k}: {diff} pixels differ"
            );
        }
    }
}

/// The tiny random SAM and the camera image (512 × 512, grey).
fn tiny_sam_and_camera() -> (Sam, seer_image::DecodedImage) {
    let sam = Sam::load_dir(
        &repo_root().join("fixtures/sam/sam-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    let decoded = seer_image::decode_file_full(
        &shared_data().join("smoke/skimage/camera.png"),
        &Default::default(),
    )
    .unwrap();
    (sam, decoded)
}

#[test]
fn auto_mask_options_are_checked() {
    let (sam, decoded) = tiny_sam_and_camera();
    for (opts, needle) in [
        (
            AutoMaskOptions {
                points_per_side: 0,
                ..Default::default()
            },
            "--points-per-side",
        ),
        (
            AutoMaskOptions {
                nms_thresh: 0.0,
                ..Default::default()
            },
            "--box-nms-thresh",
        ),
        (
            AutoMaskOptions {
                crop_n_layers: 9,
                ..Default::default()
            },
            "--crop-n-layers",
        ),
        (
            AutoMaskOptions {
                pred_iou_thresh: f32::NAN,
                ..Default::default()
            },
            "--pred-iou-thresh",
        ),
        (
            AutoMaskOptions {
                crop_overlap_ratio: 1.5,
                ..Default::default()
            },
            "--crop-overlap-ratio",
        ),
    ] {
        let err = sam.auto_masks(&decoded, &opts).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// A stop asked for between prompts ends the run there with `Stopped`,
/// having asked once before the encoder and once before each prompt.
#[test]
fn auto_masks_stop_between_prompts_when_asked() {
    use std::cell::Cell;
    let (sam, decoded) = tiny_sam_and_camera();
    let opts = AutoMaskOptions {
        points_per_side: 4,
        ..Default::default()
    };
    let asked = Cell::new(0);
    let stop_at_third = || {
        asked.set(asked.get() + 1);
        asked.get() == 3
    };
    let err = sam
        .auto_masks_until(&decoded, &opts, &stop_at_third)
        .unwrap_err();
    assert!(matches!(err, seer_engine::EngineError::Stopped), "{err}");
    assert_eq!(asked.get(), 3, "the encoder's check, then one per prompt");
    // Never asked to stop: the same masks as without a stop.
    let asked = Cell::new(0);
    let never = || {
        asked.set(asked.get() + 1);
        false
    };
    let until = sam.auto_masks_until(&decoded, &opts, &never).unwrap();
    let plain = sam.auto_masks(&decoded, &opts).unwrap();
    assert_eq!(
        asked.get(),
        1 + 16,
        "one check before the encoder, one per point"
    );
    assert_eq!(until.len(), plain.len());
    for (a, b) in until.iter().zip(&plain) {
        assert_eq!(a.mask.iou, b.mask.iou);
        assert_eq!(a.box_xyxy, b.box_xyxy);
    }
}
