//! Training-time augmentation: torchvision's `RandomResizedCrop` (as open_clip
//! uses it) and an optional horizontal flip.

use seer_image::image::{imageops, RgbImage};
use seer_image::{pil_resize, Interpolation};

use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the image.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (log-uniform).
    pub ratio: (f32, f32),
    /// Flip horizontally with probability 0.5.
    pub hflip: bool,
}

impl Default for RandomResizedCrop {
    /// open_clip's training default.
    fn default() -> Self {
        Self {
            scale: (0.9, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: false,
        }
    }
}

impl RandomResizedCrop {
    /// A `size`×`size` crop of `img`.
    pub fn apply(&self, img: &RgbImage, size: u32, rng: &mut Rng) -> RgbImage {
        let (x, y, w, h) = self.region(img.width(), img.height(), rng);
        let crop = imageops::crop_imm(img, x, y, w, h).to_image();
        let mut out = pil_resize(&crop, size, size, Interpolation::Bicubic);
        if self.hflip && rng.uniform() < 0.5 {
            imageops::flip_horizontal_in_place(&mut out);
        }
        out
    }

    /// torchvision's `get_params`: up to 10 tries, then a centre crop.
    fn region(&self, width: u32, height: u32, rng: &mut Rng) -> (u32, u32, u32, u32) {
        let area = (width * height) as f64;
        let (log_lo, log_hi) = ((self.ratio.0 as f64).ln(), (self.ratio.1 as f64).ln());
        for _ in 0..10 {
            let target =
                area * (self.scale.0 as f64 + rng.uniform() * (self.scale.1 - self.scale.0) as f64);
            let aspect = (log_lo + rng.uniform() * (log_hi - log_lo)).exp();
            let w = (target * aspect).sqrt().round() as u32;
            let h = (target / aspect).sqrt().round() as u32;
            if w > 0 && h > 0 && w <= width && h <= height {
                let x = rng.below((width - w + 1) as usize) as u32;
                let y = rng.below((height - h + 1) as usize) as u32;
                return (x, y, w, h);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio.0 as f64 {
            (
                width,
                ((width as f64 / self.ratio.0 as f64).round() as u32).min(height),
            )
        } else if in_ratio > self.ratio.1 as f64 {
            (
                ((height as f64 * self.ratio.1 as f64).round() as u32).min(width),
                height,
            )
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w.max(1), h.max(1))
    }
}
