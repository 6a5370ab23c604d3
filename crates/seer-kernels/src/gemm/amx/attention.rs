//! Self-attention with its two products on the AMX tiles in bf16, for models
//! run at `--precision bf16` or `int8`: [`crate::ops::attention_bf16`]; and
//! at f32's precision for f32 models on the tiles ([`split`]: the same
//! machinery, each operand row six segments of bf16 parts).
//!
//! Why: with the projections on the tiles, the f32 attention (1% of a ViT-B/32
//! image forward's multiply-adds) was 15% of its time, and 16% of a text
//! forward's at 77 tokens (perf, AMX Xeon). Here a head's queries, keys and
//! values are rounded to bf16 as they are gathered, both products are tile
//! products with f32 sums and the softmax is f32, its numerators rounded to
//! bf16 for the second product: what PyTorch's and OpenVINO's bf16 attention
//! round too.
//!
//! Everything runs transposed, 16 queries at a time: `Sᵀ = K·Qᵀ` puts each
//! key's scores for the 16 queries in one 16-lane row, so the softmax's max
//! and sum are lane-wise over the key rows, without a horizontal reduction
//! per query (the row-wise softmax was a quarter of this kernel's time);
//! `Cᵀ = Vᵀ·Pᵀ` then takes the numerators straight from those rows as the
//! tiles' B pairs (two keys' rows interleaved), and one register transpose
//! per 16 columns writes the context rows. The layouts:
//! - keys (A of `Sᵀ`): row-major bf16, `dp` a row (the head width `d`
//!   padded to whole 32-deep steps);
//! - queries (B of `Sᵀ`): per 16 queries, `dp / 2` rows of 16 pair words
//!   (query `i`'s dims `2p, 2p + 1`), the packers' transpose;
//! - values (A of `Cᵀ`): transposed, one bf16 row of `tk` keys per value
//!   column (`tk`: the keys padded to whole 32-key steps);
//! - numerators (B of `Cᵀ`): `tk / 2` rows of 16 pair words.
//!
//! Padding keys and queries are zeros; padded queries' lanes are computed and
//! not written.
//!
//! Handing data between the vector units and the tiles is slow: a tile load
//! waits for the vector stores before it, a vector load for the tile stores.
//! So each phase (scores, softmax, context, output) runs over a group of query
//! blocks before the next (per-block phases cost 20% more), and the output
//! rows, `4 · width` bytes apart where no prefetcher follows, are asked for
//! while the tiles work (12% less time). On the AMX Xeon, 32 × 50 tokens at
//! width 768: 2.8 ms for the f32 attention, 1.45 ms here; 32 × 77 causal at
//! width 512: 2.05 → 1.33 ms (`attention_speed … bf16`).

use std::arch::asm;
use std::arch::x86_64::*;

use super::super::x86::{
    bf16_bits_512, bf16_native_256, bf16_pairs_native, pack_bf16_pairs_panel_avx512,
    round_to_bf16_avx512, transpose_16x16,
};
use super::{Line, Tiles};
use crate::avx512::{exp_by_scalef, first_lanes};
use crate::ops::{prefetch_head, AttentionShape, DecomposedRelPos};

mod split;
pub(crate) use split::attention_split;

/// Queries per block (the lanes of a score row), keys per A tile of `Sᵀ`,
/// value columns per A tile of `Cᵀ`.
const TILE: usize = 16;
/// Depth of one bf16 tile step: 32 values = 64 bytes a row.
const STEP: usize = 32;
/// Tokens ahead whose q, k and v lines [`gather`] asks for.
const AHEAD: usize = 16;
/// Query blocks per group ([`head`]): as many as keep the group's scores
/// within this many 16-lane rows (64 KiB), at most [`MAX_GROUP`].
const GROUP_ROWS: usize = 1024;
const MAX_GROUP: usize = 8;

/// One thread's buffers, reused across heads (layouts: module notes). Tile
/// rows start on cache lines ([`Lines`]).
#[derive(Default)]
struct Buffers {
    /// `tk × dp` bf16.
    keys: Lines,
    /// `tq / 16` blocks of `dp / 2` rows of 16 pair words (`tq`: the queries
    /// padded to whole blocks).
    queries: Lines,
    /// `dv × tk` bf16 (`dv`: the head width padded to whole 16-column tiles).
    values_t: Lines,
    /// Per block of a group, its scores, then numerators: `tk` rows of 16 f32.
    scores: Lines,
    /// Per block of a group, the numerators as `tk / 2` rows of 16 pair words.
    probs: Lines,
    /// Per block of a group, the context sums: `dv` rows of 16 f32.
    context: Lines,
    /// A last partial block of queries, zero padded to 16 rows of `d`.
    padded: Vec<f32>,
    /// One query block's relative-position terms: a row of 16 per grid row,
    /// then per grid column.
    terms: Vec<[f32; TILE]>,
}

