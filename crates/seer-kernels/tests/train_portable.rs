//! `tests/train.rs`'s checks on the portable (baseline) build of the kernels.

mod common;

const CEILING: Option<seer_kernels::Isa> = Some(seer_kernels::Isa::Portable);

include!("common/train_checks.rs");
