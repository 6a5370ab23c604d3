//! `seer classify`: zero-shot labels for images.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use seer_engine::prompts::{read_list, templates, ListKind};
use seer_engine::{collect_image_paths, ZeroShotClassifier};
use seer_index::pathcodec::display_path;

use crate::common::ModelArgs;
use crate::output::{progress, Failures};

#[derive(clap::Args)]
pub struct Args {
    /// Image files or folders.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Comma-separated class names.
    #[arg(long, value_delimiter = ',', required_unless_present = "labels_file")]
    labels: Vec<String>,
    /// Class names, one per line (or a JSON list, or prompts.json#DATASET).
    #[arg(long, value_name = "FILE", conflicts_with = "labels")]
    labels_file: Option<String>,
    /// Prompt templates: default, imagenet, or a FILE (one per line, JSON list, or prompts.json#DATASET).
    #[arg(long, default_value = "default")]
    templates: String,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5, value_parser = crate::common::at_least_one)]
    top_k: usize,
    /// One JSON object per image: {"input": ..., "predictions": [{"label", "index", "probability"}]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let labels: Vec<String> = match &args.labels_file {
        Some(file) => read_list(file, ListKind::Classes)?,
        None => args
            .labels
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    };
    anyhow::ensure!(!labels.is_empty(), "no labels given");
    let templates = templates(&args.templates)?;
    let model = args.model.load()?;
    let classifier =
        ZeroShotClassifier::new(model.text()?, &labels, &templates, args.model.batch_size)?;
    let options = args.model.embed_options(true)?;

    let (paths, walk_failures) = collect_image_paths(&args.images);
    let pb = progress(paths.len(), "classifying");
    let mut failures = Failures::default();
    for (path, cause) in walk_failures {
        failures.report_path(&pb, &path, &cause);
    }
    let mut write_error = None;
    // Counted as written (walk failures are not among `paths`).
    let mut done = 0;
    model
        .image()?
        .embed_image_files(&paths, &options, |outcome| {
            pb.inc(1);
            // Escaped: a name may hold a newline (one line per image) or not be UTF-8.
            let input = display_path(&outcome.path);
            match outcome.result {
                Ok(embedding) => {
                    let top = classifier.top_k(&classifier.probabilities(&embedding), args.top_k);
                    let mut out = std::io::stdout().lock();
                    let written = if args.json {
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({ "input": input, "predictions": top })
                        )
                    } else {
                        let best: Vec<String> = top
                            .iter()
                            .map(|p| format!("{} {:.1}%", p.label, p.probability * 100.0))
                            .collect();
                        writeln!(out, "{input}\t{}", best.join(", "))
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
        })?;
    pb.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    failures.summary(done, "images");
    Ok(failures.exit_code())
}
