//! The text tower alone against the reference, on the reference's own token ids:
//! separates model parity from tokenizer parity (tested in seer-tokenizer).

use seer_models::{ClipModel, Device, ModelFiles, Precision, TextPadding};
use seer_testkit::{
    matrix, max_abs_diff, model_fixture as fixture, model_reference, token_lists, MODEL_FIXTURES,
};

#[test]
fn text_features_match_reference_for_every_layout() {
    for name in MODEL_FIXTURES {
        let reference = model_reference(name);
        let files = ModelFiles::from_dir(&fixture(name)).unwrap();
        let model = ClipModel::load(&files, &Device::Cpu, Precision::F32).unwrap();
        let tokens = token_lists(&reference["tokens"]);
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
        Precision::F32,
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
        Precision::F32,
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
