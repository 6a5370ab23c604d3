//! GFLOP/s of a linear layer's weight gradient `dW = dyᵀ·x` (summed over the
//! rows) beside the forward product of the same shape, on the CLIP training
//! demo's shapes:
//! `cargo run --release -p seer-kernels --example weight_gradient_speed [ROWS] [portable|avx2|avx512|amx] [WIDTH]`
//! ROWS is tokens × batch, 4352 by default (batch 256 of the demo's 17 image
//! tokens); the second argument caps the kernels as `$SEER_ISA` does (`-` for
//! none); WIDTH is the model width, 128 by default.

use std::time::Instant;

use seer_kernels::train::weight_gradient;
use seer_kernels::{gemm, Init, PackedWeights, Precision};

fn arg(i: usize, default: usize) -> Result<usize, String> {
    match std::env::args().nth(i).filter(|s| s != "-") {
        Some(s) => s
            .parse()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("argument {i}: {s:?} is not a positive number")),
        None => Ok(default),
    }
}

/// Best of `rounds` timed calls after one warm-up (other load only slows a call).
fn best(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), String> {
    seer_kernels::alloc::keep_freed_blocks();
    if let Some(isa) = std::env::args().nth(2).filter(|s| s != "-") {
        let isa = seer_kernels::Isa::parse(&isa)
            .ok_or_else(|| format!("ISA {isa:?}: expected portable, avx2, avx512 or amx"))?;
        seer_kernels::Isa::limit(isa);
    }
    let m = arg(1, 4352)?;
    let width = arg(3, 128)?;
    println!("kernels: {}", seer_kernels::Isa::detected().name());
    let values = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * seed) % 1000) as f32 * 1e-3 - 0.5)
            .collect()
    };
    for (name, n, k) in [
        ("qkv", 3 * width, width),
        ("out", width, width),
        ("fc1", 4 * width, width),
        ("fc2", width, 4 * width),
    ] {
        let (x, w, dy) = (
            values(m * k, 104729),
            values(n * k, 7919),
            values(m * n, 7907),
        );
        let gflop = 2.0 * (m * n * k) as f64 * 1e-9;
        let forward = best(10, || {
            let packed = PackedWeights::from_rows(&w, n, k, None, Precision::F32);
            let mut y = vec![0f32; m * n];
            gemm(&x, m, &packed, &mut y, Init::Bias, None);
            std::hint::black_box(&y);
        });
        let mut dw = vec![0f32; n * k];
        let backward = best(10, || weight_gradient(&dy, n, &x, k, m, &mut dw));
        println!(
            "{name} {m}x{n}x{k}: forward {:.2} ms {:.1} GFLOP/s, weight gradient {:.2} ms {:.1} GFLOP/s",
            forward * 1e3,
            gflop / forward,
            backward * 1e3,
            gflop / backward
        );
    }
    Ok(())
}
