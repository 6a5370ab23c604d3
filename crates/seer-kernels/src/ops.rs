//! The non-matmul parts of a transformer block, on row-major f32 slices. Each is
//! split across rayon's threads and compiled for the CPU's vector width.

use rayon::prelude::*;

use crate::gemm::{gemm, Activation, Init, PackedWeights, Precision};
use crate::math;
use crate::SendPtr;

/// Below this many elements an op runs on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 14;

/// Applies `act` in place, as loops LLVM vectorises for the multiversioned
/// ops below (CPUs without AVX-512; those take [`crate::avx512::activate`]).
#[inline(always)]
fn activate_loops(x: &mut [f32], act: Activation) {
    match act {
        Activation::QuickGelu => x.iter_mut().for_each(|v| *v = math::quick_gelu(*v)),
        Activation::Gelu => x.iter_mut().for_each(|v| *v = math::gelu(*v)),
        Activation::GeluTanh => x.iter_mut().for_each(|v| *v = math::gelu_tanh(*v)),
    }
}

/// Applies `act` in place. AVX-512 CPUs take [`crate::avx512::activate`]
/// (a reciprocal and a Newton step for the division, within a few ulp of
/// the loops' values), others the loops.
pub fn apply_activation(x: &mut [f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detected() >= crate::Isa::Avx512 {
        // SAFETY: `x` is one row of `x.len()` floats, ours alone; the CPU has
        // AVX-512F (detected).
        return unsafe { crate::avx512::activate_rows(x.as_mut_ptr(), 0, 1, x.len(), act) };
    }
    apply_activation_loops(x, act)
}

multiversion! {
    fn apply_activation_loops(x: &mut [f32], act: Activation) {
        activate_loops(x, act)
    }
}

/// Applies `act` in place to `rows × cols` floats at `c` with row stride `ldc`
/// (a tile of a larger matrix, in one dispatch), as [`apply_activation`] does
/// to a row.
///
/// # Safety
/// For each `r < rows`, the `cols` floats at `c + r * ldc` must be valid for
/// reads and writes, and no one else may access them during the call.
pub(crate) unsafe fn apply_activation_strided(
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    act: Activation,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detected() >= crate::Isa::Avx512 {
        // SAFETY: the caller's contract is `activate_rows`'s; the CPU has
        // AVX-512F (detected).
        return unsafe { crate::avx512::activate_rows(c, ldc, rows, cols, act) };
    }
    // SAFETY: the caller's contract.
    unsafe { apply_activation_strided_loops(c, ldc, rows, cols, act) }
}

multiversion! {
    /// [`apply_activation_strided`] as loops.
    ///
    /// # Safety
    /// [`apply_activation_strided`]'s.
    unsafe fn apply_activation_strided_loops(c: *mut f32, ldc: usize, rows: usize, cols: usize, act: Activation) {
        for r in 0..rows {
            // SAFETY: row r < rows: `cols` valid floats that only we access (the
            // caller's contract); the slice ends with this iteration.
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), cols) };
            activate_loops(row, act);
        }
    }
}

multiversion! {
    fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        let (mean, inv) = mean_and_inv_std(x, eps);
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

/// A row's mean and `1 / sqrt(var + eps)` (biased variance), LayerNorm's
/// statistics, both sums in 16 lanes. Shared with the training backward pass,
/// which must normalise exactly as the forward did.
#[inline(always)]
pub(crate) fn mean_and_inv_std(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    (
        mean,
        1.0 / (lane_sum(x, |v| (v - mean) * (v - mean)) / n + eps).sqrt(),
    )
}

/// Sum with 16 independent lanes (vectorises, and is more accurate than a chain).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    lane_sum(x, |v| v)
}

/// `Σ f(v)` over `x` in 16 lanes, value `i` into lane `i % 16`, then the lanes
/// in order. Whole chunks first and the tail after: with `chunks(16)` the
/// inner loop's length varied, and LLVM kept the lanes in memory, a store and
/// a reload per 16 values (two fifths of LayerNorm's time, AMX Xeon).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        for (s, &v) in acc.iter_mut().zip(chunk) {
            *s += f(v);
        }
    }
    for (s, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *s += f(v);
    }
    acc.iter().sum()
}

/// The `cols × rows` transpose of the row-major `rows × cols` matrix `src`,
/// in 32×32 tiles so that reads and writes both stay within a few cache lines.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    assert_eq!(src.len(), rows * cols, "matrix is not {rows}×{cols}");
    let mut out = vec![0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    // Each task writes TILE whole rows of the output (TILE source columns).
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(t, block)| {
            let c0 = t * TILE;
            let width = block.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    let row = &src[r * cols + c0..r * cols + c0 + width];
                    for (c, &v) in row.iter().enumerate() {
                        block[c * rows + r] = v;
                    }
                }
            }
        });
    out
}

/// The sum of each column of the row-major `rows × cols` matrix `x` (a bias's
/// gradient), in f32 per task and f64 across tasks.
pub fn column_sums(x: &[f32], cols: usize) -> Vec<f32> {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "not a matrix of {cols} columns"
    );
    let rows_per_task = (PARALLEL_MIN_ELEMS / cols).max(1);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(rows_per_task * cols)
        .map(|chunk| {
            let mut acc = vec![0f32; cols];
            add_rows(chunk, &mut acc);
            acc
        })
        .collect();
    (0..cols)
        .map(|c| partials.iter().map(|p| p[c] as f64).sum::<f64>() as f32)
        .collect()
}

