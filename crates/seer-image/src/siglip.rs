//! SigLIP's image processors: `SiglipImageProcessor` (a plain resize to a
//! fixed size) and SigLIP 2's `Siglip2ImageProcessor` (NaFlex patches), as
//! their PIL versions run them (fixtures/families/README.md).

use serde_json::{Map, Value};

use crate::config::{as_u32, check_std, resample, triple, Interpolation};
use crate::decode::{DecodedImage, SourceMode};
use crate::error::ImageError;
use crate::{normalize, resize};
use image::RgbImage;

const SRC: &str = "preprocessor_config.json";

fn config_error(detail: String) -> ImageError {
    ImageError::Config {
        config: SRC.into(),
        detail,
    }
}

/// The fields both processors share: resampling, rescale and normalisation.
struct Common {
    obj: Map<String, Value>,
    interpolation: Interpolation,
    mean: [f32; 3],
    std: [f32; 3],
    do_normalize: bool,
}

impl Common {
    fn parse(json: &str, default_interpolation: Interpolation) -> Result<Self, ImageError> {
        Self::parse_with(json, default_interpolation, [0.5; 3], [0.5; 3])
    }

    /// As [`Common::parse`], with the class's own default mean and std.
    fn parse_with(
        json: &str,
        default_interpolation: Interpolation,
        default_mean: [f32; 3],
        default_std: [f32; 3],
    ) -> Result<Self, ImageError> {
        let err = config_error;
        let v: Value =
            serde_json::from_str(json).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(err("top level is not an object".into()));
        };
        let flag = |key: &str| -> Result<bool, ImageError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(true),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(err(format!("`{key}` must be a boolean, got {other}"))),
            }
        };
        for key in ["do_resize", "do_rescale"] {
            if !flag(key)? {
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
        let interpolation = resample(obj.get("resample"), default_interpolation).map_err(err)?;
        let mean = triple(obj.get("image_mean"), default_mean)
            .map_err(|d| err(format!("image_mean: {d}")))?;
        let std = triple(obj.get("image_std"), default_std)
            .map_err(|d| err(format!("image_std: {d}")))?;
        check_std(&std).map_err(|d| err(format!("image_std: {d}")))?;
        let do_normalize = flag("do_normalize")?;
        Ok(Self {
            obj,
            interpolation,
            mean,
            std,
            do_normalize,
        })
    }

    fn positive(&self, key: &str, default: u32) -> Result<u32, ImageError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => as_u32(x).ok_or_else(|| {
                config_error(format!("`{key}` must be a positive integer, got {x}"))
            }),
        }
    }
}

/// `SiglipImageProcessor`: a plain resize to `width × height` that ignores the
/// aspect ratio (no shortest-edge step, no crop), then `(x/255 − mean)/std`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExactResizeConfig {
    pub width: u32,
    pub height: u32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub do_normalize: bool,
}

impl ExactResizeConfig {
    /// Parse a transformers `preprocessor_config.json` of a
    /// `SiglipImageProcessor`; absent fields take that class's defaults
    /// (224×224, bicubic, mean = std = 0.5).
    pub fn from_siglip_preprocessor_config(json: &str) -> Result<Self, ImageError> {
        Self::from_exact_resize_config(Common::parse(json, Interpolation::Bicubic)?, 224)
    }

    /// Parse a transformers `preprocessor_config.json` of a
    /// `BlipImageProcessor`: the same squash resize, with that class's
    /// defaults (384×384, bicubic, OpenAI CLIP mean and std).
    pub fn from_blip_preprocessor_config(json: &str) -> Result<Self, ImageError> {
        let c = Common::parse_with(
            json,
            Interpolation::Bicubic,
            crate::config::OPENAI_CLIP_MEAN,
            crate::config::OPENAI_CLIP_STD,
        )?;
        Self::from_exact_resize_config(c, 384)
    }

    fn from_exact_resize_config(c: Common, default_side: u32) -> Result<Self, ImageError> {
        let (width, height) = match c.obj.get("size") {
            None | Some(Value::Null) => (default_side, default_side),
            Some(Value::Object(m)) => match (
                m.get("height").and_then(as_u32),
                m.get("width").and_then(as_u32),
            ) {
                (Some(h), Some(w)) => (w, h),
                _ => {
                    return Err(config_error(format!(
                    "size must be {{\"height\": h, \"width\": w}} for SiglipImageProcessor, got {}",
                    Value::Object(m.clone())
                )))
                }
            },
            Some(other) => {
                return Err(config_error(format!(
                    "size must be {{\"height\": h, \"width\": w}}, got {other}"
                )))
            }
        };
        Ok(Self {
            width,
            height,
            interpolation: c.interpolation,
            mean: c.mean,
            std: c.std,
            do_normalize: c.do_normalize,
        })
    }
}

