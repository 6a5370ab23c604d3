//! `seer segment`: cut objects out of an image with SAM from clicks and boxes.
//! The image is embedded once; every object (each box, or the points alone)
//! then costs only SAM's prompt encoder and mask decoder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use seer_engine::segment::{SegmentMask, SegmentPrompt};
use serde_json::json;

use crate::common::RunArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The image to segment.
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
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
    /// One mask per object instead of three.
    #[arg(long)]
    single: bool,
    /// Write each mask as a PNG cut-out (the image's pixels, transparent outside the mask).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write the low-resolution mask logits [masks, 256, 256] (the reference's
    /// `pred_masks`) as an f32 .npy.
    #[arg(long, value_name = "FILE.npy")]
    logits: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
    /// Print one JSON object: {"input", "width", "height", "masks": [{"object",
    /// "iou", "area", "bbox", "rle"}]}; `rle` is COCO's uncompressed RLE.
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
            Some(&l) if l == 1.0 => true,
            Some(&l) if l == 0.0 => false,
            Some(l) => {
                bail!("--point '{p}': the label must be 1 (foreground) or 0 (background), got {l}")
            }
        };
        prompt.points.push((v[0], v[1], fg));
    }
    for b in &args.boxes {
        let v = numbers(b, "box", &[4])?;
        prompt.boxes.push([v[0], v[1], v[2], v[3]]);
    }
    if let Some(path) = &args.mask_input {
        prompt.mask_logits = Some(read_mask(path, args.mask_index)?);
    }
    if prompt.points.is_empty() && prompt.boxes.is_empty() && prompt.mask_logits.is_none() {
        bail!("give at least one --point, --box or --mask-input");
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
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let prompt = parse_prompt(&args)?;
    let model = args.run.load(&args.model)?;
    let Some(segmenter) = model.segmenter.clone() else {
        bail!(
            "model '{}' ({}) does not segment: `seer segment` needs a SAM checkpoint \
             (SamModel, e.g. facebook/sam-vit-base or SlimSAM)",
            model.id,
            model.family
        );
    };
    let decoded = seer_image::decode_file_full(&args.image, &args.run.limits(Default::default()))?;
    let image = segmenter.embed(&decoded)?;
    let masks = segmenter.segment(&image, &prompt, !args.single)?;
    let stem = args
        .image
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy().into_owned());
    let mut written = Vec::new();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let rgb = decoded.composite_on_white();
        for (i, m) in masks.iter().enumerate() {
            let mut cut = seer_image::image::RgbaImage::new(m.width, m.height);
            for (j, (px, &inside)) in cut.pixels_mut().zip(&m.mask).enumerate() {
                let p = rgb.get_pixel(j as u32 % m.width, j as u32 / m.width);
                *px = seer_image::image::Rgba([p[0], p[1], p[2], if inside { 255 } else { 0 }]);
            }
            let path = dir.join(format!("{stem}.mask{i}.png"));
            cut.save(&path)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            written.push(path);
        }
    }
    if let Some(path) = &args.logits {
        let side = (masks.first().map_or(0, |m| m.low_res_logits.len()) as f64).sqrt() as usize;
        let data: Vec<f32> = masks
            .iter()
            .flat_map(|m| m.low_res_logits.iter().copied())
            .collect();
        write_npy(path, &[masks.len(), side, side], &data)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<_> = masks
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut v = json!({
                    "object": m.object,
                    "iou": m.iou,
                    "area": m.mask.iter().filter(|&&b| b).count(),
                    "bbox": bbox(m),
                    "rle": {"size": [m.height, m.width], "counts": rle(m)},
                });
                if let Some(p) = written.get(i) {
                    v["png"] = json!(p.display().to_string());
                }
                v
            })
            .collect();
        let doc = json!({
            "input": args.image.display().to_string(),
            "model": model.id,
            "width": image.width,
            "height": image.height,
            "masks": list,
        });
        writeln!(out, "{doc}")?;
    } else {
        for (i, m) in masks.iter().enumerate() {
            let [x, y, w, h] = bbox(m);
            let area = m.mask.iter().filter(|&&b| b).count();
            writeln!(
                out,
                "mask {i} (object {}): iou {:.3}, area {area} px, bbox {x},{y} {w}×{h}",
                m.object, m.iou
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
