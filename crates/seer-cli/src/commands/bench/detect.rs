//! `seer bench --model` for an OWL-ViT / OWLv2 folder: detection per image with
//! text queries embedded once (as `seer detect` runs a batch of photos), model
//! only (preprocessed pixels to logits and boxes) and end to end from a decoded
//! image (preprocessing, the image tower, the heads and post-processing with
//! transformers' default threshold). With `--reference` the same folder runs in
//! transformers in the same invocation (`scripts/bench_vision_reference.py
//! --task owl`): the text queries embedded once too, then per image the public
//! pieces of `forward` without the text tower (`image_embedder`,
//! `class_predictor`, `box_predictor`, OWLv2's `objectness_predictor`), and
//! `post_process_object_detection` end to end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use seer_engine::detect::{
    DetectOptions, DetectQuery, Detector, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD,
};
use seer_engine::owlvit::Owl;
use seer_engine::{collect_image_paths, LoadOptions};
use seer_hub::ResolvedModel;
use seer_image::DecodedImage;
use seer_models::Tensor;
use serde_json::{json, Value};

use super::Args;

/// The text queries, embedded once.
pub(super) const QUERIES: &[&str] = &["a photo of a cat", "a photo of a dog", "a person", "a car"];

pub(super) fn run(args: &Args, resolved: &ResolvedModel) -> anyhow::Result<ExitCode> {
    let options = LoadOptions {
        tokenizer: args.tokenizer.clone(),
        progress: false,
        precision: args.precision,
        device: seer_engine::DeviceChoice::parse(&args.device)?,
    };
    let owl = Owl::load_dir(&resolved.dir, &options)
        .with_context(|| format!("cannot load model '{}'", resolved.id))?;
    let (image, image_path) = bench_image(args)?;
    let mut results = json!({
        "model": resolved.id,
        "family": "owlvit",
        "task": "detect",
        "threads": args.threads,
        "device": args.device,
        "precision": args.precision.name(),
        "image": image_path,
        "image_size": [image.width(), image.height()],
        "queries": QUERIES,
        "iterations": args.iterations.max(1),
    });
    super::describe_cpu(args.precision, &mut results);
    let texts: Vec<String> = QUERIES.iter().map(|q| q.to_string()).collect();
    let queries = owl.prepare(&DetectQuery::Texts(texts.clone()))?;
    let embeddings = owl.embed_labels(&texts)?;
    let s = owl.model().config().image_size;
    let device = owl.model().device().clone();
    let pixels = Tensor::from_vec(owl.preprocess(&image), (1, 3, s, s), &device)?;
    let detect_options = DetectOptions {
        threshold: DEFAULT_TEXT_THRESHOLD,
        nms_iou: DEFAULT_NMS_IOU,
    };
    let n = args.iterations.max(1);
    let timed = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        f()?;
        device.synchronize()?;
        let start = Instant::now();
        for _ in 0..n {
            f()?;
        }
        device.synchronize()?;
        Ok(start.elapsed().as_secs_f64() / n as f64)
    };
    let model_only = timed(&|| {
        let features = owl.model().image(&pixels)?;
        owl.outputs(&features, &embeddings)?;
        Ok(())
    })?;
    let e2e = timed(&|| {
        owl.detect(&image, &queries, &detect_options)?;
        Ok(())
    })?;
    results["detect_model_s"] = json!(model_only);
    results["detect_e2e_s"] = json!(e2e);
    diag!(
        "seer  detection per image: {:8.1} ms model only, {:8.1} ms end to end ({} queries)",
        model_only * 1e3,
        e2e * 1e3,
        QUERIES.len()
    );
    let rows = [
        Row::new("detection, model only (ms/image)", "detect_model_s"),
        Row::new("detection, end to end (ms/image)", "detect_e2e_s"),
    ];
    if let Some(python) = &args.reference {
        let reference = reference_run(python, args, "owl", resolved, &image_path)?;
        super::segment::attach(&mut results, reference, &rows);
    }
    if args.json {
        out!("{results}")?;
    } else {
        print_rows(&results, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A printed row: its label and its key in the results (seconds).
pub(super) struct Row {
    pub label: &'static str,
    pub key: &'static str,
}

impl Row {
    pub fn new(label: &'static str, key: &'static str) -> Self {
        Self { label, key }
    }
}

/// The first image of `--images` (or a COCO photo of the shared data when
/// that is empty), decoded once: both engines time the model, not the decoder.
pub(super) fn bench_image(args: &Args) -> anyhow::Result<(DecodedImage, String)> {
    let (files, _) = collect_image_paths(std::slice::from_ref(&args.images));
    let fallback = PathBuf::from("../shared/data/coco-mini/images/val2017/000000000139.jpg");
    let path = files.into_iter().next().unwrap_or(fallback);
    let image = seer_image::decode_file_full(&path, &Default::default()).with_context(|| {
        format!(
            "the benchmark needs one image: pass --images FILE (tried {})",
            path.display()
        )
    })?;
    Ok((image, path.display().to_string()))
}

/// `scripts/bench_vision_reference.py --task TASK` on the same folder, image,
/// iterations and threads; its last stdout line is the JSON.
pub(super) fn reference_run(
    python: &Path,
    args: &Args,
    task: &str,
    resolved: &ResolvedModel,
    image: &str,
) -> anyhow::Result<Value> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_vision_reference.py");
    diag!("running the PyTorch reference ({})...", python.display());
    let mut command = std::process::Command::new(python);
    // PyTorch alone: its caps need no flag for the script.
    super::cpu::cap_reference(&mut command);
    let output = command
        .arg(&script)
        .args(["--task", task])
        .arg("--model")
        .arg(&resolved.dir)
        .args(["--image", image])
        .args(["--threads", &args.threads.to_string()])
        .args(["--iterations", &args.iterations.max(1).to_string()])
        .args(["--device", &args.device])
        .args(["--queries", &serde_json::to_string(QUERIES)?])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "the reference benchmark failed ({})",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("unexpected reference output: {last}"))
}

