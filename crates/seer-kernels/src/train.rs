//! Kernels that training needs beside the matmul: multi-head self-attention
//! forward and backward straight from the fused q/k/v rows, quick-GELU,
//! LayerNorm's backward, AdamW's update, and the linear layer's weight
//! gradient (a product over rows).
//! Row-major f32 slices, split across rayon's threads per sequence (or block
//! of rows) and compiled for the CPU's vector width.
//!
//! The attention probabilities are not stored between the passes: backward
//! recomputes them (flash attention's trade), which for CLIP's short sequences
//! costs less than writing and reading them.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::alloc::{filled_parallel, filled_parallel_uninit};
use crate::math;

/// The layout of a batch of q/k/v rows: `tokens` rows per sequence of
/// `3·width` values (q, k, v side by side), each `heads` heads wide.
#[derive(Clone, Copy, Debug)]
pub struct SelfAttention {
    pub tokens: usize,
    pub width: usize,
    pub heads: usize,
    /// Token i attends to tokens 0..=i only.
    pub causal: bool,
}

impl SelfAttention {
    /// The rows of `qkv`; panics unless it is whole sequences of this shape.
    fn rows(&self, qkv: &[f32]) -> usize {
        assert!(
            self.heads > 0 && self.width > 0 && self.width.is_multiple_of(self.heads),
            "width {} is not {} heads",
            self.width,
            self.heads
        );
        let row = 3 * self.width;
        assert!(self.tokens > 0 && qkv.len().is_multiple_of(self.tokens * row));
        qkv.len() / row
    }
}

/// The context (rows, width): each head's softmax(q kᵀ/√d) v, heads side by
/// side, one sequence per task (its rows arrive zeroed; each head adds into
/// its columns).
pub fn self_attention(qkv: &[f32], shape: SelfAttention) -> Vec<f32> {
    let rows = shape.rows(qkv);
    let (t, c) = (shape.tokens, shape.width);
    filled_parallel(rows * c, t * c, |offset, ctx| {
        let seq = &qkv[offset * 3..][..t * 3 * c];
        let mut scratch = vec![0f32; scratch_len(t, c / shape.heads)];
        for h in 0..shape.heads {
            attend_head(seq, h, t, c, shape.heads, shape.causal, &mut scratch, ctx);
        }
    })
}

/// The gradient with respect to `qkv` (rows, 3·width), given the context's
/// gradient `dctx` (rows, width), one sequence per task.
pub fn self_attention_backward(qkv: &[f32], dctx: &[f32], shape: SelfAttention) -> Vec<f32> {
    let rows = shape.rows(qkv);
    let (t, c) = (shape.tokens, shape.width);
    assert_eq!(dctx.len(), rows * c, "gradient rows differ from q/k/v rows");
    // Each sequence's gradient arrives zeroed; its heads add into it.
    filled_parallel(rows * 3 * c, t * 3 * c, |offset, dseq| {
        let seq = &qkv[offset..][..t * 3 * c];
        let dout = &dctx[offset / 3..][..t * c];
        let (mut scratch, mut ds) = (
            vec![0f32; scratch_len(t, c / shape.heads)],
            vec![0f32; t * t],
        );
        for h in 0..shape.heads {
            attend_head_backward(
                seq,
                dout,
                h,
                t,
                c,
                shape.heads,
                shape.causal,
                &mut scratch,
                &mut ds,
                dseq,
            );
        }
    })
}

/// One AdamW step's constants (PyTorch's single-tensor `torch.optim.AdamW`).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// `1 - lr·weight_decay`, or 1 for parameters without decay.
    pub decay: f32,
    /// `1 - β1`: the first moment's `lerp` weight.
    pub lerp_weight: f32,
    pub beta2: f32,
    /// `1 - β2`.
    pub sq_weight: f32,
    /// `sqrt(1 - β2^step)`.
    pub bias_correction2_sqrt: f32,
    pub eps: f32,
    /// `lr / (1 - β1^step)`.
    pub step_size: f32,
}

