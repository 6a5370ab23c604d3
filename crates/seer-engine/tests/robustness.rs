//! Damaged model folders give errors that name the file, never panics.

mod common;

use std::path::Path;

use common::*;
use seer_engine::{Clip, LoadOptions};

fn copy_fixture(name: &str, to: &Path) {
    for entry in std::fs::read_dir(model_fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn load_error(dir: &Path) -> String {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_file()),
        ..Default::default()
    };
    match Clip::load_dir(dir, &options) {
        Ok(_) => panic!("{} loaded although it is damaged", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_or_garbage_weights_name_the_file() {
    for (name, weights) in [
        ("hf-vit-quickgelu", "model.safetensors"),
        ("hf-vit-gelu-bin", "pytorch_model.bin"),
        ("openclip-vit-options-bin", "open_clip_pytorch_model.bin"),
    ] {
        for damage in [0usize, 1, 2] {
            let dir = tempfile::tempdir().unwrap();
            copy_fixture(name, dir.path());
            let path = dir.path().join(weights);
            let bytes = std::fs::read(&path).unwrap();
            let damaged: Vec<u8> = match damage {
                0 => Vec::new(),
                1 => bytes[..bytes.len() / 2].to_vec(),
                _ => b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01cos\nsystem\nq\x02.".to_vec(),
            };
            std::fs::write(&path, damaged).unwrap();
            let err = load_error(dir.path());
            assert!(err.contains(weights), "{name} damage {damage}: {err}");
        }
    }
}

#[test]
fn bad_configs_and_missing_tensors_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("openclip-vit", dir.path());
    let config = dir.path().join("open_clip_config.json");
    std::fs::write(&config, "{ not json").unwrap();
    assert!(load_error(dir.path()).contains("open_clip_config.json"));

    // A config that disagrees with the weights: the shape error names the tensor.
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_fixture("openclip-vit").join("open_clip_config.json"))
            .unwrap(),
    )
    .unwrap();
    cfg["model_cfg"]["embed_dim"] = 32.into();
    std::fs::write(&config, cfg.to_string()).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("visual.proj") && err.contains("shape"),
        "{err}"
    );

    // More layers than the checkpoint has: the missing tensor is named.
    cfg["model_cfg"]["embed_dim"] = 16.into();
    cfg["model_cfg"]["vision_cfg"]["layers"] = 3.into();
    std::fs::write(&config, cfg.to_string()).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("visual.transformer.resblocks.2"), "{err}");
}

#[test]
fn folders_without_models_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load_error(dir.path()).contains("no CLIP model files"));
}