/// One row per measurement: seer's milliseconds, PyTorch's, and seer's
/// speed-up over PyTorch (its time over seer's: above 1 means seer is faster).
pub(super) fn print_rows(r: &Value, rows: &[Row]) -> anyhow::Result<()> {
    out!(
        "model: {}   threads: {}   device: {}   precision: {}",
        r["model"].as_str().unwrap_or("?"),
        r["threads"],
        r["device"].as_str().unwrap_or("cpu"),
        r["precision"].as_str().unwrap_or("f32")
    )?;
    out!("cpu: {}", super::cpu::summary(&r["cpu"]))?;
    out!(
        "image: {} ({}x{})",
        r["image"].as_str().unwrap_or("?"),
        r["image_size"][0],
        r["image_size"][1]
    )?;
    if let (Some(start), Some(end)) = (
        r["load_average"]["start"].as_f64(),
        r["load_average"]["end"].as_f64(),
    ) {
        out!("load average (1 min): {start:.2} before the run, {end:.2} after the reference")?;
    }
    out!(
        "{:<38} {:>10} {:>10} {:>8}",
        "measurement (milliseconds)",
        "seer",
        "pytorch",
        "speed-up"
    )?;
    let ms = |v: &Value| {
        v.as_f64()
            .map(|s| format!("{:10.2}", s * 1e3))
            .unwrap_or_else(|| format!("{:>10}", "-"))
    };
    for row in rows {
        let ratio = r["ratio"][row.key]
            .as_f64()
            .map(|x| format!("{x:7.2}x"))
            .unwrap_or_else(|| format!("{:>8}", "-"));
        out!(
            "{:<38} {} {} {ratio}",
            row.label,
            ms(&r[row.key]),
            ms(&r["reference"][row.key])
        )?;
    }
    Ok(())
}
