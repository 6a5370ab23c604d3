//! COCO instance masks exactly as pycocotools makes them (`COCO.annToMask`):
//! polygons go through `maskApi.c`'s `rleFrPoly` (every vertex scaled by 5 and
//! rounded, the boundary walked densely, its x-crossings taken back at pixel
//! centres), one RLE per polygon, unioned; uncompressed RLE (`counts` a list)
//! and compressed RLE (`counts` a string, the LEB128-like code of
//! `rleFrString`) are read as they are. Masks come out row-major (`y * width +
//! x`), whereas pycocotools' RLE runs are column-major, starting with 0s.
//!
//! pycocotools' quirks are kept: a polygon list whose first entry has exactly
//! four numbers or fewer is refused (`frPyObjects` fails on it), and C's
//! `(int)` casts truncate toward zero (a NaN slope of a repeated vertex becomes
//! `INT_MIN`, as on x86).

use serde_json::Value;

use crate::error::{EngineError, Result};

/// A binary mask, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<bool>,
}

impl Mask {
    /// Pixels set.
    pub fn area(&self) -> u64 {
        self.data.iter().filter(|&&b| b).count() as u64
    }
}

/// Run-length encoding as pycocotools keeps it: column-major runs that start
/// with 0s (a first run of length 0 when the first pixel is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rle {
    pub height: usize,
    pub width: usize,
    pub counts: Vec<u32>,
}

/// C's `(int)` of a double as x86 computes it (`cvttsd2si`): truncation toward
/// zero, `INT_MIN` for NaN and out-of-range values.
fn c_int(v: f64) -> i32 {
    if v.is_nan() || v >= 2147483648.0 || v <= -2147483649.0 {
        i32::MIN
    } else {
        v as i32
    }
}

