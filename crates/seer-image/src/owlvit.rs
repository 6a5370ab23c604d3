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

use serde_json::{Map, Value};

use crate::config::{as_u32, check_std, resample, triple, Interpolation};
use crate::decode::{DecodedImage, SourceMode};
use crate::error::ImageError;
use crate::siglip::ExactResizeConfig;
use image::RgbImage;

const SRC: &str = "preprocessor_config.json";

fn err(detail: String) -> ImageError {
    ImageError::Config {
        config: SRC,
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

/// `Owlv2ImageProcessor`: rescale, pad, anti-aliased resize, clip, normalise.
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

#[cfg(test)]
mod tests {
    use super::*;

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
