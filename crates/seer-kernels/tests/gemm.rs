//! Every kernel family against a plain f64 product, on shapes that exercise the
//! edges (rows and columns that do not fill a tile, odd depths, several K blocks).

mod common;

use common::values;
use seer_kernels::gemm::{bf16_to_f32, f32_to_bf16, gemm_with_isa, int8_activation_levels};
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
    let w = values(n * k, 2 + n as u64);
    let packed = PackedWeights::from_rows(&w, n, k, Some(values(n, 3)), precision);
    check_packed(isa, &packed, &w, m);
}

/// [`check`] on weights packed already from `w` (their bias `values(n, 3)`).
fn check_packed(isa: Isa, packed: &PackedWeights, w: &[f32], m: usize) {
    let (n, k, precision) = (packed.n(), packed.k(), packed.precision());
    let a = values(m * k, 1 + m as u64);
    let bias = values(n, 3);
    let residual = values(m * n, 4);
    // bf16 kernels with the dot-product instruction round activations too; the
    // portable one does not. Compare each against its own exact counterpart.
    let rounds_a = precision == Precision::Bf16
        && ((isa == Isa::Avx512 && Isa::has_bf16_dot()) || isa == Isa::Amx);
    let want = reference(&a, w, m, n, k, precision == Precision::Bf16);
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
    gemm_with_isa(isa, &a, m, packed, &mut c, Init::Bias, None);
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
        packed,
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

    // The activation onto the bias alone (an MLP's first layer): the AMX tiles
    // apply it in their overwriting store.
    let mut c = vec![f32::NAN; m * n];
    gemm_with_isa(
        isa,
        &a,
        m,
        packed,
        &mut c,
        Init::Bias,
        Some(Activation::QuickGelu),
    );
    for i in 0..m * n {
        let x = want_a[i] + bias[i % n] as f64;
        let expect = x / (1.0 + (-1.702 * x).exp());
        assert!(
            (c[i] as f64 - expect).abs() < tol,
            "{isa:?} {precision:?} bias+act [{i}]"
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
        // Three bf16 pair blocks (512 deep), the last odd.
        (17, 40, 1101),
        // Past the deep f32 blocks of some CPUs (224 rows, 768 deep) on both
        // sides, and past the shallow ones (112 × 256) several times.
        (230, 40, 800),
    ];
    for isa in Isa::all_supported() {
        for precision in [Precision::F32, Precision::Bf16] {
            for &(m, n, k) in &shapes {
                check(isa, precision, m, n, k);
            }
        }
    }
}

/// f32 weights packed for inference: on AMX split for the tiles, which must be
/// about as exact as the FMA kernels, elsewhere packed as for any product.
/// The tiles' largest error from the exact product, over values spread across
/// 2⁻¹² .. 2¹² so the parts' exponents differ, is held to 4× FMA's: their
/// sums take six additions per product, so their rounding could add up to
/// about √6 = 2.4× FMA's (measured 0.87-1.03× since depth runs in chunks of
/// 768, 3.3× at depth 3072 in one); a part left out or misplaced costs 2⁸
/// times more or worse.
#[test]
fn f32_on_the_tiles_is_as_exact_as_fma() {
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (15, 33, 257),
        (50, 96, 300),
        (113, 70, 513),
        (17, 40, 1101),
        (230, 40, 800),
    ];
    for &(m, n, k) in &shapes {
        let w = values(n * k, 2 + n as u64);
        let packed =
            PackedWeights::from_rows_for_inference(&w, n, k, Some(values(n, 3)), Precision::F32);
        assert_eq!(packed.precision(), Precision::F32);
        assert_eq!(packed.on_tiles(), seer_kernels::gemm::f32_on_tiles());
        check_packed(Isa::detected(), &packed, &w, m);
        // Split wherever the tiles are, whether or not they pay here.
        if let Some(split) =
            PackedWeights::split_for_tiles(n, k, |j| &w[j * k..(j + 1) * k], Some(values(n, 3)))
        {
            assert!(split.on_tiles());
            check_packed(Isa::Amx, &split, &w, m);
        }
    }
    if Isa::detected() != Isa::Amx {
        eprintln!("no AMX here: f32 weights stay f32, checked as any product");
        return;
    }
    let spread = |v: Vec<f32>, seed: u64| -> Vec<f32> {
        let e = values(v.len(), seed);
        v.iter()
            .zip(e)
            .map(|(x, e)| x * (12.0 * e).exp2())
            .collect()
    };
    for &(m, n, k) in &[(64, 96, 768), (37, 45, 3072), (230, 40, 800)] {
        let a = spread(values(m * k, 5), 6);
        let w = spread(values(n * k, 7), 8);
        let exact = reference(&a, &w, m, n, k, false);
        let worst = |c: &[f32]| {
            c.iter()
                .zip(&exact)
                .map(|(&c, &e)| (c as f64 - e).abs())
                .fold(0f64, f64::max)
        };
        let mut fma = vec![0f32; m * n];
        let plain = PackedWeights::from_rows(&w, n, k, None, Precision::F32);
        gemm_with_isa(Isa::Avx512, &a, m, &plain, &mut fma, Init::Bias, None);
        let mut tiles = vec![0f32; m * n];
        let split = PackedWeights::split_for_tiles(n, k, |j| &w[j * k..(j + 1) * k], None)
            .expect("AMX splits");
        gemm_with_isa(Isa::Amx, &a, m, &split, &mut tiles, Init::Bias, None);
        let (fma, tiles) = (worst(&fma), worst(&tiles));
        let top = exact.iter().fold(0f64, |t, e| t.max(e.abs()));
        eprintln!(
            "{m}x{n}x{k}: largest error over the largest value: FMA {:.2e}, tiles {:.2e}",
            fma / top,
            tiles / top
        );
        assert!(
            tiles <= 4.0 * fma,
            "{m}x{n}x{k}: tiles {tiles:e} vs FMA {fma:e}"
        );
    }
}

