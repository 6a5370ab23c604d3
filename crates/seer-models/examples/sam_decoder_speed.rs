//! Milliseconds per click of SAM's prompt encoder + mask decoder on a kept
//! image embedding (what `seer bench --model SAM` times as "decoder per
//! click"), without the image encoder around it: minimum and median over many
//! clicks, because single clicks on a shared machine move by ±15%. For
//! profiling (`perf record`) and before/after comparisons of decoder changes.
//!
//!     cargo run --release -p seer-models --example sam_decoder_speed -- SAM_DIR [clicks]
//!
//! `SAM_DIR` is any transformers `SamModel` folder (random weights will do:
//! the decoder's cost does not depend on them).

use std::path::PathBuf;
use std::time::Instant;

use seer_models::models::sam::{SamModel, SamPrompt};
use seer_models::{Device, Precision, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `seer` binary runs: without it, page faults on fresh buffers
    // take a fifth of a click.
    seer_kernels::alloc::keep_freed_blocks();
    seer_models::nn::candle_threads::run_candle_ops_inline();
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: sam_decoder_speed SAM_DIR [clicks]")?,
    );
    let clicks: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);
    let model = SamModel::load_dir(&dir, &Device::Cpu, Precision::F32)?;
    let width = model.config().decoder.hidden_size;
    let side = model.config().prompt.image_embedding_size;
    let embedding = Tensor::randn(0f32, 1.0, (1, width, side, side), &Device::Cpu)?;
    let input = model.config().prompt.image_size as f64;
    let point = SamPrompt {
        points: vec![(input * 0.5, input * 0.4, 1)],
        ..Default::default()
    };
    let bbox = SamPrompt {
        bbox: Some([input * 0.1, input * 0.2, input * 0.7, input * 0.6]),
        ..Default::default()
    };
    println!(
        "threads: {}, {clicks} clicks each after one warm-up",
        rayon::current_num_threads()
    );
    for (name, prompt, multimask) in [
        ("point, 3 masks", &point, true),
        ("box, 1 mask", &bbox, false),
    ] {
        model.predict(&embedding, prompt, multimask)?;
        let mut times: Vec<f64> = (0..clicks)
            .map(|_| {
                let start = Instant::now();
                model.predict(&embedding, prompt, multimask)?;
                Ok(start.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, Box<dyn std::error::Error>>>()?;
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<15} min {:6.2} ms, median {:6.2} ms",
            times[0],
            times[times.len() / 2]
        );
    }
    Ok(())
}
