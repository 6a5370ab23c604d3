//! Reduced precision against the PyTorch f32 reference: normalised embeddings
//! of the fixture images and texts must keep cosine similarity of at least 0.999
//! with the reference's with bf16 matmul weights, and 0.995 with int8 weights
//! and dynamically quantised activations; the f32 path must stay exact, so the
//! precision option changes nothing for users who do not ask. The same holds
//! for every family (fixtures/families): DINOv2, SigLIP and SigLIP 2 run their
//! matmuls on the same packed kernels.

mod common;
mod precision_checks;

use precision_checks::{clip_embeddings_stay_close, family_embeddings_stay_close};
use seer_engine::Precision;

#[test]
fn bf16_embeddings_stay_within_cosine_0999_of_the_reference() {
    clip_embeddings_stay_close(Precision::Bf16);
}

#[test]
fn int8_embeddings_stay_within_cosine_0995_of_the_reference() {
    clip_embeddings_stay_close(Precision::Int8);
}

#[test]
fn bf16_family_embeddings_stay_within_cosine_0999_of_the_reference() {
    family_embeddings_stay_close(Precision::Bf16);
}

#[test]
fn int8_family_embeddings_stay_within_cosine_0995_of_the_reference() {
    family_embeddings_stay_close(Precision::Int8);
}
