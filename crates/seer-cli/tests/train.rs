//! `seer train` and `seer plot` as a user runs them: a short run on the tiny
//! training fixture and real CIFAR-10 shards, its outputs, and bad input.

use std::process::{Command, Output};

use seer_testkit::{repo_root, shared_data, tokenizer_file};

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run seer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn train_json_then_plot_then_use_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let prompts = format!(
        "{}#CIFAR10",
        shared_data().join("clip-prompts/prompts.json").display()
    );
    let shard = shared_data().join("cifar10-wds/test-0000.tar.gz");
    let model = repo_root().join("fixtures/training/model");
    let o = seer(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        shard.to_str().unwrap(),
        "--classes",
        &prompts,
        "--templates",
        &prompts,
        "--batch-size",
        "8",
        "--micro-batch",
        "4",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--eval-zeroshot",
        shard.to_str().unwrap(),
        "--eval-limit",
        "40",
        "--eval-every",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["train", "train", "eval", "train", "eval", "summary"]
    );
    let summary = &lines[5]["summary"];
    assert_eq!(summary["steps"], 3);
    let top1 = summary["last_eval"]["metrics"]["zeroshot_top1"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&top1));

    let p = seer(&["plot", out.to_str().unwrap(), "--json"]);
    assert!(p.status.success(), "{}", text(&p.stderr));
    let plot: serde_json::Value = serde_json::from_str(text(&p.stdout).trim()).unwrap();
    assert_eq!(plot["train_points"], 3);
    assert_eq!(plot["eval_points"], 2);
    assert!(out.join("curves.png").is_file());

    // Every seer command can use the trained model.
    let c = seer(&[
        "classify",
        "--model",
        out.join("model").to_str().unwrap(),
        "--labels",
        "cat,dog",
        shared_data()
            .join("cifar10-test-subset/images/cat/0000.jpg")
            .to_str()
            .unwrap(),
        "--json",
    ]);
    assert!(c.status.success(), "{}", text(&c.stderr));
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let model = repo_root().join("fixtures/training/model");
    let missing = tmp.path().join("nope.tar.gz");
    let o = seer(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        missing.to_str().unwrap(),
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("nope.tar.gz"),
        "{}",
        text(&o.stderr)
    );

    // Class-labeled shards without class names: every sample is skipped, and the
    // run stops with the cause instead of spinning.
    let shard = shared_data().join("cifar10-wds/test-0000.tar.gz");
    let o = seer(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        shard.to_str().unwrap(),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("class names"),
        "{}",
        text(&o.stderr)
    );

    let o = seer(&["plot", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("metrics.jsonl"),
        "{}",
        text(&o.stderr)
    );
}