/// Updates the weights `w` and their moments for the gradient `g`, element by
/// element (so chunks run in parallel with the same results), compiled for the
/// CPU's vector width: at the baseline target its square roots and divisions
/// ran four lanes at a time.
pub fn adamw_step(
    step: AdamWStep,
    w: &mut [f32],
    g: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
) {
    assert!(
        g.len() == w.len() && exp_avg.len() == w.len() && exp_avg_sq.len() == w.len(),
        "AdamW: {} weights, {} gradients, {} and {} moments",
        w.len(),
        g.len(),
        exp_avg.len(),
        exp_avg_sq.len()
    );
    const CHUNK: usize = 1 << 15;
    w.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(exp_avg.par_chunks_mut(CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(CHUNK))
        .for_each(|(((w, g), exp_avg), exp_avg_sq)| adamw_chunk(step, w, g, exp_avg, exp_avg_sq));
}

multiversion! {
    fn adamw_chunk(step: AdamWStep, w: &mut [f32], g: &[f32], exp_avg: &mut [f32], exp_avg_sq: &mut [f32]) {
        let AdamWStep { decay, lerp_weight, beta2, sq_weight, bias_correction2_sqrt: bc2, eps, step_size } = step;
        for (((w, &g), ea), eas) in w.iter_mut().zip(g).zip(exp_avg).zip(exp_avg_sq) {
            *w *= decay;
            // torch.lerp with weight < 0.5: start + weight * (end - start)
            *ea += lerp_weight * (g - *ea);
            *eas = *eas * beta2 + sq_weight * g * g;
            let denom = eas.sqrt() / bc2 + eps;
            *w += -step_size * *ea / denom;
        }
    }
}

/// Elementwise kernels' chunk: enough work to pay for a task.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// `x·σ(1.702x)` (OpenAI CLIP's quick-GELU) into a new vector, written once
/// (the training op had copied `x` and then applied the activation in place).
pub fn quick_gelu(x: &[f32]) -> Vec<f32> {
    // SAFETY: the chunk kernel writes every value of its chunk.
    unsafe {
        filled_parallel_uninit(x.len(), ELEMENTWISE_CHUNK, |offset, y| {
            quick_gelu_chunk(&x[offset..offset + y.len()], y)
        })
    }
}

multiversion! {
    /// Writes every `y[i]` (as long as `x`).
    fn quick_gelu_chunk(x: &[f32], y: &mut [MaybeUninit<f32>]) {
        assert_eq!(x.len(), y.len());
        for (y, &v) in y.iter_mut().zip(x) {
            y.write(math::quick_gelu(v));
        }
    }
}

/// `dx = g·(s + 1.702·x·s·(1 - s))` with `s = σ(1.702x)`, the gradient of
/// `x·σ(1.702x)`.
pub fn quick_gelu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    assert_eq!(
        x.len(),
        g.len(),
        "quick-GELU backward: inputs and gradients differ in length"
    );
    // SAFETY: the chunk kernel writes every value of its chunk.
    unsafe {
        filled_parallel_uninit(x.len(), ELEMENTWISE_CHUNK, |offset, dx| {
            let end = offset + dx.len();
            quick_gelu_backward_chunk(&x[offset..end], &g[offset..end], dx)
        })
    }
}

multiversion! {
    /// Writes every `dx[i]` (`x`, `g` and `dx` equally long).
    fn quick_gelu_backward_chunk(x: &[f32], g: &[f32], dx: &mut [MaybeUninit<f32>]) {
        assert!(x.len() == dx.len() && g.len() == dx.len());
        for ((d, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
            let s = 1.0 / (1.0 + math::exp(-1.702 * v));
            d.write(gv * (s + 1.702 * v * s * (1.0 - s)));
        }
    }
}

/// Rows per LayerNorm-backward task; also the grouping of the parameter
/// gradients' partial sums, so those do not depend on the thread count.
const LAYER_NORM_ROWS_PER_TASK: usize = 16;

/// LayerNorm's backward pass over rows of `width = gamma.len()`: for
/// `y = x̂·γ + β` with `x̂ = (x - μ)/σ` (biased variance, `eps` inside the root)
/// and the output gradient `g`, `dx = (ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) / σ` with
/// `ĝ = g·γ`; `dγ = Σ g·x̂` and `dβ = Σ g` over the rows. Returns `dx`'s rows,
/// then `dγ`, then `dβ` (`width` values each): the layout of the training op's
/// output.
///
/// Written as plain loops, the row sums ran as a scalar chain: 3.7% of a
/// training step's samples, five times the forward pass (Intel AMX VM).
pub fn layer_norm_backward(x: &[f32], g: &[f32], gamma: &[f32], eps: f32) -> Vec<f32> {
    let width = gamma.len();
    assert!(
        width > 0 && x.len().is_multiple_of(width) && g.len() == x.len(),
        "LayerNorm backward: {} inputs, {} gradients for rows of {width}",
        x.len(),
        g.len(),
    );
    let mut out = Vec::with_capacity(x.len() + 2 * width);
    let chunk = LAYER_NORM_ROWS_PER_TASK * width;
    let partials: Vec<Vec<f32>> = out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(i, dx)| {
            let rows = i * chunk..i * chunk + dx.len();
            let mut acc = vec![0f32; 2 * width];
            layer_norm_backward_rows(&x[rows.clone()], &g[rows], gamma, eps, dx, &mut acc);
            acc
        })
        .collect();
    // SAFETY: the capacity holds x.len() + 2·width values, and the row kernel
    // wrote every one of the first x.len() (each chunk's whole rows).
    unsafe { out.set_len(x.len()) };
    // In f64 and in row order: thousands of rows' partial sums.
    out.extend((0..2 * width).map(|j| partials.iter().map(|a| a[j] as f64).sum::<f64>() as f32));
    out
}

