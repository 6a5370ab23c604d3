//! `run_candle_ops_inline`: candle's large element-wise ops run on the calling
//! thread, its pool starting no thread to spin beside rayon's. (A file of its
//! own: the setting is per process and must come before the first op.)

use candle_core::{DType, Device, Tensor};

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|name| name.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn candles_element_wise_ops_start_no_thread_of_their_own() -> candle_core::Result<()> {
    seer_models::nn::candle_threads::run_candle_ops_inline();
    // Past candle's 64 K-value threshold for splitting an op over its pool.
    let a = Tensor::ones(1 << 20, DType::F32, &Device::Cpu)?;
    let sum = (&a + &a)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
    assert_eq!(sum, 4.0 * (1 << 20) as f32);
    if cfg!(target_os = "linux") {
        let names = thread_names();
        assert!(!names.is_empty(), "no /proc/self/task");
        assert!(
            names.iter().all(|n| !n.starts_with("candle-bp")),
            "candle started pool threads: {names:?}"
        );
    }
    Ok(())
}
