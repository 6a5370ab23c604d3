// Included by tests/ops*.rs, each of which first sets `CEILING` (the kernels'
// instruction-set cap for that test binary): LayerNorm, attention and
// activations against direct f64 formulas. The attention kernels' register
// tiles differ per instruction set, so each set is checked.

use crate::common::{softmax, values};
use seer_kernels::ops::{
    apply_activation, attention, attention_bf16, attention_on_tiles, column_sums, cross_attention,
    layer_norm, swiglu, transpose, AttentionShape, TILE_ATTENTION_FROM,
};
use seer_kernels::Activation;

#[test]
fn layer_norm_matches_the_formula() {
    crate::common::cap(CEILING);
    let (rows, c) = (37, 200);
    let x: Vec<f32> = values(rows * c, 1).iter().map(|v| v * 3.0 + 0.5).collect();
    let (g, b) = (values(c, 2), values(c, 3));
    let mut out = vec![0f32; rows * c];
    layer_norm(&x, c, &g, &b, 1e-5, &mut out);
    for r in 0..rows {
        let row = &x[r * c..(r + 1) * c];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        for j in 0..c {
            let want = (row[j] as f64 - mean) / (var + 1e-5).sqrt() * g[j] as f64 + b[j] as f64;
            assert!((out[r * c + j] as f64 - want).abs() < 1e-5);
        }
    }
}

/// softmax(q·kᵀ + bias)·v per head and sequence, straight from the
/// definition; `bias(sequence, head, query, key)`. With `bf16`, as
/// `attention_bf16` rounds: q, k and v rounded to bf16, and each numerator
/// `exp(s − max)` rounded before it weighs the values (the sum of the
/// unrounded ones dividing).
#[allow(clippy::too_many_arguments)]
fn definition(
    qkv: &[f32],
    seqs: &[(usize, usize)],
    c: usize,
    heads: usize,
    causal: bool,
    keys: Option<&[usize]>,
    bf16: bool,
    bias: &dyn Fn(usize, usize, usize, usize) -> f64,
) -> Vec<f64> {
    use seer_kernels::gemm::{bf16_to_f32, f32_to_bf16};
    let round = |x: f64| {
        if bf16 {
            bf16_to_f32(f32_to_bf16(x as f32)) as f64
        } else {
            x
        }
    };
    let d = c / heads;
    let rows = qkv.len() / (3 * c);
    let mut out = vec![0f64; rows * c];
    let at = |r: usize, part: usize, h: usize, x: usize| {
        round(qkv[r * 3 * c + part * c + h * d + x] as f64)
    };
    for (n, &(start, len)) in seqs.iter().enumerate() {
        let real = keys.map_or(len, |k| k[n]);
        for h in 0..heads {
            for i in 0..len {
                let visible = if causal { (i + 1).min(real) } else { real };
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|x| at(start + i, 0, h, x) * at(start + j, 1, h, x))
                            .sum();
                        dot + bias(n, h, i, j)
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for x in 0..d {
                    let sum: f64 = (0..visible)
                        .map(|j| round(e[j]) * at(start + j, 2, h, x))
                        .sum();
                    out[(start + i) * c + h * d + x] = sum / total;
                }
            }
        }
    }
    out
}

/// Runs the kernel (on the detected ISA; `Isa::limit`, the CLI's `SEER_ISA`, caps it) and compares
/// it with [`definition`].
fn check_attention(c: usize, heads: usize, seqs: &[(usize, usize)], seed: u64) {
    check_kernel(c, heads, seqs, None, Kind::F32, seed);
}

/// Which attention a check runs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `attention`.
    F32,
    /// `attention_bf16`, a bf16 model's.
    Bf16,
    /// `attention_on_tiles`, an f32 model's on the AMX tiles.
    Tiles,
}

/// `kind`'s attention on random rows, causal and not, against
/// [`definition`] (see [`compare`]).
fn check_kernel(
    c: usize,
    heads: usize,
    seqs: &[(usize, usize)],
    keys: Option<&[usize]>,
    kind: Kind,
    seed: u64,
) {
    let rows = seqs.iter().map(|&(s, n)| s + n).max().unwrap_or(0);
    let qkv: Vec<f32> = values(rows * 3 * c, seed).iter().map(|v| v * 2.0).collect();
    for causal in [false, true] {
        let shape = AttentionShape {
            sequences: seqs,
            width: c,
            heads,
            causal,
            keys,
            rel_pos: None,
        };
        let label = format!("c={c} heads={heads} causal={causal}");
        compare(&qkv, shape, kind, &|_, _, _, _| 0.0, &label);
    }
}

