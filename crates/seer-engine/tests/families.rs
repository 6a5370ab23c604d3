//! Families through the registry and the task traits: the DINOv2 fixture loads
//! as an image-only `LoadedModel` whose raw embedding of image files is the
//! reference's `pooler_output`, and whose text tower is a clear error; the
//! SigLIP fixture loads with both towers, its tokenizer built from
//! `spiece.model`, and scores labels with its sigmoid rule.

mod common;

use std::path::PathBuf;

use common::*;
use seer_engine::{
    EmbedOptions, EngineError, LoadOptions, LoadedModel, ScoreRule, ZeroShotClassifier,
};

/// The `images` of a reference, or of one of its cases, in the shared data.
fn image_paths(reference: &serde_json::Value) -> Vec<PathBuf> {
    strings(&reference["images"])
        .iter()
        .map(|p| shared_data().join(p))
        .collect()
}

/// One embedding per file, in order, through the batched file pipeline.
fn embed_files(model: &LoadedModel, paths: &[PathBuf], normalize: bool) -> Vec<Vec<f32>> {
    let options = EmbedOptions {
        normalize,
        batch_size: 4,
        ..Default::default()
    };
    let mut got = vec![Vec::new(); paths.len()];
    model
        .image()
        .unwrap()
        .embed_image_files(paths, &options, |o| got[o.index] = o.result.unwrap())
        .unwrap();
    got
}

#[test]
fn dinov2_is_an_image_only_model_whose_raw_embedding_is_pooler_output() {
    for name in ["dinov2-tiny", "dinov2-registers-tiny", "dinov2-swiglu-tiny"] {
        let dir = repo_root().join("fixtures/families").join(name);
        let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
        assert_eq!(model.family, "dinov2");
        assert!(matches!(model.text(), Err(EngineError::NoTextTower { .. })));
        assert!(model.score_rule().is_err());

        let reference = read_json(&dir.join("reference.json"));
        let case = &reference["cases"][0];
        assert_eq!(case["name"], "crop224");
        let got = embed_files(&model, &image_paths(case), false);
        let diff = max_abs_diff(&got, &matrix(&case["pooler_output"]));
        println!("{name}: pooler_output from image files max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: {diff}");
        assert_eq!(model.embed_dim(), got[0].len());
    }
}

#[test]
fn siglip_embeds_files_and_texts_and_scores_labels_with_its_sigmoid() {
    let dir = repo_root().join("fixtures/families/siglip-tiny");
    let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.family, "siglip");
    let reference = read_json(&dir.join("reference.json"));
    // The main reference: max_length padding with the attention mask.
    let main = &reference["text"]["max_length/attention_mask"];

    // Images: squashed to 224x224 (not CLIP's resize + crop), from the files.
    let paths = image_paths(&reference);
    for (normalize, key) in [(false, "image_features"), (true, "image_embeddings")] {
        let got = embed_files(&model, &paths, normalize);
        let diff = max_abs_diff(&got, &matrix(&reference[key]));
        println!("siglip {key} from image files: max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{key}: {diff}");
    }
    let images = embed_files(&model, &paths, true);

    // Texts: the slow tokenizer's ids, then max_length padding with the mask.
    let text = model.text().unwrap();
    let texts = strings(&reference["texts"]);
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| text.tokenize(t)).collect();
    assert_eq!(ids, token_lists(&reference["tokenizer"]["unpadded_slow"]));
    for (normalize, key) in [(false, "text_features"), (true, "text_embeddings")] {
        let options = EmbedOptions {
            normalize,
            batch_size: 3,
            ..Default::default()
        };
        let got = text.embed_texts(&texts, &options).unwrap();
        let diff = max_abs_diff(&got, &matrix(&main[key]));
        println!("siglip {key}: max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{key}: {diff}");
    }

    // Zero-shot: exp(logit_scale) and logit_bias from the checkpoint, one
    // sigmoid per label.
    let rule = model.score_rule().unwrap();
    let ScoreRule::Sigmoid { scale, bias } = rule else {
        panic!("SigLIP scores with a sigmoid, got {rule:?}");
    };
    assert!((scale - reference["logit_scale_exp"].as_f64().unwrap() as f32).abs() < 1e-5);
    assert!((bias - reference["logit_bias"].as_f64().unwrap() as f32).abs() < 1e-6);
    let classifier = ZeroShotClassifier::new(text, &texts, &["{}".to_string()], 4).unwrap();
    let probs: Vec<Vec<f32>> = images.iter().map(|e| classifier.probabilities(e)).collect();
    let diff = max_abs_diff(&probs, &matrix(&main["probs"]));
    println!("siglip zero-shot probabilities: max |diff| = {diff:.2e}");
    assert!(diff <= 1e-4, "{diff}");
    let sum: f32 = probs[0].iter().sum();
    assert!(
        (sum - 1.0).abs() > 0.1,
        "sigmoid scores are not normalised: {sum}"
    );
}

#[test]
fn siglip_preprocesses_in_memory_images_as_it_does_files() {
    let dir = repo_root().join("fixtures/families/siglip-tiny");
    let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
    let image = model.image().unwrap();
    let path = shared_data().join("smoke/misc/red_apple.jpg");
    let limits = seer_image::DecodeLimits::default();
    let decoded = seer_image::decode_file_full(&path, &limits).unwrap();
    let rgb = seer_image::decode_file(&path, &limits).unwrap();
    let from_file = image.preprocess(&decoded);
    assert_eq!(from_file.len(), image.pixels_len());
    assert_eq!(from_file.len(), 3 * 224 * 224);
    assert_eq!(image.preprocess_rgb(&rgb), from_file);
}

#[test]
fn siglip2_naflex_is_recognised_and_refused_by_name() {
    let dir = repo_root().join("fixtures/families/siglip2-naflex-tiny");
    let err = LoadedModel::load_dir(&dir, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("siglip2") && err.contains("not supported yet") && err.contains("config.json"),
        "{err}"
    );
}
