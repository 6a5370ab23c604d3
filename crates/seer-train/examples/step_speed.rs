//! Times training steps (gradients + AdamW) of a from-scratch model on random
//! data, the same work as `scripts/bench_train_reference.py` does in PyTorch:
//! `cargo run --release -p seer-train --example step_speed -- CONFIG.json BATCH [MICRO] [DEVICE]`
//! (`SEER_ISA=avx2|portable` caps the kernels, as for the `seer` binary;
//! DEVICE is cpu, cuda or cuda:N, the last two on a `--features cuda` build).
use std::time::Instant;

use candle_core::{Device, Tensor};
use seer_train::*;

fn main() -> anyhow::Result<()> {
    // As the `seer` binary does (see their docs): the same allocator and
    // thread settings.
    seer_kernels::alloc::keep_freed_blocks();
    seer_models::nn::candle_threads::run_candle_ops_inline();
    if let Ok(isa) = std::env::var("SEER_ISA") {
        let isa =
            seer_kernels::Isa::parse(&isa).ok_or_else(|| anyhow::anyhow!("SEER_ISA: {isa}?"))?;
        seer_kernels::Isa::limit(isa);
    }
    println!("kernels: {}", seer_kernels::Isa::detected().name());
    let args: Vec<String> = std::env::args().collect();
    let config = std::path::PathBuf::from(args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: step_speed CONFIG.json [BATCH] [MICRO] [cpu|cuda|cuda:N]")
    })?);
    let b: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let micro: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(b);
    let dev = match args.get(4) {
        Some(d) => seer_engine::DeviceChoice::parse(d)?.device()?,
        None => Device::Cpu,
    };
    let store = ParamStore::from_scratch(&config, 0, &dev)?;
    let s = store.config().vision.image_size();
    let mut opt = AdamW::new(AdamWConfig::default());
    let mut times = Vec::new();
    for it in 0..5 {
        let pixels = Tensor::randn(0f32, 1.0, (b, 3, s, s), &dev)?;
        let tokens: Vec<Vec<u32>> = (0..b)
            .map(|i| {
                let mut t = vec![49406];
                t.extend((0..(6 + i % 7)).map(|k| (300 + (i % 180) * 7 + k) as u32));
                t.push(49407);
                t
            })
            .collect();
        let batch = TrainBatch::new(pixels, tokens, Positives::Diagonal);
        let t0 = Instant::now();
        let r = compute_gradients(&store, &batch, LossKind::Clip, micro)?;
        let t1 = Instant::now();
        opt.update(&store, &r.grads, 1e-3)?;
        // A GPU queues the update: wait for it, or the next step pays for it.
        dev.synchronize()?;
        let t2 = Instant::now();
        times.push((t2 - t0).as_secs_f64());
        println!(
            "step {it}: loss {:.4} grads {:.3}s adamw {:.3}s -> {:.1} samples/s",
            r.loss,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            b as f64 / (t2 - t0).as_secs_f64()
        );
    }
    let steady = &times[1..];
    println!(
        "{{\"samples_per_sec\": {:.1}}}",
        (b * steady.len()) as f64 / steady.iter().sum::<f64>()
    );
    Ok(())
}
