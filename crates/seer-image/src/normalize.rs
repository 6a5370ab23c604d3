//! `(x / 255 - mean) / std` into planar (CHW) f32.

use crate::config::PreprocessConfig;

/// Append the normalized CHW planes of `img` (3 * width * height values) to
/// `out`. With `do_normalize == false` the values are just `x / 255`.
///
/// The arithmetic is f32 in the order torchvision's `ToTensor` + `Normalize`
/// use, so open_clip's tensors are reproduced bit for bit; transformers' fused
/// `(x - 255 mean) / (255 std)` agrees to ~1e-7.
pub fn normalize_into(img: &image::RgbImage, cfg: &PreprocessConfig, out: &mut Vec<f32>) {
    normalize_with(img, cfg.mean, cfg.std, cfg.do_normalize, out);
}

/// [`normalize_into`] with the constants given directly (processors other than CLIP's).
pub(crate) fn normalize_with(
    img: &image::RgbImage,
    mean: [f32; 3],
    std: [f32; 3],
    do_normalize: bool,
    out: &mut Vec<f32>,
) {
    let (mean, std) = if do_normalize {
        (mean, std)
    } else {
        ([0.0; 3], [1.0; 3])
    };
    let raw = img.as_raw();
    let n = raw.len() / 3;
    let start = out.len();
    out.resize(start + 3 * n, 0.0);
    let (red, rest) = out[start..].split_at_mut(n);
    let (green, blue) = rest.split_at_mut(n);
    // One pass over the interleaved pixels into the three planes (a strided pass
    // per plane did not vectorise its divisions).
    for (i, px) in raw.chunks_exact(3).enumerate() {
        red[i] = (px[0] as f32 / 255.0 - mean[0]) / std[0];
        green[i] = (px[1] as f32 / 255.0 - mean[1]) / std[1];
        blue[i] = (px[2] as f32 / 255.0 - mean[2]) / std[2];
    }
}