/// Values a [`Lines`] buffer can be viewed as: any bits are a valid value,
/// and alignment 64 suits them.
trait Plain: Copy {}
impl Plain for u16 {}
impl Plain for u32 {}
impl Plain for [f32; TILE] {}

/// A buffer of 64-byte aligned lines, viewed as `u16`, `u32` or rows of 16
/// f32: with `Vec<u16>` a 64-byte tile row could straddle two cache lines.
#[derive(Default)]
struct Lines(Vec<super::Line>);

impl Lines {
    /// The first `n` values, growing the buffer (with zeros) to hold them;
    /// what it held is kept.
    fn get<T: Plain>(&mut self, n: usize) -> &mut [T] {
        let lines = (n * std::mem::size_of::<T>()).div_ceil(64);
        if self.0.len() < lines {
            self.0.resize(lines, super::Line([0; 64]));
        }
        // SAFETY: the lines hold at least n values of T, initialised bytes;
        // any bits are a valid T (`Plain`), and 64-byte alignment is a
        // multiple of T's; the slice borrows the buffer mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), n) }
    }
}

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

/// A head's sizes: `t` tokens from row `start`, head width `d`; `tq` the
/// queries padded to whole blocks of 16, `tk` the keys to whole 32-key steps,
/// `dp` the width to whole steps, `dv` to whole 16-column tiles. `products`:
/// the tile products a value pair takes, 1 in bf16, [`split::PRODUCTS`] for
/// f32 as bf16 parts; each operand row holds that many segments of `dp`
/// (keys, queries) or `tk` (values, numerators) one after the other.
#[derive(Clone, Copy)]
struct Head {
    start: usize,
    t: usize,
    d: usize,
    tq: usize,
    tk: usize,
    dp: usize,
    dv: usize,
    products: usize,
}

/// Where a head writes its context.
#[derive(Clone, Copy)]
pub(crate) enum Context {
    /// f32 rows of the model width from here, heads side by side.
    F32(*mut f32),
    /// bf16 tile lines ([`super::Rows`], `steps` = width / 32 of them per
    /// row) from this first line: the input of the output projection,
    /// rounded as it would round the f32 rows. Heads are whole steps wide.
    Lines { start: *mut u8, steps: usize },
}

// SAFETY: as `SendPtr`: every task writes its own rows' head columns only.
unsafe impl Send for Context {}
// SAFETY: as for Send.
unsafe impl Sync for Context {}

impl Context {
    /// Where row `row`'s columns `col..` are written (`col` a multiple of 16).
    fn at(self, row: usize, col: usize, width: usize) -> *mut u8 {
        match self {
            Context::F32(first) => first.wrapping_add(row * width + col).cast(),
            Context::Lines { start, steps } => {
                let line = line_at(start, steps, row, col / STEP).cast_mut();
                line.cast::<u16>().wrapping_add(col % STEP).cast()
            }
        }
    }
}

/// Where q, k and v come from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// f32 rows `[q | k | v]` of `3 · width`.
    F32(&'a [f32]),
    /// The same rows as bf16 tile lines ([`super::Rows`], `3 · width / 32`
    /// steps a row) from this first line, as the q/k/v product wrote them:
    /// already rounded, gathered with copies and transposes only. Heads are
    /// whole steps wide.
    Lines { start: *const u8, steps: usize },
}

// SAFETY: the lines are only read.
unsafe impl Send for Source<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Source<'_> {}

/// Line `step` of row `row` in tile lines of `steps` steps a row from `start`.
fn line_at(start: *const u8, steps: usize, row: usize, step: usize) -> *const u8 {
    start.wrapping_add(super::line_index(steps, row, step) * std::mem::size_of::<Line>())
}

/// [`crate::ops::attention`] with bf16 tile products, tasks (sequence, head)
/// spread over the cores. The caller checked the shapes.
///
/// # Safety
/// [`super::available`] returned true; `qkv` holds `rows` rows (`3 · width`
/// floats each, or lines of as many values, heads whole steps wide) and every
/// sequence ends by row `rows`; `out` is valid for writes of
/// `rows` rows: f32 `rows × shape.width` floats, or lines for `rows` rows of
/// `width / 32` steps, each head `32 ·` a whole number wide.
pub(crate) unsafe fn attention(qkv: Source, shape: AttentionShape, out: Context) {
    // SAFETY: our contract.
    unsafe { heads(qkv, shape, out, false) }
}

