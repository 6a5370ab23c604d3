//! `seer bench --model` on a captioning model (the tiny BLIP fixture): the JSON
//! fields, and the comparison with a reference run through `--reference`, here a
//! stand-in that prints canned output instead of running transformers. No
//! timing is asserted.

use std::path::Path;
use std::process::Command;

use seer_testkit::repo_root;
use serde_json::{json, Value};

fn bench(images: &Path, extra: &[&str], envs: &[(&str, &Path)]) -> Value {
    let model = repo_root().join("fixtures/blip/caption-tiny");
    let mut command = Command::new(env!("CARGO_BIN_EXE_seer"));
    command
        .arg("bench")
        .arg("--model")
        .arg(&model)
        .arg("--images")
        .arg(images)
        .args([
            "--files",
            "3",
            "--caption-batch-sizes",
            "1,2",
            "--beams",
            "1,2",
        ])
        .args(["--threads", "1", "--json"])
        .args(extra);
    for (k, v) in envs {
        command.env(k, v);
    }
    let o = command.output().expect("run seer");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

/// Two small distinct PNGs.
fn image_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..2u8 {
        let img = seer_image::image::RgbImage::from_fn(40, 30, |x, y| {
            seer_image::image::Rgb([(x * 6) as u8 ^ (i * 90), (y * 8) as u8, 100 + i * 50])
        });
        img.save(dir.path().join(format!("img{i}.png"))).unwrap();
    }
    dir
}

const CONFIGS: [(&str, &str); 4] = [
    ("greedy", "1"),
    ("greedy", "2"),
    ("beam2", "1"),
    ("beam2", "2"),
];

#[test]
fn caption_bench_reports_images_and_tokens_per_second_for_each_configuration() {
    let images = image_dir();
    let r = bench(images.path(), &[], &[]);
    assert_eq!(r["family"], "blip");
    let c = &r["caption"];
    assert_eq!(c["images"], 3);
    assert_eq!(c["source"], "image files");
    assert_eq!(c["distinct_files"], 2);
    assert_eq!(c["prompt_tokens"], 1);
    for (name, b) in CONFIGS {
        let run = &c[name][b];
        let (ips, tps, seconds) = (
            run["images_per_second"].as_f64().unwrap(),
            run["tokens_per_second"].as_f64().unwrap(),
            run["seconds"].as_f64().unwrap(),
        );
        let tokens = run["generated_tokens"].as_u64().unwrap();
        // At most 20 new tokens an image (generate's default).
        assert!((1..=60).contains(&tokens), "{name} {b}: {tokens}");
        assert!((ips * seconds - 3.0).abs() < 1e-6, "{run}");
        assert!((tps * seconds - tokens as f64).abs() < 1e-6, "{run}");
    }
    assert!(c["batch_invariant"]["greedy"].is_boolean(), "{c}");
    // Without --reference: no ratios.
    assert!(r["ratio"].is_null() && r["reference"].is_null());
}

#[cfg(unix)]
#[test]
fn reference_figures_give_ratios_and_token_agreement() {
    let images = image_dir();
    let dir = tempfile::tempdir().unwrap();
    // Stands in for the Python: prints the file FAKE_REFERENCE names, whatever
    // the script and arguments.
    let python = dir.path().join("python");
    seer_testkit::write_script(&python, "#!/bin/sh\ncat \"$FAKE_REFERENCE\"\n");
    let canned = dir.path().join("reference.json");
    let write = |tokens: &dyn Fn(&str, &str) -> Value| {
        let mut caption = json!({});
        for (name, b) in CONFIGS {
            caption[name][b] = json!({
                "images_per_second": 0.5,
                "tokens_per_second": 4.0,
                "generated_tokens": 8,
                "seconds": 2.0,
                "images": 3,
                "tokens": tokens(name, b),
            });
        }
        let out = json!({"torch": "fake", "threads": 1, "caption": caption});
        std::fs::write(&canned, format!("progress line\n{out}\n")).unwrap();
    };
    let reference = ["--reference", python.to_str().unwrap()];
    let env = [("FAKE_REFERENCE", canned.as_path())];

    // Sequences no model gives (id 0 after [DEC], then a [SEP] that ends it).
    write(&|_, _| json!([[1000, 0, 3], [1000, 0, 3], [1000, 0, 3]]));
    let r = bench(images.path(), &reference, &env);
    let mut seer_tokens = json!({});
    for (name, b) in CONFIGS {
        let ours = &r["caption"][name][b];
        let ratio = &r["ratio"]["caption"][name][b];
        let ips = ours["images_per_second"].as_f64().unwrap();
        let tps = ours["tokens_per_second"].as_f64().unwrap();
        assert!((ratio["images_per_second"].as_f64().unwrap() - ips / 0.5).abs() < 1e-9);
        assert!((ratio["tokens_per_second"].as_f64().unwrap() - tps / 4.0).abs() < 1e-9);
        let agreement = &r["caption_agreement"][name][b];
        assert_eq!(
            (agreement["matched"].as_u64(), agreement["images"].as_u64()),
            (Some(0), Some(3)),
            "{agreement}"
        );
        let mismatches = agreement["mismatches"].as_array().unwrap();
        assert_eq!(mismatches.len(), 3);
        assert_eq!(mismatches[0]["first_difference"], 0);
        assert_eq!(mismatches[0]["torch"], json!([1000, 0, 3]));
        seer_tokens[name][b] = mismatches.iter().map(|m| m["seer"].clone()).collect();
        // The reference's figures are kept, its token lists are not.
        assert_eq!(r["reference"]["caption"][name][b]["images_per_second"], 0.5);
        assert!(r["reference"]["caption"][name][b]["tokens"].is_null());
    }
    assert!(r["load_average"]["end"].is_number() || r["load_average"]["end"].is_null());

    // The reference now answers seer's own sequences: every image agrees.
    write(&|name, b| seer_tokens[name][b].clone());
    let r = bench(images.path(), &reference, &env);
    for (name, b) in CONFIGS {
        let agreement = &r["caption_agreement"][name][b];
        assert_eq!(agreement["matched"], 3, "{name} {b}: {agreement}");
        assert_eq!(agreement["mismatches"], json!([]));
    }
}
