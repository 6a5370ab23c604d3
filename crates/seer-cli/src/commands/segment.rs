//! `seer segment`: cut objects out of images with SAM, from clicks and boxes
//! (`--point`, `--box`, `--mask-input`), from words (`--text`: an OWL detector
//! finds boxes, each box prompts SAM), or everything at once (`--auto`:
//! transformers' mask-generation pipeline). Each image is embedded once;
//! every object then costs only SAM's prompt encoder and mask decoder.
//!
//! Outputs: text lines or `--json` (one object per image), PNG cut-outs
//! (`--out`), COCO polygons (`--polygons`), one COCO instances file for all
//! images (`--coco`), and the low-resolution logits (`--logits`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use seer_engine::automask::AutoMaskOptions;
use seer_engine::collect_image_paths;
use seer_engine::detect::{
    detector_of, DetectOptions, DetectQuery, DEFAULT_NMS_IOU, DEFAULT_TEXT_THRESHOLD,
};
use seer_engine::segment::{outer_polygons, SegmentMask, SegmentPrompt};
use seer_index::pathcodec::display_path;
use serde_json::{json, Value};

use crate::common::RunArgs;
use crate::output::{progress, Failures, Lines};

/// The detector `--text` uses unless `--detector` names another.
pub const DEFAULT_DETECTOR: &str = "owlv2-b16";

#[derive(clap::Args)]
pub struct Args {
    /// Image files or folders.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// SAM model (SamModel / SlimSAM): a folder, an alias or a hub id.
    #[arg(long, short)]
    model: String,
    /// A click `X,Y` (foreground) or `X,Y,1` / `X,Y,0` (foreground / background),
    /// in the image's pixels. Repeatable.
    #[arg(long = "point", value_name = "X,Y[,0|1]")]
    points: Vec<String>,
    /// A box `X0,Y0,X1,Y1` in the image's pixels. Repeatable: each box is its own object.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1")]
    boxes: Vec<String>,
    /// Low-resolution logits of an earlier answer as a mask prompt: an f32 .npy of
    /// [256, 256], or [N, 256, 256] with `--mask-index`.
    #[arg(long, value_name = "FILE.npy")]
    mask_input: Option<PathBuf>,
    /// Which mask of a [N, 256, 256] `--mask-input` to use.
    #[arg(long, default_value_t = 0)]
    mask_index: usize,
    /// One mask per object instead of three (always so with --text).
    #[arg(long)]
    single: bool,

    /// Every object, without a prompt: a grid of points, filtered by predicted IoU
    /// and stability, deduplicated by box NMS (transformers' mask-generation pipeline).
    #[arg(long, conflicts_with_all = ["points", "boxes", "mask_input", "text"])]
    auto: bool,
    /// --auto: grid points per side (`points_per_crop`) [default: 32].
    #[arg(long, requires = "auto", value_name = "N")]
    points_per_side: Option<usize>,
    /// --auto: keep masks whose predicted IoU is above this (0 turns it off) [default: 0.88].
    #[arg(long, requires = "auto", value_name = "T")]
    pred_iou_thresh: Option<f32>,
    /// --auto: keep masks whose stability score is above this (0 turns it off) [default: 0.95].
    #[arg(long, requires = "auto", value_name = "T")]
    stability_score_thresh: Option<f32>,
    /// --auto: logit offset of the stability score [default: 1].
    #[arg(long, requires = "auto", value_name = "X")]
    stability_score_offset: Option<f32>,
    /// --auto: box IoU above which a mask is dropped for a better one (`crops_nms_thresh`) [default: 0.7].
    #[arg(long, requires = "auto", value_name = "IOU")]
    box_nms_thresh: Option<f32>,
    /// --auto: layers of overlapping crops run again (layer i has (2^i)² crops) [default: 0].
    #[arg(long, requires = "auto", value_name = "K")]
    crop_n_layers: Option<usize>,
    /// --auto: overlap of first-layer crops, as a fraction of the short side [default: 512/1500].
    #[arg(long, requires = "auto", value_name = "R")]
    crop_overlap_ratio: Option<f64>,
    /// --auto: crop layer i samples points-per-side / factor^i points per side [default: 1].
    #[arg(long, requires = "auto", value_name = "F")]
    crop_n_points_downscale_factor: Option<usize>,

