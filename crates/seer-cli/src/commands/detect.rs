//! `seer detect`: boxes for text labels or an example image, from an OWL-ViT
//! or OWLv2 checkpoint. The queries are embedded once for the whole batch.
//!
//! Defaults follow transformers: threshold 0.1 for labels and 0.0 for an
//! image query (`post_process_object_detection` and
//! `post_process_image_guided_detection`); NMS at IoU 0.3 per label, and
//! `--nms 1` turns it off, which is exactly the reference post-processing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use seer_engine::detect::{
    detector_of, one_item_per_thread, DetectOptions, DetectQuery, Detection, DEFAULT_NMS_IOU,
};
use seer_engine::{collect_image_paths, DeviceChoice};
use seer_index::pathcodec::display_path;

use crate::common::RunArgs;
use crate::output::{progress, Failures};

#[derive(clap::Args)]
pub struct Args {
    /// Image files or folders.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Detection model (OWL-ViT or OWLv2): a folder, an alias or a hub id.
    #[arg(long, short)]
    model: String,
    /// What to look for, comma-separated ("a cat,a dog").
    #[arg(
        long,
        required_unless_present = "image_query",
        conflicts_with = "image_query"
    )]
    labels: Option<String>,
    /// Find more of what this image shows (one-shot, image-conditioned detection).
    #[arg(long, value_name = "FILE")]
    image_query: Option<PathBuf>,
    /// Drop boxes scoring below this (default 0.1 for labels, 0.0 for an image
    /// query, as transformers).
    #[arg(long)]
    threshold: Option<f32>,
    /// Per-label non-maximum suppression IoU; 1 turns it off.
    #[arg(long, default_value_t = DEFAULT_NMS_IOU)]
    nms: f32,
    #[command(flatten)]
    run: RunArgs,
    /// One JSON object per image: {"input", "detections": [{"label", "score",
    /// "box": [x0, y0, x1, y1]}]}, boxes in the image's pixels, best first.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let limits = args.run_limits();
    let query = match (&args.labels, &args.image_query) {
        (_, Some(path)) => DetectQuery::Image(
            seer_image::decode_file_full(path, &limits)
                .with_context(|| format!("cannot read the image query {}", path.display()))?,
        ),
        (Some(labels), None) => {
            DetectQuery::Texts(labels.split(',').map(|l| l.trim().to_string()).collect())
        }
        (None, None) => anyhow::bail!("give --labels or --image-query"),
    };
    let options = DetectOptions {
        threshold: args.threshold.unwrap_or_else(|| query.default_threshold()),
        nms_iou: args.nms,
    };
    options.validate()?;
    let model = args.run.load(&args.model)?;
    let detector = detector_of(&model)?;
    let prepared = detector.prepare(&query)?;

    let (paths, walk_failures) = collect_image_paths(&args.images);
    let pb = progress(paths.len(), "detecting");
    let mut failures = Failures::default();
    for (path, cause) in walk_failures {
        failures.report_path(&pb, &path, &cause);
    }
    let on_cpu = DeviceChoice::parse(&args.run.device)? == DeviceChoice::Cpu;
    let detect_file = |path: &PathBuf| -> anyhow::Result<Vec<Detection>> {
        let img = seer_image::decode_file_full(path, &limits)?;
        Ok(detector.detect(&img, &prepared, &options)?)
    };
    let mut done = 0;
    let group = rayon::current_num_threads().max(1);
    for (path, result) in paths.chunks(group).flat_map(|files| {
        files
            .iter()
            .zip(one_item_per_thread(on_cpu, files, &detect_file))
    }) {
        pb.inc(1);
        let detections = match result {
            Ok(d) => d,
            Err(e) => {
                failures.report_path(&pb, path, &format!("{e:#}"));
                continue;
            }
        };
        let input = display_path(path);
        let mut out = std::io::stdout().lock();
        if args.json {
            let line = JsonLine {
                input: &input,
                detections: detections
                    .iter()
                    .map(|d| JsonDetection {
                        label: &d.label,
                        score: d.score,
                        bbox: d.bbox,
                    })
                    .collect(),
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            for d in &detections {
                let [x0, y0, x1, y1] = d.bbox;
                writeln!(
                    out,
                    "{input}\t{}\t{:.3}\t{x0:.1},{y0:.1},{x1:.1},{y1:.1}",
                    d.label, d.score
                )?;
            }
        }
        done += 1;
    }
    pb.finish_and_clear();
    failures.summary(done, "images");
    Ok(failures.exit_code())
}

/// `--json`: fields in the documented order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    input: &'a str,
    detections: Vec<JsonDetection<'a>>,
}

#[derive(serde::Serialize)]
struct JsonDetection<'a> {
    label: &'a str,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

impl Args {
    fn run_limits(&self) -> seer_image::DecodeLimits {
        self.run.limits(Default::default())
    }
}
