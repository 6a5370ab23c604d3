//! `seer eval zeroshot`: top-1/top-5 accuracy on a labelled image set.
//! `seer eval retrieval`: image-text recall@K on a captioned image set.
//! `seer eval caption`: BLEU and CIDEr-D of a captioning model on a captioned
//! image set, scored as the COCO caption evaluation scores them.
//! `seer eval segment`: box-prompted segmentation mIoU on COCO instances
//! (every object's ground-truth box prompts SAM, one mask per box, scored
//! against the COCO mask as pycocotools decodes it; crowd regions skipped).

use std::path::PathBuf;
use std::process::ExitCode;

use seer_engine::caption_metrics::evaluate_captioning;
use seer_engine::dataset::read_labeled_images;
use seer_engine::describe::CaptionOptions;
use seer_engine::eval::evaluate_zeroshot;
use seer_engine::prompts::{read_list, templates, ListKind};
use seer_engine::retrieval::{evaluate_retrieval, read_captions_jsonl};
use seer_engine::segment_eval::{
    evaluate_segmentation, read_coco_instances, SegmentEvalOptions, SegmentEvalReport,
};
use seer_engine::ZeroShotClassifier;

use crate::common::{GenerationArgs, ModelArgs, RunArgs};
use crate::output::{progress, Failures};

#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// Zero-shot classification accuracy.
    Zeroshot(ZeroShotArgs),
    /// Text-to-image and image-to-text retrieval recall@K.
    Retrieval(RetrievalArgs),
    /// BLEU-1..4 and CIDEr-D of a captioning model against human references
    /// (as the COCO caption evaluation, pycocoevalcap, computes them).
    Caption(CaptionArgs),
    /// Box-prompted segmentation mIoU on COCO instances: each object's
    /// ground-truth box prompts the model (one mask per box), scored against
    /// its COCO mask; crowd regions are skipped unless --include-crowd.
    Segment(SegmentArgs),
}

#[derive(clap::Args)]
pub struct SegmentArgs {
    /// A COCO folder (annotations/instances_<split>.json, images in
    /// images/<split>/ or <split>/), or one instances JSON file.
    #[arg(long)]
    data: PathBuf,
    /// Folder of the image files (default: found beside the annotations).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Only this split (e.g. val2017); default every instances_*.json.
    #[arg(long)]
    split: Option<String>,
    /// Evaluate only the first N images (sorted by split, then file name).
    #[arg(long)]
    limit: Option<usize>,
    /// Also score crowd annotations (iscrowd: 1), which box-prompt
    /// evaluations leave out.
    #[arg(long)]
    include_crowd: bool,
    /// Segmentation model (SamModel / SlimSAM): a folder, an alias or a hub id.
    #[arg(long, short)]
    model: String,
    #[command(flatten)]
    run: RunArgs,
    /// Print the report as one JSON object: {model, images, instances, miou,
    /// category_miou, per_category, skipped_crowd, skipped_empty,
    /// images_without_objects, multimask, failed, per_instance}; IoU 0-1.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CaptionArgs {
    /// JSONL with {"file": ..., "captions": [...]} per image: the human references.
    #[arg(long)]
    captions: PathBuf,
    /// Folder the "file" paths are relative to (default: the captions file's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Evaluate only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Captioning model: a folder, an alias (`seer models`) or a hub id.
    #[arg(long, short, default_value = super::caption::DEFAULT_CAPTION_MODEL)]
    model: String,
    /// Text every caption starts with (conditional captioning, e.g. "a picture of").
    /// It is cut from the captions before scoring, as BLIP's own evaluation does.
    #[arg(long)]
    prompt: Option<String>,
    #[command(flatten)]
    generation: GenerationArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Print the report as one JSON object: {images, bleu4, bleu, cider, failed,
    /// per_image}; scores on pycocoevalcap's scale (BLEU 0-1, CIDEr 0-10).
    #[arg(long)]
    json: bool,
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
    #[arg(long, value_delimiter = ',', default_value = "1,5,10", value_parser = crate::common::at_least_one)]
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
        EvalCommand::Caption(args) => caption(args),
        EvalCommand::Segment(args) => segment(args),
    }
}

fn segment(args: SegmentArgs) -> anyhow::Result<ExitCode> {
    check_limit(args.limit)?;
    let mut data = read_coco_instances(&args.data, args.images.as_deref(), args.split.as_deref())?;
    if let Some(n) = args.limit {
        data.images.truncate(n);
    }
    anyhow::ensure!(
        !data.images.is_empty(),
        "{}: the annotations list no images",
        args.data.display()
    );
    anyhow::ensure!(
        data.images.iter().any(|i| !i.objects.is_empty()),
        "{}: the images{} have no object annotations to score",
        args.data.display(),
        if args.limit.is_some() {
            " kept by --limit"
        } else {
            ""
        }
    );
    let model = args.run.load(&args.model)?;
    let segmenter = model.segmenter()?;
    let options = SegmentEvalOptions {
        include_crowd: args.include_crowd,
        limits: args.run.limits(Default::default()),
    };
    let pb = progress(data.images.len(), "segmenting");
    let mut failures = Failures::default();
    let report = evaluate_segmentation(segmenter, &data, &options, |path, result| {
        pb.inc(1);
        if let Err(e) = result {
            failures.report_path(&pb, path, &e.to_string());
        }
    });
    pb.finish_and_clear();
    // Unreadable annotations fail alone (the image is still scored).
    for f in report.failed.iter().filter(|f| f.annotation_id.is_some()) {
        failures.report(&pb, &f.file, &f.error);
    }
    // A mean of nothing is no score: say why instead of printing 0% (failed
    // images are reported as failures, exit 1, below).
    if report.instances == 0 && report.failed.is_empty() {
        anyhow::bail!(
            "no object was scored, so there is no mIoU: {} crowd skipped{}, {} empty masks \
             skipped, {} failed",
            report.skipped_crowd,
            if args.include_crowd {
                ""
            } else {
                " (--include-crowd scores them)"
            },
            report.skipped_empty,
            report.failed.len()
        );
    }
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["model"] = serde_json::json!(model.id);
        out!("{value}")?;
    } else {
        print_segment_report(&report)?;
    }
    Ok(failures.exit_code())
}

