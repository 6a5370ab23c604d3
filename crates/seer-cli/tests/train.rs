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
    // The skipped samples were logged as warnings; stderr is a pipe here, so
    // the log lines carry no colour escape codes.
    assert!(
        text(&o.stderr).contains("WARN"),
        "warnings expected: {}",
        text(&o.stderr)
    );
    assert!(
        !text(&o.stderr).contains("\x1b["),
        "colour codes in piped stderr: {:?}",
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

#[test]
fn empty_data_bad_numbers_and_resume_without_checkpoint_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let model = repo_root().join("fixtures/training/model");
    let shard = shared_data().join("cifar10-wds/test-0000.tar.gz");
    // `extra` says how long to train (--steps or --epochs) and what else differs.
    let train = |data: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--batch-size") {
            args.extend_from_slice(&["--batch-size", "8"]);
        }
        seer(&args)
    };
    let refused = |o: &Output, expected: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(expected),
            "expected '{expected}' in: {}",
            text(&o.stderr)
        );
    };

    // An empty tar (two zero blocks): the cause, not "last problems: ".
    let empty = tmp.path().join("empty.tar");
    std::fs::write(&empty, [0u8; 1024]).unwrap();
    let empty = empty.to_str().unwrap();
    let out = tmp.path().join("a");
    let out = out.to_str().unwrap();
    let o = train(empty, out, &["--steps", "2"]);
    refused(&o, "the data holds no samples");
    refused(&o, "empty.tar");
    assert!(
        !text(&o.stderr).contains("last problems"),
        "{}",
        text(&o.stderr)
    );
    // --epochs counts the samples first: none to count is said as such (it
    // was "--steps must be at least 1").
    let o = train(empty, out, &["--epochs", "1"]);
    refused(&o, "the data holds no usable samples");

    let data = shard.to_str().unwrap();
    let out = tmp.path().join("b");
    let out = out.to_str().unwrap();
    for (extra, expected) in [
        (
            &["--micro-batch", "0"][..],
            "--micro-batch must be at least 1",
        ),
        (
            &["--micro-batch", "16"][..],
            "--micro-batch (16) is larger than --batch-size (8)",
        ),
        (
            &["--batch-size", "0"][..],
            "--batch-size must be at least 2",
        ),
        (
            &["--warmup", "3"][..],
            "--warmup (3) is longer than the run (--steps 2)",
        ),
        (&["--lr", "NaN"][..], "--lr must be a number above 0"),
        (&["--lr=-0.1"][..], "--lr must be a number above 0"),
        (&["--workers", "0"][..], "--workers must be at least 1"),
        (
            &["--keep-checkpoints", "0"][..],
            "--keep-checkpoints must be at least 1",
        ),
    ] {
        let mut args = vec!["--steps", "2"];
        args.extend_from_slice(extra);
        refused(&train(data, out, &args), expected);
    }
    refused(
        &train(data, out, &["--steps", "0"]),
        "--steps must be at least 1",
    );
    refused(
        &train(data, out, &["--epochs", "inf"]),
        "--epochs must be a number above 0",
    );
    assert!(
        !std::path::Path::new(out).exists(),
        "nothing is written for a refused run"
    );

    // --resume where no run was saved.
    refused(
        &train(data, out, &["--steps", "2", "--resume"]),
        "holds no checkpoint",
    );
}
