//! GFLOP/s of the fused attention at long sequences (OWLv2 at 960 px: 3,601
//! tokens; SAM's global layers: 4,096):
//! `cargo run --release -p seer-kernels --example attention_speed [TOKENS] [portable|avx2|avx512]`
//! (the second argument caps the kernels' instruction set, as `$SEER_ISA` does).

use std::time::Instant;

use seer_kernels::ops::{attention, AttentionShape};

fn main() {
    if let Some(isa) = std::env::args().nth(2) {
        let isa = seer_kernels::Isa::parse(&isa).expect("portable, avx2, avx512 or amx");
        seer_kernels::Isa::limit(isa);
    }
    println!("kernels: {}", seer_kernels::Isa::detected().name());
    let t: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3601);
    let (c, heads) = (768, 12);
    let qkv: Vec<f32> = (0..t * 3 * c)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let mut out = vec![0f32; t * c];
    let sequences = [(0, t)];
    let shape = AttentionShape {
        sequences: &sequences,
        width: c,
        heads,
        causal: false,
        keys: None,
        rel_pos: None,
    };
    attention(&qkv, shape, &mut out);
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        attention(&qkv, shape, &mut out);
    }
    let secs = start.elapsed().as_secs_f64() / runs as f64;
    // q·kᵀ and p·v: 2 multiply-adds per (query, key, column).
    let flops = 2.0 * 2.0 * (t * t * c) as f64;
    println!(
        "{t} tokens, width {c}, {heads} heads: {:.1} ms, {:.1} GFLOP/s",
        secs * 1e3,
        flops / secs / 1e9
    );
}