/// [`attention`], or with `split` ([`split`]: `qkv` and `out` f32 only) at
/// f32's precision.
///
/// # Safety
/// As [`attention`].
unsafe fn heads(qkv: Source, shape: AttentionShape, out: Context, split: bool) {
    use rayon::prelude::*;
    (0..shape.sequences.len() * shape.heads)
        .into_par_iter()
        .for_each_init(
            // SAFETY: AMX is available (our contract). One configuration per
            // rayon job, whose tasks run one after another.
            || unsafe { Tiles::configure() },
            |_tiles, task| {
                let (seq, h) = (task / shape.heads, task % shape.heads);
                // SAFETY: AVX-512F, BW and BF16 (`available`, our contract);
                // the tiles are configured.
                // Task (sequence, head) writes only head h's columns of its
                // sequence's rows (inside `out`, our contract); sequences do
                // not overlap, so no two tasks write the same value.
                BUFFERS.with_borrow_mut(|b| unsafe { head(b, qkv, &shape, seq, h, out, split) });
            },
        );
}

/// [`attention`] into new tile lines for `m` rows: the output projection's
/// input. The lines of rows `m..` up to a whole block are zeroed.
///
/// # Safety
/// [`super::available`] returned true; the shapes were checked; the
/// sequences cover rows `0..m` exactly; each head is `32 ·` a whole number
/// wide.
pub(crate) unsafe fn attention_to_rows(
    qkv: Source,
    shape: AttentionShape,
    m: usize,
) -> crate::Bf16Rows {
    let steps = shape.width / STEP;
    // SAFETY: every line is written: the sequences' rows by the heads (all of
    // each row's steps), the padding rows below.
    let (rows, start) = unsafe { super::Rows::unwritten(m, steps) };
    let start = start.get().cast::<u8>();
    for row in m..m.next_multiple_of(super::MR) {
        for step in 0..steps {
            let line = line_at(start, steps, row, step).cast_mut().cast::<Line>();
            // SAFETY: the line is inside the rows' blocks.
            unsafe { line.write(Line([0; 64])) };
        }
    }
    // SAFETY: our contract, the lines for `m` rows.
    unsafe { attention(qkv, shape, Context::Lines { start, steps }) };
    crate::Bf16Rows {
        rows,
        m,
        k: shape.width,
        split: false,
    }
}