/// int8 against the exact f32 product, within what quantisation can cost: with
/// weight steps `s_w = max|w|/127` (per output feature; /63 where the CPU's
/// int8 kernel is AVX2's, `int8_weight_top`) and activation steps
/// `s_a = (max - min)/255` (per row; /127 on kernels of 128 levels), each
/// value is off by at most half a step,
/// so `|Σ x·w - Σ x̂·ŵ| <= Σ_k |x|·s_w/2 + (|w| + s_w/2)·s_a/2`. That bound is
/// loose (errors add up like a random walk), so the mean squared error is also
/// held to twice what uniform rounding errors give: a misplaced value or scale
/// costs far more than either.
fn check_int8(isa: Isa, m: usize, n: usize, k: usize) {
    let mut a = values(m * k, 1 + m as u64);
    // Rows that give no range to spread (constant, zero) and one far from zero.
    if m > 3 {
        a[..k].fill(0.3);
        a[k..2 * k].fill(0.0);
        a[2 * k..3 * k].iter_mut().for_each(|x| *x += 50.0);
    }
    let w = values(n * k, 2 + n as u64);
    let bias = values(n, 3);
    let residual = values(m * n, 4);
    let packed = PackedWeights::from_rows(&w, n, k, Some(bias.clone()), Precision::Int8);
    let want = reference(&a, &w, m, n, k, false);
    let top = packed.int8_weight_top().expect("int8 weights") as f64;
    let s_w: Vec<f64> = w
        .chunks_exact(k)
        .map(|row| row.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)) / top)
        .collect();
    let s_a: Vec<f64> = a
        .chunks_exact(k)
        .map(|row| {
            let lo = row.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
            let hi = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            (hi - lo) / (int8_activation_levels(isa) - 1) as f64
        })
        .collect();
    let (mut bound, mut variance) = (vec![0f64; m * n], vec![0f64; m * n]);
    for i in 0..m {
        for j in 0..n {
            let (x, wr) = (&a[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
            let (mut b, mut v, mut mag) = (0f64, 0f64, 0f64);
            for (&x, &wv) in x.iter().zip(wr) {
                let (x, wv) = (x as f64, wv as f64);
                b += x.abs() * s_w[j] / 2.0 + (wv.abs() + s_w[j] / 2.0) * s_a[i] / 2.0;
                v += (x * s_w[j]).powi(2) / 12.0 + (wv * s_a[i]).powi(2) / 12.0;
                mag += (x * wv).abs();
            }
            // f32 rounding of the integer sums and of the offset term.
            bound[i * n + j] = b + 1e-5 * (mag + 50.0 * k as f64) + 1e-5;
            variance[i * n + j] = v;
        }
    }

    let mut c = vec![f32::NAN; m * n];
    gemm_with_isa(isa, &a, m, &packed, &mut c, Init::Bias, None);
    let (mut sq_err, mut sq_expected) = (0f64, 0f64);
    for i in 0..m * n {
        let expect = want[i] + bias[i % n] as f64;
        let err = (c[i] as f64 - expect).abs();
        assert!(
            err <= bound[i],
            "{isa:?} int8 {m}x{n}x{k} [{i}]: {} vs {expect} (bound {})",
            c[i],
            bound[i]
        );
        sq_err += err * err;
        sq_expected += variance[i];
    }
    if m * n >= 100 {
        assert!(
            sq_err <= 2.0 * sq_expected,
            "{isa:?} int8 {m}x{n}x{k}: mean squared error {} where rounding gives {}",
            sq_err / (m * n) as f64,
            sq_expected / (m * n) as f64
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
        let x = want[i] + bias[i % n] as f64 + residual[i] as f64;
        let gelu = |x: f64| x / (1.0 + (-1.702 * x).exp());
        // QuickGELU's slope stays within [-0.1, 1.1].
        let expect = gelu(x);
        assert!(
            (c[i] as f64 - expect).abs() <= 1.1 * bound[i] + 1e-5,
            "{isa:?} int8 residual+act {m}x{n}x{k} [{i}]: {} vs {expect}",
            c[i]
        );
    }
}

#[test]
fn int8_is_within_the_quantisation_error_on_every_kernel() {
    // Depths that are not multiples of 4, and some past one int8 depth block.
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (14, 32, 64),
        (15, 33, 257),
        (50, 96, 301),
        (113, 70, 513),
        (29, 768, 96),
        (17, 40, 4099),
    ];
    for isa in Isa::all_supported() {
        for &(m, n, k) in &shapes {
            check_int8(isa, m, n, k);
        }
    }
}

#[test]
fn int8_kernels_agree() {
    // The same integer sums on every kernel of 256 levels: outputs equal up to
    // f32 rounding of the scaling, far below one quantisation step. (The AVX2
    // kernel's 128 levels are held to their own error bound above.)
    let (m, n, k) = (37, 70, 2100);
    let a = values(m * k, 21);
    let w = values(n * k, 22);
    let packed = PackedWeights::from_rows(&w, n, k, None, Precision::Int8);
    let run = |isa| {
        let mut c = vec![0f32; m * n];
        gemm_with_isa(isa, &a, m, &packed, &mut c, Init::Bias, None);
        c
    };
    let portable = run(Isa::Portable);
    let full = Isa::all_supported()
        .into_iter()
        .filter(|&isa| int8_activation_levels(isa) == 256);
    for isa in full {
        for (x, y) in run(isa).iter().zip(&portable) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{isa:?}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn right_matrix_packing_is_the_transpose() {
    // One partial panel, then two whole panels and a partial one.
    for (k, n, m) in [(40, 20, 3), (33, 70, 5)] {
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
        // The same panels as packing the transposed matrix row by row.
        let transposed: Vec<f32> = (0..n * k).map(|i| mat[(i % k) * n + i / k]).collect();
        let rows = PackedWeights::from_rows(&transposed, n, k, None, Precision::F32);
        let mut c_rows = vec![0f32; m * n];
        seer_kernels::gemm(&a, m, &rows, &mut c_rows, Init::Bias, None);
        assert_eq!(c, c_rows, "k {k}, n {n}");
    }
}

#[test]
fn reduced_weights_take_less_memory() {
    let w = values(64 * 64, 5);
    let f = PackedWeights::from_rows(&w, 64, 64, None, Precision::F32);
    let h = PackedWeights::from_rows(&w, 64, 64, None, Precision::Bf16);
    assert_eq!(f.bytes(), 2 * h.bytes());
    // A byte per weight, plus two floats per output feature.
    let q = PackedWeights::from_rows(&w, 64, 64, None, Precision::Int8);
    assert_eq!(q.bytes(), 64 * 64 + 2 * 4 * 64);
}

#[test]
fn int8_names_parse() {
    assert_eq!(Precision::parse("int8"), Some(Precision::Int8));
    assert_eq!(Precision::Int8.name(), "int8");
}

#[test]
fn f32_splits_into_three_bf16_exactly() {
    use seer_kernels::gemm::split_to_bf16;
    let mut xs = values(100_000, 9);
    xs.iter_mut()
        .zip(values(100_000, 10))
        .for_each(|(x, e)| *x *= (60.0 * e).exp2());
    xs.extend([
        0.0,
        -0.0,
        1.0,
        f32::MIN_POSITIVE,
        3.0e38,
        -1.0e-30,
        1.0 + f32::EPSILON,
    ]);
    for x in xs {
        let parts = split_to_bf16(x);
        let sum: f64 = parts.iter().map(|&p| bf16_to_f32(p) as f64).sum();
        assert_eq!(sum, x as f64, "{x:e} = {parts:?}");
    }
}

#[test]
fn bf16_rounding_is_nearest_even() {
    assert_eq!(f32_to_bf16(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
    assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
}

/// Without a bias, on whole 32 × 32 tiles (AMX sums those in C itself,
/// starting from zero or from the residual), in both precisions that AMX runs,
/// and in f32 (whose AVX-512 kernel writes a first depth block over C).
#[test]
fn whole_tiles_without_a_bias() {
    let (m, n, k) = (64, 64, 100);
    let a = values(m * k, 31);
    let w = values(n * k, 32);
    let residual = values(m * n, 33);
    for isa in Isa::all_supported() {
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let packed = PackedWeights::from_rows(&w, n, k, None, precision);
            let rounds_a = precision == Precision::Bf16
                && ((isa == Isa::Avx512 && Isa::has_bf16_dot()) || isa == Isa::Amx);
            let (want, tol) = if precision == Precision::Int8 {
                // A loose bound (quantisation) still catches a missing or
                // doubled term.
                (reference(&a, &w, m, n, k, false), 0.25)
            } else if precision == Precision::F32 {
                (reference(&a, &w, m, n, k, false), 2e-4)
            } else {
                let wr: Vec<f32> = w.iter().map(|&x| bf16_to_f32(f32_to_bf16(x))).collect();
                (reference(&a, &wr, m, n, k, rounds_a), 2e-4)
            };
            let mut c = vec![f32::NAN; m * n];
            gemm_with_isa(isa, &a, m, &packed, &mut c, Init::Bias, None);
            for i in 0..m * n {
                assert!(
                    (c[i] as f64 - want[i]).abs() < tol,
                    "{isa:?} {precision:?} [{i}]: {} vs {}",
                    c[i],
                    want[i]
                );
            }
            let mut c = residual.clone();
            gemm_with_isa(isa, &a, m, &packed, &mut c, Init::AddToOutput, None);
            for i in 0..m * n {
                let expect = want[i] + residual[i] as f64;
                assert!(
                    (c[i] as f64 - expect).abs() < tol,
                    "{isa:?} {precision:?} residual [{i}]: {} vs {expect}",
                    c[i]
                );
            }
        }
    }
}

#[test]
fn a_new_output_matches_one_written_over() {
    // gemm_new writes into memory nobody zeroed: it must equal gemm's result
    // over a NaN-filled output, bit for bit, on one depth block and several,
    // with and without a bias and an activation, at edge shapes.
    for (m, n, k) in [(1, 1, 1), (13, 70, 128), (29, 33, 600), (0, 8, 3)] {
        let a = values(m * k, 21);
        let w = values(n * k, 22);
        for bias in [None, Some(values(n, 23))] {
            let packed = PackedWeights::from_rows(&w, n, k, bias.clone(), Precision::F32);
            for act in [None, Some(Activation::QuickGelu)] {
                // A freed block of NaNs, which malloc may hand back.
                drop(vec![f32::NAN; m * n]);
                let fresh = seer_kernels::gemm_new(&a, m, &packed, act);
                let mut want = vec![f32::NAN; m * n];
                seer_kernels::gemm(&a, m, &packed, &mut want, Init::Bias, act);
                assert_eq!(fresh.len(), m * n);
                let same = fresh
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}×{n}×{k}, bias {}, {act:?}", bias.is_some());
            }
        }
    }
}

/// A product kept as bf16 tile lines for the next one gives, bit for bit, what
/// the f32 route gives (the next product rounds its input the same way), on
/// shapes off every tile edge, with and without an activation; off AMX, or
/// with other weights, there are no such rows.
/// The weights the AMX tiles read bf16 rows for: bf16 ones, and f32 ones
/// packed for inference (split for the tiles on AMX).
#[derive(Clone, Copy, Debug, PartialEq)]
enum TilePacking {
    Bf16,
    SplitF32,
}

impl TilePacking {
    fn pack(self, w: &[f32], n: usize, k: usize, bias: Option<Vec<f32>>) -> PackedWeights {
        match self {
            Self::Bf16 => PackedWeights::from_rows(w, n, k, bias, Precision::Bf16),
            // Split wherever AMX is, whether or not it pays here.
            Self::SplitF32 => {
                PackedWeights::split_for_tiles(n, k, |j| &w[j * k..(j + 1) * k], bias.clone())
                    .unwrap_or_else(|| {
                        PackedWeights::from_rows_for_inference(w, n, k, bias, Precision::F32)
                    })
            }
        }
    }
}

#[test]
fn bf16_rows_feed_the_next_product_as_f32_outputs_would() {
    use seer_kernels::{gemm, gemm_bf16_rows, gemm_to_bf16_rows};
    for ((m, k, n, n2), pack) in [
        (1, 40, 50, 16),
        (33, 64, 96, 40),
        (70, 32, 32, 70),
        (100, 96, 103, 33),
    ]
    .into_iter()
    .flat_map(|shape| [(shape, TilePacking::Bf16), (shape, TilePacking::SplitF32)])
    {
        for act in [None, Some(Activation::Gelu), Some(Activation::QuickGelu)] {
            let seed = (m * 7 + n) as u64;
            let w1 = values(n * k, seed);
            let w2 = values(n2 * n, seed + 1);
            let w1 = pack.pack(&w1, n, k, Some(values(n, seed + 2)));
            let w2 = pack.pack(&w2, n2, n, Some(values(n2, seed + 3)));
            let a = values(m * k, seed + 4);
            let mut hidden = vec![0f32; m * n];
            gemm(&a, m, &w1, &mut hidden, Init::Bias, act);
            let residual = values(m * n2, seed + 5);
            let mut want = residual.clone();
            gemm(&hidden, m, &w2, &mut want, Init::AddToOutput, None);
            let Some(rows) = gemm_to_bf16_rows(&a, m, &w1, act) else {
                assert_ne!(Isa::detected(), Isa::Amx, "AMX CPUs make bf16 rows");
                continue;
            };
            assert_eq!((rows.rows(), rows.width()), (m, n));
            assert_eq!(rows.split(), pack == TilePacking::SplitF32);
            let mut got = residual.clone();
            gemm_bf16_rows(&rows, &w2, &mut got, Init::AddToOutput, None);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{pack:?} {m}×{k}→{n}→{n2} {act:?}: value {i}: {g} vs {w}"
                );
            }
        }
    }
    let a = values(4 * 8, 1);
    for precision in [Precision::F32, Precision::Int8] {
        let w = PackedWeights::from_rows(&values(8 * 8, 2), 8, 8, None, precision);
        assert!(
            gemm_to_bf16_rows(&a, 4, &w, None).is_none(),
            "{precision:?}"
        );
    }
}

/// Split rows from a product deeper than one depth chunk (768): the lines
/// take all of K at once where the f32 output adds its chunks in C, so the
/// last bits may differ, but no more than f32 rounding does.
#[test]
fn deep_split_rows_agree_with_the_f32_route() {
    use seer_kernels::{gemm, gemm_bf16_rows, gemm_to_bf16_rows};
    let (m, k, n, n2) = (40, 1600, 96, 24);
    let w1 = TilePacking::SplitF32.pack(&values(n * k, 1), n, k, Some(values(n, 2)));
    let w2 = TilePacking::SplitF32.pack(&values(n2 * n, 3), n2, n, Some(values(n2, 4)));
    let a = values(m * k, 5);
    let act = Some(Activation::Gelu);
    let mut hidden = vec![0f32; m * n];
    gemm(&a, m, &w1, &mut hidden, Init::Bias, act);
    let mut want = vec![0f32; m * n2];
    gemm(&hidden, m, &w2, &mut want, Init::Bias, None);
    let Some(rows) = gemm_to_bf16_rows(&a, m, &w1, act) else {
        assert_ne!(Isa::detected(), Isa::Amx, "AMX CPUs split f32 rows");
        return;
    };
    assert!(rows.split());
    let mut got = vec![0f32; m * n2];
    gemm_bf16_rows(&rows, &w2, &mut got, Init::Bias, None);
    let top = want.iter().fold(0f32, |t, v| t.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * top, "value {i}: {g} vs {w}");
    }
}