/// `Siglip2ImageProcessor` (NaFlex): each image is resized, keeping its
/// aspect ratio approximately, to a multiple of the patch size holding at most
/// `max_num_patches` patches, then cut into patches.
#[derive(Clone, Debug, PartialEq)]
pub struct NaflexConfig {
    pub patch_size: u32,
    pub max_num_patches: u32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub do_normalize: bool,
}

impl NaflexConfig {
    /// Parse a transformers `preprocessor_config.json` of a
    /// `Siglip2ImageProcessor`; absent fields take that class's defaults
    /// (patch 16, 256 patches, bilinear, mean = std = 0.5).
    pub fn from_siglip2_preprocessor_config(json: &str) -> Result<Self, ImageError> {
        let c = Common::parse(json, Interpolation::Bilinear)?;
        Ok(Self {
            patch_size: c.positive("patch_size", 16)?,
            max_num_patches: c.positive("max_num_patches", 256)?,
            interpolation: c.interpolation,
            mean: c.mean,
            std: c.std,
            do_normalize: c.do_normalize,
        })
    }

    /// `get_image_size_for_max_num_patches`: the (height, width) an image of
    /// `height × width` is resized to. A binary search for the largest scale
    /// whose sides, each rounded **up** to a multiple of the patch size (at
    /// least one patch), give at most `max_num_patches` patches.
    pub fn target_size(&self, height: u32, width: u32) -> (u32, u32) {
        let p = self.patch_size as f64;
        let scaled =
            |scale: f64, size: u32| -> f64 { ((size as f64 * scale / p).ceil() * p).max(p) };
        let eps = 1e-5;
        let (mut lo, mut hi) = (eps / 10.0, 100.0);
        while hi - lo >= eps {
            let scale = (lo + hi) / 2.0;
            let patches = (scaled(scale, height) / p) * (scaled(scale, width) / p);
            if patches <= self.max_num_patches as f64 {
                lo = scale;
            } else {
                hi = scale;
            }
        }
        (scaled(lo, height) as u32, scaled(lo, width) as u32)
    }
}

/// `SiglipImageProcessor`: RGB (alpha composited onto white, transformers 5's
/// `convert_to_rgb`), resized straight to `cfg.width × cfg.height` (aspect
/// ratio not kept, no crop), normalised into a CHW vector.
pub fn preprocess_exact(img: &DecodedImage, cfg: &ExactResizeConfig) -> Vec<f32> {
    let resized = rgb_resized(img, cfg.width, cfg.height, cfg.interpolation);
    let mut out = Vec::with_capacity(3 * cfg.width as usize * cfg.height as usize);
    normalize::normalize_with(&resized, cfg.mean, cfg.std, cfg.do_normalize, &mut out);
    out
}

/// [`preprocess_exact`] for an RGB image made in memory (no alpha to composite).
pub fn preprocess_exact_rgb(img: &RgbImage, cfg: &ExactResizeConfig) -> Vec<f32> {
    let data = resize::resample_squash(
        img.as_raw(),
        img.width(),
        img.height(),
        3,
        cfg.width,
        cfg.height,
        cfg.interpolation,
    );
    let resized = RgbImage::from_raw(cfg.width, cfg.height, data).expect("w * h * 3 buffer");
    let mut out = Vec::with_capacity(3 * cfg.width as usize * cfg.height as usize);
    normalize::normalize_with(&resized, cfg.mean, cfg.std, cfg.do_normalize, &mut out);
    out
}

/// transformers 5's `convert_to_rgb` (alpha composited onto white), then a
/// PIL resize to `width × height` with Pillow 13's pass order.
fn rgb_resized(img: &DecodedImage, width: u32, height: u32, filter: Interpolation) -> RgbImage {
    let resize =
        |src: &[u8], w: u32, h: u32| resize::resample_squash(src, w, h, 3, width, height, filter);
    let data = if img.mode() == SourceMode::Rgb && !img.has_transparency {
        resize(&img.data, img.width(), img.height())
    } else {
        let rgb = img.composite_on_white();
        resize(rgb.as_raw(), rgb.width(), rgb.height())
    };
    RgbImage::from_raw(width, height, data).expect("w * h * 3 buffer")
}

