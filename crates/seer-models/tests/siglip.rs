//! SigLIP parity against `fixtures/families/siglip-tiny` (transformers 5.24,
//! see fixtures/families/README.md): from the image files and texts through
//! seer's preprocessing, tokenizer and model.

use std::path::{Path, PathBuf};

use seer_image::{decode_file_full, preprocess_exact, DecodeLimits, ExactResizeConfig};
use seer_models::models::siglip::{SiglipConfig, SiglipModel};
use seer_models::{l2_normalize, Device, Precision, Tensor, Weights};
use seer_testkit::{matrix, max_abs_diff, read_json, repo_root, shared_data, strings, token_lists};
use seer_tokenizer::{SiglipFlavour, SiglipPadding, SiglipTokenizer};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/families").join(name)
}

fn reference(name: &str) -> Value {
    read_json(&fixture(name).join("reference.json"))
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn siglip_tokenizer() -> SiglipTokenizer {
    SiglipTokenizer::from_file(
        &fixture("siglip-tiny").join("tokenizer.fast-equivalent.json"),
        SiglipFlavour::Siglip,
        64,
    )
    .unwrap()
}

/// The reference images through `SiglipImageProcessor` as seer runs it: (N, 3, 224, 224).
fn pixels(reference: &Value) -> Tensor {
    let json =
        std::fs::read_to_string(fixture("siglip-tiny").join("preprocessor_config.json")).unwrap();
    let cfg = ExactResizeConfig::from_siglip_preprocessor_config(&json).unwrap();
    pixels_at(&strings(&reference["images"]), &cfg)
}

fn pixels_at(images: &[String], cfg: &ExactResizeConfig) -> Tensor {
    let mut data = Vec::new();
    for image in images {
        let decoded = decode_file_full(&shared_data().join(image), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{image}: {e}"));
        data.extend(preprocess_exact(&decoded, cfg));
    }
    let (h, w) = (cfg.height as usize, cfg.width as usize);
    Tensor::from_vec(data, (images.len(), 3, h, w), &Device::Cpu).unwrap()
}

#[test]
fn pixels_match_the_pil_processor() {
    let r = reference("siglip-tiny");
    let px = pixels(&r);
    let (n, _, h, w) = px.dims4().unwrap();
    let stride = r["pixel_values"]["sample_stride"].as_u64().unwrap() as usize;
    let want = matrix(&r["pixel_values"]["sample"]);
    let all = px.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    let got: Vec<Vec<f32>> = all
        .iter()
        .map(|img| {
            let mut s = Vec::new();
            for c in 0..3 {
                for y in (0..h).step_by(stride) {
                    for x in (0..w).step_by(stride) {
                        s.push(img[c * h * w + y * w + x]);
                    }
                }
            }
            s
        })
        .collect();
    assert_eq!(got.len(), n);
    let images = strings(&r["images"]);
    for (i, image) in images.iter().enumerate() {
        let diff = max_abs_diff(&got[i..=i], &want[i..=i]);
        assert!(diff < 1e-5, "{image}: pixel sample differs by {diff}");
    }
}

#[test]
fn token_ids_match_the_slow_tokenizer_with_both_paddings() {
    check_token_ids(&siglip_tokenizer());
}

/// Real SigLIP checkpoints ship only `spiece.model`: the pipeline built from
/// it gives the slow tokenizer's ids as well.
#[test]
fn token_ids_from_spiece_model_match_too() {
    let tok = SiglipTokenizer::from_spiece_model(&fixture("siglip-tiny").join("spiece.model"), 64)
        .unwrap();
    check_token_ids(&tok);
    for bad in ["config.json", "tokenizer_config.json"] {
        let path = fixture("siglip-tiny").join(bad);
        let err = SiglipTokenizer::from_spiece_model(&path, 64)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(bad), "{err}");
    }
}

fn check_token_ids(tok: &SiglipTokenizer) {
    let r = reference("siglip-tiny");
    let texts = strings(&r["texts"]);
    let t = &r["tokenizer"];
    let unpadded = token_lists(&t["unpadded_slow"]);
    for (text, want) in texts.iter().zip(&unpadded) {
        assert_eq!(&tok.encode(text).unwrap(), want, "{text:?}");
    }
    for (rule, padding) in [
        ("max_length", SiglipPadding::MaxLength),
        ("longest", SiglipPadding::Longest),
    ] {
        let enc = tok.encode_batch(&batch(&r, rule, &texts), padding).unwrap();
        assert_eq!(enc.ids, token_lists(&t[rule]["input_ids"]), "{rule} ids");
        assert_eq!(
            enc.mask,
            token_lists(&t[rule]["attention_mask"]),
            "{rule} mask"
        );
    }
}

/// The texts the reference tokenized under padding `rule` (`text_indices`).
fn batch<'a>(r: &Value, rule: &str, texts: &'a [String]) -> Vec<&'a str> {
    r["tokenizer"][rule]["text_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| texts[i.as_u64().unwrap() as usize].as_str())
        .collect()
}

