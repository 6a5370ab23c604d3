//! A reimplementation of Pillow's `Image.resize` for 8-bit images
//! (libImaging/Resample.c semantics, Pillow 13): separable convolution whose
//! support grows with the downscale factor, coefficients normalised to sum 1
//! and quantised to 22-bit fixed point, each pass rounded and clipped to u8,
//! horizontal pass first (vertical first for images over 100x taller than
//! wide, as `Image.resize` special-cases). Also NEAREST as PIL applies it to
//! "P" and "1" images (libImaging/Geometry.c `ImagingScaleAffine`).
//!
//! Sizes derived from an aspect ratio can be absurd (a 1 × 20,000,000 PNG
//! resized to a 224 shortest edge is 224 × 4,480,000,000), so nothing here
//! is sized by the whole output unless asked for it: the resizers compute an
//! output window (only what a crop keeps), each pixel exactly as the whole
//! resize would, and hold `MAX_TABLE` filter weights at a time (or one
//! output pixel's, when more).

use std::ops::Range;

use crate::config::Interpolation;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Output size for "shortest side = `resize_to`": the long side is
/// `int(resize_to * long / short)` (truncation), as transformers'
/// `get_resize_output_image_size` and torchvision's
/// `_compute_resized_output_size` both compute it.
///
/// The long side saturates at `u32::MAX` (an aspect ratio over about
/// 1:19,000,000 at 224); preprocessing uses the exact size, which it never
/// allocates in full (it resizes only the part the center crop keeps).
pub fn shortest_edge_size(width: u32, height: u32, resize_to: u32) -> (u32, u32) {
    let (w, h) = shortest_edge_dims(width, height, resize_to);
    let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(w), clamp(h))
}

/// [`shortest_edge_size`] without the `u32` limit: a 1 × 20,000,000 image at
/// 224 is 224 × 4,480,000,000.
pub(crate) fn shortest_edge_dims(width: u32, height: u32, resize_to: u32) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    // Python: int * int is exact, `/` is a correctly rounded float division.
    let new_long = ((resize_to as f64 * long as f64) / short as f64) as usize;
    if width <= height {
        (resize_to as usize, new_long)
    } else {
        (new_long, resize_to as usize)
    }
}

/// Most fixed-point weights one coefficient table holds (4 MiB). A filter
/// that spans many input pixels (a long side shrunk a lot: 1 × 20,000,000 to
/// 1 × 384 has 208,335 taps per output pixel, 320 MB of weights in one table)
/// is computed in chunks of output pixels; the weights are the same.
const MAX_TABLE: usize = 1 << 20;

/// Per-output-pixel filter windows for some output pixels of one axis.
struct Coeffs {
    ksize: usize,
    /// (first input index, number of taps) per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output pixel.
    weights: Vec<i32>,
}

fn filter_of(filter: Interpolation) -> (f64, fn(f64) -> f64) {
    match filter {
        Interpolation::Bicubic => (2.0, bicubic),
        Interpolation::Bilinear => (1.0, bilinear),
    }
}

/// PIL's `scale` and `support` (times the filter scale) for one axis.
fn scale_support(in_size: usize, out_size: usize, filter: Interpolation) -> (f64, f64) {
    // PIL's box is float[4]; (in1 - in0) is computed in float, then widened.
    let scale = (in_size as f32 - 0.0f32) as f64 / out_size as f64;
    (scale, filter_of(filter).0 * scale.max(1.0))
}

/// Taps per output pixel (`ksize` in libImaging) without computing them.
fn kernel_size(in_size: usize, out_size: usize, filter: Interpolation) -> usize {
    scale_support(in_size, out_size, filter).1.ceil() as usize * 2 + 1
}