/// One head `h` of sequence `seq`: in bf16, or (`split`, from f32 rows into
/// f32 rows) with every value as three bf16 parts ([`split`]).
///
/// # Safety
/// The CPU has AVX-512F, BW and BF16 and tiles are configured on this
/// thread; `out` as for [`attention`], and no one else touches head `h`'s
/// columns of the sequence's rows meanwhile; `split` only with `Source::F32`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn head(
    b: &mut Buffers,
    qkv: Source,
    s: &AttentionShape,
    seq: usize,
    h: usize,
    out: Context,
    split: bool,
) {
    let (start, t) = s.sequences[seq];
    let d = s.width / s.heads;
    let head = Head {
        start,
        t,
        d,
        tq: t.next_multiple_of(TILE),
        tk: t.next_multiple_of(STEP),
        dp: d.next_multiple_of(STEP),
        dv: d.next_multiple_of(TILE),
        products: if split { split::PRODUCTS } else { 1 },
    };
    // SAFETY: AVX-512F (our contract).
    unsafe {
        match qkv {
            Source::F32(qkv) if split => split::gather(b, qkv, s.width, &head, h),
            Source::F32(qkv) => gather(b, qkv, s.width, &head, h),
            Source::Lines { start, steps } => gather_lines(b, start, steps, s.width, &head, h),
        }
    };
    let Head {
        tq,
        tk,
        dp,
        dv,
        products,
        ..
    } = head;
    let blocks = tq / TILE;
    let group = (GROUP_ROWS / tk).clamp(1, MAX_GROUP);
    // A row of keys or values and a block's queries or numerators hold
    // `products` segments.
    let (dps, tks) = (products * dp, products * tk);
    let keys_rows = b.keys.get::<u16>(tk * dps).as_ptr();
    let queries = b.queries.get::<u32>(blocks * dps / 2 * TILE);
    let values_t = b.values_t.get::<u16>(dv * tks).as_ptr();
    let scores = b.scores.get::<[f32; TILE]>(group * tk);
    let probs = b.probs.get::<u32>(group * tks / 2 * TILE);
    let context = b.context.get::<[f32; TILE]>(group * dv);
    let real_keys = s.keys.map_or(t, |k| k[seq].clamp(1, t));
    // Block `block`'s first query, real queries, and the keys some query of
    // it sees.
    let geometry = |block: usize| {
        let i0 = block * TILE;
        let rows = TILE.min(t - i0);
        let keys = if s.causal {
            (i0 + rows).min(real_keys)
        } else {
            real_keys
        };
        (i0, rows, keys)
    };
    // Each phase over a group of blocks before the next: the tiles wait for
    // the vector stores before them, and vector loads for the tile stores,
    // so one hand-over per group costs a fraction of one per block.
    for g0 in (0..blocks).step_by(group) {
        let in_group = group.min(blocks - g0);
        for g in 0..in_group {
            let (_, _, keys) = geometry(g0 + g);
            let products = Products {
                steps: dps / STEP,
                a: keys_rows.cast(),
                a_stride: 2 * dps,
                b: queries[(g0 + g) * dps / 2 * TILE..].as_ptr().cast(),
                out: scores[g * tk..].as_mut_ptr().cast(),
            };
            // SAFETY: tiles configured; the keys are tk ≥ 16 · tiles rows of
            // dps bf16, the block's queries dps / 2 rows of 16 words, its
            // scores tk rows of 16 floats.
            unsafe { products.run(keys.div_ceil(TILE)) };
        }
        let mut norms = [_mm512_setzero_ps(); MAX_GROUP];
        for (g, norm) in norms.iter_mut().enumerate().take(in_group) {
            let (i0, rows, keys) = geometry(g0 + g);
            let scores = &mut scores[g * tk..][..keys];
            if let Some(rel) = s.rel_pos {
                let first = (seq * s.heads + h) * t + i0;
                add_rel_pos(scores, &mut b.terms, &rel, first, rows);
            }
            let probs = &mut probs[g * tks / 2 * TILE..][..tks / 2 * TILE];
            let causal_from = s.causal.then_some(i0);
            *norm = if split {
                split::numerators(scores, probs, causal_from)
            } else {
                numerators(scores, probs, causal_from)
            };
        }
        // The group's output lines, asked for while the tiles work (their
        // rows are 4·width bytes apart: no prefetcher follows them).
        for g in 0..in_group {
            let (i0, rows, _) = geometry(g0 + g);
            for r in 0..rows {
                for x in (0..d).step_by(TILE) {
                    // A prefetch reads nothing and cannot fault.
                    let at = out.at(start + i0 + r, h * d + x, s.width);
                    _mm_prefetch::<_MM_HINT_ET0>(at.cast());
                }
            }
        }
        for g in 0..in_group {
            let (_, _, keys) = geometry(g0 + g);
            // Split: every segment whole (the numerators past the keys are
            // zeros), as the segments follow one another.
            let steps = if split {
                tks / STEP
            } else {
                keys.div_ceil(STEP)
            };
            let products = Products {
                steps,
                a: values_t.cast(),
                a_stride: 2 * tks,
                b: probs[g * tks / 2 * TILE..].as_ptr().cast(),
                out: context[g * dv..].as_mut_ptr().cast(),
            };
            // SAFETY: tiles configured; the values are dv rows of tks ≥ 32 ·
            // steps bf16, the block's numerators 16 · steps rows of 16 words
            // (written by `numerators`), its context dv rows of 16 floats.
            unsafe { products.run(dv / TILE) };
        }
        for (g, &norm) in norms.iter().enumerate().take(in_group) {
            let (i0, rows, _) = geometry(g0 + g);
            // SAFETY: rows start + i0 .. + rows, columns h·d..(h+1)·d of
            // them: inside `out` and ours alone (the caller's contract).
            unsafe {
                let corner = (start + i0, h * d, s.width);
                write_rows(&context[g * dv..][..dv], norm, rows, d, out, corner)
            };
        }
    }
}

