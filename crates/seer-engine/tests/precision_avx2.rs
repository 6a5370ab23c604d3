//! The reduced-precision checks of `precision.rs` with the kernels capped at
//! AVX2, on whatever CPU runs the tests: what an AVX2-only CPU computes (bf16
//! widened to f32; int8 on `vpmaddubsw` with activations of 128 levels, the
//! coarsest any kernel quantises to), held to the same cosines.

mod common;
mod precision_checks;

use precision_checks::{clip_embeddings_stay_close, family_embeddings_stay_close};
use seer_engine::Precision;
use seer_kernels::Isa;

/// Caps this binary's kernels at AVX2. Every test calls it before any
/// kernel runs: the first call sets the process-wide ceiling, the others
/// find it set.
fn cap() {
    Isa::limit(Isa::Avx2);
    assert!(
        Isa::detected() <= Isa::Avx2,
        "kernels above AVX2 already ran"
    );
}

#[test]
fn bf16_embeddings_on_avx2_stay_within_cosine_0999_of_the_reference() {
    cap();
    clip_embeddings_stay_close(Precision::Bf16);
}

#[test]
fn int8_embeddings_on_avx2_stay_within_cosine_0995_of_the_reference() {
    cap();
    clip_embeddings_stay_close(Precision::Int8);
}

#[test]
fn bf16_family_embeddings_on_avx2_stay_within_cosine_0999_of_the_reference() {
    cap();
    family_embeddings_stay_close(Precision::Bf16);
}

#[test]
fn int8_family_embeddings_on_avx2_stay_within_cosine_0995_of_the_reference() {
    cap();
    family_embeddings_stay_close(Precision::Int8);
}
