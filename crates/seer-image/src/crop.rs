//! Center crop with the two reference rounding conventions, padding with zeros
//! when the crop is larger than the image.

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
pub(crate) fn crop_offset(size: u32, crop: u32, rounding: CropRounding) -> i64 {
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
    let left = crop_offset(w, crop, rounding);
    let top = crop_offset(h, crop, rounding);
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
    }
}