/// Runs `kind`'s attention on `shape` and checks it within 1e-5 of
/// [`definition`] (`bias` as the shape's relative positions add).
/// `attention_bf16` on an AMX CPU: against the definition's bf16 rounding
/// within 4e-3 (mostly 1e-6; a numerator whose f32 and f64 values round to
/// different bf16 moves an output by up to 2e-3, while the f32 attention is
/// 1e-2 to 7e-2 away and a layout slip the size of the values).
/// `attention_on_tiles` on an AMX CPU: as close as `attention` (f32's
/// precision from bf16 parts): within 1e-5, or twice `attention`'s own
/// largest error where that is more (long sequences of large scores: 1.6e-5
/// at 257 tokens, head dim 72), and with a sequence long enough for the
/// tiles, not `attention`'s bits (so the tiles ran). Without AMX both are
/// bit for bit `attention`, which they then are.
fn compare(
    qkv: &[f32],
    shape: AttentionShape,
    kind: Kind,
    bias: &dyn Fn(usize, usize, usize, usize) -> f64,
    label: &str,
) {
    let mut out = vec![f32::NAN; qkv.len() / 3];
    let amx = seer_kernels::Isa::detected() == seer_kernels::Isa::Amx;
    let rounded = kind == Kind::Bf16 && amx;
    match kind {
        Kind::F32 => attention(qkv, shape, &mut out),
        Kind::Bf16 => attention_bf16(qkv, shape, &mut out),
        Kind::Tiles => attention_on_tiles(qkv, shape, &mut out),
    }
    let mut f32_out = vec![f32::NAN; out.len()];
    if kind != Kind::F32 {
        attention(qkv, shape, &mut f32_out);
        let long = shape.sequences.iter().any(|s| s.1 >= TILE_ATTENTION_FROM);
        if !amx || (kind == Kind::Tiles && !long) {
            assert_eq!(bits(&out), bits(&f32_out), "{label}");
            return;
        }
        if kind == Kind::Tiles {
            assert_ne!(bits(&out), bits(&f32_out), "{label}: the tiles did not run");
        }
    }
    let AttentionShape {
        sequences,
        width,
        heads,
        causal,
        keys,
        ..
    } = shape;
    let want = definition(qkv, sequences, width, heads, causal, keys, rounded, bias);
    let largest_error = |out: &[f32]| {
        let errors = out.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs());
        errors.fold(0.0, f64::max)
    };
    let tolerance = match kind {
        _ if rounded => 4e-3,
        Kind::Tiles => f64::max(1e-5, 2.0 * largest_error(&f32_out)),
        _ => 1e-5,
    };
    for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
        assert!((g as f64 - w).abs() < tolerance, "{label} [{i}]: {g} vs {w}");
    }
}

/// An attention shape without key padding or relative positions.
fn plain(sequences: &[(usize, usize)], width: usize, heads: usize, causal: bool) -> AttentionShape<'_> {
    AttentionShape {
        sequences,
        width,
        heads,
        causal,
        keys: None,
        rel_pos: None,
    }
}

/// The values' bits, for comparisons that must be exact.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn attention_matches_the_definition_for_ragged_causal_and_full_batches() {
    crate::common::cap(CEILING);
    // Three sequences of different lengths back to back, as unpadded prompts.
    check_attention(48, 3, &[(0, 5), (5, 1), (6, 11)], 7);
}

#[test]
fn attention_matches_the_definition_at_model_shapes() {
    crate::common::cap(CEILING);
    // ViT-B/32's 50 tokens and the text tower's 77 at head dim 64; head dim 80
    // (ViT-H) and lengths that leave partial query and key tiles.
    check_attention(128, 2, &[(0, 50), (50, 77)], 11);
    check_attention(160, 2, &[(0, 13), (13, 3), (16, 33)], 12);
    // Head dim 20: whole key panels whose rows end mid-vector.
    check_attention(60, 3, &[(0, 40), (40, 16)], 13);
}