fn print_segment_report(report: &SegmentEvalReport) -> anyhow::Result<()> {
    out!("{:<24} {:>9} {:>7}", "category", "instances", "mIoU")?;
    for c in &report.per_category {
        out!(
            "{:<24} {:>9} {:>6.2}%",
            truncate(&c.name, 24),
            c.instances,
            c.miou * 100.0
        )?;
    }
    let mut notes = Vec::new();
    if report.skipped_crowd > 0 {
        notes.push(format!("{} crowd skipped", report.skipped_crowd));
    }
    if report.skipped_empty > 0 {
        notes.push(format!("{} empty masks skipped", report.skipped_empty));
    }
    if !report.failed.is_empty() {
        notes.push(format!("{} failed", report.failed.len()));
    }
    out!(
        "\n{} images, {} objects (box prompts, one mask each): mIoU {:.2}%, category mIoU {:.2}%{}",
        report.images,
        report.instances,
        report.miou * 100.0,
        report.category_miou * 100.0,
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        }
    )?;
    Ok(())
}

/// `--limit`, checked before anything is read: at least 1 (0 would score
/// nothing and print 0%).
fn check_limit(limit: Option<usize>) -> anyhow::Result<()> {
    anyhow::ensure!(limit != Some(0), "--limit must be at least 1");
    Ok(())
}

fn caption(args: CaptionArgs) -> anyhow::Result<ExitCode> {
    check_limit(args.limit)?;
    let mut items = read_captions_jsonl(&args.captions, args.images.as_deref())?;
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    let options = CaptionOptions {
        batch_size: args.run.batch_size.max(1),
        limits: args.run.limits(Default::default()),
        prompt: args.prompt.clone(),
        generate: args.generation.options()?,
    };
    let model = args.run.load(&args.model)?;
    let captioner = model.captioner()?;
    let pb = progress(items.len(), "captioning");
    let mut failures = Failures::default();
    let report = evaluate_captioning(captioner, &items, &options, |path, result| {
        pb.inc(1);
        if let Err(e) = result {
            failures.report_path(&pb, path, &e.to_string());
        }
    });
    pb.finish_and_clear();
    let report = report?;
    if args.json {
        out!("{}", serde_json::to_string(&report)?)?;
    } else {
        let bleu: Vec<String> = report
            .bleu
            .iter()
            .enumerate()
            .map(|(k, b)| format!("BLEU-{} {:.2}", k + 1, b * 100.0))
            .collect();
        out!(
            "{} images{}: {}  CIDEr {:.2}",
            report.images,
            if report.failed.is_empty() {
                String::new()
            } else {
                format!(" ({} failed)", report.failed.len())
            },
            bleu.join("  "),
            report.cider * 100.0
        )?;
    }
    Ok(failures.exit_code())
}

fn retrieval(args: RetrievalArgs) -> anyhow::Result<ExitCode> {
    let items = read_captions_jsonl(&args.captions, args.images.as_deref())?;
    let model = args.model.load()?;
    let report = evaluate_retrieval(&model, &items, &args.k, &args.model.embed_options(true)?)?;
    for (path, cause) in &report.failures {
        let path = path.display().to_string();
        let cause = crate::output::cause_without_path(&path, cause);
        diag!("error: {path}: {cause}");
    }
    if args.json {
        out!("{}", serde_json::to_string(&report)?)?;
    } else {
        out!("{} images, {} captions", report.images, report.captions)?;
        for (name, recalls) in [
            ("text -> image", &report.text_to_image),
            ("image -> text", &report.image_to_text),
        ] {
            let cells: Vec<String> = recalls
                .iter()
                .map(|(k, r)| format!("R@{k} {:.2}%", r * 100.0))
                .collect();
            out!("{name}: {}", cells.join("  "))?;
        }
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn zeroshot(args: ZeroShotArgs) -> anyhow::Result<ExitCode> {
    check_limit(args.limit)?;
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
        diag!("error: {path}: {cause}");
    }
    if args.json {
        out!("{}", serde_json::to_string(&report)?)?;
    } else {
        out!(
            "{:<32} {:>7} {:>7} {:>7}",
            "class",
            "images",
            "top-1",
            "top-5"
        )?;
        for c in &report.per_class {
            out!(
                "{:<32} {:>7} {:>6.1}% {:>6.1}%",
                truncate(&c.class, 32),
                c.images,
                c.top1 * 100.0,
                c.top5 * 100.0
            )?;
        }
        out!(
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
        )?;
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
