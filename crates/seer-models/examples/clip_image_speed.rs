//! Images per second of the CLIP ViT-B/32 image tower alone (random weights,
//! random pixels), at the batch sizes `seer bench` reports, in one precision:
//! a short loop to profile (`perf record`) what `seer bench` reports as
//! "images, model only".
//! `SEER_ISA` and `SEER_WHOLE_BATCHES` as `common/speed_env.rs` says.
//!
//!     cargo run --release -p seer-models --example clip_image_speed -- [f32|bf16|int8] [iterations] [batch,...]

use std::path::Path;
use std::time::Instant;

use seer_models::{ClipConfig, ClipModel, Device, Precision, Tensor, Weights};

#[path = "common/speed_env.rs"]
mod speed_env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    speed_env::apply()?;
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
