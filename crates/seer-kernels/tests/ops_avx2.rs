//! `tests/ops.rs`'s checks with the kernels capped at AVX2 (on a CPU without
//! AVX2 they run the portable build).

mod common;

const CEILING: Option<seer_kernels::Isa> = Some(seer_kernels::Isa::Avx2);

include!("common/ops_checks.rs");
