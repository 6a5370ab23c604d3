//! Every kernel family against a plain f64 product, on shapes that exercise the
//! edges (rows and columns that do not fill a tile, odd depths, several K blocks).

mod common;

use common::values;
use seer_kernels::gemm::{bf16_to_f32, f32_to_bf16, gemm_with_isa};
use seer_kernels::{Activation, Init, Isa, PackedWeights, Precision};

fn reference(a: &[f32], w: &[f32], m: usize, n: usize, k: usize, round: bool) -> Vec<f64> {
    let r = |x: f32| {
        if round {
            bf16_to_f32(f32_to_bf16(x)) as f64
        } else {
            x as f64
        }
    };
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|kk| r(a[i * k + kk]) * r(w[j * k + kk])).sum();
        }
    }
    c
}

fn check(isa: Isa, precision: Precision, m: usize, n: usize, k: usize) {
    let a = values(m * k, 1 + m as u64);
    let w = values(n * k, 2 + n as u64);
    let bias = values(n, 3);
    let residual = values(m * n, 4);
    let packed = PackedWeights::from_rows(&w, n, k, Some(bias.clone()), precision);
    // bf16 kernels with the dot-product instruction round activations too; the
    // portable one does not. Compare each against its own exact counterpart.
    let rounds_a = precision == Precision::Bf16 && isa == Isa::Avx512 && Isa::has_bf16_dot();
    let want = reference(&a, &w, m, n, k, precision == Precision::Bf16);
    let want_a = if rounds_a {
        want.clone()
    } else if precision == Precision::Bf16 {
        // Weights rounded, activations exact.
        let wr: Vec<f32> = w.iter().map(|&x| bf16_to_f32(f32_to_bf16(x))).collect();
        reference(&a, &wr, m, n, k, false)
    } else {
        want
    };
    let tol = 2e-5 * (k as f64).sqrt();

    let mut c = vec![f32::NAN; m * n];
    gemm_with_isa(isa, &a, m, &packed, &mut c, Init::Bias, None);
    for i in 0..m * n {
        let expect = want_a[i] + bias[i % n] as f64;
        assert!(
            (c[i] as f64 - expect).abs() < tol,
            "{isa:?} {precision:?} {m}x{n}x{k} [{i}]: {} vs {expect}",
            c[i]
        );
    }

    let mut c = residual.clone();
    gemm_with_isa(
        isa,
        &a,
        m,
        &packed,
        &mut c,
        Init::AddToOutput,
        Some(Activation::QuickGelu),
    );
    for i in 0..m * n {
        let x = want_a[i] + bias[i % n] as f64 + residual[i] as f64;
        let expect = x / (1.0 + (-1.702 * x).exp());
        assert!(
            (c[i] as f64 - expect).abs() < tol,
            "{isa:?} {precision:?} residual+act [{i}]"
        );
    }
}

#[test]
fn every_kernel_matches_the_exact_product() {
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (14, 32, 64),
        (15, 33, 257),
        (50, 96, 300),
        (113, 70, 513),
        (29, 768, 96),
    ];
    for isa in Isa::all_supported() {
        for precision in [Precision::F32, Precision::Bf16] {
            for &(m, n, k) in &shapes {
                check(isa, precision, m, n, k);
            }
        }
    }
}

#[test]
fn right_matrix_packing_is_the_transpose() {
    let (k, n, m) = (40, 20, 3);
    let mat = values(k * n, 9);
    let a = values(m * k, 10);
    let packed = PackedWeights::from_right_matrix(&mat, k, n, Precision::F32);
    let mut c = vec![0f32; m * n];
    seer_kernels::gemm(&a, m, &packed, &mut c, Init::Bias, None);
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|kk| a[i * k + kk] as f64 * mat[kk * n + j] as f64)
                .sum();
            assert!((c[i * n + j] as f64 - want).abs() < 1e-4);
        }
    }
}

#[test]
fn bf16_weights_take_half_the_memory() {
    let w = values(64 * 64, 5);
    let f = PackedWeights::from_rows(&w, 64, 64, None, Precision::F32);
    let h = PackedWeights::from_rows(&w, 64, 64, None, Precision::Bf16);
    assert_eq!(f.bytes(), 2 * h.bytes());
}

#[test]
fn bf16_rounding_is_nearest_even() {
    assert_eq!(f32_to_bf16(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
    assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
}
