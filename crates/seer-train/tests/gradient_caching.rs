//! Gradient caching must give the gradients of one big batch, and locked towers
//! must get none.

use candle_core::{Device, Tensor};
use seer_testkit::model_fixture;
use seer_train::{compute_gradients, LossKind, ParamStore, Positives, TrainBatch};

fn batch(store: &ParamStore, b: usize, shared_captions: bool) -> TrainBatch {
    let s = store.config().vision.image_size();
    let n = b * 3 * s * s;
    let pixels: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let pixels = Tensor::from_vec(pixels, (b, 3, s, s), &Device::Cpu).unwrap();
    let tokens = (0..b)
        .map(|i| {
            let id = if shared_captions { i % 3 } else { i };
            let mut t = vec![49406];
            t.extend((0..(2 + id % 4)).map(|k| (320 + 11 * id + k) as u32));
            t.push(49407);
            t
        })
        .collect();
    let positives = if shared_captions {
        Positives::Groups((0..b).map(|i| i % 3).collect())
    } else {
        Positives::Diagonal
    };
    TrainBatch::new(pixels, tokens, positives)
}

fn max_rel_diff(a: &Tensor, b: &Tensor, floor: f32) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    // A floor tied to the model's largest gradient, for nearly-zero tensors.
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(floor);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn micro_batches_equal_one_big_batch() {
    let store =
        ParamStore::from_model_dir(&model_fixture("hf-vit-quickgelu"), &Device::Cpu).unwrap();
    for (kind, shared) in [
        (LossKind::Clip, false),
        (LossKind::Siglip, false),
        (LossKind::Clip, true),
    ] {
        let mut store =
            ParamStore::from_model_dir(&model_fixture("hf-vit-quickgelu"), &Device::Cpu).unwrap();
        if kind == LossKind::Siglip {
            store.ensure_logit_bias(-10.0).unwrap();
        }
        let b = batch(&store, 7, shared);
        let whole = compute_gradients(&store, &b, kind, 7).unwrap();
        let cached = compute_gradients(&store, &b, kind, 2).unwrap();
        assert!((whole.loss - cached.loss).abs() < 1e-6, "{kind:?}: loss");
        assert_eq!(
            whole.grads.len(),
            store.params().len(),
            "{kind:?}: every parameter has a gradient"
        );
        let largest = whole
            .grads
            .values()
            .map(|g| {
                g.abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .fold(0f32, f32::max);
        for (name, g) in &whole.grads {
            if name.ends_with("k_proj.bias") {
                // Zero in exact arithmetic (softmax ignores a shift per query).
                for t in [g, &cached.grads[name]] {
                    let m = t
                        .abs()
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .max(0)
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    assert!(m < 1e-6 * largest, "{name}: {m}");
                }
                continue;
            }
            let d = max_rel_diff(&cached.grads[name], g, 1e-6 * largest);
            assert!(d < 1e-5, "{kind:?} {name}: relative difference {d}");
        }
    }
    drop(store);
}

#[test]
fn locked_tower_gets_no_gradients() {
    let mut store =
        ParamStore::from_model_dir(&model_fixture("hf-vit-quickgelu"), &Device::Cpu).unwrap();
    store.lock(true, false);
    let b = batch(&store, 4, false);
    for micro in [4, 2] {
        let r = compute_gradients(&store, &b, LossKind::Clip, micro).unwrap();
        assert!(r
            .grads
            .keys()
            .all(|n| !n.starts_with("vision_model") && n != "visual_projection.weight"));
        assert!(r.grads.contains_key("text_model.final_layer_norm.weight"));
        assert!(r.grads.contains_key("logit_scale"));
    }
}
