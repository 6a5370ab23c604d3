//! The reduced-precision checks the `precision` and `precision_avx2` test
//! binaries run (the latter with the kernels capped at AVX2).

use std::path::PathBuf;

use crate::common::*;
use seer_engine::{DeviceChoice, EmbedOptions, ImageFeatures, LoadOptions, LoadedModel, Precision};

/// The least cosine to the reference each reduced precision must keep.
fn min_cosine(precision: Precision) -> f32 {
    match precision {
        Precision::Int8 => 0.995,
        _ => 0.999,
    }
}

/// int8 exists only on the packed CPU kernels: on a GPU test device loading
/// must refuse it (true: the caller stops there).
fn refused_off_cpu(precision: Precision, load: impl FnOnce() -> Result<(), String>) -> bool {
    if precision != Precision::Int8 || test_device() == DeviceChoice::Cpu {
        return false;
    }
    let err = load().expect_err("int8 on a GPU must be refused");
    assert!(err.contains("int8"), "unclear refusal: {err}");
    true
}

/// Every row of `got` within [`min_cosine`] of its row in `want`.
fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], precision: Precision) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| cosine(g, w))
        .fold(f32::INFINITY, f32::min);
    println!("{what} embeddings min cosine {worst:.6}");
    assert!(worst >= min_cosine(precision), "{what} cosine {worst}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// CLIP fixtures: each reduced precision within [`min_cosine`] of the
/// reference, and really in effect (not equal to f32).
pub fn clip_embeddings_stay_close(precision: Precision) {
    let label = precision.name();
    for name in MODEL_FIXTURES {
        let reference = model_reference(name);
        let options = LoadOptions {
            tokenizer: Some(tokenizer_file()),
            precision,
            device: test_device(),
            ..Default::default()
        };
        let dir = model_fixture(name);
        if refused_off_cpu(precision, || {
            seer_engine::Clip::load_dir(&dir, &options)
                .map(drop)
                .map_err(|e| e.to_string())
        }) {
            return;
        }
        let clip = load_with_precision(name, precision);
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
            assert_close(&format!("{name}: {label} {kind}"), &got, &want, precision);
            embeddings.push(got);
        }
        // The option must really take effect: it moves the embeddings by more
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
                "{name}: {label} equals f32 (max |diff| {moved:e})"
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

/// The family fixtures (DINOv2, SigLIP, SigLIP 2), as for CLIP.
pub fn family_embeddings_stay_close(precision: Precision) {
    let label = precision.name();
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
        let options = |precision| LoadOptions {
            precision,
            device: test_device(),
            ..Default::default()
        };
        let load = |precision| {
            LoadedModel::load_dir(&dir, &options(precision))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        if refused_off_cpu(precision, || {
            LoadedModel::load_dir(&dir, &options(precision))
                .map(drop)
                .map_err(|e| e.to_string())
        }) {
            return;
        }
        let reduced = family_embeddings(&load(precision), &paths, &texts);
        let exact = family_embeddings(&load(Precision::F32), &paths, &texts);
        assert_eq!(reduced.len(), want.len(), "{name}");
        for (((kind, got), (_, f32_rows)), want) in reduced.iter().zip(&exact).zip(&want) {
            assert_eq!(got.len(), want.len(), "{name} {kind}");
            assert_close(&format!("{name}: {label} {kind}"), got, want, precision);
            // f32 is the reference, and the reduced precision really runs: it
            // moves the embeddings by more than f32 rounding does.
            assert!(max_abs_diff(f32_rows, want) <= 1e-4, "{name} {kind}: f32");
            let moved = max_abs_diff(got, f32_rows);
            println!("{name}: {label} {kind} max |{label} - f32| {moved:.2e}");
            assert!(
                moved > 1e-6,
                "{name} {kind}: {label} equals f32 ({moved:e})"
            );
        }
    }
}