/// Adds SAM's decomposed relative positions (see [`DecomposedRelPos`]) to a
/// query block's transposed scores: key `j`'s row gets, in lane `l`, query
/// `first + l`'s `term_h` at grid row `j / cols`, then its `term_w` at grid
/// column `j % cols` (the reference's order). `terms` is scratch.
#[inline(never)] // SAM only: kept out of the common path's loop
#[target_feature(enable = "avx512f")]
fn add_rel_pos(
    scores: &mut [[f32; TILE]],
    terms: &mut Vec<[f32; TILE]>,
    rel: &DecomposedRelPos,
    first: usize,
    rows: usize,
) {
    terms.clear();
    terms.resize(rel.rows + rel.cols, [0.0; TILE]);
    let (th, tw) = terms.split_at_mut(rel.rows);
    for l in 0..rows {
        let q = first + l;
        for (ky, lanes) in th.iter_mut().enumerate() {
            lanes[l] = rel.term_h[q * rel.rows + ky];
        }
        for (kx, lanes) in tw.iter_mut().enumerate() {
            lanes[l] = rel.term_w[q * rel.cols + kx];
        }
    }
    for (j, row) in scores.iter_mut().enumerate() {
        let (bh, bw) = (&th[j / rel.cols], &tw[j % rel.cols]);
        for ((v, &h), &w) in row.iter_mut().zip(bh).zip(bw) {
            *v = *v + h + w;
        }
    }
}

/// The softmax's numerators over one query block's transposed scores (a row
/// of 16 lanes per visible key), lane-wise: `exp(s − max)` over the keys
/// each query sees, zero elsewhere, rounded to bf16 as pair words (keys
/// `2p, 2p + 1`; by `vcvtne2ps2bf16` and one word shuffle, a fifth of the
/// integer rounding's instructions) into `probs` up to a whole 32-key step;
/// returns each lane's 1 / sum. Under a causal mask (`causal_from`: the
/// block's first query) lane `l` sees keys up to its own position.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn numerators(scores: &[[f32; TILE]], probs: &mut [u32], causal_from: Option<usize>) -> __m512 {
    let pairs = scores.len().div_ceil(STEP) * STEP / 2;
    let mut rows = probs[..pairs * TILE].chunks_exact_mut(TILE);
    each_numerator_pair(scores, causal_from, pairs, |lo, hi| {
        let words = rows.next().expect("a row per pair");
        // SAFETY: `words` is 16 u32.
        unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), bf16_pairs_native(lo, hi)) };
    })
}

/// The numerators of [`numerators`], handed to `pair` for keys `(0, 1)`,
/// `(2, 3)`, … up to `pairs` pairs (zeros past the visible keys); returns
/// each lane's 1 / sum. `e^x` by [`exp_by_scalef`]: every caller rounds the
/// numerators to bf16 (parts) next, where the scalar `exp`'s bits buy
/// nothing.
#[inline]
#[target_feature(enable = "avx512f")]
fn each_numerator_pair(
    scores: &[[f32; TILE]],
    causal_from: Option<usize>,
    pairs: usize,
    mut pair: impl FnMut(__m512, __m512),
) -> __m512 {
    let keys = scores.len();
    let seen_by = |j: usize| match causal_from {
        Some(i0) => !first_lanes(j.saturating_sub(i0)),
        None => 0xffff,
    };
    // SAFETY: a row is 16 floats; AVX-512F is enabled here.
    let row = |r: &[f32; TILE]| unsafe { _mm512_loadu_ps(r.as_ptr()) };
    // SAFETY: register-only AVX-512F intrinsics, enabled here.
    unsafe {
        // Four running maxima, then one: a single one chains every key's max
        // behind the previous one's latency.
        let mut maxima = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
        for (j, r) in scores.iter().enumerate() {
            let m = &mut maxima[j % 4];
            *m = _mm512_mask_max_ps(*m, seen_by(j), *m, row(r));
        }
        let max = _mm512_max_ps(
            _mm512_max_ps(maxima[0], maxima[1]),
            _mm512_max_ps(maxima[2], maxima[3]),
        );
        let numerator = |j: usize| {
            if j < keys {
                let e = exp_by_scalef(_mm512_sub_ps(row(&scores[j]), max));
                _mm512_maskz_mov_ps(seen_by(j), e)
            } else {
                _mm512_setzero_ps()
            }
        };
        // Even and odd keys summed apart (two chains), added at the end.
        let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for p in 0..pairs {
            let (lo, hi) = (numerator(2 * p), numerator(2 * p + 1));
            even = _mm512_add_ps(even, lo);
            odd = _mm512_add_ps(odd, hi);
            pair(lo, hi);
        }
        _mm512_div_ps(_mm512_set1_ps(1.0), _mm512_add_ps(even, odd))
    }
}