multiversion! {
    /// [`layer_norm_backward`] over whole rows, writing every `dx` value and
    /// adding `dγ` and `dβ` into `acc`. Row sums go 16 lanes at a time, so
    /// that they vectorise.
    fn layer_norm_backward_rows(x: &[f32], g: &[f32], gamma: &[f32], eps: f32, dx: &mut [MaybeUninit<f32>], acc: &mut [f32]) {
        let width = gamma.len();
        assert!(x.len() == dx.len() && g.len() == dx.len() && dx.len().is_multiple_of(width));
        let n = width as f32;
        let (dgamma, dbeta) = acc.split_at_mut(width);
        for ((dx, x), g) in dx.chunks_exact_mut(width).zip(x.chunks_exact(width)).zip(g.chunks_exact(width)) {
            let (mu, inv) = crate::ops::mean_and_inv_std(x, eps);
            // Σ ĝ and Σ ĝ·x̂ in lanes; dγ and dβ per column.
            let (mut g_lanes, mut gy_lanes) = ([0f32; LANES], [0f32; LANES]);
            for ((((x, g), gamma), dgamma), dbeta) in x
                .chunks(LANES)
                .zip(g.chunks(LANES))
                .zip(gamma.chunks(LANES))
                .zip(dgamma.chunks_mut(LANES))
                .zip(dbeta.chunks_mut(LANES))
            {
                let lanes = g_lanes.iter_mut().zip(gy_lanes.iter_mut());
                let params = dgamma.iter_mut().zip(dbeta.iter_mut());
                for ((((gl, gyl), (dgamma, dbeta)), &x), (&g, &gamma)) in lanes.zip(params).zip(x).zip(g.iter().zip(gamma)) {
                    let y = (x - mu) * inv;
                    let g_hat = g * gamma;
                    *gl += g_hat;
                    *gyl += g_hat * y;
                    *dgamma += g * y;
                    *dbeta += g;
                }
            }
            let g_mean = g_lanes.iter().sum::<f32>() / n;
            let gy_mean = gy_lanes.iter().sum::<f32>() / n;
            for (((dx, &x), &g), &gamma) in dx.iter_mut().zip(x).zip(g).zip(gamma) {
                dx.write((g * gamma - g_mean - (x - mu) * inv * gy_mean) * inv);
            }
        }
    }
}

/// `out += Σ_n weight(n) · src[n·stride + offset..][..out.len()]` over the
/// rows `rows`: a weighted sum of rows (the probabilities times the values, a
/// gradient's sums), 16 features at a time in registers, two rows a step in
/// independent sums, added into `out` once. One multiply-add of a row into
/// `out` at a time had stored `out` and loaded it back for the next row, a
/// chain through memory as long as the sequence.
#[inline(always)]
fn add_weighted_rows(
    out: &mut [f32],
    rows: std::ops::Range<usize>,
    weight: impl Fn(usize) -> f32,
    src: &[f32],
    stride: usize,
    offset: usize,
) {
    let d = out.len();
    let lanes = |n: usize, f: usize| -> &[f32; LANES] {
        src[n * stride + offset + f..]
            .first_chunk::<LANES>()
            .expect("a row holds its features")
    };
    let mut f = 0;
    while f + LANES <= d {
        let (mut even, mut odd) = ([0f32; LANES], [0f32; LANES]);
        let mut n = rows.start;
        while n + 1 < rows.end {
            let (w0, w1) = (weight(n), weight(n + 1));
            let (r0, r1) = (lanes(n, f), lanes(n + 1, f));
            for l in 0..LANES {
                even[l] += w0 * r0[l];
                odd[l] += w1 * r1[l];
            }
            n += 2;
        }
        if n < rows.end {
            let (w, r) = (weight(n), lanes(n, f));
            for l in 0..LANES {
                even[l] += w * r[l];
            }
        }
        for (l, o) in out[f..f + LANES].iter_mut().enumerate() {
            *o += even[l] + odd[l];
        }
        f += LANES;
    }
    if f < d {
        // The last features of a head width that is no multiple of 16.
        let mut sums = [0f32; LANES];
        for n in rows {
            let (w, r) = (weight(n), &src[n * stride + offset + f..][..d - f]);
            for (s, &v) in sums.iter_mut().zip(r) {
                *s += w * v;
            }
        }
        for (o, s) in out[f..].iter_mut().zip(sums) {
            *o += s;
        }
    }
}

