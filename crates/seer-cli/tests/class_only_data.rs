//! Training on shards whose samples carry a class index (`KEY.cls`) and no
//! caption, without `--classes`: one clear error and one warning, not a
//! warning per sample and an error quoting twenty of them.

use std::process::Command;

use seer_testkit::{repo_root, shared_data, tokenizer_file};

#[test]
fn class_only_shards_without_class_names_are_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = repo_root().join("fixtures/training/model");
    let shard = shared_data().join("cifar10-wds/test-0000.tar.gz");
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args([
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
            tmp.path().join("run").to_str().unwrap(),
        ])
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let warnings = err.lines().filter(|l| l.contains("WARN")).count();
    assert_eq!(warnings, 1, "{} bytes of stderr", err.len());
    let error = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(error.contains("--classes"), "{error}");
    assert!(error.contains("10000 samples"), "{error}");
    assert!(error.len() < 400, "{} bytes: {error}", error.len());
}