    /// What to cut out, comma-separated ("the dog,a cat"): an OWL detector finds
    /// boxes and each box prompts SAM; masks carry the detection's label and score.
    #[arg(long, conflicts_with_all = ["points", "boxes", "mask_input"])]
    text: Option<String>,
    /// --text: detection model (OWL-ViT or OWLv2): a folder, an alias or a hub id [default: owlv2-b16].
    #[arg(long, requires = "text", value_name = "MODEL")]
    detector: Option<String>,
    /// --text: drop detections scoring below this (as `seer detect`) [default: 0.1].
    #[arg(long, requires = "text", value_name = "T")]
    threshold: Option<f32>,
    /// --text: per-label NMS IoU of the detections; 1 turns it off (as `seer detect`) [default: 0.3].
    #[arg(long, requires = "text", value_name = "IOU")]
    nms: Option<f32>,

    /// Add each mask's outer contours as COCO polygons (`polygons`) to the JSON,
    /// and use them as the segmentation in --coco.
    #[arg(long)]
    polygons: bool,
    /// Write one COCO instances JSON for all images (images, annotations with RLE
    /// or --polygons segmentation, bbox, area, score, categories).
    #[arg(long, value_name = "FILE.json")]
    coco: Option<PathBuf>,
    /// Write each mask as a PNG cut-out (the image's pixels, transparent outside the mask),
    /// NAME.maskN.png: NAME is the image's stem, or where inputs of the run share a stem,
    /// the file name, then the path below their shared folder (`a_x.jpg`); never reused.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write the low-resolution mask logits [masks, 256, 256] (the reference's
    /// `pred_masks`) as an f32 .npy; one image, prompted.
    #[arg(long, value_name = "FILE.npy", conflicts_with_all = ["auto"])]
    logits: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
    /// Print one JSON object per image: {"input", "model", "width", "height",
    /// "masks": [{"object", "iou", "area", "bbox", "rle", ...}]}; `rle` is COCO's
    /// uncompressed RLE, `bbox` COCO's [x, y, width, height].
    #[arg(long)]
    json: bool,
}

fn numbers(text: &str, what: &str, counts: &[usize]) -> anyhow::Result<Vec<f32>> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if !counts.contains(&parts.len()) {
        bail!(
            "--{what} '{text}': expected {} comma-separated numbers",
            counts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    parts
        .iter()
        .map(|p| {
            p.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("--{what} '{text}': '{p}' is not a number"))
        })
        .collect()
}

fn parse_prompt(args: &Args) -> anyhow::Result<SegmentPrompt> {
    let mut prompt = SegmentPrompt::default();
    for p in &args.points {
        let v = numbers(p, "point", &[2, 3])?;
        let fg = match v.get(2) {
            None => true,
            Some(1.0) => true,
            Some(0.0) => false,
            Some(l) => {
                bail!("--point '{p}': the label must be 1 (foreground) or 0 (background), got {l}")
            }
        };
        // Below zero is outside every image: refused here, before any image,
        // where a point past one image's right or bottom edge fails that image.
        if v[0] < 0.0 || v[1] < 0.0 {
            bail!("--point '{p}': x and y must not be negative (0,0 is the top-left corner)");
        }
        prompt.points.push((v[0], v[1], fg));
    }
    for b in &args.boxes {
        let v = numbers(b, "box", &[4])?;
        if v.iter().any(|&c| c < 0.0) {
            bail!("--box '{b}': coordinates must not be negative (0,0 is the top-left corner)");
        }
        if v[2] < v[0] || v[3] < v[1] {
            bail!(
                "--box '{b}': expected X0,Y0,X1,Y1 with x0 <= x1 and y0 <= y1 (the top-left \
                 corner, then the bottom-right one)"
            );
        }
        prompt.boxes.push([v[0], v[1], v[2], v[3]]);
    }
    if let Some(path) = &args.mask_input {
        prompt.mask_logits = Some(read_mask(path, args.mask_index)?);
    }
    if prompt.points.is_empty() && prompt.boxes.is_empty() && prompt.mask_logits.is_none() {
        bail!("give at least one --point, --box or --mask-input, or --text LABELS, or --auto");
    }
    Ok(prompt)
}

