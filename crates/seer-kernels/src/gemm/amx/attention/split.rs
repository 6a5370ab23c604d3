//! The attention of f32 models whose products run on the AMX tiles
//! ([`crate::ops::attention_on_tiles`]): both of its products on the tiles
//! too, at f32's precision. On AVX-512 FMA it was the largest part of such a
//! forward outside the projections (DINOv2 ViT-S/14 at 257 tokens: 19% of
//! the time, perf, AMX Xeon), while the tiles multiply sixteen times faster.
//!
//! As the split products do ([`super::super`]'s module notes): every value is
//! three bf16 parts whose sum it is exactly, and a product is the six part
//! products down to `2⁻¹⁶` of `hi·hi`. Here that is the bf16 attention's
//! layout with each operand row holding six segments one after the other,
//! the pairs of parts in [`SEGMENTS`]: a tile product over all six segments'
//! steps sums the six part products. q, k and v are split as they are
//! gathered, the softmax's numerators (from the f32 scores, by
//! [`crate::avx512::exp_by_scalef`], as close as the f32 `exp`) as they are
//! written.
//!
//! Measured (AMX Xeon, 2026-12-05): `attention_speed … tiles` at batches of
//! 8, width 768, against the FMA attention: 257 tokens 1.3×, 197 1.2×, 128
//! 1.1×, 77 1.0×, 50 0.9× (splitting grows with the tokens, the products
//! with their square: [`crate::ops::TILE_ATTENTION_FROM`]). Through
//! `dinov2_bench`, builds alternating, 4 pairs: DINOv2 ViT-S/14 f32 +19% at
//! batch 8 and +7% at 32, ViT-B/14 +5% and even. A first version that split
//! q, k and v into f32 part arrays and packed those as the bf16 gather does
//! spent 43% of its time gathering and ran 0.7-0.9× the FMA attention.

use std::arch::x86_64::*;

use super::super::super::x86::{
    pairs_of_line, split_lines_native, split_native_256, transpose_16x16,
};
use super::{each_numerator_pair, Buffers, Head, AHEAD, STEP, TILE};
use crate::avx512::first_lanes;
use crate::ops::{prefetch_head, AttentionShape};

/// Tile products per pair of values.
pub(super) const PRODUCTS: usize = 6;

/// The parts (0 hi, 1 mid, 2 lo) each segment pairs: of A (keys, values) and
/// of B (queries, numerators). hi·hi, hi·mid, hi·lo, mid·hi, mid·mid, lo·hi.
const SEGMENTS: [(usize, usize); PRODUCTS] = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)];

/// [`super::attention`] from f32 rows into f32 rows, split.
///
/// # Safety
/// As [`super::attention`] for `Source::F32(qkv)` and `Context::F32(out)`.
pub(crate) unsafe fn attention_split(qkv: &[f32], shape: AttentionShape, out: *mut f32) {
    let (qkv, out) = (super::Source::F32(qkv), super::Context::F32(out));
    // SAFETY: our contract.
    unsafe { super::heads(qkv, shape, out, true) }
}

/// Stores an A operand's `parts` (16 bf16 each: keys, values) into every
/// segment: at `segment(s)` the part of A that segment `s` pairs.
///
/// # Safety
/// AVX; each `segment(s)` is valid for 16 u16 writes.
#[inline(always)]
unsafe fn store_a_parts(parts: [__m256i; 3], segment: impl Fn(usize) -> *mut u16) {
    for (s, &(a, _)) in SEGMENTS.iter().enumerate() {
        // SAFETY: our contract.
        unsafe { _mm256_storeu_si256(segment(s).cast(), parts[a]) };
    }
}