multiversion! {
    /// `acc += row` for each row of `x` (rows as long as `acc`).
    fn add_rows(x: &[f32], acc: &mut [f32]) {
        for row in x.chunks_exact(acc.len()) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}

/// LayerNorm over the last dimension (`c`) of `x`, biased variance, eps inside
/// the root, as `nn.LayerNorm`.
pub fn layer_norm(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    assert!(
        gamma.len() == c && beta.len() == c && x.len() == out.len() && x.len().is_multiple_of(c)
    );
    let rows_per_task = (PARALLEL_MIN_ELEMS / c).max(1);
    out.par_chunks_mut(rows_per_task * c)
        .zip(x.par_chunks(rows_per_task * c))
        .for_each(|(o, xi)| {
            for (orow, xrow) in o.chunks_exact_mut(c).zip(xi.chunks_exact(c)) {
                layer_norm_row(xrow, gamma, beta, eps, orow);
            }
        });
}

/// [`layer_norm`] of `x` (rows of `c`) rounded to bf16 as the input of a
/// product with `w` (`w.k == c`; [`crate::gemm_bf16_rows`]): the same values
/// `gemm` would round from [`layer_norm`]'s output, without that output
/// through memory. Where the CPU runs bf16 products on AMX and `w` is bf16,
/// else `None`.
pub fn layer_norm_to_bf16_rows(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    w: &crate::PackedWeights,
) -> Option<crate::Bf16Rows> {
    assert!(c > 0 && gamma.len() == c && beta.len() == c && w.k() == c);
    assert!(x.len().is_multiple_of(c));
    crate::Bf16Rows::from_fn(x.len() / c, w, |r, row| {
        layer_norm_row(&x[r * c..][..c], gamma, beta, eps, row)
    })
}

/// Layout of a fused attention input: sequences of possibly different lengths
/// stored back to back (row `start..start + len` each), so a batch of short
/// prompts needs no padding at all.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape<'a> {
    /// `(first row, tokens)` of each sequence.
    pub sequences: &'a [(usize, usize)],
    /// Model width (heads × head_dim).
    pub width: usize,
    pub heads: usize,
    /// Each token attends only to itself and earlier tokens (text towers).
    pub causal: bool,
    /// Per sequence, how many leading tokens are keys: the rest are padding
    /// that every query ignores (SigLIP's key-padding mask), though their own
    /// outputs are still computed. None: every token is a key.
    pub keys: Option<&'a [usize]>,
    /// SAM's decomposed relative positions, added to the scores before the
    /// softmax. None: no bias.
    pub rel_pos: Option<DecomposedRelPos<'a>>,
}

/// A bias over keys laid out on a `rows × cols` grid (every sequence is one
/// such grid, row-major): query `i` of sequence `s`, head `h`, adds
/// `term_h[ky] + term_w[kx]` to its score for key `(ky, kx)`, where
/// `term_h` is the `rows` values at `((s·heads + h)·t + i)·rows` of
/// `term_h` (likewise `term_w`, `cols` values). These are SAM's `rel_h` and
/// `rel_w` (`add_decomposed_rel_pos`): the full bias is never formed.
#[derive(Clone, Copy, Debug)]
pub struct DecomposedRelPos<'a> {
    pub term_h: &'a [f32],
    pub term_w: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

/// Multi-head self-attention core: `qkv` holds rows `[q | k | v]` of width `3c`
/// per token (q already multiplied by 1/√head_dim); writes `softmax(q·kᵀ)·v` per
/// head into `out` (rows of width `c`, heads side by side, ready for out_proj).
/// Tokens attend only within their own sequence.
pub fn attention(qkv: &[f32], shape: AttentionShape, out: &mut [f32]) {
    check_attention_shape(qkv.len(), &shape, out.len());
    let heads = shape.heads;
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..shape.sequences.len() * heads)
        .into_par_iter()
        .for_each(|task| {
            let _flush = crate::denormals::FlushDenormals::new();
            // SAFETY: `out` is rows × width floats, borrowed mutably for this
            // call, and every sequence ends by row `rows` (asserted above). Task
            // (sequence, head) writes only its head's d columns of its own rows;
            // sequences do not overlap, so no two tasks write the same float.
            unsafe { attention_head(qkv, &shape, task / heads, task % heads, out_ptr.get()) }
        });
}

/// [`attention`] for models run in bf16 or int8: on CPUs with AMX, q, k, v and the
/// softmax's numerators are rounded to bf16 and both products run on the
/// tiles (f32 sums, f32 softmax), as PyTorch's and OpenVINO's bf16 attention
/// round; elsewhere exactly [`attention`] (no faster bf16 path to take).
pub fn attention_bf16(qkv: &[f32], shape: AttentionShape, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detected() == crate::Isa::Amx {
        check_attention_shape(qkv.len(), &shape, out.len());
        // SAFETY: Isa::Amx is detected only where the tiles are available;
        // `out` is rows × width floats borrowed mutably, every sequence ends
        // by row `rows` and qkv holds rows × 3·width floats (checked).
        return unsafe {
            let out = crate::gemm::amx::attention::Context::F32(out.as_mut_ptr());
            let qkv = crate::gemm::amx::attention::Source::F32(qkv);
            crate::gemm::amx::attention::attention(qkv, shape, out)
        };
    }
    attention(qkv, shape, out)
}

/// Tokens from which [`attention_on_tiles`] takes the tiles: splitting q, k
/// and v costs in proportion to the tokens, the products gain with their
/// square. Batches of 8, width 768, against the FMA attention (AMX Xeon,
/// `attention_speed … tiles`, 2026-12-05): 50 tokens 0.9×, 77 1.0×, 128
/// 1.1×, 197 1.2×, 257 1.3×.
pub const TILE_ATTENTION_FROM: usize = 128;