/// LayerNorm written straight into bf16 tile lines, then two products on
/// lines (`gemm_bf16_rows_to_bf16_rows`, then `gemm_bf16_rows`), gives bit for
/// bit the f32 route (LayerNorm, then `gemm` twice): each product rounds (or
/// splits) its input as the lines were. Off AMX, or with other weights,
/// there are no such rows.
#[test]
fn layer_norm_rows_feed_products_as_f32_outputs_would() {
    use seer_kernels::ops::{layer_norm, layer_norm_to_bf16_rows};
    use seer_kernels::{gemm, gemm_bf16_rows, gemm_bf16_rows_to_bf16_rows};
    for ((m, k, n, n2), pack) in [(1, 40, 50, 16), (33, 64, 96, 40), (100, 96, 103, 33)]
        .into_iter()
        .flat_map(|shape| [(shape, TilePacking::Bf16), (shape, TilePacking::SplitF32)])
    {
        let seed = (m * 5 + k) as u64;
        let w1 = values(n * k, seed);
        let w2 = values(n2 * n, seed + 1);
        let w1 = pack.pack(&w1, n, k, Some(values(n, seed + 2)));
        let w2 = pack.pack(&w2, n2, n, Some(values(n2, seed + 3)));
        let x: Vec<f32> = values(m * k, seed + 4)
            .iter()
            .map(|v| v * 3.0 + 0.5)
            .collect();
        let (gamma, beta) = (values(k, seed + 5), values(k, seed + 6));
        let mut normed = vec![0f32; m * k];
        layer_norm(&x, k, &gamma, &beta, 1e-5, &mut normed);
        let act = Some(Activation::Gelu);
        let mut hidden = vec![0f32; m * n];
        gemm(&normed, m, &w1, &mut hidden, Init::Bias, act);
        let mut want = vec![0f32; m * n2];
        gemm(&hidden, m, &w2, &mut want, Init::Bias, None);
        let Some(rows) = layer_norm_to_bf16_rows(&x, k, &gamma, &beta, 1e-5, &w1) else {
            assert_ne!(Isa::detected(), Isa::Amx, "AMX CPUs make bf16 rows");
            continue;
        };
        assert_eq!((rows.rows(), rows.width()), (m, k));
        let mut direct = vec![0f32; m * n];
        gemm_bf16_rows(&rows, &w1, &mut direct, Init::Bias, act);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&direct),
            bits(&hidden),
            "{pack:?} {m}×{k}→{n}: first product"
        );
        let lines = gemm_bf16_rows_to_bf16_rows(&rows, &w1, act);
        assert_eq!((lines.rows(), lines.width()), (m, n));
        let mut got = vec![0f32; m * n2];
        gemm_bf16_rows(&lines, &w2, &mut got, Init::Bias, None);
        assert_eq!(
            bits(&got),
            bits(&want),
            "{pack:?} {m}×{k}→{n}→{n2}: both products"
        );
    }
    let x = values(4 * 8, 1);
    let ones = vec![1f32; 8];
    for precision in [Precision::F32, Precision::Int8] {
        let w = PackedWeights::from_rows(&values(8 * 8, 2), 8, 8, None, precision);
        let rows = seer_kernels::ops::layer_norm_to_bf16_rows(&x, 8, &ones, &ones, 1e-5, &w);
        assert!(rows.is_none(), "{precision:?}");
    }
}

