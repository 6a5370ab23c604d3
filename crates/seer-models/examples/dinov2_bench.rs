//! Throughput of the DINOv2 encoder at the hub checkpoints' shapes (ViT-S/14,
//! ViT-B/14; 518-pixel position table, 224-pixel inputs, so the table resize
//! runs too) with random weights, on the CPU kernels.
//!
//!     cargo run --release -p seer-models --example dinov2_bench [-- iterations]

use std::path::Path;
use std::time::Instant;

use seer_models::models::dinov2::{Dinov2Config, Dinov2Model};
use seer_models::{Device, Precision, Tensor, Weights};

const BATCH: usize = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    println!(
        "threads: {}, batch {BATCH}, 224x224, {iterations} timed batches after one warm-up",
        rayon::current_num_threads()
    );
    for (name, width, heads) in [("ViT-S/14", 384, 6), ("ViT-B/14", 768, 12)] {
        let json = format!(
            r#"{{"model_type": "dinov2", "hidden_size": {width}, "num_attention_heads": {heads},
                "num_hidden_layers": 12, "image_size": 518, "patch_size": 14}}"#
        );
        let cfg = Dinov2Config::from_json(&json, Path::new("<bench config>"))?;
        for precision in [Precision::F32, Precision::Bf16] {
            let w = Weights::random(&Device::Cpu).with_precision(precision);
            let model = Dinov2Model::from_weights(&cfg, &w)?;
            let px = Tensor::randn(0f32, 1.0, (BATCH, 3, 224, 224), &Device::Cpu)?;
            model.forward(&px)?;
            let start = Instant::now();
            for _ in 0..iterations {
                model.forward(&px)?.pooler.to_vec2::<f32>()?;
            }
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "{name} {}: {:.1} images/s ({:.0} ms per batch)",
                precision.name(),
                (iterations * BATCH) as f64 / seconds,
                seconds * 1e3 / iterations as f64
            );
        }
    }
    Ok(())
}
