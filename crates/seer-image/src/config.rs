//! Preprocessing configuration, parsed from transformers'
//! `preprocessor_config.json` or open_clip's `preprocess_cfg`.

use serde_json::Value;

use crate::error::ImageError;

/// OpenAI CLIP's normalisation constants (open_clip `OPENAI_DATASET_MEAN/STD`),
/// written with the published digits; they round to the same f32 torch uses.
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How the center-crop offset is rounded when `(size - crop)` is odd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropRounding {
    /// transformers: `(size - crop) // 2`.
    Floor,
    /// torchvision `CenterCrop` (open_clip, OpenAI CLIP): `int(round((size - crop) / 2.0))`.
    RoundHalfEven,
}

/// Resampling filter (Pillow semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    Bicubic,
    Bilinear,
}

/// When and how the image becomes RGB, which is where the references differ
/// for palette, alpha and CMYK images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RgbConversion {
    /// open_clip / OpenAI CLIP: Resize and CenterCrop run on the image in its
    /// PIL mode and `convert("RGB")` comes last. PIL therefore resizes "P" and
    /// "1" images with NEAREST (whatever filter was asked for), RGBA/LA with
    /// premultiplied alpha (fully transparent pixels end up black), CMYK in CMYK.
    AfterResize,
    /// transformers 5 `convert_to_rgb`: composite images that have alpha or
    /// `info["transparency"]` onto white, then resize in RGB.
    CompositeOnWhite,
    /// Plain `convert("RGB")` (alpha dropped) before resizing, as transformers
    /// 4.x did and as [`crate::decode_file`] returns.
    DropAlpha,
}

/// Everything needed to turn a decoded image into a CLIP input tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    /// Target length of the shorter side.
    pub resize_to: u32,
    /// Side of the square center crop (the model's input resolution).
    pub crop_size: u32,
    pub interpolation: Interpolation,
    pub crop_rounding: CropRounding,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Skip the resize (transformers `do_resize: false`); the crop still runs.
    pub do_resize: bool,
    /// `false` gives plain `x / 255`.
    pub do_normalize: bool,
    pub rgb_conversion: RgbConversion,
}

impl PreprocessConfig {
    /// OpenAI CLIP / open_clip defaults at the given resolution.
    pub fn openai_clip(image_size: u32) -> Self {
        PreprocessConfig {
            resize_to: image_size,
            crop_size: image_size,
            interpolation: Interpolation::Bicubic,
            crop_rounding: CropRounding::RoundHalfEven,
            mean: OPENAI_CLIP_MEAN,
            std: OPENAI_CLIP_STD,
            do_resize: true,
            do_normalize: true,
            rgb_conversion: RgbConversion::AfterResize,
        }
    }