/// Writes a query block's context: lane `l` of value column `c`'s row,
/// times lane `l` of `norm`, to `out` at row `row0 + l`, column `col0 + c`
/// (`corner` = `(row0, col0, width)`) for the `rows` real queries and `d`
/// columns, 16 columns at a time through a register transpose; as f32, or
/// rounded to bf16 into tile lines.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; `out` is valid for writes of rows
/// `row0..row0 + rows`, columns `col0..col0 + d`; `context` holds
/// `d.next_multiple_of(16)` rows.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn write_rows(
    context: &[[f32; TILE]],
    norm: __m512,
    rows: usize,
    d: usize,
    out: Context,
    (row0, col0, width): (usize, usize, usize),
) {
    for c0 in (0..d).step_by(TILE) {
        let mut r = [_mm512_setzero_ps(); TILE];
        for (reg, col) in r.iter_mut().zip(&context[c0..c0 + TILE]) {
            // SAFETY: a row is 16 floats.
            *reg = _mm512_mul_ps(unsafe { _mm512_loadu_ps(col.as_ptr()) }, norm);
        }
        transpose_16x16(&mut r);
        let mask = first_lanes(d - c0);
        for (l, reg) in r.iter().enumerate().take(rows) {
            let at = out.at(row0 + l, col0 + c0, width);
            // SAFETY: columns c0.. of the first d of row l (the contract);
            // tile-line heads are whole steps wide, so all 16 are.
            unsafe {
                match out {
                    Context::F32(_) => _mm512_mask_storeu_ps(at.cast(), mask, *reg),
                    Context::Lines { .. } => _mm256_storeu_si256(at.cast(), bf16_native_256(*reg)),
                }
            }
        }
    }
}

/// Fills the buffers with head `h`'s keys, queries and values in bf16, laid
/// out as the tiles read them (module notes), zero padded, each in one pass
/// of whole vectors.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn gather(b: &mut Buffers, qkv: &[f32], width: usize, head: &Head, h: usize) {
    let Head {
        start,
        t,
        d,
        tq,
        tk,
        dp,
        dv,
        ..
    } = *head;
    let row = 3 * width;
    // Token j's part (0 q, 1 k, 2 v) of head h: d floats.
    let part = |j: usize, part: usize| &qkv[(start + j) * row + part * width + h * d..][..d];
    for j in 0..AHEAD.min(t) {
        prefetch_head(&qkv[(start + j) * row..][..row], width, h * d, d);
    }
    for (j, dst) in b.keys.get::<u16>(tk * dp).chunks_exact_mut(dp).enumerate() {
        if j + AHEAD < t {
            let ahead = &qkv[(start + j + AHEAD) * row..][..row];
            prefetch_head(ahead, width, h * d, d);
        }
        if j < t {
            // SAFETY: AVX-512F (our contract).
            unsafe { round_to_bf16_avx512(part(j, 1), &mut dst[..d]) };
            dst[d..].fill(0);
        } else {
            dst.fill(0);
        }
    }
    let words = dp / 2 * TILE;
    let all_queries = b.queries.get::<u32>(tq / TILE * words);
    for (block, queries) in all_queries.chunks_exact_mut(words).enumerate() {
        let i0 = block * TILE;
        let real = TILE.min(t - i0);
        // SAFETY: AVX-512F; 16 rows of d floats at stride `row` from query
        // i0 are inside `qkv` when all 16 are real (else 16 rows of d in
        // `padded`); `queries` holds d.div_ceil(2) · 16 <= words words.
        unsafe {
            if real == TILE {
                let first = part(i0, 0).as_ptr();
                pack_bf16_pairs_panel_avx512::<TILE>(first, row, d, queries.as_mut_ptr());
            } else {
                b.padded.clear();
                b.padded.resize(TILE * d, 0.0);
                for i in 0..real {
                    b.padded[i * d..(i + 1) * d].copy_from_slice(part(i0 + i, 0));
                }
                let first = b.padded.as_ptr();
                pack_bf16_pairs_panel_avx512::<TILE>(first, d, d, queries.as_mut_ptr());
            }
        }
        queries[d.div_ceil(2) * TILE..].fill(0);
    }
    let values_t = b.values_t.get::<u16>(dv * tk);
    for j0 in (0..tk).step_by(TILE) {
        for c0 in (0..dv).step_by(TILE) {
            // Tokens j0.. × columns c0.. in, columns × tokens out.
            let mut r = [_mm512_setzero_ps(); TILE];
            let mask = first_lanes(d.saturating_sub(c0));
            for (i, reg) in r.iter_mut().enumerate().take(t.saturating_sub(j0)) {
                let src = part(j0 + i, 2).as_ptr().wrapping_add(c0);
                // SAFETY: the mask's lanes are columns c0.. below d of the
                // token's values.
                *reg = unsafe { _mm512_maskz_loadu_ps(mask, src) };
            }
            transpose_16x16(&mut r);
            for (c, reg) in r.iter().enumerate() {
                let line = _mm512_cvtepi32_epi16(bf16_bits_512(*reg));
                let dst = &mut values_t[(c0 + c) * tk + j0..][..TILE];
                // SAFETY: `dst` is 16 u16.
                unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), line) };
            }
        }
    }
}