/// Fills the buffers with head `h`'s keys, queries and values (see
/// [`super::gather`]), each operand row its six segments of parts, split as
/// they are read.
///
/// # Safety
/// The CPU has AVX-512F, BW and BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn gather(b: &mut Buffers, qkv: &[f32], width: usize, head: &Head, h: usize) {
    let (start, t, d) = (head.start, head.t, head.d);
    let (tq, tk, dp, dv) = (head.tq, head.tk, head.dp, head.dv);
    // Token j's d values of q (0), k (1) or v (2), masked to the 16 from
    // column c (zeros past d).
    let load = |j: usize, kind: usize, c: usize| {
        let src = qkv[(start + j) * 3 * width + kind * width + h * d..][..d].as_ptr();
        // SAFETY: the mask's lanes are columns c.. below d of the row.
        unsafe { _mm512_maskz_loadu_ps(first_lanes(d.saturating_sub(c)), src.wrapping_add(c)) }
    };
    // The keys' pass reads the tokens first: it asks for their q, k and v
    // lines ahead (rows 12·width bytes apart: no prefetcher follows them),
    // which the queries' and values' passes then find in cache.
    let token = |j: usize| &qkv[(start + j) * 3 * width..][..3 * width];
    for j in 0..AHEAD.min(t) {
        prefetch_head(token(j), width, h * d, d);
    }
    let keys = b.keys.get::<u16>(tk * PRODUCTS * dp);
    for (j, row) in keys.chunks_exact_mut(PRODUCTS * dp).enumerate() {
        if j + AHEAD < t {
            prefetch_head(token(j + AHEAD), width, h * d, d);
        }
        if j >= t {
            row.fill(0);
            continue;
        }
        let first = row.as_mut_ptr();
        for c in (0..dv).step_by(TILE) {
            let at = |s: usize| first.wrapping_add(s * dp + c);
            // SAFETY: c + 16 <= dv <= dp: inside each of the row's segments.
            unsafe { store_a_parts(split_native_256(load(j, 1, c)), at) };
        }
        for segment in row.chunks_exact_mut(dp) {
            segment[dv..].fill(0);
        }
    }
    let words = dp / 2 * TILE;
    let blocks = b.queries.get::<u32>(tq / TILE * PRODUCTS * words);
    for (block, segments) in blocks.chunks_exact_mut(PRODUCTS * words).enumerate() {
        let i0 = block * TILE;
        for step in 0..dp / STEP {
            // Per part, each query's line of this step (depths 32·step..,
            // in order: its pair words), then transposed: a row of 16
            // queries per pair.
            let mut lines = [[_mm512_setzero_ps(); TILE]; 3];
            let c = step * STEP;
            for (i, query) in (i0..t.min(i0 + TILE)).enumerate() {
                let parts = split_lines_native((load(query, 0, c), load(query, 0, c + TILE)));
                for (part_lines, line) in lines.iter_mut().zip(parts) {
                    part_lines[i] = _mm512_castsi512_ps(line);
                }
            }
            for rows in &mut lines {
                transpose_16x16(rows);
            }
            // Each segment the part of B it pairs.
            for (s, &(_, p)) in SEGMENTS.iter().enumerate() {
                let at = &mut segments[s * words + step * TILE * TILE..][..TILE * TILE];
                for (pair, row) in at.chunks_exact_mut(TILE).zip(&lines[p]) {
                    // SAFETY: `pair` is 16 u32.
                    unsafe { _mm512_storeu_ps(pair.as_mut_ptr().cast(), *row) };
                }
            }
        }
    }
    let values_t = b.values_t.get::<u16>(dv * PRODUCTS * tk);
    for j0 in (0..tk).step_by(TILE) {
        for c0 in (0..dv).step_by(TILE) {
            // Tokens j0.. × columns c0.. in, columns × tokens out.
            let mut r = [_mm512_setzero_ps(); TILE];
            for (i, reg) in r.iter_mut().enumerate().take(t.saturating_sub(j0)) {
                *reg = load(j0 + i, 2, c0);
            }
            transpose_16x16(&mut r);
            for (c, reg) in r.iter().enumerate() {
                let row = values_t[(c0 + c) * PRODUCTS * tk..][..PRODUCTS * tk].as_mut_ptr();
                let at = |s: usize| row.wrapping_add(s * tk + j0);
                // SAFETY: j0 + 16 <= tk: inside each of the row's segments.
                unsafe { store_a_parts(split_native_256(*reg), at) };
            }
        }
    }
}

/// [`super::numerators`] at f32's precision: each numerator's three parts
/// as pair words into the six segments of `probs` (`tk / 2` rows of 16 words
/// each: every row, zeros past the visible keys).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) fn numerators(
    scores: &[[f32; TILE]],
    probs: &mut [u32],
    causal_from: Option<usize>,
) -> __m512 {
    let rows = probs.len() / TILE / PRODUCTS;
    let mut pair = 0;
    each_numerator_pair(scores, causal_from, rows, |lo, hi| {
        let parts = split_lines_native((lo, hi)).map(|line| pairs_of_line(line));
        for (segment, &(_, p)) in SEGMENTS.iter().enumerate() {
            let words = &mut probs[(segment * rows + pair) * TILE..][..TILE];
            // SAFETY: `words` is 16 u32.
            unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), parts[p]) };
        }
        pair += 1;
    })
}
