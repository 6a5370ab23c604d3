//! Training's kernels against f64 definitions, on the best instruction set
//! this CPU has (`train_avx2.rs` and `train_portable.rs` cap it lower).

mod common;

const CEILING: Option<seer_kernels::Isa> = None;

include!("common/train_checks.rs");
