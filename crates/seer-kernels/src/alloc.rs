//! Large zeroed buffers backed by transparent huge pages where the kernel
//! allows it (`madvise` mode): a model's weights then fault in 2 MB at a time
//! instead of 4 KB, which takes most of the system time out of loading.

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
