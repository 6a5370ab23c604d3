// Included by tests/train*.rs, each of which first sets `CEILING` (the kernels'
// instruction-set cap for that test binary): training's attention, quick-GELU
// and weight-gradient kernels against their f64 definitions.

use seer_kernels::train::{
    layer_norm_backward, quick_gelu, quick_gelu_backward, self_attention, self_attention_backward, weight_gradient,
    SelfAttention,
};

/// Per sequence and head: `P = softmax(q kᵀ / √d)` (causal rows end at i),
/// the context `P v`, and for the context gradient `g` the q/k/v gradients.
fn reference(qkv: &[f32], g: &[f32], s: SelfAttention) -> (Vec<f64>, Vec<f64>) {
    let (t, c, heads) = (s.tokens, s.width, s.heads);
    let d = c / heads;
    let row = 3 * c;
    let seqs = qkv.len() / (t * row);
    let mut ctx = vec![0f64; seqs * t * c];
    let mut dqkv = vec![0f64; qkv.len()];
    let at = |b: usize, i: usize, part: usize, h: usize, f: usize| (b * t + i) * row + part * c + h * d + f;
    for b in 0..seqs {
        for h in 0..heads {
            let mut p = vec![vec![0f64; t]; t];
            for i in 0..t {
                let keys = if s.causal { i + 1 } else { t };
                let scores: Vec<f64> = (0..keys)
                    .map(|j| {
                        (0..d).map(|f| qkv[at(b, i, 0, h, f)] as f64 * qkv[at(b, j, 1, h, f)] as f64).sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                p[i][..keys].copy_from_slice(&crate::common::softmax(&scores));
            }
            for i in 0..t {
                let gi = |f: usize| g[(b * t + i) * c + h * d + f] as f64;
                for f in 0..d {
                    ctx[(b * t + i) * c + h * d + f] = (0..t).map(|j| p[i][j] * qkv[at(b, j, 2, h, f)] as f64).sum();
                }
                // dP_ij = g_i · v_j, dS_ij = P_ij (dP_ij - Σ_k P_ik dP_ik).
                let dp: Vec<f64> = (0..t)
                    .map(|j| (0..d).map(|f| gi(f) * qkv[at(b, j, 2, h, f)] as f64).sum())
                    .collect();
                let weighted: f64 = (0..t).map(|j| p[i][j] * dp[j]).sum();
                for j in 0..t {
                    let ds = p[i][j] * (dp[j] - weighted) / (d as f64).sqrt();
                    for f in 0..d {
                        dqkv[at(b, i, 0, h, f)] += ds * qkv[at(b, j, 1, h, f)] as f64;
                        dqkv[at(b, j, 1, h, f)] += ds * qkv[at(b, i, 0, h, f)] as f64;
                        dqkv[at(b, j, 2, h, f)] += p[i][j] * gi(f);
                    }
                }
            }
        }
    }
    (ctx, dqkv)
}

#[test]
fn attention_and_its_gradient_match_the_definition() {
    crate::common::cap(CEILING);
    // CLIP-demo shapes (17 tokens, 2 key groups), causal text, head widths off
    // the 16 lanes, one token.
    for (b, t, c, heads, causal) in [
        (3, 17, 128, 4, false),
        (2, 12, 40, 2, true),
        (2, 33, 72, 2, false),
        (1, 1, 8, 1, true),
    ] {
        let shape = SelfAttention { tokens: t, width: c, heads, causal };
        let qkv = common::values(b * t * 3 * c, 3);
        let g = common::values(b * t * c, 4);
        let (want_ctx, want_d) = reference(&qkv, &g, shape);
        let ctx = self_attention(&qkv, shape);
        let dqkv = self_attention_backward(&qkv, &g, shape);
        assert_eq!((ctx.len(), dqkv.len()), (g.len(), qkv.len()));
        for (what, got, want) in [("context", &ctx, &want_ctx), ("gradient", &dqkv, &want_d)] {
            for (k, (&x, &y)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    (x as f64 - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{what} {b}×{t}×{c}/{heads} causal {causal} at {k}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn quick_gelu_and_its_gradient_match_the_definition() {
    crate::common::cap(CEILING);
    let x: Vec<f32> = common::values(40_000, 5).iter().map(|v| v * 8.0).collect();
    let g = common::values(40_000, 6);
    let dx = quick_gelu_backward(&x, &g);
    assert_eq!(dx.len(), x.len());
    let y = quick_gelu(&x);
    assert_eq!(y.len(), x.len());
    for (&y, &v) in y.iter().zip(&x) {
        let want = v as f64 / (1.0 + (-1.702 * v as f64).exp());
        assert!((y as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "x {v}: {y} vs {want}");
    }
    for ((&d, &v), &gv) in dx.iter().zip(&x).zip(&g) {
        let (v, gv) = (v as f64, gv as f64);
        let s = 1.0 / (1.0 + (-1.702 * v).exp());
        let want = gv * (s + 1.702 * v * s * (1.0 - s));
        assert!((d as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "x {v}: {d} vs {want}");
    }
}

#[test]
fn weight_gradient_matches_the_definition() {
    crate::common::cap(CEILING);
    // rows × n × k: a CLIP-demo layer (two depth blocks and a part), both
    // orientations (k > n is computed transposed), edges off every tile and
    // panel width, one row, one column, no rows.
    for (rows, n, k) in [(600, 64, 32), (300, 40, 96), (257, 37, 45), (5, 3, 70), (1, 9, 1), (64, 1, 33), (0, 5, 7)] {
        let a = common::values(rows * n, 7);
        let b = common::values(rows * k, 8);
        let mut out = vec![f32::NAN; n * k];
        weight_gradient(&a, n, &b, k, rows, &mut out);
        for i in 0..n {
            for j in 0..k {
                let want: f64 = (0..rows).map(|p| a[p * n + i] as f64 * b[p * k + j] as f64).sum();
                let got = out[i * k + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{rows}×{n}×{k} at ({i}, {j}): {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn weight_gradient_does_not_depend_on_the_thread_count() {
    crate::common::cap(CEILING);
    // Output rows split across 1, 2 and 3 threads fall in different tiles and
    // tasks; every element must still sum its rows in the same order.
    let (rows, n, k) = (700, 75, 70);
    let a = common::values(rows * n, 9);
    let b = common::values(rows * k, 10);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
        let mut out = vec![f32::NAN; n * k];
        pool.install(|| weight_gradient(&a, n, &b, k, rows, &mut out));
        out
    };
    let one = run(1);
    for threads in [2, 3] {
        let many = run(threads);
        let same = one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{threads} threads gave a different sum than one");
    }
}

#[test]
fn layer_norm_backward_matches_the_definition() {
    crate::common::cap(CEILING);
    // Widths off the 16-lane sums (45), a demo width (128) and one column;
    // row counts across several 16-row tasks and inside one.
    for (rows, width) in [(37, 45), (40, 128), (3, 1), (1, 17)] {
        let x: Vec<f32> = common::values(rows * width, 11).iter().map(|v| 3.0 * v + 0.5).collect();
        let g = common::values(rows * width, 12);
        let gamma: Vec<f32> = common::values(width, 13).iter().map(|v| 1.0 + v).collect();
        let eps = 1e-5;
        let out = layer_norm_backward(&x, &g, &gamma, eps);
        assert_eq!(out.len(), (rows + 2) * width);
        let (dx, dparams) = out.split_at(rows * width);
        let mut want_params = vec![0f64; 2 * width];
        for r in 0..rows {
            let xr: Vec<f64> = x[r * width..(r + 1) * width].iter().map(|&v| v as f64).collect();
            let gr: Vec<f64> = g[r * width..(r + 1) * width].iter().map(|&v| v as f64).collect();
            let n = width as f64;
            let mu = xr.iter().sum::<f64>() / n;
            let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps as f64).sqrt();
            let y: Vec<f64> = xr.iter().map(|v| (v - mu) * inv).collect();
            let g_hat: Vec<f64> = gr.iter().zip(&gamma).map(|(g, &c)| g * c as f64).collect();
            let g_mean = g_hat.iter().sum::<f64>() / n;
            let gy_mean = g_hat.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / n;
            for j in 0..width {
                let want = (g_hat[j] - g_mean - y[j] * gy_mean) * inv;
                let got = dx[r * width + j] as f64;
                assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{rows}×{width} dx ({r}, {j}): {got} vs {want}");
                want_params[j] += gr[j] * y[j];
                want_params[width + j] += gr[j];
            }
        }
        for (j, (&got, want)) in dparams.iter().zip(&want_params).enumerate() {
            assert!(
                (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{rows}×{width} parameter gradient {j}: {got} vs {want}"
            );
        }
    }
}
