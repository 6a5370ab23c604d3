//! Image decoding and CLIP preprocessing that reproduce the Python references
//! (PIL + transformers `CLIPImageProcessor`, open_clip / torchvision).
//!
//! * [`decode_file`] / [`decode_bytes`]: signature-sniffed decoding of JPEG,
//!   PNG, GIF (first frame), WebP, BMP, TIFF and PNM with EXIF orientation
//!   applied, a pixel budget checked from the header, and PIL
//!   `convert("RGB")` semantics. [`decode_file_full`] keeps PIL's mode, which
//!   exact parity with the references needs (see [`RgbConversion`]).
//! * [`resize_and_crop`]: Pillow's fixed-point BICUBIC/BILINEAR resampler,
//!   shortest-side resize and center crop with either rounding convention.
//! * [`normalize_into`]: CHW f32 normalisation appended to a batch buffer.
//!
//! JPEGs are decoded by a small built-in decoder that follows libjpeg-turbo's
//! default arithmetic (ISLOW IDCT, fancy upsampling), so pixels match PIL
//! exactly. Arithmetic-coded, lossless, hierarchical and 12-bit JPEGs are
//! rejected with [`ImageError::UnsupportedFormat`].

mod budget;
mod config;
mod crop;
mod decode;
mod error;
#[cfg(test)]
mod fuzz;
mod jpeg;
mod normalize;
#[cfg(test)]
mod oracle;
mod owlvit;
mod resize;
mod sam;
mod siglip;

/// Lets the `fuzz_` harnesses see each allocation's size.
#[cfg(test)]
#[global_allocator]
static FUZZ_ALLOC: seer_testkit::fuzz_mutator::PeakAlloc = seer_testkit::fuzz_mutator::PeakAlloc;

use std::path::Path;

pub use image;
use image::RgbImage;