/// Keys are handled 16 at a time, in one vector register.
const LANES: usize = 16;

/// Columns `offset..offset + d` of the `t` rows of `seq` (row stride `row`),
/// transposed into `out` (`d` rows of stride `t` rounded up to [`LANES`], zero
/// padded): a head's keys or values with one row per feature, so that the
/// products with every key at once are multiply-adds on registers instead of
/// `t` dot products each ending in a horizontal sum.
#[inline(always)]
fn head_columns(seq: &[f32], row: usize, offset: usize, d: usize, t: usize, out: &mut [f32]) {
    let stride = t.next_multiple_of(LANES);
    // Only the padding keys need zeros; the rest is overwritten below.
    for feature in out[..d * stride].chunks_exact_mut(stride) {
        feature[t..].fill(0.0);
    }
    for j in 0..t {
        for (dd, &v) in seq[j * row + offset..j * row + offset + d]
            .iter()
            .enumerate()
        {
            out[dd * stride + j] = v;
        }
    }
}

/// `out[j] = scale · Σ_f x[f] · cols[f][j]` for `j < out.len()`, with `cols`
/// as [`head_columns`] lays them out; each group of 16 sums stays in a register.
#[inline(always)]
fn row_times_columns(x: &[f32], cols: &[f32], t: usize, scale: f32, out: &mut [f32]) {
    let stride = t.next_multiple_of(LANES);
    for (group, o) in out.chunks_mut(LANES).enumerate() {
        let j0 = group * LANES;
        let mut acc = [0f32; LANES];
        for (f, &xv) in x.iter().enumerate() {
            let col = &cols[f * stride + j0..f * stride + j0 + LANES];
            for (a, &c) in acc.iter_mut().zip(col) {
                *a += xv * c;
            }
        }
        for (o, &a) in o.iter_mut().zip(&acc) {
            *o = a * scale;
        }
    }
}

/// Head `h`'s probabilities of one sequence (`t × t`, row i valid up to its
/// keys). `seq`: `t` rows of `3c`; `kt`: scratch for the transposed keys.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn probabilities(
    seq: &[f32],
    h: usize,
    t: usize,
    c: usize,
    heads: usize,
    causal: bool,
    kt: &mut [f32],
    p: &mut [f32],
) {
    let (row, d) = (3 * c, c / heads);
    let (qo, ko) = (h * d, c + h * d);
    let scale = 1.0 / (d as f32).sqrt();
    head_columns(seq, row, ko, d, t, kt);
    for i in 0..t {
        let q = &seq[i * row + qo..i * row + qo + d];
        let keys = if causal { i + 1 } else { t };
        let pi = &mut p[i * t..i * t + keys];
        row_times_columns(q, kt, t, scale, pi);
        let max = pi.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for s in pi.iter_mut() {
            *s = math::exp(*s - max);
        }
        let inv = 1.0 / pi.iter().sum::<f32>();
        for s in pi.iter_mut() {
            *s *= inv;
        }
    }
}

/// Scratch floats per head: the probabilities and one transposed operand.
fn scratch_len(t: usize, d: usize) -> usize {
    t * t + d * t.next_multiple_of(LANES)
}

