//! Times the contrastive losses' host part (the B×B logits, their softmax or
//! sigmoid and the gradients back to the embeddings) at a few batch sizes:
//! `cargo run --release -p seer-train --example loss_speed -- [DEVICE]` (cpu,
//! cuda or cuda:N, the last two on a `--features cuda` build).
use candle_core::{Device, Tensor};
use seer_train::*;

fn main() -> anyhow::Result<()> {
    let device = match std::env::args().nth(1) {
        Some(d) => seer_engine::DeviceChoice::parse(&d)?.device()?,
        None => Device::Cpu,
    };
    for b in [256usize, 1024, 4096] {
        let unit = |t: Tensor| seer_models::l2_normalize(&t);
        let images = unit(Tensor::randn(0f32, 1.0, (b, 512), &device)?)?;
        let texts = unit(Tensor::randn(0f32, 1.0, (b, 512), &device)?)?;
        for kind in [LossKind::Clip, LossKind::Siglip] {
            let t0 = std::time::Instant::now();
            let out = contrastive_loss(kind, &images, &texts, 2.65, -10.0, &Positives::Diagonal)?;
            device.synchronize()?;
            println!(
                "batch {b} {kind:?}: {:.1} ms (loss {:.5})",
                t0.elapsed().as_secs_f64() * 1e3,
                out.loss
            );
        }
    }
    Ok(())
}