/// [`attention`] for f32 models whose products run on the AMX tiles
/// ([`crate::PackedWeights::on_tiles`]): for sequences of at least
/// [`TILE_ATTENTION_FROM`] tokens both products on the tiles too, each value
/// as three bf16 parts and each product as six part products, as those
/// layers' products run, so the sums are about as close to the exact ones as
/// f32 FMA's (see the tests); else exactly [`attention`].
pub fn attention_on_tiles(qkv: &[f32], shape: AttentionShape, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detected() == crate::Isa::Amx
        && shape.sequences.iter().any(|s| s.1 >= TILE_ATTENTION_FROM)
    {
        check_attention_shape(qkv.len(), &shape, out.len());
        // SAFETY: Isa::Amx is detected only where the tiles are available;
        // `out` is rows × width floats borrowed mutably, every sequence ends
        // by row `rows` and qkv holds rows × 3·width floats (checked).
        return unsafe {
            crate::gemm::amx::attention::attention_split(qkv, shape, out.as_mut_ptr())
        };
    }
    attention(qkv, shape, out)
}

/// Whether the bf16 attention can write `shape`'s context over `rows` rows
/// straight into the tile lines of a product with `w`
/// ([`attention_bf16_to_rows`], [`attention_bf16_rows_to_rows`]): the CPU
/// runs bf16 products on AMX, `w` is bf16 of the model width as its depth,
/// each head is a whole number of 32-wide tile steps, and the sequences lie
/// back to back over all `rows` (every line gets written).
pub fn attention_lines_fit(shape: &AttentionShape, rows: usize, w: &crate::PackedWeights) -> bool {
    let AttentionShape { width, heads, .. } = *shape;
    let whole_steps =
        width > 0 && heads > 0 && width % heads == 0 && (width / heads).is_multiple_of(32);
    let mut next = 0;
    let tiled = shape.sequences.iter().all(|&(start, n)| {
        let follows = start == next;
        next += n;
        follows
    }) && next == rows;
    crate::Isa::detected() == crate::Isa::Amx
        && w.precision() == crate::Precision::Bf16
        && w.k() == width
        && whole_steps
        && tiled
}

/// [`attention_bf16`] rounded to bf16 as the input of the output projection
/// `w` ([`crate::gemm_bf16_rows`]): the same values that product would round
/// from [`attention_bf16`]'s f32 rows, written straight into the tiles'
/// lines. Where [`attention_lines_fit`], else `None`. For f32 q/k/v; the
/// transformer block has its q/k/v as lines already and takes
/// [`attention_bf16_rows_to_rows`].
pub fn attention_bf16_to_rows(
    qkv: &[f32],
    shape: AttentionShape,
    w: &crate::PackedWeights,
) -> Option<crate::Bf16Rows> {
    let rows = qkv.len() / (3 * shape.width).max(1);
    if !attention_lines_fit(&shape, rows, w) {
        return None;
    }
    check_attention_shape(qkv.len(), &shape, rows * shape.width);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: Isa::Amx is detected only where the tiles are available; the
    // shapes were checked, the sequences tile rows 0..rows, heads are whole
    // steps wide (attention_lines_fit).
    return Some(unsafe {
        let qkv = crate::gemm::amx::attention::Source::F32(qkv);
        crate::gemm::amx::attention::attention_to_rows(qkv, shape, rows)
    });
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("AMX is x86-64 only")
}

