//! Large zeroed buffers backed by transparent huge pages where the kernel
//! allows it (`madvise` mode): a model's weights then fault in 2 MB at a time
//! instead of 4 KB, which takes most of the system time out of loading. And the
//! process's malloc settings for the many short-lived megabyte buffers of
//! candle's ops.

/// A zeroed vector of `n` elements; on Linux its pages are marked for huge pages
/// before first touch.
pub fn zeroed_vec<T: Copy + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    advise_huge_pages(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let aligned_start = start.next_multiple_of(HUGE);
    if end <= aligned_start + HUGE {
        return;
    }
    let len = (end - aligned_start) / HUGE * HUGE;
    // SAFETY: advice only; the range lies inside the vector's allocation. A
    // refusal (THP disabled) leaves ordinary pages, so the result is ignored.
    unsafe {
        libc::madvise(aligned_start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}

/// Keeps freed blocks of up to 32 MiB in the heap for reuse, and up to 256 MiB
/// of free heap top, instead of glibc's default of unmapping every large block
/// on free and mapping (and zeroing) a fresh one on the next allocation.
/// Training allocates and frees tensors of megabytes per op: with the default,
/// 25–30% of a step went to page faults, page zeroing and TLB shootdowns, and
/// the CIFAR-10 demo trained at 142–183 samples/s against 232–242 with this
/// (AMD EPYC Zen 4, 2 threads). Call once, first thing in `main`. A no-op
/// outside glibc.
pub fn keep_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; both values are in
    // the range glibc accepts (the mmap threshold's maximum is 32 MiB on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// `n` zeros written by rayon's threads, for the output of an op that fills
/// it in parallel next. Training allocates hundreds of megabytes of outputs a
/// step (activations and their gradients); zeroed by one `memset` on the
/// calling thread, that was 6–7% of a step's CPU samples with the other
/// thread idle (Intel AMX VM, CIFAR-10 config); split, the step ran 3–4%
/// faster (medians of 8 alternating runs, 455 against 439 samples/s).
pub fn zeros_parallel(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    /// Below this a second thread costs more than it saves.
    const CHUNK: usize = 1 << 16;
    if n < 2 * CHUNK {
        return vec![0.0; n];
    }
    let mut v = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .for_each(|c| c.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the capacity is at least n and its first n values were written
    // above.
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_parallel_is_n_zeros_whether_split_or_not() {
        // After freeing a block of ones, which malloc may hand back: the zeros
        // must be written, not found.
        drop(vec![1f32; 1 << 20]);
        for n in [0, 1, (1 << 17) - 1, 1 << 17, (1 << 19) + 3] {
            let v = zeros_parallel(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0), "n = {n}");
        }
    }
}