/// [`gather`] from q/k/v rows already rounded, as tile lines of `steps`
/// steps a row (see [`Source::Lines`]): the keys' lines copied, the queries'
/// pair words through the 16×16 register transpose as they are, the values'
/// bf16 widened to 32-bit lanes for that transpose and narrowed back. The
/// same buffers, bit for bit, as [`gather`] makes from the f32 rows the
/// lines were rounded from.
///
/// # Safety
/// The CPU has AVX-512F; `start` holds the lines of rows `head.start ..
/// head.start + head.t`, `3 · width / 32` = `steps` steps each; `head.d` is
/// a multiple of 32.
#[target_feature(enable = "avx512f")]
unsafe fn gather_lines(
    b: &mut Buffers,
    start: *const u8,
    steps: usize,
    width: usize,
    head: &Head,
    h: usize,
) {
    let Head {
        start: first,
        t,
        d,
        tq,
        tk,
        dp,
        dv,
        ..
    } = *head;
    debug_assert!(d.is_multiple_of(STEP) && dp == d && dv == d);
    // Token j's line `s` of part `part` (0 q, 1 k, 2 v) of head h.
    let line = |j: usize, part: usize, s: usize| {
        line_at(start, steps, first + j, (part * width + h * d) / STEP + s)
    };
    for (j, dst) in b.keys.get::<u16>(tk * dp).chunks_exact_mut(dp).enumerate() {
        if j + AHEAD < t {
            for part in 0..3 {
                for s in 0..d / STEP {
                    _mm_prefetch::<_MM_HINT_T0>(line(j + AHEAD, part, s).cast());
                }
            }
        }
        for (s, dst) in dst.chunks_exact_mut(STEP).enumerate() {
            let v = if j < t {
                // SAFETY: the line is inside the rows (our contract).
                unsafe { _mm512_loadu_si512(line(j, 1, s).cast()) }
            } else {
                _mm512_setzero_si512()
            };
            // SAFETY: `dst` is 32 u16.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) };
        }
    }
    let words = dp / 2 * TILE;
    let all_queries = b.queries.get::<u32>(tq / TILE * words);
    for (block, queries) in all_queries.chunks_exact_mut(words).enumerate() {
        let i0 = block * TILE;
        let real = TILE.min(t - i0);
        for (s, steps_words) in queries.chunks_exact_mut(TILE * TILE).enumerate() {
            let mut r = [_mm512_setzero_ps(); TILE];
            for (i, reg) in r.iter_mut().enumerate().take(real) {
                // SAFETY: query i0 + i's line s, inside the rows.
                *reg = unsafe { _mm512_loadu_ps(line(i0 + i, 0, s).cast()) };
            }
            transpose_16x16(&mut r);
            for (p, reg) in r.iter().enumerate() {
                // SAFETY: row p of 16 words inside this step's 256.
                unsafe { _mm512_storeu_ps(steps_words[p * TILE..].as_mut_ptr().cast(), *reg) };
            }
        }
    }
    let values_t = b.values_t.get::<u16>(dv * tk);
    for j0 in (0..tk).step_by(TILE) {
        for c0 in (0..dv).step_by(TILE) {
            let mut r = [_mm512_setzero_ps(); TILE];
            for (i, reg) in r.iter_mut().enumerate().take(t.saturating_sub(j0)) {
                // SAFETY: columns c0..c0 + 16 of token j0 + i's values: half
                // of its line c0 / 32, inside the rows.
                let half = unsafe {
                    let at = line(j0 + i, 2, c0 / STEP).cast::<u16>().add(c0 % STEP);
                    _mm256_loadu_si256(at.cast())
                };
                *reg = _mm512_castsi512_ps(_mm512_cvtepu16_epi32(half));
            }
            transpose_16x16(&mut r);
            for (c, reg) in r.iter().enumerate() {
                let narrow = _mm512_cvtepi32_epi16(_mm512_castps_si512(*reg));
                let dst = &mut values_t[(c0 + c) * tk + j0..][..TILE];
                // SAFETY: `dst` is 16 u16.
                unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), narrow) };
            }
        }
    }
}