multiversion! {
    /// One head of one sequence forward, added into its `d` columns of `ctx`
    /// (`t` rows of `c`, which arrive zeroed).
    #[allow(clippy::too_many_arguments)]
    fn attend_head(seq: &[f32], h: usize, t: usize, c: usize, heads: usize, causal: bool, scratch: &mut [f32], ctx: &mut [f32]) {
        let (p, kt) = scratch.split_at_mut(t * t);
        probabilities(seq, h, t, c, heads, causal, kt, p);
        let (row, d) = (3 * c, c / heads);
        let vo = 2 * c + h * d;
        for i in 0..t {
            let keys = if causal { i + 1 } else { t };
            let out = &mut ctx[i * c + h * d..i * c + h * d + d];
            add_weighted_rows(out, 0..keys, |j| p[i * t + j], seq, row, vo);
        }
    }
}

multiversion! {
    /// One head of one sequence backward, added into `dseq` (`t` rows of `3c`):
    /// with `dP_ij = dout_i·v_j` and `dS = P ⊙ (dP - Σ_j P_ij dP_ij)`,
    /// `dq_i += dS_ij k_j / √d`, `dk_j += dS_ij q_i / √d` and `dv_j += P_ij dout_i`.
    /// `ds`: `t × t` scratch for dS, whose rows and columns are all needed
    /// before the sums over them.
    #[allow(clippy::too_many_arguments)]
    fn attend_head_backward(seq: &[f32], dout: &[f32], h: usize, t: usize, c: usize, heads: usize, causal: bool, scratch: &mut [f32], ds: &mut [f32], dseq: &mut [f32]) {
        let (p, kvt) = scratch.split_at_mut(t * t);
        probabilities(seq, h, t, c, heads, causal, kvt, p);
        let (row, d) = (3 * c, c / heads);
        let (qo, ko, vo) = (h * d, c + h * d, 2 * c + h * d);
        let vt = kvt;
        head_columns(seq, row, vo, d, t, vt);
        let scale = 1.0 / (d as f32).sqrt();
        let keys = |i: usize| if causal { i + 1 } else { t };
        for i in 0..t {
            let do_i = &dout[i * c + h * d..i * c + h * d + d];
            let p_i = &p[i * t..i * t + keys(i)];
            let ds = &mut ds[i * t..i * t + keys(i)];
            row_times_columns(do_i, vt, t, 1.0, ds);
            let weighted: f32 = ds.iter().zip(p_i).map(|(&s, &pj)| s * pj).sum();
            for (s, &pj) in ds.iter_mut().zip(p_i) {
                *s = pj * (*s - weighted) * scale;
            }
        }
        // Each gradient row summed in registers and added once: dq_i over
        // row i of dS, dk_j and dv_j over column j of dS and of P (the
        // queries that see key j).
        for i in 0..t {
            let dq = &mut dseq[i * row + qo..i * row + qo + d];
            add_weighted_rows(dq, 0..keys(i), |j| ds[i * t + j], seq, row, ko);
        }
        for j in 0..t {
            let seen_by = if causal { j..t } else { 0..t };
            let dk = &mut dseq[j * row + ko..j * row + ko + d];
            add_weighted_rows(dk, seen_by.clone(), |i| ds[i * t + j], seq, row, qo);
            let dv = &mut dseq[j * row + vo..j * row + vo + d];
            add_weighted_rows(dv, seen_by, |i| p[i * t + j], dout, c, h * d);
        }
    }
}

/// `out` (n × k) = aᵀ·b for row-major `a` (rows × n) and `b` (rows × k): a
/// linear layer's weight gradient dyᵀ·x, summed over its rows (thousands of
/// tokens, the product's depth), on the matmul's micro-kernels (see
/// `gemm::transposed`).
///
/// Through the packed matmul (transpose one side, pack the other into panels,
/// pack A again per block: three passes over memory-sized operands) this
/// product ran at about half the forward product's rate.
/// Each output element sums its rows in order, so the result does not depend
/// on the thread count.
pub fn weight_gradient(a: &[f32], n: usize, b: &[f32], k: usize, rows: usize, out: &mut [f32]) {
    // (`transposed_product` checks the lengths.)
    let isa = crate::Isa::detected();
    if k > n {
        // Tasks split the output's rows and each copies all of `b`: the
        // narrower operand goes there, and the result is transposed back.
        let mut t = vec![0f32; k * n];
        crate::gemm::transposed_product(isa, b, k, a, n, rows, &mut t);
        out.copy_from_slice(&crate::ops::transpose(&t, k, n));
    } else {
        crate::gemm::transposed_product(isa, a, n, b, k, rows, out);
    }
}
