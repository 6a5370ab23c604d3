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
        // Each round keeps its timed batches' slowest and fastest rates; the
        // medians over the rounds have none.
        assert!(r.get("iteration_range").is_none(), "{name}: {r}");
        for round in rounds {
            let range = round["iteration_range"]["image_model/2"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no iteration range in {round}"));
            let (lo, hi) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
            assert!(0.0 < lo && lo <= hi, "{name}: {lo} {hi}");
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

/// `--reference` through the binary, with a stand-in for the Python that
/// speaks `bench_reference.py --serve`'s protocol: each of seer's figures is
/// followed by the reference's of the same key (the stand-in logs the order
/// it is asked in, and seer's own figure lines go to the same stderr), every
/// round starts from set-up's results, and the ratios come out of the
/// figures it answered.
#[test]
fn bench_follows_each_figure_with_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("asked");
    let python = dir.path().join("python");
    // image_model/2 at 4 images/s for PyTorch, 2 for OpenVINO f32; the text
    // at 8; end to end (at 1) only for OpenVINO.
    let ready = serde_json::json!({
        "ready": {"torch": "0", "image_model": {}, "openvino": {"version": "1", "f32": {"e2e_files": 2}}},
        "measurements": [
            {"path": ["image_model", "2"], "key": ["image_model", "2"]},
            {"path": ["openvino", "f32", "image_model", "2"], "key": ["image_model", "2"]},
            {"path": ["text"], "key": ["text"]},
            {"path": ["openvino", "f32", "e2e"], "key": ["e2e"]},
        ],
    });
    seer_testkit::write_script(
        &python,
        &format!(
            "#!/bin/sh\necho '{ready}'\nwhile read line; do echo \"$line\" >> {log}\n\
             case \"$line\" in *0*) r=4;; *1*) r=2;; *2*) r=8;; *) r=1;; esac\n\
             echo \"reference figure $line\" >&2; echo \"{{\\\"rate\\\": $r}}\"; done\n",
            log = log.display()
        ),
    );
    let model = repo_root().join("fixtures/families/siglip-tiny");
    let image = shared_data().join("coco-mini/images/val2017/000000000139.jpg");
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(["bench", "--iterations", "1", "--json", "--batch-sizes", "2"])
        .args(["--files", "2", "--rounds", "2", "--images"])
        .arg(&image)
        .arg("--model")
        .arg(&model)
        .arg("--reference")
        .arg(&python)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "{\"measure\":0}\n{\"measure\":1}\n{\"measure\":2}\n{\"measure\":3}\n".repeat(2)
    );
    // Interleaved: seer's image figure, the reference's two, seer's text...
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            [
                ("seer  image", "seer image"),
                ("seer  text", "seer text"),
                ("seer  end-to-end", "seer e2e"),
                ("reference figure", "reference"),
            ]
            .into_iter()
            .find(|(prefix, _)| l.starts_with(prefix))
            .map(|(_, name)| name)
        })
        .collect();
    let round = [
        "seer image",
        "reference",
        "reference",
        "seer text",
        "reference",
        "seer e2e",
        "reference",
    ];
    assert_eq!(order, [round, round].concat(), "{stderr}");
    let rounds = r["rounds"].as_array().unwrap();
    for round in rounds {
        let seer = round["image_model"]["2"].as_f64().unwrap();
        // JSON's decimal text need not give back a float's last bit.
        let ratio_is = |path: &str, expected: f64| {
            let ratio = round.pointer(path).and_then(Value::as_f64);
            assert!(
                ratio.is_some_and(|r| (r - expected).abs() <= 1e-12 * expected),
                "{path}: {ratio:?}, not {expected}"
            );
        };
        ratio_is("/ratio/image_model/2", seer / 4.0);
        ratio_is("/ratio_engines/openvino/f32/image_model/2", seer / 2.0);
        ratio_is("/ratio/text", round["text"].as_f64().unwrap() / 8.0);
        ratio_is(
            "/ratio_engines/openvino/f32/e2e",
            round["e2e"].as_f64().unwrap(),
        );
        assert_eq!(round["reference"]["openvino"]["f32"]["e2e_files"], 2);
        assert_eq!(round["reference"]["torch"], "0");
    }
}

/// `--precision int8` times the same weights in f32 beside each image
/// figure and measures their agreement.
#[test]
fn bench_reduced_precision_reports_f32_beside_it() {
    let model = repo_root().join("fixtures/families/dinov2-tiny");
    let r = bench(&[
        "--model",
        model.to_str().unwrap(),
        "--batch-sizes",
        "2,3",
        "--files",
        "2",
        "--precision",
        "int8",
    ]);
    assert_eq!(r["precision"], "int8");
    for b in ["2", "3"] {
        let f32_ips = r["f32_image_model"][b].as_f64().unwrap_or(0.0);
        assert!(f32_ips > 0.0, "{r}");
        let speedup = r["speedup_over_f32"]["image_model"][b].as_f64().unwrap();
        let ips = r["image_model"][b].as_f64().unwrap();
        assert!((speedup - ips / f32_ips).abs() <= 1e-9 * speedup, "{r}");
    }
    let cosine = r["agreement_with_f32"]["image_cosine_min"]
        .as_f64()
        .unwrap();
    assert!(cosine > 0.9 && cosine <= 1.0 + 1e-5, "{r}");
}
