//! SigLIP 2 NaFlex parity against `fixtures/families/siglip2-naflex-tiny`
//! (transformers 5.24, see fixtures/families/README.md): from the image files
//! and texts through seer's NaFlex processor, tokenizer and model.

use std::path::PathBuf;

use seer_image::{decode_file_full, preprocess_naflex, DecodeLimits, NaflexConfig};
use seer_models::models::siglip::SiglipConfig;
use seer_models::models::siglip::{PatchGrid, SiglipModel};
use seer_models::{l2_normalize, Device, Precision, Tensor, Weights};
use seer_testkit::{matrix, max_abs_diff, read_json, repo_root, shared_data, strings, token_lists};
use seer_tokenizer::{SiglipFlavour, SiglipPadding, SiglipTokenizer};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn fixture() -> PathBuf {
    repo_root().join("fixtures/families/siglip2-naflex-tiny")
}

fn reference() -> Value {
    read_json(&fixture().join("reference.json"))
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn tokenizer() -> SiglipTokenizer {
    SiglipTokenizer::from_file(
        &fixture().join("tokenizer.json"),
        SiglipFlavour::Siglip2,
        64,
    )
    .unwrap()
}

fn model() -> SiglipModel {
    SiglipModel::load_dir(&fixture(), &Device::Cpu, Precision::F32).unwrap()
}

/// The reference images as NaFlex patches: (N, max_patches, 768) and grids.
fn patches(r: &Value, max_num_patches: u32) -> (Tensor, Vec<PatchGrid>) {
    let json = std::fs::read_to_string(fixture().join("preprocessor_config.json")).unwrap();
    let cfg = NaflexConfig {
        max_num_patches,
        ..NaflexConfig::from_siglip2_preprocessor_config(&json).unwrap()
    };
    let images = strings(&r["images"]);
    let mut data = Vec::new();
    let mut grids = Vec::new();
    for image in &images {
        let decoded = decode_file_full(&shared_data().join(image), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{image}: {e}"));
        let p = preprocess_naflex(&decoded, &cfg);
        data.extend(p.patches);
        grids.push(PatchGrid {
            rows: p.rows,
            cols: p.cols,
        });
    }
    let n = max_num_patches as usize;
    let t = Tensor::from_vec(data, (images.len(), n, 768), &Device::Cpu).unwrap();
    (t, grids)
}

#[test]
fn naflex_patches_and_image_features_match_for_every_patch_budget() {
    let r = reference();
    let m = model();
    for case in r["naflex"].as_array().unwrap() {
        let budget = case["max_num_patches"].as_u64().unwrap() as u32;
        let (px, grids) = patches(&r, budget);
        let want_shapes = token_lists(&case["spatial_shapes"]);
        let got_shapes: Vec<Vec<u32>> = grids
            .iter()
            .map(|g| vec![g.rows as u32, g.cols as u32])
            .collect();
        assert_eq!(got_shapes, want_shapes, "{budget}: spatial_shapes");
        let first: Vec<Vec<f32>> = (0..2)
            .map(|i| px.get(i).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap())
            .collect();
        let d = max_abs_diff(&first, &matrix(&case["pixel_values_patch0_images01"]));
        assert!(d < 1e-5, "{budget}: first patches differ by {d}");
        let features = m.image_features_naflex(&px, &grids).unwrap();
        let d = max_abs_diff(&rows(&features), &matrix(&case["image_features"]));
        assert!(d < TOL, "{budget}: image features differ by {d}");
        let d = max_abs_diff(
            &rows(&l2_normalize(&features).unwrap()),
            &matrix(&case["image_embeddings"]),
        );
        assert!(d < TOL, "{budget}: image embeddings differ by {d}");
    }
}

#[test]
fn tokens_are_lowercased_and_right_padded_with_pad_zero() {
    let r = reference();
    let t = &r["tokenizer"];
    let tok = tokenizer();
    let texts = strings(&r["texts"]);
    let batch: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (text, want) in texts.iter().zip(token_lists(&t["unpadded"])) {
        assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
    }
    let enc = tok.encode_batch(&batch, SiglipPadding::MaxLength).unwrap();
    assert_eq!(enc.ids, token_lists(&t["padded"]["right"]["input_ids"]));
    assert_eq!(
        enc.mask,
        token_lists(&t["padded"]["right"]["attention_mask"])
    );
    // Lowercasing is the Siglip2Tokenizer's, not the file's: without it the
    // ids of texts with capitals differ (the recorded GemmaTokenizer ids).
    assert_ne!(
        token_lists(&t["unpadded"]),
        token_lists(&t["unpadded_gemma_tokenizer_no_lowercase"])
    );
}

#[test]
fn text_features_logits_and_probabilities_match() {
    let r = reference();
    let m = model();
    let (px, grids) = patches(&r, 256);
    let image = m.image_features_naflex(&px, &grids).unwrap();
    let texts = strings(&r["texts"]);
    let batch: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer()
        .encode_batch(&batch, SiglipPadding::MaxLength)
        .unwrap();
    let left = token_lists(&r["tokenizer"]["padded"]["left"]["input_ids"]);
    for (block, ids, mask) in [
        (
            "max_length_right/attention_mask",
            &enc.ids,
            Some(enc.mask.as_slice()),
        ),
        ("max_length_right/no_mask", &enc.ids, None),
        // Left padding is run without a mask only: masks must be right-padded.
        ("max_length_left/no_mask", &left, None),
    ] {
        let want = &r["text"][block];
        let text = m.text_features(ids, mask).unwrap();
        let check = |what: &str, got: &Tensor| {
            let d = max_abs_diff(&rows(got), &matrix(&want[what]));
            assert!(d < TOL, "{block} {what} differ by {d}");
        };
        check("text_features", &text);
        check("text_embeddings", &l2_normalize(&text).unwrap());
        check("logits_per_image", &m.logits(&image, &text).unwrap());
        check("probs", &m.probabilities(&image, &text).unwrap());
    }
}

#[test]
fn naflex_inputs_are_checked() {
    let m = model();
    let px = Tensor::zeros((1, 16, 768), seer_models::DType::F32, &Device::Cpu).unwrap();
    let too_big = [PatchGrid { rows: 5, cols: 4 }];
    assert!(m.image_features_naflex(&px, &too_big).is_err());
    assert!(m.image_features_naflex(&px, &[]).is_err());
    let square = Tensor::zeros((1, 3, 224, 224), seer_models::DType::F32, &Device::Cpu).unwrap();
    assert!(m.image_features(&square).is_err());
}

/// NaFlex on candle's layers (additive masks in the encoder and the head).
#[test]
fn candle_layers_match_the_reference_too() {
    let r = reference();
    let tensors =
        candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu).unwrap();
    let config = SiglipConfig::from_file(&fixture().join("config.json")).unwrap();
    let m = SiglipModel::from_weights(config, &Weights::trainable(tensors, &Device::Cpu)).unwrap();
    let case = &r["naflex"][1];
    let (px, grids) = patches(&r, case["max_num_patches"].as_u64().unwrap() as u32);
    let features = m.image_features_naflex(&px, &grids).unwrap();
    let d = max_abs_diff(&rows(&features), &matrix(&case["image_features"]));
    assert!(d < TOL, "image features differ by {d}");
}
