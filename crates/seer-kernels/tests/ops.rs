//! LayerNorm, attention and activations against direct f64 formulas, on the
//! best instruction set this CPU has (`ops_avx2.rs` and `ops_portable.rs` cap
//! it lower).

mod common;

const CEILING: Option<seer_kernels::Isa> = None;

include!("common/ops_checks.rs");
