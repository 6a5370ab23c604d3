//! `seer eval segment`'s library side against pycocotools and transformers
//! (fixtures/segment_eval, made by scripts/make_segment_eval_fixtures.py):
//! every COCO mask of coco-mini (polygons, RLE, crowd regions) decoded bit for
//! bit as `COCO.annToMask` decodes it, and the box-prompt evaluation of the
//! tiny SAM fixture scored as transformers + pycocotools score it.

mod common;

use std::collections::BTreeMap;

use common::*;
use seer_engine::coco_masks::{annotation_mask, Rle};
use seer_engine::sam::Sam;
use seer_engine::segment_eval::{
    evaluate_segmentation, read_coco_instances, SegmentEvalOptions, SegmentEvalReport,
};
use seer_engine::LoadOptions;
use serde_json::Value;

#[test]
fn every_coco_mini_mask_matches_pycocotools_bit_for_bit() {
    let reference = read_json(&repo_root().join("fixtures/segment_eval/coco_masks.json"));
    let expected = reference["annotations"].as_object().unwrap();
    let mut checked = 0;
    let (mut polygons, mut rles, mut crowd) = (0, 0, 0);
    for split in ["train2017", "val2017"] {
        let path = shared_data().join(format!("coco-mini/annotations/instances_{split}.json"));
        let data: Value = read_json(&path);
        let sizes: BTreeMap<u64, (usize, usize)> = data["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_u64().unwrap(),
                    (
                        i["height"].as_u64().unwrap() as usize,
                        i["width"].as_u64().unwrap() as usize,
                    ),
                )
            })
            .collect();
        for ann in data["annotations"].as_array().unwrap() {
            let id = ann["id"].as_u64().unwrap().to_string();
            let want = &expected[&id];
            let (h, w) = sizes[&ann["image_id"].as_u64().unwrap()];
            assert_eq!(
                (
                    want["height"].as_u64().unwrap() as usize,
                    want["width"].as_u64().unwrap() as usize
                ),
                (h, w)
            );
            let mask = annotation_mask(&ann["segmentation"], h, w)
                .unwrap_or_else(|e| panic!("annotation {id}: {e}"));
            assert_eq!(
                mask.area(),
                want["area"].as_u64().unwrap(),
                "annotation {id}: area"
            );
            assert_eq!(
                Rle::encode(&mask).to_compressed(),
                want["counts"].as_str().unwrap(),
                "annotation {id}: mask differs from pycocotools'"
            );
            match ann["segmentation"].is_array() {
                true => polygons += 1,
                false => rles += 1,
            }
            crowd += (ann["iscrowd"].as_u64() == Some(1)) as usize;
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        expected.len(),
        "every annotation of the fixture checked"
    );
    assert!(
        polygons > 1000 && rles > 0 && crowd > 0,
        "{polygons} {rles} {crowd}"
    );
    eprintln!("coco masks: {checked} annotations ({polygons} polygons, {rles} RLE, {crowd} crowd) identical to pycocotools");
}

