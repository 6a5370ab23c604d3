//! A batch cut into one part per thread (`nn::split_batch`) gives every item
//! the bits it gets from the batch run whole on one thread, for images and
//! for texts in both paddings, on every CLIP fixture layout.

use rayon::ThreadPoolBuilder;
use seer_models::{ClipModel, Device, ModelFiles, Precision, Tensor, TextPadding};
use seer_testkit::{model_fixture as fixture, MODEL_FIXTURES};

fn bits(t: &Tensor) -> Vec<u32> {
    let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    values.into_iter().map(f32::to_bits).collect()
}

#[test]
fn batches_split_across_threads_give_the_whole_batch_bits() {
    let on = |threads: usize| {
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    };
    // Six items: two parts of 3 on two threads, three of 2 on three.
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
            let images =
                |threads| on(threads).install(|| bits(&model.encode_images(&pixels).unwrap()));
            let whole = images(1);
            for threads in [2, 3] {
                assert!(
                    images(threads) == whole,
                    "{name} {precision:?} images on {threads} threads"
                );
            }
            for padding in [TextPadding::Longest, TextPadding::Context] {
                let encode = |threads| {
                    on(threads).install(|| bits(&model.encode_texts(&texts, padding).unwrap()))
                };
                let whole = encode(1);
                for threads in [2, 3] {
                    assert!(
                        encode(threads) == whole,
                        "{name} {precision:?} texts {padding:?} on {threads} threads"
                    );
                }
            }
        }
    }
}
