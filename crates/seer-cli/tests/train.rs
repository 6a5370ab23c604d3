//! `seer train` and `seer plot` as a user runs them: a short run on the tiny
//! training fixture and real CIFAR-10 shards, its outputs, and bad input.

use std::process::{Command, Output};

use seer_testkit::{repo_root, shared_data, tokenizer_file};

mod common;
use common::runs::pairs_file;

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

/// `seer train` on the tiny fixture model and `data`, with `extra` arguments.
fn train_pairs(data: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> Output {
    train_model(
        &repo_root().join("fixtures/training/model"),
        data,
        out,
        extra,
    )
}

fn train_model(
    model: &std::path::Path,
    data: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--warmup",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--batch-size") {
        args.extend_from_slice(&["--batch-size", "8"]);
    }
    args.extend_from_slice(extra);
    seer(&args)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_new_run_never_replaces_what_its_out_folder_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    // The model to fine-tune lies in OUT/model: the export at the end would
    // replace it (it was deleted, notes and all).
    let w = tmp.path().join("w");
    copy_dir(
        &repo_root().join("fixtures/training/model"),
        &w.join("model"),
    );
    std::fs::write(w.join("model/README.md"), "notes").unwrap();
    let weights = std::fs::read(w.join("model/model.safetensors")).unwrap();
    let before = names_in(&w.join("model"));
    for extra in [&["--steps", "2"][..], &["--steps", "2", "--resume"][..]] {
        let o = train_model(&w.join("model"), &data, &w, extra);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("the folder this run's export replaces"),
            "{}",
            text(&o.stderr)
        );
        assert_eq!(names_in(&w.join("model")), before);
        assert_eq!(
            std::fs::read(w.join("model/model.safetensors")).unwrap(),
            weights
        );
        assert_eq!(names_in(&w), ["model"], "nothing written beside it");
    }

    // Another run's output without a checkpoint (a model/, a metrics file):
    // refused by a new run too, and left as it was.
    let other = tmp.path().join("other");
    copy_dir(
        &repo_root().join("fixtures/training/model"),
        &other.join("model"),
    );
    let o = train_pairs(&data, &other, &["--steps", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("already holds the output of an earlier run (model/)"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(names_in(&other), ["model"]);
    let logged = tmp.path().join("logged");
    std::fs::create_dir_all(&logged).unwrap();
    std::fs::write(
        logged.join("metrics.jsonl"),
        "{\"kind\":\"train\",\"step\":1}\n",
    )
    .unwrap();
    let o = train_pairs(&data, &logged, &["--steps", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("metrics.jsonl"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(logged.join("metrics.jsonl")).unwrap(),
        "{\"kind\":\"train\",\"step\":1}\n"
    );
}

#[test]
fn resuming_removes_unfinished_checkpoint_writes_of_a_killed_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    let out = tmp.path().join("run");
    let o = train_pairs(&data, &out, &["--steps", "3", "--stop-after", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // What `kill -9` during a checkpoint write or the export leaves behind.
    let stale = out.join("checkpoints/.step-00000002.Xy12ab.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), vec![0u8; 2_500_000]).unwrap();
    std::fs::create_dir_all(out.join(".model.Qq9zzz.tmp")).unwrap();
    // An old checkpoint whose deletion was cut short (its state.json gone).
    let half = out.join("checkpoints/step-00000000");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("model.safetensors"), [0u8; 100]).unwrap();
    let o = train_pairs(&data, &out, &["--steps", "3", "--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!stale.exists(), "{:?}", names_in(&out.join("checkpoints")));
    assert!(!out.join(".model.Qq9zzz.tmp").exists());
    assert!(!half.exists());
    assert!(
        names_in(&out.join("checkpoints"))
            .iter()
            .all(|n| !n.ends_with(".tmp")),
        "{:?}",
        names_in(&out.join("checkpoints"))
    );
    assert!(
        text(&o.stderr).contains("2.5 MB freed"),
        "{}",
        text(&o.stderr)
    );
}

/// The `epoch` of each train line of metrics.jsonl.
fn logged_epochs(out: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["epoch"].as_f64().unwrap())
        .collect()
}

#[test]
fn epochs_are_right_from_the_first_step_and_across_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 24);
    let whole = tmp.path().join("whole");
    let o = train_pairs(&data, &whole, &["--steps", "8", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let expected: Vec<f64> = (1..=8).map(|s| s as f64 * 8.0 / 24.0).collect();
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    };
    let epochs = logged_epochs(&whole);
    assert!(close(&epochs, &expected), "{epochs:?}");
    // --json says the same.
    let json: Vec<f64> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["report"]["epoch"].as_f64().unwrap())
        .collect();
    assert!(close(&json, &expected), "{json:?}");

    let split = tmp.path().join("split");
    let o = train_pairs(&data, &split, &["--steps", "8", "--stop-after", "4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = train_pairs(&data, &split, &["--steps", "8", "--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let epochs = logged_epochs(&split);
    assert!(close(&epochs, &expected), "{epochs:?}");
}

#[test]
fn resuming_a_finished_run_says_so_with_its_final_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    let out = tmp.path().join("run");
    let o = train_pairs(&data, &out, &["--steps", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let first = text(&o.stdout);
    let loss = first
        .split("final loss ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no final loss in: {first}"))
        .to_string();
    let o = train_pairs(&data, &out, &["--steps", "2", "--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let again = text(&o.stdout);
    assert!(
        again.contains(&format!("already finished at step 2; final loss {loss}")),
        "{again}"
    );
    assert!(!again.contains("NaN"), "{again}");
    let o = train_pairs(&data, &out, &["--steps", "2", "--resume", "--json"]);
    let summary: serde_json::Value =
        serde_json::from_str(text(&o.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["summary"]["final_loss"].is_f64(), "{summary}");
}

#[test]
fn plain_values_are_refused_before_any_model_or_data_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let missing_model = tmp.path().join("no-such-model");
    let missing_data = tmp.path().join("nope.tar.gz");
    let out = tmp.path().join("run");
    let refused = |o: &Output, expected: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(expected),
            "expected '{expected}' in: {}",
            text(&o.stderr)
        );
    };
    refused(
        &train_model(&missing_model, &missing_data, &out, &["--steps", "0"]),
        "--steps must be at least 1",
    );
    refused(
        &train_model(
            &missing_model,
            &missing_data,
            &out,
            &["--epochs", "1", "--batch-size", "1"],
        ),
        "--batch-size must be at least 2",
    );
    refused(
        &train_model(
            &missing_model,
            &missing_data,
            &out,
            &["--steps", "2", "--lr", "0"],
        ),
        "--lr must be a number above 0",
    );
    // --resume where nothing was saved: said before the model is read, and
    // the folder is not created.
    refused(
        &train_model(
            &missing_model,
            &missing_data,
            &out,
            &["--steps", "2", "--resume"],
        ),
        "holds no checkpoint",
    );
    assert!(!out.exists(), "a refused run creates nothing");
}

/// Removes terminal escape sequences (`ESC [ … letter`) from `s`.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn json_lines_on_a_terminal_do_not_share_a_line_with_the_progress_bar() {
    // `script` runs the command on a pseudo-terminal, where the bar is drawn.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to run seer on a terminal");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    let out = tmp.path().join("run");
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let command = [
        env!("CARGO_BIN_EXE_seer"),
        "train",
        "--model",
        repo_root()
            .join("fixtures/training/model")
            .to_str()
            .unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--batch-size",
        "8",
        "--steps",
        "4",
        "--warmup",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]
    .iter()
    .map(|a| quote(a))
    .collect::<Vec<_>>()
    .join(" ");
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env("COLUMNS", "120")
        .env("LINES", "40")
        .output()
        .expect("run script");
    assert!(o.status.success(), "{}", text(&o.stdout));
    let screen = text(&o.stdout);
    assert!(screen.contains("\"kind\":\"summary\""), "{screen}");
    let mut lines = 0;
    for line in screen.split('\n') {
        let Some(at) = line.find("{\"kind\"") else {
            continue;
        };
        lines += 1;
        // What is left on the line before the JSON once the terminal has
        // carried out the escapes and carriage returns.
        let before = strip_escapes(&line[..at]);
        let shown = before.rsplit('\r').next().unwrap_or("");
        assert!(
            shown.trim().is_empty(),
            "JSON printed after {shown:?} on one line: {line:?}"
        );
    }
    assert_eq!(lines, 5, "{screen}");
}
