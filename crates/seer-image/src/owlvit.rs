//! The OWL detectors' image processors, as their PIL classes run them
//! (fixtures/owlvit/README.md):
//! - `OwlViTImageProcessor` squashes the image to `size` (768×768 by default)
//!   with Pillow's bicubic filter, no crop: [`ExactResizeConfig`];
//! - `Owlv2ImageProcessor` works in floats: rescale to [0, 1], pad bottom and
//!   right with 0 to a square, then scikit-image's anti-aliased resize as
//!   transformers ports it (scipy's `gaussian_filter` with σ = (factor − 1)/2,
//!   then `zoom` with order-1 splines, `mirror` edges and `grid_mode`), clip
//!   to the input's range, normalise. Boxes are then relative to the padded
//!   square, which is why OWLv2 scales them by the longer side.

use std::ops::Range;

use serde_json::{Map, Value};

use crate::config::{as_u32, check_std, resample, triple, Interpolation};
use crate::decode::{DecodedImage, SourceMode};
use crate::error::ImageError;
use crate::siglip::ExactResizeConfig;
use image::RgbImage;

const SRC: &str = "preprocessor_config.json";

fn err(detail: String) -> ImageError {
    ImageError::Config {
        config: SRC.into(),
        detail,
    }
}

/// Which OWL processor.
#[derive(Clone, Debug, PartialEq)]
pub enum OwlProcessor {
    /// OWL-ViT: Pillow squash resize.
    Squash(ExactResizeConfig),
    /// OWLv2: pad to a square, anti-aliased bilinear resize in floats.
    PadResize(PadResizeConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PadResizeConfig {
    pub width: u32,
    pub height: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub do_normalize: bool,
    pub do_pad: bool,
}

/// The processor's JSON object: `preprocessor_config.json` itself, or the
/// `image_processor` entry of transformers 5's `processor_config.json`.
fn object(json: &str) -> Result<Map<String, Value>, ImageError> {
    let v: Value = serde_json::from_str(json).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(err("top level is not an object".into()));
    };
    if let Some(Value::Object(inner)) = obj.remove("image_processor") {
        return Ok(inner);
    }
    Ok(obj)
}

fn flag(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ImageError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(err(format!("`{key}` must be a boolean, got {other}"))),
    }
}

/// `size` as `{"height", "width"}` or a single side (older OWL-ViT configs).
fn size(obj: &Map<String, Value>, key: &str, default: u32) -> Result<(u32, u32), ImageError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok((default, default)),
        Some(Value::Object(m)) => match (
            m.get("height").and_then(as_u32),
            m.get("width").and_then(as_u32),
        ) {
            (Some(h), Some(w)) => Ok((w, h)),
            _ => Err(err(format!(
                "`{key}` must be {{\"height\": h, \"width\": w}}, got {}",
                Value::Object(m.clone())
            ))),
        },
        Some(v) => as_u32(v).map(|s| (s, s)).ok_or_else(|| {
            err(format!(
                "`{key}` must be a positive integer or {{\"height\", \"width\"}}, got {v}"
            ))
        }),
    }
}

impl OwlProcessor {
    /// Parses the processor config of an OWL-ViT (`v2: false`) or OWLv2
    /// checkpoint; absent fields take the class defaults (768 bicubic, or 960
    /// with padding; OpenAI CLIP mean and std).
    pub fn from_config(json: &str, v2: bool) -> Result<Self, ImageError> {
        let obj = object(json)?;
        for key in ["do_resize", "do_rescale"] {
            if !flag(&obj, key, true)? {
                return Err(err(format!("{key}=false is not supported")));
            }
        }
        if let Some(f) = obj.get("rescale_factor").and_then(Value::as_f64) {
            if (f - 1.0 / 255.0).abs() > 1e-9 {
                return Err(err(format!(
                    "rescale_factor {f} is not supported (only 1/255)"
                )));
            }
        }
        let mean = triple(obj.get("image_mean"), crate::config::OPENAI_CLIP_MEAN)
            .map_err(|d| err(format!("image_mean: {d}")))?;
        let std = triple(obj.get("image_std"), crate::config::OPENAI_CLIP_STD)
            .map_err(|d| err(format!("image_std: {d}")))?;
        check_std(&std).map_err(|d| err(format!("image_std: {d}")))?;
        let do_normalize = flag(&obj, "do_normalize", true)?;
        if v2 {
            let (width, height) = size(&obj, "size", 960)?;
            return Ok(Self::PadResize(PadResizeConfig {
                width,
                height,
                mean,
                std,
                do_normalize,
                do_pad: flag(&obj, "do_pad", true)?,
            }));
        }
        let (width, height) = size(&obj, "size", 768)?;
        if flag(&obj, "do_center_crop", false)? && size(&obj, "crop_size", 768)? != (width, height)
        {
            return Err(err(
                "do_center_crop with a crop_size other than size is not supported".into(),
            ));
        }
        let interpolation = resample(obj.get("resample"), Interpolation::Bicubic).map_err(err)?;
        Ok(Self::Squash(ExactResizeConfig {
            width,
            height,
            interpolation,
            mean,
            std,
            do_normalize,
        }))
    }

