//! Milliseconds a call of training's fused attention, forward and backward
//! (`seer_kernels::train::self_attention{,_backward}`), at the CIFAR-10 demo's
//! image shape by default (256 sequences of 17 tokens, width 128, 4 heads):
//! `cargo run --release -p seer-kernels --example train_attention_speed [SEQUENCES] [TOKENS] [WIDTH] [HEADS] [causal|-] [RUNS]`
//! (the demo's texts: `180 14 128 4 causal`). Prints the median over RUNS
//! calls of each direction; RUNS 1 for a `valgrind --tool=callgrind` count.

use std::time::Instant;

use seer_kernels::train::{self_attention, self_attention_backward, SelfAttention};

fn main() {
    seer_kernels::alloc::keep_freed_blocks();
    let arg = |i: usize| std::env::args().nth(i).filter(|s| s != "-");
    let number = |i: usize, default: usize| {
        arg(i).map_or(default, |s| {
            s.parse()
                .ok()
                .filter(|&n| n > 0)
                .expect("SEQUENCES, TOKENS, WIDTH, HEADS and RUNS are positive numbers")
        })
    };
    let (batch, t, c, heads) = (number(1, 256), number(2, 17), number(3, 128), number(4, 4));
    let causal = arg(5).is_some_and(|s| s == "causal");
    let runs = number(6, 200);
    let shape = SelfAttention {
        tokens: t,
        width: c,
        heads,
        causal,
    };
    let qkv: Vec<f32> = (0..batch * t * 3 * c)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let dctx: Vec<f32> = (0..batch * t * c)
        .map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let median = |f: &dyn Fn() -> f32| {
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    };
    let forward = median(&|| self_attention(&qkv, shape)[0]);
    let backward = median(&|| self_attention_backward(&qkv, &dctx, shape)[0]);
    println!(
        "kernels {}: {batch} x {t} tokens, width {c}, {heads} heads{}: forward {forward:.3} ms, backward {backward:.3} ms (medians of {runs})",
        seer_kernels::Isa::detected().name(),
        if causal { ", causal" } else { "" }
    );
}
