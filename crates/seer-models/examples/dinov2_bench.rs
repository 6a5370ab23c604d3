//! Throughput of the DINOv2 encoder at the hub checkpoints' shapes (ViT-S/14,
//! ViT-B/14; 518-pixel position table, 224-pixel inputs, so the table resize
//! runs too) with random weights, on the CPU kernels.
//!
//!     cargo run --release -p seer-models --example dinov2_bench \
//!         [-- ITERATIONS [PRECISIONS [BATCHES [MODELS]]]]
//!
//! e.g. `-- 5 f32,int8 8,32 S`: 5 timed batches, f32 and int8, batches of 8
//! and 32, ViT-S/14 only (defaults: 5, f32,bf16, 8, S,B). `SEER_ISA` and
//! `SEER_WHOLE_BATCHES` as `common/speed_env.rs` says.

use std::path::Path;
use std::time::Instant;

use seer_models::models::dinov2::{Dinov2Config, Dinov2Model};
use seer_models::{Device, Precision, Tensor, Weights};

#[path = "common/speed_env.rs"]
mod speed_env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    speed_env::apply()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.into());
    // A count of at least 1, or an error naming `what`.
    let count = |what: &str, s: &str| match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} {s:?}: a whole number above 0")),
    };
    let iterations = count("iterations", &arg(0, "5"))?;
    let precisions = arg(1, "f32,bf16")
        .split(',')
        .map(|p| Precision::parse(p).ok_or(format!("unknown precision {p:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let batches = arg(2, "8")
        .split(',')
        .map(|b| count("batch size", b))
        .collect::<Result<Vec<_>, _>>()?;
    let models = arg(3, "S,B");
    if let Some(m) = models.split(',').find(|m| !["S", "B"].contains(m)) {
        return Err(format!("model {m:?}: S (ViT-S/14) or B (ViT-B/14)").into());
    }
    println!(
        "threads: {}, 224x224, {iterations} timed batches after one warm-up",
        rayon::current_num_threads()
    );
    for (short, name, width, heads) in [("S", "ViT-S/14", 384, 6), ("B", "ViT-B/14", 768, 12)] {
        if !models.split(',').any(|m| m == short) {
            continue;
        }
        let json = format!(
            r#"{{"model_type": "dinov2", "hidden_size": {width}, "num_attention_heads": {heads},
                "num_hidden_layers": 12, "image_size": 518, "patch_size": 14}}"#
        );
        let cfg = Dinov2Config::from_json(&json, Path::new("<bench config>"))?;
        for &precision in &precisions {
            let w = Weights::random(&Device::Cpu).with_precision(precision);
            let model = Dinov2Model::from_weights(&cfg, &w)?;
            for &batch in &batches {
                let px = Tensor::randn(0f32, 1.0, (batch, 3, 224, 224), &Device::Cpu)?;
                model.forward(&px)?;
                let start = Instant::now();
                for _ in 0..iterations {
                    model.forward(&px)?.pooler.to_vec2::<f32>()?;
                }
                let seconds = start.elapsed().as_secs_f64();
                println!(
                    "{name} {} batch {batch}: {:.1} images/s ({:.0} ms per batch)",
                    precision.name(),
                    (iterations * batch) as f64 / seconds,
                    seconds * 1e3 / iterations as f64
                );
            }
        }
    }
    Ok(())
}
