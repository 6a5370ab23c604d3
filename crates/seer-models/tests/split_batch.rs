//! A batch cut into one part per thread (`nn::split_batch`) gives every item
//! the bits it gets from the batch run whole on one thread: CLIP images and
//! texts in both paddings on every fixture layout, SigLIP's and SigLIP 2's
//! entry points, DINOv2's outputs, BLIP's vision tower.

use rayon::{ThreadPool, ThreadPoolBuilder};
use seer_models::models::blip::BlipModel;
use seer_models::models::dinov2::Dinov2Model;
use seer_models::models::siglip::{PatchGrid, SiglipModel};
use seer_models::{ClipModel, Device, ModelFiles, Precision, Tensor, TextPadding};
use seer_testkit::{model_fixture as fixture, repo_root, MODEL_FIXTURES};

fn bits(t: &Tensor) -> Vec<u32> {
    let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    values.into_iter().map(f32::to_bits).collect()
}

fn on(threads: usize) -> ThreadPool {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// `run` on one thread, then on two and three (six items: parts of 3 and of
/// 2), the same bits each time.
fn same_bits_on_more_threads(what: &str, run: impl Fn() -> Vec<u32> + Send + Sync) {
    let whole = on(1).install(&run);
    for threads in [2, 3] {
        assert!(
            on(threads).install(&run) == whole,
            "{what} on {threads} threads"
        );
    }
}

fn family(name: &str) -> std::path::PathBuf {
    repo_root().join("fixtures/families").join(name)
}

#[test]
fn clip_batches_split_across_threads_give_the_whole_batch_bits() {
    let texts: Vec<Vec<u32>> = (0..6)
        .map(|i| {
            let mut t = vec![49406];
            t.extend((0..1 + 2 * i).map(|j| 320 + 7 * j as u32));
            t.push(49407);
            t
        })
        .collect();
    for name in MODEL_FIXTURES {
        let files = ModelFiles::from_dir(&fixture(name)).unwrap();
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let model = ClipModel::load(&files, &Device::Cpu, precision).unwrap();
            let size = model.image_size();
            let pixels = Tensor::randn(0f32, 1.0, (6, 3, size, size), &Device::Cpu).unwrap();
            same_bits_on_more_threads(&format!("{name} {precision:?} images"), || {
                bits(&model.encode_images(&pixels).unwrap())
            });
            for padding in [TextPadding::Longest, TextPadding::Context] {
                same_bits_on_more_threads(
                    &format!("{name} {precision:?} texts {padding:?}"),
                    || bits(&model.encode_texts(&texts, padding).unwrap()),
                );
            }
        }
    }
}

#[test]
fn siglip_and_dinov2_batches_split_across_threads_give_the_whole_batch_bits() {
    let load = |name| SiglipModel::load_dir(&family(name), &Device::Cpu, Precision::F32).unwrap();
    let model = load("siglip-tiny");
    let size = model.image_size();
    let pixels = Tensor::randn(0f32, 1.0, (6, 3, size, size), &Device::Cpu).unwrap();
    same_bits_on_more_threads("siglip images", || {
        bits(&model.image_features(&pixels).unwrap())
    });
    let larger = Tensor::randn(0f32, 1.0, (6, 3, size + 16, size), &Device::Cpu).unwrap();
    same_bits_on_more_threads("siglip interpolated", || {
        bits(&model.image_features_interpolated(&larger).unwrap())
    });
    let ids: Vec<Vec<u32>> = (0..6)
        .map(|i| (0..8).map(|j| (i * 8 + j) % 90 + 1).collect())
        .collect();
    let mask: Vec<Vec<u32>> = (0..6)
        .map(|i| (0..8).map(|j| u32::from(j <= i)).collect())
        .collect();
    same_bits_on_more_threads("siglip texts", || {
        bits(&model.text_features(&ids, Some(&mask)).unwrap())
    });

    let model = load("siglip2-naflex-tiny");
    let (n, k) = (40, 3 * 16 * 16);
    let patches = Tensor::randn(0f32, 1.0, (6, n, k), &Device::Cpu).unwrap();
    let grids: Vec<PatchGrid> = (0..6)
        .map(|i| PatchGrid {
            rows: 2 + i % 3,
            cols: 5 + i,
        })
        .collect();
    same_bits_on_more_threads("siglip2 naflex", || {
        bits(&model.image_features_naflex(&patches, &grids).unwrap())
    });

    for name in ["dinov2-tiny", "dinov2-registers-tiny"] {
        let model = Dinov2Model::load_dir(&family(name), &Device::Cpu, Precision::F32).unwrap();
        let pixels = Tensor::randn(0f32, 1.0, (6, 3, 56, 42), &Device::Cpu).unwrap();
        same_bits_on_more_threads(name, || {
            let out = model.forward(&pixels).unwrap();
            [&out.last_hidden_state, &out.pooler, &out.patch_tokens]
                .into_iter()
                .flat_map(bits)
                .collect()
        });
    }
}

#[test]
fn blip_image_batches_split_across_threads_give_the_whole_batch_bits() {
    for precision in [Precision::F32, Precision::Bf16] {
        let dir = repo_root().join("fixtures/blip/caption-tiny");
        let model = BlipModel::load_dir(&dir, &Device::Cpu, precision).unwrap();
        let size = model.config().vision.image_size;
        let pixels = Tensor::randn(0f32, 1.0, (6, 3, size, size), &Device::Cpu).unwrap();
        same_bits_on_more_threads(&format!("blip {precision:?} images"), || {
            bits(&model.image_embeds(&pixels).unwrap())
        });
    }
}
