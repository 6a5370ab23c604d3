//! `tests/ops.rs`'s checks on the portable kernels.

mod common;

const CEILING: Option<seer_kernels::Isa> = Some(seer_kernels::Isa::Portable);

include!("common/ops_checks.rs");
