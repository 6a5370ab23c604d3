//! `seer eval caption` as a user runs it: the report's shape, failures that do
//! not stop the run, and models that cannot caption. The metrics themselves
//! are tested against pycocoevalcap in seer-engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_engine::caption_metrics::{score_captions, CaptionExample};
use seer_testkit::{model_fixture, repo_root, shared_data};

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env(
            "SEER_TOKENIZER",
            shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz"),
        )
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("seer-test-empty-hf-home"),
        )
        .output()
        .expect("run seer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn coco_captions() -> PathBuf {
    shared_data().join("coco-mini/captions.jsonl")
}

/// The tiny BLIP captioning fixture, once it exists.
fn blip_caption_fixture() -> Option<PathBuf> {
    let dir = repo_root().join("fixtures/blip/caption-tiny");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} does not exist yet; skipping the end-to-end captioning test",
            dir.display()
        );
        None
    }
}

#[test]
fn a_model_without_a_captioning_head_is_a_clear_error() {
    let clip = model_fixture("openclip-vit");
    let o = seer(&[
        "eval",
        "caption",
        "--model",
        clip.to_str().unwrap(),
        "--captions",
        coco_captions().to_str().unwrap(),
        "--limit",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("writes no captions") && err.contains("BLIP"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let clip = model_fixture("openclip-vit");
    let clip = clip.to_str().unwrap();
    let missing = seer(&[
        "eval",
        "caption",
        "--model",
        clip,
        "--captions",
        "/no/such/captions.jsonl",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/no/such/captions.jsonl"));
    let captions = coco_captions();
    for bad in [
        ["--beams", "0"],
        ["--max-new-tokens", "0"],
        ["--limit", "0"],
    ] {
        let o = seer(&[
            "eval",
            "caption",
            "--model",
            clip,
            "--captions",
            captions.to_str().unwrap(),
            bad[0],
            bad[1],
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(bad[0]), "{bad:?}: {}", stderr(&o));
    }
}

/// A captions file with `n` coco-mini images and one image that does not exist.
fn captions_with_a_missing_image(dir: &Path, n: usize) -> (PathBuf, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(coco_captions()).unwrap();
    let mut lines: Vec<String> = text.lines().take(n).map(str::to_string).collect();
    lines.insert(
        1,
        r#"{"file": "images/val2017/missing.jpg", "captions": ["a photo that is not there"]}"#
            .into(),
    );
    let refs = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["captions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let path = dir.join("captions.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, refs)
}

#[test]
fn eval_caption_scores_a_blip_model_and_reports_unreadable_images() {
    let Some(model) = blip_caption_fixture() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (captions, refs) = captions_with_a_missing_image(dir.path(), 4);
    let images = shared_data().join("coco-mini");
    let o = seer(&[
        "eval",
        "caption",
        "--model",
        model.to_str().unwrap(),
        "--captions",
        captions.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--max-new-tokens",
        "8",
        "--batch-size",
        "2",
        "--json",
    ]);
    // The missing image is reported and skipped: exit 1, the rest scored.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("missing.jpg"), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["images"], 4);
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["file"].as_str().unwrap().ends_with("missing.jpg"));
    assert!(!failed[0]["error"].as_str().unwrap().is_empty());
    let bleu: Vec<f64> = report["bleu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    assert_eq!(bleu.len(), 4);
    assert_eq!(report["bleu4"].as_f64().unwrap(), bleu[3]);
    assert!(bleu.iter().all(|b| (0.0..=1.0).contains(b)), "{bleu:?}");
    let cider = report["cider"].as_f64().unwrap();
    assert!(cider.is_finite() && cider >= 0.0, "{cider}");

    // The numbers are those of the library on the captions the report shows.
    let per_image = report["per_image"].as_array().unwrap();
    assert_eq!(per_image.len(), 4);
    let kept: Vec<Vec<String>> = refs
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, r)| r.clone())
        .collect();
    let examples: Vec<CaptionExample> = per_image
        .iter()
        .zip(kept)
        .map(|(p, references)| CaptionExample {
            candidate: p["caption"].as_str().unwrap().to_string(),
            references,
        })
        .collect();
    let expected = score_captions(&examples, true).unwrap();
    assert!((expected.cider - cider).abs() < 1e-12);
    assert!((expected.bleu4 - bleu[3]).abs() < 1e-12);
    for (p, s) in per_image.iter().zip(&expected.per_image) {
        assert!((p["cider"].as_f64().unwrap() - s.cider).abs() < 1e-12);
    }

    // The human summary.
    let o = seer(&[
        "eval",
        "caption",
        "--model",
        model.to_str().unwrap(),
        "--captions",
        coco_captions().to_str().unwrap(),
        "--limit",
        "2",
        "--max-new-tokens",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("2 images: BLEU-1 ") && out.contains("BLEU-4") && out.contains("CIDEr"),
        "{out}"
    );
}
