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

/// A SigLIP fixture through `LoadedModel` against its `reference.json`: raw and
/// normalised image embeddings from the files (`images` from `image_block`),
/// the tokenizer's unpadded ids, the text embeddings of the main text block
/// and the zero-shot probabilities of its sigmoid rule.
fn check_siglip(name: &str, image_block: &str, text_block: &str, unpadded: &str) {
    let dir = repo_root().join("fixtures/families").join(name);
    let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.family, "siglip");
    let reference = read_json(&dir.join("reference.json"));
    let images_ref = match image_block {
        "" => &reference,
        pointer => reference.pointer(pointer).unwrap(),
    };
    let main = &reference["text"][text_block];

    let paths = image_paths(&reference);
    for (normalize, key) in [(false, "image_features"), (true, "image_embeddings")] {
        let got = embed_files(&model, &paths, normalize);
        let diff = max_abs_diff(&got, &matrix(&images_ref[key]));
        println!("{name} {key} from image files: max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{name} {key}: {diff}");
    }
    let images = embed_files(&model, &paths, true);

    let text = model.text().unwrap();
    let texts = strings(&reference["texts"]);
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| text.tokenize(t)).collect();
    assert_eq!(
        ids,
        token_lists(&reference["tokenizer"][unpadded]),
        "{name}"
    );
    for (normalize, key) in [(false, "text_features"), (true, "text_embeddings")] {
        let options = EmbedOptions {
            normalize,
            batch_size: 3,
            ..Default::default()
        };
        let got = text.embed_texts(&texts, &options).unwrap();
        let diff = max_abs_diff(&got, &matrix(&main[key]));
        println!("{name} {key}: max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{name} {key}: {diff}");
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
    println!("{name} zero-shot probabilities: max |diff| = {diff:.2e}");
    assert!(diff <= 1e-4, "{name}: {diff}");
    let sum: f32 = probs[0].iter().sum();
    assert!(
        (sum - 1.0).abs() > 0.1,
        "sigmoid scores are not normalised: {sum}"
    );
}

/// SigLIP: images squashed to 224x224 (not CLIP's resize + crop), the
/// tokenizer built from `spiece.model`, texts padded to 64 with `</s>` and the
/// attention mask.
#[test]
fn siglip_embeds_files_and_texts_and_scores_labels_with_its_sigmoid() {
    check_siglip(
        "siglip-tiny",
        "",
        "max_length/attention_mask",
        "unpadded_slow",
    );
}

/// SigLIP 2 NaFlex: 256-patch grids that keep each image's aspect ratio, the
/// Gemma `tokenizer.json` lowercased, texts right-padded to 64 with `<pad>`.
#[test]
fn siglip2_naflex_embeds_files_and_texts_and_scores_labels_with_its_sigmoid() {
    let reference =
        read_json(&repo_root().join("fixtures/families/siglip2-naflex-tiny/reference.json"));
    assert_eq!(reference["naflex"][0]["max_num_patches"], 256);
    check_siglip(
        "siglip2-naflex-tiny",
        "/naflex/0",
        "max_length_right/attention_mask",
        "unpadded",
    );
}

/// SigLIP 2 FixRes: `model_type: siglip` (224x224 squash) with SigLIP 2's
/// Gemma files, which transformers loads as `GemmaTokenizer`: not lowercased.
#[test]
fn siglip2_fixres_uses_its_gemma_tokenizer_as_written() {
    let reference =
        read_json(&repo_root().join("fixtures/families/siglip2-fixres-tiny/reference.json"));
    assert_eq!(reference["tokenizer"]["class_loaded"], "GemmaTokenizer");
    assert_eq!(reference["tokenizer"]["lowercases"], false);
    check_siglip(
        "siglip2-fixres-tiny",
        "",
        "max_length/attention_mask",
        "unpadded",
    );
}

#[test]
fn siglip_preprocesses_in_memory_images_as_it_does_files() {
    // SigLIP: 3x224x224 pixels; NaFlex: 256 patches of 16x16x3, then the grid.
    for (name, len) in [
        ("siglip-tiny", 3 * 224 * 224),
        ("siglip2-naflex-tiny", 256 * 768 + 2),
    ] {
        let dir = repo_root().join("fixtures/families").join(name);
        let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
        let image = model.image().unwrap();
        let path = shared_data().join("smoke/misc/red_apple.jpg");
        let limits = seer_image::DecodeLimits::default();
        let decoded = seer_image::decode_file_full(&path, &limits).unwrap();
        let rgb = seer_image::decode_file(&path, &limits).unwrap();
        let from_file = image.preprocess(&decoded);
        assert_eq!(from_file.len(), image.pixels_len(), "{name}");
        assert_eq!(from_file.len(), len, "{name}");
        assert_eq!(image.preprocess_rgb(&rgb), from_file, "{name}");
    }
}