/// [`attention_bf16_to_rows`] from q/k/v rows that are tile lines already
/// (the q/k/v product's output, [`crate::gemm_bf16_rows_to_bf16_rows`],
/// `3 · width` wide): the same values, without the f32 q/k/v through memory.
/// Panics unless [`attention_lines_fit`] (for `qkv.rows()` rows).
pub fn attention_bf16_rows_to_rows(
    qkv: &crate::Bf16Rows,
    shape: AttentionShape,
    w: &crate::PackedWeights,
) -> crate::Bf16Rows {
    let rows = qkv.rows();
    assert!(
        attention_lines_fit(&shape, rows, w),
        "the attention cannot write tile lines here (see attention_lines_fit)"
    );
    assert_eq!(
        qkv.width(),
        3 * shape.width,
        "q/k/v rows are 3 · width wide"
    );
    check_attention_shape(3 * rows * shape.width, &shape, rows * shape.width);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in attention_bf16_to_rows; the lines hold `rows` rows of
    // 3 · width values, heads whole steps wide.
    return unsafe {
        let (start, steps) = qkv.lines();
        let qkv = crate::gemm::amx::attention::Source::Lines { start, steps };
        crate::gemm::amx::attention::attention_to_rows(qkv, shape, rows)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bf16 rows are only made on AMX CPUs")
}

/// The shapes [`attention`] relies on: an output of `out_len` values, whole
/// rows of `width`, `qkv` three times that, every sequence inside, one key
/// count per sequence, and relative-position terms covering every query of
/// whole-grid sequences.
fn check_attention_shape(qkv_len: usize, shape: &AttentionShape, out_len: usize) {
    let AttentionShape { width, heads, .. } = *shape;
    assert!(heads > 0 && width % heads == 0);
    assert!(out_len.is_multiple_of(width));
    let rows = out_len / width;
    assert_eq!(qkv_len, rows * 3 * width);
    assert!(shape.sequences.iter().all(|&(s, n)| s + n <= rows));
    assert!(shape.keys.is_none_or(|k| k.len() == shape.sequences.len()));
    if let Some(rel) = shape.rel_pos {
        // Each sequence is the whole grid, and the terms cover every query.
        let cells = rel.rows * rel.cols;
        assert!(shape.sequences.iter().all(|&(_, n)| n == cells));
        let queries = shape.sequences.len() * heads * cells;
        assert!(rel.term_h.len() == queries * rel.rows && rel.term_w.len() == queries * rel.cols);
    }
}

/// Queries per register tile, and the lane width the key and value axes are
/// padded to: a tile's accumulators (`QUERY_TILE` × 16 or × 32 floats) stay in
/// vector registers through the whole reduction.
const QUERY_TILE: usize = 8;
const LANES: usize = 16;
const VALUE_BLOCK: usize = 32;
/// Keys per pass of the context reduction: one block of values (`KEY_BLOCK` ×
/// `dv` floats, 16 KB at head width 64) is read by every 32-column pass from L1,
/// where whole-sequence passes read the values (0.9 MB at 3,601 tokens) from L3
/// once per pass.
const KEY_BLOCK: usize = 64;

/// One head `h` of sequence `seq`: gathers its queries, keys and values from
/// `qkv` and writes its `d` output columns of that sequence's rows.
///
/// # Safety
/// `out` points to a row-major buffer of `s.width`-wide rows covering every row
/// of `s.sequences[seq]`, valid for writes; no one else accesses head `h`'s
/// columns of those rows during the call.
unsafe fn attention_head(qkv: &[f32], s: &AttentionShape, seq: usize, h: usize, out: *mut f32) {
    let (start, t) = s.sequences[seq];
    let d = s.width / s.heads;
    // Padding lets every loop run whole register tiles.
    let head = Head {
        start,
        t,
        d,
        tq: t.next_multiple_of(QUERY_TILE),
        tk: t.next_multiple_of(LANES),
        dv: d.next_multiple_of(VALUE_BLOCK),
    };
    HEAD_BUFFERS.with_borrow_mut(|b| {
        gather(b, qkv, s.width, &head, h);
        // SAFETY: the caller's contract, passed on.
        unsafe { attend(b, s, &head, seq, h, out) };
    });
}

/// One head's rows and padded sizes: sequence rows `start..start + t`, head
/// width `d`; queries padded to `tq` rows, keys to `tk`, value columns to `dv`.
struct Head {
    start: usize,
    t: usize,
    d: usize,
    tq: usize,
    tk: usize,
    dv: usize,
}

multiversion! {
    /// Gathers head `h`'s queries (tq × d), keys packed in panels of 16 (key `j`'s
    /// value `x` at `(j / 16 · d + x) · 16 + j % 16`: each panel is d × 16,
    /// contiguous) and values (t × dv) from `qkv` into the buffers, zero padded.
    /// The buffers are reused per thread, so only the padding needs zeros, not
    /// whole buffers. Built per instruction set: the baseline's 16-byte copies
    /// made it a quarter of the attention at 50 tokens.
    ///
    /// Why panels: a score tile reads 16 keys' d values. Transposed as one d × tk
    /// matrix those are d rows 4·tk bytes apart (14 KB at 3,601 tokens): as many
    /// streams as the head is wide, more than the prefetchers follow, each line
    /// from L3. A panel is one 4 KB run.
    fn gather(b: &mut HeadBuffers, qkv: &[f32], width: usize, head: &Head, h: usize) {
        let Head {
            start,
            t,
            d,
            tq,
            tk,
            dv,
        } = *head;
        let row = 3 * width;
        let (queries, keys_p, values) = (&mut b.queries, &mut b.keys_p, &mut b.values);
        queries.resize(tq * d, 0.0);
        keys_p.resize(d * tk, 0.0);
        values.resize(t * dv, 0.0);
        b.probs.resize(QUERY_TILE * tk, 0.0);
        b.context.resize(QUERY_TILE * dv, 0.0);
        queries[t * d..].fill(0.0);
        for j in 0..t {
            if j + PREFETCH_TOKENS < t {
                let ahead = &qkv[(start + j + PREFETCH_TOKENS) * row..][..row];
                prefetch_head(ahead, width, h * d, d);
            }
            let token = &qkv[(start + j) * row..][..row];
            copy_short(&mut queries[j * d..(j + 1) * d], &token[h * d..][..d]);
            let panel = &mut keys_p[j / LANES * d * LANES..][..d * LANES];
            for (x, &kv) in token[width + h * d..][..d].iter().enumerate() {
                panel[x * LANES + j % LANES] = kv;
            }
            let value = &mut values[j * dv..(j + 1) * dv];
            copy_short(&mut value[..d], &token[2 * width + h * d..][..d]);
            value[d..].fill(0.0);
        }
        if t < tk {
            // The last panel's keys t..tk.
            let panel = &mut keys_p[t / LANES * d * LANES..][..d * LANES];
            for x in 0..d {
                panel[x * LANES + t % LANES..(x + 1) * LANES].fill(0.0);
            }
        }
    }
}

/// How many tokens ahead [`gather`] asks for a head's lines: its rows are
/// `12·width` bytes apart, past the hardware prefetchers' 4 KB pages, so
/// without asking each line came from L3 or memory at full latency.
const PREFETCH_TOKENS: usize = 4;

/// Asks for the cache lines of one token's q, k and v columns `at..at + d`
/// (`token` is its `3·width` row).
#[inline(always)]
pub(crate) fn prefetch_head(token: &[f32], width: usize, at: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    for part in 0..3 {
        let cols = &token[part * width + at..][..d];
        for x in (0..d).step_by(16) {
            // SAFETY: a prefetch has no effect on memory; the address is
            // inside `cols`.
            unsafe {
                std::arch::x86_64::_mm_prefetch(
                    cols[x..].as_ptr().cast::<i8>(),
                    std::arch::x86_64::_MM_HINT_T0,
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (token, width, at, d);
}

/// Per-thread buffers of [`attention_head`]: one head's gathered queries (tq ×
/// d), keys in panels (d × tk floats) and values (t × dv), and a query tile's
/// probabilities and context.
#[derive(Default)]
struct HeadBuffers {
    queries: Vec<f32>,
    keys_p: Vec<f32>,
    values: Vec<f32>,
    probs: Vec<f32>,
    context: Vec<f32>,
}

thread_local! {
    static HEAD_BUFFERS: std::cell::RefCell<HeadBuffers> = std::cell::RefCell::new(HeadBuffers::default());
}

/// `dst.copy_from_slice(src)` for a head's few dozen floats: 16 at a time in
/// registers, where `copy_from_slice` calls memmove (5% of an int8 ViT
/// forward, AMD Zen 4).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in (&mut d).zip(&mut s) {
        let (d, s): (&mut [f32; 16], &[f32; 16]) = (d.try_into().unwrap(), s.try_into().unwrap());
        *d = *s;
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

/// `dst = src · factor` for a head's few dozen floats (see [`copy_short`]).
#[inline(always)]
fn scale_short(dst: &mut [f32], src: &[f32], factor: f32) {
    assert_eq!(dst.len(), src.len());
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s * factor;
    }
}

/// The score, softmax and context passes of [`attention_head`] over the
/// buffers [`gather`] filled.
///
/// # Safety
/// [`attention_head`]'s contract.
unsafe fn attend(
    b: &mut HeadBuffers,
    s: &AttentionShape,
    head: &Head,
    seq: usize,
    h: usize,
    out: *mut f32,
) {
    let Head {
        start,
        t,
        d,
        tk,
        dv,
        ..
    } = *head;
    let HeadBuffers {
        queries,
        keys_p,
        values,
        probs,
        context,
    } = b;
    // Keys past `real_keys` are padding. At least one key stays visible, so a
    // fully masked row is not 0/0 (transformers' finite mask min does the same).
    let real_keys = s.keys.map_or(t, |k| k[seq].clamp(1, t));
    for i0 in (0..t).step_by(QUERY_TILE) {
        // Row r may see keys 0..visible(r); the tile's last real row sees the most.
        let visible = |r: usize| {
            if s.causal {
                (i0 + r + 1).min(real_keys)
            } else {
                real_keys
            }
        };
        let keys = visible(QUERY_TILE.min(t - i0) - 1);
        // Scores only for the panels some row of the tile sees (under a causal
        // mask the first tiles see a few keys): exp_prefix zeroes the rest.
        let q = &queries[i0 * d..(i0 + QUERY_TILE) * d];
        query_tile_scores(q, &keys_p[..keys.div_ceil(LANES) * d * LANES], tk, probs);
        if let Some(rel) = s.rel_pos {
            let first = (seq * s.heads + h) * t + i0;
            for r in 0..QUERY_TILE.min(t - i0) {
                let th = &rel.term_h[(first + r) * rel.rows..][..rel.rows];
                let tw = &rel.term_w[(first + r) * rel.cols..][..rel.cols];
                add_grid_bias(&mut probs[r * tk..r * tk + t], th, tw);
            }
        }
        // Unnormalised probabilities: each row's 1/sum scales its d context
        // values at the end instead of its t probabilities (one pass over the
        // scores fewer; 10% of OWLv2's image tower at 3,600 tokens was softmax).
        let mut norms = [0f32; QUERY_TILE];
        for (r, norm) in norms.iter_mut().enumerate() {
            exp_prefix(&mut probs[r * tk..(r + 1) * tk], visible(r), norm);
        }
        query_tile_context(probs, tk, &values[..keys * dv], dv, context);
        for (r, &norm) in norms.iter().enumerate().take(QUERY_TILE.min(t - i0)) {
            // SAFETY: row start + i0 + r < start + t, columns h·d..(h+1)·d of it:
            // inside `out` and ours alone (the caller's contract).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(out.add((start + i0 + r) * s.width + h * d), d)
            };
            scale_short(dst, &context[r * dv..r * dv + d], norm);
        }
    }
}

multiversion! {
    /// `probs[r][j] = q[r]·k[j]` for a tile of queries (rows of `q`, length d)
    /// against the keys of `keys_p` (d × 16 panels, see [`gather`]), `PANELS`
    /// panels at a time (the rest one at a time), `ROWS` queries at a time:
    /// `ROWS` × `PANELS` × 16 accumulators, 16 zmm at 8 rows and 2 panels, 8
    /// ymm at 4 rows and 1 (AVX2 spilled half of 8 rows' 16); `probs` rows are
    /// `tk` apart. Each query value is loaded once for the `PANELS` panels: a
    /// panel at a time, a multiply-add took a load of its own (8 broadcasts
    /// and a key load for 8 of them), more than the two load ports keep up
    /// with. Each score sums its products in the same order either way.
    fn query_tile_scores<const ROWS: usize, const PANELS: usize>(q: &[f32], keys_p: &[f32], tk: usize, probs: &mut [f32]) {
        let d = q.len() / QUERY_TILE;
        // The rows as slices of length d: fewer index checks than `q[r * d +
        // x]` (a third fewer instructions in this loop, AVX2). Rows as arrays
        // (`[[f32; 64]; 8]`) or one transposed tile let LLVM vectorise across
        // the 8 rows with gathers instead: 4× slower (AVX-512).
        let rows: [&[f32]; QUERY_TILE] = std::array::from_fn(|r| &q[r * d..][..d]);
        let panel = d * LANES;
        let mut blocks = keys_p.chunks_exact(PANELS * panel);
        let mut j0 = 0;
        for block in &mut blocks {
            panel_scores::<ROWS, PANELS>(&rows, block, j0, tk, probs);
            j0 += PANELS * LANES;
        }
        for single in blocks.remainder().chunks_exact(panel) {
            panel_scores::<ROWS, 1>(&rows, single, j0, tk, probs);
            j0 += LANES;
        }
    }
    wide[8, 2] narrow[4, 1] baseline[4, 1]
}

/// [`query_tile_scores`]' work on `PANELS` consecutive key panels (`block`,
/// keys `j0..`).
#[inline(always)]
fn panel_scores<const ROWS: usize, const PANELS: usize>(
    rows: &[&[f32]; QUERY_TILE],
    block: &[f32],
    j0: usize,
    tk: usize,
    probs: &mut [f32],
) {
    let d = rows[0].len();
    let panels: [&[f32]; PANELS] = std::array::from_fn(|p| &block[p * d * LANES..][..d * LANES]);
    for (group, rows) in rows.chunks_exact(ROWS).enumerate() {
        let mut acc = [[[0f32; LANES]; ROWS]; PANELS];
        for x in 0..d {
            let keys: [&[f32; LANES]; PANELS] =
                std::array::from_fn(|p| panels[p][x * LANES..][..LANES].try_into().unwrap());
            for (r, row) in rows.iter().enumerate() {
                let qv = row[x];
                for (acc, k) in acc.iter_mut().zip(&keys) {
                    for (a, &kv) in acc[r].iter_mut().zip(*k) {
                        *a = qv.mul_add(kv, *a);
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            for (r, lane) in acc.iter().enumerate() {
                probs[(group * ROWS + r) * tk + j0 + p * LANES..][..LANES].copy_from_slice(lane);
            }
        }
    }
}

multiversion! {
    /// `row[ky·cols + kx] += th[ky]`, then `+= tw[kx]` (the reference's order
    /// of additions), for a row of scores over a `th.len() × tw.len()` grid.
    fn add_grid_bias(row: &mut [f32], th: &[f32], tw: &[f32]) {
        for (cells, &bh) in row.chunks_exact_mut(tw.len()).zip(th) {
            for (v, &bw) in cells.iter_mut().zip(tw) {
                *v = *v + bh + bw;
            }
        }
    }
}

/// The softmax's numerators over `row[..visible]` in place, `exp(v − max)`,
/// with `norm` = 1 / their sum; zeroes the rest (masked keys). AVX-512 CPUs
/// take [`crate::avx512::exp_prefix`] (the same bits, without the loops'
/// stalls on the row's tail).
fn exp_prefix(row: &mut [f32], visible: usize, norm: &mut f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detected() >= crate::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F (detected).
        return unsafe { crate::avx512::exp_prefix(row, visible, norm) };
    }
    exp_prefix_loops(row, visible, norm)
}

multiversion! {
    /// [`exp_prefix`] as loops LLVM vectorises. One pass for the max, one for
    /// the exponentials and their sum (16 lanes, as [`sum`] adds).
    pub(crate) fn exp_prefix_loops(row: &mut [f32], visible: usize, norm: &mut f32) {
        let (seen, masked) = row.split_at_mut(visible);
        // The max in 16 lanes: `f32::max`'s NaN rule kept a single fold scalar,
        // one dependent compare per score (two thirds of this function's time at
        // 50 tokens). NaNs are skipped either way.
        let mut lanes = [f32::NEG_INFINITY; 16];
        let mut chunks = seen.chunks_exact(16);
        for chunk in &mut chunks {
            for (m, &v) in lanes.iter_mut().zip(chunk) {
                *m = if v > *m { v } else { *m };
            }
        }
        for (m, &v) in lanes.iter_mut().zip(chunks.remainder()) {
            *m = if v > *m { v } else { *m };
        }
        let max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        let mut acc = [0f32; 16];
        // Whole chunks, then the tail: see `lane_sum`.
        let mut chunks = seen.chunks_exact_mut(16);
        for chunk in &mut chunks {
            for (s, v) in acc.iter_mut().zip(chunk.iter_mut()) {
                *v = math::exp(*v - max);
                *s += *v;
            }
        }
        for (s, v) in acc.iter_mut().zip(chunks.into_remainder()) {
            *v = math::exp(*v - max);
            *s += *v;
        }
        *norm = 1.0 / acc.iter().sum::<f32>();
        masked.fill(0.0);
    }
}

multiversion! {
    /// `context[r] = Σ_j probs[r][j] · values[j]` for a tile of queries, in
    /// blocks of [`KEY_BLOCK`] keys, `COLS` value columns of `ROWS` queries at a
    /// time (`values` is keys × dv, dv a multiple of [`VALUE_BLOCK`]). The
    /// accumulators fill half the vector registers: 8 × 32 floats are 16 zmm,
    /// 4 × 16 are 8 ymm (AVX2 spilled 8 × 32's 32 ymm, a load and a store
    /// around most multiply-adds). Each column's sum runs over j in order,
    /// carried from block to block in `context`, so neither the blocks nor the
    /// tile shape change a bit.
    fn query_tile_context<const ROWS: usize, const COLS: usize>(probs: &[f32], tk: usize, values: &[f32], dv: usize, context: &mut [f32]) {
        let keys = values.len() / dv;
        // Rows cut to `keys`, so reading `row[j]` for j < keys unchecked below
        // is sound (LLVM kept a bounds check per row and key).
        let rows: [&[f32]; QUERY_TILE] = std::array::from_fn(|r| &probs[r * tk..][..keys]);
        context[..QUERY_TILE * dv].fill(0.0);
        for k0 in (0..keys).step_by(KEY_BLOCK) {
            let k1 = (k0 + KEY_BLOCK).min(keys);
            for c0 in (0..dv).step_by(COLS) {
                for (group, rows) in rows.chunks_exact(ROWS).enumerate() {
                    let r0 = group * ROWS;
                    let mut acc = [[0f32; COLS]; ROWS];
                    for (r, lane) in acc.iter_mut().enumerate() {
                        lane.copy_from_slice(&context[(r0 + r) * dv + c0..][..COLS]);
                    }
                    for j in k0..k1 {
                        let v: &[f32; COLS] = values[j * dv + c0..][..COLS].try_into().unwrap();
                        for (lane, row) in acc.iter_mut().zip(rows) {
                            // SAFETY: j < k1 <= keys, each row's length.
                            let p = unsafe { *row.get_unchecked(j) };
                            for (a, &vv) in lane.iter_mut().zip(v) {
                                *a = p.mul_add(vv, *a);
                            }
                        }
                    }
                    for (r, lane) in acc.iter().enumerate() {
                        context[(r0 + r) * dv + c0..][..COLS].copy_from_slice(lane);
                    }
                }
            }
        }
    }
    wide[8, 32] narrow[4, 16] baseline[4, 8]
}

/// One head's view of a decoding cache: key (value) `t` is
/// `keys[t * stride + offset..][..d]`, since the rows of a cache hold every
/// head side by side and a sequence's cache grows by a row per step (nothing
/// is gathered or transposed).
#[derive(Clone, Copy, Debug)]
pub struct CachedHead<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

multiversion! {
    /// One head of one query against cached keys and values (a decoding step):
    /// `out = softmax(scale · q·kᵀ) · v` over the first `visible` keys of
    /// `cache`, with `d = q.len()`. `scores` is scratch (one float per key),
    /// reused across calls.
    pub fn attend_cached(
        q: &[f32],
        cache: CachedHead,
        visible: usize,
        scale: f32,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let CachedHead { keys, values, stride, offset } = cache;
        let d = q.len();
        assert!(visible > 0 && out.len() == d && offset + d <= stride);
        // The last visible row is read only up to this head's end, so a cache
        // may be a slice of rows that ends right there (q/k/v rows, where the
        // values of the last token end a row before its next third).
        let needed = (visible - 1) * stride + offset + d;
        assert!(keys.len() >= needed && values.len() >= needed);
        // Plain loops, no closures: a closure is compiled without the
        // enclosing function's target features, and `mul_add` in it becomes a
        // libm call.
        scores.clear();
        scores.resize(visible, 0.0);
        let mut max = f32::NEG_INFINITY;
        for (t, s) in scores.iter_mut().enumerate() {
            *s = dot(q, &keys[t * stride + offset..][..d]) * scale;
            max = max.max(*s);
        }
        for v in scores.iter_mut() {
            *v = math::exp(*v - max);
        }
        let inv = 1.0 / sum(scores);
        out.fill(0.0);
        for (t, &p) in scores.iter().enumerate() {
            let p = p * inv;
            for (o, &x) in out.iter_mut().zip(&values[t * stride + offset..][..d]) {
                *o = p.mul_add(x, *o);
            }
        }
    }
}

/// Multi-head attention of every row of `q` over all rows of `k` and `v`,
/// heads side by side in rows of `width`: per head, `out = softmax(scale ·
/// q·kᵀ) · v`.
///
/// For cross-attention whose two sides differ in length by orders of
/// magnitude (SAM's decoder: a few prompt tokens against 4,096 image
/// positions, either way round). Gathering heads into padded tiles, as
/// [`attention`] does, or one dot product per (query, key, head) would cost
/// more than the arithmetic. With many queries and few keys, the keys become
/// a block-diagonal matrix (head `h`'s rows of it hold only head `h`'s
/// columns) and both products run on the packed matmul kernels: `heads` times
/// the arithmetic of the real products, which with a few dozen columns is
/// still small. With few queries, the queries become the block-diagonal
/// matrix instead and the keys the rows (one pass over them, not one per
/// (query, head)).
pub fn cross_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    width: usize,
    heads: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(heads > 0 && width.is_multiple_of(heads));
    assert!(q.len() == out.len() && q.len().is_multiple_of(width));
    assert!(k.len() == v.len() && k.len().is_multiple_of(width) && !k.is_empty());
    let (d, nq, nk) = (width / heads, q.len() / width, k.len() / width);
    if nq == 0 {
        return;
    }
    // `rows` (n × width) as a block-diagonal right matrix, width × (heads·n):
    // column h·n + j holds row j's head-h values (times `factor`) in rows
    // h·d.., zeros elsewhere.
    let block_diagonal = |rows: &[f32], n: usize, factor: f32| -> PackedWeights {
        let cols = heads * n;
        let mut m = vec![0f32; width * cols];
        for (j, row) in rows.chunks_exact(width).enumerate() {
            for h in 0..heads {
                for x in 0..d {
                    m[(h * d + x) * cols + h * n + j] = row[h * d + x] * factor;
                }
            }
        }
        PackedWeights::from_right_matrix(&m, width, cols, Precision::F32)
    };
    // Every row of `rows` against each head of each row of `other`: (n ×
    // heads·m) scores, column h·m + j for head h of `other`'s row j.
    let scores_against = |rows: &[f32], n: usize, other: &[f32], m: usize| -> Vec<f32> {
        let mut scores = vec![0f32; n * heads * m];
        gemm(
            rows,
            n,
            &block_diagonal(other, m, scale),
            &mut scores,
            Init::Bias,
            None,
        );
        scores
    };
    if nk <= nq {
        // Many queries, few keys: scores (nq × heads·nk), softmax per (row,
        // head) run of nk, then times the values' block-diagonal (heads·nk ×
        // width), which is the first one's transpose in shape.
        let cols = heads * nk;
        let mut scores = scores_against(q, nq, k, nk);
        scores
            .par_chunks_mut(cols * (PARALLEL_MIN_ELEMS / cols).max(1))
            .for_each(|rows| softmax_runs(rows, cols, nk));
        let mut values = vec![0f32; cols * width];
        for (j, row) in v.chunks_exact(width).enumerate() {
            for h in 0..heads {
                values[(h * nk + j) * width + h * d..][..d].copy_from_slice(&row[h * d..][..d]);
            }
        }
        let values = PackedWeights::from_right_matrix(&values, cols, width, Precision::F32);
        gemm(&scores, nq, &values, out, Init::Bias, None);
    } else {
        // Few queries, many keys: the keys are the matmul's rows, so the
        // scores come out transposed, keys × (heads·nq), with the queries'
        // block-diagonal as the right matrix. Softmax then runs down each
        // column, and each chunk of keys adds its weighted values into a
        // partial output (one (query, head) at a time, one key row at a time,
        // so every key's row is read once instead of once per (query, head)).
        let cols = heads * nq;
        let mut scores = scores_against(k, nk, q, nq);
        let max = scores
            .par_chunks(KEY_CHUNK * cols)
            .map(|chunk| {
                let mut m = vec![f32::NEG_INFINITY; cols];
                column_max(chunk, &mut m);
                m
            })
            .reduce(
                || vec![f32::NEG_INFINITY; cols],
                |a, b| a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect(),
            );
        // Fixed chunks summed in order: the result does not depend on the
        // thread count.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = scores
            .par_chunks_mut(KEY_CHUNK * cols)
            .zip(v.par_chunks(KEY_CHUNK * width))
            .map(|(chunk, values)| {
                let (mut sums, mut part) = (vec![0f32; cols], vec![0f32; nq * width]);
                exp_and_weigh(chunk, &max, values, width, d, nq, &mut sums, &mut part);
                (sums, part)
            })
            .collect();
        let mut sums = vec![0f32; cols];
        out.fill(0.0);
        for (s, part) in &partials {
            sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            out.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
        for (t, row) in out.chunks_exact_mut(width).enumerate() {
            for (h, head) in row.chunks_exact_mut(d).enumerate() {
                let inv = 1.0 / sums[h * nq + t];
                head.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }
}

multiversion! {
    /// Softmax over each run of `run` values of rows of `cols` (one run per
    /// head). Runs are short (SAM: 7 tokens), so the exponentials and the
    /// scaling go over whole rows, each value with its run's max and sum.
    fn softmax_runs(rows: &mut [f32], cols: usize, run: usize) {
        let mut per_value = vec![0f32; cols];
        for row in rows.chunks_exact_mut(cols) {
            for (r, m) in row.chunks_exact(run).zip(per_value.chunks_exact_mut(run)) {
                let max = r.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                m.fill(max);
            }
            for (v, &m) in row.iter_mut().zip(&per_value) {
                *v = math::exp(*v - m);
            }
            for (r, m) in row.chunks_exact(run).zip(per_value.chunks_exact_mut(run)) {
                let inv = 1.0 / sum(r);
                m.fill(inv);
            }
            for (v, &m) in row.iter_mut().zip(&per_value) {
                *v *= m;
            }
        }
    }
}

/// Keys per chunk of [`cross_attention`]'s column reductions.
const KEY_CHUNK: usize = 256;

multiversion! {
    /// `max[c] = max(max[c], rows[·][c])` over rows of `max.len()` scores.
    fn column_max(rows: &[f32], max: &mut [f32]) {
        for row in rows.chunks_exact(max.len()) {
            for (m, &x) in max.iter_mut().zip(row) {
                *m = m.max(x);
            }
        }
    }
}

multiversion! {
    /// For rows of transposed scores (one key each; column `h·nq + t` is
    /// query `t`, head `h`): `p = exp(score − max)` in place, `sums += p`, and
    /// `out[t][h·d..] += p · values[key][h·d..]`.
    #[allow(clippy::too_many_arguments)]
    fn exp_and_weigh(
        scores: &mut [f32],
        max: &[f32],
        values: &[f32],
        width: usize,
        d: usize,
        nq: usize,
        sums: &mut [f32],
        out: &mut [f32],
    ) {
        let cols = max.len();
        for (row, v) in scores.chunks_exact_mut(cols).zip(values.chunks_exact(width)) {
            for ((s, &m), sum) in row.iter_mut().zip(max).zip(sums.iter_mut()) {
                *s = math::exp(*s - m);
                *sum += *s;
            }
            for (c, &p) in row.iter().enumerate() {
                let (h, t) = (c / nq, c % nq);
                let o = &mut out[t * width + h * d..][..d];
                for (o, &x) in o.iter_mut().zip(&v[h * d..][..d]) {
                    *o = p.mul_add(x, *o);
                }
            }
        }
    }
}

/// Dot product with 16 independent lanes (vectorises; the same order of
/// operations on every CPU).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    // Whole chunks, then the tail: see `lane_sum`.
    let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
    for (ca, cb) in (&mut ca).zip(&mut cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            *s = x.mul_add(y, *s);
        }
    }
    for ((s, &x), &y) in acc.iter_mut().zip(ca.remainder()).zip(cb.remainder()) {
        *s = x.mul_add(y, *s);
    }
    acc.iter().sum()
}

multiversion! {
    fn swiglu_rows(x12: &[f32], hidden: usize, out: &mut [f32]) {
        for (row, o) in x12.chunks_exact(2 * hidden).zip(out.chunks_exact_mut(hidden)) {
            let (gate, up) = row.split_at(hidden);
            for ((o, &g), &u) in o.iter_mut().zip(gate).zip(up) {
                *o = math::silu(g) * u;
            }
        }
    }
}

/// SwiGLU's gating: each row of `x12` holds `[gate | up]` (`2 * hidden` values,
/// one matmul's output) and becomes `silu(gate) ⊙ up` (`hidden` values) in `out`.
pub fn swiglu(x12: &[f32], hidden: usize, out: &mut [f32]) {
    assert!(
        hidden > 0 && x12.len().is_multiple_of(2 * hidden) && out.len() == x12.len() / 2,
        "swiglu: {} inputs and {} outputs do not hold rows of 2 x {hidden} and {hidden}",
        x12.len(),
        out.len()
    );
    // Rows in chunks big enough to amortise the task, as the other ops.
    let rows = (PARALLEL_MIN_ELEMS / (2 * hidden)).max(1);
    x12.par_chunks(rows * 2 * hidden)
        .zip(out.par_chunks_mut(rows * hidden))
        .for_each(|(x, o)| swiglu_rows(x, hidden, o));
}
