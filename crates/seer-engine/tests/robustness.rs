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

/// A copy of the fixture folder `rel` (from the repository root) with its
/// JSON file `file` edited by `edit`.
fn edited_fixture(
    rel: &str,
    file: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_root().join(rel)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join(file);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
    dir
}

fn any_load_error(dir: &Path) -> String {
    match seer_engine::LoadedModel::load_dir(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded although it is damaged", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn preprocessor_sizes_that_would_allocate_gigabytes_are_refused_at_load() {
    // DINOv2 interpolates its positions to any crop, so only the processor
    // bounds the image buffer: 65534² × 3 f32 is 51 GB.
    let dir = edited_fixture(
        "fixtures/families/dinov2-tiny",
        "preprocessor_config.json",
        |p| {
            p["crop_size"] = serde_json::json!({"height": 65534, "width": 65534});
            p["size"] = serde_json::json!({"shortest_edge": 65534});
        },
    );
    let err = any_load_error(dir.path());
    assert!(
        err.contains("preprocessor_config.json") && err.contains("crop_size 65534"),
        "{err}"
    );
    // NaFlex pads every image to max_num_patches patches (3 GB for 10^6).
    let dir = edited_fixture(
        "fixtures/families/siglip2-naflex-tiny",
        "preprocessor_config.json",
        |p| p["max_num_patches"] = 1_000_000.into(),
    );
    let err = any_load_error(dir.path());
    assert!(
        err.contains("preprocessor_config.json") && err.contains("max_num_patches 1000000"),
        "{err}"
    );
}

#[test]
fn bad_preprocessing_configs_name_the_whole_path() {
    let dir = edited_fixture(
        "fixtures/models/hf-vit-quickgelu",
        "preprocessor_config.json",
        |p| p["crop_size"] = serde_json::json!({"height": 0, "width": 0}),
    );
    let err = load_error(dir.path());
    let path = dir.path().join("preprocessor_config.json");
    assert!(err.contains(path.to_str().unwrap()), "{err}");

    let dir = edited_fixture(
        "fixtures/models/openclip-vit",
        "open_clip_config.json",
        |c| c["preprocess_cfg"]["std"] = serde_json::json!([0.0, 0.5, 0.5]),
    );
    let err = load_error(dir.path());
    let path = dir.path().join("open_clip_config.json");
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("std"),
        "{err}"
    );
}