    /// Parse a transformers `preprocessor_config.json` (CLIPImageProcessor).
    pub fn from_hf_preprocessor_config(json: &str) -> Result<Self, ImageError> {
        const SRC: &str = "preprocessor_config.json";
        let err = |detail: String| ImageError::Config {
            config: SRC.into(),
            detail,
        };
        let v: Value =
            serde_json::from_str(json).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("top level is not an object".into()))?;
        let flag = |key: &str, default: bool| -> Result<bool, ImageError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(err(format!("`{key}` must be a boolean, got {other}"))),
            }
        };
        let do_resize = flag("do_resize", true)?;
        let do_center_crop = flag("do_center_crop", true)?;
        let do_normalize = flag("do_normalize", true)?;
        let do_rescale = flag("do_rescale", true)?;
        // do_convert_rgb=false only matters for non-RGB inputs, which we always convert.
        flag("do_convert_rgb", true)?;
        if !do_center_crop {
            return Err(err(
                "do_center_crop=false is not supported (CLIP needs a fixed-size square input)"
                    .into(),
            ));
        }
        if !do_rescale {
            return Err(err("do_rescale=false is not supported".into()));
        }
        if let Some(f) = obj.get("rescale_factor").and_then(Value::as_f64) {
            if (f - 1.0 / 255.0).abs() > 1e-9 {
                return Err(err(format!(
                    "rescale_factor {f} is not supported (only 1/255)"
                )));
            }
        }
        let resize_to = match obj.get("size") {
            None | Some(Value::Null) => 224,
            Some(Value::Object(m)) => match (m.get("shortest_edge"), m.get("height"), m.get("width")) {
                (Some(s), _, _) => as_u32(s).ok_or_else(|| err(format!("size.shortest_edge must be a positive integer, got {s}")))?,
                (None, Some(_), Some(_)) => {
                    return Err(err("size {height, width} (squash resize) is not supported; expected {\"shortest_edge\": n}".into()))
                }
                _ => return Err(err(format!("unrecognised `size` {}", Value::Object(m.clone())))),
            },
            Some(s) => as_u32(s).ok_or_else(|| err(format!("`size` must be an integer or {{\"shortest_edge\": n}}, got {s}")))?,
        };
        let crop_size = match obj.get("crop_size") {
            None | Some(Value::Null) => 224,
            Some(Value::Object(m)) => {
                let h = m.get("height").and_then(as_u32);
                let w = m.get("width").and_then(as_u32);
                match (h, w) {
                    (Some(h), Some(w)) if h == w => h,
                    (Some(h), Some(w)) => {
                        return Err(err(format!(
                            "non-square crop_size {h}x{w} is not supported"
                        )))
                    }
                    _ => return Err(err("crop_size needs integer `height` and `width`".into())),
                }
            }
            Some(s) => as_u32(s).ok_or_else(|| {
                err(format!(
                    "`crop_size` must be an integer or {{height, width}}, got {s}"
                ))
            })?,
        };
        let interpolation = resample(obj.get("resample"), Interpolation::Bicubic).map_err(err)?;
        let mean = triple(obj.get("image_mean"), OPENAI_CLIP_MEAN)
            .map_err(|d| err(format!("image_mean: {d}")))?;
        let std = triple(obj.get("image_std"), OPENAI_CLIP_STD)
            .map_err(|d| err(format!("image_std: {d}")))?;
        check_std(&std).map_err(|d| err(format!("image_std: {d}")))?;
        Ok(PreprocessConfig {
            resize_to,
            crop_size,
            interpolation,
            crop_rounding: CropRounding::Floor,
            mean,
            std,
            do_resize,
            do_normalize,
            rgb_conversion: RgbConversion::CompositeOnWhite,
        })
    }

    /// Parse a `BitImageProcessor` `preprocessor_config.json`, as the DINOv2
    /// checkpoints ship (shortest edge 256, bicubic, center crop 224, ImageNet
    /// mean and std). Its steps and class defaults are `CLIPImageProcessor`'s,
    /// including transformers 5's composite-on-white RGB conversion, so the
    /// same pipeline serves both; this only checks that the file is one.
    pub fn from_bit_preprocessor_config(json: &str) -> Result<Self, ImageError> {
        let kind = serde_json::from_str::<Value>(json)
            .ok()
            .and_then(|v| v.get("image_processor_type")?.as_str().map(str::to_string));
        if let Some(kind) = kind {
            // transformers 5 writes the class's backend variant (…Fast, …Pil) too.
            if !kind.starts_with("BitImageProcessor") {
                return Err(ImageError::Config {
                    config: "preprocessor_config.json".into(),
                    detail: format!("image_processor_type {kind:?} is not a BitImageProcessor"),
                });
            }
        }
        Self::from_hf_preprocessor_config(json)
    }

    /// open_clip's eval transform (`image_transform(image_size, is_train=False)`)
    /// with an optional `preprocess_cfg` from `open_clip_config.json`
    /// (`mean`, `std`, `interpolation`, `resize_mode`, `size`).
    pub fn open_clip(image_size: u32, cfg: Option<&Value>) -> Result<Self, ImageError> {
        const SRC: &str = "open_clip preprocess_cfg";
        let err = |detail: String| ImageError::Config {
            config: SRC.into(),
            detail,
        };
        if image_size == 0 {
            return Err(err("image_size must be positive".into()));
        }
        let mut out = PreprocessConfig::openai_clip(image_size);
        let Some(cfg) = cfg else { return Ok(out) };
        let obj = cfg
            .as_object()
            .ok_or_else(|| err(format!("expected an object, got {cfg}")))?;
        if let Some(size) = obj.get("size").filter(|s| !s.is_null()) {
            let ok = match size {
                Value::Array(a) => a.len() == 2 && a.iter().all(|x| as_u32(x) == Some(image_size)),
                s => as_u32(s) == Some(image_size),
            };
            if !ok {
                return Err(err(format!("size {size} does not match image_size {image_size} (only square sizes are supported)")));
            }
        }
        out.mean =
            triple(obj.get("mean"), OPENAI_CLIP_MEAN).map_err(|d| err(format!("mean: {d}")))?;
        out.std = triple(obj.get("std"), OPENAI_CLIP_STD).map_err(|d| err(format!("std: {d}")))?;
        check_std(&out.std).map_err(|d| err(format!("std: {d}")))?;
        out.interpolation = match obj.get("interpolation") {
            None | Some(Value::Null) => Interpolation::Bicubic,
            Some(Value::String(s)) => match s.as_str() {
                // open_clip ignores "random" at inference and uses bicubic.
                "bicubic" | "random" => Interpolation::Bicubic,
                "bilinear" => Interpolation::Bilinear,
                other => {
                    return Err(err(format!(
                        "interpolation {other:?} is not supported (bicubic, bilinear)"
                    )))
                }
            },
            Some(other) => return Err(err(format!("interpolation must be a string, got {other}"))),
        };
        match obj.get("resize_mode") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "shortest" => {}
            Some(other) => {
                return Err(err(format!(
                    "resize_mode {other} is not supported (only \"shortest\")"
                )));
            }
        }
        Ok(out)
    }
}

