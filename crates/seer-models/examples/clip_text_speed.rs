//! Texts per second of the CLIP ViT-B/32 text tower alone (random weights, 32
//! prompts of 9 tokens, as `seer bench`'s prompts average), padded to the 77-token
//! context and unpadded, in one precision: a short loop to profile (`perf record`)
//! what `seer bench` reports as "texts".
//! `SEER_ISA=avx2|portable` caps the kernels, as for the `seer` binary;
//! `SEER_WHOLE_BATCHES=1` runs each batch whole on all threads instead of one
//! part per thread (`seer_models::nn::split_batch`).
//!
//!     cargo run --release -p seer-models --example clip_text_speed -- [f32|bf16|int8] [iterations]

use std::path::Path;
use std::time::Instant;

use seer_models::{ClipConfig, ClipModel, Device, Precision, TextPadding, Weights, EOT_TOKEN};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    seer_kernels::alloc::keep_freed_blocks();
    if let Ok(isa) = std::env::var("SEER_ISA") {
        let cap = seer_kernels::Isa::parse(&isa).ok_or_else(|| format!("SEER_ISA: {isa}?"))?;
        seer_kernels::Isa::limit(cap);
    }
    if std::env::var_os("SEER_WHOLE_BATCHES").is_some_and(|v| v == "1") {
        seer_models::nn::split_batch::keep_batches_whole();
    }
    let mut args = std::env::args().skip(1);
    let precision = match args.next() {
        Some(p) => Precision::parse(&p).ok_or_else(|| format!("unknown precision {p}"))?,
        None => Precision::F32,
    };
    let iterations: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let config = ClipConfig::from_transformers_json("{}", Path::new("<ViT-B/32 defaults>"))?;
    let model = ClipModel::from_weights(
        config,
        &Weights::random(&Device::Cpu).with_precision(precision),
    )?;
    // Start of text, 7 words, end of text.
    let tokens: Vec<Vec<u32>> = (0..32u32)
        .map(|i| {
            let mut t = vec![49406];
            t.extend((0..7).map(|j| 320 + (i * 7 + j) % 40000));
            t.push(EOT_TOKEN);
            t
        })
        .collect();
    for (name, padding) in [
        ("77 tokens", TextPadding::Context),
        ("unpadded", TextPadding::Longest),
    ] {
        model.encode_texts(&tokens, padding)?;
        let start = Instant::now();
        for _ in 0..iterations {
            model.encode_texts(&tokens, padding)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{} {name}: {:.1} texts/s",
            precision.name(),
            (tokens.len() * iterations) as f64 / seconds
        );
    }
    Ok(())
}
