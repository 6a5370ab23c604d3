//! `seer eval segment` end to end on the tiny SAM fixture: the JSON report
//! against transformers + pycocotools (fixtures/segment_eval/reference.json),
//! the table, and clear refusals.

use std::process::{Command, Output};

mod common;

use common::exif::with_orientation;
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

fn path(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn eval_segment_reports_the_reference_miou_as_json_and_as_a_table() {
    let fixture = repo_root().join("fixtures/segment_eval");
    let reference = read_json(&fixture.join("reference.json"));
    let data = path(fixture.join("instances_val2017.json"));
    let images = path(shared_data().join(reference["images_folder"].as_str().unwrap()));
    let model = path(repo_root().join("fixtures/sam/sam-tiny"));
    let o = seer(&[
        "eval",
        "segment",
        "--data",
        &data,
        "--images",
        &images,
        "--model",
        &model,
        "--json",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["images", "instances", "skipped_crowd"] {
        assert_eq!(report[key], reference[key], "{key}");
    }
    for key in ["miou", "category_miou"] {
        let d = (report[key].as_f64().unwrap() - reference[key].as_f64().unwrap()).abs();
        assert!(d < 1e-4, "{key}: {} vs {}", report[key], reference[key]);
    }
    assert_eq!(report["multimask"], false);
    assert_eq!(report["failed"].as_array().unwrap().len(), 0);
    assert!(report["model"].as_str().unwrap().contains("sam-tiny"));
    let ours = report["per_instance"].as_array().unwrap();
    let want = reference["per_instance"].as_array().unwrap();
    assert_eq!(ours.len(), want.len());
    for (a, b) in ours.iter().zip(want) {
        assert_eq!(a["annotation_id"], b["annotation_id"]);
        let d = (a["iou"].as_f64().unwrap() - b["iou"].as_f64().unwrap()).abs();
        assert!(d < 1e-3, "{a} vs {b}");
    }

    // The table, limited to one image: categories, then the summary line.
    let o = seer(&[
        "eval",
        "segment",
        "--data",
        &data,
        "--images",
        &images,
        "--model",
        &model,
        "--limit",
        "1",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("category"), "{text}");
    assert!(text.contains("1 images, "), "{text}");
    assert!(text.contains("mIoU"), "{text}");
}

/// COCO's annotations are in the stored pixels' frame, whatever EXIF
/// orientation a photo carries (pycocotools, and transformers' processor on
/// `PIL.Image.open`, ignore it): a rotated tag changes nothing.
#[test]
fn eval_segment_scores_the_stored_pixels_of_a_photo_with_an_exif_orientation() {
    let fixture = repo_root().join("fixtures/segment_eval");
    let reference = read_json(&fixture.join("reference.json"));
    let data = path(fixture.join("instances_val2017.json"));
    let folder = shared_data().join(reference["images_folder"].as_str().unwrap());
    let rotated = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let file = entry.unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        let tagged = match bytes.starts_with(&[0xFF, 0xD8]) {
            true => with_orientation(&bytes, 6),
            false => bytes,
        };
        std::fs::write(rotated.path().join(file.file_name().unwrap()), tagged).unwrap();
    }
    let model = path(repo_root().join("fixtures/sam/sam-tiny"));
    let run = |images: &str| {
        let o = seer(&[
            "eval",
            "segment",
            "--data",
            &data,
            "--images",
            images,
            "--model",
            &model,
            "--limit",
            "2",
            "--json",
            "--threads",
            "2",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        report
    };
    let plain = run(&path(folder.clone()));
    let tagged = run(&path(rotated.path().to_path_buf()));
    assert_eq!(tagged["failed"].as_array().unwrap().len(), 0, "{tagged}");
    assert_eq!(tagged["miou"], plain["miou"]);
    assert_eq!(tagged["per_instance"], plain["per_instance"]);
}

/// Nothing to score is an error saying why, not a 0% mIoU; a failed image's
/// error does not repeat its path, which `file` gives.
#[test]
fn eval_segment_without_objects_to_score_says_so() {
    let fixture = repo_root().join("fixtures/segment_eval");
    let reference = read_json(&fixture.join("reference.json"));
    let images = path(shared_data().join(reference["images_folder"].as_str().unwrap()));
    let instances: Value = read_json(&fixture.join("instances_val2017.json"));
    let model = path(repo_root().join("fixtures/sam/sam-tiny"));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &Value| {
        let file = dir.path().join(name);
        std::fs::write(&file, value.to_string()).unwrap();
        path(file)
    };
    let eval = |data: &str| {
        seer(&[
            "eval", "segment", "--data", data, "--images", &images, "--model", &model, "--json",
        ])
    };
    // No annotations at all: refused before the model is loaded.
    let mut bare = instances.clone();
    bare["annotations"] = serde_json::json!([]);
    let o = eval(&write("bare.json", &bare));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("have no object annotations to score"),
        "{}",
        stderr(&o)
    );
    // Only crowd annotations: all skipped, so no score.
    let mut crowd = instances.clone();
    for a in crowd["annotations"].as_array_mut().unwrap() {
        a["iscrowd"] = serde_json::json!(1);
    }
    let o = eval(&write("crowd.json", &crowd));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no object was scored") && stderr(&o).contains("--include-crowd"),
        "{}",
        stderr(&o)
    );
    // An image file that is missing: its error names the cause once.
    let mut missing = instances.clone();
    missing["images"][0]["file_name"] = serde_json::json!("gone.jpg");
    let o = eval(&write("missing.json", &missing));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed = &report["failed"][0];
    let file = failed["file"].as_str().unwrap();
    assert!(file.ends_with("gone.jpg"), "{failed}");
    assert!(
        !failed["error"].as_str().unwrap().contains("gone.jpg"),
        "{failed}"
    );
}

#[test]
fn eval_segment_refuses_bad_input_clearly() {
    let model = path(repo_root().join("fixtures/sam/sam-tiny"));
    let coco = path(shared_data().join("coco-mini"));
    let check = |args: &[&str], want: &str| {
        let o = seer(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    check(
        &[
            "eval",
            "segment",
            "--data",
            "/no/such/folder",
            "--model",
            &model,
        ],
        "no such file or folder",
    );
    check(
        &[
            "eval", "segment", "--data", &coco, "--model", &model, "--limit", "0",
        ],
        "--limit must be at least 1",
    );
    check(
        &[
            "eval", "segment", "--data", &coco, "--split", "test2017", "--model", &model,
        ],
        "instances_test2017.json",
    );
    let owl = path(repo_root().join("fixtures/owlvit/owlvit-tiny"));
    let tokenizer =
        path(shared_data().join("clip-tokenizer/hf-clip-vit-base-patch32/tokenizer.json"));
    check(
        &[
            "eval",
            "segment",
            "--data",
            &coco,
            "--model",
            &owl,
            "--limit",
            "1",
            "--tokenizer",
            &tokenizer,
        ],
        "does not segment",
    );
    // An image that does not match its annotations fails alone, exit code 1.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("instances_x.json");
    std::fs::write(
        &json,
        r#"{"images": [{"id": 1, "file_name": "a.png", "width": 5, "height": 4}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 3, 3],
                             "iscrowd": 0, "segmentation": [[0, 0, 3, 0, 3, 3]]}],
            "categories": [{"id": 1, "name": "thing"}]}"#,
    )
    .unwrap();
    seer_image::image::RgbImage::new(6, 4)
        .save(dir.path().join("a.png"))
        .unwrap();
    let o = seer(&[
        "eval",
        "segment",
        "--data",
        &path(json),
        "--images",
        &path(dir.path().to_path_buf()),
        "--model",
        &model,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("annotations say 5×4"), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["instances"], 0);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
}
