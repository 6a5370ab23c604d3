//! `seer ask`: answers a question about an image with a BLIP VQA model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use seer_index::pathcodec::display_path;

use crate::common::{GenerationArgs, RunArgs};

/// The question-answering model used when none is named.
pub const DEFAULT_VQA_MODEL: &str = "blip-vqa-base";

#[derive(clap::Args)]
pub struct Args {
    /// The image.
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// The question, e.g. "how many dogs are there?".
    #[arg(value_name = "QUESTION")]
    question: String,
    /// Question-answering model: a folder, an alias or a hub id.
    #[arg(long, short, default_value = DEFAULT_VQA_MODEL)]
    model: String,
    #[command(flatten)]
    generation: GenerationArgs,
    #[command(flatten)]
    run: RunArgs,
    /// One JSON object: {"input", "question", "answer", "tokens"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.question.trim().is_empty(), "the question is empty");
    let options = args.generation.options()?;
    let model = args.run.load(&args.model)?;
    let answerer = model.answerer()?;
    // Checked before the image is read: the question is read whole by the
    // text encoder, and the answer starts from `[DEC]` alone.
    answerer.check_question(&args.question, "the question", &options)?;
    // In the words the other commands use (the texts are checked first).
    anyhow::ensure!(
        args.image.exists(),
        "{}: no such file or folder",
        display_path(&args.image)
    );
    let input = display_path(&args.image);
    let decoded = seer_image::decode_file_full(&args.image, &args.run.limits(Default::default()))
        .with_context(|| format!("cannot read {input}"))?;
    let pixels = answerer.preprocess(&decoded);
    let answer = answerer
        .answer(pixels, 1, std::slice::from_ref(&args.question), &options)?
        .pop()
        .context("the model returned no answer")?;
    match args.json {
        true => out!(
            "{}",
            serde_json::json!({
                "input": input,
                "question": args.question,
                "answer": answer.text,
                "tokens": answer.tokens,
            })
        )?,
        false => out!("{}", answer.text)?,
    }
    Ok(ExitCode::SUCCESS)
}
