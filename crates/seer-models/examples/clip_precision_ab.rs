//! Whether one precision is faster than another on this CPU: the CLIP
//! ViT-B/32 image tower (random weights, random pixels) in each precision,
//! loaded side by side and timed forward by forward in turn, so that the
//! machine's slow and fast phases fall on every precision alike. Prints each
//! precision's median images/s, the median of its per-round ratio to the
//! first precision, and in how many rounds it was the faster of the two.
//! (`seer bench --precision P` times the same-weights f32 figure right after
//! its own, seconds apart; on a shared VM that still moved ±5%, where this
//! settles differences of 1%.)
//! `SEER_ISA` and `SEER_WHOLE_BATCHES` as `common/speed_env.rs` says.
//!
//!     cargo run --release -p seer-models --example clip_precision_ab -- [batch] [rounds] [f32,bf16,...]

use std::path::Path;
use std::time::Instant;

use seer_models::{ClipConfig, ClipModel, Device, Precision, Tensor, Weights};

#[path = "common/speed_env.rs"]
mod speed_env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    speed_env::apply()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |i: usize, what: &str, default: usize| -> Result<usize, String> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{what} {s:?}: a whole number above 0"))
        })
    };
    let batch = count(0, "batch", 32)?;
    let rounds = count(1, "rounds", 20)?;
    let precisions = args
        .get(2)
        .map_or("f32,bf16", String::as_str)
        .split(',')
        .map(|p| Precision::parse(p).ok_or_else(|| format!("unknown precision {p:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let config = ClipConfig::from_transformers_json("{}", Path::new("<ViT-B/32 defaults>"))?;
    let size = config.vision.image_size();
    let models = precisions
        .iter()
        .map(|&p| {
            ClipModel::from_weights(
                config.clone(),
                &Weights::random(&Device::Cpu).with_precision(p),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pixels = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &Device::Cpu)?;
    for model in &models {
        model.encode_images(&pixels)?;
    }
    let mut rates = vec![Vec::with_capacity(rounds); models.len()];
    for _ in 0..rounds {
        for (model, rates) in models.iter().zip(&mut rates) {
            let start = Instant::now();
            model.encode_images(&pixels)?;
            rates.push(batch as f64 / start.elapsed().as_secs_f64());
        }
    }
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    println!(
        "{} batch {batch}: {:.2} images/s",
        precisions[0].name(),
        median(&rates[0])
    );
    for (precision, own) in precisions.iter().zip(&rates).skip(1) {
        let ratios: Vec<f64> = own
            .iter()
            .zip(&rates[0])
            .map(|(x, first)| x / first)
            .collect();
        let faster = ratios.iter().filter(|&&r| r > 1.0).count();
        println!(
            "{} batch {batch}: {:.2} images/s, {:.4}× {} (median of {rounds} rounds), faster in {faster} of {rounds}",
            precision.name(),
            median(own),
            median(&ratios),
            precisions[0].name(),
        );
    }
    Ok(())
}
