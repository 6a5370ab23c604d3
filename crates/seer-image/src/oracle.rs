//! The resizers as they were before they computed output windows and
//! chunked their coefficient tables (libImaging's whole-image algorithm,
//! unchanged): the oracle the windowed versions are tested against.
#![allow(dead_code)]

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

/// Per-output-pixel filter windows for one axis.
struct Coeffs {
    ksize: usize,
    /// (first input index, number of taps) per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output pixel.
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Interpolation) -> Coeffs {
    let (support, f): (f64, fn(f64) -> f64) = match filter {
        Interpolation::Bicubic => (2.0, bicubic),
        Interpolation::Bilinear => (1.0, bilinear),
    };
    // PIL's box is float[4]; (in1 - in0) is computed in float, then widened.
    let scale = (in_size as f32 - 0.0f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
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
        let row = &mut weights[xx * ksize..xx * ksize + n];
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

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over rows `row0 .. row0 + rows` of `src`.
fn horizontal(src: &[u8], w: usize, ch: usize, row0: usize, rows: usize, c: &Coeffs) -> Vec<u8> {
    // Monomorphised per channel count so the inner loop keeps `acc` in registers.
    match ch {
        1 => horizontal_n::<1>(src, w, row0, rows, c),
        2 => horizontal_n::<2>(src, w, row0, rows, c),
        3 => horizontal_n::<3>(src, w, row0, rows, c),
        _ => horizontal_n::<4>(src, w, row0, rows, c),
    }
}

fn horizontal_n<const CH: usize>(
    src: &[u8],
    w: usize,
    row0: usize,
    rows: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let out_w = c.bounds.len();
    let mut out = vec![0u8; out_w * rows * CH];
    for y in 0..rows {
        let line = &src[(row0 + y) * w * CH..(row0 + y + 1) * w * CH];
        let out_line = &mut out[y * out_w * CH..(y + 1) * out_w * CH];
        for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
            let taps = &line[xmin * CH..(xmin + n) * CH];
            let mut acc = [1i32 << (PRECISION_BITS - 1); CH];
            for (px, &kx) in taps.chunks_exact(CH).zip(k) {
                for i in 0..CH {
                    acc[i] += px[i] as i32 * kx;
                }
            }
            for i in 0..CH {
                out_line[xx * CH + i] = clip8(acc[i]);
            }
        }
    }
    out
}

/// Vertical pass; `row_offset` is subtracted from the precomputed bounds
/// (the horizontal pass only produced the rows the vertical pass needs).
fn vertical(src: &[u8], w: usize, ch: usize, row_offset: usize, c: &Coeffs) -> Vec<u8> {
    let out_h = c.bounds.len();
    let stride = w * ch;
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, &(ymin, n)) in c.bounds.iter().enumerate() {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + n];
        acc.fill(1 << (PRECISION_BITS - 1));
        for (y, &ky) in k.iter().enumerate() {
            let row = ymin - row_offset + y;
            let line = &src[row * stride..(row + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(line) {
                *a += v as i32 * ky;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// libImaging `ImagingResampleInner`: horizontal then vertical, each only
/// when that axis changes size.
fn resample_inner(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Vec<u8> {
    let need_h = out_w != w;
    let need_v = out_h != h;
    let vc = precompute(h, out_h, filter);
    let ybox_first = vc.bounds.first().map_or(0, |b| b.0);
    let ybox_last = vc.bounds.last().map_or(0, |b| b.0 + b.1);
    let mut cur: Option<Vec<u8>> = None;
    let mut row_offset = 0;
    if need_h {
        let hc = precompute(w, out_w, filter);
        cur = Some(horizontal(
            src,
            w,
            ch,
            ybox_first,
            ybox_last - ybox_first,
            &hc,
        ));
        row_offset = ybox_first;
    }
    if need_v {
        let input = cur.as_deref().unwrap_or(src);
        let width = if need_h { out_w } else { w };
        cur = Some(vertical(input, width, ch, row_offset, &vc));
    }
    cur.unwrap_or_else(|| src.to_vec())
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
    if (w, h) == (out_w, out_h) {
        return src.to_vec();
    }
    if h > w * 100 && out_h < h {
        // Pillow: very tall images are resized vertically first, in two calls.
        return vertical_first(src, w, h, ch, out_w, out_h, filter);
    }
    resample_inner(src, w, h, ch, out_w, out_h, filter)
}

/// The vertical pass, then the horizontal one (Pillow's default is the reverse).
fn vertical_first(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Vec<u8> {
    let tmp = resample_inner(src, w, h, ch, w, out_h, filter);
    resample_inner(&tmp, w, out_h, ch, out_w, out_h, filter)
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
        let taps = |i: usize, o: usize| precompute(i, o, filter).ksize as f64;
        let (kx, ky) = (taps(wu, ow), taps(hu, oh));
        let (ow_f, oh_f, w_f, h_f) = (ow as f64, oh as f64, wu as f64, hu as f64);
        const VERTICAL_TAP: f64 = 2.0;
        let cost_horizontal_first = ow_f * h_f * kx + VERTICAL_TAP * ow_f * oh_f * ky;
        let cost_vertical_first = VERTICAL_TAP * w_f * oh_f * ky + ow_f * oh_f * kx;
        if ow > wu || cost_vertical_first < cost_horizontal_first {
            return vertical_first(src, wu, hu, ch, ow, oh, filter);
        }
    }
    resample(src, w, h, ch, out_w, out_h, filter)
}

/// PIL NEAREST resize (what `Image.resize` silently uses for "P" and "1").
pub(crate) fn nearest(src: &[u8], w: u32, h: u32, ch: usize, out_w: u32, out_h: u32) -> Vec<u8> {
    let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
    if (w, h) == (out_w, out_h) {
        return src.to_vec();
    }
    // COORD(v): negative -> -1, else truncation; positions accumulate in f64
    // exactly as the C loop does.
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    let a0 = (w as f32) as f64 / out_w as f64;
    let a4 = (h as f32) as f64 / out_h as f64;
    let mut xintab = vec![0usize; out_w];
    let (mut xmin, mut xmax) = (out_w, 0);
    let mut xo = a0 * 0.5;
    for (x, tab) in xintab.iter_mut().enumerate() {
        let xin = coord(xo);
        if xin >= 0 && (xin as usize) < w {
            xmax = x + 1;
            xmin = xmin.min(x);
            *tab = xin as usize;
        }
        xo += a0;
    }
    let mut out = vec![0u8; out_w * out_h * ch];
    let mut yo = a4 * 0.5;
    for y in 0..out_h {
        let yi = coord(yo);
        if yi >= 0 && (yi as usize) < h {
            let line = &src[yi as usize * w * ch..(yi as usize + 1) * w * ch];
            for x in xmin..xmax {
                let s = xintab[x] * ch;
                out[(y * out_w + x) * ch..(y * out_w + x + 1) * ch]
                    .copy_from_slice(&line[s..s + ch]);
            }
        }
        yo += a4;
    }
    out
}

/// `resize_crop_raw` as it was: the whole shortest-edge resize, then the crop.
pub(crate) fn resize_crop_raw(
    src: &[u8],
    w: u32,
    h: u32,
    ch: usize,
    cfg: &crate::PreprocessConfig,
    nearest_filter: bool,
) -> Vec<u8> {
    let (data, w, h) = if cfg.do_resize && cfg.resize_to > 0 {
        let (nw, nh) = crate::shortest_edge_size(w, h, cfg.resize_to);
        let out = if nearest_filter {
            nearest(src, w, h, ch, nw, nh)
        } else {
            resample(src, w, h, ch, nw, nh, cfg.interpolation)
        };
        (std::borrow::Cow::Owned(out), nw, nh)
    } else {
        (std::borrow::Cow::Borrowed(src), w, h)
    };
    crate::crop::center_crop(&data, w, h, ch, cfg.crop_size, cfg.crop_rounding)
}
