//! SAM's image processor (`SamImageProcessor`, as its PIL class
//! `SamImageProcessorPil` runs it): the longest side resized to 1024 keeping the
//! aspect ratio (PIL bilinear), rescale and ImageNet normalisation, then zero
//! padding at the bottom and right to 1024×1024. Prompts in the original
//! image's pixels are scaled by the same factors (`SamProcessor`), and masks
//! are mapped back through the resized size, so both sizes are kept.

use serde_json::Value;

use crate::config::{as_u32, check_std, resample, triple, Interpolation};
use crate::decode::{DecodedImage, SourceMode};
use crate::error::ImageError;
use crate::{normalize, resize};

const SRC: &str = "preprocessor_config.json";

/// transformers' `IMAGENET_DEFAULT_MEAN` / `_STD`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Clone, Debug, PartialEq)]
pub struct SamProcessorConfig {
    pub longest_edge: u32,
    /// `(height, width)` of the padded input.
    pub pad: (u32, u32),
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub do_normalize: bool,
}

impl Default for SamProcessorConfig {
    fn default() -> Self {
        Self {
            longest_edge: 1024,
            pad: (1024, 1024),
            interpolation: Interpolation::Bilinear,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            do_normalize: true,
        }
    }
}

fn err(detail: String) -> ImageError {
    ImageError::Config {
        config: SRC.into(),
        detail,
    }
}

impl SamProcessorConfig {
    /// Parse a `SamImageProcessor` `preprocessor_config.json`; absent fields
    /// take that class's defaults.
    pub fn from_preprocessor_config(json: &str) -> Result<Self, ImageError> {
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
        for key in ["do_resize", "do_rescale", "do_pad"] {
            if !flag(key)? {
                return Err(err(format!("{key}=false is not supported for SAM")));
            }
        }
        if let Some(f) = obj.get("rescale_factor").and_then(Value::as_f64) {
            if (f - 1.0 / 255.0).abs() > 1e-9 {
                return Err(err(format!(
                    "rescale_factor {f} is not supported (only 1/255)"
                )));
            }
        }
        let d = Self::default();
        let longest_edge = match obj.get("size") {
            None | Some(Value::Null) => d.longest_edge,
            Some(Value::Object(m)) => m.get("longest_edge").and_then(as_u32).ok_or_else(|| {
                err(format!(
                    "size must be {{\"longest_edge\": n}}, got {}",
                    Value::Object(m.clone())
                ))
            })?,
            Some(other) => {
                return Err(err(format!(
                    "size must be {{\"longest_edge\": n}}, got {other}"
                )))
            }
        };
        let pad = match obj.get("pad_size") {
            None | Some(Value::Null) => d.pad,
            Some(Value::Object(m)) => match (
                m.get("height").and_then(as_u32),
                m.get("width").and_then(as_u32),
            ) {
                (Some(h), Some(w)) => (h, w),
                _ => {
                    return Err(err(format!(
                        "pad_size must be {{\"height\": h, \"width\": w}}, got {}",
                        Value::Object(m.clone())
                    )))
                }
            },
            Some(other) => {
                return Err(err(format!(
                    "pad_size must be {{\"height\": h, \"width\": w}}, got {other}"
                )))
            }
        };
        if pad.0 < longest_edge || pad.1 < longest_edge {
            return Err(err(format!(
                "pad_size {}×{} is smaller than size.longest_edge {longest_edge}",
                pad.0, pad.1
            )));
        }
        let interpolation = resample(obj.get("resample"), Interpolation::Bilinear).map_err(err)?;
        let mean = triple(obj.get("image_mean"), IMAGENET_MEAN)
            .map_err(|e| err(format!("image_mean: {e}")))?;
        let std = triple(obj.get("image_std"), IMAGENET_STD)
            .map_err(|e| err(format!("image_std: {e}")))?;
        check_std(&std).map_err(|e| err(format!("image_std: {e}")))?;
        Ok(Self {
            longest_edge,
            pad,
            interpolation,
            mean,
            std,
            do_normalize: flag("do_normalize")?,
        })
    }

    /// `_get_preprocess_shape`: `(height, width)` after the longest-side resize.
    pub fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        let scale = self.longest_edge as f64 / height.max(width) as f64;
        let round = |v: u32| ((v as f64 * scale + 0.5) as u32).max(1);
        (round(height), round(width))
    }
}

/// One image as SAM's encoder reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct SamPixels {
    /// CHW, `3 × pad.0 × pad.1`.
    pub pixels: Vec<f32>,
    /// `(height, width)` of the image before and after the resize.
    pub original: (u32, u32),
    pub resized: (u32, u32),
}

/// `SamImageProcessorPil`: RGB (alpha composited onto white, transformers 5's
/// `convert_to_rgb`), longest side to `longest_edge`, normalised, zero-padded.
pub fn preprocess_sam(img: &DecodedImage, cfg: &SamProcessorConfig) -> SamPixels {
    let (w, h) = (img.width(), img.height());
    let (rh, rw) = cfg.resized_size(h, w);
    let data = if img.mode() == SourceMode::Rgb && !img.has_transparency {
        resize::resample_squash(&img.data, w, h, 3, rw, rh, cfg.interpolation)
    } else {
        let rgb = img.composite_on_white();
        resize::resample_squash(rgb.as_raw(), w, h, 3, rw, rh, cfg.interpolation)
    };
    let resized = image::RgbImage::from_raw(rw, rh, data).expect("w * h * 3 buffer");
    let mut planes = Vec::with_capacity(3 * (rw * rh) as usize);
    normalize::normalize_with(&resized, cfg.mean, cfg.std, cfg.do_normalize, &mut planes);
    let (ph, pw) = (cfg.pad.0 as usize, cfg.pad.1 as usize);
    let (rh_u, rw_u) = (rh as usize, rw as usize);
    let mut pixels = vec![0f32; 3 * ph * pw];
    for c in 0..3 {
        for y in 0..rh_u {
            let src = &planes[(c * rh_u + y) * rw_u..(c * rh_u + y + 1) * rw_u];
            pixels[(c * ph + y) * pw..(c * ph + y) * pw + rw_u].copy_from_slice(src);
        }
    }
    SamPixels {
        pixels,
        original: (h, w),
        resized: (rh, rw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_sizes_follow_the_reference() {
        let cfg = SamProcessorConfig::from_preprocessor_config("{}").unwrap();
        assert_eq!(cfg, SamProcessorConfig::default());
        assert_eq!(cfg.resized_size(426, 640), (682, 1024));
        assert_eq!(cfg.resized_size(640, 424), (1024, 678));
        assert_eq!(cfg.resized_size(762, 2162), (361, 1024));
        for (json, needle) in [
            (r#"{"do_pad": false}"#, "do_pad"),
            (r#"{"size": {"height": 3}}"#, "longest_edge"),
            (r#"{"pad_size": {"height": 512, "width": 512}}"#, "smaller"),
            (r#"{"resample": 0}"#, "resample"),
        ] {
            let e = SamProcessorConfig::from_preprocessor_config(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains(SRC), "{json}: {e}");
        }
    }
}
