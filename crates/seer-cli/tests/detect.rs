//! `seer detect` as a user runs it on the tiny OWL fixtures: the JSON
//! contract, `--nms 1` giving exactly transformers' post-processing (text
//! labels and an image query), bad files that never stop a batch, and clear
//! refusals. Model parity itself is tested in seer-engine (tests/owlvit.rs).

use std::process::{Command, Output};

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
        .expect("run seer")
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("fixtures/owlvit")
        .join(name)
        .display()
        .to_string()
}

fn reference(name: &str) -> Value {
    read_json(
        &repo_root()
            .join("fixtures/owlvit")
            .join(name)
            .join("reference.json"),
    )
}

fn image(reference: &Value, i: usize) -> String {
    shared_data()
        .join(reference["images"][i].as_str().unwrap())
        .display()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// `got` (best first) against the reference's list (any order).
fn assert_same(got: &Value, want: &Value, frame: f64, what: &str) {
    let got = got.as_array().unwrap();
    let mut want: Vec<&Value> = want.as_array().unwrap().iter().collect();
    want.sort_by(|a, b| {
        b["score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["score"].as_f64().unwrap())
    });
    assert_eq!(got.len(), want.len(), "{what}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        let keys: Vec<&String> = g.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "{what}: label, score and box only: {g}");
        if let Some(label) = w.get("label") {
            assert_eq!(g["label"], *label, "{what}");
        } else {
            assert_eq!(g["label"], "image", "{what}");
        }
        let ds = (g["score"].as_f64().unwrap() - w["score"].as_f64().unwrap()).abs();
        assert!(ds < 1e-4, "{what}: score off by {ds}");
        for k in 0..4 {
            let db = (g["box"][k].as_f64().unwrap() - w["box"][k].as_f64().unwrap()).abs();
            assert!(db / frame < 1e-4, "{what}: box off by {db} px");
        }
    }
}

fn frame(reference: &Value, i: usize) -> f64 {
    let t = &reference["text_queries"][i]["target_size"];
    t[0].as_f64().unwrap().max(t[1].as_f64().unwrap())
}

/// On one thread the files go one by one; on two or three, a file per thread
/// at once (`seer detect`'s groups): the same detections in the same order.
#[test]
fn nms_one_is_the_reference_post_processing_and_bad_files_do_not_stop_the_batch() {
    for (name, threads) in [
        ("owlvit-tiny", "2"),
        ("owlv2-tiny", "2"),
        ("owlvit-tiny", "1"),
        ("owlv2-tiny", "3"),
    ] {
        let what = format!("{name} on {threads} threads");
        let r = reference(name);
        let labels = r["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(",");
        let images: Vec<String> = (0..4).map(|i| image(&r, i)).collect();
        let model = fixture(name);
        let mut argv = vec!["detect", images[0].as_str(), "/no/such/photo.jpg"];
        argv.extend(images[1..].iter().map(String::as_str));
        argv.extend([
            "--model",
            &model,
            "--labels",
            &labels,
            "--nms",
            "1",
            "--json",
            "--threads",
            threads,
        ]);
        let out = seer(&argv);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("/no/such/photo.jpg"),
            "{}",
            stderr(&out)
        );
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 4, "{what}: the batch went on");
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line["input"], images[i].as_str(), "{what}: in order");
            let want = &r["text_queries"][i]["post_process"]["threshold_0.1"]["nms_1"];
            assert_same(
                &line["detections"],
                want,
                frame(&r, i),
                &format!("{what}, image {i}"),
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("{\"input\":"), "input first: {text}");
    }
}

#[test]
fn default_nms_and_threshold_flags() {
    let r = reference("owlv2-tiny");
    let img = image(&r, 0);
    let labels = r["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(",");
    let model = fixture("owlv2-tiny");
    let out = seer(&[
        "detect", "--model", &model, &img, "--labels", &labels, "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = &r["text_queries"][0]["post_process"]["threshold_0.1"]["nms_0.3"];
    assert_same(
        &json_lines(&out)[0]["detections"],
        want,
        frame(&r, 0),
        "default NMS 0.3",
    );
    let out = seer(&[
        "detect",
        "--model",
        &model,
        &img,
        "--labels",
        &labels,
        "--threshold",
        "0.3",
        "--nms",
        "0.5",
        "--json",
    ]);
    let want = &r["text_queries"][0]["post_process"]["threshold_0.3"]["nms_0.5"];
    assert_same(
        &json_lines(&out)[0]["detections"],
        want,
        frame(&r, 0),
        "threshold 0.3, NMS 0.5",
    );
}

#[test]
fn image_query_matches_the_reference_image_guided_post_processing() {
    for name in ["owlvit-tiny", "owlv2-tiny"] {
        let r = reference(name);
        let query = shared_data()
            .join(r["image_query"]["path"].as_str().unwrap())
            .display()
            .to_string();
        let model = fixture(name);
        for (flags, key) in [
            (vec![], "threshold_0.0_nms_0.3"),
            (vec!["--nms", "1"], "threshold_0.0_nms_1.0"),
            (
                vec!["--threshold", "0.5", "--nms", "1"],
                "threshold_0.5_nms_1.0",
            ),
        ] {
            let images: Vec<String> = (0..3).map(|i| image(&r, i)).collect();
            let mut argv = vec![
                "detect",
                "--model",
                &model,
                "--image-query",
                &query,
                "--json",
            ];
            argv.extend(images.iter().map(String::as_str));
            argv.extend(flags.iter().copied());
            let out = seer(&argv);
            assert!(out.status.success(), "{}", stderr(&out));
            for (i, line) in json_lines(&out).iter().enumerate() {
                let want = &r["image_guided"][i]["post_process"][key];
                assert_same(
                    &line["detections"],
                    want,
                    frame(&r, i),
                    &format!("{name} {key} image {i}"),
                );
            }
        }
    }
}

#[test]
fn refusals_are_clear() {
    let r = reference("owlvit-tiny");
    let img = image(&r, 0);
    // A model without a detector.
    let blip = repo_root()
        .join("fixtures/blip/caption-tiny")
        .display()
        .to_string();
    let out = seer(&["detect", "--model", &blip, &img, "--labels", "a cat"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("detects no objects") && err.contains("OWL"),
        "{err}"
    );
    // Neither or both kinds of query; a bad NMS; an unreadable image query.
    let model = fixture("owlvit-tiny");
    let out = seer(&["detect", "--model", &model, &img]);
    assert!(
        !out.status.success() && stderr(&out).contains("--labels"),
        "{}",
        stderr(&out)
    );
    let out = seer(&[
        "detect",
        "--model",
        &model,
        &img,
        "--labels",
        "a",
        "--image-query",
        &img,
    ]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let out = seer(&[
        "detect", "--model", &model, &img, "--labels", "a", "--nms", "0",
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("--nms"),
        "{}",
        stderr(&out)
    );
    let out = seer(&[
        "detect",
        "--model",
        &model,
        &img,
        "--image-query",
        "/no/query.png",
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("/no/query.png"),
        "{err}"
    );
}
