//! Images per second of the CLIP ViT-B/32 image tower alone (random weights,
//! random pixels), at the batch sizes `seer bench` reports, in one precision:
//! a short loop to profile (`perf record`) what `seer bench` reports as
//! "images, model only".
//! `SEER_ISA=avx2|portable` caps the kernels, as for the `seer` binary;
//! `SEER_WHOLE_BATCHES=1` runs each batch whole on all threads instead of one
//! part per thread (`seer_models::nn::split_batch`).
//!
//!     cargo run --release -p seer-models --example clip_image_speed -- [f32|bf16|int8] [iterations] [batch,...]

use std::path::Path;
use std::time::Instant;

use seer_models::{ClipConfig, ClipModel, Device, Precision, Tensor, Weights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    seer_kernels::alloc::keep_freed_blocks();
    if let Ok(isa) = std::env::var("SEER_ISA") {
        let cap = seer_kernels::Isa::parse(&isa).ok_or_else(|| format!("SEER_ISA: {isa}?"))?;
        seer_kernels::Isa::limit(cap);
    }
    if std::env::var_os("SEER_WHOLE_BATCHES").is_some_and(|v| v == "1") {
        seer_models::nn::split_batch::keep_batches_whole();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let precision = args
        .first()
        .map_or(Some(Precision::F32), |p| Precision::parse(p));
    let precision = precision.ok_or_else(|| format!("unknown precision {}", args[0]))?;
    let iterations: usize = args
        .get(1)
        .map_or(Ok(10), |s| s.parse())
        .map_err(|e| format!("iterations {:?}: {e}", args[1]))?;
    let batches: Vec<usize> = match args.get(2) {
        Some(list) => list
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("batch sizes {list:?}: {e}"))?,
        None => vec![8, 32],
    };
    let config = ClipConfig::from_transformers_json("{}", Path::new("<ViT-B/32 defaults>"))?;
    let size = config.vision.image_size();
    let model = ClipModel::from_weights(
        config,
        &Weights::random(&Device::Cpu).with_precision(precision),
    )?;
    for batch in batches {
        let pixels = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &Device::Cpu)?;
        model.encode_images(&pixels)?;
        let start = Instant::now();
        for _ in 0..iterations {
            model.encode_images(&pixels)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{} batch {batch}: {:.2} images/s",
            precision.name(),
            (batch * iterations) as f64 / seconds
        );
    }
    Ok(())
}
