//! GFLOP/s of the fused attention, at long sequences (OWLv2 at 960 px: 3,601
//! tokens; SAM's global layers: 4,096) or at a batch of short ones (CLIP's
//! ViT-B/32 images: 32 × 50 tokens, width 768; its texts: 32 × 77, width 512,
//! causal):
//! `cargo run --release -p seer-kernels --example attention_speed [TOKENS] [portable|avx2|avx512|-] [SEQUENCES] [WIDTH] [causal|-] [RUNS] [f32|bf16|tiles]`
//! (the second argument caps the kernels' instruction set, as `$SEER_ISA` does;
//! heads are 64 wide; RUNS 1 for a `valgrind --tool=callgrind` count; bf16 runs
//! `attention_bf16`, a bf16 model's attention; tiles `attention_on_tiles`, an
//! f32 model's on the AMX tiles).

use std::time::Instant;

use seer_kernels::ops::{attention, attention_bf16, attention_on_tiles, AttentionShape};

fn main() {
    let arg = |i: usize| std::env::args().nth(i).filter(|s| s != "-");
    if let Some(isa) = arg(2) {
        let isa = seer_kernels::Isa::parse(&isa).expect("portable, avx2, avx512 or amx");
        seer_kernels::Isa::limit(isa);
    }
    println!("kernels: {}", seer_kernels::Isa::detected().name());
    let number = |i: usize, default: usize| {
        arg(i).map_or(default, |s| {
            s.parse()
                .ok()
                .filter(|&n| n > 0)
                .expect("TOKENS, SEQUENCES and WIDTH are positive numbers")
        })
    };
    let t = number(1, 3601);
    let batch = number(3, 1);
    let c = number(4, 768);
    let causal = arg(5).is_some_and(|s| s == "causal");
    let heads = c / 64;
    let qkv: Vec<f32> = (0..batch * t * 3 * c)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let mut out = vec![0f32; batch * t * c];
    let sequences: Vec<(usize, usize)> = (0..batch).map(|s| (s * t, t)).collect();
    let shape = AttentionShape {
        sequences: &sequences,
        width: c,
        heads,
        causal,
        keys: None,
        rel_pos: None,
    };
    let kind = arg(7).unwrap_or("f32".into());
    let attention = match kind.as_str() {
        "bf16" => attention_bf16,
        "tiles" => attention_on_tiles,
        "f32" => attention,
        other => {
            eprintln!("attention_speed: the 7th argument is f32, bf16 or tiles, not {other:?}");
            std::process::exit(2);
        }
    };
    attention(&qkv, shape, &mut out);
    // By default enough runs for about 3 × 3,601² tokens' work.
    let runs = number(6, (3 * 3601 * 3601 / (batch * t * t)).clamp(3, 1000));
    let start = Instant::now();
    for _ in 0..runs {
        attention(&qkv, shape, &mut out);
    }
    let secs = start.elapsed().as_secs_f64() / runs as f64;
    // q·kᵀ and p·v: 2 multiply-adds per (query, key, column), counted in full
    // even where a causal mask leaves half of them out.
    let flops = 2.0 * 2.0 * (batch * t * t * c) as f64;
    println!(
        "{batch} × {t} tokens{}, width {c}, {heads} heads{}: {:.3} ms, {:.1} GFLOP/s",
        if causal { " (causal)" } else { "" },
        if kind == "f32" {
            String::new()
        } else {
            format!(", {kind}")
        },
        secs * 1e3,
        flops / secs / 1e9
    );
}