/// One image as SigLIP 2 NaFlex patches.
#[derive(Clone, Debug, PartialEq)]
pub struct NaflexPatches {
    /// `max_num_patches` rows of `3·p·p` values: the `rows × cols` real patches
    /// first (row-major; within a patch (y, x, channel), channel last), then
    /// zero rows.
    pub patches: Vec<f32>,
    /// `spatial_shapes`: the patch grid of the resized image.
    pub rows: usize,
    pub cols: usize,
}

/// `Siglip2ImageProcessor`: RGB, resize to [`NaflexConfig::target_size`],
/// normalise, patchify and pad with zero patches to `max_num_patches`.
pub fn preprocess_naflex(img: &DecodedImage, cfg: &NaflexConfig) -> NaflexPatches {
    let (h, w) = cfg.target_size(img.height(), img.width());
    patchify(&rgb_resized(img, w, h, cfg.interpolation), cfg)
}

/// [`preprocess_naflex`] for an RGB image made in memory (no alpha to composite).
pub fn preprocess_naflex_rgb(img: &RgbImage, cfg: &NaflexConfig) -> NaflexPatches {
    let (h, w) = cfg.target_size(img.height(), img.width());
    let data = resize::resample_squash(
        img.as_raw(),
        img.width(),
        img.height(),
        3,
        w,
        h,
        cfg.interpolation,
    );
    patchify(
        &RgbImage::from_raw(w, h, data).expect("w * h * 3 buffer"),
        cfg,
    )
}

/// Normalises a resized image and cuts it into `cfg.max_num_patches` rows of
/// (y, x, channel) patches, the real ones first.
fn patchify(resized: &RgbImage, cfg: &NaflexConfig) -> NaflexPatches {
    let (w, h) = resized.dimensions();
    let mut planes = Vec::with_capacity(3 * w as usize * h as usize);
    normalize::normalize_with(resized, cfg.mean, cfg.std, cfg.do_normalize, &mut planes);
    let (p, w, h) = (cfg.patch_size as usize, w as usize, h as usize);
    let (rows, cols) = (h / p, w / p);
    let plane = w * h;
    let mut patches = vec![0f32; cfg.max_num_patches as usize * 3 * p * p];
    for (i, patch) in patches
        .chunks_exact_mut(3 * p * p)
        .take(rows * cols)
        .enumerate()
    {
        let (py, px) = (i / cols, i % cols);
        for (j, v) in patch.iter_mut().enumerate() {
            let (y, x, c) = (j / (3 * p), (j / 3) % p, j % 3);
            *v = planes[c * plane + (py * p + y) * w + px * p + x];
        }
    }
    NaflexPatches {
        patches,
        rows,
        cols,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siglip_defaults_and_bad_values() {
        let c = ExactResizeConfig::from_siglip_preprocessor_config("{}").unwrap();
        assert_eq!(
            (c.width, c.height, c.interpolation),
            (224, 224, Interpolation::Bicubic)
        );
        assert_eq!((c.mean, c.std), ([0.5; 3], [0.5; 3]));
        for (bad, needle) in [
            (r#"{"size": {"shortest_edge": 224}}"#, "height"),
            (r#"{"resample": 1}"#, "resample"),
            (r#"{"do_rescale": false}"#, "do_rescale"),
            (r#"{"image_std": [0, 1, 1]}"#, "image_std"),
            ("[", "JSON"),
        ] {
            let e = ExactResizeConfig::from_siglip_preprocessor_config(bad).unwrap_err();
            let e = e.to_string();
            assert!(e.contains(SRC) && e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn naflex_sizes_keep_the_patch_budget() {
        let c = NaflexConfig::from_siglip2_preprocessor_config("{}").unwrap();
        assert_eq!((c.patch_size, c.max_num_patches), (16, 256));
        // A square image fills the budget exactly; a long one rounds its sides up.
        assert_eq!(c.target_size(512, 512), (256, 256));
        for (h, w) in [(300, 451), (762, 2162), (10, 4000), (4000, 10)] {
            let (th, tw) = c.target_size(h, w);
            assert!(th % 16 == 0 && tw % 16 == 0 && th >= 16 && tw >= 16);
            assert!((th / 16) * (tw / 16) <= 256, "{h}x{w} -> {th}x{tw}");
        }
        let e = NaflexConfig::from_siglip2_preprocessor_config(r#"{"max_num_patches": 0}"#)
            .unwrap_err();
        assert!(e.to_string().contains("max_num_patches"), "{e}");
    }
}
