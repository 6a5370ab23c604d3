//! Reduced precision (bf16 matmul weights) against the PyTorch f32 reference:
//! normalised embeddings of the fixture images and texts must keep cosine
//! similarity of at least 0.999 with the reference's, and the f32 path must stay
//! exact, so the precision option changes nothing for users who do not ask.
//! The same holds for every family (fixtures/families): DINOv2, SigLIP and
//! SigLIP 2 run their matmuls on the same packed bf16 kernels.

mod common;

use std::path::PathBuf;

use common::*;
use seer_engine::{EmbedOptions, ImageFeatures, LoadOptions, LoadedModel, Precision};

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

/// A family fixture's image (and text) embeddings, normalised, from the
/// reference's files and texts; for DINOv2 also the mean of its patch tokens.
fn family_embeddings(
    model: &LoadedModel,
    paths: &[PathBuf],
    texts: &[String],
) -> Vec<(&'static str, Vec<Vec<f32>>)> {
    let options = EmbedOptions::default();
    let image = model.image().unwrap();
    let mut out = Vec::new();
    for (kind, features) in [
        ("image", ImageFeatures::Embedding),
        ("patch mean", ImageFeatures::PatchMean),
    ] {
        if !image.gives(features) {
            continue;
        }
        let mut rows = vec![Vec::new(); paths.len()];
        image
            .image_file_features(paths, &options, features, |o| {
                rows[o.index] = o.result.expect("fixture image embeds")
            })
            .unwrap();
        out.push((kind, rows));
    }
    if !texts.is_empty() {
        let text = model.text().unwrap();
        out.push(("text", text.embed_texts(texts, &options).unwrap()));
    }
    out
}

fn normalized(rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    rows.into_iter()
        .map(|r| {
            let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / norm).collect()
        })
        .collect()
}

#[test]
fn bf16_family_embeddings_stay_within_cosine_0999_of_the_reference() {
    // (fixture, where its image references are, its main text block)
    let families = [
        ("dinov2-tiny", "/cases/0", ""),
        ("dinov2-swiglu-tiny", "/cases/0", ""),
        ("dinov2-registers-tiny", "/cases/0", ""),
        ("siglip-tiny", "", "max_length/attention_mask"),
        (
            "siglip2-naflex-tiny",
            "/naflex/0",
            "max_length_right/attention_mask",
        ),
    ];
    for (name, images_at, text_block) in families {
        let dir = repo_root().join("fixtures/families").join(name);
        let reference = read_json(&dir.join("reference.json"));
        let images_ref = match images_at {
            "" => &reference,
            at => reference.pointer(at).unwrap(),
        };
        // DINOv2 lists its images per case; SigLIP once for all blocks.
        let images = match images_ref.get("images") {
            Some(images) => strings(images),
            None => strings(&reference["images"]),
        };
        let paths: Vec<PathBuf> = images.iter().map(|p| shared_data().join(p)).collect();
        let mut want = Vec::new();
        if images_ref.get("image_embeddings").is_some() {
            want.push(matrix(&images_ref["image_embeddings"]));
        } else {
            // DINOv2's reference holds the raw outputs.
            want.push(normalized(matrix(&images_ref["pooler_output"])));
            want.push(normalized(matrix(&images_ref["patch_mean"])));
        }
        let texts = match text_block {
            "" => Vec::new(),
            block => {
                want.push(matrix(&reference["text"][block]["text_embeddings"]));
                strings(&reference["texts"])
            }
        };
        let load = |precision| {
            let options = LoadOptions {
                precision,
                device: test_device(),
                ..Default::default()
            };
            LoadedModel::load_dir(&dir, &options).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let bf16 = family_embeddings(&load(Precision::Bf16), &paths, &texts);
        let exact = family_embeddings(&load(Precision::F32), &paths, &texts);
        assert_eq!(bf16.len(), want.len(), "{name}");
        for (((kind, got), (_, f32_rows)), want) in bf16.iter().zip(&exact).zip(&want) {
            assert_eq!(got.len(), want.len(), "{name} {kind}");
            let worst = got
                .iter()
                .zip(want)
                .map(|(g, w)| cosine(g, w))
                .fold(f32::INFINITY, f32::min);
            println!("{name}: bf16 {kind} embeddings min cosine {worst:.6}");
            assert!(worst >= MIN_COSINE, "{name}: bf16 {kind} cosine {worst}");
            // f32 is the reference, and bf16 really runs: it moves the
            // embeddings by more than f32 rounding does.
            assert!(max_abs_diff(f32_rows, want) <= 1e-4, "{name} {kind}: f32");
            let moved = max_abs_diff(got, f32_rows);
            println!("{name}: bf16 {kind} max |bf16 - f32| {moved:.2e}");
            assert!(moved > 1e-6, "{name} {kind}: bf16 equals f32 ({moved:e})");
        }
    }
}
