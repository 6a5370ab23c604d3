//! `seer eval segment` end to end on the tiny SAM fixture: the JSON report
//! against transformers + pycocotools (fixtures/segment_eval/reference.json),
//! the table, and clear refusals.

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
