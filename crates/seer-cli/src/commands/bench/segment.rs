//! `seer bench --model` for a SAM folder: the image encoder (preprocessed
//! pixels to the image embedding, seconds per image) and the prompt-to-mask
//! decoder per click (prompt encoder + mask decoder from a cached embedding:
//! one foreground point, three masks; and one box, one mask), model only and
//! with `post_process_masks` to the original size (what a user waits for per
//! click). With `--reference` the same folder runs in transformers in the same
//! invocation (`scripts/bench_vision_reference.py --task sam`:
//! `get_image_embeddings`, then `SamModel(image_embeddings=...)`), at the same
//! thread count, and seer's speed-up over it is printed.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use seer_engine::sam::Sam;
use seer_engine::segment::{SegmentPrompt, Segmenter};
use seer_engine::LoadOptions;
use seer_hub::ResolvedModel;
use serde_json::{json, Value};

use super::detect::{bench_image, print_rows, reference_run, Row};
use super::Args;

/// Clicks timed per decoder measurement (after one warm-up).
const CLICKS: usize = 20;

pub(super) fn run(args: &Args, resolved: &ResolvedModel) -> anyhow::Result<ExitCode> {
    let options = LoadOptions {
        tokenizer: None,
        progress: false,
        precision: args.precision,
        device: seer_engine::DeviceChoice::parse(&args.device)?,
    };
    let sam = Sam::load_dir(&resolved.dir, &options)
        .with_context(|| format!("cannot load model '{}'", resolved.id))?;
    let (image, image_path) = bench_image(args)?;
    let (w, h) = (image.width() as f32, image.height() as f32);
    let mut results = json!({
        "model": resolved.id,
        "family": "sam",
        "task": "segment",
        "threads": args.threads,
        "device": args.device,
        "precision": args.precision.name(),
        "image": image_path,
        "image_size": [image.width(), image.height()],
        "iterations": args.iterations.max(1),
        "clicks": CLICKS,
    });
    super::describe_cpu(args.precision, &mut results);

    let (pixels, _, _) = sam.pixels(&image)?;
    let device = pixels.device().clone();
    sam.model().embed(&pixels)?; // warm-up
    device.synchronize()?;
    let n = args.iterations.max(1);
    let start = Instant::now();
    for _ in 0..n {
        sam.model().embed(&pixels)?;
    }
    device.synchronize()?;
    let encoder = start.elapsed().as_secs_f64() / n as f64;
    results["encoder_s"] = json!(encoder);
    diag!(
        "seer  image encoder:            {:8.1} ms per image",
        encoder * 1e3
    );

    let embedded = sam.embed(&image)?;
    let point = SegmentPrompt {
        points: vec![(w * 0.5, h * 0.45, true)],
        ..Default::default()
    };
    let bbox = SegmentPrompt {
        boxes: vec![[w * 0.1, h * 0.2, w * 0.7, h * 0.9]],
        ..Default::default()
    };
    for (key, prompt, multimask) in [("point", &point, true), ("box", &bbox, false)] {
        let raw = sam.input_prompts(&embedded, prompt)?;
        let timed = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
            f()?;
            device.synchronize()?;
            let start = Instant::now();
            for _ in 0..CLICKS {
                f()?;
            }
            device.synchronize()?;
            Ok(start.elapsed().as_secs_f64() / CLICKS as f64)
        };
        let decoder = timed(&|| {
            sam.predict_raw(&embedded, &raw[0], multimask)?;
            Ok(())
        })?;
        let click = timed(&|| {
            sam.segment(&embedded, prompt, multimask)?;
            Ok(())
        })?;
        results[format!("decoder_{key}_s")] = json!(decoder);
        results[format!("click_{key}_s")] = json!(click);
        diag!(
            "seer  decoder per click ({key:<5}): {:8.2} ms, {:8.2} ms with masks at {}x{}",
            decoder * 1e3,
            click * 1e3,
            w,
            h
        );
    }
    let rows = [
        Row::new("image encoder (ms/image)", "encoder_s"),
        Row::new("decoder, 1 point, 3 masks (ms/click)", "decoder_point_s"),
        Row::new("  + masks at original size", "click_point_s"),
        Row::new("decoder, 1 box, 1 mask (ms/click)", "decoder_box_s"),
        Row::new("  + masks at original size", "click_box_s"),
    ];
    if let Some(python) = &args.reference {
        let reference = reference_run(python, args, "sam", resolved, &image_path)?;
        attach(&mut results, reference, &rows);
    }
    if args.json {
        out!("{results}")?;
    } else {
        print_rows(&results, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The reference's figures and seer's speed-up (reference time over seer's)
/// per row, plus the load average after it.
pub(super) fn attach(results: &mut Value, reference: Value, rows: &[Row]) {
    results["load_average"]["end"] = json!(super::cpu::load_average());
    for row in rows {
        let (a, b) = (results[row.key].as_f64(), reference[row.key].as_f64());
        results["ratio"][row.key] = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => json!(b / a),
            _ => Value::Null,
        };
    }
    results["reference"] = reference;
}