fn check_against(report: &SegmentEvalReport, reference: &Value) {
    let per: Vec<&Value> = reference["per_instance"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(report.instances, per.len());
    assert_eq!(report.images as u64, reference["images"].as_u64().unwrap());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut worst_pixels = 0f64;
    for (ours, want) in report.per_instance.iter().zip(per) {
        let id = ours.annotation_id;
        assert_eq!(id, want["annotation_id"].as_u64().unwrap());
        assert_eq!(ours.category_id, want["category_id"].as_u64().unwrap());
        let boxes: Vec<f32> = want["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours.bbox.to_vec(), boxes, "annotation {id}: box prompt");
        let d = (ours.predicted_iou as f64 - want["predicted_iou"].as_f64().unwrap()).abs();
        assert!(
            d < 1e-3,
            "annotation {id}: predicted iou {} vs {}",
            ours.predicted_iou,
            want["predicted_iou"]
        );
        // Masks thresholded at 0 may flip a few pixels whose logits are ~0.
        let (i, u) = (
            want["intersection"].as_u64().unwrap() as f64,
            want["union"].as_u64().unwrap() as f64,
        );
        let flipped = (ours.intersection as f64 - i)
            .abs()
            .max((ours.union as f64 - u).abs());
        assert!(
            flipped <= 2.0 + 1e-3 * u,
            "annotation {id}: intersection/union {}/{} vs {i}/{u}",
            ours.intersection,
            ours.union
        );
        worst_pixels = worst_pixels.max(flipped);
        let d = (ours.iou - want["iou"].as_f64().unwrap()).abs();
        assert!(
            d < 1e-3,
            "annotation {id}: iou {} vs {}",
            ours.iou,
            want["iou"]
        );
    }
    let d = (report.miou - reference["miou"].as_f64().unwrap()).abs();
    assert!(d < 1e-4, "mIoU {} vs {}", report.miou, reference["miou"]);
    let d = (report.category_miou - reference["category_miou"].as_f64().unwrap()).abs();
    assert!(
        d < 1e-4,
        "category mIoU {} vs {}",
        report.category_miou,
        reference["category_miou"]
    );
    let cats = reference["per_category"].as_array().unwrap();
    assert_eq!(report.per_category.len(), cats.len());
    for (c, want) in report.per_category.iter().zip(cats) {
        assert_eq!(c.name, want["name"].as_str().unwrap());
        assert_eq!(c.instances as u64, want["instances"].as_u64().unwrap());
        assert!(
            (c.miou - want["miou"].as_f64().unwrap()).abs() < 1e-3,
            "{}",
            c.name
        );
    }
    eprintln!(
        "segment eval parity: {} objects, mIoU {:.5} (reference {:.5}), worst object {worst_pixels} pixels off",
        report.instances, report.miou, reference["miou"]
    );
}

#[test]
fn box_prompt_evaluation_matches_transformers_and_pycocotools() {
    let fixture = repo_root().join("fixtures/segment_eval");
    let reference = read_json(&fixture.join("reference.json"));
    let images = shared_data().join(reference["images_folder"].as_str().unwrap());
    let data =
        read_coco_instances(&fixture.join("instances_val2017.json"), Some(&images), None).unwrap();
    assert_eq!(data.images.len(), 3);
    let sam = Sam::load_dir(
        &repo_root().join("fixtures/sam/sam-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    // With the crowd region: one run covers both references (the objects are
    // prompted one by one, so leaving the crowd out changes no other score).
    let options = SegmentEvalOptions {
        include_crowd: true,
        ..Default::default()
    };
    let mut seen = 0;
    let report = evaluate_segmentation(&sam, &data, &options, |_, r| {
        assert!(r.is_ok());
        seen += 1;
    });
    assert_eq!(seen, 3);
    assert_eq!(report.skipped_crowd, 0);
    check_against(&report, &reference["with_crowd"]);

    let crowd_ids: Vec<u64> = data
        .images
        .iter()
        .flat_map(|i| &i.objects)
        .filter(|o| o.iscrowd)
        .map(|o| o.annotation_id)
        .collect();
    assert_eq!(crowd_ids.len(), 1);
    let mut without = report.clone();
    without
        .per_instance
        .retain(|s| !crowd_ids.contains(&s.annotation_id));
    let per = &reference["per_instance"];
    assert_eq!(without.per_instance.len(), per.as_array().unwrap().len());
    let miou =
        without.per_instance.iter().map(|s| s.iou).sum::<f64>() / without.per_instance.len() as f64;
    assert!((miou - reference["miou"].as_f64().unwrap()).abs() < 1e-4);
}

#[test]
fn reading_coco_layouts_and_bad_input() {
    let coco = shared_data().join("coco-mini");
    let all = read_coco_instances(&coco, None, None).unwrap();
    assert_eq!(all.images.len(), 159);
    assert_eq!(all.categories.len(), 80);
    assert!(
        all.images.iter().all(|i| i.path.is_file()),
        "image paths resolved"
    );
    // train2017 sorts first.
    assert!(all.images[0].path.to_string_lossy().contains("train2017"));
    let val = read_coco_instances(&coco, None, Some("val2017")).unwrap();
    assert_eq!(val.images.len(), 79);
    let one =
        read_coco_instances(&coco.join("annotations/instances_val2017.json"), None, None).unwrap();
    assert_eq!(one.images.len(), 79);
    assert!(
        one.images.iter().all(|i| i.path.is_file()),
        "images found beside annotations/"
    );

    let err = read_coco_instances(&coco, None, Some("test2017"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("instances_test2017.json"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = read_coco_instances(dir.path(), None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("instances_<split>.json"), "{err}");
    let bad = dir.path().join("instances_x.json");
    std::fs::write(&bad, "{\"images\": 3}").unwrap();
    let err = read_coco_instances(&bad, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not COCO instances JSON"), "{err}");
    let err = read_coco_instances(&dir.path().join("nope"), None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such file"), "{err}");
}
