//! The loss, every parameter's gradient and the weights after AdamW steps equal
//! PyTorch's (transformers `CLIPModel`, open_clip `ClipLoss`/`SigLipLoss`,
//! `torch.optim.AdamW`) on the same tiny model and batch, within 1e-5 relative
//! (to each tensor's largest magnitude; see the comments for the two places
//! where rounding noise needs more).
//! Fixtures: `scripts/make_training_fixtures.py` → `fixtures/training/`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use seer_testkit::repo_root;
use seer_train::{
    compute_gradients, AdamW, AdamWConfig, LossKind, ParamStore, Positives, TrainBatch,
};

/// Relative to each tensor's largest magnitude (with a floor of 1e-6 of the
/// model's largest gradient for tensors that are zero in exact arithmetic).
const TOLERANCE: f32 = 1e-5;

fn fixtures() -> PathBuf {
    repo_root().join("fixtures/training")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// The batch as the trainer sees it: pixels and token ids cut at the first EOT.
fn batch() -> TrainBatch {
    let b = load("batch.safetensors");
    let ids = b["input_ids"]
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap();
    let tokens: Vec<Vec<u32>> = ids
        .iter()
        .map(|row| {
            let end = row.iter().position(|&t| t == 49407).unwrap();
            row[..=end].iter().map(|&t| t as u32).collect()
        })
        .collect();
    TrainBatch::new(b["pixel_values"].clone(), tokens, Positives::Diagonal)
}

/// Restricts the token table to the rows the fixture stores.
fn comparable(name: &str, t: &Tensor, rows: &Tensor) -> Vec<f32> {
    if name.ends_with("token_embedding.weight") {
        values(
            &t.index_select(&rows.to_dtype(DType::U32).unwrap(), 0)
                .unwrap(),
        )
    } else {
        values(t)
    }
}

fn check(label: &str, ours: &[f32], theirs: &[f32], floor: f32) {
    assert_eq!(ours.len(), theirs.len(), "{label}: size");
    let scale = max_abs(theirs).max(floor);
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= TOLERANCE * scale,
        "{label}: max difference {diff:e} against scale {scale:e}"
    );
}

const LR: f64 = 1e-3;

fn adamw() -> AdamW {
    AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
        weight_decay: 0.2,
    })
}

fn clamp_logit_scale(store: &ParamStore) {
    let t = store.scalar("logit_scale").unwrap().unwrap();
    store
        .set_scalar("logit_scale", t.clamp(0.0, 100f32.ln()))
        .unwrap();
}

/// PyTorch's gradient of `name` as a full tensor (unused token rows are zero).
fn reference_grad(
    expected: &HashMap<String, Tensor>,
    key: &str,
    p: &seer_train::params::Param,
) -> Tensor {
    let g = &expected[key];
    if !p.name.ends_with("token_embedding.weight") {
        return g.clone();
    }
    let rows = expected["token_rows"].to_dtype(DType::U32).unwrap();
    let zeros = Tensor::zeros(p.dims(), DType::F32, &Device::Cpu).unwrap();
    zeros.index_add(&rows, g, 0).unwrap()
}

/// Our AdamW fed PyTorch's gradients gives PyTorch's weights, two steps.
#[test]
fn adamw_alone_matches_pytorch() {
    let expected = load("expected_clip.safetensors");
    let rows = expected["token_rows"].clone();
    let store = store(LossKind::Clip);
    let mut optimizer = adamw();
    for step in 1..=2 {
        let prefix = if step == 1 { "grad" } else { "grad2" };
        let grads: HashMap<String, Tensor> = store
            .params()
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    reference_grad(&expected, &format!("{prefix}.{}", p.name), p),
                )
            })
            .collect();
        optimizer.update(&store, &grads, LR).unwrap();
        clamp_logit_scale(&store);
        for p in store.params() {
            check(
                &format!("AdamW step {step}: {}", p.name),
                &comparable(&p.name, p.var().as_tensor(), &rows),
                &values(&expected[&format!("after{step}.{}", p.name)]),
                0.0,
            );
        }
    }
}

fn store(kind: LossKind) -> ParamStore {
    let mut s = ParamStore::from_model_dir(&fixtures().join("model"), &Device::Cpu).unwrap();
    if kind == LossKind::Siglip {
        s.set_scalar("logit_scale", 10f32.ln()).unwrap();
        s.ensure_logit_bias(-10.0).unwrap();
    }
    s
}