/// `C_j = Σ_s A_{j,s} · B_s` over `steps` 32-deep steps, for `n` A tiles
/// sharing one B: A tile `j`, step `s` is 16 rows of 64 bytes at
/// `a + j · 16 · a_stride + 64 · s`, rows `a_stride` bytes apart; B step `s`
/// is 16 rows of 64 bytes at `b + 1024 · s`; C tile `j` is 16 rows of 16 f32
/// at `out + 1024 · j`. Both products have this shape: `Sᵀ` (A the key
/// blocks, B the query block) and `Cᵀ` (A the value-column blocks, B the
/// numerators).
struct Products {
    steps: usize,
    a: *const u8,
    a_stride: usize,
    b: *const u8,
    out: *mut u8,
}

impl Products {
    /// The products of A tiles `0..n`, four at a time, then one at a time.
    ///
    /// # Safety
    /// Tiles are configured on this thread; every A tile and B step named
    /// above for `j < n` and `s < steps` is readable, every C tile writable.
    unsafe fn run(&self, n: usize) {
        let mut j = 0;
        while j < n {
            // SAFETY: tiles j.. are among the n (our contract).
            unsafe {
                let a = self.a.add(j * TILE * self.a_stride);
                let out = self.out.add(j * 1024);
                if n - j >= 4 {
                    self.four(a, out);
                    j += 4;
                } else {
                    self.one(a, out);
                    j += 1;
                }
            }
        }
    }

    /// Four A tiles from `a`, C tiles from `out`.
    ///
    /// # Safety
    /// As [`Self::run`], for these four tiles.
    unsafe fn four(&self, a: *const u8, out: *mut u8) {
        let next = TILE * self.a_stride;
        // tmm0..3: C; tmm4: B; tmm5..7: A (tmm5 twice).
        // SAFETY: the caller's contract: every load and store stays inside
        // the tiles it names.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "test {steps}, {steps}",
                "jz 3f",
                "2:",
                "tileloadd tmm4, [{b} + {row}*1]",
                "tileloadd tmm5, [{a0} + {lda}*1]",
                "tdpbf16ps tmm0, tmm5, tmm4",
                "tileloadd tmm6, [{a1} + {lda}*1]",
                "tdpbf16ps tmm1, tmm6, tmm4",
                "tileloadd tmm7, [{a2} + {lda}*1]",
                "tdpbf16ps tmm2, tmm7, tmm4",
                "tileloadd tmm5, [{a3} + {lda}*1]",
                "tdpbf16ps tmm3, tmm5, tmm4",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {a2}, 64",
                "add {a3}, 64",
                "add {b}, 1024",
                "dec {steps}",
                "jnz 2b",
                "3:",
                "tilestored [{out} + {row}*1], tmm0",
                "tilestored [{out} + {row}*1 + 1024], tmm1",
                "tilestored [{out} + {row}*1 + 2048], tmm2",
                "tilestored [{out} + {row}*1 + 3072], tmm3",
                steps = inout(reg) self.steps => _,
                a0 = inout(reg) a => _,
                a1 = inout(reg) a.add(next) => _,
                a2 = inout(reg) a.add(2 * next) => _,
                a3 = inout(reg) a.add(3 * next) => _,
                lda = in(reg) self.a_stride,
                b = inout(reg) self.b => _,
                row = in(reg) 64usize,
                out = in(reg) out,
                options(nostack),
            )
        }
    }

    /// One A tile from `a`, its C tile at `out`.
    ///
    /// # Safety
    /// As [`Self::run`], for this tile.
    unsafe fn one(&self, a: *const u8, out: *mut u8) {
        // SAFETY: as in `four`.
        unsafe {
            asm!(
                "tilezero tmm0",
                "test {steps}, {steps}",
                "jz 3f",
                "2:",
                "tileloadd tmm4, [{b} + {row}*1]",
                "tileloadd tmm5, [{a} + {lda}*1]",
                "tdpbf16ps tmm0, tmm5, tmm4",
                "add {a}, 64",
                "add {b}, 1024",
                "dec {steps}",
                "jnz 2b",
                "3:",
                "tilestored [{out} + {row}*1], tmm0",
                steps = inout(reg) self.steps => _,
                a = inout(reg) a => _,
                lda = in(reg) self.a_stride,
                b = inout(reg) self.b => _,
                row = in(reg) 64usize,
                out = in(reg) out,
                options(nostack),
            )
        }
    }
}
