//! The environment the speed examples read, as the `seer` binary reads its
//! own at its edge: `SEER_ISA=avx2|portable|…` caps the kernels,
//! `SEER_WHOLE_BATCHES=1` runs each batch whole on all threads instead of one
//! part per thread (`seer_models::nn::split_batch`).

/// Sets the process up as the `seer` binary does (freed blocks kept for
/// reuse, candle's ops on the calling thread), then applies `SEER_ISA` and
/// `SEER_WHOLE_BATCHES`; an unknown ISA is an error.
pub fn apply() -> Result<(), String> {
    seer_kernels::alloc::keep_freed_blocks();
    seer_models::nn::candle_threads::run_candle_ops_inline();
    if let Ok(isa) = std::env::var("SEER_ISA") {
        let cap = seer_kernels::Isa::parse(&isa).ok_or_else(|| format!("SEER_ISA: {isa}?"))?;
        seer_kernels::Isa::limit(cap);
    }
    if std::env::var_os("SEER_WHOLE_BATCHES").is_some_and(|v| v == "1") {
        seer_models::nn::split_batch::keep_batches_whole();
    }
    Ok(())
}
