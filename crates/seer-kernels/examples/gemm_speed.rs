//! GFLOP/s of the packed matmul on ViT-B/32's shapes:
//! `cargo run --release -p seer-kernels --example gemm_speed [ROWS] [portable|avx2|avx512|amx] [f32|bf16|int8] [ROUNDS] [WIDTH] [COPIES]`
//! (the second argument caps the kernels' instruction set, as `$SEER_ISA` does,
//! `-` for none;
//! the third keeps one precision; ROUNDS of 5 products, 10 by default, 1 for a
//! `valgrind --tool=callgrind` count (valgrind 3.19 has no AVX-512: under it the
//! AVX2 or portable kernels run and are counted); WIDTH is the model width, 768
//! (the image tower) by default, 512 for the text tower. COPIES (1 by default)
//! packs that many copies of each weight matrix and takes the next for each
//! product, so that with enough of them (48 copies of fc1 are 450 MB) the
//! weights come from memory as in a model's forward, not from the L3 cache.

use std::time::Instant;

use seer_kernels::{gemm, Init, PackedWeights, Precision};

fn main() -> Result<(), String> {
    let arg = |i: usize| std::env::args().nth(i).filter(|s| s != "-");
    if let Some(isa) = arg(2) {
        let isa = seer_kernels::Isa::parse(&isa)
            .ok_or_else(|| format!("ISA {isa:?}: expected portable, avx2, avx512 or amx"))?;
        seer_kernels::Isa::limit(isa);
    }
    // A positional count: `default` where absent or `-`.
    let count = |i: usize, name: &str, default: usize| -> Result<usize, String> {
        match arg(i) {
            Some(s) => s
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} {s:?}: expected a positive number")),
            None => Ok(default),
        }
    };
    let m = count(1, "ROWS", 400)?;
    let only = match arg(3) {
        Some(s) => Some(
            Precision::parse(&s)
                .ok_or_else(|| format!("precision {s:?}: expected f32, bf16 or int8"))?,
        ),
        None => None,
    };
    let rounds = count(4, "ROUNDS", 10)?;
    let width = count(5, "WIDTH", 768)?;
    let copies = count(6, "COPIES", 1)?;
    println!("kernels: {}", seer_kernels::Isa::detected().name());
    if let Some(peak) = seer_kernels::peak::f32_gflops() {
        println!("f32 FMA peak: {peak:.1} GFLOP/s");
    }
    for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
        if only.is_some_and(|p| p != precision) {
            continue;
        }
        for (name, n, k) in [
            ("qkv", 3 * width, width),
            ("out", width, width),
            ("fc1", 4 * width, width),
            ("fc2", width, 4 * width),
        ] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let packed: Vec<PackedWeights> = (0..copies)
                .map(|_| {
                    PackedWeights::from_rows_for_inference(&w, n, k, Some(vec![0.0; n]), precision)
                })
                .collect();
            let mut c = vec![0f32; m * n];
            gemm(&a, m, &packed[0], &mut c, Init::Bias, None);
            let mut next = (1..=copies).cycle().map(|i| &packed[i % copies]);
            // Best of the rounds: the machine's other load only ever slows a round.
            let secs = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    for packed in next.by_ref().take(5) {
                        gemm(&a, m, packed, &mut c, Init::Bias, None);
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
    Ok(())
}
