//! `(x / 255 - mean) / std` into planar (CHW) f32.

use crate::config::PreprocessConfig;

/// Append the normalized CHW planes of `img` (3 * width * height values) to
/// `out`. With `do_normalize == false` the values are just `x / 255`.
///
/// The arithmetic is f32 in the order torchvision's `ToTensor` + `Normalize`
/// use, so open_clip's tensors are reproduced bit for bit; transformers' fused
/// `(x - 255 mean) / (255 std)` agrees to ~1e-7.
pub fn normalize_into(img: &image::RgbImage, cfg: &PreprocessConfig, out: &mut Vec<f32>) {
    let (mean, std) = if cfg.do_normalize {
        (cfg.mean, cfg.std)
    } else {
        ([0.0; 3], [1.0; 3])
    };
    let raw = img.as_raw();
    out.reserve(raw.len());
    for c in 0..3 {
        out.extend(
            raw.iter()
                .skip(c)
                .step_by(3)
                .map(|&v| (v as f32 / 255.0 - mean[c]) / std[c]),
        );
    }
}
