//! The parameter list comes from the model's constructor: it must be exactly a
//! transformers checkpoint's tensors, and the model built once for training
//! must compute with the values the optimiser writes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use seer_models::{ClipModel, TextPadding, Weights};
use seer_testkit::{model_fixture, repo_root};
use seer_train::ParamStore;

/// Name → shape of every tensor in a transformers weights file.
fn checkpoint_shapes(dir: &Path) -> BTreeMap<String, Vec<usize>> {
    let safetensors = dir.join("model.safetensors");
    let tensors: HashMap<String, Tensor> = if safetensors.is_file() {
        candle_core::safetensors::load(&safetensors, &Device::Cpu).unwrap()
    } else {
        candle_core::pickle::read_all(dir.join("pytorch_model.bin"))
            .unwrap()
            .into_iter()
            .collect()
    };
    tensors
        .into_iter()
        .map(|(name, t)| (name, t.dims().to_vec()))
        .collect()
}

fn store_shapes(store: &ParamStore) -> BTreeMap<String, Vec<usize>> {
    store
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.dims().to_vec()))
        .collect()
}

#[test]
fn parameters_derived_from_the_model_are_a_checkpoints_tensors() {
    for dir in [
        repo_root().join("fixtures/training/model"),
        model_fixture("hf-vit-quickgelu"),
        model_fixture("hf-vit-gelu-bin"),
    ] {
        let expected = checkpoint_shapes(&dir);
        let scratch = ParamStore::from_scratch(&dir.join("config.json"), 3, &Device::Cpu).unwrap();
        assert_eq!(store_shapes(&scratch), expected, "{}", dir.display());
        let loaded = ParamStore::from_model_dir(&dir, &Device::Cpu).unwrap();
        assert_eq!(store_shapes(&loaded), expected, "{}", dir.display());
    }
}

#[test]
fn from_scratch_is_deterministic_per_seed() {
    let config = repo_root().join("fixtures/training/model/config.json");
    let values = |seed| {
        let s = ParamStore::from_scratch(&config, seed, &Device::Cpu).unwrap();
        s.snapshot()
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect::<BTreeMap<_, _>>()
    };
    let (a, b, c) = (values(5), values(5), values(6));
    assert_eq!(a, b);
    let name = "vision_model.encoder.layers.0.self_attn.q_proj.weight";
    assert_ne!(a[name], c[name]);
    assert!(a["text_model.final_layer_norm.weight"]
        .iter()
        .all(|&v| v == 1.0));
    assert_eq!(a["logit_scale"], [(1.0f32 / 0.07).ln()]);
}

/// A copy of the training fixture with its tensors changed by `edit`.
fn altered_checkpoint(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = repo_root().join("fixtures/training/model");
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors")).unwrap();
    tmp
}

#[test]
fn a_missing_tensor_names_the_file_and_the_tensor() {
    let gone = "vision_model.encoder.layers.1.mlp.fc2.bias";
    let dir = altered_checkpoint(|t| {
        t.remove(gone).unwrap();
    });
    let err = match ParamStore::from_model_dir(dir.path(), &Device::Cpu) {
        Ok(_) => panic!("a checkpoint without {gone} loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(gone) && err.contains("model.safetensors"),
        "{err}"
    );
}

/// `logit_scale` stored as `[1]` loads (kept as transformers' `[]`); a
/// checkpoint without one starts from CLIP's initial temperature.
#[test]
fn logit_scale_of_any_one_element_shape_or_none() {
    let dir = altered_checkpoint(|t| {
        let v = t["logit_scale"].reshape(1).unwrap();
        t.insert("logit_scale".into(), (v + 0.5).unwrap());
    });
    let store = ParamStore::from_model_dir(dir.path(), &Device::Cpu).unwrap();
    let original =
        ParamStore::from_model_dir(&repo_root().join("fixtures/training/model"), &Device::Cpu)
            .unwrap()
            .scalar("logit_scale")
            .unwrap()
            .unwrap();
    assert_eq!(store.get("logit_scale").unwrap().dims(), &[] as &[usize]);
    assert_eq!(store.scalar("logit_scale").unwrap(), Some(original + 0.5));

    let dir = altered_checkpoint(|t| {
        t.remove("logit_scale").unwrap();
    });
    let store = ParamStore::from_model_dir(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(
        store.scalar("logit_scale").unwrap(),
        Some((1.0f32 / 0.07).ln())
    );
}

fn embeddings(model: &ClipModel, pixels: &Tensor) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let texts = vec![vec![49406, 320, 1125, 49407], vec![49406, 2368, 49407]];
    (
        model.encode_images(pixels).unwrap().to_vec2().unwrap(),
        model
            .encode_texts(&texts, TextPadding::Longest)
            .unwrap()
            .to_vec2()
            .unwrap(),
    )
}

/// The trainer builds its model once; `Var::set` writes into the storage the
/// model's layers view, so the model must see every update (the q/k/v
/// projections included, which a stack made at load would have copied).
#[test]
fn the_model_built_once_computes_with_updated_values() {
    let mut store =
        ParamStore::from_model_dir(&model_fixture("hf-vit-quickgelu"), &Device::Cpu).unwrap();
    store.lock(false, true);
    let s = store.config().vision.image_size();
    let pixels: Vec<f32> = (0..2 * 3 * s * s)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let pixels = Tensor::from_vec(pixels, (2, 3, s, s), &Device::Cpu).unwrap();
    let before = embeddings(store.training_model().unwrap(), &pixels);

    // Change every parameter, trainable or frozen, in place.
    for p in store.params() {
        let t = p.var().as_tensor();
        let shifted = (t.affine(1.01, 0.0).unwrap() + 0.003).unwrap();
        p.var().set(&shifted).unwrap();
    }
    let reused = embeddings(store.training_model().unwrap(), &pixels);
    let fresh = ClipModel::from_weights(
        store.config().clone(),
        &Weights::trainable(store.snapshot().unwrap(), &Device::Cpu),
    )
    .unwrap();
    let rebuilt = embeddings(&fresh, &pixels);
    assert_eq!(reused, rebuilt);
    assert_ne!(reused.0, before.0);
    assert_ne!(reused.1, before.1);
}