fn model() -> SiglipModel {
    SiglipModel::load_dir(&fixture("siglip-tiny"), &Device::Cpu, Precision::F32).unwrap()
}

#[test]
fn image_features_and_embeddings_match() {
    let r = reference("siglip-tiny");
    let m = model();
    let features = m.image_features(&pixels(&r)).unwrap();
    let d = max_abs_diff(&rows(&features), &matrix(&r["image_features"]));
    assert!(d < TOL, "image features differ by {d}");
    let d = max_abs_diff(
        &rows(&l2_normalize(&features).unwrap()),
        &matrix(&r["image_embeddings"]),
    );
    assert!(d < TOL, "image embeddings differ by {d}");
}

#[test]
fn text_features_logits_and_sigmoid_probabilities_match_every_block() {
    let r = reference("siglip-tiny");
    let m = model();
    assert!((m.logit_scale() - r["logit_scale_exp"].as_f64().unwrap() as f32).abs() < 1e-5);
    assert!((m.logit_bias() - r["logit_bias"].as_f64().unwrap() as f32).abs() < 1e-6);
    let image = m.image_features(&pixels(&r)).unwrap();
    let tok = siglip_tokenizer();
    let texts = strings(&r["texts"]);
    for (rule, padding) in [
        ("max_length", SiglipPadding::MaxLength),
        ("longest", SiglipPadding::Longest),
    ] {
        let enc = tok.encode_batch(&batch(&r, rule, &texts), padding).unwrap();
        for masked in ["attention_mask", "no_mask"] {
            let block = &r["text"][format!("{rule}/{masked}")];
            let mask = (masked == "attention_mask").then_some(enc.mask.as_slice());
            let text = m.text_features(&enc.ids, mask).unwrap();
            let check = |what: &str, got: &Tensor| {
                let d = max_abs_diff(&rows(got), &matrix(&block[what]));
                assert!(d < TOL, "{rule}/{masked} {what} differ by {d}");
            };
            check("text_features", &text);
            check("text_embeddings", &l2_normalize(&text).unwrap());
            check("logits_per_image", &m.logits(&image, &text).unwrap());
            check("probs", &m.probabilities(&image, &text).unwrap());
        }
    }
}

#[test]
fn other_input_sizes_interpolate_the_position_table_bicubically() {
    let r = reference("siglip-tiny");
    let case = &r["image_features_interpolated"];
    let shape = token_lists(&serde_json::json!([case["pixel_values"]["shape"]]))[0].clone();
    let cfg = ExactResizeConfig {
        height: shape[2],
        width: shape[3],
        ..ExactResizeConfig::from_siglip_preprocessor_config("{}").unwrap()
    };
    let m = model();
    let px = pixels_at(&strings(&case["images"]), &cfg);
    let features = m.image_features_interpolated(&px).unwrap();
    let d = max_abs_diff(&rows(&features), &matrix(&case["image_features"]));
    assert!(
        d < TOL,
        "{}x{}: image features differ by {d}",
        cfg.height,
        cfg.width
    );
    // The native size through the same call is the plain forward.
    let native = pixels(&r);
    let d = max_abs_diff(
        &rows(&m.image_features_interpolated(&native).unwrap()),
        &rows(&m.image_features(&native).unwrap()),
    );
    assert!(d == 0.0, "native size changed by {d}");
}

