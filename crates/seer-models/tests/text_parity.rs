//! The text tower alone against the reference, on the reference's own token ids:
//! separates model parity from tokenizer parity (tested in seer-tokenizer).

use std::path::PathBuf;

use seer_models::{ClipModel, Device, ModelFiles, TextPadding};
use serde_json::Value;

const MODELS: &[&str] = &[
    "hf-vit-quickgelu",
    "hf-vit-gelu-bin",
    "openclip-vit",
    "openclip-vit-options-bin",
    "openclip-rn",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn text_features_match_reference_for_every_layout() {
    for name in MODELS {
        let dir = fixture(name);
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let model = ClipModel::load(&ModelFiles::from_dir(&dir).unwrap(), &Device::Cpu).unwrap();
        let tokens: Vec<Vec<u32>> = reference["tokens"]
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
        let expected = matrix(&reference["text_features"]);
        for padding in [TextPadding::Longest, TextPadding::Context] {
            let got = model
                .encode_texts(&tokens, padding)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let diff = max_abs_diff(&got, &expected);
            println!("{name} {padding:?}: max |diff| = {diff:.2e}");
            assert!(
                diff <= 1e-4,
                "{name} {padding:?}: text features differ by {diff}"
            );
        }
        let scale = reference["logit_scale"].as_f64().unwrap() as f32;
        assert!(
            (model.logit_scale() - scale).abs() <= 1e-4 * scale,
            "{name}: logit scale"
        );
    }
}

#[test]
fn each_sequence_is_pooled_at_its_own_end_token() {
    // The same text alone and in a batch with longer texts gives the same features.
    let model = ClipModel::load(
        &ModelFiles::from_dir(&fixture("openclip-vit")).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let short = vec![49406, 320, 1929, 49407];
    let long = vec![49406, 320, 1929, 539, 320, 2368, 525, 320, 3720, 49407];
    let alone = model
        .encode_texts(std::slice::from_ref(&short), TextPadding::Longest)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let batched = model
        .encode_texts(&[long, short], TextPadding::Longest)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(max_abs_diff(&alone, &batched[1..]) <= 1e-5);
}

#[test]
fn bad_token_input_is_an_error_not_a_panic() {
    let model = ClipModel::load(
        &ModelFiles::from_dir(&fixture("hf-vit-quickgelu")).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    assert!(
        model
            .encode_texts(&[vec![49406, 320]], TextPadding::Longest)
            .is_err(),
        "no end token"
    );
    assert!(
        model
            .encode_texts(&[vec![49406, 60000, 49407]], TextPadding::Longest)
            .is_err(),
        "id beyond vocab"
    );
    assert!(
        model
            .encode_texts(&[vec![49407; 78]], TextPadding::Longest)
            .is_err(),
        "too long"
    );
    assert_eq!(
        model
            .encode_texts(&[], TextPadding::Longest)
            .unwrap()
            .dims(),
        &[0, 16]
    );
}
