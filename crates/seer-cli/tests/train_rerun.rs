//! A `seer train` that fails before its first checkpoint (a full disk, a
//! checkpoint folder it cannot make) left its `metrics.jsonl`, and the same
//! command run again was refused: "… already holds the output of an earlier run
//! (metrics.jsonl) … remove them first". The failed run now takes back what it
//! made, and only that; the same command then starts over.
//!
//! A full disk is stood in for by the file size limit (`ulimit -f`), as in
//! `disk_full.rs`.

use std::path::Path;
use std::process::{Command, Output};

use seer_testkit::{repo_root, tokenizer_file};

mod common;
use common::runs::{pairs_file, seer_file_size_limited};

fn environment(c: &mut Command) -> &mut Command {
    c.env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_MODEL")
}

fn seer(args: &[String]) -> Output {
    environment(&mut Command::new(env!("CARGO_BIN_EXE_seer")))
        .args(args)
        .output()
        .expect("run seer")
}

fn seer_limited(blocks: u64, args: &[String]) -> Output {
    environment(&mut seer_file_size_limited(blocks))
        .args(args)
        .output()
        .expect("run seer under a file size limit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    let model = repo_root().join("fixtures/training/model");
    [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--warmup",
        "1",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn failed_without_panic(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn a_run_whose_first_checkpoint_does_not_fit_can_be_run_again_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    let out = tmp.path().join("run");
    let args = train_args(&data, &out);

    // 1 MB a file: the steps run, their metrics are written, the checkpoint's
    // weights (6.5 MB) do not fit.
    let full = seer_limited(2048, &args);
    let err = failed_without_panic(&full);
    assert!(err.contains("File too large"), "{err}");
    assert!(
        err.contains("failed before its first checkpoint") && err.contains("starts it over"),
        "says what it removed and why: {err}"
    );
    // Nothing of the run but the (empty-handed) lock is left.
    assert_eq!(names_in(&out), [".seer-train.lock"]);

    // The same command, with room again: no "remove them first".
    let again = seer(&args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(out.join("checkpoints/step-00000002/state.json").is_file());
    assert!(out.join("model/model.safetensors").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2], "only this run's lines: {metrics}");
}

#[test]
fn a_failed_first_checkpoint_removes_only_what_the_run_made() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // The user's things: a note, and a file where the checkpoints folder goes
    // (so no checkpoint can be made, even by root).
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("checkpoints"), "not a folder").unwrap();
    let args = train_args(&data, &out);

    let o = seer(&args);
    let err = failed_without_panic(&o);
    assert!(err.contains("checkpoints"), "{err}");
    assert_eq!(
        names_in(&out),
        [".seer-train.lock", "checkpoints", "notes.txt"]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("checkpoints")).unwrap(),
        "not a folder"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );

    // Once the obstacle is gone, the same command runs.
    std::fs::remove_file(out.join("checkpoints")).unwrap();
    let again = seer(&args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(out.join("model/model.safetensors").is_file());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// A new run killed (SIGKILL: no cleanup of its own) before its first
/// checkpoint left `metrics.jsonl`, and the next run in the folder was refused
/// ("… remove them first"). The marker it keeps until its first checkpoint
/// tells the next run that the metrics are a killed run's: it takes them back
/// and starts. Metrics without the marker are still refused (tests/train.rs).
#[test]
fn a_run_killed_before_its_first_checkpoint_is_started_over() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pairs_file(tmp.path(), 16);
    let out = tmp.path().join("run");
    let mut args = train_args(&data, &out);
    // Many steps, no checkpoint before the last: it is killed long before.
    let steps = args.iter().position(|a| a == "--steps").unwrap() + 1;
    args[steps] = "100000".into();
    args.extend(["--checkpoint-every".into(), "100000".into()]);
    let mut child = environment(&mut Command::new(env!("CARGO_BIN_EXE_seer")))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    while !std::fs::metadata(&metrics).is_ok_and(|m| m.len() > 0) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("checkpoints/step-00000001").exists());

    let again = seer(&train_args(&data, &out));
    let err = text(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(
        err.contains("before its first checkpoint"),
        "says so: {err}"
    );
    assert!(out.join("model/model.safetensors").is_file());
    assert!(!out.join(".seer-train.unsaved").exists());
    let log = std::fs::read_to_string(&metrics).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2], "only the new run's lines: {log}");
}