#[test]
fn wrong_inputs_are_errors_not_panics() {
    let m = model();
    let px = Tensor::zeros((1, 3, 192, 224), seer_models::DType::F32, &Device::Cpu).unwrap();
    assert!(m.image_features(&px).is_err());
    assert!(m.text_features(&[vec![1, 2], vec![1]], None).is_err());
    assert!(m.text_features(&[vec![400]], None).is_err());
    assert!(m.text_features(&[vec![1; 65]], None).is_err());
    let err = m
        .text_features(&[vec![5, 1, 1]], Some(&[vec![1, 0, 1]]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("right padding"), "{err}");
}

/// A copy of the fixture folder in a temp dir (removed when dropped), with
/// `edit` applied.
fn broken_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.fast-equivalent.json",
    ] {
        std::fs::copy(fixture("siglip-tiny").join(f), dir.path().join(f)).unwrap();
    }
    edit(dir.path());
    dir
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    // Unknown model_type.
    let copy = broken_copy(|d| {
        let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
        std::fs::write(
            d.join("config.json"),
            cfg.replace("\"model_type\": \"siglip\"", "\"model_type\": \"blip\""),
        )
        .unwrap();
    });
    let err = SiglipModel::load_dir(copy.path(), &Device::Cpu, Precision::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("'blip'"),
        "{err}"
    );
    assert!(SiglipConfig::from_file(&copy.path().join("config.json")).is_err());

    // A config whose text tower needs a tensor the checkpoint lacks.
    let copy = broken_copy(|d| {
        let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
        let cfg = cfg.replacen("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", 1);
        std::fs::write(d.join("config.json"), cfg).unwrap();
    });
    let err = SiglipModel::load_dir(copy.path(), &Device::Cpu, Precision::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("layers.2"),
        "{err}"
    );

    // tokenizer.json that is not one.
    let copy = broken_copy(|d| {
        std::fs::write(d.join("tokenizer.fast-equivalent.json"), "{\"model\": 1}").unwrap();
    });
    let path = copy.path().join("tokenizer.fast-equivalent.json");
    let err = SiglipTokenizer::from_file(&path, SiglipFlavour::Siglip, 64)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.fast-equivalent.json"), "{err}");
    // A real tokenizer of the other flavour has no </s>: refused by name.
    let err = SiglipTokenizer::from_file(
        &fixture("siglip2-naflex-tiny").join("tokenizer.json"),
        SiglipFlavour::Siglip,
        64,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("</s>"),
        "{err}"
    );
}

/// The same checkpoint on candle's layers (the GPU and training path: the
/// additive key-padding mask instead of the CPU kernel's key count).
#[test]
fn candle_layers_match_the_reference_too() {
    let r = reference("siglip-tiny");
    let dir = fixture("siglip-tiny");
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let config = SiglipConfig::from_file(&dir.join("config.json")).unwrap();
    let m = SiglipModel::from_weights(config, &Weights::trainable(tensors, &Device::Cpu)).unwrap();
    let image = m.image_features(&pixels(&r)).unwrap();
    let d = max_abs_diff(&rows(&image), &matrix(&r["image_features"]));
    assert!(d < TOL, "image features differ by {d}");
    let texts = strings(&r["texts"]);
    let enc = siglip_tokenizer()
        .encode_batch(&batch(&r, "longest", &texts), SiglipPadding::Longest)
        .unwrap();
    let text = m.text_features(&enc.ids, Some(&enc.mask)).unwrap();
    let want = matrix(&r["text"]["longest/attention_mask"]["text_features"]);
    let d = max_abs_diff(&rows(&text), &want);
    assert!(d < TOL, "masked text features differ by {d}");
}
