//! End-to-end parity with the reference implementations: the same image files and
//! texts through seer's tokenizer, decoder, preprocessing and model must give the
//! reference's numbers (fixtures from scripts/make_model_fixtures.py).
//! Tolerance: 1e-4 absolute on f32 features, embeddings and probabilities.

mod common;

use std::path::PathBuf;

use common::*;
use seer_engine::{EmbedOptions, ZeroShotClassifier};

const TOLERANCE: f32 = 1e-4;

fn embed_reference_images(name: &str, normalize: bool, batch_size: usize) -> Vec<Vec<f32>> {
    let clip = load(name);
    let reference = model_reference(name);
    let paths: Vec<PathBuf> = strings(&reference["images"])
        .iter()
        .map(|p| shared_data().join(p))
        .collect();
    let options = EmbedOptions {
        batch_size,
        normalize,
        ..Default::default()
    };
    let mut out = vec![Vec::new(); paths.len()];
    clip.embed_image_files(&paths, &options, |o| {
        out[o.index] = o
            .result
            .unwrap_or_else(|e| panic!("{}: {e}", o.path.display()));
    })
    .unwrap();
    out
}

#[test]
fn tokens_match_reference() {
    for name in MODEL_FIXTURES {
        let clip = load(name);
        let reference = model_reference(name);
        let expected: Vec<Vec<u32>> = reference["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect();
        for (text, want) in strings(&reference["texts"]).iter().zip(&expected) {
            assert_eq!(&clip.tokenize(text), want, "{name}: tokens of {text:?}");
        }
    }
}

#[test]
fn raw_image_features_match_reference() {
    for name in MODEL_FIXTURES {
        // Batch 4 splits the 11 images unevenly, exercising the pipeline's batching.
        let got = embed_reference_images(name, false, 4);
        let expected = matrix(&model_reference(name)["image_features"]);
        let images = strings(&model_reference(name)["images"]);
        for (i, image) in images.iter().enumerate() {
            let d = max_abs_diff(&got[i..=i], &expected[i..=i]);
            if d > TOLERANCE {
                println!("{name}: {image}: max |diff| = {d:.2e}");
            }
        }
        let diff = max_abs_diff(&got, &expected);
        println!("{name}: image features max |diff| = {diff:.2e}");
        assert!(diff <= TOLERANCE, "{name}: image features differ by {diff}");
    }
}

#[test]
fn normalized_embeddings_match_reference() {
    for name in MODEL_FIXTURES {
        let reference = model_reference(name);
        let images = embed_reference_images(name, true, 32);
        let diff = max_abs_diff(&images, &matrix(&reference["image_embeddings"]));
        println!("{name}: image embeddings max |diff| = {diff:.2e}");
        assert!(
            diff <= TOLERANCE,
            "{name}: image embeddings differ by {diff}"
        );

        let clip = load(name);
        let texts = clip
            .embed_texts(&strings(&reference["texts"]), &EmbedOptions::default())
            .unwrap();
        let diff = max_abs_diff(&texts, &matrix(&reference["text_embeddings"]));
        println!("{name}: text embeddings max |diff| = {diff:.2e}");
        assert!(
            diff <= TOLERANCE,
            "{name}: text embeddings differ by {diff}"
        );
    }
}

#[test]
fn zero_shot_probabilities_match_reference() {
    for name in MODEL_FIXTURES {
        let clip = load(name);
        let reference = model_reference(name);
        let zs = &reference["zeroshot"];
        let classifier = ZeroShotClassifier::new(
            &clip,
            &strings(&zs["labels"]),
            &strings(&zs["templates"]),
            8,
        )
        .unwrap();
        let images = embed_reference_images(name, true, 32);
        let probs: Vec<Vec<f32>> = images.iter().map(|e| classifier.probabilities(e)).collect();
        let diff = max_abs_diff(&probs, &matrix(&zs["probs"]));
        println!("{name}: zero-shot probabilities max |diff| = {diff:.2e}");
        assert!(
            diff <= TOLERANCE,
            "{name}: zero-shot probabilities differ by {diff}"
        );
    }
}
