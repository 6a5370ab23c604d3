//! Reduced precision (bf16 matmul weights) against the PyTorch f32 reference:
//! normalised embeddings of the fixture images and texts must keep cosine
//! similarity of at least 0.999 with the reference's, and the f32 path must stay
//! exact, so the precision option changes nothing for users who do not ask.

mod common;

use std::path::PathBuf;

use common::*;
use seer_engine::{EmbedOptions, Precision};

const MIN_COSINE: f32 = 0.999;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn bf16_embeddings_stay_within_cosine_0999_of_the_reference() {
    for name in MODEL_FIXTURES {
        let reference = model_reference(name);
        let clip = load_with_precision(name, Precision::Bf16);
        let paths: Vec<PathBuf> = strings(&reference["images"])
            .iter()
            .map(|p| shared_data().join(p))
            .collect();
        let options = EmbedOptions::default();
        let mut images = vec![Vec::new(); paths.len()];
        clip.embed_image_files(&paths, &options, |o| {
            images[o.index] = o.result.expect("fixture image embeds");
        })
        .unwrap();
        let texts = clip
            .embed_texts(&strings(&reference["texts"]), &options)
            .unwrap();
        let mut embeddings = Vec::new();
        for (kind, got, want) in [
            ("image", images, matrix(&reference["image_embeddings"])),
            ("text", texts, matrix(&reference["text_embeddings"])),
        ] {
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| cosine(g, w))
                .fold(f32::INFINITY, f32::min);
            println!("{name}: bf16 {kind} embeddings min cosine {worst:.6}");
            assert!(worst >= MIN_COSINE, "{name}: bf16 {kind} cosine {worst}");
            embeddings.push(got);
        }
        // The option must really take effect: bf16 moves the embeddings by more
        // than f32 rounding does (ResNet towers keep f32 convolutions, so there
        // only the linears change).
        let exact = load(name);
        let mut f32_images = vec![Vec::new(); paths.len()];
        exact
            .embed_image_files(&paths, &options, |o| {
                f32_images[o.index] = o.result.unwrap()
            })
            .unwrap();
        let f32_texts = exact
            .embed_texts(&strings(&reference["texts"]), &options)
            .unwrap();
        for (got, exact) in embeddings.iter().zip([f32_images, f32_texts]) {
            let moved = max_abs_diff(got, &exact);
            assert!(
                moved > 1e-6,
                "{name}: bf16 equals f32 (max |diff| {moved:e})"
            );
        }
    }
}