fn run_case(kind: LossKind, file: &str, steps: usize, micro: usize) {
    let expected = load(file);
    let rows = expected["token_rows"].clone();
    let store = store(kind);
    let batch = batch();
    let mut optimizer = adamw();
    for step in 1..=steps {
        let result = compute_gradients(&store, &batch, kind, micro).unwrap();
        let loss_key = if step == 1 {
            "loss".to_string()
        } else {
            format!("loss{step}")
        };
        let want = values(&expected[&loss_key])[0] as f64;
        // After an AdamW step the weights may differ by 5% of a step where a
        // gradient is near eps (see below), and the loss inherits that: its
        // relative difference at step 2 was 7.6e-6 with candle's matmul for the
        // layers without a bias and 1.07e-5 with seer's (gradients at 2.7e-6 of
        // their scale either way), so later steps are held to twice the bound.
        let tolerance = if step == 1 {
            TOLERANCE
        } else {
            2.0 * TOLERANCE
        };
        assert!(
            (result.loss - want).abs() <= tolerance as f64 * want.abs(),
            "{file} step {step}: loss {} vs {want}",
            result.loss
        );
        if step == 1 {
            let largest = expected
                .iter()
                .filter(|(k, _)| k.starts_with("grad."))
                .map(|(_, t)| max_abs(&values(t)))
                .fold(0f32, f32::max);
            for p in store.params() {
                let theirs = &expected[&format!("grad.{}", p.name)];
                let ours = &result.grads[&p.name];
                // The key bias's gradient is zero in exact arithmetic (softmax
                // ignores a shift per query): both sides hold rounding noise, so
                // it is compared against the model's largest gradient.
                let floor = if p.name.ends_with("k_proj.bias") {
                    largest
                } else {
                    1e-6 * largest
                };
                check(
                    &format!("{file} grad {}", p.name),
                    &comparable(&p.name, ours, &rows),
                    &values(theirs),
                    floor,
                );
            }
        }
        optimizer.update(&store, &result.grads, LR).unwrap();
        clamp_logit_scale(&store);
        for p in store.params() {
            let theirs = values(&expected[&format!("after{step}.{}", p.name)]);
            let ours = comparable(&p.name, p.var().as_tensor(), &rows);
            // Adam divides by |g| + eps, so where a gradient is near eps its ~1e-5
            // relative rounding difference shows in the step: our gradients and
            // PyTorch's agree to 1e-5 (checked above), and the resulting weights
            // to 1e-5 of their magnitude plus 5% of one step (lr). The optimizer
            // alone is checked at 1e-5 in `adamw_alone_matches_pytorch`.
            // The key bias's gradient is pure noise (see above), so its steps are
            // noise-driven on both sides: allowed a tenth of a step per step.
            let steps_slack = if p.name.ends_with("k_proj.bias") {
                0.1 * step as f32
            } else {
                0.05
            };
            let scale = max_abs(&theirs);
            let diff = ours
                .iter()
                .zip(&theirs)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= TOLERANCE * scale + steps_slack * LR as f32,
                "{file} after step {step}: {}: {diff:e}",
                p.name
            );
        }
    }
}

#[test]
fn clip_loss_gradients_and_two_adamw_steps_match_pytorch() {
    run_case(LossKind::Clip, "expected_clip.safetensors", 2, 6);
}

#[test]
fn gradient_caching_matches_pytorch_big_batch() {
    run_case(LossKind::Clip, "expected_clip.safetensors", 1, 2);
}

#[test]
fn siglip_loss_gradients_and_adamw_step_match_pytorch() {
    run_case(LossKind::Siglip, "expected_siglip.safetensors", 1, 6);
}

#[test]
fn initial_embeddings_match_pytorch() {
    let expected = load("expected_clip.safetensors");
    let store = store(LossKind::Clip);
    let model = store.inference_model().unwrap();
    let batch = batch();
    let images = seer_models::l2_normalize(&model.encode_images(&batch.pixels).unwrap()).unwrap();
    check(
        "image embeddings",
        &values(&images),
        &values(&expected["image_embeds"]),
        0.0,
    );
}
