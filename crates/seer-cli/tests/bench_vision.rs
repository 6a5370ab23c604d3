//! `seer bench --model` on the tiny SAM, OWL and CLIP fixtures: the JSON
//! fields of the measurements (no reference run, no timing limits: the
//! figures only have to be there and be positive).

use std::process::Command;

use seer_testkit::{repo_root, shared_data};
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let image = shared_data().join("coco-mini/images/val2017/000000000139.jpg");
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args([
            "bench",
            "--iterations",
            "1",
            "--threads",
            "2",
            "--json",
            "--images",
        ])
        .arg(&image)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn positive(r: &Value, key: &str) {
    let v = r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {r}"));
    assert!(v > 0.0 && v.is_finite(), "{key}: {v}");
}

#[test]
fn bench_sam_reports_encoder_and_decoder_per_click() {
    let model = repo_root().join("fixtures/sam/sam-tiny");
    let r = bench(&["--model", model.to_str().unwrap()]);
    assert_eq!(r["task"], "segment");
    for key in [
        "encoder_s",
        "decoder_point_s",
        "click_point_s",
        "decoder_box_s",
        "click_box_s",
    ] {
        positive(&r, key);
    }
    assert_eq!(r["image_size"], serde_json::json!([640, 426]));
    assert!(r["cpu"]["model"].is_string());
    assert!(r.get("reference").is_none());
}

#[test]
fn bench_owl_reports_detection_per_image() {
    let tokenizer = shared_data().join("clip-tokenizer/hf-clip-vit-base-patch32/tokenizer.json");
    for name in ["owlvit-tiny", "owlv2-tiny"] {
        let model = repo_root().join("fixtures/owlvit").join(name);
        let r = bench(&[
            "--model",
            model.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
        ]);
        assert_eq!(r["task"], "detect", "{name}");
        positive(&r, "detect_model_s");
        positive(&r, "detect_e2e_s");
        assert_eq!(r["queries"].as_array().unwrap().len(), 4);
    }
}

/// `seer` with `args`, which must fail with nothing on stdout: its stderr.
fn refused(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bench_refuses_zero_rounds_before_loading_anything() {
    let err = refused(&["bench", "--rounds", "0", "--json"]);
    assert!(
        err.contains("'0' for '--rounds <ROUNDS>': must be at least 1"),
        "{err}"
    );
}

/// `--rounds` on a DINOv2 or SigLIP folder: it ran one round and printed
/// it as if it were the median of the rounds asked for.
#[test]
fn bench_family_models_run_every_round_asked_for() {
    for name in ["siglip-tiny", "dinov2-tiny"] {
        let model = repo_root().join("fixtures/families").join(name);
        let r = bench(&[
            "--model",
            model.to_str().unwrap(),
            "--batch-sizes",
            "2",
            "--files",
            "2",
            "--rounds",
            "3",
        ]);
        let rounds = r["rounds"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {r}"));
        assert_eq!(rounds.len(), 3, "{name}");
        let mut each: Vec<f64> = rounds
            .iter()
            .map(|round| round["image_model"]["2"].as_f64().unwrap())
            .collect();
        each.sort_by(f64::total_cmp);
        assert_eq!(
            r["image_model"]["2"].as_f64(),
            Some(each[1]),
            "{name}: the median"
        );
        if name == "siglip-tiny" {
            assert!(
                rounds.iter().all(|round| round["text"].as_f64().is_some()),
                "{r}"
            );
        }
    }
}

/// A benchmark that runs once refuses `--rounds` above 1 instead of running
/// once under a median's name.
#[test]
fn bench_refuses_rounds_where_it_measures_once() {
    let sam = repo_root().join("fixtures/sam/sam-tiny");
    let err = refused(&[
        "bench",
        "--iterations",
        "1",
        "--rounds",
        "2",
        "--json",
        "--model",
        sam.to_str().unwrap(),
    ]);
    assert!(
        err.contains("--rounds 2 is for embedding benchmarks") && err.contains("segmentation"),
        "{err}"
    );
}

#[test]
fn bench_clip_runs_batches_whole_on_request_and_says_so() {
    let model = repo_root().join("fixtures/models/hf-vit-quickgelu");
    let tokenizer = shared_data().join("clip-tokenizer/hf-clip-vit-base-patch32/tokenizer.json");
    for whole in [false, true] {
        let mut args = vec![
            "--model",
            model.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--batch-sizes",
            "4",
            "--files",
            "4",
        ];
        if whole {
            args.push("--whole-batches");
        }
        let r = bench(&args);
        assert_eq!(r["whole_batches"], whole, "{r}");
        assert!(
            r["image_model"]["4"].as_f64().is_some_and(|v| v > 0.0),
            "{r}"
        );
        positive(&r, "text_longest");
    }
}