/// A little-endian f32 C-order .npy of [256, 256] or [N, 256, 256].
fn read_mask(path: &Path, index: usize) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let bad = |why: &str| anyhow::anyhow!("{}: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = String::from_utf8_lossy(header);
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("expected little-endian float32 ('<f4') in C order"));
    }
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in header"))?;
    let shape: Vec<usize> = shape_text
        .trim_start_matches([' ', '('])
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("unreadable shape"))?;
    let (n, side) = match shape.as_slice() {
        [h, w] if h == w => (1, *h),
        [n, h, w] if h == w => (*n, *h),
        other => {
            return Err(bad(&format!(
                "expected shape [256, 256] or [N, 256, 256], got {other:?}"
            )))
        }
    };
    if index >= n {
        return Err(bad(&format!(
            "--mask-index {index} but the file holds {n} masks"
        )));
    }
    let data = &bytes[start + header_len..];
    let plane = side * side;
    if data.len() < n * plane * 4 {
        return Err(bad("truncated data"));
    }
    Ok(data[index * plane * 4..(index + 1) * plane * 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> anyhow::Result<()> {
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    // Temporary beside it, renamed in place: a Ctrl-C or a full disk leaves no half file.
    crate::output::write_atomically(path, &bytes)
}

/// COCO uncompressed RLE: column-major runs, starting with a run of 0s.
fn rle(m: &SegmentMask) -> Vec<u32> {
    let (w, h) = (m.width as usize, m.height as usize);
    let mut counts = Vec::new();
    let (mut current, mut run) = (false, 0u32);
    for x in 0..w {
        for y in 0..h {
            let v = m.mask[y * w + x];
            if v != current {
                counts.push(run);
                current = v;
                run = 0;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// `[x, y, width, height]` of the mask (COCO's bbox), zeros for an empty mask.
fn bbox(m: &SegmentMask) -> [u32; 4] {
    let w = m.width as usize;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, _) in m.mask.iter().enumerate().filter(|(_, &v)| v) {
        let (x, y) = (i % w, i / w);
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 == usize::MAX {
        return [0; 4];
    }
    [
        x0 as u32,
        y0 as u32,
        (x1 - x0 + 1) as u32,
        (y1 - y0 + 1) as u32,
    ]
}

/// One output mask with what the mode adds to it.
struct OutMask {
    mask: SegmentMask,
    /// --text: the detection.
    label: Option<(String, usize, f32, [f32; 4])>,
    /// --auto: stability score, grid point, crop box.
    auto: Option<(f32, (f64, f64), [u32; 4])>,
}

enum Mode {
    Prompt(SegmentPrompt),
    Text(Vec<String>),
    Auto(AutoMaskOptions),
}

/// Flags that only mean something with `--auto` / `--text`.
fn check_mode_flags(args: &Args) -> anyhow::Result<()> {
    let auto_only = [
        ("--points-per-side", args.points_per_side.is_some()),
        ("--pred-iou-thresh", args.pred_iou_thresh.is_some()),
        (
            "--stability-score-thresh",
            args.stability_score_thresh.is_some(),
        ),
        (
            "--stability-score-offset",
            args.stability_score_offset.is_some(),
        ),
        ("--box-nms-thresh", args.box_nms_thresh.is_some()),
        ("--crop-n-layers", args.crop_n_layers.is_some()),
        ("--crop-overlap-ratio", args.crop_overlap_ratio.is_some()),
        (
            "--crop-n-points-downscale-factor",
            args.crop_n_points_downscale_factor.is_some(),
        ),
    ];
    if let Some((flag, _)) = auto_only.iter().find(|(_, set)| *set && !args.auto) {
        bail!("{flag} only applies to --auto");
    }
    let text_only = [
        ("--detector", args.detector.is_some()),
        ("--threshold", args.threshold.is_some()),
        ("--nms", args.nms.is_some()),
    ];
    if let Some((flag, _)) = text_only
        .iter()
        .find(|(_, set)| *set && args.text.is_none())
    {
        bail!("{flag} only applies to --text");
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_mode_flags(&args)?;
    let mode = if args.auto {
        let d = AutoMaskOptions::default();
        let o = AutoMaskOptions {
            points_per_side: args.points_per_side.unwrap_or(d.points_per_side),
            pred_iou_thresh: args.pred_iou_thresh.unwrap_or(d.pred_iou_thresh),
            stability_score_thresh: args
                .stability_score_thresh
                .unwrap_or(d.stability_score_thresh),
            stability_score_offset: args
                .stability_score_offset
                .unwrap_or(d.stability_score_offset),
            mask_threshold: seer_engine::sam::MASK_THRESHOLD,
            nms_thresh: args.box_nms_thresh.unwrap_or(d.nms_thresh),
            crop_n_layers: args.crop_n_layers.unwrap_or(d.crop_n_layers),
            crop_overlap_ratio: args.crop_overlap_ratio.unwrap_or(d.crop_overlap_ratio),
            crop_n_points_downscale_factor: args
                .crop_n_points_downscale_factor
                .unwrap_or(d.crop_n_points_downscale_factor),
        };
        o.validate()?;
        Mode::Auto(o)
    } else if let Some(text) = &args.text {
        let labels: Vec<String> = text
            .split(',')
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if labels.is_empty() {
            bail!("--text '{text}': give at least one label");
        }
        Mode::Text(labels)
    } else {
        Mode::Prompt(parse_prompt(&args)?)
    };
    let (paths, walk_failures) = collect_image_paths(&args.images);
    if args.logits.is_some() && (paths.len() != 1 || !walk_failures.is_empty()) {
        bail!("--logits writes the logits of one image: give exactly one IMAGE");
    }
    let model = args.run.load(&args.model)?;
    let segmenter = model.segmenter()?;
    let detection = match &mode {
        Mode::Text(labels) => {
            let options = DetectOptions {
                threshold: args.threshold.unwrap_or(DEFAULT_TEXT_THRESHOLD),
                nms_iou: args.nms.unwrap_or(DEFAULT_NMS_IOU),
            };
            options.validate()?;
            let det_model = args
                .run
                .load(args.detector.as_deref().unwrap_or(DEFAULT_DETECTOR))?;
            let detector = detector_of(&det_model)?;
            let prepared = detector.prepare(&DetectQuery::Texts(labels.clone()))?;
            Some((detector, prepared, options))
        }
        _ => None,
    };
    // Found out now, not after the whole batch ran.
    for file in [&args.coco, &args.logits].into_iter().flatten() {
        let folder = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        anyhow::ensure!(
            folder.is_dir(),
            "{}: cannot write there: {} is not a folder",
            file.display(),
            folder.display()
        );
    }
    let limits = args.run.limits(Default::default());
    let pb = progress(paths.len(), "segmenting");
    let mut failures = Failures::default();
    for (path, cause) in walk_failures {
        failures.report_path(&pb, &path, &cause);
    }
    let mut coco = args.coco.as_ref().map(|_| Coco::new(&mode));
    let bases = cutout_bases(&paths);
    let mut done = 0;
    // With files to write, a reader that leaves stdout early does not stop them.
    let mut lines = Lines::new(args.out.is_some() || args.coco.is_some() || args.logits.is_some());
    for (path, base) in paths.iter().zip(&bases) {
        pb.inc(1);
        let result = (|| -> anyhow::Result<(seer_image::DecodedImage, Vec<OutMask>)> {
            let decoded = seer_image::decode_file_full(path, &limits)?;
            let masks = match &mode {
                Mode::Prompt(prompt) => {
                    let image = segmenter.embed(&decoded)?;
                    segmenter
                        .segment(&image, prompt, !args.single)?
                        .into_iter()
                        .map(|mask| OutMask {
                            mask,
                            label: None,
                            auto: None,
                        })
                        .collect()
                }
                Mode::Auto(o) => segmenter
                    .auto_masks(&decoded, o)?
                    .into_iter()
                    .map(|a| OutMask {
                        auto: Some((a.stability_score, a.point, a.crop_box)),
                        mask: a.mask,
                        label: None,
                    })
                    .collect(),
                Mode::Text(_) => {
                    let (detector, prepared, options) = detection.as_ref().expect("text mode");
                    let found = detector.detect(&decoded, prepared, options)?;
                    if found.is_empty() {
                        Vec::new()
                    } else {
                        let (w, h) = (decoded.width() as f32, decoded.height() as f32);
                        let boxes: Vec<[f32; 4]> =
                            found.iter().map(|d| clamp_box(d.bbox, w, h)).collect();
                        let image = segmenter.embed(&decoded)?;
                        let prompt = SegmentPrompt {
                            boxes: boxes.clone(),
                            ..Default::default()
                        };
                        segmenter
                            .segment(&image, &prompt, false)?
                            .into_iter()
                            .map(|mask| {
                                let d = &found[mask.object];
                                OutMask {
                                    label: Some((
                                        d.label.clone(),
                                        d.label_index,
                                        d.score,
                                        boxes[mask.object],
                                    )),
                                    mask,
                                    auto: None,
                                }
                            })
                            .collect()
                    }
                }
            };
            Ok((decoded, masks))
        })();
        let (decoded, masks) = match result {
            Ok(r) => r,
            Err(e) => {
                failures.report_path(&pb, path, &format!("{e:#}"));
                continue;
            }
        };
        let input = display_path(path);
        let written = match write_cutouts(&args, base, &decoded, &masks) {
            Ok(w) => w,
            Err(e) => {
                failures.report_path(&pb, path, &format!("{e:#}"));
                continue;
            }
        };
        if let Some(file) = &args.logits {
            let side =
                (masks.first().map_or(0, |m| m.mask.low_res_logits.len()) as f64).sqrt() as usize;
            let data: Vec<f32> = masks
                .iter()
                .flat_map(|m| m.mask.low_res_logits.iter().copied())
                .collect();
            write_npy(file, &[masks.len(), side, side], &data)?;
        }
        let polygons: Vec<Option<Vec<Vec<f64>>>> = masks
            .iter()
            .map(|m| {
                args.polygons.then(|| {
                    outer_polygons(&m.mask.mask, m.mask.width as usize, m.mask.height as usize)
                })
            })
            .collect();
        if let Some(c) = coco.as_mut() {
            c.add(&input, &decoded, &masks, &polygons);
        }
        if args.json {
            let list: Vec<Value> = masks
                .iter()
                .enumerate()
                .map(|(i, m)| mask_json(m, written.get(i), polygons[i].as_ref()))
                .collect();
            let doc = json!({
                "input": input,
                "model": model.id,
                "width": decoded.width(),
                "height": decoded.height(),
                "masks": list,
            });
            lines.print(doc)?;
        } else {
            for (i, m) in masks.iter().enumerate() {
                let [x, y, w, h] = bbox(&m.mask);
                let area = m.mask.mask.iter().filter(|&&b| b).count();
                let what = match &m.label {
                    Some((label, _, score, _)) => format!("{label} {score:.3}"),
                    None => format!("object {}", m.mask.object),
                };
                lines.print(format_args!(
                    "{input}\tmask {i} ({what}): iou {:.3}, area {area} px, bbox {x},{y} {w}×{h}",
                    m.mask.iou
                ))?;
            }
        }
        done += 1;
    }
    pb.finish_and_clear();
    if let (Some(c), Some(file)) = (coco, &args.coco) {
        let text = serde_json::to_string(&c.finish())?;
        crate::output::write_atomically(file, text.as_bytes())?;
    }
    failures.summary(done, "images");
    Ok(failures.exit_code())
}

/// A detection's box inside the image (OWL's boxes may cross its edges).
fn clamp_box(b: [f32; 4], w: f32, h: f32) -> [f32; 4] {
    let x0 = b[0].clamp(0.0, w);
    let y0 = b[1].clamp(0.0, h);
    [x0, y0, b[2].clamp(x0, w), b[3].clamp(y0, h)]
}

/// An f32 as its shortest decimal (what `seer detect --json` prints), not
/// widened to f64 digits.
fn f32_json(v: f32) -> Value {
    match v.is_finite() {
        true => v
            .to_string()
            .parse::<f64>()
            .map_or(Value::Null, Value::from),
        false => Value::Null,
    }
}

fn mask_json(m: &OutMask, png: Option<&PathBuf>, polygons: Option<&Vec<Vec<f64>>>) -> Value {
    let s = &m.mask;
    let mut v = json!({
        "object": s.object,
        "iou": f32_json(s.iou),
        "area": s.mask.iter().filter(|&&b| b).count(),
        "bbox": bbox(s),
        "rle": {"size": [s.height, s.width], "counts": rle(s)},
    });
    if let Some((label, _, score, b)) = &m.label {
        v["label"] = json!(label);
        v["score"] = f32_json(*score);
        v["box"] = json!(b.map(f32_json));
    }
    if let Some((stability, point, crop)) = &m.auto {
        if stability.is_finite() {
            v["stability_score"] = f32_json(*stability);
        }
        v["point"] = json!([point.0, point.1]);
        v["crop_box"] = json!(crop);
    }
    if let Some(p) = polygons {
        v["polygons"] = json!(p);
    }
    if let Some(p) = png {
        v["png"] = json!(p.display().to_string());
    }
    v
}

/// The name each input's cut-outs start with (`BASE.maskN.png`), one per
/// input and never the same twice in a run (README, `### segment`):
/// - the file's stem, when no other input of the run has that stem;
/// - else its file name (stem and extension), when no other input of the
///   run has that file name;
/// - else its path below the folder that the inputs with that file name
///   share, each separator written as `_` (`a/x.jpg` → `a_x.jpg`).
///
/// Names are compared ignoring case (a case-insensitive file system would
/// overwrite `X.png` with `x.png`); a name still taken (the same file given
/// twice, or `a.jpg.png` beside `a.jpg` and `a.png`) gets `-2`, `-3`, … in
/// input order. A file name `BASE.maskN.png` ends in N's digits after
/// `.mask`, so distinct bases never give the same file name.
fn cutout_bases(paths: &[PathBuf]) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    use std::path::Component;

    let lossy = |s: Option<&std::ffi::OsStr>| {
        s.map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
    };
    let key = |s: &str| s.to_lowercase();
    let counts = |names: &[String]| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for n in names {
            *counts.entry(key(n)).or_default() += 1;
        }
        counts
    };
    let stems: Vec<String> = paths.iter().map(|p| lossy(p.file_stem())).collect();
    let names: Vec<String> = paths.iter().map(|p| lossy(p.file_name())).collect();
    let stem_counts = counts(&stems);
    let clashing = |i: usize| stem_counts[&key(&stems[i])] > 1;
    // File names are compared among the inputs whose stems clash.
    let clashing_names: Vec<String> = (0..paths.len())
        .filter(|&i| clashing(i))
        .map(|i| names[i].clone())
        .collect();
    let name_counts = counts(&clashing_names);
    // The folders that the inputs sharing a file name share: the longest
    // common run of leading components, the file name never part of it.
    let mut shared: HashMap<String, Vec<Component>> = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        if !clashing(i) || name_counts[&key(&names[i])] < 2 {
            continue;
        }
        let parts: Vec<Component> = p.components().collect();
        let folders = &parts[..parts.len().saturating_sub(1)];
        shared
            .entry(key(&names[i]))
            .and_modify(|common| {
                let n = common
                    .iter()
                    .zip(folders)
                    .take_while(|(a, b)| a == b)
                    .count();
                common.truncate(n);
            })
            .or_insert_with(|| folders.to_vec());
    }
    let mut used = HashSet::new();
    (0..paths.len())
        .map(|i| {
            let base = if !clashing(i) {
                stems[i].clone()
            } else if name_counts[&key(&names[i])] < 2 {
                names[i].clone()
            } else {
                let skip = shared[&key(&names[i])].len();
                let parts: Vec<String> = paths[i]
                    .components()
                    .skip(skip)
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".into()),
                        Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
                    })
                    .collect();
                match parts.is_empty() {
                    true => names[i].clone(),
                    false => parts.join("_"),
                }
            };
            let mut unique = base.clone();
            let mut n = 1;
            while !used.insert(key(&unique)) {
                n += 1;
                unique = format!("{base}-{n}");
            }
            unique
        })
        .collect()
}

fn write_cutouts(
    args: &Args,
    base: &str,
    decoded: &seer_image::DecodedImage,
    masks: &[OutMask],
) -> anyhow::Result<Vec<PathBuf>> {
    let Some(dir) = &args.out else {
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let rgb = decoded.composite_on_white();
    let mut written = Vec::new();
    for (i, m) in masks.iter().enumerate() {
        let m = &m.mask;
        let mut cut = seer_image::image::RgbaImage::new(m.width, m.height);
        for (j, (px, &inside)) in cut.pixels_mut().zip(&m.mask).enumerate() {
            let p = rgb.get_pixel(j as u32 % m.width, j as u32 / m.width);
            *px = seer_image::image::Rgba([p[0], p[1], p[2], if inside { 255 } else { 0 }]);
        }
        let file = dir.join(format!("{base}.mask{i}.png"));
        if let Err(e) = cut.save(&file) {
            // The image counts as failed: none of its cut-outs stay, not the
            // ones written before nor a partial file, so what is on disk
            // matches what the run reports.
            for done in written.iter().chain([&file]) {
                if done.is_file() {
                    let _ = std::fs::remove_file(done);
                }
            }
            return Err(e).with_context(|| format!("{}: cannot write", file.display()));
        }
        written.push(file);
    }
    Ok(written)
}

/// The COCO instances document `--coco` writes.
struct Coco {
    categories: Vec<String>,
    images: Vec<Value>,
    annotations: Vec<Value>,
}

impl Coco {
    fn new(mode: &Mode) -> Self {
        let categories = match mode {
            Mode::Text(labels) => labels.clone(),
            _ => vec!["object".to_string()],
        };
        Self {
            categories,
            images: Vec::new(),
            annotations: Vec::new(),
        }
    }

    fn add(
        &mut self,
        input: &str,
        image: &seer_image::DecodedImage,
        masks: &[OutMask],
        polygons: &[Option<Vec<Vec<f64>>>],
    ) {
        let image_id = self.images.len() + 1;
        self.images.push(json!({
            "id": image_id,
            "file_name": input,
            "width": image.width(),
            "height": image.height(),
        }));
        for (m, poly) in masks.iter().zip(polygons) {
            let s = &m.mask;
            let area = s.mask.iter().filter(|&&b| b).count();
            let segmentation = match poly {
                Some(p) => json!(p),
                None => json!({"size": [s.height, s.width], "counts": rle(s)}),
            };
            let (category, score) = match &m.label {
                Some((_, index, score, _)) => (index + 1, *score),
                None => (1, s.iou),
            };
            let mut a = json!({
                "id": self.annotations.len() + 1,
                "image_id": image_id,
                "category_id": category,
                "segmentation": segmentation,
                "area": area,
                "bbox": bbox(s),
                "iscrowd": 0,
                "score": f32_json(score),
                "predicted_iou": f32_json(s.iou),
            });
            if area == 0 {
                a["bbox"] = json!([0, 0, 0, 0]);
            }
            self.annotations.push(a);
        }
    }

    fn finish(self) -> Value {
        json!({
            "info": {"description": "seer segment", "version": env!("CARGO_PKG_VERSION")},
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories.iter().enumerate()
                .map(|(i, name)| json!({"id": i + 1, "name": name, "supercategory": "object"}))
                .collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(paths: &[&str]) -> Vec<String> {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        cutout_bases(&paths)
    }

    #[test]
    fn unique_stems_keep_the_stem() {
        assert_eq!(bases(&["p/a.jpg", "p/b.png", "q/c"]), ["a", "b", "c"]);
    }

    #[test]
    fn clashing_stems_keep_the_extension_then_the_folders() {
        assert_eq!(
            bases(&["d/a/x.jpg", "d/a/x.png", "d/b/x.jpg", "d/y.jpg"]),
            ["a_x.jpg", "x.png", "b_x.jpg", "y"]
        );
        // The folders the clashing inputs share are left out, whatever the
        // other inputs share.
        assert_eq!(
            bases(&["/r/s/a/x.jpg", "/r/s/b/x.jpg", "z.jpg"]),
            ["a_x.jpg", "b_x.jpg", "z"]
        );
        assert_eq!(
            bases(&["x.jpg", "sub/x.jpg", "../x.jpg"]),
            ["x.jpg", "sub_x.jpg", ".._x.jpg"]
        );
    }

    #[test]
    fn names_still_taken_get_a_number_in_input_order() {
        // The same file twice.
        assert_eq!(bases(&["p/x.jpg", "p/x.jpg"]), ["x.jpg", "x.jpg-2"]);
        // A stem that is another input's file name.
        assert_eq!(
            bases(&["a.jpg", "a.png", "a.jpg.png"]),
            ["a.jpg", "a.png", "a.jpg-2"]
        );
        // Names differing only in case clash (case-insensitive file systems).
        assert_eq!(bases(&["X.jpg", "x.png"]), ["X.jpg", "x.png"]);
        assert_eq!(bases(&["a/X.jpg", "b/x.jpg"]), ["a_X.jpg", "b_x.jpg"]);
        assert_eq!(bases(&["X.jpg", "x.jpg"]), ["X.jpg", "x.jpg-2"]);
    }
}
