//! GFLOP/s of the packed matmul on ViT-B/32's shapes:
//! `cargo run --release -p seer-kernels --example gemm_speed [ROWS] [portable|avx2|avx512] [f32|bf16|int8] [ROUNDS]`
//! (the second argument caps the kernels' instruction set, as `$SEER_ISA` does,
//! `-` for none;
//! the third keeps one precision; ROUNDS of 5 products, 10 by default, 1 for a
//! `valgrind --tool=callgrind` count).

use std::time::Instant;

use seer_kernels::{gemm, Init, PackedWeights, Precision};

fn main() {
    if let Some(isa) = std::env::args().nth(2).filter(|s| s != "-") {
        let isa = seer_kernels::Isa::parse(&isa).expect("portable, avx2 or avx512");
        seer_kernels::Isa::limit(isa);
    }
    println!("kernels: {}", seer_kernels::Isa::detected().name());
    if let Some(peak) = seer_kernels::peak::f32_gflops() {
        println!("f32 FMA peak: {peak:.1} GFLOP/s");
    }
    let m: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let only = std::env::args()
        .nth(3)
        .map(|s| Precision::parse(&s).expect("f32, bf16 or int8"));
    let rounds: usize = std::env::args()
        .nth(4)
        .map(|s| s.parse().expect("a number of rounds"))
        .unwrap_or(10);
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        if only.is_some_and(|p| p != precision) {
            continue;
        }
        for (name, n, k) in [
            ("qkv", 2304, 768),
            ("out", 768, 768),
            ("fc1", 3072, 768),
            ("fc2", 768, 3072),
        ] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let packed = PackedWeights::from_rows(&w, n, k, Some(vec![0.0; n]), precision);
            let mut c = vec![0f32; m * n];
            gemm(&a, m, &packed, &mut c, Init::Bias, None);
            // Best of the rounds: the machine's other load only ever slows a round.
            let secs = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..5 {
                        gemm(&a, m, &packed, &mut c, Init::Bias, None);
                    }
                    t.elapsed().as_secs_f64() / 5.0
                })
                .fold(f64::INFINITY, f64::min);
            let gflops = 2.0 * (m * n * k) as f64 / secs / 1e9;
            println!(
                "{:5} {name:4} {m}x{n}x{k}: {:7.2} ms  {gflops:6.1} GFLOP/s",
                precision.name(),
                secs * 1e3
            );
        }
    }
}
