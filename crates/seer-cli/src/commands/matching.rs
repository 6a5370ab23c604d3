//! `seer match`: how well texts describe an image, with a BLIP retrieval
//! model's image–text matching head (reads word order) and its contrastive
//! cosine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use seer_index::pathcodec::display_path;

use crate::common::RunArgs;

/// The matching model used when none is named.
pub const DEFAULT_MATCH_MODEL: &str = "blip-itm-base";

#[derive(clap::Args)]
pub struct Args {
    /// The image.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// A text to score against the image (repeat for several).
    #[arg(long, required = true, value_name = "TEXT")]
    text: Vec<String>,
    /// Image–text matching model: a folder, an alias or a hub id.
    #[arg(long, short, default_value = DEFAULT_MATCH_MODEL)]
    model: String,
    #[command(flatten)]
    run: RunArgs,
    /// One JSON object per text: {"image", "text", "itm_probability", "similarity"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(i) = args.text.iter().position(|t| t.trim().is_empty()) {
        anyhow::bail!("--text number {} is empty", i + 1);
    }
    let model = args.run.load(&args.model)?;
    let matcher = model.matcher()?;
    // Every text checked before the image is read.
    for (i, text) in args.text.iter().enumerate() {
        matcher.check_text(text, &format!("--text number {}", i + 1))?;
    }
    // In the words the other commands use (the texts are checked first).
    anyhow::ensure!(
        args.image.exists(),
        "{}: no such file or folder",
        display_path(&args.image)
    );
    let input = display_path(&args.image);
    let decoded = seer_image::decode_file_full(&args.image, &args.run.limits(Default::default()))
        .with_context(|| format!("cannot read {input}"))?;
    let pixels = matcher.preprocess(&decoded);
    let n = args.text.len();
    let all_pixels: Vec<f32> = pixels
        .iter()
        .copied()
        .cycle()
        .take(n * pixels.len())
        .collect();
    let scores = matcher.match_texts(all_pixels, n, &args.text)?;
    for (text, score) in args.text.iter().zip(scores) {
        match args.json {
            true => out!(
                "{}",
                serde_json::json!({
                    "image": input,
                    "text": text,
                    "itm_probability": score.itm_probability,
                    "similarity": score.similarity,
                })
            )?,
            false => out!(
                "{:.4}\t{:.4}\t{text}",
                score.itm_probability,
                score.similarity
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