    /// `(width, height)` of the model input.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Self::Squash(c) => (c.width, c.height),
            Self::PadResize(c) => (c.width, c.height),
        }
    }

    /// The image as the model's CHW input.
    pub fn preprocess(&self, img: &DecodedImage) -> Vec<f32> {
        match self {
            Self::Squash(c) => crate::siglip::preprocess_exact(img, c),
            Self::PadResize(c) => pad_resize(&rgb(img), c),
        }
    }

    /// The `(width, height)` a normalised box coordinate refers to: the image
    /// itself for OWL-ViT, the padded square for OWLv2.
    pub fn box_frame(&self, width: u32, height: u32) -> (u32, u32) {
        match self {
            Self::PadResize(c) if c.do_pad => {
                let s = width.max(height);
                (s, s)
            }
            _ => (width, height),
        }
    }
}

/// transformers 5's `convert_to_rgb`: alpha composited onto white.
fn rgb(img: &DecodedImage) -> RgbImage {
    if img.mode() == SourceMode::Rgb && !img.has_transparency {
        img.to_rgb()
    } else {
        img.composite_on_white()
    }
}

/// scipy's `mirror` extension of index `i` into `0..n`.
fn mirror(i: isize, n: usize) -> usize {
    if (0..n as isize).contains(&i) {
        return i as usize;
    }
    let n = n as isize;
    if n <= 1 {
        return 0;
    }
    let period = 2 * n - 2;
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// scipy's `_gaussian_kernel1d` (truncate 4): the half kernel `w[0..=radius]`.
fn gaussian_half(sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as usize;
    let full: Vec<f64> = (-(radius as isize)..=radius as isize)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let sum: f64 = full.iter().sum();
    full[radius..].iter().map(|w| w / sum).collect()
}

/// `ndimage.zoom`'s source positions for each output index (order 1,
/// `grid_mode`, `mirror`): `(first index, second index, weight of second)`.
fn zoom_taps(input: usize, output: usize) -> Vec<(usize, usize, f64)> {
    let zoom = input as f64 / output as f64;
    (0..output)
        .map(|k| {
            let mut cc = (k as f64 + 0.5) * zoom - 0.5;
            // map_coordinate, mirror mode.
            let len = input as f64;
            if cc < 0.0 {
                cc = if input <= 1 { 0.0 } else { -cc };
            } else if cc > len - 1.0 {
                cc = if input <= 1 {
                    0.0
                } else {
                    2.0 * len - 2.0 - cc
                };
            }
            let start = cc.floor();
            let t = cc - start;
            let start = start as isize;
            (mirror(start, input), mirror(start + 1, input), t)
        })
        .collect()
}

/// The tap offsets `j` in `1..=radius` of a symmetric filter centred on
/// `pos`, along an axis `n` long with scipy's `mirror` extension, for which
/// `pos - j` or `pos + j` falls in `0..support`: the only taps that read
/// anything but zeros when the axis is zero from `support` on (OWLv2's
/// padding). Ascending, merged ranges.
///
/// With one period `p = 2n - 2` of the mirrored axis, `mirror(i) < support`
/// exactly when `i` is within `support - 1` of a multiple of `p`, so each
/// multiple in reach contributes a range for `pos - j` and one for `pos + j`.
fn taps_reading(pos: usize, n: usize, support: usize, radius: usize) -> Vec<Range<usize>> {
    if radius == 0 || support == 0 {
        return Vec::new();
    }
    if support >= n || n <= 1 {
        // One range: every tap.
        #[allow(clippy::single_range_in_vec_init)]
        return vec![1..radius + 1];
    }
    let (pos, p, s, r) = (pos as i64, 2 * n as i64 - 2, support as i64, radius as i64);
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    // `pos ± j` spans pos - r ..= pos + r; multiples of p within `s` of that.
    let (first, last) = ((pos - r - s).div_euclid(p), (pos + r + s).div_euclid(p) + 1);
    for k in first..=last {
        let m = k * p;
        // |pos - j - m| < s and |pos + j - m| < s, as inclusive j ranges.
        for (lo, hi) in [
            (pos - m - s + 1, pos - m + s - 1),
            (m - s + 1 - pos, m + s - 1 - pos),
        ] {
            let (lo, hi) = (lo.max(1), hi.min(r));
            if lo <= hi {
                ranges.push((lo, hi));
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<Range<usize>> = Vec::new();
    for (lo, hi) in ranges {
        let (lo, hi) = (lo as usize, hi as usize + 1);
        match merged.last_mut() {
            Some(last) if lo <= last.end => last.end = last.end.max(hi),
            _ => merged.push(lo..hi),
        }
    }
    merged
}

/// scipy's `correlate1d` at `pos`, for the three channels, with the
/// symmetric half kernel `k` (f64 sums of f32 values, taps paired), along an
/// axis `n` long with `mirror` edges whose values are `get(i)` below
/// `support` and zero from there on (OWLv2's padding).
///
/// Only the taps in `ranges` ([`taps_reading`]) are read: the others read
/// zeros, and adding `(0 + 0) * k[j]` leaves a sum (never negative)
/// unchanged, so the result is the same.
#[inline]
fn correlate(
    k: &[f64],
    ranges: &[Range<usize>],
    get: impl Fn(usize) -> [f32; 3],
    (support, n): (usize, usize),
    pos: usize,
) -> [f32; 3] {
    let at = |i: isize| {
        let m = mirror(i, n);
        if m < support {
            get(m)
        } else {
            [0.0; 3]
        }
    };
    let mut s = at(pos as isize).map(|v| v as f64 * k[0]);
    let mut add = |j: usize, a: [f32; 3], b: [f32; 3]| {
        for c in 0..3 {
            s[c] += (a[c] as f64 + b[c] as f64) * k[j];
        }
    };
    for range in ranges {
        // Taps with both ends inside the image first (no mirroring), then
        // the rest, in the same (ascending) order.
        let inside = range.end.min(pos + 1).min(support.saturating_sub(pos));
        for j in range.start..inside.max(range.start) {
            add(j, get(pos - j), get(pos + j));
        }
        for j in inside.max(range.start)..range.end {
            add(j, at(pos as isize - j as isize), at((pos + j) as isize));
        }
    }
    s.map(|v| v as f32)
}

/// [`correlate`] along a row held in `vals` (columns `base ..`, every
/// column below `support` that the taps reach), zero from `support` on:
/// the taps inside the image read the slice directly.
fn correlate_row(
    k: &[f64],
    ranges: &[Range<usize>],
    (vals, base): (&[[f32; 3]], usize),
    (support, n): (usize, usize),
    pos: usize,
) -> [f32; 3] {
    let get = |i: usize| vals.get(i.wrapping_sub(base)).copied().unwrap_or([0.0; 3]);
    let at = |i: isize| {
        let m = mirror(i, n);
        if m < support {
            get(m)
        } else {
            [0.0; 3]
        }
    };
    let mut s = at(pos as isize).map(|v| v as f64 * k[0]);
    // Taps `j < inside` have both ends inside the image (no mirroring) and
    // inside `vals`: they read the slice directly, the rest through `at`.
    let p = pos.wrapping_sub(base);
    let end = base + vals.len();
    let inside = if (base..end).contains(&pos) {
        (p + 1).min(support.min(end).saturating_sub(pos))
    } else {
        0
    };
    for range in ranges {
        let split = inside.clamp(range.start, range.end);
        if split > range.start {
            let left = vals[p + 1 - split..=p - range.start].iter().rev();
            let right = &vals[p + range.start..p + split];
            for ((a, b), kj) in left.zip(right).zip(&k[range.start..split]) {
                for c in 0..3 {
                    s[c] += (a[c] as f64 + b[c] as f64) * kj;
                }
            }
        }
        for (j, kj) in k.iter().enumerate().take(range.end).skip(split) {
            let (a, b) = (at(pos as isize - j as isize), at((pos + j) as isize));
            for c in 0..3 {
                s[c] += (a[c] as f64 + b[c] as f64) * kj;
            }
        }
    }
    s.map(|v| v as f32)
}

/// Columns the first pass sums at once.
const ROW_CHUNK: usize = 4096;

/// Fewer columns than this are summed one by one.
const NARROW: usize = 8;

/// [`correlate`] down the columns `xs` at row `pos` (axis 0), the columns
/// side by side: the sums of `acc` (one per column) run through the taps in
/// the same order, each tap's two rows located once.
fn rows_correlate(
    k: &[f64],
    ranges: &[Range<usize>],
    pixel: &impl Fn(usize, usize) -> [f32; 3],
    (support, n): (usize, usize),
    pos: usize,
    xs: Range<usize>,
    acc: &mut Vec<[f64; 3]>,
) {
    acc.clear();
    if pos < support {
        acc.extend(xs.clone().map(|x| pixel(pos, x).map(|v| v as f64 * k[0])));
    } else {
        acc.resize(xs.len(), [0.0f32 as f64 * k[0]; 3]);
    }
    for j in ranges.iter().flat_map(|r| r.clone()) {
        let (a, b) = (
            mirror(pos as isize - j as isize, n),
            mirror((pos + j) as isize, n),
        );
        let kj = k[j];
        // `(a + 0) * k` is `a * k`: a tap with one end in the padding reads one row.
        match (a < support, b < support) {
            (true, true) => {
                for (s, x) in acc.iter_mut().zip(xs.clone()) {
                    let (va, vb) = (pixel(a, x), pixel(b, x));
                    for c in 0..3 {
                        s[c] += (va[c] as f64 + vb[c] as f64) * kj;
                    }
                }
            }
            (true, false) | (false, true) => {
                let y = if a < support { a } else { b };
                for (s, x) in acc.iter_mut().zip(xs.clone()) {
                    let v = pixel(y, x);
                    for c in 0..3 {
                        s[c] += (v[c] as f64 + 0.0) * kj;
                    }
                }
            }
            (false, false) => {}
        }
    }
}

/// Most columns of the first pass held at once (per needed row), unless one
/// filter window is wider. Small in tests, so that they split blocks.
const PASS0_COLUMNS: usize = if cfg!(test) { 1 << 9 } else { 1 << 16 };

/// `Owlv2ImageProcessor`: rescale, pad, anti-aliased resize, clip, normalise.
///
/// The padded square is never made: the padding is zero, and each Gaussian
/// tap that could only read padding is skipped (it would add exactly 0). The
/// first pass is kept for blocks of columns at a time. Work and memory are
/// thus bounded by small multiples of the image's own pixels and the output,
/// also for a 1 × 20,000,000 image, whose padded square would have 4 × 10^14
/// pixels and a Gaussian of 41,667 taps on each side at 960.
pub fn pad_resize(img: &RgbImage, cfg: &PadResizeConfig) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (sw, sh) = if cfg.do_pad {
        let s = w.max(h);
        (s, s)
    } else {
        (w, h)
    };
    let (ow, oh) = (cfg.width as usize, cfg.height as usize);
    let raw = img.as_raw();
    let scale = 1.0f64 / 255.0;
    // The input's range, for `_clip_warp_output` (the padding's 0 included).
    let (mut lo, mut hi) = (u8::MAX, u8::MIN);
    for &v in raw {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let (mut lo, hi) = ((lo as f64 * scale) as f32, (hi as f64 * scale) as f32);
    if (sw, sh) != (w, h) {
        lo = lo.min(0.0);
    }
    let rows = zoom_taps(sh, oh);
    let cols = zoom_taps(sw, ow);
    let sigma_y = ((sh as f64 / oh as f64) - 1.0).max(0.0) / 2.0;
    let sigma_x = ((sw as f64 / ow as f64) - 1.0).max(0.0) / 2.0;
    // Only the source rows and columns the zoom reads are filtered: each pass
    // is computed as scipy's `correlate1d` computes it (f64 sums of f32
    // values, symmetric taps paired, rounded to f32 after each axis).
    let needed = |taps: &[(usize, usize, f64)]| {
        let mut v: Vec<usize> = taps.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (needed_rows, needed_cols) = (needed(&rows), needed(&cols));
    let nc = needed_cols.len();
    let one = [1.0f64];
    let wy = (sigma_y > 1e-15).then(|| gaussian_half(sigma_y));
    let wx = (sigma_x > 1e-15).then(|| gaussian_half(sigma_x));
    let (ky, kx) = (wy.as_deref().unwrap_or(&one), wx.as_deref().unwrap_or(&one));
    let (ry, rx) = (ky.len() - 1, kx.len() - 1);
    // Axis 1's taps per needed column, and blocks of needed columns with the
    // columns of the first pass they read (`mirror` reflects a window once
    // when it is shorter than the axis, else it may read anything).
    let col_taps: Vec<Vec<Range<usize>>> = needed_cols
        .iter()
        .map(|&x| taps_reading(x, sw, w, rx))
        .collect();
    // Columns from `w` on are padding (zero after axis 0 too): a block holds
    // the columns below `w` that its windows reach. Blocks are at least four
    // windows wide, so that at most a third of the first pass is computed
    // twice (where neighbouring blocks' windows overlap).
    let reach = |a: usize, b: usize| {
        let r = if rx + 1 >= sw {
            0..sw
        } else {
            a.saturating_sub(rx)..(b + rx + 1).min(sw)
        };
        r.start.min(w)..r.end.min(w)
    };
    let cap = PASS0_COLUMNS.max(4 * (2 * rx + 1));
    let mut blocks: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    let mut start = 0;
    for j in 1..=nc {
        if j == nc || reach(needed_cols[start], needed_cols[j]).len() > cap {
            blocks.push((start..j, reach(needed_cols[start], needed_cols[j - 1])));
            start = j;
        }
    }
    // `(v as f64 / 255) as f32` for every byte, as the float image holds it.
    let level: Vec<f32> = (0..=255u8).map(|v| (v as f64 * scale) as f32).collect();
    let pixel = |y: usize, x: usize| -> [f32; 3] {
        let i = (y * w + x) * 3;
        [
            level[raw[i] as usize],
            level[raw[i + 1] as usize],
            level[raw[i + 2] as usize],
        ]
    };
    let mut pass1 = vec![0f32; needed_rows.len() * nc * 3];
    let mut pass0: Vec<[f32; 3]> = Vec::new();
    let mut acc: Vec<[f64; 3]> = Vec::with_capacity(ROW_CHUNK);
    for (i, &r) in needed_rows.iter().enumerate() {
        let row_taps = taps_reading(r, sh, h, ry);
        if r >= h && row_taps.is_empty() {
            continue; // padding out of the image's reach: zero after both axes
        }
        for (block, seg) in &blocks {
            // Axis 0 (rows) at row r, the block's columns below `w`.
            pass0.clear();
            if seg.len() < NARROW {
                // A thin image's column or so: summed one by one, its taps'
                // rows located per sum.
                for x in seg.clone() {
                    let column = |y: usize| pixel(y, x);
                    pass0.push(correlate(ky, &row_taps, column, (h, sh), r));
                }
            } else {
                for x0 in seg.clone().step_by(ROW_CHUNK) {
                    let xs = x0..(x0 + ROW_CHUNK).min(seg.end);
                    rows_correlate(ky, &row_taps, &pixel, (h, sh), r, xs, &mut acc);
                    pass0.extend(acc.iter().map(|a| a.map(|v| v as f32)));
                }
            }
            // Axis 1 (columns) at the block's needed columns: `seg` holds
            // every column below `w` that their windows reach.
            for j in block.clone() {
                let row = (&pass0[..], seg.start);
                let v = correlate_row(kx, &col_taps[j], row, (w, sw), needed_cols[j]);
                pass1[(i * nc + j) * 3..(i * nc + j + 1) * 3].copy_from_slice(&v);
            }
        }
    }
    let slot = |needed: &[usize], v: usize| needed.partition_point(|&n| n < v);
    let (mean, std) = if cfg.do_normalize {
        (cfg.mean, cfg.std)
    } else {
        ([0.0; 3], [1.0; 3])
    };
    let col_slots: Vec<(usize, usize, f64)> = cols
        .iter()
        .map(|&(c0, c1, tx)| (slot(&needed_cols, c0), slot(&needed_cols, c1), tx))
        .collect();
    let plane = ow * oh;
    let mut out = vec![0f32; 3 * plane];
    for (y, &(r0, r1, ty)) in rows.iter().enumerate() {
        let (i0, i1) = (slot(&needed_rows, r0), slot(&needed_rows, r1));
        for (x, &(j0, j1, tx)) in col_slots.iter().enumerate() {
            for c in 0..3 {
                let p = |i: usize, j: usize| pass1[(i * nc + j) * 3 + c] as f64;
                let v = p(i0, j0) * (1.0 - ty) * (1.0 - tx)
                    + p(i0, j1) * (1.0 - ty) * tx
                    + p(i1, j0) * ty * (1.0 - tx)
                    + p(i1, j1) * ty * tx;
                let v = (v as f32).clamp(lo, hi);
                out[c * plane + y * ow + x] = (v - mean[c]) / std[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pad_resize` as it was: the whole first pass, every tap (the oracle).
    fn pad_resize_whole(img: &RgbImage, cfg: &PadResizeConfig) -> Vec<f32> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (sw, sh) = if cfg.do_pad {
            let s = w.max(h);
            (s, s)
        } else {
            (w, h)
        };
        let (ow, oh) = (cfg.width as usize, cfg.height as usize);
        let raw = img.as_raw();
        let scale = 1.0f64 / 255.0;
        let value = |y: usize, x: usize, c: usize| -> f32 {
            if y < h && x < w {
                (raw[(y * w + x) * 3 + c] as f64 * scale) as f32
            } else {
                0.0
            }
        };
        // The input's range, for `_clip_warp_output` (the padding's 0 included).
        let (mut lo, mut hi) = (u8::MAX, u8::MIN);
        for &v in raw {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let (mut lo, hi) = ((lo as f64 * scale) as f32, (hi as f64 * scale) as f32);
        if (sw, sh) != (w, h) {
            lo = lo.min(0.0);
        }
        let rows = zoom_taps(sh, oh);
        let cols = zoom_taps(sw, ow);
        let sigma_y = ((sh as f64 / oh as f64) - 1.0).max(0.0) / 2.0;
        let sigma_x = ((sw as f64 / ow as f64) - 1.0).max(0.0) / 2.0;
        // Only the source rows and columns the zoom reads are filtered: each pass
        // is computed as scipy's `correlate1d` computes it (f64 sums of f32
        // values, symmetric taps paired, rounded to f32 after each axis).
        let mut needed_rows: Vec<usize> = rows.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        needed_rows.sort_unstable();
        needed_rows.dedup();
        let mut row_slot = vec![usize::MAX; sh];
        for (i, &r) in needed_rows.iter().enumerate() {
            row_slot[r] = i;
        }
        // Axis 0 (rows) at the needed rows, every column: (row, x, c).
        let mut pass0 = vec![0f32; needed_rows.len() * sw * 3];
        let wy = (sigma_y > 1e-15).then(|| gaussian_half(sigma_y));
        for (i, &r) in needed_rows.iter().enumerate() {
            for x in 0..sw {
                for c in 0..3 {
                    pass0[(i * sw + x) * 3 + c] = match &wy {
                        None => value(r, x, c),
                        Some(k) => {
                            let mut s = value(r, x, c) as f64 * k[0];
                            for (j, kj) in k.iter().enumerate().skip(1) {
                                let a = value(mirror(r as isize - j as isize, sh), x, c) as f64;
                                let b = value(mirror(r as isize + j as isize, sh), x, c) as f64;
                                s += (a + b) * kj;
                            }
                            s as f32
                        }
                    };
                }
            }
        }
        // Axis 1 (columns) at the needed columns.
        let wx = (sigma_x > 1e-15).then(|| gaussian_half(sigma_x));
        let at = |i: usize, x: usize, c: usize| pass0[(i * sw + x) * 3 + c];
        let filtered = |i: usize, x: usize, c: usize| -> f32 {
            match &wx {
                None => at(i, x, c),
                Some(k) => {
                    let mut s = at(i, x, c) as f64 * k[0];
                    for (j, kj) in k.iter().enumerate().skip(1) {
                        let a = at(i, mirror(x as isize - j as isize, sw), c) as f64;
                        let b = at(i, mirror(x as isize + j as isize, sw), c) as f64;
                        s += (a + b) * kj;
                    }
                    s as f32
                }
            }
        };
        let mut needed_cols: Vec<usize> = cols.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        needed_cols.sort_unstable();
        needed_cols.dedup();
        let mut col_slot = vec![usize::MAX; sw];
        for (i, &x) in needed_cols.iter().enumerate() {
            col_slot[x] = i;
        }
        let nc = needed_cols.len();
        let mut pass1 = vec![0f32; needed_rows.len() * nc * 3];
        for i in 0..needed_rows.len() {
            for (j, &x) in needed_cols.iter().enumerate() {
                for c in 0..3 {
                    pass1[(i * nc + j) * 3 + c] = filtered(i, x, c);
                }
            }
        }
        let (mean, std) = if cfg.do_normalize {
            (cfg.mean, cfg.std)
        } else {
            ([0.0; 3], [1.0; 3])
        };
        let plane = ow * oh;
        let mut out = vec![0f32; 3 * plane];
        for (y, &(r0, r1, ty)) in rows.iter().enumerate() {
            let (i0, i1) = (row_slot[r0], row_slot[r1]);
            for (x, &(c0, c1, tx)) in cols.iter().enumerate() {
                let (j0, j1) = (col_slot[c0], col_slot[c1]);
                for c in 0..3 {
                    let p = |i: usize, j: usize| pass1[(i * nc + j) * 3 + c] as f64;
                    let v = p(i0, j0) * (1.0 - ty) * (1.0 - tx)
                        + p(i0, j1) * (1.0 - ty) * tx
                        + p(i1, j0) * ty * (1.0 - tx)
                        + p(i1, j1) * ty * tx;
                    let v = (v as f32).clamp(lo, hi);
                    out[c * plane + y * ow + x] = (v - mean[c]) / std[c];
                }
            }
        }
        out
    }

    fn image(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) as u8;
            image::Rgb([v, v.wrapping_mul(7).wrapping_add(3), 255 - v / 2])
        })
    }

    fn cfg(width: u32, height: u32, do_pad: bool) -> PadResizeConfig {
        PadResizeConfig {
            width,
            height,
            mean: crate::config::OPENAI_CLIP_MEAN,
            std: crate::config::OPENAI_CLIP_STD,
            do_normalize: true,
            do_pad,
        }
    }

    #[test]
    fn taps_reading_are_the_taps_that_read_the_image() {
        for n in [2usize, 3, 5, 17, 64] {
            for support in 1..=n {
                for radius in [0usize, 1, 2, 5, 16, 40, 150] {
                    for pos in 0..n {
                        let brute: Vec<usize> = (1..=radius)
                            .filter(|&j| {
                                let (a, b) = (pos as isize - j as isize, (pos + j) as isize);
                                mirror(a, n) < support || mirror(b, n) < support
                            })
                            .collect();
                        let got: Vec<usize> = taps_reading(pos, n, support, radius)
                            .into_iter()
                            .flatten()
                            .collect();
                        assert_eq!(
                            got, brute,
                            "pos {pos} n {n} support {support} radius {radius}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn skipping_padding_changes_no_value() {
        // Bit-identical to the whole computation, for thin, wide, square,
        // up- and downscaled images, padded or not, with the first pass in
        // one block or split (the tests' blocks are at most 512 columns).
        for (w, h, ow, oh, pad) in [
            (40, 30, 16, 16, true),
            (30, 40, 16, 12, true),
            (300, 200, 96, 96, true),
            (300, 200, 96, 64, false),
            (20, 10, 96, 96, true),
            (1, 3000, 96, 96, true),
            (3000, 1, 96, 96, true),
            (7, 500, 32, 32, true),
            (500, 7, 32, 40, true),
            (2, 900, 5, 7, false),
            (4000, 3, 64, 64, true),
            (2000, 1500, 40, 30, false),
            (1, 1, 4, 4, true),
        ] {
            let img = image(w, h, w ^ h);
            let c = cfg(ow, oh, pad);
            let (got, want) = (pad_resize(&img, &c), pad_resize_whole(&img, &c));
            assert_eq!(got.len(), want.len());
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{w}x{h} -> {ow}x{oh} pad {pad}");
        }
    }

    #[test]
    fn mirror_matches_scipy() {
        // d c b | a b c d | c b a
        let got: Vec<usize> = (-3..7).map(|i| mirror(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn configs_parse_with_class_defaults() {
        let v1 =
            OwlProcessor::from_config(r#"{"size": 768, "do_center_crop": false}"#, false).unwrap();
        assert_eq!(v1.size(), (768, 768));
        let v2 = OwlProcessor::from_config("{}", true).unwrap();
        assert_eq!(v2.size(), (960, 960));
        assert_eq!(v2.box_frame(640, 480), (640, 640));
        let bad = OwlProcessor::from_config(r#"{"do_resize": 3}"#, false).unwrap_err();
        assert!(bad.to_string().contains("do_resize"), "{bad}");
    }
}