/// Denormal activations read as zero inside the f32 products (see
/// `seer_kernels::denormals`: on Intel cores each one cost a microcode assist,
/// SAM's encoder 16× slower), on every kernel: a row of denormals gives zeros
/// (its sums would be denormal too), and the calling thread's arithmetic is
/// IEEE again afterwards.
#[test]
fn denormal_activations_read_as_zero_in_products() {
    let (m, n, k) = (3, 40, 70);
    let w = values(n * k, 7);
    let packed = PackedWeights::from_rows(&w, n, k, None, Precision::F32);
    let tiny = f32::MIN_POSITIVE / 4.0;
    assert!(tiny > 0.0 && !tiny.is_normal());
    let mut a = values(m * k, 1);
    a[k..2 * k].fill(tiny);
    for isa in Isa::all_supported() {
        let mut out = vec![f32::NAN; m * n];
        gemm_with_isa(isa, &a, m, &packed, &mut out, Init::Bias, None);
        assert!(
            out[n..2 * n].iter().all(|&v| v == 0.0),
            "{isa:?}: {:?}",
            &out[n..n + 4]
        );
        assert!(out[..n].iter().all(|v| v.is_normal()), "{isa:?}");
    }
    assert!(std::hint::black_box(tiny) / std::hint::black_box(2.0) > 0.0);
}