/// libImaging `precompute_coeffs` for the output pixels `range` of an axis
/// resized from `in_size` to `out_size` (the whole axis is `0..out_size`).
fn precompute(
    in_size: usize,
    out_size: usize,
    range: Range<usize>,
    filter: Interpolation,
) -> Coeffs {
    let (scale, support) = scale_support(in_size, out_size, filter);
    let f = filter_of(filter).1;
    let filterscale = scale.max(1.0);
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(range.len());
    let mut weights = vec![0i32; range.len() * ksize];
    let mut k = vec![0f64; ksize];
    for (i, xx) in range.enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C `(int)` truncates toward zero, as does `as`.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = f(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[i * ksize..i * ksize + n];
        for (dst, &kx) in row.iter_mut().zip(k.iter()) {
            let v = if ww != 0.0 { kx / ww } else { kx };
            let scaled = v * (1i64 << PRECISION_BITS) as f64;
            *dst = if v < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        bounds.push((xmin as usize, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// `range` split into pieces whose coefficient tables hold at most
/// [`MAX_TABLE`] weights (at least one output pixel each).
fn table_chunks(range: Range<usize>, ksize: usize) -> impl Iterator<Item = Range<usize>> {
    let step = (MAX_TABLE / ksize.max(1)).max(1);
    let end = range.end;
    range
        .step_by(step)
        .map(move |s| s..s.saturating_add(step).min(end))
}

/// The input pixels that the output pixels `range` read: from the first
/// one's first tap to the last one's last (both ends move monotonically).
fn input_span(
    in_size: usize,
    out_size: usize,
    range: &Range<usize>,
    filter: Interpolation,
) -> Range<usize> {
    if range.is_empty() {
        return 0..0;
    }
    let one = |xx: usize| {
        precompute(in_size, out_size, xx..xx + 1, filter)
            .bounds
            .first()
            .copied()
            .unwrap_or((0, 0))
    };
    let (first, _) = one(range.start);
    let (last, n) = one(range.end - 1);
    first..last + n
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over whole rows of `w` pixels (`src` holds them back to
/// back): columns `cols` of the rows resized to `out_w`.
fn horizontal(
    src: &[u8],
    w: usize,
    ch: usize,
    out_w: usize,
    cols: Range<usize>,
    filter: Interpolation,
) -> Vec<u8> {
    let rows = src.len() / (w * ch).max(1);
    let mut out = vec![0u8; rows * cols.len() * ch];
    if out.is_empty() {
        return out;
    }
    for chunk in table_chunks(cols.clone(), kernel_size(w, out_w, filter)) {
        let offset = chunk.start - cols.start;
        let c = precompute(w, out_w, chunk, filter);
        // Monomorphised per channel count so the inner loop keeps `acc` in registers.
        match ch {
            1 => horizontal_n::<1>(src, w, cols.len(), offset, &c, &mut out),
            2 => horizontal_n::<2>(src, w, cols.len(), offset, &c, &mut out),
            3 => horizontal_n::<3>(src, w, cols.len(), offset, &c, &mut out),
            _ => horizontal_n::<4>(src, w, cols.len(), offset, &c, &mut out),
        }
    }
    out
}

/// Output columns `offset ..` (those `c` describes) of rows `out_w` wide.
fn horizontal_n<const CH: usize>(
    src: &[u8],
    w: usize,
    out_w: usize,
    offset: usize,
    c: &Coeffs,
    out: &mut [u8],
) {
    for (line, out_line) in src
        .chunks_exact(w * CH)
        .zip(out.chunks_exact_mut(out_w * CH))
    {
        for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
            let taps = &line[xmin * CH..(xmin + n) * CH];
            let mut acc = [1i32 << (PRECISION_BITS - 1); CH];
            for (px, &kx) in taps.chunks_exact(CH).zip(k) {
                for i in 0..CH {
                    acc[i] += px[i] as i32 * kx;
                }
            }
            let o = (offset + xx) * CH;
            for i in 0..CH {
                out_line[o + i] = clip8(acc[i]);
            }
        }
    }
}

/// Vertical pass: rows `rows` of the image resized from `in_h` to `out_h`
/// rows, columns `cols` only. `src` holds rows of `stride` pixels, its first
/// being input row `row_offset` (the horizontal pass only produced the rows
/// the vertical pass needs).
#[allow(clippy::too_many_arguments)]
fn vertical(
    src: &[u8],
    stride: usize,
    ch: usize,
    cols: Range<usize>,
    row_offset: usize,
    in_h: usize,
    out_h: usize,
    rows: Range<usize>,
    filter: Interpolation,
) -> Vec<u8> {
    let width = cols.len() * ch;
    let stride = stride * ch;
    let mut out = vec![0u8; rows.len() * width];
    if out.is_empty() {
        return out;
    }
    let mut acc = vec![0i32; width];
    let mut out_rows = out.chunks_exact_mut(width);
    for chunk in table_chunks(rows, kernel_size(in_h, out_h, filter)) {
        let c = precompute(in_h, out_h, chunk, filter);
        for (yy, (&(ymin, n), out_row)) in c.bounds.iter().zip(&mut out_rows).enumerate() {
            let k = &c.weights[yy * c.ksize..yy * c.ksize + n];
            acc.fill(1 << (PRECISION_BITS - 1));
            for (y, &ky) in k.iter().enumerate() {
                let row = (ymin - row_offset + y) * stride;
                let line = &src[row + cols.start * ch..row + cols.end * ch];
                for (a, &v) in acc.iter_mut().zip(line) {
                    *a += v as i32 * ky;
                }
            }
            for (o, &a) in out_row.iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
    }
    out
}
/// Columns `cols` of rows `rows` of a `w`-pixel-wide image, copied.
fn copy_block(src: &[u8], w: usize, ch: usize, cols: Range<usize>, rows: Range<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(cols.len() * rows.len() * ch);
    for y in rows {
        out.extend_from_slice(&src[(y * w + cols.start) * ch..(y * w + cols.end) * ch]);
    }
    out
}

/// libImaging `ImagingResampleInner` (horizontal then vertical, each only
/// when that axis changes size), computing only the output window
/// `cols` × `rows`: every output pixel depends on its own filter window
/// alone, so the window holds exactly the pixels of the whole resize.
#[allow(clippy::too_many_arguments)]
fn resample_inner(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
    cols: Range<usize>,
    rows: Range<usize>,
    filter: Interpolation,
) -> Vec<u8> {
    if cols.is_empty() || rows.is_empty() {
        return Vec::new();
    }
    match (out_w != w, out_h != h) {
        (false, false) => copy_block(src, w, ch, cols, rows),
        (true, false) => {
            let lines = &src[rows.start * w * ch..rows.end * w * ch];
            horizontal(lines, w, ch, out_w, cols, filter)
        }
        (false, true) => vertical(src, w, ch, cols, 0, h, out_h, rows, filter),
        (true, true) => {
            let span = input_span(h, out_h, &rows, filter);
            let lines = &src[span.start * w * ch..span.end * w * ch];
            let tmp = horizontal(lines, w, ch, out_w, cols.clone(), filter);
            let n = cols.len();
            vertical(&tmp, n, ch, 0..n, span.start, h, out_h, rows, filter)
        }
    }
}

/// Columns `cols` × rows `rows` of `Image.resize((out_w, out_h), BICUBIC |
/// BILINEAR)` on an interleaved u8 buffer with `ch` independent channels,
/// computed in time and memory proportional to the window (plus the input
/// rows it reads), however large the whole output would be.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resample_window(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
    cols: Range<usize>,
    rows: Range<usize>,
    filter: Interpolation,
) -> Vec<u8> {
    if (w, h) == (out_w, out_h) {
        return copy_block(src, w, ch, cols, rows);
    }
    if h > w.saturating_mul(100) && out_h < h {
        // Pillow: very tall images are resized vertically first, in two calls.
        return vertical_first(src, w, h, ch, out_w, out_h, cols, rows, filter);
    }
    resample_inner(src, w, h, ch, out_w, out_h, cols, rows, filter)
}

/// `Image.resize((out_w, out_h), BICUBIC | BILINEAR)` on an interleaved u8
/// buffer with `ch` independent channels.
pub(crate) fn resample(
    src: &[u8],
    w: u32,
    h: u32,
    ch: usize,
    out_w: u32,
    out_h: u32,
    filter: Interpolation,
) -> Vec<u8> {
    let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
    resample_window(src, w, h, ch, out_w, out_h, 0..out_w, 0..out_h, filter)
}

/// The vertical pass, then the horizontal one (Pillow's default is the
/// reverse), for the output window `cols` × `rows`.
#[allow(clippy::too_many_arguments)]
fn vertical_first(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
    cols: Range<usize>,
    rows: Range<usize>,
    filter: Interpolation,
) -> Vec<u8> {
    // First call: `w × out_h`, of which rows `rows` (every column).
    let tmp = resample_inner(src, w, h, ch, w, out_h, 0..w, rows.clone(), filter);
    // Second call on that `w × out_h` image: only its width changes, so the
    // rows computed above are all it reads.
    let n = rows.len();
    resample_inner(&tmp, w, n, ch, out_w, n, cols, 0..n, filter)
}

/// [`resample`] with Pillow 13's choice of pass order for resizes that change
/// the aspect ratio (SigLIP's squash to 224×224). Pillow 13 (python-pillow
/// PR #9549, "if height is scaled down significantly more than width, resize
/// vertically first") may run the vertical pass first, which rounds the
/// intermediate image differently (±2 levels).
///
/// The rule is not published outside Pillow's C source, so it is modelled
/// from measurements against Pillow 13.0 (349 random resizes of 7 photos):
/// * the width grows while the height shrinks: always vertical first (exact
///   in every sample);
/// * both shrink: vertical first when it costs fewer filter taps, counting a
///   vertical tap twice a horizontal one (`cost_*` below). An approximation:
///   all 349 samples but 14 (all of them both-shrinking) match, where always
///   horizontal-first missed 108.
///
/// Uniform resizes never change order under this model (with equal factors
/// the vertical-first cost is higher whenever a vertical tap costs more), so
/// the CLIP path keeps [`resample`], which its fixtures were checked against.
pub(crate) fn resample_squash(
    src: &[u8],
    w: u32,
    h: u32,
    ch: usize,
    out_w: u32,
    out_h: u32,
    filter: Interpolation,
) -> Vec<u8> {
    let (wu, hu, ow, oh) = (w as usize, h as usize, out_w as usize, out_h as usize);
    if oh < hu && ow != wu && hu <= wu * 100 {
        let taps = |i: usize, o: usize| kernel_size(i, o, filter) as f64;
        let (kx, ky) = (taps(wu, ow), taps(hu, oh));
        let (ow_f, oh_f, w_f, h_f) = (ow as f64, oh as f64, wu as f64, hu as f64);
        const VERTICAL_TAP: f64 = 2.0;
        let cost_horizontal_first = ow_f * h_f * kx + VERTICAL_TAP * ow_f * oh_f * ky;
        let cost_vertical_first = VERTICAL_TAP * w_f * oh_f * ky + ow_f * oh_f * kx;
        if ow > wu || cost_vertical_first < cost_horizontal_first {
            return vertical_first(src, wu, hu, ch, ow, oh, 0..ow, 0..oh, filter);
        }
    }
    resample(src, w, h, ch, out_w, out_h, filter)
}

/// `start` with `step` added `n` times in f64, rounding after each addition
/// as a C loop `x += step` does, in time logarithmic in `n` rather than
/// linear: while `x` stays in one binade every sum is rounded to the same
/// multiple of its ulp, so the increment is constant (from the second step
/// in the binade on, when `step` lies exactly halfway between two multiples
/// and round-half-even decides the first one by `x`'s parity).
fn advance(mut x: f64, step: f64, mut n: u64) -> f64 {
    let binade = |v: f64| v.to_bits() >> 52;
    while n > 0 {
        if n > 3 && x > 0.0 && step > 0.0 && x.is_finite() && step.is_finite() {
            let x1 = x + step;
            let (x2, x3) = (x1 + step, x1 + step + step);
            let e = binade(x1);
            // Normal numbers of one binade: their bits count ulps.
            if e != 0 && binade(x2) == e && binade(x3) == e {
                n -= 3;
                let d = x3.to_bits() - x2.to_bits();
                if d == 0 {
                    return x3; // step under half an ulp: x no longer moves
                }
                let last = (e << 52) | ((1u64 << 52) - 1);
                // Jumps whose results, and the sum after them, stay in the binade.
                let jumps = ((last - x3.to_bits()) / d).saturating_sub(1).min(n);
                x = f64::from_bits(x3.to_bits() + jumps * d);
                n -= jumps;
                continue;
            }
        }
        x += step;
        n -= 1;
    }
    x
}

/// Columns `cols` × rows `rows` of PIL's NEAREST resize (what `Image.resize`
/// silently uses for "P" and "1") to `out_w` × `out_h`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn nearest_window(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
    cols: Range<usize>,
    rows: Range<usize>,
) -> Vec<u8> {
    if (w, h) == (out_w, out_h) {
        return copy_block(src, w, ch, cols, rows);
    }
    // COORD(v): negative -> -1, else truncation; positions accumulate in f64
    // exactly as the C loop does (from the window's first pixel on: the
    // accumulation up to it is replayed by `advance`).
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    let a0 = (w as f32) as f64 / out_w as f64;
    let a4 = (h as f32) as f64 / out_h as f64;
    let ow = cols.len();
    let mut xintab = vec![0usize; ow];
    let (mut xmin, mut xmax) = (ow, 0);
    let mut xo = advance(a0 * 0.5, a0, cols.start as u64);
    for (x, tab) in xintab.iter_mut().enumerate() {
        let xin = coord(xo);
        if xin >= 0 && (xin as usize) < w {
            xmax = x + 1;
            xmin = xmin.min(x);
            *tab = xin as usize;
        }
        xo += a0;
    }
    let mut out = vec![0u8; ow * rows.len() * ch];
    let mut yo = advance(a4 * 0.5, a4, rows.start as u64);
    for y in 0..rows.len() {
        let yi = coord(yo);
        if yi >= 0 && (yi as usize) < h {
            let line = &src[yi as usize * w * ch..(yi as usize + 1) * w * ch];
            for x in xmin..xmax {
                let s = xintab[x] * ch;
                out[(y * ow + x) * ch..(y * ow + x + 1) * ch].copy_from_slice(&line[s..s + ch]);
            }
        }
        yo += a4;
    }
    out
}

/// PIL NEAREST resize (what `Image.resize` silently uses for "P" and "1").
#[cfg(test)]
pub(crate) fn nearest(src: &[u8], w: u32, h: u32, ch: usize, out_w: u32, out_h: u32) -> Vec<u8> {
    let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
    nearest_window(src, w, h, ch, out_w, out_h, 0..out_w, 0..out_h)
}

/// Resize an RGB image exactly as Pillow's `Image.resize(size, BICUBIC|BILINEAR)`.
pub fn pil_resize(
    img: &image::RgbImage,
    out_w: u32,
    out_h: u32,
    filter: Interpolation,
) -> image::RgbImage {
    let data = resample(
        img.as_raw(),
        img.width(),
        img.height(),
        3,
        out_w,
        out_h,
        filter,
    );
    image::RgbImage::from_raw(out_w, out_h, data).expect("buffer size matches dimensions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle;

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn crop(full: &[u8], w: usize, ch: usize, cols: &Range<usize>, rows: &Range<usize>) -> Vec<u8> {
        copy_block(full, w, ch, cols.clone(), rows.clone())
    }

    /// Sizes that take every branch: vertical first (taller than 100:1 and
    /// shrinking), either axis unchanged, up- and downscales, thin both ways.
    /// (source width, height), (output width, height).
    type Shape = ((usize, usize), (usize, usize));

    const SHAPES: &[Shape] = &[
        ((40, 30), (17, 9)),
        ((40, 30), (97, 61)),
        ((40, 30), (40, 61)),
        ((40, 30), (17, 30)),
        ((17, 1800), (16, 1694)),
        ((17, 1800), (3, 700)),
        ((3, 700), (224, 52266)),
        ((1, 300), (224, 67200)),
        ((1, 2000), (5, 31)),
        ((300, 1), (67200, 224)),
        ((5000, 3), (373, 224)),
        ((2, 5000), (224, 560000)),
        ((1, 1), (224, 224)),
        ((9, 9), (9, 9)),
    ];

    #[test]
    fn windows_are_the_whole_resize_cut() {
        let mut rng = Rng(0x5eed);
        for &((w, h), (ow, oh)) in SHAPES {
            for ch in [1, 3, 4] {
                let src = rng.bytes(w * h * ch);
                for filter in [Interpolation::Bicubic, Interpolation::Bilinear] {
                    // Whole outputs are only made where they are small.
                    let whole = (ow * oh * ch <= 64_000_000).then(|| {
                        let full = oracle::resample(
                            &src, w as u32, h as u32, ch, ow as u32, oh as u32, filter,
                        );
                        let mine =
                            resample(&src, w as u32, h as u32, ch, ow as u32, oh as u32, filter);
                        assert!(full == mine, "{w}x{h} -> {ow}x{oh} ch {ch} {filter:?}");
                        full
                    });
                    for _ in 0..6 {
                        let (x0, y0) = (rng.below(ow), rng.below(oh));
                        let cols = x0..x0 + 1 + rng.below((ow - x0).min(230));
                        let rows = y0..y0 + 1 + rng.below((oh - y0).min(230));
                        let got = resample_window(
                            &src,
                            w,
                            h,
                            ch,
                            ow,
                            oh,
                            cols.clone(),
                            rows.clone(),
                            filter,
                        );
                        let Some(full) = &whole else { continue };
                        let want = crop(full, ow, ch, &cols, &rows);
                        assert!(
                            got == want,
                            "{w}x{h} -> {ow}x{oh} [{cols:?}, {rows:?}] ch {ch}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_thin_image_keeps_its_whole_resize_center() {
        // 1 × 2000 at 224: 224 × 448,000 (100 MP) made whole by the
        // whole-image algorithm, against the crop's window alone.
        let mut rng = Rng(2000);
        let src = rng.bytes(2000 * 3);
        let (nw, nh) = shortest_edge_dims(1, 2000, 224);
        assert_eq!((nw, nh), (224, 448_000));
        let full = oracle::resample(&src, 1, 2000, 3, 224, 448_000, Interpolation::Bicubic);
        let rows = (nh - 224) / 2..(nh - 224) / 2 + 224;
        let got = resample_window(
            &src,
            1,
            2000,
            3,
            nw,
            nh,
            0..224,
            rows.clone(),
            Interpolation::Bicubic,
        );
        assert!(got == crop(&full, 224, 3, &(0..224), &rows));
    }

    #[test]
    fn squash_and_nearest_match_the_whole_image_algorithm() {
        let mut rng = Rng(7);
        for &((w, h), (ow, oh)) in SHAPES.iter().filter(|(_, (ow, oh))| ow * oh <= 4_000_000) {
            for ch in [1, 2, 3, 4] {
                let src = rng.bytes(w * h * ch);
                let (w32, h32, ow32, oh32) = (w as u32, h as u32, ow as u32, oh as u32);
                for filter in [Interpolation::Bicubic, Interpolation::Bilinear] {
                    assert!(
                        oracle::resample_squash(&src, w32, h32, ch, ow32, oh32, filter)
                            == resample_squash(&src, w32, h32, ch, ow32, oh32, filter),
                        "squash {w}x{h} -> {ow}x{oh}"
                    );
                }
                let full = oracle::nearest(&src, w32, h32, ch, ow32, oh32);
                assert!(
                    full == nearest(&src, w32, h32, ch, ow32, oh32),
                    "nearest {w}x{h}"
                );
                for _ in 0..6 {
                    let (x0, y0) = (rng.below(ow), rng.below(oh));
                    let cols = x0..x0 + 1 + rng.below(ow - x0);
                    let rows = y0..y0 + 1 + rng.below(oh - y0);
                    let got = nearest_window(&src, w, h, ch, ow, oh, cols.clone(), rows.clone());
                    assert!(
                        got == crop(&full, ow, ch, &cols, &rows),
                        "nearest {w}x{h} {cols:?} {rows:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn coefficient_tables_are_chunked_without_changing_weights() {
        // 1 × 300,000 to 1 × 5 (and transposed): 240,003 taps per output
        // pixel, over MAX_TABLE for 5 pixels, so both passes run in chunks.
        let mut rng = Rng(3);
        let src = rng.bytes(300_000 * 3);
        assert!(5 * kernel_size(300_000, 5, Interpolation::Bicubic) > MAX_TABLE);
        for filter in [Interpolation::Bicubic, Interpolation::Bilinear] {
            for (w, h, ow, oh) in [(1, 300_000, 1, 5), (300_000, 1, 5, 1), (1, 300_000, 4, 5)] {
                assert!(
                    oracle::resample(&src, w, h, 3, ow, oh, filter)
                        == resample(&src, w, h, 3, ow, oh, filter),
                    "{w}x{h} -> {ow}x{oh} {filter:?}"
                );
            }
        }
    }

    #[test]
    fn advance_replays_the_accumulation() {
        let mut rng = Rng(11);
        let mut steps: Vec<f64> = vec![0.5, 0.25, 1.5, 3.0, 0.75, 1.0, 2.0f64.powi(-30), 1e-300];
        for _ in 0..60 {
            // As `nearest` makes them: an f32 size over an output size.
            let (i, o) = (1 + rng.below(50_000), 1 + rng.below(5_000_000));
            steps.push((i as f32) as f64 / o as f64);
        }
        for &step in &steps {
            for n in [0u64, 1, 2, 3, 4, 5, 17, 1000, 123_457, 2_000_003] {
                let mut naive = step * 0.5;
                for _ in 0..n {
                    naive += step;
                }
                let fast = advance(step * 0.5, step, n);
                assert_eq!(naive.to_bits(), fast.to_bits(), "step {step:e} n {n}");
            }
        }
    }

    #[test]
    fn extreme_outputs_are_windowed_quickly() {
        // 1 × 20,000,000 resized to 224 × 4,480,000,000 (3 TB): the crop's
        // window alone is computed, instantly, and is what the whole resize
        // would hold there: the one source column, repeated.
        let h = 20_000_000usize;
        let src: Vec<u8> = (0..h * 3).map(|i| (i / 3 % 251) as u8).collect();
        let (nw, nh) = shortest_edge_dims(1, h as u32, 224);
        assert_eq!((nw, nh), (224, 4_480_000_000));
        let t = std::time::Instant::now();
        let rows = nh / 2 - 112..nh / 2 + 112;
        for filter in [Interpolation::Bicubic, Interpolation::Bilinear] {
            let got = resample_window(&src, 1, h, 3, nw, nh, 0..224, rows.clone(), filter);
            assert_eq!(got.len(), 224 * 224 * 3);
            // Horizontally a 1-pixel row stretches to a constant row.
            for line in got.chunks_exact(224 * 3) {
                assert!(line.chunks_exact(3).all(|px| px == &line[..3]));
            }
        }
        let near = nearest_window(&src, 1, h, 3, nw, nh, 0..224, rows.clone());
        let mid = (rows.start as f64 * h as f64 / nh as f64) as usize;
        assert!(near
            .chunks_exact(3)
            .all(|px| px[0].abs_diff((mid % 251) as u8) <= 1));
        assert!(t.elapsed().as_millis() < 500, "{:?}", t.elapsed());
    }

    #[test]
    fn output_size_truncates() {
        assert_eq!(shortest_edge_size(800, 534, 224), (335, 224));
        assert_eq!(shortest_edge_size(384, 576, 224), (224, 336));
        assert_eq!(shortest_edge_size(5, 3, 224), (373, 224));
        assert_eq!(shortest_edge_size(7, 7, 224), (224, 224));
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 13 * 9 * 3];
        for (ow, oh) in [(5, 4), (40, 30), (13, 2), (1, 1)] {
            let out = resample(&src, 13, 9, 3, ow, oh, Interpolation::Bicubic);
            assert!(out.iter().all(|&v| v == 77), "{ow}x{oh}");
        }
    }
}
