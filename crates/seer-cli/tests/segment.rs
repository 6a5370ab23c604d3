//! `seer segment` end to end on the tiny SAM fixture (fixtures/sam): the JSON
//! contract against the reference's masks and IoU predictions, PNG cut-outs,
//! the `--logits` .npy against `pred_masks`, and clear refusals.

use std::path::PathBuf;
use std::process::{Command, Output};

use seer_testkit::{read_json, repo_root, shared_data};
use serde_json::Value;

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("seer-test-empty-hf-home"),
        )
        .output()
        .unwrap()
}

fn model() -> String {
    repo_root()
        .join("fixtures/sam/sam-tiny")
        .display()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Row-major mask from COCO uncompressed RLE.
fn decode(rle: &Value) -> Vec<bool> {
    let size = rle["size"].as_array().unwrap();
    let (h, w) = (
        size[0].as_u64().unwrap() as usize,
        size[1].as_u64().unwrap() as usize,
    );
    let mut cm = Vec::new();
    for (i, c) in rle["counts"].as_array().unwrap().iter().enumerate() {
        cm.extend(std::iter::repeat_n(
            i % 2 == 1,
            c.as_u64().unwrap() as usize,
        ));
    }
    assert_eq!(cm.len(), h * w);
    (0..h * w).map(|i| cm[(i % w) * h + i / w]).collect()
}

#[test]
fn segment_prints_the_reference_masks_and_writes_cutouts_and_logits() {
    let reference = read_json(&repo_root().join("fixtures/sam/sam-tiny/reference.json"));
    let case = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["image"] == "coco-mini/images/val2017/000000000802.jpg")
        .unwrap();
    let p = case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "box_and_point")
        .unwrap();
    let pt = p["points"][0].as_array().unwrap();
    let bx = p["boxes"][0].as_array().unwrap();
    let point = format!("{},{},1", pt[0], pt[1]);
    let boxed = bx
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("logits.npy");
    let image = shared_data().join(case["image"].as_str().unwrap());
    let out = seer(&[
        "segment",
        "--model",
        &model(),
        image.to_str().unwrap(),
        "--point",
        &point,
        "--box",
        &boxed,
        "--out",
        dir.path().to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let masks = doc["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 3);
    let iou = p["iou_scores"][0].as_array().unwrap();
    for (k, m) in masks.iter().enumerate() {
        assert!((m["iou"].as_f64().unwrap() - iou[k].as_f64().unwrap()).abs() < 1e-3);
        let ours = decode(&m["rle"]);
        let theirs = decode(&p["masks"][0][k]);
        let diff = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert!(diff * 1000 <= ours.len(), "mask {k}: {diff} pixels differ");
        let area = ours.iter().filter(|&&b| b).count();
        assert_eq!(m["area"].as_u64().unwrap() as usize, area);
        let bbox: Vec<u64> = m["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        if area > 0 {
            assert!(
                bbox[2] > 0 && bbox[3] > 0 && bbox[0] + bbox[2] <= 424 && bbox[1] + bbox[3] <= 640
            );
        }
        // The cut-out: the image's size, opaque exactly inside the mask.
        let png = PathBuf::from(m["png"].as_str().unwrap());
        let cut = seer_image::image::open(&png).unwrap().to_rgba8();
        assert_eq!(cut.dimensions(), (424, 640));
        let opaque = cut.pixels().filter(|px| px[3] == 255).count();
        assert_eq!(opaque, area);
    }
    // --logits: [3, 256, 256] f32 equal to pred_masks at the sampled positions.
    let bytes = std::fs::read(&logits).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]).into_owned();
    assert!(
        header.contains("'<f4'") && header.contains("(3, 256, 256"),
        "{header}"
    );
    let data: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), 3 * 256 * 256);
    let r = &p["pred_masks"];
    for (i, v) in r["indices"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["values"].as_array().unwrap())
    {
        let d = (data[i.as_u64().unwrap() as usize] as f64 - v.as_f64().unwrap()).abs();
        assert!(d < 1e-3, "logit {i}: {d}");
    }
    // The logits fed back as a mask prompt.
    let again = seer(&[
        "segment",
        "--model",
        &model(),
        image.to_str().unwrap(),
        "--mask-input",
        logits.to_str().unwrap(),
        "--mask-index",
        "1",
        "--single",
        "--json",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    let doc: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(doc["masks"].as_array().unwrap().len(), 1);
}

#[test]
fn segment_refuses_bad_input_clearly() {
    let image = shared_data().join("smoke/skimage/camera.png");
    let image = image.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.jpg");
    std::fs::write(&junk, b"not an image").unwrap();
    let bad_npy = dir.path().join("bad.npy");
    std::fs::write(&bad_npy, b"nope").unwrap();
    let blip = repo_root()
        .join("fixtures/blip/caption-tiny")
        .display()
        .to_string();
    let m = model();
    for (args, needles) in [
        (
            vec!["segment", "--model", &m, image],
            vec!["--point", "--box"],
        ),
        (
            vec!["segment", "--model", &m, image, "--point", "9,x"],
            vec!["'x' is not a number"],
        ),
        (
            vec!["segment", "--model", &m, image, "--point", "9,9,2"],
            vec!["label must be 1"],
        ),
        (
            vec!["segment", "--model", &m, image, "--point", "900,9"],
            vec!["outside the 512×512 image"],
        ),
        (
            vec!["segment", "--model", &m, image, "--box", "50,50,10,10"],
            vec!["x0 <= x1"],
        ),
        (
            vec!["segment", "--model", &m, image, "--box", "1,2,3"],
            vec!["expected 4"],
        ),
        (
            vec![
                "segment",
                "--model",
                &m,
                junk.to_str().unwrap(),
                "--point",
                "1,1",
            ],
            vec!["junk.jpg"],
        ),
        (
            vec![
                "segment",
                "--model",
                &m,
                image,
                "--mask-input",
                bad_npy.to_str().unwrap(),
            ],
            vec!["bad.npy", "not a .npy"],
        ),
        (
            vec!["segment", "--model", &blip, image, "--point", "1,1"],
            vec!["does not segment", "blip"],
        ),
    ] {
        let out = seer(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(needles.iter().all(|n| err.contains(n)), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