#[test]
fn swiglu_gates_the_second_half_of_each_row() {
    crate::common::cap(CEILING);
    // Enough rows to split across threads, with a hidden size off the vector width.
    let (rows, hidden) = (300, 53);
    let x: Vec<f32> = values(rows * 2 * hidden, 4)
        .iter()
        .map(|v| v * 8.0)
        .collect();
    let mut out = vec![0f32; rows * hidden];
    swiglu(&x, hidden, &mut out);
    for r in 0..rows {
        for j in 0..hidden {
            let (g, u) = (
                x[r * 2 * hidden + j] as f64,
                x[r * 2 * hidden + hidden + j] as f64,
            );
            let want = g / (1.0 + (-g).exp()) * u;
            assert!((out[r * hidden + j] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
        }
    }
}

#[test]
fn attention_ignores_padding_keys_but_computes_every_query() {
    crate::common::cap(CEILING);
    // SigLIP's key-padding mask: 64-token rows whose tails are padding; every
    // query (the pooled last one included) sees only the real keys.
    check_kernel(128, 2, &[(0, 64), (64, 64)], Some(&[6, 64]), Kind::F32, 13);
    check_kernel(48, 3, &[(0, 17), (17, 5)], Some(&[1, 3]), Kind::F32, 14);
}

#[test]
fn activations_apply_in_place() {
    crate::common::cap(CEILING);
    let mut x = vec![-2.0f32, -0.5, 0.0, 0.5, 2.0];
    let orig = x.clone();
    apply_activation(&mut x, Activation::Gelu);
    for (g, &v) in x.iter().zip(&orig) {
        let want = 0.5 * v as f64 * (1.0 + libm_erf(v as f64 / 2f64.sqrt()));
        assert!((*g as f64 - want).abs() < 1e-6);
    }
}

#[test]
fn gelu_tanh_matches_pytorch_formula() {
    crate::common::cap(CEILING);
    let mut x: Vec<f32> = (-80..=80).map(|i| i as f32 * 0.1).collect();
    let orig = x.clone();
    apply_activation(&mut x, Activation::GeluTanh);
    for (g, &v) in x.iter().zip(&orig) {
        let v = v as f64;
        let want = 0.5
            * v
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh());
        assert!((*g as f64 - want).abs() < 1e-6, "{v}: {g} vs {want}");
    }
}

/// erf by its Taylor series (|x| ≤ 2 here, converges fast).
fn libm_erf(x: f64) -> f64 {
    let mut sum = 0.0;
    let mut term = x;
    for n in 0..60 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Decoding attention: one query head against cached rows holding every head
/// side by side, against the f64 definition, for several cache lengths and
/// visible prefixes (head widths that are and are not a multiple of 16), the
/// cache cut right after the last visible row's head.
#[test]
fn attend_cached_matches_the_definition() {
    crate::common::cap(CEILING);
    let mut scores = Vec::new();
    for (heads, d, keys) in [(12, 64, 577), (4, 20, 1), (3, 40, 33)] {
        let stride = heads * d;
        let q = values(stride, 7);
        let (k, v) = (values(keys * stride, 8), values(keys * stride, 9));
        let scale = 1.0 / (d as f32).sqrt();
        for visible in [1, keys.div_ceil(2), keys] {
            for h in [0, heads - 1] {
                let qh = &q[h * d..][..d];
                let mut out = vec![f32::NAN; d];
                // Cut right after the last visible row's head: nothing past it is read.
                let needed = (visible - 1) * stride + h * d + d;
                let cache = seer_kernels::ops::CachedHead {
                    keys: &k[..needed],
                    values: &v[..needed],
                    stride,
                    offset: h * d,
                };
                seer_kernels::ops::attend_cached(qh, cache, visible, scale, &mut scores, &mut out);
                let logits: Vec<f64> = (0..visible)
                    .map(|t| {
                        let kt = &k[t * stride + h * d..][..d];
                        qh.iter()
                            .zip(kt)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let p = softmax(&logits);
                for (x, got) in out.iter().enumerate() {
                    let want: f64 = (0..visible)
                        .map(|t| p[t] * v[t * stride + h * d + x] as f64)
                        .sum();
                    assert!(
                        (*got as f64 - want).abs() < 1e-5,
                        "heads {heads} d {d} keys {keys} visible {visible} head {h} [{x}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// SAM's decomposed relative positions: each sequence a `rows × cols` grid,
/// `term_h[ky] + term_w[kx]` added to query i's score for key (ky, kx),
/// against the definition with the full bias formed, for `kind`'s attention
/// as [`check_kernel`] checks it.
fn check_rel_pos(c: usize, heads: usize, kind: Kind, seed: u64) {
    // On the tiles: a grid of at least TILE_ATTENTION_FROM tokens.
    let (rows, cols) = if kind == Kind::Tiles { (12, 11) } else { (5, 7) };
    let t = rows * cols;
    let seqs = [(0, t), (t, t)];
    let qkv = values(2 * t * 3 * c, seed);
    let term_h = values(2 * heads * t * rows, seed + 1);
    let term_w = values(2 * heads * t * cols, seed + 2);
    let shape = AttentionShape {
        sequences: &seqs,
        width: c,
        heads,
        causal: false,
        keys: None,
        rel_pos: Some(seer_kernels::ops::DecomposedRelPos {
            term_h: &term_h,
            term_w: &term_w,
            rows,
            cols,
        }),
    };
    let bias = |n: usize, h: usize, i: usize, j: usize| {
        let q = (n * heads + h) * t + i;
        term_h[q * rows + j / cols] as f64 + term_w[q * cols + j % cols] as f64
    };
    compare(&qkv, shape, kind, &bias, &format!("rel pos c={c}"));
}

#[test]
fn attention_adds_decomposed_relative_positions() {
    crate::common::cap(CEILING);
    check_rel_pos(48, 3, Kind::F32, 21);
}

/// `cross_attention` against the definition, both ways round (few queries
/// over many keys and the reverse, as SAM's decoder uses it) and square.
#[test]
fn cross_attention_matches_the_definition() {
    crate::common::cap(CEILING);
    for (nq, nk, width, heads) in [
        (7, 300, 128, 8),
        (300, 7, 128, 8),
        (5, 5, 64, 2),
        (1, 40, 32, 1),
        (4, 1000, 256, 8),
    ] {
        let (q, k, v) = (
            values(nq * width, 1),
            values(nk * width, 2),
            values(nk * width, 3),
        );
        let scale = 0.7f32;
        let mut out = vec![f32::NAN; nq * width];
        cross_attention(&q, &k, &v, width, heads, scale, &mut out);
        let d = width / heads;
        for i in 0..nq {
            for h in 0..heads {
                let scores: Vec<f64> = (0..nk)
                    .map(|j| {
                        (0..d)
                            .map(|x| {
                                q[i * width + h * d + x] as f64 * k[j * width + h * d + x] as f64
                            })
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let p = softmax(&scores);
                for x in 0..d {
                    let want: f64 = (0..nk)
                        .map(|j| p[j] * v[j * width + h * d + x] as f64)
                        .sum();
                    let got = out[i * width + h * d + x] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "nq {nq} nk {nk} heads {heads}: row {i} head {h} column {x}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn transpose_swaps_rows_and_columns() {
    crate::common::cap(CEILING);
    // Sizes below, at and across the 32-wide tiles; empty.
    for (rows, cols) in [(1, 1), (3, 70), (64, 32), (100, 33), (0, 5)] {
        let x = values(rows * cols, 7);
        let t = transpose(&x, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(
                    t[c * rows + r],
                    x[r * cols + c],
                    "{rows}×{cols} at ({r}, {c})"
                );
            }
        }
    }
}

#[test]
fn column_sums_add_every_row() {
    crate::common::cap(CEILING);
    for (rows, cols) in [(1, 3), (5000, 7), (300, 128)] {
        let x = values(rows * cols, 8);
        let sums = column_sums(&x, cols);
        for (c, &s) in sums.iter().enumerate() {
            let want: f64 = (0..rows).map(|r| x[r * cols + c] as f64).sum();
            assert!(
                (s as f64 - want).abs() < 1e-3,
                "{rows}×{cols} column {c}: {s} vs {want}"
            );
        }
    }
}

#[test]
fn bf16_attention_rounds_as_the_definition_at_every_shape() {
    crate::common::cap(CEILING);
    // Ragged batches and partial tiles (head dims 16, 64, 80, 20, 72).
    check_kernel(48, 3, &[(0, 5), (5, 1), (6, 11)], None, Kind::Bf16, 31);
    check_kernel(128, 2, &[(0, 50), (50, 77)], None, Kind::Bf16, 32);
    check_kernel(160, 2, &[(0, 13), (13, 3), (16, 33)], None, Kind::Bf16, 33);
    check_kernel(60, 3, &[(0, 40), (40, 16)], None, Kind::Bf16, 34);
    check_kernel(144, 2, &[(0, 17)], None, Kind::Bf16, 35);
    // Long enough for groups of four key tiles and single ones (200 keys:
    // 14 tiles), and 64-token rows whose tails are padding keys.
    check_kernel(128, 2, &[(0, 200)], None, Kind::Bf16, 36);
    check_kernel(128, 2, &[(0, 64), (64, 64)], Some(&[6, 64]), Kind::Bf16, 37);
}

/// An f32 model's attention on the AMX tiles, at the bf16 checks' shapes
/// stretched past [`TILE_ATTENTION_FROM`] tokens (head dims 16, 64, 80, 20,
/// 72; ragged batches with a short sequence beside a long one, padding keys,
/// relative positions); without AMX it is `attention`.
#[test]
fn f32_attention_on_the_tiles_matches_the_definition() {
    crate::common::cap(CEILING);
    check_kernel(48, 3, &[(0, 5), (5, 1), (6, 131)], None, Kind::Tiles, 51);
    check_kernel(128, 2, &[(0, 50), (50, 197)], None, Kind::Tiles, 52);
    check_kernel(160, 2, &[(0, 13), (13, 140)], None, Kind::Tiles, 53);
    check_kernel(60, 3, &[(0, 129)], None, Kind::Tiles, 54);
    check_kernel(144, 2, &[(0, 257)], None, Kind::Tiles, 55);
    check_kernel(128, 2, &[(0, 160), (160, 160)], Some(&[6, 150]), Kind::Tiles, 56);
    check_rel_pos(128, 2, Kind::Tiles, 57);
}

#[test]
fn bf16_attention_adds_decomposed_relative_positions() {
    crate::common::cap(CEILING);
    check_rel_pos(128, 2, Kind::Bf16, 41);
}

/// The bf16 attention written straight into the output projection's tile
/// lines gives, through that product, bit for bit what its f32 rows give
/// (the product rounds them as the lines were rounded); where the lines
/// cannot be made (no AMX, heads not whole 32-wide steps, sequences not
/// tiling the rows, other weights) there are none.
#[test]
fn bf16_attention_lines_feed_the_projection_as_its_rows_would() {
    use seer_kernels::ops::attention_bf16_to_rows;
    use seer_kernels::{gemm, gemm_bf16_rows, Init, PackedWeights, Precision};
    crate::common::cap(CEILING);
    let amx = seer_kernels::Isa::detected() == seer_kernels::Isa::Amx;
    for (c, heads, seqs) in [
        (128, 2, vec![(0, 5), (5, 1), (6, 11)]),
        (96, 3, vec![(0, 50), (50, 27)]),
        (128, 2, vec![(0, 64)]),
    ] {
        let rows: usize = seqs.iter().map(|&(_, n)| n).sum();
        let qkv: Vec<f32> = values(rows * 3 * c, 51).iter().map(|v| v * 2.0).collect();
        let n = 40;
        let w = PackedWeights::from_rows(&values(n * c, 52), n, c, Some(values(n, 53)), Precision::Bf16);
        for causal in [false, true] {
            let shape = plain(&seqs, c, heads, causal);
            let mut context = vec![f32::NAN; rows * c];
            attention_bf16(&qkv, shape, &mut context);
            let mut want = vec![0f32; rows * n];
            gemm(&context, rows, &w, &mut want, Init::Bias, None);
            let Some(lines) = attention_bf16_to_rows(&qkv, shape, &w) else {
                assert!(!amx, "AMX CPUs make the lines (c={c})");
                continue;
            };
            assert_eq!((lines.rows(), lines.width()), (rows, c));
            let mut got = vec![0f32; rows * n];
            gemm_bf16_rows(&lines, &w, &mut got, Init::Bias, None);
            assert_eq!(bits(&got), bits(&want), "c={c} causal={causal}");
        }
    }
    // Heads 16 wide; a gap between sequences; f32 weights: no lines.
    let qkv = values(20 * 3 * 48, 54);
    let w = |c: usize, p: Precision| PackedWeights::from_rows(&values(8 * c, 55), 8, c, None, p);
    let shape = plain(&[(0, 20)], 48, 3, false);
    assert!(attention_bf16_to_rows(&qkv, shape, &w(48, Precision::Bf16)).is_none());
    let qkv = values(20 * 3 * 64, 56);
    let shape = |seqs| plain(seqs, 64, 2, false);
    let bf16 = w(64, Precision::Bf16);
    assert!(attention_bf16_to_rows(&qkv, shape(&[(0, 8), (10, 10)]), &bf16).is_none());
    assert!(attention_bf16_to_rows(&qkv, shape(&[(0, 20)]), &w(64, Precision::F32)).is_none());
    assert_eq!(
        attention_bf16_to_rows(&qkv, shape(&[(0, 20)]), &bf16).is_some(),
        amx
    );
}

/// The attention from q/k/v tile lines (the q/k/v product's bf16 output)
/// gives, bit for bit, what it gives from that product's f32 output: the
/// lines hold the values its gather would round them to.
#[test]
fn bf16_attention_reads_qkv_lines_as_it_rounds_f32_rows() {
    use seer_kernels::ops::{attention_bf16_rows_to_rows, attention_bf16_to_rows};
    use seer_kernels::{gemm, gemm_bf16_rows, gemm_to_bf16_rows, Init, PackedWeights, Precision};
    crate::common::cap(CEILING);
    for (c, heads, seqs) in [
        (128, 2, vec![(0, 5), (5, 1), (6, 11)]),
        (96, 3, vec![(0, 50), (50, 27)]),
    ] {
        let rows: usize = seqs.iter().map(|&(_, n)| n).sum();
        let k = 48;
        let a = values(rows * k, 61);
        let bias = Some(values(3 * c, 62));
        let w_qkv = PackedWeights::from_rows(&values(3 * c * k, 63), 3 * c, k, bias, Precision::Bf16);
        let w_out = PackedWeights::from_rows(&values(16 * c, 64), 16, c, None, Precision::Bf16);
        let Some(qkv_lines) = gemm_to_bf16_rows(&a, rows, &w_qkv, None) else {
            assert_ne!(seer_kernels::Isa::detected(), seer_kernels::Isa::Amx);
            return;
        };
        let mut qkv = vec![0f32; rows * 3 * c];
        gemm(&a, rows, &w_qkv, &mut qkv, Init::Bias, None);
        for causal in [false, true] {
            let shape = plain(&seqs, c, heads, causal);
            let from_f32 = attention_bf16_to_rows(&qkv, shape, &w_out).expect("AMX");
            let from_lines = attention_bf16_rows_to_rows(&qkv_lines, shape, &w_out);
            let project = |lines| {
                let mut out = vec![0f32; rows * 16];
                gemm_bf16_rows(lines, &w_out, &mut out, Init::Bias, None);
                bits(&out)
            };
            assert_eq!(project(&from_lines), project(&from_f32), "c={c} causal={causal}");
        }
    }
}

#[test]
fn int8_products_activate_as_a_pass_over_their_output_would() {
    // The int8 kernels apply the activation to their last depth block's tile
    // themselves (VNNI's in registers before its one store): the bits of the product without it followed by `apply_activation`,
    // onto a bias and onto a residual, over partial tiles and one or three
    // int8 depth blocks. Here, not in tests/gemm.rs: the activation's
    // function is the capped instruction set's.
    use seer_kernels::{gemm, Init, PackedWeights, Precision};
    crate::common::cap(CEILING);
    for (m, n, k) in [(3, 5, 7), (15, 33, 257), (37, 70, 2100)] {
        let a = values(m * k, 31);
        let w = values(n * k, 32);
        let packed = PackedWeights::from_rows(&w, n, k, Some(values(n, 33)), Precision::Int8);
        let residual = values(m * n, 34);
        for init in [Init::Bias, Init::AddToOutput] {
            for act in [
                Activation::QuickGelu,
                Activation::Gelu,
                Activation::GeluTanh,
            ] {
                let start = match init {
                    Init::Bias => vec![f32::NAN; m * n],
                    Init::AddToOutput => residual.clone(),
                };
                let mut got = start.clone();
                gemm(&a, m, &packed, &mut got, init, Some(act));
                let mut want = start;
                gemm(&a, m, &packed, &mut want, init, None);
                apply_activation(&mut want, act);
                for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        x.to_bits() == y.to_bits() && x.is_finite(),
                        "{init:?} {act:?} {m}x{n}x{k} [{i}]: {x} vs {y}"
                    );
                }
            }
        }
    }
}
