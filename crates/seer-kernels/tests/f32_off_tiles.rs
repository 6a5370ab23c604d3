//! `gemm::keep_f32_off_tiles` (the CLI's `--f32-on-fma`): process-wide, so in
//! a test binary of its own.

use seer_kernels::gemm::{f32_kept_off_tiles, f32_on_tiles, keep_f32_off_tiles};
use seer_kernels::{Isa, PackedWeights, Precision};

#[test]
fn f32_weights_packed_after_the_call_stay_off_the_tiles() {
    let (n, k) = (40, 64);
    let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let before = PackedWeights::from_rows_for_inference(&w, n, k, None, Precision::F32);
    assert_eq!(before.on_tiles(), Isa::detected() == Isa::Amx);
    assert!(!f32_kept_off_tiles());

    keep_f32_off_tiles();
    assert!(f32_kept_off_tiles() && !f32_on_tiles());
    let after = PackedWeights::from_rows_for_inference(&w, n, k, None, Precision::F32);
    assert!(!after.on_tiles());
    // Weights packed before keep their kernels; bf16 stays on the tiles.
    assert_eq!(before.on_tiles(), Isa::detected() == Isa::Amx);
    let kernel = Isa::Amx.matmul_kernel(Precision::F32);
    assert!(
        kernel.starts_with("avx512 f32 14x32") && kernel.ends_with("f32 kept off the tiles"),
        "{kernel}"
    );
    assert_eq!(Isa::Amx.matmul_kernel(Precision::Bf16), "amx bf16 32x32");
}