/// transformers' PIL `resample` code: 3 bicubic, 2 bilinear (others refused).
pub(crate) fn resample(v: Option<&Value>, default: Interpolation) -> Result<Interpolation, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(r) => match r.as_u64() {
            Some(3) => Ok(Interpolation::Bicubic),
            Some(2) => Ok(Interpolation::Bilinear),
            _ => Err(format!(
                "resample {r} is not supported (3 = bicubic, 2 = bilinear)"
            )),
        },
    }
}

pub(crate) fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64()
        .filter(|&n| n > 0)
        .and_then(|n| u32::try_from(n).ok())
}

pub(crate) fn triple(v: Option<&Value>, default: [f32; 3]) -> Result<[f32; 3], String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        // A scalar means the same value for all channels (open_clip accepts it).
        Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(f64::NAN) as f32; 3]),
        Some(Value::Array(a)) if a.len() == 3 => {
            let mut out = [0f32; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x.as_f64().ok_or_else(|| format!("{x} is not a number"))? as f32;
            }
            Ok(out)
        }
        Some(other) => Err(format!("expected 3 numbers, got {other}")),
    }
}

pub(crate) fn check_std(std: &[f32; 3]) -> Result<(), String> {
    if std.iter().all(|s| s.is_finite() && *s > 0.0) {
        Ok(())
    } else {
        Err(format!("values must be positive, got {std:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_vit_b32() {
        let json = r#"{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true, "do_convert_rgb": true,
            "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}"#;
        let c = PreprocessConfig::from_hf_preprocessor_config(json).unwrap();
        assert_eq!((c.resize_to, c.crop_size), (224, 224));
        assert_eq!(c.interpolation, Interpolation::Bicubic);
        assert_eq!(c.crop_rounding, CropRounding::Floor);
        assert_eq!(c.mean, OPENAI_CLIP_MEAN);
        assert_eq!(c.rgb_conversion, RgbConversion::CompositeOnWhite);
        // Old-style integer sizes.
        let c = PreprocessConfig::from_hf_preprocessor_config(
            r#"{"size": 336, "crop_size": 336, "resample": 2}"#,
        )
        .unwrap();
        assert_eq!(
            (c.resize_to, c.crop_size, c.interpolation),
            (336, 336, Interpolation::Bilinear)
        );
    }

    #[test]
    fn hf_errors() {
        for bad in [
            "not json",
            r#"{"resample": 1}"#,
            r#"{"size": {"height": 224, "width": 224}}"#,
            r#"{"crop_size": {"height": 224, "width": 200}}"#,
            r#"{"image_mean": [1, 2]}"#,
            r#"{"image_std": [1, 0, 1]}"#,
            r#"{"do_center_crop": false}"#,
        ] {
            let e = PreprocessConfig::from_hf_preprocessor_config(bad).unwrap_err();
            assert!(e.to_string().contains("preprocessor_config.json"), "{e}");
        }
    }

    #[test]
    fn bit_image_processor_of_dinov2() {
        let json = r#"{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
            "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "BitImageProcessor",
            "image_std": [0.229, 0.224, 0.225], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}}"#;
        let c = PreprocessConfig::from_bit_preprocessor_config(json).unwrap();
        assert_eq!((c.resize_to, c.crop_size), (256, 224));
        assert_eq!(
            (c.mean, c.std),
            ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        );
        assert_eq!(c.interpolation, Interpolation::Bicubic);
        assert_eq!(c.crop_rounding, CropRounding::Floor);
        assert_eq!(c.rgb_conversion, RgbConversion::CompositeOnWhite);
        let e = PreprocessConfig::from_bit_preprocessor_config(
            r#"{"image_processor_type": "SiglipImageProcessor"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("preprocessor_config.json"), "{e}");
        assert!(e.to_string().contains("SiglipImageProcessor"), "{e}");
    }

    #[test]
    fn open_clip_cfg() {
        let c = PreprocessConfig::open_clip(224, None).unwrap();
        assert_eq!(c, PreprocessConfig::openai_clip(224));
        let v = serde_json::json!({"size": 384, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "interpolation": "bilinear", "resize_mode": "shortest"});
        let c = PreprocessConfig::open_clip(384, Some(&v)).unwrap();
        assert_eq!(
            (c.mean, c.std, c.interpolation),
            ([0.5; 3], [0.5; 3], Interpolation::Bilinear)
        );
        assert_eq!(c.crop_rounding, CropRounding::RoundHalfEven);
        for bad in [
            serde_json::json!({"resize_mode": "squash"}),
            serde_json::json!({"resize_mode": "longest"}),
            serde_json::json!({"interpolation": "lanczos"}),
            serde_json::json!({"size": [224, 256]}),
        ] {
            let e = PreprocessConfig::open_clip(224, Some(&bad)).unwrap_err();
            assert!(e.to_string().contains("open_clip"), "{e}");
        }
    }
}
