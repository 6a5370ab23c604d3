//! Texts per second of the CLIP ViT-B/32 text tower alone (random weights, 32
//! prompts of 9 tokens, as `seer bench`'s prompts average), padded to the 77-token
//! context and unpadded, in one precision: a short loop to profile (`perf record`)
//! what `seer bench` reports as "texts".
//! `SEER_ISA` and `SEER_WHOLE_BATCHES` as `common/speed_env.rs` says.
//!
//!     cargo run --release -p seer-models --example clip_text_speed -- [f32|bf16|int8] [iterations]

use std::path::Path;
use std::time::Instant;

use seer_models::{ClipConfig, ClipModel, Device, Precision, TextPadding, Weights, EOT_TOKEN};

#[path = "common/speed_env.rs"]
mod speed_env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    speed_env::apply()?;
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