impl Rle {
    /// `rleFrPoly`: `xy` holds `x0, y0, x1, y1, …` (an odd last number is
    /// ignored, as pycocotools' `len(p) / 2` does).
    pub fn from_polygon(xy: &[f64], height: usize, width: usize) -> Rle {
        let k = xy.len() / 2;
        let (h, w) = (height as i64, width as i64);
        let scale = 5.0f64;
        let mut x: Vec<i32> = (0..k).map(|j| c_int(scale * xy[2 * j] + 0.5)).collect();
        let mut y: Vec<i32> = (0..k).map(|j| c_int(scale * xy[2 * j + 1] + 0.5)).collect();
        if k == 0 {
            // rleFrPoly reads x[0] then; an empty polygon covers nothing.
            return Rle {
                height,
                width,
                counts: vec![(height * width) as u32],
            };
        }
        x.push(x[0]);
        y.push(y[0]);
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let dx = (xe as i64 - xs as i64).abs() as i32;
            let dy = (ys as i64 - ye as i64).abs() as i32;
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            let s = if dx >= dy {
                (ye as f64 - ys as f64) / dx as f64
            } else {
                (xe as f64 - xs as f64) / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push(t.wrapping_add(xs));
                    v.push(c_int(ys as f64 + s * t as f64 + 0.5));
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push(t.wrapping_add(ys));
                    u.push(c_int(xs as f64 + s * t as f64 + 0.5));
                }
            }
        }
        // Points along the y-boundary, downsampled.
        let mut a: Vec<u32> = Vec::new();
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let xd = if u[j] < u[j - 1] {
                u[j]
            } else {
                u[j].wrapping_sub(1)
            } as f64;
            let xd = (xd + 0.5) / scale - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
                continue;
            }
            let yd = if v[j] < v[j - 1] { v[j] } else { v[j - 1] } as f64;
            let mut yd = (yd + 0.5) / scale - 0.5;
            if yd < 0.0 {
                yd = 0.0;
            } else if yd > h as f64 {
                yd = h as f64;
            }
            let yd = yd.ceil();
            // (uint)(x * (int)h + y), wrapping as C's unsigned conversion does.
            a.push((xd as i32 as i64 * h + yd as i32 as i64) as u32);
        }
        a.push((h * w) as u32);
        a.sort_unstable();
        let mut p = 0u32;
        for t in a.iter_mut() {
            let next = *t;
            *t = t.wrapping_sub(p);
            p = next;
        }
        let mut b = vec![a[0]];
        let mut j = 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    *b.last_mut().expect("b starts non-empty") += a[j];
                    j += 1;
                }
            }
        }
        Rle {
            height,
            width,
            counts: b,
        }
    }

    /// `rleFrBbox`: the box `[x, y, w, h]` as the polygon of its corners.
    pub fn from_bbox(bb: [f64; 4], height: usize, width: usize) -> Rle {
        let (xs, ys) = (bb[0], bb[1]);
        let (xe, ye) = (xs + bb[2], ys + bb[3]);
        Rle::from_polygon(&[xs, ys, xs, ye, xe, ye, xe, ys], height, width)
    }

    /// `rleFrString`: the compressed `counts` string of COCO JSON.
    pub fn from_string(s: &str, height: usize, width: usize) -> Result<Rle> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let (mut x, mut k, mut more) = (0i64, 0u32, true);
            while more {
                let Some(&byte) = bytes.get(p) else {
                    return Err(EngineError::Invalid(
                        "compressed RLE counts end in the middle of a number".into(),
                    ));
                };
                if !(48..=111).contains(&byte) || k > 12 {
                    return Err(EngineError::Invalid(format!(
                        "compressed RLE counts hold an invalid character {:?}",
                        byte as char
                    )));
                }
                let c = (byte - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more && (c & 0x10) != 0 {
                    x |= -1i64 << (5 * k);
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            counts.push(x as u32);
        }
        Ok(Rle {
            height,
            width,
            counts,
        })
    }

    /// `rleToString`: the compressed `counts` string.
    pub fn to_compressed(&self) -> String {
        let mut s = String::new();
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = c as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            let mut more = true;
            while more {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
            }
        }
        s
    }

    /// `rleEncode` of a row-major mask: the canonical runs (no empty run but
    /// a leading one).
    pub fn encode(mask: &Mask) -> Rle {
        let (h, w) = (mask.height, mask.width);
        let mut counts = Vec::new();
        let (mut current, mut run) = (false, 0u32);
        for x in 0..w {
            for y in 0..h {
                let b = mask.data[y * w + x];
                if b != current {
                    counts.push(run);
                    run = 0;
                    current = b;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle {
            height: h,
            width: w,
            counts,
        }
    }

    /// `rleDecode` to a row-major mask. Runs must cover the mask exactly.
    pub fn decode(&self) -> Result<Mask> {
        let (h, w) = (self.height, self.width);
        let total: u64 = self.counts.iter().map(|&c| c as u64).sum();
        if total != (h * w) as u64 {
            return Err(EngineError::Invalid(format!(
                "RLE counts cover {total} pixels, but the mask is {h}×{w} ({} pixels)",
                h * w
            )));
        }
        let mut data = vec![false; h * w];
        let mut i = 0usize;
        for (k, &c) in self.counts.iter().enumerate() {
            let c = c as usize;
            if k % 2 == 1 {
                for j in i..i + c {
                    data[(j % h) * w + j / h] = true;
                }
            }
            i += c;
        }
        Ok(Mask {
            width: w,
            height: h,
            data,
        })
    }
}

/// `COCO.annToMask`: an annotation's `segmentation` (polygons, uncompressed or
/// compressed RLE) as a mask of its image's size (`height`, `width` from the
/// image entry, as pycocotools takes them).
pub fn annotation_mask(segmentation: &Value, height: usize, width: usize) -> Result<Mask> {
    if height == 0 || width == 0 || height.saturating_mul(width) > u32::MAX as usize {
        return Err(EngineError::Invalid(format!(
            "the image size {width}×{height} cannot hold a COCO mask"
        )));
    }
    match segmentation {
        Value::Array(polygons) => {
            let mut mask = Mask {
                width,
                height,
                data: vec![false; height * width],
            };
            let numbers = |p: &Value| -> Result<Vec<f64>> {
                p.as_array()
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .ok_or_else(|| {
                        EngineError::Invalid("a polygon is not a list of numbers".into())
                    })
            };
            let Some(first) = polygons.first() else {
                // pycocotools fails on an empty list (pyobj[0]); nothing to draw.
                return Err(EngineError::Invalid(
                    "the segmentation is an empty list of polygons".into(),
                ));
            };
            // frPyObjects reads a list as polygons only when its first entry
            // has more than 4 numbers (4 go to frBbox, which refuses a list;
            // fewer are "not supported"): pycocotools raises for both.
            let n = numbers(first)?.len();
            if n <= 4 {
                return Err(EngineError::Invalid(format!(
                    "the first polygon has {n} numbers; pycocotools decodes polygons only when \
                     the first has more than 4"
                )));
            }
            for p in polygons {
                let rle = Rle::from_polygon(&numbers(p)?, height, width);
                let part = rle.decode()?;
                for (m, p) in mask.data.iter_mut().zip(part.data) {
                    *m |= p;
                }
            }
            Ok(mask)
        }
        Value::Object(rle) => {
            let size = rle
                .get("size")
                .and_then(Value::as_array)
                .and_then(|s| match s.as_slice() {
                    [h, w] => Some((h.as_u64()? as usize, w.as_u64()? as usize)),
                    _ => None,
                })
                .ok_or_else(|| {
                    EngineError::Invalid("an RLE segmentation needs \"size\": [h, w]".into())
                })?;
            let rle = match rle.get("counts") {
                Some(Value::Array(counts)) => Rle {
                    height: size.0,
                    width: size.1,
                    counts: counts
                        .iter()
                        .map(|c| c.as_u64().filter(|&c| c <= u32::MAX as u64))
                        .map(|c| c.map(|c| c as u32))
                        .collect::<Option<Vec<u32>>>()
                        .ok_or_else(|| {
                            EngineError::Invalid("RLE counts must be non-negative integers".into())
                        })?,
                },
                Some(Value::String(s)) => Rle::from_string(s, size.0, size.1)?,
                _ => {
                    return Err(EngineError::Invalid(
                        "an RLE segmentation needs \"counts\" (a list or a string)".into(),
                    ))
                }
            };
            if size != (height, width) {
                return Err(EngineError::Invalid(format!(
                    "the RLE is {}×{} (h×w) but its image is {height}×{width}",
                    size.0, size.1
                )));
            }
            rle.decode()
        }
        _ => Err(EngineError::Invalid(
            "a segmentation must be a list of polygons or an RLE object".into(),
        )),
    }
}

/// Pixels set in both masks and in either.
pub fn intersection_union(a: &[bool], b: &[bool]) -> (u64, u64) {
    let (mut i, mut u) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        i += (x && y) as u64;
        u += (x || y) as u64;
    }
    (i, u)
}

/// Intersection over union of two masks of the same size; `None` when both
/// are empty (the ratio means nothing then).
pub fn mask_iou(a: &Mask, b: &Mask) -> Result<Option<f64>> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(EngineError::Invalid(format!(
            "cannot compare a {}×{} mask with a {}×{} one",
            a.width, a.height, b.width, b.height
        )));
    }
    let (i, u) = intersection_union(&a.data, &b.data);
    Ok((u > 0).then(|| i as f64 / u as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counts(segmentation: Value, h: usize, w: usize) -> Vec<u32> {
        Rle::encode(&annotation_mask(&segmentation, h, w).unwrap()).counts
    }

    // Expected runs printed by pycocotools 2.0.11:
    // maskUtils.encode(np.asfortranarray(coco.annToMask(ann))) (canonical runs)
    // or rleFrPoly's own runs, as named.

    #[test]
    fn triangle_matches_pycocotools() {
        // frPyObjects([[1,1, 8,2, 3,7]], 10, 10) -> counts as pycocotools gives.
        let c = counts(json!([[1.0, 1.0, 8.0, 2.0, 3.0, 7.0]]), 10, 10);
        assert_eq!(c, TRIANGLE);
    }

    #[test]
    fn fractional_polygon_with_a_repeated_vertex_matches_pycocotools() {
        let c = counts(
            json!([[0.3, 0.2, 5.7, 0.2, 5.7, 0.2, 6.1, 4.4, 0.3, 5.9]]),
            7,
            8,
        );
        assert_eq!(c, REPEATED);
    }

    #[test]
    fn polygon_outside_the_image_is_clipped_as_pycocotools_clips_it() {
        let c = counts(json!([[-3.0, -2.0, 12.5, 1.0, 4.0, 9.5]]), 6, 5);
        assert_eq!(c, OUTSIDE);
    }

    #[test]
    fn two_polygons_are_unioned_and_four_numbers_are_refused() {
        let c = counts(
            json!([
                [0.0, 0.0, 3.0, 0.0, 3.0, 3.0],
                [4.0, 4.0, 7.0, 4.0, 7.0, 7.0, 4.0, 7.0]
            ]),
            8,
            8,
        );
        assert_eq!(c, UNION);
        // pycocotools raises a TypeError here (frBbox wants an array).
        assert!(annotation_mask(&json!([[1.0, 2.0, 3.0, 2.5]]), 6, 6).is_err());
        let c = counts(json!([[1.0, 2.0, 3.0, 2.5, 2.0, 5.0]]), 6, 6);
        assert_eq!(c, SHORT);
    }

    #[test]
    fn compressed_counts_round_trip_and_decode_column_major() {
        let rle = Rle {
            height: 3,
            width: 2,
            counts: vec![1, 2, 3],
        };
        let s = rle.to_compressed();
        assert_eq!(Rle::from_string(&s, 3, 2).unwrap(), rle);
        // Column-major: pixels (0,0) off, (1,0) and (2,0) on, second column off.
        let m = rle.decode().unwrap();
        assert_eq!(m.data, [false, false, true, false, true, false]);
        assert_eq!(Rle::encode(&m), rle);
        // Large counts and negative deltas, as rleToString writes them.
        let rle = Rle {
            height: 1000,
            width: 1000,
            counts: vec![0, 5000, 12, 400_000, 7, 594_981],
        };
        let s = rle.to_compressed();
        assert_eq!(Rle::from_string(&s, 1000, 1000).unwrap(), rle);
        let from_json =
            annotation_mask(&json!({"size": [1000, 1000], "counts": s}), 1000, 1000).unwrap();
        assert_eq!(from_json.area(), 5000 + 400_000 + 594_981);
    }

    #[test]
    fn pycocotools_compressed_string_decodes() {
        // maskUtils.encode of TRIANGLE's mask: counts string from pycocotools.
        let rle = Rle::from_string(TRIANGLE_STRING, 10, 10).unwrap();
        assert_eq!(rle.counts, TRIANGLE);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            json!([]),
            json!([["a", 1]]),
            json!("x"),
            json!({"size": [2, 2], "counts": [1, 2]}),
            json!({"size": [2, 2], "counts": [1, -2, 1]}),
            json!({"size": [2, 2], "counts": "\u{7f}"}),
            json!({"size": [2, 2], "counts": "1"}),
            json!({"size": [3, 2], "counts": [6]}),
            json!([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]),
            json!([[1.0, 2.0, 3.0, 4.0]]),
        ] {
            assert!(annotation_mask(&bad, 2, 2).is_err(), "{bad}");
        }
        assert!(annotation_mask(&json!([[0, 0, 1, 0, 1, 1]]), 0, 5).is_err());
        // pycocotools refuses a first polygon of 4 numbers or fewer; a later
        // one that short draws nothing, and a degenerate one nothing either.
        assert!(annotation_mask(&json!([[1.0, 1.0]]), 3, 3).is_err());
        assert!(annotation_mask(&json!([[]]), 3, 3).is_err());
        assert_eq!(
            counts(json!([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [2.0]]), 3, 3),
            [9]
        );
        assert_eq!(Rle::from_polygon(&[], 3, 3).counts, [9]);
        assert_eq!(Rle::from_polygon(&[1.0, 1.0], 3, 3).counts, [9]);
    }

    #[test]
    fn iou_counts_pixels_and_refuses_other_sizes() {
        let a = Mask {
            width: 2,
            height: 2,
            data: vec![true, true, false, false],
        };
        let b = Mask {
            width: 2,
            height: 2,
            data: vec![true, false, true, false],
        };
        assert_eq!(mask_iou(&a, &b).unwrap(), Some(1.0 / 3.0));
        let empty = Mask {
            width: 2,
            height: 2,
            data: vec![false; 4],
        };
        assert_eq!(mask_iou(&empty, &empty).unwrap(), None);
        let other = Mask {
            width: 4,
            height: 1,
            data: vec![false; 4],
        };
        assert!(mask_iou(&a, &other).is_err());
    }

    const TRIANGLE: &[u32] = &[11, 1, 9, 4, 6, 5, 5, 4, 7, 2, 8, 1, 37];
    const TRIANGLE_STRING: &str = ";193M1OO2N1Om0";
    const REPEATED: &[u32] = &[0, 6, 1, 6, 1, 5, 2, 5, 2, 5, 2, 5, 16];
    const OUTSIDE: &[u32] = &[0, 4, 2, 5, 1, 18];
    const UNION: &[u32] = &[8, 1, 7, 2, 18, 3, 5, 3, 5, 3, 9];
    const SHORT: &[u32] = &[8, 1, 5, 2, 20];
}
