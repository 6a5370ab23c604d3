//! Center crop with the two reference rounding conventions, padding with zeros
//! when the crop is larger than the image.

use std::ops::Range;

use crate::config::CropRounding;

/// Top/left offset of the crop window in the source; negative means padding.
///
/// * Crop larger than the image: both torchvision `F.center_crop` and the
///   transformers 5 (torchvision-backend) `CLIPImageProcessor` pad
///   `(crop - size) // 2` zeros before and the rest after.
///   (transformers' `CLIPImageProcessorPil` pads `ceil((crop - size) / 2)`
///   before instead; that variant is not offered.)
/// * Otherwise `Floor`: `(size - crop) // 2` (transformers);
///   `RoundHalfEven`: `int(round((size - crop) / 2.0))` (torchvision; Python's
///   `round` rounds halves to even, so 55.5 -> 56 but 54.5 -> 54).
pub(crate) fn crop_offset(size: usize, crop: usize, rounding: CropRounding) -> i64 {
    let (size, crop) = (size as i64, crop as i64);
    if crop > size {
        return -((crop - size) / 2);
    }
    let diff = size - crop;
    match rounding {
        CropRounding::Floor => diff / 2,
        CropRounding::RoundHalfEven => {
            let half = diff / 2;
            if diff % 2 == 1 && half % 2 == 1 {
                half + 1
            } else {
                half
            }
        }
    }
}

/// Crop a `w`x`h` interleaved buffer with `ch` channels to `crop`x`crop`.
pub(crate) fn center_crop(
    src: &[u8],
    w: u32,
    h: u32,
    ch: usize,
    crop: u32,
    rounding: CropRounding,
) -> Vec<u8> {
    let left = crop_offset(w as usize, crop as usize, rounding);
    let top = crop_offset(h as usize, crop as usize, rounding);
    let c = crop as usize;
    let mut out = vec![0u8; c * c * ch];
    for y in 0..c {
        let sy = top + y as i64;
        if sy < 0 || sy >= h as i64 {
            continue;
        }
        // Columns of this output row that fall inside the source.
        let x0 = (-left).max(0) as usize;
        let x1 = ((w as i64 - left).min(c as i64)).max(0) as usize;
        if x0 >= x1 {
            continue;
        }
        let s = (sy as usize * w as usize + (left + x0 as i64) as usize) * ch;
        let d = (y * c + x0) * ch;
        out[d..d + (x1 - x0) * ch].copy_from_slice(&src[s..s + (x1 - x0) * ch]);
    }
    out
}

/// What a center crop of `crop` keeps of an axis `size` long: that range of
/// the axis, and its offset in the crop (the padding before it, when the crop
/// is larger). [`center_crop`] copies exactly these pixels.
pub(crate) fn crop_window(
    size: usize,
    crop: usize,
    rounding: CropRounding,
) -> (Range<usize>, usize) {
    let offset = crop_offset(size, crop, rounding);
    let start = offset.max(0);
    let end = (offset + crop as i64).min(size as i64).max(start);
    (start as usize..end as usize, (start - offset) as usize)
}

/// A `crop` × `crop` image, zero except for `window` (`w` × `h` pixels of
/// `ch` channels) at column `dx`, row `dy`.
pub(crate) fn place(
    window: &[u8],
    (w, h): (usize, usize),
    ch: usize,
    crop: u32,
    (dx, dy): (usize, usize),
) -> Vec<u8> {
    let c = crop as usize;
    let mut out = vec![0u8; c * c * ch];
    if w == 0 {
        return out;
    }
    for (y, line) in window.chunks_exact(w * ch).take(h).enumerate() {
        let d = ((dy + y) * c + dx) * ch;
        out[d..d + w * ch].copy_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_python() {
        // (size, crop, floor, round-half-even) from Python's // and round().
        for (size, crop, fl, rhe) in [
            (335, 224, 55, 56),
            (333, 224, 54, 54),
            (336, 224, 56, 56),
            (224, 224, 0, 0),
            (47, 64, -8, -8),
            (46, 64, -9, -9),
        ] {
            assert_eq!(
                crop_offset(size, crop, CropRounding::Floor),
                fl,
                "{size} {crop}"
            );
            assert_eq!(
                crop_offset(size, crop, CropRounding::RoundHalfEven),
                rhe,
                "{size} {crop}"
            );
        }
    }

    #[test]
    fn pads_with_zeros() {
        // 2x3, 1 channel, into 4x4: torchvision pads (4-2)//2 = 1 left, (4-3)//2 = 0 on top.
        let src = vec![9u8; 2 * 3];
        let out = center_crop(&src, 2, 3, 1, 4, CropRounding::Floor);
        let expected: Vec<u8> = [[0, 9, 9, 0], [0, 9, 9, 0], [0, 9, 9, 0], [0, 0, 0, 0]].concat();
        assert_eq!(out, expected);
        let ((cols, dx), (rows, dy)) = (
            crop_window(2, 4, CropRounding::Floor),
            crop_window(3, 4, CropRounding::Floor),
        );
        assert_eq!((cols.clone(), dx, rows.clone(), dy), (0..2, 1, 0..3, 0));
        assert_eq!(place(&src, (2, 3), 1, 4, (dx, dy)), expected);
    }

    #[test]
    fn windows_copy_what_center_crop_copies() {
        // Every size against every crop, both roundings: a window placed in
        // the crop is the center crop, whether it pads or cuts.
        for rounding in [CropRounding::Floor, CropRounding::RoundHalfEven] {
            for (w, h) in [(1, 1), (1, 9), (7, 2), (5, 5), (12, 3), (9, 14)] {
                let src: Vec<u8> = (0..w * h * 2).map(|i| (i % 250 + 1) as u8).collect();
                for crop in 1..16u32 {
                    let (cols, dx) = crop_window(w, crop as usize, rounding);
                    let (rows, dy) = crop_window(h, crop as usize, rounding);
                    let mut window = Vec::new();
                    for y in rows.clone() {
                        window.extend_from_slice(
                            &src[(y * w + cols.start) * 2..(y * w + cols.end) * 2],
                        );
                    }
                    assert_eq!(
                        place(&window, (cols.len(), rows.len()), 2, crop, (dx, dy)),
                        center_crop(&src, w as u32, h as u32, 2, crop, rounding),
                        "{w}x{h} crop {crop}"
                    );
                }
            }
        }
    }
}
