//! `seer segment --text` (an OWL detector's boxes prompting SAM) and `--auto`
//! (transformers' mask-generation pipeline) as a user runs them on the tiny
//! fixtures, with `--polygons` and the `--coco` instances file; and clear
//! refusals of bad flags.

use std::process::{Command, Output};

use seer_engine::coco_masks::{annotation_mask, Rle};
use seer_testkit::{read_json, repo_root, shared_data, tokenizer_file};
use serde_json::Value;

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("seer-test-empty-hf-home"),
        )
        .output()
        .unwrap()
}

fn fixture(rel: &str) -> String {
    repo_root().join(rel).display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Row-major mask of the JSON's uncompressed RLE.
fn decode(rle: &Value) -> Rle {
    let size = rle["size"].as_array().unwrap();
    Rle {
        height: size[0].as_u64().unwrap() as usize,
        width: size[1].as_u64().unwrap() as usize,
        counts: rle["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as u32)
            .collect(),
    }
}

#[test]
fn text_masks_are_the_box_masks_of_the_detections() {
    let img = shared_data()
        .join("coco-mini/images/val2017/000000000139.jpg")
        .display()
        .to_string();
    let labels = "a dog,a photo of a cat";
    let owl = fixture("fixtures/owlvit/owlv2-tiny");
    let sam = fixture("fixtures/sam/sam-tiny");
    let det = json(&seer(&[
        "detect", "--model", &owl, &img, "--labels", labels, "--json",
    ]));
    let found = det["detections"].as_array().unwrap();
    assert!(!found.is_empty(), "the detector found nothing: {det}");

    let dir = tempfile::tempdir().unwrap();
    let coco_path = dir.path().join("coco.json");
    let doc = json(&seer(&[
        "segment",
        "--model",
        &sam,
        &img,
        "--text",
        labels,
        "--detector",
        &owl,
        "--polygons",
        "--coco",
        coco_path.to_str().unwrap(),
        "--json",
    ]));
    let (w, h) = (
        doc["width"].as_f64().unwrap(),
        doc["height"].as_f64().unwrap(),
    );
    let masks = doc["masks"].as_array().unwrap();
    assert_eq!(masks.len(), found.len(), "one mask per detection");

    // The same boxes through `seer segment --box … --single`.
    let mut args: Vec<String> = ["segment", "--model", &sam, &img, "--single", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for d in found {
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (x0, y0) = (b[0].clamp(0.0, w), b[1].clamp(0.0, h));
        let c = [x0, y0, b[2].clamp(x0, w), b[3].clamp(y0, h)];
        args.push("--box".into());
        args.push(
            c.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let boxed = json(&seer(&refs));
    let boxed = boxed["masks"].as_array().unwrap();
    assert_eq!(boxed.len(), masks.len());
    for (i, ((m, b), d)) in masks.iter().zip(boxed).zip(found).enumerate() {
        assert_eq!(m["label"], d["label"], "mask {i}");
        assert_eq!(m["score"], d["score"], "mask {i}");
        assert_eq!(m["rle"], b["rle"], "mask {i}: not the --box mask");
        assert_eq!(m["iou"], b["iou"], "mask {i}");
        assert_eq!(m["bbox"], b["bbox"], "mask {i}");
        assert!(m["polygons"].is_array(), "mask {i}: --polygons");
    }

    // The COCO file: one image, an annotation per mask, the labels as categories.
    let coco = read_json(&coco_path);
    let images = coco["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["width"].as_f64().unwrap(), w);
    assert_eq!(images[0]["height"].as_f64().unwrap(), h);
    let cats = coco["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 2);
    assert_eq!(cats[0]["name"], "a dog");
    assert_eq!(cats[1]["name"], "a photo of a cat");
    let anns = coco["annotations"].as_array().unwrap();
    assert_eq!(anns.len(), masks.len());
    for (a, m) in anns.iter().zip(masks) {
        let cat = cats
            .iter()
            .find(|c| c["id"] == a["category_id"])
            .expect("category id resolves");
        assert_eq!(cat["name"], m["label"]);
        assert_eq!(a["image_id"], images[0]["id"]);
        assert_eq!(a["area"], m["area"]);
        assert_eq!(a["bbox"], m["bbox"]);
        assert_eq!(a["score"], m["score"]);
        assert_eq!(a["iscrowd"], 0);
        assert_eq!(a["segmentation"], m["polygons"]);
        // The polygons, rasterised as pycocotools does, cover the mask (outer
        // contours fill its holes, so only the mask's side is checked).
        let ours = decode(&m["rle"]).decode().unwrap();
        if ours.area() > 500 {
            let poly = annotation_mask(&a["segmentation"], h as usize, w as usize).unwrap();
            let inter = poly
                .data
                .iter()
                .zip(&ours.data)
                .filter(|(a, b)| **a && **b)
                .count();
            let union = poly
                .data
                .iter()
                .zip(&ours.data)
                .filter(|(a, b)| **a || **b)
                .count();
            let covered = inter as f64 / ours.area() as f64;
            assert!(
                covered > 0.95,
                "polygons cover {covered} of the mask ({inter}/{union})"
            );
        }
    }
}

#[test]
fn auto_masks_match_the_pipeline_and_fill_a_coco_file() {
    let reference = read_json(&repo_root().join("fixtures/sam/sam-tiny/automask.json"));
    let case = &reference["cases"][1];
    assert_eq!(case["options"]["crops_n_layers"], 1);
    let img = shared_data()
        .join(case["image"].as_str().unwrap())
        .display()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let coco_path = dir.path().join("auto.json");
    let doc = json(&seer(&[
        "segment",
        "--model",
        &fixture("fixtures/sam/sam-tiny"),
        &img,
        "--auto",
        "--points-per-side",
        "4",
        "--crop-n-layers",
        "1",
        "--pred-iou-thresh",
        "0",
        "--stability-score-thresh",
        "0",
        "--coco",
        coco_path.to_str().unwrap(),
        "--json",
    ]));
    let masks = doc["masks"].as_array().unwrap();
    let want = case["masks"].as_array().unwrap();
    assert_eq!(masks.len(), want.len());
    for (k, (m, w)) in masks.iter().zip(want).enumerate() {
        let d = (m["iou"].as_f64().unwrap() - w["score"].as_f64().unwrap()).abs();
        assert!(d < 1e-4, "mask {k}: iou off by {d}");
        let (h, wd) = (512, 512);
        let theirs = Rle::from_string(w["counts"].as_str().unwrap(), h, wd)
            .unwrap()
            .decode()
            .unwrap();
        let ours = decode(&m["rle"]).decode().unwrap();
        let diff = ours
            .data
            .iter()
            .zip(&theirs.data)
            .filter(|(a, b)| a != b)
            .count();
        assert!(diff * 1000 <= h * wd, "mask {k}: {diff} pixels differ");
        assert!(m["crop_box"].is_array() && m["point"].is_array(), "{m}");
    }
    let coco = read_json(&coco_path);
    assert_eq!(coco["categories"][0]["name"], "object");
    let anns = coco["annotations"].as_array().unwrap();
    assert_eq!(anns.len(), masks.len());
    for a in anns {
        assert_eq!(a["category_id"], 1);
        let rle = decode(&a["segmentation"]);
        assert_eq!(rle.decode().unwrap().area(), a["area"].as_u64().unwrap());
    }
}

#[test]
fn segment_modes_refuse_bad_flags_clearly() {
    let sam = fixture("fixtures/sam/sam-tiny");
    let img = shared_data()
        .join("smoke/skimage/camera.png")
        .display()
        .to_string();
    for (args, needle) in [
        (vec!["--auto", "--point", "3,3"], "cannot be used with"),
        (
            vec!["--auto", "--points-per-side", "0"],
            "--points-per-side",
        ),
        (vec!["--auto", "--crop-n-layers", "9"], "--crop-n-layers"),
        (
            vec!["--pred-iou-thresh", "0.5", "--point", "3,3"],
            "only applies to --auto",
        ),
        (vec!["--text", " , "], "at least one label"),
        (
            vec!["--threshold", "0.5", "--point", "3,3"],
            "only applies to --text",
        ),
        (vec!["--text", "a cat", "--nms", "0"], "--nms"),
        (
            vec!["--text", "a cat", "--detector", &sam],
            "detects no objects",
        ),
        (vec!["--auto", "--logits", "x.npy"], "cannot be used with"),
    ] {
        let mut all = vec!["segment", "--model", &sam, &img];
        all.extend(args.iter().copied());
        let out = seer(&all);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}
