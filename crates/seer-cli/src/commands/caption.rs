//! `seer caption`: a caption for each image, from a BLIP captioning model.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use seer_engine::collect_image_paths;
use seer_engine::describe::CaptionOptions;
use seer_index::pathcodec::display_path;

use crate::common::{GenerationArgs, RunArgs};
use crate::output::{progress, Failures};

/// The captioning model used when none is named.
pub const DEFAULT_CAPTION_MODEL: &str = "blip-base";

#[derive(clap::Args)]
pub struct Args {
    /// Image files or folders.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Captioning model: a folder, an alias (`seer models`) or a hub id.
    #[arg(long, short, default_value = DEFAULT_CAPTION_MODEL)]
    model: String,
    /// Text every caption starts with (conditional captioning, e.g. "a picture of").
    #[arg(long)]
    prompt: Option<String>,
    #[command(flatten)]
    generation: GenerationArgs,
    #[command(flatten)]
    run: RunArgs,
    /// One JSON object per image: {"input", "caption", "tokens"}; `tokens` is the
    /// whole id sequence transformers' `generate` returns, prompt included.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let generate = args.generation.options()?;
    if args.prompt.as_deref().is_some_and(|p| p.trim().is_empty()) {
        bail!("--prompt is empty: give the words every caption starts with, or leave it out");
    }
    let model = args.run.load(&args.model)?;
    let captioner = model.captioner()?;
    // Checked once, before any image: the prompt and the length to generate
    // (a text the model cannot read is one usage error, exit 2, not a failure
    // blamed on every image).
    captioner.check_prompt(args.prompt.as_deref(), "--prompt", &generate)?;
    let options = CaptionOptions {
        batch_size: args.run.batch_size.max(1),
        limits: args.run.limits(Default::default()),
        prompt: args.prompt.clone(),
        generate,
    };
    let (paths, walk_failures) = collect_image_paths(&args.images);
    let pb = progress(paths.len(), "captioning");
    let mut failures = Failures::default();
    for (path, cause) in walk_failures {
        failures.report_path(&pb, &path, &cause);
    }
    let mut done = 0;
    let mut write_error = None;
    captioner.caption_files(&paths, &options, |outcome| {
        pb.inc(1);
        let input = display_path(&outcome.path);
        match outcome.result {
            Ok(caption) => {
                let mut out = std::io::stdout().lock();
                let written = match args.json {
                    true => writeln!(
                        out,
                        "{}",
                        serde_json::json!({
                            "input": input,
                            "caption": caption.text,
                            "tokens": caption.tokens,
                        })
                    ),
                    false => writeln!(out, "{input}\t{}", caption.text),
                };
                match written {
                    Ok(()) => done += 1,
                    Err(e) => {
                        write_error.get_or_insert(e);
                    }
                }
            }
            Err(e) => failures.report_path(&pb, &outcome.path, &e.to_string()),
        }
    });
    pb.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    failures.summary(done, "images");
    Ok(failures.exit_code())
}
