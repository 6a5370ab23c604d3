//! `seer eval zeroshot`: top-1/top-5 accuracy on a labelled image set.

use std::path::PathBuf;
use std::process::ExitCode;

use seer_engine::dataset::read_labeled_images;
use seer_engine::eval::evaluate_zeroshot;
use seer_engine::prompts::{read_list, templates, ListKind};
use seer_engine::retrieval::{evaluate_retrieval, read_captions_jsonl};
use seer_engine::ZeroShotClassifier;

use crate::common::ModelArgs;
use crate::output::progress;

#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// Zero-shot classification accuracy.
    Zeroshot(ZeroShotArgs),
    /// Text-to-image and image-to-text retrieval recall@K.
    Retrieval(RetrievalArgs),
}

#[derive(clap::Args)]
pub struct RetrievalArgs {
    /// JSONL with {"file": ..., "captions": [...]} per image.
    #[arg(long)]
    captions: PathBuf,
    /// Folder the "file" paths are relative to (default: the captions file's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Recall cut-offs.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    k: Vec<usize>,
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ZeroShotArgs {
    /// A labels.csv (columns file, class_index), a folder holding one, or a folder of class folders.
    #[arg(long)]
    data: PathBuf,
    /// Class names in class-index order: one per line, a JSON list, or prompts.json#DATASET.
    #[arg(long)]
    classes: String,
    /// Prompt templates: default, imagenet, or a FILE (one per line, JSON list, or prompts.json#DATASET).
    #[arg(long, default_value = "default")]
    templates: String,
    /// Evaluate only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EvalCommand::Zeroshot(args) => zeroshot(args),
        EvalCommand::Retrieval(args) => retrieval(args),
    }
}

fn retrieval(args: RetrievalArgs) -> anyhow::Result<ExitCode> {
    let items = read_captions_jsonl(&args.captions, args.images.as_deref())?;
    let model = args.model.load()?;
    let report = evaluate_retrieval(&model, &items, &args.k, &args.model.embed_options(true)?)?;
    for (path, cause) in &report.failures {
        let path = path.display().to_string();
        let cause = crate::output::cause_without_path(&path, cause);
        eprintln!("error: {path}: {cause}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{} images, {} captions", report.images, report.captions);
        for (name, recalls) in [
            ("text -> image", &report.text_to_image),
            ("image -> text", &report.image_to_text),
        ] {
            let cells: Vec<String> = recalls
                .iter()
                .map(|(k, r)| format!("R@{k} {:.2}%", r * 100.0))
                .collect();
            println!("{name}: {}", cells.join("  "));
        }
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn zeroshot(args: ZeroShotArgs) -> anyhow::Result<ExitCode> {
    let classes = read_list(&args.classes, ListKind::Classes)?;
    let templates = templates(&args.templates)?;
    let mut items = read_labeled_images(&args.data, &classes)?;
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    let model = args.model.load()?;
    let classifier =
        ZeroShotClassifier::new(model.text()?, &classes, &templates, args.model.batch_size)?;
    let pb = progress(items.len(), "evaluating");
    let report = evaluate_zeroshot(
        model.image()?,
        &classifier,
        &items,
        &args.model.embed_options(true)?,
        || pb.inc(1),
    )?;
    pb.finish_and_clear();
    for (path, cause) in &report.failures {
        let path = path.display().to_string();
        let cause = crate::output::cause_without_path(&path, cause);
        eprintln!("error: {path}: {cause}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:<32} {:>7} {:>7} {:>7}",
            "class", "images", "top-1", "top-5"
        );
        for c in &report.per_class {
            println!(
                "{:<32} {:>7} {:>6.1}% {:>6.1}%",
                truncate(&c.class, 32),
                c.images,
                c.top1 * 100.0,
                c.top5 * 100.0
            );
        }
        println!(
            "\n{} images, {} classes, {} templates: top-1 {:.2}%, top-5 {:.2}%{}",
            report.images,
            classes.len(),
            templates.len(),
            report.top1 * 100.0,
            report.top5 * 100.0,
            if report.failures.is_empty() {
                String::new()
            } else {
                format!(" ({} unreadable)", report.failures.len())
            }
        );
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