pub use budget::{DecodeBudget, Reservation, DEFAULT_DECODE_MEMORY, RESERVED_BYTES_PER_PIXEL};
pub use config::{
    CropRounding, Interpolation, PreprocessConfig, RgbConversion, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
pub use decode::{
    decode_bytes, decode_bytes_full, decode_file, decode_file_full, decode_file_stored,
    read_file_limited, DecodeLimits, DecodedImage, SourceMode,
};
pub use error::ImageError;
pub use normalize::normalize_into;
pub use owlvit::{OwlProcessor, PadResizeConfig};
pub use resize::{pil_resize, shortest_edge_size};
pub use sam::{preprocess_sam, SamPixels, SamProcessorConfig, IMAGENET_MEAN, IMAGENET_STD};
pub use siglip::{
    preprocess_exact, preprocess_exact_rgb, preprocess_naflex, preprocess_naflex_rgb,
    ExactResizeConfig, NaflexConfig, NaflexPatches,
};

/// Resize (shorter side to `cfg.resize_to`) and center-crop an RGB image: the
/// uint8 image the reference processors feed to normalisation.
pub fn resize_and_crop(img: &RgbImage, cfg: &PreprocessConfig) -> RgbImage {
    let data = resize_crop_raw(img.as_raw(), img.width(), img.height(), 3, cfg, false);
    RgbImage::from_raw(cfg.crop_size, cfg.crop_size, data).expect("crop buffer is crop_size^2 * 3")
}

/// [`resize_and_crop`] for a [`DecodedImage`], honouring
/// `cfg.rgb_conversion` so palette, alpha and CMYK images match the chosen
/// reference exactly.
pub fn resize_and_crop_decoded(img: &DecodedImage, cfg: &PreprocessConfig) -> RgbImage {
    // An RGB image without transparency is resized from its own buffer: a copy
    // would double the memory a large image holds.
    let plain_rgb = img.mode() == SourceMode::Rgb && !img.has_transparency;
    match cfg.rgb_conversion {
        RgbConversion::DropAlpha | RgbConversion::CompositeOnWhite if plain_rgb => {
            let data = resize_crop_raw(&img.data, img.width(), img.height(), 3, cfg, false);
            RgbImage::from_raw(cfg.crop_size, cfg.crop_size, data)
                .expect("crop buffer is crop_size^2 * 3")
        }
        RgbConversion::DropAlpha => resize_and_crop(&img.to_rgb(), cfg),
        RgbConversion::CompositeOnWhite => resize_and_crop(&img.composite_on_white(), cfg),
        RgbConversion::AfterResize => {
            let mode = img.mode();
            let ch = mode.channels();
            let nearest = matches!(mode, SourceMode::Palette | SourceMode::Bilevel);
            let premultiplied = matches!(mode, SourceMode::Rgba | SourceMode::GrayAlpha);
            let mut data = if premultiplied {
                premultiply(&img.data, ch)
            } else {
                img.data.clone()
            };
            data = resize_crop_raw(&data, img.width(), img.height(), ch, cfg, nearest);
            if premultiplied {
                unpremultiply(&mut data, ch);
            }
            let rgb = decode::mode_to_rgb(mode, &data);
            RgbImage::from_raw(cfg.crop_size, cfg.crop_size, rgb)
                .expect("crop buffer is crop_size^2 * 3")
        }
    }
}

/// Shortest-edge resize, then center crop, of an interleaved buffer.
///
/// Only the part of the resized image that the crop keeps is computed: the
/// same pixels as resizing the whole image and cropping it (each resized
/// pixel depends only on its own filter window), in time and memory bounded
/// by the crop and the source rows it reads. The whole resized image can be
/// absurdly large: a valid 1 × 20,000,000 PNG resizes to 224 × 4,480,000,000
/// (3 TB), of which the crop keeps 224 × 224.
fn resize_crop_raw(
    src: &[u8],
    w: u32,
    h: u32,
    ch: usize,
    cfg: &PreprocessConfig,
    nearest: bool,
) -> Vec<u8> {
    if !(cfg.do_resize && cfg.resize_to > 0) {
        return crop::center_crop(src, w, h, ch, cfg.crop_size, cfg.crop_rounding);
    }
    let (nw, nh) = resize::shortest_edge_dims(w, h, cfg.resize_to);
    let crop = cfg.crop_size as usize;
    let (cols, dx) = crop::crop_window(nw, crop, cfg.crop_rounding);
    let (rows, dy) = crop::crop_window(nh, crop, cfg.crop_rounding);
    let size = (cols.len(), rows.len());
    let (w, h) = (w as usize, h as usize);
    let window = if nearest {
        resize::nearest_window(src, w, h, ch, nw, nh, cols, rows)
    } else {
        resize::resample_window(src, w, h, ch, nw, nh, cols, rows, cfg.interpolation)
    };
    crop::place(&window, size, ch, cfg.crop_size, (dx, dy))
}

/// PIL "RGBA"->"RGBa" / "LA"->"La": colour times alpha with MULDIV255.
fn premultiply(data: &[u8], ch: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    for px in out.chunks_exact_mut(ch) {
        let a = px[ch - 1] as u32;
        for v in &mut px[..ch - 1] {
            *v = decode::muldiv255(*v as u32, a) as u8;
        }
    }
    out
}

/// PIL "RGBa"->"RGBA": `clip8(255 * c / a)` (integer division), untouched
/// when alpha is 0 or 255.
fn unpremultiply(data: &mut [u8], ch: usize) {
    for px in data.chunks_exact_mut(ch) {
        let a = px[ch - 1] as u32;
        if a != 0 && a != 255 {
            for v in &mut px[..ch - 1] {
                *v = (255 * *v as u32 / a).min(255) as u8;
            }
        }
    }
}

/// Decode, resize, crop and normalise one file into a `3 * crop * crop` CHW
/// vector.
pub fn load_and_preprocess(
    path: &Path,
    cfg: &PreprocessConfig,
    limits: &DecodeLimits,
) -> Result<Vec<f32>, ImageError> {
    Ok(preprocess_decoded(&decode_file_full(path, limits)?, cfg))
}

/// Resize, crop and normalise an already decoded image into a `3 * crop * crop`
/// CHW vector (for callers that read the file themselves, e.g. to hash it).
pub fn preprocess_decoded(img: &DecodedImage, cfg: &PreprocessConfig) -> Vec<f32> {
    let cropped = resize_and_crop_decoded(img, cfg);
    let mut out = Vec::with_capacity(3 * cropped.width() as usize * cropped.height() as usize);
    normalize_into(&cropped, cfg, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every image of the parity fixtures, in its PIL mode, at every size the
    /// fixtures use and more (crops larger than the resize: padding), both
    /// filters and roundings, NEAREST too: the crop's window of the resize
    /// is byte for byte the whole resize cropped.
    #[test]
    fn windowed_resize_crop_is_the_whole_resize_cropped() {
        let root = seer_testkit::repo_root().join("fixtures/preprocess");
        let manifest = seer_testkit::read_json(&root.join("manifest.json"));
        let limits = DecodeLimits::default();
        let mut checked = 0;
        for entry in manifest["entries"].as_array().unwrap() {
            let rel = entry["path"].as_str().unwrap();
            let path = match entry["root"].as_str().unwrap() {
                "shared" => seer_testkit::shared_data().join(rel),
                _ => root.join(rel),
            };
            let img = decode_file_full(&path, &limits).unwrap();
            let ch = img.mode().channels();
            let (resize, crop) = (
                entry["resize_to"].as_u64().unwrap() as u32,
                entry["crop_size"].as_u64().unwrap() as u32,
            );
            for (resize, crop) in [(resize, crop), (resize, crop + 31), (crop + 5, crop)] {
                for (interpolation, rounding, nearest) in [
                    (Interpolation::Bicubic, CropRounding::RoundHalfEven, false),
                    (Interpolation::Bilinear, CropRounding::Floor, false),
                    (Interpolation::Bicubic, CropRounding::Floor, true),
                ] {
                    let mut cfg = PreprocessConfig::openai_clip(crop);
                    cfg.resize_to = resize;
                    cfg.interpolation = interpolation;
                    cfg.crop_rounding = rounding;
                    let (w, h) = (img.width(), img.height());
                    let got = resize_crop_raw(&img.data, w, h, ch, &cfg, nearest);
                    let want = oracle::resize_crop_raw(&img.data, w, h, ch, &cfg, nearest);
                    assert!(
                        got == want,
                        "{rel} {resize}/{crop} {interpolation:?} {nearest}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }
}
