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
                    // k reaches 13 here: wrap the shift as C on x86 does
                    // rather than overflow (a panic in debug builds).
                    x |= (-1i64).wrapping_shl(5 * k);
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

    /// Runs must cover the mask exactly.
    fn check_cover(&self) -> Result<()> {
        let (h, w) = (self.height, self.width);
        let total: u64 = self.counts.iter().map(|&c| c as u64).sum();
        if total != (h as u64).saturating_mul(w as u64) {
            return Err(EngineError::Invalid(format!(
                "RLE counts cover {total} pixels, but the mask is {h}×{w} ({} pixels)",
                h as u64 * w as u64
            )));
        }
        Ok(())
    }

    /// `rleDecode` to a row-major mask. Runs must cover the mask exactly.
    pub fn decode(&self) -> Result<Mask> {
        let (h, w) = (self.height, self.width);
        self.check_cover()?;
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

/// Longest boundary walk of one polygon edge, in `rleFrPoly`'s 5×
/// upsampled steps, per pixel of the image's width + height: an edge between
/// two points of the image takes at most 5 of them, so 20 leaves room for
/// vertices well outside it.
const MAX_EDGE_STEPS_PER_PIXEL: u64 = 20;
/// Longest walk of one polygon in all (two `i32`s a step: 256 MiB).
const MAX_POLYGON_STEPS: u64 = 1 << 25;

/// Refuses a polygon whose boundary walk ([`Rle::from_polygon`] takes
/// `max(|dx|, |dy|) + 1` steps an edge, in 5× scaled coordinates) would be
/// absurdly long: one vertex at 1e9 in a tiny JSON file would otherwise
/// allocate tens of GB and walk for minutes (pycocotools does the same).
fn check_polygon_walk(xy: &[f64], height: usize, width: usize) -> Result<()> {
    let k = xy.len() / 2;
    let vertex = |j: usize| {
        let j = j % k;
        (
            c_int(5.0 * xy[2 * j] + 0.5) as i64,
            c_int(5.0 * xy[2 * j + 1] + 0.5) as i64,
        )
    };
    let edge_limit = MAX_EDGE_STEPS_PER_PIXEL * (height as u64 + width as u64 + 2);
    let mut total = 0u64;
    for j in 0..k {
        let ((xs, ys), (xe, ye)) = (vertex(j), vertex(j + 1));
        // As from_polygon computes them (an i32 wider than 2^31 wraps there).
        let dx = (xe - xs).abs() as i32;
        let dy = (ys - ye).abs() as i32;
        let steps = (dx.max(dy).max(-1) as i64 + 1) as u64;
        total += steps;
        if steps > edge_limit || total > MAX_POLYGON_STEPS {
            return Err(EngineError::Invalid(format!(
                "polygon edge {j} runs from ({}, {}) to ({}, {}), too far outside the \
                 {width}×{height} image to rasterise",
                xy[2 * j],
                xy[2 * j + 1],
                xy[2 * ((j + 1) % k)],
                xy[2 * ((j + 1) % k) + 1]
            )));
        }
    }
    Ok(())
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
            // The union of the polygons' runs, each pixel written once: OR-ing
            // one full-size mask per polygon costs polygons × pixels, hours
            // for a few hundred polygons on a large image.
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for p in polygons {
                let xy = numbers(p)?;
                check_polygon_walk(&xy, height, width)?;
                let rle = Rle::from_polygon(&xy, height, width);
                rle.check_cover()?;
                let mut at = 0u64;
                for (k, &c) in rle.counts.iter().enumerate() {
                    if k % 2 == 1 && c > 0 {
                        runs.push((at, at + c as u64));
                    }
                    at += c as u64;
                }
            }
            runs.sort_unstable();
            let mut done = 0u64; // column-major pixels below this are set
            for (start, end) in runs {
                for j in start.max(done)..end {
                    let j = j as usize;
                    mask.data[(j % height) * width + j / height] = true;
                }
                done = done.max(end);
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

    /// Found by `fuzz_coco_segmentations`: one vertex far outside the image
    /// made the boundary walk 2·10^8 steps (1.6 GB; 10^9 at 2e8, and so on)
    /// before any pixel was drawn. Refused by name instead.
    #[test]
    fn a_polygon_vertex_far_outside_the_image_is_refused_not_walked() {
        let far = json!([[0.0, 0.0, 4.0e7, 0.0, 0.0, 5.0]]);
        let e = annotation_mask(&far, 10, 10).unwrap_err().to_string();
        assert!(
            e.contains("polygon edge 0") && e.contains("too far outside"),
            "{e}"
        );
        // Vertices a little outside, as COCO polygons have, still draw.
        let near = json!([[-3.0, -2.0, 12.0, -2.0, 12.0, 11.0, -3.0, 11.0]]);
        assert_eq!(annotation_mask(&near, 10, 10).unwrap().area(), 100);
    }

    /// Polygons are unioned run by run (not one full-size mask each, which
    /// `fuzz_coco_segmentations` showed costs polygons × pixels): the same
    /// pixels as OR-ing each polygon's own mask.
    #[test]
    fn overlapping_polygons_union_to_the_or_of_their_masks() {
        let polys = [
            json!([1.0, 1.0, 9.0, 2.0, 5.0, 8.0]),
            json!([4.0, 0.0, 11.5, 0.5, 11.0, 7.0, 3.0, 6.0]),
            json!([0.0, 5.0, 6.0, 5.0, 6.0, 9.0, 0.0, 9.5]),
        ];
        let whole = annotation_mask(&Value::Array(polys.to_vec()), 10, 12).unwrap();
        let mut or = vec![false; 120];
        for p in &polys {
            let one = annotation_mask(&json!([p]), 10, 12).unwrap();
            for (o, b) in or.iter_mut().zip(one.data) {
                *o |= b;
            }
        }
        assert_eq!(whole.data, or);
        assert!(whole.area() > 0 && whole.area() < 120);
    }

    /// A 13-digit number of compressed RLE ends with a shift by 65 bits,
    /// which overflowed (a panic in debug builds); it wraps as C on x86 does.
    #[test]
    fn a_thirteen_digit_compressed_count_does_not_overflow_the_shift() {
        let rle = Rle::from_string("PPPPPPPPPPPP@", 1, 1).unwrap();
        assert_eq!(rle.counts.len(), 1);
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

/// Mutation fuzzing of COCO segmentations as `seer eval segment` reads them
/// ([`annotation_mask`]: polygons, uncompressed and compressed RLE), image
/// sizes held to the decode budget as `score_image` holds them. Seeds are
/// coco-mini's annotations (a few dozen) when the shared data is there, and
/// ones built here. Findings under `/tmp/fuzz-data/coco/`. Run (about a
/// minute in release): `cargo test --release -q -p seer-engine --lib -- --ignored fuzz_`
#[cfg(test)]
mod fuzz {
    use super::*;
    use seer_testkit::fuzz_mutator::*;

    const SEED: u64 = 0xC0C0_4D5C;
    const ITERATIONS: usize = 40_000;
    /// `DecodeLimits::default().max_pixels`, which `score_image` applies.
    const MAX_PIXELS: u64 = 178_956_970;

    fn seeds() -> Vec<(Value, usize, usize)> {
        let mut out = vec![
            (
                serde_json::json!([[1.0, 1.0, 8.5, 1.0, 8.5, 6.0, 1.0, 6.0]]),
                8,
                10,
            ),
            (
                serde_json::json!({"size": [8, 10], "counts": [3, 5, 10, 2, 60]}),
                8,
                10,
            ),
            (
                serde_json::json!({"size": [8, 10], "counts": Rle::encode(&Mask {
                    width: 10, height: 8, data: (0..80).map(|i| i % 7 < 3).collect()
                }).to_compressed()}),
                8,
                10,
            ),
        ];
        let path = seer_testkit::shared_data().join("coco-mini/annotations/instances_val2017.json");
        if let Ok(text) = std::fs::read_to_string(path) {
            let v: Value = serde_json::from_str(&text).unwrap();
            let sizes: std::collections::HashMap<u64, (usize, usize)> = v["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let n = |k: &str| i[k].as_u64().unwrap() as usize;
                    (n("id") as u64, (n("height"), n("width")))
                })
                .collect();
            let anns = v["annotations"].as_array().unwrap();
            // Every crowd (RLE) annotation and a spread of polygons.
            for (i, a) in anns.iter().enumerate() {
                if a["iscrowd"].as_u64() == Some(1) || i % 20 == 0 {
                    let (h, w) = sizes[&a["image_id"].as_u64().unwrap()];
                    out.push((a["segmentation"].clone(), h, w));
                }
            }
        }
        out
    }

    /// A number somewhere in the JSON set to a hostile value, or a list grown
    /// or cut.
    fn mutate_value(v: &mut Value, rng: &mut Rng) {
        match v {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                match rng.below(6) {
                    0 => a.truncate(i),
                    1 => {
                        let x = a[i].clone();
                        a.insert(i, x);
                    }
                    _ => mutate_value(&mut a[i], rng),
                }
            }
            Value::Object(o) if !o.is_empty() => {
                let keys: Vec<String> = o.keys().cloned().collect();
                let k = &keys[rng.below(keys.len())];
                if rng.chance(8) {
                    o.remove(k);
                } else {
                    mutate_value(o.get_mut(k).unwrap(), rng);
                }
            }
            Value::String(s) => {
                let mut b = std::mem::take(s).into_bytes();
                mutate_once(&mut b, b"PPPPPPPPPPPP@0o?", rng);
                *s = String::from_utf8_lossy(&b).into_owned();
            }
            _ => {
                let hostile = [
                    serde_json::json!(0),
                    serde_json::json!(-1),
                    serde_json::json!(4294967295u64),
                    serde_json::json!(4294967296u64),
                    serde_json::json!(1e9),
                    serde_json::json!(-1e9),
                    serde_json::json!(1e308),
                    serde_json::json!(-0.5),
                    serde_json::json!(2147483647.9),
                    serde_json::json!("x"),
                    serde_json::json!(null),
                ];
                *v = hostile[rng.below(hostile.len())].clone();
            }
        }
    }

    #[test]
    #[ignore = "fuzz harness: cargo test --release -p seer-engine --lib -- --ignored fuzz_"]
    fn fuzz_coco_segmentations() {
        let seeds = seeds();
        let texts: Vec<Vec<u8>> = seeds.iter().map(|s| s.0.to_string().into_bytes()).collect();
        let mut rng = Rng::new(SEED);
        let mut found = Findings::new("coco");
        // A mask of up to the pixel budget (13000×13000 here) is built and
        // counted whole: ~2 s on this harness' slowest size, bounded by the
        // budget; only slower inputs are findings.
        found.slow_after = std::time::Duration::from_secs(4);
        quiet_panics(|| {
            for iter in 0..ITERATIONS {
                let i = rng.below(seeds.len());
                let (mut seg, mut h, mut w) = seeds[i].clone();
                if rng.chance(2) {
                    for _ in 0..1 + rng.below(3) {
                        mutate_value(&mut seg, &mut rng);
                    }
                } else {
                    // Text mutations: what parses is fuzzed, the rest is a
                    // serde_json error.
                    let mut text = texts[i].clone();
                    for _ in 0..1 + rng.below(3) {
                        mutate_once(&mut text, &texts[rng.below(texts.len())], &mut rng);
                    }
                    match serde_json::from_slice(&text) {
                        Ok(v) => seg = v,
                        Err(_) => continue,
                    }
                }
                if rng.chance(10) {
                    [h, w] = [[0, 5], [1, 1], [65535, 1], [1, 65535], [13000, 13000]][rng.below(5)];
                }
                let input = seg.to_string().into_bytes();
                if (h * w) as u64 > MAX_PIXELS {
                    continue; // score_image refuses it first
                }
                found.run(iter, &input, || annotation_mask(&seg, h, w).map(|_| ()));
            }
        });
        found.finish("coco", ITERATIONS);
    }
}
